//! The one place where errors become HTTP answers: a status and a JSON [`ErrorBody`].
//! Messages are safe to show: they never carry secrets or store internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hush_actors::accounts::AccountError;
use hush_actors::keys::{retry_secs, KeysError};
use hush_protocol::api::{ErrorBody, RateLimitedBody};
use hush_protocol::wire::ErrorCode;

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
    /// 422: a key upload was refused (`invalid_signature`, `invalid_key`, `invalid_key_id`,
    /// `too_many_keys`, `missing_kyber_last_resort`); nothing was stored.
    #[error("{message}")]
    Unprocessable {
        /// The error code.
        code: &'static str,
        /// What was wrong.
        message: String,
    },
    /// 429: a rate limit; retry after this many seconds (`Retry-After` header and body).
    #[error("rate limited; retry after {0} s")]
    RateLimited(u64),
    /// 429: too many failed logins locked the account for this many seconds (`Retry-After`
    /// header and body), or until an administrator unlocks it.
    #[error(
        "account locked after too many failed logins; retry after {0} s or ask an administrator to unlock it"
    )]
    AccountLocked(u64),
    /// 403: the session logged in with a one-time password; set a new one first.
    #[error("a new password must be set first (POST /v1/account/password)")]
    PasswordChangeRequired,
    /// 403: the current password given to a password change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// 401: the one-time password already served a login; an administrator gives a new one.
    #[error("{0}")]
    OneTimePasswordUsed(String),
    /// 500: a bug; logged.
    #[error("internal error")]
    Internal,
    /// 401: the session must pass its MFA challenge first (only `/v1/mfa/...` and logout answer).
    #[error("MFA verification required: answer the challenge at /v1/mfa/verify or /v1/mfa/backup")]
    MfaRequired,
    /// 401: the grace period is over; the user must enrol a second factor first.
    #[error("MFA enrolment required: the grace period is over (POST /v1/mfa/totp/enroll)")]
    MfaEnrollRequired,
    /// 403: the action needs a recent MFA verification.
    #[error("this action needs a recent MFA verification (POST /v1/mfa/challenge, then /v1/mfa/verify)")]
    StepUpRequired,
    /// 401: wrong, expired or already used code.
    #[error("invalid code")]
    InvalidCode,
    /// 403: not this session's open challenge, or expired.
    #[error("unknown or expired challenge")]
    InvalidChallenge,
    /// 429: too many failed attempts; locked until the given time (ms since the Unix epoch).
    #[error("too many failed attempts: locked until {0} ms since the Unix epoch")]
    MfaLocked(u64),
    /// 403: the action needs a step-up and the caller has no second factor: enrol one first.
    /// (The same code as the 401 of an expired grace period: either way the cure is enrolling;
    /// the status tells a refused action (403) from a blocked session (401).)
    #[error(
        "this action needs a second factor: enrol TOTP first (POST /v1/mfa/totp/enroll, then /v1/mfa/totp/confirm), then step up (POST /v1/mfa/challenge, /v1/mfa/verify)"
    )]
    StepUpEnrollRequired,
    /// 409: no (pending) TOTP factor.
    #[error("no TOTP factor enrolled")]
    MfaNotEnrolled,
    /// 409: TOTP is already on.
    #[error("TOTP is already enabled; disable it first")]
    MfaAlreadyEnrolled,
    /// 408: the request body did not arrive in time (or too slowly); the connection closes.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 429: this client address has too many connections with an unfinished request; the
    /// connection closes.
    #[error("too many unfinished requests from this address")]
    TooManyConnections,
    /// 405: the path exists, the method does not; `Allow` lists the methods it has.
    #[error("method not allowed here (allowed: {})", .0.join(", "))]
    MethodNotAllowed(Vec<&'static str>),
    /// 403: a request authenticated by the console's cookie changes state without the
    /// session's CSRF token (`X-CSRF-Token`); nothing was done.
    #[error("missing or wrong X-CSRF-Token for a cookie-authenticated request; nothing was done")]
    CsrfRejected,
    /// 403: the console over plain HTTP answers loopback clients only.
    #[error("the console requires TLS (plain HTTP is served to loopback clients only)")]
    TlsRequired,
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
            ApiError::Unprocessable { code, .. } => code,
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::AccountLocked(_) => "account_locked",
            ApiError::PasswordChangeRequired => "password_change_required",
            ApiError::WrongPassword => "wrong_password",
            ApiError::OneTimePasswordUsed(_) => "one_time_password_used",
            ApiError::Internal => "internal",
            ApiError::MfaRequired => "mfa_required",
            ApiError::MfaEnrollRequired => "mfa_enrollment_required",
            ApiError::StepUpRequired => "step_up_required",
            ApiError::InvalidCode => "invalid_code",
            ApiError::InvalidChallenge => "invalid_challenge",
            ApiError::MfaLocked(_) => "mfa_locked",
            ApiError::StepUpEnrollRequired => "mfa_enrollment_required",
            ApiError::MfaNotEnrolled => "mfa_not_enrolled",
            ApiError::MfaAlreadyEnrolled => "mfa_already_enrolled",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::TooManyConnections => "too_many_connections",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::CsrfRejected => "csrf_rejected",
            ApiError::TlsRequired => "tls_required",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::SessionExpired | ApiError::OneTimePasswordUsed(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict | ApiError::TooManyDevices(_) => StatusCode::CONFLICT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited(_) | ApiError::AccountLocked(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PasswordChangeRequired | ApiError::WrongPassword => StatusCode::FORBIDDEN,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::MfaRequired | ApiError::MfaEnrollRequired | ApiError::InvalidCode => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::StepUpRequired | ApiError::InvalidChallenge | ApiError::StepUpEnrollRequired => {
                StatusCode::FORBIDDEN
            }
            ApiError::MfaLocked(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MfaNotEnrolled | ApiError::MfaAlreadyEnrolled => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::CsrfRejected | ApiError::TlsRequired => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if let ApiError::RateLimited(secs) | ApiError::AccountLocked(secs) = self {
            r.insert_header(("Retry-After", secs.to_string()));
            return r.json(RateLimitedBody {
                error: self.code().to_owned(),
                message: self.to_string(),
                retry_after_s: *secs,
            });
        }
        if let ApiError::MethodNotAllowed(methods) = self {
            r.insert_header(("Allow", methods.join(", ")));
        }
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
            e @ AccountError::MissingKyberLastResort => {
                ApiError::Unprocessable { code: "missing_kyber_last_resort", message: e.to_string() }
            }
            e @ AccountError::TooManyDevices => ApiError::TooManyDevices(e.to_string()),
            AccountError::Store(e) => {
                hush_store::failure::log_failure(&e, "request failed in the store");
                ApiError::Unavailable
            }
            AccountError::Internal => ApiError::Internal,
            AccountError::Busy => ApiError::Unavailable,
            AccountError::SessionExpired => ApiError::SessionExpired,
            AccountError::Throttled(hush_actors::throttle::Refused::RateLimited(s)) => {
                ApiError::RateLimited(s)
            }
            AccountError::Throttled(hush_actors::throttle::Refused::Locked(s)) => ApiError::AccountLocked(s),
            AccountError::PasswordChangeRequired => ApiError::PasswordChangeRequired,
            AccountError::WrongPassword => ApiError::WrongPassword,
            e @ AccountError::OneTimePasswordUsed => ApiError::OneTimePasswordUsed(e.to_string()),
        }
    }
}

impl From<hush_actors::control::ControlError> for ApiError {
    fn from(e: hush_actors::control::ControlError) -> Self {
        match e {
            hush_actors::control::ControlError::Account(e) => e.into(),
            hush_actors::control::ControlError::Mfa(e) => e.into(),
        }
    }
}

impl From<hush_actors::control::Unavailable> for ApiError {
    fn from(_: hush_actors::control::Unavailable) -> Self {
        ApiError::Unavailable
    }
}

impl From<hush_store::StoreError> for ApiError {
    fn from(e: hush_store::StoreError) -> Self {
        ApiError::from(AccountError::Store(e))
    }
}

impl From<hush_actors::mfa::MfaError> for ApiError {
    fn from(e: hush_actors::mfa::MfaError) -> Self {
        use hush_actors::mfa::MfaError;
        match e {
            MfaError::Required => ApiError::MfaRequired,
            MfaError::EnrollRequired => ApiError::MfaEnrollRequired,
            MfaError::StepUpRequired => ApiError::StepUpRequired,
            MfaError::InvalidCode => ApiError::InvalidCode,
            MfaError::InvalidChallenge => ApiError::InvalidChallenge,
            MfaError::Locked { until_ms } => ApiError::MfaLocked(until_ms),
            MfaError::StepUpEnrollRequired => ApiError::StepUpEnrollRequired,
            MfaError::NotEnrolled => ApiError::MfaNotEnrolled,
            MfaError::AlreadyEnrolled => ApiError::MfaAlreadyEnrolled,
            MfaError::NoKey => {
                tracing::error!("no MFA key configured");
                ApiError::Internal
            }
            MfaError::Account(a) => a.into(),
        }
    }
}

impl From<KeysError> for ApiError {
    fn from(e: KeysError) -> Self {
        let code = match e.code() {
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::InvalidKeyId => "invalid_key_id",
            ErrorCode::TooManyKeys => "too_many_keys",
            ErrorCode::MissingKyberLastResort => "missing_kyber_last_resort",
            _ => "",
        };
        match e {
            KeysError::NotFound => ApiError::NotFound,
            KeysError::RateLimited(d) => ApiError::RateLimited(retry_secs(d)),
            KeysError::Store(s) => ApiError::from(s),
            e => ApiError::Unprocessable { code, message: e.to_string() },
        }
    }
}

impl From<hush_actors::groups::GroupError> for ApiError {
    fn from(e: hush_actors::groups::GroupError) -> Self {
        use hush_actors::groups::GroupError;
        match e {
            GroupError::NotFound => ApiError::NotFound,
            GroupError::Forbidden => ApiError::Forbidden,
            GroupError::Invalid(m) => ApiError::BadRequest(m),
            GroupError::Store(e) => ApiError::from(e),
            GroupError::Contended | GroupError::Unavailable => ApiError::Unavailable,
        }
    }
}
