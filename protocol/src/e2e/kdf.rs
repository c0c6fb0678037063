//! Key derivation with libsignal's constructions and labels (`rust/protocol/src/ratchet/keys.rs`):
//!
//! - root step: HKDF-SHA256(salt = root key, ikm = DH, info = `WhisperRatchet`) -> root || chain;
//! - chain step: HMAC-SHA256(chain key, `0x01`) = message seed, HMAC-SHA256(chain key, `0x02`)
//!   = next chain key;
//! - message keys: HKDF-SHA256(salt = none, ikm = seed, info = `WhisperMessageKeys`, 80 bytes)
//!   = cipher key (32) || MAC key (32) || IV (16).
//!
//! In version-4 sessions the message keys are salted with the SPQR ratchet's per-message key
//! ([`MessageKeys::derive_salted`]); the body is AES-256-CBC under the cipher key and IV, and the
//! MAC key authenticates the whole message (see [`super::message`]).

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::consts::{CHAIN_MESSAGE_SEED, CHAIN_NEXT_KEY, LABEL_MESSAGE_KEYS, LABEL_RATCHET};
use super::error::E2eError;
use super::hmac256::{self, HmacKey};
use super::keys::{DhPoint, PrivateKey, PublicKey};
use super::secret::{Secret32, Wiped};

/// HKDF-SHA256 into `out` (at most 255 blocks), `info` being the concatenation of its parts;
/// no salt is 32 zero bytes (RFC 5869).
pub(crate) fn hkdf_parts(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), E2eError> {
    if hmac256::hkdf(salt, ikm, info, out) {
        Ok(())
    } else {
        Err(E2eError::Crypto)
    }
}

/// HKDF-SHA256 into `out`.
pub(crate) fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), E2eError> {
    hkdf_parts(salt, ikm, &[info], out)
}

/// A chain key with its index: the position of the next message key it yields.
#[derive(Clone, Serialize, Deserialize)]
pub struct ChainKey {
    key: Secret32,
    index: u32,
}

impl core::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChainKey").field("index", &self.index).finish_non_exhaustive()
    }
}

/// The 32-byte seed of one message key (what skipped-key stores keep).
#[derive(Clone)]
pub struct MessageSeed(pub(crate) [u8; 32]);

impl Drop for MessageSeed {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl ZeroizeOnDrop for MessageSeed {}

impl core::fmt::Debug for MessageSeed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MessageSeed(..)")
    }
}

impl MessageSeed {
    /// The seed bytes (for known-answer tests).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl ChainKey {
    /// [`Self::step`] computed alongside a 64-byte HKDF with no salt (SPQR's chain step of the
    /// same message), their SHA-256 blocks interleaved (`hmac256::chain_step_and_hkdf64`).
    pub(crate) fn step_with_hkdf64(
        &self,
        ikm: &[u8; 32],
        info: &[&[u8]],
        out: &mut [u8; 64],
    ) -> Result<(MessageSeed, ChainKey), E2eError> {
        let index = self.index.checked_add(1).ok_or(E2eError::ChainExhausted)?;
        let (seed, next) = hmac256::chain_step_and_hkdf64(
            self.key.as_bytes(),
            CHAIN_MESSAGE_SEED,
            CHAIN_NEXT_KEY,
            ikm,
            info,
            out,
        );
        Ok((MessageSeed(seed), ChainKey { key: Secret32(next), index }))
    }

    /// A chain key at `index`.
    pub fn new(key: [u8; 32], index: u32) -> Self {
        Self { key: Secret32(key), index }
    }

    /// Index of the next message key.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The chain key bytes (the sender-key distribution message carries them).
    pub fn key_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The message seed at this index and the next chain key, in one keyed HMAC state.
    pub fn step(&self) -> Result<(MessageSeed, ChainKey), E2eError> {
        let index = self.index.checked_add(1).ok_or(E2eError::ChainExhausted)?;
        let mac = HmacKey::new(self.key.as_bytes());
        Ok((
            MessageSeed(mac.mac([&[CHAIN_MESSAGE_SEED][..]])),
            ChainKey { key: Secret32(mac.mac([&[CHAIN_NEXT_KEY][..]])), index },
        ))
    }
}

/// The keys of one Double Ratchet message.
pub struct MessageKeys {
    /// AES-256 key.
    pub(crate) cipher_key: [u8; 32],
    /// The message MAC key.
    pub(crate) mac_key: [u8; 32],
    /// The AES-256-CBC IV.
    pub(crate) iv: [u8; 16],
}

impl Drop for MessageKeys {
    fn drop(&mut self) {
        self.cipher_key.as_mut_slice().zeroize();
        self.mac_key.as_mut_slice().zeroize();
        self.iv.as_mut_slice().zeroize();
    }
}

impl ZeroizeOnDrop for MessageKeys {}

impl core::fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MessageKeys(..)")
    }
}

impl MessageKeys {
    /// HKDF(`WhisperMessageKeys`) of a seed, without salt (sessions without SPQR).
    pub fn derive(seed: &MessageSeed) -> Result<Self, E2eError> {
        Self::derive_salted(seed, None)
    }

    /// HKDF(salt = SPQR message key, ikm = seed, `WhisperMessageKeys`): libsignal's message
    /// keys in version-4 sessions, where the post-quantum ratchet's key salts every message key.
    pub fn derive_salted(seed: &MessageSeed, pq_key: Option<&[u8]>) -> Result<Self, E2eError> {
        let mut okm = Wiped::<80>::zeroed();
        hkdf(pq_key, &seed.0, LABEL_MESSAGE_KEYS, okm.as_mut())?;
        let mut keys = MessageKeys { cipher_key: [0; 32], mac_key: [0; 32], iv: [0; 16] };
        keys.cipher_key.copy_from_slice(&okm[..32]);
        keys.mac_key.copy_from_slice(&okm[32..64]);
        keys.iv.copy_from_slice(&okm[64..]);
        Ok(keys)
    }

    /// Cipher key, MAC key and IV, for the known-answer test.
    pub fn as_parts(&self) -> (&[u8; 32], &[u8; 32], &[u8; 16]) {
        (&self.cipher_key, &self.mac_key, &self.iv)
    }
}

/// A root key.
#[derive(Clone, Serialize, Deserialize)]
pub struct RootKey(Secret32);

impl core::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

impl RootKey {
    /// A root key from bytes.
    pub fn new(key: [u8; 32]) -> Self {
        Self(Secret32(key))
    }

    /// One DH ratchet step: HKDF(salt = root, ikm = DH(ours, theirs), `WhisperRatchet`).
    pub fn step(&self, ours: &PrivateKey, theirs: &PublicKey) -> Result<(RootKey, ChainKey), E2eError> {
        self.step_prepared(ours, &theirs.prepare())
    }

    /// [`RootKey::step`] with a prepared peer key.
    pub(crate) fn step_prepared(
        &self,
        ours: &PrivateKey,
        theirs: &DhPoint,
    ) -> Result<(RootKey, ChainKey), E2eError> {
        let shared = ours.agree_prepared(theirs)?;
        let mut okm = Wiped::<64>::zeroed();
        hkdf(Some(self.0.as_bytes()), shared.as_ref(), LABEL_RATCHET, okm.as_mut())?;
        let mut root = [0u8; 32];
        let mut chain = [0u8; 32];
        root.copy_from_slice(&okm[..32]);
        chain.copy_from_slice(&okm[32..]);
        Ok((RootKey::new(root), ChainKey::new(chain, 0)))
    }
}
