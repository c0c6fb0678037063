//! HTTP routes. Every route is declared with `utoipa::path`, and [`ApiDoc`] lists them all, so
//! `/openapi.json` is generated from this file and a test checks it against the router.

use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use hush_actors::accounts;
use hush_actors::accounts::Authed;
use hush_actors::control::{
    ControlActor, CreateUser, ListUsers, RemoveDevice, RevokeSessions, SetSessionPolicy,
};
use hush_actors::groups;
use hush_actors::hub::Hub;
use hush_actors::keys;
use hush_actors::login::{self, ClientInfo};
use hush_actors::metrics::Metrics;
use hush_actors::sessions::Initiator;
use hush_protocol::api::ChangePasswordRequest;
use hush_protocol::api::{AddMembersRequest, CreateGroupRequest, GroupInfo, GroupList};
use hush_protocol::api::{AuditEntry, AuditPage, Revoked, SessionInfo, SessionList, SessionPolicy};
use hush_protocol::api::{
    BackupCodes, Enforced, MfaChallenge, MfaCodeRequest, MfaLevel, MfaMethod, MfaPolicy, MfaState, MfaStatus,
    MfaVerified, MfaVerifyRequest, Role, SessionMfa, TotpEnrollment, TrustedDevice, TrustedDeviceList,
    UserMfaStatus, UserMfaStatusList,
};
use hush_protocol::api::{
    CreateUserRequest, DeviceInfo, DeviceList, ErrorBody, LoginRequest, LoginResponse, UserInfo, UserList,
};
use hush_protocol::api::{
    DevicePreKeys, KeyCounts, PreKey, PreKeyResponse, RateLimitedBody, SignedPreKey, UploadKeysRequest,
};
use hush_protocol::ids::{DeviceId, GroupId, TenantId, UserId};
use hush_protocol::limits::MAX_TEXT_BYTES;
use hush_protocol::wire::Payload;
use hush_store::{AuditQuery, DeviceSet, SessionRecord, COMMIT_BUCKETS_US};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::apidoc::CommonResponses;
use crate::auth::{Admin, AnySession, PasswordSession, User};
use crate::error::ApiError;

/// The OpenAPI document of the node.
#[derive(OpenApi)]
#[openapi(
    info(title = "Hush node API", description = "Accounts, devices and administration of a Hush node. Chat traffic uses the WebSocket at /v1/ws (see docs/protocol.md)."),
    paths(login, logout, change_password, admin_unlock_user, my_devices, user_devices, create_user, list_users, healthz, readyz, metrics, websocket,
        remove_device, my_sessions, revoke_others, revoke_all, revoke_mine, admin_user_sessions, admin_revoke_user,
        admin_active_sessions, admin_revoke_active, admin_revoke_session, admin_audit, get_session_policy,
        put_session_policy, upload_keys, key_counts, fetch_user_keys, fetch_device_keys, create_group, my_groups, get_group, add_group_members, remove_group_member,
        crate::mfa_routes::totp_enroll, crate::mfa_routes::totp_confirm, crate::mfa_routes::totp_disable,
        crate::mfa_routes::backup_regenerate, crate::mfa_routes::challenge, crate::mfa_routes::verify,
        crate::mfa_routes::backup, crate::mfa_routes::status, crate::mfa_routes::trusted_devices,
        crate::mfa_routes::revoke_trusted_device, crate::mfa_routes::get_policy, crate::mfa_routes::put_policy,
        crate::mfa_routes::users_status, crate::mfa_routes::enforce_user, crate::mfa_routes::enforce_all,
        crate::mfa_routes::reset_user),
    components(schemas(LoginRequest, LoginResponse, ChangePasswordRequest, ErrorBody, DeviceList, DeviceInfo, CreateUserRequest, UserInfo, UserList,
        SessionInfo, SessionList, Revoked, AuditEntry, AuditPage, SessionPolicy, SessionMfa, MfaState, MfaMethod,
        MfaLevel, Role, MfaChallenge, TotpEnrollment, MfaCodeRequest, BackupCodes, MfaVerifyRequest, MfaVerified,
        MfaStatus, TrustedDevice, TrustedDeviceList, MfaPolicy, UserMfaStatus, UserMfaStatusList, Enforced,
        hush_protocol::otp::Algorithm, UploadKeysRequest, SignedPreKey, PreKey, KeyCounts, PreKeyResponse,
        DevicePreKeys, RateLimitedBody, CreateGroupRequest, GroupInfo, GroupList, AddMembersRequest)),
    modifiers(&BearerAuth, &CommonResponses)
)]
pub struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Registers every route of the node.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi))
        .service(
            crate::mfa_routes::configure(web::scope("/v1"))
                .route("/login", web::post().to(login))
                .route("/logout", web::post().to(logout))
                .route("/account/password", web::post().to(change_password))
                .route("/admin/users/{user}/unlock", web::post().to(admin_unlock_user))
                .route("/devices", web::get().to(my_devices))
                .route("/users/{user}/devices", web::get().to(user_devices))
                .route("/admin/users", web::post().to(create_user))
                .route("/admin/users", web::get().to(list_users))
                .route("/devices/{id}", web::delete().to(remove_device))
                .route("/sessions", web::get().to(my_sessions))
                .route("/sessions/others", web::delete().to(revoke_others))
                .route("/sessions/all", web::delete().to(revoke_all))
                .route("/sessions/{id}", web::delete().to(revoke_mine))
                .route("/admin/users/{user}/sessions", web::get().to(admin_user_sessions))
                .route("/admin/users/{user}/sessions", web::delete().to(admin_revoke_user))
                .route("/admin/sessions/active", web::get().to(admin_active_sessions))
                .route("/admin/sessions/active", web::delete().to(admin_revoke_active))
                .route("/admin/sessions/{id}", web::delete().to(admin_revoke_session))
                .route("/admin/audit", web::get().to(admin_audit))
                .route("/admin/tenant/sessions", web::get().to(get_session_policy))
                .route("/admin/tenant/sessions", web::put().to(put_session_policy))
                .service(
                    web::resource("/keys")
                        .app_data(web::JsonConfig::default().limit(MAX_KEYS_BODY).error_handler(|e, _| {
                            ApiError::BadRequest(format!("invalid JSON body: {e}")).into()
                        }))
                        .route(web::put().to(upload_keys))
                        .route(web::get().to(key_counts))
                        .default_service(web::to(crate::fallback::unmatched)),
                )
                .route("/keys/{user}", web::get().to(fetch_user_keys))
                .route("/keys/{user}/{device}", web::get().to(fetch_device_keys))
                .route("/groups", web::post().to(create_group))
                .route("/groups", web::get().to(my_groups))
                .route("/groups/{id}", web::get().to(get_group))
                .route("/groups/{id}/members", web::post().to(add_group_members))
                .route("/groups/{id}/members/{user}", web::delete().to(remove_group_member))
                .route("/ws", web::get().to(crate::ws::websocket)),
        );
}

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
async fn create_group(
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
async fn my_groups(hub: web::Data<Hub>, User(me): User) -> Result<web::Json<GroupList>, ApiError> {
    Ok(web::Json(groups::list(&hub, me.tenant(), me.user()).await?))
}

/// Reads a group (members and tenant administrators; anyone else gets 404).
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, body = GroupInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_group(
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
async fn add_group_members(
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
async fn remove_group_member(
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

fn client_info(req: &HttpRequest) -> ClientInfo {
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
        (status = 429, description = "`rate_limited` (too many failed attempts for this account or from this address) or `account_locked`; nothing was checked. Retry-After header", body = RateLimitedBody),
    ))]
async fn login(
    hub: web::Data<Hub>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<web::Json<LoginResponse>, ApiError> {
    Ok(web::Json(login::login(&hub, body.into_inner(), client_info(&req)).await?))
}

/// Ends the calling session; its live socket receives `LoggedOut` and closes with 4401.
#[utoipa::path(post, path = "/v1/logout", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "Logged out"), (status = 401, description = "Not authenticated", body = ErrorBody)))]
async fn logout(
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    AnySession(me): AnySession,
) -> Result<HttpResponse, ApiError> {
    revoke(&control, &me, &req, vec![me.session.id.clone()], "logout").await?;
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
async fn change_password(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    PasswordSession(me): PasswordSession,
    body: web::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let others =
        accounts::change_password(&hub, &me, &body.current_password, &body.new_password, ip_of(&req)).await?;
    if !others.is_empty() {
        revoke(&control, &me, &req, others, "password_changed").await?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Clears a user's failed logins and lock (tenant administrators, own tenant only); audited
/// (`account.unlock`).
#[utoipa::path(post, path = "/v1/admin/users/{user}/unlock", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 204, description = "Unlocked (also when it was not locked)"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, description = "No such user in this tenant", body = ErrorBody)))]
async fn admin_unlock_user(
    hub: web::Data<Hub>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = parse_user(path.into_inner())?;
    user_in_tenant(&hub, me.tenant(), &user).await?;
    // Lifting a lock lets password guessing at that account resume: an action on another
    // principal's access.
    hush_actors::mfa::require_step_up_for_others(&hub, &me, "account.unlock", ip_of(&req)).await?;
    hush_actors::throttle::unlock(&hub, me.tenant(), &user).await;
    let target = Some(format!("user:{user}"));
    hush_actors::sessions::audit(&hub, me.tenant(), &initiator(&me, &req), "account.unlock", target, "ok")
        .await;
    tracing::info!(tenant = %me.tenant(), user = %user, "account unlocked");
    Ok(HttpResponse::NoContent().finish())
}

fn initiator(me: &Authed, req: &HttpRequest) -> Initiator {
    Initiator {
        user: Some(me.user().clone()),
        session: Some(me.session.id.clone()),
        ip: req.peer_addr().map(|a| a.ip().to_string()),
    }
}

async fn revoke(
    control: &Addr<ControlActor>,
    me: &Authed,
    req: &HttpRequest,
    ids: Vec<String>,
    reason: &str,
) -> Result<usize, ApiError> {
    let msg =
        RevokeSessions { tenant: me.tenant().clone(), ids, reason: reason.into(), actor: initiator(me, req) };
    Ok(control.send(msg).await??)
}

/// Public views of sessions of one tenant, with their last activity and expiry under the
/// tenant's policy (which depends on whether each session's user is an administrator).
async fn session_infos(
    hub: &Hub,
    list: &[SessionRecord],
    current: &str,
) -> Result<Vec<SessionInfo>, ApiError> {
    let Some(first) = list.first() else { return Ok(Vec::new()) };
    let tenant = &first.device.tenant;
    let settings = hub.tenants.settings(&*hub.store, tenant).await?;
    let mut admins = std::collections::HashMap::new();
    for s in list {
        if !admins.contains_key(&s.device.user) {
            let admin = hub.store.get_user(tenant, &s.device.user).await?.is_some_and(|u| u.admin);
            admins.insert(s.device.user.clone(), admin);
        }
    }
    let seen =
        futures_util::future::join_all(list.iter().map(|s| hub.tenants.last_seen(&*hub.store, s, None)))
            .await;
    let ids: Vec<String> = list.iter().map(|s| s.id.clone()).collect();
    let mfa = hush_actors::mfa::session_views(hub, &ids).await;
    let mut out = Vec::with_capacity(list.len());
    for ((s, last_seen), mfa) in list.iter().zip(seen).zip(mfa) {
        let last_seen = last_seen?;
        let admin = admins.get(&s.device.user).copied().unwrap_or(false);
        out.push(SessionInfo {
            id: s.id.clone(),
            user: s.device.user.clone(),
            device: s.device.device,
            created_ms: s.created_ms,
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
            current: s.id == current,
            last_seen_ms: Some(last_seen),
            expires_ms: hush_actors::tenant::expires_at(&settings.sessions, admin, s, last_seen),
            mfa,
        });
    }
    Ok(out)
}

fn ip_of(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

async fn active_of(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<Vec<SessionRecord>, ApiError> {
    Ok(hub.store.sessions_of_user(tenant, user).await?.into_iter().filter(|s| s.active()).collect())
}

fn parse_user(s: String) -> Result<UserId, ApiError> {
    UserId::new(s).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Lists the caller's active sessions (every device), the current one marked.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody)))]
async fn my_sessions(hub: web::Data<Hub>, User(me): User) -> Result<web::Json<SessionList>, ApiError> {
    let list = active_of(&hub, me.tenant(), me.user()).await?;
    let sessions = session_infos(&hub, &list, &me.session.id).await?;
    Ok(web::Json(SessionList { sessions, next: None }))
}

/// Revokes one of the caller's own sessions (404 for anyone else's). Another session than the
/// calling one needs a step-up if the caller has MFA or must have it.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody),
        (status = 403, description = "`step_up_required`", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_mine(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    User(me): User,
    path: web::Path<String>,
) -> Result<web::Json<Revoked>, ApiError> {
    let id = path.into_inner();
    let mine = active_of(&hub, me.tenant(), me.user()).await?;
    if !mine.iter().any(|s| s.id == id) {
        return Err(ApiError::NotFound);
    }
    if id != me.session.id {
        hush_actors::mfa::require_step_up(&hub, &me, "session.revoke", ip_of(&req)).await?;
    }
    let n = revoke(&control, &me, &req, vec![id], "revoked_by_user").await?;
    Ok(web::Json(Revoked { revoked: n }))
}

/// Revokes every session of the caller but the current one (step-up needed if the caller has
/// MFA or must have it).
#[utoipa::path(delete, path = "/v1/sessions/others", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody),
        (status = 403, description = "`step_up_required`", body = ErrorBody)))]
async fn revoke_others(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    User(me): User,
) -> Result<web::Json<Revoked>, ApiError> {
    hush_actors::mfa::require_step_up(&hub, &me, "session.revoke_others", ip_of(&req)).await?;
    let ids = active_of(&hub, me.tenant(), me.user())
        .await?
        .into_iter()
        .filter(|s| s.id != me.session.id)
        .map(|s| s.id)
        .collect();
    let n = revoke(&control, &me, &req, ids, "revoked_by_user").await?;
    Ok(web::Json(Revoked { revoked: n }))
}

/// Revokes every session of the caller, the current one included.
#[utoipa::path(delete, path = "/v1/sessions/all", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody)))]
async fn revoke_all(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    User(me): User,
) -> Result<web::Json<Revoked>, ApiError> {
    let ids = active_of(&hub, me.tenant(), me.user()).await?.into_iter().map(|s| s.id).collect();
    let n = revoke(&control, &me, &req, ids, "revoked_by_user").await?;
    // Every session gone: no device stays trusted to skip MFA.
    hush_actors::mfa::drop_trust_of_user(&hub, me.tenant(), me.user()).await?;
    Ok(web::Json(Revoked { revoked: n }))
}

/// Removes a device: the primary device removes a linked one, and any device may remove itself
/// (the primary only as the user's only device: a login that did not complete unlinks its new
/// device). The device's sessions, queue and sockets go with it.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = u32, Path, description = "Device id")),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Another device, not called from the primary device", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_device(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    PasswordSession(me): PasswordSession,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let device: DeviceId = path
        .into_inner()
        .parse()
        .map_err(|e: hush_protocol::ids::IdError| ApiError::BadRequest(e.to_string()))?;
    let own = me.session.device.device == device;
    // A session that must still set a new password may only unlink its own device (a one-time
    // login whose password change failed leaves nothing behind).
    if !own {
        crate::auth::password_gate(&me)?;
    }
    if me.session.device.device != DeviceId::PRIMARY && !own {
        return Err(ApiError::Forbidden);
    }
    let msg = RemoveDevice {
        tenant: me.tenant().clone(),
        user: me.user().clone(),
        device,
        own,
        actor: initiator(&me, &req),
    };
    control.send(msg).await??;
    hush_actors::mfa::drop_trust(&hub, me.tenant(), me.user(), device).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn user_in_tenant(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<(), ApiError> {
    // Another tenant's user answers exactly like a user that does not exist.
    hub.store.get_user(tenant, user).await?.map(|_| ()).ok_or(ApiError::NotFound)
}

/// Lists a user's active sessions (tenant administrators, own tenant only).
#[utoipa::path(get, path = "/v1/admin/users/{user}/sessions", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn admin_user_sessions(
    hub: web::Data<Hub>,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<SessionList>, ApiError> {
    let user = parse_user(path.into_inner())?;
    user_in_tenant(&hub, me.tenant(), &user).await?;
    let list = active_of(&hub, me.tenant(), &user).await?;
    Ok(web::Json(SessionList { sessions: session_infos(&hub, &list, &me.session.id).await?, next: None }))
}

/// Revokes every session of a user (tenant administrators, own tenant only; step-up needed).
#[utoipa::path(delete, path = "/v1/admin/users/{user}/sessions", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn admin_revoke_user(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<Revoked>, ApiError> {
    let user = parse_user(path.into_inner())?;
    user_in_tenant(&hub, me.tenant(), &user).await?;
    hush_actors::mfa::require_step_up_for_others(&hub, &me, "admin.revoke_user", ip_of(&req)).await?;
    let ids = active_of(&hub, me.tenant(), &user).await?.into_iter().map(|s| s.id).collect();
    let n = revoke(&control, &me, &req, ids, "revoked_by_admin").await?;
    hush_actors::mfa::drop_trust_of_user(&hub, me.tenant(), &user).await?;
    Ok(web::Json(Revoked { revoked: n }))
}

/// Revokes one session of the tenant (tenant administrators, step-up needed; another tenant's
/// session is 404).
#[utoipa::path(delete, path = "/v1/admin/sessions/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn admin_revoke_session(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<Revoked>, ApiError> {
    let id = path.into_inner();
    match hub.store.session_by_id(&id).await? {
        Some(s) if s.device.tenant == *me.tenant() && s.active() => {}
        _ => return Err(ApiError::NotFound),
    }
    hush_actors::mfa::require_step_up_for_others(&hub, &me, "admin.revoke_session", ip_of(&req)).await?;
    let n = revoke(&control, &me, &req, vec![id], "revoked_by_admin").await?;
    Ok(web::Json(Revoked { revoked: n }))
}

/// Query of paginated session lists.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SessionPage {
    /// Start after this session id.
    after: Option<String>,
    /// Page size (1..=500, default 100).
    limit: Option<usize>,
}

/// Lists the tenant's active sessions by id, paginated (tenant administrators).
#[utoipa::path(get, path = "/v1/admin/sessions/active", tag = "admin", security(("bearer" = [])), params(SessionPage),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn admin_active_sessions(
    hub: web::Data<Hub>,
    Admin(me): Admin,
    q: web::Query<SessionPage>,
) -> Result<web::Json<SessionList>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, hush_actors::limits::MAX_PAGE);
    let page = hub.store.active_sessions(me.tenant(), q.after.as_deref(), limit).await?;
    let next = (page.len() == limit).then(|| page.last().map(|s| s.id.clone())).flatten();
    Ok(web::Json(SessionList { sessions: session_infos(&hub, &page, &me.session.id).await?, next }))
}

/// Revokes every active session of the tenant but the caller's ("log everyone out"; step-up
/// needed).
#[utoipa::path(delete, path = "/v1/admin/sessions/active", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody)))]
async fn admin_revoke_active(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    Admin(me): Admin,
) -> Result<web::Json<Revoked>, ApiError> {
    hush_actors::mfa::require_step_up_for_others(&hub, &me, "admin.revoke_active", ip_of(&req)).await?;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page =
            hub.store.active_sessions(me.tenant(), after.as_deref(), hush_actors::limits::MAX_PAGE).await?;
        let full = page.len() == hush_actors::limits::MAX_PAGE;
        after = page.last().map(|s| s.id.clone());
        ids.extend(page.into_iter().map(|s| s.id).filter(|id| *id != me.session.id));
        if !full {
            break;
        }
    }
    tracing::info!(
        sessions = ids.len(),
        listed_ms = started.elapsed().as_millis(),
        "revoking every active session of the tenant"
    );
    let n = revoke(&control, &me, &req, ids, "revoked_by_admin").await?;
    // Everyone logged out: every trusted device of the tenant must pass MFA again.
    hush_actors::mfa::drop_trust_of_tenant(&hub, me.tenant()).await?;
    Ok(web::Json(Revoked { revoked: n }))
}

/// Query of `GET /v1/admin/audit`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
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
async fn admin_audit(
    hub: web::Data<Hub>,
    Admin(me): Admin,
    q: web::Query<AuditParams>,
) -> Result<web::Json<AuditPage>, ApiError> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100).clamp(1, hush_actors::limits::MAX_PAGE);
    let actor = q.actor.map(parse_user).transpose()?;
    let query = AuditQuery { actor, action: q.action, before: q.before, limit };
    let recs = hub.store.audit(me.tenant(), &query).await?;
    let next = (recs.len() == limit).then(|| recs.last().map(|r| r.id)).flatten();
    let records = recs
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at_ms: r.at_ms,
            actor: r.actor.map(|a| a.to_string()),
            actor_session: r.actor_session,
            action: r.action,
            target: r.target,
            ip: r.ip,
            result: r.result,
        })
        .collect();
    Ok(web::Json(AuditPage { records, next }))
}

/// Reads the tenant's session lifetimes (tenant administrators).
#[utoipa::path(get, path = "/v1/admin/tenant/sessions", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = SessionPolicy), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_session_policy(
    hub: web::Data<Hub>,
    Admin(me): Admin,
) -> Result<web::Json<SessionPolicy>, ApiError> {
    Ok(web::Json(hub.tenants.settings(&*hub.store, me.tenant()).await?.sessions.clone()))
}

/// Replaces the tenant's session lifetimes (tenant administrators, step-up needed: longer
/// lifetimes keep a stolen token alive); audited. Each limit is 1 second to 1 year, or null for
/// none.
#[utoipa::path(put, path = "/v1/admin/tenant/sessions", tag = "admin", security(("bearer" = [])),
    request_body = SessionPolicy,
    responses((status = 200, body = SessionPolicy), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody)))]
async fn put_session_policy(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    Admin(me): Admin,
    req: HttpRequest,
    body: web::Json<SessionPolicy>,
) -> Result<web::Json<SessionPolicy>, ApiError> {
    hush_actors::mfa::require_step_up_for_others(&hub, &me, "tenant.sessions", ip_of(&req)).await?;
    let msg = SetSessionPolicy {
        tenant: me.tenant().clone(),
        policy: body.into_inner(),
        actor: initiator(&me, &req),
    };
    Ok(web::Json(control.send(msg).await??))
}

async fn device_list(
    hub: &Hub,
    tenant: &TenantId,
    user: UserId,
    set: &DeviceSet,
) -> Result<DeviceList, ApiError> {
    let mut identities = keys::identities(hub, tenant, &user).await?;
    Ok(DeviceList {
        devices: set
            .devices
            .iter()
            .map(|d| DeviceInfo {
                id: d.id,
                registration_id: d.registration_id,
                name: d.name.clone(),
                created_ms: d.created_ms,
                identity_key: identities.remove(&d.id).map(Payload),
            })
            .collect(),
        user,
    })
}

/// Largest body of `PUT /v1/keys`: 100 Kyber keys (1569 bytes and a signature each) in base64,
/// 100 EC keys and the signed keys, with room to spare.
pub const MAX_KEYS_BODY: usize = 512 * 1024;

/// Uploads the calling device's pre-keys (signed EC pre-key, EC one-time keys, Kyber one-time
/// keys, Kyber last-resort key). Every signature is checked against the device's identity key;
/// one bad key refuses the upload and nothing is stored.
#[utoipa::path(put, path = "/v1/keys", tag = "keys", security(("bearer" = [])), request_body = UploadKeysRequest,
    responses((status = 200, description = "Stored; the one-time keys now held", body = KeyCounts),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "invalid_signature, invalid_key, invalid_key_id or too_many_keys; nothing stored", body = ErrorBody)))]
async fn upload_keys(
    hub: web::Data<Hub>,
    User(me): User,
    body: web::Json<UploadKeysRequest>,
) -> Result<web::Json<KeyCounts>, ApiError> {
    Ok(web::Json(keys::upload(&hub, &me.session.device, &body).await?))
}

/// How many one-time pre-keys the calling device has left.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = KeyCounts), (status = 401, body = ErrorBody)))]
async fn key_counts(hub: web::Data<Hub>, User(me): User) -> Result<web::Json<KeyCounts>, ApiError> {
    Ok(web::Json(keys::counts(&hub, &me.session.device).await?))
}

/// Fetches the pre-keys of every device of a user of the caller's tenant, consuming one EC and
/// one Kyber one-time key per device (one rate-limit token per device).
#[utoipa::path(get, path = "/v1/keys/{user}", tag = "keys", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = PreKeyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No such user, or no device with keys", body = ErrorBody),
        (status = 429, description = "Rate limited (Retry-After header)", body = RateLimitedBody)))]
async fn fetch_user_keys(
    hub: web::Data<Hub>,
    User(me): User,
    path: web::Path<String>,
) -> Result<web::Json<PreKeyResponse>, ApiError> {
    let user = parse_user(path.into_inner())?;
    Ok(web::Json(keys::fetch(&hub, &me.session.device, &user, None).await?))
}

/// Fetches the pre-keys of one device, consuming one EC and one Kyber one-time key (the
/// last-resort key when no Kyber one-time key is left). Rate limited per (caller's device,
/// target device).
#[utoipa::path(get, path = "/v1/keys/{user}/{device}", tag = "keys", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name"), ("device" = u32, Path, description = "Device id")),
    responses((status = 200, body = PreKeyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No such user or device, or it has no keys", body = ErrorBody),
        (status = 429, description = "Rate limited (Retry-After header)", body = RateLimitedBody)))]
async fn fetch_device_keys(
    hub: web::Data<Hub>,
    User(me): User,
    path: web::Path<(String, String)>,
) -> Result<web::Json<PreKeyResponse>, ApiError> {
    let (user, device) = path.into_inner();
    let user = parse_user(user)?;
    let device: DeviceId =
        device.parse().map_err(|e: hush_protocol::ids::IdError| ApiError::BadRequest(e.to_string()))?;
    Ok(web::Json(keys::fetch(&hub, &me.session.device, &user, Some(device)).await?))
}

/// Lists the caller's own devices.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = DeviceList), (status = 401, body = ErrorBody)))]
async fn my_devices(hub: web::Data<Hub>, User(me): User) -> Result<web::Json<DeviceList>, ApiError> {
    let set = hub.directory.get(me.tenant(), me.user()).await?;
    Ok(web::Json(device_list(&hub, me.tenant(), me.user().clone(), &set).await?))
}

/// Lists the devices of a user of the caller's tenant (to address one ciphertext to each).
#[utoipa::path(get, path = "/v1/users/{user}/devices", tag = "devices", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = DeviceList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, description = "No such user in this tenant", body = ErrorBody)))]
async fn user_devices(
    hub: web::Data<Hub>,
    User(me): User,
    path: web::Path<String>,
) -> Result<web::Json<DeviceList>, ApiError> {
    let user = UserId::new(path.into_inner()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let set = hub.directory.get(me.tenant(), &user).await?;
    if set.devices.is_empty() {
        return Err(ApiError::NotFound);
    }
    // Another user sees only the devices a session can be started with (those with keys);
    // the user's own listing shows every device.
    if user != *me.user() {
        let mut keyless = Vec::new();
        for d in &set.devices {
            let addr = hush_protocol::ids::DeviceAddress::new(me.tenant().clone(), user.clone(), d.id);
            if !keys::has_keys(&hub, &addr).await? {
                keyless.push(d.id);
            }
        }
        let mut listed = hush_store::DeviceSet::clone(&set);
        listed.devices.retain(|d| !keyless.contains(&d.id));
        return Ok(web::Json(device_list(&hub, me.tenant(), user, &listed).await?));
    }
    Ok(web::Json(device_list(&hub, me.tenant(), user, &set).await?))
}

/// Creates a user in the administrator's tenant. Creating an administrator (`admin: true`)
/// needs a step-up; creating a member does not.
#[utoipa::path(post, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = UserInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden` (not an administrator); for `admin: true`, `step_up_required` (no TOTP or backup verification by this session within the step-up window) or `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody)))]
async fn create_user(
    hub: web::Data<Hub>,
    control: web::Data<Addr<ControlActor>>,
    req: HttpRequest,
    Admin(me): Admin,
    body: web::Json<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    if request.admin {
        hush_actors::mfa::require_step_up_for_others(&hub, &me, "user.create_admin", ip_of(&req)).await?;
    }
    let msg = CreateUser { tenant: me.tenant().clone(), request, actor: initiator(&me, &req) };
    let info = control.send(msg).await??;
    Ok(HttpResponse::Created().json(info))
}

/// Query of `GET /v1/admin/users`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// Start after this user name.
    after: Option<String>,
    /// Page size (1..=500, default 100).
    limit: Option<usize>,
}

/// Lists the users of the administrator's tenant, by name.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])), params(Page),
    responses((status = 200, body = UserList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_users(
    control: web::Data<Addr<ControlActor>>,
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

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 while the store takes writes (`status` is `degraded` while the bus to the
/// other nodes is down: local delivery and accepting go on), 503 while it cannot write, with
/// the cause in `store` (`disk_full`, `read_only`, `permission_denied`, `corrupted`, `locked`,
/// `io_error`, `closed`): the node then refuses sends with `unavailable` and recovers by itself
/// once the cause is gone.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready or degraded"), (status = 503, description = "The store cannot write now; `store` names the cause")))]
async fn readyz(hub: web::Data<Hub>) -> HttpResponse {
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
    match hub.store.health().await {
        hush_store::StoreHealth::Ok => {
            HttpResponse::Ok().json(body(if bus_ok { "ready" } else { "degraded" }, "ok"))
        }
        hush_store::StoreHealth::Failing(f) => {
            hush_store::failure::log_failure(&hush_store::StoreError::Unavailable(f.clone()), "not ready");
            HttpResponse::ServiceUnavailable().json(body("unavailable", f.cause.as_str()))
        }
    }
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Metrics", content_type = "text/plain")))]
async fn metrics(hub: web::Data<Hub>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(render_metrics(&hub))
}

/// Renders the node's counters in the Prometheus text format.
pub fn render_metrics(hub: &Arc<Hub>) -> String {
    use std::fmt::Write;
    let m = &hub.metrics;
    let mut out = String::with_capacity(2048);
    let mut put = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    put(
        "hush_connections",
        "gauge",
        "Authenticated WebSocket connections open now.",
        Metrics::get(&m.connections),
    );
    put(
        "hush_envelopes_accepted_total",
        "counter",
        "Envelopes durably queued, one per recipient device.",
        Metrics::get(&m.envelopes_accepted),
    );
    put(
        "hush_envelopes_delivered_total",
        "counter",
        "Envelopes written to a recipient socket.",
        Metrics::get(&m.envelopes_delivered),
    );
    put(
        "hush_envelopes_acked_total",
        "counter",
        "Envelopes acknowledged and deleted.",
        Metrics::get(&m.envelopes_acked),
    );
    put("hush_sends_refused_total", "counter", "Send frames refused.", Metrics::get(&m.sends_refused));
    put(
        "hush_slow_consumers_total",
        "counter",
        "Connections closed for not reading fast enough.",
        Metrics::get(&m.slow_consumers),
    );
    put("hush_logins_total", "counter", "Successful logins.", Metrics::get(&m.logins));
    put("hush_login_failures_total", "counter", "Failed logins.", Metrics::get(&m.login_failures));
    put(
        "hush_bad_frames_total",
        "counter",
        "Client frames that did not decode.",
        Metrics::get(&m.bad_frames),
    );
    put(
        "hush_prekey_bundles_total",
        "counter",
        "Device pre-key bundles handed out.",
        Metrics::get(&m.prekey_bundles_served),
    );
    put(
        "hush_prekey_fetches_limited_total",
        "counter",
        "Pre-key fetches refused by the rate limit.",
        Metrics::get(&m.prekey_fetches_limited),
    );
    put("hush_queue_depth", "gauge", "Envelopes queued in the store.", hub.store.depth());
    let s = hub.store.commit_stats();
    put("hush_store_commit_jobs_total", "counter", "Write jobs carried by group commits.", s.jobs);
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
    out
}

/// The OpenAPI 3 document of this API.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Opens the chat WebSocket. Authenticate with `Authorization: Bearer <token>` or with an `Auth`
/// frame first; name subprotocol `hush.postcard` for binary frames or `hush.json` for text.
#[utoipa::path(get, path = "/v1/ws", tag = "chat",
    responses((status = 101, description = "Switching protocols; frames as in docs/protocol.md"), (status = 400, description = "invalid_request: not a WebSocket upgrade request", body = ErrorBody), (status = 401, description = "Bad token in the Authorization header, or mfa_required", body = ErrorBody), (status = 403, description = "password_change_required: the session must set a new password first", body = ErrorBody), (status = 503, description = "Connection limit reached", body = ErrorBody)))]
#[allow(dead_code)]
fn websocket() {}
