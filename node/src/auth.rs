//! Bearer-token authentication for HTTP routes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::{web, FromRequest, HttpRequest};
use hush_actors::accounts::{self, Authed};
use hush_actors::hub::Hub;

use crate::error::ApiError;

/// The token of an `Authorization: Bearer <token>` header, if present.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let h = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// An authenticated caller (any user).
pub struct User(pub Authed);

/// An authenticated tenant administrator.
pub struct Admin(pub Authed);

fn hub(req: &HttpRequest) -> Result<Arc<Hub>, ApiError> {
    req.app_data::<web::Data<Hub>>().map(|d| d.clone().into_inner()).ok_or(ApiError::Internal)
}

async fn authed(hub: Arc<Hub>, token: Option<String>) -> Result<Authed, ApiError> {
    let token = token.ok_or(ApiError::Unauthorized)?;
    Ok(accounts::authenticate(&hub, &token).await?)
}

impl FromRequest for User {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let hub = hub(req);
        let token = bearer(req);
        Box::pin(async move { Ok(User(authed(hub?, token).await?)) })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let hub = hub(req);
        let token = bearer(req);
        Box::pin(async move {
            let a = authed(hub?, token).await?;
            if a.admin {
                Ok(Admin(a))
            } else {
                Err(ApiError::Forbidden)
            }
        })
    }
}
