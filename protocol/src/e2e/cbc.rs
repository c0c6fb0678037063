//! AES-256-CBC with PKCS#7 padding and libsignal's truncated HMAC-SHA256, the body encryption
//! and authentication of libsignal's `SignalMessage` (message version 4).

use super::error::E2eError;
use super::hmac256::HmacKey;
use aes::cipher::{block_padding::Pkcs7, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

/// Bytes of the MAC appended to a `SignalMessage` (libsignal `MAC_LENGTH`).
pub const MAC_LEN: usize = 8;

/// Encrypts `plaintext` (PKCS#7-padded) under `key` and `iv`.
pub(crate) fn encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
    let c = cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv).map_err(|_| E2eError::Crypto)?;
    Ok(c.encrypt_padded_vec::<Pkcs7>(plaintext))
}

/// Decrypts a PKCS#7-padded body; a bad length or padding is [`E2eError::DecryptionFailed`].
pub(crate) fn decrypt(key: &[u8; 32], iv: &[u8; 16], body: &[u8]) -> Result<Vec<u8>, E2eError> {
    if body.is_empty() || body.len() % 16 != 0 {
        return Err(E2eError::DecryptionFailed);
    }
    let c = cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv).map_err(|_| E2eError::Crypto)?;
    c.decrypt_padded_vec::<Pkcs7>(body).map_err(|_| E2eError::DecryptionFailed)
}

/// libsignal's message MAC: HMAC-SHA256(mac key, sender identity || receiver identity ||
/// serialized message without its MAC), first [`MAC_LEN`] bytes.
pub(crate) fn mac(
    mac_key: &[u8; 32],
    sender_identity: &[u8],
    receiver_identity: &[u8],
    message: &[u8],
) -> Result<[u8; MAC_LEN], E2eError> {
    let full = HmacKey::new(mac_key).mac([sender_identity, receiver_identity, message]);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(full.get(..MAC_LEN).ok_or(E2eError::Crypto)?);
    Ok(out)
}

/// Constant-time comparison of a received MAC with the expected one.
pub(crate) fn mac_matches(expected: &[u8; MAC_LEN], got: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    got.len() == MAC_LEN && bool::from(expected.ct_eq(got))
}
