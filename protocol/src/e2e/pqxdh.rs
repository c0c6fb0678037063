//! PQXDH key agreement as libsignal 0.103 runs it (Signal's PQXDH specification, with
//! X25519, SHA-256 and Kyber-1024):
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)   [DH4 = DH(EK_A, OPK_B)]
//! (CT, SS) = Kyber1024.Encaps(PQPK_B)            (Bob: SS = Kyber1024.Decaps(PQSK_B, CT))
//! okm = HKDF-SHA256(salt = none, ikm = 0xFF x 32 || DH1 || DH2 || DH3 [|| DH4] || SS,
//!                   info = "WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024", 96 bytes)
//! root key = okm[0..32], chain key = okm[32..64], PQ-ratchet (SPQR) key = okm[64..96]
//! ```
//!
//! `tests/e2e_pqxdh.rs` proves root and chain against libsignal's own sessions, and decrypting
//! libsignal's first messages proves the SPQR key. Every Hush session starts here
//! ([`start_session`], [`accept_session`]): libsignal 0.103 refuses X3DH-only sessions, and so
//! does Hush (a bundle without a Kyber pre-key is [`E2eError::MissingKyberPreKey`]).

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::error::{E2eError, KeyError};
use super::kdf::{hkdf, ChainKey, RootKey};
use super::kem::{self, KemSharedSecret, KyberCiphertext, KyberSecretKey};
use super::keys::{DhPoint, KeyPair, PrivateKey, PublicKey};
use super::message::PreKeyFields;
use super::prekeys::{PreKeyBundle, SignedKyberPreKey};
use super::ratchet::{SessionParties, SessionState};

/// Checks a bundle's signatures (signed EC pre-key and Kyber pre-key), as done before any use of
/// its keys.
pub fn verify_bundle(bundle: &PreKeyBundle) -> Result<(), KeyError> {
    let spk = &bundle.signed_pre_key;
    if !bundle.identity_key.verify_signature(&spk.public_key.serialize(), &spk.signature) {
        return Err(KeyError::InvalidSignature);
    }
    if let Some(k) = &bundle.kyber_pre_key {
        if !bundle.identity_key.verify_signature(k.public_key.serialize(), &k.signature) {
            return Err(KeyError::InvalidSignature);
        }
    }
    Ok(())
}

/// HKDF info of the PQXDH master secret (libsignal, message version 4).
pub const LABEL_PQXDH: &[u8] = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024";
/// Bytes libsignal 0.103 derives from the PQXDH secret: root, chain and SPQR keys.
pub const PQXDH_OUTPUT_LEN: usize = 96;
/// The message version of sessions started with PQXDH (libsignal `CIPHERTEXT_MESSAGE_CURRENT_VERSION`).
pub const PQXDH_MESSAGE_VERSION: u8 = 4;

/// The keys PQXDH derives: zeroized on drop, redacted in `Debug`.
pub struct PqxdhKeys(Zeroizing<[u8; PQXDH_OUTPUT_LEN]>);

impl core::fmt::Debug for PqxdhKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PqxdhKeys(..)")
    }
}

fn part(okm: &[u8; PQXDH_OUTPUT_LEN], at: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&okm[at..at + 32]);
    out
}

impl PqxdhKeys {
    /// The initial root key.
    pub fn root_key(&self) -> RootKey {
        RootKey::new(part(&self.0, 0))
    }

    /// The initial chain key (index 0): Bob's first sending chain, Alice's first receiving
    /// chain in libsignal.
    pub fn chain_key(&self) -> ChainKey {
        ChainKey::new(part(&self.0, 32), 0)
    }

    /// The raw root and chain key bytes, for known-answer tests and records.
    pub fn root_and_chain_bytes(&self) -> (&[u8], &[u8]) {
        (&self.0[..32], &self.0[32..64])
    }

    /// The initial key of libsignal's SPQR (post-quantum) ratchet.
    pub fn pq_ratchet_key(&self) -> &[u8] {
        &self.0[64..]
    }
}

struct Agreement<'a>(&'a PrivateKey, &'a DhPoint);

fn derive(dhs: &[Agreement<'_>], kem_secret: &KemSharedSecret) -> Result<PqxdhKeys, E2eError> {
    let mut secret = Zeroizing::new([0xffu8; 32 * 6]);
    let mut len = 32;
    for d in dhs {
        let shared = d.0.agree_prepared(d.1)?;
        secret.get_mut(len..len + 32).ok_or(E2eError::Crypto)?.copy_from_slice(shared.as_ref());
        len += 32;
    }
    secret.get_mut(len..len + 32).ok_or(E2eError::Crypto)?.copy_from_slice(kem_secret.as_ref());
    len += 32;
    let mut okm = Zeroizing::new([0u8; PQXDH_OUTPUT_LEN]);
    hkdf(None, secret.get(..len).ok_or(E2eError::Crypto)?, LABEL_PQXDH, okm.as_mut())?;
    Ok(PqxdhKeys(okm))
}

/// What the initiator (Alice) sends with her first message and keeps.
#[derive(Debug)]
pub struct Initiation {
    /// The derived keys.
    pub keys: PqxdhKeys,
    /// Her base (ephemeral) key, sent as the pre-key message's `base_key`.
    pub base_key: PublicKey,
    /// The Kyber ciphertext, sent as the pre-key message's `kyber_ciphertext`.
    pub kyber_ciphertext: KyberCiphertext,
    /// The Kyber pre-key it was made for (its id goes in `kyber_pre_key_id`).
    pub kyber_pre_key: SignedKyberPreKey,
}

/// The initiator's side with a fresh base key: verifies the bundle's signatures (signed EC
/// pre-key and Kyber pre-key, which PQXDH requires), runs the four or five DHs and the KEM.
pub fn initiate<R: RngCore + CryptoRng>(
    our_identity: &KeyPair,
    bundle: &PreKeyBundle,
    rng: &mut R,
) -> Result<(KeyPair, Initiation), E2eError> {
    let base = KeyPair::generate(rng);
    let initiation = initiate_with_base_key(our_identity, &base, bundle, rng)?;
    Ok((base, initiation))
}

/// [`initiate`] with a given base key (the KEM still draws its randomness from `rng`).
pub fn initiate_with_base_key<R: RngCore + CryptoRng>(
    our_identity: &KeyPair,
    base: &KeyPair,
    bundle: &PreKeyBundle,
    rng: &mut R,
) -> Result<Initiation, E2eError> {
    verify_bundle(bundle)?;
    let kyber = bundle.kyber_pre_key.as_ref().ok_or(E2eError::MissingKyberPreKey)?;
    let spk_point = bundle.signed_pre_key.public_key.prepare();
    let ik_point = bundle.identity_key.prepare();
    let otk_point = bundle.one_time_pre_key.map(|k| k.public_key.prepare());
    let mut dhs = vec![
        Agreement(our_identity.private_key(), &spk_point),
        Agreement(base.private_key(), &ik_point),
        Agreement(base.private_key(), &spk_point),
    ];
    if let Some(otk) = &otk_point {
        dhs.push(Agreement(base.private_key(), otk));
    }
    let (kyber_ciphertext, kem_secret) = kem::encapsulate(&kyber.public_key, rng)?;
    Ok(Initiation {
        keys: derive(&dhs, &kem_secret)?,
        base_key: *base.public_key(),
        kyber_ciphertext,
        kyber_pre_key: kyber.clone(),
    })
}

/// The responder's (Bob's) private keys named by a pre-key message.
#[derive(Debug, Clone, Copy)]
pub struct ResponderKeys<'a> {
    /// His identity key pair.
    pub identity: &'a KeyPair,
    /// The signed pre-key the message names.
    pub signed_pre_key: &'a KeyPair,
    /// The one-time EC pre-key the message names, if any.
    pub one_time_pre_key: Option<&'a KeyPair>,
    /// The secret key of the Kyber pre-key (one-time or last-resort) the message names.
    pub kyber_pre_key: &'a KyberSecretKey,
}

/// What the initiator's pre-key message carries for the agreement.
#[derive(Debug, Clone, Copy)]
pub struct InitiatorMessage<'a> {
    /// Alice's identity key.
    pub identity_key: &'a PublicKey,
    /// Alice's base key.
    pub base_key: &'a PublicKey,
    /// The Kyber ciphertext.
    pub kyber_ciphertext: &'a KyberCiphertext,
}

/// The responder's side: decapsulates the Kyber ciphertext and runs the same DHs from his end.
pub fn respond(ours: &ResponderKeys<'_>, theirs: &InitiatorMessage<'_>) -> Result<PqxdhKeys, E2eError> {
    let kem_secret = kem::decapsulate(ours.kyber_pre_key, theirs.kyber_ciphertext)?;
    let spk = ours.signed_pre_key.private_key();
    let ik_point = theirs.identity_key.prepare();
    let base_point = theirs.base_key.prepare();
    let mut dhs = vec![
        Agreement(spk, &ik_point),
        Agreement(ours.identity.private_key(), &base_point),
        Agreement(spk, &base_point),
    ];
    if let Some(otk) = ours.one_time_pre_key {
        dhs.push(Agreement(otk.private_key(), &base_point));
    }
    derive(&dhs, &kem_secret)
}

/// The initiator's side of a session: verifies the bundle, runs PQXDH with a fresh base key and
/// returns a session whose messages are `PreKeySignalMessage`s until the peer answers.
pub fn start_session<R: RngCore + CryptoRng>(
    our_identity: &KeyPair,
    our_registration_id: u32,
    bundle: &PreKeyBundle,
    rng: &mut R,
) -> Result<SessionState, E2eError> {
    let (base, init) = initiate(our_identity, bundle, rng)?;
    let fields = PreKeyFields {
        registration_id: our_registration_id,
        pre_key_id: bundle.one_time_pre_key.map(|k| k.key_id),
        signed_pre_key_id: bundle.signed_pre_key.key_id,
        kyber_pre_key_id: init.kyber_pre_key.key_id,
        kyber_ciphertext: init.kyber_ciphertext.serialize().to_vec(),
        base_key: *base.public_key(),
        identity_key: *our_identity.public_key(),
    };
    SessionState::initiator(
        SessionParties {
            local_identity: *our_identity.public_key(),
            remote_identity: bundle.identity_key,
            local_registration_id: our_registration_id,
            remote_registration_id: bundle.registration_id,
            base_key: *base.public_key(),
        },
        init.keys.root_key(),
        init.keys.chain_key(),
        init.keys.pq_ratchet_key(),
        bundle.signed_pre_key.public_key,
        fields,
        rng,
    )
}

/// The responder's side, from a pre-key message's fields and the private keys it names.
pub fn accept_session(
    ours: &ResponderKeys<'_>,
    our_registration_id: u32,
    fields: &PreKeyFields,
) -> Result<SessionState, E2eError> {
    let ct = KyberCiphertext::deserialize(&fields.kyber_ciphertext)?;
    let keys = respond(
        ours,
        &InitiatorMessage {
            identity_key: &fields.identity_key,
            base_key: &fields.base_key,
            kyber_ciphertext: &ct,
        },
    )?;
    Ok(SessionState::responder(
        SessionParties {
            local_identity: *ours.identity.public_key(),
            remote_identity: fields.identity_key,
            local_registration_id: our_registration_id,
            remote_registration_id: fields.registration_id,
            base_key: fields.base_key,
        },
        keys.root_key(),
        keys.chain_key(),
        keys.pq_ratchet_key(),
        ours.signed_pre_key.clone(),
    ))
}
