//! End-to-end encrypted chat through `hush-client` on three clustered `hushd` (one Redis, one
//! MongoDB-wire server): three users with two devices each, spread over the nodes, exchange 1:1
//! and group messages. Every message decrypts on every intended device (the sender's other
//! device gets the sync copy); a removed member decrypts nothing sent after the removal, a new
//! member what is sent after joining and nothing before; no plaintext reaches the store files or
//! the node logs (their bytes are searched).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hush_client::messenger::{Event, KeyAction, Messenger};
use hush_client::state::{peer, DeviceState};
use hush_protocol::api::Secret;
use hush_protocol::ids::{DeviceId, TenantId, UserId};
use hush_protocol::wire::Payload;
use hush_tests::dev::{texts_of, Dev};
use hush_tests::{Mongo, Node, Redis};

struct Cluster {
    _redis: Redis,
    mongo: Mongo,
    nodes: Vec<Node>,
}

fn start_cluster() -> Cluster {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let mut nodes = vec![Node::start_clustered(&redis, &mongo, "node-a")];
    for name in ["node-b", "node-c"] {
        nodes.push(Node::start_clustered(&redis, &mongo, name));
    }
    hush_tests::share_admin_password(&mut nodes);
    Cluster { _redis: redis, mongo, nodes }
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// A distinctive plaintext: never produced by anything but this test.
fn secret(label: &str) -> String {
    format!("plaintext-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// Waits until each device of `receivers` decrypted every text of `sent` (sender index, text)
/// that it did not send itself.
async fn expect_group_texts(devs: &mut [Dev], receivers: &[usize], sent: &[(usize, String)], what: &str) {
    for &i in receivers {
        let want: Vec<String> = sent.iter().filter(|(s, _)| *s != i).map(|(_, t)| t.clone()).collect();
        devs[i]
            .pump_until(what, |ev| {
                want.iter()
                    .all(|t| ev.iter().any(|e| matches!(e, Event::GroupText { body, .. } if body == t)))
            })
            .await;
    }
}

/// Registers a device of `user` on `node` (fresh identity, pre-keys uploaded) and connects it.
async fn device(node: &Node, user: &str, label: &str) -> Dev {
    hush_tests::dev::register_and_connect(node, user, label).await
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_users_two_devices_each_one_to_one_and_groups_end_to_end() {
    let c = start_cluster();
    let admin = c.nodes[0].admin().await;
    for u in ["alice", "bob", "carol"] {
        admin.create_user(&uid(u), &Secret::new(format!("{u}-password")), false).await.unwrap();
    }
    // Two devices per user, on different nodes.
    let mut devs = vec![
        device(&c.nodes[0], "alice", "alice1").await,
        device(&c.nodes[1], "alice", "alice2").await,
        device(&c.nodes[1], "bob", "bob1").await,
        device(&c.nodes[2], "bob", "bob2").await,
        device(&c.nodes[2], "carol", "carol1").await,
        device(&c.nodes[0], "carol", "carol2").await,
    ];
    let mut all_plaintexts: Vec<String> = Vec::new();

    // --- 1:1: every device writes to each other user. --------------------------------------
    // expected[i] = texts device i must decrypt (as recipient or as sync copy).
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); devs.len()];
    for s in 0..devs.len() {
        for to in ["alice", "bob", "carol"] {
            if devs[s].user().as_str() == to {
                continue;
            }
            let text = secret(&format!("{}-to-{to}", devs[s].name));
            devs[s].m.send_text(&uid(to), &text).await.unwrap();
            for (i, d) in devs.iter().enumerate() {
                let recipient = d.user().as_str() == to;
                let sync = i != s && d.user() == devs[s].user();
                if recipient || sync {
                    expected[i].push(text.clone());
                }
            }
            all_plaintexts.push(text);
        }
    }
    for (i, d) in devs.iter_mut().enumerate() {
        let want = expected[i].clone();
        d.pump_until("every 1:1 text", |ev| want.iter().all(|t| texts_of(ev).contains(t))).await;
        // Each device got exactly its texts: 2 other users x 2 devices write to it, and its own
        // user's other device's 2 texts come as sync copies.
        assert_eq!(d.texts().len(), 6, "{}: {:?}", d.name, d.texts());
        assert_eq!(d.undecryptable(), 0, "{}", d.name);
    }
    // Sync copies name the recipient; texts name the sending device.
    let a2 = &devs[1];
    assert!(a2.events.iter().any(|e| matches!(e, Event::Sent { to, from_device, .. }
        if to.as_str() == "bob" && *from_device == devs[0].device())));

    // The session survives a save and load of the device state: alice1 restarts from a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice1.state");
    let alice1 = devs.remove(0);
    let session = alice1.m.session().clone();
    let state = alice1.m.close().await.unwrap();
    state.save_file(&path).unwrap();
    let state = DeviceState::load_file(&path).unwrap().unwrap();
    let m = Messenger::connect(session, state, Some(path.clone())).await.unwrap();
    devs.insert(0, Dev { name: "alice1".into(), m, events: Vec::new() });
    devs[0].pump_until("reconnected", |ev| ev.contains(&Event::UpToDate)).await;
    let text = secret("bob1-after-alice1-restart");
    devs[2].m.send_text(&uid("alice"), &text).await.unwrap();
    all_plaintexts.push(text.clone());
    devs[0]
        .pump_until("text after restart", |ev| {
            ev.iter().any(|e| matches!(e, Event::Text { body, .. } if *body == text))
        })
        .await;
    let text = secret("alice1-after-restart");
    devs[0].m.send_text(&uid("bob"), &text).await.unwrap();
    all_plaintexts.push(text.clone());
    for i in [1, 2, 3] {
        let t = text.clone();
        devs[i]
            .pump_until("reply after restart", move |ev| {
                ev.iter()
                    .any(|e| matches!(e, Event::Text { body, .. } | Event::Sent { body, .. } if *body == t))
            })
            .await;
    }

    // --- Groups ----------------------------------------------------------------------------
    // alice creates a group with bob; carol is not a member yet.
    let group = devs[0].m.create_group("project", &[uid("bob")]).await.unwrap();
    let mut before_carol = Vec::new();
    let mut ciphertexts: BTreeMap<String, (UserId, DeviceId, Payload)> = BTreeMap::new();
    for s in [0usize, 3] {
        let text = secret(&format!("group-{}-before-carol", devs[s].name));
        devs[s].m.send_group_text(&group, &text).await.unwrap();
        before_carol.push((s, text.clone()));
        all_plaintexts.push(text);
    }
    expect_group_texts(&mut devs, &[0, 1, 2, 3], &before_carol, "group texts before carol").await;
    // Keep one ciphertext sent before carol joined (as bob1 received it).
    for e in &devs[2].events {
        if let Event::GroupText { body, from, from_device, ciphertext, .. } = e {
            ciphertexts.insert(body.clone(), (from.clone(), *from_device, ciphertext.clone()));
        }
    }

    // carol joins: she decrypts what is sent from now on.
    devs[0].m.add_members(&group, &[uid("carol")]).await.unwrap();
    // bob2 already sent in the group: the node's DistributeSenderKey makes it hand its key to
    // carol's devices.
    devs[3]
        .pump_until("DistributeSenderKey handled", |ev| {
            ev.iter().any(|e| {
                matches!(e, Event::KeysMaintained(KeyAction::SenderKeyDistributed { devices: 2, .. }))
            })
        })
        .await;
    let mut with_carol = Vec::new();
    for s in [1usize, 2, 5] {
        let text = secret(&format!("group-{}-with-carol", devs[s].name));
        devs[s].m.send_group_text(&group, &text).await.unwrap();
        with_carol.push((s, text.clone()));
        all_plaintexts.push(text);
    }
    expect_group_texts(&mut devs, &[0, 1, 2, 3, 4, 5], &with_carol, "group texts with carol").await;
    // ... and nothing from before: she never got those messages, and the keys she holds cannot
    // open them either.
    for i in [4usize, 5] {
        for (_, t) in &before_carol {
            assert!(!devs[i].has_text(t), "{} decrypted a message from before joining", devs[i].name);
        }
        for (body, (from, from_device, ct)) in &ciphertexts {
            let r = devs[i].m.state_mut().group_decrypt(&peer(from, *from_device), group.as_str(), &ct.0);
            assert!(r.is_err(), "{} could open '{body}' sent before joining", devs[i].name);
        }
    }

    // bob is removed: the others rotate; bob decrypts nothing sent after.
    devs[0].m.remove_members(&group, &[uid("bob")]).await.unwrap();
    // alice2 and carol2 have sender keys bob holds: the node's RotateSenderKey replaces them.
    for i in [1usize, 5] {
        devs[i]
            .pump_until("RotateSenderKey handled", |ev| {
                ev.iter().any(|e| matches!(e, Event::KeysMaintained(KeyAction::SenderKeyRotated { .. })))
            })
            .await;
    }
    let mut after_bob = Vec::new();
    for s in [0usize, 1, 5] {
        let text = secret(&format!("group-{}-after-bob", devs[s].name));
        devs[s].m.send_group_text(&group, &text).await.unwrap();
        after_bob.push((s, text.clone()));
        all_plaintexts.push(text);
    }
    expect_group_texts(&mut devs, &[0, 1, 4, 5], &after_bob, "group texts after bob left").await;
    let mut after: Vec<(UserId, DeviceId, Payload)> = Vec::new();
    for e in &devs[4].events {
        if let Event::GroupText { body, from, from_device, ciphertext, .. } = e {
            if after_bob.iter().any(|(_, t)| t == body) {
                after.push((from.clone(), *from_device, ciphertext.clone()));
            }
        }
    }
    assert_eq!(after.len(), 3);
    for i in [2usize, 3] {
        devs[i].pump_idle(Duration::from_secs(2)).await;
        for (_, t) in &after_bob {
            assert!(!devs[i].has_text(t), "{} decrypted a message sent after its removal", devs[i].name);
        }
        for (from, from_device, ct) in &after {
            let r = devs[i].m.state_mut().group_decrypt(&peer(from, *from_device), group.as_str(), &ct.0);
            assert!(r.is_err(), "{} could open a message sent after its removal", devs[i].name);
        }
    }
    for d in &devs {
        assert_eq!(d.undecryptable(), 0, "{}: {:?}", d.name, d.events);
    }

    // --- No plaintext at rest or in logs ---------------------------------------------------
    let mut files = Vec::new();
    for n in &c.nodes {
        files_under(&n.data_dir, &mut files);
    }
    if let Some(dir) = c.mongo.data_dir() {
        files_under(dir, &mut files);
    }
    let mut store_bytes = 0usize;
    let mut saw_user_names = false;
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        store_bytes += bytes.len();
        saw_user_names |= contains(&bytes, b"carol");
        for p in &all_plaintexts {
            assert!(!contains(&bytes, p.as_bytes()), "plaintext '{p}' found in {}", f.display());
        }
    }
    // The search did read the store: the account names are there in clear.
    assert!(saw_user_names && store_bytes > 0, "the store files were not found ({} files)", files.len());
    for n in &c.nodes {
        let log = n.log();
        assert!(!log.is_empty(), "node log not found");
        for p in &all_plaintexts {
            assert!(!log.contains(p.as_str()), "plaintext '{p}' in the log of {}", n.addr);
        }
    }
}

/// The SDK's answers to the node on one node: `PreKeysLow` (a new batch uploaded), `RotateKeys`
/// (new signed pre-key and last-resort key), `MismatchedDevices` (a device added after the
/// sessions were made) and `StaleDevices` (a device re-registered with a new identity): each
/// time the message still decrypts on every device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_requests_and_device_changes_are_handled() {
    // A threshold of a full batch: the first fetch of a device's keys leaves it "low".
    let node = Node::start_args(&["--prekey-low-threshold", "100", "--prekey-rotation-age-secs", "2"]);
    let admin = node.admin().await;
    for u in ["alice", "bob"] {
        admin.create_user(&uid(u), &Secret::new(format!("{u}-password")), false).await.unwrap();
    }
    let mut alice1 = device(&node, "alice", "alice1").await;
    let mut bob = device(&node, "bob", "bob1").await;
    let up = alice1.m.session().key_counts().await.unwrap();
    assert_eq!((up.ec, up.kyber), (100, 100));

    // bob's first message takes one of alice1's one-time keys: the node pushes PreKeysLow and
    // alice1 uploads a full batch again.
    let t1 = secret("first");
    bob.m.send_text(&uid("alice"), &t1).await.unwrap();
    alice1
        .pump_until("text and replenishment", |ev| {
            texts_of(ev).contains(&t1)
                && ev
                    .iter()
                    .any(|e| matches!(e, Event::KeysMaintained(KeyAction::Replenished { ec: 100, .. })))
        })
        .await;
    let after = alice1.m.session().key_counts().await.unwrap();
    assert_eq!((after.ec, after.kyber), (100, 100));

    // After the rotation age, a reconnecting device is asked to rotate its signed keys.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let session = alice1.m.session().clone();
    let state = alice1.m.close().await.unwrap();
    alice1.m = Messenger::connect(session, state, None).await.unwrap();
    alice1
        .pump_until("RotateKeys handled", |ev| {
            ev.iter().any(|e| matches!(e, Event::KeysMaintained(KeyAction::RotatedSignedKeys)))
        })
        .await;

    // A second device of alice appears: bob's sessions cover only alice1, the node answers
    // MismatchedDevices, and the SDK fetches alice2's bundle and resends.
    let mut alice2 = device(&node, "alice", "alice2").await;
    let t2 = secret("after-new-device");
    assert_eq!(bob.m.resends(), 0);
    let t2_id = bob.m.send_text(&uid("alice"), &t2).await.unwrap();
    assert_eq!(bob.m.resends(), 1, "bob's cached device list was not refused");
    for d in [&mut alice1, &mut alice2] {
        d.pump_until("text to both devices", |ev| texts_of(ev).contains(&t2)).await;
    }

    // alice2 re-registers with a new identity (same device id): bob's session is stale, the
    // node answers StaleDevices, and the SDK starts a new session and resends.
    let dev2 = alice2.device();
    alice2.m.close().await.unwrap();
    let mut fresh = DeviceState::generate(hush_client::random_registration_id()).unwrap();
    let s2 = hush_client::login_device(
        &node.client(),
        &TenantId::new("default").unwrap(),
        &uid("alice"),
        &Secret::new("alice-password"),
        Some(dev2),
        None,
        &mut fresh,
    )
    .await
    .unwrap();
    let up = fresh.full_upload().unwrap();
    s2.upload_keys(&hush_client::upload_request(&up)).await.unwrap();
    let mut alice2 = Dev {
        name: "alice2-again".into(),
        m: Messenger::connect(s2, fresh, None).await.unwrap(),
        events: vec![],
    };
    let t3 = secret("after-re-registration");
    bob.m.send_text(&uid("alice"), &t3).await.unwrap();
    assert_eq!(bob.m.resends(), 2, "bob's stale session was not refused");
    for d in [&mut alice1, &mut alice2] {
        d.pump_until("text after re-registration", |ev| texts_of(ev).contains(&t3)).await;
    }
    // Replies flow the other way on the new session.
    // bob is told that alice2's identity changed (on the next event he reads).
    let dev2 = alice2.device();
    let t4 = secret("reply");
    alice2.m.send_text(&uid("bob"), &t4).await.unwrap();
    bob.pump_until("reply", |ev| texts_of(ev).contains(&t4)).await;
    assert!(
        bob.events.iter().any(|e| matches!(e, Event::IdentityChanged { user, device } if user.as_str() == "alice" && *device == dev2)),
        "{:?}",
        bob.events
    );
    for d in [&alice1, &bob] {
        assert_eq!(d.undecryptable(), 0, "{}: {:?}", d.name, d.events);
    }
    // The re-registered device may get again what its old identity had (delivery is at least
    // once, and an acknowledgement may not land before the socket closes); that one it cannot
    // read, and reports.
    for e in &alice2.events {
        if let Event::Undecryptable { id, .. } = e {
            assert_eq!(*id, t2_id, "{:?}", alice2.events);
        }
    }
}
