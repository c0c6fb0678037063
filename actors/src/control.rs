//! `ControlActor`: the admin and account commands behind the HTTP routes. Commands that end
//! sessions go through here so that the store is changed first and the live socket is closed
//! after, in one place.

use std::sync::Arc;

use actix::prelude::*;
use hush_protocol::api::{CreateUserRequest, SessionPolicy, UserInfo, UserList};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::CLOSE_UNAUTHORIZED;

use crate::accounts::{self, AccountError};
use crate::device::Disconnect;
use crate::hub::Hub;
use crate::limits::MAX_PAGE;
use crate::sessions::{self, Initiator};

/// The control actor of a node.
pub struct ControlActor {
    hub: Arc<Hub>,
}

impl ControlActor {
    /// A control actor over the node's hub.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

impl Actor for ControlActor {
    type Context = Context<Self>;
}

impl Supervised for ControlActor {}

/// Creates a user in the caller's tenant (tenant administrators).
#[derive(Message)]
#[rtype(result = "Result<UserInfo, AccountError>")]
pub struct CreateUser {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// The new account.
    pub request: CreateUserRequest,
    /// Who asks.
    pub actor: Initiator,
}

impl Handler<CreateUser> for ControlActor {
    type Result = ResponseFuture<Result<UserInfo, AccountError>>;

    fn handle(&mut self, msg: CreateUser, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub.clone();
        Box::pin(async move {
            let target = Some(msg.request.user.to_string());
            let r = accounts::create_user(&hub, &msg.tenant, msg.request).await;
            let result = if r.is_ok() { "ok" } else { "failed" };
            sessions::audit(&hub, &msg.tenant, &msg.actor, "user.create", target, result).await;
            r
        })
    }
}

/// Lists a tenant's users (tenant administrators), by name, paginated.
#[derive(Message)]
#[rtype(result = "Result<UserList, AccountError>")]
pub struct ListUsers {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// Start after this name.
    pub after: Option<UserId>,
    /// Page size, capped at [`MAX_PAGE`].
    pub limit: usize,
}

impl Handler<ListUsers> for ControlActor {
    type Result = ResponseFuture<Result<UserList, AccountError>>;

    fn handle(&mut self, msg: ListUsers, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub.clone();
        Box::pin(async move {
            let users =
                hub.store.list_users(&msg.tenant, msg.after.as_ref(), msg.limit.clamp(1, MAX_PAGE)).await?;
            Ok(UserList { users: users.iter().map(accounts::user_info).collect() })
        })
    }
}

/// Ends sessions: each revoked in the store first, audited, its user's devices told, then its
/// live sockets (on every node) get `LoggedOut` and close with 4401. Sessions of another
/// tenant, unknown or already revoked ones are skipped.
#[derive(Message)]
#[rtype(result = "Result<usize, AccountError>")]
pub struct RevokeSessions {
    /// The tenant the sessions must belong to.
    pub tenant: TenantId,
    /// Public session ids.
    pub ids: Vec<String>,
    /// Why (`logout`, `revoked_by_user`, `revoked_by_admin`), sent to the clients.
    pub reason: String,
    /// Who asks (for the audit log).
    pub actor: Initiator,
}

impl Handler<RevokeSessions> for ControlActor {
    type Result = ResponseFuture<Result<usize, AccountError>>;

    fn handle(&mut self, msg: RevokeSessions, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub.clone();
        Box::pin(async move {
            let revoked = sessions::revoke_many(
                &hub,
                &msg.tenant,
                msg.ids,
                &msg.reason,
                CLOSE_UNAUTHORIZED,
                &msg.actor,
            )
            .await?;
            Ok(revoked.len())
        })
    }
}

/// Removes a linked device of a user (its sessions, queue and sockets go with it).
#[derive(Message)]
#[rtype(result = "Result<(), AccountError>")]
pub struct RemoveDevice {
    /// The tenant.
    pub tenant: TenantId,
    /// The user.
    pub user: UserId,
    /// The device (the primary only when it removes itself as the user's only device).
    pub device: hush_protocol::ids::DeviceId,
    /// Whether the device removes itself (a login that did not complete unlinks its device).
    pub own: bool,
    /// Who asks.
    pub actor: Initiator,
}

impl Handler<RemoveDevice> for ControlActor {
    type Result = ResponseFuture<Result<(), AccountError>>;

    fn handle(&mut self, msg: RemoveDevice, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub.clone();
        Box::pin(async move {
            sessions::remove_device(&hub, &msg.tenant, &msg.user, msg.device, msg.own, &msg.actor).await
        })
    }
}

/// Replaces a tenant's session lifetimes (tenant administrators). Live sessions apply it at
/// their next tick; other nodes within [`crate::tenant::SETTINGS_TTL`].
#[derive(Message)]
#[rtype(result = "Result<SessionPolicy, AccountError>")]
pub struct SetSessionPolicy {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// The new policy.
    pub policy: SessionPolicy,
    /// Who asks.
    pub actor: Initiator,
}

impl Handler<SetSessionPolicy> for ControlActor {
    type Result = ResponseFuture<Result<SessionPolicy, AccountError>>;

    fn handle(&mut self, msg: SetSessionPolicy, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub.clone();
        Box::pin(async move {
            if let Err(m) = msg.policy.validate() {
                sessions::audit(&hub, &msg.tenant, &msg.actor, "tenant.session_policy", None, "refused")
                    .await;
                return Err(AccountError::Invalid(m));
            }
            let policy = msg.policy.clone();
            let r = hub
                .tenants
                .update(&*hub.store, &msg.tenant, |s| {
                    s.sessions = policy.clone();
                    Ok::<_, AccountError>(())
                })
                .await;
            let result = if r.is_ok() { "ok" } else { "failed" };
            let p = &msg.policy;
            let target = Some(format!(
                "idle={:?} absolute={:?} admin_idle={:?} admin_absolute={:?}",
                p.idle_timeout_s, p.absolute_timeout_s, p.admin_idle_timeout_s, p.admin_absolute_timeout_s
            ));
            sessions::audit(&hub, &msg.tenant, &msg.actor, "tenant.session_policy", target, result).await;
            Ok(r?.sessions.clone())
        })
    }
}

/// Closes every live socket with 1001 (node shutting down).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll;

impl Handler<CloseAll> for ControlActor {
    type Result = usize;

    fn handle(&mut self, _msg: CloseAll, _ctx: &mut Self::Context) -> usize {
        let conns = self.hub.registry.all();
        for (_, c) in &conns {
            c.disconnect.do_send(Disconnect::new(crate::device::CLOSE_GOING_AWAY));
        }
        conns.len()
    }
}
