//! The AES-256-GCM key sealing TOTP secrets at rest (bound to tenant and user as associated
//! data).

use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::otp::OtpSecret;
use hush_store::StoreError;
use rand::RngCore;

use crate::accounts::error::AccountError;
use crate::mfa::error::{MfaError, Result};

/// The AES-256-GCM key sealing TOTP secrets at rest. Its `Debug` prints no key bytes.
pub struct SealKey(ring::aead::LessSafeKey);

impl SealKey {
    /// A key from 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Result<Self> {
        let k = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, bytes)
            .map_err(|_| MfaError::Account(AccountError::Internal))?;
        Ok(Self(ring::aead::LessSafeKey::new(k)))
    }

    /// Seals `plain`: a random 96-bit nonce, then ciphertext and tag.
    pub(crate) fn seal(&self, plain: &[u8], aad: &str) -> Result<Vec<u8>> {
        let nonce = random_bytes::<12>();
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| MfaError::Account(AccountError::Internal))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(out)
    }

    /// Opens what [`SealKey::seal`] sealed with the same associated data.
    pub(crate) fn open(&self, sealed: &[u8], aad: &str) -> Result<OtpSecret> {
        if sealed.len() < 12 {
            return Err(StoreError::Corrupt("sealed TOTP secret too short".into()).into());
        }
        let (nonce, ct) = sealed.split_at(12);
        let mut nonce_bytes = [0u8; 12];
        nonce_bytes.copy_from_slice(nonce);
        let mut buf = ct.to_vec();
        let plain = self
            .0
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce_bytes),
                ring::aead::Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| StoreError::Corrupt("TOTP secret does not open with this node's MFA key".into()))?;
        let secret = OtpSecret::new(plain.to_vec());
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(secret)
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

/// The associated data a user's TOTP secret is sealed with.
pub(crate) fn aad(tenant: &TenantId, user: &UserId) -> String {
    format!("hush-totp-v1/{tenant}/{user}")
}

/// `N` random bytes from the OS.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_secrets_are_bound_to_the_user_and_key() {
        let k = SealKey::new(&[7u8; 32]).unwrap();
        let sealed = k.seal(b"12345678901234567890", "hush-totp-v1/a/b").unwrap();
        assert!(!sealed.windows(20).any(|w| w == b"12345678901234567890"));
        assert_eq!(k.open(&sealed, "hush-totp-v1/a/b").unwrap().expose(), b"12345678901234567890");
        assert!(k.open(&sealed, "hush-totp-v1/a/c").is_err());
        assert!(SealKey::new(&[8u8; 32]).unwrap().open(&sealed, "hush-totp-v1/a/b").is_err());
        assert_eq!(format!("{k:?}"), "SealKey(***)");
    }
}
