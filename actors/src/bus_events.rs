//! Dispatches what the bus brings from other nodes to the actors of this node.

use std::sync::Arc;

use hush_cluster::{BusEvent, BusMessage};
use tokio::sync::mpsc;

use crate::device::{Disconnect, Notify, Resync};
use crate::hub::Hub;
use crate::relay::deliver_local;

/// Runs until the bus closes its event stream.
pub async fn run(hub: Arc<Hub>, mut events: mpsc::Receiver<BusEvent>) {
    while let Some(ev) = events.recv().await {
        match ev {
            BusEvent::Message(BusMessage::Deliver(items)) => {
                for (addr, env) in items {
                    if let Some(conn) = hub.registry.get(&addr) {
                        deliver_local(&hub, &conn, env);
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
                        let _ = conn.notify.try_send(Notify(frame));
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
                    let _ = c.resync.try_send(Resync);
                }
            }
        }
    }
}

fn kick(hub: &Hub, k: hush_cluster::Kick) {
    if let Some(conn) = hub.registry.get(&k.device) {
        conn.disconnect.do_send(Disconnect {
            code: k.code,
            logged_out: k.logged_out,
            session_id: k.session_id,
            opened_before_ms: k.opened_before_ms,
        });
    }
}
