//! Durability: every envelope acknowledged with `Accepted` survives `kill -9` of the node (also
//! under receipts load, where every delivered message is answered by a receipt and acked), and
//! a graceful stop closes sockets with 1001.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_client::{ClientError, Session};
use hush_protocol::ids::UserId;
use hush_protocol::wire::{ClientFrame, DeviceMessage, Payload, SendMessage, ServerFrame};
use hush_tests::{drain, Node};

/// Pipelines sends to bob (device 1) keeping `window` in flight until the socket dies.
async fn blast(
    session: Session,
    bob_reg: u16,
    accepted: Arc<Mutex<Vec<uuid::Uuid>>>,
    count: Arc<AtomicUsize>,
) {
    let Ok(mut conn) = session.connect().await else {
        return;
    };
    let window = 128;
    let mut inflight = 0;
    loop {
        while inflight < window {
            let m = one_message(&UserId::new("bob").unwrap(), u32::from(bob_reg), 256);
            if conn.send_frame(&m).await.is_err() {
                return;
            }
            inflight += 1;
        }
        match conn.next_frame().await {
            Ok(ServerFrame::Accepted { id }) => {
                accepted.lock().unwrap().push(id);
                count.fetch_add(1, Ordering::Relaxed);
                inflight -= 1;
            }
            Ok(ServerFrame::Error { .. }) => inflight -= 1,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_accepted_loses_nothing() {
    let mut node = Node::start();
    let admin = node.admin().await;
    let bob = node.user(&admin, "bob").await;
    let bob_reg =
        admin.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id.get();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = node.user(&admin, &format!("sender{i}")).await;
        tasks.push(tokio::spawn(blast(s, bob_reg, accepted.clone(), count.clone())));
    }
    // Kill while the senders are still going, with well over 1,000 accepted envelopes queued.
    let t0 = std::time::Instant::now();
    while count.load(Ordering::Relaxed) < 1500 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "senders too slow: {}",
            count.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 1000, "only {} accepted before the kill", accepted.len());

    node.restart();
    let mut conn = bob.connect().await.unwrap();
    let got = drain(&mut conn).await;
    let ids: std::collections::HashSet<uuid::Uuid> = got.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), got.len(), "no envelope delivered twice in one drain");
    let lost: Vec<_> = accepted.iter().filter(|id| !ids.contains(id)).collect();
    assert!(lost.is_empty(), "{} of {} accepted envelopes lost after kill -9", lost.len(), accepted.len());
}

/// What one peer of the receipts test saw: envelopes it sent that the node accepted, envelopes
/// it received (and acked).
#[derive(Default)]
struct Seen {
    accepted: Mutex<Vec<uuid::Uuid>>,
    received: Mutex<HashSet<uuid::Uuid>>,
}

fn one_message(to: &UserId, reg: u32, bytes: usize) -> ClientFrame {
    ClientFrame::Send(SendMessage {
        id: uuid::Uuid::new_v4(),
        to: to.clone(),
        devices: vec![DeviceMessage {
            device: hush_protocol::ids::DeviceId::PRIMARY,
            registration_id: hush_protocol::ids::RegistrationId::new(reg).unwrap(),
            content: Payload(vec![7; bytes]),
            content_type: hush_protocol::wire::ContentType::Ciphertext,
        }],
        sync: vec![],
    })
}

/// A peer of the receipts test until its socket dies: a sender (`window > 0`) keeps `window`
/// 256-byte messages in flight to `to`; a receiver answers every delivered message with a
/// 16-byte receipt to `to`. Both ack everything delivered.
async fn peer(
    session: Session,
    to: UserId,
    reg: u32,
    window: usize,
    seen: Arc<Seen>,
    count: Arc<AtomicUsize>,
) {
    let Ok(mut conn) = session.connect().await else {
        return;
    };
    let mut inflight = 0;
    loop {
        while inflight < window {
            if conn.send_frame(&one_message(&to, reg, 256)).await.is_err() {
                return;
            }
            inflight += 1;
        }
        match conn.next_frame().await {
            Ok(ServerFrame::Deliver(e)) => {
                seen.received.lock().unwrap().insert(e.id);
                let ack = conn.send_frame(&ClientFrame::Ack { seqs: vec![e.seq] }).await;
                let receipt = if window == 0 && e.event.is_none() {
                    conn.send_frame(&one_message(&to, reg, 16)).await
                } else {
                    Ok(())
                };
                if ack.is_err() || receipt.is_err() {
                    return;
                }
            }
            Ok(ServerFrame::Accepted { id }) => {
                seen.accepted.lock().unwrap().push(id);
                count.fetch_add(1, Ordering::Relaxed);
                inflight = inflight.saturating_sub(usize::from(window > 0));
            }
            Ok(ServerFrame::Error { .. }) => inflight = inflight.saturating_sub(usize::from(window > 0)),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Issue 15: under receipts load (senders pipelining as fast as the node accepts, every message
/// answered by a receipt, everything acked), `kill -9` loses no accepted envelope: each one was
/// delivered before the kill or is in its recipient's queue after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_receipts_load_loses_nothing() {
    let mut node = Node::start();
    let admin = node.admin().await;
    let reg_of = |s: &Session| u32::from(s.login_info().registration_id.get());
    let count = Arc::new(AtomicUsize::new(0));
    let mut peers = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (sname, rname) = (format!("rsend{i}"), format!("rrecv{i}"));
        let (s, r) = (node.user(&admin, &sname).await, node.user(&admin, &rname).await);
        let (s_seen, r_seen) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let (s_to, r_to) = (UserId::new(&rname).unwrap(), UserId::new(&sname).unwrap());
        let (s_reg, r_reg) = (reg_of(&r), reg_of(&s));
        tasks.push(tokio::spawn(peer(s.clone(), s_to, s_reg, 64, s_seen.clone(), count.clone())));
        tasks.push(tokio::spawn(peer(r.clone(), r_to, r_reg, 0, r_seen.clone(), count.clone())));
        peers.push((s, s_seen));
        peers.push((r, r_seen));
    }
    let t0 = std::time::Instant::now();
    while count.load(Ordering::Relaxed) < 3000 {
        assert!(t0.elapsed() < Duration::from_secs(120), "too slow: {}", count.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    node.restart();
    let (mut messages, mut receipts) = (0, 0);
    for (i, (session, seen)) in peers.iter().enumerate() {
        let mut conn = session.connect().await.unwrap();
        let mut have = seen.received.lock().unwrap().clone();
        have.extend(drain(&mut conn).await.into_iter().map(|e| e.id));
        // What the partner sent and the node accepted is this peer's to have.
        let partner = &peers[i ^ 1].1;
        let sent = partner.accepted.lock().unwrap().clone();
        let lost = sent.iter().filter(|id| !have.contains(id)).count();
        assert_eq!(lost, 0, "peer {i}: {lost} of {} accepted envelopes lost after kill -9", sent.len());
        if i % 2 == 0 {
            receipts += sent.len()
        } else {
            messages += sent.len()
        }
    }
    eprintln!("accepted before the kill: {messages} messages, {receipts} receipts; none lost");
    assert!(
        messages >= 1000 && receipts >= 500,
        "too little load before the kill: {messages} messages, {receipts} receipts"
    );
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_restart_keeps_data() {
    let mut node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let mut a = alice.connect().await.unwrap();
    drain(&mut a).await;
    let id = a.send_message(&UserId::new("bob").unwrap(), |_, _| b"kept".to_vec()).await.unwrap();
    assert!(node.terminate(), "hushd did not exit cleanly on SIGTERM");
    // The stop proved the drain: every socket closed before the server stopped.
    let log = node.log();
    let plain = |l: &str| {
        let mut out = String::new();
        let mut esc = false;
        for c in l.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (false, c) => out.push(c),
                _ => {}
            }
        }
        out
    };
    assert!(
        log.lines().map(plain).any(|l| l.contains("every connection drained") && l.contains("sockets=1")),
        "{log}"
    );
    match tokio::time::timeout(Duration::from_secs(10), a.next_frame()).await.unwrap() {
        Err(ClientError::Closed(Some(reason))) => assert!(reason.starts_with("1001"), "{reason}"),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    // Sessions, devices and queues survive the restart: bob's old token still works.
    node.restart();
    let mut b = bob.connect().await.unwrap();
    let got = drain(&mut b).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].content.0, b"kept");
}
