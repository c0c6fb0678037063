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
//! It closes the socket (`LoggedOut {reason: "mfa_required"}`, 4401) when the session's MFA
//! state blocks it: the user's enrolment grace period ended while connected. And a revocation
//! (already written to the store) reaches the socket through it ([`SessionMsg::Revoked`]).
//!
//! Like the `DeviceActor` it is a task with a small mailbox, not a ractor actor (memory per
//! connection). It is supervised: a panic in it is reported to the sessions supervisor, which
//! counts it and restarts it; the restarted actor reloads the session from the store, so a
//! session revoked meanwhile closes its socket at once. The actor stops when its socket's
//! actor has stopped.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hush_protocol::wire::CLOSE_UNAUTHORIZED;
use hush_store::{SessionRecord, StoreError};
use tokio::sync::mpsc;

use crate::device::CLOSE_INTERNAL;
use crate::hub::Hub;
use crate::now_ms;
use crate::registry::{DeviceHandle, Disconnect, SessionMsg};
use crate::sessions;
use crate::supervise::{panic_text, Area, Decision};
use crate::tenant::{expires_at, expiry, seen_granularity_ms, Expiry};

/// Shortest and longest pause between two ticks of a session actor.
const MIN_TICK: Duration = Duration::from_millis(100);
const MAX_TICK: Duration = Duration::from_millis(crate::tenant::SEEN_GRANULARITY_MS);

/// The lifetime keeper of one live session.
pub struct SessionActor {
    hub: Arc<Hub>,
    session: SessionRecord,
    admin: bool,
    socket: DeviceHandle,
}

/// Runs the actor of `session` (of an administrator if `admin`) whose socket's actor is
/// `socket`, until the socket closes; supervised as the module says.
pub async fn serve(
    hub: Arc<Hub>,
    session: SessionRecord,
    admin: bool,
    socket: DeviceHandle,
    mut mailbox: mpsc::Receiver<SessionMsg>,
) {
    let mut actor = SessionActor { hub: hub.clone(), session, admin, socket };
    loop {
        let run = std::panic::AssertUnwindSafe(actor.run(&mut mailbox)).catch_unwind().await;
        let Err(panic) = run else { return };
        let id = format!("session {}", actor.session.id);
        let decision = match hub.tree.get(Area::Sessions) {
            Some(sup) => sup.child_failed(id, panic_text(&*panic)).await,
            None => Decision::Stop,
        };
        if decision == Decision::Stop || !actor.reload().await {
            actor.socket.disconnect(Disconnect {
                session_id: Some(actor.session.id.clone()),
                ..Disconnect::new(CLOSE_INTERNAL)
            });
            return;
        }
    }
}

impl SessionActor {
    /// After a restart: the session as the store has it now. A revoked session closes its
    /// socket (`LoggedOut` with the revocation's reason) and the actor stops. False if the
    /// store cannot say.
    async fn reload(&mut self) -> bool {
        match self.hub.store.session_by_id(&self.session.id).await {
            Ok(Some(s)) => {
                if let Some(r) = &s.revoked {
                    self.logged_out(&r.reason.clone(), CLOSE_UNAUTHORIZED);
                }
                self.session = s;
                true
            }
            Ok(None) => {
                self.logged_out("revoked", CLOSE_UNAUTHORIZED);
                true
            }
            Err(e) => {
                hush_store::failure::log_failure(&e, "session not reloaded after a restart");
                false
            }
        }
    }

    fn logged_out(&self, reason: &str, code: u16) {
        self.socket.disconnect(Disconnect {
            code,
            logged_out: Some(reason.to_owned()),
            session_id: Some(self.session.id.clone()),
            opened_before_ms: None,
        });
    }

    async fn run(&mut self, mailbox: &mut mpsc::Receiver<SessionMsg>) {
        let mut next = Duration::ZERO;
        loop {
            tokio::select! {
                msg = mailbox.recv() => match msg {
                    Some(SessionMsg::Revoked { reason, code }) => {
                        crate::faults::check("session", "revoke", &self.session.id);
                        tracing::debug!(session = %self.session.id, %reason, "session revoked; closing its socket");
                        self.logged_out(&reason, code);
                    }
                    None => return,
                },
                _ = tokio::time::sleep(next) => {
                    if self.socket.is_closed() {
                        return;
                    }
                    match self.tick().await {
                        Ok(Some(n)) => next = n.clamp(MIN_TICK, MAX_TICK),
                        // Ended: the socket was told; its revocation may still be in the
                        // mailbox, and the actor stops once the socket has closed.
                        Ok(None) => next = MAX_TICK,
                        Err(e) => {
                            tracing::warn!(error = %e, "session policy not readable; retrying");
                            next = MAX_TICK / 4;
                        }
                    }
                }
            }
        }
    }

    /// One tick: expiry, MFA, last seen. `None` once the session ended (the socket is told).
    async fn tick(&mut self) -> Result<Option<Duration>, StoreError> {
        let hub = &self.hub;
        let session = &self.session;
        let settings = hub.tenants.settings(&*hub.store, &session.device.tenant).await?;
        let policy = &settings.sessions;
        let now = now_ms();
        // The socket is open: the session is active now.
        if expiry(policy, self.admin, session, now, now) == Some(Expiry::Absolute) {
            sessions::expire(hub, session, Expiry::Absolute).await;
            return Ok(None);
        }
        // MFA: a session whose user's enrolment grace period ended (or that must pass a
        // challenge again) loses its socket; it may reconnect once it has enrolled.
        let mfa = crate::mfa::session_rec(hub, &session.id).await?;
        if mfa.block(now).is_some() {
            self.logged_out("mfa_required", CLOSE_UNAUTHORIZED);
            return Ok(None);
        }
        let granularity = seen_granularity_ms(policy, self.admin);
        hub.tenants.touch(&*hub.store, &session.id, now, granularity).await;
        let until_expiry = expires_at(policy, self.admin, session, u64::MAX).map(|at| at.saturating_sub(now));
        let until_deadline = mfa.enroll_deadline_ms.map(|d| d.saturating_sub(now));
        let next = [until_expiry, until_deadline].into_iter().flatten().fold(granularity, u64::min);
        Ok(Some(Duration::from_millis(next)))
    }
}
