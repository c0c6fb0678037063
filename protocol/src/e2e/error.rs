//! Errors of the E2E library: one enum for keys and signatures (what the node maps to 422),
//! one for decoding, and one for sessions.

/// A public key, signature or key id that must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key bytes do not parse (wrong type byte or length).
    #[error("invalid key")]
    InvalidKey,
    /// The signature is not 64 bytes or does not verify under the identity key.
    #[error("invalid signature")]
    InvalidSignature,
    /// The key id is outside `0..=2^31-1`.
    #[error("invalid key id")]
    InvalidKeyId,
}

/// A message or record that does not decode. Decoders return this and never panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Input shorter than its fixed fields.
    #[error("truncated input")]
    Truncated,
    /// Input longer than the cap for its kind.
    #[error("input too long")]
    TooLong,
    /// Unknown version nibble.
    #[error("unsupported version")]
    BadVersion,
    /// The first byte names another kind of message.
    #[error("unexpected message kind")]
    BadKind,
    /// An embedded public key does not parse.
    #[error("invalid embedded key")]
    BadKey,
    /// An embedded key id is out of range.
    #[error("invalid key id")]
    BadKeyId,
    /// Reserved flag bits are set.
    #[error("invalid flags")]
    BadFlags,
    /// A record failed to deserialize or broke one of its bounds.
    #[error("invalid record")]
    BadRecord,
    /// A protobuf does not parse, or a required field is missing or has the wrong length
    /// (libsignal's `InvalidProtobufEncoding`).
    #[error("malformed protobuf")]
    Protobuf,
}

/// Errors of sessions, sender keys and stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    /// A key, signature or key id was refused.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A message or record did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// There is no session with this peer device.
    #[error("no session")]
    NoSession,
    /// The peer's identity key differs from the one trusted for it.
    #[error("untrusted identity")]
    UntrustedIdentity,
    /// The pre-key message names a signed pre-key we do not have.
    #[error("unknown signed pre-key {0}")]
    UnknownSignedPreKey(u32),
    /// The pre-key message names a one-time pre-key we do not have (already used?).
    #[error("unknown one-time pre-key {0}")]
    UnknownPreKey(u32),
    /// The message key was already used or dropped (replay, or beyond the skipped-key bound).
    #[error("duplicate or expired message")]
    DuplicateMessage,
    /// The counter is more than `MAX_FORWARD_JUMPS` ahead of the chain.
    #[error("message too far in the future")]
    TooFarInFuture,
    /// Authentication failed: the message was altered or is not for this session.
    #[error("decryption failed")]
    DecryptionFailed,
    /// The plaintext exceeds `MAX_PLAINTEXT_LEN`.
    #[error("plaintext too long")]
    PlaintextTooLong,
    /// No sender-key state for this sender, distribution id and chain id.
    #[error("no sender key state")]
    NoSenderKeyState,
    /// A counter would overflow (after 2^32 messages on one chain).
    #[error("chain exhausted")]
    ChainExhausted,
    /// A KEM ciphertext is not a Kyber-1024 ciphertext (`0x08` and 1568 bytes).
    #[error("invalid KEM ciphertext")]
    InvalidKemCiphertext,
    /// A PQXDH bundle carries no Kyber pre-key.
    #[error("bundle has no Kyber pre-key")]
    MissingKyberPreKey,
    /// The SPQR (post-quantum) ratchet refused the message or failed.
    #[error("post-quantum ratchet error: {0}")]
    PqRatchet(String),
    /// The Kyber pre-key a pre-key message names is not ours (or was used up).
    #[error("unknown Kyber pre-key {0}")]
    UnknownKyberPreKey(u32),
    /// An internal cryptographic primitive failed (should not happen).
    #[error("cryptographic failure")]
    Crypto,
    /// A store implementation failed.
    #[error("store: {0}")]
    Store(String),
}
