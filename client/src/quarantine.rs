//! Envelopes this device could not decrypt, kept instead of dropped.
//!
//! Delivery is at least once and the node deletes an envelope once it is acknowledged, so an
//! envelope the device cannot read would be lost for good if it were simply acknowledged.
//! Instead the [`Messenger`](crate::messenger::Messenger) copies it, with its sender, id, type
//! and the reason, into the quarantine of the device state (saved with the sessions, in the same
//! file, before the acknowledgement), and only then acknowledges it. The application lists the
//! quarantine ([`DeviceState::quarantined`](crate::state::DeviceState::quarantined), `hush
//! quarantine`) and removes what it handled. The messenger also asks the sender for the message
//! again (a retry request, [`crate::retry`]); when the re-send arrives and decrypts, its entry is
//! removed by itself. At most [`MAX_QUARANTINED`] are kept: when full, an undecryptable envelope is left
//! unacknowledged on the node (it comes back at the next connection) rather than dropped.

use hush_protocol::ids::{DeviceId, GroupId, MessageId, UserId};
use hush_protocol::wire::{ContentType, Envelope};
use serde::{Deserialize, Serialize};

/// Envelopes the quarantine holds at most.
pub const MAX_QUARANTINED: usize = 1_000;

/// One envelope that could not be decrypted, as delivered.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The sender's message id.
    pub id: MessageId,
    /// The sending user.
    pub from: UserId,
    /// The sending device.
    pub from_device: DeviceId,
    /// When the node accepted it, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The content type the envelope carried.
    pub content_type: ContentType,
    /// The group, for a group message.
    pub group: Option<GroupId>,
    /// True for a copy of this user's own message sent from another device.
    pub sync: bool,
    /// The content exactly as delivered (a ciphertext: no plaintext is ever kept here).
    pub content: Vec<u8>,
    /// Why it could not be read.
    pub reason: String,
    /// When it was quarantined, ms since the Unix epoch.
    pub quarantined_ms: u64,
}

impl core::fmt::Debug for Quarantined {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Quarantined")
            .field("id", &self.id)
            .field("from", &self.from)
            .field("from_device", &self.from_device)
            .field("content_type", &self.content_type)
            .field("group", &self.group)
            .field("content_len", &self.content.len())
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl Quarantined {
    /// The quarantine entry of `env`, refused for `reason`, at `now_ms`.
    pub fn of(env: &Envelope, reason: String, now_ms: u64) -> Self {
        Self {
            id: env.id,
            from: env.from.clone(),
            from_device: env.from_device,
            timestamp_ms: env.timestamp_ms,
            content_type: env.content_type,
            group: env.group.as_ref().map(|g| g.group.clone()),
            sync: env.sync,
            content: env.content.0.clone(),
            reason,
            quarantined_ms: now_ms,
        }
    }
}
