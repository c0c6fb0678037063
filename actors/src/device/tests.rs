//! The `DeviceActor` in process: an embedded store in a temporary folder, the local bus, a
//! scripted socket, and tokio's paused clock, so the heartbeat, idle and slow-consumer rules are
//! checked to the second without waiting for them. (Store reads run on tokio's blocking pool,
//! which holds the paused clock still; store writes do not, so tests that write while the actor
//! runs use real time.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use futures_util::StreamExt;
use hush_protocol::ids::{DeviceAddress, DeviceId, TenantId, UserId};
use hush_protocol::wire::{ClientFrame, Envelope, Payload, ServerFrame, CLOSE_IDLE, CLOSE_SLOW_CONSUMER};
use hush_store::NewEnvelope;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{serve, CloseFrame, Closer, Inbound, Outbound, Sink, Wiring};
use crate::delivery::registry::{DeviceHandle, SessionHandle};
use crate::hub::Hub;
use crate::limits::{DRAIN_STALL_TIMEOUT, HEARTBEAT_INTERVAL, IDLE_TIMEOUT};
use crate::metrics::Metrics;

struct Harness {
    hub: Arc<Hub>,
    addr: DeviceAddress,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = hush_store::embedded::EmbeddedStore::open(&dir.path().join("hush.redb")).unwrap();
    let hub = Hub::new(Arc::new(store), Arc::new(hush_cluster::LocalBus::new("test"))).unwrap();
    let addr =
        DeviceAddress::new(TenantId::new("t").unwrap(), UserId::new("alice").unwrap(), DeviceId::PRIMARY);
    Harness { hub, addr, _dir: dir }
}

/// A socket: the client's side sends `Inbound` items and reads what the actor writes.
struct Socket {
    to_actor: mpsc::Sender<Inbound>,
    frames: crate::mailbox::Receiver<Outbound>,
    close: oneshot::Receiver<CloseFrame>,
}

/// Wires an actor for `h.addr` with an outbound buffer of `buffer` frames; returns the
/// actor's future (to run alongside the script) and the client's side.
fn connect(h: &Harness, buffer: usize) -> (impl std::future::Future<Output = ()>, Socket) {
    let (to_actor, rx) = mpsc::channel(64);
    let inbound =
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) }));
    let (tx, frames) = crate::mailbox::bounded(buffer);
    let (closer, close) = Closer::new();
    let (device, device_rx) = DeviceHandle::channel();
    let (session, _session_rx) = SessionHandle::channel();
    let wiring = Wiring {
        addr: h.addr.clone(),
        session_id: "s1".into(),
        mailbox: (device, device_rx),
        session,
        sink: Sink { frames: tx, close: closer },
    };
    let actor = serve(h.hub.clone(), wiring, inbound.fuse());
    (actor, Socket { to_actor, frames, close })
}

impl Socket {
    async fn frame(&mut self) -> Outbound {
        match self.frames.recv_async().await {
            Ok(f) => f,
            Err(_) => panic!("the actor stopped: {:?}", self.close.try_recv()),
        }
    }

    /// Reads until `QueueEmpty`; returns the envelopes delivered.
    async fn drain(&mut self) -> Vec<Envelope> {
        let mut out = Vec::new();
        loop {
            if let Outbound::Frame(f) = self.frame().await {
                match *f {
                    ServerFrame::Deliver(e) => out.push(e),
                    ServerFrame::QueueEmpty => return out,
                    _ => {}
                }
            }
        }
    }
}

async fn queue(h: &Harness, n: usize) {
    let items = (0..n)
        .map(|i| NewEnvelope {
            to: h.addr.clone(),
            envelope: Envelope {
                seq: 0,
                id: uuid::Uuid::new_v4(),
                from: UserId::new("bob").unwrap(),
                from_device: DeviceId::PRIMARY,
                timestamp_ms: crate::now_ms(),
                sync: false,
                content: Payload(vec![i as u8; 8]),
                event: None,
                group: None,
                content_type: hush_protocol::wire::ContentType::Ciphertext,
            },
        })
        .collect();
    h.hub.store.enqueue(items).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_gets_pings_then_the_idle_close() {
    let h = harness();
    let (actor, mut s) = connect(&h, crate::limits::OUTBOUND_FRAMES);
    let script = async {
        assert!(s.drain().await.is_empty());
        let t0 = Instant::now();
        let mut pings = Vec::new();
        let close = loop {
            tokio::select! {
                f = s.frames.recv_async() => {
                    if let Ok(Outbound::Ping) = f {
                        pings.push(t0.elapsed());
                    }
                }
                c = &mut s.close => break c.unwrap(),
            }
        };
        assert_eq!(close.code, CLOSE_IDLE);
        // A ping every interval while the client is silent, the close once it has been silent
        // for longer than the idle timeout (checked at the next beat).
        let beats = (IDLE_TIMEOUT.as_secs() / HEARTBEAT_INTERVAL.as_secs()) as usize;
        assert_eq!(pings.len(), beats, "{pings:?}");
        assert!(t0.elapsed() > IDLE_TIMEOUT && t0.elapsed() <= IDLE_TIMEOUT + HEARTBEAT_INTERVAL * 2);
        drop(s.to_actor);
    };
    tokio::join!(actor, script);
    assert_eq!(Metrics::get(&h.hub.metrics.connections), 0);
    assert!(h.hub.registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays_connected() {
    let h = harness();
    let (actor, mut s) = connect(&h, crate::limits::OUTBOUND_FRAMES);
    let script = async {
        s.drain().await;
        let t0 = Instant::now();
        while t0.elapsed() < IDLE_TIMEOUT * 4 {
            tokio::select! {
                f = s.frames.recv_async() => if let Ok(Outbound::Ping) = f {
                    s.to_actor.send(Inbound::Pong).await.unwrap();
                },
                c = &mut s.close => panic!("closed: {c:?}"),
            }
        }
        // The client leaves; the actor stops.
        s.to_actor.send(Inbound::Closed).await.unwrap();
    };
    tokio::join!(actor, script);
    assert!(h.hub.registry.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_is_closed_and_its_envelopes_stay_queued() {
    let h = harness();
    queue(&h, 3).await;
    // Room for fewer frames than a drain page: the drain waits for the client to read.
    let (actor, mut s) = connect(&h, 2);
    let script = async {
        let t0 = Instant::now();
        let close = (&mut s.close).await.unwrap();
        assert_eq!(close.code, CLOSE_SLOW_CONSUMER);
        assert!(t0.elapsed() >= DRAIN_STALL_TIMEOUT, "{:?}", t0.elapsed());
        s.to_actor.send(Inbound::Closed).await.unwrap();
    };
    tokio::join!(actor, script);
    assert_eq!(Metrics::get(&h.hub.metrics.slow_consumers), 1);
    // Nothing was lost: the next connection drains all three.
    let (actor, mut s) = connect(&h, crate::limits::OUTBOUND_FRAMES);
    let script = async {
        assert_eq!(s.drain().await.len(), 3);
        s.to_actor.send(Inbound::Closed).await.unwrap();
    };
    tokio::join!(actor, script);
}

// Real time: an ack is a store write, done on the store's writer thread, and a paused clock
// would jump to the close grace while the runtime waits for it.
#[tokio::test]
async fn an_ack_sent_with_the_close_is_stored() {
    let h = harness();
    queue(&h, 2).await;
    let (actor, mut s) = connect(&h, crate::limits::OUTBOUND_FRAMES);
    let script = async {
        let got = s.drain().await;
        assert_eq!(got.len(), 2);
        // The ack and the close leave together; the actor stores the ack before it stops.
        let seqs = got.iter().map(|e| e.seq).collect();
        s.to_actor.send(Inbound::Frame(ClientFrame::Ack { seqs })).await.unwrap();
        s.to_actor.send(Inbound::Closed).await.unwrap();
    };
    tokio::join!(actor, script);
    assert!(h.hub.store.fetch(&h.addr, 0, 10).await.unwrap().is_empty());
}

// Real time: key requests read the store on the blocking pool.
#[tokio::test]
async fn key_requests_over_the_bound_get_too_many_in_flight() {
    use hush_protocol::wire::ErrorCode;
    const N: usize = 1_000;
    let h = harness();
    // Room for every answer: the script reads them all, but not necessarily as fast.
    let (actor, mut s) = connect(&h, 4 * N);
    // Far more requests than the bound: 64 already waiting when the actor starts (the inbound
    // channel holds 64), the rest as fast as it takes them. Reads finish quickly, but the
    // requests arrive faster than 16 at a time can be answered.
    let ids: Vec<uuid::Uuid> = (0..N).map(|_| uuid::Uuid::new_v4()).collect();
    for id in &ids[..64] {
        s.to_actor.try_send(Inbound::Frame(ClientFrame::GetKeyCounts { id: *id })).unwrap();
    }
    let to_actor = s.to_actor.clone();
    let send_rest = async {
        for id in &ids[64..] {
            to_actor.send(Inbound::Frame(ClientFrame::GetKeyCounts { id: *id })).await.unwrap();
        }
    };
    let script = async {
        let mut answered = std::collections::HashSet::new();
        let (mut served, mut refused) = (0, 0);
        while answered.len() < ids.len() {
            let Outbound::Frame(f) = s.frame().await else { continue };
            match *f {
                ServerFrame::KeyCounts { id, .. } => {
                    assert!(answered.insert(id), "answered twice");
                    served += 1;
                }
                // Its own code, not the pre-key rate limit's; no retry time: retry on an answer.
                ServerFrame::Error {
                    id: Some(id),
                    code: ErrorCode::TooManyInFlight,
                    retry_after_s: None,
                    ..
                } => {
                    assert!(answered.insert(id), "answered twice");
                    refused += 1;
                }
                ServerFrame::Ready { .. } | ServerFrame::QueueEmpty => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(served >= crate::limits::MAX_INFLIGHT_KEY_REQUESTS, "{served} served");
        assert!(refused > 0, "{N} requests at once, none refused");
        s.to_actor.send(Inbound::Closed).await.unwrap();
    };
    tokio::join!(actor, send_rest, script);
}
