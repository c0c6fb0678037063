//! What a user and an administrator see of MFA: the caller's status, the MFA part of session
//! listings, and the tenant's users with their MFA state.

use futures_util::future::join_all;
use hush_protocol::api::{MfaStatus, SessionMfa, UserMfaStatus};
use hush_protocol::ids::{TenantId, UserId};

use crate::accounts::auth::Authed;
use crate::hub::Hub;
use crate::mfa::data::{session_rec, stored_policy, user_rec};
use crate::mfa::error::Result;
use crate::mfa::policy::{grace_deadline, needs};
use crate::now_ms;

/// The caller's MFA status: policy, factors, backup codes left, lock, this session's state.
pub async fn status(hub: &Hub, me: &Authed) -> Result<MfaStatus> {
    let now = now_ms();
    let p = stored_policy(hub, me.tenant()).await?;
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    let n = needs(&p, me.user(), me.admin, &rec);
    let s = session_rec(hub, &me.session.id).await?;
    let mut view = s.view(now);
    if view.enroll_deadline_ms.is_none() && n.required && !n.enrolled {
        view.enroll_deadline_ms = grace_deadline(&p, &rec);
    }
    Ok(MfaStatus {
        level: p.policy.level,
        required: n.required,
        exempt: n.exempt,
        totp_enabled: n.enrolled,
        backup_codes_left: rec.backup_left(),
        failed_attempts: rec.failures_now(now),
        locked_until_ms: rec.locked(now),
        session: view,
    })
}

/// The MFA part of a session listing.
pub async fn session_views(hub: &Hub, ids: &[String]) -> Vec<Option<SessionMfa>> {
    let now = now_ms();
    join_all(ids.iter().map(|id| async move { session_rec(hub, id).await.ok().map(|r| r.view(now)) })).await
}

/// One page of the tenant's users with their MFA state.
pub async fn users_status(
    hub: &Hub,
    tenant: &TenantId,
    after: Option<&UserId>,
    limit: usize,
) -> Result<Vec<UserMfaStatus>> {
    let p = stored_policy(hub, tenant).await?;
    let now = now_ms();
    let users = hub.store.list_users(tenant, after, limit).await?;
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        let (_, rec) = user_rec(hub, tenant, &u.user).await?;
        let n = needs(&p, &u.user, u.admin, &rec);
        let deadline = (n.required && !n.enrolled).then(|| grace_deadline(&p, &rec)).flatten();
        out.push(UserMfaStatus {
            user: u.user.clone(),
            admin: u.admin,
            totp_enabled: n.enrolled,
            backup_codes_left: rec.backup_left(),
            enforced: rec.enforced_ms.is_some(),
            exempt: n.exempt,
            required: n.required,
            enroll_deadline_ms: deadline,
            locked_until_ms: rec.locked(now),
        });
    }
    Ok(out)
}
