//! `ControlActor`: the admin and account commands behind the HTTP routes. Commands that end
//! sessions go through here so that the store is changed first and the live socket is closed
//! after, in one place.

use std::sync::Arc;

use actix::prelude::*;
use hush_protocol::api::{CreateUserRequest, UserInfo, UserList};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::CLOSE_UNAUTHORIZED;

use crate::accounts::{self, AccountError};
use crate::device::Disconnect;
use crate::hub::Hub;
use crate::limits::MAX_PAGE;

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
}

impl Handler<CreateUser> for ControlActor {
    type Result = ResponseFuture<Result<UserInfo, AccountError>>;

    fn handle(&mut self, msg: CreateUser, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub.clone();
        Box::pin(async move { accounts::create_user(&hub, &msg.tenant, msg.request).await })
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

/// Ends a session: revoked in the store first, then its live socket gets `LoggedOut` and 4401.
#[derive(Message)]
#[rtype(result = "Result<(), AccountError>")]
pub struct RevokeSession {
    /// The session's public id.
    pub session_id: String,
    /// Only if it belongs to this tenant (answers `NotFound` otherwise).
    pub tenant: TenantId,
    /// Why (`logout`, `revoked_by_user`, ...), sent to the client.
    pub reason: String,
}

impl Handler<RevokeSession> for ControlActor {
    type Result = ResponseFuture<Result<(), AccountError>>;

    fn handle(&mut self, msg: RevokeSession, _ctx: &mut Self::Context) -> Self::Result {
        let hub = self.hub.clone();
        Box::pin(async move {
            let Some(existing) = hub.store.session_by_id(&msg.session_id).await? else {
                return Err(AccountError::NotFound);
            };
            if existing.device.tenant != msg.tenant {
                return Err(AccountError::NotFound);
            }
            let session =
                accounts::revoke(&hub, &msg.session_id, &msg.reason).await?.ok_or(AccountError::NotFound)?;
            tracing::info!(session = %session.id, device = %session.device, reason = %msg.reason, "session revoked");
            let kick = Disconnect {
                code: CLOSE_UNAUTHORIZED,
                logged_out: Some(msg.reason.clone()),
                session_id: Some(session.id.clone()),
                opened_before_ms: None,
            };
            if let Some(conn) = hub.registry.get(&session.device) {
                conn.disconnect.do_send(kick);
            }
            let remote = hush_cluster::Kick {
                device: session.device.clone(),
                code: CLOSE_UNAUTHORIZED,
                session_id: Some(session.id),
                logged_out: Some(msg.reason),
                opened_before_ms: None,
            };
            if let Err(e) = hub.bus.broadcast(&hush_cluster::BusMessage::Kick(remote)).await {
                // The token is refused everywhere already (the store says revoked); a socket on
                // another node closes when its node hears of it or at its next auth check.
                tracing::warn!(error = %e, "revocation not broadcast");
            }
            Ok(())
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
