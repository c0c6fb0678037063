//! Account commands: users (create, list, unlock), ending sessions, removing devices, and
//! closing every socket at shutdown.

use std::sync::Arc;

use hush_protocol::api::{CreateUserRequest, UserInfo, UserList};
use hush_protocol::ids::{DeviceId, TenantId, UserId};
use hush_protocol::wire::CLOSE_UNAUTHORIZED;

use super::{ControlError, Who};
use crate::audit::{AuditAction, Initiator, RevocationReason};
use crate::delivery::registry::Disconnect;
use crate::hub::Hub;
use crate::limits::MAX_PAGE;
use crate::{accounts, mfa, sessions};

/// Creates a user in the administrator's tenant; an administrator account takes a step-up.
pub struct CreateUser {
    /// Who asks.
    pub admin: Who,
    /// The new account.
    pub request: CreateUserRequest,
}

pub(super) async fn create_user(hub: &Arc<Hub>, msg: CreateUser) -> Result<UserInfo, ControlError> {
    let CreateUser { admin, request } = msg;
    if request.admin {
        mfa::require_step_up_for_others(hub, &admin.who, "user.create_admin", admin.ip.clone()).await?;
    }
    let target = Some(request.user.to_string());
    let r = accounts::create_user(hub, admin.tenant(), request).await;
    let result = if r.is_ok() { "ok" } else { "failed" };
    sessions::audit(hub, admin.tenant(), &admin.initiator(), AuditAction::UserCreate, target, result).await;
    Ok(r?)
}

/// Lists a tenant's users, by name, paginated.
pub struct ListUsers {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// Start after this name.
    pub after: Option<UserId>,
    /// Page size, capped at [`MAX_PAGE`].
    pub limit: usize,
}

pub(super) async fn list_users(hub: &Arc<Hub>, msg: ListUsers) -> Result<UserList, ControlError> {
    let users = hub.store.list_users(&msg.tenant, msg.after.as_ref(), msg.limit.clamp(1, MAX_PAGE)).await?;
    Ok(UserList { users: users.iter().map(accounts::user_info).collect() })
}

/// Clears a user's failed logins and lock (after the administrator's step-up: it lets password
/// guessing at that account resume).
pub struct UnlockUser {
    /// Who asks.
    pub admin: Who,
    /// The user.
    pub user: UserId,
}

pub(super) async fn unlock_user(hub: &Arc<Hub>, msg: UnlockUser) -> Result<(), ControlError> {
    let UnlockUser { admin, user } = msg;
    accounts::user_in_tenant(hub, admin.tenant(), &user).await?;
    mfa::require_step_up_for_others(hub, &admin.who, "account.unlock", admin.ip.clone()).await?;
    accounts::unlock_user(hub, admin.tenant(), &user, &admin.initiator()).await;
    Ok(())
}

/// Ends sessions: each revoked in the store first, audited, its user's devices told, then its
/// live sockets (on every node) get `LoggedOut` and close with 4401. Sessions of another
/// tenant, unknown or already revoked ones are skipped.
pub struct RevokeSessions {
    /// The tenant the sessions must belong to.
    pub tenant: TenantId,
    /// Public session ids.
    pub ids: Vec<String>,
    /// Why, sent to the clients.
    pub reason: RevocationReason,
    /// Who asks (for the audit log).
    pub actor: Initiator,
}

pub(super) async fn revoke_sessions(hub: &Arc<Hub>, msg: RevokeSessions) -> Result<usize, ControlError> {
    let revoked =
        sessions::revoke_many(hub, &msg.tenant, msg.ids, msg.reason, CLOSE_UNAUTHORIZED, &msg.actor).await?;
    Ok(revoked.len())
}

/// Removes a linked device of a user (its sessions, queue and sockets go with it).
pub struct RemoveDevice {
    /// The tenant.
    pub tenant: TenantId,
    /// The user.
    pub user: UserId,
    /// The device (the primary only when it removes itself as the user's only device).
    pub device: DeviceId,
    /// Whether the device removes itself (a login that did not complete unlinks its device).
    pub own: bool,
    /// Who asks.
    pub actor: Initiator,
}

pub(super) async fn remove_device(hub: &Arc<Hub>, msg: RemoveDevice) -> Result<(), ControlError> {
    Ok(sessions::remove_device(hub, &msg.tenant, &msg.user, msg.device, msg.own, &msg.actor).await?)
}

/// Closes every live socket with 1001 (node shutting down).
pub struct CloseAll;

pub(super) async fn close_all(hub: &Arc<Hub>, _: CloseAll) -> usize {
    let conns = hub.registry.all();
    for (_, c) in &conns {
        c.device.disconnect(Disconnect::new(crate::device::CLOSE_GOING_AWAY));
    }
    conns.len()
}
