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

use crate::mailbox::Receiver;
use futures_util::FutureExt;
use hush_protocol::wire::CLOSE_UNAUTHORIZED;
use hush_store::{SessionRecord, StoreError};

use crate::delivery::registry::{DeviceHandle, Disconnect, SessionMsg};
use crate::device::CLOSE_INTERNAL;
use crate::hub::Hub;
use crate::mfa::SessionMfaRec;
use crate::now_ms;
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
    /// The MFA state the socket's authentication just read, for the first tick (boxed and
    /// taken then: an idle session's actor keeps 8 bytes of it, not the record).
    mfa_at_start: Option<Box<SessionMfaRec>>,
}

/// Runs the actor of `session` (of an administrator if `admin`, with the MFA state `mfa` its
/// authentication read) whose socket's actor is `socket`, until the socket closes; supervised
/// as the module says.
pub async fn serve(
    hub: Arc<Hub>,
    session: SessionRecord,
    admin: bool,
    mfa: SessionMfaRec,
    socket: DeviceHandle,
    mailbox: Receiver<SessionMsg>,
) {
    let mfa_at_start = Some(Box::new(mfa));
    let mut actor = SessionActor { hub: hub.clone(), session, admin, socket, mfa_at_start };
    loop {
        let run = std::panic::AssertUnwindSafe(actor.run(&mailbox)).catch_unwind().await;
        let Err(panic) = run else { return };
        let id = format!("session {}", actor.session.id);
        let decision = match hub.tree.get(Area::Sessions) {
            Some(sup) => Box::pin(sup.child_failed(id, panic_text(&*panic))).await,
            None => Decision::Stop,
        };
        if decision == Decision::Stop || !Box::pin(actor.reload()).await {
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

    async fn run(&mut self, mailbox: &Receiver<SessionMsg>) {
        let mut next = Duration::ZERO;
        loop {
            tokio::select! {
                msg = mailbox.recv_async() => match msg {
                    Ok(SessionMsg::Revoked { reason, code }) => {
                        crate::faults::check("session", "revoke", &self.session.id);
                        tracing::debug!(session = %self.session.id, %reason, "session revoked; closing its socket");
                        self.logged_out(&reason, code);
                    }
                    Err(_) => return,
                },
                _ = tokio::time::sleep(next) => {
                    if self.socket.is_closed() {
                        return;
                    }
                    // Boxed: the tick's store reads would otherwise size every idle session's
                    // task (issue 15's heap profile).
                    match Box::pin(self.tick()).await {
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
        let mfa = match self.mfa_at_start.take() {
            Some(m) => *m,
            None => crate::mfa::session_rec(hub, &session.id).await?,
        };
        if mfa.block(now).is_some() {
            self.logged_out("mfa_required", CLOSE_UNAUTHORIZED);
            return Ok(None);
        }
        let granularity = seen_granularity_ms(policy, self.admin);
        hub.tenants.touch(&session.id, now, granularity);
        let until_expiry = expires_at(policy, self.admin, session, u64::MAX).map(|at| at.saturating_sub(now));
        let until_deadline = mfa.enroll_deadline_ms.map(|d| d.saturating_sub(now));
        let next = [until_expiry, until_deadline].into_iter().flatten().fold(granularity, u64::min);
        Ok(Some(Duration::from_millis(next)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use hush_protocol::api::SessionPolicy;
    use hush_protocol::ids::{DeviceAddress, DeviceId, TenantId, UserId};
    use hush_store::records::TokenHash;

    use super::*;
    use crate::delivery::registry::{DeviceMsg, SessionHandle};

    /// A hub over a fresh embedded store, and a live session of `alice` there.
    async fn setup(policy: SessionPolicy) -> (Arc<Hub>, SessionRecord, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = hush_store::embedded::EmbeddedStore::open(&dir.path().join("hush.redb")).unwrap();
        let hub = Hub::new(Arc::new(store), Arc::new(hush_cluster::LocalBus::new("test"))).unwrap();
        let tenant = TenantId::new("t").unwrap();
        hub.tenants
            .update(&*hub.store, &tenant, |s| {
                s.sessions = policy.clone();
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        let session = SessionRecord {
            id: "s1".into(),
            token_hash: TokenHash([7; 32]),
            device: DeviceAddress::new(tenant, UserId::new("alice").unwrap(), DeviceId::PRIMARY),
            created_ms: now_ms(),
            user_agent: None,
            ip: None,
            revoked: None,
        };
        hub.store.create_session(session.clone()).await.unwrap();
        (hub, session, dir)
    }

    /// The next close request the session's socket gets (within a minute).
    async fn disconnect(rx: &Receiver<DeviceMsg>) -> Disconnect {
        let next = async {
            loop {
                match rx.recv_async().await.expect("socket mailbox closed") {
                    DeviceMsg::Disconnect(d, _) => return *d,
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), next).await.expect("no close within a minute")
    }

    /// A socket for the session, registered as the node's device actor registers it; its
    /// session actor's mailbox.
    fn socket(
        hub: &Hub,
        session: &SessionRecord,
    ) -> (DeviceHandle, Receiver<DeviceMsg>, Receiver<SessionMsg>) {
        let (socket, socket_rx) = DeviceHandle::channel();
        let (handle, mailbox) = SessionHandle::channel();
        let conn = crate::delivery::registry::Conn {
            id: 1,
            session_id: session.id.clone(),
            device: socket.clone(),
            session: handle,
        };
        hub.registry.register(session.device.clone(), conn);
        (socket, socket_rx, mailbox)
    }

    // Real time throughout: the actor writes to the store (last seen, the revocation) on the
    // store's writer thread, and a paused clock would jump ahead while the runtime waits for it.
    #[tokio::test]
    async fn the_absolute_limit_ends_a_connected_session_on_time() {
        let policy = SessionPolicy { absolute_timeout_s: Some(2), ..SessionPolicy::default() };
        let (hub, session, _dir) = setup(policy).await;
        let (socket, socket_rx, mailbox) = socket(&hub, &session);
        tokio::spawn(serve(hub.clone(), session.clone(), false, SessionMfaRec::default(), socket, mailbox));
        let d = disconnect(&socket_rx).await;
        assert_eq!((d.code, d.logged_out.as_deref()), (CLOSE_UNAUTHORIZED, Some("expired")));
        // Counted from the session's creation, the limit's own origin (a clock started after
        // the store write misses the write's time, so on a loaded machine the close looked
        // early). Not before the limit; at the tick that reaches it (generous bound for a loaded
        // machine).
        let took = now_ms().saturating_sub(session.created_ms);
        assert!((2_000..4_000).contains(&took), "{took} ms");
        let stored = hub.store.session_by_id(&session.id).await.unwrap().unwrap();
        assert_eq!(stored.revoked.map(|r| r.reason).as_deref(), Some("expired"));
    }

    #[tokio::test]
    async fn an_open_socket_keeps_an_idle_limited_session_alive() {
        let policy = SessionPolicy { idle_timeout_s: Some(1), ..SessionPolicy::default() };
        let (hub, session, _dir) = setup(policy).await;
        let (socket, socket_rx, mailbox) = socket(&hub, &session);
        tokio::spawn(serve(hub.clone(), session.clone(), false, SessionMfaRec::default(), socket, mailbox));
        // Three idle limits later the socket was never told to close.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(socket_rx.try_recv().is_err());
        assert!(hub.store.session_by_id(&session.id).await.unwrap().unwrap().revoked.is_none());
    }

    #[tokio::test]
    async fn a_revocation_closes_the_socket_and_the_actor_stops_with_it() {
        let (hub, session, _dir) = setup(SessionPolicy::default()).await;
        let (socket, socket_rx) = DeviceHandle::channel();
        let (handle, mailbox) = SessionHandle::channel();
        let actor = tokio::spawn(serve(
            hub.clone(),
            session.clone(),
            false,
            SessionMfaRec::default(),
            socket,
            mailbox,
        ));
        assert!(handle.revoked("revoked_by_user", CLOSE_UNAUTHORIZED));
        let d = disconnect(&socket_rx).await;
        assert_eq!((d.code, d.logged_out.as_deref()), (CLOSE_UNAUTHORIZED, Some("revoked_by_user")));
        assert_eq!(d.session_id.as_deref(), Some("s1"));
        // The socket's actor stops: the session actor follows within one tick.
        drop(socket_rx);
        tokio::time::timeout(MAX_TICK * 2, actor).await.expect("session actor still running").unwrap();
    }
}
