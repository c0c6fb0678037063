//! Bounds and labels of the E2E library. Values marked "libsignal" come from libsignal's
//! `rust/protocol/src/consts.rs` and key-derivation code (see `shared/REFERENCE.md`).

/// Furthest a receiving chain may be advanced by one message (libsignal `MAX_FORWARD_JUMPS`).
pub const MAX_FORWARD_JUMPS: u32 = 25_000;

/// Skipped message keys kept per receiving chain (libsignal `MAX_MESSAGE_KEYS`).
pub const MAX_SKIPPED_KEYS_PER_CHAIN: usize = 2_000;

/// Skipped message keys kept per session across all its receiving chains. Hush's own bound, so a
/// session's size stays below a fixed amount even when every chain is full.
pub const MAX_SKIPPED_KEYS_PER_SESSION: usize = 5_000;

/// Receiving chains kept per session (libsignal `MAX_RECEIVER_CHAINS`).
pub const MAX_RECEIVER_CHAINS: usize = 5;

/// Archived (previous) session states kept per peer device (libsignal
/// `ARCHIVED_STATES_MAX_LENGTH`).
pub const MAX_ARCHIVED_SESSIONS: usize = 40;

/// Sender-key states kept per (sender, distribution id) (libsignal `MAX_SENDER_KEY_STATES`).
pub const MAX_SENDER_KEY_STATES: usize = 5;

/// Largest plaintext this library encrypts: the node's envelope cap (Signal-Server 96 KiB)
/// bounds the ciphertext, so anything larger could never be delivered.
pub const MAX_PLAINTEXT_LEN: usize = 96 * 1024;

/// Largest encoded message a decoder accepts: the plaintext cap plus a `PreKeySignalMessage`'s
/// overhead (Kyber ciphertext 1,569 B, keys, ids, SPQR message, CBC padding, MAC).
pub const MAX_MESSAGE_LEN: usize = MAX_PLAINTEXT_LEN + 4096;

/// Largest serialized session record or sender-key record accepted by `deserialize`.
pub const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;

/// HKDF info of the X3DH master secret (libsignal, message version 3).
pub const LABEL_X3DH: &[u8] = b"WhisperText";
/// HKDF info of a root-key step (libsignal).
pub const LABEL_RATCHET: &[u8] = b"WhisperRatchet";
/// HKDF info of a Double Ratchet message key (libsignal).
pub const LABEL_MESSAGE_KEYS: &[u8] = b"WhisperMessageKeys";
/// HKDF info of a Sender Key message key (libsignal).
pub const LABEL_SENDER_KEY: &[u8] = b"WhisperGroup";

/// HMAC input deriving a message-key seed from a chain key (libsignal `MESSAGE_KEY_SEED`).
pub const CHAIN_MESSAGE_SEED: u8 = 0x01;
/// HMAC input deriving the next chain key (libsignal `CHAIN_KEY_SEED`).
pub const CHAIN_NEXT_KEY: u8 = 0x02;

/// Version of the serialized sender-key record.
pub const RECORD_VERSION: u8 = 1;

/// Version of the serialized session record. 2: PQXDH + SPQR sessions with libsignal's version-4
/// messages; version-1 records (X3DH sessions in Hush's former format) are refused, and the
/// SDK starts a new session in their place.
pub const SESSION_RECORD_VERSION: u8 = 2;
