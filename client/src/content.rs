//! What a ciphertext carries once decrypted: Signal's `Content` protobuf, padded as Signal's
//! apps pad (`hush_protocol::e2e::content`), so a Signal-style libsignal app reads Hush's texts
//! and Hush reads theirs.
//!
//! The SDK's kinds of plaintext map onto Signal's fields:
//!
//! | [`Content`] | Signal `Content` |
//! |---|---|
//! | `Text` (1:1) | `dataMessage { body, timestamp }` |
//! | `GroupText` (inside a Sender Key ciphertext) | `dataMessage { body, timestamp }` |
//! | `SentText` (sync copy to this user's other devices) | `syncMessage.sent { timestamp, message: dataMessage { body, timestamp } }` + extension `sent_to` |
//! | `SenderKeyDistribution` | `senderKeyDistributionMessage` + extension `group`, `epoch` |
//!
//! The extension (`Content` field 1000) carries what Signal has no field for; see
//! `hush_protocol::e2e::content` for its layout. Whether a `dataMessage` is a group text is told
//! by the envelope (a Sender Key ciphertext with a group stamp), not by the plaintext.
//!
//! Reading also accepts the SDK's previous format (version 1: a `0x01` byte, postcard, zeros to
//! a multiple of 64 bytes) for messages stored or in flight across the upgrade. The two cannot be
//! confused: a protobuf never starts with `0x01` (it would be field number 0).

use hush_protocol::e2e::content::{
    Content as SignalContent, ContentError as SignalContentError, DataMessage, HushExtension, SyncMessage,
    SyncSent,
};
use hush_protocol::ids::{GroupId, UserId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use hush_protocol::e2e::content::PAD_BLOCK;

/// Largest text body the SDK sends (the node's envelope cap, 96 KiB, minus room for the
/// protobuf, the padding and the ciphertext overhead).
pub const MAX_BODY_BYTES: usize = 90 * 1024;
/// The previous format's version byte (still read).
const LEGACY_VERSION: u8 = 1;
/// The previous format's padding block.
const LEGACY_PAD_BLOCK: usize = 64;

/// A decrypted plaintext, as the SDK understands it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// A text to the recipient (1:1).
    Text {
        /// The text.
        body: String,
    },
    /// A copy, for this user's other devices, of a text it sent to `to`.
    SentText {
        /// The recipient of the original.
        to: UserId,
        /// The text.
        body: String,
    },
    /// The sender's current sender key of `group`, made for group epoch `epoch`.
    SenderKeyDistribution {
        /// The group.
        group: GroupId,
        /// The epoch the chain was made for.
        epoch: u64,
        /// The encoded distribution message (secret: the chain key).
        skdm: Vec<u8>,
    },
    /// A text to a group (only inside a Sender Key ciphertext).
    GroupText {
        /// The text.
        body: String,
    },
}

impl core::fmt::Debug for Content {
    // Texts and keys stay out of logs and panics; only the kind and sizes show.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Content::Text { body } => write!(f, "Text({} bytes)", body.len()),
            Content::SentText { to, body } => write!(f, "SentText(to {to}, {} bytes)", body.len()),
            Content::SenderKeyDistribution { group, epoch, .. } => {
                write!(f, "SenderKeyDistribution({group}, epoch {epoch})")
            }
            Content::GroupText { body } => write!(f, "GroupText({} bytes)", body.len()),
        }
    }
}

/// Why a plaintext did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The Signal `Content` (or its padding) did not decode.
    #[error("malformed plaintext: {0}")]
    Signal(#[from] SignalContentError),
    /// A plaintext of the previous format did not decode.
    #[error("malformed plaintext (version 1)")]
    Legacy,
    /// The content is too large to send.
    #[error("plaintext too long")]
    TooLong,
}

/// A decoded plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// One of the SDK's kinds; with the Signal `Content` it came in (every field, unknown ones
    /// included), or `None` for a plaintext of the previous format.
    Known(Content, Option<Box<SignalContent>>),
    /// A Signal `Content` the SDK does not interpret (a typing indicator, a receipt, a message
    /// from a newer app…), handed to the application as is.
    Other(Box<SignalContent>),
}

fn data(body: &str, timestamp_ms: u64) -> DataMessage {
    DataMessage { body: Some(body.to_owned()), timestamp: Some(timestamp_ms), unknown: Vec::new() }
}

impl Content {
    /// The Signal `Content` this maps to, stamped `timestamp_ms` where Signal has a timestamp.
    pub fn to_signal(&self, timestamp_ms: u64) -> SignalContent {
        match self {
            Content::Text { body } | Content::GroupText { body } => {
                SignalContent { data_message: Some(data(body, timestamp_ms)), ..SignalContent::default() }
            }
            Content::SentText { to, body } => SignalContent {
                sync_message: Some(SyncMessage {
                    sent: Some(SyncSent {
                        timestamp: Some(timestamp_ms),
                        message: Some(data(body, timestamp_ms)),
                        unknown: Vec::new(),
                    }),
                    unknown: Vec::new(),
                }),
                hush: Some(HushExtension {
                    sent_to: Some(to.as_str().to_owned()),
                    ..HushExtension::default()
                }),
                ..SignalContent::default()
            },
            Content::SenderKeyDistribution { group, epoch, skdm } => SignalContent {
                sender_key_distribution_message: Some(Zeroizing::new(skdm.clone())),
                hush: Some(HushExtension {
                    group: Some(group.as_str().to_owned()),
                    epoch: Some(*epoch),
                    ..HushExtension::default()
                }),
                ..SignalContent::default()
            },
        }
    }

    /// The padded plaintext bytes (Signal `Content`, stamped with the current time).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, ContentError> {
        encode_signal(&self.to_signal(crate::state::now_ms()))
    }

    /// Decodes a padded plaintext of either format. `group` says whether it came in a Sender
    /// Key ciphertext (then a `dataMessage` is a group text).
    pub fn decode(bytes: &[u8], group: bool) -> Result<Decoded, ContentError> {
        if bytes.first() == Some(&LEGACY_VERSION) {
            return Ok(Decoded::Known(decode_legacy(bytes)?, None));
        }
        let sc = SignalContent::decode_padded(bytes)?;
        Ok(match Self::from_signal(&sc, group) {
            Some(c) => Decoded::Known(c, Some(Box::new(sc))),
            None => Decoded::Other(Box::new(sc)),
        })
    }

    /// The SDK kind a Signal `Content` is, if any.
    pub fn from_signal(sc: &SignalContent, group: bool) -> Option<Self> {
        let hush = sc.hush.as_ref();
        if let Some(skdm) = &sc.sender_key_distribution_message {
            let group = GroupId::new(hush?.group.as_deref()?).ok()?;
            return Some(Content::SenderKeyDistribution { group, epoch: hush?.epoch?, skdm: skdm.to_vec() });
        }
        if let Some(sent) = sc.sync_message.as_ref().and_then(|s| s.sent.as_ref()) {
            let to = UserId::new(hush?.sent_to.as_deref()?).ok()?;
            let body = sent.message.as_ref()?.body.clone()?;
            return Some(Content::SentText { to, body });
        }
        let body = sc.data_message.as_ref()?.body.clone()?;
        Some(if group { Content::GroupText { body } } else { Content::Text { body } })
    }
}

/// Pads and encodes a Signal `Content` for encryption, refusing one too large to send.
pub fn encode_signal(sc: &SignalContent) -> Result<Zeroizing<Vec<u8>>, ContentError> {
    let out = sc.encode_padded();
    if out.len() > MAX_BODY_BYTES + 2 * 1024 {
        return Err(ContentError::TooLong);
    }
    Ok(out)
}

/// The previous format: a version byte, postcard, zeros to a multiple of 64 bytes.
fn decode_legacy(bytes: &[u8]) -> Result<Content, ContentError> {
    let body = bytes.get(1..).ok_or(ContentError::Legacy)?;
    let (c, rest): (Content, _) = postcard::take_from_bytes(body).map_err(|_| ContentError::Legacy)?;
    if rest.len() >= LEGACY_PAD_BLOCK || rest.iter().any(|b| *b != 0) {
        return Err(ContentError::Legacy);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn legacy(c: &Content) -> Vec<u8> {
        let mut out = postcard::to_extend(c, vec![LEGACY_VERSION]).unwrap();
        out.resize(out.len().div_ceil(LEGACY_PAD_BLOCK) * LEGACY_PAD_BLOCK, 0);
        out
    }

    fn known(d: Decoded) -> Content {
        match d {
            Decoded::Known(c, _) => c,
            Decoded::Other(sc) => panic!("not a known kind: {sc:?}"),
        }
    }

    #[test]
    fn every_kind_roundtrips_through_signal_content() {
        let kinds = [
            Content::Text { body: "secret words".into() },
            Content::SentText { to: UserId::new("bob").unwrap(), body: "to bob".into() },
            Content::SenderKeyDistribution {
                group: GroupId::new("0123456789abcdef0123456789abcdef").unwrap(),
                epoch: 4,
                skdm: vec![1, 2, 3],
            },
        ];
        for c in kinds {
            let b = c.encode().unwrap();
            assert_eq!(b.len() % PAD_BLOCK, PAD_BLOCK - 1, "{c:?}");
            assert_ne!(b[0], LEGACY_VERSION);
            assert_eq!(known(Content::decode(&b, false).unwrap()), c);
            assert!(!format!("{c:?}").contains("secret"));
        }
        let g = Content::GroupText { body: "to the group".into() };
        assert_eq!(known(Content::decode(&g.encode().unwrap(), true).unwrap()), g);
        // The same bytes in a 1:1 ciphertext are a text.
        assert_eq!(
            known(Content::decode(&g.encode().unwrap(), false).unwrap()),
            Content::Text { body: "to the group".into() }
        );
        let long = Content::Text { body: "x".repeat(1000) };
        assert_eq!(known(Content::decode(&long.encode().unwrap(), false).unwrap()), long);
        assert_eq!(
            Content::Text { body: "x".repeat(MAX_BODY_BYTES + 4096) }.encode(),
            Err(ContentError::TooLong)
        );
    }

    #[test]
    fn the_text_is_in_data_message_body_with_a_timestamp() {
        let b = Content::Text { body: "hi".into() }.encode().unwrap();
        let sc = SignalContent::decode_padded(&b).unwrap();
        let d = sc.data_message.unwrap();
        assert_eq!(d.body.as_deref(), Some("hi"));
        assert!(d.timestamp.unwrap() > 1_700_000_000_000);
        assert!(sc.hush.is_none(), "a plain text needs no extension");
    }

    #[test]
    fn the_previous_format_is_still_read() {
        for c in [
            Content::Text { body: "old".into() },
            Content::SentText { to: UserId::new("bob").unwrap(), body: "old sync".into() },
            Content::SenderKeyDistribution {
                group: GroupId::new("0123456789abcdef0123456789abcdef").unwrap(),
                epoch: 1,
                skdm: vec![9; 90],
            },
            Content::GroupText { body: "old group".into() },
        ] {
            let (b, d) = (legacy(&c), Content::decode(&legacy(&c), true).unwrap());
            assert_eq!(b.len() % LEGACY_PAD_BLOCK, 0);
            assert_eq!(d, Decoded::Known(c, None));
        }
        let mut bad = legacy(&Content::Text { body: "old".into() });
        *bad.last_mut().unwrap() = 1;
        assert_eq!(Content::decode(&bad, false), Err(ContentError::Legacy));
        assert_eq!(Content::decode(&[1], false), Err(ContentError::Legacy));
    }

    #[test]
    fn other_contents_and_unknown_fields_reach_the_application() {
        // A typing indicator (Content field 6) only: not an SDK kind.
        let typing = SignalContent { unknown: vec![0x32, 0x02, 0x08, 0x01], ..SignalContent::default() };
        assert_eq!(
            Content::decode(&encode_signal(&typing).unwrap(), false).unwrap(),
            Decoded::Other(Box::new(typing))
        );
        // A text with fields Hush does not read, at two levels: they come along.
        let mut sc = Content::Text { body: "with extras".into() }.to_signal(5);
        sc.unknown = vec![0x5a, 0x01, 0x07];
        sc.data_message.as_mut().unwrap().unknown = vec![0x12, 0x01, 0x61];
        match Content::decode(&encode_signal(&sc).unwrap(), false).unwrap() {
            Decoded::Known(Content::Text { body }, Some(got)) => {
                assert_eq!(body, "with extras");
                assert_eq!(*got, sc);
            }
            other => panic!("{other:?}"),
        }
        // A sync copy or a distribution without Hush's extension is not an SDK kind.
        let mut sync = Content::SentText { to: UserId::new("bob").unwrap(), body: "x".into() }.to_signal(1);
        sync.hush = None;
        assert!(matches!(Content::decode(&encode_signal(&sync).unwrap(), false).unwrap(), Decoded::Other(_)));
        // Bad padding is a typed error.
        assert!(matches!(Content::decode(&[0x0a, 0x00, 0x01], false), Err(ContentError::Signal(_))));
        assert!(matches!(Content::decode(&[], false), Err(ContentError::Signal(_))));
    }
}
