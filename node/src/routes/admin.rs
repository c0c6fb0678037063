//! Tenant administration: a user's sessions, the tenant's active sessions, the audit log, the
//! tenant's session lifetimes, and unlocking a user's logins.

use actix_web::{web, HttpRequest, HttpResponse};
use hush_actors::accounts;
use hush_actors::control::{Control, SetSessionPolicy};
use hush_actors::hub::Hub;
use hush_actors::limits::MAX_PAGE;
use hush_actors::{mfa, views};
use hush_protocol::api::{AuditPage, ErrorBody, Revoked, SessionList, SessionPolicy};
use hush_store::AuditQuery;
use serde::Deserialize;

use super::{initiator, ip_of, parse_user, revoke};
use crate::auth::Admin;
use crate::error::ApiError;

/// Clears a user's failed logins and lock (tenant administrators, own tenant only); audited
/// (`account.unlock`).
#[utoipa::path(post, path = "/v1/admin/users/{user}/unlock", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 204, description = "Unlocked (also when it was not locked)"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, description = "No such user in this tenant", body = ErrorBody)))]
pub async fn admin_unlock_user(
    hub: web::Data<Hub>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = parse_user(path.into_inner())?;
    accounts::user_in_tenant(&hub, me.tenant(), &user).await?;
    // Lifting a lock lets password guessing at that account resume: an action on another
    // principal's access.
    mfa::require_step_up_for_others(&hub, &me, "account.unlock", ip_of(&req)).await?;
    accounts::unlock_user(&hub, me.tenant(), &user, &initiator(&me, &req)).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Lists a user's active sessions (tenant administrators, own tenant only).
#[utoipa::path(get, path = "/v1/admin/users/{user}/sessions", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_user_sessions(
    hub: web::Data<Hub>,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<SessionList>, ApiError> {
    let user = parse_user(path.into_inner())?;
    accounts::user_in_tenant(&hub, me.tenant(), &user).await?;
    Ok(web::Json(views::user_sessions(&hub, me.tenant(), &user, &me.session.id).await?))
}

/// Revokes every session of a user (tenant administrators, own tenant only; step-up needed).
#[utoipa::path(delete, path = "/v1/admin/users/{user}/sessions", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_revoke_user(
    hub: web::Data<Hub>,
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<Revoked>, ApiError> {
    let user = parse_user(path.into_inner())?;
    accounts::user_in_tenant(&hub, me.tenant(), &user).await?;
    mfa::require_step_up_for_others(&hub, &me, "admin.revoke_user", ip_of(&req)).await?;
    let ids = views::user_session_ids(&hub, me.tenant(), &user, None).await?;
    let n = revoke(&control, &me, &req, ids, "revoked_by_admin").await?;
    mfa::drop_trust_of_user(&hub, me.tenant(), &user).await?;
    Ok(web::Json(Revoked { revoked: n }))
}

/// Revokes one session of the tenant (tenant administrators, step-up needed; another tenant's
/// session is 404).
#[utoipa::path(delete, path = "/v1/admin/sessions/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_revoke_session(
    hub: web::Data<Hub>,
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<Revoked>, ApiError> {
    let id = path.into_inner();
    views::tenant_active_session(&hub, me.tenant(), &id).await?;
    mfa::require_step_up_for_others(&hub, &me, "admin.revoke_session", ip_of(&req)).await?;
    let n = revoke(&control, &me, &req, vec![id], "revoked_by_admin").await?;
    Ok(web::Json(Revoked { revoked: n }))
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
    hub: web::Data<Hub>,
    Admin(me): Admin,
    q: web::Query<SessionPage>,
) -> Result<web::Json<SessionList>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let list =
        views::active_sessions_page(&hub, me.tenant(), q.after.as_deref(), limit, &me.session.id).await?;
    Ok(web::Json(list))
}

/// Revokes every active session of the tenant but the caller's ("log everyone out"; step-up
/// needed).
#[utoipa::path(delete, path = "/v1/admin/sessions/active", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody)))]
pub async fn admin_revoke_active(
    hub: web::Data<Hub>,
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
) -> Result<web::Json<Revoked>, ApiError> {
    mfa::require_step_up_for_others(&hub, &me, "admin.revoke_active", ip_of(&req)).await?;
    let ids = views::tenant_session_ids(&hub, me.tenant(), &me.session.id).await?;
    let n = revoke(&control, &me, &req, ids, "revoked_by_admin").await?;
    // Everyone logged out: every trusted device of the tenant must pass MFA again.
    mfa::drop_trust_of_tenant(&hub, me.tenant()).await?;
    Ok(web::Json(Revoked { revoked: n }))
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
    hub: web::Data<Hub>,
    Admin(me): Admin,
    q: web::Query<AuditParams>,
) -> Result<web::Json<AuditPage>, ApiError> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let actor = q.actor.map(parse_user).transpose()?;
    let query = AuditQuery { actor, action: q.action, before: q.before, limit };
    Ok(web::Json(views::audit_page(&hub, me.tenant(), &query).await?))
}

/// Reads the tenant's session lifetimes (tenant administrators).
#[utoipa::path(get, path = "/v1/admin/tenant/sessions", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = SessionPolicy), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_session_policy(
    hub: web::Data<Hub>,
    Admin(me): Admin,
) -> Result<web::Json<SessionPolicy>, ApiError> {
    Ok(web::Json(views::session_policy(&hub, me.tenant()).await?))
}

/// Replaces the tenant's session lifetimes (tenant administrators, step-up needed: longer
/// lifetimes keep a stolen token alive); audited. Each limit is 1 second to 1 year, or null for
/// none.
#[utoipa::path(put, path = "/v1/admin/tenant/sessions", tag = "admin", security(("bearer" = [])),
    request_body = SessionPolicy,
    responses((status = 200, body = SessionPolicy), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody)))]
pub async fn put_session_policy(
    hub: web::Data<Hub>,
    control: web::Data<Control>,
    Admin(me): Admin,
    req: HttpRequest,
    body: web::Json<SessionPolicy>,
) -> Result<web::Json<SessionPolicy>, ApiError> {
    mfa::require_step_up_for_others(&hub, &me, "tenant.sessions", ip_of(&req)).await?;
    let msg = SetSessionPolicy {
        tenant: me.tenant().clone(),
        policy: body.into_inner(),
        actor: initiator(&me, &req),
    };
    Ok(web::Json(control.send(msg).await??))
}
