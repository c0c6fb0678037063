//! Where the MFA records live and how they are read and written: the store's generic
//! key-value records (postcard values), so every node of a cluster sees the same state and every
//! decision is a compare-and-set.
//!
//! | namespace | key | record |
//! |---|---|---|
//! | `mfa_policy` | `<tenant>` | [`StoredPolicy`]: the tenant's policy |
//! | `mfa_user` | `<tenant>/<user>` | [`UserMfa`]: factors, backup codes, last TOTP step, failures |
//! | `mfa_session` | `<session id>` | [`SessionMfaRec`]: the session's state and open challenge |
//! | `mfa_trust` | `<tenant>/<user>/<device, 3 digits>` | [`TrustRec`]: a remembered device |

use hush_protocol::ids::{DeviceId, TenantId, UserId};
use hush_store::{KvEntry, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::accounts::error::AccountError;
use crate::hub::Hub;
use crate::limits::{MAX_TENANTS_MIGRATED, MFA_CAS_RETRIES, MFA_MAX_TRUSTED_LISTED};
use crate::mfa::error::{MfaError, Result};
use crate::mfa::records::{default_policy, SessionMfaRec, StoredPolicy, TrustRec, UserMfa};

/// Namespace of tenant policies.
pub const NS_POLICY: &str = "mfa_policy";
/// Namespace of per-user MFA records.
pub const NS_USER: &str = "mfa_user";
/// Namespace of per-session MFA state.
pub const NS_SESSION: &str = "mfa_session";
/// Namespace of trusted devices.
pub const NS_TRUST: &str = "mfa_trust";

fn user_key(tenant: &TenantId, user: &UserId) -> String {
    format!("{tenant}/{user}")
}

fn trust_prefix(tenant: &TenantId, user: &UserId) -> String {
    format!("{tenant}/{user}/")
}

fn trust_key(tenant: &TenantId, user: &UserId, device: DeviceId) -> String {
    format!("{tenant}/{user}/{:03}", device.get())
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| StoreError::Corrupt(e.to_string()).into())
}

async fn read<T: DeserializeOwned>(hub: &Hub, ns: &str, key: &str) -> Result<Option<(u64, T)>> {
    match hub.store.kv_get(ns, key).await? {
        None => Ok(None),
        Some(e) => {
            let v = postcard::from_bytes(&e.value).map_err(|e| StoreError::Corrupt(format!("{ns}: {e}")))?;
            Ok(Some((e.version, v)))
        }
    }
}

/// The tenant's policy (the default if none is stored).
pub async fn stored_policy(hub: &Hub, tenant: &TenantId) -> Result<StoredPolicy> {
    Ok(read::<StoredPolicy>(hub, NS_POLICY, tenant.as_str())
        .await?
        .map(|(_, p)| p)
        .unwrap_or(StoredPolicy { policy: default_policy(), required_since_ms: 0 }))
}

/// Replaces the tenant's policy with what `f` makes of the stored one (the default if none),
/// with compare-and-set, retrying on conflicts; returns what was written.
pub(crate) async fn update_policy(
    hub: &Hub,
    tenant: &TenantId,
    f: impl Fn(&StoredPolicy) -> StoredPolicy,
) -> Result<StoredPolicy> {
    for _ in 0..MFA_CAS_RETRIES {
        let cur = read::<StoredPolicy>(hub, NS_POLICY, tenant.as_str()).await?;
        let (version, old) = match cur {
            Some((v, p)) => (v, p),
            None => (0, StoredPolicy { policy: default_policy(), required_since_ms: 0 }),
        };
        let rec = f(&old);
        match hub.store.kv_put(NS_POLICY, tenant.as_str(), version, encode(&rec)?).await {
            Ok(_) => return Ok(rec),
            Err(StoreError::VersionConflict) | Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(MfaError::Account(AccountError::Busy))
}

/// Writes the default policy for every tenant that has none (run at every start: a create-only
/// write, so concurrent nodes and restarts are harmless). Returns how many were written.
pub async fn migrate(hub: &Hub) -> Result<usize> {
    let mut written = 0;
    for t in hub.store.list_tenants(MAX_TENANTS_MIGRATED).await? {
        if write_default_policy(hub, &t.name).await? {
            written += 1;
        }
    }
    Ok(written)
}

/// Writes the default policy of a new tenant unless it has one; true if written.
pub async fn write_default_policy(hub: &Hub, tenant: &TenantId) -> Result<bool> {
    let rec = StoredPolicy { policy: default_policy(), required_since_ms: 0 };
    match hub.store.kv_put(NS_POLICY, tenant.as_str(), 0, encode(&rec)?).await {
        Ok(_) => Ok(true),
        Err(StoreError::VersionConflict) | Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A user's MFA record and its version (the default, version 0, if none is stored).
pub(crate) async fn user_rec(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<(u64, UserMfa)> {
    Ok(read::<UserMfa>(hub, NS_USER, &user_key(tenant, user)).await?.unwrap_or_default())
}

/// Reads, changes and writes a user's record with compare-and-set, retrying on conflicts.
/// `f` may run several times; it must decide only from the record it is given.
pub(crate) async fn update_user<R>(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    mut f: impl FnMut(&mut UserMfa) -> Result<R>,
) -> Result<R> {
    let key = user_key(tenant, user);
    for _ in 0..MFA_CAS_RETRIES {
        let (version, mut rec) = user_rec(hub, tenant, user).await?;
        let before = rec.clone();
        let r = f(&mut rec)?;
        if rec == before {
            return Ok(r);
        }
        match hub.store.kv_put(NS_USER, &key, version, encode(&rec)?).await {
            Ok(_) => return Ok(r),
            Err(StoreError::VersionConflict) | Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(MfaError::Account(AccountError::Busy))
}

/// The MFA state of a session (the default for sessions without a record).
pub async fn session_rec(hub: &Hub, session_id: &str) -> Result<SessionMfaRec, StoreError> {
    match hub.store.kv_get(NS_SESSION, session_id).await? {
        None => Ok(SessionMfaRec::default()),
        Some(e) => {
            postcard::from_bytes(&e.value).map_err(|e| StoreError::Corrupt(format!("{NS_SESSION}: {e}")))
        }
    }
}

/// Deletes the MFA state of a revoked session (a failure only leaves a small dead record).
pub async fn forget(hub: &Hub, session_id: &str) {
    if let Err(e) = hub.store.kv_delete(NS_SESSION, session_id, None).await {
        tracing::warn!(error = %e, session = %session_id, "MFA state of a revoked session not deleted");
    }
}

/// Deletes the MFA state of many revoked sessions, in batches.
pub async fn forget_many(hub: &Hub, session_ids: &[String]) {
    for chunk in session_ids.chunks(hush_store::MAX_KV_REPLACE) {
        if let Err(e) = hub.store.kv_delete_many(NS_SESSION, chunk.to_vec()).await {
            tracing::warn!(error = %e, sessions = chunk.len(), "MFA state of revoked sessions not deleted");
        }
    }
}

/// Writes a session's MFA state.
pub(crate) async fn put_session(hub: &Hub, session_id: &str, rec: &SessionMfaRec) -> Result<()> {
    hub.store.kv_set(NS_SESSION, session_id, encode(rec)?).await?;
    Ok(())
}

/// The trust record of one device, if any.
pub(crate) async fn trust_rec(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    device: DeviceId,
) -> Result<Option<TrustRec>> {
    Ok(read::<TrustRec>(hub, NS_TRUST, &trust_key(tenant, user, device)).await?.map(|(_, t)| t))
}

/// Writes (or replaces) the trust record of one device.
pub(crate) async fn put_trust(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    device: DeviceId,
    rec: &TrustRec,
) -> Result<()> {
    hub.store.kv_set(NS_TRUST, &trust_key(tenant, user, device), encode(rec)?).await?;
    Ok(())
}

/// The trust records of a user's devices (at most [`MFA_MAX_TRUSTED_LISTED`]), with the
/// device each belongs to; records that do not decode or name no device are skipped.
pub(crate) async fn trust_recs(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Vec<(DeviceId, TrustRec)>> {
    let prefix = trust_prefix(tenant, user);
    let entries = hub.store.kv_scan(NS_TRUST, &prefix, None, MFA_MAX_TRUSTED_LISTED).await?;
    Ok(entries.iter().filter_map(|e| trust_entry(&prefix, e)).collect())
}

fn trust_entry(prefix: &str, e: &KvEntry) -> Option<(DeviceId, TrustRec)> {
    let t = postcard::from_bytes::<TrustRec>(&e.value).ok()?;
    let dev = e.key.strip_prefix(prefix).and_then(|d| d.parse::<u32>().ok())?;
    Some((DeviceId::new(dev).ok()?, t))
}

/// Drops every trusted device of a user (all sessions revoked, MFA disabled).
pub async fn drop_trust_of_user(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<()> {
    hub.store.kv_replace_prefix(NS_TRUST, &trust_prefix(tenant, user), Vec::new()).await?;
    Ok(())
}

/// Drops every trusted device of a tenant (an administrator revoked every session).
pub async fn drop_trust_of_tenant(hub: &Hub, tenant: &TenantId) -> Result<()> {
    hub.store.kv_replace_prefix(NS_TRUST, &format!("{tenant}/"), Vec::new()).await?;
    Ok(())
}

/// Drops the trust of one device (revoked by the user, or the device removed); true if it existed.
pub async fn drop_trust(hub: &Hub, tenant: &TenantId, user: &UserId, device: DeviceId) -> Result<bool> {
    Ok(hub.store.kv_delete(NS_TRUST, &trust_key(tenant, user, device), None).await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use hush_protocol::api::DeviceRequest;

    use super::*;

    /// A pending login's device request, keys or none, survives the session record's encoding.
    #[test]
    fn a_pending_device_request_round_trips() {
        use hush_protocol::api::{SignedPreKey, UploadKeysRequest};
        use hush_protocol::wire::Payload;
        let key =
            SignedPreKey { key_id: 7, public_key: Payload(vec![5; 33]), signature: Payload(vec![1; 64]) };
        for keys in [
            None,
            Some(UploadKeysRequest {
                signed_pre_key: Some(key.clone()),
                pre_keys: vec![],
                kyber_pre_keys: vec![],
                kyber_last_resort: Some(key),
            }),
        ] {
            let device = DeviceRequest {
                id: None,
                registration_id: hush_protocol::ids::RegistrationId::new(42).unwrap(),
                name: Some("laptop".into()),
                identity_key: Some(Payload(vec![5; 33])),
                keys,
            };
            let rec = SessionMfaRec { pending_device: Some(device.clone()), ..Default::default() };
            let back: SessionMfaRec = postcard::from_bytes(&encode(&rec).unwrap()).unwrap();
            assert_eq!(back.pending_device.map(|d| format!("{d:?}")), Some(format!("{device:?}")));
        }
    }
}
