//! The type of a per-device content, as Signal-Server's `Envelope.Type` (SignalService.proto):
//! a client cannot tell a pre-key message from a normal one by its bytes alone
//! (REFERENCE.md, "libsignal 0.103 on the wire").
//!
//! JSON carries the name (`"prekey"`, `"ciphertext"`, `"sender_key"`, `"plaintext"`, `"event"`,
//! `"unknown"`); postcard carries Signal's number as one byte (`prekey` = 3 = `PREKEY_BUNDLE`,
//! `ciphertext` = 1, `sender_key` = 7 = `SENDERKEY_MESSAGE`, `plaintext` = 8 =
//! `PLAINTEXT_CONTENT`, `unknown` = 0; `event`, which Signal does not have, = 64). Any other name
//! or number decodes as [`ContentType::Unknown`] instead of failing, so the node can answer a
//! frame that carries one with the typed error `invalid_content_type` rather than
//! `malformed_frame`. A JSON number is read as Signal's number too.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a per-device content is (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// Not given, or not a type this build knows. Never valid from a client; delivered for
    /// envelopes stored before types existed (the receiver must tell by itself).
    #[default]
    Unknown,
    /// A `SignalMessage` (a Double Ratchet message on an established session); Signal's
    /// `CIPHERTEXT` = 1.
    Ciphertext,
    /// A `PreKeySignalMessage` (the first message(s) of a new session); Signal's
    /// `PREKEY_BUNDLE` = 3.
    PreKey,
    /// A `SenderKeyMessage` (a group message); Signal's `SENDERKEY_MESSAGE` = 7.
    SenderKey,
    /// Unencrypted content such as a decryption-error (retry) request; Signal's
    /// `PLAINTEXT_CONTENT` = 8.
    Plaintext,
    /// An envelope the node itself made (a session event); never from a client.
    Event,
}

impl ContentType {
    /// Every known type, `Unknown` excluded.
    pub const KNOWN: [ContentType; 5] = [
        ContentType::Ciphertext,
        ContentType::PreKey,
        ContentType::SenderKey,
        ContentType::Plaintext,
        ContentType::Event,
    ];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            ContentType::Unknown => "unknown",
            ContentType::Ciphertext => "ciphertext",
            ContentType::PreKey => "prekey",
            ContentType::SenderKey => "sender_key",
            ContentType::Plaintext => "plaintext",
            ContentType::Event => "event",
        }
    }

    /// The number in binary frames: Signal's `Envelope.Type` where it has one.
    pub fn number(self) -> u8 {
        match self {
            ContentType::Unknown => 0,
            ContentType::Ciphertext => 1,
            ContentType::PreKey => 3,
            ContentType::SenderKey => 7,
            ContentType::Plaintext => 8,
            ContentType::Event => 64,
        }
    }

    /// The type named `name`, `Unknown` for any other name.
    pub fn from_name(name: &str) -> Self {
        Self::KNOWN.into_iter().find(|t| t.name() == name).unwrap_or(ContentType::Unknown)
    }

    /// The type numbered `n`, `Unknown` for any other number.
    pub fn from_number(n: u64) -> Self {
        Self::KNOWN.into_iter().find(|t| u64::from(t.number()) == n).unwrap_or(ContentType::Unknown)
    }

    /// Whether a client may send content of this type in a 1:1 `Send`.
    pub fn valid_in_send(self) -> bool {
        matches!(self, ContentType::Ciphertext | ContentType::PreKey | ContentType::Plaintext)
    }

    /// Whether a client may send content of this type in a `GroupSend`.
    pub fn valid_in_group_send(self) -> bool {
        self == ContentType::SenderKey
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ContentType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(self.name())
        } else {
            s.serialize_u8(self.number())
        }
    }
}

impl<'de> Deserialize<'de> for ContentType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ContentType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content type name or number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ContentType, E> {
                Ok(ContentType::from_name(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ContentType, E> {
                Ok(ContentType::from_number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ContentType, E> {
                Ok(u64::try_from(v).map(ContentType::from_number).unwrap_or(ContentType::Unknown))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<ContentType, E> {
                Ok(ContentType::Unknown)
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(V)
        } else {
            d.deserialize_u8(V)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_numbers_roundtrip_and_unknowns_decode() {
        for t in ContentType::KNOWN {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
            assert_eq!(serde_json::from_str::<ContentType>(&json).unwrap(), t);
            let bin = postcard::to_allocvec(&t).unwrap();
            assert_eq!(bin, vec![t.number()]);
            assert_eq!(postcard::from_bytes::<ContentType>(&bin).unwrap(), t);
        }
        assert_eq!(serde_json::from_str::<ContentType>("\"whisper\"").unwrap(), ContentType::Unknown);
        assert_eq!(serde_json::from_str::<ContentType>("3").unwrap(), ContentType::PreKey);
        assert_eq!(serde_json::from_str::<ContentType>("-1").unwrap(), ContentType::Unknown);
        assert_eq!(serde_json::from_str::<ContentType>("null").unwrap(), ContentType::Unknown);
        assert_eq!(postcard::from_bytes::<ContentType>(&[2]).unwrap(), ContentType::Unknown);
        assert_eq!(postcard::from_bytes::<ContentType>(&[200]).unwrap(), ContentType::Unknown);
        assert!(ContentType::Ciphertext.valid_in_send() && ContentType::PreKey.valid_in_send());
        assert!(!ContentType::SenderKey.valid_in_send() && !ContentType::Event.valid_in_send());
        assert!(
            ContentType::SenderKey.valid_in_group_send() && !ContentType::Plaintext.valid_in_group_send()
        );
    }
}
