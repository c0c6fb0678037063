//! The SPQR V1 KEM-exchange state machine (spqr's "chunked" states), one epoch at a time.
//!
//! Roles alternate per epoch. In epoch 1 alice is the *key sender*, bob the *ciphertext
//! sender*; whoever finishes an epoch as key sender becomes ciphertext sender for the next one.
//!
//! Key sender (`hdr` = 64-byte key header, `ek` = 1152-byte key body):
//! - `KeysUnsampled` --send: generate keys, send chunk of `hdr || mac_hdr`--> `KeysSampled`
//! - `KeysSampled` --send: header chunk; recv first ct1 chunk--> `HeaderSent`
//! - `HeaderSent` --send: ek chunk; recv ct1 chunks until ct1 decodes--> `Ct1Received`
//! - `Ct1Received` --send: ek chunk typed "ek + ct1 ack"; recv first ct2 chunk--> `EkSentCt1Received`
//! - `EkSentCt1Received` --send: "ct1 ack"; recv ct2 chunks until `ct2 || mac` decodes: decapsulate,
//!   derive the epoch secret, update the authenticator, check the ciphertext MAC; output the
//!   epoch secret (a *receiving* secret)--> ciphertext sender `NoHeaderReceived` for epoch + 1.
//!
//! Ciphertext sender:
//! - `NoHeaderReceived` --send: nothing; recv header chunks until `hdr || mac` decodes and the MAC
//!   verifies--> `HeaderReceived`
//! - `HeaderReceived` --send: encapsulate step 1, derive the epoch secret, update the
//!   authenticator, output the secret (a *sending* secret), send first ct1 chunk--> `Ct1Sampled`
//! - `Ct1Sampled` --send: ct1 chunk; recv ek chunks (plain or with ct1 ack)--> one of
//!   `Ct1Sampled` (no ek, no ack), `Ct1Acknowledged` (ack, ek incomplete),
//!   `EkReceivedCt1Sampled` (ek complete, no ack), `Ct2Sampled` (both)
//! - `EkReceivedCt1Sampled` --send: ct1 chunk; recv any ack--> `Ct2Sampled`
//! - `Ct1Acknowledged` --send: nothing; recv ek chunks until ek completes--> `Ct2Sampled`
//! - `Ct2Sampled` --send: chunk of `ct2 || mac_ct`; recv a message of epoch + 1--> key sender
//!   `KeysUnsampled` for epoch + 1.
//!
//! A completed key body is checked against the authenticated header before use. Messages of an
//! older epoch are ignored by the state machine; messages of a newer epoch are an error except
//! the one transition out of `Ct2Sampled`.

use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::auth::{epoch_secret, Auth, MAC_LEN};
use super::encoding::{PolyDecoder, PolyEncoder};
use super::kem768::{self, SecretVec, CT1_LEN, CT2_LEN, EK_LEN, HEADER_LEN};
use super::wire::Payload;
use super::SpqrError;
use crate::e2e::secret::Secret32;

/// An epoch secret produced by the exchange: mixed into the chains as epoch `epoch`.
pub(crate) struct EpochSecret {
    pub(crate) epoch: u64,
    pub(crate) secret: Secret32,
}

#[allow(clippy::large_enum_variant)]
#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum Scka {
    KeysUnsampled {
        epoch: u64,
        auth: Auth,
    },
    KeysSampled {
        epoch: u64,
        auth: Auth,
        ek: Vec<u8>,
        dk: SecretVec,
        hdr_out: PolyEncoder,
    },
    HeaderSent {
        epoch: u64,
        auth: Auth,
        dk: SecretVec,
        ek_out: PolyEncoder,
        ct1_in: PolyDecoder,
    },
    Ct1Received {
        epoch: u64,
        auth: Auth,
        dk: SecretVec,
        ct1: Vec<u8>,
        ek_out: PolyEncoder,
    },
    EkSentCt1Received {
        epoch: u64,
        auth: Auth,
        dk: SecretVec,
        ct1: Vec<u8>,
        ct2_in: PolyDecoder,
    },
    NoHeaderReceived {
        epoch: u64,
        auth: Auth,
        /// Always `Some` in practice (see [`Scka::init_bob`]).
        hdr_in: Option<PolyDecoder>,
    },
    HeaderReceived {
        epoch: u64,
        auth: Auth,
        hdr: Vec<u8>,
        ek_in: PolyDecoder,
    },
    Ct1Sampled {
        epoch: u64,
        auth: Auth,
        hdr: Vec<u8>,
        es: SecretVec,
        ct1: Vec<u8>,
        ct1_out: PolyEncoder,
        ek_in: PolyDecoder,
    },
    EkReceivedCt1Sampled {
        epoch: u64,
        auth: Auth,
        es: SecretVec,
        ek: Vec<u8>,
        ct1: Vec<u8>,
        ct1_out: PolyEncoder,
    },
    Ct1Acknowledged {
        epoch: u64,
        auth: Auth,
        hdr: Vec<u8>,
        es: SecretVec,
        ct1: Vec<u8>,
        ek_in: PolyDecoder,
    },
    Ct2Sampled {
        epoch: u64,
        auth: Auth,
        ct2_out: PolyEncoder,
    },
}

fn decoder(len: usize) -> Result<PolyDecoder, SpqrError> {
    PolyDecoder::new(len).map_err(SpqrError::Encoding)
}

fn encoder(msg: &[u8]) -> Result<PolyEncoder, SpqrError> {
    PolyEncoder::encode_bytes(msg).map_err(SpqrError::Encoding)
}

/// The decoded message if complete, checked to have exactly `len` bytes.
fn finished(dec: &PolyDecoder, len: usize) -> Result<Option<Vec<u8>>, SpqrError> {
    match dec.decoded_message() {
        None => Ok(None),
        Some(m) if m.len() == len => Ok(Some(m)),
        Some(_) => Err(SpqrError::ErroneousDataReceived),
    }
}

/// Encapsulation step 2 and the ciphertext MAC: the encoder of `ct2 || mac`.
fn ct2_encoder(
    epoch: u64,
    auth: &Auth,
    ek: &[u8],
    es: &SecretVec,
    ct1: &[u8],
) -> Result<PolyEncoder, SpqrError> {
    let mut out = kem768::encaps2(ek, es)?;
    let mac = auth.mac_ciphertext(epoch, ct1, &out)?;
    out.extend_from_slice(&mac);
    encoder(&out)
}

/// The checked key body after the ciphertext sender has sent ct1.
fn accept_ek(ek: Vec<u8>, hdr: &[u8]) -> Result<Vec<u8>, SpqrError> {
    if kem768::ek_matches_header(&ek, hdr) {
        Ok(ek)
    } else {
        Err(SpqrError::ErroneousDataReceived)
    }
}

impl Scka {
    pub(crate) fn init_alice(auth_key: &[u8]) -> Self {
        Scka::KeysUnsampled { epoch: 1, auth: Auth::new(auth_key) }
    }

    /// Bob's start. The header decoder is created on the first header chunk if the erasure
    /// code refuses to make it here (it accepts this fixed length; spqr assumes so too).
    pub(crate) fn init_bob(auth_key: &[u8]) -> Self {
        Scka::NoHeaderReceived {
            epoch: 1,
            auth: Auth::new(auth_key),
            hdr_in: decoder(HEADER_LEN + MAC_LEN).ok(),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        match self {
            Scka::KeysUnsampled { epoch, .. }
            | Scka::KeysSampled { epoch, .. }
            | Scka::HeaderSent { epoch, .. }
            | Scka::Ct1Received { epoch, .. }
            | Scka::EkSentCt1Received { epoch, .. }
            | Scka::NoHeaderReceived { epoch, .. }
            | Scka::HeaderReceived { epoch, .. }
            | Scka::Ct1Sampled { epoch, .. }
            | Scka::EkReceivedCt1Sampled { epoch, .. }
            | Scka::Ct1Acknowledged { epoch, .. }
            | Scka::Ct2Sampled { epoch, .. } => *epoch,
        }
    }

    /// One send: the next state, the payload (sent with this state's epoch) and possibly a new
    /// sending epoch secret.
    pub(crate) fn send<R: RngCore + CryptoRng>(
        self,
        rng: &mut R,
    ) -> Result<(Scka, Payload, Option<EpochSecret>), SpqrError> {
        Ok(match self {
            Scka::KeysUnsampled { epoch, auth } => {
                let kp = kem768::generate(rng);
                let mac = auth.mac_header(epoch, &kp.hdr)?;
                let mut hdr_out = encoder(&[kp.hdr.as_slice(), &mac].concat())?;
                let c = hdr_out.next_chunk();
                (Scka::KeysSampled { epoch, auth, ek: kp.ek, dk: kp.dk, hdr_out }, Payload::Header(c), None)
            }
            Scka::KeysSampled { epoch, auth, ek, dk, mut hdr_out } => {
                let c = hdr_out.next_chunk();
                (Scka::KeysSampled { epoch, auth, ek, dk, hdr_out }, Payload::Header(c), None)
            }
            Scka::HeaderSent { epoch, auth, dk, mut ek_out, ct1_in } => {
                let c = ek_out.next_chunk();
                (Scka::HeaderSent { epoch, auth, dk, ek_out, ct1_in }, Payload::Ek(c), None)
            }
            Scka::Ct1Received { epoch, auth, dk, ct1, mut ek_out } => {
                let c = ek_out.next_chunk();
                (Scka::Ct1Received { epoch, auth, dk, ct1, ek_out }, Payload::EkCt1Ack(c), None)
            }
            s @ Scka::EkSentCt1Received { .. } => (s, Payload::Ct1Ack, None),
            s @ Scka::NoHeaderReceived { .. } => (s, Payload::None, None),
            Scka::HeaderReceived { epoch, mut auth, hdr, ek_in } => {
                let (ct1, es, ss) = kem768::encaps1(&hdr, rng)?;
                let secret = epoch_secret(&ss[..], epoch);
                auth.update(epoch, secret.as_bytes());
                let mut ct1_out = encoder(&ct1)?;
                let c = ct1_out.next_chunk();
                (
                    Scka::Ct1Sampled { epoch, auth, hdr, es, ct1, ct1_out, ek_in },
                    Payload::Ct1(c),
                    Some(EpochSecret { epoch, secret }),
                )
            }
            Scka::Ct1Sampled { epoch, auth, hdr, es, ct1, mut ct1_out, ek_in } => {
                let c = ct1_out.next_chunk();
                (Scka::Ct1Sampled { epoch, auth, hdr, es, ct1, ct1_out, ek_in }, Payload::Ct1(c), None)
            }
            Scka::EkReceivedCt1Sampled { epoch, auth, es, ek, ct1, mut ct1_out } => {
                let c = ct1_out.next_chunk();
                (Scka::EkReceivedCt1Sampled { epoch, auth, es, ek, ct1, ct1_out }, Payload::Ct1(c), None)
            }
            s @ Scka::Ct1Acknowledged { .. } => (s, Payload::None, None),
            Scka::Ct2Sampled { epoch, auth, mut ct2_out } => {
                let c = ct2_out.next_chunk();
                (Scka::Ct2Sampled { epoch, auth, ct2_out }, Payload::Ct2(c), None)
            }
        })
    }

    /// One receive of a message sent in `msg_epoch`: the next state and possibly a new
    /// receiving epoch secret.
    /// True when [`Scka::recv`] would hand this state back unchanged, with no secret and no
    /// error: a message of an older epoch, or one of this epoch whose payload the state does
    /// not take (most messages: one side sends chunks the other is not collecting yet). Lets
    /// the caller skip copying the state for those.
    pub(crate) fn ignores(&self, msg_epoch: u64, payload: &Payload) -> bool {
        let epoch = self.epoch();
        if msg_epoch != epoch {
            return msg_epoch < epoch;
        }
        !matches!(
            (self, payload),
            (Scka::KeysSampled { .. } | Scka::HeaderSent { .. }, Payload::Ct1(_))
                | (Scka::Ct1Received { .. } | Scka::EkSentCt1Received { .. }, Payload::Ct2(_))
                | (Scka::NoHeaderReceived { .. }, Payload::Header(_))
                | (
                    Scka::Ct1Sampled { .. } | Scka::Ct1Acknowledged { .. },
                    Payload::Ek(_) | Payload::EkCt1Ack(_)
                )
                | (Scka::EkReceivedCt1Sampled { .. }, Payload::Ct1Ack | Payload::EkCt1Ack(_))
        )
    }

    pub(crate) fn recv(
        self,
        msg_epoch: u64,
        payload: &Payload,
    ) -> Result<(Scka, Option<EpochSecret>), SpqrError> {
        let epoch = self.epoch();
        if msg_epoch < epoch {
            return Ok((self, None));
        }
        if msg_epoch > epoch {
            return match self {
                Scka::Ct2Sampled { epoch, auth, .. } if Some(msg_epoch) == epoch.checked_add(1) => {
                    Ok((Scka::KeysUnsampled { epoch: msg_epoch, auth }, None))
                }
                _ => Err(SpqrError::EpochOutOfRange(msg_epoch)),
            };
        }
        let mut secret = None;
        let next = match (self, payload) {
            (Scka::KeysSampled { epoch, auth, ek, dk, .. }, Payload::Ct1(c)) => {
                let mut ct1_in = decoder(CT1_LEN)?;
                ct1_in.add_chunk(c);
                let ek_out = encoder(&ek)?;
                Scka::HeaderSent { epoch, auth, dk, ek_out, ct1_in }
            }
            (Scka::HeaderSent { epoch, auth, dk, ek_out, mut ct1_in }, Payload::Ct1(c)) => {
                ct1_in.add_chunk(c);
                match finished(&ct1_in, CT1_LEN)? {
                    Some(ct1) => Scka::Ct1Received { epoch, auth, dk, ct1, ek_out },
                    None => Scka::HeaderSent { epoch, auth, dk, ek_out, ct1_in },
                }
            }
            (Scka::Ct1Received { epoch, auth, dk, ct1, .. }, Payload::Ct2(c)) => {
                let mut ct2_in = decoder(CT2_LEN + MAC_LEN)?;
                ct2_in.add_chunk(c);
                Scka::EkSentCt1Received { epoch, auth, dk, ct1, ct2_in }
            }
            (Scka::EkSentCt1Received { epoch, mut auth, dk, ct1, mut ct2_in }, Payload::Ct2(c)) => {
                ct2_in.add_chunk(c);
                match finished(&ct2_in, CT2_LEN + MAC_LEN)? {
                    None => Scka::EkSentCt1Received { epoch, auth, dk, ct1, ct2_in },
                    Some(ct2_mac) => {
                        let (ct2, mac) = ct2_mac.split_at(CT2_LEN);
                        let ss = kem768::decaps(&dk, &ct1, ct2)?;
                        let s = epoch_secret(&ss[..], epoch);
                        auth.update(epoch, s.as_bytes());
                        auth.verify_ciphertext(epoch, &ct1, ct2, mac)?;
                        let next_epoch = epoch.checked_add(1).ok_or(SpqrError::EpochOutOfRange(epoch))?;
                        secret = Some(EpochSecret { epoch, secret: s });
                        Scka::NoHeaderReceived {
                            epoch: next_epoch,
                            auth,
                            hdr_in: Some(decoder(HEADER_LEN + MAC_LEN)?),
                        }
                    }
                }
            }
            (Scka::NoHeaderReceived { epoch, auth, hdr_in }, Payload::Header(c)) => {
                let mut hdr_in = match hdr_in {
                    Some(d) => d,
                    None => decoder(HEADER_LEN + MAC_LEN)?,
                };
                hdr_in.add_chunk(c);
                match finished(&hdr_in, HEADER_LEN + MAC_LEN)? {
                    None => Scka::NoHeaderReceived { epoch, auth, hdr_in: Some(hdr_in) },
                    Some(hdr_mac) => {
                        let (hdr, mac) = hdr_mac.split_at(HEADER_LEN);
                        auth.verify_header(epoch, hdr, mac)?;
                        Scka::HeaderReceived { epoch, auth, hdr: hdr.to_vec(), ek_in: decoder(EK_LEN)? }
                    }
                }
            }
            (
                Scka::Ct1Sampled { epoch, auth, hdr, es, ct1, ct1_out, mut ek_in },
                Payload::Ek(c) | Payload::EkCt1Ack(c),
            ) => {
                let acked = matches!(payload, Payload::EkCt1Ack(_));
                ek_in.add_chunk(c);
                match (finished(&ek_in, EK_LEN)?, acked) {
                    (None, false) => Scka::Ct1Sampled { epoch, auth, hdr, es, ct1, ct1_out, ek_in },
                    (None, true) => Scka::Ct1Acknowledged { epoch, auth, hdr, es, ct1, ek_in },
                    (Some(ek), false) => {
                        let ek = accept_ek(ek, &hdr)?;
                        Scka::EkReceivedCt1Sampled { epoch, auth, es, ek, ct1, ct1_out }
                    }
                    (Some(ek), true) => {
                        let ek = accept_ek(ek, &hdr)?;
                        let ct2_out = ct2_encoder(epoch, &auth, &ek, &es, &ct1)?;
                        Scka::Ct2Sampled { epoch, auth, ct2_out }
                    }
                }
            }
            (
                Scka::EkReceivedCt1Sampled { epoch, auth, es, ek, ct1, .. },
                Payload::Ct1Ack | Payload::EkCt1Ack(_),
            ) => {
                let ct2_out = ct2_encoder(epoch, &auth, &ek, &es, &ct1)?;
                Scka::Ct2Sampled { epoch, auth, ct2_out }
            }
            (
                Scka::Ct1Acknowledged { epoch, auth, hdr, es, ct1, mut ek_in },
                Payload::Ek(c) | Payload::EkCt1Ack(c),
            ) => {
                ek_in.add_chunk(c);
                match finished(&ek_in, EK_LEN)? {
                    None => Scka::Ct1Acknowledged { epoch, auth, hdr, es, ct1, ek_in },
                    Some(ek) => {
                        let ek = accept_ek(ek, &hdr)?;
                        let ct2_out = ct2_encoder(epoch, &auth, &ek, &es, &ct1)?;
                        Scka::Ct2Sampled { epoch, auth, ct2_out }
                    }
                }
            }
            // Anything else in the current epoch changes nothing.
            (s, _) => s,
        };
        Ok((next, secret))
    }
}

/// Chunks are what [`Payload`] carries; re-exported for the tests of the parent module.
#[cfg(test)]
pub(crate) fn chunk_of(p: &Payload) -> Option<super::encoding::Chunk> {
    match p {
        Payload::Header(c) | Payload::Ek(c) | Payload::EkCt1Ack(c) | Payload::Ct1(c) | Payload::Ct2(c) => {
            Some(*c)
        }
        Payload::None | Payload::Ct1Ack => None,
    }
}
