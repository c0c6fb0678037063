//! Hush's compact, versioned binary message encodings. The first byte is
//! `(WIRE_VERSION << 4) | kind`; integers are little-endian; public keys take their 33-byte
//! serialized form. Decoders check every length against a cap and never panic (fuzzed by
//! `protocol/fuzz`).
//!
//! Ratchet message (`kind` 1), 42-byte header then the AEAD output:
//! `b0 | ratchet key (33) | counter u32 | previous counter u32 | ciphertext || tag (16)`.
//!
//! Pre-key message (`kind` 2), sent until the initiator first hears back:
//! `b0 | registration id u32 | flags u8 (bit 0: one-time pre-key id follows) | [pre-key id u32]
//!  | signed pre-key id u32 | base key (33) | identity key (33) | ratchet message`.
//!
//! The AEAD associated data is the pre-key prefix (if any), the ratchet header, then the sender's
//! and the receiver's identity keys, so every byte of a message is authenticated.

use super::consts::{MAX_MESSAGE_LEN, TAG_LEN, WIRE_VERSION};
use super::error::DecodeError;
use super::keys::{KeyId, PublicKey, EC_PUBLIC_KEY_LEN};

/// Kind of an encoded message (low nibble of its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A Double Ratchet message.
    Ratchet = 1,
    /// A pre-key message: X3DH fields plus a ratchet message.
    PreKey = 2,
    /// A Sender Key group message.
    SenderKey = 3,
    /// A Sender Key distribution message (sent inside a pairwise session).
    SenderKeyDistribution = 4,
}

impl MessageKind {
    pub(crate) fn first_byte(self) -> u8 {
        (WIRE_VERSION << 4) | self as u8
    }
}

/// Reads the kind of an encoded message.
pub fn message_kind(bytes: &[u8]) -> Result<MessageKind, DecodeError> {
    let b0 = *bytes.first().ok_or(DecodeError::Truncated)?;
    if b0 >> 4 != WIRE_VERSION {
        return Err(DecodeError::BadVersion);
    }
    match b0 & 0x0f {
        1 => Ok(MessageKind::Ratchet),
        2 => Ok(MessageKind::PreKey),
        3 => Ok(MessageKind::SenderKey),
        4 => Ok(MessageKind::SenderKeyDistribution),
        _ => Err(DecodeError::BadKind),
    }
}

/// A cursor that refuses to read past the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn key(&mut self) -> Result<PublicKey, DecodeError> {
        PublicKey::from_exact(self.take(EC_PUBLIC_KEY_LEN)?).map_err(|_| DecodeError::BadKey)
    }

    pub(crate) fn key_id(&mut self) -> Result<KeyId, DecodeError> {
        KeyId::from_u32(self.u32()?).map_err(|_| DecodeError::BadKeyId)
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }
}

/// Length of a ratchet message header.
pub const RATCHET_HEADER_LEN: usize = 1 + EC_PUBLIC_KEY_LEN + 4 + 4;

/// A decoded ratchet message, borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct RatchetMessage<'a> {
    /// The sender's current ratchet public key.
    pub ratchet_key: PublicKey,
    /// Index of this message in the sender's chain.
    pub counter: u32,
    /// Length of the sender's previous sending chain.
    pub previous_counter: u32,
    /// The encoded header (authenticated as associated data).
    pub header: &'a [u8],
    /// Ciphertext and tag.
    pub ciphertext: &'a [u8],
}

impl<'a> RatchetMessage<'a> {
    /// Decodes a ratchet message.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong);
        }
        if message_kind(bytes)? != MessageKind::Ratchet {
            return Err(DecodeError::BadKind);
        }
        let mut r = Reader::new(bytes);
        r.u8()?;
        let ratchet_key = r.key()?;
        let counter = r.u32()?;
        let previous_counter = r.u32()?;
        let header = bytes.get(..r.pos()).ok_or(DecodeError::Truncated)?;
        let ciphertext = r.rest();
        if ciphertext.len() < TAG_LEN {
            return Err(DecodeError::Truncated);
        }
        Ok(Self { ratchet_key, counter, previous_counter, header, ciphertext })
    }
}

/// Writes a ratchet header.
pub(crate) fn write_ratchet_header(
    out: &mut Vec<u8>,
    ratchet_key: &PublicKey,
    counter: u32,
    previous_counter: u32,
) {
    out.push(MessageKind::Ratchet.first_byte());
    out.extend_from_slice(&ratchet_key.serialize());
    out.extend_from_slice(&counter.to_le_bytes());
    out.extend_from_slice(&previous_counter.to_le_bytes());
}

/// The X3DH fields the initiator repeats until it hears back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PreKeyFields {
    /// The initiator's registration id.
    pub registration_id: u32,
    /// The one-time pre-key used, if any.
    pub pre_key_id: Option<KeyId>,
    /// The signed pre-key used.
    pub signed_pre_key_id: KeyId,
    /// The initiator's X3DH ephemeral (base) key.
    pub base_key: PublicKey,
    /// The initiator's identity key.
    pub identity_key: PublicKey,
}

/// A decoded pre-key message.
#[derive(Debug, Clone, Copy)]
pub struct PreKeyMessage<'a> {
    /// The X3DH fields.
    pub fields: PreKeyFields,
    /// The encoded X3DH prefix (authenticated as associated data).
    pub prefix: &'a [u8],
    /// The ratchet message inside.
    pub message: RatchetMessage<'a>,
}

impl<'a> PreKeyMessage<'a> {
    /// Decodes a pre-key message.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong);
        }
        if message_kind(bytes)? != MessageKind::PreKey {
            return Err(DecodeError::BadKind);
        }
        let mut r = Reader::new(bytes);
        r.u8()?;
        let registration_id = r.u32()?;
        let flags = r.u8()?;
        if flags & !1 != 0 {
            return Err(DecodeError::BadFlags);
        }
        let pre_key_id = if flags & 1 == 1 { Some(r.key_id()?) } else { None };
        let signed_pre_key_id = r.key_id()?;
        let base_key = r.key()?;
        let identity_key = r.key()?;
        let prefix = bytes.get(..r.pos()).ok_or(DecodeError::Truncated)?;
        let message = RatchetMessage::decode(r.rest())?;
        Ok(Self {
            fields: PreKeyFields { registration_id, pre_key_id, signed_pre_key_id, base_key, identity_key },
            prefix,
            message,
        })
    }
}

/// Writes a pre-key prefix.
pub(crate) fn write_prekey_prefix(out: &mut Vec<u8>, f: &PreKeyFields) {
    out.push(MessageKind::PreKey.first_byte());
    out.extend_from_slice(&f.registration_id.to_le_bytes());
    match f.pre_key_id {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.get().to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&f.signed_pre_key_id.get().to_le_bytes());
    out.extend_from_slice(&f.base_key.serialize());
    out.extend_from_slice(&f.identity_key.serialize());
}

/// Largest associated data: pre-key prefix, ratchet header, two identity keys.
pub(crate) const MAX_AD_LEN: usize = 1 + 4 + 1 + 4 + 4 + 33 + 33 + RATCHET_HEADER_LEN + 66;

/// Builds the associated data on the stack.
pub(crate) fn associated_data<'b>(
    buf: &'b mut [u8; MAX_AD_LEN],
    prefix: &[u8],
    header: &[u8],
    sender: &PublicKey,
    receiver: &PublicKey,
) -> Result<&'b [u8], DecodeError> {
    let p = prefix.len();
    let n = p + header.len();
    let total = n + 66;
    let dst = buf.get_mut(..total).ok_or(DecodeError::TooLong)?;
    dst[..p].copy_from_slice(prefix);
    dst[p..n].copy_from_slice(header);
    dst[n..n + 33].copy_from_slice(&sender.serialize());
    dst[n + 33..].copy_from_slice(&receiver.serialize());
    Ok(dst)
}
