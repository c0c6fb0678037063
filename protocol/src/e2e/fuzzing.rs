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
use super::spqr::encoding::{Chunk, PolyDecoder, PolyEncoder, CHUNK_SIZE};
use super::spqr::wire::WireMessage;
use super::spqr::SpqrState;
use crate::content_type::ContentType;
use rand_core::{CryptoRng, RngCore};
use std::sync::OnceLock;

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

/// SplitMix64 with a fixed seed, so the prepared SPQR states (and their ML-KEM keys) are the same
/// on every run and in every fuzz process. Only for these fuzzing fixtures: not a secure source.
struct FixedRng(u64);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

/// A deterministic SPQR exchange between alice and bob (fixed auth key, fixed randomness),
/// alternating one message each way until both have completed the first KEM exchange: the two
/// initial states, the receiver's state at every third point where the sender's message type
/// changes (phases of the state machine, both roles), the two final states (epoch 2, roles
/// swapped), every message sent, in order, and the first message of each phase.
struct SpqrFixture {
    states: Vec<SpqrState>,
    messages: Vec<Vec<u8>>,
    phase_messages: Vec<Vec<u8>>,
}

fn spqr_fixture() -> &'static SpqrFixture {
    static FIXTURE: OnceLock<SpqrFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let auth = [0x5a_u8; 32];
        let mut rng = FixedRng(0x4875_7368);
        let mut sides = [SpqrState::initial_alice(&auth), SpqrState::initial_bob(&auth)];
        let mut states = sides.to_vec();
        let mut messages = Vec::new();
        let mut phase_messages = Vec::new();
        let mut last_type = [None, None];
        for step in 0..400 {
            if sides.iter().all(|s| s.current_epoch() >= 2) {
                break;
            }
            let (from, to) = (step % 2, 1 - step % 2);
            let Some(sender) = sides.get(from) else { break };
            let Ok((sent, msg, _)) = sender.send(&mut rng) else { break };
            let Some(receiver) = sides.get(to) else { break };
            let Ok((received, _)) = receiver.recv(&msg) else { break };
            let ty = WireMessage::decode(&msg).ok().map(|(m, _)| std::mem::discriminant(&m.payload));
            if last_type.get(from) != Some(&ty) {
                // The receiver as it was just before this phase's first message (every third
                // phase, to keep the per-input cost down; seeds cover all of them).
                if phase_messages.len() % 3 == 0 {
                    states.push(receiver.clone());
                }
                phase_messages.push(msg.clone());
                if let Some(t) = last_type.get_mut(from) {
                    *t = ty;
                }
            }
            messages.push(msg);
            sides = if from == 0 { [sent, received] } else { [received, sent] };
        }
        states.extend(sides);
        SpqrFixture { states, messages, phase_messages }
    })
}

/// The first SPQR message of each phase of the fixed exchange whose states [`spqr_message`]
/// feeds (seeds).
pub fn spqr_phase_messages() -> Vec<Vec<u8>> {
    spqr_fixture().phase_messages.clone()
}

/// Inputs for [`spqr_chunks`] from the fixed exchange: per SPQR length, the chunks the exchange
/// actually sent for it (epoch 1; in order, as records), then the same in genuine mode with
/// indexes past the systematic ones (parity chunks only).
pub fn spqr_chunk_seeds() -> Vec<Vec<u8>> {
    let mut by_length: [Vec<u8>; 4] = Default::default();
    for (mode, seed) in by_length.iter_mut().enumerate() {
        seed.push(mode as u8);
    }
    for msg in &spqr_fixture().messages {
        let Ok((m, _)) = WireMessage::decode(msg) else { continue };
        use super::spqr::wire::Payload;
        let (slot, chunk) = match m.payload {
            Payload::Header(c) => (0, c),
            Payload::Ek(c) | Payload::EkCt1Ack(c) => (1, c),
            Payload::Ct1(c) => (2, c),
            Payload::Ct2(c) => (3, c),
            Payload::None | Payload::Ct1Ack => continue,
        };
        if m.epoch == 1 {
            if let Some(seed) = by_length.get_mut(slot) {
                seed.extend_from_slice(&chunk.index.to_be_bytes());
                seed.extend_from_slice(&chunk.data);
            }
        }
    }
    let mut out = by_length.to_vec();
    for (mode, len) in SPQR_LENGTHS.iter().enumerate() {
        let mut seed = vec![0x80 | mode as u8];
        let chunks = len.div_ceil(CHUNK_SIZE) as u16;
        for i in 0..chunks {
            seed.extend_from_slice(&(1000 + 7 * i).to_be_bytes());
            seed.extend_from_slice(&[i as u8; CHUNK_SIZE]);
        }
        out.push(seed);
    }
    out
}

/// SPQR V1 message decoding: what decodes re-encodes canonically (to bytes that decode to the
/// same message, no longer than what was read); then the bytes as the next message for every
/// prepared state of a real exchange. A state that accepts them must persist and send. A key
/// index far ahead (up to [`super::spqr::MAX_JUMP`] chain steps per state) goes to the two
/// initial states only, so that such inputs do not dominate the run time.
pub fn spqr_message(data: &[u8]) -> bool {
    let mut ok = true;
    let mut states = spqr_fixture().states.as_slice();
    if let Ok((m, used)) = WireMessage::decode(data) {
        if m.index > 256 {
            states = states.get(..2).unwrap_or_default();
        }
        let again = m.encode();
        ok &= used <= data.len() && again.len() <= used;
        ok &= WireMessage::decode(&again) == Ok((m, again.len()));
        ok &= data.get(..used).is_some_and(|d| WireMessage::decode(d) == Ok((m, used)));
    }
    for state in states {
        if let Ok((next, _key)) = state.recv(data) {
            ok &= postcard::to_allocvec(&next).is_ok_and(|b| {
                postcard::from_bytes::<SpqrState>(&b)
                    .ok()
                    .and_then(|n| postcard::to_allocvec(&n).ok())
                    .is_some_and(|b2| b2 == b)
            });
            ok &= next.send(&mut FixedRng(1)).is_ok();
        }
    }
    ok
}

/// The message lengths SPQR V1 erasure-codes: header + MAC, encapsulation key, ciphertext 1,
/// ciphertext 2 + MAC.
const SPQR_LENGTHS: [usize; 4] = [64 + 32, 1152, 960, 128 + 32];

/// The erasure decoder. Byte 0 picks one of the four SPQR lengths (low two bits) and the mode
/// (high bit); the rest is read as 34-byte records (chunk index, big-endian, then the data;
/// short last record zero-padded). Arbitrary chunks (high bit clear): the decoder never panics,
/// its state stays bounded by the length whatever arrives (checked on its postcard encoding,
/// which must restore), and a completed decode (tried after the last chunk) has the right
/// length. Genuine chunks (high bit
/// set): the message is the rest repeated to the length, each record's index picks a chunk of
/// its encoding, and a completed decode must be exactly that message.
pub fn spqr_chunks(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else { return true };
    let len = SPQR_LENGTHS[usize::from(mode & 3)];
    let Ok(mut decoder) = PolyDecoder::new(len) else { return false };
    let genuine = mode & 0x80 != 0;
    let message: Vec<u8> =
        if rest.is_empty() { vec![0; len] } else { rest.iter().copied().cycle().take(len).collect() };
    let Ok(encoder) = PolyEncoder::encode_bytes(&message) else { return false };
    let mut ok = true;
    for record in rest.chunks(2 + CHUNK_SIZE) {
        let index =
            u16::from_be_bytes([record.first().copied().unwrap_or(0), record.get(1).copied().unwrap_or(0)]);
        let chunk = if genuine {
            encoder.chunk_at(index)
        } else {
            let mut bytes = [0u8; CHUNK_SIZE];
            let body = record.get(2..).unwrap_or_default();
            bytes.iter_mut().zip(body).for_each(|(b, v)| *b = *v);
            Chunk { index, data: bytes }
        };
        decoder.add_chunk(&chunk);
    }
    // Decoding is quadratic in the lane size, so only once, after the last chunk.
    if let Some(decoded) = decoder.decoded_message() {
        ok &= decoded.len() == len;
        ok &= !genuine || decoded == message;
    }
    ok &= !decoder.is_complete();
    // At most 2k points of at most 6 bytes for a lane of k symbols, plus small headers.
    ok &= postcard::to_allocvec(&decoder).is_ok_and(|b| {
        b.len() <= 8 + 2 * 16 + 6 * 2 * (len / 2 + 16)
            && postcard::from_bytes::<PolyDecoder>(&b)
                .is_ok_and(|d| d.len_bytes() == len && postcard::to_allocvec(&d).is_ok_and(|b2| b2 == b))
    });
    ok
}
