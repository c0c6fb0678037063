//! The state machine of one device connection.
//!
//! A close, from either side, completes the closing handshake: the actor keeps reading until the
//! client's side of the socket ends (at most [`CLOSE_GRACE`]) and stops only once every `Ack`
//! read before it is stored, so an ack sent just before a close is never lost. A connection of
//! the same device that displaces this one starts its drain only after that.
//!
//! Live deliveries that arrive while the drain is still reading the store are not written
//! (they are durable, so the drain will read them); they only mark the drain "dirty" so it reads
//! once more before declaring the queue empty. After the drain, anything at or below the highest
//! drained sequence number is a duplicate and is skipped.
//!
//! Store calls run as futures owned by the actor ([`Work`]); their results come back as
//! [`Done`] items handled one at a time, like messages, so the state is only ever touched by
//! the actor's own loop.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use hush_protocol::ids::DeviceAddress;
use hush_protocol::wire::{
    ClientFrame, Envelope, ErrorCode, FrameError, GroupSendMessage, SendMessage, ServerFrame,
    CLOSE_DISPLACED, CLOSE_IDLE, CLOSE_SLOW_CONSUMER, CLOSE_UNAUTHORIZED,
};
use hush_store::StoreError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{CloseFrame, Inbound, Outbound, Sink, Wiring, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG};
use crate::delivery::registry::Since;
use crate::delivery::registry::{Conn, DeviceHandle, DeviceMsg, Disconnect, SessionHandle};
use crate::hub::Hub;
use crate::keys;
use crate::limits::{
    CLOSE_GRACE, DISPLACE_LINGER, HEARTBEAT_INTERVAL, IDLE_TIMEOUT, MAX_CLOSE_WAITERS,
    MAX_INFLIGHT_KEY_REQUESTS, MAX_INFLIGHT_SENDS, MAX_PENDING_ACKS,
};
use crate::metrics::{observe, Metrics};

/// A send waiting its turn: 1:1 and group sends share one queue so that a device's messages
/// are stored in the order it sent them.
pub(super) enum Outgoing {
    Direct(SendMessage),
    Group(GroupSendMessage),
}

/// What a finished piece of work brings back to the actor (a key answer is a frame: boxing it
/// would cost an allocation per request for nothing).
#[allow(clippy::large_enum_variant)]
pub(super) enum Done {
    Fetched(Result<Vec<Envelope>, StoreError>),
    Sent(Vec<ServerFrame>, crate::delivery::Routes),
    Routed,
    Acked(Result<u64, StoreError>),
    Key(uuid::Uuid, Result<ServerFrame, keys::KeysError>),
    Notices(Result<Vec<ServerFrame>, StoreError>),
    Displaced,
    Claimed,
    DrainRetry,
    Linger,
    Grace,
}

type Work = Pin<Box<dyn Future<Output = Done>>>;

#[derive(Default)]
pub(super) struct Drain {
    pub(super) active: bool,
    pub(super) fetching: bool,
    pub(super) dirty: bool,
    pub(super) after: u64,
    pub(super) high_water: u64,
    pub(super) last_progress: Option<Instant>,
}

/// One authenticated device connection.
pub struct DeviceActor {
    pub(super) hub: Arc<Hub>,
    pub(super) addr: DeviceAddress,
    pub(super) session_id: String,
    pub(super) conn_id: u64,
    pub(super) opened_ms: u64,
    pub(super) sink: Sink,
    pub(super) me: DeviceHandle,
    pub(super) session: SessionHandle,
    pub(super) work: FuturesUnordered<Work>,
    pub(super) stopped: bool,
    pub(super) last_seen: Instant,
    /// Sends waiting their turn, with when each frame was read.
    pub(super) sends: VecDeque<(Instant, Outgoing)>,
    pub(super) sending: usize,
    /// When the frames of the batch being stored were read (for the accept latency).
    pub(super) sending_since: Vec<Instant>,
    /// Whether that batch is group sends.
    pub(super) sending_group: bool,
    pub(super) pending_acks: Vec<u64>,
    pub(super) ack_inflight: bool,
    pub(super) drain: Drain,
    /// The drain waits until a displaced connection of this device has stored its acks.
    pub(super) drain_blocked: bool,
    /// The drain waits until this node's presence claim for the device is written (cluster).
    pub(super) presence_pending: bool,
    pub(super) closing: bool,
    /// Stopping once the client's side ended and the acks are stored (or [`CLOSE_GRACE`]).
    pub(super) finishing: bool,
    /// The client's side of the socket ended (close frame, end of stream).
    pub(super) inbound_ended: bool,
    /// Acks read after the close still count (not after a revocation: that session is over).
    pub(super) acks_while_closing: bool,
    /// A displacement's close, held until the client's side ends or [`DISPLACE_LINGER`].
    pub(super) held_close: Option<CloseFrame>,
    /// Answered (dropped) when this actor stops: connections that displaced this one.
    pub(super) close_waiters: Vec<oneshot::Sender<()>>,
    pub(super) key_requests: usize,
}

/// Unregisters connection `conn_id` of `addr` and, in a cluster, withdraws its presence.
pub(super) fn unregister(hub: &Arc<Hub>, addr: &DeviceAddress, conn_id: u64) {
    if hub.registry.unregister(addr, conn_id) && hub.bus.kind() != "local" {
        let hub = hub.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let _ = hub.bus.withdraw(&addr).await;
        });
    }
}

impl DeviceActor {
    /// The actor of an authenticated socket and its mailbox.
    pub fn new(hub: Arc<Hub>, w: Wiring) -> (Self, crate::mailbox::Receiver<DeviceMsg>) {
        let conn_id = hub.registry.next_conn_id();
        let (me, mailbox) = w.mailbox;
        let actor = DeviceActor {
            hub,
            addr: w.addr,
            session_id: w.session_id,
            conn_id,
            opened_ms: crate::now_ms(),
            sink: w.sink,
            me,
            session: w.session,
            work: FuturesUnordered::new(),
            stopped: false,
            last_seen: Instant::now(),
            sends: VecDeque::new(),
            sending: 0,
            sending_since: Vec::new(),
            sending_group: false,
            pending_acks: Vec::new(),
            ack_inflight: false,
            drain: Drain { active: true, ..Drain::default() },
            drain_blocked: false,
            presence_pending: false,
            closing: false,
            finishing: false,
            inbound_ended: false,
            acks_while_closing: true,
            held_close: None,
            close_waiters: Vec::new(),
            key_requests: 0,
        };
        (actor, mailbox)
    }

    /// This connection's id in the registry.
    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    /// Runs until the actor stops.
    pub async fn run(
        mut self,
        mut inbound: impl Stream<Item = Inbound> + Unpin,
        mailbox: crate::mailbox::Receiver<DeviceMsg>,
    ) {
        self.started();
        let start = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
        let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT_INTERVAL);
        let mut reading = true;
        while !self.stopped {
            tokio::select! {
                item = inbound.next(), if reading => match item {
                    Some(item) => self.on_inbound(item),
                    None => {
                        reading = false;
                        self.on_inbound_end();
                    }
                },
                Ok(msg) = mailbox.recv_async() => self.on_message(msg),
                Some(done) = self.work.next(), if !self.work.is_empty() => self.on_done(done),
                _ = heartbeat.tick() => self.on_heartbeat(),
            }
        }
        self.on_stopped();
    }

    pub(super) fn spawn(&mut self, fut: impl Future<Output = Done> + 'static) {
        self.work.push(Box::pin(fut));
    }

    pub(super) fn after(&mut self, d: Duration, done: Done) {
        self.spawn(async move {
            tokio::time::sleep(d).await;
            done
        });
    }

    pub(super) fn push(&mut self, item: Outbound) -> bool {
        if self.closing {
            return false;
        }
        match self.sink.frames.try_send(item) {
            Ok(()) => true,
            Err(crate::mailbox::TrySendError::Full(_)) => {
                Metrics::add(&self.hub.metrics.slow_consumers, 1);
                tracing::info!(device = %self.addr, "slow consumer closed; envelopes stay queued");
                self.close(CLOSE_SLOW_CONSUMER, "slow consumer", false);
                false
            }
            Err(crate::mailbox::TrySendError::Disconnected(_)) => {
                // The writer is gone (the socket broke); the reader ends soon too.
                self.finish();
                false
            }
        }
    }

    pub(super) fn frame(&mut self, f: ServerFrame) -> bool {
        self.push(Outbound::Frame(Box::new(f)))
    }

    pub(super) fn close(&mut self, code: u16, reason: &str, flush: bool) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.acks_while_closing = code != CLOSE_UNAUTHORIZED;
        let frame = CloseFrame { code, reason: reason.to_owned(), flush };
        if code == CLOSE_DISPLACED && !self.inbound_ended {
            // Read what the client sent before it reconnected (its close usually follows at
            // once); send the close when it comes, or after the linger.
            self.held_close = Some(frame);
            self.after(DISPLACE_LINGER, Done::Linger);
        } else {
            self.sink.close.close(frame);
        }
        self.finish();
    }

    /// Sends a close held back by a displacement (see [`DISPLACE_LINGER`]).
    fn send_held_close(&mut self) {
        if let Some(frame) = self.held_close.take() {
            self.sink.close.close(frame);
        }
    }

    /// Stops once the client's side of the socket has ended and every ack read is stored, or
    /// after [`CLOSE_GRACE`] whatever happens.
    pub(super) fn finish(&mut self) {
        self.closing = true;
        if !self.finishing {
            self.finishing = true;
            self.after(CLOSE_GRACE, Done::Grace);
        }
        self.stop_if_done();
    }

    pub(super) fn stop_if_done(&mut self) {
        if self.finishing && self.inbound_ended && !self.ack_inflight && self.pending_acks.is_empty() {
            self.stopped = true;
        }
    }

    pub(super) fn error(&mut self, id: Option<uuid::Uuid>, code: ErrorCode, message: String) {
        Metrics::add(&self.hub.metrics.sends_refused, 1);
        self.frame(ServerFrame::Error { id, code, message, retry_after_s: None });
    }

    fn started(&mut self) {
        let conn = Conn {
            id: self.conn_id,
            session_id: self.session_id.clone(),
            device: self.me.clone(),
            session: self.session.clone(),
        };
        if let Some(old) = self.hub.registry.register(self.addr.clone(), conn) {
            // The displaced connection may still be storing acks its client sent just before
            // it reconnected: drain only after it stopped, or the acked envelopes come again.
            tracing::debug!(device = %self.addr, conn = self.conn_id, old = old.id, "displacing; draining once it stopped");
            self.drain_blocked = true;
            let stopped = old.device.disconnect_and_wait(Disconnect::new(CLOSE_DISPLACED));
            self.spawn(async move {
                let _ = tokio::time::timeout(CLOSE_GRACE + CLOSE_GRACE, stopped).await;
                Done::Displaced
            });
        }
        if self.hub.bus.kind() != "local" {
            self.presence_pending = true;
            let claim = claim_presence(self.hub.clone(), self.addr.clone(), self.opened_ms);
            self.spawn(async move {
                claim.await;
                Done::Claimed
            });
        }
        Metrics::add(&self.hub.metrics.connections, 1);
        let ready = ServerFrame::Ready { user: self.addr.user.clone(), device: self.addr.device };
        if self.frame(ready) {
            self.drain_next();
            // Rotation asks and an owed PreKeysLow; they may come between the drained envelopes.
            let hub = self.hub.clone();
            let addr = self.addr.clone();
            self.spawn(async move { Done::Notices(keys::connect_notices(&hub, &addr).await) });
        }
    }

    fn on_stopped(&mut self) {
        unregister(&self.hub, &self.addr, self.conn_id);
        Metrics::dec(&self.hub.metrics.connections);
        if !self.pending_acks.is_empty() || self.ack_inflight {
            tracing::warn!(device = %self.addr, "acks not stored within the close grace; they will be redelivered");
        }
        tracing::debug!(device = %self.addr, conn = self.conn_id, "connection closed");
    }

    fn on_heartbeat(&mut self) {
        if self.last_seen.elapsed() > IDLE_TIMEOUT {
            self.close(CLOSE_IDLE, "idle timeout", false);
        } else {
            self.push(Outbound::Ping);
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Fetched(res) => self.on_fetched(res),
            Done::Sent(replies, routes) => self.on_sent(replies, routes),
            Done::Routed => {
                self.sending = 0;
                self.pump_sends();
            }
            Done::Acked(res) => self.on_acked(res),
            Done::Key(id, res) => {
                self.key_requests -= 1;
                let frame = res.unwrap_or_else(|e| e.frame(id));
                self.frame(frame);
            }
            Done::Notices(Ok(frames)) => {
                for f in frames {
                    self.frame(f);
                }
            }
            Done::Notices(Err(e)) => tracing::warn!(device = %self.addr, error = %e, "key notices not read"),
            Done::Displaced => {
                self.drain_blocked = false;
                self.drain_next();
            }
            Done::Claimed => {
                self.presence_pending = false;
                self.drain_next();
            }
            Done::DrainRetry => self.drain_next(),
            Done::Linger => self.send_held_close(),
            Done::Grace => self.stopped = true,
        }
    }

    fn on_message(&mut self, msg: DeviceMsg) {
        match msg {
            DeviceMsg::Deliver(env, since) => {
                let env = *env;
                crate::faults::check("device", "deliver", &self.addr);
                self.on_deliver(env, since);
            }
            DeviceMsg::Disconnect(d, done) => self.on_disconnect(*d, done),
            DeviceMsg::Resync => self.on_resync(),
            DeviceMsg::Notify(frame) => {
                self.frame(*frame);
            }
        }
    }

    fn on_deliver(&mut self, env: Envelope, since: Since) {
        if self.drain.active {
            self.drain.dirty = true;
            return;
        }
        if env.seq <= self.drain.high_water {
            return;
        }
        if self.frame(ServerFrame::Deliver(env)) {
            Metrics::add(&self.hub.metrics.envelopes_delivered, 1);
            let latency = &self.hub.metrics.latency;
            match since {
                Since::Routed(t) => observe(&latency.delivery_local, t.elapsed()),
                Since::Bus(t) => observe(&latency.delivery_bus, t.elapsed()),
            }
        }
    }

    fn on_disconnect(&mut self, msg: Disconnect, done: Option<oneshot::Sender<()>>) {
        if msg.session_id.as_ref().is_some_and(|s| *s != self.session_id)
            || msg.opened_before_ms.is_some_and(|t| self.opened_ms >= t)
        {
            return;
        }
        // Answered when this actor stops (dropped with it); at once past the bound.
        if let Some(done) = done {
            if self.close_waiters.len() < MAX_CLOSE_WAITERS {
                self.close_waiters.push(done);
            }
        }
        let flush = msg.logged_out.is_some();
        if let Some(reason) = msg.logged_out {
            self.frame(ServerFrame::LoggedOut { reason });
        }
        let reason = match msg.code {
            CLOSE_DISPLACED => "displaced by a newer connection",
            CLOSE_UNAUTHORIZED => "session ended",
            CLOSE_GOING_AWAY => "node shutting down",
            _ => "closed",
        };
        self.close(msg.code, reason, flush);
    }

    fn on_resync(&mut self) {
        if self.drain.active {
            self.drain.dirty = true;
            return;
        }
        self.drain.active = true;
        self.drain.after = 0;
        self.drain.last_progress = None;
        self.drain_next();
    }

    fn on_inbound(&mut self, item: Inbound) {
        self.last_seen = Instant::now();
        if self.closing {
            self.on_inbound_closing(item);
            return;
        }
        match item {
            Inbound::Frame(f) => self.on_frame(f),
            Inbound::Bad(e) => {
                Metrics::add(&self.hub.metrics.bad_frames, 1);
                if let FrameError::TooLarge(_) = e {
                    self.close(CLOSE_TOO_BIG, "frame too large", true);
                } else {
                    self.error(e.id(), e.code(), e.to_string());
                }
            }
            Inbound::Protocol { code, reason } => {
                Metrics::add(&self.hub.metrics.bad_frames, 1);
                self.close(code, &reason, false);
            }
            Inbound::Ping(p) => {
                self.push(Outbound::Pong(p));
            }
            Inbound::Pong => {}
            Inbound::Closed => {
                self.inbound_ended = true;
                self.finish();
            }
        }
    }

    /// Closing: acks still count (the client read those envelopes), unless the session was
    /// revoked; nothing else is done.
    fn on_inbound_closing(&mut self, item: Inbound) {
        match item {
            Inbound::Frame(ClientFrame::Ack { seqs })
                if self.acks_while_closing && self.pending_acks.len() + seqs.len() <= MAX_PENDING_ACKS =>
            {
                self.pending_acks.extend(seqs);
                self.flush_acks();
            }
            Inbound::Closed => {
                self.inbound_ended = true;
                self.send_held_close();
                self.stop_if_done();
            }
            _ => {}
        }
    }

    fn on_inbound_end(&mut self) {
        self.inbound_ended = true;
        self.send_held_close();
        self.finish();
    }

    fn on_frame(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Auth { .. } => {
                self.error(None, ErrorCode::InvalidRequest, "already authenticated".into());
            }
            ClientFrame::Send(msg) => self.queue_send(msg.id, Outgoing::Direct(msg)),
            ClientFrame::GroupSend(msg) => self.queue_send(msg.id, Outgoing::Group(msg)),
            ClientFrame::Ack { seqs } => {
                if self.pending_acks.len() + seqs.len() > MAX_PENDING_ACKS {
                    self.close(CLOSE_POLICY, "too many unprocessed acks", false);
                    return;
                }
                self.pending_acks.extend(seqs);
                self.flush_acks();
            }
            ClientFrame::UploadKeys { id, keys } => {
                self.key_request(id, move |hub, me| async move {
                    keys::upload(&hub, &me, &keys).await.map(|counts| ServerFrame::KeyCounts { id, counts })
                });
            }
            ClientFrame::GetKeyCounts { id } => {
                self.key_request(id, move |hub, me| async move {
                    let counts = keys::counts(&hub, &me).await?;
                    Ok(ServerFrame::KeyCounts { id, counts })
                });
            }
            ClientFrame::GetPreKeys { id, user, device } => {
                self.key_request(id, move |hub, me| async move {
                    keys::fetch(&hub, &me, &user, device).await.map(|keys| ServerFrame::PreKeys { id, keys })
                });
            }
        }
    }

    fn queue_send(&mut self, id: uuid::Uuid, out: Outgoing) {
        if self.sends.len() + self.sending >= MAX_INFLIGHT_SENDS {
            self.error(Some(id), ErrorCode::TooManyInFlight, "too many sends in flight".into());
            return;
        }
        self.sends.push_back((Instant::now(), out));
        self.pump_sends();
    }

    /// Runs one pre-key request and writes its answer; at most [`MAX_INFLIGHT_KEY_REQUESTS`]
    /// at once per connection, more are refused with `too_many_in_flight`.
    fn key_request<F, Fut>(&mut self, id: uuid::Uuid, run: F)
    where
        F: FnOnce(Arc<Hub>, DeviceAddress) -> Fut,
        Fut: Future<Output = Result<ServerFrame, keys::KeysError>> + 'static,
    {
        if self.key_requests >= MAX_INFLIGHT_KEY_REQUESTS {
            self.error(Some(id), ErrorCode::TooManyInFlight, "too many key requests in flight".into());
            return;
        }
        self.key_requests += 1;
        let fut = run(self.hub.clone(), self.addr.clone());
        self.spawn(async move { Done::Key(id, fut.await) });
    }
}

/// Cluster: displaces a connection of this device on another node, then claims presence; the
/// drain waits for the claim. A sender that stores an envelope after the drain read the queue
/// then finds this node in presence and routes it here live; drained before the claim, an
/// envelope stored in between would be routed to the old node and missed.
async fn claim_presence(hub: Arc<Hub>, addr: DeviceAddress, opened_ms: u64) {
    if let Ok(nodes) = hub.bus.locate(std::slice::from_ref(&addr)).await {
        if let Some(Some(node)) = nodes.first().filter(|n| n.as_deref() != Some(hub.bus.node_id())) {
            let kick = hush_cluster::Kick {
                device: addr.clone(),
                code: CLOSE_DISPLACED,
                session_id: None,
                logged_out: None,
                opened_before_ms: Some(opened_ms),
            };
            let _ = hub.bus.send_to(node, &hush_cluster::BusMessage::Kick(kick)).await;
        }
    }
    if let Err(e) = hub.bus.announce(std::slice::from_ref(&addr)).await {
        tracing::debug!(error = %e, "presence not announced; will be on reconnect");
    }
}
