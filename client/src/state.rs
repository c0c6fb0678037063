//! The end-to-end state of one device: its identity key, its pre-keys with their private halves,
//! the pairwise sessions and trusted identities of its peers, the sender keys of its groups, and
//! the ids of the messages it already handled (delivery is at least once).
//!
//! [`DeviceState`] implements the store traits of `hush_protocol::e2e`, so the library's
//! functions run on it directly. It is kept in memory (tests) or in a file of the CLI profile
//! ([`DeviceState::save_file`], mode 0600, written to a temporary file then renamed): a version
//! byte then postcard. Session and sender-key records are held in their own serialized form and
//! checked by the library's decoders at each use. `Debug` prints no key material.
//!
//! Bounds: [`MAX_LOCAL_ONE_TIME_KEYS`] EC one-time private keys, [`MAX_SEEN_IDS`] handled message
//! ids, [`MAX_PEERS`] sessions, [`MAX_SENDER_KEYS`] sender-key records, [`MAX_GROUPS`] groups.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::Path;

use hush_protocol::e2e::kem::KyberKeyPair;
use hush_protocol::e2e::keys::{KeyId, KeyPair, KyberPublicKey, PublicKey, KYBER1024_KEY_TYPE};
use hush_protocol::e2e::message::MessageKind;
use hush_protocol::e2e::prekeys::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use hush_protocol::e2e::store::{IdentityStore, PreKeyStore, SenderKeyStore, SessionStore};
use hush_protocol::e2e::{
    session as e2e_session, store as e2e_store, E2eError, OneTimePreKey, PeerAddress, PreKeyBundle,
    SenderKeyDistributionMessage, SenderKeyRecord, SessionRecord, SignedEcPreKey, SignedKyberPreKey,
};
use hush_protocol::ids::{DeviceId, MessageId, RegistrationId, UserId};
use hush_protocol::wire::ContentType;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use crate::quarantine::{Quarantined, MAX_QUARANTINED};
use crate::retry::{RecentSent, SentTo, MAX_RECENT_SENT, RECENT_SENT_TTL_MS, RESET_INTERVAL_MS};

/// One-time pre-keys per upload (Signal clients refill in batches of 100; the node takes at most
/// 100 per list).
pub const ONE_TIME_BATCH: usize = 100;
/// EC one-time private keys kept locally. A new batch replaces the node's list, but a peer may
/// still hold a key of the previous batch in a pre-key message in flight, so older keys are kept
/// up to this bound (oldest dropped first).
pub const MAX_LOCAL_ONE_TIME_KEYS: usize = 5 * ONE_TIME_BATCH;
/// Message ids remembered for deduplication (oldest forgotten first).
pub const MAX_SEEN_IDS: usize = 10_000;
/// Peer devices with a session or a trusted identity.
pub const MAX_PEERS: usize = 10_000;
/// Sender-key records (one per sender device and group).
pub const MAX_SENDER_KEYS: usize = 20_000;
/// Groups this device sends to.
pub const MAX_GROUPS: usize = 1_000;
/// Signed pre-keys kept: the current one and the previous one (for pre-key messages in flight).
const SIGNED_KEYS_KEPT: usize = 2;
/// Key ids are allocated from a 24-bit wrapping counter, as libsignal clients do.
const KEY_ID_MASK: u32 = 0x00ff_ffff;
/// Version byte of the saved state. Version 2 appends the quarantine (postcard) after the
/// version 1 body; a version 1 state reads with an empty quarantine.
const STATE_VERSION: u8 = 3;
/// The version before the replaced Kyber last-resort keys were kept (read with none kept).
const STATE_VERSION_2: u8 = 2;
/// The version before the quarantine, still read.
const STATE_VERSION_1: u8 = 1;
/// Length of the seed a Kyber-1024 key pair is derived from (FIPS 203 `d || z`).
const KYBER_SEED_LEN: usize = 64;

/// Errors of the device state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The E2E library refused an operation.
    #[error("e2e: {0}")]
    E2e(#[from] E2eError),
    /// The saved state does not decode.
    #[error("corrupt device state")]
    Corrupt,
    /// Reading or writing the state file failed.
    #[error("device state file: {0}")]
    Io(#[from] std::io::Error),
    /// A bound of this module would be exceeded.
    #[error("too many {0}")]
    Full(&'static str),
}

/// Bytes that must not leak: zeroized on drop, redacted in `Debug`.
#[derive(Clone, Serialize, Deserialize)]
struct SecretBytes(Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecretBytes(..)")
    }
}

/// A Kyber-1024 pre-key: the key pair is derived from a 64-byte seed (kept instead of the
/// 3,168-byte decapsulation key), with the identity key's signature over the serialized public key.
#[derive(Clone, Serialize, Deserialize)]
struct KyberKey {
    key_id: KeyId,
    seed: SecretBytes,
    signature: Vec<u8>,
}

fn kyber_public(seed: &[u8]) -> Result<KyberPublicKey, StateError> {
    let mut s = Zeroizing::new([0u8; KYBER_SEED_LEN]);
    s.copy_from_slice(seed.get(..KYBER_SEED_LEN).ok_or(StateError::Corrupt)?);
    let pair = libcrux_ml_kem::kyber1024::generate_key_pair(*s);
    let mut bytes = Vec::with_capacity(1 + pair.pk().len());
    bytes.push(KYBER1024_KEY_TYPE);
    bytes.extend_from_slice(pair.pk());
    KyberPublicKey::deserialize(&bytes).map_err(|e| StateError::E2e(e.into()))
}

impl KyberKey {
    fn generate(key_id: KeyId, identity: &KeyPair) -> Result<Self, StateError> {
        let mut seed = vec![0u8; KYBER_SEED_LEN];
        OsRng.fill_bytes(&mut seed);
        let seed = SecretBytes(seed);
        let public = kyber_public(&seed.0)?;
        let signature = identity.sign(public.serialize(), &mut OsRng).to_vec();
        Ok(Self { key_id, seed, signature })
    }

    /// The full record (secret key re-derived from the seed), for the responder side of PQXDH.
    fn record(&self, last_resort: bool) -> Result<KyberPreKeyRecord, E2eError> {
        let mut seed = Zeroizing::new([0u8; KYBER_SEED_LEN]);
        seed.copy_from_slice(self.seed.0.get(..KYBER_SEED_LEN).ok_or(E2eError::Crypto)?);
        Ok(KyberPreKeyRecord {
            key_id: self.key_id,
            key_pair: KyberKeyPair::from_seed(&seed)?,
            signature: self.signature.clone(),
            last_resort,
        })
    }

    fn public(&self) -> Result<SignedKyberPreKey, StateError> {
        Ok(SignedKyberPreKey {
            key_id: self.key_id,
            public_key: kyber_public(&self.seed.0)?,
            signature: self.signature.clone(),
        })
    }
}

/// What this device sends with in one group.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupSending {
    /// The group epoch our current sending chain was made for; a newer epoch (a member left)
    /// means the chain must be replaced before the next send.
    pub epoch: u64,
    /// Member devices that hold our current chain.
    pub sent_to: BTreeSet<(String, u32)>,
}

/// The persisted part; `DeviceState` wraps it with the deduplication index.
#[derive(Serialize, Deserialize)]
struct Saved {
    registration_id: RegistrationId,
    identity: KeyPair,
    next_key_id: u32,
    /// Newest first.
    signed: Vec<SignedPreKeyRecord>,
    signed_created_ms: u64,
    /// Oldest first.
    one_time: VecDeque<PreKeyRecord>,
    kyber_one_time: Vec<KyberKey>,
    kyber_last_resort: KyberKey,
    identities: BTreeMap<PeerAddress, PublicKey>,
    sessions: BTreeMap<PeerAddress, Vec<u8>>,
    sender_keys: BTreeMap<(PeerAddress, Uuid), Vec<u8>>,
    groups: BTreeMap<String, GroupSending>,
    /// Oldest first.
    seen: VecDeque<MessageId>,
}

/// The end-to-end state of one device (see the module docs).
pub struct DeviceState {
    saved: Saved,
    /// Envelopes that could not be decrypted (saved after `saved`; oldest first; at most
    /// [`MAX_QUARANTINED`]).
    quarantine: VecDeque<Quarantined>,
    /// Texts sent recently, for re-sending on a retry request (oldest first; at most
    /// [`MAX_RECENT_SENT`], see [`crate::retry`]). Memory only: never saved, so no plaintext is
    /// ever written to the state file.
    recent_sent: VecDeque<RecentSent>,
    /// When the session with a device was last reset on its retry request (not saved; at most
    /// [`MAX_PEERS`]).
    retry_resets: BTreeMap<PeerAddress, u64>,
    seen_index: HashSet<MessageId>,
    /// Peers whose identity key changed since the last [`DeviceState::take_identity_changes`]
    /// (not saved; at most [`MAX_PEERS`]).
    identity_changes: Vec<PeerAddress>,
    /// Kyber last-resort keys replaced by a rotation, newest first (saved after the
    /// quarantine; at most `SIGNED_KEYS_KEPT - 1`).
    previous_last_resort: Vec<KyberKey>,
}

impl core::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceState")
            .field("registration_id", &self.saved.registration_id)
            .field("identity", self.saved.identity.public_key())
            .field("one_time_keys", &self.saved.one_time.len())
            .field("kyber_one_time_keys", &self.saved.kyber_one_time.len())
            .field("sessions", &self.saved.sessions.len())
            .field("sender_keys", &self.saved.sender_keys.len())
            .finish_non_exhaustive()
    }
}

/// The public pre-keys to upload.
#[derive(Clone, Debug)]
pub struct PreKeyUpload {
    /// The signed EC pre-key, if it changed.
    pub signed_pre_key: Option<SignedEcPreKey>,
    /// EC one-time pre-keys (replace the node's list when non-empty).
    pub one_time: Vec<OneTimePreKey>,
    /// Kyber one-time pre-keys (replace the node's list when non-empty).
    pub kyber_one_time: Vec<SignedKyberPreKey>,
    /// The Kyber last-resort key, if it changed.
    pub kyber_last_resort: Option<SignedKyberPreKey>,
}

/// Now, ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The address the E2E library knows a device by.
pub fn peer(user: &UserId, device: DeviceId) -> PeerAddress {
    PeerAddress::new(user.as_str(), device.get())
}

/// The sender-key distribution id of a group: derived from the group id, so a group message can
/// only be decrypted with a chain distributed for that very group.
pub fn distribution_id(group: &str) -> Uuid {
    let digest = Sha256::new().chain_update(b"hush group distribution id\0").chain_update(group).finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(b)
}

impl DeviceState {
    /// A new device: fresh identity key, signed pre-key and Kyber last-resort key.
    pub fn generate(registration_id: RegistrationId) -> Result<Self, StateError> {
        let identity = KeyPair::generate(&mut OsRng);
        let mut next_key_id = OsRng.next_u32() & KEY_ID_MASK;
        let mut alloc = || {
            let id = next_key_id;
            next_key_id = (next_key_id + 1) & KEY_ID_MASK;
            KeyId::from_u32(id)
        };
        let signed = SignedPreKeyRecord::generate(alloc().map_err(E2eError::from)?, &identity, &mut OsRng);
        let kyber_last_resort = KyberKey::generate(alloc().map_err(E2eError::from)?, &identity)?;
        Ok(Self {
            saved: Saved {
                registration_id,
                identity,
                next_key_id,
                signed: vec![signed],
                signed_created_ms: now_ms(),
                one_time: VecDeque::new(),
                kyber_one_time: Vec::new(),
                kyber_last_resort,
                identities: BTreeMap::new(),
                sessions: BTreeMap::new(),
                sender_keys: BTreeMap::new(),
                groups: BTreeMap::new(),
                seen: VecDeque::new(),
            },
            quarantine: VecDeque::new(),
            recent_sent: VecDeque::new(),
            retry_resets: BTreeMap::new(),
            seen_index: HashSet::new(),
            identity_changes: Vec::new(),
            previous_last_resort: Vec::new(),
        })
    }

    fn alloc_key_id(&mut self) -> Result<KeyId, StateError> {
        let id = self.saved.next_key_id;
        self.saved.next_key_id = (id + 1) & KEY_ID_MASK;
        Ok(KeyId::from_u32(id).map_err(E2eError::from)?)
    }

    /// This device's registration id.
    pub fn registration_id(&self) -> RegistrationId {
        self.saved.registration_id
    }

    /// Adopts the registration id the node keeps for this device (it picks a new one when a
    /// re-registration reused the old value).
    pub fn set_registration_id(&mut self, id: RegistrationId) {
        self.saved.registration_id = id;
    }

    /// This device's identity public key.
    pub fn identity_key(&self) -> PublicKey {
        *self.saved.identity.public_key()
    }

    /// When the current signed pre-key was made (ms since the Unix epoch).
    pub fn signed_pre_key_created_ms(&self) -> u64 {
        self.saved.signed_created_ms
    }

    /// Every public pre-key of the device, with fresh batches of [`ONE_TIME_BATCH`] EC and Kyber
    /// one-time keys: what a newly registered device uploads.
    pub fn full_upload(&mut self) -> Result<PreKeyUpload, StateError> {
        let signed = self.saved.signed.first().map(SignedPreKeyRecord::public);
        let last_resort = self.saved.kyber_last_resort.public()?;
        Ok(PreKeyUpload {
            signed_pre_key: signed,
            one_time: self.new_one_time_keys(ONE_TIME_BATCH)?,
            kyber_one_time: self.new_kyber_keys(ONE_TIME_BATCH)?,
            kyber_last_resort: Some(last_resort),
        })
    }

    /// The signed pre-key and the Kyber last-resort key: what a login registering a new device
    /// carries (nothing is generated).
    pub fn signed_upload(&self) -> Result<PreKeyUpload, StateError> {
        Ok(PreKeyUpload {
            signed_pre_key: self.saved.signed.first().map(SignedPreKeyRecord::public),
            one_time: Vec::new(),
            kyber_one_time: Vec::new(),
            kyber_last_resort: Some(self.saved.kyber_last_resort.public()?),
        })
    }

    /// Fresh batches of [`ONE_TIME_BATCH`] EC and Kyber one-time keys, for the upload after a
    /// login that carried [`DeviceState::signed_upload`].
    pub fn one_time_upload(&mut self) -> Result<PreKeyUpload, StateError> {
        Ok(PreKeyUpload {
            signed_pre_key: None,
            one_time: self.new_one_time_keys(ONE_TIME_BATCH)?,
            kyber_one_time: self.new_kyber_keys(ONE_TIME_BATCH)?,
            kyber_last_resort: None,
        })
    }

    /// `n` new EC one-time pre-keys (their private halves kept; see [`MAX_LOCAL_ONE_TIME_KEYS`]).
    pub fn new_one_time_keys(&mut self, n: usize) -> Result<Vec<OneTimePreKey>, StateError> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let rec = PreKeyRecord::generate(self.alloc_key_id()?, &mut OsRng);
            out.push(rec.public());
            self.saved.one_time.push_back(rec);
        }
        while self.saved.one_time.len() > MAX_LOCAL_ONE_TIME_KEYS {
            self.saved.one_time.pop_front();
        }
        Ok(out)
    }

    /// `n` new signed Kyber one-time pre-keys. The node replaces its list with them, but the
    /// previous ones are kept here too (up to [`MAX_LOCAL_ONE_TIME_KEYS`], oldest dropped first):
    /// a peer may have fetched one just before the upload, and its pre-key message (PQXDH) needs
    /// the secret half.
    pub fn new_kyber_keys(&mut self, n: usize) -> Result<Vec<SignedKyberPreKey>, StateError> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.alloc_key_id()?;
            let key = KyberKey::generate(id, &self.saved.identity)?;
            out.push(key.public()?);
            self.saved.kyber_one_time.push(key);
        }
        if self.saved.kyber_one_time.len() > MAX_LOCAL_ONE_TIME_KEYS {
            let excess = self.saved.kyber_one_time.len() - MAX_LOCAL_ONE_TIME_KEYS;
            self.saved.kyber_one_time.drain(..excess);
        }
        Ok(out)
    }

    /// Replaces the signed pre-key (the previous one is kept for messages in flight) and the
    /// Kyber last-resort key; returns both public keys to upload.
    pub fn rotate_signed_keys(&mut self) -> Result<PreKeyUpload, StateError> {
        let id = self.alloc_key_id()?;
        let signed = SignedPreKeyRecord::generate(id, &self.saved.identity, &mut OsRng);
        let public = signed.public();
        self.saved.signed.insert(0, signed);
        self.saved.signed.truncate(SIGNED_KEYS_KEPT);
        self.saved.signed_created_ms = now_ms();
        let id = self.alloc_key_id()?;
        let old = std::mem::replace(
            &mut self.saved.kyber_last_resort,
            KyberKey::generate(id, &self.saved.identity)?,
        );
        // The replaced last-resort key stays usable for sessions peers start from bundles
        // fetched before the rotation (as the previous signed pre-key does).
        self.previous_last_resort.insert(0, old);
        self.previous_last_resort.truncate(SIGNED_KEYS_KEPT - 1);
        Ok(PreKeyUpload {
            signed_pre_key: Some(public),
            one_time: Vec::new(),
            kyber_one_time: Vec::new(),
            kyber_last_resort: Some(self.saved.kyber_last_resort.public()?),
        })
    }

    /// EC one-time private keys held.
    pub fn one_time_key_count(&self) -> usize {
        self.saved.one_time.len()
    }

    /// Whether a session with `address` exists, built for the device's current registration id
    /// (a re-registered device has a new one and needs a new session).
    pub fn has_session(&self, address: &PeerAddress, registration_id: RegistrationId) -> bool {
        match self.load_session(address) {
            Ok(Some(rec)) => {
                rec.current().is_some_and(|s| s.remote_registration_id() == u32::from(registration_id.get()))
            }
            _ => false,
        }
    }

    /// Starts a session from a fetched bundle (the bundle's signatures are checked). A device
    /// whose identity changed (re-registered) is trusted anew: the node vouches for the
    /// registration and the old session is archived.
    pub fn start_session(&mut self, address: &PeerAddress, bundle: &PreKeyBundle) -> Result<(), StateError> {
        if !self.is_trusted_identity(address, &bundle.identity_key)? {
            self.forget_peer(address);
            self.note_identity_change(address);
        }
        if !self.saved.sessions.contains_key(address) && self.saved.sessions.len() >= MAX_PEERS {
            return Err(StateError::Full("sessions"));
        }
        e2e_session::process_prekey_bundle(self, address, bundle, &mut OsRng)?;
        Ok(())
    }

    fn note_identity_change(&mut self, address: &PeerAddress) {
        if self.identity_changes.len() < MAX_PEERS {
            self.identity_changes.push(address.clone());
        }
    }

    /// The peer devices whose identity key changed (they re-registered) since the last call:
    /// their new key was accepted, as vouched for by the node; a user may want to know.
    pub fn take_identity_changes(&mut self) -> Vec<PeerAddress> {
        std::mem::take(&mut self.identity_changes)
    }

    /// Drops the session with a device, keeping its trusted identity (it re-registered: a new
    /// session is needed, and a new identity key will be noticed).
    pub fn forget_session(&mut self, address: &PeerAddress) {
        self.saved.sessions.remove(address);
    }

    /// Drops the session and trusted identity of a device (it re-registered or was removed).
    pub fn forget_peer(&mut self, address: &PeerAddress) {
        self.saved.sessions.remove(address);
        self.saved.identities.remove(address);
    }

    /// Encrypts for a peer device with its session.
    pub fn encrypt(&mut self, address: &PeerAddress, plaintext: &[u8]) -> Result<Vec<u8>, StateError> {
        Ok(e2e_session::encrypt_message(self, address, plaintext, &mut OsRng)?)
    }

    /// Encrypts for a peer device with its session, and says what the ciphertext is from the
    /// session's state: `prekey` while the session is not acknowledged by the peer yet (the
    /// first message(s) of a new session carry the pre-key fields), `ciphertext` after.
    pub fn encrypt_typed(
        &mut self,
        address: &PeerAddress,
        plaintext: &[u8],
    ) -> Result<(ContentType, Vec<u8>), StateError> {
        let pending = self.load_session(address)?.and_then(|r| r.current().map(|s| s.is_unacknowledged()));
        let ct = self.encrypt(address, plaintext)?;
        let t = if pending == Some(true) { ContentType::PreKey } else { ContentType::Ciphertext };
        Ok((t, ct))
    }

    /// Keeps an envelope that could not be decrypted (see [`crate::quarantine`]); false, and
    /// nothing kept, when the quarantine holds [`MAX_QUARANTINED`] already. An envelope already
    /// held (the same message id from the same device) is not added twice.
    pub fn quarantine(&mut self, q: Quarantined) -> bool {
        if self.quarantine.iter().any(|h| h.id == q.id && h.from == q.from && h.from_device == q.from_device)
        {
            return true;
        }
        if self.quarantine.len() >= MAX_QUARANTINED {
            return false;
        }
        self.quarantine.push_back(q);
        true
    }

    /// The envelopes that could not be decrypted, oldest first.
    pub fn quarantined(&self) -> impl ExactSizeIterator<Item = &Quarantined> {
        self.quarantine.iter()
    }

    /// Whether an envelope with message id `id` from `from` is in the quarantine.
    pub fn is_quarantined(&self, id: &MessageId, from: &UserId, from_device: DeviceId) -> bool {
        self.quarantine.iter().any(|q| q.id == *id && q.from == *from && q.from_device == from_device)
    }

    /// Removes the quarantined envelopes with message id `id` from `from` (it came again and
    /// was read); returns how many.
    pub fn release_quarantined_from(
        &mut self,
        id: &MessageId,
        from: &UserId,
        from_device: DeviceId,
    ) -> usize {
        let before = self.quarantine.len();
        self.quarantine.retain(|q| !(q.id == *id && q.from == *from && q.from_device == from_device));
        before - self.quarantine.len()
    }

    /// Remembers a text this device sent, for re-sending on a retry request (see
    /// [`crate::retry`]); entries older than a day and beyond [`MAX_RECENT_SENT`] are forgotten.
    pub fn remember_sent(&mut self, id: MessageId, to: SentTo, body: &str) {
        let now = now_ms();
        self.recent_sent.retain(|r| r.id != id && now.saturating_sub(r.sent_ms) < RECENT_SENT_TTL_MS);
        while self.recent_sent.len() >= MAX_RECENT_SENT {
            self.recent_sent.pop_front();
        }
        self.recent_sent.push_back(RecentSent { id, to, body: body.to_owned(), sent_ms: now, resends: 0 });
    }

    /// The remembered text with message id `id`, if it is younger than a day.
    pub fn recent_sent(&self, id: &MessageId) -> Option<&RecentSent> {
        let now = now_ms();
        self.recent_sent.iter().find(|r| r.id == *id && now.saturating_sub(r.sent_ms) < RECENT_SENT_TTL_MS)
    }

    /// Counts one re-send of `id`.
    pub fn note_resent(&mut self, id: &MessageId) {
        if let Some(r) = self.recent_sent.iter_mut().find(|r| r.id == *id) {
            r.resends = r.resends.saturating_add(1);
        }
    }

    /// On a retry request from `address`: drops the session with it (unless that was done less
    /// than [`RESET_INTERVAL_MS`] ago; returns whether it was) and forgets that it holds any of
    /// our sender keys, so the next group send hands them to it again.
    pub fn reset_for_retry(&mut self, address: &PeerAddress) -> bool {
        let now = now_ms();
        let key = (address.name.clone(), address.device_id);
        for g in self.saved.groups.values_mut() {
            g.sent_to.remove(&key);
        }
        if self.retry_resets.get(address).is_some_and(|t| now.saturating_sub(*t) < RESET_INTERVAL_MS) {
            return false;
        }
        if self.retry_resets.len() >= MAX_PEERS {
            self.retry_resets.clear();
        }
        self.retry_resets.insert(address.clone(), now);
        self.forget_session(address);
        true
    }

    /// Removes the quarantined envelopes with message id `id` (the application handled them);
    /// returns them.
    pub fn release_quarantined(&mut self, id: &MessageId) -> Vec<Quarantined> {
        let (out, keep): (VecDeque<Quarantined>, VecDeque<Quarantined>) =
            std::mem::take(&mut self.quarantine).into_iter().partition(|q| q.id == *id);
        self.quarantine = keep;
        out.into()
    }

    /// Decrypts a pre-key or ratchet message from a peer device, telling them apart by their
    /// shape (see [`DeviceState::decrypt_typed`] when the envelope's type is known).
    pub fn decrypt(&mut self, address: &PeerAddress, bytes: &[u8]) -> Result<Vec<u8>, StateError> {
        self.decrypt_typed(address, ContentType::Unknown, bytes)
    }

    /// Decrypts a `PreKeySignalMessage` (`prekey`) or `SignalMessage` (`ciphertext`) from a peer
    /// device; `unknown` (envelopes stored before types existed) is told by its shape. A
    /// pre-key message carrying a new identity for a known device (it re-registered) replaces
    /// the old session and identity.
    pub fn decrypt_typed(
        &mut self,
        address: &PeerAddress,
        content_type: ContentType,
        bytes: &[u8],
    ) -> Result<Vec<u8>, StateError> {
        let kind = match content_type {
            ContentType::PreKey => MessageKind::PreKey,
            ContentType::Ciphertext => MessageKind::Ratchet,
            _ => hush_protocol::e2e::message::message_kind(bytes).map_err(E2eError::from)?,
        };
        match e2e_session::decrypt_message_of_kind(self, address, kind, bytes, &mut OsRng) {
            Err(E2eError::UntrustedIdentity) => {
                self.forget_peer(address);
                self.note_identity_change(address);
                Ok(e2e_session::decrypt_message_of_kind(self, address, kind, bytes, &mut OsRng)?)
            }
            r => Ok(r?),
        }
    }

    /// Our sending state in `group`.
    pub fn group_sending(&self, group: &str) -> Option<&GroupSending> {
        self.saved.groups.get(group)
    }

    /// Our current sender-key distribution for `group`, made for `epoch` (a new chain when we
    /// have none yet, or when ours predates `epoch`: a member left since). The second value is
    /// true when the chain is new, so every member device needs it again.
    pub fn group_distribution(
        &mut self,
        us: &PeerAddress,
        group: &str,
        epoch: u64,
    ) -> Result<(Zeroizing<Vec<u8>>, bool), StateError> {
        self.group_distribution_with(us, group, epoch, false)
    }

    /// Like [`Self::group_distribution`], but always with a new chain (the node asked for a
    /// rotation because the chain is old or much used).
    pub fn rotate_group_chain(
        &mut self,
        us: &PeerAddress,
        group: &str,
        epoch: u64,
    ) -> Result<Zeroizing<Vec<u8>>, StateError> {
        Ok(self.group_distribution_with(us, group, epoch, true)?.0)
    }

    fn group_distribution_with(
        &mut self,
        us: &PeerAddress,
        group: &str,
        epoch: u64,
        force: bool,
    ) -> Result<(Zeroizing<Vec<u8>>, bool), StateError> {
        let dist = distribution_id(group);
        let stale = force || self.saved.groups.get(group).is_none_or(|g| g.epoch < epoch);
        if !self.saved.groups.contains_key(group) && self.saved.groups.len() >= MAX_GROUPS {
            return Err(StateError::Full("groups"));
        }
        let skdm = if stale {
            e2e_store::rotate_sender_key(self, us, dist, &mut OsRng)?
        } else {
            e2e_store::create_sender_key_distribution(self, us, dist, &mut OsRng)?
        };
        if stale {
            self.saved.groups.insert(group.to_owned(), GroupSending { epoch, sent_to: BTreeSet::new() });
        }
        Ok((skdm.encode(), stale))
    }

    /// Records that a member device now holds our current chain for `group`.
    pub fn mark_distributed(&mut self, group: &str, address: &PeerAddress) {
        if let Some(g) = self.saved.groups.get_mut(group) {
            g.sent_to.insert((address.name.clone(), address.device_id));
        }
    }

    /// Whether `address` holds our current chain for `group`.
    pub fn holds_our_key(&self, group: &str, address: &PeerAddress) -> bool {
        self.saved
            .groups
            .get(group)
            .is_some_and(|g| g.sent_to.contains(&(address.name.clone(), address.device_id)))
    }

    /// Forgets our chain for `group` (we left it, or it must be replaced at the next send).
    pub fn drop_group_chain(&mut self, group: &str) {
        self.saved.groups.remove(group);
    }

    /// Stores a member's chain for `group` from its distribution message (refused when the
    /// message was made for another group).
    pub fn process_distribution(
        &mut self,
        sender: &PeerAddress,
        group: &str,
        skdm: &[u8],
    ) -> Result<(), StateError> {
        let skdm = SenderKeyDistributionMessage::decode(skdm).map_err(E2eError::from)?;
        if skdm.distribution_id != distribution_id(group) {
            return Err(StateError::E2e(E2eError::NoSenderKeyState));
        }
        if !self.saved.sender_keys.contains_key(&(sender.clone(), skdm.distribution_id))
            && self.saved.sender_keys.len() >= MAX_SENDER_KEYS
        {
            return Err(StateError::Full("sender keys"));
        }
        e2e_store::process_sender_key_distribution(self, sender, &skdm)?;
        Ok(())
    }

    /// Encrypts a group message with our chain for `group` (see [`Self::group_distribution`]).
    pub fn group_encrypt(
        &mut self,
        us: &PeerAddress,
        group: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StateError> {
        Ok(e2e_store::group_encrypt(self, us, distribution_id(group), plaintext, &mut OsRng)?)
    }

    /// Decrypts a group message of `sender` in `group`.
    pub fn group_decrypt(
        &mut self,
        sender: &PeerAddress,
        group: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>, StateError> {
        let m = hush_protocol::e2e::sender_keys::SenderKeyMessage::decode(bytes).map_err(E2eError::from)?;
        if m.distribution_id != distribution_id(group) {
            return Err(StateError::E2e(E2eError::NoSenderKeyState));
        }
        Ok(e2e_store::group_decrypt(self, sender, bytes)?)
    }

    /// Whether message `id` was already handled.
    pub fn seen(&self, id: &MessageId) -> bool {
        self.seen_index.contains(id)
    }

    /// Records message `id` as handled (the oldest beyond [`MAX_SEEN_IDS`] is forgotten).
    pub fn mark_seen(&mut self, id: MessageId) {
        if self.seen_index.insert(id) {
            self.saved.seen.push_back(id);
            while self.saved.seen.len() > MAX_SEEN_IDS {
                if let Some(old) = self.saved.seen.pop_front() {
                    self.seen_index.remove(&old);
                }
            }
        }
    }

    /// The state as bytes (a version byte, then postcard). Contains private keys.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, StateError> {
        // Capacity up front so that growing the buffer leaves no copies of key bytes behind.
        let mut out = Vec::with_capacity(64 * 1024);
        out.push(STATE_VERSION);
        let out = postcard::to_extend(&self.saved, out).map_err(|_| StateError::Corrupt)?;
        let out = postcard::to_extend(&self.quarantine, out).map_err(|_| StateError::Corrupt)?;
        let out = postcard::to_extend(&self.previous_last_resort, out).map_err(|_| StateError::Corrupt)?;
        Ok(Zeroizing::new(out))
    }

    /// Restores a state from [`Self::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let (&version, body) = bytes.split_first().ok_or(StateError::Corrupt)?;
        let (saved, quarantine, previous_last_resort): (Saved, VecDeque<Quarantined>, Vec<KyberKey>) =
            match version {
                STATE_VERSION_1 => (
                    postcard::from_bytes(body).map_err(|_| StateError::Corrupt)?,
                    VecDeque::new(),
                    Vec::new(),
                ),
                STATE_VERSION_2 => {
                    let (saved, rest) = postcard::take_from_bytes(body).map_err(|_| StateError::Corrupt)?;
                    (saved, postcard::from_bytes(rest).map_err(|_| StateError::Corrupt)?, Vec::new())
                }
                STATE_VERSION => {
                    let (saved, rest) = postcard::take_from_bytes(body).map_err(|_| StateError::Corrupt)?;
                    let (quarantine, rest) =
                        postcard::take_from_bytes(rest).map_err(|_| StateError::Corrupt)?;
                    (saved, quarantine, postcard::from_bytes(rest).map_err(|_| StateError::Corrupt)?)
                }
                _ => return Err(StateError::Corrupt),
            };
        if quarantine.len() > MAX_QUARANTINED
            || previous_last_resort.len() >= SIGNED_KEYS_KEPT
            || saved.kyber_one_time.len() > MAX_LOCAL_ONE_TIME_KEYS
        {
            return Err(StateError::Corrupt);
        }
        if saved.signed.is_empty()
            || saved.one_time.len() > MAX_LOCAL_ONE_TIME_KEYS
            || saved.seen.len() > MAX_SEEN_IDS
            || saved.sessions.len() > MAX_PEERS
            || saved.sender_keys.len() > MAX_SENDER_KEYS
            || saved.groups.len() > MAX_GROUPS
        {
            return Err(StateError::Corrupt);
        }
        let seen_index = saved.seen.iter().copied().collect();
        Ok(Self {
            saved,
            quarantine,
            recent_sent: VecDeque::new(),
            retry_resets: BTreeMap::new(),
            seen_index,
            identity_changes: Vec::new(),
            previous_last_resort,
        })
    }

    /// Writes the state to `path`, readable by the owner only: a temporary file (mode 0600,
    /// synced), then an atomic rename, so a crash leaves the old or the new state, never half.
    pub fn save_file(&self, path: &Path) -> Result<(), StateError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let bytes = self.encode()?;
        let tmp = path.with_extension("tmp");
        let mut f =
            std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Reads a state written by [`Self::save_file`]; `None` if there is none.
    pub fn load_file(path: &Path) -> Result<Option<Self>, StateError> {
        match std::fs::read(path) {
            Ok(b) => {
                let b = Zeroizing::new(b);
                Ok(Some(Self::decode(&b)?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn store_err(e: impl core::fmt::Display) -> E2eError {
    E2eError::Store(e.to_string())
}

impl IdentityStore for DeviceState {
    fn identity_key_pair(&self) -> Result<KeyPair, E2eError> {
        Ok(self.saved.identity.clone())
    }
    fn local_registration_id(&self) -> Result<u32, E2eError> {
        Ok(u32::from(self.saved.registration_id.get()))
    }
    fn is_trusted_identity(&self, address: &PeerAddress, key: &PublicKey) -> Result<bool, E2eError> {
        Ok(self.saved.identities.get(address).is_none_or(|k| k == key))
    }
    fn save_identity(&mut self, address: &PeerAddress, key: &PublicKey) -> Result<(), E2eError> {
        if !self.saved.identities.contains_key(address) && self.saved.identities.len() >= MAX_PEERS {
            return Err(store_err("too many peer identities"));
        }
        self.saved.identities.insert(address.clone(), *key);
        Ok(())
    }
}

impl PreKeyStore for DeviceState {
    fn signed_pre_key(&self, id: KeyId) -> Result<Option<SignedPreKeyRecord>, E2eError> {
        Ok(self.saved.signed.iter().find(|k| k.key_id == id).cloned())
    }
    fn pre_key(&self, id: KeyId) -> Result<Option<PreKeyRecord>, E2eError> {
        Ok(self.saved.one_time.iter().find(|k| k.key_id == id).cloned())
    }
    fn remove_pre_key(&mut self, id: KeyId) -> Result<(), E2eError> {
        self.saved.one_time.retain(|k| k.key_id != id);
        Ok(())
    }
    fn kyber_pre_key(&self, id: KeyId) -> Result<Option<KyberPreKeyRecord>, E2eError> {
        if let Some(k) = self.saved.kyber_one_time.iter().find(|k| k.key_id == id) {
            return Ok(Some(k.record(false)?));
        }
        if let Some(k) = std::iter::once(&self.saved.kyber_last_resort)
            .chain(&self.previous_last_resort)
            .find(|k| k.key_id == id)
        {
            return Ok(Some(k.record(true)?));
        }
        Ok(None)
    }
    fn mark_kyber_pre_key_used(&mut self, id: KeyId, _base_key: &PublicKey) -> Result<(), E2eError> {
        self.saved.kyber_one_time.retain(|k| k.key_id != id);
        Ok(())
    }
}

impl SessionStore for DeviceState {
    fn load_session(&self, address: &PeerAddress) -> Result<Option<SessionRecord>, E2eError> {
        match self.saved.sessions.get(address).map(|b| SessionRecord::deserialize(b)) {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            // A session of Hush's former format (X3DH, record version 1): libsignal's version 4
            // replaced it and there is no way to carry a session across, so it is dropped and a
            // new PQXDH session starts (the peer's next message is a pre-key message, or our
            // next send fetches a bundle). Documented in docs/protocol.md.
            Some(Err(hush_protocol::e2e::DecodeError::BadVersion)) => Ok(None),
            Some(Err(e)) => Err(e.into()),
        }
    }
    fn store_session(&mut self, address: &PeerAddress, record: SessionRecord) -> Result<(), E2eError> {
        if !self.saved.sessions.contains_key(address) && self.saved.sessions.len() >= MAX_PEERS {
            return Err(store_err("too many sessions"));
        }
        self.saved.sessions.insert(address.clone(), record.serialize()?);
        Ok(())
    }
}

impl SenderKeyStore for DeviceState {
    fn load_sender_key(
        &self,
        sender: &PeerAddress,
        distribution_id: Uuid,
    ) -> Result<Option<SenderKeyRecord>, E2eError> {
        self.saved
            .sender_keys
            .get(&(sender.clone(), distribution_id))
            .map(|b| SenderKeyRecord::deserialize(b).map_err(E2eError::from))
            .transpose()
    }
    fn store_sender_key(
        &mut self,
        sender: &PeerAddress,
        distribution_id: Uuid,
        record: SenderKeyRecord,
    ) -> Result<(), E2eError> {
        let key = (sender.clone(), distribution_id);
        if !self.saved.sender_keys.contains_key(&key) && self.saved.sender_keys.len() >= MAX_SENDER_KEYS {
            return Err(store_err("too many sender keys"));
        }
        self.saved.sender_keys.insert(key, record.serialize()?);
        Ok(())
    }
}

/// A bundle as the library wants it, from the parts the node returns.
pub fn bundle(
    registration_id: RegistrationId,
    device: DeviceId,
    identity_key: PublicKey,
    signed_pre_key: SignedEcPreKey,
    one_time_pre_key: Option<OneTimePreKey>,
    kyber_pre_key: Option<SignedKyberPreKey>,
) -> PreKeyBundle {
    PreKeyBundle {
        registration_id: u32::from(registration_id.get()),
        device_id: device.get(),
        identity_key,
        signed_pre_key,
        one_time_pre_key,
        kyber_pre_key,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use hush_protocol::e2e::{verify_kyber_prekey, verify_signed_ec_prekey};

    fn reg(n: u32) -> RegistrationId {
        RegistrationId::new(n).unwrap()
    }

    fn bundle_of(s: &mut DeviceState, device: u32) -> PreKeyBundle {
        let up = s.full_upload().unwrap();
        bundle(
            s.registration_id(),
            DeviceId::new(device).unwrap(),
            s.identity_key(),
            up.signed_pre_key.unwrap(),
            Some(up.one_time[7]),
            Some(up.kyber_one_time[3].clone()),
        )
    }

    #[test]
    fn uploads_verify_as_the_node_checks_them() {
        let mut s = DeviceState::generate(reg(5)).unwrap();
        let up = s.full_upload().unwrap();
        let ik = s.identity_key().serialize();
        let spk = up.signed_pre_key.unwrap();
        verify_signed_ec_prekey(
            &ik,
            i64::from(spk.key_id.get()),
            &spk.public_key.serialize(),
            &spk.signature,
        )
        .unwrap();
        assert_eq!(up.one_time.len(), ONE_TIME_BATCH);
        assert_eq!(up.kyber_one_time.len(), ONE_TIME_BATCH);
        for k in up.kyber_one_time.iter().chain(up.kyber_last_resort.as_ref()) {
            assert_eq!(k.public_key.serialize().len(), 1569);
            verify_kyber_prekey(&ik, i64::from(k.key_id.get()), k.public_key.serialize(), &k.signature)
                .unwrap();
        }
        // Ids are distinct across kinds.
        let mut ids: Vec<u32> = up.one_time.iter().map(|k| k.key_id.get()).collect();
        ids.extend(up.kyber_one_time.iter().map(|k| k.key_id.get()));
        ids.push(spk.key_id.get());
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
        // The Kyber public key is re-derived identically from the saved seed.
        let again = DeviceState::decode(&s.encode().unwrap()).unwrap();
        assert_eq!(again.saved.kyber_one_time[0].public().unwrap(), up.kyber_one_time[0]);
    }

    #[test]
    fn sessions_survive_a_save_and_load_of_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let alice_at = peer(&UserId::new("alice").unwrap(), DeviceId::PRIMARY);
        let bob_at = peer(&UserId::new("bob").unwrap(), DeviceId::new(2).unwrap());
        let mut alice = DeviceState::generate(reg(11)).unwrap();
        let mut bob = DeviceState::generate(reg(22)).unwrap();
        let b = bundle_of(&mut bob, 2);
        alice.start_session(&bob_at, &b).unwrap();
        let m1 = alice.encrypt(&bob_at, b"first").unwrap();
        assert_eq!(bob.decrypt(&alice_at, &m1).unwrap(), b"first");
        // The one-time key named by the pre-key message is used up.
        assert!(bob.pre_key(b.one_time_pre_key.unwrap().key_id).unwrap().is_none());

        // Both save to files and load back; the ratchet continues in both directions.
        let (pa, pb) = (dir.path().join("alice.state"), dir.path().join("bob.state"));
        alice.save_file(&pa).unwrap();
        bob.save_file(&pb).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&pa).unwrap().permissions().mode() & 0o777, 0o600);
        let mut alice = DeviceState::load_file(&pa).unwrap().unwrap();
        let mut bob = DeviceState::load_file(&pb).unwrap().unwrap();
        let r = bob.encrypt(&alice_at, b"reply").unwrap();
        assert_eq!(alice.decrypt(&bob_at, &r).unwrap(), b"reply");
        let m2 = alice.encrypt(&bob_at, b"second").unwrap();
        assert_eq!(bob.decrypt(&alice_at, &m2).unwrap(), b"second");
        // A replay of an old message does not decrypt again.
        assert!(bob.decrypt(&alice_at, &m1).is_err());
        assert!(alice.has_session(&bob_at, reg(22)));
        assert!(!alice.has_session(&bob_at, reg(23)), "a re-registered device needs a new session");
    }

    /// A Kyber key a peer fetched before a top-up or a rotation still opens its pre-key message
    /// (PQXDH runs the KEM, so the secret half must outlive the node's replacement of the list),
    /// also after a save and load; a one-time Kyber key is used up, a last-resort key is not.
    #[test]
    fn kyber_keys_fetched_before_a_top_up_or_rotation_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let bob_at = peer(&UserId::new("bob").unwrap(), DeviceId::PRIMARY);
        let mut bob = DeviceState::generate(reg(22)).unwrap();
        let up = bob.full_upload().unwrap();
        let one_time = up.kyber_one_time[5].clone();
        let last_resort = up.kyber_last_resort.clone().unwrap();
        let spk = up.signed_pre_key.unwrap();
        bob.one_time_upload().unwrap(); // a top-up
        bob.rotate_signed_keys().unwrap(); // a rotation
        let path = dir.path().join("bob.state");
        bob.save_file(&path).unwrap();
        let mut bob = DeviceState::load_file(&path).unwrap().unwrap();
        for (n, kyber) in [one_time.clone(), last_resort.clone()].into_iter().enumerate() {
            let alice_at = peer(&UserId::new(format!("alice{n}")).unwrap(), DeviceId::PRIMARY);
            let mut alice = DeviceState::generate(reg(30 + n as u32)).unwrap();
            let b = bundle(
                bob.registration_id(),
                DeviceId::PRIMARY,
                bob.identity_key(),
                spk.clone(),
                None,
                Some(kyber),
            );
            alice.start_session(&bob_at, &b).unwrap();
            let m = alice.encrypt(&bob_at, b"fetched before").unwrap();
            assert_eq!(bob.decrypt(&alice_at, &m).unwrap(), b"fetched before");
        }
        assert!(bob.kyber_pre_key(one_time.key_id).unwrap().is_none(), "one-time key used up");
        assert!(bob.kyber_pre_key(last_resort.key_id).unwrap().is_some(), "last-resort key kept");
    }

    #[test]
    fn group_chains_follow_the_epoch() {
        let a_at = peer(&UserId::new("alice").unwrap(), DeviceId::PRIMARY);
        let mut a = DeviceState::generate(reg(1)).unwrap();
        let mut b = DeviceState::generate(reg(2)).unwrap();
        let mut c = DeviceState::generate(reg(3)).unwrap();
        let (skdm, fresh) = a.group_distribution(&a_at, "g1", 1).unwrap();
        assert!(fresh);
        b.process_distribution(&a_at, "g1", &skdm).unwrap();
        c.process_distribution(&a_at, "g1", &skdm).unwrap();
        // The distribution of g1 cannot be used as g2's.
        assert!(b.process_distribution(&a_at, "g2", &skdm).is_err());
        let m = a.group_encrypt(&a_at, "g1", b"to all").unwrap();
        assert_eq!(b.group_decrypt(&a_at, "g1", &m).unwrap(), b"to all");
        assert_eq!(c.group_decrypt(&a_at, "g1", &m).unwrap(), b"to all");
        assert!(b.group_decrypt(&a_at, "g2", &m).is_err());
        // Same epoch: same chain.
        let (_, fresh) = a.group_distribution(&a_at, "g1", 1).unwrap();
        assert!(!fresh);
        // C is removed (epoch 2): a new chain, given to B only; C decrypts nothing after.
        let (skdm2, fresh) = a.group_distribution(&a_at, "g1", 2).unwrap();
        assert!(fresh);
        b.process_distribution(&a_at, "g1", &skdm2).unwrap();
        let m2 = a.group_encrypt(&a_at, "g1", b"without c").unwrap();
        assert_eq!(b.group_decrypt(&a_at, "g1", &m2).unwrap(), b"without c");
        assert!(c.group_decrypt(&a_at, "g1", &m2).is_err());
        // State survives encode/decode on the receiving side.
        let mut b2 = DeviceState::decode(&b.encode().unwrap()).unwrap();
        let m3 = a.group_encrypt(&a_at, "g1", b"later").unwrap();
        assert_eq!(b2.group_decrypt(&a_at, "g1", &m3).unwrap(), b"later");
    }

    #[test]
    fn debug_prints_no_key_material() {
        let mut s = DeviceState::generate(reg(9)).unwrap();
        s.full_upload().unwrap();
        let dbg = format!("{s:?}");
        let secret = s.saved.identity.private_key().serialize();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!dbg.contains(&hex[..16]), "{dbg}");
        assert!(!dbg.contains(&format!("{:?}", &secret[..4])), "{dbg}");
        let k = format!("{:?}", s.saved.kyber_one_time[0].seed);
        assert_eq!(k, "SecretBytes(..)");
    }

    #[test]
    fn dedupe_window_is_bounded_and_persisted() {
        let mut s = DeviceState::generate(reg(9)).unwrap();
        let first = Uuid::new_v4();
        s.mark_seen(first);
        assert!(s.seen(&first));
        let s2 = DeviceState::decode(&s.encode().unwrap()).unwrap();
        assert!(s2.seen(&first));
        for _ in 0..MAX_SEEN_IDS {
            s.mark_seen(Uuid::new_v4());
        }
        assert!(!s.seen(&first));
        assert_eq!(s.saved.seen.len(), MAX_SEEN_IDS);
        assert!(DeviceState::decode(b"\x02junk").is_err());
        assert!(DeviceState::decode(b"").is_err());
    }

    #[test]
    fn content_type_follows_the_session_state() {
        let alice_at = peer(&UserId::new("alice").unwrap(), DeviceId::PRIMARY);
        let bob_at = peer(&UserId::new("bob").unwrap(), DeviceId::new(2).unwrap());
        let mut alice = DeviceState::generate(reg(11)).unwrap();
        let mut bob = DeviceState::generate(reg(22)).unwrap();
        let b = bundle_of(&mut bob, 2);
        alice.start_session(&bob_at, &b).unwrap();
        // Until Bob answers, every message carries the pre-key fields.
        let (t1, m1) = alice.encrypt_typed(&bob_at, b"first").unwrap();
        let (t2, m2) = alice.encrypt_typed(&bob_at, b"second").unwrap();
        assert_eq!((t1, t2), (ContentType::PreKey, ContentType::PreKey));
        assert_eq!(bob.decrypt(&alice_at, &m1).unwrap(), b"first");
        assert_eq!(bob.decrypt(&alice_at, &m2).unwrap(), b"second");
        // Bob's session was built from Alice's pre-key message: his replies are plain ratchet.
        let (t3, r) = bob.encrypt_typed(&alice_at, b"reply").unwrap();
        assert_eq!(t3, ContentType::Ciphertext);
        assert_eq!(alice.decrypt(&bob_at, &r).unwrap(), b"reply");
        let (t4, m4) = alice.encrypt_typed(&bob_at, b"third").unwrap();
        assert_eq!(t4, ContentType::Ciphertext, "acknowledged: no more pre-key messages");
        assert_eq!(bob.decrypt(&alice_at, &m4).unwrap(), b"third");
        // No session: an error, not a guess.
        assert!(alice.encrypt_typed(&peer(&UserId::new("carol").unwrap(), DeviceId::PRIMARY), b"x").is_err());
    }

    #[test]
    fn quarantine_is_saved_bounded_and_version_1_states_still_load() {
        let mut s = DeviceState::generate(reg(9)).unwrap();
        let env = |n: u128| hush_protocol::wire::Envelope {
            seq: 3,
            id: Uuid::from_u128(n),
            from: UserId::new("mallory").unwrap(),
            from_device: DeviceId::new(4).unwrap(),
            timestamp_ms: 5,
            sync: false,
            content: hush_protocol::wire::Payload(vec![0xde, 0xad]),
            event: None,
            group: None,
            content_type: ContentType::PreKey,
        };
        assert!(s.quarantine(Quarantined::of(&env(1), "bad mac".into(), 6)));
        assert!(s.quarantine(Quarantined::of(&env(1), "bad mac".into(), 7)), "held already");
        assert_eq!(s.quarantined().len(), 1);
        let back = DeviceState::decode(&s.encode().unwrap()).unwrap();
        let q: Vec<&Quarantined> = back.quarantined().collect();
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].id, q[0].from.as_str(), q[0].from_device.get()), (Uuid::from_u128(1), "mallory", 4));
        assert_eq!(
            (q[0].content_type, &q[0].content[..], &q[0].reason[..]),
            (ContentType::PreKey, &[0xde, 0xad][..], "bad mac")
        );
        // A state saved before the quarantine existed (version 1: no quarantine after the body).
        let mut v1 = vec![STATE_VERSION_1];
        v1.extend(postcard::to_allocvec(&back.saved).unwrap());
        let old = DeviceState::decode(&v1).unwrap();
        assert_eq!((old.quarantined().len(), old.registration_id()), (0, back.registration_id()));
        // Bounded: a full quarantine refuses (the caller then leaves the envelope on the node).
        for n in 2..=MAX_QUARANTINED as u128 {
            assert!(s.quarantine(Quarantined::of(&env(n), "x".into(), 0)));
        }
        assert!(!s.quarantine(Quarantined::of(&env(0), "x".into(), 0)));
        assert_eq!(s.release_quarantined(&Uuid::from_u128(1)).len(), 1);
        assert!(s.quarantine(Quarantined::of(&env(0), "x".into(), 0)), "room again");
    }

    #[test]
    fn recent_sent_is_bounded_and_never_saved() {
        let mut s = DeviceState::generate(reg(9)).unwrap();
        let bob = SentTo::User(UserId::new("bob").unwrap());
        s.remember_sent(Uuid::from_u128(1), bob.clone(), "first words");
        s.note_resent(&Uuid::from_u128(1));
        let r = s.recent_sent(&Uuid::from_u128(1)).unwrap();
        assert_eq!((r.to == bob, &r.body[..], r.resends), (true, "first words", 1));
        assert!(!format!("{r:?}").contains("first"));
        // No plaintext at rest: the saved state does not hold it, and reads back without it.
        let bytes = s.encode().unwrap();
        assert!(!bytes.windows(11).any(|w| w == b"first words"));
        assert!(DeviceState::decode(&bytes).unwrap().recent_sent(&Uuid::from_u128(1)).is_none());
        // Bounded: the oldest go first.
        for n in 2..=(MAX_RECENT_SENT as u128 + 1) {
            s.remember_sent(Uuid::from_u128(n), bob.clone(), "x");
        }
        assert!(s.recent_sent(&Uuid::from_u128(1)).is_none());
        assert!(s.recent_sent(&Uuid::from_u128(2)).is_some());
        assert_eq!(s.recent_sent.len(), MAX_RECENT_SENT);
        // Session resets on retry requests are rate-limited per device.
        let carol = peer(&UserId::new("carol").unwrap(), DeviceId::PRIMARY);
        assert!(s.reset_for_retry(&carol));
        assert!(!s.reset_for_retry(&carol), "again within the interval");
    }
}
