//! Operations: liveness, readiness, Prometheus metrics, the OpenAPI document, and the
//! WebSocket's entry in it.

use actix_web::{web, HttpResponse};
use hush_actors::health;
use hush_actors::hub::Hub;
use hush_protocol::api::ErrorBody;
use hush_store::StoreHealth;
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

/// Prometheus metrics (OpenMetrics text format 1.0.0): counters, gauges and latency histograms.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text")))]
pub async fn metrics(hub: web::Data<Hub>) -> HttpResponse {
    HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(crate::metrics::render(&hub))
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
