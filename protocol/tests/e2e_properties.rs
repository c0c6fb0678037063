//! Property tests of the Double Ratchet: interleavings with drops and reorders, tampering,
//! forward secrecy. Case counts are modest so the suite stays fast in debug builds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_protocol::e2e::message::{PreKeyMessage, RatchetMessage};
use hush_protocol::e2e::prekeys::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use hush_protocol::e2e::session::{decrypt_message, encrypt_message, process_prekey_bundle};
use hush_protocol::e2e::store::{IdentityStore, SessionStore};
use hush_protocol::e2e::{
    consts::MAX_RECEIVER_CHAINS, InMemoryStore, KeyId, PeerAddress, PreKeyBundle, PublicKey, SessionRecord,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

struct Side {
    store: InMemoryStore,
    addr: PeerAddress,
    /// Peer ratchet keys in order of first receipt (models the receiving-chain window).
    seen: Vec<PublicKey>,
}

fn pair(seed: u64) -> (Side, Side, StdRng) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut alice = InMemoryStore::generate(1, &mut rng);
    let mut bob = InMemoryStore::generate(2, &mut rng);
    let identity = bob.identity_key_pair().unwrap();
    let spk = SignedPreKeyRecord::generate(KeyId::new(1).unwrap(), &identity, &mut rng);
    let otk = PreKeyRecord::generate(KeyId::new(2).unwrap(), &mut rng);
    let kyber = KyberPreKeyRecord::generate(KeyId::new(3).unwrap(), &identity, false, &mut rng).unwrap();
    bob.add_signed_pre_key(spk.clone());
    bob.add_pre_key(otk.clone());
    bob.add_kyber_pre_key(kyber.clone());
    let bundle = PreKeyBundle {
        registration_id: 2,
        device_id: 1,
        identity_key: *identity.public_key(),
        signed_pre_key: spk.public(),
        one_time_pre_key: Some(otk.public()),
        kyber_pre_key: Some(kyber.public()),
    };
    let bob_addr = PeerAddress::new("bob", 1);
    process_prekey_bundle(&mut alice, &bob_addr, &bundle, &mut rng).unwrap();
    (
        Side {
            store: alice,
            addr: PeerAddress::new("alice", 1),
            // Alice's first receiving chain is bob's signed pre-key.
            seen: vec![spk.public().public_key],
        },
        Side { store: bob, addr: bob_addr, seen: Vec::new() },
        rng,
    )
}

fn ratchet_key(msg: &[u8]) -> PublicKey {
    match RatchetMessage::decode(msg) {
        Ok(m) => m.ratchet_key,
        Err(_) => RatchetMessage::decode(&PreKeyMessage::decode(msg).unwrap().message).unwrap().ratchet_key,
    }
}

/// Delivers `msg` to `to`; returns whether the model expects it to decrypt and checks that.
fn deliver(to: &mut Side, from: &PeerAddress, msg: &[u8], pt: &[u8], rng: &mut StdRng) {
    let key = ratchet_key(msg);
    let expect_ok = match to.seen.iter().position(|k| *k == key) {
        Some(i) => i + MAX_RECEIVER_CHAINS >= to.seen.len(),
        None => {
            to.seen.push(key);
            true
        }
    };
    let got = decrypt_message(&mut to.store, from, msg, rng);
    if expect_ok {
        assert_eq!(got.unwrap(), pt);
    } else {
        assert!(got.is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any interleaving of sends both ways, with drops, reorders and replays, decrypts exactly
    /// the delivered messages, each once.
    #[test]
    fn interleavings_decrypt_exactly_the_delivered_messages(
        seed in any::<u64>(),
        ops in proptest::collection::vec((0u8..7, any::<u16>()), 0..150),
    ) {
        let (mut a, mut b, mut rng) = pair(seed);
        let mut to_bob: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut to_alice: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut delivered_to_bob: Vec<Vec<u8>> = Vec::new();
        let mut n = 0u32;
        // Bob needs a first message from alice before he can talk.
        let pt = b"hello".to_vec();
        let m = encrypt_message(&mut a.store, &b.addr, &pt, &mut rng).unwrap();
        deliver(&mut b, &a.addr, &m, &pt, &mut rng);
        delivered_to_bob.push(m);
        for (op, pick) in ops {
            n += 1;
            let pick = usize::from(pick);
            match op {
                0 => {
                    let pt = format!("a{n}").into_bytes();
                    to_bob.push((encrypt_message(&mut a.store, &b.addr, &pt, &mut rng).unwrap(), pt));
                }
                1 => {
                    let pt = format!("b{n}").into_bytes();
                    to_alice.push((encrypt_message(&mut b.store, &a.addr, &pt, &mut rng).unwrap(), pt));
                }
                2 if !to_bob.is_empty() => {
                    let (m, pt) = to_bob.remove(pick % to_bob.len());
                    deliver(&mut b, &a.addr, &m, &pt, &mut rng);
                    delivered_to_bob.push(m);
                }
                3 if !to_alice.is_empty() => {
                    let (m, pt) = to_alice.remove(pick % to_alice.len());
                    deliver(&mut a, &b.addr, &m, &pt, &mut rng);
                }
                4 if !to_bob.is_empty() => {
                    to_bob.remove(pick % to_bob.len());
                }
                5 if !to_alice.is_empty() => {
                    to_alice.remove(pick % to_alice.len());
                }
                6 => {
                    let m = &delivered_to_bob[pick % delivered_to_bob.len()];
                    prop_assert!(decrypt_message(&mut b.store, &a.addr, m, &mut rng).is_err());
                }
                _ => {}
            }
        }
        for (m, pt) in to_bob.drain(..).rev() {
            deliver(&mut b, &a.addr, &m, &pt, &mut rng);
        }
        for (m, pt) in to_alice.drain(..).rev() {
            deliver(&mut a, &b.addr, &m, &pt, &mut rng);
        }
    }

    /// Changing any byte of a message is refused and leaves the receiver's session unchanged;
    /// the original still decrypts afterwards.
    #[test]
    fn any_changed_byte_is_refused_and_leaves_the_session_unchanged(
        seed in any::<u64>(),
        warmup in 0usize..4,
        to_alice in any::<bool>(),
        pos in any::<usize>(),
        mask in 1u8..=255,
    ) {
        let (mut a, mut b, mut rng) = pair(seed);
        // The first message stays a pre-key message when warmup == 0.
        for i in 0..warmup {
            let pt = vec![i as u8];
            let m = encrypt_message(&mut a.store, &b.addr, &pt, &mut rng).unwrap();
            deliver(&mut b, &a.addr, &m, &pt, &mut rng);
            let m = encrypt_message(&mut b.store, &a.addr, &pt, &mut rng).unwrap();
            deliver(&mut a, &b.addr, &m, &pt, &mut rng);
        }
        if to_alice && warmup == 0 {
            let m = encrypt_message(&mut a.store, &b.addr, b"open", &mut rng).unwrap();
            deliver(&mut b, &a.addr, &m, b"open", &mut rng);
        }
        let (sender, receiver) = if to_alice { (&mut b, &mut a) } else { (&mut a, &mut b) };
        let pt = b"the message".to_vec();
        let m = encrypt_message(&mut sender.store, &receiver.addr, &pt, &mut rng).unwrap();
        let mut bad = m.clone();
        let i = pos % bad.len();
        // libsignal's PreKeySignalMessage does not authenticate its outer `registration_id`
        // (field 5, after the inner message): changing it, or its tag, changes only what the
        // receiver records as the peer's registration id. Every other byte is covered by the
        // MAC, the PQXDH agreement or the pre-key ids.
        if let Ok(pm) = PreKeyMessage::decode(&m) {
            let end = m.windows(pm.message.len()).position(|w| w == pm.message.as_slice()).unwrap()
                + pm.message.len();
            prop_assume!(!(end..end + 2).contains(&i));
        }
        bad[i] ^= mask;
        let before = receiver.store.load_session(&sender.addr).unwrap().map(|r| r.serialize().unwrap());
        let pre_keys = receiver.store.pre_key_count();
        prop_assert!(decrypt_message(&mut receiver.store, &sender.addr, &bad, &mut rng).is_err());
        let after = receiver.store.load_session(&sender.addr).unwrap().map(|r| r.serialize().unwrap());
        prop_assert_eq!(before, after);
        prop_assert_eq!(pre_keys, receiver.store.pre_key_count());
        prop_assert_eq!(decrypt_message(&mut receiver.store, &sender.addr, &m, &mut rng).unwrap(), pt);
    }

    /// Once decrypted, a message's key is gone from the serialized state: the restored state
    /// cannot decrypt it again, while messages not yet delivered still decrypt.
    #[test]
    fn decrypted_message_keys_are_gone_from_the_serialized_state(
        seed in any::<u64>(),
        count in 1usize..8,
        order in proptest::collection::vec(any::<u16>(), 8),
    ) {
        let (mut a, mut b, mut rng) = pair(seed);
        let m = encrypt_message(&mut a.store, &b.addr, b"x", &mut rng).unwrap();
        deliver(&mut b, &a.addr, &m, b"x", &mut rng);
        let r = encrypt_message(&mut b.store, &a.addr, b"y", &mut rng).unwrap();
        deliver(&mut a, &b.addr, &r, b"y", &mut rng);
        let mut sender: SessionRecord = a.store.load_session(&b.addr).unwrap().unwrap();
        let mut pending: Vec<(Vec<u8>, Vec<u8>)> = (0..count)
            .map(|i| {
                let pt = vec![i as u8; 3];
                (sender.encrypt(&pt, &mut rng).unwrap(), pt)
            })
            .collect();
        let mut receiver: SessionRecord = b.store.load_session(&a.addr).unwrap().unwrap();
        let mut k = 0;
        while !pending.is_empty() {
            let (m, pt) = pending.remove(usize::from(order[k % order.len()]) % pending.len());
            k += 1;
            prop_assert_eq!(receiver.decrypt_ratchet(&m, &mut rng).unwrap(), pt);
            let bytes = receiver.serialize().unwrap();
            let mut restored = SessionRecord::deserialize(&bytes).unwrap();
            prop_assert!(restored.decrypt_ratchet(&m, &mut rng).is_err());
            prop_assert_eq!(restored.serialize().unwrap(), bytes);
            for (other, opt) in &pending {
                let mut copy = SessionRecord::deserialize(&receiver.serialize().unwrap()).unwrap();
                prop_assert_eq!(&copy.decrypt_ratchet(other, &mut rng).unwrap(), opt);
            }
        }
        prop_assert_eq!(receiver.current().unwrap().skipped_keys(), 0);
    }
}
