//! `POST /v1/test/faults`: arms a fault in an actor (tests only).
//!
//! Exists only in builds with the `fault-injection` feature (the test suite's), and is served
//! only when the node was started with the hidden `--fault-injection` flag (which other builds
//! do not have); it takes an administrator's token. See `hush_actors::faults`.

use actix_web::web;

/// Registers the route when compiled in and `enabled`.
pub fn configure(cfg: &mut web::ServiceConfig, enabled: bool) {
    #[cfg(feature = "fault-injection")]
    if enabled {
        cfg.route("/v1/test/faults", web::post().to(arm));
    }
    let _ = (cfg, enabled);
}

#[cfg(feature = "fault-injection")]
async fn arm(
    _admin: crate::auth::Admin,
    fault: web::Json<hush_actors::faults::Fault>,
) -> actix_web::HttpResponse {
    hush_actors::faults::arm(fault.into_inner());
    actix_web::HttpResponse::NoContent().finish()
}
