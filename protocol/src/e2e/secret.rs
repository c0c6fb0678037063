//! A 32-byte secret: not `Copy`, zeroized on drop, redacted in `Debug`; and [`Wiped`], a
//! fixed-size scratch buffer for derived key material.
//!
//! Both wipe through `zeroize`'s slice path (one fill plus an optimization barrier): on arrays,
//! `Zeroize` and `Zeroizing` write byte by byte with volatile stores, which cost more than the
//! SHA-256 blocks of a message's key derivations (benches/README.md, "Decrypt: where the time
//! went").

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 32 secret bytes (a root key, chain key or message-key seed).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Secret32(pub(crate) [u8; 32]);

impl Secret32 {
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Zeroize for Secret32 {
    fn zeroize(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl Drop for Secret32 {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Secret32 {}

impl core::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// `N` bytes of derived key material, wiped on drop (what `Zeroizing<[u8; N]>` does, in one
/// pass).
pub(crate) struct Wiped<const N: usize>(pub(crate) [u8; N]);

impl<const N: usize> Wiped<N> {
    /// `N` zero bytes.
    pub(crate) fn zeroed() -> Self {
        Self([0u8; N])
    }
}

impl<const N: usize> core::ops::Deref for Wiped<N> {
    type Target = [u8; N];
    fn deref(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> core::ops::DerefMut for Wiped<N> {
    fn deref_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }
}

impl<const N: usize> Drop for Wiped<N> {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl<const N: usize> ZeroizeOnDrop for Wiped<N> {}
