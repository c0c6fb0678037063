//! Groups: creation, listing, reading, members.

use actix_web::{web, HttpRequest, HttpResponse};
use hush_actors::accounts::Authed;
use hush_actors::groups;
use hush_actors::hub::Hub;
use hush_protocol::api::{AddMembersRequest, CreateGroupRequest, ErrorBody, GroupInfo, GroupList};
use hush_protocol::ids::GroupId;

use super::{initiator, parse_user};
use crate::auth::User;
use crate::error::ApiError;

fn caller(me: &Authed, req: &HttpRequest) -> groups::Caller {
    groups::Caller {
        device: me.session.device.clone(),
        tenant_admin: me.admin,
        initiator: initiator(me, req),
    }
}

fn parse_group(s: String) -> Result<GroupId, ApiError> {
    // A malformed id names no group: the same answer as an unknown one.
    GroupId::new(s).map_err(|_| ApiError::NotFound)
}

/// Creates a group; the caller becomes its first administrator and a member. Its members get
/// `GroupChanged`.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", security(("bearer" = [])), request_body = CreateGroupRequest,
    responses((status = 201, body = GroupInfo), (status = 400, description = "Bad name, unknown user, too many members", body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn create_group(
    hub: web::Data<Hub>,
    req: HttpRequest,
    User(me): User,
    body: web::Json<CreateGroupRequest>,
) -> Result<HttpResponse, ApiError> {
    let info = groups::create(&hub.into_inner(), &caller(&me, &req), body.into_inner()).await?;
    Ok(HttpResponse::Created().json(info))
}

/// Lists the caller's groups.
#[utoipa::path(get, path = "/v1/groups", tag = "groups", security(("bearer" = [])),
    responses((status = 200, body = GroupList), (status = 401, body = ErrorBody)))]
pub async fn my_groups(hub: web::Data<Hub>, User(me): User) -> Result<web::Json<GroupList>, ApiError> {
    Ok(web::Json(groups::list(&hub, me.tenant(), me.user()).await?))
}

/// Reads a group (members and tenant administrators; anyone else gets 404).
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, body = GroupInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_group(
    hub: web::Data<Hub>,
    req: HttpRequest,
    User(me): User,
    path: web::Path<String>,
) -> Result<web::Json<GroupInfo>, ApiError> {
    let id = parse_group(path.into_inner())?;
    Ok(web::Json(groups::get(&hub, &caller(&me, &req), &id).await?))
}

/// Adds members (group administrators and tenant administrators). Existing members' devices get
/// `DistributeSenderKey`, every member `GroupChanged`.
#[utoipa::path(post, path = "/v1/groups/{id}/members", tag = "groups", security(("bearer" = [])), request_body = AddMembersRequest,
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, body = GroupInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "A member without the right", body = ErrorBody), (status = 404, description = "No such group, or not a member", body = ErrorBody)))]
pub async fn add_group_members(
    hub: web::Data<Hub>,
    req: HttpRequest,
    User(me): User,
    path: web::Path<String>,
    body: web::Json<AddMembersRequest>,
) -> Result<web::Json<GroupInfo>, ApiError> {
    let id = parse_group(path.into_inner())?;
    let info =
        groups::add_members(&hub.into_inner(), &caller(&me, &req), &id, body.into_inner().users).await?;
    Ok(web::Json(info))
}

/// Removes a member (group administrators, tenant administrators, or the member itself to
/// leave). The epoch is bumped and the remaining members' devices get `RotateSenderKey`.
#[utoipa::path(delete, path = "/v1/groups/{id}/members/{user}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id"), ("user" = String, Path, description = "The member")),
    responses((status = 200, body = GroupInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "A member without the right", body = ErrorBody), (status = 404, description = "No such group or member, or not a member", body = ErrorBody)))]
pub async fn remove_group_member(
    hub: web::Data<Hub>,
    req: HttpRequest,
    User(me): User,
    path: web::Path<(String, String)>,
) -> Result<web::Json<GroupInfo>, ApiError> {
    let (id, user) = path.into_inner();
    let id = parse_group(id)?;
    let user = parse_user(user)?;
    Ok(web::Json(groups::remove_member(&hub.into_inner(), &caller(&me, &req), &id, &user).await?))
}
