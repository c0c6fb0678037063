//! Hush's E2E library and libsignal 0.103 (`@signalapp/libsignal-client` from npm, run by
//! `protocol/tools/libsignal-vectors/peer.mjs`) talk to each other: each side starts sessions
//! with the other (with and without a one-time EC key, one-time and last-resort Kyber keys),
//! then a long conversation in both directions, with batches delivered out of order and Hush's
//! session restored from bytes along the way, long enough for SPQR to finish several ML-KEM
//! exchanges (epochs). Every message must decrypt on the other side.
//!
//! Needs `node` and `npm ci` in `protocol/tools/libsignal-vectors` (`scripts/test.sh` does it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use hush_protocol::e2e::message::MessageKind;
use hush_protocol::e2e::prekeys::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use hush_protocol::e2e::session::{decrypt_message_of_kind, encrypt_message, process_prekey_bundle};
use hush_protocol::e2e::store::{IdentityStore, SessionStore};
use hush_protocol::e2e::{
    parse_one_time_prekey, verify_kyber_prekey, verify_signed_ec_prekey, InMemoryStore, KeyId, PeerAddress,
    PreKeyBundle, PublicKey, SessionRecord,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// A plaintext and what sending it returned, as the batches below hold them.
type Sealed = (Vec<u8>, (u64, Vec<u8>));

fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/libsignal-vectors")
}

/// A libsignal device in a `node` child process.
struct Lib {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Lib {
    fn start(name: &str) -> Self {
        let dir = tools_dir();
        assert!(
            dir.join("node_modules/@signalapp/libsignal-client").is_dir(),
            "libsignal is not installed: run `npm ci` in {} (scripts/test.sh does)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("peer.mjs")
            .arg(name)
            .arg("1")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdin, out }
    }

    fn call(&mut self, req: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("peer said {line:?}: {e}"));
        match v.get("ok") {
            Some(ok) => Ok(ok.clone()),
            None => Err(v["error"].as_str().unwrap_or("?").to_owned()),
        }
    }

    fn ok(&mut self, req: Value) -> Value {
        let what = req["op"].clone();
        self.call(req).unwrap_or_else(|e| panic!("libsignal {what}: {e}"))
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn id_of(v: &Value) -> i64 {
    v["key_id"].as_i64().unwrap()
}

/// libsignal's bundle as Hush fetches it, checked as the node and the client check it.
fn bundle_from(v: &Value) -> PreKeyBundle {
    let ik = hx(&v["identity_key"]);
    let spk = &v["signed_pre_key"];
    let kyber = &v["kyber_pre_key"];
    PreKeyBundle {
        registration_id: u32::try_from(v["registration_id"].as_u64().unwrap()).unwrap(),
        device_id: u32::try_from(v["device_id"].as_u64().unwrap()).unwrap(),
        identity_key: PublicKey::deserialize(&ik).unwrap(),
        signed_pre_key: verify_signed_ec_prekey(
            &ik,
            id_of(spk),
            &hx(&spk["public_key"]),
            &hx(&spk["signature"]),
        )
        .unwrap(),
        one_time_pre_key: (!v["one_time_pre_key"].is_null()).then(|| {
            let o = &v["one_time_pre_key"];
            parse_one_time_prekey(id_of(o), &hx(&o["public_key"])).unwrap()
        }),
        kyber_pre_key: Some(
            verify_kyber_prekey(&ik, id_of(kyber), &hx(&kyber["public_key"]), &hx(&kyber["signature"]))
                .unwrap(),
        ),
    }
}

/// Hush's device: a store with a signed pre-key, and per bundle a fresh one-time EC key and
/// Kyber key as asked.
struct Hush {
    store: InMemoryStore,
    next_id: u32,
}

impl Hush {
    fn new(rng: &mut StdRng) -> Self {
        let mut store = InMemoryStore::generate(4242, rng);
        let identity = store.identity_key_pair().unwrap();
        store.add_signed_pre_key(SignedPreKeyRecord::generate(KeyId::new(1).unwrap(), &identity, rng));
        Self { store, next_id: 10 }
    }

    fn id(&mut self) -> KeyId {
        self.next_id += 1;
        KeyId::new(i64::from(self.next_id)).unwrap()
    }

    fn bundle_json(&mut self, with_one_time: bool, last_resort: bool, rng: &mut StdRng) -> Value {
        let identity = self.store.identity_key_pair().unwrap();
        let spk = self.store_spk();
        let otk = with_one_time.then(|| PreKeyRecord::generate(self.id(), rng));
        if let Some(o) = &otk {
            self.store.add_pre_key(o.clone());
        }
        let kyber = KyberPreKeyRecord::generate(self.id(), &identity, last_resort, rng).unwrap();
        self.store.add_kyber_pre_key(kyber.clone());
        let k = kyber.public();
        json!({
            "registration_id": 4242,
            "device_id": 1,
            "identity_key": hex::encode(identity.public_key().serialize()),
            "signed_pre_key": {"key_id": spk.key_id.get(), "public_key": hex::encode(spk.public_key.serialize()),
                               "signature": hex::encode(&spk.signature)},
            "one_time_pre_key": otk.map(|o| json!({"key_id": o.key_id.get(),
                                 "public_key": hex::encode(o.key_pair.public_key().serialize())})),
            "kyber_pre_key": {"key_id": k.key_id.get(), "public_key": hex::encode(k.public_key.serialize()),
                              "signature": hex::encode(&k.signature)},
        })
    }

    fn store_spk(&self) -> hush_protocol::e2e::SignedEcPreKey {
        use hush_protocol::e2e::store::PreKeyStore;
        self.store.signed_pre_key(KeyId::new(1).unwrap()).unwrap().unwrap().public()
    }
}

const LIB: &str = "lib";

fn lib_addr() -> PeerAddress {
    PeerAddress::new(LIB, 1)
}

/// Sends from Hush: (libsignal type, bytes).
fn hush_send(h: &mut Hush, text: &[u8], rng: &mut StdRng) -> (u64, Vec<u8>) {
    let unack = h.store.load_session(&lib_addr()).unwrap().unwrap().current().unwrap().is_unacknowledged();
    let ct = encrypt_message(&mut h.store, &lib_addr(), text, rng).unwrap();
    (if unack { 3 } else { 2 }, ct)
}

fn hush_recv(h: &mut Hush, ty: u64, bytes: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let kind = if ty == 3 { MessageKind::PreKey } else { MessageKind::Ratchet };
    decrypt_message_of_kind(&mut h.store, &lib_addr(), kind, bytes, rng)
        .unwrap_or_else(|e| panic!("Hush could not read libsignal's type-{ty} message: {e}"))
}

fn lib_send(l: &mut Lib, text: &[u8]) -> (u64, Vec<u8>) {
    let r = l.ok(json!({"op": "encrypt", "peer": "hush", "device": 1, "plaintext": hex::encode(text)}));
    (r["type"].as_u64().unwrap(), hx(&r["ciphertext"]))
}

fn lib_recv(l: &mut Lib, ty: u64, bytes: &[u8]) -> Vec<u8> {
    let r = l
        .call(json!({"op": "decrypt", "peer": "hush", "device": 1, "type": ty, "ciphertext": hex::encode(bytes)}))
        .unwrap_or_else(|e| panic!("libsignal could not read Hush's type-{ty} message: {e}"));
    hx(&r["plaintext"])
}

/// Restores Hush's session record from its bytes (as after an app restart).
fn restore(h: &mut Hush) {
    let rec = h.store.load_session(&lib_addr()).unwrap().unwrap();
    let again = SessionRecord::deserialize(&rec.serialize().unwrap()).unwrap();
    h.store.store_session(&lib_addr(), again).unwrap();
}

/// SPQR really ran: the session finished several ML-KEM exchanges with libsignal, each one's
/// secret starting new chains (a shared epoch both sides agree on, or no message would decrypt).
fn assert_epochs_advanced(h: &Hush, case: usize) {
    let rec = h.store.load_session(&lib_addr()).unwrap().unwrap();
    let epoch = rec.current().unwrap().pq_ratchet_epoch();
    eprintln!("case {case}: SPQR epoch {epoch}");
    assert!(epoch >= 3, "case {case}: SPQR completed only {} ML-KEM exchanges", epoch.saturating_sub(1));
}

/// Random batches both ways, each delivered in a shuffled order; every message must decrypt.
fn converse(h: &mut Hush, l: &mut Lib, rounds: usize, rng: &mut StdRng) -> (usize, usize) {
    let (mut to_lib, mut to_hush) = (0, 0);
    for round in 0..rounds {
        let n = rng.gen_range(1..=4);
        let mut batch: Vec<Sealed> = (0..n)
            .map(|i| {
                let t = format!("hush {round}.{i}").into_bytes();
                let m = hush_send(h, &t, rng);
                (t, m)
            })
            .collect();
        batch.shuffle(rng);
        for (t, (ty, m)) in batch {
            assert_eq!(lib_recv(l, ty, &m), t);
            to_lib += 1;
        }
        let n = rng.gen_range(1..=4);
        let mut batch: Vec<Sealed> = (0..n)
            .map(|i| {
                let t = format!("lib {round}.{i}").into_bytes();
                let m = lib_send(l, &t);
                (t, m)
            })
            .collect();
        batch.shuffle(rng);
        for (t, (ty, m)) in batch {
            assert_eq!(hush_recv(h, ty, &m, rng), t);
            to_hush += 1;
        }
        if round % 7 == 3 {
            restore(h);
        }
    }
    (to_lib, to_hush)
}

/// libsignal starts the session (from Hush's bundle); Hush answers; then a long conversation.
#[test]
fn libsignal_starts_and_both_talk() {
    for (case, (with_one_time, last_resort)) in
        [(true, false), (false, false), (true, true), (false, true)].into_iter().enumerate()
    {
        let mut rng = StdRng::seed_from_u64(100 + case as u64);
        let mut h = Hush::new(&mut rng);
        let mut l = Lib::start(LIB);
        let b = h.bundle_json(with_one_time, last_resort, &mut rng);
        l.ok(json!({"op": "process_bundle", "peer": "hush", "device": 1, "bundle": b}));
        // Three pre-key messages, read out of order.
        let first: Vec<Sealed> = (0..3)
            .map(|i| (format!("hello {i}").into_bytes(), lib_send(&mut l, format!("hello {i}").as_bytes())))
            .collect();
        for (_, (ty, _)) in &first {
            assert_eq!(*ty, 3, "libsignal's first messages are PreKeySignalMessages");
        }
        for i in [2, 0, 1] {
            let (t, (ty, m)) = &first[i];
            assert_eq!(&hush_recv(&mut h, *ty, m, &mut rng), t, "case {case}");
        }
        let (ty, m) = hush_send(&mut h, b"hi lib", &mut rng);
        assert_eq!(ty, 2, "the responder sends SignalMessages");
        assert_eq!(lib_recv(&mut l, ty, &m), b"hi lib");
        let (a, b) = converse(&mut h, &mut l, 60, &mut rng);
        assert!(a > 60 && b > 60);
        assert_epochs_advanced(&h, case);
    }
}

/// Hush starts the session (from libsignal's bundle); libsignal answers; then a long
/// conversation.
#[test]
fn hush_starts_and_both_talk() {
    for (case, (with_one_time, kyber_kind)) in
        [(true, "one_time"), (false, "one_time"), (true, "last_resort"), (false, "last_resort")]
            .into_iter()
            .enumerate()
    {
        let mut rng = StdRng::seed_from_u64(200 + case as u64);
        let mut h = Hush::new(&mut rng);
        let mut l = Lib::start(LIB);
        let b = l.ok(json!({"op": "bundle", "with_one_time": with_one_time, "kyber_kind": kyber_kind}));
        process_prekey_bundle(&mut h.store, &lib_addr(), &bundle_from(&b), &mut rng).unwrap();
        let first: Vec<Sealed> = (0..3)
            .map(|i| {
                (
                    format!("hello {i}").into_bytes(),
                    hush_send(&mut h, format!("hello {i}").as_bytes(), &mut rng),
                )
            })
            .collect();
        for i in [1, 2, 0] {
            let (t, (ty, m)) = &first[i];
            assert_eq!(*ty, 3);
            assert_eq!(&lib_recv(&mut l, *ty, m), t, "case {case}");
        }
        let (ty, m) = lib_send(&mut l, b"hi hush");
        assert_eq!(ty, 2);
        assert_eq!(hush_recv(&mut h, ty, &m, &mut rng), b"hi hush");
        let (ty, _) = hush_send(&mut h, b"acknowledged", &mut rng);
        assert_eq!(ty, 2, "after the first reply Hush sends SignalMessages");
        let (a, b) = converse(&mut h, &mut l, 60, &mut rng);
        assert!(a > 60 && b > 60);
        assert_epochs_advanced(&h, case);
    }
}
