//! libsignal's pairwise message formats, message version 4 (PQXDH + SPQR), from Signal's
//! published protobuf field numbers (`wire.proto`) and checked against messages libsignal 0.103
//! made (`tests/vectors/libsignal/pqxdh.json`, `tests/e2e_libsignal_interop.rs`).
//!
//! `SignalMessage` (Signal's envelope type `CIPHERTEXT`):
//! `0x44 | protobuf { ratchet_key = 1 (33 B), counter = 2, previous_counter = 3,
//! ciphertext = 4 (AES-256-CBC), pq_ratchet = 5 (an SPQR message) } | MAC (8 B)`, the MAC being
//! HMAC-SHA256(message MAC key, sender identity || receiver identity || every byte before it).
//!
//! `PreKeySignalMessage` (`PREKEY_BUNDLE`), sent until the initiator first hears back:
//! `0x44 | protobuf { pre_key_id = 1 (absent without a one-time EC key), base_key = 2,
//! identity_key = 3, message = 4 (a SignalMessage), registration_id = 5, signed_pre_key_id = 6,
//! kyber_pre_key_id = 7, kyber_ciphertext = 8 (0x08 || 1568 B) }`.
//!
//! Both start with the same byte, so the kind travels beside the bytes (Signal-Server's
//! `Envelope.Type`, Hush's `content_type`); [`message_kind`] still tells them apart by their
//! protobuf shape for callers that lost it. Decoders cap every length and never panic (fuzzed
//! by `protocol/fuzz`). libsignal 0.103 refuses version 3 (X3DH) messages and so does Hush.

use prost::Message as _;

use super::cbc::MAC_LEN;
use super::consts::MAX_MESSAGE_LEN;
use super::error::DecodeError;
use super::keys::{KeyId, PublicKey};

/// Message version of PQXDH + SPQR sessions (libsignal `CIPHERTEXT_MESSAGE_CURRENT_VERSION`).
pub const MESSAGE_VERSION: u8 = 4;
/// First byte of every pairwise message: `(version << 4) | current version`.
pub const VERSION_BYTE: u8 = (MESSAGE_VERSION << 4) | MESSAGE_VERSION;
/// Largest SPQR message accepted in field 5 (SPQR V1 messages are at most 1 + 10 + 5 + 1 + 3 +
/// 32 bytes; later versions may append data, which is allowed and ignored).
pub const MAX_PQ_RATCHET_LEN: usize = 4096;

/// Kind of a pairwise message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A `SignalMessage`: a Double Ratchet message on an established session.
    Ratchet,
    /// A `PreKeySignalMessage`: PQXDH fields plus a `SignalMessage`.
    PreKey,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignalMessageProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    ratchet_key: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "2")]
    counter: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    previous_counter: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    ciphertext: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pq_ratchet: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PreKeySignalMessageProto {
    #[prost(uint32, optional, tag = "1")]
    pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "2")]
    base_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    identity_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    message: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "5")]
    registration_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    signed_pre_key_id: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    kyber_pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "8")]
    kyber_ciphertext: Option<Vec<u8>>,
}

fn check_version(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong);
    }
    let (&b0, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
    if b0 >> 4 != MESSAGE_VERSION {
        return Err(DecodeError::BadVersion);
    }
    Ok(rest)
}

/// Tells a `PreKeySignalMessage` from a `SignalMessage` by its protobuf: only the former has a
/// length-delimited field 2 (`base_key`; a `SignalMessage`'s field 2 is the counter, a varint).
pub fn message_kind(bytes: &[u8]) -> Result<MessageKind, DecodeError> {
    let body = check_version(bytes)?;
    if let Ok(p) = PreKeySignalMessageProto::decode(body) {
        if p.base_key.is_some() && p.message.is_some() {
            return Ok(MessageKind::PreKey);
        }
    }
    Ok(MessageKind::Ratchet)
}

/// A decoded `SignalMessage`, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct RatchetMessage<'a> {
    /// The sender's current ratchet public key.
    pub ratchet_key: PublicKey,
    /// Index of this message in the sender's chain.
    pub counter: u32,
    /// Length of the sender's previous sending chain.
    pub previous_counter: u32,
    /// The AES-256-CBC body.
    pub ciphertext: &'a [u8],
    /// The SPQR message (empty from an SPQR-less sender, which version 4 refuses).
    pub pq_ratchet: &'a [u8],
    /// Every byte the MAC covers (version byte and protobuf).
    pub authenticated: &'a [u8],
    /// The 8-byte MAC.
    pub mac: &'a [u8],
}

impl<'a> RatchetMessage<'a> {
    /// Decodes a `SignalMessage` (the MAC is checked by the session, which has the key).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        check_version(bytes)?;
        if bytes.len() < 1 + MAC_LEN {
            return Err(DecodeError::Truncated);
        }
        let (authenticated, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let body = authenticated.get(1..).ok_or(DecodeError::Truncated)?;
        let (mut ratchet_key, mut counter, mut previous_counter) = (None, None, None);
        let (mut ciphertext, mut pq_ratchet) = (None, None);
        let mut rest = body;
        // A borrowed reader of `SignalMessageProto` (a decryption copies nothing): prost's
        // rules, the last occurrence of a field wins, unknown fields are skipped.
        while let Some((tag, value)) = proto::next_field(&mut rest)? {
            match (tag, value) {
                (1, proto::Value::Bytes(b)) => ratchet_key = Some(b),
                (2, proto::Value::Varint(v)) => counter = Some(v as u32),
                (3, proto::Value::Varint(v)) => previous_counter = Some(v as u32),
                (4, proto::Value::Bytes(b)) => ciphertext = Some(b),
                (5, proto::Value::Bytes(b)) => pq_ratchet = Some(b),
                (1..=5, _) => return Err(DecodeError::Truncated),
                _ => {}
            }
        }
        let ratchet_key = PublicKey::from_exact(ratchet_key.ok_or(DecodeError::Truncated)?)
            .map_err(|_| DecodeError::BadKey)?;
        let ciphertext = ciphertext.ok_or(DecodeError::Truncated)?;
        let pq_ratchet = pq_ratchet.unwrap_or_default();
        if pq_ratchet.len() > MAX_PQ_RATCHET_LEN {
            return Err(DecodeError::TooLong);
        }
        Ok(Self {
            ratchet_key,
            counter: counter.ok_or(DecodeError::Truncated)?,
            previous_counter: previous_counter.unwrap_or(0),
            ciphertext,
            pq_ratchet,
            authenticated,
            mac,
        })
    }
}

/// A protobuf reader that borrows: the fields of a message one at a time.
mod proto {
    use super::DecodeError;

    /// A field's value.
    pub(super) enum Value<'a> {
        /// Wire type 0.
        Varint(u64),
        /// Wire type 2.
        Bytes(&'a [u8]),
        /// Wire types 1 and 5 (fixed 64 and 32 bits), skipped.
        Fixed,
    }

    fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = buf.split_first().ok_or(DecodeError::Truncated)?;
            *buf = rest;
            // The tenth byte may only carry the top bit of a u64 (as prost).
            if i == 9 && b > 1 {
                return Err(DecodeError::Truncated);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::Truncated)
    }

    fn take<'a>(buf: &mut &'a [u8], n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
        if n > buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }

    /// The next field and its number, `None` at the end. Groups (wire types 3 and 4, long
    /// deprecated and never in Signal's messages) and field number 0 are errors.
    pub(super) fn next_field<'a>(buf: &mut &'a [u8]) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let key = u32::try_from(varint(buf)?).map_err(|_| DecodeError::Truncated)?;
        let tag = key >> 3;
        if tag == 0 {
            return Err(DecodeError::Truncated);
        }
        let value = match key & 7 {
            0 => Value::Varint(varint(buf)?),
            1 => {
                take(buf, 8)?;
                Value::Fixed
            }
            2 => {
                let n = varint(buf)?;
                Value::Bytes(take(buf, n)?)
            }
            5 => {
                take(buf, 4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError::Truncated),
        };
        Ok(Some((tag, value)))
    }
}

/// Encodes a `SignalMessage` up to its MAC (the caller appends the MAC over these bytes).
pub(crate) fn encode_ratchet_unauthenticated(
    ratchet_key: &PublicKey,
    counter: u32,
    previous_counter: u32,
    ciphertext: Vec<u8>,
    pq_ratchet: Vec<u8>,
) -> Vec<u8> {
    let p = SignalMessageProto {
        ratchet_key: Some(ratchet_key.serialize().to_vec()),
        counter: Some(counter),
        previous_counter: Some(previous_counter),
        ciphertext: Some(ciphertext),
        pq_ratchet: if pq_ratchet.is_empty() { None } else { Some(pq_ratchet) },
    };
    let mut out = Vec::with_capacity(1 + p.encoded_len() + MAC_LEN);
    out.push(VERSION_BYTE);
    p.encode_raw(&mut out);
    out
}

/// The PQXDH fields the initiator repeats until it hears back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PreKeyFields {
    /// The initiator's registration id.
    pub registration_id: u32,
    /// The one-time EC pre-key used, if any.
    pub pre_key_id: Option<KeyId>,
    /// The signed pre-key used.
    pub signed_pre_key_id: KeyId,
    /// The Kyber pre-key used (one-time or last-resort).
    pub kyber_pre_key_id: KeyId,
    /// The Kyber ciphertext (`0x08` || 1568 bytes).
    pub kyber_ciphertext: Vec<u8>,
    /// The initiator's ephemeral (base) key.
    pub base_key: PublicKey,
    /// The initiator's identity key.
    pub identity_key: PublicKey,
}

/// A decoded `PreKeySignalMessage`.
#[derive(Debug, Clone)]
pub struct PreKeyMessage {
    /// The PQXDH fields.
    pub fields: PreKeyFields,
    /// The `SignalMessage` inside.
    pub message: Vec<u8>,
}

fn key_id(v: Option<u32>) -> Result<KeyId, DecodeError> {
    KeyId::from_u32(v.ok_or(DecodeError::Truncated)?).map_err(|_| DecodeError::BadKeyId)
}

impl PreKeyMessage {
    /// Decodes a `PreKeySignalMessage`. A version-3 (X3DH, no Kyber) message is refused, as
    /// libsignal 0.103 refuses it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let body = check_version(bytes)?;
        let p = PreKeySignalMessageProto::decode(body).map_err(|_| DecodeError::Truncated)?;
        let key = |v: Option<Vec<u8>>| -> Result<PublicKey, DecodeError> {
            PublicKey::from_exact(v.as_deref().ok_or(DecodeError::Truncated)?)
                .map_err(|_| DecodeError::BadKey)
        };
        let pre_key_id = match p.pre_key_id {
            Some(id) => Some(KeyId::from_u32(id).map_err(|_| DecodeError::BadKeyId)?),
            None => None,
        };
        let fields = PreKeyFields {
            registration_id: p.registration_id.unwrap_or(0),
            pre_key_id,
            signed_pre_key_id: key_id(p.signed_pre_key_id)?,
            kyber_pre_key_id: key_id(p.kyber_pre_key_id)?,
            kyber_ciphertext: p.kyber_ciphertext.ok_or(DecodeError::Truncated)?,
            base_key: key(p.base_key)?,
            identity_key: key(p.identity_key)?,
        };
        let message = p.message.ok_or(DecodeError::Truncated)?;
        RatchetMessage::decode(&message)?;
        Ok(Self { fields, message })
    }
}

/// Wraps a `SignalMessage` in a `PreKeySignalMessage`.
pub(crate) fn encode_prekey(f: &PreKeyFields, message: Vec<u8>) -> Vec<u8> {
    let p = PreKeySignalMessageProto {
        pre_key_id: f.pre_key_id.map(|k| k.get()),
        base_key: Some(f.base_key.serialize().to_vec()),
        identity_key: Some(f.identity_key.serialize().to_vec()),
        message: Some(message),
        registration_id: Some(f.registration_id),
        signed_pre_key_id: Some(f.signed_pre_key_id.get()),
        kyber_pre_key_id: Some(f.kyber_pre_key_id.get()),
        kyber_ciphertext: Some(f.kyber_ciphertext.clone()),
    };
    let mut out = Vec::with_capacity(1 + p.encoded_len());
    out.push(VERSION_BYTE);
    p.encode_raw(&mut out);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;

    /// Ratchet key, counter, previous counter, ciphertext, SPQR message.
    type Fields = (Vec<u8>, u32, u32, Vec<u8>, Vec<u8>);

    /// What prost makes of a `SignalMessage` body, with the decoder's own checks after it: the
    /// reference the borrowed reader must agree with.
    fn via_prost(body: &[u8]) -> Option<Fields> {
        let p = SignalMessageProto::decode(body).ok()?;
        let key = p.ratchet_key?;
        PublicKey::from_exact(&key).ok()?;
        let pq = p.pq_ratchet.unwrap_or_default();
        (pq.len() <= MAX_PQ_RATCHET_LEN).then_some(())?;
        Some((key, p.counter?, p.previous_counter.unwrap_or(0), p.ciphertext?, pq))
    }

    fn via_ours(body: &[u8]) -> Option<Fields> {
        let mut bytes = vec![VERSION_BYTE];
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(&[0u8; MAC_LEN]);
        let m = RatchetMessage::decode(&bytes).ok()?;
        Some((
            m.ratchet_key.serialize().to_vec(),
            m.counter,
            m.previous_counter,
            m.ciphertext.to_vec(),
            m.pq_ratchet.to_vec(),
        ))
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A field of tag 1-7 in wire type 0, 1, 2 or 5, sometimes with a wrong or oversized value.
    fn field() -> impl Strategy<Value = Vec<u8>> {
        (1u64..8, prop_oneof![Just(0u64), Just(1), Just(2), Just(5)], any::<u64>(), any::<bool>(), 0usize..40)
            .prop_map(|(tag, wt, v, key_like, len)| {
                let mut out = Vec::new();
                varint((tag << 3) | wt, &mut out);
                match wt {
                    0 => varint(v, &mut out),
                    1 => out.extend_from_slice(&v.to_le_bytes()),
                    5 => out.extend_from_slice(&(v as u32).to_le_bytes()),
                    _ => {
                        let data: Vec<u8> = if key_like && tag == 1 {
                            let mut k = vec![0x05];
                            k.extend_from_slice(&[9u8; 32]);
                            k
                        } else {
                            (0..len).map(|i| (v >> (i % 8)) as u8).collect()
                        };
                        varint(data.len() as u64, &mut out);
                        out.extend_from_slice(&data);
                    }
                }
                out
            })
    }

    proptest! {
        /// On well-formed protobuf (any mix of fields, repeats, unknown fields and wrong wire
        /// types), the borrowed reader decodes exactly what prost decodes.
        #[test]
        fn borrowed_reader_agrees_with_prost(fields in proptest::collection::vec(field(), 0..8)) {
            let body: Vec<u8> = fields.concat();
            prop_assert_eq!(via_ours(&body), via_prost(&body));
        }

        /// The same around a valid message: its fields in any order, mixed with the random ones
        /// (repeats of known fields, unknown fields, wrong wire types).
        #[test]
        fn borrowed_reader_agrees_around_valid_messages(
            extra in proptest::collection::vec(field(), 0..6),
            counter in any::<u32>(),
            ct in proptest::collection::vec(any::<u8>(), 0..64),
            pq in proptest::collection::vec(any::<u8>(), 0..64),
            order in any::<u64>(),
        ) {
            let plain = extra.is_empty();
            let mut fields = extra;
            let mut f = vec![0x0a, 33, 0x05];
            f.extend_from_slice(&[9u8; 32]);
            fields.push(f);
            let mut f = vec![0x10];
            varint(u64::from(counter), &mut f);
            fields.push(f);
            let mut f = vec![0x22];
            varint(ct.len() as u64, &mut f);
            f.extend_from_slice(&ct);
            fields.push(f);
            let mut f = vec![0x2a];
            varint(pq.len() as u64, &mut f);
            f.extend_from_slice(&pq);
            fields.push(f);
            let n = fields.len();
            for i in 0..n {
                fields.swap(i, (order.rotate_left(i as u32 * 7) as usize) % n);
            }
            let body: Vec<u8> = fields.concat();
            let theirs = via_prost(&body);
            // Without extra fields the message is valid, whatever the order.
            prop_assert!(!plain || theirs.is_some());
            prop_assert_eq!(via_ours(&body), theirs);
        }

        /// On any bytes, what the borrowed reader accepts prost accepts with the same fields.
        #[test]
        fn borrowed_reader_accepts_nothing_prost_refuses(body in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Some(ours) = via_ours(&body) {
                prop_assert_eq!(Some(ours), via_prost(&body));
            }
        }
    }
}
