//! Authentication for HTTP routes: a bearer token, or the admin console's session cookie (with
//! its CSRF token on state-changing requests, see [`crate::console`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::{web, FromRequest, HttpRequest};
use hush_actors::accounts::{self, Authed};
use hush_actors::hub::Hub;

use crate::error::ApiError;

/// The token of an `Authorization: Bearer <token>` header, if present.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    bearer_of(req.headers())
}

/// [`bearer`] from a request's headers.
pub fn bearer_of(headers: &actix_web::http::header::HeaderMap) -> Option<String> {
    let h = headers.get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// An authenticated caller (any user) whose session has passed MFA if it had to: a session with
/// MFA pending, or past its enrolment grace period, is refused with `mfa_required` /
/// `mfa_enrollment_required`; a session that logged in with a one-time password is refused
/// with 403 `password_change_required`.
pub struct User(pub Authed);

/// A session that has passed MFA, whether or not it must still change its password: only for
/// `POST /v1/account/password`.
pub struct PasswordSession(pub Authed);

/// An authenticated tenant administrator (MFA passed, as for [`User`]).
pub struct Admin(pub Authed);

/// Any live session, MFA pending or not: only for the `/v1/mfa/...` routes and logout.
pub struct AnySession(pub Authed);

fn hub(req: &HttpRequest) -> Result<Arc<Hub>, ApiError> {
    req.app_data::<web::Data<Hub>>().map(|d| d.clone().into_inner()).ok_or(ApiError::Internal)
}

/// The request's session token: the bearer token, else the console's cookie (refused with
/// `csrf_rejected` on a state-changing request without the session's CSRF token).
pub fn credentials(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    if let Some(t) = bearer(req) {
        return Ok(Some(t));
    }
    let Some(t) = crate::console::cookie(req, crate::console::SESSION_COOKIE) else { return Ok(None) };
    crate::console::check_csrf(req, &t)?;
    Ok(Some(t))
}

async fn authed(hub: Arc<Hub>, token: Result<Option<String>, ApiError>) -> Result<Authed, ApiError> {
    let token = token?.ok_or(ApiError::Unauthorized)?;
    Ok(accounts::authenticate(&hub, &token).await?)
}

/// Refuses a session that must still set a new password (it logged in with a one-time one).
pub fn password_gate(a: &Authed) -> Result<(), ApiError> {
    if a.password_change_required {
        Err(ApiError::PasswordChangeRequired)
    } else {
        Ok(())
    }
}

/// Refuses a session that must still pass (or enrol) MFA.
pub fn mfa_gate(a: &Authed) -> Result<(), ApiError> {
    match a.mfa.block(hush_actors::now_ms()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

impl FromRequest for AnySession {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let hub = hub(req);
        let token = credentials(req);
        Box::pin(async move { Ok(AnySession(authed(hub?, token).await?)) })
    }
}

impl FromRequest for User {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let hub = hub(req);
        let token = credentials(req);
        Box::pin(async move {
            let a = authed(hub?, token).await?;
            mfa_gate(&a)?;
            password_gate(&a)?;
            Ok(User(a))
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let hub = hub(req);
        let token = credentials(req);
        Box::pin(async move {
            let a = authed(hub?, token).await?;
            mfa_gate(&a)?;
            password_gate(&a)?;
            if a.admin {
                Ok(Admin(a))
            } else {
                Err(ApiError::Forbidden)
            }
        })
    }
}

impl FromRequest for PasswordSession {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let hub = hub(req);
        let token = credentials(req);
        Box::pin(async move {
            let a = authed(hub?, token).await?;
            mfa_gate(&a)?;
            Ok(PasswordSession(a))
        })
    }
}
