//! Operations: liveness, readiness, Prometheus metrics, the OpenAPI document, and the
//! WebSocket's entry in it.

use std::fmt::Write;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use hush_actors::health;
use hush_actors::hub::Hub;
use hush_actors::metrics::Metrics;
use hush_protocol::api::ErrorBody;
use hush_store::{CommitStats, StoreHealth, COMMIT_BUCKETS_US};
use utoipa::OpenApi;

use super::ApiDoc;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 while the store takes writes (`status` is `degraded` while the bus to the
/// other nodes is down: local delivery and accepting go on), 503 while it cannot write, with
/// the cause in `store` (`disk_full`, `read_only`, `permission_denied`, `corrupted`, `locked`,
/// `io_error`, `closed`): the node then refuses sends with `unavailable` and recovers by itself
/// once the cause is gone.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready or degraded"), (status = 503, description = "The store cannot write now; `store` names the cause")))]
pub async fn readyz(hub: web::Data<Hub>) -> HttpResponse {
    let bus_ok = hub.bus.healthy();
    let body = |status: &str, store: &str| {
        serde_json::json!({
            "status": status,
            "store": store,
            "bus": hub.bus.kind(),
            "bus_healthy": bus_ok,
            "node": hub.bus.node_id(),
        })
    };
    match health::store_health(&hub).await {
        StoreHealth::Ok => HttpResponse::Ok().json(body(if bus_ok { "ready" } else { "degraded" }, "ok")),
        StoreHealth::Failing(f) => {
            hush_store::failure::log_failure(&hush_store::StoreError::Unavailable(f.clone()), "not ready");
            HttpResponse::ServiceUnavailable().json(body("unavailable", f.cause.as_str()))
        }
    }
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Metrics", content_type = "text/plain")))]
pub async fn metrics(hub: web::Data<Hub>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(render_metrics(&hub))
}

/// One metric in the Prometheus text format: its help, its type and its value.
fn put(out: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
}

/// Renders the node's counters in the Prometheus text format.
pub fn render_metrics(hub: &Arc<Hub>) -> String {
    let mut out = String::with_capacity(2048);
    put_counters(&mut out, &hub.metrics);
    put(&mut out, "hush_queue_depth", "gauge", "Envelopes queued in the store.", health::queue_depth(hub));
    put_commits(&mut out, &health::commit_stats(hub));
    actor_counts(&mut out, &hub.metrics);
    out
}

/// The node's own counters and gauges.
fn put_counters(out: &mut String, m: &Metrics) {
    let rows: [(&str, &str, &str, &std::sync::atomic::AtomicU64); 11] = [
        ("hush_connections", "gauge", "Authenticated WebSocket connections open now.", &m.connections),
        (
            "hush_envelopes_accepted_total",
            "counter",
            "Envelopes durably queued, one per recipient device.",
            &m.envelopes_accepted,
        ),
        (
            "hush_envelopes_delivered_total",
            "counter",
            "Envelopes written to a recipient socket.",
            &m.envelopes_delivered,
        ),
        ("hush_envelopes_acked_total", "counter", "Envelopes acknowledged and deleted.", &m.envelopes_acked),
        ("hush_sends_refused_total", "counter", "Send frames refused.", &m.sends_refused),
        (
            "hush_slow_consumers_total",
            "counter",
            "Connections closed for not reading fast enough.",
            &m.slow_consumers,
        ),
        ("hush_logins_total", "counter", "Successful logins.", &m.logins),
        ("hush_login_failures_total", "counter", "Failed logins.", &m.login_failures),
        ("hush_bad_frames_total", "counter", "Client frames that did not decode.", &m.bad_frames),
        (
            "hush_prekey_bundles_total",
            "counter",
            "Device pre-key bundles handed out.",
            &m.prekey_bundles_served,
        ),
        (
            "hush_prekey_fetches_limited_total",
            "counter",
            "Pre-key fetches refused by the rate limit.",
            &m.prekey_fetches_limited,
        ),
    ];
    for (name, kind, help, v) in rows {
        put(out, name, kind, help, Metrics::get(v));
    }
}

/// The store's group commits: jobs carried, and the latency histogram.
fn put_commits(out: &mut String, s: &CommitStats) {
    put(out, "hush_store_commit_jobs_total", "counter", "Write jobs carried by group commits.", s.jobs);
    let _ = writeln!(out, "# HELP hush_store_commit_seconds Latency of one group commit.\n# TYPE hush_store_commit_seconds histogram");
    for (i, b) in COMMIT_BUCKETS_US.iter().enumerate() {
        let _ =
            writeln!(out, "hush_store_commit_seconds_bucket{{le=\"{}\"}} {}", *b as f64 / 1e6, s.buckets[i]);
    }
    let _ = writeln!(
        out,
        "hush_store_commit_seconds_bucket{{le=\"+Inf\"}} {}",
        s.buckets[COMMIT_BUCKETS_US.len()]
    );
    let _ = writeln!(out, "hush_store_commit_seconds_sum {}", s.sum_us as f64 / 1e6);
    let _ = writeln!(out, "hush_store_commit_seconds_count {}", s.commits);
}

/// Failures and supervisor restarts of actors, per supervision area.
fn actor_counts(out: &mut String, m: &Metrics) {
    let series = [
        (
            "hush_actor_failures_total",
            "Actor failures (panics, handler errors) per supervision area.",
            &m.actor_failures,
        ),
        ("hush_actor_restarts_total", "Actors restarted by their supervisor, per area.", &m.actor_restarts),
    ];
    for (name, help, counts) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (area, c) in hush_actors::supervise::Area::ALL.iter().zip(counts.iter()) {
            let _ = writeln!(out, "{name}{{area=\"{}\"}} {}", area.name(), Metrics::get(c));
        }
    }
}

/// The OpenAPI 3 document of this API.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Opens the chat WebSocket. Authenticate with `Authorization: Bearer <token>` or with an `Auth`
/// frame first; name subprotocol `hush.postcard` for binary frames or `hush.json` for text.
#[utoipa::path(get, path = "/v1/ws", tag = "chat",
    responses((status = 101, description = "Switching protocols; frames as in docs/protocol.md"), (status = 400, description = "invalid_request: not a WebSocket upgrade request", body = ErrorBody), (status = 401, description = "Bad token in the Authorization header, or mfa_required", body = ErrorBody), (status = 403, description = "password_change_required: the session must set a new password first", body = ErrorBody), (status = 503, description = "Connection limit reached", body = ErrorBody)))]
#[allow(dead_code)]
pub fn websocket() {}
