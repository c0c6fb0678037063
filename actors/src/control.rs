//! `ControlActor`: the admin and account commands behind the HTTP routes, one typed message
//! each ([`Command`]). Commands that end sessions go through here so that the store is changed
//! first and the live socket is closed after, in one place.
//!
//! It is a ractor actor under the control supervisor: commands are handled one at a time (an
//! admin's changes are serialised on the node), and a command whose handler fails answers its
//! caller with [`Unavailable`] while the supervisor starts a fresh actor for the next one (the
//! actor keeps no state of its own; everything is in the store).

use std::sync::{Arc, RwLock};

use hush_protocol::api::{CreateUserRequest, SessionPolicy, UserInfo, UserList};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::CLOSE_UNAUTHORIZED;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::accounts::{self, AccountError};
use crate::hub::Hub;
use crate::limits::MAX_PAGE;
use crate::registry::Disconnect;
use crate::sessions::{self, Initiator};
use crate::supervise::{Area, Restart, Restarting};

/// The control actor of a node (its state is the node's hub).
pub struct ControlActor;

/// A command of the control actor: its message and its answer.
pub trait Command: Send + 'static {
    /// What the caller gets.
    type Reply: Send + 'static;
    /// The message carrying this command and where to answer.
    fn wrap(self, reply: RpcReplyPort<Self::Reply>) -> ControlMsg;
}

macro_rules! commands {
    ($($name:ident => $reply:ty),* $(,)?) => {
        /// The messages of the control actor, one per command.
        pub enum ControlMsg {
            $(
                #[doc = concat!("[`", stringify!($name), "`]")]
                $name($name, RpcReplyPort<$reply>),
            )*
        }
        $(
            impl Command for $name {
                type Reply = $reply;
                fn wrap(self, reply: RpcReplyPort<$reply>) -> ControlMsg {
                    ControlMsg::$name(self, reply)
                }
            }
        )*
        impl ControlMsg {
            /// The command's name (logs, fault injection).
            pub fn name(&self) -> &'static str {
                match self {
                    $(ControlMsg::$name(..) => stringify!($name),)*
                }
            }
        }
    };
}

commands! {
    CreateUser => Result<UserInfo, AccountError>,
    ListUsers => Result<UserList, AccountError>,
    RevokeSessions => Result<usize, AccountError>,
    RemoveDevice => Result<(), AccountError>,
    SetSessionPolicy => Result<SessionPolicy, AccountError>,
    CloseAll => usize,
}

impl Actor for ControlActor {
    type Msg = ControlMsg;
    type State = Arc<Hub>;
    type Arguments = Arc<Hub>;

    async fn pre_start(
        &self,
        _: ActorRef<ControlMsg>,
        hub: Arc<Hub>,
    ) -> Result<Arc<Hub>, ActorProcessingErr> {
        Ok(hub)
    }

    async fn handle(
        &self,
        _: ActorRef<ControlMsg>,
        msg: ControlMsg,
        hub: &mut Arc<Hub>,
    ) -> Result<(), ActorProcessingErr> {
        crate::faults::check("control", msg.name(), &"*");
        let hub = &*hub;
        match msg {
            ControlMsg::CreateUser(m, r) => answer(r, create_user(hub, m).await),
            ControlMsg::ListUsers(m, r) => answer(r, list_users(hub, m).await),
            ControlMsg::RevokeSessions(m, r) => answer(r, revoke_sessions(hub, m).await),
            ControlMsg::RemoveDevice(m, r) => answer(r, remove_device(hub, m).await),
            ControlMsg::SetSessionPolicy(m, r) => answer(r, set_session_policy(hub, m).await),
            ControlMsg::CloseAll(_, r) => answer(r, close_all(hub)),
        }
        Ok(())
    }
}

fn answer<T>(reply: RpcReplyPort<T>, value: T) {
    let _ = reply.send(value);
}

/// The control actor could not answer (it failed on this command, or the node is stopping).
#[derive(Debug, thiserror::Error)]
#[error("control actor unavailable")]
pub struct Unavailable;

/// Where the node's control actor is (the supervisor puts a restarted one here).
#[derive(Clone, Default)]
pub struct Control {
    slot: Arc<RwLock<Option<ActorRef<ControlMsg>>>>,
    hub: Option<Arc<Hub>>,
}

impl Control {
    /// Starts the control actor under the control supervisor of `hub`'s tree.
    pub async fn start(hub: Arc<Hub>) -> Result<Control, ractor::SpawnErr> {
        let control = Control { slot: Arc::default(), hub: Some(hub.clone()) };
        let sup = hub.tree.get(Area::Control);
        let (actor, _) = match &sup {
            Some(s) => Actor::spawn_linked(None, ControlActor, hub.clone(), s.cell()).await?,
            None => Actor::spawn(None, ControlActor, hub.clone()).await?,
        };
        if let Some(s) = sup {
            s.watch(&actor.get_cell(), Box::new(control.clone()));
        }
        *control.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(actor);
        Ok(control)
    }

    /// Sends a command and waits for its answer.
    pub async fn send<C: Command>(&self, cmd: C) -> Result<C::Reply, Unavailable> {
        let actor = self.slot.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Unavailable)?;
        match actor.call(|reply| cmd.wrap(reply), None).await {
            Ok(ractor::rpc::CallResult::Success(r)) => Ok(r),
            _ => Err(Unavailable),
        }
    }
}

impl Restart for Control {
    fn restart(&self, supervisor: ractor::ActorCell) -> Restarting {
        let this = self.clone();
        Box::pin(async move {
            let hub = this.hub.clone()?;
            let (actor, _) = Actor::spawn_linked(None, ControlActor, hub, supervisor).await.ok()?;
            let cell = actor.get_cell();
            *this.slot.write().unwrap_or_else(|e| e.into_inner()) = Some(actor);
            Some((cell, Box::new(this) as Box<dyn Restart>))
        })
    }

    fn describe(&self) -> String {
        "control".into()
    }
}

/// Creates a user in the caller's tenant (tenant administrators).
pub struct CreateUser {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// The new account.
    pub request: CreateUserRequest,
    /// Who asks.
    pub actor: Initiator,
}

async fn create_user(hub: &Arc<Hub>, msg: CreateUser) -> Result<UserInfo, AccountError> {
    let target = Some(msg.request.user.to_string());
    let r = accounts::create_user(hub, &msg.tenant, msg.request).await;
    let result = if r.is_ok() { "ok" } else { "failed" };
    sessions::audit(hub, &msg.tenant, &msg.actor, "user.create", target, result).await;
    r
}

/// Lists a tenant's users (tenant administrators), by name, paginated.
pub struct ListUsers {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// Start after this name.
    pub after: Option<UserId>,
    /// Page size, capped at [`MAX_PAGE`].
    pub limit: usize,
}

async fn list_users(hub: &Arc<Hub>, msg: ListUsers) -> Result<UserList, AccountError> {
    let users = hub.store.list_users(&msg.tenant, msg.after.as_ref(), msg.limit.clamp(1, MAX_PAGE)).await?;
    Ok(UserList { users: users.iter().map(accounts::user_info).collect() })
}

/// Ends sessions: each revoked in the store first, audited, its user's devices told, then its
/// live sockets (on every node) get `LoggedOut` and close with 4401. Sessions of another
/// tenant, unknown or already revoked ones are skipped.
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

async fn revoke_sessions(hub: &Arc<Hub>, msg: RevokeSessions) -> Result<usize, AccountError> {
    let revoked =
        sessions::revoke_many(hub, &msg.tenant, msg.ids, &msg.reason, CLOSE_UNAUTHORIZED, &msg.actor).await?;
    Ok(revoked.len())
}

/// Removes a linked device of a user (its sessions, queue and sockets go with it).
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

async fn remove_device(hub: &Arc<Hub>, msg: RemoveDevice) -> Result<(), AccountError> {
    sessions::remove_device(hub, &msg.tenant, &msg.user, msg.device, msg.own, &msg.actor).await
}

/// Replaces a tenant's session lifetimes (tenant administrators). Live sessions apply it at
/// their next tick; other nodes within [`crate::tenant::SETTINGS_TTL`].
pub struct SetSessionPolicy {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// The new policy.
    pub policy: SessionPolicy,
    /// Who asks.
    pub actor: Initiator,
}

async fn set_session_policy(hub: &Arc<Hub>, msg: SetSessionPolicy) -> Result<SessionPolicy, AccountError> {
    if let Err(m) = msg.policy.validate() {
        sessions::audit(hub, &msg.tenant, &msg.actor, "tenant.session_policy", None, "refused").await;
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
    sessions::audit(hub, &msg.tenant, &msg.actor, "tenant.session_policy", target, result).await;
    Ok(r?.sessions.clone())
}

/// Closes every live socket with 1001 (node shutting down).
pub struct CloseAll;

fn close_all(hub: &Arc<Hub>) -> usize {
    let conns = hub.registry.all();
    for (_, c) in &conns {
        c.device.disconnect(Disconnect::new(crate::device::CLOSE_GOING_AWAY));
    }
    conns.len()
}
