//! E2E library against vodozemac 0.11 (Olm and Megolm), side by side.
//!
//! Rows: Double Ratchet encrypt and decrypt in order; a ping-pong where every message carries
//! a new ratchet key (a DH ratchet step per message); session creation (initiator agreement and
//! first message, responder agreement and decryption); Sender Key encrypt and decrypt against
//! Megolm. Payloads of 32 bytes and 1 KiB.
//!
//! Both libraries are timed from bytes to bytes, as an application meets them: Hush's calls take
//! and return serialized messages, so vodozemac's rows include `to_parts`/`to_bytes` after
//! encrypting and `from_parts`/`from_bytes` before decrypting (`ratchet_decrypt/olm_predecoded`
//! keeps the earlier Olm row, which decrypted messages decoded beforehand).
//!
//! Times are the benchmark thread's CPU time ([`ThreadCpuTime`]), not wall-clock time, so other
//! work on this shared 2-core machine inflates them less; both libraries are measured the same
//! way.
//!
//! Run: `cargo bench -p hush-benches --bench e2e -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hush_protocol::e2e::prekeys::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use hush_protocol::e2e::session::{decrypt_message, encrypt_message, process_prekey_bundle};
use hush_protocol::e2e::store::{IdentityStore, PreKeyStore, SessionStore};
use hush_protocol::e2e::{
    pqxdh, E2eError, InMemoryStore, KeyId, KeyPair, PeerAddress, PreKeyBundle, PublicKey, SenderKeyRecord,
    SessionRecord,
};
use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig as MegolmConfig};
use vodozemac::olm::{Account, OlmMessage, Session as OlmSession, SessionConfig};

const SIZES: [usize; 2] = [32, 1024];

/// An established Hush session pair (one message each way, so both sides send plain ratchet
/// messages).
fn hush_pair() -> (SessionRecord, SessionRecord) {
    let mut rng = rand::thread_rng();
    let mut alice = InMemoryStore::generate(1, &mut rng);
    let mut bob = InMemoryStore::generate(2, &mut rng);
    let (a, b) = (PeerAddress::new("alice", 1), PeerAddress::new("bob", 1));
    let bundle = hush_bundle(&mut bob);
    process_prekey_bundle(&mut alice, &b, &bundle, &mut rng).unwrap();
    let m = encrypt_message(&mut alice, &b, b"hi", &mut rng).unwrap();
    decrypt_message(&mut bob, &a, &m, &mut rng).unwrap();
    let r = encrypt_message(&mut bob, &a, b"hi", &mut rng).unwrap();
    decrypt_message(&mut alice, &b, &r, &mut rng).unwrap();
    (alice.load_session(&b).unwrap().unwrap(), bob.load_session(&a).unwrap().unwrap())
}

fn hush_bundle(bob: &mut InMemoryStore) -> PreKeyBundle {
    let mut rng = rand::thread_rng();
    let id = bob.identity_key_pair().unwrap();
    let spk = SignedPreKeyRecord::generate(KeyId::new(1).unwrap(), &id, &mut rng);
    let otk = PreKeyRecord::generate(KeyId::new(2).unwrap(), &mut rng);
    let kyber = KyberPreKeyRecord::generate(KeyId::new(3).unwrap(), &id, true, &mut rng).unwrap();
    bob.add_signed_pre_key(spk.clone());
    bob.add_pre_key(otk.clone());
    bob.add_kyber_pre_key(kyber.clone());
    PreKeyBundle {
        registration_id: 2,
        device_id: 1,
        identity_key: *id.public_key(),
        signed_pre_key: spk.public(),
        one_time_pre_key: Some(otk.public()),
        kyber_pre_key: Some(kyber.public()),
    }
}

/// An established Olm session pair (one message each way).
fn olm_pair() -> (OlmSession, OlmSession) {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    bob.mark_keys_as_published();
    let mut a = alice.create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk).unwrap();
    let OlmMessage::PreKey(m) = a.encrypt(b"hi").unwrap() else { panic!("expected a pre-key message") };
    let mut b =
        bob.create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &m).unwrap().session;
    let r = b.encrypt(b"hi").unwrap();
    a.decrypt(&r).unwrap();
    (a, b)
}

fn ratchet(c: &mut Criterion<ThreadCpuTime>) {
    let mut rng = rand::thread_rng();
    let mut g = c.benchmark_group("ratchet_encrypt");
    for size in SIZES {
        let pt = vec![0x42u8; size];
        g.throughput(Throughput::Elements(1));
        let (mut ha, _) = hush_pair();
        g.bench_with_input(BenchmarkId::new("hush", size), &pt, |b, pt| {
            b.iter(|| black_box(ha.encrypt(pt, &mut rng).unwrap()))
        });
        let (mut oa, _) = olm_pair();
        g.bench_with_input(BenchmarkId::new("olm", size), &pt, |b, pt| {
            b.iter(|| black_box(oa.encrypt(pt).unwrap().to_parts()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ratchet_decrypt");
    for size in SIZES {
        let pt = vec![0x42u8; size];
        g.throughput(Throughput::Elements(1));
        let (mut ha, mut hb) = hush_pair();
        g.bench_with_input(BenchmarkId::new("hush", size), &pt, |b, pt| {
            b.iter_custom(|iters| {
                let msgs: Vec<Vec<u8>> = (0..iters).map(|_| ha.encrypt(pt, &mut rng).unwrap()).collect();
                let start = ThreadTime::now();
                for m in &msgs {
                    black_box(hb.decrypt_ratchet(m, &mut rng).unwrap());
                }
                start.elapsed()
            })
        });
        let (mut oa, mut ob) = olm_pair();
        g.bench_with_input(BenchmarkId::new("olm", size), &pt, |b, pt| {
            b.iter_custom(|iters| {
                let msgs: Vec<(usize, Vec<u8>)> =
                    (0..iters).map(|_| oa.encrypt(pt).unwrap().to_parts()).collect();
                let start = ThreadTime::now();
                for (t, m) in &msgs {
                    black_box(ob.decrypt(&OlmMessage::from_parts(*t, m).unwrap()).unwrap());
                }
                start.elapsed()
            })
        });
        // Before session 9 the Olm row timed this: decryption of messages decoded beforehand.
        let (mut oa, mut ob) = olm_pair();
        g.bench_with_input(BenchmarkId::new("olm_predecoded", size), &pt, |b, pt| {
            b.iter_custom(|iters| {
                let msgs: Vec<OlmMessage> = (0..iters).map(|_| oa.encrypt(pt).unwrap()).collect();
                let start = ThreadTime::now();
                for m in &msgs {
                    black_box(ob.decrypt(m).unwrap());
                }
                start.elapsed()
            })
        });
    }
    g.finish();

    // Every message answers the previous one, so each carries a new ratchet key: one DH
    // ratchet step per message. One iteration = one message each way (encrypt + decrypt twice).
    let mut g = c.benchmark_group("ratchet_ping_pong");
    for size in SIZES {
        let pt = vec![0x42u8; size];
        g.throughput(Throughput::Elements(2));
        let (mut ha, mut hb) = hush_pair();
        g.bench_with_input(BenchmarkId::new("hush", size), &pt, |b, pt| {
            b.iter(|| {
                let m = ha.encrypt(pt, &mut rng).unwrap();
                black_box(hb.decrypt_ratchet(&m, &mut rng).unwrap());
                let r = hb.encrypt(pt, &mut rng).unwrap();
                black_box(ha.decrypt_ratchet(&r, &mut rng).unwrap());
            })
        });
        let (mut oa, mut ob) = olm_pair();
        g.bench_with_input(BenchmarkId::new("olm", size), &pt, |b, pt| {
            b.iter(|| {
                let (t, m) = oa.encrypt(pt).unwrap().to_parts();
                black_box(ob.decrypt(&OlmMessage::from_parts(t, &m).unwrap()).unwrap());
                let (t, r) = ob.encrypt(pt).unwrap().to_parts();
                black_box(oa.decrypt(&OlmMessage::from_parts(t, &r).unwrap()).unwrap());
            })
        });
    }
    g.finish();
}

/// A pre-key store that never runs out (so the bench measures the agreement, not key upkeep).
struct FixedPreKeys {
    spk: SignedPreKeyRecord,
    otk: PreKeyRecord,
    kyber: KyberPreKeyRecord,
}

impl PreKeyStore for FixedPreKeys {
    fn signed_pre_key(&self, _: KeyId) -> Result<Option<SignedPreKeyRecord>, E2eError> {
        Ok(Some(self.spk.clone()))
    }
    fn pre_key(&self, _: KeyId) -> Result<Option<PreKeyRecord>, E2eError> {
        Ok(Some(self.otk.clone()))
    }
    fn remove_pre_key(&mut self, _: KeyId) -> Result<(), E2eError> {
        Ok(())
    }
    fn kyber_pre_key(&self, _: KeyId) -> Result<Option<KyberPreKeyRecord>, E2eError> {
        Ok(Some(self.kyber.clone()))
    }
    fn mark_kyber_pre_key_used(&mut self, _: KeyId, _: &PublicKey) -> Result<(), E2eError> {
        Ok(())
    }
}

fn session_creation(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("session_creation");
    g.throughput(Throughput::Elements(1));
    let mut rng = rand::thread_rng();
    let alice_id = KeyPair::generate(&mut rng);
    let bob_id = KeyPair::generate(&mut rng);
    let spk = SignedPreKeyRecord::generate(KeyId::new(1).unwrap(), &bob_id, &mut rng);
    let otk = PreKeyRecord::generate(KeyId::new(2).unwrap(), &mut rng);
    let kyber = KyberPreKeyRecord::generate(KeyId::new(3).unwrap(), &bob_id, true, &mut rng).unwrap();
    let bundle = PreKeyBundle {
        registration_id: 2,
        device_id: 1,
        identity_key: *bob_id.public_key(),
        signed_pre_key: spk.public(),
        one_time_pre_key: Some(otk.public()),
        kyber_pre_key: Some(kyber.public()),
    };
    let mut keys = FixedPreKeys { spk, otk, kyber };
    let mut bundle_no_otk = bundle.clone();
    bundle_no_otk.one_time_pre_key = None;
    // Initiator: verify the signed pre-keys, PQXDH (Kyber-1024 encapsulation), first message;
    // responder: PQXDH (decapsulation), decrypt it. With a one-time pre-key four DHs per side;
    // without, three (Olm's 3DH shape). Both sides also start SPQR.
    for (name, bundle) in [("hush_pqxdh_otk", &bundle), ("hush_pqxdh_no_otk", &bundle_no_otk)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut alice = SessionRecord::new();
                alice.promote_new(pqxdh::start_session(&alice_id, 1, bundle, &mut rng).unwrap());
                let m = alice.encrypt(b"hello", &mut rng).unwrap();
                let mut bob = SessionRecord::new();
                black_box(bob.decrypt_prekey(&m, &bob_id, 2, &mut keys, &mut rng).unwrap());
            })
        });
    }
    let alice = Account::new();
    let mut bob = Account::new();
    // `olm`: the agreement alone. `olm_signed_otk`: plus the Ed25519 check of the one-time key's
    // signature a Matrix client makes before using it (the counterpart of Hush's signed pre-key
    // check inside `pqxdh::start_session`).
    for (name, check_signature) in [("olm", false), ("olm_signed_otk", true)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    bob.generate_one_time_keys(1);
                    let otk = *bob.one_time_keys().values().next().unwrap();
                    bob.mark_keys_as_published();
                    let signature = bob.sign(otk.as_bytes());
                    let start = ThreadTime::now();
                    if check_signature {
                        bob.ed25519_key().verify(otk.as_bytes(), &signature).unwrap();
                    }
                    let mut a = alice
                        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
                        .unwrap();
                    let OlmMessage::PreKey(m) = a.encrypt(b"hello").unwrap() else {
                        panic!("expected a pre-key message")
                    };
                    black_box(
                        bob.create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &m)
                            .unwrap(),
                    );
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

fn group(c: &mut Criterion<ThreadCpuTime>) {
    let mut rng = rand::thread_rng();
    let dist = uuid::Uuid::from_u128(1);
    let mut g = c.benchmark_group("group_encrypt");
    for size in SIZES {
        let pt = vec![0x42u8; size];
        g.throughput(Throughput::Elements(1));
        let mut sender = SenderKeyRecord::new(dist);
        sender.distribution(&mut rng).unwrap();
        g.bench_with_input(BenchmarkId::new("hush_sender_keys", size), &pt, |b, pt| {
            b.iter(|| black_box(sender.encrypt(pt, &mut rng).unwrap()))
        });
        let mut out = GroupSession::new(MegolmConfig::version_1());
        g.bench_with_input(BenchmarkId::new("megolm", size), &pt, |b, pt| {
            b.iter(|| black_box(out.encrypt(pt).to_bytes()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("group_decrypt");
    for size in SIZES {
        let pt = vec![0x42u8; size];
        g.throughput(Throughput::Elements(1));
        let mut sender = SenderKeyRecord::new(dist);
        let skdm = sender.distribution(&mut rng).unwrap();
        let mut member = SenderKeyRecord::new(dist);
        member.process_distribution(&skdm).unwrap();
        g.bench_with_input(BenchmarkId::new("hush_sender_keys", size), &pt, |b, pt| {
            b.iter_custom(|iters| {
                let msgs: Vec<Vec<u8>> = (0..iters).map(|_| sender.encrypt(pt, &mut rng).unwrap()).collect();
                let start = ThreadTime::now();
                for m in &msgs {
                    black_box(member.decrypt(m).unwrap());
                }
                start.elapsed()
            })
        });
        let mut out = GroupSession::new(MegolmConfig::version_1());
        let mut inb = InboundGroupSession::new(&out.session_key(), MegolmConfig::version_1());
        g.bench_with_input(BenchmarkId::new("megolm", size), &pt, |b, pt| {
            b.iter_custom(|iters| {
                let msgs: Vec<Vec<u8>> = (0..iters).map(|_| out.encrypt(pt).to_bytes()).collect();
                let start = ThreadTime::now();
                for m in &msgs {
                    black_box(inb.decrypt(&MegolmMessage::from_bytes(m).unwrap()).unwrap());
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// CPU time of the measuring thread, shown like wall-clock durations.
pub struct ThreadCpuTime {
    wall: WallTime,
}

impl Measurement for ThreadCpuTime {
    type Intermediate = ThreadTime;
    type Value = Duration;

    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }
    fn end(&self, start: ThreadTime) -> Duration {
        start.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = ratchet, session_creation, group
}
criterion_main!(benches);
