//! Replays every file of the cargo-fuzz corpus (`protocol/fuzz/corpus/<target>/`) through the
//! same entry points the fuzz targets call. `write_seed_corpus` (ignored) regenerates the seeds:
//! `cargo test -p hush-protocol --test e2e_fuzz_corpus -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use hush_protocol::e2e::content::{Content, DataMessage, HushExtension, SyncMessage, SyncSent};
use hush_protocol::e2e::fuzzing;
use hush_protocol::e2e::kem::KyberKeyPair;
use hush_protocol::e2e::message::{PreKeyMessage, RatchetMessage};
use hush_protocol::e2e::prekeys::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use hush_protocol::e2e::retry::{DecryptionErrorMessage, PlaintextContent};
use hush_protocol::e2e::session::{decrypt_message, encrypt_message, process_prekey_bundle};
use hush_protocol::e2e::store::{IdentityStore, SessionStore};
use hush_protocol::e2e::{InMemoryStore, KeyId, PeerAddress, PreKeyBundle, SenderKeyRecord};
use hush_protocol::wire::ContentType;
use rand::rngs::StdRng;
use rand::SeedableRng;

type Entry = fn(&[u8]) -> bool;

const TARGETS: [(&str, Entry); 12] = [
    ("ratchet_message", fuzzing::ratchet_message),
    ("prekey_message", fuzzing::prekey_message),
    ("sender_key_message", fuzzing::sender_key_message),
    ("sender_key_distribution", fuzzing::sender_key_distribution),
    ("key_encodings", fuzzing::key_encodings),
    ("session_record", fuzzing::session_record),
    ("sender_key_record", fuzzing::sender_key_record),
    ("content", fuzzing::content),
    ("retry_request", fuzzing::retry_request),
    ("kem_encodings", fuzzing::kem_encodings),
    ("spqr_message", fuzzing::spqr_message),
    ("spqr_chunks", fuzzing::spqr_chunks),
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

#[test]
fn corpus_replays_without_panic() {
    for (target, entry) in TARGETS {
        let dir = corpus_dir(target);
        let mut n = 0;
        for file in std::fs::read_dir(&dir).expect(target) {
            let path = file.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            assert!(entry(&data), "{}", path.display());
            // Truncations and single-byte changes of every seed must not panic either.
            for cut in [0, 1, data.len() / 2, data.len().saturating_sub(1)] {
                entry(&data[..cut.min(data.len())]);
            }
            for i in (0..data.len()).step_by((data.len() / 32).max(7)) {
                let mut d = data.clone();
                d[i] ^= 0x5a;
                entry(&d);
            }
            n += 1;
        }
        assert!(n > 0, "empty corpus for {target}");
    }
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut out = Vec::new();
    let mut alice = InMemoryStore::generate(1, &mut rng);
    let mut bob = InMemoryStore::generate(2, &mut rng);
    let (a_addr, b_addr) = (PeerAddress::new("alice", 1), PeerAddress::new("bob", 1));
    let bob_id = bob.identity_key_pair().unwrap();
    let spk = SignedPreKeyRecord::generate(KeyId::new(1).unwrap(), &bob_id, &mut rng);
    let otk = PreKeyRecord::generate(KeyId::new(2).unwrap(), &mut rng);
    let kyber = KyberPreKeyRecord::generate(KeyId::new(3).unwrap(), &bob_id, true, &mut rng).unwrap();
    bob.add_signed_pre_key(spk.clone());
    bob.add_pre_key(otk.clone());
    bob.add_kyber_pre_key(kyber.clone());
    let bundle = PreKeyBundle {
        registration_id: 2,
        device_id: 1,
        identity_key: *bob_id.public_key(),
        signed_pre_key: spk.public(),
        one_time_pre_key: Some(otk.public()),
        kyber_pre_key: Some(kyber.public()),
    };
    process_prekey_bundle(&mut alice, &b_addr, &bundle, &mut rng).unwrap();
    let pre = encrypt_message(&mut alice, &b_addr, b"hello bob", &mut rng).unwrap();
    out.push(("prekey_message", "first".into(), pre.clone()));
    out.push(("ratchet_message", "prekey-kind".into(), pre.clone()));
    decrypt_message(&mut bob, &a_addr, &pre, &mut rng).unwrap();
    let reply = encrypt_message(&mut bob, &a_addr, &[0u8; 1024], &mut rng).unwrap();
    out.push(("ratchet_message", "reply-1k".into(), reply.clone()));
    out.push(("prekey_message", "ratchet-kind".into(), reply.clone()));
    decrypt_message(&mut alice, &b_addr, &reply, &mut rng).unwrap();
    let next = encrypt_message(&mut alice, &b_addr, b"", &mut rng).unwrap();
    out.push(("ratchet_message", "empty".into(), next.clone()));
    out.push((
        "session_record",
        "alice".into(),
        alice.load_session(&b_addr).unwrap().unwrap().serialize().unwrap(),
    ));
    out.push((
        "session_record",
        "bob".into(),
        bob.load_session(&a_addr).unwrap().unwrap().serialize().unwrap(),
    ));
    out.push((
        "session_record",
        "empty".into(),
        hush_protocol::e2e::SessionRecord::new().serialize().unwrap(),
    ));

    let mut sender = SenderKeyRecord::new(uuid::Uuid::from_u128(7));
    let skdm = sender.distribution(&mut rng).unwrap();
    out.push(("sender_key_distribution", "skdm".into(), skdm.encode().to_vec()));
    let mut member = SenderKeyRecord::new(uuid::Uuid::from_u128(7));
    member.process_distribution(&skdm).unwrap();
    let gm = sender.encrypt(b"group hello", &mut rng).unwrap();
    out.push(("sender_key_message", "msg".into(), gm.clone()));
    sender.encrypt(b"skipped", &mut rng).unwrap();
    let gm2 = sender.encrypt(b"second", &mut rng).unwrap();
    member.decrypt(&gm2).unwrap();
    out.push(("sender_key_record", "sender".into(), sender.serialize().unwrap()));
    out.push(("sender_key_record", "member".into(), member.serialize().unwrap()));
    // libsignal's own distribution and group messages (tests/vectors/sender_keys.json).
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/sender_keys.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hex_of = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
    out.push(("sender_key_distribution", "libsignal".into(), hex_of(&v["distribution_message"])));
    out.push(("sender_key_message", "libsignal".into(), hex_of(&v["messages"][0]["message"])));

    let pk = bob_id.public_key().serialize().to_vec();
    let sig = spk.signature.clone();
    let spk_pub = spk.key_pair.public_key().serialize().to_vec();
    out.push(("key_encodings", "ec-public".into(), pk.clone()));
    out.push(("key_encodings", "ec-private".into(), otk.key_pair.private_key().serialize().to_vec()));
    let mut kyber = vec![0x08u8; 1569];
    kyber[1..].iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    out.push(("key_encodings", "kyber".into(), kyber));
    out.push(("key_encodings", "upload".into(), [pk, sig, spk_pub].concat()));

    // Signal Content, padded: a text, a sync copy, a sender-key distribution with Hush's
    // extension, and one with unknown fields at every level.
    let text = Content {
        data_message: Some(DataMessage { body: Some("hello".into()), timestamp: Some(1), unknown: vec![] }),
        ..Content::default()
    };
    out.push(("content", "text".into(), text.encode_padded().to_vec()));
    let sync = Content {
        sync_message: Some(SyncMessage {
            sent: Some(SyncSent { timestamp: Some(2), message: text.data_message.clone(), unknown: vec![] }),
            unknown: vec![],
        }),
        hush: Some(HushExtension { sent_to: Some("bob".into()), ..HushExtension::default() }),
        ..Content::default()
    };
    out.push(("content", "sync".into(), sync.encode_padded().to_vec()));
    let dist = Content {
        sender_key_distribution_message: Some(zeroize::Zeroizing::new(skdm.encode().to_vec())),
        hush: Some(HushExtension { group: Some("g1".into()), epoch: Some(3), ..HushExtension::default() }),
        ..Content::default()
    };
    out.push(("content", "skdm".into(), dist.encode_padded().to_vec()));
    let odd = Content {
        data_message: Some(DataMessage {
            body: Some("x".repeat(200)),
            timestamp: None,
            unknown: vec![0x12, 0x01, 0x61],
        }),
        unknown: vec![0x32, 0x02, 0x08, 0x03, 0x9d, 0x06, 1, 2, 3, 4],
        ..Content::default()
    };
    out.push(("content", "unknown-fields".into(), odd.encode_padded().to_vec()));

    // Retry requests: for Hush's own pre-key message, with and without the extension, and a
    // bare DecryptionErrorMessage.
    let dem = DecryptionErrorMessage::for_original(&pre, ContentType::PreKey, 1_700_000_000_123, 1);
    assert!(dem.ratchet_key.is_some());
    out.push((
        "retry_request",
        "plaintext-content".into(),
        PlaintextContent::retry_request(&dem, None).encode(),
    ));
    let hush = HushExtension { message_id: Some([9; 16]), ..HushExtension::default() };
    out.push((
        "retry_request",
        "with-extension".into(),
        PlaintextContent::retry_request(&dem, Some(hush)).encode(),
    ));
    out.push(("retry_request", "dem".into(), dem.encode()));

    // Kyber-1024 secret key and ciphertext.
    let pair = KyberKeyPair::from_seed(&[1; 64]).unwrap();
    out.push(("kem_encodings", "secret-key".into(), pair.secret_key().serialize().to_vec()));
    let (ct, _) = hush_protocol::e2e::kem::encapsulate(pair.public_key(), &mut rng).unwrap();
    out.push(("kem_encodings", "ciphertext".into(), ct.serialize().to_vec()));

    // SPQR: the `pq_ratchet` fields of the session's messages above, the first message of each
    // phase of the fixed exchange `spqr_message` replays against, and the erasure-coded chunks
    // that exchange sent for each of the four lengths.
    let pre_inner = PreKeyMessage::decode(&pre).unwrap().message;
    for (name, msg) in [("prekey", &pre_inner), ("reply", &reply), ("empty", &next)] {
        let pq = RatchetMessage::decode(msg).unwrap().pq_ratchet.to_vec();
        assert_eq!(pq.first(), Some(&1));
        out.push(("spqr_message", format!("session-{name}"), pq));
    }
    for (i, msg) in fuzzing::spqr_phase_messages().into_iter().enumerate() {
        out.push(("spqr_message", format!("phase-{i:02}"), msg));
    }
    for (i, input) in fuzzing::spqr_chunk_seeds().into_iter().enumerate() {
        out.push(("spqr_chunks", format!("exchange-{i}"), input));
    }
    out
}

#[test]
#[ignore = "regenerates the committed seed corpus"]
fn write_seed_corpus() {
    for (target, name, data) in seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}
