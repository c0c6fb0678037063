//! Session administration: a user's sessions, the tenant's active sessions, revoking them (the
//! store first, then the sockets, then the trusted devices), the audit log and the tenant's
//! session lifetimes. Every change to another principal's access takes the administrator's
//! step-up.

use std::sync::Arc;

use hush_protocol::api::{AuditPage, ClusterView, SessionList, SessionPolicy};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::CLOSE_UNAUTHORIZED;
use hush_store::AuditQuery;

use super::{ControlError, Who};
use crate::accounts::{self, AccountError};
use crate::audit::AuditAction;
use crate::audit::RevocationReason;
use crate::hub::Hub;
use crate::limits::MAX_PAGE;
use crate::{mfa, sessions, views};

/// Why an administrator's revocation ended a session (sent to its clients).
const BY_ADMIN: RevocationReason = RevocationReason::RevokedByAdmin;

async fn revoke(hub: &Arc<Hub>, admin: &Who, ids: Vec<String>) -> Result<usize, ControlError> {
    let initiator = admin.initiator();
    let revoked =
        sessions::revoke_many(hub, admin.tenant(), ids, BY_ADMIN, CLOSE_UNAUTHORIZED, &initiator).await?;
    Ok(revoked.len())
}

/// A user's sessions.
pub struct UserSessions {
    /// Who asks.
    pub admin: Who,
    /// The user.
    pub user: UserId,
}

pub(super) async fn user_sessions(hub: &Arc<Hub>, msg: UserSessions) -> Result<SessionList, ControlError> {
    let UserSessions { admin, user } = msg;
    accounts::user_in_tenant(hub, admin.tenant(), &user).await?;
    Ok(views::user_sessions(hub, admin.tenant(), &user, &admin.who.session.id).await?)
}

/// Ends every session of a user, then drops the user's trusted devices.
pub struct RevokeUserSessions {
    /// Who asks.
    pub admin: Who,
    /// The user.
    pub user: UserId,
}

pub(super) async fn revoke_user_sessions(
    hub: &Arc<Hub>,
    msg: RevokeUserSessions,
) -> Result<usize, ControlError> {
    let RevokeUserSessions { admin, user } = msg;
    accounts::user_in_tenant(hub, admin.tenant(), &user).await?;
    mfa::require_step_up_for_others(hub, &admin.who, "admin.revoke_user", admin.ip.clone()).await?;
    let ids = views::user_session_ids(hub, admin.tenant(), &user, None).await?;
    let n = revoke(hub, &admin, ids).await?;
    mfa::drop_trust_of_user(hub, admin.tenant(), &user).await?;
    Ok(n)
}

/// Ends one active session of the tenant.
pub struct RevokeSession {
    /// Who asks.
    pub admin: Who,
    /// The session's public id.
    pub id: String,
}

pub(super) async fn revoke_session(hub: &Arc<Hub>, msg: RevokeSession) -> Result<usize, ControlError> {
    let RevokeSession { admin, id } = msg;
    views::tenant_active_session(hub, admin.tenant(), &id).await?;
    mfa::require_step_up_for_others(hub, &admin.who, "admin.revoke_session", admin.ip.clone()).await?;
    revoke(hub, &admin, vec![id]).await
}

/// A page of the tenant's active sessions.
pub struct ActiveSessions {
    /// Who asks.
    pub admin: Who,
    /// Start after this session id.
    pub after: Option<String>,
    /// Page size, capped at [`MAX_PAGE`].
    pub limit: usize,
}

pub(super) async fn active_sessions(
    hub: &Arc<Hub>,
    msg: ActiveSessions,
) -> Result<SessionList, ControlError> {
    let limit = msg.limit.clamp(1, MAX_PAGE);
    let me = &msg.admin.who.session.id;
    Ok(views::active_sessions_page(hub, msg.admin.tenant(), msg.after.as_deref(), limit, me).await?)
}

/// Ends every active session of the tenant but the administrator's own, then drops every
/// trusted device of the tenant (everyone passes MFA again).
pub struct RevokeActive {
    /// Who asks.
    pub admin: Who,
}

pub(super) async fn revoke_active(hub: &Arc<Hub>, msg: RevokeActive) -> Result<usize, ControlError> {
    let admin = msg.admin;
    mfa::require_step_up_for_others(hub, &admin.who, "admin.revoke_active", admin.ip.clone()).await?;
    let ids = views::tenant_session_ids(hub, admin.tenant(), &admin.who.session.id).await?;
    let n = revoke(hub, &admin, ids).await?;
    mfa::drop_trust_of_tenant(hub, admin.tenant()).await?;
    Ok(n)
}

/// A page of the tenant's audit log.
pub struct Audit {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// The filter and page.
    pub query: AuditQuery,
}

pub(super) async fn audit(hub: &Arc<Hub>, msg: Audit) -> Result<AuditPage, ControlError> {
    Ok(views::audit_page(hub, &msg.tenant, &msg.query).await?)
}

/// The tenant's session lifetimes.
pub struct GetSessionPolicy {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
}

pub(super) async fn get_session_policy(
    hub: &Arc<Hub>,
    msg: GetSessionPolicy,
) -> Result<SessionPolicy, ControlError> {
    Ok(views::session_policy(hub, &msg.tenant).await?)
}

/// Replaces a tenant's session lifetimes (after the administrator's step-up). Live sessions
/// apply it at their next tick; other nodes within [`crate::tenant::SETTINGS_TTL`].
pub struct SetSessionPolicy {
    /// Who asks.
    pub admin: Who,
    /// The new policy.
    pub policy: SessionPolicy,
}

pub(super) async fn set_session_policy(
    hub: &Arc<Hub>,
    msg: SetSessionPolicy,
) -> Result<SessionPolicy, ControlError> {
    let SetSessionPolicy { admin, policy } = msg;
    mfa::require_step_up_for_others(hub, &admin.who, "tenant.sessions", admin.ip.clone()).await?;
    let (tenant, actor) = (admin.tenant(), admin.initiator());
    if let Err(m) = policy.validate() {
        sessions::audit(hub, tenant, &actor, AuditAction::TenantSessionPolicy, None, "refused").await;
        return Err(AccountError::Invalid(m).into());
    }
    let new = policy.clone();
    let r = hub
        .tenants
        .update(&*hub.store, tenant, |s| {
            s.sessions = new.clone();
            Ok::<_, AccountError>(())
        })
        .await;
    let result = if r.is_ok() { "ok" } else { "failed" };
    let p = &policy;
    let target = Some(format!(
        "idle={:?} absolute={:?} admin_idle={:?} admin_absolute={:?}",
        p.idle_timeout_s, p.absolute_timeout_s, p.admin_idle_timeout_s, p.admin_absolute_timeout_s
    ));
    sessions::audit(hub, tenant, &actor, AuditAction::TenantSessionPolicy, target, result).await;
    Ok(r?.sessions.clone())
}

/// The nodes of the cluster as the bus sees them (tenant administrators).
pub struct ClusterStatus {
    /// Who asks.
    pub admin: Who,
}

pub(super) async fn cluster_status(hub: &Arc<Hub>, msg: ClusterStatus) -> Result<ClusterView, ControlError> {
    let _ = msg.admin;
    Ok(views::cluster(hub).await)
}
