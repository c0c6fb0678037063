//! AES-256-GCM from ring (128-bit tag). Every message key is used once, so the nonce derived with
//! it is unique per key.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::consts::TAG_LEN;
use super::error::E2eError;

fn key(k: &[u8; 32]) -> Result<LessSafeKey, E2eError> {
    UnboundKey::new(&AES_256_GCM, k).map(LessSafeKey::new).map_err(|_| E2eError::Crypto)
}

/// Encrypts `out[start..]` in place and appends the tag.
pub(crate) fn seal_in_place(
    k: &[u8; 32],
    nonce: [u8; 12],
    ad: &[u8],
    out: &mut Vec<u8>,
    start: usize,
) -> Result<(), E2eError> {
    let key = key(k)?;
    let body = out.get_mut(start..).ok_or(E2eError::Crypto)?;
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ad), body)
        .map_err(|_| E2eError::Crypto)?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Decrypts `ciphertext || tag`.
pub(crate) fn open(k: &[u8; 32], nonce: [u8; 12], ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, E2eError> {
    if ciphertext.len() < TAG_LEN {
        return Err(E2eError::DecryptionFailed);
    }
    let key = key(k)?;
    let mut buf = ciphertext.to_vec();
    let len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(ad), &mut buf)
        .map_err(|_| E2eError::DecryptionFailed)?
        .len();
    buf.truncate(len);
    Ok(buf)
}
