//! Step-up: sensitive actions need a recent MFA verification by the calling session, within
//! the tenant's step-up window.

use hush_protocol::api::{MfaLevel, MfaMethod, MfaState};

use crate::accounts::auth::Authed;
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::mfa::data::{session_rec, stored_policy, user_rec};
use crate::mfa::error::{MfaError, Result};
use crate::mfa::notify::initiator;
use crate::mfa::policy::needs;
use crate::mfa::records::{SessionMfaRec, StoredPolicy};
use crate::now_ms;
use crate::sessions;

/// Step-up of an action on the caller's own account (revoking their other sessions, turning
/// their TOTP off, new backup codes): refuses with [`MfaError::StepUpRequired`] unless this
/// session verified a code (TOTP, backup, or the confirmation of its enrolment) within the
/// tenant's step-up window. Only for users who have MFA or must have it (not under `off`, not
/// for exempt users): a user without a factor loses nothing to a thief of their token that the
/// token did not already give.
pub async fn require_step_up(hub: &Hub, me: &Authed, what: &str, ip: Option<String>) -> Result<()> {
    let p = stored_policy(hub, me.tenant()).await?;
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    let n = needs(&p, me.user(), me.admin, &rec);
    if p.policy.level == MfaLevel::Off || n.exempt || !(n.enrolled || n.required) {
        return Ok(());
    }
    let s = session_rec(hub, &me.session.id).await?;
    let by = [MfaMethod::Totp, MfaMethod::Backup, MfaMethod::Enrollment];
    if verified_within(&p, &s, &by, 0, now_ms()) {
        return Ok(());
    }
    step_up_denied(hub, me, what, ip, "denied").await;
    Err(MfaError::StepUpRequired)
}

/// Step-up of an action on other principals or on the tenant (see `docs/mfa.md`, "Step-up":
/// every admin action that changes another principal's access, credentials, sessions or MFA,
/// creates an administrator, or changes a tenant policy). Applies whatever the tenant's level
/// and exemptions: a caller without a confirmed factor is refused with
/// [`MfaError::StepUpEnrollRequired`]; one whose session has not answered a challenge (TOTP or
/// backup code) with their current factor within the step-up window, with
/// [`MfaError::StepUpRequired`]. Confirming an enrolment is no such answer: a token without a
/// recent step-up could otherwise enrol a factor of its own and count that as one.
pub async fn require_step_up_for_others(
    hub: &Hub,
    me: &Authed,
    what: &str,
    ip: Option<String>,
) -> Result<()> {
    let p = stored_policy(hub, me.tenant()).await?;
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    let Some(factor) = rec.totp.as_ref() else {
        step_up_denied(hub, me, what, ip, "denied_no_factor").await;
        return Err(MfaError::StepUpEnrollRequired);
    };
    let s = session_rec(hub, &me.session.id).await?;
    if verified_within(&p, &s, &[MfaMethod::Totp, MfaMethod::Backup], factor.created_ms, now_ms()) {
        return Ok(());
    }
    step_up_denied(hub, me, what, ip, "denied").await;
    Err(MfaError::StepUpRequired)
}

/// Whether the session verified by one of `by` at or after `since_ms` and within the tenant's
/// step-up window.
fn verified_within(p: &StoredPolicy, s: &SessionMfaRec, by: &[MfaMethod], since_ms: u64, now: u64) -> bool {
    let window = p.policy.step_up_window_secs.saturating_mul(1000);
    s.state == MfaState::Verified
        && s.method.is_some_and(|m| by.contains(&m))
        && s.verified_at_ms.is_some_and(|t| t >= since_ms && now.saturating_sub(t) <= window)
}

async fn step_up_denied(hub: &Hub, me: &Authed, what: &str, ip: Option<String>, result: &str) {
    sessions::audit(
        hub,
        me.tenant(),
        &initiator(me, ip),
        AuditAction::MfaStepUp,
        Some(what.to_owned()),
        result,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfa::records::default_policy;

    /// What counts as a step-up: only the listed methods, only after `since`, only inside the
    /// window; an enrolment counts where `Enrollment` is listed (own account), not otherwise.
    #[test]
    fn verified_within_the_window_by_the_listed_methods() {
        let mut p = StoredPolicy { policy: default_policy(), required_since_ms: 0 };
        p.policy.step_up_window_secs = 10;
        let at = |method, t| SessionMfaRec {
            state: MfaState::Verified,
            method: Some(method),
            verified_at_ms: Some(t),
            ..Default::default()
        };
        let others = [MfaMethod::Totp, MfaMethod::Backup];
        let own = [MfaMethod::Totp, MfaMethod::Backup, MfaMethod::Enrollment];
        let now = 100_000;
        assert!(verified_within(&p, &at(MfaMethod::Totp, now - 10_000), &others, 0, now));
        assert!(!verified_within(&p, &at(MfaMethod::Totp, now - 10_001), &others, 0, now), "stale");
        assert!(verified_within(&p, &at(MfaMethod::Backup, now), &others, 0, now));
        assert!(!verified_within(&p, &at(MfaMethod::Enrollment, now), &others, 0, now), "just enrolled");
        assert!(verified_within(&p, &at(MfaMethod::Enrollment, now), &own, 0, now));
        assert!(!verified_within(&p, &at(MfaMethod::TrustedDevice, now), &own, 0, now));
        assert!(
            !verified_within(&p, &at(MfaMethod::Totp, now - 5), &others, now - 4, now),
            "an older factor"
        );
        let pending = SessionMfaRec { state: MfaState::MfaPending, ..at(MfaMethod::Totp, now) };
        assert!(!verified_within(&p, &pending, &own, 0, now));
    }
}
