//! SPQR against libsignal 0.103: alice's first two messages of every session start in
//! `tests/vectors/libsignal/pqxdh.json` are decrypted by Hush playing bob with its own SPQR.
//!
//! This checks, end to end against libsignal: the auth key (PQXDH okm[64..96]), the chain start
//! derivation (label with two spaces, A-to-B half for alice), the chain step and its first
//! index (1), the decoding of libsignal's 37-byte `pq_ratchet` fields, and that SPQR's message
//! key is the HKDF salt of libsignal's `WhisperMessageKeys` derivation. It cannot check the KEM
//! exchange (bob needs three header chunks; these sessions have two messages).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use hush_protocol::e2e::kem::{KyberCiphertext, KyberSecretKey};
use hush_protocol::e2e::pqxdh::{self, InitiatorMessage, PqxdhKeys, ResponderKeys};
use hush_protocol::e2e::spqr::SpqrState;
use hush_protocol::e2e::{KeyPair, PrivateKey, PublicKey};
use serde_json::Value;
use sha2::Sha256;

fn load() -> Value {
    let path = format!("{}/tests/vectors/libsignal/pqxdh.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap()
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn key_pair(v: &Value) -> KeyPair {
    let pair = KeyPair::from_private(PrivateKey::deserialize(&hx(&v["private_key"])).unwrap());
    assert_eq!(pair.public_key().serialize().to_vec(), hx(&v["public_key"]));
    pair
}

/// A protobuf field: varint or length-delimited (all libsignal's message fields are one of these).
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
}

fn varint(buf: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = buf[*i];
        *i += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return v;
        }
    }
    panic!("varint too long")
}

fn proto(buf: &[u8]) -> Vec<(u64, Field)> {
    let (mut i, mut out) = (0, Vec::new());
    while i < buf.len() {
        let key = varint(buf, &mut i);
        match key & 7 {
            0 => out.push((key >> 3, Field::Varint(varint(buf, &mut i)))),
            2 => {
                let n = usize::try_from(varint(buf, &mut i)).unwrap();
                out.push((key >> 3, Field::Bytes(buf[i..i + n].to_vec())));
                i += n;
            }
            w => panic!("unexpected wire type {w}"),
        }
    }
    out
}

fn bytes(fields: &[(u64, Field)], n: u64) -> Option<Vec<u8>> {
    fields.iter().find_map(|(f, v)| match v {
        Field::Bytes(b) if *f == n => Some(b.clone()),
        _ => None,
    })
}

/// Bob's private keys from a vector case.
struct Bob {
    identity: KeyPair,
    spk: KeyPair,
    otk: Option<KeyPair>,
    kyber: KyberSecretKey,
}

fn bob(case: &Value) -> Bob {
    let b = &case["bob"];
    let kyber = KyberSecretKey::deserialize(&hx(&b["kyber_pre_key"]["secret_key"])).unwrap();
    // The Kyber secret key embeds the public key libsignal published.
    let public = kyber.public_key().unwrap();
    assert_eq!(public.serialize(), hx(&b["kyber_pre_key"]["public_key"]).as_slice());
    Bob {
        identity: key_pair(&b["identity_key"]),
        spk: key_pair(&b["signed_pre_key"]),
        otk: (!b["one_time_pre_key"].is_null()).then(|| key_pair(&b["one_time_pre_key"])),
        kyber,
    }
}

/// The fields of a PreKeySignalMessage (version byte 0x44, then protobuf).
struct PreKeyMessage {
    signal_message: Vec<u8>,
    base_key: PublicKey,
    identity_key: PublicKey,
    ciphertext: KyberCiphertext,
}

fn prekey_message(wire: &[u8]) -> PreKeyMessage {
    assert_eq!(wire[0], 0x44, "version 4 in both nibbles");
    let fields = proto(&wire[1..]);
    let ct = bytes(&fields, 8).unwrap();
    assert_eq!((ct.len(), ct[0]), (1569, 0x08), "kyber_ciphertext is 0x08 || 1568 bytes");
    PreKeyMessage {
        signal_message: bytes(&fields, 4).unwrap(),
        base_key: PublicKey::from_exact(&bytes(&fields, 2).unwrap()).unwrap(),
        identity_key: PublicKey::from_exact(&bytes(&fields, 3).unwrap()).unwrap(),
        ciphertext: KyberCiphertext::deserialize(&ct).unwrap(),
    }
}

fn respond(b: &Bob, m: &PreKeyMessage, ciphertext: &KyberCiphertext) -> PqxdhKeys {
    let ours = ResponderKeys {
        identity: &b.identity,
        signed_pre_key: &b.spk,
        one_time_pre_key: b.otk.as_ref(),
        kyber_pre_key: &b.kyber,
    };
    let theirs = InitiatorMessage {
        identity_key: &m.identity_key,
        base_key: &m.base_key,
        kyber_ciphertext: ciphertext,
    };
    pqxdh::respond(&ours, &theirs).unwrap()
}

/// libsignal's v4 message keys: HKDF-SHA256(salt = SPQR key, ikm = message seed,
/// info = `WhisperMessageKeys`), 80 bytes: cipher key, MAC key, IV.
fn message_keys(seed: &[u8], spqr_key: &[u8; 32]) -> [u8; 80] {
    let mut okm = [0u8; 80];
    hkdf::Hkdf::<Sha256>::new(Some(spqr_key), seed).expand(b"WhisperMessageKeys", &mut okm).unwrap();
    okm
}

fn open(msg: &[u8], keys: &[u8; 80], alice: &PublicKey, bob: &PublicKey) -> Option<Vec<u8>> {
    let (body, mac) = msg.split_at(msg.len() - 8);
    let mut h = <Hmac<Sha256> as KeyInit>::new_from_slice(&keys[32..64]).unwrap();
    h.update(&alice.serialize());
    h.update(&bob.serialize());
    h.update(body);
    if h.finalize().into_bytes()[..8] != *mac {
        return None;
    }
    let fields = proto(&body[1..]);
    cbc::Decryptor::<aes::Aes256>::new_from_slices(&keys[..32], &keys[64..])
        .unwrap()
        .decrypt_padded_vec::<Pkcs7>(&bytes(&fields, 4).unwrap())
        .ok()
}

#[test]
fn hush_spqr_decrypts_libsignal_messages() {
    let v = load();
    let mut opened = 0;
    for case in v["cases"].as_array().unwrap() {
        let id = &case["id"];
        let b = bob(case);
        let mut spqr: Option<SpqrState> = None;
        for (n, message) in case["messages"].as_array().unwrap().iter().enumerate() {
            let m = prekey_message(&hx(&message["ciphertext"]));
            let keys = respond(&b, &m, &m.ciphertext);
            let state = spqr.get_or_insert_with(|| SpqrState::initial_bob(keys.pq_ratchet_key()));
            let inner = proto(&m.signal_message[1..m.signal_message.len() - 8]);
            let field = bytes(&inner, 5).unwrap();
            // version 1, epoch 1, index n + 1, header chunk n.
            assert_eq!(field.len(), 37, "{id}");
            assert_eq!(field[..5], [1, 1, n as u8 + 1, 1, n as u8], "{id}");
            let (next, spqr_key) = state.recv(&field).unwrap();
            *state = next;
            let ratchet = PublicKey::from_exact(&bytes(&inner, 1).unwrap()).unwrap();
            let (_, mut chain) = keys.root_key().step(b.spk.private_key(), &ratchet).unwrap();
            for _ in 0..n {
                chain = chain.step().unwrap().1;
            }
            let (seed, _) = chain.step().unwrap();
            let mk = message_keys(seed.as_bytes(), &spqr_key);
            let plain = open(&m.signal_message, &mk, &m.identity_key, b.identity.public_key())
                .unwrap_or_else(|| panic!("{id}: message {n} not authenticated with the SPQR key"));
            assert_eq!(plain, hx(&message["plaintext"]), "{id}: message {n}");
            opened += 1;
        }
    }
    assert_eq!(opened, 16);
}
