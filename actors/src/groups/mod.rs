//! Groups: membership (create, list, add, remove) and the group send path.
//!
//! # Records (in the store's key-value space)
//!
//! | namespace | key | value |
//! |---|---|---|
//! | `groups` | `{tenant}/{group}` | postcard [`GroupRecord`]; the entry's version is the record's |
//! | `group_members` | `{tenant}/{user}/{group}` | empty: the per-user index behind `GET /v1/groups` |
//! | `group_sender_keys` | `{tenant}/{group}/{user}/{device:03}` | postcard [`SenderKeyUse`] |
//!
//! Every membership change goes through the group's [`GroupActor`] on the node that received
//! it, which applies changes one at a time: concurrent changes on one node never race each
//! other. Each is one compare-and-set update of the group record
//! ([`hush_store::typed::update`], whose bounded retry with jitter covers a change made at the
//! same moment on another node), so concurrent changes on different nodes all apply and none
//! is lost; a removal bumps the epoch in the same write, so each removal bumps it exactly once. The
//! per-user index is kept a superset of the truth: an added user's entry is written before the
//! record (and again after, in case a concurrent removal deleted it in between), a removed
//! user's entry is deleted after the record, only at the version read before re-checking that
//! the user is still out. Listing filters the index through the records, so a crash between
//! the writes never shows a group to a non-member.
//!
//! # Sending
//!
//! A `GroupSend` goes from the `DeviceActor` to the [`GroupActor`] of its group on this node
//! (started on demand, stopped after [`crate::limits::GROUP_IDLE_TIMEOUT`]). The actor re-reads the record
//! (one key read) for every send, so a send never passes a removal that is already committed,
//! whichever node made it; the bus broadcast of a change only drops cached state early. The
//! ciphertext is stored once ([`hush_store::QueueStore::enqueue_shared`]) with one queue entry
//! per member device but the sending one, then `Accepted`, then live routing (batched per node).
//!
//! The actor also counts, per sending device, the messages sent with its current sender key and
//! asks that device to rotate (`RotateSenderKey`) past the configured age or count
//! ([`GroupPolicy`]); the count restarts with every epoch, since every member rotates then.

use std::collections::BTreeSet;
use std::sync::Arc;

use hush_cluster::BusMessage;
use hush_protocol::api::{CreateGroupRequest, GroupInfo, GroupList};
use hush_protocol::ids::{DeviceAddress, GroupId, TenantId, UserId};
use hush_protocol::limits::{MAX_GROUPS_LISTED, MAX_GROUP_MEMBERS, MAX_GROUP_NAME_BYTES};
use hush_protocol::wire::{ContentType, Envelope, MemberDevice, Payload, SessionEvent};
use hush_store::{typed, NewEnvelope, StoreError};
use serde::{Deserialize, Serialize};

mod actor;
pub mod registry;
mod types;
pub use crate::policy::GroupPolicy;
pub use actor::{send, GroupActor, GroupState};
pub use registry::{GroupMsg, Groups, Sent};
pub use types::{Caller, Change, GroupError, GroupRecord, SenderKeyUse, Stored};

use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::now_ms;
use crate::sessions::audit;

/// Namespace of the group records.
pub const NS_GROUPS: &str = "groups";
/// Namespace of the per-user index of groups.
pub const NS_MEMBERSHIP: &str = "group_members";
/// Namespace of the sender-key usage counters.
pub const NS_SENDER_KEYS: &str = "group_sender_keys";

fn group_key(t: &TenantId, g: &GroupId) -> String {
    format!("{t}/{g}")
}
fn member_key(t: &TenantId, u: &UserId, g: &GroupId) -> String {
    format!("{t}/{u}/{g}")
}
fn usage_key(g: &GroupId, d: &DeviceAddress) -> String {
    format!("{}/{g}/{}/{:03}", d.tenant, d.user, d.device.get())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, GroupError> {
    postcard::to_allocvec(v).map_err(|e| GroupError::Store(StoreError::Corrupt(e.to_string())))
}

fn decode<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, GroupError> {
    postcard::from_bytes(b).map_err(|e| GroupError::Store(StoreError::Corrupt(e.to_string())))
}

/// Reads a group of `tenant`.
pub async fn load(hub: &Hub, tenant: &TenantId, id: &GroupId) -> Result<Option<Stored>, GroupError> {
    match hub.store.kv_get(NS_GROUPS, &group_key(tenant, id)).await? {
        Some(e) => Ok(Some(Stored { rec: decode(&e.value)?, version: e.version })),
        None => Ok(None),
    }
}

/// The API view of a group.
pub fn info(s: &Stored) -> GroupInfo {
    GroupInfo {
        id: s.rec.id.clone(),
        name: s.rec.name.clone(),
        members: s.rec.members.clone(),
        admins: s.rec.admins.clone(),
        epoch: s.rec.epoch,
        version: s.version,
        created_ms: s.rec.created_ms,
    }
}

fn check_name(name: &str) -> Result<(), GroupError> {
    if name.is_empty() || name.len() > MAX_GROUP_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(GroupError::Invalid(format!(
            "a group name is 1-{MAX_GROUP_NAME_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Checks that every user exists in `tenant` (another tenant's user is just unknown).
async fn check_users(hub: &Hub, tenant: &TenantId, users: &BTreeSet<UserId>) -> Result<(), GroupError> {
    if users.len() > MAX_GROUP_MEMBERS {
        return Err(GroupError::Invalid(format!("a group has at most {MAX_GROUP_MEMBERS} members")));
    }
    let reads = users.iter().map(|u| hub.store.get_user(tenant, u));
    for (u, r) in users.iter().zip(futures_util::future::join_all(reads).await) {
        if r?.is_none() {
            return Err(GroupError::Invalid(format!("unknown user: {u}")));
        }
    }
    Ok(())
}

/// Creates a group: the caller is its first administrator and a member.
pub async fn create(
    hub: &Arc<Hub>,
    caller: &Caller,
    req: CreateGroupRequest,
) -> Result<GroupInfo, GroupError> {
    check_name(&req.name)?;
    let tenant = &caller.device.tenant;
    let mut members: BTreeSet<UserId> = req.members.into_iter().collect();
    members.insert(caller.device.user.clone());
    check_users(hub, tenant, &members).await?;
    let rec = GroupRecord {
        id: GroupId::random(),
        tenant: tenant.clone(),
        name: req.name,
        members: members.iter().cloned().collect(),
        admins: vec![caller.device.user.clone()],
        epoch: 1,
        created_ms: now_ms(),
    };
    for u in &members {
        hub.store.kv_set(NS_MEMBERSHIP, &member_key(tenant, u, &rec.id), Vec::new()).await?;
    }
    let version = hub.store.kv_put(NS_GROUPS, &group_key(tenant, &rec.id), 0, encode(&rec)?).await?;
    let stored = Stored { rec, version };
    let ev = changed_event(&stored, &caller.device.user);
    queue_events(hub, &caller.device, vec![(stored.rec.members.clone(), ev)]).await;
    audit(hub, tenant, &caller.initiator, AuditAction::GroupCreate, Some(stored.rec.id.to_string()), "ok")
        .await;
    Ok(info(&stored))
}

/// The caller's groups (at most [`MAX_GROUPS_LISTED`]), by id.
pub async fn list(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<GroupList, GroupError> {
    let prefix = format!("{tenant}/{user}/");
    let entries = hub.store.kv_scan(NS_MEMBERSHIP, &prefix, None, MAX_GROUPS_LISTED).await?;
    let ids: Vec<GroupId> = entries
        .iter()
        .filter_map(|e| e.key.strip_prefix(&prefix).and_then(|g| GroupId::new(g).ok()))
        .collect();
    let reads = ids.iter().map(|g| load(hub, tenant, g));
    let mut groups = Vec::with_capacity(ids.len());
    for r in futures_util::future::join_all(reads).await {
        // The index is a superset: keep only groups the user is really a member of.
        if let Some(s) = r? {
            if s.rec.members.contains(user) {
                groups.push(info(&s));
            }
        }
    }
    Ok(GroupList { groups })
}

/// One group, if the caller may see it (members and tenant administrators).
pub async fn get(hub: &Hub, caller: &Caller, id: &GroupId) -> Result<GroupInfo, GroupError> {
    match load(hub, &caller.device.tenant, id).await? {
        Some(s) if caller.sees(&s.rec) => Ok(info(&s)),
        _ => Err(GroupError::NotFound),
    }
}

/// Applies `change` to the group's record with one compare-and-set update (the store's
/// bounded retry policy re-applies it if another node's change won the race). `change` returns
/// the new record, `None` for "nothing to do", or an error that aborts without writing. `added`
/// users get their index entry before the write. Returns the record before and after.
async fn change<F>(
    hub: &Hub,
    caller: &Caller,
    id: &GroupId,
    added: &BTreeSet<UserId>,
    mut change: F,
) -> Result<(Stored, Stored), GroupError>
where
    F: FnMut(&GroupRecord) -> Result<Option<GroupRecord>, GroupError>,
{
    let tenant = &caller.device.tenant;
    for u in added {
        hub.store.kv_set(NS_MEMBERSHIP, &member_key(tenant, u, id), Vec::new()).await?;
    }
    let key = group_key(tenant, id);
    let updated = typed::update(&*hub.store, NS_GROUPS, &key, |cur: Option<&GroupRecord>| match cur {
        Some(rec) if caller.sees(rec) => change(rec),
        _ => Err(GroupError::NotFound),
    })
    .await
    .map_err(|e| match e {
        GroupError::Store(StoreError::VersionConflict) => GroupError::Contended,
        other => other,
    })?;
    let stored =
        |v: Option<typed::Versioned<GroupRecord>>| v.map(|v| Stored { rec: v.value, version: v.version });
    match (stored(updated.before), stored(updated.after)) {
        (Some(before), Some(after)) => Ok((before, after)),
        _ => Err(GroupError::NotFound),
    }
}

/// After a committed change: the index entries of added users again (a concurrent removal may
/// have deleted them), removed users' entries deleted if they are still out.
async fn fix_index(hub: &Hub, tenant: &TenantId, id: &GroupId, added: &[UserId], removed: &[UserId]) {
    let r: Result<(), GroupError> = async {
        for u in added {
            hub.store.kv_set(NS_MEMBERSHIP, &member_key(tenant, u, id), Vec::new()).await?;
        }
        for u in removed {
            let key = member_key(tenant, u, id);
            let Some(entry) = hub.store.kv_get(NS_MEMBERSHIP, &key).await? else { continue };
            let now = load(hub, tenant, id).await?;
            if now.is_some_and(|s| !s.rec.members.contains(u)) {
                // Only at the version read before the re-check: a re-add in between rewrote it.
                hub.store.kv_delete(NS_MEMBERSHIP, &key, Some(entry.version)).await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        // The index stays a superset (listing filters it); a missing entry is rewritten by the
        // next change of that user's membership.
        tracing::warn!(error = %e, group = %id, "group index not updated");
    }
}

/// Adds users (group administrators and tenant administrators). Existing members' devices get
/// `DistributeSenderKey` naming the new members' devices; every member gets `GroupChanged`.
pub async fn add_members(
    hub: &Arc<Hub>,
    caller: &Caller,
    id: &GroupId,
    users: Vec<UserId>,
) -> Result<GroupInfo, GroupError> {
    actor::change(hub, caller, id, Change::Add(users)).await
}

/// Applies a membership change (the group's actor calls this, one change at a time).
async fn apply(
    hub: &Arc<Hub>,
    caller: &Caller,
    id: &GroupId,
    change: Change,
) -> Result<GroupInfo, GroupError> {
    match change {
        Change::Add(users) => apply_add(hub, caller, id, users).await,
        Change::Remove(user) => apply_remove(hub, caller, id, &user).await,
    }
}

async fn apply_add(
    hub: &Arc<Hub>,
    caller: &Caller,
    id: &GroupId,
    users: Vec<UserId>,
) -> Result<GroupInfo, GroupError> {
    let tenant = &caller.device.tenant;
    let users: BTreeSet<UserId> = users.into_iter().collect();
    if users.is_empty() {
        return Err(GroupError::Invalid("no users to add".into()));
    }
    // Visibility first: a non-member learns nothing, not even whether the users exist.
    get(hub, caller, id).await?;
    check_users(hub, tenant, &users).await?;
    let (before, after) = change(hub, caller, id, &users, |rec| {
        if !caller.manages(rec) {
            return Err(GroupError::Forbidden);
        }
        let mut members: BTreeSet<UserId> = rec.members.iter().cloned().collect();
        let n = members.len();
        members.extend(users.iter().cloned());
        if members.len() == n {
            return Ok(None);
        }
        if members.len() > MAX_GROUP_MEMBERS {
            return Err(GroupError::Invalid(format!("a group has at most {MAX_GROUP_MEMBERS} members")));
        }
        Ok(Some(GroupRecord { members: members.into_iter().collect(), ..rec.clone() }))
    })
    .await?;
    if before.version == after.version {
        return Ok(info(&after));
    }
    let new: Vec<UserId> =
        after.rec.members.iter().filter(|u| !before.rec.members.contains(u)).cloned().collect();
    fix_index(hub, tenant, id, &new, &[]).await;
    let mut devices = Vec::new();
    for u in &new {
        match hub.directory.get(tenant, u).await {
            Ok(set) => {
                devices.extend(set.devices.iter().map(|d| MemberDevice { user: u.clone(), device: d.id }))
            }
            Err(e) => tracing::warn!(error = %e, "new member's devices not read"),
        }
    }
    let old: Vec<UserId> =
        before.rec.members.iter().filter(|u| after.rec.members.contains(u)).cloned().collect();
    let distribute = SessionEvent::DistributeSenderKey { group: id.clone(), epoch: after.rec.epoch, devices };
    let events =
        vec![(after.rec.members.clone(), changed_event(&after, &caller.device.user)), (old, distribute)];
    announce(hub, caller, &after, events).await;
    let target = Some(format!("{id} +{}", new.iter().map(UserId::as_str).collect::<Vec<_>>().join(",")));
    audit(hub, tenant, &caller.initiator, AuditAction::GroupAdd, target, "ok").await;
    Ok(info(&after))
}

/// Removes a member (group administrators, tenant administrators, or the member itself:
/// leaving). The epoch is bumped; the remaining members' devices get `RotateSenderKey`; they and
/// the removed user get `GroupChanged`.
pub async fn remove_member(
    hub: &Arc<Hub>,
    caller: &Caller,
    id: &GroupId,
    user: &UserId,
) -> Result<GroupInfo, GroupError> {
    actor::change(hub, caller, id, Change::Remove(user.clone())).await
}

async fn apply_remove(
    hub: &Arc<Hub>,
    caller: &Caller,
    id: &GroupId,
    user: &UserId,
) -> Result<GroupInfo, GroupError> {
    let tenant = &caller.device.tenant;
    let (before, after) = change(hub, caller, id, &BTreeSet::new(), |rec| {
        if *user != caller.device.user && !caller.manages(rec) {
            return Err(GroupError::Forbidden);
        }
        if !rec.members.contains(user) {
            return Err(GroupError::NotFound);
        }
        Ok(Some(GroupRecord {
            members: rec.members.iter().filter(|u| *u != user).cloned().collect(),
            admins: rec.admins.iter().filter(|u| *u != user).cloned().collect(),
            epoch: rec.epoch + 1,
            ..rec.clone()
        }))
    })
    .await?;
    debug_assert!(before.version != after.version);
    fix_index(hub, tenant, id, &[], std::slice::from_ref(user)).await;
    let mut told = after.rec.members.clone();
    told.push(user.clone());
    let rotate = SessionEvent::RotateSenderKey {
        group: id.clone(),
        epoch: after.rec.epoch,
        reason: "member_removed".into(),
    };
    let events =
        vec![(told, changed_event(&after, &caller.device.user)), (after.rec.members.clone(), rotate)];
    announce(hub, caller, &after, events).await;
    audit(hub, tenant, &caller.initiator, AuditAction::GroupRemove, Some(format!("{id} -{user}")), "ok")
        .await;
    Ok(info(&after))
}

fn changed_event(s: &Stored, by: &UserId) -> SessionEvent {
    SessionEvent::GroupChanged {
        group: s.rec.id.clone(),
        name: s.rec.name.clone(),
        members: s.rec.members.clone(),
        admins: s.rec.admins.clone(),
        epoch: s.rec.epoch,
        version: s.version,
        by: by.clone(),
    }
}

/// After a committed change: the events, then this node's actor and the other nodes' told.
async fn announce(hub: &Arc<Hub>, caller: &Caller, after: &Stored, events: Vec<(Vec<UserId>, SessionEvent)>) {
    queue_events(hub, &caller.device, events).await;
    hub.groups.changed_here(&after.rec.tenant, &after.rec.id, after.clone());
    let msg = BusMessage::GroupChanged { tenant: after.rec.tenant.clone(), group: after.rec.id.clone() };
    if let Err(e) = hub.bus.broadcast(&msg).await {
        tracing::warn!(error = %e, "group change not broadcast; other nodes re-read the group on their next send");
    }
}

/// Queues each event for every device of its users (one store write), then routes them.
async fn queue_events(hub: &Hub, from: &DeviceAddress, events: Vec<(Vec<UserId>, SessionEvent)>) {
    let ts = now_ms();
    let mut items = Vec::new();
    for (users, event) in events {
        let id = uuid::Uuid::new_v4();
        for u in users {
            let set = match hub.directory.get(&from.tenant, &u).await {
                Ok(s) => s,
                Err(e) => {
                    hush_store::failure::log_failure(&e, "group event not queued for a member");
                    continue;
                }
            };
            for d in &set.devices {
                items.push(NewEnvelope {
                    to: DeviceAddress::new(from.tenant.clone(), u.clone(), d.id),
                    envelope: Envelope {
                        seq: 0,
                        id,
                        from: from.user.clone(),
                        from_device: from.device,
                        timestamp_ms: ts,
                        sync: false,
                        content: Payload::default(),
                        event: Some(event.clone()),
                        group: None,
                        content_type: ContentType::Event,
                    },
                });
            }
        }
    }
    crate::delivery::queue_events(hub, items, "group events not queued").await;
}
