//! Sender Keys: delivery in any order, each once; tampering; forward secrecy; rotation locking
//! out a removed member; the forward-jump bound; the state bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hush_protocol::e2e::consts::{MAX_FORWARD_JUMPS, MAX_SENDER_KEY_STATES};
use hush_protocol::e2e::store::{
    create_sender_key_distribution, group_decrypt, group_encrypt, process_sender_key_distribution,
    rotate_sender_key,
};
use hush_protocol::e2e::{
    E2eError, InMemoryStore, PeerAddress, SenderKeyDistributionMessage, SenderKeyRecord,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use uuid::Uuid;

const DIST: Uuid = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);

fn group(members: usize, rng: &mut StdRng) -> (SenderKeyRecord, Vec<SenderKeyRecord>) {
    let mut sender = SenderKeyRecord::new(DIST);
    let skdm = sender.distribution(rng).unwrap();
    // Distribution messages travel encoded inside pairwise sessions.
    let wire = skdm.encode();
    let received = SenderKeyDistributionMessage::decode(&wire).unwrap();
    let recs = (0..members)
        .map(|_| {
            let mut r = SenderKeyRecord::new(DIST);
            r.process_distribution(&received).unwrap();
            r
        })
        .collect();
    (sender, recs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Messages delivered in any order, with some dropped, decrypt each exactly once; after a
    /// message decrypted, the restored record can no longer decrypt it.
    #[test]
    fn any_order_each_once_and_forward_secret(
        seed in any::<u64>(),
        count in 1usize..30,
        picks in proptest::collection::vec((any::<u16>(), any::<bool>()), 30),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut sender, mut members) = group(1, &mut rng);
        let member = &mut members[0];
        let mut pending: Vec<(Vec<u8>, Vec<u8>)> = (0..count)
            .map(|i| {
                let pt = format!("m{i}").into_bytes();
                (sender.encrypt(&pt, &mut rng).unwrap(), pt)
            })
            .collect();
        let mut k = 0;
        while !pending.is_empty() {
            let (pick, drop) = picks[k % picks.len()];
            k += 1;
            let (m, pt) = pending.remove(usize::from(pick) % pending.len());
            if drop {
                continue;
            }
            prop_assert_eq!(member.decrypt(&m).unwrap(), pt);
            prop_assert_eq!(member.decrypt(&m), Err(E2eError::DuplicateMessage));
            let bytes = member.serialize().unwrap();
            let mut restored = SenderKeyRecord::deserialize(&bytes).unwrap();
            prop_assert!(restored.decrypt(&m).is_err());
        }
    }

    /// Changing any byte is refused and leaves the record unchanged.
    #[test]
    fn any_changed_byte_is_refused(
        seed in any::<u64>(),
        skip in 0usize..3,
        pos in any::<usize>(),
        mask in 1u8..=255,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut sender, mut members) = group(1, &mut rng);
        for _ in 0..skip {
            sender.encrypt(b"skipped", &mut rng).unwrap();
        }
        let m = sender.encrypt(b"payload", &mut rng).unwrap();
        let mut bad = m.clone();
        let i = pos % bad.len();
        bad[i] ^= mask;
        let before = members[0].serialize().unwrap();
        prop_assert!(members[0].decrypt(&bad).is_err());
        prop_assert_eq!(members[0].serialize().unwrap(), before);
        prop_assert_eq!(members[0].decrypt(&m).unwrap(), b"payload".to_vec());
    }

    /// A member removed before a rotation reads nothing sent after it; the others read all.
    #[test]
    fn removed_member_reads_nothing_after_rotation(
        seed in any::<u64>(),
        before in 0usize..5,
        after in 1usize..10,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut sender, mut members) = group(3, &mut rng);
        for i in 0..before {
            let m = sender.encrypt(&[i as u8], &mut rng).unwrap();
            for r in &mut members {
                prop_assert_eq!(r.decrypt(&m).unwrap(), vec![i as u8]);
            }
        }
        let in_flight = sender.encrypt(b"sent before the removal", &mut rng).unwrap();
        // Member 2 is removed: rotate and distribute to members 0 and 1 only.
        let skdm = sender.rotate(&mut rng);
        members[0].process_distribution(&skdm).unwrap();
        members[1].process_distribution(&skdm).unwrap();
        for i in 0..after {
            let m = sender.encrypt(&[0xa0, i as u8], &mut rng).unwrap();
            prop_assert_eq!(members[0].decrypt(&m).unwrap(), vec![0xa0, i as u8]);
            prop_assert_eq!(members[1].decrypt(&m).unwrap(), vec![0xa0, i as u8]);
            let removed_before = members[2].serialize().unwrap();
            prop_assert_eq!(members[2].decrypt(&m), Err(E2eError::NoSenderKeyState));
            prop_assert_eq!(members[2].serialize().unwrap(), removed_before);
        }
        // Messages sent before the rotation still decrypt for everyone.
        for r in &mut members {
            prop_assert_eq!(r.decrypt(&in_flight).unwrap(), b"sent before the removal".to_vec());
        }
    }
}

#[test]
fn forward_jump_beyond_bound_is_refused_and_chain_still_works() {
    let mut rng = StdRng::seed_from_u64(1);
    let (mut sender, mut members) = group(1, &mut rng);
    let first = sender.encrypt(b"first", &mut rng).unwrap();
    let mut at_bound = Vec::new();
    let mut beyond = Vec::new();
    for i in 1..=MAX_FORWARD_JUMPS + 1 {
        let m = sender.encrypt(b"x", &mut rng).unwrap();
        if i == MAX_FORWARD_JUMPS {
            at_bound = m;
        } else if i == MAX_FORWARD_JUMPS + 1 {
            beyond = m;
        }
    }
    let r = &mut members[0];
    // `beyond` is MAX_FORWARD_JUMPS + 1 past the chain's position (0): refused, unchanged.
    let before = r.serialize().unwrap();
    assert_eq!(r.decrypt(&beyond), Err(E2eError::TooFarInFuture));
    assert_eq!(r.serialize().unwrap(), before);
    assert_eq!(r.decrypt(&first).unwrap(), b"first");
    assert_eq!(r.decrypt(&at_bound).unwrap(), b"x");
    assert_eq!(r.decrypt(&beyond).unwrap(), b"x");
    let next = sender.encrypt(b"next", &mut rng).unwrap();
    assert_eq!(r.decrypt(&next).unwrap(), b"next");
}

#[test]
fn at_most_five_states_per_sender() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut sender = SenderKeyRecord::new(DIST);
    let mut member = SenderKeyRecord::new(DIST);
    let mut first_message = None;
    for i in 0..=MAX_SENDER_KEY_STATES {
        let skdm = sender.rotate(&mut rng);
        member.process_distribution(&skdm).unwrap();
        if i == 0 {
            first_message = Some(sender.encrypt(b"oldest", &mut rng).unwrap());
        }
    }
    assert_eq!(member.chain_ids().len(), MAX_SENDER_KEY_STATES);
    assert_eq!(member.decrypt(&first_message.unwrap()), Err(E2eError::NoSenderKeyState));
}

#[test]
fn store_level_group_flow() {
    let mut rng = StdRng::seed_from_u64(3);
    let alice_addr = PeerAddress::new("alice", 1);
    let mut alice = InMemoryStore::generate(1, &mut rng);
    let mut bob = InMemoryStore::generate(2, &mut rng);
    let skdm = create_sender_key_distribution(&mut alice, &alice_addr, DIST, &mut rng).unwrap();
    // Asking again returns the same chain, not a new one.
    let again = create_sender_key_distribution(&mut alice, &alice_addr, DIST, &mut rng).unwrap();
    assert_eq!(skdm.chain_id, again.chain_id);
    process_sender_key_distribution(&mut bob, &alice_addr, &skdm).unwrap();
    let m = group_encrypt(&mut alice, &alice_addr, DIST, b"to the group", &mut rng).unwrap();
    assert_eq!(group_decrypt(&mut bob, &alice_addr, &m).unwrap(), b"to the group");
    assert_eq!(group_decrypt(&mut bob, &alice_addr, &m), Err(E2eError::DuplicateMessage));
    // Rotation through the store: bob (still a member) gets the new chain, carol does not.
    let mut carol_store = InMemoryStore::generate(3, &mut rng);
    process_sender_key_distribution(&mut carol_store, &alice_addr, &skdm).unwrap();
    let rotated = rotate_sender_key(&mut alice, &alice_addr, DIST, &mut rng).unwrap();
    assert_ne!(rotated.chain_id, skdm.chain_id);
    process_sender_key_distribution(&mut bob, &alice_addr, &rotated).unwrap();
    let after = group_encrypt(&mut alice, &alice_addr, DIST, b"after rotation", &mut rng).unwrap();
    assert_eq!(group_decrypt(&mut bob, &alice_addr, &after).unwrap(), b"after rotation");
    assert_eq!(group_decrypt(&mut carol_store, &alice_addr, &after), Err(E2eError::NoSenderKeyState));
    // A message from a sender bob has no key for.
    let carol = PeerAddress::new("carol", 1);
    assert_eq!(group_decrypt(&mut bob, &carol, &m), Err(E2eError::NoSenderKeyState));
}

#[test]
fn wire_formats_are_libsignals_and_bad_input_is_a_typed_error() {
    use hush_protocol::e2e::sender_keys::{SenderKeyMessage, MAX_DISTRIBUTION_LEN};
    use hush_protocol::e2e::DecodeError;
    let mut rng = StdRng::seed_from_u64(4);
    let (mut sender, mut members) = group(1, &mut rng);
    let skdm = sender.distribution(&mut rng).unwrap().encode().to_vec();
    let m = sender.encrypt(b"hello", &mut rng).unwrap();
    assert_eq!((skdm[0], m[0]), (0x33, 0x33));
    // Field 1 (distribution uuid, 16 bytes) first in both.
    assert_eq!(&skdm[1..3], &[0x0a, 0x10]);
    assert_eq!(&m[1..3], &[0x0a, 0x10]);
    assert_eq!(&skdm[3..19], DIST.as_bytes());
    // AES-CBC: "hello" pads to one block; 64-byte signature at the end.
    assert_eq!(SenderKeyMessage::decode(&m).unwrap().ciphertext().len(), 16);
    assert_eq!(SenderKeyMessage::decode(&m).unwrap().signed_bytes().len(), m.len() - 64);

    let before = members[0].serialize().unwrap();
    let with_first = |b: &[u8], f: u8| [&[f][..], &b[1..]].concat();
    for (bytes, err) in [
        (with_first(&m, 0x23), DecodeError::BadVersion),
        (with_first(&m, 0x43), DecodeError::BadVersion),
        // Hush's former encoding of a group message started with 0x13.
        (with_first(&m, 0x13), DecodeError::BadVersion),
        (m[..64].to_vec(), DecodeError::Truncated),
        (vec![0x33; 65], DecodeError::Protobuf),
        (vec![0x33; 200 * 1024], DecodeError::TooLong),
    ] {
        assert_eq!(SenderKeyMessage::decode(&bytes).err(), Some(err));
        assert_eq!(members[0].decrypt(&bytes), Err(E2eError::Decode(err)));
        assert_eq!(members[0].serialize().unwrap(), before);
    }
    // The low nibble of the version byte is not checked on reading (as libsignal), but it is
    // signed: changing it is refused.
    assert!(SenderKeyMessage::decode(&with_first(&m, 0x3f)).is_ok());
    assert_eq!(members[0].decrypt(&with_first(&m, 0x3f)), Err(E2eError::DecryptionFailed));
    assert_eq!(members[0].serialize().unwrap(), before);
    assert_eq!(members[0].decrypt(&m).unwrap(), b"hello");

    for (bytes, err) in [
        (with_first(&skdm, 0x23), DecodeError::BadVersion),
        (with_first(&skdm, 0x14), DecodeError::BadVersion),
        (skdm[..64].to_vec(), DecodeError::Truncated),
        (vec![0x33; 65], DecodeError::Protobuf),
        (vec![0x33; MAX_DISTRIBUTION_LEN + 1], DecodeError::TooLong),
    ] {
        assert_eq!(SenderKeyDistributionMessage::decode(&bytes).err(), Some(err));
    }
}

#[test]
fn distribution_for_a_held_chain_is_kept_and_another_key_replaces_it() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut sender = SenderKeyRecord::new(DIST);
    let first = sender.distribution(&mut rng).unwrap();
    let mut member = SenderKeyRecord::new(DIST);
    member.process_distribution(&first).unwrap();
    let m0 = sender.encrypt(b"m0", &mut rng).unwrap();
    assert_eq!(member.decrypt(&m0).unwrap(), b"m0");
    let other = SenderKeyRecord::new(DIST).rotate(&mut rng);
    member.process_distribution(&other).unwrap();
    assert_eq!(member.chain_ids(), [other.chain_id, first.chain_id]);
    // Re-delivering the first chain moves it to the front without rewinding it.
    member.process_distribution(&first).unwrap();
    assert_eq!(member.chain_ids(), [first.chain_id, other.chain_id]);
    assert_eq!(member.decrypt(&m0), Err(E2eError::DuplicateMessage));
    // The same chain id with another signing key replaces the state (libsignal's rule).
    let mut impostor = SenderKeyRecord::new(DIST);
    let mut forged = impostor.rotate(&mut rng);
    forged.chain_id = first.chain_id;
    member.process_distribution(&forged).unwrap();
    assert_eq!(member.chain_ids(), [first.chain_id, other.chain_id]);
    let m1 = sender.encrypt(b"m1", &mut rng).unwrap();
    assert_eq!(member.decrypt(&m1), Err(E2eError::DecryptionFailed));
}
