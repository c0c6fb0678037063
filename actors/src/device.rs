//! `DeviceActor`: one per authenticated WebSocket.
//!
//! It owns the connection's protocol state: the queue drain on connect (in order, then
//! `QueueEmpty`), live delivery, acks (coalesced: at most one delete in flight per
//! connection), heartbeat and idle timeout, and the slow-consumer rule: when the bounded
//! outbound buffer is full, the socket is closed with 4429 and the envelopes stay queued.
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

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use hush_protocol::ids::DeviceAddress;
use hush_protocol::limits::DRAIN_PAGE;
use hush_protocol::wire::{
    ClientFrame, Envelope, ErrorCode, FrameError, ServerFrame, CLOSE_IDLE, CLOSE_SLOW_CONSUMER,
};
use tokio::sync::{mpsc, oneshot};

use crate::hub::Hub;
use crate::keys;
use crate::limits::{
    CLOSE_GRACE, DEVICE_MAILBOX, DISPLACE_LINGER, DRAIN_STALL_TIMEOUT, HEARTBEAT_INTERVAL, IDLE_TIMEOUT,
    MAX_CLOSE_WAITERS, MAX_INFLIGHT_KEY_REQUESTS, MAX_INFLIGHT_SENDS, MAX_PENDING_ACKS,
};
use crate::metrics::Metrics;
use crate::registry::Conn;
use crate::relay;

/// WebSocket close code for "policy violation" (RFC 6455).
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for "message too big" (RFC 6455).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code for "internal error" (RFC 6455).
pub const CLOSE_INTERNAL: u16 = 1011;
/// WebSocket close code for "going away" (RFC 6455): the node is shutting down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for "protocol error" (RFC 6455).
pub const CLOSE_PROTOCOL: u16 = 1002;
/// WebSocket close code for "invalid frame payload data" (RFC 6455): a text message that is
/// not UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;

/// What the node's socket reader hands the actor: frames already decoded at the edge.
#[derive(Debug)]
pub enum Inbound {
    /// A well-formed client frame.
    Frame(ClientFrame),
    /// A data frame that did not decode or broke a bound; answered with an `Error` frame.
    Bad(FrameError),
    /// A WebSocket-level violation (oversized frame, bad opcode); the socket is closed.
    Protocol {
        /// The close code to use.
        code: u16,
        /// Why.
        reason: String,
    },
    /// A ping from the client, to answer with a pong.
    Ping(Vec<u8>),
    /// A pong (or any sign of life).
    Pong,
    /// The client closed.
    Closed,
}

/// What the actor asks the node's socket writer to send.
// Frames are nearly every item: boxing them would cost an allocation per frame for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outbound {
    /// A protocol frame, encoded by the writer in the connection's format.
    Frame(ServerFrame),
    /// A heartbeat ping.
    Ping,
    /// The answer to a client's ping.
    Pong(Vec<u8>),
}

/// A close request for the socket writer.
#[derive(Debug, Clone)]
pub struct CloseFrame {
    /// The WebSocket close code.
    pub code: u16,
    /// A short reason.
    pub reason: String,
    /// Write the frames already buffered before closing (e.g. `LoggedOut`).
    pub flush: bool,
}

/// The writing half of a socket as the actor sees it: a bounded frame buffer and a close
/// signal that overtakes the buffer.
pub struct Sink {
    /// Frames to write, at most [`crate::limits::OUTBOUND_FRAMES`].
    pub frames: mpsc::Sender<Outbound>,
    /// Fired once to close the socket.
    pub close: Option<oneshot::Sender<CloseFrame>>,
}

/// An envelope to push to this device (its seq is durable in the store).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Deliver(pub Envelope);

/// Asks a connection to close.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// The close code (4401 revoked, 4409 displaced, 1001 shutdown, ...).
    pub code: u16,
    /// If set, a `LoggedOut { reason }` frame goes out before the close.
    pub logged_out: Option<String>,
    /// Only close if the socket authenticated with this session (`None`: any).
    pub session_id: Option<String>,
    /// Only close if the socket was opened before this time, ms since the Unix epoch.
    pub opened_before_ms: Option<u64>,
}

impl Disconnect {
    /// Close with `code`, whatever the session.
    pub fn new(code: u16) -> Self {
        Self { code, logged_out: None, session_id: None, opened_before_ms: None }
    }
}

/// An advisory frame for this device (`PreKeysLow`, `RotateKeys`), written as is.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Notify(pub ServerFrame);

/// Re-read the queue from the store (the link to the other nodes was lost: live deliveries
/// may have been missed). Envelopes already sent may come again; clients deduplicate by id.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Resync;

/// A send waiting its turn: 1:1 and group sends share one queue so that a device's messages
/// are stored in the order it sent them.
enum Outgoing {
    Direct(hush_protocol::wire::SendMessage),
    Group(hush_protocol::wire::GroupSendMessage),
}

#[derive(Default)]
struct Drain {
    active: bool,
    fetching: bool,
    dirty: bool,
    after: u64,
    high_water: u64,
    last_progress: Option<Instant>,
}

/// One authenticated device connection.
pub struct DeviceActor {
    hub: Arc<Hub>,
    addr: DeviceAddress,
    session_id: String,
    conn_id: u64,
    opened_ms: u64,
    sink: Sink,
    last_seen: Instant,
    sends: std::collections::VecDeque<Outgoing>,
    sending: usize,
    pending_acks: Vec<u64>,
    ack_inflight: bool,
    drain: Drain,
    /// The drain waits until a displaced connection of this device has stored its acks.
    drain_blocked: bool,
    closing: bool,
    /// Stopping once the client's side ended and the acks are stored (or [`CLOSE_GRACE`]).
    finishing: bool,
    /// The client's side of the socket ended (close frame, end of stream).
    inbound_ended: bool,
    /// Acks read after the close still count (not after a revocation: that session is over).
    acks_while_closing: bool,
    /// A displacement's close, held until the client's side ends or [`DISPLACE_LINGER`].
    held_close: Option<CloseFrame>,
    /// The drain waits until this node's presence claim for the device is written (cluster).
    presence_pending: bool,
    /// Answered (dropped) when this actor stops: connections that displaced this one.
    close_waiters: Vec<oneshot::Sender<()>>,
    key_requests: usize,
}

impl DeviceActor {
    /// Starts the actor for an authenticated socket, reading `inbound` and writing to `sink`.
    pub fn start_with(
        hub: Arc<Hub>,
        addr: DeviceAddress,
        session_id: String,
        inbound: impl futures_util::Stream<Item = Inbound> + 'static,
        sink: Sink,
    ) -> Addr<Self> {
        let conn_id = hub.registry.next_conn_id();
        DeviceActor::create(move |ctx| {
            ctx.set_mailbox_capacity(DEVICE_MAILBOX);
            ctx.add_stream(inbound);
            DeviceActor {
                hub,
                addr,
                session_id,
                conn_id,
                opened_ms: crate::now_ms(),
                sink,
                last_seen: Instant::now(),
                sends: std::collections::VecDeque::new(),
                sending: 0,
                pending_acks: Vec::new(),
                ack_inflight: false,
                drain: Drain { active: true, ..Drain::default() },
                drain_blocked: false,
                closing: false,
                finishing: false,
                inbound_ended: false,
                acks_while_closing: true,
                held_close: None,
                presence_pending: false,
                close_waiters: Vec::new(),
                key_requests: 0,
            }
        })
    }

    fn push(&mut self, ctx: &mut Context<Self>, item: Outbound) -> bool {
        if self.closing {
            return false;
        }
        match self.sink.frames.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                Metrics::add(&self.hub.metrics.slow_consumers, 1);
                tracing::info!(device = %self.addr, "slow consumer closed; envelopes stay queued");
                self.close(ctx, CLOSE_SLOW_CONSUMER, "slow consumer", false);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The writer is gone (the socket broke); the reader ends soon too.
                self.finish(ctx);
                false
            }
        }
    }

    fn frame(&mut self, ctx: &mut Context<Self>, f: ServerFrame) -> bool {
        self.push(ctx, Outbound::Frame(f))
    }

    fn close(&mut self, ctx: &mut Context<Self>, code: u16, reason: &str, flush: bool) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.acks_while_closing = code != hush_protocol::wire::CLOSE_UNAUTHORIZED;
        let frame = CloseFrame { code, reason: reason.to_owned(), flush };
        if code == hush_protocol::wire::CLOSE_DISPLACED && !self.inbound_ended {
            // Read what the client sent before it reconnected (its close usually follows at
            // once); send the close when it comes, or after the linger.
            self.held_close = Some(frame);
            ctx.run_later(DISPLACE_LINGER, |act, _| act.send_held_close());
        } else if let Some(tx) = self.sink.close.take() {
            let _ = tx.send(frame);
        }
        self.finish(ctx);
    }

    /// Sends a close held back by a displacement (see [`DISPLACE_LINGER`]).
    fn send_held_close(&mut self) {
        if let (Some(frame), Some(tx)) = (self.held_close.take(), self.sink.close.take()) {
            let _ = tx.send(frame);
        }
    }

    /// Stops once the client's side of the socket has ended and every ack read is stored, or
    /// after [`CLOSE_GRACE`] whatever happens.
    fn finish(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        if !self.finishing {
            self.finishing = true;
            ctx.run_later(CLOSE_GRACE, |act, ctx| {
                if !act.pending_acks.is_empty() || act.ack_inflight {
                    tracing::warn!(device = %act.addr, "acks not stored within the close grace; they will be redelivered");
                }
                ctx.stop();
            });
        }
        self.stop_if_done(ctx);
    }

    fn stop_if_done(&mut self, ctx: &mut Context<Self>) {
        if self.finishing && self.inbound_ended && !self.ack_inflight && self.pending_acks.is_empty() {
            ctx.stop();
        }
    }

    /// A future that resolves when this actor has stopped (at once if too many wait already).
    fn stopped_signal(&mut self) -> ResponseFuture<()> {
        if self.close_waiters.len() >= MAX_CLOSE_WAITERS {
            return Box::pin(async {});
        }
        let (tx, rx) = oneshot::channel();
        self.close_waiters.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }

    fn error(&mut self, ctx: &mut Context<Self>, id: Option<uuid::Uuid>, code: ErrorCode, message: String) {
        Metrics::add(&self.hub.metrics.sends_refused, 1);
        self.frame(ctx, ServerFrame::Error { id, code, message });
    }

    fn drain_next(&mut self, ctx: &mut Context<Self>) {
        if !self.drain.active
            || self.drain.fetching
            || self.closing
            || self.drain_blocked
            || self.presence_pending
        {
            return;
        }
        let last = *self.drain.last_progress.get_or_insert_with(Instant::now);
        if self.sink.frames.capacity() < DRAIN_PAGE {
            if last.elapsed() > DRAIN_STALL_TIMEOUT {
                Metrics::add(&self.hub.metrics.slow_consumers, 1);
                self.close(ctx, CLOSE_SLOW_CONSUMER, "slow consumer", false);
                return;
            }
            ctx.run_later(std::time::Duration::from_millis(5), |act, ctx| act.drain_next(ctx));
            return;
        }
        self.drain.fetching = true;
        self.drain.dirty = false;
        let hub = self.hub.clone();
        let addr = self.addr.clone();
        let after = self.drain.after;
        let fut = async move { hub.store.fetch(&addr, after, DRAIN_PAGE).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.drain.fetching = false;
            let page = match res {
                Ok(p) => p,
                Err(e) => {
                    hush_store::failure::log_failure(&e, "queue read failed; socket closed");
                    act.close(ctx, CLOSE_INTERNAL, "store unavailable", false);
                    return;
                }
            };
            let full = page.len() >= DRAIN_PAGE;
            let n = page.len() as u64;
            for env in page {
                act.drain.after = env.seq;
                act.drain.high_water = act.drain.high_water.max(env.seq);
                if !act.frame(ctx, ServerFrame::Deliver(env)) {
                    return;
                }
            }
            Metrics::add(&act.hub.metrics.envelopes_delivered, n);
            if n > 0 {
                act.drain.last_progress = Some(Instant::now());
            }
            if full || act.drain.dirty {
                act.drain_next(ctx);
            } else {
                act.drain.active = false;
                act.frame(ctx, ServerFrame::QueueEmpty);
            }
        }));
    }

    fn on_frame(&mut self, ctx: &mut Context<Self>, frame: ClientFrame) {
        match frame {
            ClientFrame::Auth { .. } => {
                self.error(ctx, None, ErrorCode::InvalidRequest, "already authenticated".into());
            }
            ClientFrame::Send(msg) => {
                if self.sends.len() + self.sending >= MAX_INFLIGHT_SENDS {
                    self.error(ctx, Some(msg.id), ErrorCode::RateLimited, "too many sends in flight".into());
                    return;
                }
                self.sends.push_back(Outgoing::Direct(msg));
                self.pump_sends(ctx);
            }
            ClientFrame::GroupSend(msg) => {
                if self.sends.len() + self.sending >= MAX_INFLIGHT_SENDS {
                    self.error(ctx, Some(msg.id), ErrorCode::RateLimited, "too many sends in flight".into());
                    return;
                }
                self.sends.push_back(Outgoing::Group(msg));
                self.pump_sends(ctx);
            }
            ClientFrame::Ack { seqs } => {
                if self.pending_acks.len() + seqs.len() > MAX_PENDING_ACKS {
                    self.close(ctx, CLOSE_POLICY, "too many unprocessed acks", false);
                    return;
                }
                self.pending_acks.extend(seqs);
                self.flush_acks(ctx);
            }
            ClientFrame::UploadKeys { id, keys } => {
                self.key_request(ctx, id, move |hub, me| async move {
                    keys::upload(&hub, &me, &keys).await.map(|counts| ServerFrame::KeyCounts { id, counts })
                });
            }
            ClientFrame::GetKeyCounts { id } => {
                self.key_request(ctx, id, move |hub, me| async move {
                    let counts = keys::counts(&hub, &me).await?;
                    Ok(ServerFrame::KeyCounts { id, counts })
                });
            }
            ClientFrame::GetPreKeys { id, user, device } => {
                self.key_request(ctx, id, move |hub, me| async move {
                    keys::fetch(&hub, &me, &user, device).await.map(|keys| ServerFrame::PreKeys { id, keys })
                });
            }
        }
    }

    /// Runs one pre-key request and writes its answer; at most [`MAX_INFLIGHT_KEY_REQUESTS`]
    /// at once per connection, more are refused with `rate_limited`.
    fn key_request<F, Fut>(&mut self, ctx: &mut Context<Self>, id: uuid::Uuid, run: F)
    where
        F: FnOnce(Arc<Hub>, DeviceAddress) -> Fut,
        Fut: std::future::Future<Output = Result<ServerFrame, keys::KeysError>> + 'static,
    {
        if self.key_requests >= MAX_INFLIGHT_KEY_REQUESTS {
            self.error(ctx, Some(id), ErrorCode::RateLimited, "too many key requests in flight".into());
            return;
        }
        self.key_requests += 1;
        let fut = run(self.hub.clone(), self.addr.clone());
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.key_requests -= 1;
            let frame = res.unwrap_or_else(|e| e.frame(id));
            act.frame(ctx, frame);
        }));
    }

    /// Starts the next batch of queued sends unless one is being stored: one batch at a time
    /// keeps a device's messages in the order it sent them, and under load every batch grows,
    /// so a pipelining client still costs one store write per batch.
    fn pump_sends(&mut self, ctx: &mut Context<Self>) {
        if self.sending > 0 || self.sends.is_empty() || self.closing {
            return;
        }
        // The leading run of one kind: 1:1 sends are stored in one batch, group sends one by one.
        let group = matches!(self.sends.front(), Some(Outgoing::Group(_)));
        let run = self.sends.iter().take_while(|o| matches!(o, Outgoing::Group(_)) == group).count();
        let batch: Vec<Outgoing> = self.sends.drain(..run).collect();
        self.sending = batch.len();
        let hub = self.hub.clone();
        let from = self.addr.clone();
        let fut = async move {
            if group {
                let mut answers = Vec::with_capacity(batch.len());
                for o in batch {
                    if let Outgoing::Group(m) = o {
                        answers.push(crate::groups::send(&hub, &from, m).await);
                    }
                }
                (answers, Vec::new())
            } else {
                let msgs = batch
                    .into_iter()
                    .filter_map(|o| match o {
                        Outgoing::Direct(m) => Some(m),
                        Outgoing::Group(_) => None,
                    })
                    .collect();
                relay::send_batch(&hub, &from, msgs).await
            }
        };
        ctx.spawn(fut.into_actor(self).map(|(replies, routes), act, ctx| {
            // The answers first: `Accepted` means durable, it does not wait for live routing.
            for reply in replies {
                if !matches!(reply, ServerFrame::Accepted { .. }) {
                    Metrics::add(&act.hub.metrics.sends_refused, 1);
                }
                if !act.frame(ctx, reply) {
                    act.sending = 0;
                    return;
                }
            }
            if routes.is_empty() {
                act.sending = 0;
                act.pump_sends(ctx);
                return;
            }
            // Then the live delivery, before the next batch, so recipients see this sender's
            // messages in order. It runs on its own task: the sender may close its socket as
            // soon as it has its `Accepted`, and stopping this actor must not cancel the
            // delivery of what it accepted.
            let hub = act.hub.clone();
            let (done, routed) = tokio::sync::oneshot::channel();
            actix::spawn(async move {
                relay::route_all(&hub, routes).await;
                let _ = done.send(());
            });
            ctx.spawn(routed.into_actor(act).map(|_, act, ctx| {
                act.sending = 0;
                act.pump_sends(ctx);
            }));
        }));
    }

    fn flush_acks(&mut self, ctx: &mut Context<Self>) {
        if self.ack_inflight || self.pending_acks.is_empty() {
            return;
        }
        self.ack_inflight = true;
        let seqs = std::mem::take(&mut self.pending_acks);
        tracing::debug!(device = %self.addr, conn = self.conn_id, acks = seqs.len(), closing = self.closing, "storing acks");
        let hub = self.hub.clone();
        let addr = self.addr.clone();
        let fut = async move { hub.store.ack(&addr, seqs).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.ack_inflight = false;
            match res {
                Ok(n) => {
                    tracing::debug!(device = %act.addr, conn = act.conn_id, deleted = n, "acks stored");
                    Metrics::add(&act.hub.metrics.envelopes_acked, n)
                }
                // Not deleted means redelivered later: at-least-once holds.
                Err(e) => tracing::warn!(device = %act.addr, error = %e, "ack not stored"),
            }
            act.flush_acks(ctx);
            act.stop_if_done(ctx);
        }));
    }
}

impl Actor for DeviceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let me = ctx.address();
        let conn = Conn {
            id: self.conn_id,
            session_id: self.session_id.clone(),
            deliver: me.clone().recipient(),
            disconnect: me.clone().recipient(),
            resync: me.clone().recipient(),
            notify: me.recipient(),
        };
        if let Some(old) = self.hub.registry.register(self.addr.clone(), conn) {
            // The displaced connection may still be storing acks its client sent just before
            // it reconnected: drain only after it stopped, or the acked envelopes come again.
            tracing::debug!(device = %self.addr, conn = self.conn_id, old = old.id, "displacing; draining once it stopped");
            self.drain_blocked = true;
            let stopped = old.disconnect.send(Disconnect::new(hush_protocol::wire::CLOSE_DISPLACED));
            let fut = async move {
                let _ = tokio::time::timeout(CLOSE_GRACE + CLOSE_GRACE, stopped).await;
            };
            ctx.spawn(fut.into_actor(self).map(|(), act, ctx| {
                act.drain_blocked = false;
                act.drain_next(ctx);
            }));
        }
        // Cluster: displace a connection of this device on another node, then claim presence;
        // the drain waits for the claim. A sender that stores an envelope after the drain read
        // the queue then finds this node in presence and routes it here live; drained before the
        // claim, an envelope stored in between would be routed to the old node and missed.
        if self.hub.bus.kind() != "local" {
            let hub = self.hub.clone();
            let addr = self.addr.clone();
            let opened = self.opened_ms;
            self.presence_pending = true;
            let claim = async move {
                if let Ok(nodes) = hub.bus.locate(std::slice::from_ref(&addr)).await {
                    if let Some(Some(node)) =
                        nodes.first().filter(|n| n.as_deref() != Some(hub.bus.node_id()))
                    {
                        let kick = hush_cluster::Kick {
                            device: addr.clone(),
                            code: hush_protocol::wire::CLOSE_DISPLACED,
                            session_id: None,
                            logged_out: None,
                            opened_before_ms: Some(opened),
                        };
                        let _ = hub.bus.send_to(node, &hush_cluster::BusMessage::Kick(kick)).await;
                    }
                }
                if let Err(e) = hub.bus.announce(std::slice::from_ref(&addr)).await {
                    tracing::debug!(error = %e, "presence not announced; will be on reconnect");
                }
            };
            ctx.spawn(claim.into_actor(self).map(|(), act, ctx| {
                act.presence_pending = false;
                act.drain_next(ctx);
            }));
        }
        Metrics::add(&self.hub.metrics.connections, 1);
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| {
            if act.last_seen.elapsed() > IDLE_TIMEOUT {
                act.close(ctx, CLOSE_IDLE, "idle timeout", false);
            } else {
                act.push(ctx, Outbound::Ping);
            }
        });
        let ready = ServerFrame::Ready { user: self.addr.user.clone(), device: self.addr.device };
        if self.frame(ctx, ready) {
            self.drain_next(ctx);
            // Rotation asks and an owed PreKeysLow; they may come between the drained envelopes.
            let hub = self.hub.clone();
            let addr = self.addr.clone();
            let fut = async move { keys::connect_notices(&hub, &addr).await };
            ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
                Ok(frames) => {
                    for f in frames {
                        act.frame(ctx, f);
                    }
                }
                Err(e) => tracing::warn!(device = %act.addr, error = %e, "key notices not read"),
            }));
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.hub.registry.unregister(&self.addr, self.conn_id) && self.hub.bus.kind() != "local" {
            let hub = self.hub.clone();
            let addr = self.addr.clone();
            actix::spawn(async move {
                let _ = hub.bus.withdraw(&addr).await;
            });
        }
        Metrics::dec(&self.hub.metrics.connections);
        tracing::debug!(device = %self.addr, conn = self.conn_id, "connection closed");
    }
}

impl StreamHandler<Inbound> for DeviceActor {
    fn handle(&mut self, item: Inbound, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        if self.closing {
            // Closing: acks still count (the client read those envelopes), unless the session was
            // revoked; nothing else is done.
            match item {
                Inbound::Frame(ClientFrame::Ack { seqs })
                    if self.acks_while_closing
                        && self.pending_acks.len() + seqs.len() <= MAX_PENDING_ACKS =>
                {
                    self.pending_acks.extend(seqs);
                    self.flush_acks(ctx);
                }
                Inbound::Closed => {
                    self.inbound_ended = true;
                    self.send_held_close();
                    self.stop_if_done(ctx);
                }
                _ => {}
            }
            return;
        }
        match item {
            Inbound::Frame(f) => self.on_frame(ctx, f),
            Inbound::Bad(e) => {
                Metrics::add(&self.hub.metrics.bad_frames, 1);
                if let FrameError::TooLarge(_) = e {
                    self.close(ctx, CLOSE_TOO_BIG, "frame too large", true);
                } else {
                    self.error(ctx, None, e.code(), e.to_string());
                }
            }
            Inbound::Protocol { code, reason } => {
                Metrics::add(&self.hub.metrics.bad_frames, 1);
                self.close(ctx, code, &reason, false);
            }
            Inbound::Ping(p) => {
                self.push(ctx, Outbound::Pong(p));
            }
            Inbound::Pong => {}
            Inbound::Closed => {
                self.inbound_ended = true;
                self.finish(ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.inbound_ended = true;
        self.send_held_close();
        self.finish(ctx);
    }
}

impl Handler<Deliver> for DeviceActor {
    type Result = ();

    fn handle(&mut self, Deliver(env): Deliver, ctx: &mut Self::Context) {
        if self.drain.active {
            self.drain.dirty = true;
            return;
        }
        if env.seq <= self.drain.high_water {
            return;
        }
        if self.frame(ctx, ServerFrame::Deliver(env)) {
            Metrics::add(&self.hub.metrics.envelopes_delivered, 1);
        }
    }
}

impl Handler<Disconnect> for DeviceActor {
    /// Resolves once the actor has stopped (its acks stored), for a sender that waits.
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) -> ResponseFuture<()> {
        if msg.session_id.as_ref().is_some_and(|s| *s != self.session_id)
            || msg.opened_before_ms.is_some_and(|t| self.opened_ms >= t)
        {
            return Box::pin(async {});
        }
        let flush = msg.logged_out.is_some();
        if let Some(reason) = msg.logged_out {
            self.frame(ctx, ServerFrame::LoggedOut { reason });
        }
        let reason = match msg.code {
            hush_protocol::wire::CLOSE_DISPLACED => "displaced by a newer connection",
            hush_protocol::wire::CLOSE_UNAUTHORIZED => "session ended",
            CLOSE_GOING_AWAY => "node shutting down",
            _ => "closed",
        };
        self.close(ctx, msg.code, reason, flush);
        self.stopped_signal()
    }
}

impl Handler<Resync> for DeviceActor {
    type Result = ();

    fn handle(&mut self, _: Resync, ctx: &mut Self::Context) {
        if self.drain.active {
            self.drain.dirty = true;
            return;
        }
        self.drain.active = true;
        self.drain.after = 0;
        self.drain.last_progress = None;
        self.drain_next(ctx);
    }
}

impl Handler<Notify> for DeviceActor {
    type Result = ();

    fn handle(&mut self, Notify(frame): Notify, ctx: &mut Self::Context) {
        self.frame(ctx, frame);
    }
}
