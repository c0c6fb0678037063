//! `/metrics`: the node's counters, gauges and latency histograms, encoded in the OpenMetrics
//! text format by `prometheus-client` (the Prometheus project's Rust client). Counters and
//! gauges are atomics the actors bump ([`Metrics`]), read at each scrape by [`NodeCollector`];
//! the latency histograms are `prometheus-client` histograms the message path observes.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use hush_actors::health;
use hush_actors::hub::Hub;
use hush_actors::metrics::Metrics;
use hush_actors::supervise::Area;
use hush_store::{CommitStats, COMMIT_BUCKETS_US};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The node's metrics, encoded (the text ends with `# EOF`).
pub fn render(hub: &Arc<Hub>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector {
        metrics: hub.metrics.clone(),
        queue_depth: health::queue_depth(hub),
        commits: health::commit_stats(hub),
    }));
    let l = &hub.metrics.latency;
    registry.register_with_unit(
        "hush_accept",
        "From a Send or GroupSend frame read off the socket to its answer queued for the socket, by kind (direct, group)",
        Unit::Seconds,
        l.accept.clone(),
    );
    registry.register_with_unit(
        "hush_delivery",
        "From the start of live routing of an accepted envelope (path=local, on the accepting node) or its arrival over the bus (path=bus) to its Deliver frame queued for the recipient's socket; queue reads are not counted",
        Unit::Seconds,
        l.delivery.clone(),
    );
    registry.register_with_unit(
        "hush_group_fanout",
        "A group message in its group's actor: from its turn to every member device's copy stored (the sender's device actor then answers and routes the copies)",
        Unit::Seconds,
        l.fanout.clone(),
    );
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Counters and gauges read from the actors' atomics and the store at scrape time.
#[derive(Debug)]
struct NodeCollector {
    metrics: Arc<Metrics>,
    queue_depth: u64,
    commits: CommitStats,
}

/// Counters of [`Metrics`]: name (without `_total`, which the encoder adds), help, value.
fn counters(m: &Metrics) -> [(&'static str, &'static str, &AtomicU64); 10] {
    [
        (
            "hush_envelopes_accepted",
            "Envelopes durably queued, one per recipient device",
            &m.envelopes_accepted,
        ),
        ("hush_envelopes_delivered", "Envelopes written to a recipient socket", &m.envelopes_delivered),
        ("hush_envelopes_acked", "Envelopes acknowledged and deleted", &m.envelopes_acked),
        ("hush_sends_refused", "Send frames refused", &m.sends_refused),
        ("hush_slow_consumers", "Connections closed for not reading fast enough", &m.slow_consumers),
        ("hush_logins", "Successful logins", &m.logins),
        ("hush_login_failures", "Failed logins", &m.login_failures),
        ("hush_bad_frames", "Client frames that did not decode", &m.bad_frames),
        ("hush_prekey_bundles", "Device pre-key bundles handed out", &m.prekey_bundles_served),
        (
            "hush_prekey_fetches_limited",
            "Pre-key fetches refused by the rate limit",
            &m.prekey_fetches_limited,
        ),
    ]
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        for (name, help, v) in counters(m) {
            let e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            Counter(Metrics::get(v)).encode(e)?;
        }
        let gauges = [
            (
                "hush_connections",
                "Authenticated WebSocket connections open now",
                Metrics::get(&m.connections),
            ),
            ("hush_queue_depth", "Envelopes queued in the store", self.queue_depth),
        ];
        for (name, help, v) in gauges {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            e.encode_gauge(&v)?;
        }
        let per_area = [
            (
                "hush_actor_failures",
                "Actor failures (panics, handler errors) per supervision area",
                &m.actor_failures,
            ),
            ("hush_actor_restarts", "Actors restarted by their supervisor, per area", &m.actor_restarts),
        ];
        for (name, help, counts) in per_area {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (area, c) in Area::ALL.iter().zip(counts.iter()) {
                let labels = [("area", area.name())];
                Counter(Metrics::get(c)).encode(e.encode_family(&labels)?)?;
            }
        }
        self.encode_commits(&mut encoder)
    }
}

impl NodeCollector {
    /// The store's group commits: jobs carried, and the commit latency histogram.
    fn encode_commits(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.commits;
        let e = encoder.encode_descriptor(
            "hush_store_commit_jobs",
            "Write jobs carried by group commits",
            None,
            MetricType::Counter,
        )?;
        Counter(s.jobs).encode(e)?;
        // The store counts cumulatively; the encoder wants each bucket's own count.
        let mut buckets = Vec::with_capacity(COMMIT_BUCKETS_US.len() + 1);
        let mut below = 0;
        for (i, b) in COMMIT_BUCKETS_US.iter().enumerate() {
            let c = s.buckets.get(i).copied().unwrap_or(below);
            buckets.push((*b as f64 / 1e6, c.saturating_sub(below)));
            below = c;
        }
        let all = s.buckets.get(COMMIT_BUCKETS_US.len()).copied().unwrap_or(below);
        buckets.push((f64::INFINITY, all.saturating_sub(below)));
        let mut e = encoder.encode_descriptor(
            "hush_store_commit",
            "Latency of one group commit of the store",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        e.encode_histogram::<NoLabelSet>(s.sum_us as f64 / 1e6, s.commits, &buckets, None)
    }
}

/// A counter's value at scrape time.
struct Counter(u64);

impl Counter {
    fn encode(&self, mut e: prometheus_client::encoding::MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        e.encode_counter::<NoLabelSet, u64, u64>(&self.0, None)
    }
}
