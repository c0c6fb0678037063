//! Stored records. They are serialized with postcard in the embedded store; every field that
//! could be secret is stored only as a hash (tokens) or a password hash (passwords).

use std::fmt;

use hush_protocol::ids::{DeviceAddress, DeviceId, RegistrationId, TenantId, UserId};
use hush_protocol::wire::Envelope;
use serde::{Deserialize, Serialize};

/// SHA-256 of a session token. Tokens are 256-bit random values, so a fast hash suffices; the
/// store never sees a token itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Its name.
    pub name: TenantId,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A user account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its name.
    pub user: UserId,
    /// Argon2id PHC string (salted; never the password).
    pub password_hash: String,
    /// Administers the tenant.
    pub admin: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .field("admin", &self.admin)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// One registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Device id; 1 is the primary.
    pub id: DeviceId,
    /// Current registration id.
    pub registration_id: RegistrationId,
    /// Label.
    pub name: String,
    /// Registration time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A user's devices with the version used for compare-and-set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSet {
    /// Incremented by every change; 0 means never written.
    pub version: u64,
    /// The devices, sorted by id.
    pub devices: Vec<DeviceRecord>,
}

impl DeviceSet {
    /// The device with this id, if registered.
    pub fn get(&self, id: DeviceId) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.id == id)
    }
}

/// Why and when a session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Why (`logout`, `revoked_by_user`, `revoked_by_admin`, `device_removed`).
    pub reason: String,
}

/// A login session, bound to one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public id (128-bit random, hex), used to list and revoke.
    pub id: String,
    /// SHA-256 of the token.
    pub token_hash: TokenHash,
    /// Address of the device this session is for.
    pub device: DeviceAddress,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Client user agent at login, if sent.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub ip: Option<String>,
    /// Set once the session is revoked; a revoked session never acts again.
    pub revoked: Option<Revocation>,
}

impl SessionRecord {
    /// True until revoked.
    pub fn active(&self) -> bool {
        self.revoked.is_none()
    }
}

/// One audit record: who did what, when, from where, with what result. Append-only; never
/// holds a secret (no token, password or code: only ids and names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Assigned by the store, increasing within a tenant (0 on append).
    pub id: u64,
    /// The tenant the action belongs to.
    pub tenant: TenantId,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Who acted (the user name; for a failed login, the name that was tried).
    pub actor: Option<UserId>,
    /// The actor's session, when authenticated.
    pub actor_session: Option<String>,
    /// What: `login`, `logout`, `session.revoke`, `device.add`, `device.remove`, `user.create`, ...
    pub action: String,
    /// On what (a session id, `user/device`, a user name).
    pub target: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// `ok`, `denied`, `failed`.
    pub result: String,
}

/// A filter over the audit log (newest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<UserId>,
    /// Only this action.
    pub action: Option<String>,
    /// Only records with an id below this (pagination: the last id of the previous page).
    pub before: Option<u64>,
    /// Page size.
    pub limit: usize,
}

/// An envelope to append to one device's queue (its `seq` is assigned by the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEnvelope {
    /// The recipient device.
    pub to: DeviceAddress,
    /// The envelope; `seq` is ignored and replaced.
    pub envelope: Envelope,
}

/// One envelope for many devices (a group message): its content is stored once, and each
/// device's queue gets an entry referring to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedEnvelope {
    /// The recipient devices (each at most once).
    pub to: Vec<DeviceAddress>,
    /// The envelope; `seq` is assigned per device, and `sync` is set on the copies for the
    /// sender's own devices (`to.user == envelope.from`), as on 1:1 sync copies.
    pub envelope: Envelope,
}
