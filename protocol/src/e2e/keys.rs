//! Keys in libsignal's serialized forms.
//!
//! - EC public key: 33 bytes, `0x05` then the X25519 u-coordinate. Like libsignal,
//!   [`PublicKey::deserialize`] ignores bytes after the 33rd and keeps bit 255 as given.
//! - EC private key: 32 bytes; an unclamped scalar is accepted and clamped (libsignal).
//! - Kyber-1024 public key: exactly 1569 bytes, `0x08` then 1568 bytes. Parsed and signature
//!   checked here; the KEM itself is in [`super::kem`].
//! - Key ids: `0..=2^31-1` (clients allocate 24-bit wrapping ids; Hush refuses the rest).

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::KeyError;
use super::xeddsa::{self, SIGNATURE_LEN};

/// Type byte of a Curve25519 public key (libsignal `DJB_TYPE`).
pub const EC_KEY_TYPE: u8 = 0x05;
/// Serialized length of an EC public key.
pub const EC_PUBLIC_KEY_LEN: usize = 33;
/// Length of an EC private key.
pub const EC_PRIVATE_KEY_LEN: usize = 32;
/// Type byte of a Kyber-1024 public key (libsignal `KeyType::Kyber1024`).
pub const KYBER1024_KEY_TYPE: u8 = 0x08;
/// Serialized length of a Kyber-1024 public key (type byte included).
pub const KYBER1024_PUBLIC_KEY_LEN: usize = 1569;
/// Highest key id Hush accepts (2^31 - 1).
pub const MAX_KEY_ID: u32 = 0x7fff_ffff;

/// A pre-key id in `0..=2^31-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(u32);

impl KeyId {
    /// Validates an id as it arrives in JSON (signed, so that `-1` is refused as an id, not as
    /// a parse error).
    pub fn new(id: i64) -> Result<Self, KeyError> {
        u32::try_from(id).ok().filter(|v| *v <= MAX_KEY_ID).map(Self).ok_or(KeyError::InvalidKeyId)
    }

    /// Validates an unsigned id.
    pub fn from_u32(id: u32) -> Result<Self, KeyError> {
        Self::new(i64::from(id))
    }

    /// The id.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A Curve25519 public key (the u-coordinate, bit 255 kept as given).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey([u8; 32]);

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PublicKey(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

impl PublicKey {
    /// Parses a serialized key as libsignal's `PublicKey::deserialize` does: a `0x05` type byte
    /// and 32 key bytes; trailing bytes are ignored.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, KeyError> {
        match bytes {
            [EC_KEY_TYPE, rest @ ..] if rest.len() >= 32 => {
                let mut u = [0u8; 32];
                u.copy_from_slice(&rest[..32]);
                Ok(Self(u))
            }
            _ => Err(KeyError::InvalidKey),
        }
    }

    /// Parses exactly 33 bytes (used inside Hush's own encodings).
    pub fn from_exact(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != EC_PUBLIC_KEY_LEN {
            return Err(KeyError::InvalidKey);
        }
        Self::deserialize(bytes)
    }

    /// Wraps a raw u-coordinate.
    pub fn from_u_bytes(u: [u8; 32]) -> Self {
        Self(u)
    }

    /// The 33-byte serialized form (`0x05` || u).
    pub fn serialize(&self) -> [u8; EC_PUBLIC_KEY_LEN] {
        let mut out = [0u8; EC_PUBLIC_KEY_LEN];
        out[0] = EC_KEY_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// The raw u-coordinate.
    pub fn u_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// This key prepared for one or more X25519 agreements.
    pub(crate) fn prepare(&self) -> DhPoint {
        DhPoint { u: self.0, edwards: MontgomeryPoint(self.0).to_edwards(0) }
    }

    /// Verifies an XEdDSA signature by this key over `message`. The signature must be exactly
    /// 64 bytes (63 or 65 are refused, as libsignal refuses them).
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match <&[u8; SIGNATURE_LEN]>::try_from(signature) {
            Ok(sig) => xeddsa::verify(&self.0, &[message], sig),
            Err(_) => false,
        }
    }
}

/// A peer public key ready for X25519: the Edwards point with the same u-coordinate when there
/// is one (u on the curve rather than its twist).
///
/// X25519 is the u-coordinate of the clamped integer times any point with that u, so it can be
/// computed with curve25519-dalek's (vectorized, constant-time) Edwards multiplication instead
/// of the serial Montgomery ladder; the conversion is paid once per peer key, which several
/// agreements often share (the DH ratchet uses each new ratchet key twice; X3DH uses the base
/// key or the signed pre-key up to three times). Twist points, which have no Edwards
/// counterpart, take the ladder. Equivalence with the ladder is tested on random inputs and the
/// RFC 7748 vectors.
pub(crate) struct DhPoint {
    u: [u8; 32],
    edwards: Option<EdwardsPoint>,
}

/// A clamped Curve25519 private scalar: not `Copy`, zeroized on drop, redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct PrivateKey([u8; 32]);

impl core::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

fn clamp(mut b: [u8; 32]) -> [u8; 32] {
    b[0] &= 248;
    b[31] &= 127;
    b[31] |= 64;
    b
}

impl PrivateKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        let key = Self(clamp(b));
        b.zeroize();
        key
    }

    /// Parses 32 bytes, clamping them as libsignal does.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, KeyError> {
        let mut b: [u8; 32] = bytes.try_into().map_err(|_| KeyError::InvalidKey)?;
        let key = Self(clamp(b));
        b.zeroize();
        Ok(key)
    }

    /// The 32 clamped bytes, for storing the key.
    pub fn serialize(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(MontgomeryPoint::mul_base_clamped(self.0).to_bytes())
    }

    /// X25519 with `their` public key. Refuses an all-zero result (a low-order peer key).
    pub fn agree(&self, their: &PublicKey) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.agree_prepared(&their.prepare())
    }

    /// X25519 with a prepared public key (see [`DhPoint`]).
    pub(crate) fn agree_prepared(&self, their: &DhPoint) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let shared = Zeroizing::new(match &their.edwards {
            Some(point) => point.mul_clamped(self.0).to_montgomery().to_bytes(),
            None => MontgomeryPoint(their.u).mul_clamped(self.0).to_bytes(),
        });
        if bool::from(shared.ct_eq(&[0u8; 32])) {
            return Err(KeyError::InvalidKey);
        }
        Ok(shared)
    }

    /// Signs `message` with XEdDSA (randomized, as libsignal signs).
    pub fn sign<R: RngCore + CryptoRng>(&self, message: &[u8], rng: &mut R) -> [u8; 64] {
        let ed = xeddsa::edwards_public(&self.0);
        let mut random = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(random.as_mut());
        xeddsa::sign(&self.0, &ed, &[message], &random)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A private key with its public key (an identity key, pre-key or ratchet key).
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyPair {
    private: PrivateKey,
    public: PublicKey,
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_private(PrivateKey::generate(rng))
    }

    /// The pair of a private key.
    pub fn from_private(private: PrivateKey) -> Self {
        let public = private.public_key();
        Self { private, public }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The private half.
    pub fn private_key(&self) -> &PrivateKey {
        &self.private
    }

    /// XEdDSA signature over `message`.
    pub fn sign<R: RngCore + CryptoRng>(&self, message: &[u8], rng: &mut R) -> [u8; 64] {
        self.private.sign(message, rng)
    }
}

/// A Kyber-1024 public key in libsignal's serialized form (1569 bytes, type byte `0x08`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KyberPublicKey(Vec<u8>);

impl core::fmt::Debug for KyberPublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KyberPublicKey({} bytes)", self.0.len())
    }
}

impl KyberPublicKey {
    /// Parses exactly 1569 bytes starting with `0x08` (libsignal refuses trailing bytes here,
    /// unlike for EC keys, and `0x0A` ML-KEM keys are behind a flag it does not enable).
    pub fn deserialize(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != KYBER1024_PUBLIC_KEY_LEN || bytes[0] != KYBER1024_KEY_TYPE {
            return Err(KeyError::InvalidKey);
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The serialized form, type byte included.
    pub fn serialize(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand_core::{OsRng, RngCore};

    #[test]
    fn edwards_agreement_equals_the_montgomery_ladder() {
        let mut rng = OsRng;
        let mut twist = 0;
        for i in 0..400 {
            let mut u = [0u8; 32];
            rng.fill_bytes(&mut u);
            if i % 4 == 0 {
                // Keys made as libsignal makes them (prime-order subgroup).
                u = PrivateKey::generate(&mut rng).public_key().0;
            }
            let k = PrivateKey::generate(&mut rng);
            let their = PublicKey(u);
            let ladder = MontgomeryPoint(u).mul_clamped(k.0).to_bytes();
            if their.prepare().edwards.is_none() {
                twist += 1;
            }
            match k.agree(&their) {
                Ok(shared) => assert_eq!(*shared, ladder),
                Err(_) => assert_eq!(ladder, [0u8; 32]),
            }
        }
        assert!(twist > 50, "random u should often be on the twist ({twist})");
    }
}
