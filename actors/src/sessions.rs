//! Sessions across a user's devices: listing, revocation (store first, then audit, then the
//! sockets on every node), device removal, the session events every device of the user
//! receives reliably, and the audit log.
//!
//! Conflicts resolve the same way on every node because every decision is a write to the
//! shared store: revocation is one-way (a revoked session never becomes active again, whatever
//! activity races with it), and device-set changes are compare-and-set, so a linked device's
//! concurrent re-registration cannot resurrect a device the primary removed.

use std::sync::Arc;

use futures_util::future::join_all;
use hush_cluster::{BusMessage, Kick};
use hush_protocol::ids::{DeviceAddress, DeviceId, TenantId, UserId};
use hush_protocol::wire::{
    ContentType, Envelope, Payload, SessionEvent, CLOSE_DEVICE_REMOVED, CLOSE_UNAUTHORIZED,
};
use hush_store::{AuditRecord, NewEnvelope, SessionRecord};

use crate::accounts::AccountError;
use crate::hub::Hub;
use crate::now_ms;
use crate::tenant::Expiry;

pub use crate::audit::{AuditAction, Initiator, RevocationReason};

/// Appends an audit record. A failure is logged, not returned: the action itself has happened.
pub async fn audit(
    hub: &Hub,
    tenant: &TenantId,
    actor: &Initiator,
    action: AuditAction,
    target: Option<String>,
    result: &str,
) {
    let rec = AuditRecord {
        id: 0,
        tenant: tenant.clone(),
        at_ms: now_ms(),
        actor: actor.user.clone(),
        actor_session: actor.session.clone(),
        action: action.as_str().to_owned(),
        target,
        ip: actor.ip.clone(),
        result: result.to_owned(),
    };
    if let Err(e) = hub.store.append_audit(rec).await {
        hush_store::failure::log_failure(&e, "audit record not written");
    }
}

/// Queues `event` for every device of `user` (but `except`) and pushes it to connected ones.
pub async fn emit(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    from: DeviceId,
    except: Option<DeviceId>,
    event: SessionEvent,
) {
    let set = match hub.directory.get(tenant, user).await {
        Ok(s) => s,
        Err(e) => {
            hush_store::failure::log_failure(&e, "session event not queued");
            return;
        }
    };
    let ts = now_ms();
    let id = uuid::Uuid::new_v4();
    let items: Vec<NewEnvelope> = set
        .devices
        .iter()
        .filter(|d| Some(d.id) != except)
        .map(|d| NewEnvelope {
            to: DeviceAddress::new(tenant.clone(), user.clone(), d.id),
            envelope: Envelope {
                seq: 0,
                id,
                from: user.clone(),
                from_device: from,
                timestamp_ms: ts,
                sync: true,
                content: Payload::default(),
                event: Some(event.clone()),
                group: None,
                content_type: ContentType::Event,
            },
        })
        .collect();
    crate::delivery::queue_events(hub, items, "session event not queued").await;
}

/// Closes the live sockets of these sessions on every node (`LoggedOut` first, then `code`).
pub async fn kick_sessions(hub: &Hub, sessions: &[SessionRecord], reason: RevocationReason, code: u16) {
    let reason = reason.as_str();
    let mut kicks = Vec::with_capacity(sessions.len());
    for s in sessions {
        if let Some(conn) = hub.registry.get(&s.device) {
            conn.revoke(&s.id, reason, code);
        }
        kicks.push(Kick {
            device: s.device.clone(),
            code,
            session_id: Some(s.id.clone()),
            logged_out: Some(reason.to_owned()),
            opened_before_ms: None,
        });
    }
    if hub.bus.kind() != "local" && !kicks.is_empty() {
        // The tokens are already refused on every node (the store says revoked); this closes
        // the sockets now rather than at their next check.
        if let Err(e) = hub.bus.broadcast(&BusMessage::KickMany(kicks)).await {
            tracing::warn!(error = %e, "revocation not broadcast");
        }
    }
}

/// Revokes sessions by id: each in the store (one-way), audited, its user's devices told, its
/// sockets closed on every node. Sessions of another tenant, unknown or already revoked ones
/// are skipped. Returns the sessions this call revoked.
pub async fn revoke_many(
    hub: &Arc<Hub>,
    tenant: &TenantId,
    ids: Vec<String>,
    reason: RevocationReason,
    code: u16,
    actor: &Initiator,
) -> Result<Vec<SessionRecord>, AccountError> {
    // One bulk store call (a few operations whatever the count): the time from the call to
    // the last socket's close is dominated by the store, so no per-session round trips here.
    let started = std::time::Instant::now();
    let asked = ids.len();
    let revocation = reason.at(now_ms());
    let revoked = hub.store.revoke_sessions(tenant, ids, revocation).await?;
    let stored_ms = started.elapsed().as_millis();
    // One broadcast for the whole batch (closing each socket as its own revocation commits
    // was measured slower on the MongoDB-wire test server: 1,000 publishes competing with the
    // writes). The tokens are refused everywhere from the moment the store says revoked.
    kick_sessions(hub, &revoked, reason, code).await;
    tracing::info!(
        asked,
        revoked = revoked.len(),
        stored_ms,
        kicked_ms = started.elapsed().as_millis(),
        reason = reason.as_str(),
        "revocation stored and broadcast"
    );
    let audits = revoked.iter().map(|s| {
        let target = Some(format!("session:{} device:{}", s.id, s.device));
        audit(hub, tenant, actor, AuditAction::SessionRevoke, target, "ok")
    });
    join_all(audits).await;
    let events = revoked.iter().map(|s| {
        tracing::info!(session = %s.id, device = %s.device, reason = reason.as_str(), "session revoked");
        let ev = SessionEvent::SessionRevoked {
            session_id: s.id.clone(),
            device: s.device.device,
            reason: reason.as_str().to_owned(),
        };
        emit(hub, tenant, &s.device.user, s.device.device, None, ev)
    });
    join_all(events).await;
    join_all(revoked.iter().map(|s| hub.tenants.forget(&*hub.store, &s.id))).await;
    join_all(revoked.iter().map(|s| crate::mfa::forget(hub, &s.id))).await;
    Ok(revoked)
}

/// Ends a session its tenant's policy expired: revoked in the store (reason `expired`),
/// audited, the user's devices told, its sockets closed on every node with `LoggedOut` and
/// 4401. Only the call whose revocation the store kept does the rest (a concurrent revocation
/// for another reason wins and is reported by its own caller).
pub async fn expire(hub: &Hub, session: &SessionRecord, why: Expiry) {
    let revocation = RevocationReason::Expired.at(now_ms());
    let stored = match hub.store.revoke_session(&session.id, revocation.clone()).await {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, session = %session.id, "expired session not revoked");
            return;
        }
    };
    if stored.revoked.as_ref() != Some(&revocation) {
        return;
    }
    tracing::info!(session = %session.id, device = %session.device, ?why, "session expired");
    kick_sessions(hub, std::slice::from_ref(&stored), RevocationReason::Expired, CLOSE_UNAUTHORIZED).await;
    let result = match why {
        Expiry::Idle => "idle",
        Expiry::Absolute => "absolute",
    };
    let target = Some(format!("session:{} device:{}", session.id, session.device));
    let tenant = &session.device.tenant;
    audit(hub, tenant, &Initiator::default(), AuditAction::SessionExpire, target, result).await;
    let ev = SessionEvent::SessionRevoked {
        session_id: session.id.clone(),
        device: session.device.device,
        reason: "expired".into(),
    };
    emit(hub, tenant, &session.device.user, session.device.device, None, ev).await;
    hub.tenants.forget(&*hub.store, &session.id).await;
    crate::mfa::forget(hub, &session.id).await;
}

/// Removes a device: its sessions are revoked, its queue purged, its sockets closed with
/// 4410, and the user's other devices are told. The primary is never removed by another
/// device; it may remove itself (`own`) while it is the user's only device, so a login whose
/// last steps failed can leave nothing behind.
pub async fn remove_device(
    hub: &Arc<Hub>,
    tenant: &TenantId,
    user: &UserId,
    device: DeviceId,
    own: bool,
    actor: &Initiator,
) -> Result<(), AccountError> {
    if device == DeviceId::PRIMARY && !own {
        return Err(AccountError::Invalid("the primary device cannot be removed".into()));
    }
    hub.directory
        .update(tenant, user, |set| {
            if set.get(device).is_none() {
                return Err(AccountError::NotFound);
            }
            if device == DeviceId::PRIMARY && set.devices.len() > 1 {
                return Err(AccountError::Invalid(
                    "the primary device cannot be removed while the user has other devices".into(),
                ));
            }
            Ok(set.devices.iter().filter(|d| d.id != device).cloned().collect())
        })
        .await?;
    let addr = DeviceAddress::new(tenant.clone(), user.clone(), device);
    let sessions: Vec<String> = hub
        .store
        .sessions_of_user(tenant, user)
        .await?
        .into_iter()
        .filter(|s| s.device.device == device && s.active())
        .map(|s| s.id)
        .collect();
    revoke_many(hub, tenant, sessions, RevocationReason::DeviceRemoved, CLOSE_DEVICE_REMOVED, actor).await?;
    hub.store.purge(&addr).await?;
    crate::keys::forget_device(hub, &addr).await?;
    audit(hub, tenant, actor, AuditAction::DeviceRemove, Some(addr.to_string()), "ok").await;
    emit(hub, tenant, user, device, None, SessionEvent::DeviceRemoved { device }).await;
    Ok(())
}
