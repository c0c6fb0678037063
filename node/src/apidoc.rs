//! Answers every route of a kind can give, added to the OpenAPI document in one place so that
//! no operation's list misses them (schemathesis, run by the suite, checks the document
//! against the node's real answers):
//!
//! - `429 too_many_connections` and `503 unavailable` on every `/v1` operation (the edge's
//!   bound per client address, a store that cannot answer);
//! - `400 invalid_request` on every operation with parameters or a body (the extractors);
//! - `408 request_timeout` on every operation with a body (the edge's body timeouts).
//!
//! An operation that documents one of these codes itself keeps its own description.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// The modifier of `routes::ApiDoc`.
pub struct CommonResponses;

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
            .build(),
    )
}

fn add(op: &mut Operation, status: &str, description: &str) {
    op.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description));
}

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/v1/");
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                let body = op.request_body.is_some();
                if body || op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add(op, "400", "invalid_request: a malformed body, path or query");
                }
                if body {
                    add(op, "408", "request_timeout: the body did not arrive in time; the connection closes");
                }
                if api {
                    add(op, "429", "too_many_connections: this address has too many unfinished requests");
                    add(op, "503", "unavailable: the store cannot answer; nothing was changed");
                }
            }
        }
    }
}
