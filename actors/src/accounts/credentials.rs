//! The credential record and the one-time password marks, in the store's key-value space.
//!
//! One-time passwords: the bootstrap administrator's, those made by `hushd init` and by
//! `hushd admin reset-password` are marked one-time in the user's credential record (a
//! key-value record, [`NS_CREDENTIAL`], that also holds the hash of a changed password; the
//! user record keeps the password it was created with). Each login with a one-time password
//! gets a session marked [`NS_PASSWORD_CHANGE`]: until a new password is set, that session may
//! only change the password, log out and pass MFA. A one-time password logs in once: its use is
//! claimed in [`NS_ONE_TIME_USED`].

use hush_protocol::ids::{TenantId, UserId};
use hush_store::{StoreError, UserRecord};

use crate::accounts::error::AccountError;
use crate::hub::Hub;

/// Key-value namespace of credential records (`<tenant>/<user>` -> [`Credential`]).
pub const NS_CREDENTIAL: &str = "credential";

/// Key-value namespace marking sessions that must change their password (session id -> empty).
pub const NS_PASSWORD_CHANGE: &str = "password_change";

/// Key-value namespace of one-time passwords that served their login
/// (`<tenant>/<user>/<set_ms>` -> empty): created once, by a create-only write, so a one-time
/// password logs in exactly once across the cluster, even with two logins at the same moment.
pub const NS_ONE_TIME_USED: &str = "one_time_used";

/// What the store keeps about a user's password beyond the user record: the hash of a changed
/// password (it replaces the record's), and whether it is a one-time password.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    /// Argon2id PHC string of the password in force.
    pub password_hash: String,
    /// A one-time password: a login with it must set a new one.
    pub one_time: bool,
    /// When it was set, ms since the Unix epoch.
    pub set_ms: u64,
}

fn credential_key(tenant: &TenantId, user: &UserId) -> String {
    format!("{tenant}/{user}")
}

/// The user's credential record, if the password was ever changed or is one-time.
pub async fn credential(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Option<Credential>, AccountError> {
    match hub.store.kv_get(NS_CREDENTIAL, &credential_key(tenant, user)).await? {
        None => Ok(None),
        Some(e) => postcard::from_bytes(&e.value)
            .map(Some)
            .map_err(|e| AccountError::Store(StoreError::Corrupt(format!("{NS_CREDENTIAL}: {e}")))),
    }
}

/// Writes the user's credential record.
pub(crate) async fn put_credential(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    c: &Credential,
) -> Result<(), AccountError> {
    let bytes = postcard::to_allocvec(c).map_err(|_| AccountError::Internal)?;
    hub.store.kv_set(NS_CREDENTIAL, &credential_key(tenant, user), bytes).await?;
    Ok(())
}

/// Claims the one login a one-time password `c` of `user` serves: false if a login already
/// used it (a create-only write, so exactly one login across the cluster gets true).
pub(crate) async fn claim_one_time(
    hub: &Hub,
    user: &UserRecord,
    c: &Credential,
) -> Result<bool, AccountError> {
    let key = format!("{}/{}", credential_key(&user.tenant, &user.user), c.set_ms);
    match hub.store.kv_put(NS_ONE_TIME_USED, &key, 0, Vec::new()).await {
        Ok(_) => Ok(true),
        Err(StoreError::VersionConflict) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Marks a session as one that must change its password before anything else.
pub(crate) async fn mark_password_change(hub: &Hub, session_id: &str) -> Result<(), AccountError> {
    hub.store.kv_set(NS_PASSWORD_CHANGE, session_id, Vec::new()).await?;
    Ok(())
}

/// Whether a session must change its password before anything else.
pub(crate) async fn password_change_required(hub: &Hub, session_id: &str) -> Result<bool, StoreError> {
    Ok(hub.store.kv_get(NS_PASSWORD_CHANGE, session_id).await?.is_some())
}

/// Clears a session's password-change mark (its password was changed).
pub(crate) async fn clear_password_change(hub: &Hub, session_id: &str) -> Result<bool, StoreError> {
    hub.store.kv_delete(NS_PASSWORD_CHANGE, session_id, None).await
}
