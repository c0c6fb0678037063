//! Store traits (libsignal's `storage/traits.rs` shape, synchronous: the library does no I/O)
//! and in-memory implementations. A client backs them with its database; every method may fail
//! with [`E2eError::Store`].

use std::collections::HashMap;

use rand_core::{CryptoRng, RngCore};
use uuid::Uuid;

use super::error::E2eError;
use super::keys::{KeyId, KeyPair, PublicKey};
use super::prekeys::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use super::sender_keys::{SenderKeyDistributionMessage, SenderKeyRecord};
use super::session::{PeerAddress, SessionRecord};

/// Our identity and the identities we trust for peers.
pub trait IdentityStore {
    /// Our identity key pair.
    fn identity_key_pair(&self) -> Result<KeyPair, E2eError>;
    /// Our registration id.
    fn local_registration_id(&self) -> Result<u32, E2eError>;
    /// Whether `key` may be used for `address` (trust on first use: true if none is known).
    fn is_trusted_identity(&self, address: &PeerAddress, key: &PublicKey) -> Result<bool, E2eError>;
    /// Records `key` as the identity of `address`.
    fn save_identity(&mut self, address: &PeerAddress, key: &PublicKey) -> Result<(), E2eError>;
}

/// Our private pre-keys.
pub trait PreKeyStore {
    /// A signed pre-key by id.
    fn signed_pre_key(&self, id: KeyId) -> Result<Option<SignedPreKeyRecord>, E2eError>;
    /// A one-time pre-key by id.
    fn pre_key(&self, id: KeyId) -> Result<Option<PreKeyRecord>, E2eError>;
    /// Removes a used one-time pre-key.
    fn remove_pre_key(&mut self, id: KeyId) -> Result<(), E2eError>;
    /// A Kyber pre-key (one-time or last-resort) by id.
    fn kyber_pre_key(&self, id: KeyId) -> Result<Option<KyberPreKeyRecord>, E2eError>;
    /// Called after a pre-key message using Kyber key `id` decrypted: a one-time key is removed,
    /// a last-resort key stays (`base_key` names the session, as libsignal passes it).
    fn mark_kyber_pre_key_used(&mut self, id: KeyId, base_key: &PublicKey) -> Result<(), E2eError>;
}

/// Session records per peer device.
pub trait SessionStore {
    /// The record for `address`.
    fn load_session(&self, address: &PeerAddress) -> Result<Option<SessionRecord>, E2eError>;
    /// Replaces the record for `address`.
    fn store_session(&mut self, address: &PeerAddress, record: SessionRecord) -> Result<(), E2eError>;
}

/// Sender-key records per (sender device, distribution id).
pub trait SenderKeyStore {
    /// The record for a sender and distribution id.
    fn load_sender_key(
        &self,
        sender: &PeerAddress,
        distribution_id: Uuid,
    ) -> Result<Option<SenderKeyRecord>, E2eError>;
    /// Replaces the record for a sender and distribution id.
    fn store_sender_key(
        &mut self,
        sender: &PeerAddress,
        distribution_id: Uuid,
        record: SenderKeyRecord,
    ) -> Result<(), E2eError>;
}

/// Everything in memory (tests, benchmarks, and clients that persist by serializing it).
pub struct InMemoryStore {
    identity: KeyPair,
    registration_id: u32,
    identities: HashMap<PeerAddress, PublicKey>,
    signed_pre_keys: HashMap<KeyId, SignedPreKeyRecord>,
    pre_keys: HashMap<KeyId, PreKeyRecord>,
    kyber_pre_keys: HashMap<KeyId, KyberPreKeyRecord>,
    sessions: HashMap<PeerAddress, SessionRecord>,
    sender_keys: HashMap<(PeerAddress, Uuid), SenderKeyRecord>,
}

impl core::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("identity", self.identity.public_key())
            .field("registration_id", &self.registration_id)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl InMemoryStore {
    /// A store for `identity`.
    pub fn new(identity: KeyPair, registration_id: u32) -> Self {
        Self {
            identity,
            registration_id,
            identities: HashMap::new(),
            signed_pre_keys: HashMap::new(),
            pre_keys: HashMap::new(),
            kyber_pre_keys: HashMap::new(),
            sessions: HashMap::new(),
            sender_keys: HashMap::new(),
        }
    }

    /// A store with a fresh identity.
    pub fn generate<R: RngCore + CryptoRng>(registration_id: u32, rng: &mut R) -> Self {
        Self::new(KeyPair::generate(rng), registration_id)
    }

    /// Adds a signed pre-key.
    pub fn add_signed_pre_key(&mut self, record: SignedPreKeyRecord) {
        self.signed_pre_keys.insert(record.key_id, record);
    }

    /// Adds a one-time pre-key.
    pub fn add_pre_key(&mut self, record: PreKeyRecord) {
        self.pre_keys.insert(record.key_id, record);
    }

    /// Adds a Kyber pre-key.
    pub fn add_kyber_pre_key(&mut self, record: KyberPreKeyRecord) {
        self.kyber_pre_keys.insert(record.key_id, record);
    }

    /// Number of Kyber pre-keys left (one-time and last-resort).
    pub fn kyber_pre_key_count(&self) -> usize {
        self.kyber_pre_keys.len()
    }

    /// Number of one-time pre-keys left.
    pub fn pre_key_count(&self) -> usize {
        self.pre_keys.len()
    }

    /// Our identity public key.
    pub fn identity_public(&self) -> &PublicKey {
        self.identity.public_key()
    }
}

impl IdentityStore for InMemoryStore {
    fn identity_key_pair(&self) -> Result<KeyPair, E2eError> {
        Ok(self.identity.clone())
    }
    fn local_registration_id(&self) -> Result<u32, E2eError> {
        Ok(self.registration_id)
    }
    fn is_trusted_identity(&self, address: &PeerAddress, key: &PublicKey) -> Result<bool, E2eError> {
        Ok(self.identities.get(address).is_none_or(|k| k == key))
    }
    fn save_identity(&mut self, address: &PeerAddress, key: &PublicKey) -> Result<(), E2eError> {
        self.identities.insert(address.clone(), *key);
        Ok(())
    }
}

impl PreKeyStore for InMemoryStore {
    fn signed_pre_key(&self, id: KeyId) -> Result<Option<SignedPreKeyRecord>, E2eError> {
        Ok(self.signed_pre_keys.get(&id).cloned())
    }
    fn pre_key(&self, id: KeyId) -> Result<Option<PreKeyRecord>, E2eError> {
        Ok(self.pre_keys.get(&id).cloned())
    }
    fn remove_pre_key(&mut self, id: KeyId) -> Result<(), E2eError> {
        self.pre_keys.remove(&id);
        Ok(())
    }
    fn kyber_pre_key(&self, id: KeyId) -> Result<Option<KyberPreKeyRecord>, E2eError> {
        Ok(self.kyber_pre_keys.get(&id).cloned())
    }
    fn mark_kyber_pre_key_used(&mut self, id: KeyId, _base_key: &PublicKey) -> Result<(), E2eError> {
        if self.kyber_pre_keys.get(&id).is_some_and(|k| !k.last_resort) {
            self.kyber_pre_keys.remove(&id);
        }
        Ok(())
    }
}

impl SessionStore for InMemoryStore {
    fn load_session(&self, address: &PeerAddress) -> Result<Option<SessionRecord>, E2eError> {
        Ok(self.sessions.get(address).cloned())
    }
    fn store_session(&mut self, address: &PeerAddress, record: SessionRecord) -> Result<(), E2eError> {
        self.sessions.insert(address.clone(), record);
        Ok(())
    }
}

impl SenderKeyStore for InMemoryStore {
    fn load_sender_key(
        &self,
        sender: &PeerAddress,
        distribution_id: Uuid,
    ) -> Result<Option<SenderKeyRecord>, E2eError> {
        Ok(self.sender_keys.get(&(sender.clone(), distribution_id)).cloned())
    }
    fn store_sender_key(
        &mut self,
        sender: &PeerAddress,
        distribution_id: Uuid,
        record: SenderKeyRecord,
    ) -> Result<(), E2eError> {
        self.sender_keys.insert((sender.clone(), distribution_id), record);
        Ok(())
    }
}

/// Our distribution message for a group, creating our sending chain if needed.
pub fn create_sender_key_distribution<S: SenderKeyStore + ?Sized, R: RngCore + CryptoRng>(
    store: &mut S,
    us: &PeerAddress,
    distribution_id: Uuid,
    rng: &mut R,
) -> Result<SenderKeyDistributionMessage, E2eError> {
    let mut record =
        store.load_sender_key(us, distribution_id)?.unwrap_or_else(|| SenderKeyRecord::new(distribution_id));
    let skdm = record.distribution(rng)?;
    store.store_sender_key(us, distribution_id, record)?;
    Ok(skdm)
}

/// Starts a new sending chain for a group (after removing a member) and returns its
/// distribution message, to be sent to the remaining members only.
pub fn rotate_sender_key<S: SenderKeyStore + ?Sized, R: RngCore + CryptoRng>(
    store: &mut S,
    us: &PeerAddress,
    distribution_id: Uuid,
    rng: &mut R,
) -> Result<SenderKeyDistributionMessage, E2eError> {
    let mut record =
        store.load_sender_key(us, distribution_id)?.unwrap_or_else(|| SenderKeyRecord::new(distribution_id));
    let skdm = record.rotate(rng);
    store.store_sender_key(us, distribution_id, record)?;
    Ok(skdm)
}

/// Stores a member's chain from its distribution message.
pub fn process_sender_key_distribution<S: SenderKeyStore + ?Sized>(
    store: &mut S,
    sender: &PeerAddress,
    skdm: &SenderKeyDistributionMessage,
) -> Result<(), E2eError> {
    let mut record = store
        .load_sender_key(sender, skdm.distribution_id)?
        .unwrap_or_else(|| SenderKeyRecord::new(skdm.distribution_id));
    record.process_distribution(skdm)?;
    store.store_sender_key(sender, skdm.distribution_id, record)
}

/// Encrypts a group message with our chain for `distribution_id`.
pub fn group_encrypt<S: SenderKeyStore + ?Sized, R: RngCore + CryptoRng>(
    store: &mut S,
    us: &PeerAddress,
    distribution_id: Uuid,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, E2eError> {
    let mut record = store.load_sender_key(us, distribution_id)?.ok_or(E2eError::NoSenderKeyState)?;
    let out = record.encrypt(plaintext, rng)?;
    store.store_sender_key(us, distribution_id, record)?;
    Ok(out)
}

/// Decrypts a group message from `sender`.
pub fn group_decrypt<S: SenderKeyStore + ?Sized>(
    store: &mut S,
    sender: &PeerAddress,
    bytes: &[u8],
) -> Result<Vec<u8>, E2eError> {
    let distribution_id = super::sender_keys::SenderKeyMessage::decode(bytes)?.distribution_id;
    let mut record = store.load_sender_key(sender, distribution_id)?.ok_or(E2eError::NoSenderKeyState)?;
    let out = record.decrypt(bytes)?;
    store.store_sender_key(sender, distribution_id, record)?;
    Ok(out)
}
