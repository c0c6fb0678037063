//! Retry requests, both ways (libsignal's `DecryptionErrorMessage` idea; formats in
//! `hush_protocol::e2e::retry`).
//!
//! **Receiving side.** When the [`Messenger`](crate::messenger::Messenger) cannot decrypt an
//! envelope it keeps it in the quarantine (see [`crate::quarantine`]) and sends the sending
//! user's devices a retry request: a `DecryptionErrorMessage` (the failed message's ratchet key
//! when it parses, the node's timestamp of the envelope, the sending device's id) wrapped as a
//! `PlaintextContent` with Hush's extension naming the failed message id, sent unencrypted with
//! content type `plaintext`. The node wants every device of a user addressed, so every device
//! of the sender gets it (and this user's other devices a sync copy); only the device named by
//! `device_id` acts on it, as Signal's apps do. No retry request is sent for a plaintext
//! envelope (no loops), for an envelope the quarantine could not take (it stays on the node and
//! comes back), nor when the plaintext decrypted but did not decode (the session is fine).
//!
//! When the original comes again (same message id) and decrypts, the quarantine entry for it is
//! released and the text is delivered as usual.
//!
//! **Sending side.** Every 1:1 and group text this device sends is remembered in a bounded
//! recent-sent cache of the device state ([`MAX_RECENT_SENT`] entries, [`RECENT_SENT_TTL_MS`]).
//! The cache lives in memory only and is never written to the state file (no plaintext at rest),
//! so a process that sent a text and exited cannot re-send it (`hush send` while `hush listen`
//! runs goes through the listener, whose cache has it). On a
//! retry request from device D of user U the SDK drops its session with D (at most once per
//! [`RESET_INTERVAL_MS`] per device, so a stream of requests cannot make it fetch bundles in a
//! loop), forgets that D holds any of its sender keys, and, if the named message is in the cache
//! and was sent to U (or is a group text, or U is this user), sends it again under the same
//! message id — fetching a new bundle for D, and for a group text handing D the sender key again
//! first — at most [`MAX_RESENDS`] times per message. Devices that already read it drop the copy
//! by its id. The application sees [`Event::RetryRequested`](crate::messenger::Event).

use hush_protocol::ids::{GroupId, MessageId, UserId};
use serde::{Deserialize, Serialize};

/// Sent texts remembered for re-sending (oldest forgotten first).
pub const MAX_RECENT_SENT: usize = 256;
/// How long a sent text is remembered: one day, as Signal-Android's message send log.
pub const RECENT_SENT_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Times one message is sent again on retry requests.
pub const MAX_RESENDS: u8 = 3;
/// Least time between two session resets with one device on its retry requests.
pub const RESET_INTERVAL_MS: u64 = 60 * 1000;

/// Where a remembered text went.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SentTo {
    /// Every device of a user (1:1).
    User(UserId),
    /// A group.
    Group(GroupId),
}

/// A text this device sent, kept for re-sending on a retry request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentSent {
    /// The message id (a re-send keeps it, so readers deduplicate).
    pub id: MessageId,
    /// Where it went.
    pub to: SentTo,
    /// The text.
    pub body: String,
    /// When it was sent, ms since the Unix epoch.
    pub sent_ms: u64,
    /// Times it was sent again.
    pub resends: u8,
}

impl core::fmt::Debug for RecentSent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let to = match &self.to {
            SentTo::User(u) => format!("user {u}"),
            SentTo::Group(g) => format!("group {g}"),
        };
        f.debug_struct("RecentSent")
            .field("id", &self.id)
            .field("to", &to)
            .field("body_len", &self.body.len())
            .field("sent_ms", &self.sent_ms)
            .field("resends", &self.resends)
            .finish()
    }
}
