//! Trusted devices: a device that passed a challenge with "remember this device" skips the
//! login challenge until its trust ends. Only the SHA-256 of the trust token is stored.

use hush_protocol::api::{Secret, TrustedDevice};
use hush_protocol::ids::{DeviceId, TenantId, UserId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::accounts::auth::Authed;
use crate::accounts::tokens::new_token;
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::mfa::data::{drop_trust, put_trust, trust_rec, trust_recs};
use crate::mfa::error::Result;
use crate::mfa::notify::{changed, initiator};
use crate::mfa::policy::trust_ms;
use crate::mfa::records::{StoredPolicy, TrustRec};
use crate::now_ms;
use crate::sessions;

/// Whether `device` is trusted now and `token` is its trust token.
pub(crate) async fn trusted(
    hub: &Hub,
    p: &StoredPolicy,
    tenant: &TenantId,
    user: &UserId,
    device: DeviceId,
    token: &Secret,
    now: u64,
) -> Result<bool> {
    if trust_ms(p) == 0 {
        return Ok(false);
    }
    let Some(t) = trust_rec(hub, tenant, user, device).await? else {
        return Ok(false);
    };
    let h: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
    Ok(bool::from(h.ct_eq(&t.token_hash)) && t.expires_ms > now)
}

/// Trusts the caller's device for the policy's trust period from `now` (if the policy offers
/// trust), audited and told to the user's devices; returns the new trust token and its end.
pub(crate) async fn remember_device(
    hub: &Hub,
    me: &Authed,
    p: &StoredPolicy,
    now: u64,
    ip: Option<String>,
) -> Result<(Option<Secret>, Option<u64>)> {
    if trust_ms(p) == 0 {
        return Ok((None, None));
    }
    let token = new_token();
    let until = now + trust_ms(p);
    let rec = TrustRec {
        token_hash: Sha256::digest(token.expose().as_bytes()).into(),
        created_ms: now,
        expires_ms: until,
    };
    put_trust(hub, me.tenant(), me.user(), me.session.device.device, &rec).await?;
    let target = Some(format!("device:{}", me.session.device));
    sessions::audit(hub, me.tenant(), &initiator(me, ip), AuditAction::MfaTrustAdd, target, "ok").await;
    changed(hub, me, "device_trusted").await;
    Ok((Some(token), Some(until)))
}

/// Stops trusting one of the caller's devices; true if it was trusted.
pub async fn revoke_trust(hub: &Hub, me: &Authed, device: DeviceId, ip: Option<String>) -> Result<bool> {
    let existed = drop_trust(hub, me.tenant(), me.user(), device).await?;
    if existed {
        let target = Some(format!("device:{}/{}/{}", me.tenant(), me.user(), device));
        sessions::audit(hub, me.tenant(), &initiator(me, ip), AuditAction::MfaTrustRevoke, target, "ok")
            .await;
        changed(hub, me, "trust_revoked").await;
    }
    Ok(existed)
}

/// The caller's unexpired trusted devices.
pub async fn trusted_devices(hub: &Hub, me: &Authed) -> Result<Vec<TrustedDevice>> {
    let now = now_ms();
    let recs = trust_recs(hub, me.tenant(), me.user()).await?;
    Ok(recs
        .into_iter()
        .filter(|(_, t)| t.expires_ms > now)
        .map(|(device, t)| TrustedDevice { device, created_ms: t.created_ms, expires_ms: t.expires_ms })
        .collect())
}
