//! Delivery: the only code that reaches a device. The [`registry`] of this node's connections
//! and their actors' mailboxes, one router ([`route_all`]: this node's sockets, or the bus to
//! the node that presence names), advisory notices ([`push`]), node events queued for devices
//! ([`queue_events`]) and what the bus brings from other nodes ([`bus`]).

pub mod bus;
pub mod registry;

use std::collections::HashMap;

use hush_cluster::BusMessage;
use hush_protocol::ids::DeviceAddress;
use hush_protocol::wire::{Envelope, ServerFrame, CLOSE_SLOW_CONSUMER};
use hush_store::NewEnvelope;

use crate::hub::Hub;
use crate::limits::ROUTE_BATCH;
use crate::metrics::Metrics;
pub use registry::Routes;
use registry::{Conn, Disconnect, Refused, Since};

/// Queues node events (one store write) for their devices, then routes them; a failure is
/// logged as `what` (the events are lost: they are advisory, and the state they describe is in
/// the store).
pub async fn queue_events(hub: &Hub, items: Vec<NewEnvelope>, what: &'static str) {
    if items.is_empty() {
        return;
    }
    let targets: Vec<DeviceAddress> = items.iter().map(|i| i.to.clone()).collect();
    match hub.store.enqueue(items).await {
        Ok(stored) => route_all(hub, targets.into_iter().zip(stored).collect()).await,
        Err(e) => hush_store::failure::log_failure(&e, what),
    }
}

/// Pushes stored envelopes to their devices: through the local registry when connected here,
/// else to the node that presence names (one bus message per node and batch). A device that
/// is offline, or whose node cannot be reached, gets the envelope from its queue later.
pub async fn route_all(hub: &Hub, items: Routes) {
    let since = Since::Routed(tokio::time::Instant::now());
    let mut remote = Vec::new();
    for (addr, env) in items {
        match hub.registry.get(&addr) {
            Some(conn) => deliver_local(hub, &conn, env, since),
            None => remote.push((addr, env)),
        }
    }
    if remote.is_empty() || hub.bus.kind() == "local" {
        return;
    }
    let addrs: Vec<DeviceAddress> = remote.iter().map(|(a, _)| a.clone()).collect();
    let nodes = match hub.bus.locate(&addrs).await {
        Ok(n) => n,
        Err(e) => {
            // Degraded: the envelopes are durable; the devices get them on resync/reconnect.
            tracing::debug!(error = %e, "presence lookup failed");
            return;
        }
    };
    let mut by_node: HashMap<String, Routes> = HashMap::new();
    for ((addr, env), node) in remote.into_iter().zip(nodes) {
        if let Some(n) = node.filter(|n| n != hub.bus.node_id()) {
            by_node.entry(n).or_default().push((addr, env));
        }
    }
    for (node, items) in by_node {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for (addr, env) in items {
            bytes += env.content.0.len() + 64;
            batch.push((addr, env));
            if batch.len() >= ROUTE_BATCH || bytes >= ROUTE_BATCH_BYTES {
                send_remote(hub, &node, std::mem::take(&mut batch)).await;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            send_remote(hub, &node, batch).await;
        }
    }
}

/// Bytes of envelope content per bus message to another node.
const ROUTE_BATCH_BYTES: usize = 1024 * 1024;

async fn send_remote(hub: &Hub, node: &str, batch: Routes) {
    let n = batch.len();
    if let Err(e) = hub.bus.send_to(node, &BusMessage::Deliver(batch)).await {
        tracing::debug!(error = %e, node, envelopes = n, "live routing failed; envelopes stay queued");
    }
}

/// Pushes a stored envelope to the actor of a device connected to this node. A full mailbox
/// means the device cannot keep up: it is disconnected and reads its queue when it reconnects.
pub fn deliver_local(hub: &Hub, conn: &Conn, env: Envelope, since: Since) {
    if conn.device.deliver(env, since) == Err(Refused::Full) {
        Metrics::add(&hub.metrics.slow_consumers, 1);
        conn.device.disconnect(Disconnect::new(CLOSE_SLOW_CONSUMER));
    }
}

/// Pushes an advisory frame to a device wherever it is connected (this node, or the node its
/// presence names); a device that is not connected misses it.
pub async fn push(hub: &Hub, addr: &DeviceAddress, frame: ServerFrame) {
    if let Some(conn) = hub.registry.get(addr) {
        conn.device.notify(frame);
        return;
    }
    if hub.bus.kind() == "local" {
        return;
    }
    match hub.bus.locate(std::slice::from_ref(addr)).await {
        Ok(nodes) => {
            if let Some(Some(node)) = nodes.first().filter(|n| n.as_deref() != Some(hub.bus.node_id())) {
                let msg = BusMessage::Notify(vec![(addr.clone(), frame)]);
                if let Err(e) = hub.bus.send_to(node, &msg).await {
                    tracing::debug!(error = %e, "notice not routed; the device gets it at its next connection");
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "presence lookup failed"),
    }
}
