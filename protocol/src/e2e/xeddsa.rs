//! XEdDSA over Curve25519, exactly as libsignal (`rust/core/src/curve/curve25519.rs`) signs and
//! verifies, including its edge cases (checked by `tests/e2e_kat.rs` against
//! `shared/vectors/libsignal/xeddsa.json`):
//!
//! - the Edwards sign bit of the signer travels in the top bit of signature byte 63;
//! - bit 255 of the Montgomery u-coordinate is ignored (field decoding masks it);
//! - `s` must be below 2^253 but need not be reduced (s + L verifies);
//! - `R` is compared as bytes with the canonical encoding of the recomputed point, in constant time.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Length of an XEdDSA signature.
pub const SIGNATURE_LEN: usize = 64;

/// The Edwards form of a Montgomery public key, decompressed once so that many signatures by the
/// same key (sender-key messages) verify without redoing the conversion.
#[derive(Clone)]
pub struct VerifyingPoint {
    /// Point and its canonical encoding for sign bit 0 and sign bit 1.
    points: [(EdwardsPoint, [u8; 32]); 2],
}

impl core::fmt::Debug for VerifyingPoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("VerifyingPoint").field(&self.points[0].1).finish()
    }
}

impl VerifyingPoint {
    /// Converts a Montgomery u-coordinate to both Edwards points it can stand for. `None` when
    /// there is no such point (libsignal then refuses every signature).
    pub fn new(u: &[u8; 32]) -> Option<Self> {
        let p0 = MontgomeryPoint(*u).to_edwards(0)?;
        let p1 = MontgomeryPoint(*u).to_edwards(1)?;
        Some(Self { points: [(p0, p0.compress().to_bytes()), (p1, p1.compress().to_bytes())] })
    }

    /// Verifies `signature` over the concatenation of `message` parts.
    pub fn verify(&self, message: &[&[u8]], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let sign = usize::from(signature[63] >> 7);
        let Some((a, a_bytes)) = self.points.get(sign) else {
            return false;
        };
        verify_with(a, a_bytes, message, signature)
    }
}

fn verify_with(
    a: &EdwardsPoint,
    a_bytes: &[u8; 32],
    message: &[&[u8]],
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature[32..]);
    s[31] &= 0x7f;
    if s[31] & 0xe0 != 0 {
        return false;
    }
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(a_bytes);
    for part in message {
        hash.update(part);
    }
    let h = Scalar::from_hash(hash);
    let minus_a = -a;
    let r_check =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &minus_a, &Scalar::from_bytes_mod_order(s))
            .compress();
    bool::from(r_check.as_bytes().ct_eq(&r_bytes))
}

/// Verifies an XEdDSA signature by the Montgomery public key `u` over the concatenated parts.
pub fn verify(u: &[u8; 32], message: &[&[u8]], signature: &[u8; SIGNATURE_LEN]) -> bool {
    let sign = signature[63] >> 7;
    let Some(a) = MontgomeryPoint(*u).to_edwards(sign) else {
        return false;
    };
    let a_bytes = a.compress().to_bytes();
    verify_with(&a, &a_bytes, message, signature)
}

/// The Edwards public key (compressed) of a clamped private scalar.
pub(crate) fn edwards_public(private: &[u8; 32]) -> [u8; 32] {
    let mut a = Scalar::from_bytes_mod_order(*private);
    let out = EdwardsPoint::mul_base(&a).compress().to_bytes();
    a.zeroize();
    out
}

/// Signs the concatenated parts with a clamped private scalar whose Edwards public key
/// (compressed) is `ed_public`, using 64 bytes of fresh randomness as libsignal does.
pub(crate) fn sign(
    private: &[u8; 32],
    ed_public: &[u8; 32],
    message: &[&[u8]],
    random: &[u8; 64],
) -> [u8; SIGNATURE_LEN] {
    let mut a = Scalar::from_bytes_mod_order(*private);
    let sign_bit = ed_public[31] & 0x80;

    let mut hash1 = Sha512::new();
    hash1.update([0xffu8; 32]);
    hash1.update(private);
    for part in message {
        hash1.update(part);
    }
    hash1.update(random);
    let mut r = Scalar::from_hash(hash1);
    let cap_r: CompressedEdwardsY = EdwardsPoint::mul_base(&r).compress();

    let mut hash = Sha512::new();
    hash.update(cap_r.as_bytes());
    hash.update(ed_public);
    for part in message {
        hash.update(part);
    }
    let h = Scalar::from_hash(hash);
    let s = h * a + r;

    let mut out = [0u8; SIGNATURE_LEN];
    out[..32].copy_from_slice(cap_r.as_bytes());
    out[32..].copy_from_slice(s.as_bytes());
    out[63] &= 0x7f;
    out[63] |= sign_bit;
    a.zeroize();
    r.zeroize();
    out
}
