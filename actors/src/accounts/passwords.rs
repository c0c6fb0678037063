//! Passwords: Argon2id hashing on the bounded hashing pool, the dummy hash that makes an
//! unknown user cost what a wrong password costs, and password changes and resets.
//!
//! Passwords are hashed with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, 1 lane,
//! OWASP's recommendation) on tokio's blocking pool, at most
//! [`PASSWORD_HASH_CONCURRENCY`](crate::limits::PASSWORD_HASH_CONCURRENCY) at once.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use hush_protocol::api::Secret;
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::limits::MAX_PASSWORD_BYTES;
use hush_protocol::wire::CLOSE_UNAUTHORIZED;

use crate::accounts::auth::Authed;
use crate::accounts::credentials::{clear_password_change, credential, put_credential, Credential};
use crate::accounts::error::AccountError;
use crate::accounts::tokens::{random_bytes, random_password};
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::now_ms;
use crate::sessions::{self, Initiator};
use crate::throttle;

/// Shortest password accepted for a new account.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Computes the dummy hash used for unknown users now, so the first unknown-user login does
/// not take longer than later ones.
pub fn warm_up() {
    let _ = dummy_hash();
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default().hash_password(&random_bytes::<16>()).map(|h| h.to_string()).unwrap_or_default()
    })
}

/// Hashes a password with Argon2id on the blocking pool.
pub async fn hash_password(hub: &Hub, password: &Secret) -> Result<String, AccountError> {
    let pw = password.clone();
    hub.hashing
        .run(move || {
            Argon2::default()
                .hash_password(pw.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|_| AccountError::Internal)
        })
        .await
        .ok_or(AccountError::Busy)?
}

/// Whether `password` matches `hash`; with no hash (an unknown user), checks against the dummy
/// hash, so it costs the same, and answers false.
pub(crate) async fn verify_password(
    hub: &Hub,
    password: &Secret,
    hash: Option<String>,
) -> Result<bool, AccountError> {
    let pw = password.clone();
    let real = hash.is_some();
    hub.hashing
        .run(move || {
            let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
            let ok = Argon2::default().verify_password(pw.expose().as_bytes(), hash.as_str()).is_ok();
            ok && real
        })
        .await
        .ok_or(AccountError::Busy)
}

/// Checks the length of a new password.
pub(crate) fn check_password(p: &Secret) -> Result<(), AccountError> {
    let n = p.expose().chars().count();
    if n < MIN_PASSWORD_CHARS || p.expose().len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid(format!(
            "password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long"
        )));
    }
    Ok(())
}

/// Changes the caller's password: the current one is checked (throttled like a login), the new
/// one must differ and be 8 characters to 1,024 bytes. The caller's session is no longer
/// restricted; the ids of the user's other active sessions are returned for revocation
/// (`password_changed`). Audited (`password.change`).
pub async fn change_password(
    hub: &Hub,
    me: &Authed,
    current: &Secret,
    new: &Secret,
    ip: Option<String>,
) -> Result<Vec<String>, AccountError> {
    let (tenant, user) = (me.tenant().clone(), me.user().clone());
    let actor = Initiator { user: Some(user.clone()), session: Some(me.session.id.clone()), ip: ip.clone() };
    check_password(new)?;
    if current.expose().len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::WrongPassword);
    }
    let guard = throttle::password_attempt(hub, &tenant, &user, ip.as_deref()).await?;
    let rec = hub.store.get_user(&tenant, &user).await?.ok_or(AccountError::Unauthorized)?;
    let cred = credential(hub, &tenant, &user).await?;
    let hash = cred.as_ref().map(|c| c.password_hash.clone()).unwrap_or_else(|| rec.password_hash.clone());
    if !verify_password(hub, current, Some(hash)).await? {
        sessions::audit(hub, &tenant, &actor, AuditAction::PasswordChange, None, "denied").await;
        guard.failed(hub, &tenant, &user, true, ip).await;
        return Err(AccountError::WrongPassword);
    }
    guard.succeeded(hub).await;
    if current.expose() == new.expose() {
        return Err(AccountError::Invalid("the new password must differ from the current one".into()));
    }
    let hash = hash_password(hub, new).await?;
    put_credential(
        hub,
        &tenant,
        &user,
        &Credential { password_hash: hash, one_time: false, set_ms: now_ms() },
    )
    .await?;
    if let Err(e) = clear_password_change(hub, &me.session.id).await {
        // The password is changed; the session stays restricted and can change it again.
        tracing::warn!(error = %e, "password-change mark of the session not cleared");
    }
    sessions::audit(hub, &tenant, &actor, AuditAction::PasswordChange, Some(format!("user:{user}")), "ok")
        .await;
    tracing::info!(tenant = %tenant, user = %user, "password changed");
    let others = hub
        .store
        .sessions_of_user(&tenant, &user)
        .await?
        .into_iter()
        .filter(|s| s.active() && s.id != me.session.id)
        .map(|s| s.id)
        .collect();
    Ok(others)
}

/// Gives `tenant/user` a new random one-time password (`hushd admin reset-password`, run on
/// the node's host): every session of the user is revoked (`password_reset`), the failed-login
/// count and lock are cleared, and the reset is audited (`password.reset`). The password is
/// returned once. [`AccountError::NotFound`] if there is no such user.
pub async fn reset_password(
    hub: &Arc<Hub>,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Secret, AccountError> {
    hub.store.get_user(tenant, user).await?.ok_or(AccountError::NotFound)?;
    let password = random_password();
    let hash = hash_password(hub, &password).await?;
    put_credential(hub, tenant, user, &Credential { password_hash: hash, one_time: true, set_ms: now_ms() })
        .await?;
    let actor = Initiator { user: None, session: None, ip: None };
    let ids: Vec<String> = hub
        .store
        .sessions_of_user(tenant, user)
        .await?
        .into_iter()
        .filter(|s| s.active())
        .map(|s| s.id)
        .collect();
    sessions::revoke_many(
        hub,
        tenant,
        ids,
        sessions::RevocationReason::PasswordReset,
        CLOSE_UNAUTHORIZED,
        &actor,
    )
    .await?;
    throttle::unlock(hub, tenant, user).await;
    sessions::audit(hub, tenant, &actor, AuditAction::PasswordReset, Some(format!("user:{user}")), "ok")
        .await;
    tracing::info!(tenant = %tenant, user = %user, "password reset to a one-time password");
    Ok(password)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::phc::PasswordHash;

    use super::*;

    /// The dummy hash costs what a real one costs: same algorithm, version and parameters, so
    /// an unknown user is not told apart by the time a login takes.
    #[test]
    fn the_dummy_hash_has_the_parameters_of_a_real_one() {
        let real = Argon2::default().hash_password(b"a real password").unwrap().to_string();
        let (real, dummy) = (PasswordHash::new(&real).unwrap(), PasswordHash::new(dummy_hash()).unwrap());
        assert_eq!(real.algorithm, dummy.algorithm);
        assert_eq!(real.version, dummy.version);
        assert_eq!(real.params, dummy.params);
        assert_eq!(real.hash.map(|h| h.len()), dummy.hash.map(|h| h.len()));
        // And it verifies nothing a user could type.
        assert!(Argon2::default().verify_password(b"", &dummy).is_err());
    }
}
