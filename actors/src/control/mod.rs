//! `ControlActor`: the admin and account commands behind the HTTP routes, one typed message
//! each ([`Command`]). Commands that end sessions go through here so that the store is changed
//! first and the live socket is closed after, in one place.
//!
//! It is a ractor actor under the control supervisor: commands are handled one at a time (an
//! admin's changes are serialised on the node), and a command whose handler fails answers its
//! caller with [`Unavailable`] while the supervisor starts a fresh actor for the next one (the
//! actor keeps no state of its own; everything is in the store).

use std::sync::{Arc, RwLock};

use hush_protocol::api::{
    AuditPage, ClusterView, Enforced, MfaPolicy, SessionList, SessionPolicy, UserInfo, UserList,
    UserMfaStatusList,
};
use hush_protocol::ids::TenantId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

mod accounts;
mod admin;
mod mfa;
mod own;

pub use accounts::{CloseAll, CreateUser, ListUsers, RemoveDevice, RevokeSessions, UnlockUser};
pub use admin::{
    ActiveSessions, Audit, ClusterStatus, GetSessionPolicy, RevokeActive, RevokeSession, RevokeUserSessions,
    SetSessionPolicy, UserSessions,
};
pub use mfa::{EnforceMfa, EnforceMfaAll, GetMfaPolicy, ResetMfa, SetMfaPolicy, UsersMfaStatus};
pub use own::{RemoveOwnDevice, RevokeAllOwnSessions, RevokeOtherSessions, RevokeOwnSession};

use crate::accounts::{AccountError, Authed};
use crate::audit::Initiator;
use crate::hub::Hub;
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
    ($($name:ident => $reply:ty, $run:path;)*) => {
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

            /// Runs the command and answers its caller.
            async fn run(self, hub: &Arc<Hub>) {
                match self {
                    $(ControlMsg::$name(m, reply) => {
                        let _ = reply.send($run(hub, m).await);
                    })*
                }
            }
        }
    };
}

commands! {
    CreateUser => Result<UserInfo, ControlError>, accounts::create_user;
    ListUsers => Result<UserList, ControlError>, accounts::list_users;
    UnlockUser => Result<(), ControlError>, accounts::unlock_user;
    RevokeSessions => Result<usize, ControlError>, accounts::revoke_sessions;
    RemoveDevice => Result<(), ControlError>, accounts::remove_device;
    RemoveOwnDevice => Result<(), ControlError>, own::remove_device;
    RevokeOwnSession => Result<usize, ControlError>, own::revoke_session;
    RevokeOtherSessions => Result<usize, ControlError>, own::revoke_others;
    RevokeAllOwnSessions => Result<usize, ControlError>, own::revoke_all;
    CloseAll => usize, accounts::close_all;
    UserSessions => Result<SessionList, ControlError>, admin::user_sessions;
    RevokeUserSessions => Result<usize, ControlError>, admin::revoke_user_sessions;
    RevokeSession => Result<usize, ControlError>, admin::revoke_session;
    ActiveSessions => Result<SessionList, ControlError>, admin::active_sessions;
    RevokeActive => Result<usize, ControlError>, admin::revoke_active;
    Audit => Result<AuditPage, ControlError>, admin::audit;
    ClusterStatus => Result<ClusterView, ControlError>, admin::cluster_status;
    GetSessionPolicy => Result<SessionPolicy, ControlError>, admin::get_session_policy;
    SetSessionPolicy => Result<SessionPolicy, ControlError>, admin::set_session_policy;
    GetMfaPolicy => Result<MfaPolicy, ControlError>, mfa::get_policy;
    SetMfaPolicy => Result<MfaPolicy, ControlError>, mfa::set_policy;
    UsersMfaStatus => Result<UserMfaStatusList, ControlError>, mfa::users_status;
    EnforceMfa => Result<Enforced, ControlError>, mfa::enforce_user;
    ResetMfa => Result<(), ControlError>, mfa::reset_user;
    EnforceMfaAll => Result<Enforced, ControlError>, mfa::enforce_all;
}

/// What a command can fail with: the domain's own errors, which the HTTP edge maps.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// An account, session or store error.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// An MFA error (step-up required, policy refused, ...).
    #[error(transparent)]
    Mfa(#[from] crate::mfa::MfaError),
}

impl From<hush_store::StoreError> for ControlError {
    fn from(e: hush_store::StoreError) -> Self {
        ControlError::Account(AccountError::Store(e))
    }
}

/// Who sends a command (an administrator, or a user about their own account) and from where
/// (for the step-up check and the audit log).
#[derive(Clone, Debug)]
pub struct Who {
    /// The caller's authenticated session.
    pub who: Authed,
    /// The client's address.
    pub ip: Option<String>,
}

impl Who {
    /// The audit log's initiator.
    pub fn initiator(&self) -> Initiator {
        Initiator {
            user: Some(self.who.user().clone()),
            session: Some(self.who.session.id.clone()),
            ip: self.ip.clone(),
        }
    }

    /// The caller's tenant.
    pub fn tenant(&self) -> &TenantId {
        self.who.tenant()
    }
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
        msg.run(hub).await;
        Ok(())
    }
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
