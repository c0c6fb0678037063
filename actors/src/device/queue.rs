//! The queue side of a device connection: the drain (in order, then `QueueEmpty`), sends
//! (one batch at a time, `Accepted` once durable, then live routing) and acks (at most one
//! store write in flight).

use std::time::Duration;

use hush_protocol::limits::DRAIN_PAGE;
use hush_protocol::wire::{Envelope, ServerFrame, CLOSE_SLOW_CONSUMER};
use hush_store::StoreError;
use tokio::time::Instant;

use super::actor::{DeviceActor, Done, Outgoing};
use super::CLOSE_INTERNAL;
use crate::delivery::Routes;
use crate::limits::DRAIN_STALL_TIMEOUT;
use crate::metrics::{observe, Metrics};
use crate::relay;

impl DeviceActor {
    pub(super) fn drain_next(&mut self) {
        if !self.drain.active
            || self.drain.fetching
            || self.closing
            || self.drain_blocked
            || self.presence_pending
        {
            return;
        }
        let last = *self.drain.last_progress.get_or_insert_with(Instant::now);
        if crate::mailbox::room(&self.sink.frames) < DRAIN_PAGE {
            if last.elapsed() > DRAIN_STALL_TIMEOUT {
                Metrics::add(&self.hub.metrics.slow_consumers, 1);
                self.close(CLOSE_SLOW_CONSUMER, "slow consumer", false);
                return;
            }
            self.after(Duration::from_millis(5), Done::DrainRetry);
            return;
        }
        self.drain.fetching = true;
        self.drain.dirty = false;
        let hub = self.hub.clone();
        let addr = self.addr.clone();
        let after = self.drain.after;
        self.spawn(async move { Done::Fetched(hub.store.fetch(&addr, after, DRAIN_PAGE).await) });
    }

    pub(super) fn on_fetched(&mut self, res: Result<Vec<Envelope>, StoreError>) {
        self.drain.fetching = false;
        let page = match res {
            Ok(p) => p,
            Err(e) => {
                hush_store::failure::log_failure(&e, "queue read failed; socket closed");
                self.close(CLOSE_INTERNAL, "store unavailable", false);
                return;
            }
        };
        let full = page.len() >= DRAIN_PAGE;
        let n = page.len() as u64;
        for env in page {
            self.drain.after = env.seq;
            self.drain.high_water = self.drain.high_water.max(env.seq);
            if !self.frame(ServerFrame::Deliver(env)) {
                return;
            }
        }
        Metrics::add(&self.hub.metrics.envelopes_delivered, n);
        if n > 0 {
            self.drain.last_progress = Some(Instant::now());
        }
        if full || self.drain.dirty {
            self.drain_next();
        } else {
            self.drain.active = false;
            self.frame(ServerFrame::QueueEmpty);
        }
    }

    /// Starts the next batch of queued sends unless one is being stored: one batch at a time
    /// keeps a device's messages in the order it sent them, and under load every batch grows,
    /// so a pipelining client still costs one store write per batch.
    pub(super) fn pump_sends(&mut self) {
        if self.sending > 0 || self.sends.is_empty() || self.closing {
            return;
        }
        // The leading run of one kind: 1:1 sends are stored in one batch, group sends one by one.
        let group = matches!(self.sends.front(), Some((_, Outgoing::Group(_))));
        let run = self.sends.iter().take_while(|(_, o)| matches!(o, Outgoing::Group(_)) == group).count();
        let (since, batch): (Vec<Instant>, Vec<Outgoing>) = self.sends.drain(..run).unzip();
        self.sending_since = since;
        self.sending_group = group;
        self.sending = batch.len();
        let hub = self.hub.clone();
        let from = self.addr.clone();
        self.spawn(async move {
            let mut direct = Vec::new();
            let mut answers = Vec::new();
            let mut routes = Vec::new();
            for o in batch {
                match o {
                    Outgoing::Group(m) => {
                        let (answer, copies) = crate::groups::send(&hub, &from, m).await;
                        answers.push(answer);
                        routes.extend(copies);
                    }
                    Outgoing::Direct(m) => direct.push(m),
                }
            }
            if direct.is_empty() {
                return Done::Sent(answers, routes);
            }
            let (replies, routes) = relay::send_batch(&hub, &from, direct).await;
            Done::Sent(replies, routes)
        });
    }

    pub(super) fn on_sent(&mut self, replies: Vec<ServerFrame>, routes: Routes) {
        // The answers first: `Accepted` means durable, it does not wait for live routing.
        let since = std::mem::take(&mut self.sending_since);
        let group = self.sending_group;
        for (i, reply) in replies.into_iter().enumerate() {
            if !matches!(reply, ServerFrame::Accepted { .. }) {
                Metrics::add(&self.hub.metrics.sends_refused, 1);
            }
            if let Some(t) = since.get(i) {
                let latency = &self.hub.metrics.latency;
                observe(if group { &latency.accept_group } else { &latency.accept_direct }, t.elapsed());
            }
            if !self.frame(reply) {
                // The sender's socket is gone or closing: no more answers and no next batch,
                // but what was stored still goes to the recipients online now.
                self.sending = 0;
                if !routes.is_empty() {
                    let hub = self.hub.clone();
                    tokio::spawn(async move { crate::delivery::route_all(&hub, routes).await });
                }
                return;
            }
        }
        if routes.is_empty() {
            self.sending = 0;
            self.pump_sends();
            return;
        }
        // Then the live delivery, before the next batch, so recipients see this sender's
        // messages in order. It runs on its own task: the sender may close its socket as soon
        // as it has its `Accepted`, and stopping this actor must not cancel the delivery of
        // what it accepted.
        let hub = self.hub.clone();
        let routed = tokio::spawn(async move { crate::delivery::route_all(&hub, routes).await });
        self.spawn(async move {
            let _ = routed.await;
            Done::Routed
        });
    }

    pub(super) fn flush_acks(&mut self) {
        if self.ack_inflight || self.pending_acks.is_empty() {
            return;
        }
        self.ack_inflight = true;
        let seqs = std::mem::take(&mut self.pending_acks);
        tracing::debug!(device = %self.addr, conn = self.conn_id, acks = seqs.len(), closing = self.closing, "storing acks");
        let hub = self.hub.clone();
        let addr = self.addr.clone();
        self.spawn(async move { Done::Acked(hub.store.ack(&addr, seqs).await) });
    }

    pub(super) fn on_acked(&mut self, res: Result<u64, StoreError>) {
        self.ack_inflight = false;
        match res {
            Ok(n) => {
                tracing::debug!(device = %self.addr, conn = self.conn_id, deleted = n, "acks stored");
                Metrics::add(&self.hub.metrics.envelopes_acked, n)
            }
            // Not deleted means redelivered later: at-least-once holds.
            Err(e) => tracing::warn!(device = %self.addr, error = %e, "ack not stored"),
        }
        self.flush_acks();
        self.stop_if_done();
    }
}
