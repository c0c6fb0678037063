//! The MFA decision of a login: whether it must pass a challenge (decided before its device is
//! registered), and the new session's state (challenge, trusted device, grace period).

use hush_protocol::api::{DeviceRequest, MfaState, Secret, SessionMfa};
use hush_protocol::ids::DeviceId;
use hush_store::{SessionRecord, UserRecord};

use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::mfa::data::{put_session, session_rec, stored_policy, user_rec};
use crate::mfa::error::Result;
use crate::mfa::policy::{decide, ensure_grace, grace_deadline, needs};
use crate::mfa::trust::trusted;
use crate::now_ms;
use crate::sessions::{self, Initiator};

/// Whether a login must pass a challenge before it may do anything (the user has a factor
/// that applies and `device` is not a trusted device presenting its token). Decided before
/// the device is registered: see `crate::login::login`.
pub async fn login_must_challenge(
    hub: &Hub,
    user: &UserRecord,
    device: Option<DeviceId>,
    trust_token: Option<&Secret>,
) -> Result<bool> {
    let (tenant, name) = (&user.tenant, &user.user);
    let p = stored_policy(hub, tenant).await?;
    let (_, rec) = user_rec(hub, tenant, name).await?;
    let n = needs(&p, name, user.admin, &rec);
    if !n.challenge {
        return Ok(false);
    }
    let is_trusted = match (trust_token, device) {
        (Some(t), Some(d)) => trusted(hub, &p, tenant, name, d, t, now_ms()).await?,
        _ => false,
    };
    Ok(!is_trusted)
}

/// Keeps the device registration a pending login asked for with its session.
pub async fn set_pending_device(hub: &Hub, session_id: &str, request: DeviceRequest) -> Result<()> {
    let mut rec = session_rec(hub, session_id).await?;
    rec.pending_device = Some(request);
    put_session(hub, session_id, &rec).await
}

/// Decides a new session's MFA state at login (challenge, trusted device, grace period) and
/// stores it. `trust_token` counts only for an existing device named by the login.
pub async fn on_login(
    hub: &Hub,
    user: &UserRecord,
    session: &SessionRecord,
    existing_device: bool,
    trust_token: Option<&Secret>,
) -> Result<SessionMfa> {
    let (tenant, name) = (&user.tenant, &user.user);
    let now = now_ms();
    let p = stored_policy(hub, tenant).await?;
    let (_, rec) = user_rec(hub, tenant, name).await?;
    let n = needs(&p, name, user.admin, &rec);
    let rec = ensure_grace(hub, tenant, name, &n, rec).await?;
    let is_trusted = match trust_token {
        Some(t) if n.challenge && existing_device => {
            trusted(hub, &p, tenant, name, session.device.device, t, now).await?
        }
        _ => false,
    };
    let state = decide(&p, &n, grace_deadline(&p, &rec), None, is_trusted, now);
    put_session(hub, &session.id, &state).await?;
    let actor =
        Initiator { user: Some(name.clone()), session: Some(session.id.clone()), ip: session.ip.clone() };
    let target = Some(format!("session:{}", session.id));
    match (state.state, is_trusted) {
        (MfaState::MfaPending, _) => {
            sessions::audit(hub, tenant, &actor, AuditAction::MfaChallenge, target, "issued").await
        }
        (MfaState::Verified, true) => {
            sessions::audit(hub, tenant, &actor, AuditAction::MfaTrustedDevice, target, "ok").await
        }
        _ => {}
    }
    // Viewed now, not at the start: a grace period that began during this login (of zero
    // length) is already over.
    Ok(state.view(now_ms()))
}
