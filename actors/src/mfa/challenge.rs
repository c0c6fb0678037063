//! Challenges and their answers: a session asks for a challenge (its login's, or a step-up)
//! and answers it with a TOTP or a backup code. A success marks the session verified (method
//! and time) and may trust the device; a failure is counted, told to every device of the user,
//! and may lock the factor.
//!
//! Answering is two steps, [`check_answer`] then [`mark_verified`], so that what a login left
//! pending (its device change) can be applied between them: `crate::login::verify` does both.

use hush_protocol::api::{MfaChallenge, MfaMethod, MfaVerified, Secret};
use hush_protocol::wire::SessionEvent;
use subtle::ConstantTimeEq;

use crate::accounts::auth::Authed;
use crate::accounts::error::AccountError;
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::mfa::backup::verify_backup;
use crate::mfa::codes::{normalize_code, Outcome};
use crate::mfa::data::{put_session, session_rec, stored_policy, user_rec};
use crate::mfa::error::{MfaError, Result};
use crate::mfa::notify::{changed, initiator};
use crate::mfa::policy::new_challenge;
use crate::mfa::records::{SessionMfaRec, StoredPolicy};
use crate::mfa::totp::verify_totp;
use crate::mfa::trust::remember_device;
use crate::now_ms;
use crate::sessions;

/// The kind of code that answers a challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    /// A TOTP code.
    Totp,
    /// One of the user's backup codes.
    Backup,
}

impl Factor {
    /// The audit action of an answer with this factor.
    pub fn action(self) -> AuditAction {
        match self {
            Factor::Totp => AuditAction::MfaVerify,
            Factor::Backup => AuditAction::MfaBackup,
        }
    }
}

/// A new challenge for this session (the login's, or a step-up).
///
/// Also under the level `off`: logins are not challenged then, but a factor still serves the
/// step-up of actions on others (see [`crate::mfa::stepup::require_step_up_for_others`]).
pub async fn challenge(hub: &Hub, me: &Authed, ip: Option<String>) -> Result<MfaChallenge> {
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    if rec.totp.is_none() {
        return Err(MfaError::NotEnrolled);
    }
    let now = now_ms();
    let mut s = session_rec(hub, &me.session.id).await?;
    s.challenge = Some(new_challenge(now));
    put_session(hub, &me.session.id, &s).await?;
    let target = Some(format!("session:{}", me.session.id));
    sessions::audit(hub, me.tenant(), &initiator(me, ip), AuditAction::MfaChallenge, target, "issued").await;
    s.view(now).challenge.ok_or(MfaError::Account(AccountError::Internal))
}

async fn open_challenge(hub: &Hub, me: &Authed, challenge_id: &str, now: u64) -> Result<SessionMfaRec> {
    let s = session_rec(hub, &me.session.id).await?;
    let ok = s
        .challenge
        .as_ref()
        .is_some_and(|c| bool::from(c.id.as_bytes().ct_eq(challenge_id.as_bytes())) && c.expires_ms > now);
    if ok {
        Ok(s)
    } else {
        Err(MfaError::InvalidChallenge)
    }
}

/// A code that answered this session's challenge: what [`mark_verified`] needs.
pub struct Answered {
    /// The tenant's policy when the code was checked.
    pub(crate) policy: StoredPolicy,
    /// When the code was checked, ms.
    pub(crate) now: u64,
    /// The factor the code was of.
    pub factor: Factor,
}

/// Checks an answer to this session's challenge: the challenge must be open, the code right
/// (and not used before). A refusal is audited; a wrong code is counted, may lock the factor,
/// and is told to every device of the user. Changes nothing of the session.
pub async fn check_answer(
    hub: &Hub,
    me: &Authed,
    challenge_id: &str,
    code: &Secret,
    factor: Factor,
    ip: Option<String>,
) -> Result<Answered> {
    let now = now_ms();
    let actor = initiator(me, ip);
    let target = Some(format!("session:{}", me.session.id));
    let (tenant, user) = (me.tenant(), me.user());
    if let Err(e) = open_challenge(hub, me, challenge_id, now).await {
        sessions::audit(hub, tenant, &actor, factor.action(), target, "invalid_challenge").await;
        return Err(e);
    }
    let policy = stored_policy(hub, tenant).await?;
    let code = normalize_code(code.expose());
    let outcome = match factor {
        Factor::Backup => verify_backup(hub, tenant, user, &code, now).await?,
        Factor::Totp => verify_totp(hub, tenant, user, &code, now).await?,
    };
    match outcome {
        Outcome::Ok => Ok(Answered { policy, now, factor }),
        Outcome::NotEnrolled => Err(MfaError::NotEnrolled),
        Outcome::Locked(until) => {
            sessions::audit(hub, tenant, &actor, factor.action(), target, "locked").await;
            Err(MfaError::Locked { until_ms: until })
        }
        Outcome::Failed { attempts, locked_until } => {
            let result = if locked_until.is_some() { "denied_locked" } else { "denied" };
            sessions::audit(hub, tenant, &actor, factor.action(), target, result).await;
            tracing::info!(tenant = %tenant, user = %user, session = %me.session.id, attempts, "MFA code refused");
            let ev = SessionEvent::MfaFailed {
                session_id: me.session.id.clone(),
                attempts,
                locked_until_ms: locked_until,
            };
            sessions::emit(hub, tenant, user, me.session.device.device, None, ev).await;
            Err(MfaError::InvalidCode)
        }
    }
}

/// Marks the session verified after [`check_answer`] accepted its code (audited; a used backup
/// code is told to the user's devices), and trusts the device if asked and the policy allows.
pub async fn mark_verified(
    hub: &Hub,
    me: &Authed,
    answered: Answered,
    remember: bool,
    ip: Option<String>,
) -> Result<MfaVerified> {
    let Answered { policy, now, factor } = answered;
    let method = match factor {
        Factor::Backup => MfaMethod::Backup,
        Factor::Totp => MfaMethod::Totp,
    };
    let verified = SessionMfaRec::verified(policy.policy.level, method, now);
    put_session(hub, &me.session.id, &verified).await?;
    let target = Some(format!("session:{}", me.session.id));
    sessions::audit(hub, me.tenant(), &initiator(me, ip.clone()), factor.action(), target, "ok").await;
    if factor == Factor::Backup {
        changed(hub, me, "backup_code_used").await;
    }
    let (token, until) =
        if remember { remember_device(hub, me, &policy, now, ip).await? } else { (None, None) };
    Ok(MfaVerified { session: verified.view(now), trusted_device_token: token, trusted_until_ms: until })
}
