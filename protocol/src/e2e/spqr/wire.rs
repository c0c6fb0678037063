//! The SPQR V1 message encoding (what libsignal puts in `SignalMessage.pq_ratchet`).
//!
//! ```text
//! version      1 byte (0x01)
//! epoch        varint (LEB128, at most 10 bytes)
//! key index    varint (must fit u32)
//! type         1 byte: 0 none, 1 header, 2 ek, 3 ek+ct1-ack, 4 ct1-ack, 5 ct1, 6 ct2
//! [chunk]      for types 1, 2, 3, 5, 6: varint chunk index (must fit u16) || 32 data bytes
//! ```
//!
//! Bytes after the message are allowed and ignored (room for later versions).

use super::encoding::Chunk;
use super::SpqrError;

/// The version byte of V1 messages.
pub(crate) const VERSION_V1: u8 = 1;
/// Longest varint accepted (a u64 needs at most 10 bytes).
const MAX_VARINT_LEN: usize = 10;

/// What a message carries for the KEM exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    None,
    Header(Chunk),
    Ek(Chunk),
    EkCt1Ack(Chunk),
    Ct1Ack,
    Ct1(Chunk),
    Ct2(Chunk),
}

impl Payload {
    fn type_byte(&self) -> u8 {
        match self {
            Payload::None => 0,
            Payload::Header(_) => 1,
            Payload::Ek(_) => 2,
            Payload::EkCt1Ack(_) => 3,
            Payload::Ct1Ack => 4,
            Payload::Ct1(_) => 5,
            Payload::Ct2(_) => 6,
        }
    }

    fn chunk(&self) -> Option<&Chunk> {
        match self {
            Payload::Header(c)
            | Payload::Ek(c)
            | Payload::EkCt1Ack(c)
            | Payload::Ct1(c)
            | Payload::Ct2(c) => Some(c),
            Payload::None | Payload::Ct1Ack => None,
        }
    }
}

/// A decoded V1 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WireMessage {
    /// The sender's SCKA epoch (at least 1 in well-formed traffic).
    pub(crate) epoch: u64,
    /// The index of the sender's chain key (0 only from a sender without chains).
    pub(crate) index: u32,
    pub(crate) payload: Payload,
}

pub(crate) fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*at`. Like spqr, bits beyond 64 in a tenth byte are dropped; an
/// eleventh byte is refused.
pub(crate) fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, SpqrError> {
    let mut v = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let b = *bytes.get(*at).ok_or(SpqrError::MsgDecode)?;
        *at += 1;
        v |= u64::from(b & 0x7f).wrapping_shl(7 * i as u32);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(SpqrError::MsgDecode)
}

impl WireMessage {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.push(VERSION_V1);
        put_varint(self.epoch, &mut out);
        put_varint(u64::from(self.index), &mut out);
        out.push(self.payload.type_byte());
        if let Some(c) = self.payload.chunk() {
            put_varint(u64::from(c.index), &mut out);
            out.extend_from_slice(&c.data);
        }
        out
    }

    /// Decodes a V1 message; returns it with the number of bytes it used.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, usize), SpqrError> {
        if bytes.first() != Some(&VERSION_V1) {
            return Err(SpqrError::MsgDecode);
        }
        let mut at = 1;
        let epoch = get_varint(bytes, &mut at)?;
        let index = u32::try_from(get_varint(bytes, &mut at)?).map_err(|_| SpqrError::MsgDecode)?;
        let ty = *bytes.get(at).ok_or(SpqrError::MsgDecode)?;
        at += 1;
        let mut chunk = || -> Result<Chunk, SpqrError> {
            let index = u16::try_from(get_varint(bytes, &mut at)?).map_err(|_| SpqrError::MsgDecode)?;
            let data: [u8; 32] =
                bytes.get(at..at + 32).and_then(|d| d.try_into().ok()).ok_or(SpqrError::MsgDecode)?;
            at += 32;
            Ok(Chunk { index, data })
        };
        let payload = match ty {
            0 => Payload::None,
            1 => Payload::Header(chunk()?),
            2 => Payload::Ek(chunk()?),
            3 => Payload::EkCt1Ack(chunk()?),
            4 => Payload::Ct1Ack,
            5 => Payload::Ct1(chunk()?),
            6 => Payload::Ct2(chunk()?),
            _ => return Err(SpqrError::MsgDecode),
        };
        Ok((Self { epoch, index, payload }, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_known_values() {
        let mut v = Vec::new();
        put_varint(0x012c, &mut v);
        assert_eq!(v, [0xac, 0x02]);
        let mut at = 1;
        assert_eq!(get_varint(&[0xff, 0xac, 0x02, 0xff], &mut at).unwrap(), 0x012c);
        assert_eq!(at, 3);
        let mut v = Vec::new();
        put_varint(u64::MAX, &mut v);
        assert_eq!(v.len(), 10);
        let mut at = 0;
        assert_eq!(get_varint(&v, &mut at).unwrap(), u64::MAX);
        // Eleven bytes, or a truncated varint, are refused.
        assert!(get_varint(&[0x80; 11], &mut 0).is_err());
        assert!(get_varint(&[0x80, 0x80], &mut 0).is_err());
    }

    #[test]
    fn layout_and_trailing_bytes() {
        let c = Chunk { index: 300, data: [9u8; 32] };
        let m = WireMessage { epoch: 1, index: 1, payload: Payload::Header(c) };
        let b = m.encode();
        assert_eq!(b[..6], [1, 1, 1, 1, 0xac, 0x02]);
        assert_eq!(b.len(), 38);
        let mut long = b.clone();
        long.extend_from_slice(b"future");
        assert_eq!(WireMessage::decode(&long).unwrap(), (m, 38));
        let none = WireMessage { epoch: 1, index: 1, payload: Payload::None }.encode();
        assert_eq!(none, [1, 1, 1, 0]);
        let ack = WireMessage { epoch: 200, index: 70_000, payload: Payload::Ct1Ack }.encode();
        assert_eq!(ack, [1, 0xc8, 0x01, 0xf0, 0xa2, 0x04, 4]);
        // Truncations of a chunk message all fail.
        for n in 0..b.len() {
            assert_eq!(WireMessage::decode(&b[..n]), Err(SpqrError::MsgDecode), "{n}");
        }
        // Unknown type, oversized index, oversized chunk index.
        assert!(WireMessage::decode(&[1, 1, 1, 7]).is_err());
        assert!(WireMessage::decode(&[1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0]).is_err());
        let mut big_chunk = vec![1, 1, 1, 2, 0x80, 0x80, 0x04];
        big_chunk.extend_from_slice(&[0u8; 32]);
        assert!(WireMessage::decode(&big_chunk).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok((_, used)) = WireMessage::decode(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }

        #[test]
        fn round_trip(epoch in any::<u64>(), index in any::<u32>(), ty in 0u8..7, ci in any::<u16>(),
                      data in any::<[u8; 32]>()) {
            let c = Chunk { index: ci, data };
            let payload = match ty {
                0 => Payload::None, 1 => Payload::Header(c), 2 => Payload::Ek(c), 3 => Payload::EkCt1Ack(c),
                4 => Payload::Ct1Ack, 5 => Payload::Ct1(c), _ => Payload::Ct2(c),
            };
            let m = WireMessage { epoch, index, payload };
            let b = m.encode();
            prop_assert_eq!(WireMessage::decode(&b).unwrap(), (m, b.len()));
        }
    }
}
