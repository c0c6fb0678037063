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
        pad_short(&mut block, fill);
        let mut state = self.inner;
        compress256(&mut state, &[block]);
        self.outer(&mut state, &mut block)
    }

    /// The outer hash of an inner digest (`inner`, wiped after), built in `block` (wiped
    /// after).
    fn outer(&self, inner: &mut [u32; 8], block: &mut [u8; BLOCK]) -> [u8; 32] {
        outer_block(inner, block);
        inner.as_mut_slice().zeroize();
        let mut state = self.outer;
        compress256(&mut state, &[*block]);
        block.as_mut_slice().zeroize();
        let out = digest_bytes(&state);
        state.as_mut_slice().zeroize();
        out
    }
}

/// Builds the one padded block of a short message (at most 55 bytes: the concatenation of
/// `parts`) hashed after a keyed pad; `false` (block untouched) if it is longer.
fn short_block<'a, I>(parts: I, block: &mut [u8; BLOCK]) -> bool
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    if parts.clone().map(<[u8]>::len).sum::<usize>() > BLOCK - 9 {
        return false;
    }
    let mut fill = 0;
    for p in parts {
        let end = fill + p.len();
        if let Some(dst) = block.get_mut(fill..end) {
            dst.copy_from_slice(p);
        }
        fill = end;
    }
    if let Some(tail) = block.get_mut(fill..) {
        tail.fill(0);
    }
    pad_short(block, fill);
    true
}

/// Ends a block holding `fill` (at most 55) message bytes after a keyed pad: 0x80, then the
/// bit length of pad + message in the last 8 bytes (the bytes between are already zero).
fn pad_short(block: &mut [u8; BLOCK], fill: usize) {
    if let Some(b) = block.get_mut(fill) {
        *b = 0x80;
    }
    if let Some(len) = block.get_mut(BLOCK - 8..) {
        len.copy_from_slice(&(((BLOCK + fill) * 8) as u64).to_be_bytes());
    }
}

/// The outer block of an HMAC: the inner digest, 0x80 and the length of pad + digest.
fn outer_block(inner: &[u32; 8], block: &mut [u8; BLOCK]) {
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
}

/// Two independent computations of one received message, with their SHA-256 blocks issued in
/// pairs: `HMAC(key, [a])` and `HMAC(key, [b])` (the Double Ratchet's chain step) and a
/// 64-byte HKDF with no salt (SPQR's chain step). Each computation alone is a chain of
/// dependent blocks, and one SHA-256 block is one long dependency chain of its own (about
/// 40 ns here with the SHA extensions); two independent blocks issued back to back overlap in
/// the CPU (about 26.5 ns each). The results equal the separate computations (tested).
pub(crate) fn chain_step_and_hkdf64(
    key: &[u8; 32],
    a: u8,
    b: u8,
    ikm: &[u8; 32],
    info: &[&[u8]],
    out: &mut [u8; 64],
) -> ([u8; 32], [u8; 32]) {
    let zero = zero_salt();
    let mut pad = [0x36u8; BLOCK];
    for (p, k) in pad.iter_mut().zip(key) {
        *p ^= k;
    }
    let mut x = [0u8; BLOCK];
    short_block([&ikm[..]].into_iter(), &mut x);
    // Level 1: the key's inner pad, its outer pad, the HKDF extract's inner block.
    let mut ki = IV;
    compress256(&mut ki, &[pad]);
    for p in pad.iter_mut() {
        *p ^= 0x36 ^ 0x5c;
    }
    let mut ko = IV;
    compress256(&mut ko, &[pad]);
    let mut prk_state = zero.inner;
    compress256(&mut prk_state, &[x]);
    // Level 2: both inner blocks of the chain step, the extract's outer block.
    let mut ya = [0u8; BLOCK];
    let mut yb = [0u8; BLOCK];
    short_block([&[a][..]].into_iter(), &mut ya);
    short_block([&[b][..]].into_iter(), &mut yb);
    let mut sa = ki;
    compress256(&mut sa, &[ya]);
    let mut sb = ki;
    compress256(&mut sb, &[yb]);
    outer_block(&prk_state, &mut x);
    let mut prk = zero.outer;
    compress256(&mut prk, &[x]);
    // Level 3: the PRK's two pads.
    let mut prk_bytes = digest_bytes(&prk);
    let expand = HmacKey::new(&prk_bytes);
    // Levels 4 and 5: HKDF-Expand's T1 (inner, outer), each beside one outer block of the
    // chain step (an `info` too long for one block: T1 after them).
    let counter1 = [1u8];
    let mut z = [0u8; BLOCK];
    let short = short_block(info.iter().copied().chain([&counter1[..]]), &mut z);
    let mut t1_state = expand.inner;
    if short {
        compress256(&mut t1_state, &[z]);
    }
    outer_block(&sa, &mut ya);
    let mut ra = ko;
    compress256(&mut ra, &[ya]);
    let mut t1s = expand.outer;
    if short {
        outer_block(&t1_state, &mut z);
        compress256(&mut t1s, &[z]);
    }
    outer_block(&sb, &mut yb);
    let mut rb = ko;
    compress256(&mut rb, &[yb]);
    let mut t1 =
        if short { digest_bytes(&t1s) } else { expand.mac(info.iter().copied().chain([&counter1[..]])) };
    // The rest is T2 from T1, one chain.
    let counter2 = [2u8];
    let mut t2 = expand.mac(std::iter::once(&t1[..]).chain(info.iter().copied()).chain([&counter2[..]]));
    let (lo, hi) = out.split_at_mut(32);
    lo.copy_from_slice(&t1);
    hi.copy_from_slice(&t2);
    t1.as_mut_slice().zeroize();
    t2.as_mut_slice().zeroize();
    let result = (digest_bytes(&ra), digest_bytes(&rb));
    for s in [
        &mut ki,
        &mut ko,
        &mut prk_state,
        &mut sa,
        &mut sb,
        &mut prk,
        &mut ra,
        &mut rb,
        &mut t1_state,
        &mut t1s,
    ] {
        s.as_mut_slice().zeroize();
    }
    for blk in [&mut pad, &mut x, &mut ya, &mut yb, &mut z] {
        blk.as_mut_slice().zeroize();
    }
    prk_bytes.as_mut_slice().zeroize();
    result
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
        /// The interleaved chain step and HKDF equal the two computed apart, whatever the
        /// `info` (shorter and longer than what fits T1's one block, in two parts).
        #[test]
        fn chain_step_and_hkdf64_equals_separate(
            key in any::<[u8; 32]>(),
            ikm in any::<[u8; 32]>(),
            info in proptest::collection::vec(any::<u8>(), 0..120),
            split in 0usize..120,
            a in any::<u8>(),
            b in any::<u8>(),
        ) {
            let (i1, i2) = info.split_at(split.min(info.len()));
            let mut fused = [0u8; 64];
            let (sa, sb) = chain_step_and_hkdf64(&key, a, b, &ikm, &[i1, i2], &mut fused);
            let k = HmacKey::new(&key);
            prop_assert_eq!(sa, k.mac([&[a][..]]));
            prop_assert_eq!(sb, k.mac([&[b][..]]));
            let mut apart = [0u8; 64];
            prop_assert!(hkdf(None, &ikm, &[i1, i2], &mut apart));
            prop_assert_eq!(fused, apart);
        }

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
