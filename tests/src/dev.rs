//! One SDK device under test: its messenger and every event it reported, with the waits the
//! end-to-end tests share.

use std::time::Duration;

use hush_client::messenger::{Event, Messenger};
use hush_protocol::ids::{DeviceId, UserId};

/// A messenger and the events it has reported so far.
pub struct Dev {
    /// Shown in failure messages.
    pub name: String,
    /// The device's messenger.
    pub m: Messenger,
    /// Every event read so far, in order.
    pub events: Vec<Event>,
}

impl Dev {
    /// A device named `name` (for failure messages) around `m`.
    pub fn new(name: impl Into<String>, m: Messenger) -> Dev {
        Dev { name: name.into(), m, events: Vec::new() }
    }

    /// Reads events until `done(events)` holds, failing after 30 s.
    pub async fn pump_until(&mut self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let t0 = std::time::Instant::now();
        while !done(&self.events) {
            let left = Duration::from_secs(30).saturating_sub(t0.elapsed());
            assert!(!left.is_zero(), "{}: timed out waiting for {what}; got {:?}", self.name, self.events);
            match tokio::time::timeout(left, self.m.next_event()).await {
                Ok(Ok(ev)) => self.events.push(ev),
                Ok(Err(e)) => panic!("{}: {e}", self.name),
                Err(_) => {}
            }
        }
    }

    /// Reads events until one matches `want`, failing after 30 s; returns it.
    pub async fn until(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        self.pump_until(what, |evs| evs.iter().any(&want)).await;
        self.events.iter().find(|e| want(e)).cloned().expect("pump_until returned, so an event matches")
    }

    /// The device's user.
    pub fn user(&self) -> UserId {
        self.m.session().user().clone()
    }

    /// The device's id.
    pub fn device(&self) -> DeviceId {
        self.m.session().device()
    }

    /// Reads whatever arrives within `quiet` of silence.
    pub async fn pump_idle(&mut self, quiet: Duration) {
        while let Ok(r) = tokio::time::timeout(quiet, self.m.next_event()).await {
            self.events.push(r.unwrap());
        }
    }

    /// Every text body read so far (received, sync copies and group texts).
    pub fn texts(&self) -> Vec<String> {
        texts_of(&self.events)
    }

    /// Whether `body` was read.
    pub fn has_text(&self, body: &str) -> bool {
        self.texts().iter().any(|t| t == body)
    }

    /// Envelopes reported as undecryptable.
    pub fn undecryptable(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, Event::Undecryptable { .. })).count()
    }
}

/// The text bodies among `events` (received, sync copies and group texts).
pub fn texts_of(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text { body, .. } | Event::Sent { body, .. } | Event::GroupText { body, .. } => {
                Some(body.clone())
            }
            _ => None,
        })
        .collect()
}

/// Registers a device of `user` (tenant `default`, password `{user}-password`) on `node` with a
/// fresh identity and its pre-keys uploaded, connects it, and waits until its queue is drained;
/// `label` names the device (and the `Dev` in failure messages).
pub async fn register_and_connect(node: &crate::Node, user: &str, label: &str) -> Dev {
    let (session, state) = hush_client::register_device(
        &hush_client::Client::new(node.url()),
        &hush_protocol::ids::TenantId::new("default").expect("tenant id"),
        &UserId::new(user).expect("user id"),
        &hush_protocol::api::Secret::new(format!("{user}-password")),
        Some(label.to_owned()),
    )
    .await
    .expect("register the device");
    let m = Messenger::connect(session, state, None).await.expect("connect the device");
    let mut d = Dev::new(label, m);
    d.pump_until("queue drained", |ev| ev.contains(&Event::UpToDate)).await;
    d
}
