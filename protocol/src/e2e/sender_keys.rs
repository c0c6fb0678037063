//! Sender Keys (libsignal's group messages) per (sender device, distribution id), in libsignal's
//! own wire formats (libsignal 0.103, `rust/protocol/src/proto/wire.proto`), so that Hush and
//! libsignal clients read each other's group messages.
//!
//! A sender makes a chain (random 31-bit chain id, random 32-byte chain key and a Curve25519
//! signing key) and hands the chain key and public signing key to each member in a
//! [`SenderKeyDistributionMessage`] over their pairwise sessions. Each message uses the next
//! chain key: message seed = HMAC-SHA256(chain key, `0x01`), next chain key =
//! HMAC-SHA256(chain key, `0x02`); HKDF-SHA256(no salt, seed, info `WhisperGroup`, 48 bytes) =
//! IV (16) || cipher key (32). The plaintext is encrypted with AES-256-CBC and PKCS#7 padding,
//! and the message carries an XEdDSA signature by the chain's signing key over all its other
//! bytes (the version byte and the protobuf).
//!
//! Removing a member: the sender calls [`SenderKeyRecord::rotate`], which starts an unrelated
//! chain, and distributes it to the remaining members only. A removed member holds only the old
//! chain and cannot derive the new one.
//!
//! # Wire formats
//!
//! Both messages start with one version byte, `(3 << 4) | 3` = `0x33` (message version 3, the
//! Sender Keys version; libsignal writes `(version << 4) | 3` and, on reading, refuses a high
//! nibble other than 3 and ignores the low nibble), followed by a protobuf:
//!
//! - distribution message: `distribution_uuid` = 1 (16 bytes), `chain_id` = 2 (uint32),
//!   `iteration` = 3 (uint32), `chain_key` = 4 (32 bytes), `signing_key` = 5 (33 bytes, `0x05`
//!   || u). At least 65 bytes in all.
//! - group message: `distribution_uuid` = 1, `chain_id` = 2, `iteration` = 3, `ciphertext` = 4
//!   (AES-256-CBC), then a 64-byte XEdDSA signature over everything before it. At least 65 bytes.
//!
//! Every field is required (proto2 `optional`, but libsignal refuses a message without it);
//! unknown fields are skipped and fields may come in any order, as libsignal's prost decoder
//! allows. Hush encodes as libsignal does: fields in number order, each present (zeros
//! included), so re-encoding a decoded libsignal message gives libsignal's bytes
//! (`tests/e2e_sender_keys_kat.rs`).
//!
//! # Receiving
//!
//! As libsignal's `group_decrypt`: the state is found by chain id, the signature is checked
//! first, then the message key is taken from the skipped keys (an earlier iteration; absent means
//! duplicate or evicted) or by advancing the chain at most [`MAX_FORWARD_JUMPS`] steps, keeping
//! the skipped keys (at most [`MAX_SKIPPED_KEYS_PER_CHAIN`] per state, oldest dropped first).
//! Nothing changes unless the message decrypts. A record holds at most
//! [`MAX_SENDER_KEY_STATES`] states, newest first; a distribution message whose chain id and
//! signing key are already held moves that state to the front unchanged (a re-delivery cannot
//! rewind it), one with a known chain id but another signing key replaces it.
//!
//! # Stored records
//!
//! [`SenderKeyRecord::serialize`] is Hush's own (a version byte, then postcard); its layout is
//! the one Hush used before these wire formats (the chain, keys and skipped seeds are the same
//! values), so stored records keep working. Group messages still in flight in Hush's former
//! encoding (first byte `0x13`, AES-GCM; distribution messages `0x14`) no longer decode: they are refused
//! as a bad version.

use prost::Message as _;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use super::cbc;
use super::consts::{
    LABEL_SENDER_KEY, MAX_FORWARD_JUMPS, MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN, MAX_RECORD_LEN,
    MAX_SENDER_KEY_STATES, MAX_SKIPPED_KEYS_PER_CHAIN, RECORD_VERSION,
};
use super::error::{DecodeError, E2eError};
use super::kdf::{hkdf, ChainKey, MessageSeed};
use super::keys::{PrivateKey, PublicKey, EC_PUBLIC_KEY_LEN};
use super::secret::{Secret32, Wiped};
use super::xeddsa::{self, VerifyingPoint, SIGNATURE_LEN};

/// The Sender Keys message version (libsignal `SENDERKEY_MESSAGE_CURRENT_VERSION`).
pub const SENDER_KEY_VERSION: u8 = 3;
/// The first byte of both Sender Keys messages as written: `(3 << 4) | 3`.
pub const SENDER_KEY_VERSION_BYTE: u8 = (SENDER_KEY_VERSION << 4) | SENDER_KEY_VERSION;
/// Shortest distribution message libsignal reads (its check: a version byte, a chain key and a
/// key's worth of bytes).
pub const MIN_DISTRIBUTION_LEN: usize = 1 + 32 + 32;
/// Longest distribution message Hush reads. libsignal's are 92 to 100 bytes; the rest leaves
/// room for unknown fields, which libsignal also accepts.
pub const MAX_DISTRIBUTION_LEN: usize = 1024;
/// Shortest group message libsignal reads: a version byte and a signature.
pub const MIN_MESSAGE_LEN: usize = 1 + SIGNATURE_LEN;
/// Length of a chain key.
const CHAIN_KEY_LEN: usize = 32;

/// `SenderKeyDistributionMessage` of libsignal's `wire.proto`.
#[derive(Clone, PartialEq, prost::Message)]
struct DistributionProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    distribution_uuid: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "2")]
    chain_id: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    iteration: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    chain_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    signing_key: Option<Vec<u8>>,
}

impl Drop for DistributionProto {
    fn drop(&mut self) {
        if let Some(k) = self.chain_key.as_mut() {
            k.zeroize();
        }
    }
}

/// `SenderKeyMessage` of libsignal's `wire.proto`.
#[derive(Clone, PartialEq, prost::Message)]
struct MessageProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    distribution_uuid: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "2")]
    chain_id: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    iteration: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    ciphertext: Option<Vec<u8>>,
}

/// Checks the version byte as libsignal does: high nibble 3, low nibble ignored.
fn check_version(first: u8) -> Result<(), DecodeError> {
    if first >> 4 != SENDER_KEY_VERSION {
        return Err(DecodeError::BadVersion);
    }
    Ok(())
}

fn uuid_field(field: Option<&Vec<u8>>) -> Result<Uuid, DecodeError> {
    field.and_then(|b| Uuid::from_slice(b).ok()).ok_or(DecodeError::Protobuf)
}

/// A sender's chain handed to a group member (contains the secret chain key).
#[derive(Clone)]
pub struct SenderKeyDistributionMessage {
    /// The distribution (group) id.
    pub distribution_id: Uuid,
    /// The chain id.
    pub chain_id: u32,
    /// Iteration of `chain_key`.
    pub iteration: u32,
    chain_key: Secret32,
    /// The chain's public signing key.
    pub signing_key: PublicKey,
}

impl core::fmt::Debug for SenderKeyDistributionMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderKeyDistributionMessage")
            .field("distribution_id", &self.distribution_id)
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}

impl SenderKeyDistributionMessage {
    /// Encodes the message as libsignal does: `0x33`, then the protobuf with every field.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let proto = DistributionProto {
            distribution_uuid: Some(self.distribution_id.as_bytes().to_vec()),
            chain_id: Some(self.chain_id),
            iteration: Some(self.iteration),
            chain_key: Some(self.chain_key.as_bytes().to_vec()),
            signing_key: Some(self.signing_key.serialize().to_vec()),
        };
        // Sized up front, so the buffer holding the chain key is never reallocated.
        let mut out = Zeroizing::new(Vec::with_capacity(1 + proto.encoded_len()));
        out.push(SENDER_KEY_VERSION_BYTE);
        proto.encode_raw(&mut *out);
        out
    }

    /// Decodes a distribution message with libsignal's rules (see the module documentation).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_DISTRIBUTION_LEN {
            return Err(DecodeError::TooLong);
        }
        if bytes.len() < MIN_DISTRIBUTION_LEN {
            return Err(DecodeError::Truncated);
        }
        let (&first, body) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        check_version(first)?;
        let proto = DistributionProto::decode(body).map_err(|_| DecodeError::Protobuf)?;
        let distribution_id = uuid_field(proto.distribution_uuid.as_ref())?;
        let chain_id = proto.chain_id.ok_or(DecodeError::Protobuf)?;
        let iteration = proto.iteration.ok_or(DecodeError::Protobuf)?;
        let chain_key = proto.chain_key.as_deref().ok_or(DecodeError::Protobuf)?;
        let signing_key = proto.signing_key.as_deref().ok_or(DecodeError::Protobuf)?;
        if chain_key.len() != CHAIN_KEY_LEN || signing_key.len() != EC_PUBLIC_KEY_LEN {
            return Err(DecodeError::Protobuf);
        }
        let signing_key = PublicKey::from_exact(signing_key).map_err(|_| DecodeError::BadKey)?;
        let mut key = Secret32([0; 32]);
        key.0.copy_from_slice(chain_key);
        Ok(Self { distribution_id, chain_id, iteration, chain_key: key, signing_key })
    }
}

/// A decoded group message (libsignal's `SenderKeyMessage`).
#[derive(Debug, Clone)]
pub struct SenderKeyMessage<'a> {
    /// The distribution id.
    pub distribution_id: Uuid,
    /// The chain id.
    pub chain_id: u32,
    /// Position in the chain.
    pub iteration: u32,
    ciphertext: Vec<u8>,
    signed: &'a [u8],
    signature: &'a [u8; SIGNATURE_LEN],
}

/// The version byte and protobuf of a group message: what its signature covers.
fn encode_message_body(distribution_id: Uuid, chain_id: u32, iteration: u32, ciphertext: &[u8]) -> Vec<u8> {
    let proto = MessageProto {
        distribution_uuid: Some(distribution_id.as_bytes().to_vec()),
        chain_id: Some(chain_id),
        iteration: Some(iteration),
        ciphertext: Some(ciphertext.to_vec()),
    };
    let mut out = Vec::with_capacity(1 + proto.encoded_len() + SIGNATURE_LEN);
    out.push(SENDER_KEY_VERSION_BYTE);
    proto.encode_raw(&mut out);
    out
}

impl<'a> SenderKeyMessage<'a> {
    /// Decodes a group message with libsignal's rules (the signature is checked by
    /// [`SenderKeyRecord::decrypt`]).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong);
        }
        if bytes.len() < MIN_MESSAGE_LEN {
            return Err(DecodeError::Truncated);
        }
        let split = bytes.len() - SIGNATURE_LEN;
        let (signed, sig) = bytes.split_at(split);
        let signature: &[u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| DecodeError::Truncated)?;
        let (&first, body) = signed.split_first().ok_or(DecodeError::Truncated)?;
        check_version(first)?;
        let proto = MessageProto::decode(body).map_err(|_| DecodeError::Protobuf)?;
        let distribution_id = uuid_field(proto.distribution_uuid.as_ref())?;
        let chain_id = proto.chain_id.ok_or(DecodeError::Protobuf)?;
        let iteration = proto.iteration.ok_or(DecodeError::Protobuf)?;
        let ciphertext = proto.ciphertext.ok_or(DecodeError::Protobuf)?;
        Ok(Self { distribution_id, chain_id, iteration, ciphertext, signed, signature })
    }

    /// The AES-256-CBC ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The bytes the signature covers (the version byte and the protobuf), as received.
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.signed
    }

    /// The 64-byte XEdDSA signature.
    pub fn signature(&self) -> &'a [u8; SIGNATURE_LEN] {
        self.signature
    }

    /// The version byte and protobuf re-encoded from the decoded fields as Hush and libsignal
    /// write them (equal to [`Self::signed_bytes`] for any message either of them made).
    pub fn encode_signed_part(&self) -> Vec<u8> {
        encode_message_body(self.distribution_id, self.chain_id, self.iteration, &self.ciphertext)
    }
}

/// Our own signing key with its cached Edwards public key (so signing costs one base
/// multiplication, like Ed25519).
#[derive(Clone, Serialize, Deserialize)]
struct SigningKey {
    private: PrivateKey,
    ed_public: [u8; 32],
}

#[derive(Clone, Serialize, Deserialize)]
struct SkippedKey {
    iteration: u32,
    seed: Secret32,
}

#[derive(Clone, Serialize, Deserialize)]
struct SenderKeyState {
    chain_id: u32,
    chain: ChainKey,
    signing_public: PublicKey,
    signing_private: Option<SigningKey>,
    skipped: Vec<SkippedKey>,
    /// Decompressed verification key, rebuilt on first use after a restore.
    #[serde(skip)]
    verifier: Option<VerifyingPoint>,
}

/// The sender-key states of one (sender device, distribution id), newest first, at most
/// [`MAX_SENDER_KEY_STATES`].
#[derive(Clone, Serialize, Deserialize)]
pub struct SenderKeyRecord {
    distribution_id: Uuid,
    states: Vec<SenderKeyState>,
}

impl core::fmt::Debug for SenderKeyRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SenderKeyRecord")
            .field("distribution_id", &self.distribution_id)
            .field("chain_ids", &self.states.iter().map(|s| s.chain_id).collect::<Vec<_>>())
            .finish()
    }
}

struct GroupKeys {
    iv: Zeroizing<[u8; 16]>,
    key: Zeroizing<[u8; 32]>,
}

/// libsignal's `SenderMessageKey`: HKDF(`WhisperGroup`) of the seed, IV first, then the key.
fn group_keys(seed: &MessageSeed) -> Result<GroupKeys, E2eError> {
    let mut okm = Wiped::<48>::zeroed();
    hkdf(None, &seed.0, LABEL_SENDER_KEY, okm.as_mut())?;
    let mut keys = GroupKeys { iv: Zeroizing::new([0; 16]), key: Zeroizing::new([0; 32]) };
    keys.iv.copy_from_slice(&okm[..16]);
    keys.key.copy_from_slice(&okm[16..]);
    Ok(keys)
}

impl GroupKeys {
    fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        cbc::encrypt(&self.key, &self.iv, plaintext)
    }

    fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, E2eError> {
        cbc::decrypt(&self.key, &self.iv, ciphertext)
    }
}

impl SenderKeyRecord {
    /// An empty record for `distribution_id`.
    pub fn new(distribution_id: Uuid) -> Self {
        Self { distribution_id, states: Vec::new() }
    }

    /// The distribution id.
    pub fn distribution_id(&self) -> Uuid {
        self.distribution_id
    }

    /// Chain ids held, newest first.
    pub fn chain_ids(&self) -> Vec<u32> {
        self.states.iter().map(|s| s.chain_id).collect()
    }

    /// The distribution message for our current sending chain, creating the chain if there is
    /// none yet.
    pub fn distribution<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
    ) -> Result<SenderKeyDistributionMessage, E2eError> {
        if self.states.first().is_none_or(|s| s.signing_private.is_none()) {
            return Ok(self.rotate(rng));
        }
        self.current_distribution()
    }

    fn current_distribution(&self) -> Result<SenderKeyDistributionMessage, E2eError> {
        let s = self.states.first().ok_or(E2eError::NoSenderKeyState)?;
        Ok(SenderKeyDistributionMessage {
            distribution_id: self.distribution_id,
            chain_id: s.chain_id,
            iteration: s.chain.index(),
            chain_key: Secret32(*s.chain.key_bytes()),
            signing_key: s.signing_public,
        })
    }

    /// Starts a new, unrelated sending chain (after a member was removed, or periodically) and
    /// returns its distribution message, to be sent to the remaining members only. Older chains
    /// are forgotten: a sender never needs them.
    pub fn rotate<R: RngCore + CryptoRng>(&mut self, rng: &mut R) -> SenderKeyDistributionMessage {
        let private = PrivateKey::generate(rng);
        let ed_public = xeddsa::edwards_public(private.bytes());
        let signing_public = private.public_key();
        let mut chain_key = [0u8; 32];
        rng.fill_bytes(&mut chain_key);
        let state = SenderKeyState {
            chain_id: rng.next_u32() & 0x7fff_ffff,
            chain: ChainKey::new(chain_key, 0),
            signing_public,
            signing_private: Some(SigningKey { private, ed_public }),
            skipped: Vec::new(),
            verifier: None,
        };
        chain_key.fill(0);
        let skdm = SenderKeyDistributionMessage {
            distribution_id: self.distribution_id,
            chain_id: state.chain_id,
            iteration: 0,
            chain_key: Secret32(*state.chain.key_bytes()),
            signing_key: signing_public,
        };
        self.states.clear();
        self.states.push(state);
        skdm
    }

    /// Adds a member's chain from its distribution message, as libsignal's
    /// `add_sender_key_state`: a state with the same chain id and signing key is kept as it is
    /// (re-delivery must not rewind it) and moved to the front; states with the same chain id
    /// but another signing key are dropped; at most [`MAX_SENDER_KEY_STATES`] are kept, newest
    /// first.
    pub fn process_distribution(&mut self, skdm: &SenderKeyDistributionMessage) -> Result<(), E2eError> {
        if skdm.distribution_id != self.distribution_id {
            return Err(E2eError::NoSenderKeyState);
        }
        let existing = self
            .states
            .iter()
            .position(|s| s.chain_id == skdm.chain_id && s.signing_public == skdm.signing_key)
            .map(|i| self.states.remove(i));
        self.states.retain(|s| s.chain_id != skdm.chain_id);
        let state = existing.unwrap_or_else(|| SenderKeyState {
            chain_id: skdm.chain_id,
            chain: ChainKey::new(*skdm.chain_key.as_bytes(), skdm.iteration),
            signing_public: skdm.signing_key,
            signing_private: None,
            skipped: Vec::new(),
            verifier: None,
        });
        self.states.truncate(MAX_SENDER_KEY_STATES - 1);
        self.states.insert(0, state);
        Ok(())
    }

    /// Encrypts and signs a group message with our current chain (libsignal's
    /// `group_encrypt`): AES-256-CBC under the chain's next message key, then the XEdDSA
    /// signature over the version byte and protobuf.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &mut self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, E2eError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(E2eError::PlaintextTooLong);
        }
        let distribution_id = self.distribution_id;
        let state = self.states.first_mut().ok_or(E2eError::NoSenderKeyState)?;
        let signing = state.signing_private.as_ref().ok_or(E2eError::NoSenderKeyState)?;
        let (seed, next) = state.chain.step()?;
        let keys = group_keys(&seed)?;
        let ciphertext = keys.encrypt(plaintext)?;
        let mut out = encode_message_body(distribution_id, state.chain_id, state.chain.index(), &ciphertext);
        let mut random = Wiped::<64>::zeroed();
        rng.fill_bytes(random.as_mut());
        let sig = xeddsa::sign(signing.private.bytes(), &signing.ed_public, &[&out], &random);
        out.extend_from_slice(&sig);
        state.chain = next;
        Ok(out)
    }

    /// Verifies and decrypts a group message (libsignal's `group_decrypt`). On error the record
    /// is unchanged.
    pub fn decrypt(&mut self, bytes: &[u8]) -> Result<Vec<u8>, E2eError> {
        let m = SenderKeyMessage::decode(bytes)?;
        if m.distribution_id != self.distribution_id {
            return Err(E2eError::NoSenderKeyState);
        }
        let state =
            self.states.iter_mut().find(|s| s.chain_id == m.chain_id).ok_or(E2eError::NoSenderKeyState)?;
        if state.verifier.is_none() {
            state.verifier = VerifyingPoint::new(state.signing_public.u_bytes());
        }
        let verified = state.verifier.as_ref().is_some_and(|v| v.verify(&[m.signed], m.signature));
        if !verified {
            return Err(E2eError::DecryptionFailed);
        }
        if m.iteration < state.chain.index() {
            let pos = state
                .skipped
                .iter()
                .position(|k| k.iteration == m.iteration)
                .ok_or(E2eError::DuplicateMessage)?;
            let seed = MessageSeed(state.skipped[pos].seed.0);
            let plaintext = group_keys(&seed)?.decrypt(&m.ciphertext)?;
            state.skipped.remove(pos);
            return Ok(plaintext);
        }
        let jump = m.iteration - state.chain.index();
        if jump > MAX_FORWARD_JUMPS {
            return Err(E2eError::TooFarInFuture);
        }
        // The keys of the skipped iterations: only the newest MAX_SKIPPED_KEYS_PER_CHAIN can
        // survive the bound below, so older ones are not kept even briefly.
        let keep_from = m.iteration.saturating_sub(MAX_SKIPPED_KEYS_PER_CHAIN as u32);
        let mut skipped = Vec::new();
        let mut ck = state.chain.step()?;
        while ck.1.index() <= m.iteration {
            let index = ck.1.index() - 1;
            if index >= keep_from {
                skipped.push(SkippedKey { iteration: index, seed: Secret32(ck.0 .0) });
            }
            ck = ck.1.step()?;
        }
        let (seed, next) = ck;
        let plaintext = group_keys(&seed)?.decrypt(&m.ciphertext)?;
        state.chain = next;
        state.skipped.extend(skipped);
        if state.skipped.len() > MAX_SKIPPED_KEYS_PER_CHAIN {
            let excess = state.skipped.len() - MAX_SKIPPED_KEYS_PER_CHAIN;
            state.skipped.drain(..excess);
        }
        Ok(plaintext)
    }

    /// Serializes the record (a version byte, then postcard).
    pub fn serialize(&self) -> Result<Vec<u8>, E2eError> {
        postcard::to_extend(self, vec![RECORD_VERSION]).map_err(|_| E2eError::Crypto)
    }

    /// Restores a record, checking its size and bounds.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(DecodeError::TooLong);
        }
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        if version != RECORD_VERSION {
            return Err(DecodeError::BadVersion);
        }
        let (record, rest): (Self, _) =
            postcard::take_from_bytes(body).map_err(|_| DecodeError::BadRecord)?;
        if !rest.is_empty()
            || record.states.len() > MAX_SENDER_KEY_STATES
            || record.states.iter().any(|s| s.skipped.len() > MAX_SKIPPED_KEYS_PER_CHAIN)
        {
            return Err(DecodeError::BadRecord);
        }
        Ok(record)
    }
}
