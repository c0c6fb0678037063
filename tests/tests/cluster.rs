//! Three `hushd` sharing one `redis-server` and one MongoDB-wire server, all started here:
//! cross-node delivery, displacement and revocation across nodes, `kill -9` of a node under
//! load, Redis killed and restarted under load, and the expiry of a dead node's presence. In
//! the first test the third node serves HTTPS/WSS (its own CA) among plain-HTTP ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_client::{ClientError, Connection, Session};
use hush_protocol::ids::{DeviceId, RegistrationId, UserId};
use hush_protocol::wire::{ClientFrame, DeviceMessage, Payload, SendMessage, ServerFrame};
use hush_tests::{drain, eventually, next, Mongo, Node, Redis};

struct Cluster {
    redis: Redis,
    _mongo: Mongo,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::start_with(n, false)
    }

    /// `n` nodes; with `tls_last` the last one serves HTTPS/WSS.
    fn start_with(n: usize, tls_last: bool) -> Cluster {
        let redis = Redis::start();
        let mongo = Mongo::start();
        // The first node bootstraps the shared store; the others find it bootstrapped.
        let mut nodes = vec![Node::start_clustered(&redis, &mongo, "node-a")];
        for (i, name) in ["node-b", "node-c"].iter().take(n - 1).enumerate() {
            nodes.push(if tls_last && i == n - 2 {
                Node::start_clustered_tls(&redis, &mongo, name)
            } else {
                Node::start_clustered(&redis, &mongo, name)
            });
        }
        hush_tests::share_admin_password(&mut nodes);
        Cluster { redis, _mongo: mongo, nodes }
    }
}

/// Re-points a session at another node (the same token works on every node).
fn on(node: &Node, s: &Session) -> Session {
    node.client().resume(s.login_info().clone())
}

fn one_device_msg(to: &str, reg: u16, text: &str) -> SendMessage {
    SendMessage {
        id: uuid::Uuid::new_v4(),
        to: UserId::new(to).unwrap(),
        devices: vec![DeviceMessage {
            device: DeviceId::PRIMARY,
            registration_id: RegistrationId::new(u32::from(reg)).unwrap(),
            content: Payload(text.as_bytes().to_vec()),
            content_type: hush_protocol::wire::ContentType::Ciphertext,
        }],
        sync: vec![],
    }
}

async fn close_reason(conn: &mut Connection) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), conn.next_frame())
            .await
            .expect("no close in 20 s")
        {
            Ok(_) => continue,
            Err(ClientError::Closed(Some(r))) => return r,
            Err(e) => return e.to_string(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_delivery_displacement_and_revocation() {
    let c = Cluster::start_with(3, true);
    let (a, b, cc) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    assert!(cc.url().starts_with("https://") && b.url().starts_with("http://"));
    let admin = a.admin().await;
    let alice = a.user(&admin, "alice").await;
    let bob = a.user(&admin, "bob").await;
    // Users created on A are visible on B and C (shared store).
    let alice_b = on(b, &alice);
    assert_eq!(alice_b.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices.len(), 1);

    // Alice on A, Bob on B: live delivery crosses nodes.
    let mut ca = alice.connect().await.unwrap();
    drain(&mut ca).await;
    let mut cb = on(b, &bob).connect().await.unwrap();
    drain(&mut cb).await;
    let id = ca.send_message(&UserId::new("bob").unwrap(), |_, _| b"across".to_vec()).await.unwrap();
    match next(&mut cb).await {
        ServerFrame::Deliver(e) => {
            assert_eq!(e.id, id);
            assert_eq!(e.content.0, b"across");
            cb.ack(vec![e.seq]).await.unwrap();
        }
        other => panic!("{other:?}"),
    }

    // Bob's device connects to C over WSS: the socket on B is displaced with 4409.
    let mut cc_bob = on(cc, &bob).connect().await.unwrap();
    drain(&mut cc_bob).await;
    let reason = close_reason(&mut cb).await;
    assert!(reason.starts_with("4409"), "{reason}");
    // Delivery now reaches C (presence moved).
    let id2 = ca.send_message(&UserId::new("bob").unwrap(), |_, _| b"moved".to_vec()).await.unwrap();
    match next(&mut cc_bob).await {
        ServerFrame::Deliver(e) => assert_eq!(e.id, id2),
        other => panic!("{other:?}"),
    }

    // Bob logs out through A: his socket on C gets LoggedOut then 4401, and the token is
    // refused on every node at once.
    bob.logout().await.unwrap();
    assert_eq!(next(&mut cc_bob).await, ServerFrame::LoggedOut { reason: "logout".into() });
    let reason = close_reason(&mut cc_bob).await;
    assert!(reason.starts_with("4401"), "{reason}");
    for n in &c.nodes {
        match on(n, &bob).connect().await {
            Err(ClientError::Http { status: 401, .. }) => {}
            other => panic!("revoked token accepted by {}: {:?}", n.addr, other.map(|_| ())),
        }
        assert!(matches!(on(n, &bob).devices(None).await, Err(ClientError::Http { status: 401, .. })));
    }
}

/// Keeps up to 64 sends in flight from `conn` to `to` until `stop`; records accepted ids.
async fn load(
    mut conn: Connection,
    to: &'static str,
    reg: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<uuid::Uuid>>>,
) {
    let mut inflight = 0;
    loop {
        while inflight < 64 && !stop.load(Ordering::Relaxed) {
            if conn.send_frame(&ClientFrame::Send(one_device_msg(to, reg, "load"))).await.is_err() {
                return;
            }
            inflight += 1;
        }
        if inflight == 0 {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(20), conn.next_frame()).await {
            Ok(Ok(ServerFrame::Accepted { id })) => {
                accepted.lock().unwrap().push(id);
                inflight -= 1;
            }
            Ok(Ok(ServerFrame::Error { .. })) => inflight -= 1,
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
}

/// Reads and acks everything arriving on `conn`, recording ids, until the socket closes or `stop`.
async fn receive(mut conn: Connection, got: Arc<Mutex<HashSet<uuid::Uuid>>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), conn.next_frame()).await {
            Ok(Ok(ServerFrame::Deliver(e))) => {
                got.lock().unwrap().insert(e.id);
                let _ = conn.ack(vec![e.seq]).await;
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(_)) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_load_loses_nothing() {
    let mut c = Cluster::start(3);
    let admin = c.nodes[0].admin().await;
    let alice = c.nodes[0].user(&admin, "alice").await;
    let bob = c.nodes[0].user(&admin, "bob").await;
    let carol = c.nodes[0].user(&admin, "carol").await;
    let reg =
        admin.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id.get();
    // Carol sits on B and will not reconnect anywhere: her presence must expire with B.
    let mut carol_b = on(&c.nodes[1], &carol).connect().await.unwrap();
    drain(&mut carol_b).await;
    let carol_key = "hush:p:default/carol/1";
    eventually(10, "carol's presence on node-b", || c.redis.cli(&["GET", carol_key]) == ["node-b"]).await;

    // Senders on A, the receiver on B.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let got = Arc::new(Mutex::new(HashSet::new()));
    let mut cb = on(&c.nodes[1], &bob).connect().await.unwrap();
    drain(&mut cb).await;
    let recv = tokio::spawn(receive(cb, got.clone(), Arc::new(AtomicBool::new(false))));
    let ca = alice.connect().await.unwrap();
    let sender = tokio::spawn(load(ca, "bob", reg, stop.clone(), accepted.clone()));
    eventually(60, "500 accepted", || accepted.lock().unwrap().len() >= 500).await;

    // B dies under load; Bob reconnects to C; the senders go on.
    c.nodes[1].kill9();
    recv.await.unwrap();
    let mut cc = on(&c.nodes[2], &bob).connect().await.unwrap();
    let before = accepted.lock().unwrap().len();
    eventually(60, "500 more accepted", || accepted.lock().unwrap().len() >= before + 500).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();

    // Everything accepted reaches Bob on C: some live, the rest from his queue.
    let accepted: Vec<uuid::Uuid> = accepted.lock().unwrap().clone();
    let t0 = std::time::Instant::now();
    while accepted.iter().any(|id| !got.lock().unwrap().contains(id)) {
        if t0.elapsed() > Duration::from_secs(60) {
            let missing = accepted.iter().filter(|id| !got.lock().unwrap().contains(id)).count();
            let logs: Vec<String> = [0, 2].iter().map(|i| c.nodes[*i].log()).collect();
            panic!(
                "{missing} accepted envelopes missing after a node died; logs of A and C:\n{}",
                logs.join("\n-----\n")
            );
        }
        match tokio::time::timeout(Duration::from_millis(500), cc.next_frame()).await {
            Ok(Ok(ServerFrame::Deliver(e))) => {
                got.lock().unwrap().insert(e.id);
                cc.ack(vec![e.seq]).await.unwrap();
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("{e}"),
        }
    }
    // The dead node's presence entries are gone within the bound (PRESENCE_TTL + a refresh).
    eventually(hush_cluster_bound(), "node-b presence expired", || {
        let keys = c.redis.cli(&["--scan", "--pattern", "hush:p:*"]);
        keys.iter().all(|k| c.redis.cli(&["GET", k]).first().map(String::as_str) != Some("node-b"))
    })
    .await;
    assert!(c.redis.cli(&["GET", carol_key]).is_empty(), "carol's entry should have expired");
    // node-b is no longer a member after NODE_TTL.
    drop(carol_b);
}

fn hush_cluster_bound() -> u64 {
    // PRESENCE_TTL (12 s) + one refresh period (4 s), with margin.
    20
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load_loses_nothing() {
    let mut c = Cluster::start(3);
    let admin = c.nodes[0].admin().await;
    let alice = c.nodes[0].user(&admin, "alice").await;
    let bob = c.nodes[0].user(&admin, "bob").await;
    let reg =
        admin.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id.get();

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let got = Arc::new(Mutex::new(HashSet::new()));
    let mut cb = on(&c.nodes[1], &bob).connect().await.unwrap();
    drain(&mut cb).await;
    let stop_recv = Arc::new(AtomicBool::new(false));
    let recv = tokio::spawn(receive(cb, got.clone(), stop_recv.clone()));
    let sender =
        tokio::spawn(load(alice.connect().await.unwrap(), "bob", reg, stop.clone(), accepted.clone()));
    eventually(60, "300 accepted", || accepted.lock().unwrap().len() >= 300).await;

    // Redis dies: nodes go degraded but keep accepting (the store is the truth).
    c.redis.kill();
    let url = format!("{}/readyz", c.nodes[0].url());
    let mut degraded = false;
    for _ in 0..100 {
        let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if body["status"] == "degraded" {
            degraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(degraded, "/readyz did not report degraded while Redis was down");
    let during = accepted.lock().unwrap().len();
    eventually(60, "accepting while Redis is down", || accepted.lock().unwrap().len() >= during + 200).await;

    // Redis comes back (empty): nodes reconnect, re-announce, and Bob catches up without
    // reconnecting.
    c.redis.restart();
    let back = accepted.lock().unwrap().len();
    eventually(60, "accepting after Redis returned", || accepted.lock().unwrap().len() >= back + 200).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    let accepted: Vec<uuid::Uuid> = accepted.lock().unwrap().clone();
    eventually(60, "every accepted envelope delivered to the same socket", || {
        let g = got.lock().unwrap();
        accepted.iter().all(|id| g.contains(id))
    })
    .await;
    stop_recv.store(true, Ordering::Relaxed);
    recv.await.unwrap();
    let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_others_closes_sockets_on_every_node_and_survives_restart() {
    let mut c = Cluster::start(3);
    let admin = c.nodes[0].admin().await;
    let d1 = c.nodes[0].user(&admin, "alice").await;
    let d2 = c.nodes[0].device("alice").await;
    let d3 = c.nodes[0].device("alice").await;
    // One device on each node.
    let mut c1 = d1.connect().await.unwrap();
    drain(&mut c1).await;
    let mut c2 = on(&c.nodes[1], &d2).connect().await.unwrap();
    drain(&mut c2).await;
    let mut c3 = on(&c.nodes[2], &d3).connect().await.unwrap();
    drain(&mut c3).await;

    let r = reqwest::Client::new()
        .delete(format!("{}/v1/sessions/others", c.nodes[0].url()))
        .bearer_auth(d1.login_info().token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["revoked"], 2);
    // The other sockets, on other nodes, get LoggedOut first, then close with 4401.
    for conn in [&mut c2, &mut c3] {
        assert_eq!(next(conn).await, ServerFrame::LoggedOut { reason: "revoked_by_user".into() });
        let reason = close_reason(conn).await;
        assert!(reason.starts_with("4401"), "{reason}");
    }
    // The calling device keeps working.
    let mut ca = admin.connect().await.unwrap();
    drain(&mut ca).await;
    let id = ca.send_message(&UserId::new("alice").unwrap(), |_, _| b"still on".to_vec()).await.unwrap();
    loop {
        match next(&mut c1).await {
            ServerFrame::Deliver(e) if e.event.is_some() => continue,
            ServerFrame::Deliver(e) => {
                assert_eq!(e.id, id);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // The revoked tokens are refused on every node, over HTTP and WebSocket, also after the
    // nodes restart; the surviving session still works everywhere.
    for round in 0..2 {
        for n in &c.nodes {
            for s in [&d2, &d3] {
                assert!(
                    matches!(on(n, s).devices(None).await, Err(ClientError::Http { status: 401, .. })),
                    "round {round}: revoked token accepted over HTTP by {}",
                    n.addr
                );
                assert!(
                    matches!(on(n, s).connect().await, Err(ClientError::Http { status: 401, .. })),
                    "round {round}: revoked token opened a socket on {}",
                    n.addr
                );
            }
            assert!(on(n, &d1).devices(None).await.is_ok());
        }
        if round == 0 {
            for n in &mut c.nodes {
                n.restart();
            }
        }
    }
}
