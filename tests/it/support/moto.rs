//! A real S3-compatible server on loopback (`moto_server`, PyPI `moto[server]`), seeded and
//! checked with `boto3`, and [`Sandbox`]: one test body run against the directory sandbox and
//! against a bucket.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{MOTO, Server, free_port, require_tool};

pub const BUCKET: &str = "burnlink-test";
pub const PREFIX: &str = "sandbox";

pub struct Moto {
    child: Child,
    python: PathBuf,
    pub port: u16,
}

impl Moto {
    /// Starts moto on a free port and waits (at most 20 s) until it answers; `None` when moto
    /// is missing (a skip, or a failure under CI).
    pub fn start() -> Option<Moto> {
        let python = require_tool(MOTO)?;
        let port = free_port();
        let child = spawn(&python, port);
        let moto = Moto {
            child,
            python,
            port,
        };
        moto.ready();
        Some(moto)
    }

    /// Waits (at most 20 s) until moto answers, and creates the bucket.
    fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.py(&format!("s3.create_bucket(Bucket={BUCKET:?})"), b"");
    }

    /// Stops the server (by its PID): the bucket is down.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, empty but for the bucket.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.python, self.port);
        self.ready();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a burnlink on this bucket needs (`BURNLINK_ROOT` and the `AWS_*`).
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_for(&self.endpoint())
    }

    /// [`Moto::env`] with another endpoint (a proxy in front of moto).
    pub fn env_for(&self, endpoint: &str) -> Vec<(String, String)> {
        [
            ("BURNLINK_ROOT", format!("s3://{BUCKET}/{PREFIX}")),
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs `code` with `s3` (a boto3 client on this server), `BUCKET`, `PREFIX` and `data`
    /// (`stdin`'s bytes) defined; returns what it prints.
    pub fn py(&self, code: &str, stdin: &[u8]) -> String {
        let prelude = format!(
            "import sys, boto3, json\n\
             s3 = boto3.client('s3', endpoint_url={endpoint:?}, aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name='us-east-1')\n\
             BUCKET = {BUCKET:?}\nPREFIX = {PREFIX:?}\ndata = sys.stdin.buffer.read()\n",
            endpoint = self.endpoint()
        );
        let mut child = Command::new(&self.python)
            .args(["-c", &format!("{prelude}{code}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Puts `bytes` at `PREFIX/{rel}` (a `rel` ending in `/` is a directory marker).
    pub fn put(&self, rel: &str, bytes: &[u8]) {
        self.py(
            &format!("s3.put_object(Bucket=BUCKET, Key=PREFIX + '/' + {rel:?}, Body=data)"),
            bytes,
        );
    }

    /// The object at `PREFIX/{rel}`, if any.
    pub fn get(&self, rel: &str) -> Option<Vec<u8>> {
        let out = self.py(
            &format!(
                "try:\n    sys.stdout.write(s3.get_object(Bucket=BUCKET, Key=PREFIX + '/' + \
                 {rel:?})['Body'].read().hex())\nexcept s3.exceptions.NoSuchKey:\n    \
                 sys.stdout.write('none')"
            ),
            b"",
        );
        (out != "none").then(|| {
            (0..out.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&out[i..i + 2], 16).unwrap())
                .collect()
        })
    }

    /// Whether `PREFIX/{rel}` exists (HEAD answers 200, not 404).
    pub fn exists(&self, rel: &str) -> bool {
        let out = self.py(
            &format!(
                "import botocore\ntry:\n    s3.head_object(Bucket=BUCKET, Key=PREFIX + '/' + \
                 {rel:?})\n    print('yes')\nexcept botocore.exceptions.ClientError as e:\n    \
                 assert e.response['Error']['Code'] == '404', e\n    print('no')"
            ),
            b"",
        );
        out.trim() == "yes"
    }

    /// Parts uploaded so far to the multipart uploads still open.
    pub fn uploaded_parts(&self) -> usize {
        self.py(
            "n = 0\nfor u in s3.list_multipart_uploads(Bucket=BUCKET).get('Uploads', []):\n    \
             n += len(s3.list_parts(Bucket=BUCKET, Key=u['Key'], \
             UploadId=u['UploadId']).get('Parts', []))\nprint(n)",
            b"",
        )
        .trim()
        .parse()
        .unwrap()
    }

    /// Objects whose name is a resumable upload's state (`.burnlink-….part`).
    pub fn state_objects(&self) -> usize {
        self.py(
            "import re\nn = 0\nfor page in s3.get_paginator('list_objects_v2').paginate(\
             Bucket=BUCKET):\n    for o in page.get('Contents', []):\n        n += bool(\
             re.search(r'(^|/)\\.burnlink-[^/]*\\.part$', o['Key']))\nprint(n)",
            b"",
        )
        .trim()
        .parse()
        .unwrap()
    }

    /// Multipart uploads begun and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.py(
            "print(len(s3.list_multipart_uploads(Bucket=BUCKET).get('Uploads', [])))",
            b"",
        )
        .trim()
        .parse()
        .unwrap()
    }
}

fn spawn(python: &std::path::Path, port: u16) -> Child {
    Command::new(python.with_file_name("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server")
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A burnlink server with its files on disk or in a bucket, and the ways a test seeds and
/// checks them, so one test body proves the same behaviour on both.
pub struct Sandbox {
    pub server: Server,
    pub moto: Option<Moto>,
}

/// Which sandbox a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Disk,
    Bucket,
}

pub const BOTH: [Backend; 2] = [Backend::Disk, Backend::Bucket];

impl Sandbox {
    /// A server on `backend`, with `env` besides; `None` when the bucket's tools are missing.
    pub fn start(backend: Backend, env: &[(&str, &str)]) -> Option<Sandbox> {
        match backend {
            Backend::Disk => Some(Sandbox {
                server: Server::start_with(env),
                moto: None,
            }),
            Backend::Bucket => {
                let moto = Moto::start()?;
                let mut all: Vec<(String, String)> = moto.env();
                all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                let refs: Vec<(&str, &str)> =
                    all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Some(Sandbox {
                    server: Server::start_with(&refs),
                    moto: Some(moto),
                })
            }
        }
    }

    pub fn put(&self, rel: &str, bytes: &[u8]) {
        match &self.moto {
            Some(moto) => moto.put(rel, bytes),
            None => {
                if let Some(dir) = rel.strip_suffix('/') {
                    std::fs::create_dir_all(self.server.root.join(dir)).unwrap();
                } else {
                    self.server.write(rel, bytes);
                }
            }
        }
    }

    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        match &self.moto {
            Some(moto) => moto.get(rel),
            None => std::fs::read(self.server.root.join(rel)).ok(),
        }
    }

    pub fn remove(&self, rel: &str) {
        match &self.moto {
            Some(moto) => {
                moto.py(
                    &format!("s3.delete_object(Bucket=BUCKET, Key=PREFIX + '/' + {rel:?})"),
                    b"",
                );
            }
            None => std::fs::remove_file(self.server.root.join(rel)).unwrap(),
        }
    }

    /// What an upload that did not land left behind: temporaries on disk, unfinished
    /// multipart uploads and resumable uploads' state objects in the bucket. Should be 0.
    pub fn leftovers(&self) -> usize {
        match &self.moto {
            Some(moto) => moto.open_uploads() + moto.state_objects(),
            None => self.server.temporaries().len(),
        }
    }

    /// Unfinished resumable uploads: partial files on disk; in the bucket, state objects, each
    /// with its multipart upload (checked).
    pub fn partials(&self) -> usize {
        match &self.moto {
            Some(moto) => {
                let states = moto.state_objects();
                assert_eq!(
                    moto.open_uploads(),
                    states,
                    "one multipart upload per state"
                );
                states
            }
            None => self.server.temporaries().len(),
        }
    }

    pub fn name(&self) -> &'static str {
        if self.moto.is_some() {
            "bucket"
        } else {
            "disk"
        }
    }
}
