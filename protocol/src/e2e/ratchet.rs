//! The Double Ratchet session state (Signal specification, libsignal's KDFs and bounds).
//!
//! Decryption is transactional: every derivation happens on copies, and the state changes only
//! after the AEAD accepted the message, so a forged, altered or replayed message leaves the
//! state byte-for-byte unchanged. Skipped message keys are stored as 32-byte seeds, at most
//! [`MAX_SKIPPED_KEYS_PER_CHAIN`] per receiving chain and [`MAX_SKIPPED_KEYS_PER_SESSION`] in
//! all; at most [`MAX_RECEIVER_CHAINS`] receiving chains are kept.

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::cbc;
use super::consts::{
    MAX_FORWARD_JUMPS, MAX_PLAINTEXT_LEN, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS_PER_CHAIN,
    MAX_SKIPPED_KEYS_PER_SESSION,
};
use super::error::{DecodeError, E2eError};
use super::kdf::{ChainKey, MessageKeys, MessageSeed, RootKey};
use super::keys::{KeyPair, PublicKey};
use super::message::{encode_prekey, encode_ratchet_unauthenticated, PreKeyFields, RatchetMessage};
use super::secret::Secret32;
use super::spqr::chain::plain_step as spqr_plain_step;
use super::spqr::{SpqrReceipt, SpqrState};

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
    /// Set on the initiator until it first decrypts a reply: its messages then carry the PQXDH
    /// fields so the responder can build the session.
    pending_prekey: Option<PreKeyFields>,
    /// The SPQR (sparse post-quantum) ratchet, whose per-message key salts every message key.
    spqr: SpqrState,
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

/// What a successful decryption changes, applied only after the MAC and padding checked out.
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
    /// The initiator's state after PQXDH: it can send at once (its first DH ratchet step is
    /// done) and receives on the responder's signed pre-key. `pq_auth_key` seeds SPQR.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn initiator<R: RngCore + CryptoRng>(
        parties: SessionParties,
        root: RootKey,
        chain: ChainKey,
        pq_auth_key: &[u8],
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
            spqr: SpqrState::initial(pq_auth_key, true, parties.local_identity == parties.remote_identity),
        })
    }

    /// The responder's state after PQXDH: its sending ratchet key is its signed pre-key.
    pub(crate) fn responder(
        parties: SessionParties,
        root: RootKey,
        chain: ChainKey,
        pq_auth_key: &[u8],
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
            spqr: SpqrState::initial(pq_auth_key, false, parties.local_identity == parties.remote_identity),
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

    /// Encrypts one message: a `SignalMessage`, wrapped in a `PreKeySignalMessage` while
    /// unacknowledged. SPQR advances with every message (it may sample ML-KEM keys: `rng`).
    pub fn encrypt<R: RngCore + CryptoRng>(
        &mut self,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, E2eError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(E2eError::PlaintextTooLong);
        }
        let (seed, next) = self.sender.chain.step()?;
        let (spqr, pq_message, pq_key) =
            self.spqr.send(rng).map_err(|e| E2eError::PqRatchet(e.to_string()))?;
        let keys = MessageKeys::derive_salted(&seed, Some(&pq_key))?;
        let body = cbc::encrypt(&keys.cipher_key, &keys.iv, plaintext)?;
        let mut out = encode_ratchet_unauthenticated(
            self.sender.ratchet.public_key(),
            self.sender.chain.index(),
            self.previous_counter,
            body,
            pq_message,
        );
        let mac = cbc::mac(
            &keys.mac_key,
            &self.local_identity.serialize(),
            &self.remote_identity.serialize(),
            &out,
        )?;
        out.extend_from_slice(&mac);
        if let Some(fields) = &self.pending_prekey {
            out = encode_prekey(fields, out);
        }
        self.sender.chain = next;
        self.spqr = spqr;
        Ok(out)
    }

    /// Decrypts a `SignalMessage`. On error the state is unchanged.
    pub fn decrypt<R: RngCore + CryptoRng>(
        &mut self,
        msg: &RatchetMessage<'_>,
        rng: &mut R,
    ) -> Result<Vec<u8>, E2eError> {
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
                let (plaintext, spqr) = self.open(&seed, msg)?;
                if let Some(c) = self.receivers.get_mut(i) {
                    c.skipped.remove(pos);
                }
                self.spqr.commit(spqr);
                plaintext
            } else {
                let (plaintext, spqr, adv) = self.advance_and_open(&chain.chain, msg)?;
                if let Some(c) = self.receivers.get_mut(i) {
                    c.chain = adv.chain;
                    c.skipped.extend(adv.skipped);
                    trim_front(&mut c.skipped, MAX_SKIPPED_KEYS_PER_CHAIN);
                }
                self.spqr.commit(spqr);
                plaintext
            }
        } else {
            if msg.counter > MAX_FORWARD_JUMPS {
                return Err(E2eError::TooFarInFuture);
            }
            let their = msg.ratchet_key.prepare();
            let (root1, recv_chain) =
                self.root_key.step_prepared(self.sender.ratchet.private_key(), &their)?;
            let (plaintext, spqr, adv) = self.advance_and_open(&recv_chain, msg)?;
            let ratchet = KeyPair::generate(rng);
            let (root2, send_chain) = root1.step_prepared(ratchet.private_key(), &their)?;
            // Commit: nothing below can fail.
            self.previous_counter = self.sender.chain.index();
            self.sender = SenderChain { ratchet, chain: send_chain };
            self.root_key = root2;
            self.spqr.commit(spqr);
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

    /// Runs SPQR on the message's `pq_ratchet` (the state unchanged), derives the message keys,
    /// checks the MAC and decrypts: libsignal's order. Returns the plaintext and what to commit
    /// to the SPQR state.
    fn open(&self, seed: &MessageSeed, msg: &RatchetMessage<'_>) -> Result<(Vec<u8>, SpqrReceipt), E2eError> {
        let (spqr, pq_key) =
            self.spqr.receive(msg.pq_ratchet).map_err(|e| E2eError::PqRatchet(e.to_string()))?;
        Ok((self.open_keyed(seed, &pq_key, msg)?, spqr))
    }

    /// [`Self::open`] for a message at or past `chain`'s index: derives up to its counter on a
    /// copy of the chain ([`advance_from`]), the first chain step computed alongside SPQR's (their
    /// SHA-256 blocks interleaved: [`ChainKey::step_with_hkdf64`]). Returns what the chain
    /// becomes if the message checks out.
    fn advance_and_open(
        &self,
        chain: &ChainKey,
        msg: &RatchetMessage<'_>,
    ) -> Result<(Vec<u8>, SpqrReceipt, Advance), E2eError> {
        check_jump(chain, msg.counter)?;
        let mut first: Option<Result<(MessageSeed, ChainKey), E2eError>> = None;
        let mut hkdf = |ikm: &[u8; 32], info: &[&[u8]], out: &mut [u8; 64]| {
            if first.is_none() {
                first = Some(chain.step_with_hkdf64(ikm, info, out));
            } else {
                spqr_plain_step(ikm, info, out);
            }
        };
        let (spqr, pq_key) = self
            .spqr
            .receive_with(msg.pq_ratchet, &mut hkdf)
            .map_err(|e| E2eError::PqRatchet(e.to_string()))?;
        let first = match first {
            Some(step) => step?,
            None => chain.step()?,
        };
        let (seed, adv) = advance_from(first, msg.counter)?;
        Ok((self.open_keyed(&seed, &pq_key, msg)?, spqr, adv))
    }

    /// Derives the message keys from the seed and SPQR's key, checks the MAC and decrypts.
    fn open_keyed(
        &self,
        seed: &MessageSeed,
        pq_key: &[u8; 32],
        msg: &RatchetMessage<'_>,
    ) -> Result<Vec<u8>, E2eError> {
        let keys = MessageKeys::derive_salted(seed, Some(pq_key))?;
        let expected = cbc::mac(
            &keys.mac_key,
            &self.remote_identity.serialize(),
            &self.local_identity.serialize(),
            msg.authenticated,
        )?;
        if !cbc::mac_matches(&expected, msg.mac) {
            return Err(E2eError::DecryptionFailed);
        }
        cbc::decrypt(&keys.cipher_key, &keys.iv, msg.ciphertext)
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

    /// SPQR's newest epoch: how many ML-KEM exchanges the session completed (plus one).
    pub fn pq_ratchet_epoch(&self) -> u64 {
        self.spqr.current_epoch()
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

/// Refuses a counter behind `chain` or too far ahead of it.
fn check_jump(chain: &ChainKey, counter: u32) -> Result<(), E2eError> {
    let jump = counter.checked_sub(chain.index()).ok_or(E2eError::DuplicateMessage)?;
    if jump > MAX_FORWARD_JUMPS {
        return Err(E2eError::TooFarInFuture);
    }
    Ok(())
}

/// Derives up to the message's counter on a copy of the chain, from its first step already
/// computed (`first`: the seed at the chain's index and the chain after it): the message's
/// seed and what the chain becomes if the message checks out.
fn advance_from(first: (MessageSeed, ChainKey), counter: u32) -> Result<(MessageSeed, Advance), E2eError> {
    let keep_from = counter.saturating_sub(MAX_SKIPPED_KEYS_PER_CHAIN as u32);
    let mut skipped = Vec::new();
    let mut ck = first;
    while ck.1.index() <= counter {
        let index = ck.1.index() - 1;
        if index >= keep_from {
            skipped.push(SkippedKey { counter: index, seed: Secret32(ck.0 .0) });
        }
        ck = ck.1.step()?;
    }
    let (seed, next) = ck;
    Ok((seed, Advance { chain: next, skipped }))
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
            &[5; 32],
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
        use crate::e2e::pqxdh::{self, ResponderKeys};
        use crate::e2e::prekeys::{KyberPreKeyRecord, PreKeyBundle, SignedEcPreKey};

        let mut rng = rand_core::OsRng;
        let alice_id = KeyPair::generate(&mut rng);
        let bob_id = KeyPair::generate(&mut rng);
        let spk = KeyPair::generate(&mut rng);
        let kyber = KyberPreKeyRecord::generate(KeyId::new(3).unwrap(), &bob_id, true, &mut rng).unwrap();
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
            kyber_pre_key: Some(kyber.public()),
        };
        let mut alice = pqxdh::start_session(&alice_id, 1, &bundle, &mut rng).unwrap();
        let mut ck = alice.sender.chain.clone();
        let mut seeds = Vec::new();
        let mut chain_keys = Vec::new();
        for _ in 0..3 {
            let (seed, next) = ck.step().unwrap();
            chain_keys.push(*ck.key_bytes());
            seeds.push(seed.0);
            ck = next;
        }
        let msgs: Vec<Vec<u8>> = (0..3).map(|i| alice.encrypt(&[i], &mut rng).unwrap()).collect();
        let pm = PreKeyMessage::decode(&msgs[2]).unwrap();
        let ours = ResponderKeys {
            identity: &bob_id,
            signed_pre_key: &spk,
            one_time_pre_key: None,
            kyber_pre_key: kyber.key_pair.secret_key(),
        };
        let mut bob = pqxdh::accept_session(&ours, 2, &pm.fields).unwrap();
        let m2 = RatchetMessage::decode(&pm.message).unwrap();
        assert_eq!(bob.decrypt(&m2, &mut rng).unwrap(), vec![2]);
        let bytes = postcard::to_allocvec(&bob).unwrap();
        assert!(contains(&bytes, &seeds[0]) && contains(&bytes, &seeds[1]));
        assert!(!contains(&bytes, &seeds[2]));
        for k in &chain_keys {
            assert!(!contains(&bytes, k));
        }
        let pm0 = PreKeyMessage::decode(&msgs[0]).unwrap();
        let m0 = RatchetMessage::decode(&pm0.message).unwrap();
        assert_eq!(bob.decrypt(&m0, &mut rng).unwrap(), vec![0]);
        let bytes = postcard::to_allocvec(&bob).unwrap();
        assert!(!contains(&bytes, &seeds[0]) && contains(&bytes, &seeds[1]));
    }
}
