//! Supervision against real `hushd` processes built with the `fault-injection` feature (the
//! suite's build) and started with `--fault-injection`: a chosen actor's handler panics on a
//! chosen message, as a bug would, and the node goes on.
//!
//! - a failing `DeviceActor` closes only its own socket (1011); the device reconnects and
//!   drains every accepted envelope;
//! - a failing `GroupActor` is restarted with membership and epoch intact, and the next group
//!   send succeeds;
//! - a failing `SessionActor` still leaves a revoked session revoked, its socket closed;
//!
//! in each case no other device's socket closes, no accepted envelope is lost, and the
//! supervisor's counts show in `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hush_client::{Connection, Session};
use hush_protocol::ids::{GroupId, UserId};
use hush_protocol::wire::{ClientFrame, ErrorCode, GroupSendMessage, Payload, ServerFrame};
use hush_tests::{drain, drain_all, next, send_to_primary, Node};
use serde_json::json;

fn start() -> Node {
    Node::start_args(&["--fault-injection"])
}

async fn arm(node: &Node, admin: &Session, actor: &str, message: &str, target: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/test/faults", node.url()))
        .bearer_auth(admin.login_info().token.expose())
        .json(&json!({"actor": actor, "message": message, "target": target, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

/// `hush_actor_{kind}_total{area="..."}` from `/metrics`.
async fn count(node: &Node, kind: &str, area: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", node.url())).await.unwrap().text().await.unwrap();
    let key = format!("hush_actor_{kind}_total{{area=\"{area}\"}} ");
    let line = text.lines().find_map(|l| l.strip_prefix(&key)).unwrap_or_else(|| panic!("{key} in {text}"));
    line.trim().parse().unwrap()
}

async fn reg(of: &Session, user: &str) -> u32 {
    of.devices(Some(&UserId::new(user).unwrap())).await.unwrap().devices[0].registration_id.get().into()
}

/// Sends `text` to `to`'s primary device and waits for `Accepted`.
async fn send(conn: &mut Connection, to: &str, reg: u32, text: &str) {
    let m = send_to_primary(to, reg, text.as_bytes().to_vec());
    let id = m.id;
    conn.send_frame(&ClientFrame::Send(m)).await.unwrap();
    assert_eq!(next(conn).await, ServerFrame::Accepted { id });
}

/// The next delivery's content (acknowledged).
async fn receive(conn: &mut Connection) -> Vec<u8> {
    match next(conn).await {
        ServerFrame::Deliver(e) => {
            conn.ack(vec![e.seq]).await.unwrap();
            e.content.0
        }
        other => panic!("expected a delivery, got {other:?}"),
    }
}

/// The close of a socket, as text (it must come within 10 s, after at most a few frames).
async fn closed(conn: &mut Connection) -> (Vec<ServerFrame>, String) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.next_frame()).await.expect("no close") {
            Ok(f) => frames.push(f),
            Err(e) => return (frames, e.to_string()),
        }
    }
}

#[tokio::test]
async fn a_failing_device_actor_closes_only_its_socket_and_loses_nothing() {
    let node = start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let carol = node.user(&admin, "carol").await;
    let (bob_reg, carol_reg) = (reg(&alice, "bob").await, reg(&alice, "carol").await);
    let mut a = alice.connect().await.unwrap();
    let mut b = bob.connect().await.unwrap();
    let mut c = carol.connect().await.unwrap();
    for conn in [&mut a, &mut b, &mut c] {
        drain_all(conn).await;
    }
    // Bob's actor panics on the next live delivery it handles.
    arm(&node, &admin, "device", "deliver", "default/bob/1").await;
    send(&mut a, "bob", bob_reg, "while it fails").await;
    let (_, why) = closed(&mut b).await;
    assert!(why.contains("1011"), "{why}");
    // Nobody else lost a socket: alice and carol still talk, both ways.
    send(&mut a, "carol", carol_reg, "still here").await;
    assert_eq!(receive(&mut c).await, b"still here");
    let alice_reg = reg(&carol, "alice").await;
    send(&mut c, "alice", alice_reg, "and back").await;
    assert_eq!(receive(&mut a).await, b"and back");
    // Bob reconnects and drains the accepted envelope; live delivery works again.
    let mut b = bob.connect().await.unwrap();
    let got: Vec<Vec<u8>> = drain(&mut b).await.into_iter().map(|e| e.content.0).collect();
    assert_eq!(got, vec![b"while it fails".to_vec()]);
    send(&mut a, "bob", bob_reg, "after").await;
    assert_eq!(receive(&mut b).await, b"after");
    assert_eq!(count(&node, "failures", "devices").await, 1);
    assert_eq!(count(&node, "restarts", "devices").await, 0, "a device actor is never restarted");
}

fn group_msg(group: &GroupId, epoch: u64, text: &str) -> GroupSendMessage {
    GroupSendMessage {
        id: uuid::Uuid::new_v4(),
        group: group.clone(),
        epoch,
        content: Payload(text.into()),
        content_type: hush_protocol::wire::ContentType::SenderKey,
    }
}

/// Sends a group message and returns the answer to it.
async fn group_send(conn: &mut Connection, m: GroupSendMessage) -> ServerFrame {
    let id = m.id;
    conn.send_frame(&ClientFrame::GroupSend(m)).await.unwrap();
    let answer = next(conn).await;
    match &answer {
        ServerFrame::Accepted { id: i } => assert_eq!(*i, id),
        ServerFrame::Error { id: i, .. } => assert_eq!(*i, Some(id)),
        other => panic!("{other:?}"),
    }
    answer
}

/// The next group delivery (node events skipped and acknowledged).
async fn group_receive(conn: &mut Connection) -> Vec<u8> {
    loop {
        match next(conn).await {
            ServerFrame::Deliver(e) => {
                conn.ack(vec![e.seq]).await.unwrap();
                if e.event.is_none() {
                    return e.content.0;
                }
            }
            other => panic!("expected a delivery, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_failing_group_actor_is_restarted_with_membership_and_epoch_intact() {
    let node = start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let carol = node.user(&admin, "carol").await;
    let users = [UserId::new("bob").unwrap(), UserId::new("carol").unwrap()];
    let g = alice.create_group("team", &users).await.unwrap();
    let mut a = alice.connect().await.unwrap();
    let mut b = bob.connect().await.unwrap();
    let mut c = carol.connect().await.unwrap();
    for conn in [&mut a, &mut b, &mut c] {
        drain_all(conn).await;
    }
    // A first send starts the group's actor.
    assert!(matches!(
        group_send(&mut a, group_msg(&g.id, g.epoch, "one")).await,
        ServerFrame::Accepted { .. }
    ));
    assert_eq!(group_receive(&mut b).await, b"one");
    assert_eq!(group_receive(&mut c).await, b"one");
    // Its handler fails on the next send: that send is refused (stored for no one).
    arm(&node, &admin, "group", "send", &format!("default/{}", g.id)).await;
    match group_send(&mut a, group_msg(&g.id, g.epoch, "lost")).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::Unavailable),
        other => panic!("{other:?}"),
    }
    let mut restarted = 0;
    for _ in 0..100 {
        restarted = count(&node, "restarts", "groups").await;
        if restarted == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(restarted, 1);
    assert_eq!(count(&node, "failures", "groups").await, 1);
    // Membership and epoch are the store's.
    let after = alice.group(&g.id).await.unwrap();
    assert_eq!((after.members, after.epoch, after.version), (g.members, g.epoch, g.version));
    // The next send succeeds and reaches every member; the refused one never arrives.
    assert!(matches!(
        group_send(&mut a, group_msg(&g.id, g.epoch, "two")).await,
        ServerFrame::Accepted { .. }
    ));
    assert_eq!(group_receive(&mut b).await, b"two");
    assert_eq!(group_receive(&mut c).await, b"two");
    // No socket closed: each still answers a ping round (a send to itself is refused, so a
    // key count request is the cheapest round trip).
    for conn in [&mut a, &mut b, &mut c] {
        let id = uuid::Uuid::new_v4();
        conn.send_frame(&ClientFrame::GetKeyCounts { id }).await.unwrap();
        assert!(matches!(next(conn).await, ServerFrame::KeyCounts { id: i, .. } if i == id));
    }
}

#[tokio::test]
async fn a_failing_session_actor_still_leaves_a_revoked_session_revoked() {
    let node = start();
    // Revoking another user's session is guarded by step-up (docs/mfa.md).
    let admin = node.stepped_admin().await;
    let alice = node.user(&admin, "alice").await;
    let alice2 = node.device("alice").await;
    let bob = node.user(&admin, "bob").await;
    let mut a1 = alice.connect().await.unwrap();
    let mut a2 = alice2.connect().await.unwrap();
    let mut b = bob.connect().await.unwrap();
    for conn in [&mut a1, &mut a2, &mut b] {
        drain_all(conn).await;
    }
    let session = alice.login_info().session_id.clone();
    arm(&node, &admin, "session", "revoke", &session).await;
    assert_eq!(admin.admin_revoke_session(&session).await.unwrap(), 1);
    // The session's actor failed on the revocation; restarted, it read the session from the
    // store (revoked) and closed the socket with the revocation's reason.
    let (frames, why) = closed(&mut a1).await;
    assert!(why.contains("4401"), "{why}");
    assert!(frames.contains(&ServerFrame::LoggedOut { reason: "revoked_by_admin".into() }), "{frames:?}");
    assert_eq!(count(&node, "failures", "sessions").await, 1);
    assert_eq!(count(&node, "restarts", "sessions").await, 1);
    // Revoked for good: its token is refused, over HTTP and the WebSocket.
    assert!(alice.devices(None).await.is_err());
    assert!(alice.connect().await.is_err());
    // Alice's other device and bob kept their sockets: bob writes to both of alice's devices
    // (device 1 is still linked; only its session ended) and device 2 receives.
    let devices = bob.devices(Some(&UserId::new("alice").unwrap())).await.unwrap().devices;
    assert_eq!(devices.len(), 2);
    let m = hush_protocol::wire::SendMessage {
        id: uuid::Uuid::new_v4(),
        to: UserId::new("alice").unwrap(),
        devices: devices
            .iter()
            .map(|d| hush_protocol::wire::DeviceMessage {
                device: d.id,
                registration_id: d.registration_id,
                content: Payload(format!("to device {}", d.id.get()).into_bytes()),
                content_type: hush_protocol::wire::ContentType::Ciphertext,
            })
            .collect(),
        sync: vec![],
    };
    let id = m.id;
    b.send_frame(&ClientFrame::Send(m)).await.unwrap();
    assert_eq!(next(&mut b).await, ServerFrame::Accepted { id });
    assert_eq!(group_receive(&mut a2).await, b"to device 2");
}
