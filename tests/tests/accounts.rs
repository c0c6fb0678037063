//! Accounts over HTTP against a real node: login, logout, the single 401, authorization,
//! device limits, typed errors, and the operability routes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_client::ClientError;
use hush_protocol::api::{DeviceRequest, Secret};
use hush_protocol::ids::{DeviceId, RegistrationId, TenantId, UserId};
use hush_tests::{login, Node};
use serde_json::{json, Value};

async fn post(node: &Node, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .post(format!("{}{path}", node.url()))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(node: &Node, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut rb = reqwest::Client::new().get(format!("{}{path}", node.url()));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn login_body(tenant: &str, user: &str, pw: &str) -> String {
    json!({"tenant": tenant, "user": user, "password": pw, "device": {"registration_id": 77}}).to_string()
}

#[tokio::test]
async fn login_logout_and_single_unauthorized_answer() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let token = alice.login_info().token.expose().to_owned();

    // The token works until logout, then is refused over HTTP and WebSocket.
    let (st, body) = get(&node, "/v1/devices", Some(&token)).await;
    assert_eq!(st, 200);
    assert_eq!(body["devices"].as_array().unwrap().len(), 1);
    let conn = alice.connect().await.unwrap();
    drop(conn);
    alice.logout().await.unwrap();
    let (st, body) = get(&node, "/v1/devices", Some(&token)).await;
    assert_eq!(st, 401);
    assert_eq!(body["error"], "unauthorized");
    match alice.connect().await {
        Err(ClientError::Http { status: 401, .. }) => {}
        other => panic!("revoked token opened a socket: {:?}", other.map(|_| ())),
    }
    // A second logout with the same token is refused too.
    assert!(matches!(alice.logout().await, Err(ClientError::Http { status: 401, .. })));

    // Unknown user, wrong password and unknown tenant all get the same answer.
    let a = post(&node, "/v1/login", &login_body("default", "nobody", "whatever-pw"), None).await;
    let b = post(&node, "/v1/login", &login_body("default", "alice", "wrong-password"), None).await;
    let c = post(&node, "/v1/login", &login_body("elsewhere", "alice", "alice-password"), None).await;
    assert_eq!(a.0, 401);
    assert_eq!(a, b);
    assert_eq!(a, c);
    // The right password still works.
    let d = post(&node, "/v1/login", &login_body("default", "alice", "alice-password"), None).await;
    assert_eq!(d.0, 200, "{:?}", d.1);
    assert_eq!(d.1["user"], "alice");
    // The node's log has no password or token.
    let log = node.log();
    assert!(!log.contains("alice-password") && !log.contains(&token), "secret in log");
}

#[tokio::test]
async fn authorization_and_typed_errors() {
    let node = Node::start();
    let admin = node.admin().await;
    let bob = node.user(&admin, "bob").await;
    let bob_token = bob.login_info().token.expose().to_owned();
    let admin_token = admin.login_info().token.expose().to_owned();

    // Non-admins get 403 on admin routes; nothing is created.
    let (st, body) =
        post(&node, "/v1/admin/users", r#"{"user":"eve","password":"eve-password"}"#, Some(&bob_token)).await;
    assert_eq!(st, 403);
    assert_eq!(body["error"], "forbidden");
    assert_eq!(get(&node, "/v1/admin/users", Some(&bob_token)).await.0, 403);
    let (_, users) = get(&node, "/v1/admin/users", Some(&admin_token)).await;
    let names: Vec<&str> =
        users["users"].as_array().unwrap().iter().map(|u| u["user"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "bob"]);
    // No token at all.
    assert_eq!(get(&node, "/v1/admin/users", None).await.0, 401);

    // Malformed bodies and ids: 400 with a JSON body, nothing created.
    let (st, body) =
        post(&node, "/v1/admin/users", r#"{"user":"Bad Name","password":"long-enough"}"#, Some(&admin_token))
            .await;
    assert_eq!(st, 400);
    assert_eq!(body["error"], "invalid_request");
    let (st, _) =
        post(&node, "/v1/admin/users", r#"{"user":"carol","password":"short"}"#, Some(&admin_token)).await;
    assert_eq!(st, 400);
    let (st, _) = post(&node, "/v1/admin/users", "{not json", Some(&admin_token)).await;
    assert_eq!(st, 400);
    let (st, body) = post(
        &node,
        "/v1/login",
        r#"{"tenant":"default","user":"bob","password":"x","device":{"registration_id":0}}"#,
        None,
    )
    .await;
    assert_eq!(st, 400, "{body}");
    let (_, users) = get(&node, "/v1/admin/users", Some(&admin_token)).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 2);
    // Duplicate user: 409.
    let (st, body) =
        post(&node, "/v1/admin/users", r#"{"user":"bob","password":"other-password"}"#, Some(&admin_token))
            .await;
    assert_eq!((st, body["error"].as_str()), (409, Some("conflict")));
    // Unknown route: 404 JSON.
    let (st, body) = get(&node, "/v1/nope", None).await;
    assert_eq!((st, body["error"].as_str()), (404, Some("not_found")));
    // Devices of an unknown user: 404; of a known one: its devices.
    assert_eq!(get(&node, "/v1/users/nobody/devices", Some(&bob_token)).await.0, 404);
    let (st, list) = get(&node, "/v1/users/admin/devices", Some(&bob_token)).await;
    assert_eq!(st, 200);
    assert_eq!(list["devices"][0]["id"], 1);
}

#[tokio::test]
async fn devices_primary_limit_and_reregistration() {
    let node = Node::start();
    let admin = node.admin().await;
    let first = node.user(&admin, "dana").await;
    assert_eq!(first.device(), DeviceId::PRIMARY, "the first device is the primary");
    for expected in 2..=6u32 {
        let s = node.device("dana").await;
        assert_eq!(s.device().get(), expected);
    }
    // A seventh device is refused and nothing changes.
    let client = node.client();
    let r = client
        .login(
            &TenantId::new("default").unwrap(),
            &UserId::new("dana").unwrap(),
            &Secret::new("dana-password"),
            DeviceRequest {
                id: None,
                registration_id: RegistrationId::new(9).unwrap(),
                name: None,
                identity_key: None,
                keys: None,
            },
        )
        .await;
    match r {
        Err(ClientError::Http { status: 409, body }) => assert_eq!(body.error, "too_many_devices"),
        other => panic!("seventh device: {:?}", other.map(|_| ())),
    }
    assert_eq!(first.devices(None).await.unwrap().devices.len(), 6);
    // Logging in again as device 3 with a new registration id re-registers it.
    let again = client
        .login(
            &TenantId::new("default").unwrap(),
            &UserId::new("dana").unwrap(),
            &Secret::new("dana-password"),
            DeviceRequest {
                id: Some(DeviceId::new(3).unwrap()),
                registration_id: RegistrationId::new(4242).unwrap(),
                name: None,
                identity_key: None,
                keys: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(again.device().get(), 3);
    let list = first.devices(None).await.unwrap();
    let d3 = list.devices.iter().find(|d| d.id.get() == 3).unwrap();
    assert_eq!(d3.registration_id.get(), 4242);
    assert_eq!(list.devices.len(), 6);
}

#[tokio::test]
async fn operability_routes() {
    let node = Node::start();
    assert_eq!(get(&node, "/healthz", None).await.0, 200);
    let (st, ready) = get(&node, "/readyz", None).await;
    assert_eq!(st, 200);
    assert_eq!(ready["store"], "ok");
    let (st, doc) = get(&node, "/openapi.json", None).await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/login",
        "/v1/logout",
        "/v1/devices",
        "/v1/users/{user}/devices",
        "/v1/admin/users",
        "/v1/ws",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert!(paths["/v1/admin/users"].get("get").is_some() && paths["/v1/admin/users"].get("post").is_some());
    // Every documented route answers something other than 404 (so the document matches the router).
    let client = reqwest::Client::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            // Every path parameter filled in (`{id}` with a number, the others with a name):
            // unauthenticated, each route answers 401 (or its own error), never the router's 404.
            let filled: Vec<String> = path
                .split('/')
                .map(|seg| match seg {
                    "{id}" => "2".to_owned(),
                    s if s.starts_with('{') => "admin".to_owned(),
                    s => s.to_owned(),
                })
                .collect();
            let url = format!("{}{}", node.url(), filled.join("/"));
            let r = match method.as_str() {
                "get" => client.get(&url).send().await.unwrap(),
                "post" => client.post(&url).send().await.unwrap(),
                "put" => client.put(&url).send().await.unwrap(),
                "delete" => client.delete(&url).send().await.unwrap(),
                m => panic!("unexpected method {m}"),
            };
            assert_ne!(r.status().as_u16(), 404, "{method} {path} is documented but not routed");
        }
    }
    let _ = login(&node.client(), "default", "admin", node.admin_password.as_deref().unwrap()).await;
    let metrics = reqwest::get(format!("{}/metrics", node.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hush_logins_total 1"), "{metrics}");
    assert!(metrics.contains("hush_store_commit_seconds_count"));
    assert!(metrics.contains("hush_queue_depth 0"));
}
