//! End-to-end encryption library of the Signal family, with libsignal-compatible key formats.
//!
//! It is pure: no I/O, no async, no logging. Persistence goes through the traits of [`store`],
//! which come with in-memory implementations.
//!
//! - [`consts`]: every bound and KDF label, with its source (libsignal `consts.rs` and the
//!   Signal specifications).
//! - [`keys`]: X25519 key pairs, 33-byte public keys (`0x05`), XEdDSA signatures, Kyber-1024
//!   public keys (`0x08`, parsed and signature-checked) and key ids.
//! - [`xeddsa`]: XEdDSA sign/verify with exactly libsignal's verification rules.
//! - [`prekeys`]: what the node calls at upload ([`prekeys::verify_signed_ec_prekey`],
//!   [`prekeys::verify_kyber_prekey`], [`prekeys::parse_one_time_prekey`]) and the bundle a
//!   client fetches.
//! - [`kdf`]: root, chain and message keys (HKDF/HMAC-SHA256 with libsignal's labels).
//!   HMAC-SHA256 and HKDF-SHA256 themselves are `hmac256`, over `sha2`'s block function.
//! - [`kem`]: Kyber-1024 (round 3, libsignal's pre-key KEM): key pairs, encapsulate,
//!   decapsulate, in libsignal's serialized forms.
//! - [`pqxdh`]: the PQXDH agreement as libsignal 0.103 runs it; every session starts with it.
//! - [`spqr`]: the SPQR sparse post-quantum ratchet (Signal's "triple ratchet" third leg), whose
//!   per-message key salts every message key of a version-4 session.
//! - [`content`]: Signal's `Content` protobuf (what a ciphertext carries) and Signal's padding.
//! - [`retry`]: retry requests (libsignal's `DecryptionErrorMessage` in a `PlaintextContent`).
//! - [`message`]: libsignal's `SignalMessage` and `PreKeySignalMessage` (version 4), decoded with
//!   size caps, never panicking.
//! - [`ratchet`]: the Double Ratchet session state.
//! - [`session`]: session records (current plus archived states) and the encrypt/decrypt entry
//!   points, including simultaneous-initiation resolution.
//! - [`sender_keys`]: Sender Keys for groups, per (sender device, distribution id), in libsignal's
//!   wire formats (`SenderKeyDistributionMessage`, `SenderKeyMessage`).
//! - [`store`]: the store traits and in-memory implementations.
//! - [`error`]: one error enum per concern.
//! - [`fuzzing`]: decoder entry points shared by the fuzz targets and the corpus replay test.

//! # Entry points
//!
//! Node, at key upload (each failure is a [`KeyError`]: `InvalidKey`, `InvalidSignature` or
//! `InvalidKeyId`, answered with 422):
//! [`verify_signed_ec_prekey`]`(identity_key, key_id, public_key, signature)`,
//! [`verify_kyber_prekey`]`(identity_key, key_id, public_key, signature)` (one-time and
//! last-resort Kyber keys), [`parse_one_time_prekey`]`(key_id, public_key)`.
//!
//! Client, pairwise: [`session::process_prekey_bundle`]`(store, peer, bundle, rng)` starts a
//! session; [`session::encrypt_message`]`(store, peer, plaintext, rng)` and
//! [`session::decrypt_message`]`(store, peer, bytes, rng)` do the rest (pre-key and ratchet
//! messages alike). The same operations exist on [`SessionRecord`] for callers that keep records
//! themselves.
//!
//! Client, groups: [`store::create_sender_key_distribution`] (send the encoded
//! [`SenderKeyDistributionMessage`] to each member over its pairwise session),
//! [`store::process_sender_key_distribution`], [`store::group_encrypt`],
//! [`store::group_decrypt`]; [`store::rotate_sender_key`] after removing a member.

pub mod consts;
pub mod content;
pub mod error;
pub mod fuzzing;
pub mod kdf;
pub mod kem;
pub mod keys;
pub mod message;
pub mod pqxdh;
pub mod prekeys;
pub mod ratchet;
pub mod retry;
pub mod sender_keys;
pub mod session;
pub mod spqr;
pub mod store;
pub mod xeddsa;

mod cbc;
mod hmac256;
mod secret;

pub use error::{DecodeError, E2eError, KeyError};
pub use keys::{KeyId, KeyPair, KyberPublicKey, PrivateKey, PublicKey};
pub use prekeys::{
    parse_one_time_prekey, verify_kyber_prekey, verify_signed_ec_prekey, OneTimePreKey, PreKeyBundle,
    SignedEcPreKey, SignedKyberPreKey,
};
pub use sender_keys::{SenderKeyDistributionMessage, SenderKeyRecord};
pub use session::{PeerAddress, SessionRecord};
pub use store::InMemoryStore;
