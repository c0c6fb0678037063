//! Session lifetimes against a real node: the tenant's session policy (admin only, validated,
//! audited), last-seen and expiry in the listings, the idle limit (activity keeps a session
//! alive; silence ends it with `session_expired`), and the absolute limit ending a live socket
//! with `LoggedOut {reason: "expired"}` and 4401, with the user's other devices told.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hush_client::Session;
use hush_protocol::wire::{ServerFrame, SessionEvent};
use hush_tests::{drain, drain_all, Node};
use serde_json::{json, Value};

async fn call(node: &Node, method: &str, path: &str, who: &Session, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{}{path}", node.url());
    let mut rb = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        m => panic!("{m}"),
    };
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.bearer_auth(who.login_info().token.expose()).send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn policy(idle: Option<u64>, absolute: Option<u64>) -> Value {
    json!({ "idle_timeout_s": idle, "absolute_timeout_s": absolute,
            "admin_idle_timeout_s": 1800, "admin_absolute_timeout_s": 43200 })
}

#[tokio::test]
async fn policy_routes_are_admin_only_validated_and_audited() {
    let node = Node::start();
    // Stepped up: changing the session policy is guarded (docs/mfa.md, "Step-up").
    let admin = node.stepped_admin().await;
    let alice = node.user(&admin, "alice").await;

    // Defaults: members live until revoked; administrators 30 min idle, 12 h absolute.
    let (st, p) = call(&node, "GET", "/v1/admin/tenant/sessions", &admin, None).await;
    assert_eq!(st, 200);
    assert_eq!(p, policy(None, None));
    // A member gets 403 on both.
    assert_eq!(call(&node, "GET", "/v1/admin/tenant/sessions", &alice, None).await.0, 403);
    assert_eq!(
        call(&node, "PUT", "/v1/admin/tenant/sessions", &alice, Some(policy(Some(5), None))).await.0,
        403
    );
    // Out-of-range limits are refused with a typed error and change nothing.
    for bad in [policy(Some(0), None), policy(None, Some(400 * 24 * 3600))] {
        let (st, body) = call(&node, "PUT", "/v1/admin/tenant/sessions", &admin, Some(bad)).await;
        assert_eq!((st, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    }
    let (st, body) =
        call(&node, "PUT", "/v1/admin/tenant/sessions", &admin, Some(json!({"idle_timeout_s": "x"}))).await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(call(&node, "GET", "/v1/admin/tenant/sessions", &admin, None).await.1, policy(None, None));
    // A valid change is stored and read back.
    let (st, p) =
        call(&node, "PUT", "/v1/admin/tenant/sessions", &admin, Some(policy(Some(600), Some(86400)))).await;
    assert_eq!((st, p.clone()), (200, policy(Some(600), Some(86400))));
    assert_eq!(call(&node, "GET", "/v1/admin/tenant/sessions", &admin, None).await.1, p);
    // The listing shows last activity and the expiry the policy gives.
    let (_, list) = call(&node, "GET", "/v1/sessions", &alice, None).await;
    let s = &list["sessions"][0];
    let (created, seen, expires) = (
        s["created_ms"].as_u64().unwrap(),
        s["last_seen_ms"].as_u64().unwrap(),
        s["expires_ms"].as_u64().unwrap(),
    );
    assert!(seen >= created, "{s}");
    assert_eq!(expires, (seen + 600_000).min(created + 86_400_000), "{s}");
    // Audited: the refused attempts and the change, with the acting admin.
    let (_, audit) = call(&node, "GET", "/v1/admin/audit?action=tenant.session_policy", &admin, None).await;
    let results: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["ok", "refused", "refused"], "{audit}");
    assert_eq!(audit["records"][0]["actor"], "admin");
}

#[tokio::test]
async fn idle_limit_ends_silent_sessions_only() {
    let node = Node::start();
    // Stepped up: changing the session policy is guarded (docs/mfa.md, "Step-up").
    let admin = node.stepped_admin().await;
    let busy = node.user(&admin, "busy").await;
    let quiet = node.user(&admin, "quiet").await;
    let quiet2 = node.device("quiet").await;
    let (st, _) = call(&node, "PUT", "/v1/admin/tenant/sessions", &admin, Some(policy(Some(4), None))).await;
    assert_eq!(st, 200);
    // `busy` makes a request every second for 7 s: never 4 s idle, never expired.
    for _ in 0..7 {
        assert_eq!(call(&node, "GET", "/v1/devices", &busy, None).await.0, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // `quiet`'s device 1 was silent all along (its device 2 too, but device 2 comes back first
    // and is refused as well).
    let (st, body) = call(&node, "GET", "/v1/devices", &quiet2, None).await;
    assert_eq!((st, body["error"].as_str()), (401, Some("session_expired")), "{body}");
    let (st, body) = call(&node, "GET", "/v1/devices", &quiet, None).await;
    assert_eq!((st, body["error"].as_str()), (401, Some("session_expired")), "{body}");
    // Expired means revoked: refused over the WebSocket too, gone from the lists, audited.
    assert!(quiet.connect().await.is_err());
    let (_, list) = call(&node, "GET", "/v1/admin/users/quiet/sessions", &admin, None).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 0, "{list}");
    let (_, audit) = call(&node, "GET", "/v1/admin/audit?action=session.expire", &admin, None).await;
    let recs = audit["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{audit}");
    assert!(recs.iter().all(|r| r["result"] == "idle" && r["actor"].is_null()), "{audit}");
    // The still-active session is untouched.
    assert_eq!(call(&node, "GET", "/v1/devices", &busy, None).await.0, 200);
}

#[tokio::test]
async fn absolute_limit_closes_live_socket_and_tells_other_devices() {
    let node = Node::start();
    // Stepped up: changing the session policy is guarded (docs/mfa.md, "Step-up").
    let admin = node.stepped_admin().await;
    let (st, _) = call(&node, "PUT", "/v1/admin/tenant/sessions", &admin, Some(policy(None, Some(3)))).await;
    assert_eq!(st, 200);
    let carol = node.user(&admin, "carol").await;
    let mut c1 = carol.connect().await.unwrap();
    drain(&mut c1).await;
    // A second device logs in but stays offline (nothing checks its session meanwhile).
    let carol2 = node.device("carol").await;
    // Within a few seconds of the limit the socket gets LoggedOut{expired}, then 4401.
    let mut frames = Vec::new();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), c1.next_frame())
            .await
            .unwrap_or_else(|_| panic!("no close: {}", node.log()))
        {
            Ok(f) => frames.push(f),
            Err(e) => break e.to_string(),
        }
    };
    assert!(frames.contains(&ServerFrame::LoggedOut { reason: "expired".into() }), "{frames:?}");
    assert!(closed.contains("4401"), "{closed}");
    assert_eq!(call(&node, "GET", "/v1/devices", &carol, None).await.0, 401);
    // With the limit lifted, the second device connects and hears, reliably, about the
    // expired session.
    let (st, _) = call(&node, "PUT", "/v1/admin/tenant/sessions", &admin, Some(policy(None, None))).await;
    assert_eq!(st, 200);
    let mut c2 = carol2.connect().await.unwrap();
    let events: Vec<SessionEvent> = drain_all(&mut c2).await.into_iter().filter_map(|e| e.event).collect();
    let expired_id = carol.login_info().session_id.clone();
    assert!(
        events.iter().any(|e| matches!(e, SessionEvent::SessionRevoked { session_id, reason, .. }
            if *session_id == expired_id && reason == "expired")),
        "{events:?}"
    );
    let (_, audit) = call(&node, "GET", "/v1/admin/audit?action=session.expire", &admin, None).await;
    assert_eq!(audit["records"][0]["result"], "absolute", "{audit}");
}

/// Last-seen times are recorded in memory and written in batches (every second, and at a
/// graceful stop): a request's activity survives a restart that follows it at once.
#[tokio::test]
async fn last_seen_survives_a_graceful_restart() {
    let mut node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    // Activity well after the login, so the recorded time cannot be the session's creation.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(call(&node, "GET", "/v1/devices", &alice, None).await.0, 200);
    let (_, list) = call(&node, "GET", "/v1/sessions", &alice, None).await;
    let s = list["sessions"][0].clone();
    let (id, created, seen) =
        (s["id"].clone(), s["created_ms"].as_u64().unwrap(), s["last_seen_ms"].as_u64().unwrap());
    assert!(seen >= created + 1_500, "{s}");
    assert!(node.terminate(), "graceful stop");
    node.restart();
    let admin = node.admin().await;
    let (st, list) = call(&node, "GET", "/v1/admin/users/alice/sessions", &admin, None).await;
    assert_eq!(st, 200, "{list}");
    let after = list["sessions"].as_array().unwrap().iter().find(|x| x["id"] == id).cloned().unwrap();
    assert_eq!(after["last_seen_ms"].as_u64(), Some(seen), "{after}");
}
