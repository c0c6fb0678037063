//! Black-box test harness: starts real `hushd` processes on free ports with temporary data
//! folders and drives them with `hush-client` over real sockets.
//!
//! The binaries are found next to the test executable (`target/<profile>/hushd`), or through
//! `HUSHD_BIN` / `HUSH_BIN`; the test command builds them first (`cargo build --bins`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod browser;
pub mod cli;
pub mod dev;
pub mod libsignal;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hush_client::{Client, Connection, Session};
use hush_protocol::api::Secret;
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::ServerFrame;

/// Whether a test whose external tool (a validator, schemathesis) is missing must fail rather
/// than skip: in CI (`CI=true`) and under the README's test command, which installs the tools
/// and sets `HUSH_REQUIRE_TOOLS=1`. A bare `cargo test` on a machine without them skips.
pub fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("HUSH_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

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

/// A private CA made for one test (rcgen, ring), issuing server certificates for `127.0.0.1`
/// and `localhost`.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A server certificate (chain PEM: leaf then CA) and its key, as a node reads them.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// The leaf certificate, DER: what a handshake with the node presents.
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A new server certificate (fresh key, random serial) for 127.0.0.1 and localhost.
    pub fn leaf(&self) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "hushd test node");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: format!("{}{}", cert.pem(), self.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl Leaf {
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, &self.cert_pem).unwrap();
        std::fs::write(key, &self.key_pem).unwrap();
    }
}

/// The TLS side of a node started with [`Node::start_tls`]: its CA and the files it reads.
pub struct NodeTls {
    pub ca: TestCa,
    /// The CA certificate as a PEM file (what `hush --ca-file` takes).
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The certificate the node was started with.
    pub leaf: Leaf,
}

impl NodeTls {
    /// A CA, a leaf certificate and their files in `dir`.
    fn make(dir: &Path) -> NodeTls {
        std::fs::create_dir_all(dir).unwrap();
        let ca = TestCa::new("Hush test CA");
        let leaf = ca.leaf();
        let (ca_file, cert_file, key_file) = (dir.join("ca.pem"), dir.join("node.pem"), dir.join("node.key"));
        std::fs::write(&ca_file, ca.pem()).unwrap();
        leaf.write(&cert_file, &key_file);
        NodeTls { ca, ca_file, cert_file, key_file, leaf }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_file.display().to_string(),
            "--tls-key".into(),
            self.key_file.display().to_string(),
        ]
    }
}

/// A running `hushd`.
pub struct Node {
    child: Option<Child>,
    pub addr: String,
    /// `https` for a node started with TLS, else `http`.
    pub scheme: String,
    /// The CA and certificate files of a TLS node.
    pub tls: Option<NodeTls>,
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

    /// Starts a node serving HTTPS/WSS with a certificate from a CA made for it.
    pub fn start_tls() -> Node {
        Node::start_tls_on(None, &[])
    }

    /// Starts a TLS node on `listen` (default `127.0.0.1:0`) with extra command-line flags.
    pub fn start_tls_on(listen: Option<&str>, extra: &[&str]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let tls = NodeTls::make(&tmp.path().join("tls"));
        let mut args = tls.args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut n = Node::start_with(&tmp.path().join("data"), listen, &args);
        n._tmp = Some(tmp);
        n.tls = Some(tls);
        n
    }

    /// Starts a node on a given address with a fresh data folder and extra flags.
    pub fn start_listen(listen: &str, extra: &[&str]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut n = Node::start_with(&tmp.path().join("data"), Some(listen), &extra);
        n._tmp = Some(tmp);
        n
    }

    /// Starts a cluster node over TLS (its own CA and certificate).
    pub fn start_clustered_tls(redis: &Redis, mongo: &Mongo, name: &str) -> Node {
        Node::start_clustered_tls_args(redis, mongo, name, &[])
    }

    /// Starts a cluster node over TLS with extra command-line flags.
    pub fn start_clustered_tls_args(redis: &Redis, mongo: &Mongo, name: &str, extra: &[&str]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let tls = NodeTls::make(&tmp.path().join("tls"));
        let mut args = Node::cluster_args(redis, mongo, name);
        args.extend(tls.args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut n = Node::start_with(&tmp.path().join("data"), None, &args);
        n._tmp = Some(tmp);
        n.tls = Some(tls);
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

    /// Nodes `node-a`, `node-b` and `node-c` on one Redis and one MongoDB, each knowing the
    /// administrator's password.
    pub fn three_clustered(redis: &Redis, mongo: &Mongo) -> Vec<Node> {
        let mut nodes: Vec<Node> =
            ["node-a", "node-b", "node-c"].iter().map(|n| Node::start_clustered(redis, mongo, n)).collect();
        share_admin_password(&mut nodes);
        nodes
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
        // Tests also call nodes with a bare `reqwest::Client`, which needs a rustls provider.
        hush_client::install_default_provider();
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
            .env("HUSH_LOG", std::env::var("HUSH_TEST_NODE_LOG").unwrap_or_else(|_| "info".into()))
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
        let (scheme, addr) = loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
                panic!("hushd did not start; log: {}", std::fs::read_to_string(&log).unwrap_or_default())
            });
            if let Some(p) = line.strip_prefix("One-time password (shown only now): ") {
                password = Some(p.trim().to_owned());
            }
            if let Some(url) = line.strip_prefix("hushd listening on ") {
                let (scheme, a) = url.trim().split_once("://").expect("a URL on the start line");
                break (scheme.to_owned(), a.to_owned());
            }
        };
        Node {
            child: Some(child),
            addr,
            scheme,
            tls: None,
            data_dir: data.to_owned(),
            admin_password: password,
            log,
            extra: extra.to_vec(),
            _tmp: None,
        }
    }

    /// `http://ADDR`, or `https://ADDR` for a TLS node.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The chat socket's URL: `ws://ADDR/v1/ws` or `wss://ADDR/v1/ws`.
    pub fn ws_url(&self) -> String {
        format!("{}://{}/v1/ws", if self.scheme == "https" { "wss" } else { "ws" }, self.addr)
    }

    /// An SDK client of this node (trusting its CA for a TLS node).
    pub fn client(&self) -> Client {
        match &self.tls {
            Some(t) => Client::builder(self.url()).ca_pem(t.ca.pem().as_bytes()).build().unwrap(),
            None => Client::new(self.url()),
        }
    }

    /// The process id of `hushd`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node running").id()
    }

    /// Sends SIGHUP (reload the TLS certificate).
    pub fn sighup(&self) {
        assert!(Command::new("kill").arg("-HUP").arg(self.pid().to_string()).status().unwrap().success());
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
        n.tls = self.tls.take();
        n.admin_password = self.admin_password.clone();
        // The new node appends to the same log file: the old one must not delete it on drop.
        self.log = PathBuf::new();
        *self = n;
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Logs in as the bootstrap administrator (new device each time). The first call (per
    /// store: nodes of a cluster share the bootstrap password) logs in with the one-time
    /// password and sets [`settled_password`] of it; later calls log in with that.
    ///
    /// Once [`Node::stepped_admin`] gave the administrator a factor, the login's challenge is
    /// answered with it, so the session is verified (and stepped up) like any other.
    pub async fn admin(&self) -> Session {
        let pw = self.admin_password.clone().expect("bootstrap password");
        let _one_at_a_time = ADMIN_LOCK.lock().await;
        if settled(&pw) {
            let s = login(&self.client(), "default", "admin", &settled_password(&pw)).await;
            let factor = ADMIN_FACTORS.lock().unwrap().get(&pw).cloned();
            let challenge = s.login_info().mfa.as_ref().and_then(|m| m.challenge.clone());
            if let (Some(f), Some(c)) = (factor, challenge) {
                f.lock().await.answer(&s, &c.challenge_id).await;
            }
            return s;
        }
        let s = login_one_time(&self.client(), "default", "admin", &pw).await;
        SETTLED.lock().unwrap().insert(pw);
        s
    }

    /// The bootstrap administrator, stepped up: the first call (per store) enrols a TOTP factor
    /// for it and answers a step-up challenge (confirming an enrolment is no step-up for admin
    /// actions); later calls log in and answer the login's challenge, which is one. The
    /// session may perform the step-up-guarded actions for the tenant's step-up window.
    pub async fn stepped_admin(&self) -> Session {
        let pw = self.admin_password.clone().expect("bootstrap password");
        let s = self.admin().await;
        let _one_at_a_time = ADMIN_LOCK.lock().await;
        let factor = ADMIN_FACTORS.lock().unwrap().get(&pw).cloned();
        if let Some(f) = factor {
            // Not challenged at login (level `off`, an exemption): a step-up of its own.
            if s.login_info().mfa.as_ref().and_then(|m| m.challenge.as_ref()).is_none() {
                step_up(&s, &mut *f.lock().await).await;
            }
            return s;
        }
        let mut f = enrol(&s).await;
        step_up(&s, &mut f).await;
        ADMIN_FACTORS.lock().unwrap().insert(pw, std::sync::Arc::new(tokio::sync::Mutex::new(f)));
        s
    }

    /// A code of the bootstrap administrator's factor (after [`Node::stepped_admin`]): for
    /// tests that log it in by other means (the CLI, raw HTTP).
    pub async fn admin_code(&self) -> String {
        let pw = self.admin_password.clone().expect("bootstrap password");
        let f = ADMIN_FACTORS.lock().unwrap().get(&pw).cloned().expect("stepped_admin first");
        let code = f.lock().await.totp().await;
        code
    }

    /// The administrator's password after the harness set it (see [`Node::admin`]), setting
    /// it first if no test did yet; for tests that log in by other means (the CLI, raw HTTP).
    pub async fn admin_password_set(&self) -> String {
        let pw = self.admin_password.clone().expect("bootstrap password");
        if !settled(&pw) {
            let _ = self.admin().await;
        }
        settled_password(&pw)
    }

    /// [`Node::admin_password_set`] for tests without a runtime.
    pub fn admin_password_set_blocking(&self) -> String {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(self.admin_password_set())
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

/// A user's second factor as their authenticator app and their sheet of backup codes hold it.
/// TOTP codes are computed with [`cli::Authenticator::hotp`] (RFC 6238 written from the RFCs,
/// not the node's code), each of a time step strictly above the last one handed out and inside
/// the node's window (one step either side), waiting for the clock only when it must: the node
/// accepts each step once per user.
pub struct Factor {
    key: Vec<u8>,
    last: u64,
    /// Backup codes not used yet.
    pub backup: Vec<String>,
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

impl Factor {
    /// The factor of an enrolment's base32 secret and backup codes.
    pub fn new(secret_b32: &str, backup: Vec<String>) -> Factor {
        let key = data_encoding::BASE32_NOPAD.decode(secret_b32.trim_end_matches('=').as_bytes()).unwrap();
        Factor { key, last: 0, backup }
    }

    /// A TOTP code the node has not accepted yet (waits for the clock if the window is spent).
    pub async fn totp(&mut self) -> String {
        loop {
            if let Some(c) = self.totp_now().await {
                return c;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// A TOTP code the node has not accepted yet, if one is in the window now.
    async fn totp_now(&mut self) -> Option<String> {
        use cli::TOTP_STEP_SECS;
        // At least 3 s left in the step, so the code is still in the window when it arrives.
        while unix_secs() % TOTP_STEP_SECS > TOTP_STEP_SECS - 3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let now = unix_secs() / TOTP_STEP_SECS;
        let step = (self.last + 1).max(now - 1);
        if step > now + 1 {
            return None;
        }
        self.last = step;
        Some(cli::Authenticator::hotp(&self.key, step))
    }

    /// Answers a challenge of session `s`: with a TOTP code if one is in the window, else with
    /// a backup code, else with a TOTP code once the clock allows.
    pub async fn answer(&mut self, s: &Session, challenge_id: &str) {
        let (code, backup) = match self.totp_now().await {
            Some(c) => (c, false),
            None => match self.backup.pop() {
                Some(b) => (b, true),
                None => (self.totp().await, false),
            },
        };
        s.mfa_answer(challenge_id, &Secret::new(code), backup, false).await.unwrap();
    }
}

/// Enrols and confirms TOTP for the session's user. The session is then verified with method
/// `enrollment`: a step-up for its own account, not for actions on others.
pub async fn enrol(s: &Session) -> Factor {
    let e = s.totp_enroll().await.unwrap();
    let mut f = Factor::new(e.secret.expose(), Vec::new());
    let code = f.totp().await;
    let codes = s.totp_confirm(&Secret::new(code)).await.unwrap();
    f.backup = codes.codes.iter().map(|c| c.expose().to_owned()).collect();
    f
}

/// Steps the session up: a new challenge, answered with the factor.
pub async fn step_up(s: &Session, f: &mut Factor) {
    let c = s.mfa_challenge().await.unwrap();
    f.answer(s, &c.challenge_id).await;
}

/// The bootstrap administrators' factors, by one-time password (see [`Node::stepped_admin`]).
type SharedFactor = std::sync::Arc<tokio::sync::Mutex<Factor>>;
static ADMIN_FACTORS: std::sync::Mutex<std::collections::BTreeMap<String, SharedFactor>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// One-time passwords the harness has replaced (see [`Node::admin`]).
static SETTLED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
/// Serializes [`Node::admin`]'s first login and password change.
static ADMIN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn settled(one_time: &str) -> bool {
    SETTLED.lock().unwrap().contains(one_time)
}

/// The password the harness sets in place of the one-time password `one_time`.
pub fn settled_password(one_time: &str) -> String {
    format!("{one_time}-set")
}

/// Logs in with a one-time password (the bootstrap's, `hushd init`'s, `hushd admin
/// reset-password`'s), checks the session is restricted to the password change, and sets
/// [`settled_password`]; returns the session, unrestricted now.
pub async fn login_one_time(client: &Client, tenant: &str, user: &str, one_time: &str) -> Session {
    let s = login(client, tenant, user, one_time).await;
    assert!(s.login_info().password_change_required, "a one-time password must ask for a new one");
    s.change_password(&Secret::new(one_time), &Secret::new(settled_password(one_time))).await.unwrap();
    s
}

/// Logs in, registering a new device.
pub async fn login(client: &Client, tenant: &str, user: &str, password: &str) -> Session {
    try_login(client, tenant, user, password).await.unwrap()
}

/// A login that may be refused, registering a new device (with keys, as every real client: the
/// node lists only devices with keys to senders).
pub async fn try_login(
    client: &Client,
    tenant: &str,
    user: &str,
    password: &str,
) -> Result<Session, hush_client::ClientError> {
    let device = hush_client::relay_only_device(Some("test".into()))?;
    client
        .login(&TenantId::new(tenant).unwrap(), &UserId::new(user).unwrap(), &Secret::new(password), device)
        .await
}

/// A `Send` of `content` to device 1 of `to` (registration id `reg`), with a new id.
pub fn send_to_primary(to: &str, reg: u32, content: Vec<u8>) -> hush_protocol::wire::SendMessage {
    use hush_protocol::ids::{DeviceId, RegistrationId};
    hush_protocol::wire::SendMessage {
        id: uuid::Uuid::new_v4(),
        to: UserId::new(to).unwrap(),
        devices: vec![hush_protocol::wire::DeviceMessage {
            device: DeviceId::PRIMARY,
            registration_id: RegistrationId::new(reg).unwrap(),
            content: hush_protocol::wire::Payload(content),
            content_type: hush_protocol::wire::ContentType::Ciphertext,
        }],
        sync: vec![],
    }
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

/// Gives every node of a cluster the first node's view of the administrator's password (one
/// tenant, bootstrapped once, in the shared store).
pub fn share_admin_password(nodes: &mut [Node]) {
    let pw = nodes.first().and_then(|n| n.admin_password.clone());
    for n in nodes {
        n.admin_password = pw.clone();
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
