//! Login, logout and the password change.

use actix_web::{web, HttpRequest, HttpResponse};
use hush_actors::audit::RevocationReason;
use hush_actors::control::Control;
use hush_actors::hub::Hub;
use hush_actors::login::{self, ClientInfo};
use hush_protocol::api::{ChangePasswordRequest, ErrorBody, LoginRequest, LoginResponse, RateLimitedBody};
use hush_protocol::limits::MAX_TEXT_BYTES;

use super::{ip_of, revoke};
use crate::auth::{AnySession, PasswordSession};
use crate::error::ApiError;

/// The client's address and user agent, for the session record.
pub(crate) fn client_info(req: &HttpRequest) -> ClientInfo {
    let ua = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(MAX_TEXT_BYTES / 4).collect());
    ClientInfo { ip: req.peer_addr().map(|a| a.ip().to_string()), user_agent: ua }
}

/// Logs in with a password; registers a new device unless `device.id` names an existing one.
#[utoipa::path(post, path = "/v1/login", tag = "accounts", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Unknown tenant or user, or wrong password (one answer for all); `one_time_password_used`: a one-time password that already served a login", body = ErrorBody),
        (status = 404, description = "The named device does not exist", body = ErrorBody),
        (status = 409, description = "The account already has its maximum number of devices", body = ErrorBody),
        (status = 422, description = "`missing_kyber_last_resort`: `device.keys` registers a device's keys without a signed Kyber last-resort key; nothing was stored (no device registered)", body = ErrorBody),
        (status = 429, description = "`rate_limited` (too many failed attempts for this account or from this address) or `account_locked`; nothing was checked. Retry-After header", body = RateLimitedBody),
    ))]
pub async fn login(
    hub: web::Data<Hub>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<web::Json<LoginResponse>, ApiError> {
    Ok(web::Json(login::login(&hub, body.into_inner(), client_info(&req)).await?))
}

/// Ends the calling session; its live socket receives `LoggedOut` and closes with 4401.
#[utoipa::path(post, path = "/v1/logout", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "Logged out"), (status = 401, description = "Not authenticated", body = ErrorBody)))]
pub async fn logout(
    control: web::Data<Control>,
    req: HttpRequest,
    AnySession(me): AnySession,
) -> Result<HttpResponse, ApiError> {
    revoke(&control, &me, &req, vec![me.session.id.clone()], RevocationReason::Logout).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sets a new password (any user; after MFA if it applies). A session that logged in with a
/// one-time password becomes a normal session; the user's other sessions are revoked
/// (`password_changed`). Audited. Wrong current passwords are throttled like logins.
#[utoipa::path(post, path = "/v1/account/password", tag = "accounts", security(("bearer" = [])), request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed"),
        (status = 400, description = "The new password is too short, too long, or the current one", body = ErrorBody),
        (status = 401, description = "Not authenticated, or MFA pending", body = ErrorBody),
        (status = 403, description = "`wrong_password`: the current password is wrong", body = ErrorBody),
        (status = 429, description = "`rate_limited` or `account_locked` (Retry-After header)", body = RateLimitedBody)))]
pub async fn change_password(
    hub: web::Data<Hub>,
    control: web::Data<Control>,
    req: HttpRequest,
    PasswordSession(me): PasswordSession,
    body: web::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let others = hush_actors::accounts::change_password(
        &hub,
        &me,
        &body.current_password,
        &body.new_password,
        ip_of(&req),
    )
    .await?;
    if !others.is_empty() {
        revoke(&control, &me, &req, others, RevocationReason::PasswordChanged).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}
