//! Dispatches what the bus brings from other nodes to the actors of this node.

use std::sync::Arc;

use hush_cluster::{BusEvent, BusMessage};
use tokio::sync::mpsc;

use crate::delivery::deliver_local;
use crate::delivery::registry::{Disconnect, Since};
use crate::hub::Hub;

/// Runs until the bus closes its event stream.
pub async fn run(hub: Arc<Hub>, mut events: mpsc::Receiver<BusEvent>) {
    while let Some(ev) = events.recv().await {
        match ev {
            BusEvent::Message(BusMessage::Deliver(items)) => {
                let since = Since::Bus(tokio::time::Instant::now());
                for (addr, env) in items {
                    if let Some(conn) = hub.registry.get(&addr) {
                        deliver_local(&hub, &conn, env, since);
                    }
                }
            }
            BusEvent::Message(BusMessage::Kick(k)) => kick(&hub, k),
            BusEvent::Message(BusMessage::KickMany(ks)) => {
                for k in ks {
                    kick(&hub, k);
                }
            }
            BusEvent::Message(BusMessage::Notify(items)) => {
                for (addr, frame) in items {
                    if let Some(conn) = hub.registry.get(&addr) {
                        conn.device.notify(frame);
                    }
                }
            }
            BusEvent::Message(BusMessage::DevicesChanged { tenant, user }) => {
                hub.directory.invalidate(&tenant, &user);
            }
            BusEvent::Message(BusMessage::GroupChanged { tenant, group }) => {
                hub.groups.invalidate(&tenant, &group);
            }
            BusEvent::Reconnected => {
                let conns = hub.registry.all();
                let addrs: Vec<_> = conns.iter().map(|(a, _)| a.clone()).collect();
                if !addrs.is_empty() {
                    tracing::info!(
                        devices = addrs.len(),
                        "bus back: re-announcing presence and re-reading queues"
                    );
                    if let Err(e) = hub.bus.announce(&addrs).await {
                        tracing::warn!(error = %e, "presence not re-announced");
                    }
                }
                for (_, c) in conns {
                    c.device.resync();
                }
            }
        }
    }
}

fn kick(hub: &Hub, k: hush_cluster::Kick) {
    let Some(conn) = hub.registry.get(&k.device) else { return };
    match (&k.session_id, &k.logged_out) {
        // A revocation: through the session's actor.
        (Some(session), Some(reason)) => conn.revoke(session, reason, k.code),
        _ => conn.device.disconnect(Disconnect {
            code: k.code,
            logged_out: k.logged_out,
            session_id: k.session_id,
            opened_before_ms: k.opened_before_ms,
        }),
    }
}
