//! `DeviceActor`: one per authenticated WebSocket.
//!
//! It owns the connection's protocol state (`device::actor`, `device::queue`): the queue drain on connect (in order,
//! then `QueueEmpty`), live delivery, acks (coalesced: at most one delete in flight per
//! connection), heartbeat and idle timeout, and the slow-consumer rule: when the bounded
//! outbound buffer is full, the socket is closed with 4429 and the envelopes stay queued.
//!
//! The actor is a task with a bounded mailbox ([`crate::delivery::registry::DeviceHandle`]), not a ractor
//! actor: it must stay within the per-connection memory budget (see [`crate::supervise`]). It
//! is supervised all the same: [`serve`] runs it under `catch_unwind`; a panic in any handler
//! unregisters the device, closes its socket (and only its socket) with 1011, and is reported
//! to the devices supervisor, which counts it (`/metrics`) and never restarts a device: the
//! client reconnects and drains its queue, which holds every envelope that was accepted.

mod actor;
mod queue;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use hush_protocol::ids::DeviceAddress;
use hush_protocol::wire::{ClientFrame, FrameError, ServerFrame};
use tokio::sync::oneshot;

use crate::mailbox;

use crate::delivery::registry::{DeviceHandle, DeviceMsg, SessionHandle};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::supervise::{panic_text, Area};

pub use actor::DeviceActor;

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

/// What the actor asks the node's socket writer to send. The frame is boxed: a tokio channel
/// allocates its first block of 32 slots up front, so an unboxed `ServerFrame` cost several KB
/// per idle socket, against one small allocation per frame written.
#[derive(Debug)]
pub enum Outbound {
    /// A protocol frame, encoded by the writer in the connection's format.
    Frame(Box<ServerFrame>),
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

/// Fires the socket's close once; shared by the actor and its supervision wrapper.
#[derive(Clone)]
pub struct Closer(Arc<Mutex<Option<oneshot::Sender<CloseFrame>>>>);

impl Closer {
    /// A closer and the writer's end.
    pub fn new() -> (Closer, oneshot::Receiver<CloseFrame>) {
        let (tx, rx) = oneshot::channel();
        (Closer(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Sends the close (the first call only).
    pub fn close(&self, frame: CloseFrame) {
        if let Some(tx) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(frame);
        }
    }
}

/// The writing half of a socket as the actor sees it: a bounded frame buffer and a close
/// signal that overtakes the buffer.
pub struct Sink {
    /// Frames to write, at most [`crate::limits::OUTBOUND_FRAMES`].
    pub frames: mailbox::Sender<Outbound>,
    /// Closes the socket.
    pub close: Closer,
}

/// One authenticated connection's wiring, made by the node.
pub struct Wiring {
    /// The device.
    pub addr: DeviceAddress,
    /// The session the socket authenticated with.
    pub session_id: String,
    /// The actor's mailbox (its handle goes in the registry).
    pub mailbox: (DeviceHandle, mailbox::Receiver<DeviceMsg>),
    /// The session's actor.
    pub session: SessionHandle,
    /// The writer's side.
    pub sink: Sink,
}

/// Runs the actor of one authenticated socket until it stops, reading `inbound`; supervised
/// as the module says. The future resolves when the actor has stopped.
///
/// Not `async`: the setup's locals (the actor, moved into its run) would otherwise stay in the
/// future for the socket's whole life next to their moved copies (issue 15's heap profile).
pub fn serve(
    hub: Arc<Hub>,
    wiring: Wiring,
    inbound: impl futures_util::Stream<Item = Inbound> + Unpin,
) -> impl std::future::Future<Output = ()> {
    let closer = wiring.sink.close.clone();
    let addr = wiring.addr.clone();
    let (actor, mailbox) = DeviceActor::new(hub.clone(), wiring);
    let conn_id = actor.conn_id();
    std::panic::AssertUnwindSafe(actor.run(inbound, mailbox)).catch_unwind().then(move |run| async move {
        let Err(panic) = run else { return };
        // The actor's state is gone with the panic: do what its stop would have done.
        closer.close(CloseFrame { code: CLOSE_INTERNAL, reason: "internal error".into(), flush: false });
        actor::unregister(&hub, &addr, conn_id);
        Metrics::dec(&hub.metrics.connections);
        let reason = panic_text(&*panic);
        match hub.tree.get(Area::Devices) {
            Some(sup) => {
                sup.child_failed(format!("device {addr}"), reason).await;
            }
            None => tracing::error!(device = %addr, %reason, "device actor failed (no supervisor)"),
        }
    })
}
