//! Content types and libsignal's bundle needs against a real node: every per-device content
//! carries its type (as Signal-Server's `Envelope.Type`) from `Send`/`GroupSend` to `Deliver`,
//! a frame with a missing, unknown or misplaced type is refused with `invalid_content_type` in
//! both encodings and stores nothing, node events arrive typed `event`; a device cannot register
//! keys without a signed Kyber last-resort key; and an SDK client keeps what it cannot decrypt
//! in its quarantine (listed by the SDK and by `hush quarantine`) instead of dropping it, and
//! asks the sender for it again (a retry request).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hush_client::messenger::{Event, Messenger};
use hush_client::state::DeviceState;
use hush_client::{Client, ClientError, Connection};
use hush_protocol::api::{DeviceRequest, Secret};
use hush_protocol::e2e::retry::PlaintextContent;
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::{
    ClientFrame, ContentType, ErrorCode, GroupSendMessage, Payload, SendMessage, ServerFrame,
};
use hush_tests::cli::Cli;
use hush_tests::{drain_all, next, send_to_primary, Node};
use tokio_tungstenite::tungstenite::Message;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn typed(to: &str, reg: u32, content: &[u8], t: ContentType) -> SendMessage {
    let mut m = send_to_primary(to, reg, content.to_vec());
    m.devices[0].content_type = t;
    m
}

/// The answer to message `id` (deliveries and other frames meanwhile are skipped).
async fn answer(c: &mut Connection, id: uuid::Uuid) -> ServerFrame {
    loop {
        let f = next(c).await;
        let mine = match &f {
            ServerFrame::Accepted { id: i } | ServerFrame::Error { id: Some(i), .. } => *i == id,
            _ => false,
        };
        if mine {
            return f;
        }
    }
}

fn assert_refused(f: &ServerFrame, id: uuid::Uuid, what: &str) {
    match f {
        ServerFrame::Error { id: Some(i), code: ErrorCode::InvalidContentType, message, .. } => {
            assert_eq!(*i, id, "{what}: {message}");
        }
        other => panic!("{what}: expected invalid_content_type, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_are_carried_and_bad_ones_store_nothing() {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let bob_reg = u32::from(bob.login_info().registration_id.get());
    let mut a = alice.connect().await.unwrap();
    drain_all(&mut a).await;

    // Valid 1:1 types, postcard and JSON.
    let mut sent = Vec::new();
    for t in [ContentType::PreKey, ContentType::Ciphertext, ContentType::Plaintext] {
        let m = typed("bob", bob_reg, t.name().as_bytes(), t);
        let id = m.id;
        a.send_frame(&ClientFrame::Send(m)).await.unwrap();
        assert_eq!(answer(&mut a, id).await, ServerFrame::Accepted { id });
        sent.push((id, t));
    }
    let m = typed("bob", bob_reg, b"json", ContentType::Ciphertext);
    let (id, text) = (m.id, ClientFrame::Send(m).encode_text().unwrap());
    assert!(text.contains("\"content_type\":\"ciphertext\""), "{text}");
    a.send_raw(Message::Text(text.into())).await.unwrap();
    assert_eq!(answer(&mut a, id).await, ServerFrame::Accepted { id });
    sent.push((id, ContentType::Ciphertext));

    // Refused in postcard: a group type, the node's own, none.
    for t in [ContentType::SenderKey, ContentType::Event, ContentType::Unknown] {
        let m = typed("bob", bob_reg, b"refused", t);
        let id = m.id;
        a.send_frame(&ClientFrame::Send(m)).await.unwrap();
        assert_refused(&answer(&mut a, id).await, id, t.name());
    }
    // An unknown number in postcard (the type is the byte before the empty sync list).
    let m = typed("bob", bob_reg, b"refused", ContentType::Ciphertext);
    let id = m.id;
    let mut bytes = ClientFrame::Send(m).encode_binary().unwrap();
    let at = bytes.len() - 2;
    assert_eq!(bytes[at], ContentType::Ciphertext.number());
    bytes[at] = 99;
    a.send_raw(Message::Binary(bytes.into())).await.unwrap();
    assert_refused(&answer(&mut a, id).await, id, "postcard 99");
    // Refused in JSON: unknown names, the node's own, a group type, none at all.
    let ok = ClientFrame::Send(typed("bob", bob_reg, b"refused", ContentType::Ciphertext));
    let base = ok.encode_text().unwrap();
    let ClientFrame::Send(SendMessage { id, .. }) = ok else { unreachable!() };
    for bad in [
        base.replace("\"ciphertext\"", "\"whisper\""),
        base.replace("\"ciphertext\"", "\"event\""),
        base.replace("\"ciphertext\"", "\"sender_key\""),
        base.replace("\"ciphertext\"", "42"),
        base.replace(",\"content_type\":\"ciphertext\"", ""),
    ] {
        assert_ne!(bad, base);
        a.send_raw(Message::Text(bad.clone().into())).await.unwrap();
        assert_refused(&answer(&mut a, id).await, id, &bad);
    }

    // A group: only sender_key is accepted, and it is delivered as such.
    let g = alice.create_group("typed", &[uid("bob")]).await.unwrap();
    let gs = |t: ContentType| GroupSendMessage {
        id: uuid::Uuid::new_v4(),
        group: g.id.clone(),
        epoch: g.epoch,
        content: Payload(b"group".to_vec()),
        content_type: t,
    };
    for t in [ContentType::Ciphertext, ContentType::PreKey, ContentType::Plaintext, ContentType::Unknown] {
        let m = gs(t);
        let id = m.id;
        a.send_frame(&ClientFrame::GroupSend(m)).await.unwrap();
        assert_refused(&answer(&mut a, id).await, id, t.name());
    }
    let m = gs(ContentType::SenderKey);
    let gid = m.id;
    a.send_frame(&ClientFrame::GroupSend(m)).await.unwrap();
    assert_eq!(answer(&mut a, gid).await, ServerFrame::Accepted { id: gid });

    // Bob gets exactly the accepted messages, typed as sent; the node's events typed `event`.
    let mut b = bob.connect().await.unwrap();
    let got = drain_all(&mut b).await;
    let events: Vec<_> = got.iter().filter(|e| e.event.is_some()).collect();
    assert!(!events.is_empty(), "the group change reaches bob as an event");
    assert!(events.iter().all(|e| e.content_type == ContentType::Event), "{events:?}");
    let msgs: Vec<_> = got.iter().filter(|e| e.event.is_none()).collect();
    let mut want: Vec<(uuid::Uuid, ContentType)> = sent.clone();
    want.push((gid, ContentType::SenderKey));
    assert_eq!(msgs.iter().map(|e| (e.id, e.content_type)).collect::<Vec<_>>(), want);
    assert_eq!(msgs.last().unwrap().group.as_ref().map(|s| s.group.clone()), Some(g.id.clone()));
    assert!(msgs.iter().all(|e| e.content.0 != b"refused"), "nothing refused was stored");
}

/// A device request with a fresh identity and the given keys.
fn device_request(st: &DeviceState, keys: Option<hush_protocol::api::UploadKeysRequest>) -> DeviceRequest {
    DeviceRequest {
        id: None,
        registration_id: st.registration_id(),
        name: Some("t".into()),
        identity_key: Some(Payload(st.identity_key().serialize().to_vec())),
        keys,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kyber_last_resort_key_is_required_to_register_keys() {
    let node = Node::start();
    let admin = node.admin().await;
    let carol = node.user(&admin, "carol").await;
    admin.create_user(&uid("dave"), &Secret::new("dave-password"), false).await.unwrap();
    let client = Client::new(node.url());
    let (tenant, pw) = (TenantId::new("default").unwrap(), Secret::new("dave-password"));

    // A login registering a new device with keys but no last-resort key: 422, nothing stored.
    let st = DeviceState::generate(hush_client::random_registration_id()).unwrap();
    let mut keys = hush_client::upload_request(&st.signed_upload().unwrap());
    assert!(keys.kyber_last_resort.is_some());
    keys.kyber_last_resort = None;
    match client.login(&tenant, &uid("dave"), &pw, device_request(&st, Some(keys.clone()))).await {
        Err(ClientError::Http { status: 422, body }) => {
            assert_eq!(body.error, "missing_kyber_last_resort", "{}", body.message)
        }
        other => panic!("expected 422 missing_kyber_last_resort, got {:?}", other.map(|_| ())),
    }
    // A device without keys may log in; it is device 1 (the refused login took nothing).
    let dave = client.login(&tenant, &uid("dave"), &pw, device_request(&st, None)).await.unwrap();
    assert_eq!(dave.device().get(), 1);
    assert_eq!(dave.devices(None).await.unwrap().devices.len(), 1);
    // Its first upload without a last-resort key is refused, over HTTP and the WebSocket.
    match dave.upload_keys(&keys).await {
        Err(ClientError::Http { status: 422, body }) => assert_eq!(body.error, "missing_kyber_last_resort"),
        other => panic!("expected 422, got {other:?}"),
    }
    let mut c = dave.connect().await.unwrap();
    drain_all(&mut c).await;
    let id = uuid::Uuid::new_v4();
    c.send_frame(&ClientFrame::UploadKeys { id, keys: keys.clone() }).await.unwrap();
    match next(&mut c).await {
        ServerFrame::Error { id: Some(i), code: ErrorCode::MissingKyberLastResort, .. } => assert_eq!(i, id),
        other => panic!("expected missing_kyber_last_resort, got {other:?}"),
    }
    // Nothing was stored: no bundle to fetch.
    match carol.prekey_bundles(&uid("dave"), None).await {
        Err(ClientError::Http { status: 404, .. }) => {}
        other => panic!("expected 404, got {:?}", other.map(|b| b.len())),
    }
    // With one it is stored; later uploads without one keep it.
    let full = hush_client::upload_request(&st.signed_upload().unwrap());
    dave.upload_keys(&full).await.unwrap();
    dave.upload_keys(&keys).await.unwrap();
    assert_eq!(carol.prekey_bundles(&uid("dave"), None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecryptable_envelopes_are_quarantined_not_lost() {
    let node = Node::start();
    let admin = node.admin().await;
    let mallory = node.user(&admin, "mallory").await;
    admin.create_user(&uid("erin"), &Secret::new("erin-password"), false).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("erin.state");
    let client = Client::new(node.url());
    let tenant = TenantId::new("default").unwrap();
    let (session, state) =
        hush_client::register_device(&client, &tenant, &uid("erin"), &Secret::new("erin-password"), None)
            .await
            .unwrap();
    state.save_file(&path).unwrap();

    // Mallory sends Erin a corrupted pre-key message while she is offline.
    let mut m = mallory.connect().await.unwrap();
    drain_all(&mut m).await;
    let garbage = vec![0x44, 1, 2, 3, 4, 5, 6, 7];
    let id = m.send_typed_message(&uid("erin"), |_, _| (ContentType::PreKey, garbage.clone())).await.unwrap();

    let mut erin = Messenger::connect(session.clone(), state, Some(path.clone())).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), erin.next_event()).await.unwrap().unwrap();
    match &ev {
        Event::Undecryptable { id: i, from, content_type, quarantined, .. } => {
            assert_eq!(
                (*i, from.as_str(), *content_type, *quarantined),
                (id, "mallory", ContentType::PreKey, true)
            );
        }
        other => panic!("expected Undecryptable, got {other:?}"),
    }
    // Mallory's device is asked for it again: a retry request (libsignal's
    // DecryptionErrorMessage in a PlaintextContent, type `plaintext`) naming the message.
    let req = loop {
        match next(&mut m).await {
            ServerFrame::Deliver(e) if e.content_type == ContentType::Plaintext => break e,
            _ => {}
        }
    };
    let pc = PlaintextContent::decode(&req.content.0).unwrap();
    let dem = pc.decryption_error().unwrap();
    assert_eq!((req.from.as_str(), dem.device_id, dem.ratchet_key), ("erin", 1, None));
    assert_eq!(pc.content.hush.unwrap().message_id, Some(*id.as_bytes()));
    let q = erin.quarantined();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].id, q[0].from.as_str(), q[0].from_device.get()), (id, "mallory", 1));
    assert_eq!((q[0].content_type, &q[0].content), (ContentType::PreKey, &garbage));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), erin.next_event()).await.unwrap().unwrap(),
        Event::UpToDate
    );
    erin.close().await.unwrap();

    // It was acknowledged (not redelivered), and the quarantine survived in the saved state.
    let mut raw = session.connect().await.unwrap();
    assert!(drain_all(&mut raw).await.iter().all(|e| e.id != id), "the quarantined envelope came back");
    raw.close().await.unwrap();
    let saved = DeviceState::load_file(&path).unwrap().unwrap();
    let q: Vec<_> = saved.quarantined().cloned().collect();
    assert_eq!((q.len(), q[0].id, q[0].content_type), (1, id, ContentType::PreKey));
}

#[test]
fn hush_listen_quarantines_and_hush_quarantine_lists() {
    let node = Node::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mallory = rt.block_on(async {
        let admin = node.admin().await;
        admin.create_user(&uid("frank"), &Secret::new("frank-password"), false).await.unwrap();
        node.user(&admin, "mallory").await
    });
    let cli = Cli::new(&node);
    cli.login("frank", "frank", "frank-password");
    assert!(cli.json("frank", &["quarantine"]).as_array().unwrap().is_empty());
    let id = rt.block_on(async {
        let mut m = mallory.connect().await.unwrap();
        drain_all(&mut m).await;
        m.send_typed_message(&uid("frank"), |_, _| (ContentType::Ciphertext, vec![0x44, 9, 9, 9]))
            .await
            .unwrap()
    });
    let out = cli.exec("frank", &["listen", "--idle", "2"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not be decrypted") && stderr.contains("hush quarantine"), "{stderr}");
    let list = cli.json("frank", &["quarantine"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], id.to_string());
    assert_eq!(list[0]["from"], "mallory");
    assert_eq!(list[0]["from_device"], 1);
    assert_eq!(list[0]["content_type"], "ciphertext");
    assert_eq!(list[0]["content"], "RAkJCQ==");
    let table = cli.run("frank", &["quarantine"]);
    assert!(table.contains(&id.to_string()) && table.contains("mallory/1"), "{table}");
    // A second listen does not see it again: it was acknowledged after being kept.
    let out = cli.exec("frank", &["listen", "--idle", "2"], "");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("could not be decrypted"));
    assert_eq!(cli.json("frank", &["quarantine"]).as_array().unwrap().len(), 1);
}
