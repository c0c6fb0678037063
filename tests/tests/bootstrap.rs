//! A safe bootstrap: a start that cannot listen creates nothing; the bootstrap password is
//! one-time (a login with it may only set a new password); `hushd admin reset-password` on a
//! stopped node's data folder and on MongoDB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use hush_client::ClientError;
use hush_protocol::api::Secret;
use hush_tests::{bin, login, login_one_time, settled_password, try_login, Mongo, Node, Redis};
use serde_json::{json, Value};

async fn call(node: &Node, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{}{path}", node.url());
    let rb = match method {
        "GET" => c.get(url),
        "POST" => c.post(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        m => panic!("method {m}"),
    };
    let rb = rb.bearer_auth(token);
    let rb = match body {
        Some(b) => rb.json(&b),
        None => rb,
    };
    let r = rb.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn status_of(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Http { status, body } => (status, body.error),
        e => panic!("not an HTTP error: {e}"),
    }
}

#[tokio::test]
async fn a_start_that_cannot_listen_creates_nothing_and_the_next_one_is_a_first_run() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(bin("hushd"))
        .args(["--listen", &addr, "--data-dir"])
        .arg(&data)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "started on a taken port: {stdout}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert!(!stdout.contains("One-time password"), "no credentials shown: {stdout}");
    assert!(!data.exists(), "nothing created: {:?}", std::fs::read_dir(&data).map(|d| d.count()));
    drop(taken);
    // The next start, on a free port, is a normal first run that shows the password.
    let node = Node::start_in(&data, None);
    assert!(node.admin_password.is_some(), "first run shows the one-time password");
    let _admin = node.admin().await;
}

#[tokio::test]
async fn the_bootstrap_password_is_one_time() {
    let node = Node::start();
    let pw = node.admin_password.clone().unwrap();
    let client = node.client();
    let first = login(&client, "default", "admin", &pw).await;
    assert!(first.login_info().password_change_required);
    // It served its login: a second login with it is refused, before and after the change,
    // with a message that says so (and what to do), and nothing is created.
    let e = try_login(&client, "default", "admin", &pw).await.unwrap_err();
    let (status, body) = status_of(e);
    assert_eq!((status, body.as_str()), (401, "one_time_password_used"));
    let token = first.login_info().token.expose().to_owned();

    // Every documented route but login, logout, the password change, the MFA routes and the
    // operations endpoints answers 403 password_change_required.
    let doc: Value =
        reqwest::get(format!("{}/openapi.json", node.url())).await.unwrap().json().await.unwrap();
    let mut checked = 0;
    let mut bad = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let open =
            ["/v1/login", "/v1/logout", "/v1/account/password", "/v1/ws", "/healthz", "/readyz", "/metrics"];
        if open.contains(&path.as_str()) || path.starts_with("/v1/mfa/") {
            continue;
        }
        let filled: String = path
            .split('/')
            .map(|seg| match seg {
                "{device}" | "{id}" if path.contains("devices") || path.contains("keys") => "2",
                s if s.starts_with('{') => "x1",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            // Well-formed bodies, so that only the session decides the answer.
            let body = match (method.as_str(), filled.as_str()) {
                ("post", "/v1/admin/users") => {
                    Some(json!({"user": "x1", "password": "password-1", "admin": false}))
                }
                ("post", "/v1/groups") => Some(json!({"name": "g"})),
                ("post", "/v1/groups/x1/members") => Some(json!({"users": ["admin"]})),
                ("put", "/v1/admin/tenant/mfa") => Some(json!({"level": "optional", "grace_period_secs": 60,
                    "exempt_users": [], "exempt_roles": [], "totp_algorithm": "SHA1", "totp_digits": 6,
                    "trusted_device_days": 0, "step_up_window_secs": 300})),
                ("post" | "put", _) => Some(json!({})),
                _ => None,
            };
            let (st, v) = call(&node, &method.to_uppercase(), &filled, &token, body).await;
            if (st, v["error"].as_str()) != (403, Some("password_change_required")) {
                bad.push(format!("{method} {filled}: {st} {v}"));
            }
            checked += 1;
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(checked >= 20, "only {checked} routes checked");
    // The socket is refused (before the upgrade).
    match first.connect().await {
        Err(e) => assert_eq!(status_of(e), (403, "password_change_required".into())),
        Ok(_) => panic!("socket opened for a one-time-password session"),
    }
    // The password change: wrong current password, too short, the same one: refused, nothing changed.
    let new = Secret::new("a-new-admin-password");
    let e = first.change_password(&Secret::new("not-the-password"), &new).await.unwrap_err();
    assert_eq!(status_of(e), (403, "wrong_password".into()));
    let e = first.change_password(&Secret::new(&pw), &Secret::new("short")).await.unwrap_err();
    assert_eq!(status_of(e), (400, "invalid_request".into()));
    let e = first.change_password(&Secret::new(&pw), &Secret::new(&pw)).await.unwrap_err();
    assert_eq!(status_of(e), (400, "invalid_request".into()));
    let (st, _) = call(&node, "GET", "/v1/devices", first.login_info().token.expose(), None).await;
    assert_eq!(st, 403, "still restricted");

    first.change_password(&Secret::new(&pw), &new).await.unwrap();
    // This session works now; the one-time password is dead.
    first.devices(None).await.unwrap();
    let _conn = first.connect().await.unwrap();
    let e = try_login(&client, "default", "admin", &pw).await.unwrap_err();
    assert_eq!(status_of(e).0, 401, "the one-time password works no more");
    let again = login(&client, "default", "admin", new.expose()).await;
    assert!(!again.login_info().password_change_required);
    // Audited.
    let audit =
        call(&node, "GET", "/v1/admin/audit?action=password.change", again.login_info().token.expose(), None)
            .await
            .1;
    let results: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["ok", "denied"], "{audit}");
    assert!(
        !audit.to_string().contains(&pw) && !node.log().contains(&pw) && !node.log().contains(new.expose())
    );

    // Any user can change their password; their other sessions are revoked.
    let alice = node.user(&again, "alice").await;
    let alice2 = node.device("alice").await;
    alice.change_password(&Secret::new("alice-password"), &Secret::new("alice-password-2")).await.unwrap();
    assert_eq!(status_of(alice2.devices(None).await.unwrap_err()).0, 401);
    alice.devices(None).await.unwrap();
    let _ = login(&client, "default", "alice", "alice-password-2").await;
}

fn hushd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("hushd")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn one_time_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("One-time password (shown only now): "))
        .unwrap_or_else(|| panic!("no password in {stdout}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn reset_password_on_a_stopped_nodes_data_folder() {
    let mut node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let data = node.data_dir.display().to_string();
    // While the node runs, the embedded store is its own: refused with a clear message.
    let (ok, _, err) =
        hushd(&["admin", "reset-password", "--tenant", "default", "--user", "alice", "--data-dir", &data]);
    assert!(!ok);
    assert!(err.contains("stop it first"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    alice.devices(None).await.unwrap();
    assert!(node.terminate());
    let (ok, _, err) =
        hushd(&["admin", "reset-password", "--tenant", "default", "--user", "nobody", "--data-dir", &data]);
    assert!(!ok && err.contains("no user nobody"), "{err}");
    let (ok, out, err) =
        hushd(&["admin", "reset-password", "--tenant", "default", "--user", "alice", "--data-dir", &data]);
    assert!(ok, "{err}");
    let pw = one_time_of(&out);
    node.restart();
    let client = node.client();
    assert_eq!(status_of(alice.devices(None).await.unwrap_err()).0, 401, "sessions revoked");
    let e = try_login(&client, "default", "alice", "alice-password").await.unwrap_err();
    assert_eq!(status_of(e).0, 401, "the old password is dead");
    let s = login_one_time(&client, "default", "alice", &pw).await;
    s.devices(None).await.unwrap();
    let admin = node.admin().await;
    let audit =
        call(&node, "GET", "/v1/admin/audit?action=password.reset", admin.login_info().token.expose(), None)
            .await
            .1;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["records"][0]["target"], "user:alice");
    let _ = login(&client, "default", "alice", &settled_password(&pw)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_password_on_mongodb_unlocks_a_locked_out_administrator() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let flags = ["--login-free-failures", "1", "--login-lock-failures", "2"];
    let node = Node::start_clustered_args(&redis, &mongo, "node-a", &flags);
    let admin = node.admin().await;
    let conn = admin.connect().await.unwrap();
    drop(conn);
    // Two wrong passwords lock the administrator (the second after the 1 s delay).
    let client = node.client();
    let wrong = || async {
        reqwest::Client::new()
            .post(format!("{}/v1/login", node.url()))
            .json(&json!({"tenant": "default", "user": "admin", "password": "wrong-password", "device": {"registration_id": 7}}))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(wrong().await.status().as_u16(), 401);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(wrong().await.status().as_u16(), 401);
    let r = wrong().await;
    assert_eq!(r.status().as_u16(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "account_locked", "{v}");
    // The way back in, while the node runs: a new one-time password on the shared store.
    let pw_now = node.admin_password.clone().unwrap();
    let (ok, out, err) = hushd(&[
        "admin",
        "reset-password",
        "--tenant",
        "default",
        "--user",
        "admin",
        "--mongodb-url",
        &mongo.url,
        "--mongodb-database",
        &mongo.database,
        "--redis-url",
        &redis.url(),
    ]);
    assert!(ok, "{err}");
    let pw = one_time_of(&out);
    assert_ne!(pw, pw_now);
    assert_eq!(status_of(admin.devices(None).await.unwrap_err()).0, 401, "the old sessions are revoked");
    let back = login_one_time(&client, "default", "admin", &pw).await;
    back.list_users().await.unwrap();
    let audit =
        call(&node, "GET", "/v1/admin/audit?action=password.reset", back.login_info().token.expose(), None)
            .await
            .1;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1, "{audit}");
    let locks =
        call(&node, "GET", "/v1/admin/audit?action=account.lock", back.login_info().token.expose(), None)
            .await
            .1;
    assert_eq!(locks["records"].as_array().unwrap().len(), 1, "{locks}");
}
