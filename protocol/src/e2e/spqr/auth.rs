//! Key derivation helpers and the KEM-exchange authenticator of SPQR V1.
//!
//! The authenticator holds a root key and a MAC key. It starts from 32 zero bytes for both,
//! absorbs the session's auth key for epoch 1, and absorbs each epoch's secret once the KEM
//! exchange of that epoch has produced it. Every absorption is
//! `HKDF-SHA256(salt = 0^32, ikm = root || input, info = LABEL_AUTH_UPDATE || epoch_be64)`,
//! 64 bytes, split root (first 32) / MAC key (last 32).
//!
//! The two MACs are full 32-byte HMAC-SHA256 tags under the MAC key:
//! - header: `HMAC(mac_key, LABEL_MAC_HEADER || epoch_be64 || header)`;
//! - ciphertext: `HMAC(mac_key, LABEL_MAC_CIPHERTEXT || epoch_be64 || ct1 || ct2)`.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::SpqrError;
use crate::e2e::hmac256::HmacKey;
use crate::e2e::kdf::hkdf_parts;
use crate::e2e::secret::{Secret32, Wiped};

/// Authenticator update label.
pub(crate) const LABEL_AUTH_UPDATE: &[u8] = b"Signal_PQCKA_V1_MLKEM768:Authenticator Update";
/// Label of the header MAC.
pub(crate) const LABEL_MAC_HEADER: &[u8] = b"Signal_PQCKA_V1_MLKEM768:ekheader";
/// Label of the ciphertext MAC.
pub(crate) const LABEL_MAC_CIPHERTEXT: &[u8] = b"Signal_PQCKA_V1_MLKEM768:ciphertext";
/// Label turning the ML-KEM shared secret into the epoch secret (followed by the epoch, BE64).
pub(crate) const LABEL_SCKA_KEY: &[u8] = b"Signal_PQCKA_V1_MLKEM768:SCKA Key";

/// Size of both MACs.
pub(crate) const MAC_LEN: usize = 32;

/// HKDF-SHA256 into `out`, `None` being SPQR's all-zero salt (`0^32`). Every caller asks for at
/// most 96 bytes, far below HKDF's limit of 255 blocks, so expansion cannot fail; the
/// unreachable failure branch leaves zeros rather than panicking.
pub(crate) fn hkdf_into(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    if hkdf_parts(salt, ikm, info, out).is_err() {
        out.fill(0);
    }
}

/// The epoch secret derived from an ML-KEM shared secret:
/// `HKDF(salt = 0^32, ikm = ss, info = LABEL_SCKA_KEY || epoch_be64)`, 32 bytes.
pub(crate) fn epoch_secret(shared_secret: &[u8], epoch: u64) -> Secret32 {
    let mut out = Secret32([0u8; 32]);
    hkdf_into(None, shared_secret, &[LABEL_SCKA_KEY, &epoch.to_be_bytes()], &mut out.0);
    out
}

/// The authenticator state (root key and MAC key).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Auth {
    root: Secret32,
    mac: Secret32,
}

impl Auth {
    /// The authenticator for epoch 1, seeded with the session's auth key.
    pub(crate) fn new(auth_key: &[u8]) -> Self {
        let mut a = Self { root: Secret32([0u8; 32]), mac: Secret32([0u8; 32]) };
        a.update(1, auth_key);
        a
    }

    /// Absorbs `input` (an auth key or an epoch secret) for `epoch`.
    pub(crate) fn update(&mut self, epoch: u64, input: &[u8]) {
        let mut ikm = Zeroizing::new(Vec::with_capacity(32 + input.len()));
        ikm.extend_from_slice(self.root.as_bytes());
        ikm.extend_from_slice(input);
        let mut okm = Wiped::<64>::zeroed();
        hkdf_into(None, &ikm, &[LABEL_AUTH_UPDATE, &epoch.to_be_bytes()], &mut okm[..]);
        self.root.0.copy_from_slice(&okm[..32]);
        self.mac.0.copy_from_slice(&okm[32..]);
    }

    fn tag(&self, label: &[u8], epoch: u64, data: &[&[u8]]) -> Result<[u8; MAC_LEN], SpqrError> {
        let epoch = epoch.to_be_bytes();
        let parts = [label, &epoch[..]].into_iter().chain(data.iter().copied());
        Ok(HmacKey::new(self.mac.as_bytes()).mac(parts))
    }

    /// MAC over an encapsulation-key header.
    pub(crate) fn mac_header(&self, epoch: u64, hdr: &[u8]) -> Result<[u8; MAC_LEN], SpqrError> {
        self.tag(LABEL_MAC_HEADER, epoch, &[hdr])
    }

    /// MAC over the two ciphertext parts.
    pub(crate) fn mac_ciphertext(
        &self,
        epoch: u64,
        ct1: &[u8],
        ct2: &[u8],
    ) -> Result<[u8; MAC_LEN], SpqrError> {
        self.tag(LABEL_MAC_CIPHERTEXT, epoch, &[ct1, ct2])
    }

    /// Checks a header MAC in constant time.
    pub(crate) fn verify_header(&self, epoch: u64, hdr: &[u8], mac: &[u8]) -> Result<(), SpqrError> {
        let want = self.mac_header(epoch, hdr)?;
        if bool::from(want.ct_eq(mac)) {
            Ok(())
        } else {
            Err(SpqrError::MacVerifyFailed)
        }
    }

    /// Checks a ciphertext MAC in constant time.
    pub(crate) fn verify_ciphertext(
        &self,
        epoch: u64,
        ct1: &[u8],
        ct2: &[u8],
        mac: &[u8],
    ) -> Result<(), SpqrError> {
        let want = self.mac_ciphertext(epoch, ct1, ct2)?;
        if bool::from(want.ct_eq(mac)) {
            Ok(())
        } else {
            Err(SpqrError::MacVerifyFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_depend_on_epoch_key_and_data() {
        let a = Auth::new(&[7u8; 32]);
        let b = Auth::new(&[8u8; 32]);
        let hdr = [1u8; 64];
        let m = a.mac_header(1, &hdr).unwrap();
        assert!(a.verify_header(1, &hdr, &m).is_ok());
        assert!(a.verify_header(2, &hdr, &m).is_err());
        assert!(b.verify_header(1, &hdr, &m).is_err());
        assert!(a.verify_header(1, &[2u8; 64], &m).is_err());
        assert!(a.verify_header(1, &hdr, &m[..31]).is_err());
        // The header and ciphertext MACs are domain separated.
        assert_ne!(m, a.mac_ciphertext(1, &hdr, &[]).unwrap());
        let mut c = a.clone();
        c.update(1, &[3u8; 32]);
        assert!(c.verify_header(1, &hdr, &m).is_err());
    }

    #[test]
    fn labels_are_exact() {
        assert_eq!(LABEL_AUTH_UPDATE.len(), 45);
        assert_eq!(LABEL_SCKA_KEY, b"Signal_PQCKA_V1_MLKEM768:SCKA Key");
    }
}
