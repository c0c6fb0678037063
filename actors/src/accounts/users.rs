//! Users: creation, the public view, the first-run bootstrap of a tenant and its administrator,
//! and the checks and commands administrators use on a user of their tenant.

use hush_protocol::api::{CreateUserRequest, Secret, UserInfo};
use hush_protocol::ids::{TenantId, UserId};
use hush_store::{StoreError, TenantRecord, UserRecord};

use crate::accounts::credentials::{put_credential, Credential};
use crate::accounts::error::AccountError;
use crate::accounts::passwords::{check_password, hash_password};
use crate::accounts::tokens::random_password;
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::mfa::data::write_default_policy;
use crate::now_ms;
use crate::sessions::{self, Initiator};
use crate::throttle;

/// Creates a user in `tenant`.
pub async fn create_user(
    hub: &Hub,
    tenant: &TenantId,
    req: CreateUserRequest,
) -> Result<UserInfo, AccountError> {
    check_password(&req.password)?;
    let hash = hash_password(hub, &req.password).await?;
    let rec = UserRecord {
        tenant: tenant.clone(),
        user: req.user.clone(),
        password_hash: hash,
        admin: req.admin,
        created_ms: now_ms(),
    };
    match hub.store.create_user(rec.clone()).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(AccountError::Conflict),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tenant = %tenant, user = %req.user, admin = req.admin, "user created");
    Ok(user_info(&rec))
}

/// Public view of a user record.
pub fn user_info(u: &UserRecord) -> UserInfo {
    UserInfo { tenant: u.tenant.clone(), user: u.user.clone(), admin: u.admin, created_ms: u.created_ms }
}

/// Creates a tenant and its first administrator with a random password, returned once.
/// [`AccountError::Conflict`] if the tenant exists.
pub async fn bootstrap(hub: &Hub, tenant: &TenantId, admin: &UserId) -> Result<Secret, AccountError> {
    match hub.store.create_tenant(TenantRecord { name: tenant.clone(), created_ms: now_ms() }).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(AccountError::Conflict),
        Err(e) => return Err(e.into()),
    }
    write_default_policy(hub, tenant).await.map_err(|_| AccountError::Internal)?;
    let password = random_password();
    let hash = hash_password(hub, &password).await?;
    // One-time before the user exists: no moment has a reusable bootstrap password.
    put_credential(
        hub,
        tenant,
        admin,
        &Credential { password_hash: hash.clone(), one_time: true, set_ms: now_ms() },
    )
    .await?;
    let rec = UserRecord {
        tenant: tenant.clone(),
        user: admin.clone(),
        password_hash: hash,
        admin: true,
        created_ms: now_ms(),
    };
    match hub.store.create_user(rec).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(AccountError::Conflict),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tenant = %tenant, user = %admin, "administrator created with a one-time password");
    Ok(password)
}

/// [`AccountError::NotFound`] unless `user` is a user of `tenant` (another tenant's user
/// answers exactly like a user that does not exist).
pub async fn user_in_tenant(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<(), AccountError> {
    hub.store.get_user(tenant, user).await?.map(|_| ()).ok_or(AccountError::NotFound)
}

/// Clears a user's failed logins and lock (an administrator's command, after its step-up);
/// audited (`account.unlock`).
pub async fn unlock_user(hub: &Hub, tenant: &TenantId, user: &UserId, actor: &Initiator) {
    throttle::unlock(hub, tenant, user).await;
    let target = Some(format!("user:{user}"));
    sessions::audit(hub, tenant, actor, AuditAction::AccountUnlock, target, "ok").await;
    tracing::info!(tenant = %tenant, user = %user, "account unlocked");
}
