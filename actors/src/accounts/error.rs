//! What an account operation can fail with, and why the throttle refuses an attempt.

use hush_protocol::limits::MAX_DEVICES_PER_USER;
use hush_store::StoreError;

/// Why an account operation failed. Mapped to HTTP statuses at the node's edge.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Unknown tenant or user, wrong password, or an unknown/revoked token: one answer for all.
    #[error("invalid credentials")]
    Unauthorized,
    /// Authenticated, but not allowed (not an administrator).
    #[error("forbidden")]
    Forbidden,
    /// The thing does not exist (or belongs to another tenant).
    #[error("not found")]
    NotFound,
    /// The request was well-formed JSON but its content was refused.
    #[error("{0}")]
    Invalid(String),
    /// The name is taken.
    #[error("already exists")]
    Conflict,
    /// The account already has the maximum number of devices.
    #[error("too many devices: at most {MAX_DEVICES_PER_USER} per user")]
    TooManyDevices,
    /// The store failed; nothing was changed.
    #[error("store unavailable")]
    Store(#[from] StoreError),
    /// A login registering a device's keys sent no signed Kyber last-resort key; nothing was
    /// stored.
    #[error("keys: a signed Kyber last-resort key (kyber_last_resort) is required when a device registers its keys")]
    MissingKyberLastResort,
    /// Password hashing failed.
    #[error("internal error")]
    Internal,
    /// Too many logins are waiting for password hashing; retry shortly.
    #[error("busy")]
    Busy,
    /// The session passed its tenant's idle or absolute limit; it is now revoked.
    #[error("session expired")]
    SessionExpired,
    /// Too many failed attempts: refused before any check (429 `rate_limited` or
    /// `account_locked`, with the seconds to wait).
    #[error("too many failed attempts")]
    Throttled(Refused),
    /// The session logged in with a one-time password: only a password change (and logout,
    /// MFA) is allowed until a new password is set.
    #[error("password change required")]
    PasswordChangeRequired,
    /// The current password given to a password change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The one-time password was already used by a login: it serves once. An administrator
    /// gives a new one (`hushd admin reset-password`).
    #[error("this one-time password was already used; an administrator can give a new one with `hushd admin reset-password`")]
    OneTimePasswordUsed,
}

/// Why an attempt was refused before anything was checked (`crate::throttle` decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many recent failures: retry after this many seconds.
    RateLimited(u64),
    /// The account is locked for this many seconds.
    Locked(u64),
}

impl From<Refused> for AccountError {
    fn from(r: Refused) -> Self {
        AccountError::Throttled(r)
    }
}
