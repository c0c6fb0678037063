//! Administration of MFA in a tenant: the policy, enforcement on one user or every user, and
//! the reset of a user's factor. Each change brings the affected live sessions under the
//! policy at once (`refresh_user`) and tells their users.

use std::collections::BTreeMap;
use std::sync::Arc;

use hush_protocol::api::{MfaLevel, MfaPolicy, MfaState};
use hush_protocol::ids::{DeviceId, TenantId, UserId};
use hush_protocol::wire::{SessionEvent, CLOSE_UNAUTHORIZED};
use hush_store::{SessionRecord, UserRecord};

use crate::accounts::auth::Authed;
use crate::accounts::devices::complete_pending_device;
use crate::accounts::error::AccountError;
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::limits::{MAX_PAGE, MFA_REFRESH_PAGE};
use crate::mfa::data::{
    drop_trust_of_user, put_session, session_rec, stored_policy, update_policy, update_user, user_rec,
};
use crate::mfa::error::{MfaError, Result};
use crate::mfa::notify::initiator;
use crate::mfa::policy::{decide, ensure_grace, grace_deadline, needs, validate, Needs};
use crate::mfa::records::{SessionMfaRec, StoredPolicy, UserMfa};
use crate::mfa::stepup::require_step_up_for_others;
use crate::now_ms;
use crate::sessions;

/// Replaces the tenant's policy (needs a step-up), then brings every live session of the
/// tenant under it and tells the affected users.
pub async fn set_policy(
    hub: &Arc<Hub>,
    me: &Authed,
    policy: MfaPolicy,
    ip: Option<String>,
) -> Result<MfaPolicy> {
    validate(&policy)?;
    require_step_up_for_others(hub, me, "mfa.policy", ip.clone()).await?;
    let tenant = me.tenant();
    let now = now_ms();
    let requires = |l: MfaLevel| matches!(l, MfaLevel::Required | MfaLevel::RequiredForAdmins);
    update_policy(hub, tenant, |old| {
        let required_since_ms =
            if requires(policy.level) && !requires(old.policy.level) { now } else { old.required_since_ms };
        StoredPolicy { policy: policy.clone(), required_since_ms }
    })
    .await?;
    let target = Some(format!("tenant:{tenant} level:{:?}", policy.level));
    sessions::audit(hub, tenant, &initiator(me, ip), AuditAction::MfaPolicyUpdate, target, "ok").await;
    refresh_tenant(hub, tenant, "policy_changed").await?;
    Ok(policy)
}

/// Brings the live sessions of one user under the current policy; returns whether any changed.
async fn refresh_user(
    hub: &Hub,
    p: &StoredPolicy,
    tenant: &TenantId,
    user: &UserId,
    sessions_of: &[SessionRecord],
    change: &str,
) -> Result<bool> {
    let Some(account) = hub.store.get_user(tenant, user).await? else { return Ok(false) };
    let (_, rec) = user_rec(hub, tenant, user).await?;
    let n = needs(p, user, account.admin, &rec);
    let rec = if sessions_of.is_empty() { rec } else { ensure_grace(hub, tenant, user, &n, rec).await? };
    let now = now_ms();
    let mut changed = false;
    let mut kick = Vec::new();
    for s in sessions_of {
        match refresh_session(hub, p, &n, &rec, &account, s, now).await? {
            Refreshed::Same => {}
            Refreshed::Changed { now_pending } => {
                changed = true;
                if now_pending {
                    kick.push(s.clone());
                }
            }
            Refreshed::Ended => kick.push(s.clone()),
        }
    }
    if !kick.is_empty() {
        // A session that must now pass a challenge loses its chat sockets until it does.
        sessions::kick_sessions(hub, &kick, sessions::RevocationReason::MfaRequired, CLOSE_UNAUTHORIZED)
            .await;
    }
    if changed {
        let from = sessions_of.first().map(|s| s.device.device).unwrap_or(DeviceId::PRIMARY);
        let ev = SessionEvent::MfaChanged { change: change.to_owned() };
        sessions::emit(hub, tenant, user, from, None, ev).await;
    }
    Ok(changed)
}

/// What [`refresh_session`] did to one session.
enum Refreshed {
    /// Its state is what the policy asks.
    Same,
    /// Its state changed; `now_pending`: it must now pass a challenge it did not have to.
    Changed { now_pending: bool },
    /// Its pending device change could not be applied: the session is revoked.
    Ended,
}

/// Brings one live session under the policy.
async fn refresh_session(
    hub: &Hub,
    p: &StoredPolicy,
    n: &Needs,
    rec: &UserMfa,
    account: &UserRecord,
    s: &SessionRecord,
    now: u64,
) -> Result<Refreshed> {
    let prev = session_rec(hub, &s.id).await?;
    let mut next = decide(p, n, grace_deadline(p, rec), Some(&prev), false, now);
    if next.state != MfaState::MfaPending {
        // Released without a challenge (policy or admin reset): the device change the login
        // asked for is applied now; if it cannot be (its new device id was taken), the
        // session ends and the user logs in again.
        if !apply_pending_device(hub, account, s, &prev, now).await? {
            return Ok(Refreshed::Ended);
        }
        next.pending_device = None;
    }
    if next == prev {
        return Ok(Refreshed::Same);
    }
    let now_pending = next.state == MfaState::MfaPending && prev.state != MfaState::MfaPending;
    put_session(hub, &s.id, &next).await?;
    Ok(Refreshed::Changed { now_pending })
}

/// Applies the device change a pending session's login asked for; false if it could not be,
/// and the session is then revoked.
async fn apply_pending_device(
    hub: &Hub,
    account: &UserRecord,
    s: &SessionRecord,
    prev: &SessionMfaRec,
    now: u64,
) -> Result<bool> {
    let Some(request) = prev.pending_device.as_ref().filter(|_| prev.state == MfaState::MfaPending) else {
        return Ok(true);
    };
    if let Err(e) = complete_pending_device(hub, account, s, request).await {
        tracing::info!(session = %s.id, error = %e, "pending device change not applicable; session ended");
        let r = sessions::RevocationReason::Logout.at(now);
        hub.store.revoke_session(&s.id, r).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Brings every live session of a tenant under its current policy.
async fn refresh_tenant(hub: &Hub, tenant: &TenantId, change: &str) -> Result<()> {
    let p = stored_policy(hub, tenant).await?;
    let mut after: Option<String> = None;
    let mut by_user: BTreeMap<UserId, Vec<SessionRecord>> = Default::default();
    loop {
        let page = hub.store.active_sessions(tenant, after.as_deref(), MFA_REFRESH_PAGE).await?;
        let full = page.len() == MFA_REFRESH_PAGE;
        after = page.last().map(|s| s.id.clone());
        for s in page {
            by_user.entry(s.device.user.clone()).or_default().push(s);
        }
        if !full {
            break;
        }
    }
    for (user, list) in by_user {
        refresh_user(hub, &p, tenant, &user, &list, change).await?;
    }
    Ok(())
}

/// Brings the live sessions of one user under the current policy.
async fn refresh_live_sessions(hub: &Hub, tenant: &TenantId, user: &UserId, change: &str) -> Result<()> {
    let p = stored_policy(hub, tenant).await?;
    let live: Vec<SessionRecord> =
        hub.store.sessions_of_user(tenant, user).await?.into_iter().filter(|s| s.active()).collect();
    refresh_user(hub, &p, tenant, user, &live, change).await?;
    Ok(())
}

/// Marks MFA enforced on a user (once; the first time is kept).
async fn mark_enforced(hub: &Hub, tenant: &TenantId, user: &UserId, now: u64) -> Result<()> {
    update_user(hub, tenant, user, |rec| {
        if rec.enforced_ms.is_none() {
            rec.enforced_ms = Some(now);
        }
        Ok(())
    })
    .await
}

/// MFA becomes required of this user, whatever the tenant level (their grace period starts at
/// their next login, or now if they have live sessions).
pub async fn enforce_user(hub: &Hub, me: &Authed, user: &UserId, ip: Option<String>) -> Result<()> {
    let tenant = me.tenant();
    if hub.store.get_user(tenant, user).await?.is_none() {
        return Err(MfaError::Account(AccountError::NotFound));
    }
    mark_enforced(hub, tenant, user, now_ms()).await?;
    sessions::audit(
        hub,
        tenant,
        &initiator(me, ip),
        AuditAction::MfaEnforce,
        Some(format!("user:{user}")),
        "ok",
    )
    .await;
    refresh_live_sessions(hub, tenant, user, "enforced").await
}

/// An administrator resets a user's MFA (lost authenticator, factor locked for good): the
/// factor, backup codes, failure lock and trusted devices go; the user's pending sessions are
/// released (or get a grace deadline if MFA is required of them) and their devices are told.
pub async fn reset_user(hub: &Hub, me: &Authed, user: &UserId, ip: Option<String>) -> Result<()> {
    let tenant = me.tenant();
    if hub.store.get_user(tenant, user).await?.is_none() {
        return Err(MfaError::Account(AccountError::NotFound));
    }
    require_step_up_for_others(hub, me, "mfa.reset", ip.clone()).await?;
    update_user(hub, tenant, user, |rec| {
        rec.totp = None;
        rec.pending_totp = None;
        rec.backup.clear();
        rec.reset_failures();
        rec.locked_until_ms = 0;
        Ok(())
    })
    .await?;
    drop_trust_of_user(hub, tenant, user).await?;
    sessions::audit(
        hub,
        tenant,
        &initiator(me, ip),
        AuditAction::MfaReset,
        Some(format!("user:{user}")),
        "ok",
    )
    .await;
    refresh_live_sessions(hub, tenant, user, "reset").await?;
    tracing::info!(tenant = %tenant, user = %user, "MFA reset by an administrator");
    Ok(())
}

/// [`enforce_user`] for every user of the tenant.
pub async fn enforce_all(hub: &Hub, me: &Authed, ip: Option<String>) -> Result<usize> {
    let tenant = me.tenant();
    let now = now_ms();
    let mut after: Option<UserId> = None;
    let mut n = 0;
    loop {
        let page = hub.store.list_users(tenant, after.as_ref(), MAX_PAGE).await?;
        let full = page.len() == MAX_PAGE;
        after = page.last().map(|u| u.user.clone());
        for u in &page {
            mark_enforced(hub, tenant, &u.user, now).await?;
            n += 1;
        }
        if !full {
            break;
        }
    }
    sessions::audit(
        hub,
        tenant,
        &initiator(me, ip),
        AuditAction::MfaEnforceAll,
        Some(format!("users:{n}")),
        "ok",
    )
    .await;
    refresh_tenant(hub, tenant, "enforced").await?;
    Ok(n)
}
