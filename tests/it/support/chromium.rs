//! Headless Chromium driven through `chromedriver` over WebDriver (Debian's `chromium` and
//! `chromium-driver`; `BURNLINK_CHROMIUM` and `BURNLINK_CHROMEDRIVER` override the paths).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use super::{free_port, require_tool};

/// How long chromedriver may take to listen.
const WAIT: Duration = Duration::from_secs(20);

pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

/// Both programs, or `None` (by [`require_tool`]: a failure under CI, a printed skip otherwise).
pub fn tools() -> Option<Tools> {
    let chromium = require_tool("chromium");
    let chromedriver = require_tool("chromedriver");
    Some(Tools {
        chromium: chromium?,
        chromedriver: chromedriver?,
    })
}

/// chromedriver in its own process group, so the browser it starts dies with it even when a
/// test panics before closing the session.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Driver {
    pub fn start(tools: &Tools, log: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
    }
}

/// A WebDriver session with headless Chromium: its profile in `profile`, downloads saved to
/// `downloads` without asking.
pub async fn browser(tools: &Tools, driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1024,800",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": tools.chromium,
            "args": args,
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false,
            },
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless Chromium")
}
