//! Tenant administration: a user's sessions, the tenant's active sessions, the audit log, the
//! tenant's session lifetimes, and unlocking a user's logins. Each route parses its request,
//! sends one command to the control actor and maps the answer.

use actix_web::{web, HttpRequest, HttpResponse};
use hush_actors::control::{
    ActiveSessions, Audit, ClusterStatus, Control, GetSessionPolicy, RevokeActive, RevokeSession,
    RevokeUserSessions, SetSessionPolicy, UnlockUser, UserSessions,
};
use hush_actors::limits::MAX_PAGE;
use hush_protocol::api::{AuditPage, ClusterView, ErrorBody, Revoked, SessionList, SessionPolicy};
use hush_store::AuditQuery;
use serde::Deserialize;

use super::{parse_user, who};
use crate::auth::Admin;
use crate::error::ApiError;

#[utoipa::path(post, path = "/v1/admin/users/{user}/unlock", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 204, description = "Unlocked (also when it was not locked)"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, description = "No such user in this tenant", body = ErrorBody)))]
pub async fn admin_unlock_user(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = parse_user(path.into_inner())?;
    control.send(UnlockUser { admin: who(me, &req), user }).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Lists a user's active sessions (tenant administrators, own tenant only).
#[utoipa::path(get, path = "/v1/admin/users/{user}/sessions", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_user_sessions(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<SessionList>, ApiError> {
    let user = parse_user(path.into_inner())?;
    Ok(web::Json(control.send(UserSessions { admin: who(me, &req), user }).await??))
}

/// Revokes every session of a user (tenant administrators, own tenant only; step-up needed).
#[utoipa::path(delete, path = "/v1/admin/users/{user}/sessions", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_revoke_user(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<Revoked>, ApiError> {
    let user = parse_user(path.into_inner())?;
    let revoked = control.send(RevokeUserSessions { admin: who(me, &req), user }).await??;
    Ok(web::Json(Revoked { revoked }))
}

/// Revokes one session of the tenant (tenant administrators, step-up needed; another tenant's
/// session is 404).
#[utoipa::path(delete, path = "/v1/admin/sessions/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_revoke_session(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<Revoked>, ApiError> {
    let id = path.into_inner();
    let revoked = control.send(RevokeSession { admin: who(me, &req), id }).await??;
    Ok(web::Json(Revoked { revoked }))
}

/// Query of paginated session lists.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionPage {
    /// Start after this session id.
    after: Option<String>,
    /// Page size (1..=500, default 100).
    limit: Option<usize>,
}

/// Lists the tenant's active sessions by id, paginated (tenant administrators).
#[utoipa::path(get, path = "/v1/admin/sessions/active", tag = "admin", security(("bearer" = [])), params(SessionPage),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn admin_active_sessions(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    q: web::Query<SessionPage>,
) -> Result<web::Json<SessionList>, ApiError> {
    let q = q.into_inner();
    let msg = ActiveSessions { admin: who(me, &req), after: q.after, limit: q.limit.unwrap_or(100) };
    Ok(web::Json(control.send(msg).await??))
}

/// Revokes every active session of the tenant but the caller's ("log everyone out"; step-up
/// needed).
#[utoipa::path(delete, path = "/v1/admin/sessions/active", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody)))]
pub async fn admin_revoke_active(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
) -> Result<web::Json<Revoked>, ApiError> {
    let revoked = control.send(RevokeActive { admin: who(me, &req) }).await??;
    Ok(web::Json(Revoked { revoked }))
}

/// Query of `GET /v1/admin/audit`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this actor (user name).
    actor: Option<String>,
    /// Only this action (`login`, `logout`, `session.revoke`, `device.remove`, `user.create`,
    /// `password.change`, `password.reset`, `account.lock`, `account.unlock`).
    action: Option<String>,
    /// Only records older than this id (the `next` of the previous page).
    before: Option<u64>,
    /// Page size (1..=500, default 100).
    limit: Option<usize>,
}

/// Reads the tenant's audit log, newest first (tenant administrators).
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn admin_audit(
    control: web::Data<Control>,
    Admin(me): Admin,
    q: web::Query<AuditParams>,
) -> Result<web::Json<AuditPage>, ApiError> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let actor = q.actor.map(parse_user).transpose()?;
    let query = AuditQuery { actor, action: q.action, before: q.before, limit };
    Ok(web::Json(control.send(Audit { tenant: me.tenant().clone(), query }).await??))
}

/// Reads the tenant's session lifetimes (tenant administrators).
#[utoipa::path(get, path = "/v1/admin/tenant/sessions", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = SessionPolicy), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_session_policy(
    control: web::Data<Control>,
    Admin(me): Admin,
) -> Result<web::Json<SessionPolicy>, ApiError> {
    Ok(web::Json(control.send(GetSessionPolicy { tenant: me.tenant().clone() }).await??))
}

/// Replaces the tenant's session lifetimes (tenant administrators, step-up needed: longer
/// lifetimes keep a stolen token alive); audited. Each limit is 1 second to 1 year, or null for
/// none.
#[utoipa::path(put, path = "/v1/admin/tenant/sessions", tag = "admin", security(("bearer" = [])),
    request_body = SessionPolicy,
    responses((status = 200, body = SessionPolicy), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody)))]
pub async fn put_session_policy(
    control: web::Data<Control>,
    Admin(me): Admin,
    req: HttpRequest,
    body: web::Json<SessionPolicy>,
) -> Result<web::Json<SessionPolicy>, ApiError> {
    let msg = SetSessionPolicy { admin: who(me, &req), policy: body.into_inner() };
    Ok(web::Json(control.send(msg).await??))
}

/// The nodes of the cluster: each live node's id, last heartbeat, version, start time, open
/// connections, store state and bus link, as its heartbeats last reported them (tenant
/// administrators; the answering node's own row is current).
#[utoipa::path(get, path = "/v1/admin/cluster", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ClusterView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn admin_cluster(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
) -> Result<web::Json<ClusterView>, ApiError> {
    Ok(web::Json(control.send(ClusterStatus { admin: who(me, &req) }).await??))
}
