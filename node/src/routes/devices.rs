//! Device listings and device removal.

use actix_web::{web, HttpRequest, HttpResponse};
use hush_actors::control::{Control, RemoveOwnDevice};
use hush_actors::hub::Hub;
use hush_actors::views;
use hush_protocol::api::{DeviceList, ErrorBody};
use hush_protocol::ids::{DeviceId, UserId};

use super::who;
use crate::auth::{PasswordSession, User};
use crate::error::ApiError;

/// Lists the caller's own devices.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = DeviceList), (status = 401, body = ErrorBody)))]
pub async fn my_devices(hub: web::Data<Hub>, User(me): User) -> Result<web::Json<DeviceList>, ApiError> {
    Ok(web::Json(views::own_devices(&hub, me.tenant(), me.user()).await?))
}

/// Lists the devices of a user of the caller's tenant (to address one ciphertext to each).
#[utoipa::path(get, path = "/v1/users/{user}/devices", tag = "devices", security(("bearer" = [])),
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = DeviceList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, description = "No such user in this tenant", body = ErrorBody)))]
pub async fn user_devices(
    hub: web::Data<Hub>,
    User(me): User,
    path: web::Path<String>,
) -> Result<web::Json<DeviceList>, ApiError> {
    let user = UserId::new(path.into_inner()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(web::Json(views::devices_of(&hub, me.tenant(), user, me.user()).await?))
}

/// Removes a device: the primary device removes a linked one, and any device may remove itself
/// (the primary only as the user's only device: a login that did not complete unlinks its new
/// device). The device's sessions, queue and sockets go with it.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = u32, Path, description = "Device id")),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Another device, not called from the primary device", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_device(
    control: web::Data<Control>,
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
    control.send(RemoveOwnDevice { by: who(me, &req), device }).await??;
    Ok(HttpResponse::NoContent().finish())
}
