//! Sender Keys (libsignal's group messages) per (sender device, distribution id).
//!
//! A sender makes a chain (random chain id, chain key and Curve25519 signing key) and hands the
//! chain key and public signing key to each member in a [`SenderKeyDistributionMessage`] over
//! their pairwise sessions. Each message uses the next chain key (HMAC `0x01`/`0x02`, message
//! keys HKDF `WhisperGroup` -> IV (16) || key (32), as libsignal derives them), is encrypted with
//! AES-256-GCM and carries an XEdDSA signature by the chain's signing key over the SHA-256 of all
//! its other bytes (hash-then-sign: the message is hashed once with SHA-256, which has hardware
//! support here, instead of twice with SHA-512 inside XEdDSA).
//!
//! Removing a member: the sender calls [`SenderKeyRecord::rotate`], which starts an unrelated
//! chain, and distributes it to the remaining members only. A removed member holds only the old
//! chain and cannot derive the new one.
//!
//! Sender-key message: `b0 | distribution id (16) | chain id u32 | iteration u32 |
//! ciphertext || tag (16) | signature (64)`. Distribution message (exactly 90 bytes):
//! `b0 | distribution id (16) | chain id u32 | iteration u32 | chain key (32) | signing key (33)`.

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::aead;
use super::consts::{
    LABEL_SENDER_KEY, MAX_FORWARD_JUMPS, MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN, MAX_RECORD_LEN,
    MAX_SENDER_KEY_STATES, MAX_SKIPPED_KEYS_PER_CHAIN, RECORD_VERSION, TAG_LEN, WIRE_VERSION,
};
use super::error::{DecodeError, E2eError};
use super::kdf::{hkdf, ChainKey, MessageSeed};
use super::keys::{PrivateKey, PublicKey, EC_PUBLIC_KEY_LEN};
use super::secret::Secret32;
use super::xeddsa::{self, VerifyingPoint, SIGNATURE_LEN};

/// Length of a sender-key message header.
const HEADER_LEN: usize = 1 + 16 + 4 + 4;
/// Length of a distribution message.
pub const DISTRIBUTION_LEN: usize = HEADER_LEN + 32 + EC_PUBLIC_KEY_LEN;

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
    /// Encodes the message (exactly [`DISTRIBUTION_LEN`] bytes).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(DISTRIBUTION_LEN));
        out.push(MessageKind::SenderKeyDistribution.first_byte());
        out.extend_from_slice(self.distribution_id.as_bytes());
        out.extend_from_slice(&self.chain_id.to_le_bytes());
        out.extend_from_slice(&self.iteration.to_le_bytes());
        out.extend_from_slice(self.chain_key.as_bytes());
        out.extend_from_slice(&self.signing_key.serialize());
        out
    }

    /// Decodes a distribution message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > DISTRIBUTION_LEN {
            return Err(DecodeError::TooLong);
        }
        if message_kind(bytes)? != MessageKind::SenderKeyDistribution {
            return Err(DecodeError::BadKind);
        }
        let mut r = Reader::new(bytes);
        r.u8()?;
        let distribution_id = read_uuid(&mut r)?;
        let chain_id = r.u32()?;
        let iteration = r.u32()?;
        let mut chain_key = Secret32([0; 32]);
        chain_key.0.copy_from_slice(r.take(32)?);
        let signing_key = r.key()?;
        Ok(Self { distribution_id, chain_id, iteration, chain_key, signing_key })
    }
}

fn read_uuid(r: &mut Reader<'_>) -> Result<Uuid, DecodeError> {
    let b = r.take(16)?;
    Uuid::from_slice(b).map_err(|_| DecodeError::Truncated)
}

/// A decoded sender-key message.
#[derive(Debug, Clone, Copy)]
pub struct SenderKeyMessage<'a> {
    /// The distribution id.
    pub distribution_id: Uuid,
    /// The chain id.
    pub chain_id: u32,
    /// Position in the chain.
    pub iteration: u32,
    header: &'a [u8],
    ciphertext: &'a [u8],
    signed: &'a [u8],
    signature: &'a [u8; SIGNATURE_LEN],
}

impl<'a> SenderKeyMessage<'a> {
    /// Decodes a sender-key message (the signature is checked by [`SenderKeyRecord::decrypt`]).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong);
        }
        if message_kind(bytes)? != MessageKind::SenderKey {
            return Err(DecodeError::BadKind);
        }
        let split = bytes.len().checked_sub(SIGNATURE_LEN).ok_or(DecodeError::Truncated)?;
        let (signed, sig) = bytes.split_at(split);
        let signature: &[u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| DecodeError::Truncated)?;
        let mut r = Reader::new(signed);
        r.u8()?;
        let distribution_id = read_uuid(&mut r)?;
        let chain_id = r.u32()?;
        let iteration = r.u32()?;
        let header = signed.get(..HEADER_LEN).ok_or(DecodeError::Truncated)?;
        let ciphertext = r.rest();
        if ciphertext.len() < TAG_LEN {
            return Err(DecodeError::Truncated);
        }
        Ok(Self { distribution_id, chain_id, iteration, header, ciphertext, signed, signature })
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

fn group_keys(seed: &MessageSeed) -> Result<GroupKeys, E2eError> {
    let mut okm = Zeroizing::new([0u8; 48]);
    hkdf(None, &seed.0, LABEL_SENDER_KEY, okm.as_mut())?;
    let mut keys = GroupKeys { iv: Zeroizing::new([0; 16]), key: Zeroizing::new([0; 32]) };
    keys.iv.copy_from_slice(&okm[..16]);
    keys.key.copy_from_slice(&okm[16..]);
    Ok(keys)
}

impl GroupKeys {
    fn nonce(&self) -> [u8; 12] {
        let mut n = [0u8; 12];
        n.copy_from_slice(&self.iv[..12]);
        n
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

    /// Adds a member's chain from its distribution message. A chain id we already hold is left
    /// as it is (re-delivery must not rewind it); at most [`MAX_SENDER_KEY_STATES`] are kept.
    pub fn process_distribution(&mut self, skdm: &SenderKeyDistributionMessage) -> Result<(), E2eError> {
        if skdm.distribution_id != self.distribution_id {
            return Err(E2eError::NoSenderKeyState);
        }
        if self.states.iter().any(|s| s.chain_id == skdm.chain_id) {
            return Ok(());
        }
        self.states.insert(
            0,
            SenderKeyState {
                chain_id: skdm.chain_id,
                chain: ChainKey::new(*skdm.chain_key.as_bytes(), skdm.iteration),
                signing_public: skdm.signing_key,
                signing_private: None,
                skipped: Vec::new(),
                verifier: None,
            },
        );
        self.states.truncate(MAX_SENDER_KEY_STATES);
        Ok(())
    }

    /// Encrypts and signs a group message with our current chain.
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
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN + SIGNATURE_LEN);
        out.push(MessageKind::SenderKey.first_byte());
        out.extend_from_slice(distribution_id.as_bytes());
        out.extend_from_slice(&state.chain_id.to_le_bytes());
        out.extend_from_slice(&state.chain.index().to_le_bytes());
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&out);
        out.extend_from_slice(plaintext);
        aead::seal_in_place(&keys.key, keys.nonce(), &header, &mut out, HEADER_LEN)?;
        let mut random = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(random.as_mut());
        let digest: [u8; 32] = Sha256::digest(&out).into();
        let sig = xeddsa::sign(signing.private.bytes(), &signing.ed_public, &[&digest], &random);
        out.extend_from_slice(&sig);
        state.chain = next;
        Ok(out)
    }

    /// Verifies and decrypts a group message. On error the record is unchanged.
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
        let digest: [u8; 32] = Sha256::digest(m.signed).into();
        let verified = state.verifier.as_ref().is_some_and(|v| v.verify(&[&digest], m.signature));
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
            let keys = group_keys(&seed)?;
            let plaintext = aead::open(&keys.key, keys.nonce(), m.header, m.ciphertext)?;
            state.skipped.remove(pos);
            return Ok(plaintext);
        }
        let jump = m.iteration - state.chain.index();
        if jump > MAX_FORWARD_JUMPS {
            return Err(E2eError::TooFarInFuture);
        }
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
        let keys = group_keys(&seed)?;
        let plaintext = aead::open(&keys.key, keys.nonce(), m.header, m.ciphertext)?;
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

// Hush's compact encoding helpers (the pairwise formats moved to libsignal's; sender keys follow).
/// Kind of an encoded message (low nibble of its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageKind {
    /// A Sender Key group message.
    SenderKey = 3,
    /// A Sender Key distribution message (sent inside a pairwise session).
    SenderKeyDistribution = 4,
}

impl MessageKind {
    pub(crate) fn first_byte(self) -> u8 {
        (WIRE_VERSION << 4) | self as u8
    }
}

/// Reads the kind of an encoded message.
pub(crate) fn message_kind(bytes: &[u8]) -> Result<MessageKind, DecodeError> {
    let b0 = *bytes.first().ok_or(DecodeError::Truncated)?;
    if b0 >> 4 != WIRE_VERSION {
        return Err(DecodeError::BadVersion);
    }
    match b0 & 0x0f {
        3 => Ok(MessageKind::SenderKey),
        4 => Ok(MessageKind::SenderKeyDistribution),
        _ => Err(DecodeError::BadKind),
    }
}

/// A cursor that refuses to read past the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn key(&mut self) -> Result<PublicKey, DecodeError> {
        PublicKey::from_exact(self.take(EC_PUBLIC_KEY_LEN)?).map_err(|_| DecodeError::BadKey)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }
}
