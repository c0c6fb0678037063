//! Hush actors: the domain logic of a node.
//!
//! - [`limits`]: every bound of the actor layer (mailboxes, buffers, timeouts).
//! - [`policy`]: the node's configured policies (pre-keys, sender-key rotation).
//! - [`audit`]: who acted, for the audit log.
//! - [`hub`]: what every actor shares ([`hub::Hub`]): the store, the registry, the directory,
//!   the metrics.
//! - [`hashing`]: the two Argon2id threads.
//! - [`delivery`]: the only code that reaches a device: the registry of this node's connections
//!   (their actors' mailboxes), the router, notices, node events and what the bus brings.
//! - [`directory`]: cached device sets (the store is the truth).
//! - [`accounts`]: users, passwords and one-time passwords, device registration at login,
//!   token authentication; Argon2id on a bounded blocking pool.
//! - [`login`]: the login and the answer to an MFA challenge: the one place that uses both
//!   accounts and MFA.
//! - [`throttle`]: password and MFA attempts limited per account and per client address,
//!   cluster-wide through the bus (free attempts, doubling delays, locks).
//! - [`device`]: `DeviceActor`, one per authenticated WebSocket: the 1:1 relay path, queue
//!   drain, acks, heartbeat and slow-consumer handling.
//! - [`relay`]: the device-set check and durable enqueue of a `Send`.
//! - [`groups`]: group membership (compare-and-set records in the store's key-value space) and
//!   `GroupActor`, one per active group: the group send path (stored once, fanned out).
//! - [`keys`]: pre-keys: identity keys, checked uploads, counts, exactly-once one-time keys,
//!   the fetch rate limit, `PreKeysLow` and the rotation policy.
//! - [`sessions`]: listing and revoking sessions, device removal, session events to every
//!   device of a user, the audit log.
//! - [`session`]: `SessionActor`, one per live session: last seen and expiry.
//! - [`tenant`]: per-tenant settings (session lifetimes) and last-seen times.
//! - [`mfa`]: TOTP enrolment, login challenges, backup codes, trusted devices, tenant MFA
//!   policies and step-up, on the store's key-value records.
//! - [`control`]: `ControlActor`, the admin commands behind the HTTP routes.
//! - [`supervise`]: the supervision tree (ractor): node supervisor, one supervisor per area,
//!   restart policies, failure and restart counts.
//! - [`faults`]: test-only fault injection (a chosen actor fails on a chosen message).
//! - [`metrics`]: counters rendered by the node's `/metrics`.
//! - [`views`]: what the node's edge lists and checks before a command (sessions, devices, the
//!   audit log, session lifetimes), read from the store.
//! - [`health`]: the store's health and numbers for `/readyz` and `/metrics`.
//!
//! The socket itself belongs to the node: a `DeviceActor` reads already-decoded [`device::Inbound`]
//! items and writes [`device::Outbound`] items into a bounded channel the node drains.
#![warn(missing_docs)]

pub mod accounts;
pub mod audit;
pub mod control;
pub mod delivery;
pub mod device;
pub mod directory;
pub mod faults;
pub mod groups;
pub mod hashing;
pub mod health;
pub mod hub;
pub mod keys;
pub mod limits;
pub mod login;
pub mod mailbox;
pub mod metrics;
pub mod mfa;
pub mod policy;
pub mod relay;
pub mod session;
pub mod sessions;
pub mod supervise;
pub mod tenant;
pub mod throttle;
pub mod views;

/// Milliseconds since the Unix epoch.
#[cfg(not(test))]
pub fn now_ms() -> u64 {
    wall_ms()
}

/// Milliseconds since the Unix epoch, as the crate's own tests see it: the wall clock at the
/// first call, advanced by tokio's clock, so a test that pauses tokio's clock controls time
/// (session expiry, MFA windows) like it controls the timers.
#[cfg(test)]
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<(u64, tokio::time::Instant)> = std::sync::OnceLock::new();
    let (wall, at) = *START.get_or_init(|| (wall_ms(), tokio::time::Instant::now()));
    wall + tokio::time::Instant::now().saturating_duration_since(at).as_millis() as u64
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
