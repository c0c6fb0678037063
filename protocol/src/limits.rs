//! Every bound of the wire protocol and of the node's per-connection state, in one place.
//!
//! Values taken from Signal-Server are cited; the others are Hush's own choices, sized so that a
//! misbehaving peer can cost the node at most a fixed amount of memory.

/// Largest envelope content a sender may submit for one device, in bytes.
/// Signal-Server refuses larger envelope content with HTTP 413 (96 KiB).
pub const MAX_CONTENT_BYTES: usize = 96 * 1024;

/// Largest WebSocket frame the node accepts. A `Send` carries one ciphertext per recipient
/// device (at most [`MAX_DEVICES_PER_USER`] x 2 users), so this leaves room for the envelope
/// overhead of a fan-out at full content size.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024 + 64 * 1024;

/// Devices a user may have at once (Signal: primary plus five linked devices).
pub const MAX_DEVICES_PER_USER: u32 = 6;

/// Highest device id (libsignal device ids fit in 7 bits).
pub const MAX_DEVICE_ID: u32 = 127;

/// Registration ids are 14-bit (libsignal `KeyHelper.generateRegistrationId`).
pub const MAX_REGISTRATION_ID: u16 = 0x3FFF;

/// Envelopes sent per `Deliver` page while a device drains its queue on connect.
pub const DRAIN_PAGE: usize = 256;

/// Envelope sequence numbers one `Ack` frame may carry.
pub const MAX_ACKS_PER_FRAME: usize = 1024;

/// Bytes of the longest user name, tenant name or device name.
pub const MAX_NAME_BYTES: usize = 64;

/// Bytes of the longest password accepted (Argon2id input; longer is refused, not truncated).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Bytes of the longest free-text field (error message, logout reason, user agent).
pub const MAX_TEXT_BYTES: usize = 512;

/// Members of one group at most (Signal's limit is 1,000 members besides the creator).
pub const MAX_GROUP_MEMBERS: usize = 1_024;

/// Bytes of the longest group name.
pub const MAX_GROUP_NAME_BYTES: usize = 128;

/// Groups `GET /v1/groups` lists at most for one user.
pub const MAX_GROUPS_LISTED: usize = 1_000;

/// Keys one upload may carry per list (EC one-time, Kyber one-time). Signal-Server: 100.
pub const MAX_KEYS_PER_UPLOAD: usize = 100;

/// Bytes of a serialized EC public key (identity key, EC pre-keys): `0x05` then 32 bytes.
pub const EC_PUBLIC_KEY_BYTES: usize = 33;
