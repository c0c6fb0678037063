//! X3DH key agreement (Signal specification, libsignal's message-version-3 derivation):
//! master secret = HKDF-SHA256(salt = none, ikm = `0xFF x 32 || DH1 || DH2 || DH3 [|| DH4]`,
//! info = `WhisperText`) -> root key (32) || chain key (32), with
//! DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B), DH4 = DH(EK_A, OPK_B).
//!
//! The bundle's signed pre-key signature (and its Kyber pre-key signature, when present) is
//! checked before any DH. Full PQXDH (running the KEM) is out of scope: Hush keeps Kyber keys in
//! libsignal's format so libsignal clients can use the same node.

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::consts::LABEL_X3DH;
use super::error::{E2eError, KeyError};
use super::kdf::{hkdf, ChainKey, RootKey};
use super::keys::{DhPoint, KeyPair, PrivateKey};
use super::message::PreKeyFields;
use super::prekeys::PreKeyBundle;
use super::ratchet::{SessionParties, SessionState};

fn derive(dhs: &[PrivateKeyAndPeer<'_>]) -> Result<(RootKey, ChainKey), E2eError> {
    let mut secret = Zeroizing::new([0xffu8; 32 * 5]);
    let mut len = 32;
    for d in dhs {
        let shared = d.0.agree_prepared(d.1)?;
        secret.get_mut(len..len + 32).ok_or(E2eError::Crypto)?.copy_from_slice(shared.as_ref());
        len += 32;
    }
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf(None, secret.get(..len).ok_or(E2eError::Crypto)?, LABEL_X3DH, okm.as_mut())?;
    let mut root = [0u8; 32];
    let mut chain = [0u8; 32];
    root.copy_from_slice(&okm[..32]);
    chain.copy_from_slice(&okm[32..]);
    Ok((RootKey::new(root), ChainKey::new(chain, 0)))
}

struct PrivateKeyAndPeer<'a>(&'a PrivateKey, &'a DhPoint);

/// Checks a bundle's signatures, as done before any use of its keys.
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

/// The initiator's side: verifies the bundle, runs X3DH with a fresh base key and returns a
/// session whose first messages are pre-key messages.
pub fn initiate<R: RngCore + CryptoRng>(
    our_identity: &KeyPair,
    our_registration_id: u32,
    bundle: &PreKeyBundle,
    rng: &mut R,
) -> Result<SessionState, E2eError> {
    verify_bundle(bundle)?;
    let base = KeyPair::generate(rng);
    let spk = &bundle.signed_pre_key.public_key;
    let spk_point = spk.prepare();
    let ik_point = bundle.identity_key.prepare();
    let otk_point = bundle.one_time_pre_key.map(|k| k.public_key.prepare());
    let mut dhs = vec![
        PrivateKeyAndPeer(our_identity.private_key(), &spk_point),
        PrivateKeyAndPeer(base.private_key(), &ik_point),
        PrivateKeyAndPeer(base.private_key(), &spk_point),
    ];
    if let Some(otk) = &otk_point {
        dhs.push(PrivateKeyAndPeer(base.private_key(), otk));
    }
    let (root, chain) = derive(&dhs)?;
    let fields = PreKeyFields {
        registration_id: our_registration_id,
        pre_key_id: bundle.one_time_pre_key.map(|k| k.key_id),
        signed_pre_key_id: bundle.signed_pre_key.key_id,
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
        root,
        chain,
        *spk,
        fields,
        rng,
    )
}

/// The responder's side, from the fields of a pre-key message and the private pre-keys it names.
pub fn respond(
    our_identity: &KeyPair,
    our_registration_id: u32,
    signed_pre_key: &KeyPair,
    one_time_pre_key: Option<&KeyPair>,
    fields: &PreKeyFields,
) -> Result<SessionState, E2eError> {
    let spk = signed_pre_key.private_key();
    let ik_point = fields.identity_key.prepare();
    let base_point = fields.base_key.prepare();
    let mut dhs = vec![
        PrivateKeyAndPeer(spk, &ik_point),
        PrivateKeyAndPeer(our_identity.private_key(), &base_point),
        PrivateKeyAndPeer(spk, &base_point),
    ];
    if let Some(otk) = one_time_pre_key {
        dhs.push(PrivateKeyAndPeer(otk.private_key(), &base_point));
    }
    let (root, chain) = derive(&dhs)?;
    Ok(SessionState::responder(
        SessionParties {
            local_identity: *our_identity.public_key(),
            remote_identity: fields.identity_key,
            local_registration_id: our_registration_id,
            remote_registration_id: fields.registration_id,
            base_key: fields.base_key,
        },
        root,
        chain,
        signed_pre_key.clone(),
    ))
}
