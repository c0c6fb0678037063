//! Signal's `Content` inside every SDK ciphertext, and retry requests, against a real node.
//!
//! - A corrupted ciphertext (a real one, made by the sender's own state, with a byte flipped
//!   before it is sent) lands in the recipient's quarantine, is not acknowledged away, and the
//!   sender gets a retry request (a libsignal `DecryptionErrorMessage` in a `PlaintextContent`,
//!   type `plaintext`); the sender starts a fresh session with that device and sends the
//!   original again, which the recipient then reads (and its quarantine entry goes).
//! - The same for a group message: the sender hands the member its sender key again on a fresh
//!   pairwise session, then sends the group message again under the same id.
//! - SDK to SDK texts, sync copies, sender-key distributions and group texts travel as Signal
//!   `Content` (text in `dataMessage.body`, with a timestamp), and fields the SDK does not know
//!   reach the other side unchanged, in a text and in a content of a kind the SDK does not
//!   interpret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_client::content::Content;
use hush_client::messenger::{Event, Messenger};
use hush_client::retry::SentTo;
use hush_client::state::peer;
use hush_client::{Client, Session};
use hush_protocol::api::Secret;
use hush_protocol::e2e::content::{Content as SignalContent, DataMessage, HushExtension};
use hush_protocol::ids::{DeviceId, TenantId, UserId};
use hush_protocol::wire::{ClientFrame, ContentType, GroupSendMessage, Payload, ServerFrame};
use hush_tests::dev::Dev;
use hush_tests::Node;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// A distinctive plaintext.
fn secret(label: &str) -> String {
    format!("plaintext-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh device of `user` (registered, connected), named `name` in failure messages.
async fn dev(node: &Node, user: &str, name: &str) -> Dev {
    let (session, state) = register(node, user).await;
    Dev::new(name, Messenger::connect(session, state, None).await.unwrap())
}

async fn register(node: &Node, user: &str) -> (Session, hush_client::state::DeviceState) {
    hush_client::register_device(
        &Client::new(node.url()),
        &TenantId::new("default").unwrap(),
        &uid(user),
        &Secret::new(format!("{user}-password")),
        None,
    )
    .await
    .unwrap()
}

async fn users(node: &Node, names: &[&str]) {
    let admin = node.admin().await;
    for n in names {
        admin.create_user(&uid(n), &Secret::new(format!("{n}-password")), false).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_message_is_quarantined_retried_and_resent_on_a_fresh_session() {
    let node = Node::start();
    users(&node, &["alice", "bob"]).await;
    let mut alice = dev(&node, "alice", "alice").await;
    let mut bob = dev(&node, "bob", "bob").await;
    let bob_1 = peer(&uid("bob"), DeviceId::PRIMARY);

    // A session both ways, so the corrupted message is a normal `ciphertext` with a ratchet key.
    let hello = secret("hello");
    alice.m.send_text(&uid("bob"), &hello).await.unwrap();
    bob.until("hello", |e| matches!(e, Event::Text { body, .. } if *body == hello)).await;
    let reply = secret("reply");
    bob.m.send_text(&uid("alice"), &reply).await.unwrap();
    alice.until("reply", |e| matches!(e, Event::Text { body, .. } if *body == reply)).await;

    // Alice's device makes a real ciphertext of a text with its own state, flips a byte of it,
    // and sends it over its own socket; the text goes in its recent-sent cache as `send_text`
    // would put it.
    let original = secret("original");
    let session = alice.m.session().clone();
    let mut state = alice.m.close().await.unwrap();
    let plain = Content::Text { body: original.clone() }.encode().unwrap();
    let (t, mut ct) = state.encrypt_typed(&bob_1, &plain).unwrap();
    assert_eq!(t, ContentType::Ciphertext);
    let at = ct.len() - 20;
    ct[at] ^= 0x40;
    let mut raw = session.connect().await.unwrap();
    hush_tests::drain_all(&mut raw).await;
    let id = raw.send_typed_message(&uid("bob"), |_, _| (t, ct.clone())).await.unwrap();
    raw.close().await.unwrap();
    state.remember_sent(id, SentTo::User(uid("bob")), &original);
    alice.m = Messenger::connect(session, state, None).await.unwrap();
    alice.events.clear();

    // Bob cannot read it: quarantined (and acknowledged only once kept), a retry request sent.
    let ev =
        bob.until("undecryptable", |e| matches!(e, Event::Undecryptable { id: i, .. } if *i == id)).await;
    match ev {
        Event::Undecryptable { from, content_type, quarantined, .. } => {
            assert_eq!((from.as_str(), content_type, quarantined), ("alice", ContentType::Ciphertext, true));
        }
        other => panic!("{other:?}"),
    }
    let q = bob.m.quarantined();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].id, &q[0].content), (id, &ct));
    let node_timestamp = q[0].timestamp_ms;
    assert_eq!(bob.m.retry_requests(), 1);

    // Alice gets the retry request for that message, resets the session, sends it again.
    let ev = alice.until("retry request", |e| matches!(e, Event::RetryRequested { .. })).await;
    match ev {
        Event::RetryRequested { from, from_device, message, timestamp_ms, resent } => {
            assert_eq!((from.as_str(), from_device.get(), message, resent), ("bob", 1, Some(id), true));
            assert_eq!(timestamp_ms, node_timestamp, "the envelope's timestamp as bob saw it");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(alice.m.resends(), 1);

    // Bob reads the original on the fresh session (a pre-key message), under the same id; the
    // quarantine entry is released.
    let ev = bob.until("the original", |e| matches!(e, Event::Text { id: i, .. } if *i == id)).await;
    match ev {
        Event::Text { body, content_type, signal, .. } => {
            assert_eq!((body.as_str(), content_type), (original.as_str(), ContentType::PreKey));
            assert_eq!(signal.unwrap().data_message.unwrap().body, Some(original.clone()));
        }
        other => panic!("{other:?}"),
    }
    assert!(bob.m.quarantined().is_empty(), "{:?}", bob.m.quarantined());

    // The conversation goes on both ways on the new session.
    let after = secret("after");
    alice.m.send_text(&uid("bob"), &after).await.unwrap();
    bob.until("after", |e| matches!(e, Event::Text { body, .. } if *body == after)).await;
    let back = secret("back");
    bob.m.send_text(&uid("alice"), &back).await.unwrap();
    alice.until("back", |e| matches!(e, Event::Text { body, .. } if *body == back)).await;
    assert_eq!(bob.events.iter().filter(|e| matches!(e, Event::Undecryptable { .. })).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_groups_and_sender_keys_travel_as_signal_content_and_unknown_fields_survive() {
    let node = Node::start();
    users(&node, &["alice", "bob"]).await;
    let mut alice = dev(&node, "alice", "alice").await;
    let mut alice2 = dev(&node, "alice", "alice2").await;
    let mut bob = dev(&node, "bob", "bob").await;

    // 1:1 text: dataMessage.body with a timestamp; the sync copy to alice's other device.
    let t1 = secret("t1");
    let id = alice.m.send_text(&uid("bob"), &t1).await.unwrap();
    match bob.until("t1", |e| matches!(e, Event::Text { body, .. } if *body == t1)).await {
        Event::Text { id: i, signal, .. } => {
            assert_eq!(i, id);
            let d = signal.unwrap().data_message.unwrap();
            assert_eq!(d.body.as_deref(), Some(t1.as_str()));
            assert!(d.timestamp.unwrap() > 1_700_000_000_000);
        }
        other => panic!("{other:?}"),
    }
    match alice2.until("sync copy", |e| matches!(e, Event::Sent { body, .. } if *body == t1)).await {
        Event::Sent { to, signal, .. } => {
            assert_eq!(to.as_str(), "bob");
            let sc = signal.unwrap();
            let sent = sc.sync_message.unwrap().sent.unwrap();
            assert_eq!(sent.message.unwrap().body.as_deref(), Some(t1.as_str()));
            assert_eq!(sc.hush.unwrap().sent_to.as_deref(), Some("bob"));
        }
        other => panic!("{other:?}"),
    }

    // A group: the sender key goes pairwise as senderKeyDistributionMessage (group and epoch in
    // the extension), the text as a dataMessage inside the Sender Key ciphertext.
    let g = alice.m.create_group("content", &[uid("bob")]).await.unwrap();
    let gt = secret("group");
    alice.m.send_group_text(&g, &gt).await.unwrap();
    for d in [&mut bob, &mut alice2] {
        d.until("sender key", |e| matches!(e, Event::SenderKeyReceived { group, .. } if *group == g)).await;
        match d.until("group text", |e| matches!(e, Event::GroupText { body, .. } if *body == gt)).await {
            Event::GroupText { group, signal, content_type, .. } => {
                assert_eq!((group, content_type), (g.clone(), ContentType::SenderKey));
                assert_eq!(signal.unwrap().data_message.unwrap().body, Some(gt.clone()));
            }
            other => panic!("{other:?}"),
        }
    }
    let reply = secret("group reply");
    bob.m.send_group_text(&g, &reply).await.unwrap();
    alice.until("group reply", |e| matches!(e, Event::GroupText { body, .. } if *body == reply)).await;

    // Fields the SDK does not know, at three levels, reach bob unchanged with the text.
    let extra = secret("extra");
    let sc = SignalContent {
        data_message: Some(DataMessage {
            body: Some(extra.clone()),
            timestamp: Some(42),
            // DataMessage.attachments (2) and expireTimer (5).
            unknown: vec![0x12, 0x03, b'a', b't', b't', 0x28, 0x3c],
        }),
        hush: Some(HushExtension { unknown: vec![0x48, 0x07], ..HushExtension::default() }),
        // Content.receiptMessage (5) and a field no one uses (2000, fixed64).
        unknown: vec![0x2a, 0x02, 0x08, 0x01, 0x81, 0x7d, 1, 2, 3, 4, 5, 6, 7, 8],
        ..SignalContent::default()
    };
    alice.m.send_content(&uid("bob"), &sc).await.unwrap();
    match bob.until("extra", |e| matches!(e, Event::Text { body, .. } if *body == extra)).await {
        Event::Text { signal, .. } => assert_eq!(*signal.unwrap(), sc),
        other => panic!("{other:?}"),
    }
    // A content of a kind the SDK does not interpret (a typing indicator) is handed over whole.
    let typing =
        SignalContent { unknown: vec![0x32, 0x04, 0x08, 0x01, 0x10, 0x00], ..SignalContent::default() };
    let tid = alice.m.send_content(&uid("bob"), &typing).await.unwrap();
    match bob.until("typing", |e| matches!(e, Event::Other { id, .. } if *id == tid)).await {
        Event::Other { from, content, group, .. } => {
            assert_eq!((from.as_str(), group), ("alice", None));
            assert_eq!(*content, typing);
        }
        other => panic!("{other:?}"),
    }
    for d in [&alice, &alice2, &bob] {
        assert!(
            !d.events.iter().any(|e| matches!(e, Event::Undecryptable { .. })),
            "{}: {:?}",
            d.name,
            d.events
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_group_message_is_retried_and_resent_with_the_sender_key() {
    let node = Node::start();
    users(&node, &["alice", "bob", "carol"]).await;
    let mut alice = dev(&node, "alice", "alice").await;
    let mut bob = dev(&node, "bob", "bob").await;
    let mut carol = dev(&node, "carol", "carol").await;
    let g = alice.m.create_group("retry", &[uid("bob"), uid("carol")]).await.unwrap();
    let first = secret("first");
    alice.m.send_group_text(&g, &first).await.unwrap();
    for d in [&mut bob, &mut carol] {
        d.until("first", |e| matches!(e, Event::GroupText { body, .. } if *body == first)).await;
    }

    // A real Sender Key ciphertext of the next text, one byte flipped, sent as a GroupSend.
    let original = secret("group original");
    let session = alice.m.session().clone();
    let mut state = alice.m.close().await.unwrap();
    let me = peer(&uid("alice"), DeviceId::PRIMARY);
    let plain = Content::GroupText { body: original.clone() }.encode().unwrap();
    let mut ct = state.group_encrypt(&me, g.as_str(), &plain).unwrap();
    let at = ct.len() - 80;
    ct[at] ^= 0x01;
    let mut raw = session.connect().await.unwrap();
    hush_tests::drain_all(&mut raw).await;
    let id = uuid::Uuid::new_v4();
    let epoch = session.group(&g).await.unwrap().epoch;
    let m = GroupSendMessage {
        id,
        group: g.clone(),
        epoch,
        content: Payload(ct.clone()),
        content_type: ContentType::SenderKey,
    };
    raw.send_frame(&ClientFrame::GroupSend(m)).await.unwrap();
    loop {
        match hush_tests::next(&mut raw).await {
            ServerFrame::Accepted { id: i } if i == id => break,
            ServerFrame::Deliver(_) => {}
            other => panic!("{other:?}"),
        }
    }
    raw.close().await.unwrap();
    state.remember_sent(id, SentTo::Group(g.clone()), &original);
    alice.m = Messenger::connect(session, state, None).await.unwrap();

    // Both members fail and ask; alice answers each: a fresh session, the sender key again, and
    // the group message again under the same id, which each reads once.
    for d in [&mut bob, &mut carol] {
        d.until("undecryptable", |e| matches!(e, Event::Undecryptable { id: i, .. } if *i == id)).await;
        assert_eq!(d.m.quarantined().len(), 1);
    }
    for who in ["bob", "carol"] {
        alice
            .until(who, |e| matches!(e, Event::RetryRequested { from, message, .. } if from.as_str() == who && *message == Some(id)))
            .await;
    }
    for d in [&mut bob, &mut carol] {
        match d.until("the original", |e| matches!(e, Event::GroupText { id: i, .. } if *i == id)).await {
            Event::GroupText { body, group, .. } => assert_eq!((body, group), (original.clone(), g.clone())),
            other => panic!("{other:?}"),
        }
        assert!(d.m.quarantined().is_empty());
        d.events.clear();
    }
    // The group goes on for everyone.
    let after = secret("group after");
    alice.m.send_group_text(&g, &after).await.unwrap();
    for d in [&mut bob, &mut carol] {
        d.until("after", |e| matches!(e, Event::GroupText { body, .. } if *body == after)).await;
        let n = d.events.iter().filter(|e| matches!(e, Event::GroupText { id: i, .. } if *i == id)).count();
        assert_eq!(n, 0, "{}: the re-sent message came twice", d.name);
    }
}
