//! SPQR's symmetric key chains: per epoch, one chain per direction, yielding the 32-byte
//! message keys that libsignal mixes into its message-key derivation.
//!
//! - Start: `HKDF(salt = 0^32, ikm = auth_key, info = LABEL_START)`, 96 bytes: next root (0..32),
//!   the A-to-B chain (32..64), the B-to-A chain (64..96). Alice sends on A-to-B.
//! - New epoch `e` with secret `s`: `HKDF(salt = next root, ikm = s, info = LABEL_ADD_EPOCH)`,
//!   96 bytes, split the same way.
//! - Step: the counter is incremented first (so the first key has index 1), then
//!   `HKDF(salt = 0^32, ikm = chain, info = ctr_be32 || LABEL_NEXT)`, 64 bytes: new chain value
//!   (0..32), message key (32..64).
//!
//! Bounds (libsignal's parameters equal spqr's defaults): a receiver jumps at most
//! [`MAX_JUMP`] keys ahead, keeps skipped keys at most [`MAX_OOO_KEYS`] behind its counter and
//! collects garbage once [`TRIM_SIZE`] keys are stored. Epochs older than the one before the
//! current sending epoch are dropped when the sending epoch moves.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::auth::hkdf_into;
use super::SpqrError;
use crate::e2e::secret::{Secret32, Wiped};

/// Chain start label (note the two spaces).
pub(crate) const LABEL_START: &[u8] = b"Signal PQ Ratchet V1 Chain  Start";
/// New-epoch label.
pub(crate) const LABEL_ADD_EPOCH: &[u8] = b"Signal PQ Ratchet V1 Chain Add Epoch";
/// Chain step label (preceded by the counter, BE32).
pub(crate) const LABEL_NEXT: &[u8] = b"Signal PQ Ratchet V1 Chain Next";

/// How a receiving direction computes one chain step's HKDF (no salt; `ikm` the chain value,
/// `info` the counter and [`LABEL_NEXT`], 64 bytes out). Decryption passes one that computes
/// the Double Ratchet's chain step alongside (`hmac256::chain_step_and_hkdf64`); anything
/// else computes exactly this HKDF.
pub(crate) type StepHkdf<'a> = dyn FnMut(&[u8; 32], &[&[u8]], &mut [u8; 64]) + 'a;

/// The plain [`StepHkdf`].
pub(crate) fn plain_step(ikm: &[u8; 32], info: &[&[u8]], out: &mut [u8; 64]) {
    hkdf_into(None, ikm, info, out);
}

/// Furthest a receiver moves ahead of its counter in one message.
pub const MAX_JUMP: u32 = 25_000;
/// How far behind its counter a receiver keeps skipped keys.
pub const MAX_OOO_KEYS: u32 = 2_000;
/// Stored-key count that triggers garbage collection (`MAX_OOO_KEYS * 11 / 10 + 1`).
pub const TRIM_SIZE: usize = (MAX_OOO_KEYS as usize) * 11 / 10 + 1;
/// Epochs kept before the current sending epoch.
const EPOCHS_KEPT_BEFORE_SEND: usize = 1;

/// One direction of one epoch.
#[derive(Clone, Serialize, Deserialize)]
struct Direction {
    /// Index of the last key produced (0 before the first).
    ctr: u32,
    /// The chain value; `None` once a sending chain is retired.
    next: Option<Secret32>,
    /// Skipped receiving keys, by index.
    skipped: Vec<(u32, Secret32)>,
}

impl Direction {
    fn new(seed: &[u8]) -> Self {
        let mut k = Secret32([0u8; 32]);
        k.0.copy_from_slice(seed);
        Self { ctr: 0, next: Some(k), skipped: Vec::new() }
    }

    /// Advances one step: `(index, key)`.
    fn step(&mut self) -> Result<(u32, Secret32), SpqrError> {
        self.step_with(&mut plain_step)
    }

    /// [`Self::step`] with the HKDF computed by `hkdf`.
    fn step_with(&mut self, hkdf: &mut StepHkdf<'_>) -> Result<(u32, Secret32), SpqrError> {
        let next = self.next.as_mut().ok_or(SpqrError::StateInvalid)?;
        let ctr = self.ctr.checked_add(1).ok_or(SpqrError::KeyJump(self.ctr, u32::MAX))?;
        let mut okm = Wiped::<64>::zeroed();
        hkdf(next.as_bytes(), &[&ctr.to_be_bytes(), LABEL_NEXT], &mut okm);
        next.0.copy_from_slice(&okm[..32]);
        let mut key = Secret32([0u8; 32]);
        key.0.copy_from_slice(&okm[32..]);
        self.ctr = ctr;
        Ok((ctr, key))
    }

    /// The receiving key at index `at`, every step's HKDF computed by `hkdf`.
    fn recv_key(&mut self, at: u32, max_jump: u32, hkdf: &mut StepHkdf<'_>) -> Result<Secret32, SpqrError> {
        let ctr = self.ctr;
        if at < ctr {
            return self.take_skipped(at);
        }
        if at == ctr {
            return Err(SpqrError::KeyAlreadyRequested(at));
        }
        if at - ctr > max_jump {
            return Err(SpqrError::KeyJump(ctr, at));
        }
        let keep_from = u64::from(at).saturating_sub(u64::from(MAX_OOO_KEYS));
        if u64::from(at) > u64::from(ctr) + u64::from(MAX_OOO_KEYS) {
            // Every key held now is too old to be kept after this jump.
            self.skipped.clear();
        }
        while self.ctr + 1 < at {
            let (i, k) = self.step_with(hkdf)?;
            if u64::from(i) >= keep_from {
                self.skipped.push((i, k));
            }
        }
        self.collect_garbage();
        Ok(self.step_with(hkdf)?.1)
    }

    fn take_skipped(&mut self, at: u32) -> Result<Secret32, SpqrError> {
        if u64::from(at) + u64::from(MAX_OOO_KEYS) < u64::from(self.ctr) {
            return Err(SpqrError::KeyTrimmed(at));
        }
        match self.skipped.iter().position(|(i, _)| *i == at) {
            Some(pos) => Ok(self.skipped.swap_remove(pos).1),
            None => Err(SpqrError::KeyAlreadyRequested(at)),
        }
    }

    fn collect_garbage(&mut self) {
        if self.skipped.len() >= TRIM_SIZE {
            let horizon = self.ctr.saturating_sub(MAX_OOO_KEYS);
            self.skipped.retain(|(i, _)| *i >= horizon);
        }
    }
}

/// Both directions of one epoch.
#[derive(Clone, Serialize, Deserialize)]
struct Link {
    send: Direction,
    recv: Direction,
}

/// A receiving direction advanced on a copy (see [`Chain::peek_recv_key`]).
pub(crate) struct RecvUpdate {
    pos: usize,
    dir: Direction,
}

/// All chains of a session.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Chain {
    /// Alice sends on A-to-B.
    alice: bool,
    /// [`MAX_JUMP`], or `u32::MAX` in a session with oneself (libsignal's choice; a receiver
    /// then derives every key up to any index it is sent, at one HKDF per key).
    max_jump: u32,
    current_epoch: u64,
    send_epoch: u64,
    /// Links for epochs `current_epoch - links.len() + 1 ..= current_epoch`.
    links: VecDeque<Link>,
    next_root: Secret32,
}

impl Chain {
    fn link(okm: &[u8; 96], alice: bool) -> Link {
        let (a2b, b2a) = (&okm[32..64], &okm[64..96]);
        let (send, recv) = if alice { (a2b, b2a) } else { (b2a, a2b) };
        Link { send: Direction::new(send), recv: Direction::new(recv) }
    }

    /// The epoch-0 chains of a session (tests; the state uses [`Self::with_max_jump`]).
    #[cfg(test)]
    pub(crate) fn new(auth_key: &[u8], alice: bool) -> Self {
        Self::with_max_jump(auth_key, alice, MAX_JUMP)
    }

    /// The epoch-0 chains with a given jump bound.
    pub(crate) fn with_max_jump(auth_key: &[u8], alice: bool, max_jump: u32) -> Self {
        let mut okm = Wiped::<96>::zeroed();
        hkdf_into(None, auth_key, &[LABEL_START], &mut okm[..]);
        let mut next_root = Secret32([0u8; 32]);
        next_root.0.copy_from_slice(&okm[..32]);
        Self {
            alice,
            max_jump,
            current_epoch: 0,
            send_epoch: 0,
            links: VecDeque::from([Self::link(&okm, alice)]),
            next_root,
        }
    }

    /// The newest epoch with chains.
    pub(crate) fn current_epoch(&self) -> u64 {
        self.current_epoch
    }

    /// Adds the chains of `epoch` (which must be the next one) from its secret.
    pub(crate) fn add_epoch(&mut self, epoch: u64, secret: &Secret32) -> Result<(), SpqrError> {
        if Some(epoch) != self.current_epoch.checked_add(1) {
            return Err(SpqrError::EpochOutOfRange(epoch));
        }
        let mut okm = Wiped::<96>::zeroed();
        hkdf_into(Some(self.next_root.as_bytes()), secret.as_bytes(), &[LABEL_ADD_EPOCH], &mut okm[..]);
        self.next_root.0.copy_from_slice(&okm[..32]);
        self.links.push_back(Self::link(&okm, self.alice));
        self.current_epoch = epoch;
        Ok(())
    }

    fn position(&self, epoch: u64) -> Result<usize, SpqrError> {
        if epoch > self.current_epoch {
            return Err(SpqrError::EpochOutOfRange(epoch));
        }
        let back =
            usize::try_from(self.current_epoch - epoch).map_err(|_| SpqrError::EpochOutOfRange(epoch))?;
        if back >= self.links.len() {
            return Err(SpqrError::EpochOutOfRange(epoch));
        }
        Ok(self.links.len() - 1 - back)
    }

    /// The next sending key of `epoch`: `(index, key)`.
    pub(crate) fn send_key(&mut self, epoch: u64) -> Result<(u32, Secret32), SpqrError> {
        if epoch < self.send_epoch {
            return Err(SpqrError::SendKeyEpochDecreased(self.send_epoch, epoch));
        }
        let mut pos = self.position(epoch)?;
        if epoch != self.send_epoch {
            self.send_epoch = epoch;
            while pos > EPOCHS_KEPT_BEFORE_SEND {
                self.links.pop_front();
                pos -= 1;
            }
            for link in self.links.iter_mut().take(pos) {
                link.send.next = None;
            }
        }
        self.links.get_mut(pos).ok_or(SpqrError::StateInvalid)?.send.step()
    }

    /// The receiving key of `epoch` at `index`, derived on a copy of that one direction: the
    /// chain is unchanged until [`Self::apply`] writes the copy back. Each step's HKDF is
    /// computed by `hkdf`.
    pub(crate) fn peek_recv_key(
        &self,
        epoch: u64,
        index: u32,
        hkdf: &mut StepHkdf<'_>,
    ) -> Result<(Secret32, RecvUpdate), SpqrError> {
        let pos = self.position(epoch)?;
        let mut dir = self.links.get(pos).ok_or(SpqrError::StateInvalid)?.recv.clone();
        let key = dir.recv_key(index, self.max_jump, hkdf)?;
        Ok((key, RecvUpdate { pos, dir }))
    }

    /// Writes back a direction advanced by [`Self::peek_recv_key`] on this chain.
    pub(crate) fn apply(&mut self, update: RecvUpdate) {
        if let Some(link) = self.links.get_mut(update.pos) {
            link.recv = update.dir;
        }
    }

    /// The receiving key of `epoch` at `index`.
    pub(crate) fn recv_key(&mut self, epoch: u64, index: u32) -> Result<Secret32, SpqrError> {
        let pos = self.position(epoch)?;
        let max_jump = self.max_jump;
        self.links.get_mut(pos).ok_or(SpqrError::StateInvalid)?.recv.recv_key(
            index,
            max_jump,
            &mut plain_step,
        )
    }

    #[cfg(test)]
    pub(crate) fn epochs_held(&self) -> usize {
        self.links.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deriving on a copy and writing it back ([`Chain::peek_recv_key`] + [`Chain::apply`],
    /// what decryption does) gives the same keys, errors and chain as [`Chain::recv_key`], in
    /// order, out of order, after jumps and on repeats.
    #[test]
    fn peek_and_apply_equal_recv_key() {
        let (mut a, _) = pair();
        let (mut b, _) = pair();
        let indexes = [1u32, 2, 5, 3, 3, 4, 9, 2, 8, 6, 7, 7, 40, 12, 39, 2_100, 45, 2_099, 10];
        for i in indexes {
            let direct = a.recv_key(0, i).map(|k| k.0);
            let peeked = b.peek_recv_key(0, i, &mut plain_step).map(|(k, u)| {
                b.apply(u);
                k.0
            });
            assert_eq!(direct, peeked, "index {i}");
            assert_eq!(postcard::to_allocvec(&a).unwrap(), postcard::to_allocvec(&b).unwrap(), "index {i}");
        }
    }

    fn pair() -> (Chain, Chain) {
        (Chain::new(b"1", true), Chain::new(b"1", false))
    }

    #[test]
    fn directions_match_and_first_index_is_one() {
        let (mut a, mut b) = pair();
        let (i, k) = a.send_key(0).unwrap();
        assert_eq!(i, 1);
        assert_eq!(k.0, b.recv_key(0, 1).unwrap().0);
        let (i, k) = b.send_key(0).unwrap();
        assert_eq!(i, 1);
        assert_eq!(k.0, a.recv_key(0, 1).unwrap().0);
        // A-to-B and B-to-A differ.
        assert_ne!(a.send_key(0).unwrap().1 .0, b.send_key(0).unwrap().1 .0);
        let s = Secret32([2u8; 32]);
        a.add_epoch(1, &s).unwrap();
        b.add_epoch(1, &s).unwrap();
        assert!(a.add_epoch(3, &s).is_err());
        for _ in 0..9 {
            a.send_key(1).unwrap();
        }
        let (i, k) = a.send_key(1).unwrap();
        assert_eq!(i, 10);
        assert_eq!(k.0, b.recv_key(1, 10).unwrap().0);
        assert!(matches!(b.recv_key(1, 10), Err(SpqrError::KeyAlreadyRequested(10))));
        for j in 1..10 {
            b.recv_key(1, j).unwrap();
        }
        assert!(matches!(b.recv_key(1, 5), Err(SpqrError::KeyAlreadyRequested(5))));
        assert!(matches!(a.send_key(0), Err(SpqrError::SendKeyEpochDecreased(1, 0))));
        assert!(matches!(b.recv_key(2, 1), Err(SpqrError::EpochOutOfRange(2))));
    }

    #[test]
    fn jump_and_trim_bounds() {
        let (_, mut b) = pair();
        assert!(matches!(b.recv_key(0, MAX_JUMP + 1), Err(SpqrError::KeyJump(0, _))));
        b.recv_key(0, MAX_JUMP).unwrap();
        // Only the last MAX_OOO_KEYS skipped keys were kept.
        assert!(matches!(b.recv_key(0, 1), Err(SpqrError::KeyTrimmed(1))));
        b.recv_key(0, MAX_JUMP - MAX_OOO_KEYS).unwrap();
        assert!(b.links[0].recv.skipped.len() < TRIM_SIZE);
        let mut c = Chain::new(b"1", false);
        // Many small steps: storage stays bounded by the garbage collector.
        for i in 0..10 {
            c.recv_key(0, (i + 1) * 1_000).unwrap();
        }
        assert!(c.links[0].recv.skipped.len() <= TRIM_SIZE);
        // A session with oneself has no jump bound.
        let mut own = Chain::with_max_jump(b"1", false, u32::MAX);
        own.recv_key(0, 3 * MAX_JUMP).unwrap();
        assert!(matches!(c.recv_key(0, 500), Err(SpqrError::KeyTrimmed(500))));
        c.recv_key(0, 9_500).unwrap();
    }

    #[test]
    fn old_epochs_are_dropped_when_the_send_epoch_moves() {
        let (mut a, _) = pair();
        for e in 1..=3u64 {
            a.add_epoch(e, &Secret32([e as u8; 32])).unwrap();
        }
        assert_eq!(a.epochs_held(), 4);
        a.send_key(2).unwrap();
        // Epoch 1 (one before the send epoch) and later are kept.
        assert_eq!(a.epochs_held(), 3);
        assert!(matches!(a.recv_key(0, 1), Err(SpqrError::EpochOutOfRange(0))));
        a.recv_key(1, 1).unwrap();
    }
}
