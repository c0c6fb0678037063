//! HTTP routes of MFA (`/v1/mfa/...`) and of its tenant administration. The logic is in
//! `hush_actors::mfa` (and `hush_actors::login::verify` for answers to a challenge); these
//! handlers parse, pick the extractor (a session with MFA pending may reach only the routes
//! taking [`AnySession`]) and render the QR code.

use actix_web::{web, HttpRequest, HttpResponse};
use hush_actors::accounts::AccountError;
use hush_actors::control::{
    Control, EnforceMfa, EnforceMfaAll, GetMfaPolicy, ResetMfa, SetMfaPolicy, UsersMfaStatus,
};
use hush_actors::hub::Hub;
use hush_actors::login;
use hush_actors::mfa::{self, Factor};
use hush_actors::throttle;
use hush_protocol::api::{
    BackupCodes, Enforced, ErrorBody, MfaChallenge, MfaCodeRequest, MfaPolicy, MfaStatus, MfaVerified,
    MfaVerifyRequest, Secret, TotpEnrollment, TrustedDeviceList, UserMfaStatusList,
};
use hush_protocol::ids::{DeviceId, UserId};
use hush_protocol::otp::TOTP_PERIOD_SECS;
use serde::Deserialize;

use super::ip_of as ip;
use crate::auth::{Admin, AnySession, User};
use crate::error::ApiError;

/// Reports an MFA code attempt to the client address's throttle (the factor's own lock counts
/// the account's failures).
async fn settle(hub: &Hub, me: &hush_actors::accounts::Authed, guard: throttle::Guard, ok: bool) {
    if ok {
        guard.succeeded(hub).await;
    } else {
        let ip = me.session.ip.clone();
        guard.failed(hub, me.tenant(), me.user(), true, ip).await;
    }
}

/// Starts a TOTP enrolment: the secret, its `otpauth://` URI and the URI as a QR code (PNG).
/// It counts only once confirmed with a first code. Open to a session past its enrolment
/// deadline.
#[utoipa::path(post, path = "/v1/mfa/totp/enroll", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, body = TotpEnrollment), (status = 401, body = ErrorBody),
        (status = 409, description = "TOTP is already on", body = ErrorBody)))]
pub async fn totp_enroll(
    hub: web::Data<Hub>,
    req: HttpRequest,
    AnySession(me): AnySession,
) -> Result<web::Json<TotpEnrollment>, ApiError> {
    let (secret, uri, algorithm, digits) = mfa::enroll(&hub, &me, ip(&req)).await?;
    let qr = crate::qr::png_base64(&uri)?;
    Ok(web::Json(TotpEnrollment {
        secret: Secret::new(secret.to_base32()),
        otpauth_uri: Secret::new(uri),
        qr_png_base64: Secret::new(qr),
        algorithm,
        digits,
        period: TOTP_PERIOD_SECS,
    }))
}

/// Confirms the enrolment with a first code: TOTP is on, the session counts as verified, and the
/// ten backup codes are returned (only now).
#[utoipa::path(post, path = "/v1/mfa/totp/confirm", tag = "mfa", security(("bearer" = [])), request_body = MfaCodeRequest,
    responses((status = 200, body = BackupCodes), (status = 401, description = "Wrong code", body = ErrorBody),
        (status = 409, description = "Nothing to confirm, or already on", body = ErrorBody)))]
pub async fn totp_confirm(
    hub: web::Data<Hub>,
    req: HttpRequest,
    AnySession(me): AnySession,
    body: web::Json<MfaCodeRequest>,
) -> Result<web::Json<BackupCodes>, ApiError> {
    Ok(web::Json(mfa::confirm(&hub, &me, &body.code, ip(&req)).await?))
}

/// Turns TOTP off (needs a step-up): the factor, the backup codes and the trusted devices go.
#[utoipa::path(delete, path = "/v1/mfa/totp", tag = "mfa", security(("bearer" = [])),
    responses((status = 204, description = "Disabled"), (status = 401, body = ErrorBody),
        (status = 403, description = "`step_up_required` (the caller has MFA or must have it, and this session verified no code within the step-up window; confirming the enrolment counts here)", body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn totp_disable(
    hub: web::Data<Hub>,
    req: HttpRequest,
    User(me): User,
) -> Result<HttpResponse, ApiError> {
    mfa::disable(&hub, &me, ip(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new set of backup codes (needs a step-up); the previous set stops working.
#[utoipa::path(post, path = "/v1/mfa/backup/regenerate", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, body = BackupCodes), (status = 401, body = ErrorBody),
        (status = 403, description = "`step_up_required` (this session verified no code within the step-up window; confirming the enrolment counts here)", body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn backup_regenerate(
    hub: web::Data<Hub>,
    req: HttpRequest,
    User(me): User,
) -> Result<web::Json<BackupCodes>, ApiError> {
    Ok(web::Json(mfa::regenerate_backup(&hub, &me, ip(&req)).await?))
}

/// Issues a new challenge to this session: the login's (replacing the previous one) or a step-up.
#[utoipa::path(post, path = "/v1/mfa/challenge", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, body = MfaChallenge), (status = 401, body = ErrorBody), (status = 409, description = "No TOTP enrolled", body = ErrorBody)))]
pub async fn challenge(
    hub: web::Data<Hub>,
    req: HttpRequest,
    AnySession(me): AnySession,
) -> Result<web::Json<MfaChallenge>, ApiError> {
    Ok(web::Json(mfa::challenge(&hub, &me, ip(&req)).await?))
}

/// Answers this session's challenge with a TOTP code (each code works once per user).
#[utoipa::path(post, path = "/v1/mfa/verify", tag = "mfa", security(("bearer" = [])), request_body = MfaVerifyRequest,
    responses((status = 200, body = MfaVerified), (status = 401, description = "invalid_code", body = ErrorBody),
        (status = 403, description = "invalid_challenge: not this session's challenge, or expired", body = ErrorBody),
        (status = 429, description = "mfa_locked, or rate_limited (too many failed attempts from this address; Retry-After header)", body = ErrorBody)))]
pub async fn verify(
    hub: web::Data<Hub>,
    req: HttpRequest,
    AnySession(me): AnySession,
    body: web::Json<MfaVerifyRequest>,
) -> Result<web::Json<MfaVerified>, ApiError> {
    let b = body.into_inner();
    let guard = throttle::code_attempt(&hub, ip(&req).as_deref()).await.map_err(AccountError::from)?;
    let r =
        login::verify(&hub, &me, &b.challenge_id, &b.code, Factor::Totp, b.remember_device, ip(&req)).await;
    settle(&hub, &me, guard, r.is_ok()).await;
    Ok(web::Json(r?))
}

/// Answers this session's challenge with a backup code (each works once).
#[utoipa::path(post, path = "/v1/mfa/backup", tag = "mfa", security(("bearer" = [])), request_body = MfaVerifyRequest,
    responses((status = 200, body = MfaVerified), (status = 401, description = "invalid_code", body = ErrorBody),
        (status = 403, description = "invalid_challenge", body = ErrorBody), (status = 429, description = "mfa_locked, or rate_limited (too many failed attempts from this address; Retry-After header)", body = ErrorBody)))]
pub async fn backup(
    hub: web::Data<Hub>,
    req: HttpRequest,
    AnySession(me): AnySession,
    body: web::Json<MfaVerifyRequest>,
) -> Result<web::Json<MfaVerified>, ApiError> {
    let b = body.into_inner();
    let guard = throttle::code_attempt(&hub, ip(&req).as_deref()).await.map_err(AccountError::from)?;
    let r =
        login::verify(&hub, &me, &b.challenge_id, &b.code, Factor::Backup, b.remember_device, ip(&req)).await;
    settle(&hub, &me, guard, r.is_ok()).await;
    Ok(web::Json(r?))
}

/// The caller's MFA status: policy, factors, backup codes left, lock, this session's state.
#[utoipa::path(get, path = "/v1/mfa/status", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, body = MfaStatus), (status = 401, body = ErrorBody)))]
pub async fn status(
    hub: web::Data<Hub>,
    AnySession(me): AnySession,
) -> Result<web::Json<MfaStatus>, ApiError> {
    Ok(web::Json(mfa::status(&hub, &me).await?))
}

/// The caller's trusted devices.
#[utoipa::path(get, path = "/v1/mfa/trusted-devices", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, body = TrustedDeviceList), (status = 401, body = ErrorBody)))]
pub async fn trusted_devices(
    hub: web::Data<Hub>,
    User(me): User,
) -> Result<web::Json<TrustedDeviceList>, ApiError> {
    Ok(web::Json(TrustedDeviceList { devices: mfa::trusted_devices(&hub, &me).await? }))
}

/// Stops trusting one of the caller's devices.
#[utoipa::path(delete, path = "/v1/mfa/trusted-devices/{id}", tag = "mfa", security(("bearer" = [])),
    params(("id" = u32, Path, description = "Device id")),
    responses((status = 204, description = "No longer trusted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_trusted_device(
    hub: web::Data<Hub>,
    req: HttpRequest,
    User(me): User,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let device: DeviceId = path
        .into_inner()
        .parse()
        .map_err(|e: hush_protocol::ids::IdError| ApiError::BadRequest(e.to_string()))?;
    if mfa::revoke_trust(&hub, &me, device, ip(&req)).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound)
    }
}

/// The tenant's MFA policy (tenant administrators).
#[utoipa::path(get, path = "/v1/admin/tenant/mfa", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = MfaPolicy), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_policy(
    control: web::Data<Control>,
    Admin(me): Admin,
) -> Result<web::Json<MfaPolicy>, ApiError> {
    Ok(web::Json(control.send(GetMfaPolicy { tenant: me.tenant().clone() }).await??))
}

/// Replaces the tenant's MFA policy (tenant administrators, step-up needed); live sessions are
/// brought under it and their users told.
#[utoipa::path(put, path = "/v1/admin/tenant/mfa", tag = "admin", security(("bearer" = [])), request_body = MfaPolicy,
    responses((status = 200, body = MfaPolicy), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody)))]
pub async fn put_policy(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    body: web::Json<MfaPolicy>,
) -> Result<web::Json<MfaPolicy>, ApiError> {
    let msg = SetMfaPolicy { admin: super::who(me, &req), policy: body.into_inner() };
    Ok(web::Json(control.send(msg).await??))
}

/// Query of `GET /v1/admin/users/mfa-status`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserPage {
    /// Start after this user name.
    after: Option<String>,
    /// Page size (1..=500, default 100).
    limit: Option<usize>,
}

/// Every user's MFA state, by name, paginated (tenant administrators).
#[utoipa::path(get, path = "/v1/admin/users/mfa-status", tag = "admin", security(("bearer" = [])), params(UserPage),
    responses((status = 200, body = UserMfaStatusList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn users_status(
    control: web::Data<Control>,
    Admin(me): Admin,
    q: web::Query<UserPage>,
) -> Result<web::Json<UserMfaStatusList>, ApiError> {
    let q = q.into_inner();
    let after = q.after.map(UserId::new).transpose().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let msg = UsersMfaStatus { tenant: me.tenant().clone(), after, limit: q.limit.unwrap_or(100) };
    Ok(web::Json(control.send(msg).await??))
}

/// Requires MFA of one user whatever the tenant level (tenant administrators, step-up needed).
#[utoipa::path(post, path = "/v1/admin/users/{user}/mfa/enforce", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = Enforced), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enforce_user(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<web::Json<Enforced>, ApiError> {
    let user = UserId::new(path.into_inner()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(web::Json(control.send(EnforceMfa { admin: super::who(me, &req), user }).await??))
}

/// Resets a user's MFA (tenant administrators, step-up needed): factor, backup codes, lock and
/// trusted devices go; the user enrols again.
#[utoipa::path(delete, path = "/v1/admin/users/{user}/mfa", tag = "admin", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 204, description = "Reset"), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset_user(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::new(path.into_inner()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    control.send(ResetMfa { admin: super::who(me, &req), user }).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Requires MFA of every user of the tenant (tenant administrators, step-up needed).
#[utoipa::path(post, path = "/v1/admin/mfa/enforce-all", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Enforced), (status = 401, body = ErrorBody), (status = 403, description = "`forbidden` (not an administrator); `step_up_required` (no TOTP or backup verification by this session within the step-up window); `mfa_enrollment_required` (the caller has no second factor to step up with: enrol TOTP first)", body = ErrorBody)))]
pub async fn enforce_all(
    control: web::Data<Control>,
    req: HttpRequest,
    Admin(me): Admin,
) -> Result<web::Json<Enforced>, ApiError> {
    Ok(web::Json(control.send(EnforceMfaAll { admin: super::who(me, &req) }).await??))
}

/// Registers the MFA routes inside the `/v1` scope.
pub fn configure(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/mfa/totp/enroll", web::post().to(totp_enroll))
        .route("/mfa/totp/confirm", web::post().to(totp_confirm))
        .route("/mfa/totp", web::delete().to(totp_disable))
        .route("/mfa/backup/regenerate", web::post().to(backup_regenerate))
        .route("/mfa/challenge", web::post().to(challenge))
        .route("/mfa/verify", web::post().to(verify))
        .route("/mfa/backup", web::post().to(backup))
        .route("/mfa/status", web::get().to(status))
        .route("/mfa/trusted-devices", web::get().to(trusted_devices))
        .route("/mfa/trusted-devices/{id}", web::delete().to(revoke_trusted_device))
        .route("/admin/tenant/mfa", web::get().to(get_policy))
        .route("/admin/tenant/mfa", web::put().to(put_policy))
        .route("/admin/users/mfa-status", web::get().to(users_status))
        .route("/admin/users/{user}/mfa/enforce", web::post().to(enforce_user))
        .route("/admin/users/{user}/mfa", web::delete().to(reset_user))
        .route("/admin/mfa/enforce-all", web::post().to(enforce_all))
}
