//! The caller's own sessions: listing and revocation.

use actix_web::{web, HttpRequest};
use hush_actors::control::{Control, RevokeAllOwnSessions, RevokeOtherSessions, RevokeOwnSession};
use hush_actors::hub::Hub;
use hush_actors::views;
use hush_protocol::api::{ErrorBody, Revoked, SessionList};

use super::who;
use crate::auth::User;
use crate::error::ApiError;

/// Lists the caller's active sessions (every device), the current one marked.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody)))]
pub async fn my_sessions(hub: web::Data<Hub>, User(me): User) -> Result<web::Json<SessionList>, ApiError> {
    Ok(web::Json(views::user_sessions(&hub, me.tenant(), me.user(), &me.session.id).await?))
}

/// Revokes one of the caller's own sessions (404 for anyone else's). Another session than the
/// calling one needs a step-up if the caller has MFA or must have it.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody),
        (status = 403, description = "`step_up_required`", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_mine(
    control: web::Data<Control>,
    req: HttpRequest,
    User(me): User,
    path: web::Path<String>,
) -> Result<web::Json<Revoked>, ApiError> {
    let revoked = control.send(RevokeOwnSession { by: who(me, &req), id: path.into_inner() }).await??;
    Ok(web::Json(Revoked { revoked }))
}

/// Revokes every session of the caller but the current one (step-up needed if the caller has
/// MFA or must have it).
#[utoipa::path(delete, path = "/v1/sessions/others", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody),
        (status = 403, description = "`step_up_required`", body = ErrorBody)))]
pub async fn revoke_others(
    control: web::Data<Control>,
    req: HttpRequest,
    User(me): User,
) -> Result<web::Json<Revoked>, ApiError> {
    let revoked = control.send(RevokeOtherSessions { by: who(me, &req) }).await??;
    Ok(web::Json(Revoked { revoked }))
}

/// Revokes every session of the caller, the current one included.
#[utoipa::path(delete, path = "/v1/sessions/all", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody)))]
pub async fn revoke_all(
    control: web::Data<Control>,
    req: HttpRequest,
    User(me): User,
) -> Result<web::Json<Revoked>, ApiError> {
    let revoked = control.send(RevokeAllOwnSessions { by: who(me, &req) }).await??;
    Ok(web::Json(Revoked { revoked }))
}
