//! Multi-factor authentication: TOTP enrolment, the login challenge, backup codes, trusted
//! devices, tenant policies with grace periods and exemptions, and step-up for sensitive actions.
//!
//! Everything lives in the store's generic key-value records (postcard values, laid out in
//! [`data`]), so every node of a cluster sees the same state and every decision is a
//! compare-and-set.
//!
//! A TOTP code is accepted once per user across the cluster: the user record keeps the last
//! accepted time step, and a code is accepted only by the compare-and-set that raises it.
//! Failures are counted in the same record (5 per 15 minutes, then a lock that doubles with each
//! lockout; 100 consecutive failures lock the factor for good). TOTP secrets are sealed with
//! AES-256-GCM under the node's MFA key (bound to tenant and user as associated data); backup
//! codes and trust tokens are stored only hashed. No secret or code reaches a log or an audit
//! record.
//!
//! The modules, from the bottom up:
//!
//! - [`error`]: the error type, [`MfaError`].
//! - [`records`]: the record types, the failure counting and lock of a factor, what a session's
//!   state blocks.
//! - [`seal`]: [`SealKey`], the AES-256-GCM key sealing TOTP secrets.
//! - [`data`]: namespaces, keys, codecs and compare-and-set of the records; dropping trust.
//! - [`codes`]: a typed code, normalized, and what checking one gave.
//! - [`notify`]: the audit initiator and the `MfaChanged` event of the user's devices.
//! - [`policy`]: what the tenant's policy asks of a user, and the state a session should have.
//! - [`stepup`]: step-up of sensitive actions.
//! - [`trust`]: trusted devices.
//! - [`backup`]: backup codes.
//! - [`totp`]: the TOTP factor: enrolment, confirmation, checking a code, turning it off.
//! - [`decision`]: the login's decision (challenge or not) and the new session's state.
//! - [`challenge`](mod@challenge): challenges and their answers.
//! - [`status`](mod@status): the caller's status, session views, the tenant's users' MFA state.
//! - [`admin`]: policy administration, enforcement and reset, applied to live sessions.
//!
//! The login orchestration that uses both accounts and MFA (the login itself, and the device
//! change a challenged login applies once verified) is `crate::login`, above this module.

pub mod admin;
pub mod backup;
pub mod challenge;
pub mod codes;
pub mod data;
pub mod decision;
pub mod error;
pub mod notify;
pub mod policy;
pub mod records;
pub mod seal;
pub mod status;
pub mod stepup;
pub mod totp;
pub mod trust;

pub use admin::{enforce_all, enforce_user, reset_user, set_policy};
pub use backup::regenerate_backup;
pub use challenge::{challenge, check_answer, mark_verified, Answered, Factor};
pub use data::{
    drop_trust, drop_trust_of_tenant, drop_trust_of_user, forget, forget_many, migrate, session_rec,
    stored_policy, write_default_policy, NS_POLICY, NS_SESSION, NS_TRUST, NS_USER,
};
pub use decision::{login_must_challenge, on_login, set_pending_device};
pub use error::MfaError;
pub use records::{
    default_policy, BackupCode, ChallengeRec, SessionMfaRec, StoredPolicy, TotpFactor, TrustRec, UserMfa,
};
pub use seal::SealKey;
pub use status::{session_views, status, users_status};
pub use stepup::{require_step_up, require_step_up_for_others};
pub use totp::{confirm, disable, enroll, ISSUER};
pub use trust::{revoke_trust, trusted_devices};
