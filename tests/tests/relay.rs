//! The 1:1 relay against a real node: offline queueing and in-order drain, live delivery, acks,
//! sync copies, device-set refusals that store nothing, and displacement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_client::ClientError;
use hush_protocol::ids::{DeviceId, RegistrationId, UserId};
use hush_protocol::wire::{ClientFrame, DeviceMessage, Payload, SendMessage, ServerFrame};
use hush_tests::{drain, next, Node};

fn msg(to: &str, devices: &[(u32, u16)], text: &str) -> SendMessage {
    SendMessage {
        id: uuid::Uuid::new_v4(),
        to: UserId::new(to).unwrap(),
        devices: devices
            .iter()
            .map(|(d, r)| DeviceMessage {
                device: DeviceId::new(*d).unwrap(),
                registration_id: RegistrationId::new(u32::from(*r)).unwrap(),
                content: Payload(text.as_bytes().to_vec()),
                content_type: hush_protocol::wire::ContentType::Ciphertext,
            })
            .collect(),
        sync: vec![],
    }
}

#[tokio::test]
async fn offline_messages_are_delivered_in_order_then_live() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let mut a = alice.connect().await.unwrap();
    assert!(matches!(next(&mut a).await, ServerFrame::Ready { .. }));
    assert!(matches!(next(&mut a).await, ServerFrame::QueueEmpty));

    let mut ids = Vec::new();
    for i in 0..50 {
        let text = format!("offline {i}");
        ids.push(
            a.send_message(&UserId::new("bob").unwrap(), |_, _| text.clone().into_bytes()).await.unwrap(),
        );
    }
    // Bob connects: everything, in order, then QueueEmpty.
    let mut b = bob.connect().await.unwrap();
    let got = drain(&mut b).await;
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.content.0, format!("offline {i}").into_bytes());
        assert_eq!(e.from.as_str(), "alice");
        assert_eq!(e.from_device, DeviceId::PRIMARY);
        assert!(!e.sync);
    }
    assert!(got.windows(2).all(|w| w[0].seq < w[1].seq));
    // Ack half; the other half comes back on reconnect, and nothing else.
    b.ack(got[..25].iter().map(|e| e.seq).collect()).await.unwrap();
    // A live message while connected.
    let live = a.send_message(&UserId::new("bob").unwrap(), |_, _| b"live".to_vec()).await.unwrap();
    match next(&mut b).await {
        ServerFrame::Deliver(e) => {
            assert_eq!(e.id, live);
            b.ack(vec![e.seq]).await.unwrap();
        }
        other => panic!("expected live delivery, got {other:?}"),
    }
    // Let the acks commit (an ack is fire-and-forget), then reconnect.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(b);
    let mut b = bob.connect().await.unwrap();
    let again = drain(&mut b).await;
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), ids[25..].to_vec());
}

#[tokio::test]
async fn wrong_device_sets_store_nothing() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let bob2 = node.device("bob").await;
    let bob_devices = alice.devices(Some(&UserId::new("bob").unwrap())).await.unwrap();
    let r1 = bob_devices.devices[0].registration_id.get();
    let r2 = bob_devices.devices[1].registration_id.get();
    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;

    // Missing device 2, extra device 5.
    let m = msg("bob", &[(1, r1), (5, 1)], "x");
    a.send_frame(&ClientFrame::Send(m.clone())).await.unwrap();
    match next(&mut a).await {
        ServerFrame::MismatchedDevices { id, user, missing, extra } => {
            assert_eq!(id, m.id);
            assert_eq!(user.as_str(), "bob");
            assert_eq!(missing, vec![DeviceId::new(2).unwrap()]);
            assert_eq!(extra, vec![DeviceId::new(5).unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    // Stale registration id on device 2.
    let stale_r2 = if r2 == 16383 { 1 } else { r2 + 1 };
    let m = msg("bob", &[(1, r1), (2, stale_r2)], "y");
    a.send_frame(&ClientFrame::Send(m.clone())).await.unwrap();
    match next(&mut a).await {
        ServerFrame::StaleDevices { id, stale, .. } => {
            assert_eq!(id, m.id);
            assert_eq!(stale, vec![DeviceId::new(2).unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    // Unknown recipient.
    let m = msg("nobody", &[(1, 1)], "z");
    a.send_frame(&ClientFrame::Send(m.clone())).await.unwrap();
    assert!(matches!(
        next(&mut a).await,
        ServerFrame::Error { code: hush_protocol::wire::ErrorCode::UnknownRecipient, .. }
    ));
    // Nothing was stored for either of bob's devices.
    for s in [&bob, &bob2] {
        let mut c = s.connect().await.unwrap();
        assert!(drain(&mut c).await.is_empty(), "a refused send left an envelope");
    }
    // The right set is accepted and reaches both devices.
    let m = msg("bob", &[(1, r1), (2, r2)], "ok");
    a.send_frame(&ClientFrame::Send(m.clone())).await.unwrap();
    assert_eq!(next(&mut a).await, ServerFrame::Accepted { id: m.id });
    for s in [&bob, &bob2] {
        let mut c = s.connect().await.unwrap();
        let got = drain(&mut c).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].content.0, b"ok");
    }
}

#[tokio::test]
async fn sync_copies_reach_the_senders_other_devices() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let alice2 = node.device("alice").await;
    let _bob = node.user(&admin, "bob").await;
    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;
    // Without a sync copy for alice's device 2, the node refuses: the sender's set is checked too.
    let bob_r =
        alice.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id.get();
    let m = msg("bob", &[(1, bob_r)], "no sync");
    a.send_frame(&ClientFrame::Send(m)).await.unwrap();
    match next(&mut a).await {
        ServerFrame::MismatchedDevices { user, missing, .. } => {
            assert_eq!(user.as_str(), "alice");
            assert_eq!(missing, vec![DeviceId::new(2).unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    // The SDK includes it.
    let id = a
        .send_message(&UserId::new("bob").unwrap(), |u, d| format!("for {u}/{}", d.id).into_bytes())
        .await
        .unwrap();
    let mut a2 = alice2.connect().await.unwrap();
    let got = drain(&mut a2).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert!(got[0].sync);
    assert_eq!(got[0].content.0, b"for alice/2");
}

#[tokio::test]
async fn second_connection_displaces_the_first() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let mut first = alice.connect().await.unwrap();
    drain(&mut first).await;
    let mut second = alice.connect().await.unwrap();
    drain(&mut second).await;
    let err = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), first.next_frame()).await.unwrap() {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match err {
        ClientError::Closed(Some(reason)) => assert!(reason.starts_with("4409"), "{reason}"),
        other => panic!("expected a 4409 close, got {other:?}"),
    }
    // The second connection still works.
    let me = UserId::new("admin").unwrap();
    let admin_conn_id = {
        let mut c = admin.connect().await.unwrap();
        drain(&mut c).await;
        c.send_message(&UserId::new("alice").unwrap(), |_, _| b"hi".to_vec()).await.unwrap()
    };
    let _ = me;
    match next(&mut second).await {
        ServerFrame::Deliver(e) => assert_eq!(e.id, admin_conn_id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn logout_closes_the_live_socket_with_logged_out() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let mut conn = alice.connect().await.unwrap();
    drain(&mut conn).await;
    alice.logout().await.unwrap();
    assert_eq!(next(&mut conn).await, ServerFrame::LoggedOut { reason: "logout".into() });
    match conn.next_frame().await {
        Err(ClientError::Closed(Some(reason))) => assert!(reason.starts_with("4401"), "{reason}"),
        other => panic!("expected a 4401 close, got {other:?}"),
    }
}
