//! SPQR's erasure code: a message is cut into 32-byte chunks, one per ratchet message, such that
//! any large enough set of distinct chunks rebuilds it.
//!
//! # The code, as spqr (V1) defines it on the wire
//!
//! * The message has an even length `L` and is read as `n = L / 2` big-endian 16-bit symbols
//!   `s_0 .. s_{n-1}`, each an element of GF(2^16) (see [`gf16`]).
//! * Symbols are dealt round-robin into 16 *lanes*: symbol `s_i` belongs to lane `i % 16` at
//!   position `i / 16`. Lane `j` therefore holds `k_j = n / 16 + (1 if j < n % 16 else 0)`
//!   symbols.
//! * Lane `j` defines the unique polynomial `P_j` of degree below `k_j` with `P_j(t) = s_{16t+j}`
//!   for `t` in `0..k_j` (the zero polynomial if `k_j = 0`).
//! * The chunk with index `t` (a `u16`, read as the field element with the same bits) carries
//!   `P_0(t), P_1(t), .., P_15(t)`, each big-endian, in 32 bytes. The code is thus systematic:
//!   when `L` is a multiple of 32, chunk `t < L / 32` is exactly bytes `32t .. 32t + 32` of the
//!   message, and further chunks are Reed-Solomon parity.
//!   When `L` is not a multiple of 32 the last systematic chunk is *not* zero-padded: a lane
//!   that has run out of symbols (`k_j <= t`) carries `P_j(t)`, which is zero only if `k_j = 0`.
//! * The encoder emits chunks `0, 1, 2, ...` in order (a 32-bit counter whose low 16 bits are
//!   the index, so indexes wrap after 65 536 chunks).
//! * The decoder keeps, per lane, points sorted by `x`. A received point is stored when its
//!   `x < k_j` or when the lane still has fewer than `k_j` points; a point whose `x` is already
//!   stored replaces the stored one. The message is available once every lane holds `k_j`
//!   points: a symbol whose position is stored is taken as is; the others are the value at their
//!   position of the polynomial through the `k_j` stored points of smallest `x`.
//!
//! This implementation evaluates the interpolating polynomials in barycentric form instead of
//! computing their coefficients; over a field the values are the same, so the bytes are too.

pub mod gf16;

use gf16::Gf16;
use serde::{Deserialize, Serialize};

/// Bytes per chunk.
pub const CHUNK_SIZE: usize = 32;

/// Lanes (interleaved polynomials) per chunk: one 16-bit symbol each.
const LANES: usize = CHUNK_SIZE / 2;

/// The longest message spqr's encoder accepts, in bytes (16 lanes of 65 536 bytes).
pub const MAX_MESSAGE_LEN: usize = LANES * (1 << 16);

/// One piece of an encoded message: the values of the 16 lane polynomials at `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Which evaluation point this chunk carries (the field element with these bits).
    pub index: u16,
    /// The 16 lane values at `index`, each big-endian, lane 0 first.
    pub data: [u8; CHUNK_SIZE],
}

/// Why an encoder or decoder could not be created (or restored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// The message length is odd (messages are sequences of 16-bit symbols).
    #[error("message length must be even")]
    OddLength,
    /// The message is longer than [`MAX_MESSAGE_LEN`].
    #[error("message longer than {MAX_MESSAGE_LEN} bytes")]
    MessageTooLong,
    /// A persisted encoder or decoder breaks the invariants this module keeps.
    #[error("invalid encoder or decoder state")]
    InvalidState,
}

fn check_len(len_bytes: usize) -> Result<(), EncodingError> {
    if len_bytes % 2 != 0 {
        Err(EncodingError::OddLength)
    } else if len_bytes > MAX_MESSAGE_LEN {
        Err(EncodingError::MessageTooLong)
    } else {
        Ok(())
    }
}

/// How many symbols lane `lane` holds in a message of `symbols` symbols.
fn lane_size(symbols: usize, lane: usize) -> usize {
    symbols / LANES + usize::from(lane < symbols % LANES)
}

/// The interpolating polynomial through fixed, distinct nodes, kept in barycentric form: for
/// nodes `x_i` with weights `w_i = 1 / prod_{m != i} (x_i - x_m)`, the polynomial through
/// `(x_i, y_i)` takes at a non-node `t` the value
/// `prod_m (t - x_m) * sum_i y_i * w_i / (t - x_i)`.
struct Barycentric {
    nodes: Vec<Gf16>,
    weights: Vec<Gf16>,
}

impl Barycentric {
    fn new(nodes: Vec<Gf16>) -> Self {
        let weights = nodes
            .iter()
            .enumerate()
            .map(|(i, &xi)| {
                let denominator = nodes
                    .iter()
                    .enumerate()
                    .filter(|&(m, _)| m != i)
                    .fold(Gf16::ONE, |acc, (_, &xm)| acc * (xi - xm));
                denominator.inverse()
            })
            .collect();
        Self { nodes, weights }
    }

    /// The value at `t` of the polynomial taking `values[i]` at `nodes[i]`.
    fn eval(&self, values: &[Gf16], t: Gf16) -> Gf16 {
        let mut node_product = Gf16::ONE;
        let mut sum = Gf16::ZERO;
        for ((&x, &w), &y) in self.nodes.iter().zip(&self.weights).zip(values) {
            let gap = t - x;
            if gap == Gf16::ZERO {
                return y;
            }
            node_product = node_product * gap;
            sum = sum + y * w / gap;
        }
        node_product * sum
    }
}

/// Encoder state: the message and the index of the next chunk to emit.
///
/// Persisted with postcard; deserialization checks the length rules of [`PolyEncoder::encode_bytes`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "EncoderFields")]
pub struct PolyEncoder {
    message: Vec<u8>,
    next: u32,
}

#[derive(Deserialize)]
struct EncoderFields {
    message: Vec<u8>,
    next: u32,
}

impl TryFrom<EncoderFields> for PolyEncoder {
    type Error = EncodingError;
    fn try_from(f: EncoderFields) -> Result<Self, EncodingError> {
        check_len(f.message.len()).map_err(|_| EncodingError::InvalidState)?;
        Ok(Self { message: f.message, next: f.next })
    }
}

impl PolyEncoder {
    /// Starts encoding `msg`, whose length must be even and at most [`MAX_MESSAGE_LEN`].
    pub fn encode_bytes(msg: &[u8]) -> Result<Self, EncodingError> {
        check_len(msg.len())?;
        Ok(Self { message: msg.to_vec(), next: 0 })
    }

    /// The next chunk in spqr's order: indexes 0, 1, 2, ... (wrapping after 65 535).
    pub fn next_chunk(&mut self) -> Chunk {
        // spqr keeps a 32-bit counter and uses its low 16 bits as the index.
        let chunk = self.chunk_at(self.next as u16);
        self.next = self.next.wrapping_add(1);
        chunk
    }

    /// The chunk with a given index, without moving the counter.
    pub fn chunk_at(&self, index: u16) -> Chunk {
        let symbols = self.message.len() / 2;
        let t = usize::from(index);
        // Lanes hold either `short` or `short + 1` symbols; both share nodes 0, 1, 2, ...
        let short = symbols / LANES;
        let mut interpolators: [Option<Barycentric>; 2] = [None, None];
        let mut data = [0u8; CHUNK_SIZE];
        for (lane, out) in data.chunks_exact_mut(2).enumerate() {
            let size = lane_size(symbols, lane);
            let value = if t < size {
                self.symbol(t * LANES + lane)
            } else if size == 0 {
                Gf16::ZERO
            } else {
                let slot = &mut interpolators[size - short];
                let interpolator = slot.get_or_insert_with(|| {
                    // size <= 32 768, so every node fits in a u16.
                    Barycentric::new((0..size).map(|x| Gf16(x as u16)).collect())
                });
                let values: Vec<Gf16> = (0..size).map(|x| self.symbol(x * LANES + lane)).collect();
                interpolator.eval(&values, Gf16(index))
            };
            out.copy_from_slice(&value.0.to_be_bytes());
        }
        Chunk { index, data }
    }

    /// Message symbol `i` (big-endian), or zero past the end (which callers never ask for).
    fn symbol(&self, i: usize) -> Gf16 {
        match self.message.get(2 * i..2 * i + 2) {
            Some(&[hi, lo]) => Gf16(u16::from_be_bytes([hi, lo])),
            _ => Gf16::ZERO,
        }
    }
}

/// One received value of a lane polynomial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Point {
    x: u16,
    y: u16,
}

/// Decoder state: the expected length and, per lane, the useful points received so far.
///
/// A lane needing `k` points never stores more than `2k` (at most `k` with `x < k`, and points
/// with larger `x` are only taken while the lane has fewer than `k`), so the state is bounded by
/// the message length whatever chunks arrive. Deserialization re-checks these invariants.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "DecoderFields")]
pub struct PolyDecoder {
    len_bytes: u32,
    lanes: [Vec<Point>; LANES],
    complete: bool,
}

#[derive(Deserialize)]
struct DecoderFields {
    len_bytes: u32,
    lanes: [Vec<Point>; LANES],
    complete: bool,
}

impl TryFrom<DecoderFields> for PolyDecoder {
    type Error = EncodingError;
    fn try_from(f: DecoderFields) -> Result<Self, EncodingError> {
        let len = usize::try_from(f.len_bytes).map_err(|_| EncodingError::InvalidState)?;
        check_len(len).map_err(|_| EncodingError::InvalidState)?;
        for (lane, points) in f.lanes.iter().enumerate() {
            let need = lane_size(len / 2, lane);
            let sorted = points.windows(2).all(|w| matches!(w, [a, b] if a.x < b.x));
            if !sorted || points.len() > 2 * need {
                return Err(EncodingError::InvalidState);
            }
        }
        Ok(Self { len_bytes: f.len_bytes, lanes: f.lanes, complete: f.complete })
    }
}

impl PolyDecoder {
    /// A decoder for a message of `len_bytes` bytes (even, at most [`MAX_MESSAGE_LEN`]).
    pub fn new(len_bytes: usize) -> Result<Self, EncodingError> {
        check_len(len_bytes)?;
        let len_bytes = u32::try_from(len_bytes).map_err(|_| EncodingError::MessageTooLong)?;
        Ok(Self { len_bytes, lanes: Default::default(), complete: false })
    }

    /// The message length this decoder expects, in bytes.
    pub fn len_bytes(&self) -> usize {
        self.len_bytes as usize
    }

    fn symbols(&self) -> usize {
        self.len_bytes() / 2
    }

    /// Takes in one chunk. Any chunk is accepted; what is not useful is dropped.
    pub fn add_chunk(&mut self, chunk: &Chunk) {
        let symbols = self.symbols();
        let x = chunk.index;
        for (lane, (points, bytes)) in self.lanes.iter_mut().zip(chunk.data.chunks_exact(2)).enumerate() {
            let need = lane_size(symbols, lane);
            if usize::from(x) >= need && points.len() >= need {
                continue;
            }
            let y = match bytes {
                &[hi, lo] => u16::from_be_bytes([hi, lo]),
                _ => continue,
            };
            match points.binary_search_by_key(&x, |p| p.x) {
                // Same position again: the newer value wins, as in spqr.
                Ok(i) => {
                    if let Some(p) = points.get_mut(i) {
                        p.y = y;
                    }
                }
                Err(i) => points.insert(i, Point { x, y }),
            }
        }
    }

    /// The message, once every lane has enough points; `None` before (and after
    /// [`is_complete`](Self::is_complete)).
    pub fn decoded_message(&self) -> Option<Vec<u8>> {
        if self.complete {
            return None;
        }
        let symbols = self.symbols();
        let lanes = self.lanes.iter().enumerate();
        if lanes.clone().any(|(lane, points)| points.len() < lane_size(symbols, lane)) {
            return None;
        }
        let mut out = vec![0u8; self.len_bytes()];
        for (lane, points) in lanes {
            let need = lane_size(symbols, lane);
            let basis = points.get(..need).unwrap_or_default();
            let mut interpolator: Option<Barycentric> = None;
            let values: Vec<Gf16> = basis.iter().map(|p| Gf16(p.y)).collect();
            for position in 0..need {
                // position < need <= 32 768 fits in a u16.
                let x = position as u16;
                let value = match points.binary_search_by_key(&x, |p| p.x) {
                    Ok(i) => points.get(i).map_or(Gf16::ZERO, |p| Gf16(p.y)),
                    Err(_) => interpolator
                        .get_or_insert_with(|| Barycentric::new(basis.iter().map(|p| Gf16(p.x)).collect()))
                        .eval(&values, Gf16(x)),
                };
                let at = 2 * (position * LANES + lane);
                if let Some(slot) = out.get_mut(at..at + 2) {
                    slot.copy_from_slice(&value.0.to_be_bytes());
                }
            }
        }
        Some(out)
    }

    /// Whether the decoder was marked complete. spqr's V1 decoder never sets this itself (it is
    /// false from [`new`](Self::new) on); it is kept, and persisted, for parity with its state.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    /// The lengths SPQR V1 encodes: header + MAC, encapsulation key, ciphertext 1,
    /// ciphertext 2 + MAC.
    const SPQR_LENGTHS: [usize; 4] = [64 + 32, 1152, 960, 128 + 32];

    fn random_message(rng: &mut StdRng, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        rng.fill(&mut m[..]);
        m
    }

    /// Distinct chunks a decoder needs: the size of the largest lane.
    fn chunks_needed(len: usize) -> usize {
        (len / 2).div_ceil(LANES)
    }

    /// `count` distinct indexes drawn from `range`.
    fn distinct_indexes(rng: &mut StdRng, range: std::ops::RangeInclusive<u16>, count: usize) -> Vec<u16> {
        let mut set = BTreeSet::new();
        while set.len() < count {
            set.insert(rng.gen_range(range.clone()));
        }
        let mut v: Vec<u16> = set.into_iter().collect();
        v.shuffle(rng);
        v
    }

    fn decode(len: usize, chunks: &[Chunk]) -> Option<Vec<u8>> {
        let mut d = PolyDecoder::new(len).unwrap();
        for c in chunks {
            d.add_chunk(c);
        }
        d.decoded_message()
    }

    // ---- Known answers ----

    /// Facts established from spqr's `encoding/polynomial.rs`: big-endian symbols dealt
    /// round-robin to 16 lanes, chunk `t` = the lanes' values at `t`, so the code is systematic
    /// (chunk `t < L/32` is bytes `32t..32t+32`), and the encoder emits indexes 0, 1, 2, ...
    #[test]
    fn systematic_layout_and_emission_order() {
        let mut rng = StdRng::seed_from_u64(1);
        for len in SPQR_LENGTHS {
            assert_eq!(len % CHUNK_SIZE, 0);
            let msg = random_message(&mut rng, len);
            let mut enc = PolyEncoder::encode_bytes(&msg).unwrap();
            let n = len / CHUNK_SIZE;
            for t in 0..n + 5 {
                let c = enc.next_chunk();
                assert_eq!(usize::from(c.index), t);
                assert_eq!(c, enc.chunk_at(c.index));
                if t < n {
                    assert_eq!(&c.data[..], &msg[32 * t..32 * t + 32], "len {len} chunk {t}");
                }
            }
        }
    }

    /// spqr's own test `encode_and_decode_small`: "abcdefghij" decodes from chunks 1 and 2.
    /// Its 5 symbols give lanes 0..5 one point each (constant polynomials) and lanes 5..16 none
    /// (zero), so every chunk is the message followed by 22 zero bytes.
    #[test]
    fn spqr_small_vector() {
        let enc = PolyEncoder::encode_bytes(b"abcdefghij").unwrap();
        let mut expected = [0u8; 32];
        expected[..10].copy_from_slice(b"abcdefghij");
        for t in [0u16, 1, 2, 3, 777, u16::MAX] {
            assert_eq!(enc.chunk_at(t).data, expected);
        }
        let got = decode(10, &[enc.chunk_at(1), enc.chunk_at(2)]);
        assert_eq!(got.unwrap(), b"abcdefghij");
        // One chunk suffices, in fact (every lane needs one point).
        assert_eq!(decode(10, &[enc.chunk_at(9)]).unwrap(), b"abcdefghij");
        assert_eq!(decode(10, &[]), None);
    }

    /// spqr's own test `encode_and_decode_large`: 1088 bytes of 3 decode from chunks 35..71,
    /// none systematic. Constant lanes make every chunk 32 bytes of 3; 34 distinct chunks are
    /// needed and enough.
    #[test]
    fn spqr_large_constant_vector() {
        let msg = [3u8; 1088];
        let enc = PolyEncoder::encode_bytes(&msg).unwrap();
        for t in (0..80).chain([1000, u16::MAX]) {
            assert_eq!(enc.chunk_at(t).data, [3u8; 32], "chunk {t}");
        }
        let mut d = PolyDecoder::new(1088).unwrap();
        for (added, t) in (35u16..71).enumerate() {
            assert_eq!(d.decoded_message().is_some(), added >= 34);
            d.add_chunk(&enc.chunk_at(t));
        }
        assert_eq!(d.decoded_message().unwrap(), msg);
    }

    /// Worked by hand, independently of the code: with 64 bytes every lane holds two symbols
    /// `y0` (x = 0) and `y1` (x = 1), so `P(x) = y0 + (y0 + y1) x` and `P(2) = y0 + 2d`,
    /// `P(3) = y0 + 2d + d` with `d = y0 ^ y1`.
    #[test]
    fn two_point_lanes_by_hand() {
        // Bytes 0..64: d = 0x2020 in every lane, 2d = 0x4040, 3d = 0x6060 (no reduction).
        let msg: Vec<u8> = (0u8..64).collect();
        let enc = PolyEncoder::encode_bytes(&msg).unwrap();
        let c2: Vec<u8> = (0u8..32).map(|b| b ^ 0x40).collect();
        let c3: Vec<u8> = (0u8..32).map(|b| b ^ 0x60).collect();
        assert_eq!(&enc.chunk_at(2).data[..], &c2[..]);
        assert_eq!(&enc.chunk_at(3).data[..], &c3[..]);

        // 32 zero bytes then 32 bytes 0xFF: y0 = 0, d = 0xFFFF; 2d = 0x1FFFE - 0x1100B = 0xEFF5
        // (the reduction by x^16 + x^12 + x^3 + x + 1 is visible), 3d = 0xEFF5 ^ 0xFFFF = 0x100A.
        let mut msg = vec![0u8; 32];
        msg.extend_from_slice(&[0xFF; 32]);
        let enc = PolyEncoder::encode_bytes(&msg).unwrap();
        assert_eq!(enc.chunk_at(2).data, [[0xEF, 0xF5]; 16].concat()[..]);
        assert_eq!(enc.chunk_at(3).data, [[0x10, 0x0A]; 16].concat()[..]);
        assert_eq!(decode(64, &[enc.chunk_at(2), enc.chunk_at(3)]).unwrap(), msg);
    }

    /// Parity chunks against a slow, table-free Lagrange evaluation:
    /// `P(t) = sum_i y_i prod_{m != i} (t - m) / (i - m)` over nodes `0..k`.
    #[test]
    fn parity_matches_slow_lagrange() {
        fn slow_mul(a: u16, b: u16) -> u16 {
            let mut p: u32 = 0;
            for bit in 0..16 {
                if (b >> bit) & 1 == 1 {
                    p ^= u32::from(a) << bit;
                }
            }
            for bit in (16..32).rev() {
                if (p >> bit) & 1 == 1 {
                    p ^= gf16::MODULUS << (bit - 16);
                }
            }
            p as u16
        }
        fn slow_inv(a: u16) -> u16 {
            // a^(2^16 - 2)
            let (mut result, mut base, mut e) = (1u16, a, 0xFFFEu32);
            while e > 0 {
                if e & 1 == 1 {
                    result = slow_mul(result, base);
                }
                base = slow_mul(base, base);
                e >>= 1;
            }
            result
        }
        let mut rng = StdRng::seed_from_u64(4);
        for len in [160, 1152] {
            let msg = random_message(&mut rng, len);
            let enc = PolyEncoder::encode_bytes(&msg).unwrap();
            let k = len / CHUNK_SIZE;
            for t in [k as u16, k as u16 + 1, 1000, 0x8000, u16::MAX] {
                let chunk = enc.chunk_at(t);
                for lane in 0..LANES {
                    let mut value = 0u16;
                    for i in 0..k {
                        let at = 2 * (i * LANES + lane);
                        let mut term = u16::from_be_bytes([msg[at], msg[at + 1]]);
                        for m in (0..k).filter(|&m| m != i) {
                            let (num, den) = (t ^ m as u16, (i ^ m) as u16);
                            term = slow_mul(slow_mul(term, num), slow_inv(den));
                        }
                        value ^= term;
                    }
                    assert_eq!(
                        &chunk.data[2 * lane..2 * lane + 2],
                        &value.to_be_bytes(),
                        "len {len} t {t} lane {lane}"
                    );
                }
            }
        }
    }

    #[test]
    fn index_wraps_like_spqr() {
        let msg: Vec<u8> = (0u8..96).collect();
        let mut enc = PolyEncoder::encode_bytes(&msg).unwrap();
        enc.next = u32::from(u16::MAX);
        assert_eq!(enc.next_chunk().index, u16::MAX);
        let wrapped = enc.next_chunk();
        assert_eq!(wrapped.index, 0);
        assert_eq!(&wrapped.data[..], &msg[..32]);
    }

    // ---- Lengths and bad input ----

    #[test]
    fn length_rules() {
        assert_eq!(PolyEncoder::encode_bytes(&[1, 2, 3]).err(), Some(EncodingError::OddLength));
        assert_eq!(PolyDecoder::new(95).err(), Some(EncodingError::OddLength));
        let too_long = vec![0u8; MAX_MESSAGE_LEN + 2];
        assert_eq!(PolyEncoder::encode_bytes(&too_long).err(), Some(EncodingError::MessageTooLong));
        assert_eq!(PolyDecoder::new(MAX_MESSAGE_LEN + 2).err(), Some(EncodingError::MessageTooLong));
        assert!(PolyDecoder::new(MAX_MESSAGE_LEN).is_ok());
        // The empty message is decoded before any chunk.
        let d = PolyDecoder::new(0).unwrap();
        assert_eq!(d.decoded_message(), Some(vec![]));
        assert!(!d.is_complete());
        assert_eq!(PolyEncoder::encode_bytes(&[]).unwrap().chunk_at(5).data, [0u8; 32]);
    }

    #[test]
    fn garbage_keeps_state_bounded() {
        let mut rng = StdRng::seed_from_u64(7);
        for len in SPQR_LENGTHS.into_iter().chain([2, 30, 34]) {
            let mut d = PolyDecoder::new(len).unwrap();
            for i in 0..20_000u32 {
                let index = if i % 3 == 0 { u16::MAX - (i % 50) as u16 } else { rng.gen() };
                let mut data = [0u8; 32];
                rng.fill(&mut data[..]);
                d.add_chunk(&Chunk { index, data });
            }
            for (lane, pts) in d.lanes.iter().enumerate() {
                assert!(pts.len() <= 2 * lane_size(len / 2, lane));
                assert!(pts.windows(2).all(|w| w[0].x < w[1].x));
            }
            let bytes = postcard::to_allocvec(&d).unwrap();
            // 4-byte length-ish header, then at most 2k points of <= 6 bytes per lane.
            assert!(bytes.len() <= 8 + 16 * 2 + 6 * 2 * (len / 2 + LANES));
            // Garbage decodes to something of the right length, without panicking.
            assert_eq!(d.decoded_message().map(|m| m.len()), Some(len));
        }
    }

    #[test]
    fn repeated_index_with_new_data_replaces_the_point() {
        // sorted-vec's SortedSet::push (spqr's point store) replaces an equal element.
        let mut d = PolyDecoder::new(32).unwrap();
        d.add_chunk(&Chunk { index: 0, data: [1; 32] });
        d.add_chunk(&Chunk { index: 0, data: [2; 32] });
        assert_eq!(d.decoded_message().unwrap(), vec![2u8; 32]);
        // With its one point taken, lane ignores x >= 1.
        d.add_chunk(&Chunk { index: 9, data: [3; 32] });
        assert_eq!(d.decoded_message().unwrap(), vec![2u8; 32]);
    }

    #[test]
    fn deserialization_checks_invariants() {
        let ok = PolyDecoder::new(96).unwrap();
        let mut unsorted = ok.clone();
        unsorted.lanes[0] = vec![Point { x: 2, y: 0 }, Point { x: 1, y: 0 }];
        let mut oversized = ok.clone();
        oversized.lanes[3] = (0..7).map(|x| Point { x, y: 0 }).collect();
        let mut odd = ok.clone();
        odd.len_bytes = 97;
        for bad in [unsorted, oversized, odd] {
            let bytes = postcard::to_allocvec(&bad).unwrap();
            assert!(postcard::from_bytes::<PolyDecoder>(&bytes).is_err());
        }
        let bytes = postcard::to_allocvec(&ok).unwrap();
        assert!(postcard::from_bytes::<PolyDecoder>(&bytes).is_ok());

        let mut enc = PolyEncoder::encode_bytes(&[0; 4]).unwrap();
        enc.message.push(0);
        let bytes = postcard::to_allocvec(&enc).unwrap();
        assert!(postcard::from_bytes::<PolyEncoder>(&bytes).is_err());
    }

    // ---- Round trips ----

    #[test]
    fn spqr_lengths_from_systematic_chunks() {
        let mut rng = StdRng::seed_from_u64(2);
        for len in SPQR_LENGTHS {
            let msg = random_message(&mut rng, len);
            let mut enc = PolyEncoder::encode_bytes(&msg).unwrap();
            let chunks: Vec<Chunk> = (0..len / CHUNK_SIZE).map(|_| enc.next_chunk()).collect();
            assert_eq!(decode(len, &chunks).unwrap(), msg);
            assert_eq!(decode(len, &chunks[1..]), None);
        }
    }

    #[test]
    fn postcard_round_trip_mid_way() {
        let mut rng = StdRng::seed_from_u64(3);
        for len in SPQR_LENGTHS {
            let msg = random_message(&mut rng, len);
            let n = len / CHUNK_SIZE;
            let mut enc = PolyEncoder::encode_bytes(&msg).unwrap();
            let mut dec = PolyDecoder::new(len).unwrap();
            // Lose every other chunk; the survivors mix systematic and parity chunks.
            for _ in 0..n {
                let c = enc.next_chunk();
                if c.index % 2 == 1 {
                    dec.add_chunk(&c);
                }
            }
            let mut enc: PolyEncoder = postcard::from_bytes(&postcard::to_allocvec(&enc).unwrap()).unwrap();
            let mut dec: PolyDecoder = postcard::from_bytes(&postcard::to_allocvec(&dec).unwrap()).unwrap();
            assert_eq!(dec.decoded_message(), None);
            loop {
                let c = enc.next_chunk();
                assert!(usize::from(c.index) < 2 * n + 2);
                if c.index % 2 == 1 {
                    dec.add_chunk(&c);
                }
                if let Some(m) = dec.decoded_message() {
                    assert_eq!(m, msg);
                    break;
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Only parity chunks (indexes >= the systematic ones), up to index 65535.
        #[test]
        fn spqr_lengths_from_parity_chunks(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            for len in SPQR_LENGTHS {
                let msg = random_message(&mut rng, len);
                let enc = PolyEncoder::encode_bytes(&msg).unwrap();
                let n = len / CHUNK_SIZE;
                let first_parity = n as u16;
                let chunks: Vec<Chunk> = distinct_indexes(&mut rng, first_parity..=u16::MAX, n)
                    .into_iter()
                    .map(|t| enc.chunk_at(t))
                    .collect();
                prop_assert_eq!(decode(len, &chunks[..n - 1]), None);
                prop_assert_eq!(decode(len, &chunks), Some(msg));
            }
        }

        /// Any indexes, random order, duplicates: decodable exactly once enough distinct
        /// indexes have arrived.
        #[test]
        fn spqr_lengths_from_shuffled_mix(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            for len in SPQR_LENGTHS {
                let msg = random_message(&mut rng, len);
                let enc = PolyEncoder::encode_bytes(&msg).unwrap();
                let n = len / CHUNK_SIZE;
                let top = if rng.gen() { (3 * n) as u16 } else { u16::MAX };
                let mut stream = distinct_indexes(&mut rng, 0..=top, n + 3);
                let dups: Vec<u16> =
                    (0..n / 2 + 1).map(|_| stream[rng.gen_range(0..stream.len())]).collect();
                stream.extend(dups);
                stream.shuffle(&mut rng);
                let mut dec = PolyDecoder::new(len).unwrap();
                let mut seen = BTreeSet::new();
                for t in stream {
                    dec.add_chunk(&enc.chunk_at(t));
                    seen.insert(t);
                    let got = dec.decoded_message();
                    if seen.len() >= n {
                        prop_assert_eq!(got.as_ref(), Some(&msg));
                    } else {
                        prop_assert_eq!(got, None);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Other even lengths, including ones that are not a multiple of 32 (lanes of unequal
        /// size, empty lanes).
        #[test]
        fn any_even_length(half_len in 0usize..120, seed in any::<u64>()) {
            let len = 2 * half_len;
            let mut rng = StdRng::seed_from_u64(seed);
            let msg = random_message(&mut rng, len);
            let enc = PolyEncoder::encode_bytes(&msg).unwrap();
            let need = chunks_needed(len);
            // Systematic where the message has a symbol; a lane with no symbol at all is zero.
            // A lane that has run out (t >= k_j > 0) is not zero-padded: it carries its
            // polynomial's value at t.
            for t in 0..need {
                let c = enc.chunk_at(t as u16);
                for lane in 0..LANES {
                    let at = 2 * (t * LANES + lane);
                    let got = &c.data[2 * lane..2 * lane + 2];
                    if at < len {
                        prop_assert_eq!(got, &msg[at..at + 2]);
                    } else if lane_size(len / 2, lane) == 0 {
                        prop_assert_eq!(got, &[0u8, 0][..]);
                    }
                }
            }
            let chunks: Vec<Chunk> = distinct_indexes(&mut rng, 0..=u16::MAX, need)
                .into_iter()
                .map(|t| enc.chunk_at(t))
                .collect();
            if need > 0 {
                prop_assert_eq!(decode(len, &chunks[..need - 1]), None);
            }
            prop_assert_eq!(decode(len, &chunks), Some(msg));
        }
    }
}
