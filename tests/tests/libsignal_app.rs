//! A real libsignal app on a Hush node: `examples/libsignal-app` (Node.js, libsignal's own npm
//! package `@signalapp/libsignal-client` 0.103 and `ws`), run as child processes through its
//! line-oriented JSON driver (`driver.mjs`), on one real `hushd`.
//!
//! (a) Two libsignal app users exchange texts both ways (the first as a `prekey` message, later
//!     ones as `ciphertext`), also after one app process ended and a new one logged in again
//!     as the same device from its state file, and after the other reconnected its socket.
//! (b) A libsignal app user and a Hush SDK user (`hush_tests::dev::Dev`) exchange texts both
//!     ways: libsignal's decryption of the SDK's message yields the text in
//!     `Content.dataMessage.body`, and the SDK's `Event::Text` carries the app's text.
//!
//! The example's `node_modules` must be installed (`npm ci --prefix examples/libsignal-app`;
//! `scripts/test.sh` does it): without them the test fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_client::messenger::Event;
use hush_protocol::wire::ContentType;
use hush_tests::libsignal::{check_installed, sdk_device, text, uid, users, App};
use hush_tests::Node;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_libsignal_apps_chat_through_a_node_also_after_a_reconnect() {
    check_installed();
    let node = Node::start();
    users(&node, &["alice", "bob"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (alice_state, bob_state) = (dir.path().join("alice.json"), dir.path().join("bob.json"));
    let mut alice = App::start(&node, "alice", &alice_state).await;
    let mut bob = App::start(&node, "bob", &bob_state).await;

    // Alice starts the session from Bob's bundle: a pre-key message.
    let t1 = text("a1");
    alice.send("bob", &t1).await;
    let ev = bob.expect_text("alice", &t1).await;
    assert_eq!(ev["content_type"], "prekey", "{ev}");
    assert_eq!(ev["from_device"], json!(1), "{ev}");

    // Bob answers on that session.
    let t2 = text("b1");
    bob.send("alice", &t2).await;
    let ev = alice.expect_text("bob", &t2).await;
    assert_eq!(ev["content_type"], "ciphertext", "{ev}");

    // Alice's next message, now that Bob answered, is a plain SignalMessage.
    let t3 = text("a2");
    alice.send("bob", &t3).await;
    let ev = bob.expect_text("alice", &t3).await;
    assert_eq!(ev["content_type"], "ciphertext", "{ev}");

    // Bob's process ends; Alice writes while he is away; a new process logs in again as the
    // same device (from its state file), gets what was queued, and answers.
    bob.quit().await;
    let t4 = text("a3-offline");
    alice.send("bob", &t4).await;
    let mut bob = App::start(&node, "bob", &bob_state).await;
    assert_eq!(bob.events[0]["device"], json!(1), "the same device logged in again: {:?}", bob.events);
    let ev = bob.expect_text("alice", &t4).await;
    assert_eq!(ev["content_type"], "ciphertext", "the session survived the restart: {ev}");
    bob.wait_event("the queue drained", |e| e["event"] == "queue_empty").await;
    let t5 = text("b2-after-restart");
    bob.send("alice", &t5).await;
    alice.expect_text("bob", &t5).await;

    // Alice reconnects her socket; both directions still work.
    alice.reconnect().await;
    let t6 = text("b3");
    bob.send("alice", &t6).await;
    alice.expect_text("bob", &t6).await;
    let t7 = text("a4-after-reconnect");
    alice.send("bob", &t7).await;
    bob.expect_text("alice", &t7).await;

    // Every text read exactly once: acked envelopes do not come again.
    for t in [&t2, &t5, &t6] {
        assert_eq!(alice.count(t), 1, "alice read {t} once: {:?}", alice.events);
    }
    for t in [&t4, &t7] {
        assert_eq!(bob.count(t), 1, "bob read {t} once: {:?}", bob.events);
    }
    alice.quit().await;
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libsignal_app_and_a_hush_sdk_user_chat_both_ways() {
    check_installed();
    let node = Node::start();
    users(&node, &["carol", "dave"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut carol = App::start(&node, "carol", &dir.path().join("carol.json")).await;
    let mut dave = sdk_device(&node, "dave").await;

    // libsignal -> SDK: the app starts the session from the SDK device's bundle.
    let t1 = text("app-to-sdk");
    carol.send("dave", &t1).await;
    let ev =
        dave.until("the app's first text", |e| matches!(e, Event::Text { body, .. } if *body == t1)).await;
    let Event::Text { from, content_type, .. } = ev else { unreachable!() };
    assert_eq!(from, uid("carol"));
    assert_eq!(content_type, ContentType::PreKey);

    // SDK -> libsignal, on the session the app started: libsignal decrypts it, and the text is
    // in Content.dataMessage.body.
    let t2 = text("sdk-to-app");
    dave.m.send_text(&uid("carol"), &t2).await.unwrap();
    let ev = carol.expect_text("dave", &t2).await;
    assert_eq!(ev["content_type"], "ciphertext", "{ev}");

    // And on: the app answers on the established session.
    let t3 = text("app-to-sdk-2");
    carol.send("dave", &t3).await;
    let ev =
        dave.until("the app's second text", |e| matches!(e, Event::Text { body, .. } if *body == t3)).await;
    assert!(matches!(ev, Event::Text { content_type: ContentType::Ciphertext, .. }), "{ev:?}");

    // The SDK starting a session itself (a new SDK user writes first, from the app's bundle).
    users(&node, &["erin"]).await;
    let mut erin = sdk_device(&node, "erin").await;
    let t4 = text("sdk-first");
    erin.m.send_text(&uid("carol"), &t4).await.unwrap();
    let ev = carol.expect_text("erin", &t4).await;
    assert_eq!(ev["content_type"], "prekey", "{ev}");
    let t5 = text("app-answers-sdk");
    carol.send("erin", &t5).await;
    erin.until("the app's answer", |e| matches!(e, Event::Text { body, .. } if *body == t5)).await;

    assert_eq!(dave.undecryptable(), 0, "{:?}", dave.events);
    assert_eq!(erin.undecryptable(), 0, "{:?}", erin.events);
    carol.quit().await;
}
