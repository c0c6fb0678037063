//! The admin console's HTTP surface against a real node: its assets and their security headers,
//! the cookie sign-in with the MFA challenge, CSRF on every state-changing request, a
//! non-administrator refused, and the live event stream. (The console driven in a browser is
//! in `console_browser.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::StreamExt;
use hush_tests::{Mongo, Node, Redis};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The console's cookies of a sign-in answer, as one `Cookie` header.
fn cookies(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

struct Console {
    url: String,
    cookie: String,
    csrf: String,
    body: serde_json::Value,
}

async fn sign_in(node: &Node, user: &str, password: &str) -> (reqwest::StatusCode, Option<Console>, String) {
    let resp = http()
        .post(format!("{}/console/session", node.url()))
        .json(&serde_json::json!({"tenant": "default", "user": user, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let set_cookie: Vec<String> =
        resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let cookie = cookies(&resp);
    let body: serde_json::Value = resp.json().await.unwrap();
    if !status.is_success() {
        assert!(set_cookie.is_empty(), "a refused sign-in sets no cookie: {set_cookie:?}");
        return (status, None, body["error"].as_str().unwrap_or_default().to_owned());
    }
    let session = set_cookie.iter().find(|c| c.starts_with("hush_console=")).expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.split("; ").any(|a| a == attr), "{attr} missing: {session}");
    }
    assert!(
        !body.to_string().contains(session.split(';').next().unwrap().trim_start_matches("hush_console=")),
        "the token is never given to the page"
    );
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    (status, Some(Console { url: node.url(), cookie, csrf, body }), String::new())
}

impl Console {
    fn req(&self, method: reqwest::Method, path: &str, csrf: bool) -> reqwest::RequestBuilder {
        let r = http().request(method, format!("{}{path}", self.url)).header("cookie", &self.cookie);
        if csrf {
            r.header("x-csrf-token", &self.csrf)
        } else {
            r
        }
    }
}

#[tokio::test]
async fn every_console_response_carries_the_strict_policy_and_nothing_comes_from_another_host() {
    let node = Node::start();
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/no-such-page", "application/json"),
    ] {
        let resp = http().get(format!("{}{path}", node.url())).send().await.unwrap();
        let h = resp.headers();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(h["content-type"].to_str().unwrap().starts_with(kind), "{path}: {:?}", h["content-type"]);
        let text = resp.text().await.unwrap();
        if kind != "application/json" {
            // Air-gapped: no URL of any other host, no inline script or style.
            assert!(!text.contains("http://") && !text.contains("https://"), "{path} names another host");
            assert!(!text.contains("<script>") && !text.contains("style="), "{path} has inline code");
        }
    }
    // The page loads its script from the node itself.
    let page = http().get(format!("{}/console", node.url())).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<script src="/console/app.js" defer></script>"#), "{page}");
}

#[tokio::test]
async fn sign_in_passes_the_challenge_and_csrf_guards_every_state_change() {
    let node = Node::start();
    let admin = node.stepped_admin().await;
    let alice = node.user(&admin, "alice").await;
    let password = node.admin_password_set().await;

    let (status, console, _) = sign_in(&node, "admin", &password).await;
    assert_eq!(status, 200);
    let console = console.unwrap();
    assert_eq!(console.body["admin"], true);
    assert_eq!(console.body["mfa"]["state"], "mfa_pending", "{}", console.body);

    // MFA pending: the admin API is closed to this session.
    let r = console.req(reqwest::Method::GET, "/v1/admin/sessions/active", false).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // The challenge is a state change: refused without the CSRF token, before anything runs.
    let r = console.req(reqwest::Method::POST, "/v1/mfa/challenge", false).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "csrf_rejected");
    let r = console.req(reqwest::Method::POST, "/v1/mfa/challenge", true).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let challenge: serde_json::Value = r.json().await.unwrap();
    let code = node.admin_code().await;
    let r = console
        .req(reqwest::Method::POST, "/v1/mfa/verify", true)
        .json(&serde_json::json!({"challenge_id": challenge["challenge_id"], "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Verified: reads work with the cookie alone.
    let r = console.req(reqwest::Method::GET, "/v1/admin/sessions/active", false).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let list: serde_json::Value = r.json().await.unwrap();
    let alice_session = alice.login_info().session_id.clone();
    assert!(list["sessions"].as_array().unwrap().iter().any(|s| s["id"] == alice_session.as_str()), "{list}");
    let me: serde_json::Value = console
        .req(reqwest::Method::GET, "/console/session", false)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["mfa"]["state"], "verified");
    assert_eq!(me["csrf"], console.csrf.as_str());

    // A revocation without the token, or with a wrong one, changes nothing.
    let path = format!("/v1/admin/sessions/{alice_session}");
    let r = console.req(reqwest::Method::DELETE, &path, false).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r =
        console.req(reqwest::Method::DELETE, &path, false).header("x-csrf-token", "x").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(alice.devices(None).await.is_ok(), "alice's session still works");
    // With it, the session ends.
    let r = console.req(reqwest::Method::DELETE, &path, true).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(alice.devices(None).await.is_err(), "alice's session is revoked");

    // A bearer token needs no CSRF token (it is not sent by the browser on its own).
    assert!(admin.devices(None).await.is_ok());

    // Sign-out ends the console's session and clears the cookie.
    let r = console.req(reqwest::Method::DELETE, "/console/session", false).send().await.unwrap();
    assert_eq!(r.status(), 403, "sign-out is a state change too");
    let r = console.req(reqwest::Method::DELETE, "/console/session", true).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let r = console.req(reqwest::Method::GET, "/console/session", false).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // The next sign-in reuses the console's device instead of registering another.
    let devices_before = admin.devices(None).await.unwrap().devices.len();
    let resp = http()
        .post(format!("{}/console/session", node.url()))
        .header("cookie", &console.cookie)
        .json(&serde_json::json!({"tenant": "default", "user": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(admin.devices(None).await.unwrap().devices.len(), devices_before);
}

#[tokio::test]
async fn a_non_administrator_is_refused_and_keeps_no_console_session() {
    let node = Node::start();
    let admin = node.admin().await;
    let bob = node.user(&admin, "bob").await;
    let (status, console, error) = sign_in(&node, "bob", "bob-password").await;
    assert_eq!(status, 403);
    assert!(console.is_none());
    assert_eq!(error, "forbidden");
    let sessions = bob.sessions().await.unwrap();
    assert_eq!(sessions.sessions.len(), 1, "only bob's own session is live: {sessions:?}");
    // Refused before anything was made: no console device either.
    let devices = bob.devices(None).await.unwrap().devices;
    assert_eq!(devices.len(), 1, "no device registered by the refused sign-in: {devices:?}");
    // A wrong password is the same 401 as the API's.
    let (status, _, error) = sign_in(&node, "bob", "wrong-password").await;
    assert_eq!(status, 401);
    assert_eq!(error, "unauthorized");
}

#[tokio::test]
async fn the_event_stream_announces_a_revocation_and_ends_with_the_session() {
    let node = Node::start();
    let admin = node.stepped_admin().await;
    let carol = node.user(&admin, "carol").await;
    let password = node.admin_password_set().await;
    let (_, console, _) = sign_in(&node, "admin", &password).await;
    let console = console.unwrap();
    verified(&node, &console).await;

    let r = console.req(reqwest::Method::GET, "/console/events", false).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut stream = r.bytes_stream();

    // Revoked through the API by another session: the console hears it.
    let id = carol.login_info().session_id.clone();
    assert_eq!(admin.admin_revoke_session(&id).await.unwrap(), 1);
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&format!("session:{id}")) {
        let chunk = tokio::time::timeout_at(deadline, stream.next()).await.expect("event in time");
        seen.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }
    assert!(seen.contains("event: audit") && seen.contains("\"action\":\"session.revoke\""), "{seen}");

    // The console's own session revoked elsewhere: the stream ends.
    let own = console.body["session_id"].as_str().unwrap().to_owned();
    assert_eq!(admin.admin_revoke_session(&own).await.unwrap(), 1);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(c) = stream.next().await {
            if c.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends with the session");
}

async fn verified(node: &Node, console: &Console) {
    let r = console.req(reqwest::Method::POST, "/v1/mfa/challenge", true).send().await.unwrap();
    let challenge: serde_json::Value = r.json().await.unwrap();
    let code = node.admin_code().await;
    let r = console
        .req(reqwest::Method::POST, "/v1/mfa/verify", true)
        .json(&serde_json::json!({"challenge_id": challenge["challenge_id"], "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn on_three_nodes_the_console_lists_and_revokes_sessions_held_anywhere() {
    let (redis, mongo) = (Redis::start(), Mongo::start());
    let nodes = Node::three_clustered(&redis, &mongo);
    let admin = nodes[0].stepped_admin().await;
    let _ = nodes[0].user(&admin, "alice").await;
    // Alice's socket lives on node C.
    let alice = nodes[2].device("alice").await;
    let mut socket = alice.connect().await.unwrap();
    let password = nodes[0].admin_password_set().await;

    // Signed in on node A; its cookie and CSRF token work on node B too.
    let (_, console, _) = sign_in(&nodes[0], "admin", &password).await;
    let console = console.unwrap();
    verified(&nodes[0], &console).await;
    let events = console.req(reqwest::Method::GET, "/console/events", false).send().await.unwrap();
    let mut stream = events.bytes_stream();
    let on_b = Console {
        url: nodes[1].url(),
        cookie: console.cookie.clone(),
        csrf: console.csrf.clone(),
        body: console.body.clone(),
    };
    let list: serde_json::Value = on_b
        .req(reqwest::Method::GET, "/v1/admin/sessions/active", false)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = alice.login_info().session_id.clone();
    let row = list["sessions"].as_array().unwrap().iter().find(|s| s["id"] == id.as_str()).cloned();
    // Listed on node B with the node that holds its socket.
    assert_eq!(row.as_ref().map(|r| r["node"].clone()), Some(serde_json::json!("node-c")), "{list}");

    // Cluster health from node B: the three nodes, each with its own report; C holds alice.
    let cluster = wait_for_cluster(&on_b, |c| connections_on(c, "node-c") == Some(1)).await;
    let ids: Vec<&str> =
        cluster["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["node-a", "node-b", "node-c"], "{cluster}");
    assert_eq!(cluster["node"], "node-b");
    assert_eq!(cluster["bus"], "redis");
    for n in cluster["nodes"].as_array().unwrap() {
        assert_eq!(n["store"], "ok", "{n}");
        assert_eq!(n["bus_healthy"], true, "{n}");
        assert_eq!(n["this"], n["id"] == "node-b", "{n}");
        assert!(n["version"].as_str().is_some_and(|v| !v.is_empty()), "{n}");
    }

    // Revoked through node B: the socket on node C closes with 4401, node A's stream hears it.
    let r =
        on_b.req(reqwest::Method::DELETE, &format!("/v1/admin/sessions/{id}"), true).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(15), socket.next_frame())
            .await
            .expect("closed in time")
        {
            Ok(_) => continue,
            Err(e) => break e.to_string(),
        }
    };
    assert!(closed.contains("4401"), "{closed}");
    // Node C reports the socket gone; node A's console sees it.
    let on_a = Console { url: nodes[0].url(), ..on_b };
    wait_for_cluster(&on_a, |c| connections_on(c, "node-c") == Some(0)).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&format!("session:{id}")) {
        let chunk = tokio::time::timeout_at(deadline, stream.next()).await.expect("event in time");
        seen.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }
}

fn connections_on(cluster: &serde_json::Value, node: &str) -> Option<u64> {
    cluster["nodes"].as_array()?.iter().find(|n| n["id"] == node)?["connections"].as_u64()
}

/// `GET /v1/admin/cluster` until `ok` holds (nodes report themselves every second and their
/// heartbeats carry it every 2 s), or the last answer after 15 s.
async fn wait_for_cluster(console: &Console, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = console.req(reqwest::Method::GET, "/v1/admin/cluster", false).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let c: serde_json::Value = r.json().await.unwrap();
        if ok(&c) || tokio::time::Instant::now() > deadline {
            assert!(ok(&c), "cluster view never matched: {c}");
            return c;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
