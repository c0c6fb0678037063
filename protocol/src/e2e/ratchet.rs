//! The Double Ratchet session state (Signal specification, libsignal's KDFs and bounds).
//!
//! Decryption is transactional: every derivation happens on copies, and the state changes only
//! after the AEAD accepted the message, so a forged, altered or replayed message leaves the
//! state byte-for-byte unchanged. Skipped message keys are stored as 32-byte seeds, at most
//! [`MAX_SKIPPED_KEYS_PER_CHAIN`] per receiving chain and [`MAX_SKIPPED_KEYS_PER_SESSION`] in
//! all; at most [`MAX_RECEIVER_CHAINS`] receiving chains are kept.

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::aead;
use super::consts::{
    MAX_FORWARD_JUMPS, MAX_PLAINTEXT_LEN, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS_PER_CHAIN,
    MAX_SKIPPED_KEYS_PER_SESSION, TAG_LEN,
};
use super::error::{DecodeError, E2eError};
use super::kdf::{ChainKey, MessageKeys, MessageSeed, RootKey};
use super::keys::{KeyPair, PublicKey};
use super::message::{
    associated_data, write_prekey_prefix, write_ratchet_header, PreKeyFields, RatchetMessage, MAX_AD_LEN,
    RATCHET_HEADER_LEN,
};
use super::secret::Secret32;

#[derive(Clone, Serialize, Deserialize)]
struct SenderChain {
    ratchet: KeyPair,
    chain: ChainKey,
}

#[derive(Clone, Serialize, Deserialize)]
struct SkippedKey {
    counter: u32,
    seed: Secret32,
}

#[derive(Clone, Serialize, Deserialize)]
struct ReceiverChain {
    ratchet_key: PublicKey,
    chain: ChainKey,
    skipped: Vec<SkippedKey>,
}

/// One Double Ratchet session with a peer device.
#[derive(Clone, Serialize, Deserialize)]
pub struct SessionState {
    local_identity: PublicKey,
    remote_identity: PublicKey,
    local_registration_id: u32,
    remote_registration_id: u32,
    /// The initiator's X3DH base key: names the session on both sides.
    base_key: PublicKey,
    root_key: RootKey,
    sender: SenderChain,
    previous_counter: u32,
    receivers: Vec<ReceiverChain>,
    /// Set on the initiator until it first decrypts a reply: its messages then carry the X3DH
    /// fields so the responder can build the session.
    pending_prekey: Option<PreKeyFields>,
}

impl core::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionState")
            .field("remote_identity", &self.remote_identity)
            .field("base_key", &self.base_key)
            .field("sending_index", &self.sender.chain.index())
            .field("receiver_chains", &self.receivers.len())
            .field("pending_prekey", &self.pending_prekey.is_some())
            .finish_non_exhaustive()
    }
}

/// What a successful decryption changes, applied only after the AEAD accepted.
struct Advance {
    chain: ChainKey,
    skipped: Vec<SkippedKey>,
}

/// Identities and ids both sides of a session agree on.
pub(crate) struct SessionParties {
    pub(crate) local_identity: PublicKey,
    pub(crate) remote_identity: PublicKey,
    pub(crate) local_registration_id: u32,
    pub(crate) remote_registration_id: u32,
    pub(crate) base_key: PublicKey,
}

impl SessionState {
    /// The initiator's state after X3DH: it can send at once (its first DH ratchet step is done)
    /// and receives on the responder's signed pre-key.
    pub(crate) fn initiator<R: RngCore + CryptoRng>(
        parties: SessionParties,
        root: RootKey,
        chain: ChainKey,
        their_signed_pre_key: PublicKey,
        pending: PreKeyFields,
        rng: &mut R,
    ) -> Result<Self, E2eError> {
        let ratchet = KeyPair::generate(rng);
        let (root_key, send_chain) = root.step(ratchet.private_key(), &their_signed_pre_key)?;
        Ok(Self {
            local_identity: parties.local_identity,
            remote_identity: parties.remote_identity,
            local_registration_id: parties.local_registration_id,
            remote_registration_id: parties.remote_registration_id,
            base_key: parties.base_key,
            root_key,
            sender: SenderChain { ratchet, chain: send_chain },
            previous_counter: 0,
            receivers: vec![ReceiverChain { ratchet_key: their_signed_pre_key, chain, skipped: Vec::new() }],
            pending_prekey: Some(pending),
        })
    }

    /// The responder's state after X3DH: its sending ratchet key is its signed pre-key.
    pub(crate) fn responder(
        parties: SessionParties,
        root: RootKey,
        chain: ChainKey,
        signed_pre_key: KeyPair,
    ) -> Self {
        Self {
            local_identity: parties.local_identity,
            remote_identity: parties.remote_identity,
            local_registration_id: parties.local_registration_id,
            remote_registration_id: parties.remote_registration_id,
            base_key: parties.base_key,
            root_key: root,
            sender: SenderChain { ratchet: signed_pre_key, chain },
            previous_counter: 0,
            receivers: Vec::new(),
            pending_prekey: None,
        }
    }

    /// The initiator's X3DH base key, which names this session on both sides.
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }

    /// The peer's identity key.
    pub fn remote_identity(&self) -> &PublicKey {
        &self.remote_identity
    }

    /// The peer's registration id.
    pub fn remote_registration_id(&self) -> u32 {
        self.remote_registration_id
    }

    /// True while we initiated and have not yet decrypted anything from the peer.
    pub fn is_unacknowledged(&self) -> bool {
        self.pending_prekey.is_some()
    }

    /// Encrypts one message (a pre-key message while unacknowledged).
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(E2eError::PlaintextTooLong);
        }
        let (seed, next) = self.sender.chain.step()?;
        let keys = MessageKeys::derive(&seed)?;
        let mut out = Vec::with_capacity(80 + RATCHET_HEADER_LEN + plaintext.len() + TAG_LEN);
        if let Some(fields) = &self.pending_prekey {
            write_prekey_prefix(&mut out, fields);
        }
        let prefix_len = out.len();
        write_ratchet_header(
            &mut out,
            self.sender.ratchet.public_key(),
            self.sender.chain.index(),
            self.previous_counter,
        );
        let mut ad_buf = [0u8; MAX_AD_LEN];
        let (prefix, header) = out.split_at(prefix_len);
        let ad = associated_data(&mut ad_buf, prefix, header, &self.local_identity, &self.remote_identity)?;
        let start = out.len();
        out.extend_from_slice(plaintext);
        aead::seal_in_place(&keys.cipher_key, keys.nonce(), ad, &mut out, start)?;
        self.sender.chain = next;
        Ok(out)
    }

    /// Decrypts a ratchet message; `prefix` is the pre-key prefix it came in (empty if none).
    /// On error the state is unchanged.
    pub fn decrypt<R: RngCore + CryptoRng>(
        &mut self,
        prefix: &[u8],
        msg: &RatchetMessage<'_>,
        rng: &mut R,
    ) -> Result<Vec<u8>, E2eError> {
        let mut ad_buf = [0u8; MAX_AD_LEN];
        let ad =
            associated_data(&mut ad_buf, prefix, msg.header, &self.remote_identity, &self.local_identity)?;
        let found = self.receivers.iter().position(|c| c.ratchet_key == msg.ratchet_key);
        let plaintext = if let Some(i) = found {
            let chain = self.receivers.get(i).ok_or(E2eError::Crypto)?;
            if msg.counter < chain.chain.index() {
                let pos = chain
                    .skipped
                    .iter()
                    .position(|k| k.counter == msg.counter)
                    .ok_or(E2eError::DuplicateMessage)?;
                let seed = MessageSeed(chain.skipped[pos].seed.0);
                let plaintext = open(&seed, ad, msg.ciphertext)?;
                if let Some(c) = self.receivers.get_mut(i) {
                    c.skipped.remove(pos);
                }
                plaintext
            } else {
                let (plaintext, adv) = advance_and_open(&chain.chain, msg, ad)?;
                if let Some(c) = self.receivers.get_mut(i) {
                    c.chain = adv.chain;
                    c.skipped.extend(adv.skipped);
                    trim_front(&mut c.skipped, MAX_SKIPPED_KEYS_PER_CHAIN);
                }
                plaintext
            }
        } else {
            if msg.counter > MAX_FORWARD_JUMPS {
                return Err(E2eError::TooFarInFuture);
            }
            let their = msg.ratchet_key.prepare();
            let (root1, recv_chain) =
                self.root_key.step_prepared(self.sender.ratchet.private_key(), &their)?;
            let (plaintext, adv) = advance_and_open(&recv_chain, msg, ad)?;
            let ratchet = KeyPair::generate(rng);
            let (root2, send_chain) = root1.step_prepared(ratchet.private_key(), &their)?;
            // Commit: nothing below can fail.
            self.previous_counter = self.sender.chain.index();
            self.sender = SenderChain { ratchet, chain: send_chain };
            self.root_key = root2;
            let mut skipped = adv.skipped;
            trim_front(&mut skipped, MAX_SKIPPED_KEYS_PER_CHAIN);
            self.receivers.push(ReceiverChain { ratchet_key: msg.ratchet_key, chain: adv.chain, skipped });
            if self.receivers.len() > MAX_RECEIVER_CHAINS {
                self.receivers.remove(0);
            }
            plaintext
        };
        self.enforce_session_skip_bound();
        self.pending_prekey = None;
        Ok(plaintext)
    }

    fn enforce_session_skip_bound(&mut self) {
        let mut total: usize = self.receivers.iter().map(|c| c.skipped.len()).sum();
        for chain in &mut self.receivers {
            if total <= MAX_SKIPPED_KEYS_PER_SESSION {
                break;
            }
            let drop = (total - MAX_SKIPPED_KEYS_PER_SESSION).min(chain.skipped.len());
            chain.skipped.drain(..drop);
            total -= drop;
        }
    }

    /// Number of stored skipped message keys (for tests and metrics).
    pub fn skipped_keys(&self) -> usize {
        self.receivers.iter().map(|c| c.skipped.len()).sum()
    }

    /// Checks the bounds of a deserialized state.
    pub(crate) fn validate(&self) -> Result<(), DecodeError> {
        if self.receivers.len() > MAX_RECEIVER_CHAINS
            || self.receivers.iter().any(|c| c.skipped.len() > MAX_SKIPPED_KEYS_PER_CHAIN)
            || self.skipped_keys() > MAX_SKIPPED_KEYS_PER_SESSION
        {
            return Err(DecodeError::BadRecord);
        }
        Ok(())
    }
}

fn trim_front(v: &mut Vec<SkippedKey>, max: usize) {
    if v.len() > max {
        let excess = v.len() - max;
        v.drain(..excess);
    }
}

fn open(seed: &MessageSeed, ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, E2eError> {
    let keys = MessageKeys::derive(seed)?;
    aead::open(&keys.cipher_key, keys.nonce(), ad, ciphertext)
}

/// Derives up to the message's counter on a copy of the chain and opens the message.
fn advance_and_open(
    chain: &ChainKey,
    msg: &RatchetMessage<'_>,
    ad: &[u8],
) -> Result<(Vec<u8>, Advance), E2eError> {
    let jump = msg.counter.checked_sub(chain.index()).ok_or(E2eError::DuplicateMessage)?;
    if jump > MAX_FORWARD_JUMPS {
        return Err(E2eError::TooFarInFuture);
    }
    let keep_from = msg.counter.saturating_sub(MAX_SKIPPED_KEYS_PER_CHAIN as u32);
    let mut skipped = Vec::new();
    let mut ck = chain.step()?;
    while ck.1.index() <= msg.counter {
        let index = ck.1.index() - 1;
        if index >= keep_from {
            skipped.push(SkippedKey { counter: index, seed: Secret32(ck.0 .0) });
        }
        ck = ck.1.step()?;
    }
    let (seed, next) = ck;
    let plaintext = open(&seed, ad, msg.ciphertext)?;
    Ok((plaintext, Advance { chain: next, skipped }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn debug_prints_no_key_bytes() {
        let mut rng = rand_core::OsRng;
        let pair = KeyPair::generate(&mut rng);
        let secret = pair.private_key().serialize();
        let state = SessionState::responder(
            SessionParties {
                local_identity: *pair.public_key(),
                remote_identity: *pair.public_key(),
                local_registration_id: 1,
                remote_registration_id: 2,
                base_key: *pair.public_key(),
            },
            RootKey::new([7; 32]),
            ChainKey::new([9; 32], 0),
            pair.clone(),
        );
        let text = format!("{state:?} {pair:?} {:?}", pair.private_key());
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!text.contains(&hex));
        assert!(!text.contains("07, 07"));
        assert!(!text.contains("9, 9"));
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn used_message_seeds_leave_the_serialized_state() {
        use crate::e2e::keys::KeyId;
        use crate::e2e::message::PreKeyMessage;
        use crate::e2e::prekeys::{PreKeyBundle, SignedEcPreKey};
        use crate::e2e::x3dh;

        let mut rng = rand_core::OsRng;
        let alice_id = KeyPair::generate(&mut rng);
        let bob_id = KeyPair::generate(&mut rng);
        let spk = KeyPair::generate(&mut rng);
        let bundle = PreKeyBundle {
            registration_id: 2,
            device_id: 1,
            identity_key: *bob_id.public_key(),
            signed_pre_key: SignedEcPreKey {
                key_id: KeyId::new(1).unwrap(),
                public_key: *spk.public_key(),
                signature: bob_id.sign(&spk.public_key().serialize(), &mut rng).to_vec(),
            },
            one_time_pre_key: None,
            kyber_pre_key: None,
        };
        let mut alice = x3dh::initiate(&alice_id, 1, &bundle, &mut rng).unwrap();
        let mut ck = alice.sender.chain.clone();
        let mut seeds = Vec::new();
        let mut chain_keys = Vec::new();
        for _ in 0..3 {
            let (seed, next) = ck.step().unwrap();
            chain_keys.push(*ck.key_bytes());
            seeds.push(seed.0);
            ck = next;
        }
        let msgs: Vec<Vec<u8>> = (0..3).map(|i| alice.encrypt(&[i]).unwrap()).collect();
        let pm = PreKeyMessage::decode(&msgs[2]).unwrap();
        let mut bob = x3dh::respond(&bob_id, 2, &spk, None, &pm.fields).unwrap();
        assert_eq!(bob.decrypt(pm.prefix, &pm.message, &mut rng).unwrap(), vec![2]);
        let bytes = postcard::to_allocvec(&bob).unwrap();
        assert!(contains(&bytes, &seeds[0]) && contains(&bytes, &seeds[1]));
        assert!(!contains(&bytes, &seeds[2]));
        for k in &chain_keys {
            assert!(!contains(&bytes, k));
        }
        let pm0 = PreKeyMessage::decode(&msgs[0]).unwrap();
        assert_eq!(bob.decrypt(pm0.prefix, &pm0.message, &mut rng).unwrap(), vec![0]);
        let bytes = postcard::to_allocvec(&bob).unwrap();
        assert!(!contains(&bytes, &seeds[0]) && contains(&bytes, &seeds[1]));
    }
}
