//! SPQR V1, Signal's Sparse Post-Quantum Ratchet, wire-compatible with the `spqr` crate that
//! libsignal 0.103 runs inside every version-4 `SignalMessage` (field 5, `pq_ratchet`).
//!
//! Two parties run an ML-KEM-768 exchange one epoch at a time, its keys and ciphertexts cut
//! into 32-byte erasure-coded chunks that ride one per message ([`states`] describes the state
//! machine, [`wire`] the encoding). Each completed exchange yields an epoch secret that starts
//! new symmetric chains ([`chain`]); every message, sent or received, takes one 32-byte key from
//! the chains of the epoch before the sender's, which libsignal mixes into its message keys.
//!
//! Version handling is libsignal 0.103's: both sides start at V1 with V1 as minimum, so
//! - a message without SPQR (empty field) is refused: [`SpqrError::MinimumVersion`] while no
//!   message has been received yet, [`SpqrError::VersionMismatch`] afterwards (spqr's two
//!   refusals; libsignal reports both as a post-quantum ratchet error);
//! - a message whose version byte is above 1 is refused with [`SpqrError::UnsupportedVersion`]
//!   and leaves the state as it was. spqr up to 1.5 accepted such a message *without a key*
//!   (classical keys only); the third-party notes on libsignal 0.103 say spqr 1.6.0 no longer
//!   ignores it (it either yields real key material or refuses). No libsignal sends a higher
//!   version today, so refusing is the safe reading;
//! - bytes after a V1 message are ignored.
//!
//! Every call is transactional: `send` and `recv` return a new state and leave `self` intact,
//! so a refused message costs nothing.
//!
//! # Facts (from spqr's sources; the ones marked KAT are checked against libsignal 0.103 by
//! `tests/e2e_spqr_libsignal.rs`)
//!
//! - Auth key: PQXDH okm[64..96] (KAT). libsignal mixes the 32-byte key returned here into
//!   its v4 message keys as the HKDF salt of `WhisperMessageKeys` (KAT).
//! - Chains ([`chain`]): labels `Signal PQ Ratchet V1 Chain  Start` (two spaces, KAT),
//!   `... Chain Add Epoch`, `... Chain Next` (KAT); first key index 1 (KAT); alice sends on the
//!   A-to-B half (KAT). A message sent in exchange epoch `e` uses chain epoch `e - 1`.
//! - Authenticator ([`auth`]): `Signal_PQCKA_V1_MLKEM768:Authenticator Update`, `:ekheader`,
//!   `:ciphertext`; epoch secret `Signal_PQCKA_V1_MLKEM768:SCKA Key` || epoch (BE64), all HKDF
//!   salts 32 zero bytes except the chain's add-epoch step (salt = previous root).
//! - Epoch secrets: the ciphertext sender gets epoch `e`'s secret when it sends its first ct1
//!   chunk (mixed into its chains before that message's key is taken); the key sender gets it
//!   when `ct2 || mac` completes and the MAC verifies. Each adds chain epoch `e`.
//! - Sizes: header 64 + MAC 32 (3 chunks of data), ek 1152, ct1 960, ct2 128 + MAC 32;
//!   decapsulation key 2400, encapsulation state 2080.
//! - Wire ([`wire`]): alice's first message is 37 bytes `01 01 01 01 00 <32>` (KAT), bob's
//!   first reply `01 01 01 00`.
//! - Bounds: [`MAX_JUMP`] 25,000 (none in a session with oneself), [`MAX_OOO_KEYS`] 2,000 kept,
//!   the sending epoch and the one before it kept.

pub mod encoding;

pub(crate) mod auth;
pub(crate) mod chain;
mod kem768;
mod states;
pub(crate) mod wire;

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

pub use chain::{MAX_JUMP, MAX_OOO_KEYS};

use chain::Chain;
use states::Scka;
use wire::{WireMessage, VERSION_V1};

/// SPQR failures. Each leaves the state that was called unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpqrError {
    /// The peer sent no SPQR message (version 0) before any message was received from it.
    #[error("post-quantum ratchet: minimum version")]
    MinimumVersion,
    /// The peer sent no SPQR message (version 0) after the version was settled.
    #[error("post-quantum ratchet: version mismatch after negotiation")]
    VersionMismatch,
    /// The message's version byte is one this implementation does not know.
    #[error("post-quantum ratchet: unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The message is malformed.
    #[error("post-quantum ratchet: message decode failed")]
    MsgDecode,
    /// A header or ciphertext MAC did not verify.
    #[error("post-quantum ratchet: MAC verification failed")]
    MacVerifyFailed,
    /// The message's epoch is not one the state can use.
    #[error("post-quantum ratchet: epoch not in valid range: {0}")]
    EpochOutOfRange(u64),
    /// The key index is too far ahead (`counter`, `requested`).
    #[error("post-quantum ratchet: key jump {0} - {1}")]
    KeyJump(u32, u32),
    /// The key index is too old; its key was discarded.
    #[error("post-quantum ratchet: key trimmed: {0}")]
    KeyTrimmed(u32),
    /// The key at this index was already used (replay).
    #[error("post-quantum ratchet: key already requested: {0}")]
    KeyAlreadyRequested(u32),
    /// The peer's key body does not match its authenticated header, or decoded data has the
    /// wrong size.
    #[error("post-quantum ratchet: erroneous data received from remote party")]
    ErroneousDataReceived,
    /// Internal: the sending epoch would move backwards.
    #[error("post-quantum ratchet: send key epoch decreased ({0} -> {1})")]
    SendKeyEpochDecreased(u64, u64),
    /// The message is valid but carries no key (index 0 of epoch 1, from a sender that has no
    /// chains yet); only [`SpqrState::recv`] reports this, [`SpqrState::recv_optional_key`]
    /// accepts it.
    #[error("post-quantum ratchet: message carries no key")]
    NoMessageKey,
    /// The erasure code refused a length.
    #[error("post-quantum ratchet: encoding: {0}")]
    Encoding(encoding::EncodingError),
    /// The stored state is inconsistent (corrupted record).
    #[error("post-quantum ratchet: invalid state")]
    StateInvalid,
    /// A primitive failed (not expected with valid lengths).
    #[error("post-quantum ratchet: crypto failure")]
    Crypto,
}

/// What receiving one message changes in an [`SpqrState`] (see [`SpqrState::receive`]).
pub struct SpqrReceipt {
    /// The KEM exchange's new state, if the message moved it.
    scka: Option<std::sync::Arc<Scka>>,
    chain: ChainChange,
}

impl core::fmt::Debug for SpqrReceipt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpqrReceipt").field("scka_changed", &self.scka.is_some()).finish_non_exhaustive()
    }
}

enum ChainChange {
    Unchanged,
    Recv(chain::RecvUpdate),
    Whole(Chain),
}

/// The SPQR state of one session (persisted with postcard inside session records).
#[derive(Clone, Serialize, Deserialize)]
pub struct SpqrState {
    /// True until the first message is received (spqr's pending version negotiation).
    negotiating: bool,
    /// Shared between a state and the next one when a message leaves it unchanged (most do),
    /// so receiving copies it only when it changes.
    scka: std::sync::Arc<Scka>,
    chain: Chain,
}

impl core::fmt::Debug for SpqrState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpqrState")
            .field("negotiating", &self.negotiating)
            .field("scka_epoch", &self.scka.epoch())
            .field("chain_epoch", &self.chain.current_epoch())
            .finish_non_exhaustive()
    }
}

impl SpqrState {
    /// A new state. `alice` is libsignal's initiator (A2B direction). `self_session` (a session
    /// with one's own identity, libsignal's `local_identity == their_identity`) lifts the
    /// receive-side jump bound, as libsignal's `spqr_chain_params` does; out-of-order keys stay
    /// bounded by [`MAX_OOO_KEYS`].
    pub fn initial(auth_key: &[u8], alice: bool, self_session: bool) -> Self {
        let scka = if alice { Scka::init_alice(auth_key) } else { Scka::init_bob(auth_key) };
        let max_jump = if self_session { u32::MAX } else { MAX_JUMP };
        Self {
            negotiating: true,
            scka: std::sync::Arc::new(scka),
            chain: Chain::with_max_jump(auth_key, alice, max_jump),
        }
    }

    /// The initiator's state (libsignal's A2B direction, V1 with minimum V1), from the PQXDH
    /// auth key (okm[64..96]).
    pub fn initial_alice(auth_key: &[u8]) -> Self {
        Self::initial(auth_key, true, false)
    }

    /// The responder's state (B2A direction, V1 with minimum V1).
    pub fn initial_bob(auth_key: &[u8]) -> Self {
        Self::initial(auth_key, false, false)
    }

    /// Prepares the SPQR part of the next outgoing message: the new state, the bytes for
    /// `pq_ratchet` and the message key.
    pub fn send<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
    ) -> Result<(SpqrState, Vec<u8>, [u8; 32]), SpqrError> {
        let (scka, payload, secret) = Scka::clone(&self.scka).send(rng)?;
        let scka = std::sync::Arc::new(scka);
        let epoch = self.scka.epoch();
        let mut chain = self.chain.clone();
        if let Some(s) = secret {
            chain.add_epoch(s.epoch, &s.secret)?;
        }
        let key_epoch = epoch.checked_sub(1).ok_or(SpqrError::StateInvalid)?;
        let (index, key) = chain.send_key(key_epoch)?;
        let msg = WireMessage { epoch, index, payload }.encode();
        Ok((SpqrState { negotiating: self.negotiating, scka, chain }, msg, key.0))
    }

    /// Processes the `pq_ratchet` field of an incoming message: the new state and the message
    /// key. A valid message without a key is refused with [`SpqrError::NoMessageKey`] (see
    /// [`Self::recv_optional_key`]).
    pub fn recv(&self, msg: &[u8]) -> Result<(SpqrState, [u8; 32]), SpqrError> {
        match self.recv_optional_key(msg)? {
            (state, Some(key)) => Ok((state, key)),
            (_, None) => Err(SpqrError::NoMessageKey),
        }
    }

    /// Like [`Self::recv`], but accepts spqr's one keyless V1 message: index 0 in epoch 1,
    /// which a sender initialized with minimum version V0 emits until it has received a
    /// message (libsignal then derives the message keys without SPQR input). libsignal 0.103
    /// initializes with minimum V1 and never sends it.
    pub fn recv_optional_key(&self, msg: &[u8]) -> Result<(SpqrState, Option<[u8; 32]>), SpqrError> {
        let (receipt, key) = self.receive_optional_key(msg)?;
        let mut next = self.clone();
        next.commit(receipt);
        Ok((next, key))
    }

    /// Like [`Self::recv`], without copying the state: the key and a [`SpqrReceipt`] of what
    /// the message changes, for [`Self::commit`] once the message authenticated. This state is
    /// untouched.
    pub fn receive(&self, msg: &[u8]) -> Result<(SpqrReceipt, [u8; 32]), SpqrError> {
        self.receive_with(msg, &mut chain::plain_step)
    }

    /// [`Self::receive`] with the receiving chain's step HKDF computed by `hkdf` (see
    /// [`chain::StepHkdf`]).
    pub(crate) fn receive_with(
        &self,
        msg: &[u8],
        hkdf: &mut chain::StepHkdf<'_>,
    ) -> Result<(SpqrReceipt, [u8; 32]), SpqrError> {
        match self.receive_optional_key_with(msg, hkdf)? {
            (receipt, Some(key)) => Ok((receipt, key)),
            (_, None) => Err(SpqrError::NoMessageKey),
        }
    }

    /// Applies what [`Self::receive`] or [`Self::receive_optional_key`] returned for a message
    /// to this (unchanged) state.
    pub fn commit(&mut self, receipt: SpqrReceipt) {
        self.negotiating = false;
        if let Some(scka) = receipt.scka {
            self.scka = scka;
        }
        match receipt.chain {
            ChainChange::Unchanged => {}
            ChainChange::Recv(update) => self.chain.apply(update),
            ChainChange::Whole(chain) => self.chain = chain,
        }
    }

    /// [`Self::recv_optional_key`] without copying the state (see [`Self::receive`]).
    pub fn receive_optional_key(&self, msg: &[u8]) -> Result<(SpqrReceipt, Option<[u8; 32]>), SpqrError> {
        self.receive_optional_key_with(msg, &mut chain::plain_step)
    }

    fn receive_optional_key_with(
        &self,
        msg: &[u8],
        hkdf: &mut chain::StepHkdf<'_>,
    ) -> Result<(SpqrReceipt, Option<[u8; 32]>), SpqrError> {
        match msg.first() {
            None | Some(0) => {
                return Err(if self.negotiating {
                    SpqrError::MinimumVersion
                } else {
                    SpqrError::VersionMismatch
                })
            }
            Some(&VERSION_V1) => {}
            Some(&v) => return Err(SpqrError::UnsupportedVersion(v)),
        }
        let (m, _used) = WireMessage::decode(msg)?;
        let (scka, secret) = if self.scka.ignores(m.epoch, &m.payload) {
            (None, None)
        } else {
            let (scka, secret) = Scka::clone(&self.scka).recv(m.epoch, &m.payload)?;
            (Some(std::sync::Arc::new(scka)), secret)
        };
        let key_epoch = m.epoch.checked_sub(1).ok_or(SpqrError::EpochOutOfRange(m.epoch))?;
        let keyless = key_epoch == 0 && m.index == 0;
        let (chain, key) = match secret {
            // A completed KEM exchange adds an epoch: the whole chain changes (rare).
            Some(s) => {
                let mut chain = self.chain.clone();
                chain.add_epoch(s.epoch, &s.secret)?;
                let key = if keyless { None } else { Some(chain.recv_key(key_epoch, m.index)?.0) };
                (ChainChange::Whole(chain), key)
            }
            // Otherwise one receiving direction moves (most messages).
            None if keyless => (ChainChange::Unchanged, None),
            None => {
                let (key, update) = self.chain.peek_recv_key(key_epoch, m.index, hkdf)?;
                (ChainChange::Recv(update), Some(key.0))
            }
        };
        Ok((SpqrReceipt { scka, chain }, key))
    }

    /// The newest epoch whose chains exist (grows by one per completed KEM exchange).
    pub fn current_epoch(&self) -> u64 {
        self.chain.current_epoch()
    }

    /// The epoch of the KEM exchange in progress (starts at 1).
    pub fn exchange_epoch(&self) -> u64 {
        self.scka.epoch()
    }
}

#[cfg(test)]
mod tests;
