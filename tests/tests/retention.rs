//! Envelope retention and the per-device queue bound, on real nodes in both backends (the
//! embedded store, and MongoDB: nx-27017 or `HUSH_TEST_MONGODB_URI`).
//!
//! - With a retention of 2 s, an envelope queued for an offline device is deleted by the sweep
//!   after it, and the device's next connect gets `QueueEmpty` first (no stale envelope); one
//!   queued within the retention still arrives.
//! - With a bound of 3 envelopes per device, a 4th send is refused with `queue_full` naming the
//!   device, and stores nothing for any device of that send; a group send to a full member
//!   device is refused whole (no member gets it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hush_client::ClientError;
use hush_protocol::ids::UserId;
use hush_protocol::wire::{ErrorCode, ServerFrame};
use hush_tests::{drain, drain_all, next, Mongo, Node, Redis};

async fn queue_depth(node: &Node) -> u64 {
    let text = reqwest::get(format!("{}/metrics", node.url())).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("hush_queue_depth "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hush_queue_depth in metrics:\n{text}"))
}

async fn stale_envelopes_expire(node: &Node) {
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let bob_id = UserId::new("bob").unwrap();
    let mut a = alice.connect().await.unwrap();
    assert!(drain(&mut a).await.is_empty());
    let base = queue_depth(node).await;

    let stale = a.send_message(&bob_id, |_, _| b"stale".to_vec()).await.unwrap();
    assert_eq!(queue_depth(node).await, base + 1, "the envelope is queued for offline bob");
    // Past the retention, the sweep (every second here) deletes it.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let mut depth = u64::MAX;
    for _ in 0..100 {
        depth = queue_depth(node).await;
        if depth == base {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(depth, base, "the expired envelope was not deleted");
    // Bob's next connect: Ready, then QueueEmpty at once, nothing stale.
    let mut b = bob.connect().await.unwrap();
    assert!(matches!(next(&mut b).await, ServerFrame::Ready { .. }));
    match next(&mut b).await {
        ServerFrame::QueueEmpty => {}
        other => panic!("expected QueueEmpty first, got {other:?} (stale id {stale})"),
    }
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // One queued within the retention still arrives.
    let sent_at = Instant::now();
    let fresh = a.send_message(&bob_id, |_, _| b"fresh".to_vec()).await.unwrap();
    let mut b = bob.connect().await.unwrap();
    let got = drain(&mut b).await;
    if sent_at.elapsed() < Duration::from_millis(1_900) {
        assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), vec![fresh]);
        assert_eq!(got[0].content.0, b"fresh");
    } else {
        // The machine was too slow to connect within the retention: then it must be gone.
        assert!(got.iter().all(|e| e.id != stale), "a stale envelope was delivered");
    }
    assert!(got.iter().all(|e| e.id != stale), "the stale envelope came back");
}

async fn full_queue_refuses_and_stores_nothing(node: &Node) {
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let bob2 = node.device("bob").await;
    let bob_id = UserId::new("bob").unwrap();
    let mut a = alice.connect().await.unwrap();
    assert!(drain(&mut a).await.is_empty());
    // Bob's first device acks the session events queued for it (its 2nd device's login), so
    // its queue starts empty.
    let mut b1 = bob.connect().await.unwrap();
    let events = drain_all(&mut b1).await;
    b1.ack(events.iter().map(|e| e.seq).collect()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Bob's second device is online and acks everything: its queue never fills.
    let mut b2 = bob2.connect().await.unwrap();
    assert!(drain(&mut b2).await.is_empty());
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(a.send_message(&bob_id, |_, _| format!("m{i}").into_bytes()).await.unwrap());
        match next(&mut b2).await {
            ServerFrame::Deliver(e) => b2.ack(vec![e.seq]).await.unwrap(),
            other => panic!("expected a delivery to bob's 2nd device, got {other:?}"),
        }
    }
    // Bob's first device (offline) holds 3 = the bound: the 4th send is refused, naming it.
    let err = a.send_message(&bob_id, |_, _| b"one too many".to_vec()).await.unwrap_err();
    match err {
        ClientError::Refused(f) => match *f {
            ServerFrame::Error { code: ErrorCode::QueueFull, message, .. } => {
                assert!(message.contains(&format!("bob/{}", bob.device())), "{message}");
                assert!(!message.contains(&format!("bob/{}", bob2.device())), "{message}");
            }
            other => panic!("expected queue_full, got {other:?}"),
        },
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing of it was stored, for any device: bob's 2nd device gets nothing more...
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(b2);
    let mut b2 = bob2.connect().await.unwrap();
    assert!(drain(&mut b2).await.is_empty(), "the refused send reached bob's other device");
    // ...and the full device drains exactly the three accepted ones.
    let mut b1 = bob.connect().await.unwrap();
    let got = drain(&mut b1).await;
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    // Once drained, there is room again.
    b1.ack(got.iter().map(|e| e.seq).collect()).await.unwrap();
    // An ack is fire-and-forget: let it commit before leaving.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b1);
    let mut last = None;
    for _ in 0..50 {
        match a.send_message(&bob_id, |_, _| b"room again".to_vec()).await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_none(), "the drained queue still refuses: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stale_envelopes_expire() {
    let node = Node::start_args(&["--envelope-retention-secs", "2"]);
    stale_envelopes_expire(&node).await;
    assert!(node.log().contains("deleted envelopes past the retention"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_stale_envelopes_expire() {
    let (redis, mongo) = (Redis::start(), Mongo::start());
    let node = Node::start_clustered_args(&redis, &mongo, "r1", &["--envelope-retention-secs", "2"]);
    stale_envelopes_expire(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_full_queue_refuses() {
    let node = Node::start_args(&["--max-queue-per-device", "3"]);
    full_queue_refuses_and_stores_nothing(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_full_queue_refuses() {
    let (redis, mongo) = (Redis::start(), Mongo::start());
    let node = Node::start_clustered_args(&redis, &mongo, "q1", &["--max-queue-per-device", "3"]);
    full_queue_refuses_and_stores_nothing(&node).await;
}

#[test]
fn bad_settings_are_refused_with_one_line() {
    let out = std::process::Command::new(hush_tests::bin("hushd"))
        .args(["--envelope-retention-secs", "0", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("envelope_retention_secs"), "{err}");
}

/// A group send to a member device whose queue is full is refused whole: `queue_full` naming
/// that device, and no member (not even the online ones) gets the message.
async fn full_queue_refuses_a_group_send(node: &Node) {
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let carol = node.user(&admin, "carol").await;
    let members = [UserId::new("bob").unwrap(), UserId::new("carol").unwrap()];
    let g = alice.create_group("ops", &members).await.unwrap();
    let mut a = alice.connect().await.unwrap();
    drain_all(&mut a).await;
    let mut c = carol.connect().await.unwrap();
    let ev = drain_all(&mut c).await;
    c.ack(ev.iter().map(|e| e.seq).collect()).await.unwrap();
    // Bob stays offline (his queue holds the group's creation event): send until refused.
    let mut accepted = Vec::new();
    let refused = loop {
        assert!(accepted.len() <= 3, "the bound of 3 was not enforced");
        let id = uuid::Uuid::new_v4();
        match a.send_group(id, &g.id, g.epoch, b"to the group".to_vec()).await.unwrap() {
            ServerFrame::Accepted { .. } => accepted.push(id),
            ServerFrame::Error { code: ErrorCode::QueueFull, message, .. } => break (id, message),
            other => panic!("expected Accepted or queue_full, got {other:?}"),
        }
        // Carol is online: she gets each accepted message and acks it (her queue never fills).
        match next(&mut c).await {
            ServerFrame::Deliver(e) => {
                assert_eq!(e.id, id);
                c.ack(vec![e.seq]).await.unwrap();
            }
            other => panic!("expected the group message for carol, got {other:?}"),
        }
    };
    assert!(!accepted.is_empty(), "bob's queue was full before any message");
    assert!(refused.1.contains(&format!("bob/{}", bob.device())), "{}", refused.1);
    assert!(!refused.1.contains("carol"), "{}", refused.1);
    // Carol did not get the refused message: it was stored for no member.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c);
    let mut c = carol.connect().await.unwrap();
    let again = drain(&mut c).await;
    assert!(again.iter().all(|e| e.id != refused.0), "the refused group message reached carol");
    // Bob gets exactly the accepted ones.
    let mut b = bob.connect().await.unwrap();
    let got = drain(&mut b).await;
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_full_queue_refuses_a_group_send() {
    let node = Node::start_args(&["--max-queue-per-device", "3"]);
    full_queue_refuses_a_group_send(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_full_queue_refuses_a_group_send() {
    let (redis, mongo) = (Redis::start(), Mongo::start());
    let node = Node::start_clustered_args(&redis, &mongo, "g1", &["--max-queue-per-device", "3"]);
    full_queue_refuses_a_group_send(&node).await;
}
