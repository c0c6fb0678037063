//! The cluster bus: how the nodes of a Hush cluster find each other and pass messages.
//!
//! - [`Bus`]: membership, presence (which node a device is connected to), routing to one
//!   node's inbox, broadcasts to every other node.
//! - [`LocalBus`]: a single node; nothing to route.
//! - [`redis::RedisBus`]: nodes linked by one Redis: membership and presence are keys with a
//!   time-to-live refreshed by their owner (a dead node's entries vanish within
//!   [`limits::PRESENCE_TTL`]), inboxes and broadcasts are pub/sub channels.
//!
//! - [`buckets`]: in-process token buckets and attempt counters (the rate limits of a lone
//!   node, and the fallback while Redis is down); [`Bus::take_token`] is the cluster-wide rate
//!   limit, [`Bus::attempt`] / [`Bus::release_attempt`] the cluster-wide attempt counter behind
//!   login throttling ([`buckets::Backoff`]).
//!
//! The bus never stores messages: envelopes are durable in the store before they are routed,
//! so a publish that fails (Redis down) only delays a live delivery. When Redis comes back,
//! the bus emits [`BusEvent::Reconnected`] and every node re-reads its connected devices'
//! queues, which delivers whatever was missed.
#![warn(missing_docs)]

use async_trait::async_trait;
use hush_protocol::ids::{DeviceAddress, GroupId, TenantId, UserId};
use hush_protocol::wire::{Envelope, ServerFrame};
use serde::{Deserialize, Serialize};

pub mod buckets;
pub mod limits;
pub mod redis;

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis is unreachable; the node runs degraded (local delivery only).
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// A message could not be encoded or decoded.
    #[error("bad bus message: {0}")]
    Codec(String),
}

/// Asks the node that holds a device's socket to close it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kick {
    /// The device.
    pub device: DeviceAddress,
    /// The close code (4401 revoked, 4409 displaced, 4410 device removed).
    pub code: u16,
    /// Only close a socket of this session (`None`: any).
    pub session_id: Option<String>,
    /// If set, a `LoggedOut { reason }` frame precedes the close.
    pub logged_out: Option<String>,
    /// Only close sockets opened before this time (ms since the Unix epoch), so that a kick
    /// for displacement never closes the newer connection.
    pub opened_before_ms: Option<u64>,
}

/// A message between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusMessage {
    /// Envelopes (already durable) for devices connected to the receiving node.
    Deliver(Vec<(DeviceAddress, Envelope)>),
    /// Close a device's socket.
    Kick(Kick),
    /// Close many sockets (a bulk revocation).
    KickMany(Vec<Kick>),
    /// A user's device set changed: drop cached copies.
    DevicesChanged {
        /// The tenant.
        tenant: TenantId,
        /// The user.
        user: UserId,
    },
    /// Frames to push to devices connected to the receiving node (not queued: a device that is
    /// not connected there any more misses them; senders use it for advisory pushes such as
    /// `PreKeysLow` whose state is also kept in the store).
    Notify(Vec<(DeviceAddress, ServerFrame)>),
    /// A group's membership changed: drop cached copies (the record is re-read).
    GroupChanged {
        /// The tenant.
        tenant: TenantId,
        /// The group.
        group: GroupId,
    },
}

/// What a node tells the other nodes about itself with each heartbeat (for the operators'
/// view of the cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node's software version.
    pub version: String,
    /// When the node started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Authenticated WebSocket connections open on the node.
    pub connections: u64,
    /// The node's store: `ok`, or why it cannot write (as `/readyz` says).
    pub store: String,
    /// Whether the node's own link to the bus is up.
    pub bus_healthy: bool,
}

/// A live node of the cluster as the bus sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    /// The node's id.
    pub id: String,
    /// Its last heartbeat, ms since the Unix epoch.
    pub seen_ms: u64,
    /// Its last report (`None` if it has sent none yet, or it expired).
    pub report: Option<NodeReport>,
}

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the bus hands the node.
#[derive(Debug)]
pub enum BusEvent {
    /// A message from another node.
    Message(BusMessage),
    /// The link to the other nodes was lost and is back: messages may have been missed, so
    /// connected devices should re-read their queues and presence should be re-announced.
    Reconnected,
}

/// Membership, presence, routing and broadcast between nodes.
#[async_trait]
pub trait Bus: Send + Sync {
    /// This node's id (unique per process start).
    fn node_id(&self) -> &str;
    /// False while the link to the other nodes is down (the node then reports itself degraded).
    fn healthy(&self) -> bool;
    /// Which kind of bus (`local`, `redis`), for `/readyz`.
    fn kind(&self) -> &'static str;
    /// Records that these devices are connected to this node.
    async fn announce(&self, devices: &[DeviceAddress]) -> Result<(), BusError>;
    /// Removes a device's presence if it still points at this node.
    async fn withdraw(&self, device: &DeviceAddress) -> Result<(), BusError>;
    /// The node each device is connected to, if any (and known).
    async fn locate(&self, devices: &[DeviceAddress]) -> Result<Vec<Option<String>>, BusError>;
    /// Sends a message to one node's inbox.
    async fn send_to(&self, node: &str, msg: &BusMessage) -> Result<(), BusError>;
    /// Sends a message to every other node.
    async fn broadcast(&self, msg: &BusMessage) -> Result<(), BusError>;
    /// Records what this node tells the others about itself with its heartbeats.
    fn report(&self, report: NodeReport);
    /// The live nodes of the cluster (this one included) with their last reports, in id order.
    async fn nodes(&self) -> Result<Vec<NodeSeen>, BusError>;
    /// Takes the stream of events for this node (once; later calls get `None`).
    fn events(&self) -> Option<tokio::sync::mpsc::Receiver<BusEvent>>;
    /// Takes one token from the rate-limit bucket `key`, shared by every node: a bucket holds at
    /// most `capacity` tokens and gets one back every `refill`. `None` if a token was taken;
    /// otherwise how long until one is back (nothing was taken).
    async fn take_token(
        &self,
        key: &str,
        capacity: u32,
        refill: std::time::Duration,
    ) -> Option<std::time::Duration>;
    /// Checks one attempt under the counter `key`, shared by every node, and counts it if it
    /// is let through (see [`buckets::Backoff`]).
    async fn attempt(&self, key: &str, rule: &buckets::Backoff) -> buckets::Verdict;
    /// Gives back what a successful attempt under `key` took (or clears a lock).
    async fn release_attempt(&self, key: &str, how: buckets::Release);
}

/// The bus of a node that runs alone: no presence, no routing, nothing to receive.
pub struct LocalBus {
    id: String,
    buckets: buckets::TokenBuckets,
    attempts: buckets::AttemptCounters,
    events: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<BusEvent>>>,
    _tx: tokio::sync::mpsc::Sender<BusEvent>,
    report: std::sync::Mutex<Option<NodeReport>>,
}

impl LocalBus {
    /// A local bus.
    pub fn new(id: impl Into<String>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        Self {
            id: id.into(),
            buckets: buckets::TokenBuckets::default(),
            attempts: buckets::AttemptCounters::default(),
            events: std::sync::Mutex::new(Some(rx)),
            _tx: tx,
            report: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn node_id(&self) -> &str {
        &self.id
    }
    fn healthy(&self) -> bool {
        true
    }
    fn kind(&self) -> &'static str {
        "local"
    }
    async fn announce(&self, _: &[DeviceAddress]) -> Result<(), BusError> {
        Ok(())
    }
    async fn withdraw(&self, _: &DeviceAddress) -> Result<(), BusError> {
        Ok(())
    }
    async fn locate(&self, devices: &[DeviceAddress]) -> Result<Vec<Option<String>>, BusError> {
        Ok(vec![None; devices.len()])
    }
    async fn send_to(&self, _: &str, _: &BusMessage) -> Result<(), BusError> {
        Ok(())
    }
    async fn broadcast(&self, _: &BusMessage) -> Result<(), BusError> {
        Ok(())
    }
    fn report(&self, report: NodeReport) {
        match self.report.lock() {
            Ok(mut g) => *g = Some(report),
            Err(p) => *p.into_inner() = Some(report),
        }
    }
    async fn nodes(&self) -> Result<Vec<NodeSeen>, BusError> {
        let report = match self.report.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Ok(vec![NodeSeen { id: self.id.clone(), seen_ms: now_ms(), report }])
    }
    fn events(&self) -> Option<tokio::sync::mpsc::Receiver<BusEvent>> {
        match self.events.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }
    async fn take_token(
        &self,
        key: &str,
        capacity: u32,
        refill: std::time::Duration,
    ) -> Option<std::time::Duration> {
        self.buckets.take(key, capacity, refill)
    }
    async fn attempt(&self, key: &str, rule: &buckets::Backoff) -> buckets::Verdict {
        self.attempts.attempt(key, rule)
    }
    async fn release_attempt(&self, key: &str, how: buckets::Release) {
        self.attempts.release(key, how)
    }
}
