//! JSON bodies of the HTTP API (`/v1/...`), shared by the node and the client SDK.
//!
//! With the `openapi` feature the types derive `utoipa::ToSchema`, so the node's OpenAPI
//! document is generated from these definitions and cannot drift from them.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::ids::{DeviceId, GroupId, RegistrationId, TenantId, UserId};
use crate::wire::Payload;

/// A secret string (password, token): redacted in `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is used (hashing, the Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Error body of every non-2xx answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `unauthorized`, `invalid_request`, `not_found`.
    pub error: String,
    /// A human-readable explanation; never contains secrets.
    pub message: String,
}

/// Which device a login is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceRequest {
    /// An existing device of the user to log in as; absent to register a new device (the first
    /// device of an account becomes the primary, device 1).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    #[serde(default)]
    pub id: Option<DeviceId>,
    /// The device's 14-bit registration id (1..=16383); a new value for an existing device
    /// marks it re-registered.
    #[cfg_attr(feature = "openapi", schema(value_type = u16))]
    pub registration_id: RegistrationId,
    /// A human-readable label ("laptop").
    #[serde(default)]
    pub name: Option<String>,
    /// The device's identity public key: 33 bytes, `0x05` then the X25519 u-coordinate
    /// (standard base64 in JSON). Every pre-key signature the device uploads is checked against
    /// it. Absent: the stored one is kept (a device without one cannot upload keys). A new value
    /// for an existing device is an identity change: its pre-keys are deleted and it gets a new
    /// registration id (see [`LoginResponse::registration_id`]).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    #[serde(default)]
    pub identity_key: Option<Payload>,
    /// The device's first pre-keys (its signed pre-key and Kyber last-resort key; one-time keys
    /// may follow with `PUT /v1/keys`), signed by `identity_key`. They are checked before
    /// anything is registered and stored with the device, so a login that registers a device
    /// never leaves it without keys: a bad key refuses the login and changes nothing. An
    /// MFA-pending login keeps them with its pending device until the session verifies.
    // No `skip_serializing_if`: an MFA-pending login keeps the request with postcard, which
    // is not self-describing and cannot read a field that was left out.
    #[serde(default)]
    pub keys: Option<UploadKeysRequest>,
}

/// `POST /v1/login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// The tenant the user belongs to.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tenant: TenantId,
    /// The user name.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: UserId,
    /// The password.
    pub password: Secret,
    /// The device this session is for.
    pub device: DeviceRequest,
    /// The token a `remember_device` MFA verification returned for this device (`device.id`
    /// must name it): a trusted device skips the MFA challenge until the trust expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_device_token: Option<Secret>,
}

/// Answer to a successful login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// Opaque 256-bit session token (base64url); send as `Authorization: Bearer <token>`.
    pub token: Secret,
    /// The session's public id (for listing and revoking sessions).
    pub session_id: String,
    /// The tenant.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tenant: TenantId,
    /// The user.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: UserId,
    /// The device this session is bound to.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub device: DeviceId,
    /// Whether the user is an administrator of the tenant.
    pub admin: bool,
    /// The device's registration id as the node stored it: the one asked for, except after an
    /// identity change that reused the old value, where the node picks a fresh one (senders
    /// holding the old one then get `StaleDevices`). Use this value from now on.
    #[cfg_attr(feature = "openapi", schema(value_type = u16))]
    pub registration_id: RegistrationId,
    /// The session's MFA state: `mfa_pending` (with a challenge) means the token works only on
    /// the `/v1/mfa/...` routes until verified; `none` with `enroll_deadline_ms` means the
    /// tenant requires MFA and the user must enrol before then.
    #[serde(default)]
    pub mfa: Option<SessionMfa>,
    /// The password used is a one-time password (the bootstrap administrator's, one made by
    /// `hushd init` or `hushd admin reset-password`): until `POST /v1/account/password` sets a
    /// new one, the token works only there, on `/v1/logout` and on the `/v1/mfa/...` routes;
    /// every other route answers 403 `password_change_required` and the WebSocket is refused.
    #[serde(default)]
    pub password_change_required: bool,
}

/// `POST /v1/account/password`: sets a new password (any user, after MFA if it applies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePasswordRequest {
    /// The password in use now (the one-time password, if that is what logged in).
    pub current_password: Secret,
    /// The new password: 8 characters to 1,024 bytes, different from the current one.
    pub new_password: Secret,
}

/// One device of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    /// Device id (1 is the primary).
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub id: DeviceId,
    /// Current registration id.
    #[cfg_attr(feature = "openapi", schema(value_type = u16))]
    pub registration_id: RegistrationId,
    /// Label given at registration.
    pub name: String,
    /// When the device was registered, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The device's identity public key (33 bytes, base64 in JSON), if it registered one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    #[serde(default)]
    pub identity_key: Option<Payload>,
}

/// `GET /v1/devices` and `GET /v1/users/{user}/devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    /// Whose devices.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: UserId,
    /// The devices, by id.
    pub devices: Vec<DeviceInfo>,
}

/// `POST /v1/admin/users` (tenant administrators).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUserRequest {
    /// The new user's name, unique in the tenant.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: UserId,
    /// The initial password (at least 8 characters).
    pub password: Secret,
    /// Whether the user administers the tenant.
    #[serde(default)]
    pub admin: bool,
}

/// A user of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    /// The tenant.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub tenant: TenantId,
    /// The user.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: UserId,
    /// Whether the user administers the tenant.
    pub admin: bool,
    /// When the account was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// `GET /v1/admin/users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    /// The tenant's users, by name.
    pub users: Vec<UserInfo>,
}

/// One login session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// Public id (revoke with it).
    pub id: String,
    /// The user.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: UserId,
    /// The device it is bound to.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub device: DeviceId,
    /// Login time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Client address at login.
    pub ip: Option<String>,
    /// Client user agent at login.
    pub user_agent: Option<String>,
    /// True for the session making this request.
    pub current: bool,
    /// Last activity (an authenticated request, or a live socket), ms since the Unix epoch;
    /// recorded with a granularity of at most a minute.
    #[serde(default)]
    pub last_seen_ms: Option<u64>,
    /// When the session expires under the tenant's policy if it stays idle from now on
    /// (the earlier of the idle and the absolute limit); `None`: lives until revoked.
    #[serde(default)]
    pub expires_ms: Option<u64>,
    /// The session's MFA state (absent when unknown).
    #[serde(default)]
    pub mfa: Option<SessionMfa>,
    /// The node holding the live WebSocket of this session's device (`None`: not connected,
    /// or not known while the bus is down).
    #[serde(default)]
    pub node: Option<String>,
}

/// The nodes of the cluster (`GET /v1/admin/cluster`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterView {
    /// The node answering.
    pub node: String,
    /// The bus linking the nodes: `local` (a node alone) or `redis`.
    pub bus: String,
    /// Whether the answering node's link to the bus is up (when it is down, `nodes` holds
    /// this node only).
    pub bus_healthy: bool,
    /// The live nodes (those that sent a heartbeat recently), by id.
    pub nodes: Vec<NodeInfo>,
}

/// One live node of the cluster, as it last reported itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// True for the node answering.
    pub this: bool,
    /// Its last heartbeat, ms since the Unix epoch.
    pub seen_ms: u64,
    /// Its software version (`None` until its first report arrives).
    pub version: Option<String>,
    /// When it started, ms since the Unix epoch.
    pub started_ms: Option<u64>,
    /// Authenticated WebSocket connections open on it.
    pub connections: Option<u64>,
    /// Its store: `ok` or why it cannot write.
    pub store: Option<String>,
    /// Whether its own link to the bus is up.
    pub bus_healthy: Option<bool>,
}

/// Longest session lifetime or idle limit a tenant may set: one year, in seconds.
pub const MAX_SESSION_TIMEOUT_S: u64 = 366 * 24 * 3600;

/// A tenant's session lifetimes (`GET`/`PUT /v1/admin/tenant/sessions`). Each limit is in
/// seconds; `null` means no limit. Administrators' sessions have their own, stricter limits
/// (defaults after NIST SP 800-63B AAL2: 30 minutes idle, 12 hours absolute); chat devices'
/// sessions live until revoked by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionPolicy {
    /// A member's session ends after this long without activity.
    #[serde(default)]
    pub idle_timeout_s: Option<u64>,
    /// A member's session ends this long after login, active or not.
    #[serde(default)]
    pub absolute_timeout_s: Option<u64>,
    /// An administrator's session ends after this long without activity.
    #[serde(default = "default_admin_idle")]
    pub admin_idle_timeout_s: Option<u64>,
    /// An administrator's session ends this long after login.
    #[serde(default = "default_admin_absolute")]
    pub admin_absolute_timeout_s: Option<u64>,
}

fn default_admin_idle() -> Option<u64> {
    Some(30 * 60)
}

fn default_admin_absolute() -> Option<u64> {
    Some(12 * 3600)
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout_s: None,
            absolute_timeout_s: None,
            admin_idle_timeout_s: default_admin_idle(),
            admin_absolute_timeout_s: default_admin_absolute(),
        }
    }
}

impl SessionPolicy {
    /// Refuses a limit of 0 or above [`MAX_SESSION_TIMEOUT_S`].
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("idle_timeout_s", self.idle_timeout_s),
            ("absolute_timeout_s", self.absolute_timeout_s),
            ("admin_idle_timeout_s", self.admin_idle_timeout_s),
            ("admin_absolute_timeout_s", self.admin_absolute_timeout_s),
        ] {
            if let Some(v) = v {
                if v == 0 || v > MAX_SESSION_TIMEOUT_S {
                    return Err(format!("{name} must be 1..={MAX_SESSION_TIMEOUT_S} seconds or null"));
                }
            }
        }
        Ok(())
    }

    /// The (idle, absolute) limits in milliseconds for an administrator or a member.
    pub fn limits_ms(&self, admin: bool) -> (Option<u64>, Option<u64>) {
        let (idle, abs) = if admin {
            (self.admin_idle_timeout_s, self.admin_absolute_timeout_s)
        } else {
            (self.idle_timeout_s, self.absolute_timeout_s)
        };
        (idle.map(|s| s.saturating_mul(1000)), abs.map(|s| s.saturating_mul(1000)))
    }
}

/// A list of sessions; `next` is the cursor of the next page, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    /// The sessions.
    pub sessions: Vec<SessionInfo>,
    /// Pass as `after` to get the next page (paginated lists only).
    pub next: Option<String>,
}

/// How many sessions a revocation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revoked {
    /// Sessions revoked by this call.
    pub revoked: usize,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Increasing id within the tenant.
    pub id: u64,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Who acted.
    pub actor: Option<String>,
    /// The actor's session.
    pub actor_session: Option<String>,
    /// What (`login`, `logout`, `session.revoke`, `device.remove`, `user.create`).
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// From where.
    pub ip: Option<String>,
    /// `ok`, `denied`, `failed`.
    pub result: String,
}

/// A page of the audit log, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditEntry>,
    /// Pass as `before` to get the next (older) page.
    pub next: Option<u64>,
}

/// `POST /v1/groups`: the caller becomes the group's first administrator and a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateGroupRequest {
    /// A human-readable name, 1..=128 bytes (not unique; members see it, the node never uses it).
    pub name: String,
    /// Other initial members (users of the caller's tenant); the caller is always a member.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    #[serde(default)]
    pub members: Vec<UserId>,
}

/// A group as its members (and the tenant's administrators) see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupInfo {
    /// The group id (32 hex digits, random).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Members, by name.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub members: Vec<UserId>,
    /// Group administrators (a subset of the members), by name.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub admins: Vec<UserId>,
    /// Bumped by every removal: a group message must carry the current epoch.
    pub epoch: u64,
    /// Bumped by every change of the record (any membership change).
    pub version: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// `GET /v1/groups`: the caller's groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupList {
    /// The groups, by id.
    pub groups: Vec<GroupInfo>,
}

/// `POST /v1/groups/{id}/members` (group administrators and tenant administrators).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddMembersRequest {
    /// Users of the caller's tenant to add; those already members are ignored.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub users: Vec<UserId>,
}

/// A signed pre-key: the signed EC pre-key, a Kyber one-time pre-key, or the Kyber last-resort
/// key. The signature is the device identity key's XEdDSA signature over `public_key` (type
/// byte included), as libsignal makes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedPreKey {
    /// Key id, `0..=2^31-1`. Carried as a signed 64-bit number so that an out-of-range id is
    /// refused as `invalid_key_id` rather than as a malformed body.
    pub key_id: i64,
    /// The serialized public key: 33 bytes (EC, `0x05`) or 1569 bytes (Kyber-1024, `0x08`);
    /// standard base64 in JSON, raw bytes in postcard.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub public_key: Payload,
    /// 64 bytes (base64 in JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub signature: Payload,
}

/// An EC one-time pre-key (unsigned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreKey {
    /// Key id, `0..=2^31-1` (see [`SignedPreKey::key_id`]).
    pub key_id: i64,
    /// The serialized EC public key, 33 bytes (base64 in JSON).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub public_key: Payload,
}

/// `PUT /v1/keys` (and the WebSocket `UploadKeys` frame): the calling device's pre-keys.
///
/// Each part is optional; a present signed key replaces the stored one, a non-empty list
/// replaces every stored one-time key of that kind. At most
/// [`MAX_KEYS_PER_UPLOAD`](crate::limits::MAX_KEYS_PER_UPLOAD) keys per list. Every signature is
/// checked against the device's identity key; one bad key refuses the whole upload (422,
/// nothing stored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadKeysRequest {
    /// The signed EC pre-key.
    #[serde(default)]
    pub signed_pre_key: Option<SignedPreKey>,
    /// EC one-time pre-keys.
    #[serde(default)]
    pub pre_keys: Vec<PreKey>,
    /// Kyber-1024 one-time pre-keys (signed).
    #[serde(default)]
    pub kyber_pre_keys: Vec<SignedPreKey>,
    /// The Kyber-1024 last-resort key, served when the Kyber one-time keys run out.
    #[serde(default)]
    pub kyber_last_resort: Option<SignedPreKey>,
}

/// How many one-time pre-keys the node holds for a device (`GET /v1/keys`, and the answer to
/// an upload).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCounts {
    /// EC one-time pre-keys left.
    pub ec: u32,
    /// Kyber one-time pre-keys left (the last-resort key is not counted).
    pub kyber: u32,
}

/// The keys of one device, as fetched to start a session with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicePreKeys {
    /// The device.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub device_id: DeviceId,
    /// Its current registration id (put it in the `Send` frames to this device).
    #[cfg_attr(feature = "openapi", schema(value_type = u16))]
    pub registration_id: RegistrationId,
    /// Its identity public key (33 bytes, base64 in JSON). Hush keeps one per device.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub identity_key: Payload,
    /// Its signed EC pre-key.
    pub signed_pre_key: SignedPreKey,
    /// An EC one-time pre-key, handed out once and deleted; absent when none is left.
    pub pre_key: Option<PreKey>,
    /// A Kyber one-time pre-key (handed out once and deleted), or else the last-resort key;
    /// absent only if the device uploaded neither.
    pub kyber_pre_key: Option<SignedPreKey>,
}

/// `GET /v1/keys/{user}/{device}` and `GET /v1/keys/{user}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreKeyResponse {
    /// Whose keys.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: UserId,
    /// One entry per device asked for that has a signed pre-key, by device id.
    pub devices: Vec<DevicePreKeys>,
}

/// Body of a 429 answer: the error body plus when to retry (also in the `Retry-After` header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitedBody {
    /// `rate_limited`, or `account_locked` for a login refused because the account is locked.
    pub error: String,
    /// A human-readable explanation.
    pub message: String,
    /// Seconds until the next attempt can succeed.
    pub retry_after_s: u64,
}

/// MFA state of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MfaState {
    /// No second factor was asked of this session (none needed, or still in the grace period).
    #[default]
    None,
    /// A second factor is due: only the `/v1/mfa/...` routes (and logout) answer.
    MfaPending,
    /// A second factor was verified (`method`, `verified_at_ms`).
    Verified,
    /// The tenant requires MFA, the grace period is over and the user has none: only enrolment
    /// (and logout) answer.
    EnrollRequired,
}

/// How a session proved its second factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MfaMethod {
    /// A TOTP code.
    Totp,
    /// A backup code.
    Backup,
    /// A device the user trusted earlier ("remember this device").
    TrustedDevice,
    /// The session confirmed the enrolment of the factor with its first code: a verification
    /// of this session, and a step-up for actions on the user's own account, but not for
    /// actions on others (docs/mfa.md, "Step-up").
    Enrollment,
}

/// A tenant's MFA requirement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MfaLevel {
    /// No login is challenged and nobody must enrol; a user may still enrol a factor, which
    /// serves only the step-up of actions on others (administrators need one for those).
    Off,
    /// Users may enrol; a user who did is challenged at every login.
    #[default]
    Optional,
    /// Every (non-exempt) user must use MFA, after a grace period to enrol.
    Required,
    /// Like `required` for administrators, like `optional` for members.
    RequiredForAdmins,
}

/// A role, for exemptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Tenant administrators.
    Admin,
    /// Everyone else.
    Member,
}

/// A pending MFA challenge, bound to the session that received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaChallenge {
    /// Pass it to `/v1/mfa/verify` or `/v1/mfa/backup` from the same session.
    pub challenge_id: String,
    /// When it expires, ms since the Unix epoch.
    pub expires_ms: u64,
    /// The methods that may answer it.
    pub methods: Vec<MfaMethod>,
}

/// A session's MFA state as shown to clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionMfa {
    /// The state.
    pub state: MfaState,
    /// The tenant's level when the state was decided.
    pub level: MfaLevel,
    /// How the second factor was proved (verified sessions).
    pub method: Option<MfaMethod>,
    /// When, ms since the Unix epoch (verified sessions; step-up looks at it).
    pub verified_at_ms: Option<u64>,
    /// The open challenge (pending sessions).
    pub challenge: Option<MfaChallenge>,
    /// The user must enrol before this time (ms since the Unix epoch), then can do nothing else.
    pub enroll_deadline_ms: Option<u64>,
}

/// `POST /v1/mfa/totp/enroll`: a new (not yet active) TOTP secret. Shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrollment {
    /// The secret, base32 without padding, for manual entry.
    pub secret: Secret,
    /// `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...&algorithm=...&digits=...&period=30`.
    pub otpauth_uri: Secret,
    /// The URI as a QR code: a PNG image, standard base64.
    pub qr_png_base64: Secret,
    /// The HMAC algorithm.
    pub algorithm: crate::otp::Algorithm,
    /// Code length.
    pub digits: u32,
    /// Time step, seconds.
    pub period: u64,
}

/// A code typed by the user (TOTP or backup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaCodeRequest {
    /// The code.
    pub code: Secret,
}

/// `POST /v1/mfa/totp/confirm` answer: TOTP is on; the backup codes are shown only now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupCodes {
    /// One-time backup codes (each works once); any earlier set is void.
    pub codes: Vec<Secret>,
}

/// `POST /v1/mfa/verify` and `POST /v1/mfa/backup`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaVerifyRequest {
    /// The challenge this session received.
    pub challenge_id: String,
    /// The TOTP or backup code.
    pub code: Secret,
    /// Trust this device: later logins of it skip the challenge for the tenant's number of days.
    #[serde(default)]
    pub remember_device: bool,
}

/// A successful verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaVerified {
    /// The session's new state.
    pub session: SessionMfa,
    /// With `remember_device`: send it as `trusted_device_token` when logging in this device.
    pub trusted_device_token: Option<Secret>,
    /// Until when the device is trusted.
    pub trusted_until_ms: Option<u64>,
}

/// `GET /v1/mfa/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaStatus {
    /// The tenant's level.
    pub level: MfaLevel,
    /// Whether this user must use MFA (level, role, enforcement, exemptions).
    pub required: bool,
    /// Whether this user is exempt.
    pub exempt: bool,
    /// Whether TOTP is on (confirmed).
    pub totp_enabled: bool,
    /// Unused backup codes.
    pub backup_codes_left: u32,
    /// Failed attempts counted now (in the current window).
    pub failed_attempts: u32,
    /// The factor is locked until then (ms since the Unix epoch).
    pub locked_until_ms: Option<u64>,
    /// This session's state.
    pub session: SessionMfa,
}

/// A trusted device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustedDevice {
    /// The device.
    #[cfg_attr(feature = "openapi", schema(value_type = u32))]
    pub device: DeviceId,
    /// When it was trusted, ms since the Unix epoch.
    pub created_ms: u64,
    /// When the trust ends.
    pub expires_ms: u64,
}

/// `GET /v1/mfa/trusted-devices`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustedDeviceList {
    /// The caller's trusted devices (unexpired).
    pub devices: Vec<TrustedDevice>,
}

/// A tenant's MFA policy (`GET`/`PUT /v1/admin/tenant/mfa`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaPolicy {
    /// The level.
    pub level: MfaLevel,
    /// Seconds each user has to enrol once MFA is required of them, counted from their first
    /// login after enforcement. Lowering it applies to users already in their grace period.
    pub grace_period_secs: u64,
    /// Users never challenged.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub exempt_users: Vec<UserId>,
    /// Roles never challenged.
    pub exempt_roles: Vec<Role>,
    /// HMAC of new TOTP enrolments.
    pub totp_algorithm: crate::otp::Algorithm,
    /// Digits of new TOTP enrolments (6 or 8).
    pub totp_digits: u32,
    /// How long "remember this device" lasts, days (0: never offered).
    pub trusted_device_days: u32,
    /// When set, overrides `trusted_device_days` with a duration in seconds (short trusts for
    /// kiosks, and tests).
    #[serde(default)]
    pub trusted_device_secs: Option<u64>,
    /// Sensitive actions need an MFA verification at most this old, seconds.
    pub step_up_window_secs: u64,
}

/// One user's MFA state (`GET /v1/admin/users/mfa-status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserMfaStatus {
    /// The user.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user: UserId,
    /// Administrator of the tenant.
    pub admin: bool,
    /// TOTP on.
    pub totp_enabled: bool,
    /// Unused backup codes.
    pub backup_codes_left: u32,
    /// MFA enforced on this user by an administrator.
    pub enforced: bool,
    /// Exempt by name or role.
    pub exempt: bool,
    /// Must use MFA.
    pub required: bool,
    /// End of the user's grace period, if it has started and the user has no MFA.
    pub enroll_deadline_ms: Option<u64>,
    /// Factor locked until then.
    pub locked_until_ms: Option<u64>,
}

/// A page of [`UserMfaStatus`], by user name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserMfaStatusList {
    /// The users.
    pub users: Vec<UserMfaStatus>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
}

/// How many users an enforcement touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Enforced {
    /// Users now required to use MFA.
    pub users: usize,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let req: LoginRequest = serde_json::from_str(
            r#"{"tenant":"acme","user":"alice","password":"hunter2-pass","device":{"registration_id":5}}"#,
        )
        .unwrap();
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(req.password.expose(), "hunter2-pass");
    }
}
