//! Session records and the pairwise encrypt/decrypt entry points.
//!
//! A [`SessionRecord`] holds the current session with one peer device and up to
//! [`MAX_ARCHIVED_SESSIONS`] archived ones (libsignal's layout): a message that fails under the
//! current state is tried under the archived ones, so messages in flight across a session reset
//! still decrypt.
//!
//! Simultaneous initiation: when both devices start a session at the same time, each receives a
//! pre-key message while its own session is still unacknowledged. Both then keep, as current, the
//! session whose PQXDH base key is lower (byte-wise), and archive the other; both sides see the
//! same two base keys, so both pick the same session. A pre-key message arriving when the current
//! session is acknowledged is a deliberate reset by the peer and becomes current.

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::consts::{MAX_ARCHIVED_SESSIONS, MAX_RECORD_LEN, SESSION_RECORD_VERSION};
use super::error::{DecodeError, E2eError};
use super::keys::KeyPair;
use super::message::{message_kind, MessageKind, PreKeyMessage, RatchetMessage};
use super::pqxdh::{self, ResponderKeys};
use super::prekeys::PreKeyBundle;
use super::ratchet::SessionState;
use super::store::{IdentityStore, PreKeyStore, SessionStore};

/// A peer device: account name and device id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerAddress {
    /// The peer's account (user id as text).
    pub name: String,
    /// The peer's device id.
    pub device_id: u32,
}

impl PeerAddress {
    /// An address.
    pub fn new(name: impl Into<String>, device_id: u32) -> Self {
        Self { name: name.into(), device_id }
    }
}

/// All session states with one peer device.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct SessionRecord {
    current: Option<SessionState>,
    previous: Vec<SessionState>,
}

impl core::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("current", &self.current)
            .field("archived", &self.previous.len())
            .finish()
    }
}

impl SessionRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current session, if any.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// Number of archived sessions.
    pub fn archived_len(&self) -> usize {
        self.previous.len()
    }

    /// Serializes the record (a version byte, then postcard).
    pub fn serialize(&self) -> Result<Vec<u8>, E2eError> {
        postcard::to_extend(self, vec![SESSION_RECORD_VERSION]).map_err(|_| E2eError::Crypto)
    }

    /// Restores a record, checking its size and every bound.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(DecodeError::TooLong);
        }
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        if version != SESSION_RECORD_VERSION {
            return Err(DecodeError::BadVersion);
        }
        let (record, rest): (Self, _) =
            postcard::take_from_bytes(body).map_err(|_| DecodeError::BadRecord)?;
        if !rest.is_empty() || record.previous.len() > MAX_ARCHIVED_SESSIONS {
            return Err(DecodeError::BadRecord);
        }
        if let Some(c) = &record.current {
            c.validate()?;
        }
        for s in &record.previous {
            s.validate()?;
        }
        Ok(record)
    }

    fn archive(&mut self, state: SessionState) {
        self.previous.insert(0, state);
        self.previous.truncate(MAX_ARCHIVED_SESSIONS);
    }

    /// Makes `state` current and archives the former current session (after processing a
    /// bundle: our own fresh initiation).
    pub fn promote_new(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            self.archive(old);
        }
    }

    /// Archives the current session (e.g. when the peer's identity changed).
    pub fn archive_current(&mut self) {
        if let Some(old) = self.current.take() {
            self.archive(old);
        }
    }

    /// Installs a session built from a peer's pre-key message (see the module docs).
    fn install_incoming(&mut self, state: SessionState) {
        match self.current.take() {
            Some(cur) if cur.is_unacknowledged() && cur.base_key() < state.base_key() => {
                self.current = Some(cur);
                self.archive(state);
            }
            Some(cur) => {
                self.archive(cur);
                self.current = Some(state);
            }
            None => self.current = Some(state),
        }
    }

    /// Encrypts under the current session.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &mut self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, E2eError> {
        self.current.as_mut().ok_or(E2eError::NoSession)?.encrypt(plaintext, rng)
    }

    /// Decrypts a `SignalMessage` under the current session, then the archived ones.
    pub fn decrypt_ratchet<R: RngCore + CryptoRng>(
        &mut self,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, E2eError> {
        let msg = RatchetMessage::decode(bytes)?;
        self.decrypt_with_any(&msg, rng)
    }

    fn decrypt_with_any<R: RngCore + CryptoRng>(
        &mut self,
        msg: &RatchetMessage<'_>,
        rng: &mut R,
    ) -> Result<Vec<u8>, E2eError> {
        let mut first_err = None;
        if let Some(cur) = self.current.as_mut() {
            match cur.decrypt(msg, rng) {
                Ok(p) => return Ok(p),
                Err(e) => first_err = Some(e),
            }
        }
        for s in &mut self.previous {
            if let Ok(p) = s.decrypt(msg, rng) {
                return Ok(p);
            }
        }
        Err(first_err.unwrap_or(E2eError::NoSession))
    }

    /// Decrypts a `PreKeySignalMessage`: under the session it names if we already have it, else
    /// by running PQXDH as responder with the pre-keys it names. A one-time EC or Kyber pre-key
    /// is used up only after the message decrypted (a last-resort Kyber key stays).
    pub fn decrypt_prekey<P: PreKeyStore + ?Sized, R: RngCore + CryptoRng>(
        &mut self,
        bytes: &[u8],
        our_identity: &KeyPair,
        our_registration_id: u32,
        prekeys: &mut P,
        rng: &mut R,
    ) -> Result<Vec<u8>, E2eError> {
        let m = PreKeyMessage::decode(bytes)?;
        let inner = RatchetMessage::decode(&m.message)?;
        let base = m.fields.base_key;
        if let Some(cur) = self.current.as_mut().filter(|c| *c.base_key() == base) {
            return cur.decrypt(&inner, rng);
        }
        if let Some(s) = self.previous.iter_mut().find(|s| *s.base_key() == base) {
            return s.decrypt(&inner, rng);
        }
        let spk_id = m.fields.signed_pre_key_id;
        let spk = prekeys.signed_pre_key(spk_id)?.ok_or(E2eError::UnknownSignedPreKey(spk_id.get()))?;
        let otk = match m.fields.pre_key_id {
            Some(id) => Some(prekeys.pre_key(id)?.ok_or(E2eError::UnknownPreKey(id.get()))?),
            None => None,
        };
        let kyber_id = m.fields.kyber_pre_key_id;
        let kyber = prekeys.kyber_pre_key(kyber_id)?.ok_or(E2eError::UnknownKyberPreKey(kyber_id.get()))?;
        let mut state = pqxdh::accept_session(
            &ResponderKeys {
                identity: our_identity,
                signed_pre_key: &spk.key_pair,
                one_time_pre_key: otk.as_ref().map(|k| &k.key_pair),
                kyber_pre_key: kyber.key_pair.secret_key(),
            },
            our_registration_id,
            &m.fields,
        )?;
        let plaintext = state.decrypt(&inner, rng)?;
        if let Some(id) = m.fields.pre_key_id {
            prekeys.remove_pre_key(id)?;
        }
        prekeys.mark_kyber_pre_key_used(kyber_id, &m.fields.base_key)?;
        self.install_incoming(state);
        Ok(plaintext)
    }
}

/// Starts a session with a peer device from its bundle (checks the bundle's signatures and that
/// its identity is trusted, then runs PQXDH). The next [`encrypt_message`] sends a pre-key message.
pub fn process_prekey_bundle<S, R>(
    store: &mut S,
    address: &PeerAddress,
    bundle: &PreKeyBundle,
    rng: &mut R,
) -> Result<(), E2eError>
where
    S: IdentityStore + SessionStore + ?Sized,
    R: RngCore + CryptoRng,
{
    if !store.is_trusted_identity(address, &bundle.identity_key)? {
        return Err(E2eError::UntrustedIdentity);
    }
    let identity = store.identity_key_pair()?;
    let state = pqxdh::start_session(&identity, store.local_registration_id()?, bundle, rng)?;
    let mut record = store.load_session(address)?.unwrap_or_default();
    record.promote_new(state);
    store.store_session(address, record)?;
    store.save_identity(address, &bundle.identity_key)?;
    Ok(())
}

/// Encrypts for a peer device with the stored session. The message is a `PreKeySignalMessage`
/// while the session is unacknowledged ([`SessionState::is_unacknowledged`] before the call),
/// a `SignalMessage` after.
pub fn encrypt_message<S: SessionStore + ?Sized, R: RngCore + CryptoRng>(
    store: &mut S,
    address: &PeerAddress,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, E2eError> {
    let mut record = store.load_session(address)?.ok_or(E2eError::NoSession)?;
    let out = record.encrypt(plaintext, rng)?;
    store.store_session(address, record)?;
    Ok(out)
}

/// Decrypts a pre-key or ratchet message from a peer device and stores the updated session;
/// the kind is read from the message's shape (see [`decrypt_message_of_kind`] when the
/// envelope says it).
pub fn decrypt_message<S, R>(
    store: &mut S,
    address: &PeerAddress,
    bytes: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, E2eError>
where
    S: IdentityStore + PreKeyStore + SessionStore + ?Sized,
    R: RngCore + CryptoRng,
{
    let kind = message_kind(bytes)?;
    decrypt_message_of_kind(store, address, kind, bytes, rng)
}

/// Decrypts a message whose kind the envelope gave (Signal's `Envelope.Type`: `CIPHERTEXT` is
/// [`MessageKind::Ratchet`], `PREKEY_BUNDLE` is [`MessageKind::PreKey`]) and stores the updated
/// session. Nothing is stored when it fails.
pub fn decrypt_message_of_kind<S, R>(
    store: &mut S,
    address: &PeerAddress,
    kind: MessageKind,
    bytes: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, E2eError>
where
    S: IdentityStore + PreKeyStore + SessionStore + ?Sized,
    R: RngCore + CryptoRng,
{
    let mut record = store.load_session(address)?.unwrap_or_default();
    let plaintext = match kind {
        MessageKind::Ratchet => record.decrypt_ratchet(bytes, rng)?,
        MessageKind::PreKey => {
            let identity_key = PreKeyMessage::decode(bytes)?.fields.identity_key;
            if !store.is_trusted_identity(address, &identity_key)? {
                return Err(E2eError::UntrustedIdentity);
            }
            let identity = store.identity_key_pair()?;
            let reg = store.local_registration_id()?;
            let p = record.decrypt_prekey(bytes, &identity, reg, store, rng)?;
            store.save_identity(address, &identity_key)?;
            p
        }
    };
    store.store_session(address, record)?;
    Ok(plaintext)
}
