//! Black-box test harness: starts real `hushd` processes on free ports with temporary data
//! folders and drives them with `hush-client` over real sockets.
//!
//! The binaries are found next to the test executable (`target/<profile>/hushd`), or through
//! `HUSHD_BIN` / `HUSH_BIN`; the test command builds them first (`cargo build --bins`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hush_client::{random_registration_id, Client, Connection, Session};
use hush_protocol::api::{DeviceRequest, Secret};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::ServerFrame;

/// A built binary of the workspace.
pub fn bin(name: &str) -> PathBuf {
    let env = format!("{}_BIN", name.to_uppercase());
    if let Some(p) = std::env::var_os(&env) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(p.exists(), "{} not built: run `cargo build --bins` first (looked at {})", name, p.display());
    p
}

/// A running `hushd`.
pub struct Node {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub admin_password: Option<String>,
    log: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node with a fresh data folder.
    pub fn start() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut n = Node::start_in(&data, None);
        n._tmp = Some(tmp);
        n
    }

    /// Starts a node on an existing data folder (restart), optionally on a given address.
    pub fn start_in(data: &Path, listen: Option<&str>) -> Node {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension(format!("log-{}", std::process::id()));
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut child = Command::new(bin("hushd"))
            .arg("--listen")
            .arg(listen.unwrap_or("127.0.0.1:0"))
            .arg("--data-dir")
            .arg(data)
            .arg("--workers")
            .arg("2")
            .env("HUSH_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn hushd");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut password = None;
        let addr = loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
                panic!("hushd did not start; log: {}", std::fs::read_to_string(&log).unwrap_or_default())
            });
            if let Some(p) = line.strip_prefix("One-time password (shown only now): ") {
                password = Some(p.trim().to_owned());
            }
            if let Some(a) = line.strip_prefix("hushd listening on http://") {
                break a.trim().to_owned();
            }
        };
        Node {
            child: Some(child),
            addr,
            data_dir: data.to_owned(),
            admin_password: password,
            log,
            _tmp: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(self.url())
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        if let Some(mut c) = self.child.take() {
            Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap();
            for _ in 0..200 {
                if let Some(st) = c.try_wait().unwrap() {
                    return st.success();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            c.kill().unwrap();
            c.wait().unwrap();
            return false;
        }
        true
    }

    /// Restarts on the same data folder and address after a kill.
    pub fn restart(&mut self) {
        self.kill9();
        let tmp = self._tmp.take();
        let mut n = Node::start_in(&self.data_dir, Some(&self.addr));
        n._tmp = tmp;
        n.admin_password = self.admin_password.clone();
        *self = n;
    }

    /// Logs in as the bootstrap administrator (new device each time).
    pub async fn admin(&self) -> Session {
        let pw = self.admin_password.clone().expect("bootstrap password");
        login(&self.client(), "default", "admin", &pw).await
    }

    /// Creates a user with password `<name>-password` and logs in a first device.
    pub async fn user(&self, admin: &Session, name: &str) -> Session {
        let user = UserId::new(name).unwrap();
        let pw = Secret::new(format!("{name}-password"));
        admin.create_user(&user, &pw, false).await.unwrap();
        login(&self.client(), "default", name, pw.expose()).await
    }

    /// Logs in another device of an existing user created by [`Node::user`].
    pub async fn device(&self, name: &str) -> Session {
        login(&self.client(), "default", name, &format!("{name}-password")).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Logs in, registering a new device.
pub async fn login(client: &Client, tenant: &str, user: &str, password: &str) -> Session {
    client
        .login(
            &TenantId::new(tenant).unwrap(),
            &UserId::new(user).unwrap(),
            &Secret::new(password),
            DeviceRequest { id: None, registration_id: random_registration_id(), name: Some("test".into()) },
        )
        .await
        .unwrap()
}

/// The next frame, failing the test after 10 s.
pub async fn next(conn: &mut Connection) -> ServerFrame {
    tokio::time::timeout(Duration::from_secs(10), conn.next_frame())
        .await
        .expect("no frame within 10 s")
        .expect("connection failed")
}

/// Reads frames until `QueueEmpty`, returning the delivered envelopes (not acked).
pub async fn drain(conn: &mut Connection) -> Vec<hush_protocol::wire::Envelope> {
    let mut out = Vec::new();
    loop {
        match next(conn).await {
            ServerFrame::Deliver(e) => out.push(e),
            ServerFrame::QueueEmpty => return out,
            ServerFrame::Ready { .. } => {}
            other => panic!("unexpected frame while draining: {other:?}"),
        }
    }
}
