//! Users of the administrator's tenant: creation and listing.

use actix_web::{web, HttpRequest, HttpResponse};
use hush_actors::control::{Control, CreateUser, ListUsers};
use hush_protocol::api::{CreateUserRequest, ErrorBody, UserInfo, UserList};
use hush_protocol::ids::UserId;
use serde::Deserialize;

use super::who;
use crate::auth::Admin;
use crate::error::ApiError;

/// Creates a user in the administrator's tenant. Creating an administrator (`admin: true`)
/// needs a step-up; creating a member does not.
#[utoipa::path(post, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = UserInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden` (not an administrator); for `admin: true`, `step_up_required` (no TOTP or backup verification by this session within the step-up window) or `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody)))]
pub async fn create_user(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    body: web::Json<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let info = control.send(CreateUser { admin: who(me, &req), request: body.into_inner() }).await??;
    Ok(HttpResponse::Created().json(info))
}

/// Query of `GET /v1/admin/users`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Start after this user name.
    after: Option<String>,
    /// Page size (1..=500, default 100).
    limit: Option<usize>,
}

/// Lists the users of the administrator's tenant, by name.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])), params(Page),
    responses((status = 200, body = UserList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    control: web::Data<Control>,
    Admin(me): Admin,
    q: web::Query<Page>,
) -> Result<web::Json<UserList>, ApiError> {
    let q = q.into_inner();
    let after = q.after.map(UserId::new).transpose().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let list = control
        .send(ListUsers { tenant: me.tenant().clone(), after, limit: q.limit.unwrap_or(100) })
        .await??;
    Ok(web::Json(list))
}
