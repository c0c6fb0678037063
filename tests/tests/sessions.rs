//! Sessions against a real node: listing and revoking for users and admins with authorization
//! (another user's or tenant's sessions answer 404, non-admins 403), session events on every
//! device, device removal by the primary, and an audit record for every action, with no secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_client::Session;
use hush_protocol::wire::{ServerFrame, SessionEvent};
use hush_tests::{drain, drain_all, next, Node};
use serde_json::Value;

async fn call(node: &Node, method: &str, path: &str, who: &Session) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{}{path}", node.url());
    let rb = match method {
        "GET" => c.get(url),
        "DELETE" => c.delete(url),
        m => panic!("{m}"),
    };
    let r = rb.bearer_auth(who.login_info().token.expose()).send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<String> {
    v["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn user_routes_authorization_events_and_audit() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice1 = node.user(&admin, "alice").await;
    let alice2 = node.device("alice").await;
    let alice3 = node.device("alice").await;
    let bob = node.user(&admin, "bob").await;

    // Listing: alice sees her three sessions, the current one marked; bob sees only his.
    let (st, list) = call(&node, "GET", "/v1/sessions", &alice1).await;
    assert_eq!(st, 200);
    assert_eq!(ids(&list).len(), 3);
    let current: Vec<&Value> =
        list["sessions"].as_array().unwrap().iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], alice1.login_info().session_id.as_str());
    let (_, bl) = call(&node, "GET", "/v1/sessions", &bob).await;
    assert_eq!(ids(&bl), [bob.login_info().session_id.clone()]);

    // Bob cannot revoke alice's session: 404, and it stays active.
    let a3 = alice3.login_info().session_id.clone();
    let (st, _) = call(&node, "DELETE", &format!("/v1/sessions/{a3}"), &bob).await;
    assert_eq!(st, 404);
    assert_eq!(call(&node, "GET", "/v1/devices", &alice3).await.0, 200);
    // Alice revokes her device 3 session; device 3's live socket gets LoggedOut then 4401.
    let mut c3 = alice3.connect().await.unwrap();
    drain(&mut c3).await;
    let (st, body) = call(&node, "DELETE", &format!("/v1/sessions/{a3}"), &alice1).await;
    assert_eq!((st, body["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(next(&mut c3).await, ServerFrame::LoggedOut { reason: "revoked_by_user".into() });
    assert_eq!(call(&node, "GET", "/v1/devices", &alice3).await.0, 401);

    // Device 2 hears, reliably (queued), about the new logins and the revocation.
    let mut c2 = alice2.connect().await.unwrap();
    let events: Vec<SessionEvent> = drain_all(&mut c2).await.into_iter().filter_map(|e| e.event).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::SessionRevoked { session_id, .. } if *session_id == a3)),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, SessionEvent::DeviceAdded { device } if device.get() == 3)),
        "{events:?}"
    );

    // "Others" from device 1 ends device 2's session, not its own.
    let (st, body) = call(&node, "DELETE", "/v1/sessions/others", &alice1).await;
    assert_eq!((st, body["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(next(&mut c2).await, ServerFrame::LoggedOut { reason: "revoked_by_user".into() });
    assert_eq!(
        ids(&call(&node, "GET", "/v1/sessions", &alice1).await.1),
        [alice1.login_info().session_id.clone()]
    );
    // "All" ends its own too.
    let (st, body) = call(&node, "DELETE", "/v1/sessions/all", &alice1).await;
    assert_eq!((st, body["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(call(&node, "GET", "/v1/sessions", &alice1).await.0, 401);

    // The audit log has every action, and no secret.
    let (st, audit) = call(&node, "GET", "/v1/admin/audit?limit=500", &admin).await;
    assert_eq!(st, 200);
    let recs = audit["records"].as_array().unwrap();
    let count = |action: &str, result: &str| {
        recs.iter().filter(|r| r["action"] == action && r["result"] == result).count()
    };
    assert_eq!(count("login", "ok"), 5, "admin, alice x3, bob");
    assert_eq!(count("user.create", "ok"), 2);
    assert_eq!(count("session.revoke", "ok"), 3);
    let text = audit.to_string();
    for s in [&alice1, &alice2, &alice3, &bob, &admin] {
        assert!(!text.contains(s.login_info().token.expose()), "token in the audit log");
    }
    assert!(!text.contains("alice-password") && !text.contains(node.admin_password.as_deref().unwrap()));
    // Filters and pagination.
    let (_, only) = call(&node, "GET", "/v1/admin/audit?action=session.revoke&actor=alice", &admin).await;
    assert_eq!(only["records"].as_array().unwrap().len(), 3);
    let (_, p1) = call(&node, "GET", "/v1/admin/audit?limit=2", &admin).await;
    let next_id = p1["next"].as_u64().unwrap();
    let (_, p2) = call(&node, "GET", &format!("/v1/admin/audit?limit=2&before={next_id}"), &admin).await;
    assert!(p2["records"][0]["id"].as_u64().unwrap() < next_id);
    // Non-admins get 403 on every admin route.
    for (m, p) in [
        ("GET", "/v1/admin/audit"),
        ("GET", "/v1/admin/sessions/active"),
        ("GET", "/v1/admin/users/alice/sessions"),
        ("DELETE", "/v1/admin/users/alice/sessions"),
        ("DELETE", "/v1/admin/sessions/x"),
        ("DELETE", "/v1/admin/sessions/active"),
    ] {
        assert_eq!(call(&node, m, p, &bob).await.0, 403, "{m} {p}");
    }
}

#[tokio::test]
async fn admin_routes_and_tenant_isolation() {
    let node = Node::start();
    // Stepped up: the revocations below are guarded for others (docs/mfa.md, "Step-up").
    let admin = node.stepped_admin().await;
    let carol = node.user(&admin, "carol").await;
    let dave = node.user(&admin, "dave").await;
    // A second tenant with its own admin, created through the store-level bootstrap (init runs
    // while the node is stopped).
    let mut node = node;
    assert!(node.terminate());
    let out = std::process::Command::new(hush_tests::bin("hushd"))
        .args(["init", "--tenant", "other", "--admin", "otheradmin", "--data-dir"])
        .arg(&node.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let pw = stdout
        .lines()
        .find_map(|l| l.strip_prefix("One-time password (shown only now): "))
        .unwrap()
        .trim()
        .to_owned();
    node.restart();
    let other_admin = hush_tests::login_one_time(&node.client(), "other", "otheradmin", &pw).await;

    // Admin lists and revokes within its tenant.
    let (st, l) = call(&node, "GET", "/v1/admin/users/carol/sessions", &admin).await;
    assert_eq!((st, ids(&l)), (200, vec![carol.login_info().session_id.clone()]));
    let (st, page) = call(&node, "GET", "/v1/admin/sessions/active?limit=2", &admin).await;
    assert_eq!(st, 200);
    assert_eq!(ids(&page).len(), 2);
    let after = page["next"].as_str().unwrap().to_owned();
    let (_, page2) =
        call(&node, "GET", &format!("/v1/admin/sessions/active?limit=2&after={after}"), &admin).await;
    assert!(!ids(&page2).iter().any(|i| ids(&page).contains(i)), "pages do not overlap");
    assert_eq!(ids(&page).len() + ids(&page2).len(), 3, "admin, carol, dave");

    // The other tenant's admin sees nothing of this tenant: 404 as if it did not exist.
    let cs = carol.login_info().session_id.clone();
    assert_eq!(call(&node, "GET", "/v1/admin/users/carol/sessions", &other_admin).await.0, 404);
    assert_eq!(call(&node, "DELETE", &format!("/v1/admin/sessions/{cs}"), &other_admin).await.0, 404);
    assert_eq!(call(&node, "DELETE", "/v1/admin/users/carol/sessions", &other_admin).await.0, 404);
    let (_, theirs) = call(&node, "GET", "/v1/admin/sessions/active", &other_admin).await;
    assert_eq!(ids(&theirs), [other_admin.login_info().session_id.clone()]);
    let (_, their_audit) = call(&node, "GET", "/v1/admin/audit", &other_admin).await;
    assert!(their_audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["actor"] != "carol" && r["actor"] != "admin"));
    assert_eq!(call(&node, "GET", "/v1/devices", &carol).await.0, 200, "carol untouched");

    // This tenant's admin revokes carol's session and all of dave's.
    let (st, b) = call(&node, "DELETE", &format!("/v1/admin/sessions/{cs}"), &admin).await;
    assert_eq!((st, b["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(call(&node, "GET", "/v1/devices", &carol).await.0, 401);
    assert_eq!(
        call(&node, "DELETE", &format!("/v1/admin/sessions/{cs}"), &admin).await.0,
        404,
        "already revoked"
    );
    let (st, b) = call(&node, "DELETE", "/v1/admin/users/dave/sessions", &admin).await;
    assert_eq!((st, b["revoked"].as_u64()), (200, Some(1)));
    assert_eq!(call(&node, "GET", "/v1/devices", &dave).await.0, 401);
    assert_eq!(call(&node, "GET", "/v1/admin/users/nobody/sessions", &admin).await.0, 404);
}

#[tokio::test]
async fn primary_removes_a_linked_device() {
    let node = Node::start();
    let admin = node.admin().await;
    let primary = node.user(&admin, "erin").await;
    let linked = node.device("erin").await;
    let bob = node.user(&admin, "bob").await;
    // Something queued for the linked device, and a live socket.
    let mut cb = bob.connect().await.unwrap();
    drain(&mut cb).await;
    cb.send_message(&hush_protocol::ids::UserId::new("erin").unwrap(), |_, _| b"queued".to_vec())
        .await
        .unwrap();
    let mut cl = linked.connect().await.unwrap();
    let got = drain(&mut cl).await;
    assert!(got.iter().any(|e| e.content.0 == b"queued"));
    // The linked device cannot remove the primary, nor remove devices at all.
    assert_eq!(call(&node, "DELETE", "/v1/devices/1", &linked).await.0, 403);
    // The primary cannot remove itself.
    assert_eq!(call(&node, "DELETE", "/v1/devices/1", &primary).await.0, 400);
    assert_eq!(call(&node, "DELETE", "/v1/devices/5", &primary).await.0, 404);
    // The primary removes device 2: its socket closes with 4410, its token dies, it leaves the set.
    assert_eq!(call(&node, "DELETE", "/v1/devices/2", &primary).await.0, 204);
    let mut closed = None;
    for _ in 0..20 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), cl.next_frame()).await.unwrap() {
            Ok(_) => continue,
            Err(e) => {
                closed = Some(e.to_string());
                break;
            }
        }
    }
    assert!(closed.unwrap().contains("4410"));
    assert_eq!(call(&node, "GET", "/v1/devices", &linked).await.0, 401);
    let (_, devs) = call(&node, "GET", "/v1/devices", &primary).await;
    assert_eq!(devs["devices"].as_array().unwrap().len(), 1);
    // The primary hears about it.
    let mut cp = primary.connect().await.unwrap();
    let events: Vec<SessionEvent> = drain_all(&mut cp).await.into_iter().filter_map(|e| e.event).collect();
    assert!(
        events.iter().any(|e| matches!(e, SessionEvent::DeviceRemoved { device } if device.get() == 2)),
        "{events:?}"
    );
    let (_, audit) = call(&node, "GET", "/v1/admin/audit?action=device.remove", &admin).await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 1);
}
