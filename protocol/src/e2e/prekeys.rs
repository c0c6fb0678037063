//! Pre-keys: what the node checks at upload and what a client fetches to start a session.
//!
//! Every signed key (signed EC pre-key, Kyber one-time pre-key, Kyber last-resort key) carries
//! the identity key's XEdDSA signature over its full serialized form, type byte included, as
//! libsignal signs. EC one-time pre-keys are unsigned. The checks run in the order key id, key,
//! identity key, signature; each failure maps to one [`KeyError`] kind (the node answers 422).

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::error::{E2eError, KeyError};
use super::kem::KyberKeyPair;
use super::keys::{KeyId, KeyPair, KyberPublicKey, PublicKey};
use super::xeddsa::SIGNATURE_LEN;

/// A verified signed EC pre-key, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEcPreKey {
    /// Its id.
    pub key_id: KeyId,
    /// The public key.
    pub public_key: PublicKey,
    /// The identity key's signature over `public_key.serialize()`.
    pub signature: Vec<u8>,
}

/// A verified signed Kyber-1024 pre-key (one-time or last-resort).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedKyberPreKey {
    /// Its id.
    pub key_id: KeyId,
    /// The public key (1569 bytes).
    pub public_key: KyberPublicKey,
    /// The identity key's signature over the serialized key.
    pub signature: Vec<u8>,
}

/// A parsed EC one-time pre-key (unsigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePreKey {
    /// Its id.
    pub key_id: KeyId,
    /// The public key.
    pub public_key: PublicKey,
}

fn check_signature(identity_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
    let identity = PublicKey::deserialize(identity_key)?;
    if signature.len() != SIGNATURE_LEN || !identity.verify_signature(message, signature) {
        return Err(KeyError::InvalidSignature);
    }
    Ok(())
}

/// Checks an uploaded signed EC pre-key: `identity_key` and `public_key` are serialized EC keys
/// (33 bytes, `0x05`; trailing bytes ignored as libsignal does), `signature` is 64 bytes over
/// the canonical 33-byte key.
pub fn verify_signed_ec_prekey(
    identity_key: &[u8],
    key_id: i64,
    public_key: &[u8],
    signature: &[u8],
) -> Result<SignedEcPreKey, KeyError> {
    let key_id = KeyId::new(key_id)?;
    let public_key = PublicKey::deserialize(public_key)?;
    check_signature(identity_key, &public_key.serialize(), signature)?;
    Ok(SignedEcPreKey { key_id, public_key, signature: signature.to_vec() })
}

/// Checks an uploaded Kyber-1024 pre-key (one-time or last-resort): exactly 1569 bytes with
/// type `0x08`, signed by the identity key.
pub fn verify_kyber_prekey(
    identity_key: &[u8],
    key_id: i64,
    public_key: &[u8],
    signature: &[u8],
) -> Result<SignedKyberPreKey, KeyError> {
    let key_id = KeyId::new(key_id)?;
    let public_key = KyberPublicKey::deserialize(public_key)?;
    check_signature(identity_key, public_key.serialize(), signature)?;
    Ok(SignedKyberPreKey { key_id, public_key, signature: signature.to_vec() })
}

/// Parses an uploaded EC one-time pre-key.
pub fn parse_one_time_prekey(key_id: i64, public_key: &[u8]) -> Result<OneTimePreKey, KeyError> {
    Ok(OneTimePreKey { key_id: KeyId::new(key_id)?, public_key: PublicKey::deserialize(public_key)? })
}

/// What a client fetches for one device of a peer to start a session with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreKeyBundle {
    /// The device's registration id.
    pub registration_id: u32,
    /// The device's id.
    pub device_id: u32,
    /// The device's identity key.
    pub identity_key: PublicKey,
    /// Its signed EC pre-key (signature checked again by the client before use).
    pub signed_pre_key: SignedEcPreKey,
    /// An EC one-time pre-key, when the server had one left.
    pub one_time_pre_key: Option<OneTimePreKey>,
    /// A Kyber pre-key (one-time or last-resort; PQXDH requires one).
    pub kyber_pre_key: Option<SignedKyberPreKey>,
}

/// A local signed pre-key with its private half.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedPreKeyRecord {
    /// Its id.
    pub key_id: KeyId,
    /// The key pair.
    pub key_pair: KeyPair,
    /// The identity key's signature over the serialized public key.
    pub signature: Vec<u8>,
}

impl SignedPreKeyRecord {
    /// Generates a signed pre-key signed by `identity`.
    pub fn generate<R: RngCore + CryptoRng>(key_id: KeyId, identity: &KeyPair, rng: &mut R) -> Self {
        let key_pair = KeyPair::generate(rng);
        let signature = identity.sign(&key_pair.public_key().serialize(), rng).to_vec();
        Self { key_id, key_pair, signature }
    }

    /// The public part, as uploaded.
    pub fn public(&self) -> SignedEcPreKey {
        SignedEcPreKey {
            key_id: self.key_id,
            public_key: *self.key_pair.public_key(),
            signature: self.signature.clone(),
        }
    }
}

/// A local EC one-time pre-key with its private half.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreKeyRecord {
    /// Its id.
    pub key_id: KeyId,
    /// The key pair.
    pub key_pair: KeyPair,
}

impl PreKeyRecord {
    /// Generates a one-time pre-key.
    pub fn generate<R: RngCore + CryptoRng>(key_id: KeyId, rng: &mut R) -> Self {
        Self { key_id, key_pair: KeyPair::generate(rng) }
    }

    /// The public part, as uploaded.
    pub fn public(&self) -> OneTimePreKey {
        OneTimePreKey { key_id: self.key_id, public_key: *self.key_pair.public_key() }
    }
}

/// A local Kyber-1024 pre-key (one-time or last-resort) with its secret half and the identity
/// key's signature over the serialized public key.
#[derive(Debug, Clone)]
pub struct KyberPreKeyRecord {
    /// Its id.
    pub key_id: KeyId,
    /// The key pair.
    pub key_pair: KyberKeyPair,
    /// The identity key's signature over the serialized public key.
    pub signature: Vec<u8>,
    /// A last-resort key is kept after use; a one-time key is removed.
    pub last_resort: bool,
}

impl KyberPreKeyRecord {
    /// Generates a Kyber pre-key signed by `identity`.
    pub fn generate<R: RngCore + CryptoRng>(
        key_id: KeyId,
        identity: &KeyPair,
        last_resort: bool,
        rng: &mut R,
    ) -> Result<Self, E2eError> {
        let key_pair = KyberKeyPair::generate(rng)?;
        let signature = identity.sign(key_pair.public_key().serialize(), rng).to_vec();
        Ok(Self { key_id, key_pair, signature, last_resort })
    }

    /// The public part, as uploaded.
    pub fn public(&self) -> SignedKyberPreKey {
        SignedKyberPreKey {
            key_id: self.key_id,
            public_key: self.key_pair.public_key().clone(),
            signature: self.signature.clone(),
        }
    }
}
