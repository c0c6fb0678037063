//! What is inside every ciphertext: Signal's `Content` protobuf, padded as Signal's apps pad.
//!
//! Field numbers are Signal's (`SignalService.proto`, e.g. signalapp/Signal-Desktop
//! `protos/SignalService.proto` and Signal-Android `libsignal-service/src/main/protowire/
//! SignalService.proto`):
//!
//! - `Content`: `dataMessage` = 1, `syncMessage` = 2, `senderKeyDistributionMessage` = 7 (bytes),
//!   `decryptionErrorMessage` = 8 (bytes). Signal also uses 3-6 and 9-11 (calls, null, receipts,
//!   typing, stories, PNI signatures, edits); Hush keeps them as unknown fields.
//! - `DataMessage`: `body` = 1 (string), `timestamp` = 7 (uint64).
//! - `SyncMessage`: `sent` = 1; `SyncMessage.Sent`: `timestamp` = 2, `message` = 3 (a
//!   `DataMessage`). Its destination fields (`destination` = 1, `destinationUuid` /
//!   `destinationServiceId` = 7) name a Signal service id (an ACI UUID), which a Hush user id is
//!   not, so Hush never writes them: the recipient of a sync copy goes in the extension.
//!
//! **Hush's extension** is one field of `Content`, number [`HUSH_EXTENSION_FIELD`] (1000; Signal's
//! `Content` numbers stop at 11), holding a [`HushExtension`] message: `group` = 1 (string, the
//! group a sender-key distribution is for), `epoch` = 2 (uint64, the group epoch it was made for),
//! `sent_to` = 3 (string, the Hush user a sync copy's original went to), `message_id` = 4 (16
//! bytes, the Hush message id a retry request is about). Signal's apps ignore it (protobuf
//! readers skip unknown fields; libsignal 0.103 was seen to accept and keep it, see
//! `tests/vectors/libsignal/retry.json`).
//!
//! **Unknown fields are kept.** prost keeps none, so each level is decoded twice: once by prost
//! into its known fields (which checks their wire types and UTF-8), once by [`unknown_fields`],
//! which copies every field with another number, byte for byte, into `unknown`. Encoding writes
//! the known fields (in field order) then `unknown`, so a decode/encode round trip keeps every
//! field (known ones may move ahead of unknown ones; protobuf readers accept any order). A field
//! given twice keeps the last (a repeated message field is not merged). Groups (wire types 3/4,
//! unused by Signal) are refused.
//!
//! **Padding** (Signal-Android `PushTransportDetails.getPaddedMessageBody`, the same in
//! Signal-Desktop's `padMessage`): the content, `0x80`, then zeros, to a length of `160·k − 1`
//! bytes with the smallest `k` that leaves room for the `0x80` — one less than a multiple of 160,
//! so that the cipher's own one byte of CBC padding makes the encrypted length a multiple of 160
//! ("the +1 -1 here is to make sure the Cipher has room to add one padding byte"). So 0 to 158
//! content bytes pad to 159, 159 to 318 to 319, and so on. [`unpad`] strips trailing zeros then
//! the `0x80` and, unlike Signal's apps (which log and return the input), refuses anything else
//! with a typed error; it does not insist on the `160·k − 1` length, so another padding length
//! from another app is read.

use zeroize::Zeroizing;

use super::consts::MAX_PLAINTEXT_LEN;

/// Padded contents are `PAD_BLOCK · k − 1` bytes long (Signal's 160).
pub const PAD_BLOCK: usize = 160;
/// The byte that ends the content and starts the padding.
pub const PAD_BOUNDARY: u8 = 0x80;
/// The field number of Hush's extension in `Content` (unused by Signal, whose numbers stop at 11).
pub const HUSH_EXTENSION_FIELD: u32 = 1000;

/// Why a content, its padding, a retry request or a plaintext content did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// Longer than [`MAX_PLAINTEXT_LEN`].
    #[error("content too long")]
    TooLong,
    /// No `0x80` before the trailing zeros (or nothing at all).
    #[error("bad padding: no 0x80 boundary")]
    MissingPadding,
    /// The last non-zero byte is not `0x80`.
    #[error("bad padding: the last non-zero byte is not 0x80")]
    BadPadding,
    /// The protobuf does not parse (truncated, a wrong wire type, invalid UTF-8, a group…).
    #[error("malformed protobuf")]
    Protobuf,
    /// A field has a value Hush refuses (a message id that is not 16 bytes, a ratchet key that
    /// is not a public key).
    #[error("invalid field {0}")]
    InvalidField(&'static str),
    /// A required field is missing (a retry request's timestamp, a plaintext content's
    /// decryption error).
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A `PlaintextContent` does not start with `0xC0` or does not end with `0x80`.
    #[error("not a plaintext content")]
    NotPlaintextContent,
}

/// Pads `content` as Signal's apps do (see the module docs).
pub fn pad(content: &[u8]) -> Zeroizing<Vec<u8>> {
    let len = (content.len() + 2).div_ceil(PAD_BLOCK) * PAD_BLOCK - 1;
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(content);
    out.push(PAD_BOUNDARY);
    out.resize(len, 0);
    out
}

/// Strips the padding: trailing zeros, then one `0x80`.
pub fn unpad(padded: &[u8]) -> Result<&[u8], ContentError> {
    let end = padded.iter().rposition(|b| *b != 0).ok_or(ContentError::MissingPadding)?;
    if padded[end] != PAD_BOUNDARY {
        return Err(ContentError::BadPadding);
    }
    Ok(&padded[..end])
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ContentError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(ContentError::Protobuf)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ContentError::Protobuf)
}

/// The fields of the protobuf message `bytes` whose numbers are not in `known`, as their raw
/// bytes (key included), in order. Refuses a malformed message, field number 0 and groups.
pub fn unknown_fields(bytes: &[u8], known: &[u32]) -> Result<Vec<u8>, ContentError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        let key = varint(bytes, &mut pos)?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(ContentError::Protobuf);
        }
        let len = match key & 7 {
            0 => {
                varint(bytes, &mut pos)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(bytes, &mut pos)?).map_err(|_| ContentError::Protobuf)?,
            5 => 4,
            _ => return Err(ContentError::Protobuf),
        };
        pos = pos.checked_add(len).filter(|end| *end <= bytes.len()).ok_or(ContentError::Protobuf)?;
        if !known.iter().any(|k| u64::from(*k) == number) {
            out.extend_from_slice(&bytes[start..pos]);
        }
    }
    Ok(out)
}

/// Decodes one level: its known fields by prost, the rest kept raw.
fn decode_level<W: prost::Message + Default>(
    bytes: &[u8],
    known: &[u32],
) -> Result<(W, Vec<u8>), ContentError> {
    let unknown = unknown_fields(bytes, known)?;
    let wire = W::decode(bytes).map_err(|_| ContentError::Protobuf)?;
    Ok((wire, unknown))
}

fn encode_level<W: prost::Message>(wire: &W, unknown: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.encoded_len() + unknown.len());
    wire.encode_raw(&mut out);
    out.extend_from_slice(unknown);
    out
}

/// Known fields of `Content`; nested messages are read as bytes and decoded level by level.
#[derive(Clone, PartialEq, prost::Message)]
struct ContentWire {
    #[prost(bytes = "vec", optional, tag = "1")]
    data_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    sync_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "7")]
    sender_key_distribution_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "8")]
    decryption_error_message: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "1000")]
    hush: Option<Vec<u8>>,
}
const CONTENT_KNOWN: [u32; 5] = [1, 2, 7, 8, HUSH_EXTENSION_FIELD];

impl Drop for ContentWire {
    // The wire form holds a copy of the sender key (a chain key) and of the texts.
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for f in [
            &mut self.data_message,
            &mut self.sync_message,
            &mut self.sender_key_distribution_message,
            &mut self.hush,
        ] {
            if let Some(v) = f.as_mut() {
                v.zeroize();
            }
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct DataMessageWire {
    #[prost(string, optional, tag = "1")]
    body: Option<String>,
    #[prost(uint64, optional, tag = "7")]
    timestamp: Option<u64>,
}
const DATA_KNOWN: [u32; 2] = [1, 7];

#[derive(Clone, PartialEq, prost::Message)]
struct SyncMessageWire {
    #[prost(bytes = "vec", optional, tag = "1")]
    sent: Option<Vec<u8>>,
}
const SYNC_KNOWN: [u32; 1] = [1];

#[derive(Clone, PartialEq, prost::Message)]
struct SentWire {
    #[prost(uint64, optional, tag = "2")]
    timestamp: Option<u64>,
    #[prost(bytes = "vec", optional, tag = "3")]
    message: Option<Vec<u8>>,
}
const SENT_KNOWN: [u32; 2] = [2, 3];

#[derive(Clone, PartialEq, prost::Message)]
struct HushWire {
    #[prost(string, optional, tag = "1")]
    group: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    epoch: Option<u64>,
    #[prost(string, optional, tag = "3")]
    sent_to: Option<String>,
    #[prost(bytes = "vec", optional, tag = "4")]
    message_id: Option<Vec<u8>>,
}
const HUSH_KNOWN: [u32; 4] = [1, 2, 3, 4];

/// Signal's `Content` (see the module docs): what one ciphertext carries.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// `dataMessage` (1): a text.
    pub data_message: Option<DataMessage>,
    /// `syncMessage` (2): a copy for this user's other devices.
    pub sync_message: Option<SyncMessage>,
    /// `senderKeyDistributionMessage` (7): a serialized sender-key distribution (secret).
    pub sender_key_distribution_message: Option<Zeroizing<Vec<u8>>>,
    /// `decryptionErrorMessage` (8): a serialized [`super::retry::DecryptionErrorMessage`].
    pub decryption_error_message: Option<Vec<u8>>,
    /// Hush's extension (field [`HUSH_EXTENSION_FIELD`]).
    pub hush: Option<HushExtension>,
    /// Every other field, raw (kept on re-encoding).
    pub unknown: Vec<u8>,
}

/// Signal's `DataMessage`, the fields Hush reads; the rest are kept raw.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DataMessage {
    /// `body` (1).
    pub body: Option<String>,
    /// `timestamp` (7): when the sender sent it, ms since the Unix epoch.
    pub timestamp: Option<u64>,
    /// Every other field, raw.
    pub unknown: Vec<u8>,
}

/// Signal's `SyncMessage`, the fields Hush reads; the rest are kept raw.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SyncMessage {
    /// `sent` (1): a message this user sent from another device.
    pub sent: Option<SyncSent>,
    /// Every other field, raw.
    pub unknown: Vec<u8>,
}

/// Signal's `SyncMessage.Sent`, the fields Hush reads; the rest (destinations) are kept raw.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SyncSent {
    /// `timestamp` (2).
    pub timestamp: Option<u64>,
    /// `message` (3).
    pub message: Option<DataMessage>,
    /// Every other field, raw.
    pub unknown: Vec<u8>,
}

/// Hush's extension of `Content`: what Signal has no field for.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HushExtension {
    /// `group` (1): the group a sender-key distribution is for.
    pub group: Option<String>,
    /// `epoch` (2): the group epoch the distributed chain was made for.
    pub epoch: Option<u64>,
    /// `sent_to` (3): the user a sync copy's original went to.
    pub sent_to: Option<String>,
    /// `message_id` (4): the Hush message id (16 bytes) a retry request is about.
    pub message_id: Option<[u8; 16]>,
    /// Every other field, raw.
    pub unknown: Vec<u8>,
}

fn opt_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

impl core::fmt::Debug for Content {
    // Texts and keys stay out of logs: only which fields are present and their sizes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Content")
            .field("data_message", &self.data_message)
            .field("sync_message", &self.sync_message)
            .field("skdm_len", &self.sender_key_distribution_message.as_ref().map(|v| v.len()))
            .field("decryption_error_len", &self.decryption_error_message.as_ref().map(Vec::len))
            .field("hush", &self.hush)
            .field("unknown_len", &self.unknown.len())
            .finish()
    }
}

impl core::fmt::Debug for DataMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DataMessage")
            .field("body_len", &opt_len(&self.body))
            .field("timestamp", &self.timestamp)
            .field("unknown_len", &self.unknown.len())
            .finish()
    }
}

impl core::fmt::Debug for SyncMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SyncMessage")
            .field("sent", &self.sent)
            .field("unknown_len", &self.unknown.len())
            .finish()
    }
}

impl core::fmt::Debug for SyncSent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SyncSent")
            .field("timestamp", &self.timestamp)
            .field("message", &self.message)
            .field("unknown_len", &self.unknown.len())
            .finish()
    }
}

impl core::fmt::Debug for HushExtension {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HushExtension")
            .field("group", &self.group)
            .field("epoch", &self.epoch)
            .field("sent_to", &self.sent_to)
            .field("message_id", &self.message_id.map(uuid::Uuid::from_bytes))
            .field("unknown_len", &self.unknown.len())
            .finish()
    }
}

impl DataMessage {
    /// Decodes a `DataMessage`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let (w, unknown): (DataMessageWire, _) = decode_level(bytes, &DATA_KNOWN)?;
        Ok(Self { body: w.body, timestamp: w.timestamp, unknown })
    }

    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let w = DataMessageWire { body: self.body.clone(), timestamp: self.timestamp };
        encode_level(&w, &self.unknown)
    }
}

impl SyncSent {
    /// Decodes a `SyncMessage.Sent`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let (w, unknown): (SentWire, _) = decode_level(bytes, &SENT_KNOWN)?;
        let message = w.message.as_deref().map(DataMessage::decode).transpose()?;
        Ok(Self { timestamp: w.timestamp, message, unknown })
    }

    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let w =
            SentWire { timestamp: self.timestamp, message: self.message.as_ref().map(DataMessage::encode) };
        encode_level(&w, &self.unknown)
    }
}

impl SyncMessage {
    /// Decodes a `SyncMessage`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let (w, unknown): (SyncMessageWire, _) = decode_level(bytes, &SYNC_KNOWN)?;
        let sent = w.sent.as_deref().map(SyncSent::decode).transpose()?;
        Ok(Self { sent, unknown })
    }

    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let w = SyncMessageWire { sent: self.sent.as_ref().map(SyncSent::encode) };
        encode_level(&w, &self.unknown)
    }
}

impl HushExtension {
    /// Decodes Hush's extension.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let (w, unknown): (HushWire, _) = decode_level(bytes, &HUSH_KNOWN)?;
        let message_id = w
            .message_id
            .map(|v| <[u8; 16]>::try_from(v.as_slice()).map_err(|_| ContentError::InvalidField("message_id")))
            .transpose()?;
        Ok(Self { group: w.group, epoch: w.epoch, sent_to: w.sent_to, message_id, unknown })
    }

    /// Encodes it.
    pub fn encode(&self) -> Vec<u8> {
        let w = HushWire {
            group: self.group.clone(),
            epoch: self.epoch,
            sent_to: self.sent_to.clone(),
            message_id: self.message_id.map(|m| m.to_vec()),
        };
        encode_level(&w, &self.unknown)
    }
}

impl Content {
    /// Decodes an (unpadded) `Content`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() > MAX_PLAINTEXT_LEN {
            return Err(ContentError::TooLong);
        }
        let (mut w, unknown): (ContentWire, _) = decode_level(bytes, &CONTENT_KNOWN)?;
        Ok(Self {
            data_message: w.data_message.as_deref().map(DataMessage::decode).transpose()?,
            sync_message: w.sync_message.as_deref().map(SyncMessage::decode).transpose()?,
            sender_key_distribution_message: w.sender_key_distribution_message.take().map(Zeroizing::new),
            decryption_error_message: w.decryption_error_message.take(),
            hush: w.hush.as_deref().map(HushExtension::decode).transpose()?,
            unknown,
        })
    }

    /// Encodes it (unpadded).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let w = ContentWire {
            data_message: self.data_message.as_ref().map(DataMessage::encode),
            sync_message: self.sync_message.as_ref().map(SyncMessage::encode),
            sender_key_distribution_message: self
                .sender_key_distribution_message
                .as_ref()
                .map(|v| v.to_vec()),
            decryption_error_message: self.decryption_error_message.clone(),
            hush: self.hush.as_ref().map(HushExtension::encode),
        };
        Zeroizing::new(encode_level(&w, &self.unknown))
    }

    /// Decodes a padded `Content` (what a ciphertext decrypts to).
    pub fn decode_padded(padded: &[u8]) -> Result<Self, ContentError> {
        if padded.len() > MAX_PLAINTEXT_LEN {
            return Err(ContentError::TooLong);
        }
        Self::decode(unpad(padded)?)
    }

    /// Encodes and pads it (what goes into a ciphertext).
    pub fn encode_padded(&self) -> Zeroizing<Vec<u8>> {
        pad(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn padding_lengths_follow_signal() {
        // 160·k − 1, with room for the 0x80.
        for (n, want) in
            [(0, 159), (1, 159), (157, 159), (158, 159), (159, 319), (160, 319), (318, 319), (319, 479)]
        {
            let content = vec![0x2a; n];
            let p = pad(&content);
            assert_eq!(p.len(), want, "{n} bytes");
            assert_eq!(p[n], PAD_BOUNDARY);
            assert!(p[n + 1..].iter().all(|b| *b == 0));
            assert_eq!(unpad(&p).unwrap(), &content[..]);
        }
    }

    #[test]
    fn bad_padding_is_a_typed_error() {
        assert_eq!(unpad(&[]), Err(ContentError::MissingPadding));
        assert_eq!(unpad(&[0, 0, 0]), Err(ContentError::MissingPadding));
        assert_eq!(unpad(&[1, 2, 3, 0, 0]), Err(ContentError::BadPadding));
        assert_eq!(unpad(&[0x80, 0x01]), Err(ContentError::BadPadding));
        // Only the last 0x80 is the boundary; another length than 160·k − 1 is read too.
        assert_eq!(unpad(&[0x80, 0x80, 0]).unwrap(), &[0x80]);
        assert_eq!(unpad(&[0x80]).unwrap(), &[] as &[u8]);
        assert_eq!(Content::decode_padded(&[0x0a, 0x00]), Err(ContentError::BadPadding));
    }

    #[test]
    fn fields_use_signal_numbers() {
        let c = Content {
            data_message: Some(DataMessage { body: Some("hi".into()), timestamp: Some(5), unknown: vec![] }),
            ..Content::default()
        };
        // Content.dataMessage (1, length-delimited) { body (1) "hi", timestamp (7) 5 }.
        assert_eq!(&c.encode()[..], &[0x0a, 0x06, 0x0a, 0x02, b'h', b'i', 0x38, 0x05]);
        let h = Content {
            hush: Some(HushExtension { epoch: Some(1), ..HushExtension::default() }),
            sender_key_distribution_message: Some(Zeroizing::new(vec![9])),
            ..Content::default()
        };
        // senderKeyDistributionMessage (7), then field 1000 (key 8002 = c2 3e) { epoch (2) 1 }.
        assert_eq!(&h.encode()[..], &[0x3a, 0x01, 0x09, 0xc2, 0x3e, 0x02, 0x10, 0x01]);
    }

    #[test]
    fn unknown_fields_survive_at_every_level() {
        // Content { dataMessage { body "x", attachments(2) "a", timestamp 1 }, typingMessage(6)
        // { timestamp 3 }, syncMessage { sent { destinationServiceId(7) "u", message { body
        // "y" } }, read(5) "r" }, field 1000 { group "g", field 9 = 7 }, field 99 fixed32 }.
        let data = [0x0a, 0x01, b'x', 0x12, 0x01, b'a', 0x38, 0x01];
        let sent = [0x3a, 0x01, b'u', 0x1a, 0x03, 0x0a, 0x01, b'y'];
        let mut sync = vec![0x0a, sent.len() as u8];
        sync.extend_from_slice(&sent);
        sync.extend_from_slice(&[0x2a, 0x01, b'r']);
        let hush = [0x0a, 0x01, b'g', 0x48, 0x07];
        let mut bytes = vec![0x0a, data.len() as u8];
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&[0x32, 0x02, 0x08, 0x03]);
        bytes.extend_from_slice(&[0x12, sync.len() as u8]);
        bytes.extend_from_slice(&sync);
        bytes.extend_from_slice(&[0xc2, 0x3e, hush.len() as u8]);
        bytes.extend_from_slice(&hush);
        bytes.extend_from_slice(&[0x9d, 0x06, 1, 2, 3, 4]);
        let c = Content::decode(&bytes).unwrap();
        let d = c.data_message.as_ref().unwrap();
        assert_eq!(
            (d.body.as_deref(), d.timestamp, &d.unknown[..]),
            (Some("x"), Some(1), &[0x12, 0x01, b'a'][..])
        );
        assert_eq!(c.unknown, [0x32, 0x02, 0x08, 0x03, 0x9d, 0x06, 1, 2, 3, 4]);
        let s = c.sync_message.as_ref().unwrap();
        assert_eq!(s.unknown, [0x2a, 0x01, b'r']);
        let sent = s.sent.as_ref().unwrap();
        assert_eq!(sent.unknown, [0x3a, 0x01, b'u']);
        assert_eq!(sent.message.as_ref().unwrap().body.as_deref(), Some("y"));
        let h = c.hush.as_ref().unwrap();
        assert_eq!((h.group.as_deref(), &h.unknown[..]), (Some("g"), &[0x48, 0x07][..]));
        // Re-encoded, every field is still there, and it decodes to the same value.
        let again = c.encode();
        assert_eq!(again.len(), bytes.len());
        assert_eq!(Content::decode(&again).unwrap(), c);
        assert_eq!(Content::decode_padded(&c.encode_padded()).unwrap(), c);
    }

    #[test]
    fn malformed_protobuf_is_refused() {
        for bad in [
            &[0x0a, 0x05, 1][..],            // truncated
            &[0x08, 0x01],                   // dataMessage as a varint: wrong wire type
            &[0x00, 0x01],                   // field 0
            &[0x0b, 0x0c],                   // a group
            &[0x0a, 0x02, 0x0a, 0xff],       // body truncated inside
            &[0x0a, 0x03, 0x0a, 0x01, 0xff], // body not UTF-8
            &[0xc2, 0x3e, 0x02, 0x22, 0x00], // message id of 0 bytes
            &[0x80],                         // truncated key
        ] {
            assert!(Content::decode(bad).is_err(), "{bad:02x?}");
        }
        assert_eq!(Content::decode(&[]).unwrap(), Content::default());
        assert_eq!(Content::decode(&vec![0; MAX_PLAINTEXT_LEN + 1]), Err(ContentError::TooLong));
    }

    #[test]
    fn debug_shows_no_text() {
        let c = Content {
            data_message: Some(DataMessage { body: Some("secret words".into()), ..DataMessage::default() }),
            sender_key_distribution_message: Some(Zeroizing::new(b"chain key".to_vec())),
            ..Content::default()
        };
        let s = format!("{c:?}");
        assert!(!s.contains("secret") && !s.contains("chain"), "{s}");
    }
}
