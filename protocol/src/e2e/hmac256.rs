//! HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869) over the `sha2` crate's block function.
//!
//! Every libsignal message costs a few dozen SHA-256 blocks (chain step, SPQR chain step, the
//! salted message-key HKDF, the MAC), almost all of them on 32-byte keys and short inputs. The
//! generic `hmac`/`hkdf` crates (and `ring`) spend more per call on buffering, state copies and
//! finalization than the SHA-256 blocks themselves cost with the CPU's SHA extensions (profile
//! in `benches/README.md`, "Decrypt: where the time went"). This module keeps a keyed HMAC as
//! two 32-byte chaining values and builds the padded blocks on the stack; the block function is
//! still `sha2`'s (runtime-detected SHA-NI, constant-time). Only lengths are branched on.
//! Checked against RFC 4231/5869 vectors and, on random keys, inputs and splits, against the
//! `hmac` and `hkdf` crates (tests below).

use std::sync::OnceLock;

use sha2::block_api::compress256;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// SHA-256 block size.
const BLOCK: usize = 64;
/// SHA-256 initial chaining value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Blocks buffered before the block function runs: a MAC over up to 247 bytes (every MAC and
/// KDF step of a short message) is one call of it, plus one for the outer hash.
const BUF_BLOCKS: usize = 4;

/// A SHA-256 computation from a chaining value, fed in parts.
struct Running {
    state: [u32; 8],
    buf: [[u8; BLOCK]; BUF_BLOCKS],
    fill: usize,
    /// Bytes hashed so far, the keyed pad included.
    total: u64,
}

impl Running {
    fn new(state: [u32; 8]) -> Self {
        Self { state, buf: [[0u8; BLOCK]; BUF_BLOCKS], fill: 0, total: BLOCK as u64 }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            if self.fill == 0 && data.len() >= BLOCK {
                // Whole blocks straight from the input.
                let mut blocks = data.chunks_exact(BLOCK);
                for b in blocks.by_ref() {
                    if let Ok(block) = <[u8; BLOCK]>::try_from(b) {
                        compress256(&mut self.state, &[block]);
                    }
                }
                data = blocks.remainder();
                continue;
            }
            let flat = self.buf.as_flattened_mut();
            let take = (flat.len() - self.fill).min(data.len());
            let (head, rest) = data.split_at(take);
            if let Some(dst) = flat.get_mut(self.fill..self.fill + take) {
                dst.copy_from_slice(head);
            }
            self.fill += take;
            data = rest;
            if self.fill == flat.len() {
                compress256(&mut self.state, &self.buf);
                self.fill = 0;
            }
        }
    }

    /// Pads (0x80, zeros, the bit length) and hashes the rest: the state is the digest.
    fn finish(&mut self) {
        let bits = self.total.wrapping_mul(8);
        if self.fill + 9 > BUF_BLOCKS * BLOCK {
            // No room for the padding: hash the full blocks, keep the partial one.
            let full = self.fill / BLOCK;
            compress256(&mut self.state, self.buf.get(..full).unwrap_or(&[]));
            self.buf[0] = self.buf[full.min(BUF_BLOCKS - 1)];
            self.fill -= full * BLOCK;
        }
        let fill = self.fill;
        let n = (fill + 9).div_ceil(BLOCK);
        let flat = self.buf.as_flattened_mut();
        if let Some(tail) = flat.get_mut(fill..n * BLOCK) {
            tail.fill(0);
            if let Some(b) = tail.first_mut() {
                *b = 0x80;
            }
        }
        if let Some(len) = flat.get_mut(n * BLOCK - 8..n * BLOCK) {
            len.copy_from_slice(&bits.to_be_bytes());
        }
        compress256(&mut self.state, self.buf.get(..n).unwrap_or(&[]));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.state.as_mut_slice().zeroize();
        self.buf.as_flattened_mut().zeroize();
    }
}

/// The state as the 32 big-endian digest bytes.
fn digest_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    write_digest(state, &mut out);
    out
}

fn write_digest(state: &[u32; 8], out: &mut [u8; 32]) {
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
}

/// An HMAC-SHA256 key: the chaining values after the inner and outer pad blocks.
#[derive(Clone)]
pub(crate) struct HmacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl Zeroize for HmacKey {
    fn zeroize(&mut self) {
        self.inner.as_mut_slice().zeroize();
        self.outer.as_mut_slice().zeroize();
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for HmacKey {}

impl HmacKey {
    /// Keys HMAC-SHA256 (a key longer than a block is hashed first, as RFC 2104 says).
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut hashed = [0u8; 32];
        let key = if key.len() > BLOCK {
            hashed = Sha256::digest(key).into();
            &hashed[..]
        } else {
            key
        };
        let mut pad = [0x36u8; BLOCK];
        for (p, b) in pad.iter_mut().zip(key) {
            *p ^= b;
        }
        let mut inner = IV;
        compress256(&mut inner, &[pad]);
        for p in pad.iter_mut() {
            *p ^= 0x36 ^ 0x5c;
        }
        let mut outer = IV;
        compress256(&mut outer, &[pad]);
        pad.as_mut_slice().zeroize();
        hashed.as_mut_slice().zeroize();
        Self { inner, outer }
    }

    /// HMAC over the concatenation of `parts`.
    pub(crate) fn mac<'a, I: IntoIterator<Item = &'a [u8]>>(&self, parts: I) -> [u8; 32] {
        // Inputs of up to 55 bytes (chain steps, HKDF blocks, extracts of a 32-byte key) are
        // one padded block, built in place; longer ones go through `Running`.
        let mut parts = parts.into_iter();
        let mut block = [0u8; BLOCK];
        let mut fill = 0;
        while let Some(p) = parts.next() {
            let end = fill + p.len();
            match block.get_mut(fill..end).filter(|_| end <= BLOCK - 9) {
                Some(dst) => {
                    dst.copy_from_slice(p);
                    fill = end;
                }
                None => {
                    let mut r = Running::new(self.inner);
                    r.update(block.get(..fill).unwrap_or(&[]));
                    r.update(p);
                    for q in parts {
                        r.update(q);
                    }
                    r.finish();
                    block.as_mut_slice().zeroize();
                    return self.outer(&mut r.state, &mut block);
                }
            }
        }
        if let Some(b) = block.get_mut(fill) {
            *b = 0x80;
        }
        if let Some(len) = block.get_mut(BLOCK - 8..) {
            len.copy_from_slice(&(((BLOCK + fill) * 8) as u64).to_be_bytes());
        }
        let mut state = self.inner;
        compress256(&mut state, &[block]);
        self.outer(&mut state, &mut block)
    }

    /// The outer hash of an inner digest (`inner`, wiped after): one block of the digest, 0x80
    /// and the length of pad + digest, built in `block` (wiped after).
    fn outer(&self, inner: &mut [u32; 8], block: &mut [u8; BLOCK]) -> [u8; 32] {
        let (digest, rest) = block.split_at_mut(32);
        if let Ok(d) = <&mut [u8; 32]>::try_from(digest) {
            write_digest(inner, d);
        }
        rest.fill(0);
        if let Some(b) = rest.first_mut() {
            *b = 0x80;
        }
        if let Some(len) = rest.get_mut(32 - 8..) {
            len.copy_from_slice(&(((BLOCK + 32) * 8) as u64).to_be_bytes());
        }
        inner.as_mut_slice().zeroize();
        let mut state = self.outer;
        compress256(&mut state, &[*block]);
        block.as_mut_slice().zeroize();
        let out = digest_bytes(&state);
        state.as_mut_slice().zeroize();
        out
    }
}

/// HKDF's "no salt" (HashLen zero bytes), keyed once per process.
fn zero_salt() -> &'static HmacKey {
    static ZERO: OnceLock<HmacKey> = OnceLock::new();
    ZERO.get_or_init(|| HmacKey::new(&[0u8; 32]))
}

/// Longest HKDF output (255 blocks).
pub(crate) const HKDF_MAX: usize = 255 * 32;

/// HKDF-SHA256 into `out`, `info` being the concatenation of its parts; no salt is 32 zero
/// bytes (RFC 5869). `false` if `out` is longer than [`HKDF_MAX`] (then `out` is untouched).
#[must_use]
pub(crate) fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> bool {
    if out.len() > HKDF_MAX {
        return false;
    }
    let mut prk = match salt {
        None => zero_salt().mac([ikm]),
        Some(s) => HmacKey::new(s).mac([ikm]),
    };
    let key = HmacKey::new(&prk);
    prk.as_mut_slice().zeroize();
    let mut t = [0u8; 32];
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let counter = [(i + 1) as u8];
        let prev: &[u8] = if i == 0 { &[] } else { &t };
        let next = key.mac(std::iter::once(prev).chain(info.iter().copied()).chain([&counter[..]]));
        t = next;
        match <&mut [u8; 32]>::try_from(&mut *chunk) {
            Ok(whole) => *whole = t,
            Err(_) => {
                if let Some(src) = t.get(..chunk.len()) {
                    chunk.copy_from_slice(src);
                }
            }
        }
    }
    t.as_mut_slice().zeroize();
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 5869, test cases 1 and 3 (the second: no salt, empty info).
    #[test]
    fn hkdf_matches_rfc_5869() {
        let ikm = [0x0b; 22];
        let mut okm = [0u8; 42];
        assert!(hkdf(
            Some(&hex("000102030405060708090a0b0c")),
            &ikm,
            &[&hex("f0f1f2f3f4f5f6f7f8f9")],
            &mut okm
        ));
        assert_eq!(
            okm.to_vec(),
            hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
        assert!(hkdf(None, &ikm, &[], &mut okm));
        assert_eq!(
            okm.to_vec(),
            hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")
        );
    }

    /// RFC 4231, test cases 2 ("Jefe") and 6 (a 131-byte key, hashed first).
    #[test]
    fn hmac_matches_rfc_4231() {
        let tag = HmacKey::new(b"Jefe").mac([&b"what do ya want "[..], b"for nothing?"]);
        assert_eq!(tag.to_vec(), hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
        let tag =
            HmacKey::new(&[0xaa; 131]).mac([&b"Test Using Larger Than Block-Size Key - Hash Key First"[..]]);
        assert_eq!(tag.to_vec(), hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
    }

    /// Every input length up to 11 blocks, whole and in two parts: each padding case (room in
    /// the last block or not, in each of the buffered blocks and past a full buffer).
    #[test]
    fn every_length_matches_rustcrypto() {
        let data: Vec<u8> = (0..700u32).map(|i| (i * 31 + 7) as u8).collect();
        let key = HmacKey::new(b"every length");
        for len in 0..=data.len() {
            let d = &data[..len];
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(b"every length").unwrap();
            m.update(d);
            let want: [u8; 32] = m.finalize().into_bytes().into();
            assert_eq!(key.mac([d]), want, "length {len}");
            let (x, y) = d.split_at(len / 3);
            assert_eq!(key.mac([x, y]), want, "length {len} split");
        }
    }

    #[test]
    fn hkdf_refuses_more_than_255_blocks() {
        let mut out = vec![7u8; HKDF_MAX + 1];
        assert!(!hkdf(None, b"ikm", &[], &mut out));
        assert!(out.iter().all(|&b| b == 7));
        let mut out = vec![0u8; HKDF_MAX];
        assert!(hkdf(None, b"ikm", &[], &mut out));
    }

    proptest! {
        /// HMAC and HKDF agree with RustCrypto's `hmac` and `hkdf` on any key (shorter and
        /// longer than a block), input (up to 1,200 bytes: every padding and buffer boundary) split into three parts at any
        /// points, salt (none
        /// included) and output length.
        #[test]
        fn agrees_with_rustcrypto(
            key in proptest::collection::vec(any::<u8>(), 0..150),
            data in proptest::collection::vec(any::<u8>(), 0..1200),
            a in 0usize..1200,
            b in 0usize..1200,
            salt in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
            len in 1usize..300,
        ) {
            let (a, b) = (a.min(data.len()), b.min(data.len()));
            let (a, b) = (a.min(b), a.max(b));
            let parts = [&data[..a], &data[a..b], &data[b..]];
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
            m.update(&data);
            let want: [u8; 32] = m.finalize().into_bytes().into();
            prop_assert_eq!(HmacKey::new(&key).mac(parts), want);

            let mut ours = vec![0u8; len];
            prop_assert!(hkdf(salt.as_deref(), &key, &parts, &mut ours));
            let mut theirs = vec![0u8; len];
            hkdf::Hkdf::<Sha256>::new(salt.as_deref(), &key).expand(&data, &mut theirs).unwrap();
            prop_assert_eq!(ours, theirs);
        }
    }
}
