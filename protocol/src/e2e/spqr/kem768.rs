//! Incremental ML-KEM-768 (libcrux's `mlkem768::incremental`, the API spqr uses).
//!
//! The encapsulation key is split in a 64-byte header (`pk1`: seed and hash) and a 1152-byte
//! body (`pk2`); encapsulation is split likewise: `ct1` (960 bytes) needs only the header,
//! `ct2` (128 bytes) needs the body and the 2080-byte encapsulation state kept from step one.
//! The decapsulation key is libcrux's compressed key pair (2400 bytes).

use libcrux_ml_kem::mlkem768::incremental as inc;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::SpqrError;

/// Encapsulation-key header (`pk1`).
pub(crate) const HEADER_LEN: usize = 64;
/// Encapsulation-key body (`pk2`).
pub(crate) const EK_LEN: usize = 1152;
/// Compressed decapsulation key.
pub(crate) const DK_LEN: usize = 2400;
/// First ciphertext part.
pub(crate) const CT1_LEN: usize = 960;
/// Second ciphertext part.
pub(crate) const CT2_LEN: usize = 128;
/// Encapsulation state between the two encapsulation steps.
pub(crate) const ES_LEN: usize = 2080;

/// Secret bytes of variable length, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub(crate) struct SecretVec(pub(crate) Vec<u8>);

/// A fresh key pair: header, body and decapsulation key.
pub(crate) struct KeyPair {
    pub(crate) hdr: Vec<u8>,
    pub(crate) ek: Vec<u8>,
    pub(crate) dk: SecretVec,
}

/// Generates a key pair from 64 random bytes.
pub(crate) fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> KeyPair {
    let mut seed = Zeroizing::new([0u8; libcrux_ml_kem::KEY_GENERATION_SEED_SIZE]);
    rng.fill_bytes(&mut seed[..]);
    let kp = inc::KeyPairCompressedBytes::from_seed(*seed);
    KeyPair { hdr: kp.pk1().to_vec(), ek: kp.pk2().to_vec(), dk: SecretVec(kp.sk().to_vec()) }
}

/// Whether `ek` is the body belonging to header `hdr`.
pub(crate) fn ek_matches_header(ek: &[u8], hdr: &[u8]) -> bool {
    hdr.len() == HEADER_LEN && ek.len() == EK_LEN && inc::validate_pk_bytes(hdr, ek).is_ok()
}

/// What the first encapsulation step yields: `(ct1, encapsulation state, shared secret)`.
pub(crate) type Encaps1 = (Vec<u8>, SecretVec, Zeroizing<[u8; 32]>);

/// First encapsulation step.
pub(crate) fn encaps1<R: RngCore + CryptoRng>(hdr: &[u8], rng: &mut R) -> Result<Encaps1, SpqrError> {
    if hdr.len() != HEADER_LEN {
        return Err(SpqrError::StateInvalid);
    }
    let mut randomness = Zeroizing::new([0u8; libcrux_ml_kem::SHARED_SECRET_SIZE]);
    rng.fill_bytes(&mut randomness[..]);
    let mut es = SecretVec(vec![0u8; inc::encaps_state_len()]);
    let mut ss = Zeroizing::new([0u8; 32]);
    let ct1 = inc::encapsulate1(hdr, *randomness, &mut es.0, &mut ss[..]).map_err(|_| SpqrError::Crypto)?;
    Ok((ct1.value.to_vec(), es, ss))
}

/// Second encapsulation step: `ct2`.
pub(crate) fn encaps2(ek: &[u8], es: &SecretVec) -> Result<Vec<u8>, SpqrError> {
    let es: &[u8; ES_LEN] = es.0.as_slice().try_into().map_err(|_| SpqrError::StateInvalid)?;
    let ek: &[u8; EK_LEN] = ek.try_into().map_err(|_| SpqrError::StateInvalid)?;
    Ok(inc::encapsulate2(es, ek).value.to_vec())
}

/// Decapsulation (implicit rejection: a wrong ciphertext gives a wrong secret, not an error).
pub(crate) fn decaps(dk: &SecretVec, ct1: &[u8], ct2: &[u8]) -> Result<Zeroizing<[u8; 32]>, SpqrError> {
    let dk: &[u8; DK_LEN] = dk.0.as_slice().try_into().map_err(|_| SpqrError::StateInvalid)?;
    let ct1 = inc::Ciphertext1 { value: ct1.try_into().map_err(|_| SpqrError::StateInvalid)? };
    let ct2 = inc::Ciphertext2 { value: ct2.try_into().map_err(|_| SpqrError::MsgDecode)? };
    Ok(Zeroizing::new(inc::decapsulate_compressed_key(dk, &ct1, &ct2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_libcrux() {
        assert_eq!(inc::pk1_len(), HEADER_LEN);
        assert_eq!(inc::pk2_len(), EK_LEN);
        assert_eq!(inc::key_pair_compressed_len(), DK_LEN);
        assert_eq!(inc::Ciphertext1::len(), CT1_LEN);
        assert_eq!(inc::Ciphertext2::len(), CT2_LEN);
        assert_eq!(inc::encaps_state_len(), ES_LEN);
    }

    #[test]
    fn round_trip() {
        let mut rng = rand::rngs::OsRng;
        let kp = generate(&mut rng);
        assert_eq!((kp.hdr.len(), kp.ek.len(), kp.dk.0.len()), (HEADER_LEN, EK_LEN, DK_LEN));
        assert!(ek_matches_header(&kp.ek, &kp.hdr));
        let other = generate(&mut rng);
        assert!(!ek_matches_header(&other.ek, &kp.hdr));
        let (ct1, es, ss) = encaps1(&kp.hdr, &mut rng).unwrap();
        assert_eq!((ct1.len(), es.0.len()), (CT1_LEN, ES_LEN));
        let ct2 = encaps2(&kp.ek, &es).unwrap();
        assert_eq!(ct2.len(), CT2_LEN);
        assert_eq!(*decaps(&kp.dk, &ct1, &ct2).unwrap(), *ss);
        assert_ne!(*decaps(&other.dk, &ct1, &ct2).unwrap(), *ss);
    }
}
