//! The one place where errors become HTTP answers: a status and a JSON [`ErrorBody`].
//! Messages are safe to show: they never carry secrets or store internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hush_actors::accounts::AccountError;
use hush_protocol::api::ErrorBody;

/// An HTTP API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request body, path or query was malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing, unknown or revoked credentials.
    #[error("authentication required")]
    Unauthorized,
    /// 403: authenticated but not allowed.
    #[error("forbidden")]
    Forbidden,
    /// 404: no such thing (or not in the caller's tenant).
    #[error("not found")]
    NotFound,
    /// 409: already exists.
    #[error("already exists")]
    Conflict,
    /// 409: the account has its maximum number of devices.
    #[error("{0}")]
    TooManyDevices(String),
    /// 503: the store or a dependency is unavailable; nothing was changed.
    #[error("service unavailable")]
    Unavailable,
    /// 401: the session passed its tenant's idle or absolute limit (it is revoked; log in again).
    #[error("session expired")]
    SessionExpired,
    /// 500: a bug; logged.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::SessionExpired => "session_expired",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::Conflict => "conflict",
            ApiError::TooManyDevices(_) => "too_many_devices",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::SessionExpired => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict | ApiError::TooManyDevices(_) => StatusCode::CONFLICT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized | ApiError::SessionExpired) {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        r.json(ErrorBody { error: self.code().to_owned(), message: self.to_string() })
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Unauthorized => ApiError::Unauthorized,
            AccountError::Forbidden => ApiError::Forbidden,
            AccountError::NotFound => ApiError::NotFound,
            AccountError::Invalid(m) => ApiError::BadRequest(m),
            AccountError::Conflict => ApiError::Conflict,
            e @ AccountError::TooManyDevices => ApiError::TooManyDevices(e.to_string()),
            AccountError::Store(e) => {
                tracing::error!(error = %e, "store error");
                ApiError::Unavailable
            }
            AccountError::Internal => ApiError::Internal,
            AccountError::Busy => ApiError::Unavailable,
            AccountError::SessionExpired => ApiError::SessionExpired,
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::Unavailable
    }
}

impl From<hush_store::StoreError> for ApiError {
    fn from(e: hush_store::StoreError) -> Self {
        ApiError::from(AccountError::Store(e))
    }
}
