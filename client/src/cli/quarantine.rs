//! `hush quarantine`: the messages this profile's device received but could not decrypt.
//! `hush listen` keeps each one in the device state (with the sessions) before acknowledging
//! it, instead of dropping it; this lists them, oldest first. Read-only: it reads the saved
//! state, so it works while `listen` runs (the state file is replaced atomically).

use hush_protocol::ids::{DeviceId, GroupId, MessageId, UserId};
use hush_protocol::wire::{ContentType, Payload};
use serde::Serialize;

use super::output::{self, Output};
use super::profile::load_state;

/// One quarantined message as `--output json` prints it.
#[derive(Serialize)]
struct Entry {
    id: MessageId,
    from: UserId,
    from_device: DeviceId,
    content_type: ContentType,
    group: Option<GroupId>,
    sync: bool,
    timestamp_ms: u64,
    quarantined_ms: u64,
    reason: String,
    /// The content as delivered, base64.
    content: Payload,
}

/// Lists the quarantine of `profile`'s device.
pub fn list(profile: &str, out: Output) -> anyhow::Result<()> {
    let state = load_state(profile)?;
    let entries: Vec<Entry> = state
        .quarantined()
        .map(|q| Entry {
            id: q.id,
            from: q.from.clone(),
            from_device: q.from_device,
            content_type: q.content_type,
            group: q.group.clone(),
            sync: q.sync,
            timestamp_ms: q.timestamp_ms,
            quarantined_ms: q.quarantined_ms,
            reason: q.reason.clone(),
            content: Payload(q.content.clone()),
        })
        .collect();
    if out.json() {
        return output::print_json(&entries);
    }
    let mut t = output::table(&["id", "from", "type", "group", "sent", "bytes", "reason"]);
    for e in &entries {
        t.add_row(vec![
            e.id.to_string(),
            format!("{}/{}", e.from, e.from_device),
            e.content_type.to_string(),
            e.group.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into()),
            output::time(e.timestamp_ms),
            e.content.0.len().to_string(),
            e.reason.clone(),
        ]);
    }
    output::print_table(&t, "No quarantined messages.");
    Ok(())
}
