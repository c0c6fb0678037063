//! `GroupActor`: one per active group on this node (a ractor actor under the groups
//! supervisor), and the group send path.
//!
//! Started on demand by the first send, stopped after [`GROUP_IDLE_TIMEOUT`]. At start (and at
//! every restart after a failure) it loads the group's record from the store: membership and
//! epoch are the store's, never the failed actor's. Each send is answered from a task of its
//! own (the record is re-read from the store, so a removal committed on any node is seen), and
//! the sender-key usage it counts comes back to the actor as a message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_protocol::api::GroupInfo;
use hush_protocol::ids::{DeviceAddress, GroupId, TenantId};
use hush_protocol::wire::{
    ContentType, Envelope, ErrorCode, GroupSendMessage, GroupStamp, Payload, ServerFrame, SessionEvent,
};
use hush_store::{NewEnvelope, SharedEnvelope, StoreError};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};

use super::registry::{GroupMsg, Sent};
use super::types::{Caller, Change, GroupError, SenderKeyUse, Stored};
use super::{decode, encode, load, usage_key, NS_SENDER_KEYS};
use crate::delivery::Routes;
use crate::hub::Hub;
use crate::limits::{GROUP_IDLE_TIMEOUT, MAX_GROUP_ACTORS, SENDER_KEY_USAGE_FLUSH};
use crate::metrics::Metrics;
use crate::now_ms;
use crate::supervise::{Area, Restart, Restarting};

/// Sends a group message from `from` (through the group's actor on this node): the answer for
/// the sender, and the stored copies for the members' devices, which the caller routes live
/// (after the answer: `Accepted` means stored, it does not wait for the live hand-off).
pub async fn send(hub: &Arc<Hub>, from: &DeviceAddress, msg: GroupSendMessage) -> (ServerFrame, Routes) {
    let id = msg.id;
    for _ in 0..2 {
        let Some(actor) = actor_of(hub, &from.tenant, &msg.group).await else { break };
        match actor.call(|reply| GroupMsg::Send(from.clone(), msg.clone(), reply), None).await {
            Ok(ractor::rpc::CallResult::Success(answer)) => return answer,
            // The actor had stopped (idle) before the send reached it: start a new one.
            Err(_) => hub.groups.forget(&from.tenant, &msg.group, &actor),
            // It failed while handling this send: nothing was stored; its supervisor restarts
            // it and the client retries.
            Ok(_) => break,
        }
    }
    let refused = ServerFrame::Error {
        id: Some(id),
        code: ErrorCode::Unavailable,
        message: "group unavailable; retry".into(),
        retry_after_s: None,
    };
    (refused, Vec::new())
}

/// Applies a membership change through the group's actor on this node.
pub(super) async fn change(
    hub: &Arc<Hub>,
    caller: &Caller,
    id: &GroupId,
    change: Change,
) -> Result<GroupInfo, GroupError> {
    for _ in 0..2 {
        let actor = actor_of(hub, &caller.device.tenant, id).await.ok_or(GroupError::Unavailable)?;
        let msg = |reply| GroupMsg::Change(Box::new((caller.clone(), change.clone())), reply);
        match actor.call(msg, None).await {
            Ok(ractor::rpc::CallResult::Success(answer)) => return answer,
            // Stopped (idle) before the change reached it: start a new one.
            Err(_) => hub.groups.forget(&caller.device.tenant, id, &actor),
            // It failed while applying the change; its supervisor restarts it.
            Ok(_) => break,
        }
    }
    Err(GroupError::Unavailable)
}

/// The group's actor on this node, started if needed (under the groups supervisor);
/// `None` at [`MAX_GROUP_ACTORS`] or if it cannot start.
pub(super) async fn actor_of(hub: &Arc<Hub>, tenant: &TenantId, id: &GroupId) -> Option<ActorRef<GroupMsg>> {
    let groups = &hub.groups;
    let key = (tenant.clone(), id.clone());
    if let Some(a) = groups.lookup(&key) {
        return Some(a);
    }
    if groups.active() >= MAX_GROUP_ACTORS {
        let mut map = groups.actors.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, a| a.get_status() != ractor::ActorStatus::Stopped);
        if map.len() >= MAX_GROUP_ACTORS {
            return None;
        }
    }
    let recipe = Recipe { hub: hub.clone(), tenant: tenant.clone(), id: id.clone() };
    let sup = hub.tree.get(Area::Groups);
    let actor = recipe.spawn(sup.as_ref().map(|s| s.cell())).await?;
    let mut map = groups.actors.lock().unwrap_or_else(|e| e.into_inner());
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

/// How to (re)start the actor of one group.
struct Recipe {
    hub: Arc<Hub>,
    tenant: TenantId,
    id: GroupId,
}

impl Recipe {
    async fn spawn(&self, supervisor: Option<ActorCell>) -> Option<ActorRef<GroupMsg>> {
        let serial = self.hub.groups.next_serial();
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
                    let (answer, sent, routes) = store_send(&hub, &tenant, &gid, from, msg, need_usage).await;
                    let _ = reply.send((answer, routes));
                    let _ = myself.cast(GroupMsg::Counted(sent));
                });
            }
            GroupMsg::Change(change, reply) => {
                crate::faults::check("group", "change", &format!("{}/{}", s.tenant, s.id));
                s.last_active = Instant::now();
                let (caller, change) = *change;
                let _ = reply.send(super::apply(&s.hub, &caller, &s.id, change).await);
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
        retry_after_s: None,
    }
}

/// The store part of a send: re-read the record, check membership and epoch, store once for
/// every member device. Returns the sender's answer, what the actor counts and the copies to
/// route.
async fn store_send(
    hub: &Arc<Hub>,
    tenant: &TenantId,
    gid: &GroupId,
    from: DeviceAddress,
    msg: GroupSendMessage,
    need_usage: bool,
) -> (ServerFrame, Sent, Routes) {
    let id = msg.id;
    let refuse = |from, current, answer| {
        (answer, Sent { from, current, accepted_epoch: None, loaded_usage: None }, Vec::new())
    };
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
            retry_after_s: None,
        };
        return refuse(from, None, f);
    };
    if msg.epoch != s.rec.epoch {
        let f = ServerFrame::StaleEpoch { id, group: gid.clone(), epoch: s.rec.epoch };
        return refuse(from, Some(s), f);
    }
    let routes = match fan_out(hub, &from, &s, msg).await {
        Ok(routes) => routes,
        // A member device's queue is full: the whole group send is refused (stored for no
        // one), like a 1:1 send, so an accepted message reached every queue.
        Err(StoreError::QueueFull(full)) => {
            return refuse(from, Some(s), crate::relay::queue_full(id, &full))
        }
        Err(e) => {
            hush_store::failure::log_failure(&e, "group send not stored");
            return refuse(from, Some(s), unavailable(id));
        }
    };
    let loaded_usage = if need_usage {
        match hub.store.kv_get(NS_SENDER_KEYS, &usage_key(gid, &from)).await {
            Ok(Some(e)) => decode(&e.value).ok(),
            _ => None,
        }
    } else {
        None
    };
    let epoch = s.rec.epoch;
    let sent = Sent { from, current: Some(s), accepted_epoch: Some(epoch), loaded_usage };
    (ServerFrame::Accepted { id }, sent, routes)
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
            content_type: ContentType::Event,
        },
    };
    crate::delivery::queue_events(hub, vec![item], "rotation request not queued").await;
}

/// Stores the ciphertext once for every member device but `from`; returns the copies to route.
async fn fan_out(
    hub: &Hub,
    from: &DeviceAddress,
    s: &Stored,
    msg: GroupSendMessage,
) -> Result<Routes, StoreError> {
    let started = tokio::time::Instant::now();
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
        return Ok(Vec::new());
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
        content_type: msg.content_type,
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
    crate::metrics::observe(&hub.metrics.latency.fanout, started.elapsed());
    Ok(items)
}
