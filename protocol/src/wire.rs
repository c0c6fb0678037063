//! Client <-> node WebSocket frames: one externally tagged enum per direction.
//!
//! Binary WebSocket frames carry postcard, text frames carry JSON; both encode the same enums
//! ([`ClientFrame`], [`ServerFrame`]), so a client in any language can speak the protocol. The
//! enums stay externally tagged because postcard cannot decode internally tagged enums. Byte
//! strings ([`Payload`]) are raw bytes in postcard and standard base64 in JSON.
//!
//! Every decode is bounded: a frame above [`MAX_FRAME_BYTES`] is refused before parsing, and
//! the content of each device message is checked against [`MAX_CONTENT_BYTES`] after.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::{KeyCounts, PreKeyResponse, UploadKeysRequest};
pub use crate::content_type::ContentType;
use crate::ids::{DeviceId, GroupId, MessageId, RegistrationId, UserId};
use crate::limits::{MAX_ACKS_PER_FRAME, MAX_CONTENT_BYTES, MAX_FRAME_BYTES, MAX_TEXT_BYTES};

/// WebSocket close code: the session was revoked, logged out, or never authenticated.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// WebSocket close code: the same device connected again and displaced this socket.
pub const CLOSE_DISPLACED: u16 = 4409;
/// WebSocket close code: the client did not read fast enough; its envelopes stay queued.
pub const CLOSE_SLOW_CONSUMER: u16 = 4429;
/// WebSocket close code: no frame (not even a pong) within the idle timeout.
pub const CLOSE_IDLE: u16 = 4408;
/// WebSocket close code: the device was removed from its account.
pub const CLOSE_DEVICE_REMOVED: u16 = 4410;

/// Subprotocol a client names to receive postcard (binary) frames.
pub const SUBPROTOCOL_POSTCARD: &str = "hush.postcard";
/// Subprotocol a client names to receive JSON (text) frames.
pub const SUBPROTOCOL_JSON: &str = "hush.json";

/// Opaque bytes (a ciphertext): raw in binary encodings, base64 in JSON.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload(pub Vec<u8>);

impl fmt::Debug for Payload {
    // Ciphertexts never appear in logs, only their length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            use base64::Engine;
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            use base64::Engine;
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Payload)
                .map_err(serde::de::Error::custom)
        } else {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Payload;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                    Ok(Payload(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                    Ok(Payload(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

/// One ciphertext for one device of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMessage {
    /// The recipient device.
    pub device: DeviceId,
    /// The registration id the sender's session was built against; a mismatch means the device
    /// re-registered and the sender gets `StaleDevices`.
    pub registration_id: RegistrationId,
    /// The ciphertext, at most [`MAX_CONTENT_BYTES`].
    pub content: Payload,
    /// What `content` is: `prekey`, `ciphertext` or `plaintext` (anything else, or none, is
    /// refused with `invalid_content_type`; nothing is stored).
    #[serde(default)]
    pub content_type: ContentType,
}

/// A message to one user: one ciphertext per device of the recipient, plus one per other device
/// of the sender (sync copies, so every device of the sender sees its own conversation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    /// Client-chosen id, echoed in `Accepted` and carried to every recipient device.
    pub id: MessageId,
    /// The recipient user, in the sender's tenant.
    pub to: UserId,
    /// One entry per device of `to`, exactly the current device set.
    pub devices: Vec<DeviceMessage>,
    /// One entry per other device of the sender, exactly the current set (empty if it has none).
    #[serde(default)]
    pub sync: Vec<DeviceMessage>,
}

/// A message to a group: ONE ciphertext (a Sender Keys message) that the node fans out to every
/// device of every member, except the sending device (the sender's other devices get it too, as
/// sync). Sender keys themselves travel over pairwise sessions, as ordinary `Send`s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSendMessage {
    /// Client-chosen id, echoed in `Accepted` and carried to every recipient device.
    pub id: MessageId,
    /// The group; the sender must be a member.
    pub group: GroupId,
    /// The group epoch the sender key was made for; an old one is refused with `StaleEpoch`.
    pub epoch: u64,
    /// The ciphertext, at most [`MAX_CONTENT_BYTES`]; stored once, whatever the group size.
    pub content: Payload,
    /// What `content` is: always `sender_key` (anything else, or none, is refused with
    /// `invalid_content_type`; nothing is stored).
    #[serde(default)]
    pub content_type: ContentType,
}

/// Frames a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Authenticates the socket when the token was not sent in the `Authorization` header.
    /// Must be the first frame; any other frame before it closes the socket with 4401.
    Auth {
        /// The session token returned by login.
        token: String,
    },
    /// Sends a message; answered by `Accepted`, `MismatchedDevices`, `StaleDevices` or `Error`.
    Send(SendMessage),
    /// Sends a message to a group; answered by `Accepted`, `StaleEpoch` or `Error`
    /// (`unknown_group` when the group does not exist or the sender is not a member).
    GroupSend(GroupSendMessage),
    /// Acknowledges delivered envelopes by sequence number; acknowledged envelopes are deleted.
    Ack {
        /// Sequence numbers from `Deliver` frames, at most [`MAX_ACKS_PER_FRAME`].
        seqs: Vec<u64>,
    },
    /// Uploads this device's pre-keys (the same body and rules as `PUT /v1/keys`); answered by
    /// `KeyCounts` or `Error` (`invalid_signature`, `invalid_key`, `invalid_key_id`,
    /// `too_many_keys`: nothing was stored).
    UploadKeys {
        /// Client-chosen request id, echoed in the answer.
        id: MessageId,
        /// The keys.
        keys: UploadKeysRequest,
    },
    /// Asks how many one-time pre-keys this device has left; answered by `KeyCounts`.
    GetKeyCounts {
        /// Client-chosen request id, echoed in the answer.
        id: MessageId,
    },
    /// Fetches the pre-keys of one device of `user`, or of all its devices (`device` absent),
    /// consuming one-time keys (as `GET /v1/keys/...`); answered by `PreKeys` or `Error`
    /// (`not_found`, `rate_limited`).
    GetPreKeys {
        /// Client-chosen request id, echoed in the answer.
        id: MessageId,
        /// Whose keys (in the caller's tenant).
        user: UserId,
        /// Which device; absent for every device.
        device: Option<DeviceId>,
    },
}

/// An envelope as the recipient device receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Position in the recipient device's queue; acknowledge with it.
    pub seq: u64,
    /// The sender's message id (deduplicate on it: delivery is at least once).
    pub id: MessageId,
    /// The sending user.
    pub from: UserId,
    /// The sending device.
    pub from_device: DeviceId,
    /// When the node accepted the message, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// True when this is a copy of the recipient's own user's message (sent from another device).
    pub sync: bool,
    /// The ciphertext for this device (empty for a session event).
    pub content: Payload,
    /// Set when the node itself queued this envelope (account and group changes); `content`
    /// is then empty. Queued and acknowledged like messages.
    pub event: Option<SessionEvent>,
    /// Set on a group message: the group and the epoch the sender encrypted for (`sync` is then
    /// true on the copies for the sender's other devices).
    #[serde(default)]
    pub group: Option<GroupStamp>,
    /// What `content` is, as the sender said (`prekey`, `ciphertext`, `plaintext`,
    /// `sender_key` on group messages), or `event` for the node's own envelopes. `unknown` for
    /// envelopes stored before the node recorded types: the receiver must tell by itself.
    #[serde(default)]
    pub content_type: ContentType,
}

/// Which group a group message belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStamp {
    /// The group.
    pub group: GroupId,
    /// The epoch the message was sent in.
    pub epoch: u64,
}

/// One device of a group member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberDevice {
    /// The member.
    pub user: UserId,
    /// One of its devices.
    pub device: DeviceId,
}

/// Changes a device hears about from the node, reliably (queued like envelopes): changes of its
/// own account, and changes of the groups its user belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEvent {
    /// A new login (session) on one of the user's devices.
    NewLogin {
        /// The new session's id.
        session_id: String,
        /// Its device.
        device: DeviceId,
        /// Client address.
        ip: Option<String>,
    },
    /// A device was registered.
    DeviceAdded {
        /// The new device.
        device: DeviceId,
    },
    /// A device was removed (its keys and queue are gone).
    DeviceRemoved {
        /// The removed device.
        device: DeviceId,
    },
    /// A session was revoked.
    SessionRevoked {
        /// The revoked session.
        session_id: String,
        /// Its device.
        device: DeviceId,
        /// `logout`, `revoked_by_user`, `revoked_by_admin`, `device_removed`.
        reason: String,
    },
    /// A group's membership changed (sent to every device of every member after the change,
    /// and of the users just removed, who no longer appear in `members`).
    GroupChanged {
        /// The group.
        group: GroupId,
        /// Its name.
        name: String,
        /// The members after the change.
        members: Vec<UserId>,
        /// The group administrators after the change.
        admins: Vec<UserId>,
        /// The epoch after the change.
        epoch: u64,
        /// The record's version after the change (orders concurrent changes).
        version: u64,
        /// Who made the change.
        by: UserId,
    },
    /// Make a new sender key for this group and send its distribution message to every other
    /// member device over pairwise sessions; group messages must carry `epoch` from now on.
    /// Sent to every remaining member device when a member is removed, and to one sending
    /// device when its sender key is older or has been used more than the node allows.
    RotateSenderKey {
        /// The group.
        group: GroupId,
        /// The current epoch.
        epoch: u64,
        /// `member_removed`, `max_age` or `max_messages`.
        reason: String,
    },
    /// Members were added: send your current sender key's distribution message to these
    /// devices over pairwise sessions (sent to the existing members' devices).
    DistributeSenderKey {
        /// The group.
        group: GroupId,
        /// The current epoch.
        epoch: u64,
        /// The new members' devices.
        devices: Vec<MemberDevice>,
    },
    /// A second-factor attempt (TOTP or backup code) failed.
    MfaFailed {
        /// The session that tried.
        session_id: String,
        /// Failures counted in the current window.
        attempts: u32,
        /// Set when the factor is now locked: until then, ms since the Unix epoch.
        locked_until_ms: Option<u64>,
    },
    /// The user's MFA changed: `totp_enabled`, `totp_disabled`, `backup_codes_regenerated`,
    /// `backup_code_used`, `device_trusted`, `trust_revoked`, `policy_changed`, `enforced`, `reset`.
    MfaChanged {
        /// What changed.
        change: String,
    },
    /// Too many failed logins: the account is locked (every login, the right password included,
    /// answers 429 `account_locked`) for `retry_after_s` seconds, or until an administrator
    /// unlocks it.
    AccountLocked {
        /// Consecutive failed attempts counted.
        failures: u32,
        /// Seconds the lock lasts (unless unlocked sooner).
        retry_after_s: u64,
    },
}

/// Typed error codes carried by [`ServerFrame::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame did not decode as a `ClientFrame`.
    MalformedFrame,
    /// The frame was larger than the node accepts.
    FrameTooLarge,
    /// A device message's content was larger than 96 KiB.
    ContentTooLarge,
    /// A field was out of range (too many acks, duplicate device, empty message).
    InvalidRequest,
    /// The recipient user does not exist in this tenant.
    UnknownRecipient,
    /// The node could not store the message; nothing was accepted, retry later.
    Unavailable,
    /// The sender exceeded a rate limit; retry later (`retry_after_s` when known).
    RateLimited,
    /// The group does not exist or the sender is not a member (one answer for both).
    UnknownGroup,
    /// A pre-key signature did not verify under the device's identity key (or the device has
    /// no identity key); nothing was stored.
    InvalidSignature,
    /// A key did not parse (wrong type byte or length); nothing was stored.
    InvalidKey,
    /// A key id was outside `0..=2^31-1` or repeated in one list; nothing was stored.
    InvalidKeyId,
    /// A list had more than [`MAX_KEYS_PER_UPLOAD`](crate::limits::MAX_KEYS_PER_UPLOAD) keys;
    /// nothing was stored.
    TooManyKeys,
    /// The user or device asked for does not exist, or has no keys.
    NotFound,
    /// A recipient device's queue holds the node's bound of undelivered envelopes (it has been
    /// offline long); the message names the devices (`user/device`). Nothing of this send was
    /// stored, for any device; retry once the device has drained, or leave it out.
    QueueFull,
    /// A content type was missing, unknown, `event` (the node's own), `sender_key` in a 1:1
    /// `Send`, or anything but `sender_key` in a `GroupSend`; nothing of the frame was stored.
    InvalidContentType,
    /// The pre-key fetch rate limit for this (requesting device, target device) is spent
    /// (Signal-Server: a bucket of 6, one back every 10 minutes); `retry_after_s` says when.
    PrekeyRateLimited,
    /// Too many requests of this kind wait for an answer on this socket (sends waiting for
    /// `Accepted`, or key requests); retry once an answer came.
    TooManyInFlight,
    /// A device registering keys (a login with keys for a new device or a new identity, or the
    /// first upload of a device without keys) did not include a signed Kyber last-resort key;
    /// libsignal cannot start a session without one. Nothing was stored.
    MissingKyberLastResort,
}

/// Frames the node sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The socket is authenticated; the queue drain follows, then `QueueEmpty`.
    Ready {
        /// The authenticated user.
        user: UserId,
        /// The authenticated device.
        device: DeviceId,
    },
    /// The message is durably queued for every recipient device.
    Accepted {
        /// The message id from `Send`.
        id: MessageId,
    },
    /// The device set was wrong; nothing was stored. Refresh the device list and resend.
    MismatchedDevices {
        /// The message id from `Send`.
        id: MessageId,
        /// Whose device set was wrong (the recipient, or the sender for sync copies).
        user: UserId,
        /// Devices that exist but had no ciphertext.
        missing: Vec<DeviceId>,
        /// Devices that had a ciphertext but do not exist.
        extra: Vec<DeviceId>,
    },
    /// Some devices re-registered; nothing was stored. Rebuild those sessions and resend.
    StaleDevices {
        /// The message id from `Send`.
        id: MessageId,
        /// Whose devices were stale.
        user: UserId,
        /// Devices whose registration id did not match.
        stale: Vec<DeviceId>,
    },
    /// A group message carried an old epoch (a member was removed since); nothing was stored.
    /// Rotate the sender key, distribute it, and resend with `epoch`.
    StaleEpoch {
        /// The message id from `GroupSend`.
        id: MessageId,
        /// The group.
        group: GroupId,
        /// The group's current epoch.
        epoch: u64,
    },
    /// An envelope for this device.
    Deliver(Envelope),
    /// Everything queued while the device was offline has been delivered.
    QueueEmpty,
    /// A request failed; `id` names the `Send` it answers, if any.
    Error {
        /// The message id of the failed `Send`, if the failure concerns one.
        id: Option<MessageId>,
        /// What went wrong.
        code: ErrorCode,
        /// A human-readable explanation (never contains payloads or secrets).
        message: String,
        /// Seconds to wait before retrying, when the node knows (`prekey_rate_limited`).
        #[serde(default)]
        retry_after_s: Option<u64>,
    },
    /// The session ended (logout, revocation, device removal); the socket closes next.
    LoggedOut {
        /// Why the session ended.
        reason: String,
    },
    /// Answer to `UploadKeys` and `GetKeyCounts`: the one-time pre-keys this device has left.
    KeyCounts {
        /// The request id.
        id: MessageId,
        /// The counts.
        counts: KeyCounts,
    },
    /// Answer to `GetPreKeys`.
    PreKeys {
        /// The request id.
        id: MessageId,
        /// The keys, one entry per device.
        keys: PreKeyResponse,
    },
    /// This device's one-time pre-keys fell below the node's threshold (default 10) after
    /// fetches consumed them: upload more. Sent live, or at the next connection if the device
    /// was offline, until an upload.
    PreKeysLow {
        /// EC one-time pre-keys left.
        ec: u32,
        /// Kyber one-time pre-keys left.
        kyber: u32,
    },
    /// The node asks the device to upload a new signed EC pre-key and/or Kyber last-resort key:
    /// the stored one is older than the node's rotation age (default 7 days). Sent after
    /// `Ready` and after an upload that leaves an old key.
    RotateKeys {
        /// Upload a new signed EC pre-key.
        signed_pre_key: bool,
        /// Upload a new Kyber last-resort key.
        last_resort: bool,
    },
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    /// Not a valid encoding of the frame enum.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Decoded, but a device message's content is above [`MAX_CONTENT_BYTES`].
    #[error("content of {0} bytes exceeds the limit of {MAX_CONTENT_BYTES}")]
    ContentTooLarge(usize),
    /// Decoded, but a field is out of range.
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
    /// Decoded, but a content type is not allowed there (see [`ErrorCode::InvalidContentType`]).
    #[error("invalid content type: {reason}")]
    InvalidContentType {
        /// The message id of the refused `Send` or `GroupSend`.
        id: MessageId,
        /// What was wrong.
        reason: String,
    },
}

impl FrameError {
    /// The wire error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge(_) => ErrorCode::FrameTooLarge,
            FrameError::Malformed(_) => ErrorCode::MalformedFrame,
            FrameError::ContentTooLarge(_) => ErrorCode::ContentTooLarge,
            FrameError::Invalid(_) => ErrorCode::InvalidRequest,
            FrameError::InvalidContentType { .. } => ErrorCode::InvalidContentType,
        }
    }

    /// The message id of the frame this failure concerns, when it decoded far enough to tell.
    pub fn id(&self) -> Option<MessageId> {
        match self {
            FrameError::InvalidContentType { id, .. } => Some(*id),
            _ => None,
        }
    }
}

fn short(e: impl fmt::Display) -> String {
    let mut s = e.to_string();
    if s.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl ClientFrame {
    /// Decodes a binary (postcard) frame and checks its bounds.
    pub fn decode_binary(buf: &[u8]) -> Result<Self, FrameError> {
        if buf.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(buf.len()));
        }
        let f: ClientFrame = postcard::from_bytes(buf).map_err(|e| FrameError::Malformed(short(e)))?;
        f.check()?;
        Ok(f)
    }

    /// Decodes a text (JSON) frame and checks its bounds.
    pub fn decode_text(s: &str) -> Result<Self, FrameError> {
        if s.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(s.len()));
        }
        let f: ClientFrame = serde_json::from_str(s).map_err(|e| FrameError::Malformed(short(e)))?;
        f.check()?;
        Ok(f)
    }

    /// Encodes as a binary (postcard) frame.
    pub fn encode_binary(&self) -> Result<Vec<u8>, FrameError> {
        postcard::to_allocvec(self).map_err(|e| FrameError::Malformed(short(e)))
    }

    /// Encodes as a text (JSON) frame.
    pub fn encode_text(&self) -> Result<String, FrameError> {
        serde_json::to_string(self).map_err(|e| FrameError::Malformed(short(e)))
    }

    fn check(&self) -> Result<(), FrameError> {
        match self {
            ClientFrame::Auth { token } if token.len() > MAX_TEXT_BYTES => {
                Err(FrameError::Invalid("token too long"))
            }
            ClientFrame::Ack { seqs } if seqs.len() > MAX_ACKS_PER_FRAME => {
                Err(FrameError::Invalid("too many acks in one frame"))
            }
            ClientFrame::Send(m) => {
                if m.devices.is_empty() {
                    return Err(FrameError::Invalid("a message needs at least one device"));
                }
                for d in m.devices.iter().chain(&m.sync) {
                    if d.content.0.len() > MAX_CONTENT_BYTES {
                        return Err(FrameError::ContentTooLarge(d.content.0.len()));
                    }
                }
                match m.devices.iter().chain(&m.sync).find(|d| !d.content_type.valid_in_send()) {
                    Some(d) => Err(FrameError::InvalidContentType {
                        id: m.id,
                        reason: format!(
                            "device {}: `{}` is not a 1:1 content type (prekey, ciphertext, plaintext)",
                            d.device, d.content_type
                        ),
                    }),
                    None => Ok(()),
                }
            }
            ClientFrame::GroupSend(m) if m.content.0.len() > MAX_CONTENT_BYTES => {
                Err(FrameError::ContentTooLarge(m.content.0.len()))
            }
            ClientFrame::GroupSend(m) if !m.content_type.valid_in_group_send() => {
                Err(FrameError::InvalidContentType {
                    id: m.id,
                    reason: format!("`{}` in a group send: only sender_key is allowed", m.content_type),
                })
            }
            _ => Ok(()),
        }
    }
}

impl ServerFrame {
    /// Decodes a binary (postcard) frame.
    pub fn decode_binary(buf: &[u8]) -> Result<Self, FrameError> {
        if buf.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(buf.len()));
        }
        postcard::from_bytes(buf).map_err(|e| FrameError::Malformed(short(e)))
    }

    /// Decodes a text (JSON) frame.
    pub fn decode_text(s: &str) -> Result<Self, FrameError> {
        if s.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(s.len()));
        }
        serde_json::from_str(s).map_err(|e| FrameError::Malformed(short(e)))
    }

    /// Encodes as a binary (postcard) frame.
    pub fn encode_binary(&self) -> Result<Vec<u8>, FrameError> {
        postcard::to_allocvec(self).map_err(|e| FrameError::Malformed(short(e)))
    }

    /// Encodes as a text (JSON) frame.
    pub fn encode_text(&self) -> Result<String, FrameError> {
        serde_json::to_string(self).map_err(|e| FrameError::Malformed(short(e)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn sample_send(content: Vec<u8>) -> ClientFrame {
        ClientFrame::Send(SendMessage {
            id: uuid::Uuid::from_u128(7),
            to: UserId::new("bob").unwrap(),
            devices: vec![DeviceMessage {
                device: DeviceId::PRIMARY,
                registration_id: RegistrationId::new(42).unwrap(),
                content: Payload(content),
                content_type: ContentType::Ciphertext,
            }],
            sync: vec![],
        })
    }

    #[test]
    fn send_roundtrips_in_both_encodings() {
        let f = sample_send(vec![1, 2, 3]);
        assert_eq!(ClientFrame::decode_binary(&f.encode_binary().unwrap()).unwrap(), f);
        let text = f.encode_text().unwrap();
        assert!(text.contains("\"content\":\"AQID\""), "{text}");
        assert_eq!(ClientFrame::decode_text(&text).unwrap(), f);
    }

    #[test]
    fn json_shape_is_externally_tagged() {
        let f = ClientFrame::decode_text(r#"{"Ack":{"seqs":[1,2]}}"#).unwrap();
        assert_eq!(f, ClientFrame::Ack { seqs: vec![1, 2] });
        let s = ServerFrame::QueueEmpty.encode_text().unwrap();
        assert_eq!(s, "\"QueueEmpty\"");
    }

    #[test]
    fn bounds_are_enforced() {
        let big = sample_send(vec![0; MAX_CONTENT_BYTES + 1]);
        let bytes = big.encode_binary().unwrap();
        assert_eq!(ClientFrame::decode_binary(&bytes).unwrap_err().code(), ErrorCode::ContentTooLarge);
        let ok = sample_send(vec![0; MAX_CONTENT_BYTES]);
        assert!(ClientFrame::decode_binary(&ok.encode_binary().unwrap()).is_ok());
        let huge = vec![0u8; MAX_FRAME_BYTES + 1];
        assert_eq!(ClientFrame::decode_binary(&huge).unwrap_err().code(), ErrorCode::FrameTooLarge);
        let acks = ClientFrame::Ack { seqs: vec![1; MAX_ACKS_PER_FRAME + 1] };
        assert!(ClientFrame::decode_binary(&acks.encode_binary().unwrap()).is_err());
        assert_eq!(ClientFrame::decode_text("{\"Send\":1}").unwrap_err().code(), ErrorCode::MalformedFrame);
        // Invalid ids inside an otherwise well-formed frame are refused at decode.
        let bad = r#"{"Send":{"id":"00000000-0000-0000-0000-000000000007","to":"Bob","devices":[]}}"#;
        assert!(ClientFrame::decode_text(bad).is_err());
    }

    #[test]
    fn group_send_roundtrips_and_is_bounded() {
        let g = GroupId::new("0123456789abcdef0123456789abcdef").unwrap();
        let f = ClientFrame::GroupSend(GroupSendMessage {
            id: uuid::Uuid::from_u128(9),
            group: g.clone(),
            epoch: 3,
            content: Payload(vec![5; 10]),
            content_type: ContentType::SenderKey,
        });
        assert_eq!(ClientFrame::decode_binary(&f.encode_binary().unwrap()).unwrap(), f);
        let text = f.encode_text().unwrap();
        assert!(text.contains("\"group\":\"0123456789abcdef0123456789abcdef\""), "{text}");
        assert_eq!(ClientFrame::decode_text(&text).unwrap(), f);
        let big = ClientFrame::GroupSend(GroupSendMessage {
            id: uuid::Uuid::from_u128(9),
            group: g.clone(),
            epoch: 3,
            content: Payload(vec![0; MAX_CONTENT_BYTES + 1]),
            content_type: ContentType::SenderKey,
        });
        assert_eq!(
            ClientFrame::decode_binary(&big.encode_binary().unwrap()).unwrap_err().code(),
            ErrorCode::ContentTooLarge
        );
        let stale = ServerFrame::StaleEpoch { id: uuid::Uuid::from_u128(9), group: g, epoch: 4 };
        assert_eq!(ServerFrame::decode_text(&stale.encode_text().unwrap()).unwrap(), stale);
        let err = ServerFrame::Error {
            id: None,
            code: ErrorCode::UnknownGroup,
            message: String::new(),
            retry_after_s: None,
        };
        assert!(err.encode_text().unwrap().contains("unknown_group"));
    }

    #[test]
    fn key_frames_roundtrip_with_base64_keys_in_json() {
        use crate::api::{PreKey, SignedPreKey};
        let f = ClientFrame::UploadKeys {
            id: uuid::Uuid::from_u128(9),
            keys: UploadKeysRequest {
                signed_pre_key: Some(SignedPreKey {
                    key_id: 7,
                    public_key: Payload(vec![5; 33]),
                    signature: Payload(vec![1; 64]),
                }),
                pre_keys: vec![PreKey { key_id: -1, public_key: Payload(vec![5, 1]) }],
                kyber_pre_keys: vec![],
                kyber_last_resort: None,
            },
        };
        assert_eq!(ClientFrame::decode_binary(&f.encode_binary().unwrap()).unwrap(), f);
        let text = f.encode_text().unwrap();
        assert!(text.contains("\"public_key\":\"BQE=\""), "{text}");
        assert_eq!(ClientFrame::decode_text(&text).unwrap(), f);
        // Lists may be left out in JSON.
        let g = ClientFrame::decode_text(
            r#"{"UploadKeys":{"id":"00000000-0000-0000-0000-000000000009","keys":{}}}"#,
        )
        .unwrap();
        assert!(matches!(g, ClientFrame::UploadKeys { keys, .. } if keys == UploadKeysRequest::default()));
        let low = ServerFrame::PreKeysLow { ec: 3, kyber: 0 };
        assert_eq!(ServerFrame::decode_text(&low.encode_text().unwrap()).unwrap(), low);
        assert_eq!(ServerFrame::decode_binary(&low.encode_binary().unwrap()).unwrap(), low);
    }

    #[test]
    fn content_types_are_checked_after_decoding_in_both_encodings() {
        let with = |t: ContentType| {
            let ClientFrame::Send(mut m) = sample_send(vec![1]) else { unreachable!() };
            m.devices[0].content_type = t;
            ClientFrame::Send(m)
        };
        for ok in [ContentType::PreKey, ContentType::Ciphertext, ContentType::Plaintext] {
            let f = with(ok);
            assert_eq!(ClientFrame::decode_binary(&f.encode_binary().unwrap()).unwrap(), f);
            assert_eq!(ClientFrame::decode_text(&f.encode_text().unwrap()).unwrap(), f);
        }
        for bad in [ContentType::SenderKey, ContentType::Event, ContentType::Unknown] {
            let f = with(bad);
            let e = ClientFrame::decode_binary(&f.encode_binary().unwrap()).unwrap_err();
            assert_eq!((e.code(), e.id()), (ErrorCode::InvalidContentType, Some(uuid::Uuid::from_u128(7))));
            let e = ClientFrame::decode_text(&f.encode_text().unwrap()).unwrap_err();
            assert_eq!((e.code(), e.id()), (ErrorCode::InvalidContentType, Some(uuid::Uuid::from_u128(7))));
        }
        // An unknown name, or none at all, in JSON; an unknown number in postcard.
        let text = with(ContentType::Ciphertext).encode_text().unwrap();
        assert!(text.contains("\"content_type\":\"ciphertext\""), "{text}");
        for t in [
            text.replace("\"ciphertext\"", "\"whisper\""),
            text.replace(",\"content_type\":\"ciphertext\"", ""),
        ] {
            assert_eq!(
                ClientFrame::decode_text(&t).unwrap_err().code(),
                ErrorCode::InvalidContentType,
                "{t}"
            );
        }
        let mut bin = with(ContentType::Ciphertext).encode_binary().unwrap();
        // The device message is the frame's tail, its type the last byte (sync is empty after it).
        let at = bin.len() - 2;
        assert_eq!(bin[at], ContentType::Ciphertext.number());
        bin[at] = 42;
        assert_eq!(ClientFrame::decode_binary(&bin).unwrap_err().code(), ErrorCode::InvalidContentType);
        // Group sends take sender_key only.
        let g = |t: ContentType| {
            ClientFrame::GroupSend(GroupSendMessage {
                id: uuid::Uuid::from_u128(8),
                group: GroupId::random(),
                epoch: 1,
                content: Payload(vec![1]),
                content_type: t,
            })
        };
        assert!(ClientFrame::decode_text(&g(ContentType::SenderKey).encode_text().unwrap()).is_ok());
        for bad in [ContentType::Ciphertext, ContentType::PreKey, ContentType::Event, ContentType::Unknown] {
            let e = ClientFrame::decode_binary(&g(bad).encode_binary().unwrap()).unwrap_err();
            assert_eq!((e.code(), e.id()), (ErrorCode::InvalidContentType, Some(uuid::Uuid::from_u128(8))));
        }
    }

    #[test]
    fn payload_debug_hides_bytes() {
        let p = Payload(b"secret plaintext".to_vec());
        assert_eq!(format!("{p:?}"), "Payload(16 bytes)");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ClientFrame::decode_binary(&buf);
            let _ = ServerFrame::decode_binary(&buf);
            if let Ok(s) = std::str::from_utf8(&buf) {
                let _ = ClientFrame::decode_text(s);
            }
        }

        #[test]
        fn server_frames_roundtrip(seq in any::<u64>(), ts in any::<u64>(), content in proptest::collection::vec(any::<u8>(), 0..300)) {
            let f = ServerFrame::Deliver(Envelope {
                seq, id: uuid::Uuid::from_u128(u128::from(seq)), from: UserId::new("alice").unwrap(),
                from_device: DeviceId::new(3).unwrap(), timestamp_ms: ts, sync: seq % 2 == 0,
                content: Payload(content),
                event: None,
                group: (seq % 3 == 0).then(|| GroupStamp { group: crate::ids::GroupId::random(), epoch: ts }),
                content_type: ContentType::KNOWN[(seq % 5) as usize],
            });
            prop_assert_eq!(ServerFrame::decode_binary(&f.encode_binary().unwrap()).unwrap(), f.clone());
            prop_assert_eq!(ServerFrame::decode_text(&f.encode_text().unwrap()).unwrap(), f);
        }
    }
}
