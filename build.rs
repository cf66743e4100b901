//! Stamps the build with the git commit it came from, for `burnlink --version`:
//! `BURNLINK_GIT_COMMIT` is the short hash of HEAD, or `unknown` outside a git checkout (a
//! source tarball, a container build context without `.git`) or without git.
//!
//! Rebuilds stay cheap: the script reruns only when HEAD moves (a checkout, a commit on the
//! current branch), not on every edit.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BURNLINK_GIT_COMMIT");
    // An explicit value wins (a packager building from a tarball knows the commit).
    let commit = std::env::var("BURNLINK_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BURNLINK_GIT_COMMIT={commit}");

    // HEAD itself (a checkout) and the branch it points at (a commit), wherever git keeps
    // them (a worktree's HEAD lives apart from the shared refs). Only files that exist are
    // watched: a missing one would make cargo rerun the script on every build.
    let mut watched: Vec<PathBuf> = Vec::new();
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watched.push(head.into());
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &branch])
    {
        watched.push(path.into());
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        watched.push(packed.into());
    }
    for path in watched.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
