//! A real HAProxy as a round-robin load balancer on a loopback port, run in the foreground
//! with the configuration operators are given (`deploy/haproxy/burnlink.cfg.template`,
//! rendered here) after a small `global` section that logs to stdout, into a file.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped HAProxy template.
pub const TEMPLATE: &str = include_str!("../../../deploy/haproxy/burnlink.cfg.template");

/// The template with its placeholders filled in (comments, which name them, are kept);
/// panics if one is left.
pub fn render_template(bind: &str, servers: &str) -> String {
    TEMPLATE
        .lines()
        .map(|line| {
            if line.trim_start().starts_with('#') {
                return format!("{line}\n");
            }
            let filled = line
                .replace("{{BIND}}", bind)
                .replace("{{SERVERS}}", servers.trim_end());
            assert!(!filled.contains("{{"), "a placeholder is left: {filled}");
            format!("{filled}\n")
        })
        .collect()
}

pub struct Haproxy {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Haproxy {
    /// Checks the rendered configuration with `haproxy -c`, then starts `bin` on
    /// 127.0.0.1:`port` balancing over `upstreams` (`host:port`, named r1, r2…).
    pub fn start(bin: &Path, port: u16, upstreams: &[String]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let servers: String = upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| format!("    server r{} {u}\n", i + 1))
            .collect();
        let global = "global\n    log stdout format raw local0 info\n    maxconn 1024\n";
        std::fs::write(dir.path().join("global.cfg"), global).unwrap();
        std::fs::write(
            dir.path().join("burnlink.cfg"),
            render_template(&format!("127.0.0.1:{port}"), &servers),
        )
        .unwrap();
        let args = |cmd: &mut Command| {
            cmd.arg("-f")
                .arg(dir.path().join("global.cfg"))
                .arg("-f")
                .arg(dir.path().join("burnlink.cfg"));
        };
        let mut check = Command::new(bin);
        check.arg("-c");
        args(&mut check);
        let out = check.output().expect("run haproxy -c");
        assert!(
            out.status.success(),
            "haproxy -c refuses the configuration:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let mut cmd = Command::new(bin);
        // -db: foreground, one process (threads), stopped by PID.
        cmd.arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        args(&mut cmd);
        let mut child = cmd.spawn().expect("spawn haproxy");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default();
                panic!("haproxy exited at start ({status}); its log:\n{log}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy { child, port, dir }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// HAProxy's log: one `option httplog` line per request, naming `burnlink/rN`.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
