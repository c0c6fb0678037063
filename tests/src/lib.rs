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
    extra: Vec<String>,
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
        Node::start_with(data, listen, &[])
    }

    /// Starts a node with a fresh data folder and extra command-line flags.
    pub fn start_args(extra: &[&str]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut n = Node::start_with(&data, None, &extra);
        n._tmp = Some(tmp);
        n
    }

    /// Starts a cluster node: Redis bus, MongoDB store (shared with the other nodes).
    pub fn start_clustered(redis: &Redis, mongo: &Mongo, name: &str) -> Node {
        Node::start_clustered_args(redis, mongo, name, &[])
    }

    /// Starts a cluster node with extra command-line flags.
    pub fn start_clustered_args(redis: &Redis, mongo: &Mongo, name: &str, extra: &[&str]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut args = Node::cluster_args(redis, mongo, name);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut n = Node::start_with(&data, None, &args);
        n._tmp = Some(tmp);
        n.extra = args;
        n
    }

    fn cluster_args(redis: &Redis, mongo: &Mongo, name: &str) -> Vec<String> {
        vec![
            "--mfa-key-file".into(),
            mongo.mfa_key_file().display().to_string(),
            "--redis-url".into(),
            redis.url(),
            "--mongodb-url".into(),
            mongo.url.clone(),
            "--mongodb-database".into(),
            mongo.database.clone(),
            "--node-id".into(),
            name.into(),
        ]
    }

    fn start_with(data: &Path, listen: Option<&str>, extra: &[String]) -> Node {
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
            .args(extra)
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
            extra: extra.to_vec(),
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
        let mut n = Node::start_with(&self.data_dir, Some(&self.addr), &self.extra);
        n._tmp = tmp;
        n.admin_password = self.admin_password.clone();
        *self = n;
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
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
            DeviceRequest {
                id: None,
                registration_id: random_registration_id(),
                name: Some("test".into()),
                identity_key: None,
                keys: None,
            },
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

/// Reads frames until `QueueEmpty`, returning the delivered messages (not acked); session
/// events queued by the node are left out (see [`drain_all`]).
pub async fn drain(conn: &mut Connection) -> Vec<hush_protocol::wire::Envelope> {
    drain_all(conn).await.into_iter().filter(|e| e.event.is_none()).collect()
}

/// Reads frames until `QueueEmpty`, returning every delivered envelope, session events included.
pub async fn drain_all(conn: &mut Connection) -> Vec<hush_protocol::wire::Envelope> {
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

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(30), "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `redis-server` started for one test, on its own port, without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut r = Redis { port: free_port(), child: None };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run ./scripts/test.sh, which installs it");
        self.child = Some(child);
        wait_for_port(self.port, "redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL: Redis loses everything it held (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs a redis-cli command and returns its output lines.
    pub fn cli(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A MongoDB for one test: the real one named by `HUSH_TEST_MONGODB_URI` (a fresh database),
/// or an `nx-27017` MongoDB-wire server started on its own port.
pub struct Mongo {
    pub url: String,
    pub database: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Mongo {
    pub fn start() -> Mongo {
        let database = format!("hush_test_{}", uuid::Uuid::new_v4().simple());
        if let Ok(url) = std::env::var("HUSH_TEST_MONGODB_URI") {
            return Mongo { url, database, child: None, _dir: None };
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("nx-27017")
            .args(["--host", "127.0.0.1", "-p", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--log-file")
            .arg(dir.path().join("log"))
            .arg("--pid-file")
            .arg(dir.path().join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nx-27017 not found: run ./scripts/test.sh, which installs it");
        wait_for_port(port, "nx-27017");
        Mongo { url: format!("mongodb://127.0.0.1:{port}/"), database, child: Some(child), _dir: Some(dir) }
    }

    /// The data folder of the `nx-27017` server started here (`None` for a real MongoDB).
    pub fn data_dir(&self) -> Option<&Path> {
        self._dir.as_ref().map(|d| d.path())
    }
}

impl Mongo {
    /// The MFA key file every node on this store shares (a cluster must configure one).
    pub fn mfa_key_file(&self) -> PathBuf {
        use base64::Engine;
        let path = std::env::temp_dir().join(format!("{}.mfa.key", self.database));
        if !path.exists() {
            let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
            key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
            std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key)).unwrap();
        }
        path
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}.mfa.key", self.database)));
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` until it returns true, for at most `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
