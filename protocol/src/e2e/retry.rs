//! Retry requests: libsignal's `DecryptionErrorMessage`, sent unencrypted as a
//! `PlaintextContent` (envelope type `plaintext`, Signal's `PLAINTEXT_CONTENT` = 8).
//!
//! A device that cannot decrypt a message tells the sending device which message failed, so the
//! sender can start a fresh session and send it again. The formats below were established with
//! `@signalapp/libsignal-client` 0.103.0 (`protocol/tools/libsignal-vectors/gen-retry.mjs`,
//! output and probes in `protocol/tests/vectors/libsignal/retry.json`):
//!
//! - `DecryptionErrorMessage` (protobuf): `ratchet_key` = 1 (bytes, the 33-byte public ratchet
//!   key of the failed `SignalMessage`/`PreKeySignalMessage`; absent for a sender-key message),
//!   `timestamp` = 2 (uint64, the failed message's timestamp; required: libsignal refuses a
//!   message without it), `device_id` = 3 (uint32, the *original sender's* device id —
//!   `forOriginal(bytes, type, timestamp, originalSenderDeviceId)`; 0 when absent). libsignal
//!   writes all three in that order and refuses a ratchet key that is not a public key. It also
//!   refuses to make one for a plaintext content ("it is not encrypted").
//! - `PlaintextContent`: `0xC0`, then a `Content` whose only field libsignal writes is
//!   `decryptionErrorMessage` = 8, then exactly one `0x80` (no zeros: libsignal refuses a
//!   `PlaintextContent` with zero padding after the `0x80`, or without the `0x80`). libsignal
//!   accepts and keeps an unknown `Content` field (Hush's extension, field 1000) before the
//!   `0x80`, and refuses a `Content` without `decryptionErrorMessage`.
//!
//! Hush puts the failed message's Hush id in the extension (`message_id`), because the timestamp
//! a Hush recipient knows is the node's, which the sender is never told; a request without it
//! (from a libsignal app) still makes the sender start a fresh session.

use super::content::{Content, ContentError, HushExtension, PAD_BOUNDARY};
use super::keys::PublicKey;
use super::message::{PreKeyMessage, RatchetMessage};
use crate::content_type::ContentType;

/// First byte of a `PlaintextContent` (libsignal's "plaintext context identifier").
pub const PLAINTEXT_CONTENT_BYTE: u8 = 0xC0;
/// Largest `PlaintextContent` Hush decodes: a retry request is under 100 bytes, the extension
/// included.
pub const MAX_PLAINTEXT_CONTENT_LEN: usize = 1024;

#[derive(Clone, PartialEq, prost::Message)]
struct DemWire {
    #[prost(bytes = "vec", optional, tag = "1")]
    ratchet_key: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "2")]
    timestamp: Option<u64>,
    #[prost(uint32, optional, tag = "3")]
    device_id: Option<u32>,
}
const DEM_KNOWN: [u32; 3] = [1, 2, 3];

/// libsignal's `DecryptionErrorMessage` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptionErrorMessage {
    /// The ratchet key of the message that failed, if it was a pairwise message that parsed.
    pub ratchet_key: Option<PublicKey>,
    /// The failed message's timestamp, ms since the Unix epoch.
    pub timestamp: u64,
    /// The device that sent the failed message.
    pub device_id: u32,
    /// Fields Hush does not know, raw (kept on re-encoding).
    pub unknown: Vec<u8>,
}

impl DecryptionErrorMessage {
    /// The request for `original` (a ciphertext of type `content_type`) from device
    /// `original_sender_device`, sent at `timestamp`: the ratchet key is read from a pre-key or
    /// ratchet message when it parses.
    pub fn for_original(
        original: &[u8],
        content_type: ContentType,
        timestamp: u64,
        original_sender_device: u32,
    ) -> Self {
        let prekey = || {
            let m = PreKeyMessage::decode(original).ok()?;
            RatchetMessage::decode(&m.message).ok().map(|r| r.ratchet_key)
        };
        let ratchet = || RatchetMessage::decode(original).ok().map(|m| m.ratchet_key);
        let ratchet_key = match content_type {
            ContentType::PreKey => prekey(),
            ContentType::Ciphertext => ratchet(),
            ContentType::Unknown => prekey().or_else(ratchet),
            ContentType::SenderKey | ContentType::Plaintext | ContentType::Event => None,
        };
        Self { ratchet_key, timestamp, device_id: original_sender_device, unknown: Vec::new() }
    }

    /// Decodes one.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() > MAX_PLAINTEXT_CONTENT_LEN {
            return Err(ContentError::TooLong);
        }
        let unknown = super::content::unknown_fields(bytes, &DEM_KNOWN)?;
        let w = <DemWire as prost::Message>::decode(bytes).map_err(|_| ContentError::Protobuf)?;
        let ratchet_key = w
            .ratchet_key
            .map(|k| PublicKey::from_exact(&k).map_err(|_| ContentError::InvalidField("ratchet_key")))
            .transpose()?;
        let timestamp = w.timestamp.ok_or(ContentError::MissingField("timestamp"))?;
        Ok(Self { ratchet_key, timestamp, device_id: w.device_id.unwrap_or(0), unknown })
    }

    /// Encodes it as libsignal does (all three fields, in field order).
    pub fn encode(&self) -> Vec<u8> {
        let w = DemWire {
            ratchet_key: self.ratchet_key.map(|k| k.serialize().to_vec()),
            timestamp: Some(self.timestamp),
            device_id: Some(self.device_id),
        };
        let mut out = prost::Message::encode_to_vec(&w);
        out.extend_from_slice(&self.unknown);
        out
    }
}

/// libsignal's `PlaintextContent`: a `Content` sent without encryption, which must carry a
/// decryption error (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaintextContent {
    /// The content (its `decryption_error_message` is set).
    pub content: Content,
}

impl PlaintextContent {
    /// A retry request: `dem` with Hush's extension `hush` (if any).
    pub fn retry_request(dem: &DecryptionErrorMessage, hush: Option<HushExtension>) -> Self {
        Self { content: Content { decryption_error_message: Some(dem.encode()), hush, ..Content::default() } }
    }

    /// The decryption error it carries.
    pub fn decryption_error(&self) -> Result<DecryptionErrorMessage, ContentError> {
        let b = self.content.decryption_error_message.as_deref();
        DecryptionErrorMessage::decode(b.ok_or(ContentError::MissingField("decryptionErrorMessage"))?)
    }

    /// `0xC0 || Content || 0x80`.
    pub fn encode(&self) -> Vec<u8> {
        let body = self.content.encode();
        let mut out = Vec::with_capacity(body.len() + 2);
        out.push(PLAINTEXT_CONTENT_BYTE);
        out.extend_from_slice(&body);
        out.push(PAD_BOUNDARY);
        out
    }

    /// Decodes one; as libsignal, refuses a missing `0x80`, zero padding after it, and a content
    /// without a decryption error (whose bytes must decode too).
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        if bytes.len() > MAX_PLAINTEXT_CONTENT_LEN {
            return Err(ContentError::TooLong);
        }
        let body = match bytes {
            [PLAINTEXT_CONTENT_BYTE, body @ .., PAD_BOUNDARY] => body,
            _ => return Err(ContentError::NotPlaintextContent),
        };
        let out = Self { content: Content::decode(body)? };
        out.decryption_error()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::e2e::KeyPair;

    #[test]
    fn roundtrip_and_refusals() {
        let key = *KeyPair::generate(&mut rand_core::OsRng).public_key();
        let dem =
            DecryptionErrorMessage { ratchet_key: Some(key), timestamp: 7, device_id: 2, unknown: vec![] };
        let hush = HushExtension { message_id: Some([3; 16]), ..HushExtension::default() };
        let pc = PlaintextContent::retry_request(&dem, Some(hush.clone()));
        let bytes = pc.encode();
        assert_eq!((bytes[0], *bytes.last().unwrap()), (0xc0, 0x80));
        let back = PlaintextContent::decode(&bytes).unwrap();
        assert_eq!(back, pc);
        assert_eq!(back.decryption_error().unwrap(), dem);
        assert_eq!(back.content.hush, Some(hush));
        assert_eq!(
            PlaintextContent::decode(&bytes[..bytes.len() - 1]),
            Err(ContentError::NotPlaintextContent)
        );
        let mut zeros = bytes.clone();
        zeros.push(0);
        assert_eq!(PlaintextContent::decode(&zeros), Err(ContentError::NotPlaintextContent));
        assert_eq!(
            PlaintextContent::decode(&[0xc0, 0x80]),
            Err(ContentError::MissingField("decryptionErrorMessage"))
        );
        assert_eq!(
            DecryptionErrorMessage::decode(&[0x18, 0x01]),
            Err(ContentError::MissingField("timestamp"))
        );
        assert!(DecryptionErrorMessage::decode(&[0x0a, 0x01, 0x05, 0x10, 0x01]).is_err());
    }
}
