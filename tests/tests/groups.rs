//! Groups against real `hushd` processes: the HTTP routes and who may use them, the group send
//! fan-out (every member device but the sender's, sync copies to the sender's other devices),
//! epochs and the events around membership changes, sender-key rotation requests, and on a
//! three-node cluster: cross-node fan-out and concurrent membership changes that all apply.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use hush_client::{Client, Connection, Session};
use hush_protocol::ids::{DeviceId, GroupId, RegistrationId, UserId};
use hush_protocol::wire::{
    ClientFrame, DeviceMessage, Envelope, ErrorCode, GroupSendMessage, MemberDevice, Payload, SendMessage,
    ServerFrame, SessionEvent,
};
use hush_tests::{drain_all, next, Mongo, Node, Redis};
use serde_json::{json, Value};

async fn call(base: &str, method: &str, path: &str, who: &Session, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{base}{path}");
    let rb = match method {
        "GET" => c.get(url),
        "POST" => c.post(url),
        "DELETE" => c.delete(url),
        m => panic!("{m}"),
    };
    let rb = rb.bearer_auth(who.login_info().token.expose());
    let rb = match body {
        Some(b) => rb.json(&b),
        None => rb,
    };
    let r = rb.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn names(v: &Value, field: &str) -> Vec<String> {
    v[field].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

async fn create(base: &str, who: &Session, name: &str, members: &[&str]) -> (GroupId, Value) {
    let (st, g) =
        call(base, "POST", "/v1/groups", who, Some(json!({"name": name, "members": members}))).await;
    assert_eq!(st, 201, "{g}");
    (GroupId::new(g["id"].as_str().unwrap()).unwrap(), g)
}

fn group_send(group: &GroupId, epoch: u64, text: &str) -> GroupSendMessage {
    GroupSendMessage {
        id: uuid::Uuid::new_v4(),
        group: group.clone(),
        epoch,
        content: Payload(text.as_bytes().to_vec()),
        content_type: hush_protocol::wire::ContentType::SenderKey,
    }
}

/// Sends and returns the answer to this send; node events arriving meanwhile are acknowledged
/// and ignored (any other delivery fails the test).
async fn send(conn: &mut Connection, m: GroupSendMessage) -> ServerFrame {
    send_collect(conn, m).await.0
}

/// Sends and returns the answer, and the node events that arrived meanwhile (acknowledged).
async fn send_collect(conn: &mut Connection, m: GroupSendMessage) -> (ServerFrame, Vec<Envelope>) {
    let id = m.id;
    conn.send_frame(&ClientFrame::GroupSend(m)).await.unwrap();
    let mut events = Vec::new();
    loop {
        match next(conn).await {
            f @ (ServerFrame::Accepted { .. }
            | ServerFrame::StaleEpoch { .. }
            | ServerFrame::Error { .. }) => {
                match &f {
                    ServerFrame::Accepted { id: i } | ServerFrame::StaleEpoch { id: i, .. } => {
                        assert_eq!(*i, id)
                    }
                    ServerFrame::Error { id: i, .. } => assert_eq!(*i, Some(id)),
                    _ => {}
                }
                return (f, events);
            }
            ServerFrame::Deliver(e) if e.event.is_some() => {
                conn.ack(vec![e.seq]).await.unwrap();
                events.push(e);
            }
            ServerFrame::Deliver(e) => panic!("unexpected delivery while waiting for an answer: {e:?}"),
            _ => {}
        }
    }
}

/// The next delivered envelope (acknowledged).
async fn deliver(conn: &mut Connection) -> Envelope {
    loop {
        match next(conn).await {
            ServerFrame::Deliver(e) => {
                conn.ack(vec![e.seq]).await.unwrap();
                return e;
            }
            ServerFrame::QueueEmpty | ServerFrame::Ready { .. } => {}
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
}

/// Connects and reads the queue (acknowledging it).
async fn connect(s: &Session) -> (Connection, Vec<Envelope>) {
    let mut c = s.connect().await.unwrap();
    let queued = drain_all(&mut c).await;
    if !queued.is_empty() {
        c.ack(queued.iter().map(|e| e.seq).collect()).await.unwrap();
    }
    (c, queued)
}

/// A 1:1 probe from `from` to `to` (one device, primary): the next thing `to` receives must be it,
/// which proves nothing else (such as a group message not meant for it) came first.
async fn probe(from: &mut Connection, to: &mut Connection, to_user: &str, reg: RegistrationId) {
    let m = SendMessage {
        id: uuid::Uuid::new_v4(),
        to: UserId::new(to_user).unwrap(),
        devices: vec![DeviceMessage {
            device: DeviceId::PRIMARY,
            registration_id: reg,
            content: Payload(b"probe".to_vec()),
            content_type: hush_protocol::wire::ContentType::Ciphertext,
        }],
        sync: vec![],
    };
    let id = m.id;
    from.send_frame(&ClientFrame::Send(m)).await.unwrap();
    assert!(matches!(next(from).await, ServerFrame::Accepted { .. }));
    let got = deliver(to).await;
    assert_eq!(got.id, id, "expected only the probe, got {got:?}");
}

async fn registration(base: &str, s: &Session) -> RegistrationId {
    let (st, v) = call(base, "GET", "/v1/devices", s, None).await;
    assert_eq!(st, 200);
    let me = v["devices"].as_array().unwrap().iter().find(|d| d["id"] == json!(s.device().get())).unwrap();
    RegistrationId::new(me["registration_id"].as_u64().unwrap() as u32).unwrap()
}

async fn metric(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn group_routes_and_authorization() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let carol = node.user(&admin, "carol").await;
    let dave = node.user(&admin, "dave").await;
    let _erin = node.user(&admin, "erin").await;
    // A second tenant (created while the node is stopped, as `hushd init` requires).
    let mut node = node;
    assert!(node.terminate());
    let out = std::process::Command::new(hush_tests::bin("hushd"))
        .args(["init", "--tenant", "other", "--admin", "otheradmin", "--data-dir"])
        .arg(&node.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let pw =
        stdout.lines().find_map(|l| l.strip_prefix("One-time password (shown only now): ")).unwrap().trim();
    node.restart();
    let other = hush_tests::login_one_time(&node.client(), "other", "otheradmin", pw).await;
    let base = node.url();
    let b = base.as_str();

    // Create: bad input changes nothing.
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "members": ["nobody"]}),
        json!({"name": "x", "members": ["otheradmin"]}),
        json!({"name": "a\u{7}b"}),
    ] {
        let (st, body) = call(b, "POST", "/v1/groups", &alice, Some(bad)).await;
        assert_eq!((st, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    }
    let (st, _) = call(b, "POST", "/v1/groups", &alice, Some(json!({"name": "x".repeat(129)}))).await;
    assert_eq!(st, 400);
    let (st, list) = call(b, "GET", "/v1/groups", &alice, None).await;
    assert_eq!((st, list["groups"].as_array().unwrap().len()), (200, 0), "nothing was created");

    let (g, info) = create(b, &alice, "team", &["bob", "carol"]).await;
    assert_eq!(g.as_str().len(), 32);
    assert_eq!(names(&info, "members"), ["alice", "bob", "carol"]);
    assert_eq!(names(&info, "admins"), ["alice"]);
    assert_eq!(info["epoch"], 1);
    let (g2, _) = create(b, &alice, "team", &[]).await;
    assert_ne!(g2, g, "ids are random, names are not unique");
    let path = format!("/v1/groups/{g}");
    let members = format!("{path}/members");

    // Listing and reading.
    let (_, l) = call(b, "GET", "/v1/groups", &bob, None).await;
    assert_eq!(l["groups"].as_array().unwrap().len(), 1);
    assert_eq!(l["groups"][0]["id"], json!(g.as_str()));
    let (_, l) = call(b, "GET", "/v1/groups", &alice, None).await;
    assert_eq!(l["groups"].as_array().unwrap().len(), 2);
    let (_, l) = call(b, "GET", "/v1/groups", &dave, None).await;
    assert!(l["groups"].as_array().unwrap().is_empty());
    assert_eq!(call(b, "GET", &path, &bob, None).await.0, 200);
    assert_eq!(call(b, "GET", &path, &admin, None).await.0, 200, "tenant administrators see every group");
    for outsider in [&dave, &other] {
        let (st, body) = call(b, "GET", &path, outsider, None).await;
        assert_eq!((st, body["error"].as_str()), (404, Some("not_found")));
    }
    assert_eq!(call(b, "GET", "/v1/groups/not-a-group", &alice, None).await.0, 404);
    assert_eq!(call(b, "GET", &format!("/v1/groups/{}", GroupId::random()), &alice, None).await.0, 404);

    // Adding: group admins and tenant admins; a member without the right 403, outsiders 404.
    let add = |u: &str| Some(json!({"users": [u]}));
    assert_eq!(call(b, "POST", &members, &carol, add("dave")).await.0, 403);
    assert_eq!(call(b, "POST", &members, &dave, add("dave")).await.0, 404);
    assert_eq!(call(b, "POST", &members, &other, add("dave")).await.0, 404);
    assert_eq!(call(b, "POST", &members, &alice, add("nobody")).await.0, 400);
    assert_eq!(call(b, "POST", &members, &alice, Some(json!({"users": []}))).await.0, 400);
    let (_, now) = call(b, "GET", &path, &alice, None).await;
    assert_eq!(names(&now, "members"), ["alice", "bob", "carol"], "refused adds changed nothing");
    let (st, now) = call(b, "POST", &members, &alice, add("dave")).await;
    assert_eq!(st, 200);
    assert_eq!(names(&now, "members"), ["alice", "bob", "carol", "dave"]);
    assert_eq!(now["epoch"], 1, "adding does not bump the epoch");
    let (st, again) = call(b, "POST", &members, &alice, add("dave")).await;
    assert_eq!((st, &again["version"]), (200, &now["version"]), "adding a member twice is a no-op");

    // Removing: a member without the right 403 (except itself), outsiders 404.
    assert_eq!(call(b, "DELETE", &format!("{members}/bob"), &carol, None).await.0, 403);
    assert_eq!(call(b, "DELETE", &format!("{members}/carol"), &dave, None).await.0, 403);
    assert_eq!(call(b, "DELETE", &format!("{members}/bob"), &other, None).await.0, 404);
    assert_eq!(call(b, "DELETE", &format!("{members}/erin"), &alice, None).await.0, 404, "not a member");
    assert_eq!(call(b, "DELETE", &format!("{members}/Bad"), &alice, None).await.0, 400);
    let (st, left) = call(b, "DELETE", &format!("{members}/carol"), &carol, None).await;
    assert_eq!(st, 200, "a member may leave");
    assert_eq!(
        (names(&left, "members"), &left["epoch"]),
        (vec!["alice".into(), "bob".into(), "dave".into()], &json!(2))
    );
    assert_eq!(call(b, "GET", &path, &carol, None).await.0, 404, "gone is gone");
    let (_, l) = call(b, "GET", "/v1/groups", &carol, None).await;
    assert!(l["groups"].as_array().unwrap().is_empty());
    let (st, now) = call(b, "DELETE", &format!("{members}/bob"), &admin, None).await;
    assert_eq!((st, &now["epoch"]), (200, &json!(3)), "a tenant admin may remove");
    let (st, now) = call(b, "POST", &members, &admin, add("erin")).await;
    assert_eq!((st, names(&now, "members")), (200, vec!["alice".into(), "dave".into(), "erin".into()]));

    // The group routes are in the OpenAPI document.
    let doc: Value = reqwest::get(format!("{b}/openapi.json")).await.unwrap().json().await.unwrap();
    for p in ["/v1/groups", "/v1/groups/{id}", "/v1/groups/{id}/members", "/v1/groups/{id}/members/{user}"] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing from openapi.json");
    }
    // Audited.
    let (_, audit) = call(b, "GET", "/v1/admin/audit?action=group.remove", &admin, None).await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 2);
}

fn event(e: &Envelope) -> &SessionEvent {
    e.event.as_ref().unwrap_or_else(|| panic!("expected an event, got {e:?}"))
}

#[tokio::test]
async fn group_send_fan_out_epochs_and_events() {
    let node = Node::start();
    let base = node.url();
    let b = base.as_str();
    let admin = node.admin().await;
    let alice1 = node.user(&admin, "alice").await;
    let alice2 = node.device("alice").await;
    let bob1 = node.user(&admin, "bob").await;
    let bob2 = node.device("bob").await;
    let carol = node.user(&admin, "carol").await;
    let dave = node.user(&admin, "dave").await;
    let (mut a1, _) = connect(&alice1).await;
    let (mut a2, _) = connect(&alice2).await;
    let (mut b1, _) = connect(&bob1).await;
    let (mut b2, _) = connect(&bob2).await;
    let (mut c1, _) = connect(&carol).await;
    let (mut d1, _) = connect(&dave).await;

    let (g, _) = create(b, &alice1, "team", &["bob", "carol"]).await;
    for c in [&mut a1, &mut a2, &mut b1, &mut b2, &mut c1] {
        match event(&deliver(c).await) {
            SessionEvent::GroupChanged { group, members, epoch, .. } => {
                assert_eq!((group, members.len(), *epoch), (&g, 3, 1));
            }
            other => panic!("{other:?}"),
        }
    }

    // One ciphertext reaches every member device but the sending one.
    let m = group_send(&g, 1, "hello group");
    let id = m.id;
    assert_eq!(send(&mut a1, m).await, ServerFrame::Accepted { id });
    for (c, sync) in [(&mut a2, true), (&mut b1, false), (&mut b2, false), (&mut c1, false)] {
        let e = deliver(c).await;
        assert_eq!((e.id, e.content.0.as_slice(), e.sync), (id, &b"hello group"[..], sync));
        assert_eq!((e.from.as_str(), e.from_device), ("alice", alice1.device()));
        let stamp = e.group.unwrap();
        assert_eq!((stamp.group, stamp.epoch), (g.clone(), 1));
    }
    let alice_reg = registration(b, &alice1).await;
    // (alice's other device writes to her first one: the only 1:1 send needing no sync copies)
    probe(&mut a2, &mut a1, "alice", alice_reg).await;

    // Not a member, unknown group, too large: refused.
    let f = send(&mut d1, group_send(&g, 1, "let me in")).await;
    assert!(matches!(f, ServerFrame::Error { code: ErrorCode::UnknownGroup, .. }), "{f:?}");
    let f = send(&mut a1, group_send(&GroupId::random(), 1, "x")).await;
    assert!(matches!(f, ServerFrame::Error { code: ErrorCode::UnknownGroup, .. }), "{f:?}");
    let mut big = group_send(&g, 1, "");
    big.content = Payload(vec![0; 96 * 1024 + 1]);
    a1.send_frame(&ClientFrame::GroupSend(big)).await.unwrap();
    assert!(matches!(next(&mut a1).await, ServerFrame::Error { code: ErrorCode::ContentTooLarge, .. }));

    // Removing carol bumps the epoch: the others rotate, carol hears she is out.
    let (st, now) = call(b, "DELETE", &format!("/v1/groups/{g}/members/carol"), &alice1, None).await;
    assert_eq!((st, &now["epoch"]), (200, &json!(2)));
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        match event(&deliver(c).await) {
            SessionEvent::GroupChanged { members, epoch, by, .. } => {
                assert_eq!((members.len(), *epoch, by.as_str()), (2, 2, "alice"));
            }
            other => panic!("{other:?}"),
        }
        match event(&deliver(c).await) {
            SessionEvent::RotateSenderKey { group, epoch, reason } => {
                assert_eq!((group, *epoch, reason.as_str()), (&g, 2, "member_removed"));
            }
            other => panic!("{other:?}"),
        }
    }
    match event(&deliver(&mut c1).await) {
        SessionEvent::GroupChanged { members, .. } => {
            assert!(!members.contains(&UserId::new("carol").unwrap()))
        }
        other => panic!("{other:?}"),
    }

    // The old epoch is refused and stores nothing.
    // (acks are applied asynchronously: wait for the depth to settle first)
    let mut depth = metric(b, "hush_queue_depth").await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = metric(b, "hush_queue_depth").await;
        if now == depth {
            break;
        }
        depth = now;
    }
    let accepted = metric(b, "hush_envelopes_accepted_total").await;
    let stale = group_send(&g, 1, "old key");
    let id = stale.id;
    assert_eq!(send(&mut a1, stale).await, ServerFrame::StaleEpoch { id, group: g.clone(), epoch: 2 });
    assert_eq!(metric(b, "hush_queue_depth").await, depth);
    assert_eq!(metric(b, "hush_envelopes_accepted_total").await, accepted);
    let f = send(&mut c1, group_send(&g, 2, "still here?")).await;
    assert!(matches!(f, ServerFrame::Error { code: ErrorCode::UnknownGroup, .. }), "removed: {f:?}");

    // The new epoch goes through, to everyone but carol.
    let m = group_send(&g, 2, "after carol");
    let id = m.id;
    assert_eq!(send(&mut b2, m).await, ServerFrame::Accepted { id });
    for c in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(deliver(c).await.id, id);
    }
    let carol_reg = registration(b, &carol).await;
    probe(&mut d1, &mut c1, "carol", carol_reg).await;

    // Adding dave: the existing members' devices are asked to share their sender keys with his.
    let (st, _) =
        call(b, "POST", &format!("/v1/groups/{g}/members"), &alice1, Some(json!({"users": ["dave"]}))).await;
    assert_eq!(st, 200);
    let want = vec![MemberDevice { user: UserId::new("dave").unwrap(), device: DeviceId::PRIMARY }];
    for c in [&mut a1, &mut a2, &mut b1, &mut b2] {
        assert!(
            matches!(event(&deliver(c).await), SessionEvent::GroupChanged { members, .. } if members.len() == 3)
        );
        match event(&deliver(c).await) {
            SessionEvent::DistributeSenderKey { group, epoch, devices } => {
                assert_eq!((group, *epoch, devices), (&g, 2, &want));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(event(&deliver(&mut d1).await), SessionEvent::GroupChanged { members, .. } if members.len() == 3)
    );
    let m = group_send(&g, 2, "welcome dave");
    let id = m.id;
    assert_eq!(send(&mut a2, m).await, ServerFrame::Accepted { id });
    for c in [&mut d1, &mut a1, &mut b1, &mut b2] {
        assert_eq!(deliver(c).await.id, id);
    }

    // Offline delivery: a device that connects later drains the group message from its queue,
    // and a fresh connection after acks sees nothing again.
    drop(b1);
    let m = group_send(&g, 2, "while you were away");
    let id = m.id;
    assert_eq!(send(&mut a1, m).await, ServerFrame::Accepted { id });
    let (_b1, queued) = connect(&bob1).await;
    let got: Vec<_> = queued.iter().filter(|e| e.id == id).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content.0, b"while you were away");
    _b1.close().await.unwrap();
    // Acks are applied after the frame is read: a later connection finds the queue empty.
    let mut left = queued.len();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (c, queued) = connect(&bob1).await;
        c.close().await.unwrap();
        left = queued.len();
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "acknowledged group messages are deleted");
}

#[tokio::test]
async fn sender_key_rotation_requests() {
    let node =
        Node::start_args(&["--group-sender-key-max-messages", "3", "--group-sender-key-max-age-secs", "2"]);
    let base = node.url();
    let b = base.as_str();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let (g, _) = create(b, &alice, "small", &["bob"]).await;
    let (mut a, _) = connect(&alice).await;
    let (mut bb, _) = connect(&bob).await;
    let mut events = Vec::new();
    for i in 0..3 {
        let (f, ev) = send_collect(&mut a, group_send(&g, 1, &format!("m{i}"))).await;
        assert!(matches!(f, ServerFrame::Accepted { .. }));
        assert!(ev.is_empty() || i == 2, "asked too early: {ev:?}");
        events.extend(ev);
        assert!(deliver(&mut bb).await.event.is_none());
    }
    if events.is_empty() {
        events.push(deliver(&mut a).await);
    }
    match event(&events[0]) {
        SessionEvent::RotateSenderKey { group, epoch, reason } => {
            assert_eq!((group, *epoch, reason.as_str()), (&g, 1, "max_messages"))
        }
        other => panic!("{other:?}"),
    }
    // The count restarts; age is the other limit.
    let (f, ev) = send_collect(&mut a, group_send(&g, 1, "m3")).await;
    assert!(matches!(f, ServerFrame::Accepted { .. }) && ev.is_empty());
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (f, mut ev) = send_collect(&mut a, group_send(&g, 1, "m4")).await;
    assert!(matches!(f, ServerFrame::Accepted { .. }));
    if ev.is_empty() {
        ev.push(deliver(&mut a).await);
    }
    match event(&ev[0]) {
        SessionEvent::RotateSenderKey { reason, .. } => assert_eq!(reason, "max_age"),
        other => panic!("{other:?}"),
    }
    // Bob, who only received, was never asked.
    for _ in 0..2 {
        assert!(deliver(&mut bb).await.event.is_none());
    }
}

/// Re-points a session at another node (the same token works on every node).
fn on(node: &Node, s: &Session) -> Session {
    Client::new(node.url()).resume(s.login_info().clone())
}

/// Nodes a, b and c on one Redis and one MongoDB (the administrator's password known to each),
/// and their URLs.
fn three_nodes(redis: &Redis, mongo: &Mongo) -> (Vec<Node>, Vec<String>) {
    let nodes = Node::three_clustered(redis, mongo);
    let urls = nodes.iter().map(Node::url).collect();
    (nodes, urls)
}

#[tokio::test]
async fn cluster_fan_out_and_concurrent_changes() {
    let (redis, mongo) = (Redis::start(), Mongo::start());
    let (nodes, urls) = three_nodes(&redis, &mongo);
    let admin = nodes[0].admin().await;
    let mut users = Vec::new();
    for i in 0..9 {
        users.push(nodes[0].user(&admin, &format!("u{i}")).await);
    }
    let user_names: Vec<String> = (0..9).map(|i| format!("u{i}")).collect();
    // u0..u5 members; u6..u8 added later.
    let initial: Vec<&str> = user_names[1..6].iter().map(String::as_str).collect();
    let (g, _) = create(&urls[0], &users[0], "cluster", &initial).await;
    // Members connected round-robin over the three nodes.
    let mut conns = Vec::new();
    for (i, u) in users.iter().enumerate().take(6) {
        let (c, _) = connect(&on(&nodes[i % 3], u)).await;
        conns.push(c);
    }
    // A send from node b (u1) reaches every other member on every node.
    let m = group_send(&g, 1, "across nodes");
    let id = m.id;
    assert_eq!(send(&mut conns[1], m).await, ServerFrame::Accepted { id });
    for (i, c) in conns.iter_mut().enumerate() {
        if i != 1 {
            let e = deliver(c).await;
            assert_eq!((e.id, e.content.0.as_slice()), (id, &b"across nodes"[..]), "member u{i}");
        }
    }

    // Concurrent changes from the three nodes at once: three adds, three removals.
    let changes = [
        ("POST", "u6"),
        ("DELETE", "u3"),
        ("POST", "u7"),
        ("DELETE", "u4"),
        ("POST", "u8"),
        ("DELETE", "u5"),
    ];
    let futs = changes.iter().enumerate().map(|(i, (method, user))| {
        let url = urls[i % 3].clone();
        let s = on(&nodes[i % 3], &admin);
        let g = g.clone();
        async move {
            let (path, body) = if *method == "POST" {
                (format!("/v1/groups/{g}/members"), Some(json!({"users": [user]})))
            } else {
                (format!("/v1/groups/{g}/members/{user}"), None)
            };
            call(&url, method, &path, &s, body).await.0
        }
    });
    let statuses = futures_util::future::join_all(futs).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for url in &urls {
        let (_, now) = call(url, "GET", &format!("/v1/groups/{g}"), &users[0], None).await;
        let got: BTreeSet<String> = names(&now, "members").into_iter().collect();
        let want: BTreeSet<String> =
            ["u0", "u1", "u2", "u6", "u7", "u8"].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "every change applied, none lost");
        assert_eq!(now["epoch"], 4, "one bump per removal");
    }
    // u0 (node a) saw one RotateSenderKey per removal, epochs 2, 3, 4.
    let mut rotations = BTreeSet::new();
    while rotations.len() < 3 {
        if let Some(SessionEvent::RotateSenderKey { epoch, .. }) = deliver(&mut conns[0]).await.event {
            rotations.insert(epoch);
        }
    }
    assert_eq!(rotations, BTreeSet::from([2, 3, 4]));

    // A send with an old epoch on node c after the removals made elsewhere is refused.
    let f = send(&mut conns[2], group_send(&g, 3, "old")).await;
    assert!(matches!(f, ServerFrame::StaleEpoch { epoch: 4, .. }), "{f:?}");
    // A removed member (u3 on node a) can no longer send.
    let f = send(&mut conns[3], group_send(&g, 4, "me?")).await;
    assert!(matches!(f, ServerFrame::Error { code: ErrorCode::UnknownGroup, .. }), "{f:?}");
    // The new member u7, connected to node b, receives a send from node c.
    let (mut c7, queued) = connect(&on(&nodes[1], &users[7])).await;
    assert!(queued.iter().any(|e| matches!(e.event, Some(SessionEvent::GroupChanged { .. }))));
    let m = group_send(&g, 4, "hi u7");
    let id = m.id;
    assert_eq!(send(&mut conns[2], m).await, ServerFrame::Accepted { id });
    assert_eq!(deliver(&mut c7).await.id, id);
}

/// Twenty clients change one group at once from three nodes (ten members leave, ten
/// administrators each add a user): every change applies, the epoch is bumped once per
/// removal, and every member's last `GroupChanged` names the same final membership and epoch.
/// Each node applies its changes one at a time in the group's actor; across nodes the store's
/// compare-and-set update settles the races (the group code has no retry loop of its own).
#[tokio::test]
async fn twenty_clients_on_three_nodes_converge() {
    let (redis, mongo) = (Redis::start(), Mongo::start());
    let (nodes, urls) = three_nodes(&redis, &mongo);
    let admin = nodes[0].admin().await;
    let mut users = Vec::new();
    for i in 0..=20 {
        users.push(nodes[0].user(&admin, &format!("m{i}")).await);
    }
    let initial: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    let initial: Vec<&str> = initial.iter().map(String::as_str).collect();
    let (g, created) = create(&urls[0], &users[0], "busy", &initial).await;
    assert_eq!(created["epoch"], 1);
    // Ten tenant administrators (one login each) for the adds; creating one takes a step-up.
    let stepped = nodes[0].stepped_admin().await;
    let mut admins = Vec::new();
    for i in 1..=10 {
        let (name, pw) = (UserId::new(format!("admin{i}")).unwrap(), format!("admin{i}-password"));
        stepped.create_user(&name, &hush_protocol::api::Secret::new(pw.clone()), true).await.unwrap();
        admins.push(hush_tests::login(&nodes[0].client(), "default", name.as_str(), &pw).await);
    }
    let leaves = (1..=10).map(|i| {
        let (url, s, g) = (urls[i % 3].clone(), on(&nodes[i % 3], &users[i]), g.clone());
        async move { call(&url, "DELETE", &format!("/v1/groups/{g}/members/m{i}"), &s, None).await }
    });
    let adds = (11..=20).map(|i| {
        let (url, s, g) = (urls[i % 3].clone(), on(&nodes[i % 3], &admins[i - 11]), g.clone());
        async move {
            let body = Some(json!({"users": [format!("m{i}")]}));
            call(&url, "POST", &format!("/v1/groups/{g}/members"), &s, body).await
        }
    });
    let (left, added) = futures_util::future::join(
        futures_util::future::join_all(leaves),
        futures_util::future::join_all(adds),
    )
    .await;
    for (st, body) in left.iter().chain(added.iter()) {
        assert_eq!(*st, 200, "{body}");
    }
    let want: BTreeSet<String> = std::iter::once(0).chain(11..=20).map(|i| format!("m{i}")).collect();
    let mut finals = Vec::new();
    for url in &urls {
        let (_, now) = call(url, "GET", &format!("/v1/groups/{g}"), &users[0], None).await;
        let got: BTreeSet<String> = names(&now, "members").into_iter().collect();
        assert_eq!(got, want, "every change applied, none lost");
        assert_eq!(now["epoch"], 11, "one bump per removal");
        finals.push((now["epoch"].as_u64().unwrap(), now["version"].as_u64().unwrap()));
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]), "{finals:?}");
    let (epoch, version) = finals[0];
    // Every member, connected to any node, ends with the same group state: its newest
    // GroupChanged (by record version) is the final record.
    for i in std::iter::once(0).chain(11..=20) {
        let (_, queued) = connect(&on(&nodes[i % 3], &users[i])).await;
        let newest = queued
            .iter()
            .filter_map(|e| match &e.event {
                Some(SessionEvent::GroupChanged { group, epoch, version, members, .. }) if *group == g => {
                    Some((*version, *epoch, members.clone()))
                }
                _ => None,
            })
            .max_by_key(|(v, _, _)| *v)
            .unwrap_or_else(|| panic!("m{i} got no GroupChanged"));
        let members: BTreeSet<String> = newest.2.iter().map(|u| u.as_str().to_owned()).collect();
        assert_eq!((newest.0, newest.1, members), (version, epoch, want.clone()), "member m{i}");
    }
}
