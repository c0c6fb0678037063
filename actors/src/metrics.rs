//! Counters of a node, kept as atomics and rendered in the Prometheus text format by the node.

use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter and gauge of the actor layer.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Authenticated WebSocket connections open now.
    pub connections: AtomicU64,
    /// Envelopes durably queued (one per recipient device).
    pub envelopes_accepted: AtomicU64,
    /// Envelopes written to a recipient's socket (live or while draining).
    pub envelopes_delivered: AtomicU64,
    /// Envelopes acknowledged and deleted.
    pub envelopes_acked: AtomicU64,
    /// `Send` frames refused (wrong device set, stale device, bad input, overload).
    pub sends_refused: AtomicU64,
    /// Connections closed because the client did not read fast enough.
    pub slow_consumers: AtomicU64,
    /// Successful logins.
    pub logins: AtomicU64,
    /// Failed logins.
    pub login_failures: AtomicU64,
    /// Frames that did not decode.
    pub bad_frames: AtomicU64,
    /// Device bundles handed out by pre-key fetches.
    pub prekey_bundles_served: AtomicU64,
    /// Pre-key fetches refused by the rate limit.
    pub prekey_fetches_limited: AtomicU64,
    /// Actor failures (panics, handler errors) per supervision area, in the order of
    /// [`crate::supervise::Area::ALL`].
    pub actor_failures: [AtomicU64; 4],
    /// Restarts by a supervisor per area, same order.
    pub actor_restarts: [AtomicU64; 4],
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    /// Subtracts one from a gauge.
    pub fn dec(c: &AtomicU64) {
        let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(1)));
    }
    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
