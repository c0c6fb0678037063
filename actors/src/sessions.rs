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
use crate::delivery::registry::DeviceHandle;
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
    let rec = audit_record(tenant, actor, action, target, result);
    if let Err(e) = hub.store.append_audit(rec).await {
        hush_store::failure::log_failure(&e, "audit record not written");
    }
}

/// The audit record of `action` by `actor`, now.
fn audit_record(
    tenant: &TenantId,
    actor: &Initiator,
    action: AuditAction,
    target: Option<String>,
    result: &str,
) -> AuditRecord {
    AuditRecord {
        id: 0,
        tenant: tenant.clone(),
        at_ms: now_ms(),
        actor: actor.user.clone(),
        actor_session: actor.session.clone(),
        action: action.as_str().to_owned(),
        target,
        ip: actor.ip.clone(),
        result: result.to_owned(),
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
    emit_many(hub, tenant, vec![(user.clone(), from, except, event)]).await;
}

/// [`emit`] for many events at once: one device-set lookup per user, one store write for all
/// the events' queue entries (the path of bulk revocations).
pub async fn emit_many(
    hub: &Hub,
    tenant: &TenantId,
    events: Vec<(UserId, DeviceId, Option<DeviceId>, SessionEvent)>,
) {
    let mut users: Vec<&UserId> = events.iter().map(|(u, ..)| u).collect();
    users.sort_unstable();
    users.dedup();
    let sets = join_all(users.iter().map(|u| hub.directory.get(tenant, u))).await;
    let mut devices = std::collections::HashMap::with_capacity(users.len());
    for (user, set) in users.into_iter().zip(sets) {
        match set {
            Ok(s) => {
                devices.insert(user.clone(), s);
            }
            Err(e) => hush_store::failure::log_failure(&e, "session event not queued"),
        }
    }
    let ts = now_ms();
    let mut items = Vec::new();
    for (user, from, except, event) in &events {
        let Some(set) = devices.get(user) else { continue };
        let id = uuid::Uuid::new_v4();
        items.extend(set.devices.iter().filter(|d| Some(d.id) != *except).map(|d| NewEnvelope {
            to: DeviceAddress::new(tenant.clone(), user.clone(), d.id),
            envelope: Envelope {
                seq: 0,
                id,
                from: user.clone(),
                from_device: *from,
                timestamp_ms: ts,
                sync: true,
                content: Payload::default(),
                event: Some(event.clone()),
                group: None,
                content_type: ContentType::Event,
            },
        }));
    }
    crate::delivery::queue_events(hub, items, "session event not queued").await;
}

/// Closes the live sockets of these sessions on every node (`LoggedOut` first, then `code`).
/// Returns the socket actors of this node it asked to close (their handles only: a kept
/// session handle would keep that session's actor waiting for its mailbox to close).
pub async fn kick_sessions(
    hub: &Hub,
    sessions: &[SessionRecord],
    reason: RevocationReason,
    code: u16,
) -> Vec<DeviceHandle> {
    let reason = reason.as_str();
    let mut kicks = Vec::with_capacity(sessions.len());
    let mut local = Vec::new();
    for s in sessions {
        if let Some(conn) = hub.registry.get(&s.device) {
            if conn.session_id == s.id {
                conn.revoke(&s.id, reason, code);
                local.push(conn.device);
            }
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
    local
}

/// How long a bulk revocation lets this node's sockets close before it writes the audit
/// records, the events and the clean-up (which would otherwise compete with the closes for
/// the same core).
pub const CLOSE_FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(1_000);

/// Waits until every socket's actor stopped, at most `bound`; returns how many had not.
async fn closed(sockets: &[DeviceHandle], bound: std::time::Duration) -> usize {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let open = sockets.iter().filter(|d| !d.is_closed()).count();
        if open == 0 || tokio::time::Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Revokes sessions by id: each in the store (one-way), its sockets closed on every node,
/// then audited, its user's devices told and its per-session state deleted. Sessions of another
/// tenant, unknown or already revoked ones are skipped. Returns the sessions this call revoked.
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
    let local = kick_sessions(hub, &revoked, reason, code).await;
    // Close first, then the rest: nothing below changes what the closes do (the tokens are
    // refused from the commit on), and on a busy node it would delay them (issue 15's profile
    // of 1,000 revocations: the closes waited behind 1,001 audit writes and events).
    let still_open = closed(&local, CLOSE_FIRST_WAIT).await;
    tracing::info!(
        asked,
        revoked = revoked.len(),
        stored_ms,
        local = local.len(),
        still_open,
        closed_ms = started.elapsed().as_millis(),
        reason = reason.as_str(),
        "revocation stored, broadcast and closed here"
    );
    let records = revoked
        .iter()
        .map(|s| {
            let target = Some(format!("session:{} device:{}", s.id, s.device));
            audit_record(tenant, actor, AuditAction::SessionRevoke, target, "ok")
        })
        .collect();
    if let Err(e) = hub.store.append_audits(records).await {
        hush_store::failure::log_failure(&e, "audit records not written");
    }
    // One line per session only for a single revocation: a bulk one is the summary line above
    // (every session is in the audit log), not thousands of lines.
    let single = revoked.len() == 1;
    let events = revoked
        .iter()
        .map(|s| {
            if single {
                tracing::info!(session = %s.id, device = %s.device, reason = reason.as_str(), "session revoked");
            } else {
                tracing::debug!(session = %s.id, device = %s.device, reason = reason.as_str(), "session revoked");
            }
            let ev = SessionEvent::SessionRevoked {
                session_id: s.id.clone(),
                device: s.device.device,
                reason: reason.as_str().to_owned(),
            };
            (s.device.user.clone(), s.device.device, None, ev)
        })
        .collect();
    emit_many(hub, tenant, events).await;
    let ids: Vec<String> = revoked.iter().map(|s| s.id.clone()).collect();
    hub.tenants.forget_many(&*hub.store, &ids).await;
    crate::mfa::forget_many(hub, &ids).await;
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
