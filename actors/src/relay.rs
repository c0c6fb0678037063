//! The 1:1 relay path of a `Send` (DESIGN.md, "The path of a message"):
//!
//! 1. the recipient's device set (and the sender's own, for sync copies) is checked: a wrong set
//!    is answered with `MismatchedDevices`, a re-registered device with `StaleDevices`, and
//!    nothing is stored;
//! 2. one envelope per device is appended to its durable queue (group commit);
//! 3. only then is `Accepted` the answer, and each envelope is pushed to its device's actor if
//!    it is connected here; a full mailbox disconnects that device (its envelopes stay queued).

use std::collections::HashSet;

use hush_protocol::ids::{DeviceAddress, DeviceId, UserId};
use hush_protocol::wire::{DeviceMessage, Envelope, ErrorCode, SendMessage, ServerFrame};
use hush_store::{DeviceSet, NewEnvelope};

use crate::delivery::Routes;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::now_ms;

/// The outcome of checking one user's device set.
enum Check {
    Ok,
    Mismatched { missing: Vec<DeviceId>, extra: Vec<DeviceId> },
    Stale(Vec<DeviceId>),
    Duplicate,
}

/// Compares the ciphertexts' devices with the registered set, leaving out `skip` (the sending
/// device itself, which never gets a copy).
fn check(set: &DeviceSet, msgs: &[DeviceMessage], skip: Option<DeviceId>) -> Check {
    let mut seen = HashSet::with_capacity(msgs.len());
    if msgs.iter().any(|m| !seen.insert(m.device)) {
        return Check::Duplicate;
    }
    let expected = set.devices.iter().filter(|d| Some(d.id) != skip);
    let missing: Vec<DeviceId> = expected.clone().filter(|d| !seen.contains(&d.id)).map(|d| d.id).collect();
    let mut extra: Vec<DeviceId> = msgs
        .iter()
        .filter(|m| Some(m.device) == skip || set.get(m.device).is_none())
        .map(|m| m.device)
        .collect();
    extra.sort_unstable();
    if !missing.is_empty() || !extra.is_empty() {
        return Check::Mismatched { missing, extra };
    }
    let mut stale: Vec<DeviceId> = msgs
        .iter()
        .filter(|m| set.get(m.device).is_some_and(|d| d.registration_id != m.registration_id))
        .map(|m| m.device)
        .collect();
    if stale.is_empty() {
        Check::Ok
    } else {
        stale.sort_unstable();
        Check::Stale(stale)
    }
}

fn refusal(id: uuid::Uuid, user: &UserId, c: Check) -> Option<ServerFrame> {
    match c {
        Check::Ok => None,
        Check::Mismatched { missing, extra } => {
            Some(ServerFrame::MismatchedDevices { id, user: user.clone(), missing, extra })
        }
        Check::Stale(stale) => Some(ServerFrame::StaleDevices { id, user: user.clone(), stale }),
        Check::Duplicate => Some(ServerFrame::Error {
            id: Some(id),
            code: ErrorCode::InvalidRequest,
            message: "a device appears twice".into(),
            retry_after_s: None,
        }),
    }
}

/// The devices a sender must address: `set` without the devices that have no keys yet (a
/// client that logged in without keys and has not uploaded them). Such a device cannot be
/// reached by a session anyway; asking for it would fail every send to the user. Only the
/// devices `msgs` leaves out are looked up, and never `skip` (the sending device, which gets
/// no copy), so a send that addresses every device costs no store read.
async fn listed(
    hub: &Hub,
    tenant: &hush_protocol::ids::TenantId,
    user: &UserId,
    set: std::sync::Arc<DeviceSet>,
    msgs: &[DeviceMessage],
    skip: Option<DeviceId>,
) -> Result<std::sync::Arc<DeviceSet>, hush_store::StoreError> {
    let mut keyless = Vec::new();
    let left_out =
        |d: &&hush_store::DeviceRecord| Some(d.id) != skip && msgs.iter().all(|m| m.device != d.id);
    for d in set.devices.iter().filter(left_out) {
        let addr = DeviceAddress::new(tenant.clone(), user.clone(), d.id);
        if !crate::keys::has_keys(hub, &addr).await? {
            keyless.push(d.id);
        }
    }
    if keyless.is_empty() {
        return Ok(set);
    }
    let mut set = DeviceSet::clone(&set);
    set.devices.retain(|d| !keyless.contains(&d.id));
    Ok(std::sync::Arc::new(set))
}

/// Checks one `Send`: the refusal to answer with, or the envelopes to store.
async fn prepare(
    hub: &Hub,
    from: &DeviceAddress,
    msg: SendMessage,
    ts: u64,
) -> Result<Vec<NewEnvelope>, ServerFrame> {
    let id = msg.id;
    let to_self = msg.to == from.user;
    let to_set = hub.directory.get(&from.tenant, &msg.to).await.map_err(|e| unavailable(id, e))?;
    let skip = to_self.then_some(from.device);
    let to_set = listed(hub, &from.tenant, &msg.to, to_set, &msg.devices, skip)
        .await
        .map_err(|e| unavailable(id, e))?;
    if to_set.devices.is_empty() {
        return Err(ServerFrame::Error {
            id: Some(id),
            code: ErrorCode::UnknownRecipient,
            message: "no such user in this tenant".into(),
            retry_after_s: None,
        });
    }
    if let Some(r) = refusal(id, &msg.to, check(&to_set, &msg.devices, skip)) {
        return Err(r);
    }
    if to_self {
        if !msg.sync.is_empty() {
            let extra = msg.sync.iter().map(|m| m.device).collect();
            return Err(ServerFrame::MismatchedDevices {
                id,
                user: from.user.clone(),
                missing: vec![],
                extra,
            });
        }
    } else {
        let own = hub.directory.get(&from.tenant, &from.user).await.map_err(|e| unavailable(id, e))?;
        let own = listed(hub, &from.tenant, &from.user, own, &msg.sync, Some(from.device))
            .await
            .map_err(|e| unavailable(id, e))?;
        if let Some(r) = refusal(id, &from.user, check(&own, &msg.sync, Some(from.device))) {
            return Err(r);
        }
    }
    let mk = |user: &UserId, m: DeviceMessage, sync: bool| NewEnvelope {
        to: DeviceAddress::new(from.tenant.clone(), user.clone(), m.device),
        envelope: Envelope {
            seq: 0,
            id,
            from: from.user.clone(),
            from_device: from.device,
            timestamp_ms: ts,
            sync,
            content: m.content,
            event: None,
            group: None,
            content_type: m.content_type,
        },
    };
    let mut items = Vec::with_capacity(msg.devices.len() + msg.sync.len());
    let to = msg.to;
    for m in msg.devices {
        items.push(mk(&to, m, to_self));
    }
    for m in msg.sync {
        items.push(mk(&from.user, m, true));
    }
    Ok(items)
}

/// The answer to a send refused because these devices' queues are full (nothing was stored).
pub fn queue_full(id: uuid::Uuid, devices: &[DeviceAddress]) -> ServerFrame {
    let names: Vec<String> =
        devices.iter().take(MAX_NAMED_FULL).map(|d| format!("{}/{}", d.user, d.device)).collect();
    let more = devices.len().saturating_sub(MAX_NAMED_FULL);
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    ServerFrame::Error {
        id: Some(id),
        code: ErrorCode::QueueFull,
        message: format!("queue full for device(s) {}{tail}; nothing stored", names.join(", ")),
        retry_after_s: None,
    }
}

/// Devices a `queue_full` error names at most (the frame stays small).
pub const MAX_NAMED_FULL: usize = 16;

fn unavailable(id: uuid::Uuid, e: hush_store::StoreError) -> ServerFrame {
    hush_store::failure::log_failure(&e, "send not stored");
    ServerFrame::Error {
        id: Some(id),
        code: ErrorCode::Unavailable,
        message: "message not stored; retry".into(),
        retry_after_s: None,
    }
}

/// Checks and stores a batch of `Send`s from device `from`, in order, with one store write for
/// all the accepted ones; returns one answer per message, in input order, and the stored
/// envelopes to route. The caller answers first (`Accepted` means durable, DESIGN step 3) and
/// routes after ([`crate::delivery::route_all`]), before it takes the sender's next batch, so live delivery keeps
/// the sender's order.
///
/// A device's sends go through here one batch at a time (the `DeviceActor` queues the next
/// ones meanwhile), so a sender's messages are queued in the order it sent them.
pub async fn send_batch(
    hub: &Hub,
    from: &DeviceAddress,
    msgs: Vec<SendMessage>,
) -> (Vec<ServerFrame>, Routes) {
    let mut routes = Vec::new();
    let ts = now_ms();
    let mut answers: Vec<Option<ServerFrame>> = Vec::with_capacity(msgs.len());
    let mut items = Vec::new();
    let mut stored_ids = Vec::new();
    let mut per_msg = Vec::new();
    for msg in msgs {
        let id = msg.id;
        match prepare(hub, from, msg, ts).await {
            Ok(mut its) => {
                per_msg.push(its.len());
                items.append(&mut its);
                stored_ids.push((answers.len(), id));
                answers.push(None);
            }
            Err(refused) => answers.push(Some(refused)),
        }
    }
    if let [(i, id)] = stored_ids[..] {
        answers[i] = Some(store_one(hub, id, items, &mut routes).await);
        return (answers.into_iter().flatten().collect(), routes);
    }
    // Several sends in one write; kept aside in case a device's queue is full, so that only the
    // sends that would overflow it are refused (each one all or none), not the whole batch.
    let spare = (stored_ids.len() > 1).then(|| items.clone());
    if !items.is_empty() {
        let targets: Vec<DeviceAddress> = items.iter().map(|i| i.to.clone()).collect();
        match hub.store.enqueue(items).await {
            Ok(stored) => {
                Metrics::add(&hub.metrics.envelopes_accepted, stored.len() as u64);
                routes.extend(targets.into_iter().zip(stored));
                for (i, id) in stored_ids {
                    answers[i] = Some(ServerFrame::Accepted { id });
                }
            }
            Err(hush_store::StoreError::QueueFull(full)) => {
                tracing::debug!(
                    devices = full.len(),
                    "batch refused (queue full): storing its sends one by one"
                );
                let mut rest = spare.unwrap_or_default().into_iter();
                for ((i, id), n) in stored_ids.into_iter().zip(per_msg) {
                    let its: Vec<NewEnvelope> = rest.by_ref().take(n).collect();
                    answers[i] = Some(store_one(hub, id, its, &mut routes).await);
                }
            }
            Err(e) => {
                hush_store::failure::log_failure(&e, "send not stored");
                for (i, id) in stored_ids {
                    answers[i] = Some(ServerFrame::Error {
                        id: Some(id),
                        code: ErrorCode::Unavailable,
                        message: "message not stored; retry".into(),
                        retry_after_s: None,
                    });
                }
            }
        }
    }
    (answers.into_iter().flatten().collect(), routes)
}

/// Stores one send's envelopes (all or none), adding them to `routes`; the answer for its
/// sender.
async fn store_one(hub: &Hub, id: uuid::Uuid, items: Vec<NewEnvelope>, routes: &mut Routes) -> ServerFrame {
    let targets: Vec<DeviceAddress> = items.iter().map(|i| i.to.clone()).collect();
    match hub.store.enqueue(items).await {
        Ok(stored) => {
            Metrics::add(&hub.metrics.envelopes_accepted, stored.len() as u64);
            routes.extend(targets.into_iter().zip(stored));
            ServerFrame::Accepted { id }
        }
        Err(hush_store::StoreError::QueueFull(full)) => queue_full(id, &full),
        Err(e) => unavailable(id, e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hush_protocol::ids::RegistrationId;
    use hush_protocol::wire::Payload;
    use hush_store::DeviceRecord;

    fn set(ids: &[(u32, u32)]) -> DeviceSet {
        DeviceSet {
            version: 1,
            devices: ids
                .iter()
                .map(|(d, r)| DeviceRecord {
                    id: DeviceId::new(*d).unwrap(),
                    registration_id: RegistrationId::new(*r).unwrap(),
                    name: String::new(),
                    created_ms: 0,
                })
                .collect(),
        }
    }
    fn msgs(ids: &[(u32, u32)]) -> Vec<DeviceMessage> {
        ids.iter()
            .map(|(d, r)| DeviceMessage {
                device: DeviceId::new(*d).unwrap(),
                registration_id: RegistrationId::new(*r).unwrap(),
                content: Payload(vec![1]),
                content_type: hush_protocol::wire::ContentType::Ciphertext,
            })
            .collect()
    }

    #[test]
    fn device_set_check() {
        let s = set(&[(1, 10), (2, 20)]);
        assert!(matches!(check(&s, &msgs(&[(1, 10), (2, 20)]), None), Check::Ok));
        match check(&s, &msgs(&[(1, 10), (3, 30)]), None) {
            Check::Mismatched { missing, extra } => {
                assert_eq!(missing, vec![DeviceId::new(2).unwrap()]);
                assert_eq!(extra, vec![DeviceId::new(3).unwrap()]);
            }
            _ => panic!("expected mismatch"),
        }
        match check(&s, &msgs(&[(1, 10), (2, 21)]), None) {
            Check::Stale(st) => assert_eq!(st, vec![DeviceId::new(2).unwrap()]),
            _ => panic!("expected stale"),
        }
        assert!(matches!(check(&s, &msgs(&[(1, 10), (1, 10)]), None), Check::Duplicate));
        // The sending device is skipped, and naming it is an extra.
        assert!(matches!(check(&s, &msgs(&[(2, 20)]), Some(DeviceId::PRIMARY)), Check::Ok));
        assert!(matches!(
            check(&s, &msgs(&[(1, 10), (2, 20)]), Some(DeviceId::PRIMARY)),
            Check::Mismatched { .. }
        ));
        // Mismatch wins over stale: a client fixes the set first.
        assert!(matches!(check(&s, &msgs(&[(1, 11)]), None), Check::Mismatched { .. }));
    }
}
