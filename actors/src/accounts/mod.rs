//! Accounts: users, passwords, one-time passwords, device registration at login, token
//! authentication and the first-run bootstrap.
//!
//! Passwords are hashed with Argon2id on a bounded pool ([`passwords`]). An unknown user costs
//! one verification against a dummy hash, so it answers like a wrong password, in the same
//! time class. Tokens are 256 random bits; the store keeps only their SHA-256 ([`tokens`]).
//!
//! One-time passwords (the bootstrap administrator's, `hushd init`'s and
//! `hushd admin reset-password`'s) serve one login, whose session may only change the password,
//! log out and pass MFA until [`change_password`] sets a new password; then the one-time
//! password is dead, the marked session becomes a normal one and the user's other sessions are
//! revoked (`password_changed`). See [`credentials`].
//!
//! The login itself, which uses accounts and MFA, is `crate::login`, above this module; this
//! module calls into MFA only to read the session's MFA state ([`auth`]) and to write a new
//! tenant's default MFA policy ([`users::bootstrap`]).
//!
//! - [`error`]: the error type, [`AccountError`].
//! - [`tokens`]: tokens, public ids, generated passwords.
//! - [`credentials`]: the credential record and the one-time password marks.
//! - [`passwords`]: hashing, the dummy hash, password changes and resets.
//! - [`devices`]: device registration and reservation at login; who may remove a device.
//! - [`auth`]: [`Authed`] and per-request [`authenticate`].
//! - [`users`]: users, the bootstrap, administrators' checks and commands on a user.

pub mod auth;
pub mod credentials;
pub mod devices;
pub mod error;
pub mod passwords;
pub mod tokens;
pub mod users;

pub use auth::{authenticate, Authed};
pub use credentials::{credential, Credential, NS_CREDENTIAL, NS_ONE_TIME_USED, NS_PASSWORD_CHANGE};
pub use devices::{complete_pending_device, may_remove_device};
pub use error::AccountError;
pub use passwords::{change_password, hash_password, reset_password, warm_up, MIN_PASSWORD_CHARS};
pub use tokens::{new_public_id, new_token, random_password, token_hash};
pub use users::{bootstrap, create_user, unlock_user, user_in_tenant, user_info};
