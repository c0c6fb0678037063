//! The store's health and numbers, as the node's `/readyz` and `/metrics` report them.

use hush_store::{CommitStats, StoreHealth};

use crate::hub::Hub;

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
