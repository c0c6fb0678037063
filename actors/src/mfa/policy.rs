//! Policy evaluation: what a tenant's policy asks of one user (`needs`), the state a session
//! should have under it (`decide`), grace periods, how long a device stays trusted, and the
//! checks of a policy an administrator submits.

use hush_protocol::api::{MfaLevel, MfaMethod, MfaPolicy, MfaState, Role};
use hush_protocol::ids::{TenantId, UserId};

use crate::accounts::error::AccountError;
use crate::accounts::tokens::new_public_id;
use crate::hub::Hub;
use crate::limits::{MFA_CHALLENGE_TTL_MS, MFA_MAX_EXEMPT_USERS};
use crate::mfa::data::update_user;
use crate::mfa::error::{MfaError, Result};
use crate::mfa::records::{ChallengeRec, SessionMfaRec, StoredPolicy, UserMfa};
use crate::now_ms;

/// What the policy asks of one user.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Needs {
    pub(crate) exempt: bool,
    pub(crate) required: bool,
    pub(crate) enrolled: bool,
    /// Logins must pass a challenge (the user has TOTP and MFA applies to them).
    pub(crate) challenge: bool,
    /// When the requirement started for this user (policy or enforcement), ms.
    pub(crate) required_since_ms: u64,
}

pub(crate) fn needs(p: &StoredPolicy, user: &UserId, admin: bool, rec: &UserMfa) -> Needs {
    let role = if admin { Role::Admin } else { Role::Member };
    let policy = &p.policy;
    let exempt = policy.exempt_users.contains(user) || policy.exempt_roles.contains(&role);
    let on = policy.level != MfaLevel::Off && !exempt;
    let by_level = match policy.level {
        MfaLevel::Required => true,
        MfaLevel::RequiredForAdmins => admin,
        MfaLevel::Off | MfaLevel::Optional => false,
    };
    let required = on && (by_level || rec.enforced_ms.is_some());
    let since = match (by_level, rec.enforced_ms) {
        (true, Some(e)) => p.required_since_ms.min(e),
        (true, None) => p.required_since_ms,
        (false, Some(e)) => e,
        (false, None) => 0,
    };
    let enrolled = rec.totp.is_some();
    Needs { exempt, required, enrolled, challenge: on && enrolled, required_since_ms: since }
}

/// How long a device stays trusted under this policy, ms (0: trust is not offered).
pub(crate) fn trust_ms(p: &StoredPolicy) -> u64 {
    p.policy
        .trusted_device_secs
        .unwrap_or(u64::from(p.policy.trusted_device_days) * 86_400)
        .saturating_mul(1000)
}

pub(crate) fn grace_deadline(p: &StoredPolicy, rec: &UserMfa) -> Option<u64> {
    rec.grace_started_ms.map(|s| s.saturating_add(p.policy.grace_period_secs.saturating_mul(1000)))
}

/// Starts the user's grace period now if MFA is required of them, they have none, and their
/// grace has not started since the requirement began.
pub(crate) async fn ensure_grace(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    n: &Needs,
    rec: UserMfa,
) -> Result<UserMfa> {
    if !n.required || n.enrolled || rec.grace_started_ms.is_some_and(|g| g >= n.required_since_ms) {
        return Ok(rec);
    }
    let since = n.required_since_ms;
    let now = now_ms();
    update_user(hub, tenant, user, |r| {
        if r.grace_started_ms.is_none_or(|g| g < since) {
            r.grace_started_ms = Some(now);
        }
        Ok(r.clone())
    })
    .await
}

pub(crate) fn new_challenge(now: u64) -> ChallengeRec {
    ChallengeRec { id: new_public_id(), expires_ms: now + MFA_CHALLENGE_TTL_MS }
}

/// The state a session should have under the policy, given its previous state.
pub(crate) fn decide(
    p: &StoredPolicy,
    n: &Needs,
    deadline: Option<u64>,
    prev: Option<&SessionMfaRec>,
    trusted: bool,
    now: u64,
) -> SessionMfaRec {
    let level = p.policy.level;
    if n.challenge {
        return decide_challenged(level, prev, trusted, now);
    }
    let deadline = if n.required && !n.enrolled { deadline } else { None };
    match prev.filter(|s| s.state == MfaState::Verified) {
        Some(v) => SessionMfaRec { level, enroll_deadline_ms: deadline, challenge: None, ..v.clone() },
        None => SessionMfaRec { level, enroll_deadline_ms: deadline, ..SessionMfaRec::default() },
    }
}

/// [`decide`] for a user whose logins must pass a challenge.
fn decide_challenged(
    level: MfaLevel,
    prev: Option<&SessionMfaRec>,
    trusted: bool,
    now: u64,
) -> SessionMfaRec {
    if let Some(v) = prev.filter(|s| s.state == MfaState::Verified) {
        return SessionMfaRec { level, enroll_deadline_ms: None, ..v.clone() };
    }
    if trusted {
        return SessionMfaRec::verified(level, MfaMethod::TrustedDevice, now);
    }
    let pending = prev.filter(|s| s.state == MfaState::MfaPending);
    let challenge = pending
        .and_then(|s| s.challenge.clone())
        .filter(|c| c.expires_ms > now)
        .unwrap_or_else(|| new_challenge(now));
    SessionMfaRec {
        state: MfaState::MfaPending,
        level,
        method: None,
        verified_at_ms: None,
        challenge: Some(challenge),
        enroll_deadline_ms: None,
        // Still pending: the device change the login asked for still waits.
        pending_device: pending.and_then(|s| s.pending_device.clone()),
    }
}

/// Checks a policy an administrator submits.
pub(crate) fn validate(p: &MfaPolicy) -> Result<()> {
    let bad = |m: &str| Err(MfaError::Account(AccountError::Invalid(m.to_owned())));
    if !matches!(p.totp_digits, 6 | 8) {
        return bad("totp_digits must be 6 or 8");
    }
    if p.grace_period_secs > 365 * 86_400 {
        return bad("grace_period_secs must be at most one year");
    }
    if p.trusted_device_days > 365 || p.trusted_device_secs.is_some_and(|s| s > 365 * 86_400) {
        return bad("trusted devices are remembered at most 365 days");
    }
    if !(1..=86_400).contains(&p.step_up_window_secs) {
        return bad("step_up_window_secs must be 1..=86400");
    }
    if p.exempt_users.len() > MFA_MAX_EXEMPT_USERS {
        return bad("too many exempt users");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use hush_protocol::otp::Algorithm;

    use super::*;
    use crate::mfa::records::{default_policy, TotpFactor};

    #[test]
    fn decide_pending_trusted_grace() {
        let p = StoredPolicy { policy: default_policy(), required_since_ms: 0 };
        let mut rec = UserMfa::default();
        let alice = UserId::new("alice").unwrap();
        let n = needs(&p, &alice, false, &rec);
        assert!(!n.challenge && !n.required);
        assert_eq!(decide(&p, &n, None, None, false, 5).state, MfaState::None);
        rec.totp = Some(TotpFactor { sealed: vec![], algorithm: Algorithm::Sha1, digits: 6, created_ms: 0 });
        let n = needs(&p, &alice, false, &rec);
        let s = decide(&p, &n, None, None, false, 5);
        assert_eq!(s.state, MfaState::MfaPending);
        assert!(s.challenge.is_some());
        assert_eq!(decide(&p, &n, None, None, true, 5).method, Some(MfaMethod::TrustedDevice));
        let mut p2 = p.clone();
        p2.policy.exempt_users.push(alice.clone());
        assert_eq!(decide(&p2, &needs(&p2, &alice, false, &rec), None, None, false, 5).state, MfaState::None);
        let mut p3 = p.clone();
        p3.policy.level = MfaLevel::Required;
        let fresh = UserMfa { grace_started_ms: Some(1_000), ..UserMfa::default() };
        let n = needs(&p3, &alice, false, &fresh);
        let s = decide(&p3, &n, grace_deadline(&p3, &fresh), None, false, 5);
        assert_eq!(s.enroll_deadline_ms, Some(1_000 + 48 * 3600 * 1000));
        assert!(s.block(5).is_none());
        assert!(matches!(s.block(1_000 + 48 * 3600 * 1000), Some(MfaError::EnrollRequired)));
    }
}
