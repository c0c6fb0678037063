//! What the node's edge shows and checks before a command: session listings (with last
//! activity, expiry under the tenant's policy and MFA state), the sessions a revocation covers,
//! device listings, the audit log and the tenant's session lifetimes. Reads only; the commands
//! themselves are elsewhere (`control`, `sessions`, `mfa`).

use std::collections::HashMap;

use futures_util::future::join_all;
use hush_cluster::NodeSeen;
use hush_protocol::api::{
    AuditEntry, AuditPage, ClusterView, DeviceInfo, DeviceList, NodeInfo, SessionInfo, SessionList,
    SessionPolicy,
};
use hush_protocol::ids::{DeviceAddress, TenantId, UserId};
use hush_protocol::wire::Payload;
use hush_store::{AuditQuery, DeviceSet, SessionRecord};

use crate::accounts::error::AccountError;
use crate::hub::Hub;
use crate::keys;
use crate::limits::MAX_PAGE;
use crate::mfa::status::session_views;
use crate::tenant::expires_at;

type Result<T> = std::result::Result<T, AccountError>;

/// Public views of sessions of one tenant, with their last activity and expiry under the
/// tenant's policy (which depends on whether each session's user is an administrator).
/// `current` is the caller's session.
pub async fn session_infos(hub: &Hub, list: &[SessionRecord], current: &str) -> Result<Vec<SessionInfo>> {
    let Some(first) = list.first() else { return Ok(Vec::new()) };
    let tenant = &first.device.tenant;
    let settings = hub.tenants.settings(&*hub.store, tenant).await?;
    let mut admins = HashMap::new();
    for s in list {
        if !admins.contains_key(&s.device.user) {
            let admin = hub.store.get_user(tenant, &s.device.user).await?.is_some_and(|u| u.admin);
            admins.insert(s.device.user.clone(), admin);
        }
    }
    let seen = join_all(list.iter().map(|s| hub.tenants.last_seen(&*hub.store, s, None))).await;
    let ids: Vec<String> = list.iter().map(|s| s.id.clone()).collect();
    let mfa = session_views(hub, &ids).await;
    let nodes = socket_nodes(hub, list).await;
    let mut out = Vec::with_capacity(list.len());
    for (((s, last_seen), mfa), node) in list.iter().zip(seen).zip(mfa).zip(nodes) {
        let last_seen = last_seen?;
        let admin = admins.get(&s.device.user).copied().unwrap_or(false);
        out.push(SessionInfo {
            id: s.id.clone(),
            user: s.device.user.clone(),
            device: s.device.device,
            created_ms: s.created_ms,
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
            current: s.id == current,
            last_seen_ms: Some(last_seen),
            expires_ms: expires_at(&settings.sessions, admin, s, last_seen),
            mfa,
            node,
        });
    }
    Ok(out)
}

/// The node holding the live socket of each session: this node if the socket of the session's
/// device here authenticated with that very session; else the node the bus's presence names
/// for the device (presence is per device, so on another node a device's other session would
/// show the same node); `None` if not connected or the bus cannot tell now.
async fn socket_nodes(hub: &Hub, list: &[SessionRecord]) -> Vec<Option<String>> {
    let me = hub.bus.node_id();
    let mut out = vec![None; list.len()];
    let mut elsewhere = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match hub.registry.get(&s.device) {
            Some(conn) if conn.session_id == s.id => out[i] = Some(me.to_owned()),
            Some(_) => {}
            None => elsewhere.push(i),
        }
    }
    let addrs: Vec<DeviceAddress> = elsewhere.iter().map(|&i| list[i].device.clone()).collect();
    if let Ok(found) = hub.bus.locate(&addrs).await {
        for (i, node) in elsewhere.into_iter().zip(found) {
            out[i] = node.filter(|n| n != me);
        }
    }
    out
}

/// The live nodes of the cluster as their heartbeats last reported them; this node's own row
/// is current. While the bus is down, this node alone.
pub async fn cluster(hub: &Hub) -> ClusterView {
    let me = hub.bus.node_id().to_owned();
    let own = crate::health::node_report(hub).await;
    let mut seen = hub.bus.nodes().await.unwrap_or_default();
    if !seen.iter().any(|n| n.id == me) {
        seen.push(NodeSeen { id: me.clone(), seen_ms: crate::now_ms(), report: None });
        seen.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let nodes = seen
        .into_iter()
        .map(|n| {
            let this = n.id == me;
            let report = if this { Some(own.clone()) } else { n.report };
            NodeInfo {
                this,
                seen_ms: n.seen_ms,
                version: report.as_ref().map(|r| r.version.clone()),
                started_ms: report.as_ref().map(|r| r.started_ms),
                connections: report.as_ref().map(|r| r.connections),
                store: report.as_ref().map(|r| r.store.clone()),
                bus_healthy: report.map(|r| r.bus_healthy),
                id: n.id,
            }
        })
        .collect();
    ClusterView { node: me, bus: hub.bus.kind().to_owned(), bus_healthy: hub.bus.healthy(), nodes }
}

/// The active sessions of a user.
pub async fn active_sessions_of(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<Vec<SessionRecord>> {
    Ok(hub.store.sessions_of_user(tenant, user).await?.into_iter().filter(|s| s.active()).collect())
}

/// The active sessions of a user, listed (`current`: the caller's session).
pub async fn user_sessions(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    current: &str,
) -> Result<SessionList> {
    let list = active_sessions_of(hub, tenant, user).await?;
    Ok(SessionList { sessions: session_infos(hub, &list, current).await?, next: None })
}

/// The ids of a user's active sessions, but `except`.
pub async fn user_session_ids(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    except: Option<&str>,
) -> Result<Vec<String>> {
    let list = active_sessions_of(hub, tenant, user).await?;
    Ok(list.into_iter().filter(|s| Some(s.id.as_str()) != except).map(|s| s.id).collect())
}

/// [`AccountError::NotFound`] unless `id` is an active session of this user.
pub async fn own_active_session(hub: &Hub, tenant: &TenantId, user: &UserId, id: &str) -> Result<()> {
    let mine = active_sessions_of(hub, tenant, user).await?;
    if mine.iter().any(|s| s.id == id) {
        Ok(())
    } else {
        Err(AccountError::NotFound)
    }
}

/// [`AccountError::NotFound`] unless `id` is an active session of this tenant (another
/// tenant's session answers like an unknown one).
pub async fn tenant_active_session(hub: &Hub, tenant: &TenantId, id: &str) -> Result<()> {
    match hub.store.session_by_id(id).await? {
        Some(s) if s.device.tenant == *tenant && s.active() => Ok(()),
        _ => Err(AccountError::NotFound),
    }
}

/// One page of the tenant's active sessions by id, listed (`current`: the caller's session);
/// `next` is set when the page is full.
pub async fn active_sessions_page(
    hub: &Hub,
    tenant: &TenantId,
    after: Option<&str>,
    limit: usize,
    current: &str,
) -> Result<SessionList> {
    let page = hub.store.active_sessions(tenant, after, limit).await?;
    let next = (page.len() == limit).then(|| page.last().map(|s| s.id.clone())).flatten();
    Ok(SessionList { sessions: session_infos(hub, &page, current).await?, next })
}

/// The ids of every active session of the tenant but `except` (page by page).
pub async fn tenant_session_ids(hub: &Hub, tenant: &TenantId, except: &str) -> Result<Vec<String>> {
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = hub.store.active_sessions(tenant, after.as_deref(), MAX_PAGE).await?;
        let full = page.len() == MAX_PAGE;
        after = page.last().map(|s| s.id.clone());
        ids.extend(page.into_iter().map(|s| s.id).filter(|id| *id != except));
        if !full {
            break;
        }
    }
    tracing::info!(
        sessions = ids.len(),
        listed_ms = started.elapsed().as_millis(),
        "revoking every active session of the tenant"
    );
    Ok(ids)
}

/// One page of the tenant's audit log, newest first; `next` is set when the page is full.
pub async fn audit_page(hub: &Hub, tenant: &TenantId, query: &AuditQuery) -> Result<AuditPage> {
    let recs = hub.store.audit(tenant, query).await?;
    let next = (recs.len() == query.limit).then(|| recs.last().map(|r| r.id)).flatten();
    let records = recs
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at_ms: r.at_ms,
            actor: r.actor.map(|a| a.to_string()),
            actor_session: r.actor_session,
            action: r.action,
            target: r.target,
            ip: r.ip,
            result: r.result,
        })
        .collect();
    Ok(AuditPage { records, next })
}

/// The tenant's session lifetimes.
pub async fn session_policy(hub: &Hub, tenant: &TenantId) -> Result<SessionPolicy> {
    Ok(hub.tenants.settings(&*hub.store, tenant).await?.sessions.clone())
}

/// The caller's own devices, every one of them.
pub async fn own_devices(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<DeviceList> {
    let set = hub.directory.get(tenant, user).await?;
    device_list(hub, tenant, user.clone(), &set).await
}

/// The devices of `user` as `viewer` (a user of the same tenant) sees them:
/// [`AccountError::NotFound`] if the user has no device; the user's own listing shows every
/// device, another user sees only the devices a session can be started with (those with keys).
pub async fn devices_of(hub: &Hub, tenant: &TenantId, user: UserId, viewer: &UserId) -> Result<DeviceList> {
    let set = hub.directory.get(tenant, &user).await?;
    if set.devices.is_empty() {
        return Err(AccountError::NotFound);
    }
    if user == *viewer {
        return device_list(hub, tenant, user, &set).await;
    }
    let mut keyless = Vec::new();
    for d in &set.devices {
        let addr = DeviceAddress::new(tenant.clone(), user.clone(), d.id);
        if !keys::has_keys(hub, &addr).await? {
            keyless.push(d.id);
        }
    }
    let mut listed = DeviceSet::clone(&set);
    listed.devices.retain(|d| !keyless.contains(&d.id));
    device_list(hub, tenant, user, &listed).await
}

async fn device_list(hub: &Hub, tenant: &TenantId, user: UserId, set: &DeviceSet) -> Result<DeviceList> {
    let mut identities = keys::identities(hub, tenant, &user).await?;
    Ok(DeviceList {
        devices: set
            .devices
            .iter()
            .map(|d| DeviceInfo {
                id: d.id,
                registration_id: d.registration_id,
                name: d.name.clone(),
                created_ms: d.created_ms,
                identity_key: identities.remove(&d.id).map(Payload),
            })
            .collect(),
        user,
    })
}
