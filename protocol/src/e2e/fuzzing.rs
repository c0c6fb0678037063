//! Decoder entry points shared by the cargo-fuzz targets (`protocol/fuzz`) and the corpus
//! replay test (`tests/e2e_fuzz_corpus.rs`). Each takes arbitrary bytes, must never panic, and
//! returns `false` only when an invariant broke (a decoded value that does not re-encode to
//! itself); the fuzz targets assert on that.

use super::content::{unpad, Content};
use super::kem::{decapsulate, KyberCiphertext, KyberKeyPair, KyberSecretKey};
use super::keys::{KeyId, KyberPublicKey, PrivateKey, PublicKey};
use super::message::{message_kind, PreKeyMessage, RatchetMessage};
use super::prekeys::{parse_one_time_prekey, verify_kyber_prekey, verify_signed_ec_prekey};
use super::retry::{DecryptionErrorMessage, PlaintextContent};
use super::sender_keys::{SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord};
use super::session::SessionRecord;
use crate::content_type::ContentType;

/// Ratchet message decoding, then a decryption attempt under a session that cannot hold it.
pub fn ratchet_message(data: &[u8]) -> bool {
    let _ = message_kind(data);
    if let Ok(m) = RatchetMessage::decode(data) {
        return m.authenticated.len() + m.mac.len() == data.len();
    }
    let mut empty = SessionRecord::new();
    empty.decrypt_ratchet(data, &mut rand_core::OsRng).is_err()
}

/// Pre-key message decoding.
pub fn prekey_message(data: &[u8]) -> bool {
    let _ = message_kind(data);
    match PreKeyMessage::decode(data) {
        Ok(m) => RatchetMessage::decode(&m.message).is_ok() && m.message.len() < data.len(),
        Err(_) => true,
    }
}

/// Sender-key message decoding (what decodes re-encodes, with its signature, to a message that
/// decodes to the same fields), then a decryption attempt (which must fail: no state).
pub fn sender_key_message(data: &[u8]) -> bool {
    let mut ok = true;
    if let Ok(m) = SenderKeyMessage::decode(data) {
        let mut again = m.encode_signed_part();
        again.extend_from_slice(m.signature());
        ok &= SenderKeyMessage::decode(&again).is_ok_and(|m2| {
            (m2.distribution_id, m2.chain_id, m2.iteration, m2.ciphertext())
                == (m.distribution_id, m.chain_id, m.iteration, m.ciphertext())
                && m2.encode_signed_part() == m2.signed_bytes()
        });
        ok &= m.signed_bytes().len() + m.signature().len() == data.len();
    }
    let mut record = SenderKeyRecord::new(uuid::Uuid::nil());
    ok & record.decrypt(data).is_err()
}

/// Sender-key distribution decoding; what decodes re-encodes to bytes that decode and re-encode
/// to themselves (and to the input itself when the input is in libsignal's canonical form).
pub fn sender_key_distribution(data: &[u8]) -> bool {
    match SenderKeyDistributionMessage::decode(data) {
        Ok(m) => {
            let mut record = SenderKeyRecord::new(m.distribution_id);
            let encoded = m.encode();
            let stable = SenderKeyDistributionMessage::decode(&encoded).is_ok_and(|m2| {
                m2.encode() == encoded
                    && (m2.distribution_id, m2.chain_id, m2.iteration, m2.signing_key)
                        == (m.distribution_id, m.chain_id, m.iteration, m.signing_key)
            });
            record.process_distribution(&m).is_ok() && stable
        }
        Err(_) => true,
    }
}

/// Every key parser, and the upload checks on the input split into identity key, key and
/// signature.
pub fn key_encodings(data: &[u8]) -> bool {
    let mut ok = true;
    if let Ok(k) = PublicKey::deserialize(data) {
        ok &= data.get(..33) == Some(&k.serialize()[..]);
    }
    let _ = PublicKey::from_exact(data);
    let _ = PrivateKey::deserialize(data).map(|k| k.public_key());
    if let Ok(k) = KyberPublicKey::deserialize(data) {
        ok &= k.serialize() == data;
    }
    let id = data.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, i64::from_le_bytes);
    let _ = KeyId::new(id);
    let (ik, rest) = data.split_at(data.len().min(33));
    let (sig, key) = rest.split_at(rest.len().min(64));
    let _ = verify_signed_ec_prekey(ik, id, key, sig);
    let _ = verify_kyber_prekey(ik, id, key, sig);
    let _ = parse_one_time_prekey(id, key);
    ok
}

/// Session record restore; what restores round-trips stably and can still encrypt or refuse
/// cleanly.
pub fn session_record(data: &[u8]) -> bool {
    match SessionRecord::deserialize(data) {
        Ok(mut r) => {
            let stable = r.serialize().is_ok_and(|b| {
                SessionRecord::deserialize(&b)
                    .ok()
                    .and_then(|r2| r2.serialize().ok())
                    .is_some_and(|b2| b2 == b)
            });
            let _ = r.encrypt(b"fuzz", &mut rand_core::OsRng);
            stable
        }
        Err(_) => true,
    }
}

/// Sender-key record restore; same checks.
pub fn sender_key_record(data: &[u8]) -> bool {
    match SenderKeyRecord::deserialize(data) {
        Ok(mut r) => {
            let stable = r.serialize().is_ok_and(|b| {
                SenderKeyRecord::deserialize(&b)
                    .ok()
                    .and_then(|r2| r2.serialize().ok())
                    .is_some_and(|b2| b2 == b)
            });
            let _ = r.encrypt(b"fuzz", &mut rand_core::OsRng);
            stable
        }
        Err(_) => true,
    }
}

/// Signal `Content` decoding, padded and unpadded; what decodes re-encodes to bytes that decode
/// to the same value (unknown fields included).
pub fn content(data: &[u8]) -> bool {
    let mut ok = true;
    if let Ok(inner) = unpad(data) {
        ok &= inner.len() < data.len();
    }
    if let Ok(c) = Content::decode_padded(data) {
        let again = c.encode_padded();
        ok &= again.len() % super::content::PAD_BLOCK == super::content::PAD_BLOCK - 1;
        ok &= Content::decode_padded(&again).as_ref() == Ok(&c);
    }
    if let Ok(c) = Content::decode(data) {
        ok &= Content::decode(&c.encode()).as_ref() == Ok(&c);
    }
    ok
}

/// Retry requests: `PlaintextContent` and `DecryptionErrorMessage` decoding (what decodes
/// re-encodes to a value that decodes equal), and `for_original` on the input as every type.
pub fn retry_request(data: &[u8]) -> bool {
    let mut ok = true;
    if let Ok(pc) = PlaintextContent::decode(data) {
        ok &= PlaintextContent::decode(&pc.encode()).as_ref() == Ok(&pc);
        ok &= pc.decryption_error().is_ok();
    }
    if let Ok(d) = DecryptionErrorMessage::decode(data) {
        ok &= DecryptionErrorMessage::decode(&d.encode()).as_ref() == Ok(&d);
    }
    for t in [ContentType::PreKey, ContentType::Ciphertext, ContentType::Unknown, ContentType::SenderKey] {
        let d = DecryptionErrorMessage::for_original(data, t, 1, 1);
        ok &= DecryptionErrorMessage::decode(&d.encode()).as_ref() == Ok(&d);
    }
    ok
}

/// The PQXDH decoders: Kyber-1024 secret keys and ciphertexts (what parses re-serializes to
/// itself), and decapsulation of a parsed ciphertext under a fixed key pair.
pub fn kem_encodings(data: &[u8]) -> bool {
    let mut ok = true;
    if let Ok(sk) = KyberSecretKey::deserialize(data) {
        ok &= sk.serialize() == data;
        let _ = sk.public_key();
    }
    if let Ok(ct) = KyberCiphertext::deserialize(data) {
        ok &= ct.serialize() == data;
        if let Ok(pair) = KyberKeyPair::from_seed(&[7; 64]) {
            ok &= decapsulate(pair.secret_key(), &ct).is_ok();
        }
    }
    ok
}
