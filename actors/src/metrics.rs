//! Counters of a node, kept as atomics, and its latency histograms; the node encodes both in
//! the OpenMetrics text format with `prometheus-client`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Upper bounds of the latency buckets, in seconds: 50 µs doubling to about 1.6 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 16)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// A label set of one bounded label.
pub type Label = [(&'static str, &'static str); 1];

/// The latency histograms of the message path (seconds). The labelled ones keep a handle per
/// label value, so an observation takes no map lookup.
#[derive(Debug)]
pub struct Latencies {
    /// From a `Send` or `GroupSend` frame read off the socket to its answer (`Accepted` or a
    /// refusal) queued for that socket, by `kind` (`direct`, `group`).
    pub accept: Family<Label, Histogram, fn() -> Histogram>,
    /// [`Self::accept`] for `kind="direct"`.
    pub accept_direct: Histogram,
    /// [`Self::accept`] for `kind="group"`.
    pub accept_group: Histogram,
    /// From the start of live routing of an accepted envelope (on the accepting node, `path=
    /// "local"`), or from its arrival over the bus (`path="bus"`), to its `Deliver` frame queued
    /// for the recipient's socket. Envelopes read from the queue (drain) are not counted.
    pub delivery: Family<Label, Histogram, fn() -> Histogram>,
    /// [`Self::delivery`] for `path="local"`.
    pub delivery_local: Histogram,
    /// [`Self::delivery`] for `path="bus"`.
    pub delivery_bus: Histogram,
    /// A group message in its group's actor: from its turn to every member device's copy stored
    /// (the sender's device actor then answers and routes the copies).
    pub fanout: Histogram,
}

impl Default for Latencies {
    fn default() -> Self {
        let ctor = latency_histogram as fn() -> Histogram;
        let accept = Family::<Label, Histogram, fn() -> Histogram>::new_with_constructor(ctor);
        let delivery = Family::<Label, Histogram, fn() -> Histogram>::new_with_constructor(ctor);
        let handle = |f: &Family<Label, Histogram, fn() -> Histogram>, l: Label| -> Histogram {
            let h = f.get_or_create(&l).clone();
            h
        };
        let accept_direct = handle(&accept, [("kind", "direct")]);
        let accept_group = handle(&accept, [("kind", "group")]);
        let delivery_local = handle(&delivery, [("path", "local")]);
        let delivery_bus = handle(&delivery, [("path", "bus")]);
        Self {
            accept,
            accept_direct,
            accept_group,
            delivery,
            delivery_local,
            delivery_bus,
            fanout: latency_histogram(),
        }
    }
}

/// Records a duration in `h`, in seconds.
pub fn observe(h: &Histogram, d: Duration) {
    h.observe(d.as_secs_f64());
}

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
    /// Latency histograms of the message path.
    pub latency: Latencies,
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
