//! `GroupActor`: one per active group on this node (a ractor actor under the groups
//! supervisor), and the group send path.
//!
//! Started on demand by the first send, stopped after [`GROUP_IDLE_TIMEOUT`]. At start (and at
//! every restart after a failure) it loads the group's record from the store: membership and
//! epoch are the store's, never the failed actor's. Each send is answered from a task of its
//! own (the record is re-read from the store, so a removal committed on any node is seen), and
//! the sender-key usage it counts comes back to the actor as a message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hush_protocol::ids::{DeviceAddress, GroupId, TenantId};
use hush_protocol::wire::{
    Envelope, ErrorCode, GroupSendMessage, GroupStamp, Payload, ServerFrame, SessionEvent,
};
use hush_store::{NewEnvelope, SharedEnvelope, StoreError};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{decode, encode, load, usage_key, GroupError, GroupPolicy, SenderKeyUse, Stored, NS_SENDER_KEYS};
use crate::hub::Hub;
use crate::limits::{GROUP_IDLE_TIMEOUT, MAX_GROUP_ACTORS, SENDER_KEY_USAGE_FLUSH};
use crate::metrics::Metrics;
use crate::now_ms;
use crate::relay::route_all;
use crate::supervise::{Area, Restart, Restarting};

/// Sends a group message from `from` (through the group's actor on this node).
pub async fn send(hub: &Arc<Hub>, from: &DeviceAddress, msg: GroupSendMessage) -> ServerFrame {
    let id = msg.id;
    for _ in 0..2 {
        let Some(actor) = hub.groups.actor(hub, &from.tenant, &msg.group).await else { break };
        match actor.call(|reply| GroupMsg::Send(from.clone(), msg.clone(), reply), None).await {
            Ok(ractor::rpc::CallResult::Success(answer)) => return answer,
            // The actor had stopped (idle) before the send reached it: start a new one.
            Err(_) => hub.groups.forget(&from.tenant, &msg.group, &actor),
            // It failed while handling this send: nothing was stored; its supervisor restarts
            // it and the client retries.
            Ok(_) => break,
        }
    }
    ServerFrame::Error {
        id: Some(id),
        code: ErrorCode::Unavailable,
        message: "group unavailable; retry".into(),
    }
}

/// The group actors of this node and the rotation policy.
#[derive(Default)]
pub struct Groups {
    actors: Mutex<HashMap<(TenantId, GroupId), ActorRef<GroupMsg>>>,
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

    /// Group actors alive on this node.
    pub fn active(&self) -> usize {
        self.actors.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn lookup(&self, key: &(TenantId, GroupId)) -> Option<ActorRef<GroupMsg>> {
        let map = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).filter(|a| a.get_status() != ractor::ActorStatus::Stopped).cloned()
    }

    /// The group's actor on this node, started if needed (under the groups supervisor);
    /// `None` at [`MAX_GROUP_ACTORS`] or if it cannot start.
    async fn actor(&self, hub: &Arc<Hub>, tenant: &TenantId, id: &GroupId) -> Option<ActorRef<GroupMsg>> {
        let key = (tenant.clone(), id.clone());
        if let Some(a) = self.lookup(&key) {
            return Some(a);
        }
        if self.active() >= MAX_GROUP_ACTORS {
            let mut map = self.actors.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, a| a.get_status() != ractor::ActorStatus::Stopped);
            if map.len() >= MAX_GROUP_ACTORS {
                return None;
            }
        }
        let recipe = Recipe { hub: hub.clone(), tenant: tenant.clone(), id: id.clone() };
        let sup = hub.tree.get(Area::Groups);
        let actor = recipe.spawn(sup.as_ref().map(|s| s.cell())).await?;
        let mut map = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = map.get(&key).filter(|a| a.get_status() != ractor::ActorStatus::Stopped) {
            // Another send started one meanwhile: use it.
            actor.stop(None);
            return Some(other.clone());
        }
        if let Some(s) = sup {
            s.watch(&actor.get_cell(), Box::new(recipe));
        }
        map.insert(key, actor.clone());
        Some(actor)
    }

    fn forget(&self, tenant: &TenantId, id: &GroupId, actor: &ActorRef<GroupMsg>) {
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

/// How to (re)start the actor of one group.
struct Recipe {
    hub: Arc<Hub>,
    tenant: TenantId,
    id: GroupId,
}

impl Recipe {
    async fn spawn(&self, supervisor: Option<ActorCell>) -> Option<ActorRef<GroupMsg>> {
        let serial = self.hub.groups.serial.fetch_add(1, Ordering::Relaxed);
        let args = (self.hub.clone(), self.tenant.clone(), self.id.clone(), serial);
        let spawned = match supervisor {
            Some(sup) => Actor::spawn_linked(None, GroupActor, args, sup).await,
            None => Actor::spawn(None, GroupActor, args).await,
        };
        match spawned {
            Ok((a, _)) => Some(a),
            Err(e) => {
                tracing::error!(error = %e, group = %self.id, "group actor not started");
                None
            }
        }
    }
}

impl Restart for Recipe {
    fn restart(&self, supervisor: ActorCell) -> Restarting {
        let this = Recipe { hub: self.hub.clone(), tenant: self.tenant.clone(), id: self.id.clone() };
        Box::pin(async move {
            let actor = this.spawn(Some(supervisor)).await?;
            let key = (this.tenant.clone(), this.id.clone());
            this.hub.groups.actors.lock().unwrap_or_else(|e| e.into_inner()).insert(key, actor.clone());
            Some((actor.get_cell(), Box::new(this) as Box<dyn Restart>))
        })
    }

    fn describe(&self) -> String {
        format!("group {}/{}", self.tenant, self.id)
    }
}

/// The messages of a group actor.
pub enum GroupMsg {
    /// A group message from a device of this node; answered with the frame for the sender.
    Send(DeviceAddress, GroupSendMessage, RpcReplyPort<ServerFrame>),
    /// The group changed: take the record (a change made here) or drop the cached one.
    Invalidate(Option<Stored>),
    /// A send was stored: count the sender's key use.
    Counted(Sent),
    /// Stop if idle.
    IdleCheck,
}

/// What the store part of a send found.
pub struct Sent {
    from: DeviceAddress,
    current: Option<Stored>,
    accepted_epoch: Option<u64>,
    loaded_usage: Option<SenderKeyUse>,
}

/// One active group on this node.
pub struct GroupActor;

/// A group actor's state: its record (re-checked against the store on every send), and the
/// sender-key usage of the devices sending through it.
pub struct GroupState {
    hub: Arc<Hub>,
    tenant: TenantId,
    id: GroupId,
    serial: u64,
    cached: Option<Stored>,
    usage: HashMap<DeviceAddress, (SenderKeyUse, u64)>,
    last_active: Instant,
}

impl Actor for GroupActor {
    type Msg = GroupMsg;
    type State = GroupState;
    type Arguments = (Arc<Hub>, TenantId, GroupId, u64);

    async fn pre_start(
        &self,
        myself: ActorRef<GroupMsg>,
        (hub, tenant, id, serial): Self::Arguments,
    ) -> Result<GroupState, ActorProcessingErr> {
        // Membership and epoch come from the store, at the first start and after a failure.
        let cached = load(&hub, &tenant, &id).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, group = %id, "group not loaded at start; read at the first send");
            None
        });
        tracing::debug!(group = %id, serial, epoch = cached.as_ref().map(|c| c.rec.epoch), "group actor started");
        myself.send_interval(GROUP_IDLE_TIMEOUT / 4, || GroupMsg::IdleCheck);
        let usage = HashMap::new();
        Ok(GroupState { hub, tenant, id, serial, cached, usage, last_active: Instant::now() })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<GroupMsg>,
        s: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        s.hub.groups.forget(&s.tenant, &s.id, &myself);
        let dirty: Vec<(DeviceAddress, SenderKeyUse)> =
            s.usage.drain().filter(|(_, (_, unsaved))| *unsaved > 0).map(|(d, (u, _))| (d, u)).collect();
        if !dirty.is_empty() {
            let hub = s.hub.clone();
            let id = s.id.clone();
            tokio::spawn(async move {
                for (d, u) in dirty {
                    save_usage(&hub, &id, &d, u).await;
                }
            });
        }
        tracing::debug!(group = %s.id, serial = s.serial, "group actor stopped");
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<GroupMsg>,
        msg: GroupMsg,
        s: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GroupMsg::Send(from, msg, reply) => {
                crate::faults::check("group", "send", &format!("{}/{}", s.tenant, s.id));
                s.last_active = Instant::now();
                let need_usage = !s.usage.contains_key(&from);
                let (hub, tenant, gid) = (s.hub.clone(), s.tenant.clone(), s.id.clone());
                tokio::spawn(async move {
                    let (answer, sent) = store_send(&hub, &tenant, &gid, from, msg, need_usage).await;
                    let _ = reply.send(answer);
                    let _ = myself.cast(GroupMsg::Counted(sent));
                });
            }
            GroupMsg::Invalidate(now) => match now {
                Some(now) if s.cached.as_ref().is_none_or(|c| c.version < now.version) => {
                    s.cached = Some(now)
                }
                Some(_) => {}
                None => s.cached = None,
            },
            GroupMsg::Counted(sent) => {
                if let Some(c) = sent.current {
                    if s.cached.as_ref().is_none_or(|old| old.version <= c.version) {
                        s.cached = Some(c);
                    }
                }
                if let Some(epoch) = sent.accepted_epoch {
                    s.count_use(sent.from, epoch, sent.loaded_usage);
                }
            }
            GroupMsg::IdleCheck => {
                if s.last_active.elapsed() >= GROUP_IDLE_TIMEOUT {
                    myself.stop(None);
                }
            }
        }
        Ok(())
    }
}

fn unavailable(id: uuid::Uuid) -> ServerFrame {
    ServerFrame::Error {
        id: Some(id),
        code: ErrorCode::Unavailable,
        message: "message not stored; retry".into(),
    }
}

/// The store part of a send: re-read the record, check membership and epoch, store once for
/// every member device. Returns the sender's answer and what the actor counts.
async fn store_send(
    hub: &Arc<Hub>,
    tenant: &TenantId,
    gid: &GroupId,
    from: DeviceAddress,
    msg: GroupSendMessage,
    need_usage: bool,
) -> (ServerFrame, Sent) {
    let id = msg.id;
    let refuse =
        |from, current, answer| (answer, Sent { from, current, accepted_epoch: None, loaded_usage: None });
    // Every send re-reads the record: a removal committed on any node is seen.
    let current = match load(hub, tenant, gid).await {
        Ok(c) => c,
        Err(e) => {
            match &e {
                GroupError::Store(se) => hush_store::failure::log_failure(se, "group send not stored"),
                other => tracing::error!(error = %other, "group send not stored"),
            }
            return refuse(from, None, unavailable(id));
        }
    };
    let Some(s) = current.filter(|s| s.rec.members.contains(&from.user)) else {
        let f = ServerFrame::Error {
            id: Some(id),
            code: ErrorCode::UnknownGroup,
            message: "no such group, or not a member".into(),
        };
        return refuse(from, None, f);
    };
    if msg.epoch != s.rec.epoch {
        let f = ServerFrame::StaleEpoch { id, group: gid.clone(), epoch: s.rec.epoch };
        return refuse(from, Some(s), f);
    }
    match fan_out(hub, &from, &s, msg).await {
        Ok(()) => {}
        // A member device's queue is full: the whole group send is refused (stored for no
        // one), like a 1:1 send, so an accepted message reached every queue.
        Err(StoreError::QueueFull(full)) => {
            return refuse(from, Some(s), crate::relay::queue_full(id, &full))
        }
        Err(e) => {
            hush_store::failure::log_failure(&e, "group send not stored");
            return refuse(from, Some(s), unavailable(id));
        }
    }
    let loaded_usage = if need_usage {
        match hub.store.kv_get(NS_SENDER_KEYS, &usage_key(gid, &from)).await {
            Ok(Some(e)) => decode(&e.value).ok(),
            _ => None,
        }
    } else {
        None
    };
    let epoch = s.rec.epoch;
    (ServerFrame::Accepted { id }, Sent { from, current: Some(s), accepted_epoch: Some(epoch), loaded_usage })
}

async fn save_usage(hub: &Hub, id: &GroupId, d: &DeviceAddress, u: SenderKeyUse) {
    let r = match encode(&u) {
        Ok(v) => hub.store.kv_set(NS_SENDER_KEYS, &usage_key(id, d), v).await.map_err(GroupError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "sender-key usage not saved");
    }
}

impl GroupState {
    /// Counts one message of `from`'s sender key; past the policy's limits, asks it to rotate.
    fn count_use(&mut self, from: DeviceAddress, epoch: u64, loaded: Option<SenderKeyUse>) {
        let now = now_ms();
        let policy = self.hub.groups.policy();
        let (u, unsaved) = self.usage.entry(from.clone()).or_insert_with(|| (loaded.unwrap_or_default(), 0));
        if u.epoch != epoch || u.since_ms == 0 {
            *u = SenderKeyUse { epoch, since_ms: now, count: 0 };
        }
        u.count += 1;
        *unsaved += 1;
        let age = Duration::from_millis(now.saturating_sub(u.since_ms));
        let reason = if u.count >= policy.sender_key_max_messages {
            Some("max_messages")
        } else if age >= policy.sender_key_max_age {
            Some("max_age")
        } else {
            None
        };
        let hub = self.hub.clone();
        let id = self.id.clone();
        if let Some(reason) = reason {
            // The next message starts the new key's count.
            *u = SenderKeyUse { epoch, since_ms: now, count: 0 };
            *unsaved = 0;
            let saved = *u;
            let ev = SessionEvent::RotateSenderKey { group: id.clone(), epoch, reason: reason.into() };
            tokio::spawn(async move {
                save_usage(&hub, &id, &from, saved).await;
                queue_device_event(&hub, &from, ev).await;
            });
        } else if *unsaved >= SENDER_KEY_USAGE_FLUSH {
            *unsaved = 0;
            let saved = *u;
            tokio::spawn(async move { save_usage(&hub, &id, &from, saved).await });
        }
    }
}

/// Queues an event for one device (the node's own request to it).
async fn queue_device_event(hub: &Hub, to: &DeviceAddress, event: SessionEvent) {
    let item = NewEnvelope {
        to: to.clone(),
        envelope: Envelope {
            seq: 0,
            id: uuid::Uuid::new_v4(),
            from: to.user.clone(),
            from_device: to.device,
            timestamp_ms: now_ms(),
            sync: true,
            content: Payload::default(),
            event: Some(event),
            group: None,
        },
    };
    match hub.store.enqueue(vec![item]).await {
        Ok(stored) => route_all(hub, vec![to.clone()].into_iter().zip(stored).collect()).await,
        Err(e) => hush_store::failure::log_failure(&e, "rotation request not queued"),
    }
}

/// Stores the ciphertext once for every member device but `from`, then routes it.
async fn fan_out(
    hub: &Hub,
    from: &DeviceAddress,
    s: &Stored,
    msg: GroupSendMessage,
) -> Result<(), StoreError> {
    let mut to = Vec::new();
    for u in &s.rec.members {
        let set = hub.directory.get(&from.tenant, u).await?;
        for d in &set.devices {
            if *u == from.user && d.id == from.device {
                continue;
            }
            to.push(DeviceAddress::new(from.tenant.clone(), u.clone(), d.id));
        }
    }
    if to.is_empty() {
        return Ok(());
    }
    let envelope = Envelope {
        seq: 0,
        id: msg.id,
        from: from.user.clone(),
        from_device: from.device,
        timestamp_ms: now_ms(),
        sync: false,
        content: msg.content,
        event: None,
        group: Some(GroupStamp { group: s.rec.id.clone(), epoch: s.rec.epoch }),
    };
    let seqs =
        hub.store.enqueue_shared(SharedEnvelope { to: to.clone(), envelope: envelope.clone() }).await?;
    Metrics::add(&hub.metrics.envelopes_accepted, seqs.len() as u64);
    let items = to
        .into_iter()
        .zip(seqs)
        .map(|(addr, seq)| {
            let mut e = envelope.clone();
            e.seq = seq;
            e.sync = addr.user == from.user;
            (addr, e)
        })
        .collect();
    route_all(hub, items).await;
    Ok(())
}
