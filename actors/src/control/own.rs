//! A user's commands about their own account: ending their sessions, unlinking a device (the
//! store first, then the sockets, then the device's trust).

use std::sync::Arc;

use hush_protocol::ids::DeviceId;
use hush_protocol::wire::CLOSE_UNAUTHORIZED;

use super::{ControlError, Who};
use crate::audit::RevocationReason;
use crate::hub::Hub;
use crate::{accounts, mfa, sessions, views};

/// Why a user's own revocation ended a session (sent to its clients).
const BY_USER: RevocationReason = RevocationReason::RevokedByUser;

async fn revoke(hub: &Arc<Hub>, by: &Who, ids: Vec<String>) -> Result<usize, ControlError> {
    let revoked =
        sessions::revoke_many(hub, by.tenant(), ids, BY_USER, CLOSE_UNAUTHORIZED, &by.initiator()).await?;
    Ok(revoked.len())
}

/// Ends one of the caller's sessions (another one than the caller's takes a step-up).
pub struct RevokeOwnSession {
    /// Who asks.
    pub by: Who,
    /// The session's public id.
    pub id: String,
}

pub(super) async fn revoke_session(hub: &Arc<Hub>, msg: RevokeOwnSession) -> Result<usize, ControlError> {
    let RevokeOwnSession { by, id } = msg;
    views::own_active_session(hub, by.tenant(), by.who.user(), &id).await?;
    if id != by.who.session.id {
        mfa::require_step_up(hub, &by.who, "session.revoke", by.ip.clone()).await?;
    }
    revoke(hub, &by, vec![id]).await
}

/// Ends every session of the caller but the current one (after a step-up).
pub struct RevokeOtherSessions {
    /// Who asks.
    pub by: Who,
}

pub(super) async fn revoke_others(hub: &Arc<Hub>, msg: RevokeOtherSessions) -> Result<usize, ControlError> {
    let by = msg.by;
    mfa::require_step_up(hub, &by.who, "session.revoke_others", by.ip.clone()).await?;
    let ids = views::user_session_ids(hub, by.tenant(), by.who.user(), Some(&by.who.session.id)).await?;
    revoke(hub, &by, ids).await
}

/// Ends every session of the caller, the current one too; no device stays trusted.
pub struct RevokeAllOwnSessions {
    /// Who asks.
    pub by: Who,
}

pub(super) async fn revoke_all(hub: &Arc<Hub>, msg: RevokeAllOwnSessions) -> Result<usize, ControlError> {
    let by = msg.by;
    let ids = views::user_session_ids(hub, by.tenant(), by.who.user(), None).await?;
    let n = revoke(hub, &by, ids).await?;
    // Every session gone: no device stays trusted to skip MFA.
    mfa::drop_trust_of_user(hub, by.tenant(), by.who.user()).await?;
    Ok(n)
}

/// Unlinks one of the caller's devices (its sessions, queue and sockets go with it, then its
/// trust); the primary may unlink any, another device only itself.
pub struct RemoveOwnDevice {
    /// Who asks.
    pub by: Who,
    /// The device.
    pub device: DeviceId,
}

pub(super) async fn remove_device(hub: &Arc<Hub>, msg: RemoveOwnDevice) -> Result<(), ControlError> {
    let RemoveOwnDevice { by, device } = msg;
    accounts::may_remove_device(&by.who, device)?;
    let own = by.who.session.device.device == device;
    let (tenant, user) = (by.tenant(), by.who.user());
    sessions::remove_device(hub, tenant, user, device, own, &by.initiator()).await?;
    mfa::drop_trust(hub, tenant, user, device).await?;
    Ok(())
}
