//! Kyber-1024 KEM as libsignal runs it for its pre-keys (`KeyType::Kyber1024`, type byte `0x08`):
//! round-3 Kyber (CRYSTALS-Kyber), not final ML-KEM (FIPS 203), whose key derivation differs.
//! The arithmetic is `libcrux-ml-kem`'s `kyber1024` module (formally verified, pure Rust).
//!
//! Serialized forms, each with libsignal's type byte first (checked against libsignal 0.103 in
//! `tests/vectors/libsignal/pqxdh.json`):
//! - public key: `0x08 || 1568` bytes ([`KyberPublicKey`]);
//! - secret key: `0x08 || 3168` bytes;
//! - ciphertext: `0x08 || 1568` bytes (field 8 of a `PreKeySignalMessage` carries exactly this);
//! - shared secret: 32 bytes.
//!
//! Secrets (secret key, seeds, shared secrets) are zeroized when dropped; copies the KEM makes
//! on its own stack frames are outside this crate's reach.

use libcrux_ml_kem::kyber1024;
use libcrux_ml_kem::mlkem1024::{MlKem1024Ciphertext, MlKem1024PrivateKey, MlKem1024PublicKey};
use libcrux_ml_kem::{ENCAPS_SEED_SIZE, KEY_GENERATION_SEED_SIZE, SHARED_SECRET_SIZE};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use super::error::{E2eError, KeyError};
use super::keys::{KyberPublicKey, KYBER1024_KEY_TYPE, KYBER1024_PUBLIC_KEY_LEN};

/// Serialized length of a Kyber-1024 secret key (type byte included).
pub const KYBER1024_SECRET_KEY_LEN: usize = 3169;
/// Serialized length of a Kyber-1024 ciphertext (type byte included).
pub const KYBER1024_CIPHERTEXT_LEN: usize = 1569;
/// Length of the KEM shared secret.
pub const KEM_SHARED_SECRET_LEN: usize = SHARED_SECRET_SIZE;

const RAW_SECRET_KEY_LEN: usize = KYBER1024_SECRET_KEY_LEN - 1;
const RAW_PUBLIC_KEY_LEN: usize = KYBER1024_PUBLIC_KEY_LEN - 1;
const RAW_CIPHERTEXT_LEN: usize = KYBER1024_CIPHERTEXT_LEN - 1;

/// The 32-byte KEM shared secret, zeroized on drop.
pub type KemSharedSecret = Zeroizing<[u8; KEM_SHARED_SECRET_LEN]>;

/// A Kyber-1024 secret key in libsignal's serialized form: zeroized on drop (clones too),
/// redacted in `Debug`.
#[derive(Clone)]
pub struct KyberSecretKey(Zeroizing<Vec<u8>>);

impl core::fmt::Debug for KyberSecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KyberSecretKey(..)")
    }
}

impl KyberSecretKey {
    /// Parses exactly 3169 bytes starting with `0x08` (libsignal's `KEMSecretKey.serialize()`).
    pub fn deserialize(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != KYBER1024_SECRET_KEY_LEN || bytes.first() != Some(&KYBER1024_KEY_TYPE) {
            return Err(KeyError::InvalidKey);
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// The serialized form, type byte included (for storing the key).
    pub fn serialize(&self) -> &[u8] {
        &self.0
    }

    /// The public key embedded in the secret key (Kyber's `sk = sk_pke || pk || H(pk) || z`).
    pub fn public_key(&self) -> Result<KyberPublicKey, KeyError> {
        let start = 1 + RAW_SECRET_KEY_LEN - 2 * 32 - RAW_PUBLIC_KEY_LEN;
        let raw = self.0.get(start..start + RAW_PUBLIC_KEY_LEN).ok_or(KeyError::InvalidKey)?;
        let mut bytes = Vec::with_capacity(KYBER1024_PUBLIC_KEY_LEN);
        bytes.push(KYBER1024_KEY_TYPE);
        bytes.extend_from_slice(raw);
        KyberPublicKey::deserialize(&bytes)
    }
}

/// A Kyber-1024 ciphertext in libsignal's serialized form (`0x08 || 1568` bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct KyberCiphertext(Vec<u8>);

impl core::fmt::Debug for KyberCiphertext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KyberCiphertext({} bytes)", self.0.len())
    }
}

impl KyberCiphertext {
    /// Parses exactly 1569 bytes starting with `0x08`.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, E2eError> {
        if bytes.len() != KYBER1024_CIPHERTEXT_LEN || bytes.first() != Some(&KYBER1024_KEY_TYPE) {
            return Err(E2eError::InvalidKemCiphertext);
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The serialized form, type byte included.
    pub fn serialize(&self) -> &[u8] {
        &self.0
    }
}

/// A Kyber-1024 key pair.
#[derive(Clone, Debug)]
pub struct KyberKeyPair {
    public: KyberPublicKey,
    secret: KyberSecretKey,
}

impl KyberKeyPair {
    /// A fresh key pair from 64 random bytes.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Result<Self, E2eError> {
        let mut seed = Zeroizing::new([0u8; KEY_GENERATION_SEED_SIZE]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The key pair of a 64-byte seed (deterministic; what a client may store instead of the
    /// 3168-byte secret key).
    pub fn from_seed(seed: &[u8; KEY_GENERATION_SEED_SIZE]) -> Result<Self, E2eError> {
        let (sk, pk) = kyber1024::generate_key_pair(*seed).into_parts();
        let mut raw_sk: [u8; RAW_SECRET_KEY_LEN] = sk.into();
        let mut secret = Zeroizing::new(Vec::with_capacity(KYBER1024_SECRET_KEY_LEN));
        secret.push(KYBER1024_KEY_TYPE);
        secret.extend_from_slice(&raw_sk);
        raw_sk.zeroize();
        let mut public = Vec::with_capacity(KYBER1024_PUBLIC_KEY_LEN);
        public.push(KYBER1024_KEY_TYPE);
        public.extend_from_slice(pk.as_slice());
        Ok(Self { public: KyberPublicKey::deserialize(&public)?, secret: KyberSecretKey(secret) })
    }

    /// A key pair from its halves, refused unless the public key is the one embedded in the
    /// secret key.
    pub fn from_parts(public: KyberPublicKey, secret: KyberSecretKey) -> Result<Self, KeyError> {
        if secret.public_key()? != public {
            return Err(KeyError::InvalidKey);
        }
        Ok(Self { public, secret })
    }

    /// The public half.
    pub fn public_key(&self) -> &KyberPublicKey {
        &self.public
    }

    /// The secret half.
    pub fn secret_key(&self) -> &KyberSecretKey {
        &self.secret
    }
}

fn raw_public(public_key: &KyberPublicKey) -> Result<MlKem1024PublicKey, KeyError> {
    let raw = public_key.serialize().get(1..).ok_or(KeyError::InvalidKey)?;
    let arr: [u8; RAW_PUBLIC_KEY_LEN] = raw.try_into().map_err(|_| KeyError::InvalidKey)?;
    Ok(MlKem1024PublicKey::from(arr))
}

/// Encapsulates to `public_key`: a fresh ciphertext (to send) and the shared secret.
///
/// Unlike libsignal, a public key whose coefficients are not reduced modulo q (which no honest
/// Kyber key generation produces) is refused with [`KeyError::InvalidKey`] rather than used.
pub fn encapsulate<R: RngCore + CryptoRng>(
    public_key: &KyberPublicKey,
    rng: &mut R,
) -> Result<(KyberCiphertext, KemSharedSecret), E2eError> {
    let pk = raw_public(public_key)?;
    if !libcrux_ml_kem::mlkem1024::validate_public_key(&pk) {
        return Err(KeyError::InvalidKey.into());
    }
    let mut randomness = Zeroizing::new([0u8; ENCAPS_SEED_SIZE]);
    rng.fill_bytes(randomness.as_mut());
    let (ct, mut ss) = kyber1024::encapsulate(&pk, *randomness);
    let shared = Zeroizing::new(ss);
    ss.zeroize();
    let mut bytes = Vec::with_capacity(KYBER1024_CIPHERTEXT_LEN);
    bytes.push(KYBER1024_KEY_TYPE);
    bytes.extend_from_slice(ct.as_slice());
    Ok((KyberCiphertext(bytes), shared))
}

/// Decapsulates `ciphertext` with `secret_key`. Kyber never reports a wrong ciphertext: a
/// tampered one yields an unrelated secret (implicit rejection), which the first message's MAC
/// then refuses.
pub fn decapsulate(
    secret_key: &KyberSecretKey,
    ciphertext: &KyberCiphertext,
) -> Result<KemSharedSecret, E2eError> {
    let raw_sk = secret_key.0.get(1..).ok_or(KeyError::InvalidKey)?;
    let mut arr = Zeroizing::new([0u8; RAW_SECRET_KEY_LEN]);
    if raw_sk.len() != RAW_SECRET_KEY_LEN {
        return Err(KeyError::InvalidKey.into());
    }
    arr.copy_from_slice(raw_sk);
    let sk = MlKem1024PrivateKey::from(&*arr);
    let raw_ct = ciphertext.0.get(1..).ok_or(E2eError::InvalidKemCiphertext)?;
    let ct_arr: [u8; RAW_CIPHERTEXT_LEN] = raw_ct.try_into().map_err(|_| E2eError::InvalidKemCiphertext)?;
    let ct = MlKem1024Ciphertext::from(ct_arr);
    let mut ss = kyber1024::decapsulate(&sk, &ct);
    let shared = Zeroizing::new(ss);
    ss.zeroize();
    let mut sk_bytes: [u8; RAW_SECRET_KEY_LEN] = sk.into();
    sk_bytes.zeroize();
    Ok(shared)
}
