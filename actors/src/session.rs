//! `SessionActor`: one per live session (a session with an open socket on this node).
//!
//! It keeps the session's lifetime: it records activity ("last seen") while the socket is
//! open, re-reads the tenant's session policy at every tick (so a policy change reaches live
//! sessions within [`crate::tenant::SEEN_GRANULARITY_MS`]), and ends the session when the
//! absolute limit passes: revoked in the store with reason `expired`, audited, the user's
//! devices told, the socket closed with `LoggedOut {reason: "expired"}` and 4401 (through the
//! same path as any revocation). An open socket is activity, so the idle limit never ends a
//! connected session; it applies to tokens used over HTTP and to reconnects.
//!
//! It also closes the socket (`LoggedOut {reason: "mfa_required"}`, 4401) when the session's
//! MFA state blocks it: the user's enrolment grace period ended while connected.
//!
//! The actor watches its socket's `DeviceActor` and stops at its first tick after the socket
//! closed.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use hush_store::SessionRecord;

use crate::device::Disconnect;
use crate::hub::Hub;
use crate::now_ms;
use crate::sessions;
use crate::tenant::{expires_at, expiry, seen_granularity_ms, Expiry};

/// Shortest and longest pause between two ticks of a session actor.
const MIN_TICK: Duration = Duration::from_millis(100);
const MAX_TICK: Duration = Duration::from_millis(crate::tenant::SEEN_GRANULARITY_MS);

/// The lifetime keeper of one live session.
pub struct SessionActor {
    hub: Arc<Hub>,
    session: SessionRecord,
    admin: bool,
    socket: Recipient<Disconnect>,
}

impl SessionActor {
    /// Starts the actor for `session` (of an administrator if `admin`), whose socket's actor
    /// takes `socket`.
    pub fn start_for(
        hub: Arc<Hub>,
        session: SessionRecord,
        admin: bool,
        socket: Recipient<Disconnect>,
    ) -> Addr<Self> {
        SessionActor { hub, session, admin, socket }.start()
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if !self.socket.connected() {
            ctx.stop();
            return;
        }
        let hub = self.hub.clone();
        let session = self.session.clone();
        let admin = self.admin;
        let socket = self.socket.clone();
        let fut = async move {
            let settings = hub.tenants.settings(&*hub.store, &session.device.tenant).await?;
            let policy = &settings.sessions;
            let now = now_ms();
            // The socket is open: the session is active now.
            if expiry(policy, admin, &session, now, now) == Some(Expiry::Absolute) {
                sessions::expire(&hub, &session, Expiry::Absolute).await;
                return Ok::<_, hush_store::StoreError>(None);
            }
            // MFA: a session whose user's enrolment grace period ended (or that must pass a
            // challenge again) loses its socket; it may reconnect once it has enrolled.
            let mfa = crate::mfa::session_rec(&hub, &session.id).await?;
            if mfa.block(now).is_some() {
                socket.do_send(Disconnect {
                    code: hush_protocol::wire::CLOSE_UNAUTHORIZED,
                    logged_out: Some("mfa_required".into()),
                    session_id: Some(session.id.clone()),
                    opened_before_ms: None,
                });
                return Ok(None);
            }
            let granularity = seen_granularity_ms(policy, admin);
            hub.tenants.touch(&*hub.store, &session.id, now, granularity).await;
            let until_expiry = expires_at(policy, admin, &session, u64::MAX).map(|at| at.saturating_sub(now));
            let until_deadline = mfa.enroll_deadline_ms.map(|d| d.saturating_sub(now));
            let next = [until_expiry, until_deadline].into_iter().flatten().fold(granularity, u64::min);
            Ok(Some(Duration::from_millis(next)))
        };
        ctx.wait(fut.into_actor(self).map(|res, _act, ctx| match res {
            Ok(Some(next)) => {
                ctx.run_later(next.clamp(MIN_TICK, MAX_TICK), |act, ctx| act.tick(ctx));
            }
            Ok(None) => ctx.stop(),
            Err(e) => {
                tracing::warn!(error = %e, "session policy not readable; retrying");
                ctx.run_later(MAX_TICK / 4, |act, ctx| act.tick(ctx));
            }
        }));
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}
