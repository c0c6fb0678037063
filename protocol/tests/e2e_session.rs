//! Sessions end to end: PQXDH with and without a one-time pre-key (one-time and last-resort Kyber
//! keys), bundle checks, pre-key and
//! ratchet messages, replay, restore, archived sessions, simultaneous initiation, identity trust,
//! the forward-jump bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_protocol::e2e::message::{message_kind, MessageKind};
use hush_protocol::e2e::prekeys::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use hush_protocol::e2e::session::{decrypt_message, encrypt_message, process_prekey_bundle};
use hush_protocol::e2e::store::{IdentityStore, SessionStore};
use hush_protocol::e2e::{
    consts::MAX_FORWARD_JUMPS, E2eError, InMemoryStore, KeyError, KeyId, KyberPublicKey, PeerAddress,
    PreKeyBundle, SessionRecord, SignedKyberPreKey,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

struct Device {
    store: InMemoryStore,
    addr: PeerAddress,
}

fn device(name: &str, reg: u32, rng: &mut StdRng) -> Device {
    Device { store: InMemoryStore::generate(reg, rng), addr: PeerAddress::new(name, 1) }
}

/// Publishes a signed pre-key (id 1), a last-resort Kyber pre-key (id 9) and, if asked, a
/// one-time pre-key (id 7).
fn bundle(d: &mut Device, with_otk: bool, rng: &mut StdRng) -> PreKeyBundle {
    let identity = d.store.identity_key_pair().unwrap();
    let spk = SignedPreKeyRecord::generate(KeyId::new(1).unwrap(), &identity, rng);
    let otk = PreKeyRecord::generate(KeyId::new(7).unwrap(), rng);
    let kyber = KyberPreKeyRecord::generate(KeyId::new(9).unwrap(), &identity, true, rng).unwrap();
    d.store.add_signed_pre_key(spk.clone());
    d.store.add_pre_key(otk.clone());
    d.store.add_kyber_pre_key(kyber.clone());
    PreKeyBundle {
        registration_id: d.store.local_registration_id().unwrap(),
        device_id: 1,
        identity_key: *identity.public_key(),
        signed_pre_key: spk.public(),
        one_time_pre_key: with_otk.then(|| otk.public()),
        kyber_pre_key: Some(kyber.public()),
    }
}

fn send(from: &mut Device, to: &Device, text: &[u8]) -> Vec<u8> {
    encrypt_message(&mut from.store, &to.addr, text, &mut rand::rngs::OsRng).unwrap()
}

fn recv(to: &mut Device, from: &Device, msg: &[u8], rng: &mut StdRng) -> Result<Vec<u8>, E2eError> {
    decrypt_message(&mut to.store, &from.addr, msg, rng)
}

fn conversation(with_otk: bool) {
    let mut rng = StdRng::seed_from_u64(u64::from(with_otk));
    let mut alice = device("alice", 11, &mut rng);
    let mut bob = device("bob", 22, &mut rng);
    let b = bundle(&mut bob, with_otk, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng).unwrap();

    let m: Vec<Vec<u8>> = (0..3).map(|i| send(&mut alice, &bob, &[i; 5])).collect();
    for x in &m {
        assert_eq!(message_kind(x).unwrap(), MessageKind::PreKey);
    }
    // Out of order, pre-key messages included.
    assert_eq!(recv(&mut bob, &alice, &m[2], &mut rng).unwrap(), vec![2; 5]);
    assert_eq!(bob.store.pre_key_count(), usize::from(!with_otk));
    assert_eq!(recv(&mut bob, &alice, &m[0], &mut rng).unwrap(), vec![0; 5]);
    assert_eq!(recv(&mut bob, &alice, &m[1], &mut rng).unwrap(), vec![1; 5]);
    assert_eq!(recv(&mut bob, &alice, &m[1], &mut rng), Err(E2eError::DuplicateMessage));

    let r = send(&mut bob, &alice, b"hi alice");
    assert_eq!(message_kind(&r).unwrap(), MessageKind::Ratchet);
    assert_eq!(recv(&mut alice, &bob, &r, &mut rng).unwrap(), b"hi alice");
    // Acknowledged: alice now sends plain ratchet messages.
    let m3 = send(&mut alice, &bob, b"after ack");
    assert_eq!(message_kind(&m3).unwrap(), MessageKind::Ratchet);

    // Restore both sides from bytes mid-conversation.
    for d in [&mut alice, &mut bob] {
        let peer = if d.addr.name == "alice" { "bob" } else { "alice" };
        let addr = PeerAddress::new(peer, 1);
        let rec = d.store.load_session(&addr).unwrap().unwrap();
        let restored = SessionRecord::deserialize(&rec.serialize().unwrap()).unwrap();
        assert_eq!(restored.serialize().unwrap(), rec.serialize().unwrap());
        d.store.store_session(&addr, restored).unwrap();
    }
    assert_eq!(recv(&mut bob, &alice, &m3, &mut rng).unwrap(), b"after ack");
    for i in 0..20u8 {
        let x = send(&mut bob, &alice, &[i]);
        assert_eq!(recv(&mut alice, &bob, &x, &mut rng).unwrap(), vec![i]);
        let y = send(&mut alice, &bob, &[i, i]);
        assert_eq!(recv(&mut bob, &alice, &y, &mut rng).unwrap(), vec![i, i]);
    }
}

#[test]
fn x3dh_with_one_time_pre_key() {
    conversation(true);
}

#[test]
fn x3dh_without_one_time_pre_key() {
    conversation(false);
}

#[test]
fn bundle_with_bad_signature_is_refused_before_use() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 2, &mut rng);
    let mut b = bundle(&mut bob, true, &mut rng);
    b.signed_pre_key.signature[5] ^= 1;
    assert_eq!(
        process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng),
        Err(E2eError::Key(KeyError::InvalidSignature))
    );
    assert!(alice.store.load_session(&bob.addr).unwrap().is_none());

    // A Kyber key signed by someone else is refused too.
    let mut b = bundle(&mut bob, true, &mut rng);
    let mut kyber = vec![0x08u8; 1569];
    kyber[1] = 1;
    let other = InMemoryStore::generate(9, &mut rng).identity_key_pair().unwrap();
    b.kyber_pre_key = Some(SignedKyberPreKey {
        key_id: KeyId::new(3).unwrap(),
        public_key: KyberPublicKey::deserialize(&kyber).unwrap(),
        signature: other.sign(&kyber, &mut rng).to_vec(),
    });
    assert_eq!(
        process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng),
        Err(E2eError::Key(KeyError::InvalidSignature))
    );
    // Correctly signed by bob: accepted.
    let bob_identity = bob.store.identity_key_pair().unwrap();
    if let Some(k) = b.kyber_pre_key.as_mut() {
        k.signature = bob_identity.sign(&kyber, &mut rng).to_vec();
    }
    process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng).unwrap();
}

#[test]
fn unknown_pre_keys_and_untrusted_identity_are_refused() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 2, &mut rng);
    let b = bundle(&mut bob, true, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng).unwrap();
    let m = send(&mut alice, &bob, b"x");
    // Bob lost his one-time pre-key: refused, nothing stored.
    let mut bob2 = Device {
        store: InMemoryStore::new(bob.store.identity_key_pair().unwrap(), 2),
        addr: bob.addr.clone(),
    };
    assert!(matches!(recv(&mut bob2, &alice, &m, &mut rng), Err(E2eError::UnknownSignedPreKey(1))));
    // A different identity for a known address is refused.
    let mut mallory = device("alice", 1, &mut rng);
    assert_eq!(recv(&mut bob, &alice, &m, &mut rng).unwrap(), b"x");
    let mb = bundle(&mut bob, true, &mut rng);
    process_prekey_bundle(&mut mallory.store, &bob.addr, &mb, &mut rng).unwrap();
    let fake = send(&mut mallory, &bob, b"it's me");
    assert_eq!(recv(&mut bob, &mallory, &fake, &mut rng), Err(E2eError::UntrustedIdentity));
}

#[test]
fn archived_session_still_decrypts_in_flight_messages() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 2, &mut rng);
    let b = bundle(&mut bob, false, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng).unwrap();
    let m = send(&mut alice, &bob, b"one");
    recv(&mut bob, &alice, &m, &mut rng).unwrap();
    let late = send(&mut bob, &alice, b"late");
    // Alice resets the session; bob's in-flight message still decrypts on the archived state.
    let b2 = bundle(&mut bob, false, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob.addr, &b2, &mut rng).unwrap();
    let rec = alice.store.load_session(&bob.addr).unwrap().unwrap();
    assert_eq!(rec.archived_len(), 1);
    assert_eq!(recv(&mut alice, &bob, &late, &mut rng).unwrap(), b"late");
    let n = send(&mut alice, &bob, b"new session");
    assert_eq!(message_kind(&n).unwrap(), MessageKind::PreKey);
    assert_eq!(recv(&mut bob, &alice, &n, &mut rng).unwrap(), b"new session");
    let r = send(&mut bob, &alice, b"on the new one");
    assert_eq!(recv(&mut alice, &bob, &r, &mut rng).unwrap(), b"on the new one");
}

fn current_base(d: &Device, peer: &Device) -> [u8; 33] {
    d.store.load_session(&peer.addr).unwrap().unwrap().current().unwrap().base_key().serialize()
}

#[test]
fn simultaneous_initiation_converges_on_both_sides() {
    for seed in 0..8u64 {
        for alice_first in [true, false] {
            let mut rng = StdRng::seed_from_u64(100 + seed);
            let mut alice = device("alice", 1, &mut rng);
            let mut bob = device("bob", 2, &mut rng);
            let ab = bundle(&mut alice, true, &mut rng);
            let bb = bundle(&mut bob, true, &mut rng);
            process_prekey_bundle(&mut alice.store, &bob.addr, &bb, &mut rng).unwrap();
            process_prekey_bundle(&mut bob.store, &alice.addr, &ab, &mut rng).unwrap();
            let from_a = send(&mut alice, &bob, b"a1");
            let from_b = send(&mut bob, &alice, b"b1");
            if alice_first {
                assert_eq!(recv(&mut bob, &alice, &from_a, &mut rng).unwrap(), b"a1");
                assert_eq!(recv(&mut alice, &bob, &from_b, &mut rng).unwrap(), b"b1");
            } else {
                assert_eq!(recv(&mut alice, &bob, &from_b, &mut rng).unwrap(), b"b1");
                assert_eq!(recv(&mut bob, &alice, &from_a, &mut rng).unwrap(), b"a1");
            }
            assert_eq!(current_base(&alice, &bob), current_base(&bob, &alice));
            for i in 0..3u8 {
                let x = send(&mut alice, &bob, &[i]);
                let y = send(&mut bob, &alice, &[i, 1]);
                assert_eq!(recv(&mut bob, &alice, &x, &mut rng).unwrap(), vec![i]);
                assert_eq!(recv(&mut alice, &bob, &y, &mut rng).unwrap(), vec![i, 1]);
            }
            assert_eq!(current_base(&alice, &bob), current_base(&bob, &alice));
            let x = send(&mut alice, &bob, b"settled");
            assert_eq!(message_kind(&x).unwrap(), MessageKind::Ratchet);
        }
    }
}

#[test]
fn message_beyond_forward_jump_bound_is_refused_and_session_still_works() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 2, &mut rng);
    let b = bundle(&mut bob, true, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng).unwrap();
    let first = send(&mut alice, &bob, b"first");
    recv(&mut bob, &alice, &first, &mut rng).unwrap();
    let r = send(&mut bob, &alice, b"ack");
    recv(&mut alice, &bob, &r, &mut rng).unwrap();

    let mut rec = alice.store.load_session(&bob.addr).unwrap().unwrap();
    let near = rec.encrypt(b"near", &mut rng).unwrap(); // counter 0 of alice's new chain
    let mut last_ok = Vec::new();
    let mut too_far = Vec::new();
    for i in 1..=MAX_FORWARD_JUMPS + 1 {
        let m = rec.encrypt(b"far", &mut rng).unwrap();
        if i == MAX_FORWARD_JUMPS {
            last_ok = m;
        } else if i == MAX_FORWARD_JUMPS + 1 {
            too_far = m;
        }
    }
    alice.store.store_session(&bob.addr, rec).unwrap();
    let before = bob.store.load_session(&alice.addr).unwrap().unwrap().serialize().unwrap();
    assert_eq!(recv(&mut bob, &alice, &too_far, &mut rng), Err(E2eError::TooFarInFuture));
    let after = bob.store.load_session(&alice.addr).unwrap().unwrap().serialize().unwrap();
    assert_eq!(before, after);
    assert_eq!(recv(&mut bob, &alice, &near, &mut rng).unwrap(), b"near");
    // Exactly at the bound (counted from the chain's new position) is accepted.
    assert_eq!(recv(&mut bob, &alice, &last_ok, &mut rng).unwrap(), b"far");
    let x = send(&mut bob, &alice, b"still works");
    assert_eq!(recv(&mut alice, &bob, &x, &mut rng).unwrap(), b"still works");
    let y = send(&mut alice, &bob, b"both ways");
    assert_eq!(recv(&mut bob, &alice, &y, &mut rng).unwrap(), b"both ways");
}

#[test]
fn archived_sessions_are_bounded() {
    use hush_protocol::e2e::consts::MAX_ARCHIVED_SESSIONS;
    let mut rng = StdRng::seed_from_u64(7);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 2, &mut rng);
    for _ in 0..MAX_ARCHIVED_SESSIONS + 5 {
        let b = bundle(&mut bob, false, &mut rng);
        process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng).unwrap();
    }
    let rec = alice.store.load_session(&bob.addr).unwrap().unwrap();
    assert_eq!(rec.archived_len(), MAX_ARCHIVED_SESSIONS);
    let restored = SessionRecord::deserialize(&rec.serialize().unwrap()).unwrap();
    assert_eq!(restored.archived_len(), MAX_ARCHIVED_SESSIONS);
}

#[test]
fn size_caps_are_enforced() {
    use hush_protocol::e2e::consts::{MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN};
    use hush_protocol::e2e::message::RatchetMessage;
    use hush_protocol::e2e::DecodeError;
    let mut rng = StdRng::seed_from_u64(8);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 2, &mut rng);
    let b = bundle(&mut bob, true, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng).unwrap();
    let max = send(&mut alice, &bob, &vec![1u8; MAX_PLAINTEXT_LEN]);
    assert!(max.len() <= MAX_MESSAGE_LEN);
    assert_eq!(recv(&mut bob, &alice, &max, &mut rng).unwrap().len(), MAX_PLAINTEXT_LEN);
    assert_eq!(
        encrypt_message(&mut alice.store, &bob.addr, &vec![1u8; MAX_PLAINTEXT_LEN + 1], &mut rng),
        Err(E2eError::PlaintextTooLong)
    );
    let r = send(&mut bob, &alice, b"x");
    let mut long = r.clone();
    long.resize(MAX_MESSAGE_LEN + 1, 0);
    assert_eq!(RatchetMessage::decode(&long).err(), Some(DecodeError::TooLong));
    assert_eq!(RatchetMessage::decode(&r[..20]).err(), Some(DecodeError::Truncated));
    assert_eq!(RatchetMessage::decode(&[]).err(), Some(DecodeError::Truncated));
    assert_eq!(RatchetMessage::decode(&[0x21]).err(), Some(DecodeError::BadVersion));
}

#[test]
fn skipped_keys_are_bounded_per_chain_oldest_dropped_first() {
    use hush_protocol::e2e::consts::MAX_SKIPPED_KEYS_PER_CHAIN;
    let mut rng = StdRng::seed_from_u64(10);
    let mut alice = device("alice", 1, &mut rng);
    let mut bob = device("bob", 2, &mut rng);
    let b = bundle(&mut bob, false, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob.addr, &b, &mut rng).unwrap();
    let first = send(&mut alice, &bob, b"open");
    recv(&mut bob, &alice, &first, &mut rng).unwrap();
    let r = send(&mut bob, &alice, b"ack");
    recv(&mut alice, &bob, &r, &mut rng).unwrap();
    let mut rec = alice.store.load_session(&bob.addr).unwrap().unwrap();
    let msgs: Vec<Vec<u8>> = (0..MAX_SKIPPED_KEYS_PER_CHAIN + 2)
        .map(|i| rec.encrypt(&i.to_le_bytes(), &mut rng).unwrap())
        .collect();
    let last = msgs.len() - 1;
    assert_eq!(recv(&mut bob, &alice, &msgs[last], &mut rng).unwrap(), last.to_le_bytes());
    let stored = bob.store.load_session(&alice.addr).unwrap().unwrap();
    assert_eq!(stored.current().unwrap().skipped_keys(), MAX_SKIPPED_KEYS_PER_CHAIN);
    // Message 0 fell out of the window; message 1 is the oldest kept.
    assert_eq!(recv(&mut bob, &alice, &msgs[0], &mut rng), Err(E2eError::DuplicateMessage));
    assert_eq!(recv(&mut bob, &alice, &msgs[1], &mut rng).unwrap(), 1usize.to_le_bytes());
}
