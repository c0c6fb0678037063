//! HTTP routes, one file per area. Every route is declared with `utoipa::path`, and [`ApiDoc`]
//! lists them all, so `/openapi.json` is generated from these files and a test checks it
//! against the router ([`configure`]).
//!
//! Routes parse, make one call into the actor layer (`hush_actors`) and map the error; they do
//! not read the store.
//!
//! - `account`: login, logout, password change.
//! - `sessions`: the caller's sessions.
//! - `devices`: device listings and removal.
//! - `users`: user creation and listing (administrators).
//! - `admin`: tenant administration: sessions, audit, session lifetimes, unlocking a user.
//! - `keys`: pre-keys.
//! - `groups`: groups and their members.
//! - `mfa`: `/v1/mfa/...` and the tenant MFA administration.
//! - `ops`: health, readiness, metrics, the OpenAPI document, the WebSocket's entry.

use actix_web::{web, HttpRequest};
use hush_actors::accounts::Authed;
use hush_actors::audit::RevocationReason;
use hush_actors::control::{Control, RevokeSessions};
use hush_actors::sessions::Initiator;
use hush_protocol::api::ChangePasswordRequest;
use hush_protocol::api::{AddMembersRequest, CreateGroupRequest, GroupInfo, GroupList};
use hush_protocol::api::{
    AuditEntry, AuditPage, ClusterView, NodeInfo, Revoked, SessionInfo, SessionList, SessionPolicy,
};
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
use hush_protocol::ids::UserId;
use utoipa::OpenApi;

use crate::apidoc::CommonResponses;
use crate::error::ApiError;

mod account;
mod admin;
mod devices;
mod groups;
mod keys;
mod mfa;
mod ops;
mod sessions;
mod users;

pub(crate) use account::client_info;
pub use keys::MAX_KEYS_BODY;

/// The OpenAPI document of the node.
#[derive(OpenApi)]
#[openapi(
    info(title = "Hush node API", description = "Accounts, devices and administration of a Hush node. Chat traffic uses the WebSocket at /v1/ws (see docs/protocol.md)."),
    paths(account::login, account::logout, account::change_password, admin::admin_unlock_user, devices::my_devices, devices::user_devices,
        users::create_user, users::list_users, ops::healthz, ops::readyz, ops::metrics, ops::websocket,
        devices::remove_device, sessions::my_sessions, sessions::revoke_others, sessions::revoke_all, sessions::revoke_mine,
        admin::admin_user_sessions, admin::admin_revoke_user, admin::admin_active_sessions, admin::admin_revoke_active,
        admin::admin_revoke_session, admin::admin_audit, admin::admin_cluster, admin::get_session_policy, admin::put_session_policy,
        keys::upload_keys, keys::key_counts, keys::fetch_user_keys, keys::fetch_device_keys,
        groups::create_group, groups::my_groups, groups::get_group, groups::add_group_members, groups::remove_group_member,
        mfa::totp_enroll, mfa::totp_confirm, mfa::totp_disable,
        mfa::backup_regenerate, mfa::challenge, mfa::verify,
        mfa::backup, mfa::status, mfa::trusted_devices,
        mfa::revoke_trusted_device, mfa::get_policy, mfa::put_policy,
        mfa::users_status, mfa::enforce_user, mfa::enforce_all,
        mfa::reset_user),
    components(schemas(LoginRequest, LoginResponse, ChangePasswordRequest, ErrorBody, DeviceList, DeviceInfo, CreateUserRequest, UserInfo, UserList,
        SessionInfo, SessionList, ClusterView, NodeInfo, Revoked, AuditEntry, AuditPage, SessionPolicy, SessionMfa, MfaState, MfaMethod,
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
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/openapi.json", web::get().to(ops::openapi))
        .service(
            // `/ws` first: routes are tried in order, and a pattern with a `{segment}` is a
            // regex match (3% of a connection's CPU when `/ws` came last; issue 15).
            mfa::configure(web::scope("/v1").route("/ws", web::get().to(crate::ws::websocket)))
                .route("/login", web::post().to(account::login))
                .route("/logout", web::post().to(account::logout))
                .route("/account/password", web::post().to(account::change_password))
                .route("/admin/users/{user}/unlock", web::post().to(admin::admin_unlock_user))
                .route("/devices", web::get().to(devices::my_devices))
                .route("/users/{user}/devices", web::get().to(devices::user_devices))
                .route("/admin/users", web::post().to(users::create_user))
                .route("/admin/users", web::get().to(users::list_users))
                .route("/devices/{id}", web::delete().to(devices::remove_device))
                .route("/sessions", web::get().to(sessions::my_sessions))
                .route("/sessions/others", web::delete().to(sessions::revoke_others))
                .route("/sessions/all", web::delete().to(sessions::revoke_all))
                .route("/sessions/{id}", web::delete().to(sessions::revoke_mine))
                .route("/admin/users/{user}/sessions", web::get().to(admin::admin_user_sessions))
                .route("/admin/users/{user}/sessions", web::delete().to(admin::admin_revoke_user))
                .route("/admin/sessions/active", web::get().to(admin::admin_active_sessions))
                .route("/admin/sessions/active", web::delete().to(admin::admin_revoke_active))
                .route("/admin/sessions/{id}", web::delete().to(admin::admin_revoke_session))
                .route("/admin/audit", web::get().to(admin::admin_audit))
                .route("/admin/cluster", web::get().to(admin::admin_cluster))
                .route("/admin/tenant/sessions", web::get().to(admin::get_session_policy))
                .route("/admin/tenant/sessions", web::put().to(admin::put_session_policy))
                .service(
                    web::resource("/keys")
                        .app_data(web::JsonConfig::default().limit(MAX_KEYS_BODY).error_handler(|e, _| {
                            ApiError::BadRequest(format!("invalid JSON body: {e}")).into()
                        }))
                        .route(web::put().to(keys::upload_keys))
                        .route(web::get().to(keys::key_counts))
                        .default_service(web::to(crate::fallback::unmatched)),
                )
                .route("/keys/{user}", web::get().to(keys::fetch_user_keys))
                .route("/keys/{user}/{device}", web::get().to(keys::fetch_device_keys))
                .route("/groups", web::post().to(groups::create_group))
                .route("/groups", web::get().to(groups::my_groups))
                .route("/groups/{id}", web::get().to(groups::get_group))
                .route("/groups/{id}/members", web::post().to(groups::add_group_members))
                .route("/groups/{id}/members/{user}", web::delete().to(groups::remove_group_member)),
        );
}

/// The caller as the audit log names them.
fn initiator(me: &Authed, req: &HttpRequest) -> Initiator {
    Initiator {
        user: Some(me.user().clone()),
        session: Some(me.session.id.clone()),
        ip: req.peer_addr().map(|a| a.ip().to_string()),
    }
}

/// The administrator behind a control command.
fn who(me: Authed, req: &HttpRequest) -> hush_actors::control::Who {
    hush_actors::control::Who { who: me, ip: ip_of(req) }
}

/// The client's address.
fn ip_of(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

fn parse_user(s: String) -> Result<UserId, ApiError> {
    UserId::new(s).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Ends the caller's own session through the control actor (the console's sign-out).
pub(crate) async fn revoke_own(
    control: &Control,
    me: &Authed,
    req: &HttpRequest,
    reason: RevocationReason,
) -> Result<usize, ApiError> {
    revoke(control, me, req, vec![me.session.id.clone()], reason).await
}

/// Revokes sessions of the caller's tenant through the control actor; returns how many.
async fn revoke(
    control: &Control,
    me: &Authed,
    req: &HttpRequest,
    ids: Vec<String>,
    reason: RevocationReason,
) -> Result<usize, ApiError> {
    let msg = RevokeSessions { tenant: me.tenant().clone(), ids, reason, actor: initiator(me, req) };
    Ok(control.send(msg).await??)
}
