//! The MFA records as stored (postcard values in the store's key-value space; where each lives
//! is in [`crate::mfa::data`]), and the rules that work on one record alone: the failure
//! counting and lock of a user's factor, and what a session's state blocks.

use hush_protocol::api::{DeviceRequest, MfaChallenge, MfaLevel, MfaMethod, MfaPolicy, MfaState, SessionMfa};
use hush_protocol::otp::Algorithm;
use serde::{Deserialize, Serialize};

use crate::limits::{
    MFA_FAILURES_PER_WINDOW, MFA_FAILURE_WINDOW_MS, MFA_MAX_CONSECUTIVE_FAILURES, MFA_MAX_LOCK_MS,
};
use crate::mfa::error::MfaError;

/// A tenant's policy as stored, with when MFA last became required (a user's grace counts only
/// from a login after that).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// The policy as administrators see it.
    pub policy: MfaPolicy,
    /// When the level last changed from not requiring MFA to requiring it, ms.
    pub required_since_ms: u64,
}

/// The policy of a tenant that never set one (written for every tenant by
/// [`crate::mfa::data::migrate`]).
pub fn default_policy() -> MfaPolicy {
    MfaPolicy {
        level: MfaLevel::Optional,
        grace_period_secs: 48 * 3600,
        exempt_users: Vec::new(),
        exempt_roles: Vec::new(),
        totp_algorithm: Algorithm::Sha1,
        totp_digits: 6,
        trusted_device_days: 30,
        trusted_device_secs: None,
        step_up_window_secs: 600,
    }
}

/// A TOTP factor: its secret sealed under the node's MFA key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpFactor {
    /// Nonce, ciphertext and tag of the secret.
    pub sealed: Vec<u8>,
    /// HMAC.
    pub algorithm: Algorithm,
    /// Code length.
    pub digits: u32,
    /// Enrolment time, ms.
    pub created_ms: u64,
}

/// One backup code: an Argon2id PHC string (salted), and when it was used.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCode {
    /// Argon2id hash of the normalized code.
    pub hash: String,
    /// Set once used.
    pub used_ms: Option<u64>,
}

/// Everything MFA about one user.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMfa {
    /// The confirmed TOTP factor.
    pub totp: Option<TotpFactor>,
    /// An enrolment waiting for its first code.
    pub pending_totp: Option<TotpFactor>,
    /// Backup codes of the current set.
    pub backup: Vec<BackupCode>,
    /// An administrator enforced MFA on this user (ms), whatever the tenant level.
    pub enforced_ms: Option<u64>,
    /// When this user's grace period started (first login after enforcement).
    pub grace_started_ms: Option<u64>,
    /// The last TOTP time step accepted: a code of this step or an earlier one is refused.
    pub last_step: u64,
    /// Start of the current failure window, ms.
    pub fail_window_start_ms: u64,
    /// Failures in the current window.
    pub fail_window_count: u32,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Locks since the last success (each doubles the next lock).
    pub lockouts: u32,
    /// Locked until, ms.
    pub locked_until_ms: u64,
}

impl UserMfa {
    pub(crate) fn backup_left(&self) -> u32 {
        self.backup.iter().filter(|c| c.used_ms.is_none()).count() as u32
    }
    pub(crate) fn locked(&self, now: u64) -> Option<u64> {
        (self.locked_until_ms > now).then_some(self.locked_until_ms)
    }
    pub(crate) fn reset_failures(&mut self) {
        self.fail_window_count = 0;
        self.consecutive_failures = 0;
        self.lockouts = 0;
    }
    /// Counts one failure; returns (failures in the window, lock end if now locked).
    pub(crate) fn fail(&mut self, now: u64) -> (u32, Option<u64>) {
        if now >= self.fail_window_start_ms.saturating_add(MFA_FAILURE_WINDOW_MS) {
            self.fail_window_start_ms = now;
            self.fail_window_count = 0;
        }
        self.fail_window_count += 1;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let attempts = self.fail_window_count;
        if self.consecutive_failures >= MFA_MAX_CONSECUTIVE_FAILURES {
            // NIST SP 800-63B: no more than 100 consecutive failures, ever.
            self.locked_until_ms = u64::MAX;
        } else if self.fail_window_count >= MFA_FAILURES_PER_WINDOW {
            self.lockouts += 1;
            let factor = 1u64 << (self.lockouts - 1).min(16);
            let d = MFA_FAILURE_WINDOW_MS.saturating_mul(factor).min(MFA_MAX_LOCK_MS);
            self.locked_until_ms = now + d;
            self.fail_window_count = 0;
            self.fail_window_start_ms = now + d;
        }
        (attempts, self.locked(now))
    }
    pub(crate) fn failures_now(&self, now: u64) -> u32 {
        if now < self.fail_window_start_ms.saturating_add(MFA_FAILURE_WINDOW_MS) {
            self.fail_window_count
        } else {
            0
        }
    }
}

/// An open challenge of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRec {
    /// Random 128-bit id, hex.
    pub id: String,
    /// Expiry, ms.
    pub expires_ms: u64,
}

/// A session's MFA state (absent: [`MfaState::None`], as for sessions older than MFA).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMfaRec {
    /// The state (`EnrollRequired` is never stored: it is `None` past `enroll_deadline_ms`).
    pub state: MfaState,
    /// The tenant's level when decided.
    pub level: MfaLevel,
    /// How the factor was proved.
    pub method: Option<MfaMethod>,
    /// When.
    pub verified_at_ms: Option<u64>,
    /// The open challenge.
    pub challenge: Option<ChallengeRec>,
    /// Enrolment deadline of a user in the grace period.
    pub enroll_deadline_ms: Option<u64>,
    /// The device registration a pending login asked for, applied once the session verifies
    /// (a password alone changes no device).
    pub pending_device: Option<DeviceRequest>,
}

impl SessionMfaRec {
    /// A session verified now by `method` under the tenant's `level`.
    pub(crate) fn verified(level: MfaLevel, method: MfaMethod, now: u64) -> Self {
        SessionMfaRec {
            state: MfaState::Verified,
            level,
            method: Some(method),
            verified_at_ms: Some(now),
            challenge: None,
            enroll_deadline_ms: None,
            pending_device: None,
        }
    }

    /// What the session may not do now, if anything.
    pub fn block(&self, now: u64) -> Option<MfaError> {
        match self.state {
            MfaState::MfaPending => Some(MfaError::Required),
            MfaState::None if self.enroll_deadline_ms.is_some_and(|d| now >= d) => {
                Some(MfaError::EnrollRequired)
            }
            _ => None,
        }
    }

    /// The client view.
    pub fn view(&self, now: u64) -> SessionMfa {
        let state = match self.block(now) {
            Some(MfaError::EnrollRequired) => MfaState::EnrollRequired,
            _ => self.state,
        };
        SessionMfa {
            state,
            level: self.level,
            method: self.method,
            verified_at_ms: self.verified_at_ms,
            challenge: self.challenge.as_ref().map(|c| MfaChallenge {
                challenge_id: c.id.clone(),
                expires_ms: c.expires_ms,
                methods: vec![MfaMethod::Totp, MfaMethod::Backup],
            }),
            enroll_deadline_ms: self.enroll_deadline_ms,
        }
    }
}

/// A trusted device: the SHA-256 of its token and the trust's end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRec {
    /// SHA-256 of the trust token (256 random bits, so a fast hash suffices).
    pub token_hash: [u8; 32],
    /// When trusted, ms.
    pub created_ms: u64,
    /// Trusted until, ms.
    pub expires_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_after_five_then_grow_and_cap_at_100() {
        let mut r = UserMfa::default();
        let t0 = 1_000_000;
        for i in 1..=4 {
            assert_eq!(r.fail(t0 + i), (i as u32, None));
        }
        let (n, locked) = r.fail(t0 + 5);
        assert_eq!(n, 5);
        assert_eq!(locked, Some(t0 + 5 + MFA_FAILURE_WINDOW_MS));
        // After the first lock, five more failures lock twice as long.
        let t1 = t0 + 5 + MFA_FAILURE_WINDOW_MS;
        for i in 1..=4 {
            assert_eq!(r.fail(t1 + i).1, None);
        }
        assert_eq!(r.fail(t1 + 5).1, Some(t1 + 5 + 2 * MFA_FAILURE_WINDOW_MS));
        r.consecutive_failures = MFA_MAX_CONSECUTIVE_FAILURES - 1;
        assert_eq!(r.fail(t1 + 10 * MFA_MAX_LOCK_MS).1, Some(u64::MAX));
    }
}
