//! Where the group actors of this node are, and what they are sent (below the hub: the hub
//! holds the [`Groups`] map, the actor module starts and supervises the actors).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use hush_protocol::api::GroupInfo;
use hush_protocol::ids::{DeviceAddress, GroupId, TenantId};
use hush_protocol::wire::{GroupSendMessage, ServerFrame};
use ractor::{ActorRef, RpcReplyPort};

use super::types::{Caller, Change, GroupError, SenderKeyUse, Stored};
use crate::delivery::registry::Routes;
use crate::policy::GroupPolicy;

/// The group actors of this node and the rotation policy.
#[derive(Default)]
pub struct Groups {
    pub(super) actors: Mutex<HashMap<(TenantId, GroupId), ActorRef<GroupMsg>>>,
    policy: RwLock<GroupPolicy>,
    serial: AtomicU64,
}

impl Groups {
    /// Sets when sending devices are asked to rotate their sender keys.
    pub fn set_policy(&self, p: GroupPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = p;
    }

    /// The rotation policy.
    pub fn policy(&self) -> GroupPolicy {
        *self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh serial number for a group actor (logs).
    pub(super) fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }

    /// Group actors alive on this node.
    pub fn active(&self) -> usize {
        self.actors.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(super) fn lookup(&self, key: &(TenantId, GroupId)) -> Option<ActorRef<GroupMsg>> {
        let map = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).filter(|a| a.get_status() != ractor::ActorStatus::Stopped).cloned()
    }

    pub(super) fn forget(&self, tenant: &TenantId, id: &GroupId, actor: &ActorRef<GroupMsg>) {
        let mut map = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.clone(), id.clone());
        if map.get(&key).is_some_and(|a| a.get_id() == actor.get_id()) {
            map.remove(&key);
        }
    }

    /// A change made on this node: the local actor (if any) takes the new record.
    pub(super) fn changed_here(&self, tenant: &TenantId, id: &GroupId, now: Stored) {
        if let Some(a) = self.lookup(&(tenant.clone(), id.clone())) {
            let _ = a.cast(GroupMsg::Invalidate(Some(now)));
        }
    }

    /// Another node changed the group: the local actor (if any) drops what it cached.
    pub fn invalidate(&self, tenant: &TenantId, id: &GroupId) {
        if let Some(a) = self.lookup(&(tenant.clone(), id.clone())) {
            let _ = a.cast(GroupMsg::Invalidate(None));
        }
    }
}

/// The messages of a group actor.
pub enum GroupMsg {
    /// A group message from a device of this node; answered with the frame for the sender
    /// and, once stored, the copies for the members' devices (the sender's device actor routes
    /// them after its `Accepted`, as it does a 1:1 message's).
    Send(DeviceAddress, GroupSendMessage, RpcReplyPort<(ServerFrame, Routes)>),
    /// The group changed: take the record (a change made here) or drop the cached one.
    Invalidate(Option<Stored>),
    /// A membership change (applied here, one at a time).
    Change(Box<(Caller, Change)>, RpcReplyPort<Result<GroupInfo, GroupError>>),
    /// A send was stored: count the sender's key use.
    Counted(Sent),
    /// Stop if idle.
    IdleCheck,
}

/// What the store part of a send found.
pub struct Sent {
    pub(super) from: DeviceAddress,
    pub(super) current: Option<Stored>,
    pub(super) accepted_epoch: Option<u64>,
    pub(super) loaded_usage: Option<SenderKeyUse>,
}
