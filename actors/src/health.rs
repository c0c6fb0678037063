//! The store's health and numbers, as the node's `/readyz` and `/metrics` report them.

use std::sync::Arc;
use std::time::Duration;

use hush_cluster::NodeReport;
use hush_store::{CommitStats, StoreHealth};

use crate::hub::Hub;
use crate::metrics::Metrics;

/// How often a node refreshes the report its heartbeats carry.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Whether the store takes writes now.
pub async fn store_health(hub: &Hub) -> StoreHealth {
    hub.store.health().await
}

/// Envelopes queued in the store.
pub fn queue_depth(hub: &Hub) -> u64 {
    hub.store.depth()
}

/// The store's group-commit statistics.
pub fn commit_stats(hub: &Hub) -> CommitStats {
    hub.store.commit_stats()
}

/// What this node tells the other nodes about itself now.
pub async fn node_report(hub: &Hub) -> NodeReport {
    let store = match store_health(hub).await {
        StoreHealth::Ok => "ok".to_owned(),
        StoreHealth::Failing(f) => f.cause.as_str().to_owned(),
    };
    NodeReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_ms: hub.started_ms,
        connections: Metrics::get(&hub.metrics.connections),
        store,
        bus_healthy: hub.bus.healthy(),
    }
}

/// Keeps the report of this node's heartbeats current (runs for the node's lifetime).
pub async fn report_loop(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tick.tick().await;
        hub.bus.report(node_report(&hub).await);
    }
}
