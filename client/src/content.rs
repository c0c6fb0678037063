//! What a ciphertext carries once decrypted: the client-side plaintext envelope.
//!
//! The node never sees it. Pairwise (Double Ratchet) ciphertexts carry a text, the sync copy of a
//! text this user sent from another device, or a sender-key distribution for a group; group
//! (Sender Key) ciphertexts carry a group text. Encoding: a version byte, postcard, then zero
//! padding to a multiple of [`PAD_BLOCK`] bytes so that ciphertext lengths say little about the
//! text (Signal pads to 160-byte blocks for the same reason).

use hush_protocol::ids::{GroupId, UserId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Plaintexts are padded to a multiple of this many bytes.
pub const PAD_BLOCK: usize = 64;
/// Largest text body the SDK sends (the node's envelope cap, 96 KiB, minus room for the
/// envelope, the padding and the ciphertext overhead).
pub const MAX_BODY_BYTES: usize = 90 * 1024;
const CONTENT_VERSION: u8 = 1;

/// A decrypted plaintext.
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
#[error("malformed plaintext")]
pub struct ContentError;

impl Content {
    /// The padded plaintext bytes.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, ContentError> {
        let mut out = Vec::with_capacity(self.approx_len() + 2 * PAD_BLOCK);
        out.push(CONTENT_VERSION);
        let mut out = postcard::to_extend(self, out).map_err(|_| ContentError)?;
        let padded = out.len().div_ceil(PAD_BLOCK) * PAD_BLOCK;
        out.resize(padded, 0);
        Ok(Zeroizing::new(out))
    }

    /// Decodes a padded plaintext (the padding must be zeros).
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let (&version, body) = bytes.split_first().ok_or(ContentError)?;
        if version != CONTENT_VERSION {
            return Err(ContentError);
        }
        let (c, rest): (Content, _) = postcard::take_from_bytes(body).map_err(|_| ContentError)?;
        if rest.len() >= PAD_BLOCK || rest.iter().any(|b| *b != 0) {
            return Err(ContentError);
        }
        Ok(c)
    }

    fn approx_len(&self) -> usize {
        match self {
            Content::Text { body } | Content::SentText { body, .. } | Content::GroupText { body } => {
                body.len()
            }
            Content::SenderKeyDistribution { skdm, group, .. } => skdm.len() + group.as_str().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn roundtrip_padding_and_redaction() {
        let c = Content::SentText { to: UserId::new("bob").unwrap(), body: "secret words".into() };
        let b = c.encode().unwrap();
        assert_eq!(b.len() % PAD_BLOCK, 0);
        assert_eq!(Content::decode(&b).unwrap(), c);
        assert!(!format!("{c:?}").contains("secret"));
        let mut bad = b.to_vec();
        *bad.last_mut().unwrap() = 1;
        assert!(Content::decode(&bad).is_err());
        assert!(Content::decode(&[]).is_err());
        assert!(Content::decode(&[9, 0]).is_err());
        let long = Content::Text { body: "x".repeat(1000) };
        assert_eq!(Content::decode(&long.encode().unwrap()).unwrap(), long);
    }
}
