//! The local registry: which devices are connected to this node, and the mailboxes of their
//! actors (a `DeviceActor` per socket, a `SessionActor` per live session).
//!
//! One entry per device address. A second connection for the same device replaces the entry
//! and the first connection is told to close with 4409 (displaced).
//!
//! The messages and handles live here, below both actors, so that whoever reaches a device
//! (delivery, revocation, the bus) needs only this module.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use hush_protocol::ids::DeviceAddress;
use hush_protocol::wire::{Envelope, ServerFrame};
use tokio::sync::oneshot;

use crate::mailbox::{self, Receiver, Sender, TrySendError};

use crate::limits::DEVICE_MAILBOX;

/// Asks a connection to close.
#[derive(Debug, Clone)]
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

/// The messages of a `DeviceActor`. Large payloads are boxed: a tokio channel allocates its
/// first block of 32 slots up front, so the size of this enum is paid 32 times per connection
/// (an unboxed `Envelope` cost about 6 KB per idle socket).
#[derive(Debug)]
pub enum DeviceMsg {
    /// An envelope to push (its seq is durable in the store).
    Deliver(Box<Envelope>, Since),
    /// Close; the sender (if any) is answered once the actor has stopped (its acks stored).
    Disconnect(Box<Disconnect>, Option<oneshot::Sender<()>>),
    /// Re-read the queue from the store (the link to the other nodes was lost: live deliveries
    /// may have been missed). Clients deduplicate by id.
    Resync,
    /// An advisory frame (`PreKeysLow`, `RotateKeys`), written as is.
    Notify(Box<ServerFrame>),
}

/// Why a delivery did not reach a device's mailbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The mailbox is full: the device does not keep up.
    Full,
    /// The actor has stopped.
    Closed,
}

/// Where a live envelope's delivery latency is counted from.
#[derive(Clone, Copy, Debug)]
pub enum Since {
    /// Live routing started on this node (the node that accepted it).
    Routed(tokio::time::Instant),
    /// It arrived from another node over the bus.
    Bus(tokio::time::Instant),
}

/// The mailbox of one device connection (bounded: [`DEVICE_MAILBOX`]).
#[derive(Clone, Debug)]
pub struct DeviceHandle(Sender<DeviceMsg>);

impl DeviceHandle {
    /// A new mailbox: the handle and the actor's end.
    pub fn channel() -> (DeviceHandle, Receiver<DeviceMsg>) {
        let (tx, rx) = mailbox::bounded(DEVICE_MAILBOX);
        (DeviceHandle(tx), rx)
    }

    /// Pushes an envelope without waiting.
    pub fn deliver(&self, env: Envelope, since: Since) -> Result<(), Refused> {
        self.try_send(DeviceMsg::Deliver(Box::new(env), since))
    }

    /// Pushes an advisory frame without waiting; dropped if the mailbox is full.
    pub fn notify(&self, frame: ServerFrame) {
        let _ = self.try_send(DeviceMsg::Notify(Box::new(frame)));
    }

    /// Asks the actor to re-read its queue; dropped if the mailbox is full (a full mailbox
    /// closes the socket, and the reconnect reads the queue).
    pub fn resync(&self) {
        let _ = self.try_send(DeviceMsg::Resync);
    }

    /// Asks the connection to close. Never dropped: with a full mailbox it waits its turn on
    /// a task of its own.
    pub fn disconnect(&self, d: Disconnect) {
        self.close_with(d, None);
    }

    /// Asks the connection to close and resolves once its actor stopped.
    pub fn disconnect_and_wait(&self, d: Disconnect) -> impl std::future::Future<Output = ()> {
        let (tx, rx) = oneshot::channel();
        self.close_with(d, Some(tx));
        async move {
            let _ = rx.await;
        }
    }

    fn close_with(&self, d: Disconnect, done: Option<oneshot::Sender<()>>) {
        if let Err(TrySendError::Full(msg)) = self.0.try_send(DeviceMsg::Disconnect(Box::new(d), done)) {
            let tx = self.0.clone();
            tokio::spawn(async move {
                let _ = tx.send_async(msg).await;
            });
        }
    }

    fn try_send(&self, msg: DeviceMsg) -> Result<(), Refused> {
        self.0.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Disconnected(_) => Refused::Closed,
        })
    }

    /// True once the actor has stopped.
    pub fn is_closed(&self) -> bool {
        self.0.is_disconnected()
    }
}

/// The messages of a `SessionActor`.
#[derive(Debug)]
pub enum SessionMsg {
    /// The session was revoked (already in the store): tell the socket and close it.
    Revoked {
        /// Sent to the client in `LoggedOut`.
        reason: Box<str>,
        /// The close code.
        code: u16,
    },
}

/// The mailbox of one live session's actor.
#[derive(Clone, Debug)]
pub struct SessionHandle(Sender<SessionMsg>);

/// Mailbox size of a session actor (revocations only).
const SESSION_MAILBOX: usize = 4;

impl SessionHandle {
    /// A new mailbox: the handle and the actor's end.
    pub fn channel() -> (SessionHandle, Receiver<SessionMsg>) {
        let (tx, rx) = mailbox::bounded(SESSION_MAILBOX);
        (SessionHandle(tx), rx)
    }

    /// Tells the session actor its session was revoked; false if it could not be told now
    /// (stopped, or busy with earlier revocations).
    pub fn revoked(&self, reason: &str, code: u16) -> bool {
        self.0.try_send(SessionMsg::Revoked { reason: reason.into(), code }).is_ok()
    }
}

/// Stored envelopes, each with the device it is for: what a send hands to live routing.
pub type Routes = Vec<(DeviceAddress, Envelope)>;

/// How to reach one live connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Unique per connection on this node.
    pub id: u64,
    /// The session the socket authenticated with.
    pub session_id: String,
    /// The connection's `DeviceActor`.
    pub device: DeviceHandle,
    /// The `SessionActor` of its session.
    pub session: SessionHandle,
}

impl Conn {
    /// Ends the connection's session: through its `SessionActor` (which closes the socket
    /// with `LoggedOut { reason }` and `code`), or straight to the socket if that actor cannot
    /// take it now. Only the socket of session `session_id` is closed.
    pub fn revoke(&self, session_id: &str, reason: &str, code: u16) {
        if self.session_id != session_id {
            return;
        }
        let told = self.session.revoked(reason, code);
        tracing::debug!(session = session_id, told, "revocation to the session actor");
        if !told {
            self.device.disconnect(Disconnect {
                code,
                logged_out: Some(reason.to_owned()),
                session_id: Some(session_id.to_owned()),
                opened_before_ms: None,
            });
        }
    }
}

/// Devices connected to this node.
#[derive(Default)]
pub struct Registry {
    inner: RwLock<HashMap<DeviceAddress, Conn>>,
    next_id: AtomicU64,
}

impl Registry {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a connection; returns the one it displaced, if any.
    pub fn register(&self, addr: DeviceAddress, conn: Conn) -> Option<Conn> {
        match self.inner.write() {
            Ok(mut m) => m.insert(addr, conn),
            Err(p) => p.into_inner().insert(addr, conn),
        }
    }

    /// Removes the entry if it still belongs to connection `id`; true if it did.
    pub fn unregister(&self, addr: &DeviceAddress, id: u64) -> bool {
        let mut m = match self.inner.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.get(addr).is_some_and(|c| c.id == id) {
            m.remove(addr);
            true
        } else {
            false
        }
    }

    /// The live connection of a device on this node.
    pub fn get(&self, addr: &DeviceAddress) -> Option<Conn> {
        match self.inner.read() {
            Ok(m) => m.get(addr).cloned(),
            Err(p) => p.into_inner().get(addr).cloned(),
        }
    }

    /// Every live connection with its device (for shutdown and resync).
    pub fn all(&self) -> Vec<(DeviceAddress, Conn)> {
        let m = match self.inner.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.iter().map(|(a, c)| (a.clone(), c.clone())).collect()
    }

    /// Number of registered devices.
    pub fn len(&self) -> usize {
        match self.inner.read() {
            Ok(m) => m.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    /// True when no device is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
