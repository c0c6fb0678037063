//! TLS end to end against real `hushd` processes with certificates made here (rcgen): the SDK
//! and the `hush` CLI over `https://` and `wss://` (login, send, listen, MFA), a wrong CA
//! refused with one clear line, plain HTTP refused on a non-loopback address unless
//! `--insecure-http`, and the certificate reloaded on SIGHUP while a WebSocket stays open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hush_client::{Client, ClientError};
use hush_protocol::ids::UserId;
use hush_protocol::otp::{self, Algorithm, OtpSecret};
use hush_protocol::wire::ServerFrame;
use hush_tests::{bin, eventually, login, next, Node, TestCa};
use serde_json::{json, Value};

/// The clear line a wrong CA gives (SDK error text; the CLI prefixes `error: `).
const UNTRUSTED: &str =
    "TLS: the node's certificate is not trusted (unknown issuer); pass --ca-file with the CA certificate (PEM) that issued it";

/// An authenticated JSON call through the SDK's HTTP client (its TLS trust included).
async fn call(client: &Client, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", client.base());
    let http = client.http();
    let mut rb = match method {
        "GET" => http.get(url),
        "POST" => http.post(url),
        m => panic!("method {m}"),
    };
    rb = rb.bearer_auth(token);
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn sdk_login_send_listen_and_mfa_over_tls() {
    let node = Node::start_tls();
    assert!(node.url().starts_with("https://127.0.0.1:"), "{}", node.url());
    assert!(node.ws_url().starts_with("wss://"));
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;

    // Send and receive over WSS.
    let mut a = alice.connect().await.unwrap();
    assert!(matches!(next(&mut a).await, ServerFrame::Ready { .. }));
    assert!(matches!(next(&mut a).await, ServerFrame::QueueEmpty));
    let mut b = bob.connect().await.unwrap();
    assert!(matches!(next(&mut b).await, ServerFrame::Ready { .. }));
    assert!(matches!(next(&mut b).await, ServerFrame::QueueEmpty));
    let id = a.send_message(&UserId::new("bob").unwrap(), |_, _| b"over tls".to_vec()).await.unwrap();
    match next(&mut b).await {
        ServerFrame::Deliver(e) => {
            assert_eq!((e.id, e.content.0.as_slice(), e.from.as_str()), (id, &b"over tls"[..], "alice"));
        }
        other => panic!("expected the message, got {other:?}"),
    }

    // MFA over HTTPS: enrol and confirm TOTP, then a new login is challenged and verified.
    let client = node.client();
    let token = alice.login_info().token.expose().to_owned();
    let (st, e) = call(&client, "POST", "/v1/mfa/totp/enroll", &token, None).await;
    assert_eq!(st, 200, "{e}");
    let secret = OtpSecret::from_base32(e["secret"].as_str().unwrap()).unwrap();
    // At least 3 s left in this time step, so both codes are inside the node's window.
    while now_secs() % otp::TOTP_PERIOD_SECS > otp::TOTP_PERIOD_SECS - 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let step = otp::step_of(now_secs());
    let code = |s: u64| otp::hotp(&secret, s, Algorithm::Sha1, 6).unwrap();
    let (st, c) =
        call(&client, "POST", "/v1/mfa/totp/confirm", &token, Some(json!({"code": code(step)}))).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["codes"].as_array().map(Vec::len), Some(10), "{c}");
    let pending = login(&client, "default", "alice", "alice-password").await;
    let mfa = serde_json::to_value(&pending.login_info().mfa).unwrap();
    assert_eq!(mfa["state"], "mfa_pending", "{mfa}");
    let p_token = pending.login_info().token.expose().to_owned();
    let (st, v) = call(&client, "GET", "/v1/devices", &p_token, None).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("mfa_required")), "{v}");
    let body = json!({"challenge_id": mfa["challenge"]["challenge_id"], "code": code(step + 1)});
    let (st, v) = call(&client, "POST", "/v1/mfa/verify", &p_token, Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(&client, "GET", "/v1/devices", &p_token, None).await;
    assert_eq!(st, 200, "verified session works: {v}");
    let mut p = pending.connect().await.unwrap();
    assert!(
        matches!(next(&mut p).await, ServerFrame::Ready { .. }),
        "the verified session's socket opens over WSS"
    );
}

/// A login as alice (whatever the node answers: the TLS handshake comes first).
async fn try_login(client: &Client) -> Result<hush_client::Session, ClientError> {
    let dev = hush_protocol::api::DeviceRequest {
        id: None,
        registration_id: hush_client::random_registration_id(),
        name: None,
        identity_key: None,
        keys: None,
    };
    let tenant = hush_protocol::ids::TenantId::new("default").unwrap();
    let pw = hush_protocol::api::Secret::new("alice-password");
    client.login(&tenant, &UserId::new("alice").unwrap(), &pw, dev).await
}

#[tokio::test]
async fn a_wrong_ca_is_refused_by_the_sdk_with_a_clear_error() {
    let node = Node::start_tls();
    let other = TestCa::new("Some other CA");
    let bad = Client::builder(node.url()).ca_pem(other.pem().as_bytes()).build().unwrap();
    match try_login(&bad).await {
        Err(e @ ClientError::Tls(_)) => assert_eq!(e.to_string(), UNTRUSTED),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // The system's roots alone do not know the test CA either.
    match try_login(&Client::new(node.url())).await {
        Err(e @ ClientError::Tls(_)) => assert_eq!(e.to_string(), UNTRUSTED),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // WSS with the wrong CA: a session made with the right one cannot open its socket there.
    let good = node.admin().await;
    match bad.resume(good.login_info().clone()).connect().await {
        Err(e @ ClientError::Tls(_)) => assert_eq!(e.to_string(), UNTRUSTED),
        Err(e) => panic!("expected a TLS error, got {e:?}"),
        Ok(_) => panic!("the socket opened with an untrusted certificate"),
    }
    // A CA file that is not PEM is refused before any connection.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    match Client::builder(node.url()).ca_file(&junk).build() {
        Err(ClientError::CaFile { path, reason }) => {
            assert_eq!(path, junk.display().to_string());
            assert!(reason.contains("no PEM certificate"), "{reason}");
        }
        other => panic!("expected a CA file error, got {other:?}"),
    }
}

/// `hush` with its home in `home`, talking to `node`.
fn hush(home: &Path, node: &Node, profile: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin("hush"));
    c.arg("--profile").arg(profile).args(args).env("HUSH_HOME", home).env("HUSH_SERVER", node.url());
    c.env_remove("HUSH_CA_FILE");
    c
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts `listen` and waits until it is up to date.
fn listen(mut c: Command) -> Child {
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("listen ended before it was up to date: {seen}");
        }
        seen.push_str(&line);
        if line.contains("up to date") {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    child
}

#[tokio::test]
async fn cli_login_send_listen_over_tls_with_the_ca_kept_in_the_profile() {
    let node = Node::start_tls();
    let ca_file = node.tls.as_ref().unwrap().ca_file.clone();
    let admin = node.admin().await;
    for u in ["alice", "bob"] {
        let pw = hush_protocol::api::Secret::new(format!("{u}-password"));
        admin.create_user(&UserId::new(u).unwrap(), &pw, false).await.unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let h = home.path().join("hush");
    // On main the state file of a first login still needs the folder to exist (issue 11,
    // point 1, is another part); this test is about TLS.
    std::fs::create_dir_all(&h).unwrap();
    // alice by flag, bob by environment.
    let out = run_ok({
        let mut c = hush(&h, &node, "alice", &["--ca-file"]);
        c.arg(&ca_file).args(["login", "--user", "alice", "--password", "alice-password"]);
        c
    });
    assert!(out.starts_with("Logged in as default/alice on device "), "{out}");
    let out = run_ok({
        let mut c = hush(&h, &node, "bob", &["login", "--user", "bob", "--password", "bob-password"]);
        c.env("HUSH_CA_FILE", &ca_file);
        c
    });
    assert!(out.starts_with("Logged in as default/bob on device "), "{out}");
    let profile: Value = serde_json::from_slice(&std::fs::read(h.join("alice.json")).unwrap()).unwrap();
    assert_eq!(profile["ca_file"], ca_file.display().to_string(), "the CA is kept in the profile");
    assert_eq!(profile["server"], node.url());

    // Later commands: no flag, no environment; the profile's CA is used (HTTPS and WSS).
    let mut listener = listen({
        let mut c = hush(&h, &node, "bob", &["listen", "--count", "1"]);
        c.env_remove("HUSH_SERVER");
        c
    });
    let out = run_ok(hush(&h, &node, "alice", &["send", "bob", "hello", "over", "tls"]));
    assert!(out.starts_with("Sent ") && out.trim_end().ends_with(" to bob."), "{out}");
    let t0 = std::time::Instant::now();
    while listener.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "listener got no message");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(listener.wait().unwrap().success());
    let mut out = String::new();
    listener.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out.trim(), "alice/1: hello over tls");
    let out = run_ok(hush(&h, &node, "alice", &["devices"]));
    assert!(out.contains("alice/1"), "{out}");
}

#[tokio::test]
async fn cli_with_a_wrong_ca_prints_one_clear_line_and_saves_nothing() {
    let node = Node::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, TestCa::new("Some other CA").pem()).unwrap();
    let h = dir.path().join("hush");
    // `--password=...`: a generated password may start with '-'.
    let pw = format!("--password={}", node.admin_password.clone().unwrap());
    let wrong = |extra: &[&str]| {
        let mut c = hush(&h, &node, "admin", extra);
        c.args(["login", "--user", "admin", &pw]).env("RUST_BACKTRACE", "1");
        c.output().unwrap()
    };
    for (args, expected) in [
        (vec!["--ca-file", other.to_str().unwrap()], format!("error: {UNTRUSTED}")),
        (vec![], format!("error: {UNTRUSTED}")),
    ] {
        let out = wrong(&args);
        assert!(!out.status.success(), "{args:?}: login succeeded with an untrusted certificate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end(), expected, "{args:?}: one clear line, no backtrace");
        assert!(!h.join("admin.json").exists(), "no profile saved after a refused login");
    }
    let out = wrong(&["--ca-file", dir.path().join("missing.pem").to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: CA file ") && stderr.contains("missing.pem"), "{stderr}");
}

#[tokio::test]
async fn plain_http_on_a_non_loopback_address_needs_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(bin("hushd"))
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "hushd: error: refusing to serve plain HTTP on 0.0.0.0:0: passwords and tokens would travel in \
         clear; give --tls-cert and --tls-key (HUSH_TLS_CERT/HUSH_TLS_KEY), or --insecure-http if a \
         TLS-terminating proxy is in front"
    );
    assert!(out.stdout.is_empty(), "no credentials printed: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!data.join("hush.redb").exists(), "a refused start creates no store");

    // With --insecure-http it starts, and says why that is risky.
    let mut node = Node::start_listen("0.0.0.0:0", &["--insecure-http"]);
    assert!(node.url().starts_with("http://0.0.0.0:"), "{}", node.url());
    let port = node.addr.rsplit(':').next().unwrap().to_owned();
    let local = Client::new(format!("http://127.0.0.1:{port}"));
    let r = local.http().get(format!("{}/healthz", local.base())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(node.log().contains("tokens and passwords travel in clear"), "the log warns: {}", node.log());
    assert!(node.terminate());
    // With TLS, a non-loopback address needs no flag.
    let node = Node::start_tls_on(Some("0.0.0.0:0"), &[]);
    assert!(node.url().starts_with("https://0.0.0.0:"), "{}", node.url());
    assert!(!node.log().contains("travel in clear"));
}

/// The leaf certificate a new TLS handshake with `addr` presents (trusting `cas`).
async fn presented(addr: &str, cas: &[&TestCa]) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(rustls_pki_types::CertificateDer::from(ca.der())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let certs = tls.get_ref().1.peer_certificates().ok_or("no certificate")?;
    Ok(certs[0].to_vec())
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_open_sockets_stay() {
    let node = Node::start_tls();
    let tls = node.tls.as_ref().unwrap();
    let ca1 = &tls.ca;
    assert_eq!(presented(&node.addr, &[ca1]).await.unwrap(), tls.leaf.der);
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let mut a = alice.connect().await.unwrap();
    assert!(matches!(next(&mut a).await, ServerFrame::Ready { .. }));
    assert!(matches!(next(&mut a).await, ServerFrame::QueueEmpty));
    let mut b = bob.connect().await.unwrap();
    assert!(matches!(next(&mut b).await, ServerFrame::Ready { .. }));
    assert!(matches!(next(&mut b).await, ServerFrame::QueueEmpty));

    // A new certificate from another CA, written over the files, then SIGHUP.
    let ca2 = TestCa::new("Hush renewed CA");
    let leaf2 = ca2.leaf();
    leaf2.write(&tls.cert_file, &tls.key_file);
    node.sighup();
    eventually(10, "the reload is logged", || node.log().contains("reloaded the TLS certificate")).await;
    assert_eq!(
        presented(&node.addr, &[ca1, &ca2]).await.unwrap(),
        leaf2.der,
        "a new handshake gets the new one"
    );
    let err = presented(&node.addr, &[ca1]).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "the old CA no longer fits: {err}");
    let renewed = Client::builder(node.url()).ca_pem(ca2.pem().as_bytes()).build().unwrap();
    let s = login(&renewed, "default", "alice", "alice-password").await;
    assert_eq!(s.user().as_str(), "alice");
    match try_login(&node.client()).await {
        Err(e @ ClientError::Tls(_)) => assert_eq!(e.to_string(), UNTRUSTED),
        other => panic!("the old CA must not verify the new certificate: {other:?}"),
    }

    // The sockets opened before the reload still carry messages both ways.
    let id = a.send_message(&UserId::new("bob").unwrap(), |_, _| b"after reload".to_vec()).await.unwrap();
    match next(&mut b).await {
        ServerFrame::Deliver(e) => assert_eq!((e.id, e.content.0.as_slice()), (id, &b"after reload"[..])),
        other => panic!("expected the message on the old socket, got {other:?}"),
    }

    // A broken file keeps the current certificate, and the log says why.
    std::fs::write(&tls.cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        .unwrap();
    node.sighup();
    eventually(10, "the failed reload is logged", || node.log().contains("TLS reload failed")).await;
    let log = node.log();
    let line = log.lines().find(|l| l.contains("TLS reload failed")).unwrap();
    assert!(line.contains(&tls.cert_file.display().to_string()), "the log names the file: {line}");
    assert_eq!(presented(&node.addr, &[&ca2]).await.unwrap(), leaf2.der, "the previous certificate stays");
    // A key that does not belong to the certificate is refused the same way.
    let leaf3 = ca2.leaf();
    std::fs::write(&tls.cert_file, &leaf3.cert_pem).unwrap();
    std::fs::write(&tls.key_file, &leaf2.key_pem).unwrap();
    node.sighup();
    eventually(10, "the mismatch is logged", || node.log().matches("TLS reload failed").count() == 2).await;
    assert_eq!(presented(&node.addr, &[&ca2]).await.unwrap(), leaf2.der);
    let id = a.send_message(&UserId::new("bob").unwrap(), |_, _| b"still open".to_vec()).await.unwrap();
    match next(&mut b).await {
        ServerFrame::Deliver(e) => assert_eq!(e.id, id),
        other => panic!("expected the message, got {other:?}"),
    }
}
