//! Pre-keys: upload, counts, fetch.

use actix_web::web;
use hush_actors::hub::Hub;
use hush_actors::keys;
use hush_protocol::api::{ErrorBody, KeyCounts, PreKeyResponse, RateLimitedBody, UploadKeysRequest};
use hush_protocol::ids::DeviceId;

use super::parse_user;
use crate::auth::User;
use crate::error::ApiError;

/// Largest body of `PUT /v1/keys`: 100 Kyber keys (1569 bytes and a signature each) in base64,
/// 100 EC keys and the signed keys, with room to spare.
pub const MAX_KEYS_BODY: usize = 512 * 1024;

/// Uploads the calling device's pre-keys (signed EC pre-key, EC one-time keys, Kyber one-time
/// keys, Kyber last-resort key). Every signature is checked against the device's identity key;
/// one bad key refuses the upload and nothing is stored.
#[utoipa::path(put, path = "/v1/keys", tag = "keys", security(("bearer" = [])), request_body = UploadKeysRequest,
    responses((status = 200, description = "Stored; the one-time keys now held", body = KeyCounts),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "invalid_signature, invalid_key, invalid_key_id, too_many_keys, or missing_kyber_last_resort (the device has no last-resort key yet and the upload has none); nothing stored", body = ErrorBody)))]
pub async fn upload_keys(
    hub: web::Data<Hub>,
    User(me): User,
    body: web::Json<UploadKeysRequest>,
) -> Result<web::Json<KeyCounts>, ApiError> {
    Ok(web::Json(keys::upload(&hub, &me.session.device, &body).await?))
}

/// How many one-time pre-keys the calling device has left.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = KeyCounts), (status = 401, body = ErrorBody)))]
pub async fn key_counts(hub: web::Data<Hub>, User(me): User) -> Result<web::Json<KeyCounts>, ApiError> {
    Ok(web::Json(keys::counts(&hub, &me.session.device).await?))
}

/// Fetches the pre-keys of every device of a user of the caller's tenant, consuming one EC and
/// one Kyber one-time key per device (one rate-limit token per device).
#[utoipa::path(get, path = "/v1/keys/{user}", tag = "keys", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = PreKeyResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No such user, or no device with keys", body = ErrorBody),
        (status = 429, description = "Rate limited (Retry-After header)", body = RateLimitedBody)))]
pub async fn fetch_user_keys(
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
pub async fn fetch_device_keys(
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
