//! Random secrets and ids: bearer tokens (256 bits; the store keeps only their SHA-256), public
//! ids and generated passwords.

use base64::Engine;
use hush_protocol::api::Secret;
use hush_store::TokenHash;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// `N` random bytes from the OS.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// A new opaque 256-bit token, base64url without padding.
pub fn new_token() -> Secret {
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// A new 128-bit public id, hex.
pub fn new_public_id() -> String {
    random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

/// A random password for bootstrap credentials: 20 characters of base64url (120 bits).
pub fn random_password() -> Secret {
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<15>()))
}
