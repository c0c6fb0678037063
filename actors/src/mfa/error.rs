//! What an MFA operation can fail with.

use hush_store::StoreError;

use crate::accounts::error::AccountError;

/// Why an MFA operation failed. Mapped to HTTP statuses at the node's edge.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The session must pass its MFA challenge first.
    #[error("MFA verification required: answer the session's challenge first")]
    Required,
    /// The grace period is over: the user must enrol before anything else.
    #[error("MFA enrolment required: the grace period is over")]
    EnrollRequired,
    /// The action needs a recent MFA verification.
    #[error("this action needs a recent MFA verification: ask for a challenge, then answer it")]
    StepUpRequired,
    /// The action needs a step-up and the user has no second factor to step up with.
    #[error("this action needs a second factor: enrol TOTP first and confirm it, then step up")]
    StepUpEnrollRequired,
    /// Wrong, expired or already used code.
    #[error("invalid code")]
    InvalidCode,
    /// The challenge id is not this session's open challenge, or it expired.
    #[error("unknown or expired challenge")]
    InvalidChallenge,
    /// Too many failures: the factor is locked until then (ms since the Unix epoch).
    #[error("too many failed attempts: locked")]
    Locked {
        /// End of the lock (`u64::MAX`: until an administrator resets the factor).
        until_ms: u64,
    },
    /// The user has no (confirmed, or pending for `confirm`) TOTP factor.
    #[error("no TOTP factor enrolled")]
    NotEnrolled,
    /// TOTP is already on; disable it first.
    #[error("TOTP is already enabled")]
    AlreadyEnrolled,
    /// The node has no MFA key (configuration error).
    #[error("MFA key not configured")]
    NoKey,
    /// An account or store error.
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<StoreError> for MfaError {
    fn from(e: StoreError) -> Self {
        MfaError::Account(AccountError::Store(e))
    }
}

/// The result of an MFA operation.
pub(crate) type Result<T, E = MfaError> = std::result::Result<T, E>;
