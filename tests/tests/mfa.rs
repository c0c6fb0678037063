//! MFA against real `hushd` processes: TOTP enrolment (the QR code decoded back to its URI),
//! the login challenge and what a pending session cannot do, replay refused (also on another
//! node of a cluster), the failure lock and its events, backup codes, trusted devices, tenant
//! policies with grace periods and exemptions, and step-up. TOTP codes are computed here from
//! the enrolment secret with the RFC 6238 functions of `hush_protocol::otp`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hush_protocol::otp::{self, Algorithm, OtpSecret};
use hush_protocol::wire::{ServerFrame, SessionEvent};
use hush_tests::{drain_all, next, Mongo, Node, Redis};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

async fn call(
    node: &Node,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{}{path}", node.url());
    let mut rb = match method {
        "GET" => c.get(url),
        "POST" => c.post(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        m => panic!("method {m}"),
    };
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A logged-in session: its token, id, device and the login's `mfa` object.
#[derive(Clone, Debug)]
struct Sess {
    token: String,
    id: String,
    device: u64,
    mfa: Value,
}

impl Sess {
    fn state(&self) -> &str {
        self.mfa["state"].as_str().unwrap()
    }
    fn challenge(&self) -> String {
        self.mfa["challenge"]["challenge_id"].as_str().expect("a challenge").to_owned()
    }
}

async fn login_raw(node: &Node, user: &str, device: Option<u64>, trust: Option<&str>) -> (u16, Value) {
    let mut dev = json!({"registration_id": 77, "name": "t"});
    if let Some(d) = device {
        dev["id"] = json!(d);
    }
    let mut body =
        json!({"tenant": "default", "user": user, "password": format!("{user}-password"), "device": dev});
    if let Some(t) = trust {
        body["trusted_device_token"] = json!(t);
    }
    call(node, "POST", "/v1/login", None, Some(body)).await
}

async fn login(node: &Node, user: &str, device: Option<u64>, trust: Option<&str>) -> Sess {
    let (st, v) = login_raw(node, user, device, trust).await;
    assert_eq!(st, 200, "{v}");
    Sess {
        token: v["token"].as_str().unwrap().to_owned(),
        id: v["session_id"].as_str().unwrap().to_owned(),
        device: v["device"].as_u64().unwrap(),
        mfa: v["mfa"].clone(),
    }
}

/// The bootstrap administrator with a factor, stepped up: what the admin actions guarded for
/// others need (docs/mfa.md, "Step-up"; tests/tests/stepup.rs tests the rule).
async fn admin_token(node: &Node) -> String {
    node.stepped_admin().await.login_info().token.expose().to_owned()
}

async fn create_user(node: &Node, admin: &str, user: &str, is_admin: bool) {
    let body = json!({"user": user, "password": format!("{user}-password"), "admin": is_admin});
    let (st, v) = call(node, "POST", "/v1/admin/users", Some(admin), Some(body)).await;
    assert_eq!(st, 201, "{v}");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The authenticator app of one user: hands out codes of strictly increasing time steps within
/// the node's window (one step either side), waiting for the clock when it must.
struct App {
    secret: OtpSecret,
    last: u64,
}

impl App {
    fn new(secret_b32: &str) -> App {
        App { secret: OtpSecret::from_base32(secret_b32).unwrap(), last: 0 }
    }
    /// Waits until at least 3 s remain in the current step, so a code computed now is still in
    /// the window when the node checks it.
    async fn steady() -> u64 {
        while now_secs() % otp::TOTP_PERIOD_SECS > otp::TOTP_PERIOD_SECS - 3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        otp::step_of(now_secs())
    }
    /// A code the node has not accepted yet.
    async fn fresh(&mut self) -> String {
        loop {
            let now = App::steady().await;
            let step = (self.last + 1).max(now - 1);
            if step <= now + 1 {
                self.last = step;
                return otp::hotp(&self.secret, step, Algorithm::Sha1, 6).unwrap();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    /// The code of the current step (no bookkeeping: for replays and wrong-code tests).
    async fn current(&self) -> String {
        let now = App::steady().await;
        otp::hotp(&self.secret, now, Algorithm::Sha1, 6).unwrap()
    }
}

/// Decodes the PNG QR code for real: PNG -> greyscale pixels -> rqrr grid detection and decode.
fn decode_qr(png_b64: &str) -> String {
    let png_bytes = base64::engine::general_purpose::STANDARD.decode(png_b64).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

/// Enrols TOTP for the session's user and confirms it; returns the app and the backup codes.
async fn enrol(node: &Node, s: &Sess) -> (App, Vec<String>) {
    let (st, e) = call(node, "POST", "/v1/mfa/totp/enroll", Some(&s.token), None).await;
    assert_eq!(st, 200, "{e}");
    let mut app = App::new(e["secret"].as_str().unwrap());
    let code = app.fresh().await;
    let (st, b) =
        call(node, "POST", "/v1/mfa/totp/confirm", Some(&s.token), Some(json!({"code": code}))).await;
    assert_eq!(st, 200, "{b}");
    let codes: Vec<String> =
        b["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    (app, codes)
}

async fn verify(node: &Node, s: &Sess, challenge: &str, code: &str, remember: bool) -> (u16, Value) {
    let body = json!({"challenge_id": challenge, "code": code, "remember_device": remember});
    call(node, "POST", "/v1/mfa/verify", Some(&s.token), Some(body)).await
}

async fn put_policy(node: &Node, token: &str, change: Value) -> (u16, Value) {
    let (st, mut p) = call(node, "GET", "/v1/admin/tenant/mfa", Some(token), None).await;
    assert_eq!(st, 200, "{p}");
    for (k, v) in change.as_object().unwrap() {
        p[k] = v.clone();
    }
    call(node, "PUT", "/v1/admin/tenant/mfa", Some(token), Some(p)).await
}

/// Opens the chat socket with the token in the header: the HTTP status of a refused upgrade
/// with its JSON body, or 101.
async fn ws_header(node: &Node, token: &str) -> (u16, Value) {
    let mut req = format!("ws://{}/v1/ws", node.addr).into_client_request().unwrap();
    req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => (101, Value::Null),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let body = r.body().as_ref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(Value::Null);
            (r.status().as_u16(), body)
        }
        Err(e) => panic!("{e}"),
    }
}

/// Opens the chat socket with an `Auth` frame; returns the close code and reason, or "ready".
async fn ws_auth_frame(node: &Node, token: &str) -> String {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", node.addr)).await.unwrap();
    ws.send(Message::Text(json!({"Auth": {"token": token}}).to_string().into())).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap();
        match m {
            Some(Ok(Message::Close(Some(c)))) => return format!("{} {}", u16::from(c.code), c.reason),
            Some(Ok(Message::Text(t))) if t.contains("Ready") => return "ready".into(),
            Some(Ok(_)) => continue,
            other => return format!("{other:?}"),
        }
    }
}

/// The `SessionEvent`s queued for a device (connects its socket and drains it).
async fn events(node: &Node, s: &Sess) -> Vec<SessionEvent> {
    let c = hush_client::Client::new(node.url());
    let info: hush_protocol::api::LoginResponse = serde_json::from_value(json!({
        "token": s.token, "session_id": s.id, "tenant": "default", "user": "x", "device": s.device, "admin": false, "registration_id": 77
    }))
    .unwrap();
    let mut conn = c.resume(info).connect().await.unwrap();
    drain_all(&mut conn).await.into_iter().filter_map(|e| e.event).collect()
}

#[test]
fn rfc_vectors_through_the_public_otp_api() {
    let v: Value = serde_json::from_str(include_str!("../../protocol/tests/vectors/rfc/otp.json")).unwrap();
    let sha1 = OtpSecret::from_base32(v["seeds_base32"]["sha1"].as_str().unwrap()).unwrap();
    for (i, code) in v["hotp_sha1_6_digits"].as_array().unwrap().iter().enumerate() {
        assert_eq!(otp::hotp(&sha1, i as u64, Algorithm::Sha1, 6).unwrap(), code.as_str().unwrap());
    }
    for (name, alg) in
        [("sha1", Algorithm::Sha1), ("sha256", Algorithm::Sha256), ("sha512", Algorithm::Sha512)]
    {
        let seed = OtpSecret::from_base32(v["seeds_base32"][name].as_str().unwrap()).unwrap();
        for row in v["totp"].as_array().unwrap() {
            let t = row["time"].as_u64().unwrap();
            assert_eq!(otp::totp(&seed, t, alg, 8).unwrap(), row[name].as_str().unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_challenge_pending_limits_replay_and_backup_codes() {
    let node = Node::start();
    let admin = admin_token(&node).await;
    create_user(&node, &admin, "alice", false).await;
    let a1 = login(&node, "alice", None, None).await;
    assert_eq!(a1.state(), "none");

    // Enrolment: secret, URI and a QR code that decodes back to the URI.
    let (st, e) = call(&node, "POST", "/v1/mfa/totp/enroll", Some(&a1.token), None).await;
    assert_eq!(st, 200, "{e}");
    let secret = e["secret"].as_str().unwrap();
    let uri = e["otpauth_uri"].as_str().unwrap();
    assert_eq!(
        uri,
        format!("otpauth://totp/Hush:alice%40default?secret={secret}&issuer=Hush&algorithm=SHA1&digits=6&period=30")
    );
    assert_eq!(decode_qr(e["qr_png_base64"].as_str().unwrap()), uri);
    // Not active before it is confirmed: a new login is not challenged.
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&a1.token), None).await;
    assert_eq!(s["totp_enabled"], false);
    assert_eq!(login(&node, "alice", Some(1), None).await.state(), "none");
    let mut app = App::new(secret);
    let (st, b) =
        call(&node, "POST", "/v1/mfa/totp/confirm", Some(&a1.token), Some(json!({"code": "000000x"}))).await;
    assert_eq!((st, b["error"].as_str()), (401, Some("invalid_code")));
    let code = app.fresh().await;
    let (st, b) =
        call(&node, "POST", "/v1/mfa/totp/confirm", Some(&a1.token), Some(json!({"code": code}))).await;
    assert_eq!(st, 200, "{b}");
    let backup: Vec<String> =
        b["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(backup.len(), 10);
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&a1.token), None).await;
    assert_eq!((s["totp_enabled"].as_bool(), s["backup_codes_left"].as_u64()), (Some(true), Some(10)));
    assert_eq!(s["session"]["state"], "verified");
    assert_eq!(s["session"]["method"], "enrollment");

    // A login now must pass a challenge; until then only the MFA routes answer.
    let a2 = login(&node, "alice", None, None).await;
    assert_eq!(a2.state(), "mfa_pending", "{:?}", a2.mfa);
    for path in ["/v1/sessions", "/v1/devices", "/v1/users/alice/devices"] {
        let (st, v) = call(&node, "GET", path, Some(&a2.token), None).await;
        assert_eq!((st, v["error"].as_str()), (401, Some("mfa_required")), "{path}: {v}");
    }
    let (st, v) = call(&node, "DELETE", "/v1/sessions/others", Some(&a2.token), None).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("mfa_required")));
    let (st, v) = ws_header(&node, &a2.token).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("mfa_required")),
        "chat socket refused before the upgrade"
    );
    assert_eq!(ws_auth_frame(&node, &a2.token).await, "4401 mfa_required");
    let (st, s) = call(&node, "GET", "/v1/mfa/status", Some(&a2.token), None).await;
    assert_eq!((st, s["session"]["state"].as_str()), (200, Some("mfa_pending")));

    // Bypass attempts: an invented challenge, then another session's challenge with a good code.
    let code = app.fresh().await;
    let (st, v) = verify(&node, &a2, "00000000000000000000000000000000", &code, false).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("invalid_challenge")));
    let a3 = login(&node, "alice", None, None).await;
    assert_eq!(a3.state(), "mfa_pending");
    let (st, v) = verify(&node, &a2, &a3.challenge(), &code, false).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("invalid_challenge")), "another session's challenge");
    // The code was not spent by the refused attempts: it answers a2's own challenge.
    let (st, v) = verify(&node, &a2, &a2.challenge(), &code, false).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["session"]["state"], "verified");
    assert_eq!(v["session"]["method"], "totp");
    assert!(v["session"]["verified_at_ms"].as_u64().unwrap() > 0);
    assert_eq!(ws_auth_frame(&node, &a2.token).await, "ready");
    // The same code again, for another session: refused (each code once per user).
    let (st, v) = verify(&node, &a3, &a3.challenge(), &code, false).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_code")), "replayed code");

    // The session list shows every session's MFA state.
    let (st, l) = call(&node, "GET", "/v1/sessions", Some(&a2.token), None).await;
    assert_eq!(st, 200);
    let state_of = |id: &str| {
        l["sessions"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["mfa"]["state"].clone()
    };
    assert_eq!(state_of(&a2.id), "verified");
    assert_eq!(state_of(&a3.id), "mfa_pending");

    // A backup code works exactly once.
    let body = json!({"challenge_id": a3.challenge(), "code": backup[0]});
    let (st, v) = call(&node, "POST", "/v1/mfa/backup", Some(&a3.token), Some(body)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["session"]["method"], "backup");
    let a4 = login(&node, "alice", None, None).await;
    let body = json!({"challenge_id": a4.challenge(), "code": backup[0]});
    let (st, v) = call(&node, "POST", "/v1/mfa/backup", Some(&a4.token), Some(body)).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_code")), "a used backup code");
    let body = json!({"challenge_id": a4.challenge(), "code": backup[1].to_uppercase()});
    let (st, _) = call(&node, "POST", "/v1/mfa/backup", Some(&a4.token), Some(body)).await;
    assert_eq!(st, 200);
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&a4.token), None).await;
    assert_eq!(s["backup_codes_left"], 8);

    // Regenerating needs a recent verification (a4 just did one) and voids the old set.
    let (st, r) = call(&node, "POST", "/v1/mfa/backup/regenerate", Some(&a4.token), None).await;
    assert_eq!(st, 200, "{r}");
    let a5 = login(&node, "alice", None, None).await;
    let body = json!({"challenge_id": a5.challenge(), "code": backup[2]});
    let (st, _) = call(&node, "POST", "/v1/mfa/backup", Some(&a5.token), Some(body)).await;
    assert_eq!(st, 401, "the old set is void");
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&a4.token), None).await;
    assert_eq!(s["backup_codes_left"], 10);

    // Every MFA action is audited, and no secret or code is in the audit log or the node's log.
    let (st, audit) = call(&node, "GET", "/v1/admin/audit?limit=500", Some(&admin), None).await;
    assert_eq!(st, 200);
    let actions: Vec<String> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["action"], r["result"]))
        .collect();
    for want in [
        "\"mfa.totp.enroll\" \"started\"",
        "\"mfa.totp.confirm\" \"denied\"",
        "\"mfa.totp.confirm\" \"ok\"",
        "\"mfa.challenge\" \"issued\"",
        "\"mfa.verify\" \"ok\"",
        "\"mfa.verify\" \"invalid_challenge\"",
        "\"mfa.verify\" \"denied\"",
        "\"mfa.backup\" \"ok\"",
        "\"mfa.backup\" \"denied\"",
        "\"mfa.backup.regenerate\" \"ok\"",
    ] {
        assert!(actions.iter().any(|a| a == want), "audit lacks {want}: {actions:?}");
    }
    let audit_text = audit.to_string();
    let log = node.log();
    for secret_thing in std::iter::once(secret.to_owned()).chain(backup.iter().cloned()) {
        assert!(!audit_text.contains(&secret_thing), "audit log leaks a secret");
        assert!(!log.contains(&secret_thing), "node log leaks a secret");
    }
    assert!(!audit_text.contains(&code), "audit log leaks a TOTP code");
    // The secret is sealed at rest: the embedded store file does not hold it.
    let raw = std::fs::read(node.data_dir.join("hush.redb")).unwrap();
    let secret_bytes = OtpSecret::from_base32(secret).unwrap();
    assert!(!raw.windows(20).any(|w| w == secret_bytes.expose()), "TOTP secret in clear in the store");
    assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
    let key = std::fs::metadata(node.data_dir.join("mfa.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    assert!(log.contains("generated a new MFA key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixth_failure_locks_and_devices_are_told() {
    let node = Node::start();
    let admin = admin_token(&node).await;
    create_user(&node, &admin, "bob", false).await;
    let b1 = login(&node, "bob", None, None).await;
    let (app, _) = enrol(&node, &b1).await;
    let b2 = login(&node, "bob", None, None).await;
    assert_eq!(b2.state(), "mfa_pending");
    let good = app.current().await;
    let wrong = if good == "123456" { "654321" } else { "123456" };
    for i in 1..=5 {
        let (st, v) = verify(&node, &b2, &b2.challenge(), wrong, false).await;
        assert_eq!((st, v["error"].as_str()), (401, Some("invalid_code")), "failure {i}");
    }
    // The sixth attempt is refused even with the right code: the factor is locked.
    let good = app.current().await;
    let (st, v) = verify(&node, &b2, &b2.challenge(), &good, false).await;
    assert_eq!((st, v["error"].as_str()), (429, Some("mfa_locked")), "{v}");
    // Backup codes share the lock.
    let body = json!({"challenge_id": b2.challenge(), "code": "aaaaa-aaaaa"});
    let (st, _) = call(&node, "POST", "/v1/mfa/backup", Some(&b2.token), Some(body)).await;
    assert_eq!(st, 429);
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&b2.token), None).await;
    assert!(s["locked_until_ms"].as_u64().unwrap() > 0, "{s}");
    // bob's first device heard of every failure, the last one with the lock.
    let evs = events(&node, &b1).await;
    let failed: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            SessionEvent::MfaFailed { session_id, attempts, locked_until_ms } => {
                Some((session_id.clone(), *attempts, *locked_until_ms))
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 5, "{evs:?}");
    assert!(failed.iter().all(|f| f.0 == b2.id));
    assert_eq!(failed.iter().map(|f| f.1).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(failed[..4].iter().all(|f| f.2.is_none()) && failed[4].2.is_some());
    let (_, audit) = call(&node, "GET", "/v1/admin/audit?action=mfa.verify", Some(&admin), None).await;
    let results: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert!(results.contains(&"denied_locked") && results.contains(&"locked"), "{results:?}");
    // An administrator resets bob's MFA: factor and lock go, the pending session is released.
    let (st, _) = call(&node, "DELETE", "/v1/admin/users/bob/mfa", Some(&b2.token), None).await;
    assert_eq!(st, 401, "a pending session is no administrator");
    let (st, _) = call(&node, "DELETE", "/v1/admin/users/bob/mfa", Some(&admin), None).await;
    assert_eq!(st, 204);
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&b2.token), None).await;
    assert_eq!((s["totp_enabled"].as_bool(), s["locked_until_ms"].as_u64()), (Some(false), None), "{s}");
    let (st, _) = call(&node, "GET", "/v1/devices", Some(&b2.token), None).await;
    assert_eq!(st, 200, "released");
    let (st, _) = call(&node, "DELETE", "/v1/admin/users/nobody/mfa", Some(&admin), None).await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_policy_grace_deadline_exemptions_and_enrol_only() {
    let node = Node::start();
    let admin = admin_token(&node).await;
    for u in ["carol", "dave", "erin"] {
        create_user(&node, &admin, u, false).await;
    }
    // carol enrols while MFA is optional, then is exempted: she is never challenged.
    let c1 = login(&node, "carol", None, None).await;
    enrol(&node, &c1).await;
    assert_eq!(login(&node, "carol", None, None).await.state(), "mfa_pending");
    // erin is online before enforcement; her grace starts at the policy change.
    let e1 = login(&node, "erin", None, None).await;
    let (st, v) = put_policy(
        &node,
        &admin,
        json!({"level": "required", "grace_period_secs": 3600, "exempt_users": ["carol"], "exempt_roles": ["admin"]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let c2 = login(&node, "carol", None, None).await;
    assert_eq!(c2.state(), "none", "exempt user not challenged: {:?}", c2.mfa);
    assert!(c2.mfa["enroll_deadline_ms"].is_null());
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&c2.token), None).await;
    assert_eq!((s["exempt"].as_bool(), s["required"].as_bool()), (Some(true), Some(false)));
    // erin's live session got a deadline an hour out, and an event.
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&e1.token), None).await;
    let erin_deadline = s["session"]["enroll_deadline_ms"].as_u64().expect("erin has a deadline");
    let now_ms = now_secs() * 1000;
    assert!(erin_deadline > now_ms + 3_500_000, "{s}");
    // Lowering the grace applies to users already in it: 5 s.
    let (st, _) = put_policy(&node, &admin, json!({"grace_period_secs": 5})).await;
    assert_eq!(st, 200);
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&e1.token), None).await;
    let lowered = s["session"]["enroll_deadline_ms"].as_u64().unwrap();
    assert!(lowered < erin_deadline && lowered <= now_secs() * 1000 + 6_000, "erin's grace was lowered: {s}");
    let evs = events(&node, &e1).await;
    assert!(
        evs.iter().any(|e| matches!(e, SessionEvent::MfaChanged { change } if change == "policy_changed")),
        "{evs:?}"
    );
    // dave logs in inside the grace period: he works, and is told the deadline.
    let d1 = login(&node, "dave", None, None).await;
    assert_eq!(d1.state(), "none");
    let deadline = d1.mfa["enroll_deadline_ms"].as_u64().expect("told the deadline");
    assert!(deadline > now_secs() * 1000 && deadline <= now_secs() * 1000 + 6_000, "{:?}", d1.mfa);
    let (st, _) = call(&node, "GET", "/v1/devices", Some(&d1.token), None).await;
    assert_eq!(st, 200);
    assert_eq!(ws_auth_frame(&node, &d1.token).await, "ready");
    // dave keeps a socket open across his deadline: it is closed when the grace ends.
    let mut live = hush_client::Client::new(node.url())
        .resume(
            serde_json::from_value(json!({"token": d1.token, "session_id": d1.id, "tenant": "default",
                "user": "dave", "device": d1.device, "admin": false, "registration_id": 77}))
            .unwrap(),
        )
        .connect()
        .await
        .unwrap();
    // After the deadline: nothing but enrolment.
    tokio::time::sleep(Duration::from_millis(
        deadline.max(lowered).saturating_sub(now_secs() * 1000) + 1_500,
    ))
    .await;
    let (st, v) = call(&node, "GET", "/v1/devices", Some(&d1.token), None).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("mfa_enrollment_required")), "{v}");
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), live.next_frame())
            .await
            .expect("socket closed in 10 s")
        {
            Ok(ServerFrame::LoggedOut { reason }) => break reason,
            Ok(_) => continue,
            Err(e) => panic!("closed without LoggedOut: {e}"),
        }
    };
    assert_eq!(closed, "mfa_required");
    let (st, _) = ws_header(&node, &d1.token).await;
    assert_eq!(st, 401);
    let (st, v) = call(&node, "GET", "/v1/devices", Some(&e1.token), None).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("mfa_enrollment_required")));
    let d2 = login(&node, "dave", None, None).await;
    assert_eq!(d2.state(), "enroll_required");
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&d2.token), None).await;
    assert_eq!(s["session"]["state"], "enroll_required");
    // Enrolling from the blocked session unblocks it.
    enrol(&node, &d2).await;
    let (st, _) = call(&node, "GET", "/v1/devices", Some(&d2.token), None).await;
    assert_eq!(st, 200);
    // carol stays exempt; the admin (exempt by role) is not blocked either.
    let (st, _) = call(&node, "GET", "/v1/devices", Some(&c2.token), None).await;
    assert_eq!(st, 200);
    let (st, list) = call(&node, "GET", "/v1/admin/users/mfa-status", Some(&admin), None).await;
    assert_eq!(st, 200);
    let row = |u: &str| list["users"].as_array().unwrap().iter().find(|r| r["user"] == u).unwrap().clone();
    assert_eq!(row("dave")["totp_enabled"], true);
    assert_eq!(row("carol")["exempt"], true);
    assert_eq!(row("erin")["required"], true);
    assert_eq!(row("admin")["exempt"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_device_skips_the_challenge_until_expired_or_revoked() {
    let node = Node::start();
    let admin = admin_token(&node).await;
    create_user(&node, &admin, "frank", false).await;
    let f1 = login(&node, "frank", None, None).await;
    let (mut app, _) = enrol(&node, &f1).await;
    let (st, _) = put_policy(&node, &admin, json!({"trusted_device_secs": 8})).await;
    assert_eq!(st, 200);

    // Log device 2 in, verify with "remember this device".
    let remember = |s: Sess, code: String| {
        let node = &node;
        async move {
            let (st, v) = verify(node, &s, &s.challenge(), &code, true).await;
            assert_eq!(st, 200, "{v}");
            v["trusted_device_token"].as_str().unwrap().to_owned()
        }
    };
    let f2 = login(&node, "frank", None, None).await;
    let dev = f2.device;
    let token = remember(f2.clone(), app.fresh().await).await;
    let t = login(&node, "frank", Some(dev), Some(&token)).await;
    assert_eq!((t.state(), t.mfa["method"].as_str()), ("verified", Some("trusted_device")));
    let (st, _) = call(&node, "GET", "/v1/devices", Some(&t.token), None).await;
    assert_eq!(st, 200);
    // A trusted-device login is no step-up.
    let (st, v) = call(&node, "DELETE", "/v1/sessions/others", Some(&t.token), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")));
    // Bound to the device: another device with the same token is challenged; so is a wrong token.
    assert_eq!(login(&node, "frank", Some(1), Some(&token)).await.state(), "mfa_pending");
    assert_eq!(login(&node, "frank", Some(dev), Some("bogus")).await.state(), "mfa_pending");
    let (_, l) = call(&node, "GET", "/v1/mfa/trusted-devices", Some(&t.token), None).await;
    assert_eq!(l["devices"].as_array().unwrap().len(), 1);
    assert_eq!(l["devices"][0]["device"], dev);
    // Expired after 8 s.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let f3 = login(&node, "frank", Some(dev), Some(&token)).await;
    assert_eq!(f3.state(), "mfa_pending", "trust expired");

    // Revoked by the user.
    let token = remember(f3, app.fresh().await).await;
    assert_eq!(login(&node, "frank", Some(dev), Some(&token)).await.state(), "verified");
    let (st, _) =
        call(&node, "DELETE", &format!("/v1/mfa/trusted-devices/{dev}"), Some(&f1.token), None).await;
    assert_eq!(st, 204);
    let f4 = login(&node, "frank", Some(dev), Some(&token)).await;
    assert_eq!(f4.state(), "mfa_pending", "trust revoked");

    // Dropped when every session is revoked.
    let token = remember(f4.clone(), app.fresh().await).await;
    assert_eq!(login(&node, "frank", Some(dev), Some(&token)).await.state(), "verified");
    let (st, _) = call(&node, "DELETE", "/v1/sessions/all", Some(&f4.token), None).await;
    assert_eq!(st, 200);
    let f5 = login(&node, "frank", Some(dev), Some(&token)).await;
    assert_eq!(f5.state(), "mfa_pending", "revoke-all drops the trust");

    // And when an administrator revokes all of the user's sessions.
    let token = remember(f5, app.fresh().await).await;
    assert_eq!(login(&node, "frank", Some(dev), Some(&token)).await.state(), "verified");
    let (st, _) = call(&node, "DELETE", "/v1/admin/users/frank/sessions", Some(&admin), None).await;
    assert_eq!(st, 200);
    assert_eq!(login(&node, "frank", Some(dev), Some(&token)).await.state(), "mfa_pending");
    let (_, audit) = call(&node, "GET", "/v1/admin/audit?action=mfa.trust.add", Some(&admin), None).await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 4);
    assert!(!audit.to_string().contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_up_window_and_pending_admin() {
    let node = Node::start();
    let admin = admin_token(&node).await;
    create_user(&node, &admin, "gina", false).await;
    create_user(&node, &admin, "boss", true).await;
    // With MFA optional and nobody enrolled, revocations need no step-up (as before MFA).
    let g0 = login(&node, "gina", None, None).await;
    let g1 = login(&node, "gina", None, None).await;
    let (st, _) = call(&node, "DELETE", "/v1/sessions/others", Some(&g1.token), None).await;
    assert_eq!(st, 200);
    let (st, _) = call(&node, "GET", "/v1/devices", Some(&g0.token), None).await;
    assert_eq!(st, 401, "revoked");
    let (st, _) = put_policy(&node, &admin, json!({"step_up_window_secs": 5})).await;
    assert_eq!(st, 200);

    // gina enrols (a verification), and may revoke her other sessions right away...
    let (mut app, _) = enrol(&node, &g1).await;
    let g2 = login(&node, "gina", None, None).await;
    let (st, v) = call(&node, "DELETE", &format!("/v1/sessions/{}", g2.id), Some(&g1.token), None).await;
    assert_eq!(st, 200, "{v}");
    // ...but not once the verification is older than the window.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (st, v) = call(&node, "DELETE", "/v1/sessions/others", Some(&g1.token), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")));
    let (st, v) = call(&node, "DELETE", "/v1/mfa/totp", Some(&g1.token), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")), "disabling needs a step-up");
    // A step-up: challenge, verify, then the action.
    let (st, c) = call(&node, "POST", "/v1/mfa/challenge", Some(&g1.token), None).await;
    assert_eq!(st, 200, "{c}");
    let code = app.fresh().await;
    let (st, _) = verify(&node, &g1, c["challenge_id"].as_str().unwrap(), &code, false).await;
    assert_eq!(st, 200);
    let (st, _) = call(&node, "DELETE", "/v1/sessions/others", Some(&g1.token), None).await;
    assert_eq!(st, 200);
    let (st, _) = call(&node, "DELETE", "/v1/mfa/totp", Some(&g1.token), None).await;
    assert_eq!(st, 204, "disabled after a fresh verification");
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&g1.token), None).await;
    assert_eq!(s["totp_enabled"], false);
    assert_eq!(login(&node, "gina", None, None).await.state(), "none");

    // An administrator with MFA: a pending session reaches no admin route.
    let b1 = login(&node, "boss", None, None).await;
    let (mut boss_app, _) = enrol(&node, &b1).await;
    let b2 = login(&node, "boss", None, None).await;
    assert_eq!(b2.state(), "mfa_pending");
    for (m, path) in [("GET", "/v1/admin/users"), ("GET", "/v1/admin/tenant/mfa"), ("GET", "/v1/admin/audit")]
    {
        let (st, v) = call(&node, m, path, Some(&b2.token), None).await;
        assert_eq!((st, v["error"].as_str()), (401, Some("mfa_required")), "{path}");
    }
    let (st, v) = call(&node, "DELETE", "/v1/admin/sessions/active", Some(&b2.token), None).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("mfa_required")));
    // A verified administrator whose verification is older than the window: no policy change, no
    // admin revocation.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (st, v) = put_policy(&node, &b1.token, json!({"level": "required"})).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")), "{v}");
    let (st, v) =
        call(&node, "DELETE", &format!("/v1/admin/sessions/{}", g1.id), Some(&b1.token), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")));
    let (st, v) = call(&node, "POST", "/v1/admin/mfa/enforce-all", Some(&b1.token), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")));
    let (_, c) = call(&node, "POST", "/v1/mfa/challenge", Some(&b1.token), None).await;
    let code = boss_app.fresh().await;
    let (st, _) = verify(&node, &b1, c["challenge_id"].as_str().unwrap(), &code, false).await;
    assert_eq!(st, 200);
    let (st, v) = call(&node, "POST", "/v1/admin/users/gina/mfa/enforce", Some(&b1.token), None).await;
    assert_eq!(st, 200, "{v}");
    let g3 = login(&node, "gina", None, None).await;
    assert!(g3.mfa["enroll_deadline_ms"].as_u64().is_some(), "enforced on gina: {:?}", g3.mfa);
    let (st, _) =
        call(&node, "DELETE", &format!("/v1/admin/sessions/{}", g3.id), Some(&b1.token), None).await;
    assert_eq!(st, 200);
    let (_, audit) = call(&node, "GET", "/v1/admin/audit?action=mfa.step_up", Some(&b1.token), None).await;
    assert!(audit["records"].as_array().unwrap().len() >= 5, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_accepted_once_across_the_cluster() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let a = Node::start_clustered(&redis, &mongo, "node-a");
    let mut b = Node::start_clustered(&redis, &mongo, "node-b");
    b.admin_password = a.admin_password.clone();
    let admin = admin_token(&a).await;
    create_user(&a, &admin, "hank", false).await;
    let h0 = login(&a, "hank", None, None).await;
    let (app, _) = enrol(&a, &h0).await;
    // Two pending sessions, one per node; the same code sent to both at once.
    let on_a = login(&a, "hank", None, None).await;
    let on_b = login(&b, "hank", None, None).await;
    assert_eq!((on_a.state(), on_b.state()), ("mfa_pending", "mfa_pending"));
    let code = app.current().await;
    let (ca, cb) = (on_a.challenge(), on_b.challenge());
    let (ra, rb) = tokio::join!(verify(&a, &on_a, &ca, &code, false), verify(&b, &on_b, &cb, &code, false));
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "exactly one node accepts the code: {ra:?} {rb:?}");
    // Replayed on the node that refused, and on the one that accepted, with new sessions.
    for node in [&a, &b] {
        let s = login(node, "hank", None, None).await;
        let (st, v) = verify(node, &s, &s.challenge(), &code, false).await;
        assert_eq!((st, v["error"].as_str()), (401, Some("invalid_code")));
    }
    // The verified session works on both nodes; the refused one still works on neither.
    let (winner, loser) = if ra.0 == 200 { (&on_a, &on_b) } else { (&on_b, &on_a) };
    for node in [&a, &b] {
        let (st, _) = call(node, "GET", "/v1/devices", Some(&winner.token), None).await;
        assert_eq!(st, 200);
        let (st, _) = call(node, "GET", "/v1/devices", Some(&loser.token), None).await;
        assert_eq!(st, 401);
    }
    let mut conn = hush_client::Client::new(b.url())
        .resume(
            serde_json::from_value(
                json!({"token": winner.token, "session_id": winner.id, "tenant": "default",
                "user": "hank", "device": winner.device, "admin": false, "registration_id": 77}),
            )
            .unwrap(),
        )
        .connect()
        .await
        .unwrap();
    assert!(matches!(next(&mut conn).await, ServerFrame::Ready { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_reaches_live_sessions() {
    let node = Node::start();
    let admin = admin_token(&node).await;
    create_user(&node, &admin, "ivy", false).await;
    let i1 = login(&node, "ivy", None, None).await;
    enrol(&node, &i1).await;
    // MFA off: nobody is challenged; ivy's factor stays (it serves step-ups only now), so a new
    // enrolment is refused as for any enrolled user.
    let (st, _) = put_policy(&node, &admin, json!({"level": "off"})).await;
    assert_eq!(st, 200);
    let i2 = login(&node, "ivy", None, None).await;
    assert_eq!(i2.state(), "none");
    let (st, v) = call(&node, "POST", "/v1/mfa/totp/enroll", Some(&i2.token), None).await;
    assert_eq!((st, v["error"].as_str()), (409, Some("mfa_already_enrolled")));
    let mut live = hush_client::Client::new(node.url())
        .resume(
            serde_json::from_value(json!({"token": i2.token, "session_id": i2.id, "tenant": "default",
                "user": "ivy", "device": i2.device, "admin": false, "registration_id": 77}))
            .unwrap(),
        )
        .connect()
        .await
        .unwrap();
    drain_all(&mut live).await;
    // Back to optional: ivy has TOTP, so her unverified live session must pass a challenge now.
    let (st, _) = put_policy(&node, &admin, json!({"level": "optional"})).await;
    assert_eq!(st, 200);
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(10), live.next_frame()).await.expect("closed in 10 s")
        {
            Ok(ServerFrame::LoggedOut { reason }) => break reason,
            Ok(_) => continue,
            Err(e) => panic!("closed without LoggedOut: {e}"),
        }
    };
    assert_eq!(reason, "mfa_required");
    let (st, v) = call(&node, "GET", "/v1/devices", Some(&i2.token), None).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("mfa_required")));
    let (_, s) = call(&node, "GET", "/v1/mfa/status", Some(&i2.token), None).await;
    assert!(s["session"]["challenge"]["challenge_id"].is_string(), "{s}");
    // The verified session is untouched, and ivy's devices were told.
    let (st, _) = call(&node, "GET", "/v1/devices", Some(&i1.token), None).await;
    assert_eq!(st, 200);
    let evs = events(&node, &i1).await;
    assert!(
        evs.iter().any(|e| matches!(e, SessionEvent::MfaChanged { change } if change == "policy_changed")),
        "{evs:?}"
    );
    let (_, audit) = call(&node, "GET", "/v1/admin/audit?action=mfa.policy.update", Some(&admin), None).await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 2);
}

/// A password alone changes no device: a login that must pass a challenge neither adds a
/// device nor re-keys one (new identity key, registration id, pre-keys deleted) until its
/// session verifies; then exactly the change it asked for is applied.
#[tokio::test]
async fn a_pending_login_changes_no_device_until_verified() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let identity = |seed: u8| {
        let private = hush_protocol::e2e::keys::PrivateKey::deserialize(&[seed; 32]).unwrap();
        private.public_key().serialize().to_vec()
    };
    let node = Node::start();
    let admin = admin_token(&node).await;
    create_user(&node, &admin, "dora", false).await;
    // Device 1 registers with an identity key.
    let body = json!({"tenant": "default", "user": "dora", "password": "dora-password",
        "device": {"registration_id": 77, "identity_key": b64(&identity(1))}});
    let (st, v) = call(&node, "POST", "/v1/login", None, Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let d1 = Sess {
        token: v["token"].as_str().unwrap().to_owned(),
        id: v["session_id"].as_str().unwrap().to_owned(),
        device: 1,
        mfa: v["mfa"].clone(),
    };
    let (mut app, _) = enrol(&node, &d1).await;
    let devices = |who: String| {
        let node = &node;
        async move {
            let (st, v) = call(node, "GET", "/v1/devices", Some(&who), None).await;
            assert_eq!(st, 200, "{v}");
            v["devices"].as_array().unwrap().clone()
        }
    };
    let before = devices(d1.token.clone()).await;
    assert_eq!(before.len(), 1);

    // Re-key device 1 with a password only: pending, nothing changes.
    let body = json!({"tenant": "default", "user": "dora", "password": "dora-password",
        "device": {"id": 1, "registration_id": before[0]["registration_id"], "identity_key": b64(&identity(9))}});
    let (st, rekey) = call(&node, "POST", "/v1/login", None, Some(body)).await;
    assert_eq!(st, 200, "{rekey}");
    assert_eq!(rekey["mfa"]["state"], "mfa_pending");
    // Add a device with a password only: pending, not added.
    let added = login(&node, "dora", None, None).await;
    assert_eq!(added.state(), "mfa_pending");
    assert_eq!(added.device, 2);
    // A second pending new device gets another id.
    let added2 = login(&node, "dora", None, None).await;
    assert_eq!(added2.device, 3);
    assert_eq!(devices(d1.token.clone()).await, before, "a pending login changed the device set");

    // The re-keying session verifies: now the identity and registration id change.
    let rk = Sess {
        token: rekey["token"].as_str().unwrap().to_owned(),
        id: rekey["session_id"].as_str().unwrap().to_owned(),
        device: 1,
        mfa: rekey["mfa"].clone(),
    };
    let code = app.fresh().await;
    let (st, v) = verify(&node, &rk, &rk.challenge(), &code, false).await;
    assert_eq!(st, 200, "{v}");
    let after = devices(d1.token.clone()).await;
    assert_eq!(after.len(), 1);
    assert_ne!(after[0]["registration_id"], before[0]["registration_id"]);
    assert_eq!(after[0]["registration_id"], rekey["registration_id"]);
    assert_eq!(after[0]["identity_key"], json!(b64(&identity(9))), "{after:?}");
    // The new device's session verifies: device 2 appears.
    let code = app.fresh().await;
    let (st, v) = verify(&node, &added, &added.challenge(), &code, false).await;
    assert_eq!(st, 200, "{v}");
    let ids: Vec<u64> = devices(d1.token.clone()).await.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2]);
    let code = app.fresh().await;
    let (st, v) = verify(&node, &added2, &added2.challenge(), &code, false).await;
    assert_eq!(st, 200, "{v}");
    let ids: Vec<u64> = devices(d1.token.clone()).await.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
}

/// With no grace period, the login itself already says `enroll_required` (its own grace period
/// starts and ends during the login): the client is never told `none` and then refused.
#[tokio::test]
async fn with_no_grace_period_the_login_itself_says_enrolment_is_required() {
    let node = Node::start();
    let admin = admin_token(&node).await;
    let (st, v) = put_policy(&node, &admin, json!({"level": "required", "grace_period_secs": 0})).await;
    assert_eq!(st, 200, "{v}");
    for i in 0..8 {
        let user = format!("nograce{i}");
        create_user(&node, &admin, &user, false).await;
        let s = login(&node, &user, None, None).await;
        assert_eq!(s.mfa["state"], "enroll_required", "login {i}: {}", s.mfa);
    }
}
