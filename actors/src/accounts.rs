//! Accounts: password login, token authentication, users and the first-run bootstrap.
//!
//! Passwords are hashed with Argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, 1 lane,
//! OWASP's recommendation) on tokio's blocking pool, at most
//! [`PASSWORD_HASH_CONCURRENCY`](crate::limits::PASSWORD_HASH_CONCURRENCY) at once. An unknown
//! user costs one verification against a dummy hash, so it answers like a wrong password, in
//! the same time class. Tokens are 256 random bits; the store keeps only their SHA-256.
//!
//! Every password attempt goes through [`crate::throttle`] first (per account and per client
//! address, cluster-wide).
//!
//! One-time passwords: the bootstrap administrator's, those made by `hushd init` and by
//! `hushd admin reset-password` are marked one-time in the user's credential record (a
//! key-value record, [`NS_CREDENTIAL`], that also holds the hash of a changed password; the
//! user record keeps the password it was created with). Each login with a one-time password
//! gets a session marked [`NS_PASSWORD_CHANGE`]: until [`change_password`] sets a new
//! password, that session may only change the password, log out and pass MFA. Once changed,
//! the one-time password is dead (the hash is replaced), the marked session becomes a normal
//! one and the user's other sessions are revoked (`password_changed`).

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use base64::Engine;
use hush_protocol::api::{CreateUserRequest, DeviceRequest, LoginRequest, LoginResponse, Secret, UserInfo};
use hush_protocol::ids::{DeviceAddress, DeviceId, RegistrationId, TenantId, UserId};
use hush_protocol::limits::{MAX_DEVICES_PER_USER, MAX_NAME_BYTES, MAX_PASSWORD_BYTES};
use hush_protocol::wire::SessionEvent;
use hush_store::{DeviceRecord, DeviceSet, SessionRecord, StoreError, TenantRecord, TokenHash, UserRecord};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::hub::Hub;
use crate::keys;
use crate::metrics::Metrics;
use crate::now_ms;
use crate::sessions;
use crate::tenant;

/// Shortest password accepted for a new account.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Why an account operation failed. Mapped to HTTP statuses at the node's edge.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Unknown tenant or user, wrong password, or an unknown/revoked token: one answer for all.
    #[error("invalid credentials")]
    Unauthorized,
    /// Authenticated, but not allowed (not an administrator).
    #[error("forbidden")]
    Forbidden,
    /// The thing does not exist (or belongs to another tenant).
    #[error("not found")]
    NotFound,
    /// The request was well-formed JSON but its content was refused.
    #[error("{0}")]
    Invalid(String),
    /// The name is taken.
    #[error("already exists")]
    Conflict,
    /// The account already has the maximum number of devices.
    #[error("too many devices: at most {MAX_DEVICES_PER_USER} per user")]
    TooManyDevices,
    /// The store failed; nothing was changed.
    #[error("store unavailable")]
    Store(#[from] StoreError),
    /// Password hashing failed.
    #[error("internal error")]
    Internal,
    /// Too many logins are waiting for password hashing; retry shortly.
    #[error("busy")]
    Busy,
    /// The session passed its tenant's idle or absolute limit; it is now revoked.
    #[error("session expired")]
    SessionExpired,
    /// Too many failed attempts: refused before any check (429 `rate_limited` or
    /// `account_locked`, with the seconds to wait).
    #[error("too many failed attempts")]
    Throttled(crate::throttle::Refused),
    /// The session logged in with a one-time password: only a password change (and logout,
    /// MFA) is allowed until a new password is set.
    #[error("password change required")]
    PasswordChangeRequired,
    /// The current password given to a password change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The one-time password was already used by a login: it serves once. An administrator
    /// gives a new one (`hushd admin reset-password`).
    #[error("this one-time password was already used; an administrator can give a new one with `hushd admin reset-password`")]
    OneTimePasswordUsed,
}

impl From<crate::throttle::Refused> for AccountError {
    fn from(r: crate::throttle::Refused) -> Self {
        AccountError::Throttled(r)
    }
}

/// Key-value namespace of credential records (`<tenant>/<user>` -> [`Credential`]).
pub const NS_CREDENTIAL: &str = "credential";

/// Key-value namespace marking sessions that must change their password (session id -> empty).
pub const NS_PASSWORD_CHANGE: &str = "password_change";

/// Key-value namespace of one-time passwords that served their login
/// (`<tenant>/<user>/<set_ms>` -> empty): created once, by a create-only write, so a one-time
/// password logs in exactly once across the cluster, even with two logins at the same moment.
pub const NS_ONE_TIME_USED: &str = "one_time_used";

/// What the store keeps about a user's password beyond the user record: the hash of a changed
/// password (it replaces the record's), and whether it is a one-time password.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    /// Argon2id PHC string of the password in force.
    pub password_hash: String,
    /// A one-time password: a login with it must set a new one.
    pub one_time: bool,
    /// When it was set, ms since the Unix epoch.
    pub set_ms: u64,
}

fn credential_key(tenant: &TenantId, user: &UserId) -> String {
    format!("{tenant}/{user}")
}

/// The user's credential record, if the password was ever changed or is one-time.
pub async fn credential(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Option<Credential>, AccountError> {
    match hub.store.kv_get(NS_CREDENTIAL, &credential_key(tenant, user)).await? {
        None => Ok(None),
        Some(e) => postcard::from_bytes(&e.value)
            .map(Some)
            .map_err(|e| AccountError::Store(StoreError::Corrupt(format!("{NS_CREDENTIAL}: {e}")))),
    }
}

async fn put_credential(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    c: &Credential,
) -> Result<(), AccountError> {
    let bytes = postcard::to_allocvec(c).map_err(|_| AccountError::Internal)?;
    hub.store.kv_set(NS_CREDENTIAL, &credential_key(tenant, user), bytes).await?;
    Ok(())
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Authed {
    /// The session (never revoked at the time of the check).
    pub session: SessionRecord,
    /// Whether the user administers its tenant.
    pub admin: bool,
    /// The session's MFA state (a pending session may use only the MFA routes).
    pub mfa: crate::mfa::SessionMfaRec,
    /// The session logged in with a one-time password and must set a new one first.
    pub password_change_required: bool,
}

impl Authed {
    /// The tenant of the caller.
    pub fn tenant(&self) -> &TenantId {
        &self.session.device.tenant
    }
    /// The calling user.
    pub fn user(&self) -> &UserId {
        &self.session.device.user
    }
}

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// A new opaque 256-bit token, base64url without padding.
pub fn new_token() -> Secret {
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// A new 128-bit public id, hex.
pub fn new_public_id() -> String {
    random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Computes the dummy hash used for unknown users now, so the first unknown-user login does
/// not take longer than later ones.
pub fn warm_up() {
    let _ = dummy_hash();
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default().hash_password(&random_bytes::<16>()).map(|h| h.to_string()).unwrap_or_default()
    })
}

/// Hashes a password with Argon2id on the blocking pool.
pub async fn hash_password(hub: &Hub, password: &Secret) -> Result<String, AccountError> {
    let pw = password.clone();
    hub.hashing
        .run(move || {
            Argon2::default()
                .hash_password(pw.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|_| AccountError::Internal)
        })
        .await
        .ok_or(AccountError::Busy)?
}

async fn verify_password(hub: &Hub, password: &Secret, hash: Option<String>) -> Result<bool, AccountError> {
    let pw = password.clone();
    let real = hash.is_some();
    hub.hashing
        .run(move || {
            let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
            let ok = Argon2::default().verify_password(pw.expose().as_bytes(), hash.as_str()).is_ok();
            ok && real
        })
        .await
        .ok_or(AccountError::Busy)
}

fn check_password(p: &Secret) -> Result<(), AccountError> {
    let n = p.expose().chars().count();
    if n < MIN_PASSWORD_CHARS || p.expose().len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid(format!(
            "password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long"
        )));
    }
    Ok(())
}

/// Where a login came from (kept in the session record).
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// Peer address.
    pub ip: Option<String>,
    /// `User-Agent` header, truncated.
    pub user_agent: Option<String>,
}

/// Logs in with a password, registering or re-registering the device, and opens a session.
pub async fn login(hub: &Hub, req: LoginRequest, client: ClientInfo) -> Result<LoginResponse, AccountError> {
    if req.password.expose().len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Unauthorized);
    }
    let actor =
        crate::sessions::Initiator { user: Some(req.user.clone()), session: None, ip: client.ip.clone() };
    let guard =
        match crate::throttle::password_attempt(hub, &req.tenant, &req.user, client.ip.as_deref()).await {
            Ok(g) => g,
            Err(refused) => {
                Metrics::add(&hub.metrics.login_failures, 1);
                tracing::info!(tenant = %req.tenant, ?refused, "login throttled");
                return Err(refused.into());
            }
        };
    let user = hub.store.get_user(&req.tenant, &req.user).await?;
    let cred = match &user {
        Some(u) => credential(hub, &u.tenant, &u.user).await?,
        None => None,
    };
    let hash = match (&cred, &user) {
        (Some(c), _) => Some(c.password_hash.clone()),
        (None, Some(u)) => Some(u.password_hash.clone()),
        (None, None) => None,
    };
    let ok = verify_password(hub, &req.password, hash).await?;
    let exists = user.is_some();
    let Some(user) = user.filter(|_| ok) else {
        Metrics::add(&hub.metrics.login_failures, 1);
        tracing::info!(tenant = %req.tenant, "login refused");
        crate::sessions::audit(hub, &req.tenant, &actor, "login", None, "denied").await;
        guard.failed(hub, &req.tenant, &req.user, exists, client.ip.clone()).await;
        return Err(AccountError::Unauthorized);
    };
    let one_time = cred.as_ref().is_some_and(|c| c.one_time);
    if let Some(c) = cred.as_ref().filter(|c| c.one_time) {
        let key = format!("{}/{}", credential_key(&user.tenant, &user.user), c.set_ms);
        match hub.store.kv_put(NS_ONE_TIME_USED, &key, 0, Vec::new()).await {
            Ok(_) => {}
            Err(StoreError::VersionConflict) => {
                Metrics::add(&hub.metrics.login_failures, 1);
                tracing::info!(tenant = %req.tenant, "login refused: one-time password already used");
                crate::sessions::audit(hub, &req.tenant, &actor, "login", None, "one_time_password_used")
                    .await;
                guard.failed(hub, &req.tenant, &req.user, true, client.ip.clone()).await;
                return Err(AccountError::OneTimePasswordUsed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    guard.succeeded(hub).await;
    // A login that must pass an MFA challenge changes no device yet (no new device, no new
    // registration id or identity key, no pre-keys deleted): a password alone must not let
    // anyone re-key or add a device. The change is kept with the pending session and applied
    // when it verifies (`complete_pending_device`).
    let defer =
        crate::mfa::login_must_challenge(hub, &user, req.device.id, req.trusted_device_token.as_ref())
            .await
            .map_err(|e| match e {
                crate::mfa::MfaError::Account(a) => a,
                _ => AccountError::Internal,
            })?;
    let (device, added, registration_id, pending) = if defer {
        let (id, registration_id, request) = reserve_device(hub, &user, &req.device).await?;
        (id, false, registration_id, Some(request))
    } else {
        let (id, added, registration_id) = register_device(hub, &user, &req.device, None).await?;
        (id, added, registration_id, None)
    };
    let existing_device = req.device.id.is_some();
    let token = new_token();
    let session_id = new_public_id();
    if one_time {
        // Marked before the session exists, so no moment sees it unrestricted.
        hub.store.kv_set(NS_PASSWORD_CHANGE, &session_id, Vec::new()).await?;
    }
    let session = SessionRecord {
        id: session_id,
        token_hash: token_hash(token.expose()),
        device: DeviceAddress::new(user.tenant.clone(), user.user.clone(), device),
        created_ms: now_ms(),
        user_agent: client.user_agent,
        ip: client.ip,
        revoked: None,
    };
    hub.store.create_session(session.clone()).await?;
    let mfa = crate::mfa::on_login(hub, &user, &session, existing_device, req.trusted_device_token.as_ref())
        .await
        .map_err(|e| match e {
            crate::mfa::MfaError::Account(a) => a,
            _ => AccountError::Internal,
        })?;
    if let Some(request) = pending {
        let r = if mfa.state == hush_protocol::api::MfaState::MfaPending {
            crate::mfa::set_pending_device(hub, &session.id, request).await.map_err(|e| match e {
                crate::mfa::MfaError::Account(a) => a,
                _ => AccountError::Internal,
            })
        } else {
            // The policy changed between the two decisions: no challenge after all.
            complete_pending_device(hub, &user, &session, &request).await
        };
        if let Err(e) = r {
            let _ = hub
                .store
                .revoke_session(
                    &session.id,
                    hush_store::Revocation { at_ms: now_ms(), reason: "logout".into() },
                )
                .await;
            return Err(e);
        }
    }
    Metrics::add(&hub.metrics.logins, 1);
    let actor = crate::sessions::Initiator { session: Some(session.id.clone()), ..actor };
    let target = Some(format!("session:{} device:{}", session.id, session.device));
    crate::sessions::audit(hub, &user.tenant, &actor, "login", target, "ok").await;
    if added {
        let ev = SessionEvent::DeviceAdded { device };
        crate::sessions::emit(hub, &user.tenant, &user.user, device, Some(device), ev).await;
    }
    let ev = SessionEvent::NewLogin { session_id: session.id.clone(), device, ip: session.ip.clone() };
    crate::sessions::emit(hub, &user.tenant, &user.user, device, Some(device), ev).await;
    tracing::info!(tenant = %user.tenant, user = %user.user, device = %device, session = %session.id, "login");
    Ok(LoginResponse {
        token,
        session_id: session.id,
        tenant: user.tenant,
        user: user.user,
        device,
        admin: user.admin,
        registration_id,
        mfa: Some(mfa),
        password_change_required: one_time,
    })
}

async fn register_device(
    hub: &Hub,
    user: &UserRecord,
    req: &DeviceRequest,
    new_id: Option<DeviceId>,
) -> Result<(DeviceId, bool, RegistrationId), AccountError> {
    let identity = check_device_request(req)?;
    let name = req.name.clone().unwrap_or_default();
    // An existing device logging in with another identity key than the stored one changes
    // identity: new registration id, old pre-keys gone.
    let stored = match (req.id, &identity) {
        (Some(id), Some(_)) => {
            keys::identity_of(hub, &DeviceAddress::new(user.tenant.clone(), user.user.clone(), id)).await?
        }
        _ => None,
    };
    let changed = matches!((&identity, &stored), (Some(new), Some(old)) if new != old);
    let mut chosen = None;
    let mut added = false;
    let mut registration_id = req.registration_id;
    hub.directory
        .update(&user.tenant, &user.user, |set| {
            let mut devices = set.devices.clone();
            match req.id {
                Some(id) => {
                    let d = devices.iter_mut().find(|d| d.id == id).ok_or(AccountError::NotFound)?;
                    // A new registration id marks the device re-registered: senders holding the
                    // old one get StaleDevices. An identity change always gets a new one.
                    registration_id = if changed && req.registration_id == d.registration_id {
                        fresh_registration_id(d.registration_id)
                    } else {
                        req.registration_id
                    };
                    d.registration_id = registration_id;
                    if !name.is_empty() {
                        d.name = name.clone();
                    }
                    chosen = Some(id);
                    added = false;
                }
                None => {
                    if devices.len() as u32 >= MAX_DEVICES_PER_USER {
                        return Err(AccountError::TooManyDevices);
                    }
                    let id = match new_id {
                        // The id reserved at an MFA-pending login: taken since, log in again.
                        Some(id) if devices.iter().any(|d| d.id == id) => return Err(AccountError::Conflict),
                        Some(id) => id,
                        None => (1..=hush_protocol::limits::MAX_DEVICE_ID)
                            .filter_map(|i| DeviceId::new(i).ok())
                            .find(|i| devices.iter().all(|d| d.id != *i))
                            .ok_or(AccountError::TooManyDevices)?,
                    };
                    registration_id = req.registration_id;
                    devices.push(DeviceRecord {
                        id,
                        registration_id,
                        name: name.clone(),
                        created_ms: now_ms(),
                    });
                    chosen = Some(id);
                    added = true;
                }
            }
            Ok(devices)
        })
        .await?;
    let device = chosen.ok_or(AccountError::Internal)?;
    let addr = DeviceAddress::new(user.tenant.clone(), user.user.clone(), device);
    match identity {
        Some(key) if added || changed => keys::set_identity(hub, &addr, key, true).await?,
        Some(key) if stored.is_none() => keys::set_identity(hub, &addr, key, false).await?,
        Some(_) => {}
        // A new device without an identity key must not inherit what a removed device with
        // the same id left behind.
        None if added => keys::forget_device(hub, &addr).await?,
        None => {}
    }
    if changed {
        tracing::info!(device = %addr, registration_id = registration_id.get(), "identity key changed; pre-keys deleted");
    }
    if let Some(k) = &req.keys {
        // Checked by `check_device_request` before the device was written; only the store
        // can fail here.
        keys::upload(hub, &addr, k).await.map_err(|e| match e {
            keys::KeysError::Store(s) => AccountError::from(s),
            e => AccountError::Invalid(format!("keys: {e}")),
        })?;
    }
    Ok((device, added, registration_id))
}

/// Checks a login's device fields: the name's length and the identity key's format; returns
/// the parsed identity key, if any.
fn check_device_request(req: &DeviceRequest) -> Result<Option<Vec<u8>>, AccountError> {
    if req.name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) {
        return Err(AccountError::Invalid(format!("device name longer than {MAX_NAME_BYTES} bytes")));
    }
    let identity = req
        .identity_key
        .as_ref()
        .map(|k| keys::check_identity_key(&k.0))
        .transpose()
        .map_err(|e| AccountError::Invalid(format!("identity_key: {e}")))?;
    if let Some(k) = &req.keys {
        let id = identity
            .as_ref()
            .ok_or_else(|| AccountError::Invalid("keys: sent without an identity_key".into()))?;
        keys::check_keys(id, k).map_err(|e| AccountError::Invalid(format!("keys: {e}")))?;
    }
    Ok(identity)
}

/// What an MFA-pending login would register, decided now (so the client learns its device id
/// and registration id) but not written: an existing device must exist and keeps its record;
/// a new device gets the first free id, which stays free until the session verifies.
async fn reserve_device(
    hub: &Hub,
    user: &UserRecord,
    req: &DeviceRequest,
) -> Result<(DeviceId, RegistrationId, DeviceRequest), AccountError> {
    let identity = check_device_request(req)?;
    let set = hub.directory.get(&user.tenant, &user.user).await?;
    let mut request = req.clone();
    let id = match req.id {
        Some(id) => {
            let d = set.get(id).ok_or(AccountError::NotFound)?;
            let addr = DeviceAddress::new(user.tenant.clone(), user.user.clone(), id);
            let stored = match &identity {
                Some(_) => keys::identity_of(hub, &addr).await?,
                None => None,
            };
            let changed = matches!((&identity, &stored), (Some(new), Some(old)) if new != old);
            if changed && req.registration_id == d.registration_id {
                request.registration_id = fresh_registration_id(d.registration_id);
            }
            id
        }
        None => {
            if set.devices.len() as u32 >= MAX_DEVICES_PER_USER {
                return Err(AccountError::TooManyDevices);
            }
            reserve_new_device_id(hub, user, &set).await?
        }
    };
    Ok((id, request.registration_id, request))
}

/// Key-value namespace of device ids reserved by MFA-pending logins (`tenant/user/id` ->
/// expiry, ms, 8 bytes big-endian).
const RESERVED_NS: &str = "device_reserved";
/// How long a pending login keeps its new device id.
const RESERVATION_MS: u64 = 15 * 60 * 1000;

fn reservation_key(user: &UserRecord, id: DeviceId) -> String {
    format!("{}/{}/{:03}", user.tenant, user.user, id.get())
}

/// The first device id neither registered nor reserved by another pending login (reserved
/// with a compare-and-set, so two pending logins never get the same id).
async fn reserve_new_device_id(
    hub: &Hub,
    user: &UserRecord,
    set: &DeviceSet,
) -> Result<DeviceId, AccountError> {
    let now = now_ms();
    let until = (now + RESERVATION_MS).to_be_bytes().to_vec();
    for id in (1..=hush_protocol::limits::MAX_DEVICE_ID).filter_map(|i| DeviceId::new(i).ok()) {
        if set.get(id).is_some() {
            continue;
        }
        let key = reservation_key(user, id);
        match hub.store.kv_put(RESERVED_NS, &key, 0, until.clone()).await {
            Ok(_) => return Ok(id),
            Err(StoreError::VersionConflict) => {
                // Taken: reuse it only if that reservation has expired.
                let Some(e) = hub.store.kv_get(RESERVED_NS, &key).await? else { continue };
                let expired = <[u8; 8]>::try_from(e.value.as_slice())
                    .map(u64::from_be_bytes)
                    .map_or(true, |t| t <= now);
                if expired && hub.store.kv_put(RESERVED_NS, &key, e.version, until.clone()).await.is_ok() {
                    return Ok(id);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AccountError::TooManyDevices)
}

/// Applies the device change an MFA-pending login asked for, once its session verified (or
/// at once if the policy no longer challenges it): the same registration as a plain login,
/// with a new device getting the id the login reserved ([`AccountError::Conflict`] if another
/// login took it meanwhile).
pub async fn complete_pending_device(
    hub: &Hub,
    user: &UserRecord,
    session: &SessionRecord,
    request: &DeviceRequest,
) -> Result<(), AccountError> {
    let new_id = if request.id.is_none() { Some(session.device.device) } else { None };
    let (device, added, _) = register_device(hub, user, request, new_id).await?;
    if added {
        let key = reservation_key(user, device);
        if let Err(e) = hub.store.kv_delete(RESERVED_NS, &key, None).await {
            tracing::warn!(error = %e, "device reservation not deleted (it expires)");
        }
    }
    if added {
        let ev = SessionEvent::DeviceAdded { device };
        crate::sessions::emit(hub, &user.tenant, &user.user, device, Some(device), ev).await;
    }
    Ok(())
}

/// A random registration id other than `old`.
fn fresh_registration_id(old: RegistrationId) -> RegistrationId {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        if let Ok(r) =
            RegistrationId::new(rng.gen_range(1..=u32::from(hush_protocol::limits::MAX_REGISTRATION_ID)))
        {
            if r != old {
                return r;
            }
        }
    }
}

/// Checks a bearer token: the session must exist and not be revoked.
pub async fn authenticate(hub: &Hub, token: &str) -> Result<Authed, AccountError> {
    if token.is_empty() || token.len() > 128 {
        return Err(AccountError::Unauthorized);
    }
    let session = hub
        .store
        .session_by_token(&token_hash(token))
        .await?
        .filter(|s| s.revoked.is_none())
        .ok_or(AccountError::Unauthorized)?;
    let user = hub
        .store
        .get_user(&session.device.tenant, &session.device.user)
        .await?
        .ok_or(AccountError::Unauthorized)?;
    // The tenant's session lifetimes: an expired session is revoked now (once, on whichever
    // node sees it first) and refused like a revoked one, with its own error.
    let settings = hub.tenants.settings(&*hub.store, &session.device.tenant).await?;
    let policy = &settings.sessions;
    let now = now_ms();
    let (idle, absolute) = policy.limits_ms(user.admin);
    if idle.is_some() || absolute.is_some() {
        let last_seen = if idle.is_some() {
            hub.tenants.last_seen(&*hub.store, &session, idle).await?
        } else {
            session.created_ms
        };
        if let Some(why) = tenant::expiry(policy, user.admin, &session, last_seen, now) {
            sessions::expire(hub, &session, why).await;
            return Err(AccountError::SessionExpired);
        }
    }
    hub.tenants.touch(&*hub.store, &session.id, now, tenant::seen_granularity_ms(policy, user.admin)).await;
    let (mfa, change) = tokio::join!(
        crate::mfa::session_rec(hub, &session.id),
        hub.store.kv_get(NS_PASSWORD_CHANGE, &session.id)
    );
    Ok(Authed { session, admin: user.admin, mfa: mfa?, password_change_required: change?.is_some() })
}

/// Creates a user in `tenant`.
pub async fn create_user(
    hub: &Hub,
    tenant: &TenantId,
    req: CreateUserRequest,
) -> Result<UserInfo, AccountError> {
    check_password(&req.password)?;
    let hash = hash_password(hub, &req.password).await?;
    let rec = UserRecord {
        tenant: tenant.clone(),
        user: req.user.clone(),
        password_hash: hash,
        admin: req.admin,
        created_ms: now_ms(),
    };
    match hub.store.create_user(rec.clone()).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(AccountError::Conflict),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tenant = %tenant, user = %req.user, admin = req.admin, "user created");
    Ok(user_info(&rec))
}

/// Public view of a user record.
pub fn user_info(u: &UserRecord) -> UserInfo {
    UserInfo { tenant: u.tenant.clone(), user: u.user.clone(), admin: u.admin, created_ms: u.created_ms }
}

/// A random password for bootstrap credentials: 20 characters of base64url (120 bits).
pub fn random_password() -> Secret {
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<15>()))
}

/// Creates a tenant and its first administrator with a random password, returned once.
/// [`AccountError::Conflict`] if the tenant exists.
pub async fn bootstrap(hub: &Hub, tenant: &TenantId, admin: &UserId) -> Result<Secret, AccountError> {
    match hub.store.create_tenant(TenantRecord { name: tenant.clone(), created_ms: now_ms() }).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(AccountError::Conflict),
        Err(e) => return Err(e.into()),
    }
    crate::mfa::write_default_policy(hub, tenant).await.map_err(|_| AccountError::Internal)?;
    let password = random_password();
    let hash = hash_password(hub, &password).await?;
    // One-time before the user exists: no moment has a reusable bootstrap password.
    put_credential(
        hub,
        tenant,
        admin,
        &Credential { password_hash: hash.clone(), one_time: true, set_ms: now_ms() },
    )
    .await?;
    let rec = UserRecord {
        tenant: tenant.clone(),
        user: admin.clone(),
        password_hash: hash,
        admin: true,
        created_ms: now_ms(),
    };
    match hub.store.create_user(rec).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(AccountError::Conflict),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tenant = %tenant, user = %admin, "administrator created with a one-time password");
    Ok(password)
}

/// Changes the caller's password (`POST /v1/account/password`): the current one is checked
/// (throttled like a login), the new one must differ and be 8 characters to 1,024 bytes. The
/// caller's session is no longer restricted; the ids of the user's other active sessions are
/// returned for revocation (`password_changed`). Audited (`password.change`).
pub async fn change_password(
    hub: &Hub,
    me: &Authed,
    current: &Secret,
    new: &Secret,
    ip: Option<String>,
) -> Result<Vec<String>, AccountError> {
    let (tenant, user) = (me.tenant().clone(), me.user().clone());
    let actor = crate::sessions::Initiator {
        user: Some(user.clone()),
        session: Some(me.session.id.clone()),
        ip: ip.clone(),
    };
    check_password(new)?;
    if current.expose().len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::WrongPassword);
    }
    let guard = crate::throttle::password_attempt(hub, &tenant, &user, ip.as_deref()).await?;
    let rec = hub.store.get_user(&tenant, &user).await?.ok_or(AccountError::Unauthorized)?;
    let cred = credential(hub, &tenant, &user).await?;
    let hash = cred.as_ref().map(|c| c.password_hash.clone()).unwrap_or_else(|| rec.password_hash.clone());
    if !verify_password(hub, current, Some(hash)).await? {
        crate::sessions::audit(hub, &tenant, &actor, "password.change", None, "denied").await;
        guard.failed(hub, &tenant, &user, true, ip).await;
        return Err(AccountError::WrongPassword);
    }
    guard.succeeded(hub).await;
    if current.expose() == new.expose() {
        return Err(AccountError::Invalid("the new password must differ from the current one".into()));
    }
    let hash = hash_password(hub, new).await?;
    put_credential(
        hub,
        &tenant,
        &user,
        &Credential { password_hash: hash, one_time: false, set_ms: now_ms() },
    )
    .await?;
    if let Err(e) = hub.store.kv_delete(NS_PASSWORD_CHANGE, &me.session.id, None).await {
        // The password is changed; the session stays restricted and can change it again.
        tracing::warn!(error = %e, "password-change mark of the session not cleared");
    }
    crate::sessions::audit(hub, &tenant, &actor, "password.change", Some(format!("user:{user}")), "ok").await;
    tracing::info!(tenant = %tenant, user = %user, "password changed");
    let others = hub
        .store
        .sessions_of_user(&tenant, &user)
        .await?
        .into_iter()
        .filter(|s| s.active() && s.id != me.session.id)
        .map(|s| s.id)
        .collect();
    Ok(others)
}

/// Gives `tenant/user` a new random one-time password (`hushd admin reset-password`, run on
/// the node's host): every session of the user is revoked (`password_reset`), the failed-login
/// count and lock are cleared, and the reset is audited (`password.reset`). The password is
/// returned once. [`AccountError::NotFound`] if there is no such user.
pub async fn reset_password(
    hub: &std::sync::Arc<Hub>,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Secret, AccountError> {
    hub.store.get_user(tenant, user).await?.ok_or(AccountError::NotFound)?;
    let password = random_password();
    let hash = hash_password(hub, &password).await?;
    put_credential(hub, tenant, user, &Credential { password_hash: hash, one_time: true, set_ms: now_ms() })
        .await?;
    let actor = crate::sessions::Initiator { user: None, session: None, ip: None };
    let ids: Vec<String> = hub
        .store
        .sessions_of_user(tenant, user)
        .await?
        .into_iter()
        .filter(|s| s.active())
        .map(|s| s.id)
        .collect();
    crate::sessions::revoke_many(
        hub,
        tenant,
        ids,
        "password_reset",
        hush_protocol::wire::CLOSE_UNAUTHORIZED,
        &actor,
    )
    .await?;
    crate::throttle::unlock(hub, tenant, user).await;
    crate::sessions::audit(hub, tenant, &actor, "password.reset", Some(format!("user:{user}")), "ok").await;
    tracing::info!(tenant = %tenant, user = %user, "password reset to a one-time password");
    Ok(password)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::phc::PasswordHash;

    use super::*;

    /// The dummy hash costs what a real one costs: same algorithm, version and parameters, so
    /// an unknown user is not told apart by the time a login takes.
    #[test]
    fn the_dummy_hash_has_the_parameters_of_a_real_one() {
        let real = Argon2::default().hash_password(b"a real password").unwrap().to_string();
        let (real, dummy) = (PasswordHash::new(&real).unwrap(), PasswordHash::new(dummy_hash()).unwrap());
        assert_eq!(real.algorithm, dummy.algorithm);
        assert_eq!(real.version, dummy.version);
        assert_eq!(real.params, dummy.params);
        assert_eq!(real.hash.map(|h| h.len()), dummy.hash.map(|h| h.len()));
        // And it verifies nothing a user could type.
        assert!(Argon2::default().verify_password(b"", &dummy).is_err());
    }
}
