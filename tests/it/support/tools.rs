//! The real programs the tests drive (curl, openssl, redis-server, nginx, python3, unzip,
//! Chromium and chromedriver, the Python MCP SDK), and the one rule for when one is missing:
//! under CI it is a failure, locally the test is skipped with a printed reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The name [`require_tool`] knows the official Python MCP SDK by: a Python that can
/// `import mcp`, from `BURNLINK_MCP_PYTHON` (default `/var/tmp/burnlink-venv/bin/python`).
pub const MCP_PYTHON: &str = "python-mcp";

/// Where scripts/test puts the MCP SDK's virtual environment.
const DEFAULT_MCP_PYTHON: &str = "/var/tmp/burnlink-venv/bin/python";

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
            let test = std::thread::current()
                .name()
                .unwrap_or("an integration test")
                .to_string();
            let install = install_hint(tool);
            if in_ci() {
                panic!("CI: {test} needs `{tool}`: {reason}. Install it: {install}");
            }
            // Straight to stderr, not `eprintln!`: the test harness captures the macros'
            // output of passing tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {test}: {reason} (install: {install})"
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
        "chromedriver" => "chromium-driver",
        other => other,
    };
    format!("apt-get install {package}, or run scripts/test (as root it installs every tool)")
}

fn locate(tool: &str) -> Result<PathBuf, String> {
    match tool {
        "chromium" => existing(env_or("BURNLINK_CHROMIUM", "/usr/bin/chromium")),
        "chromedriver" => existing(env_or("BURNLINK_CHROMEDRIVER", "/usr/bin/chromedriver")),
        MCP_PYTHON => {
            let py = env_or("BURNLINK_MCP_PYTHON", DEFAULT_MCP_PYTHON);
            let ok = Command::new(&py)
                .args(["-c", "import mcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                Ok(py)
            } else {
                Err(format!(
                    "{} cannot import the Python `mcp` SDK",
                    py.display()
                ))
            }
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

/// Finds `name` on PATH, then in the sbin directories a non-root PATH may lack.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
