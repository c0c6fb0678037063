//! Device registration at login: a login names an existing device (re-registering it, with a
//! new registration id if its identity key changed) or gets a new one. A login that must pass
//! MFA first only reserves what it would register (`reserve_device`); the change is applied
//! once the session verifies ([`complete_pending_device`]). Also the rule of who may remove a
//! device.

use hush_protocol::api::DeviceRequest;
use hush_protocol::ids::{DeviceAddress, DeviceId, RegistrationId};
use hush_protocol::limits::{MAX_DEVICES_PER_USER, MAX_DEVICE_ID, MAX_NAME_BYTES, MAX_REGISTRATION_ID};
use hush_protocol::wire::SessionEvent;
use hush_store::{DeviceRecord, DeviceSet, SessionRecord, StoreError, UserRecord};

use crate::accounts::auth::Authed;
use crate::accounts::error::AccountError;
use crate::hub::Hub;
use crate::keys;
use crate::now_ms;
use crate::sessions;

/// Key-value namespace of device ids reserved by MFA-pending logins (`tenant/user/id` ->
/// expiry, ms, 8 bytes big-endian).
const RESERVED_NS: &str = "device_reserved";
/// How long a pending login keeps its new device id.
const RESERVATION_MS: u64 = 15 * 60 * 1000;

/// What a registration did: the device, whether it is new, its registration id.
pub(crate) struct Registered {
    pub(crate) device: DeviceId,
    pub(crate) added: bool,
    pub(crate) registration_id: RegistrationId,
}

/// Registers or re-registers the device a login names (`req.id`), or adds a new one (with id
/// `new_id` if given: the id a pending login reserved), then stores its identity key and
/// pre-keys.
pub(crate) async fn register_device(
    hub: &Hub,
    user: &UserRecord,
    req: &DeviceRequest,
    new_id: Option<DeviceId>,
) -> Result<Registered, AccountError> {
    let identity = check_device_request(req)?;
    // An existing device logging in with another identity key than the stored one changes
    // identity: new registration id, old pre-keys gone.
    let stored = match (req.id, &identity) {
        (Some(id), Some(_)) => {
            keys::identity_of(hub, &DeviceAddress::new(user.tenant.clone(), user.user.clone(), id)).await?
        }
        _ => None,
    };
    let changed = matches!((&identity, &stored), (Some(new), Some(old)) if new != old);
    check_last_resort(hub, user, req, changed).await?;
    let mut done = None;
    hub.directory
        .update(&user.tenant, &user.user, |set| {
            let (devices, registered) = apply_request(set, req, new_id, changed)?;
            done = Some(registered);
            Ok::<_, AccountError>(devices)
        })
        .await?;
    let registered = done.ok_or(AccountError::Internal)?;
    let addr = DeviceAddress::new(user.tenant.clone(), user.user.clone(), registered.device);
    match identity {
        Some(key) if registered.added || changed => keys::set_identity(hub, &addr, key, true).await?,
        Some(key) if stored.is_none() => keys::set_identity(hub, &addr, key, false).await?,
        Some(_) => {}
        // A new device without an identity key must not inherit what a removed device with
        // the same id left behind.
        None if registered.added => keys::forget_device(hub, &addr).await?,
        None => {}
    }
    if changed {
        tracing::info!(device = %addr, registration_id = registered.registration_id.get(), "identity key changed; pre-keys deleted");
    }
    if let Some(k) = &req.keys {
        // Checked by `check_device_request` before the device was written; only the store
        // can fail here.
        keys::upload(hub, &addr, k).await.map_err(|e| match e {
            keys::KeysError::Store(s) => AccountError::from(s),
            e => AccountError::Invalid(format!("keys: {e}")),
        })?;
    }
    Ok(registered)
}

/// The device list after a login's device request (`changed`: the named device's identity key
/// changed), and what was registered.
fn apply_request(
    set: &DeviceSet,
    req: &DeviceRequest,
    new_id: Option<DeviceId>,
    changed: bool,
) -> Result<(Vec<DeviceRecord>, Registered), AccountError> {
    let name = req.name.clone().unwrap_or_default();
    let mut devices = set.devices.clone();
    let registered = match req.id {
        Some(id) => {
            let d = devices.iter_mut().find(|d| d.id == id).ok_or(AccountError::NotFound)?;
            // A new registration id marks the device re-registered: senders holding the
            // old one get StaleDevices. An identity change always gets a new one.
            let registration_id = if changed && req.registration_id == d.registration_id {
                fresh_registration_id(d.registration_id)
            } else {
                req.registration_id
            };
            d.registration_id = registration_id;
            if !name.is_empty() {
                d.name = name;
            }
            Registered { device: id, added: false, registration_id }
        }
        None => {
            if devices.len() as u32 >= MAX_DEVICES_PER_USER {
                return Err(AccountError::TooManyDevices);
            }
            let id = match new_id {
                // The id reserved at an MFA-pending login: taken since, log in again.
                Some(id) if devices.iter().any(|d| d.id == id) => return Err(AccountError::Conflict),
                Some(id) => id,
                None => (1..=MAX_DEVICE_ID)
                    .filter_map(|i| DeviceId::new(i).ok())
                    .find(|i| devices.iter().all(|d| d.id != *i))
                    .ok_or(AccountError::TooManyDevices)?,
            };
            let registration_id = req.registration_id;
            devices.push(DeviceRecord { id, registration_id, name, created_ms: now_ms() });
            Registered { device: id, added: true, registration_id }
        }
    };
    Ok((devices, registered))
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

/// A login's keys must carry a signed Kyber last-resort key (libsignal 0.103 cannot start a
/// session without one), unless the device keeps the one it has: an existing device, same
/// identity, with one stored. Checked before anything is written.
async fn check_last_resort(
    hub: &Hub,
    user: &UserRecord,
    req: &DeviceRequest,
    changed: bool,
) -> Result<(), AccountError> {
    let Some(k) = &req.keys else { return Ok(()) };
    if k.kyber_last_resort.is_some() {
        return Ok(());
    }
    let keeps = match req.id {
        Some(id) if !changed => {
            keys::has_last_resort(hub, &DeviceAddress::new(user.tenant.clone(), user.user.clone(), id))
                .await?
        }
        _ => false,
    };
    if keeps {
        Ok(())
    } else {
        Err(AccountError::MissingKyberLastResort)
    }
}

/// What an MFA-pending login would register, decided now (so the client learns its device id
/// and registration id) but not written: an existing device must exist and keeps its record;
/// a new device gets the first free id, which stays free until the session verifies.
pub(crate) async fn reserve_device(
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
            check_last_resort(hub, user, req, changed).await?;
            if changed && req.registration_id == d.registration_id {
                request.registration_id = fresh_registration_id(d.registration_id);
            }
            id
        }
        None => {
            if set.devices.len() as u32 >= MAX_DEVICES_PER_USER {
                return Err(AccountError::TooManyDevices);
            }
            check_last_resort(hub, user, req, false).await?;
            reserve_new_device_id(hub, user, &set).await?
        }
    };
    Ok((id, request.registration_id, request))
}

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
    for id in (1..=MAX_DEVICE_ID).filter_map(|i| DeviceId::new(i).ok()) {
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
    let Registered { device, added, .. } = register_device(hub, user, request, new_id).await?;
    if added {
        let key = reservation_key(user, device);
        if let Err(e) = hub.store.kv_delete(RESERVED_NS, &key, None).await {
            tracing::warn!(error = %e, "device reservation not deleted (it expires)");
        }
    }
    if added {
        let ev = SessionEvent::DeviceAdded { device };
        sessions::emit(hub, &user.tenant, &user.user, device, Some(device), ev).await;
    }
    Ok(())
}

/// A random registration id other than `old`.
fn fresh_registration_id(old: RegistrationId) -> RegistrationId {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        if let Ok(r) = RegistrationId::new(rng.gen_range(1..=u32::from(MAX_REGISTRATION_ID))) {
            if r != old {
                return r;
            }
        }
    }
}

/// Who may remove a device: the primary device removes a linked one, and any device may
/// remove itself ([`AccountError::Forbidden`] otherwise). Whether the primary may remove itself
/// is decided with the device set (`crate::sessions::remove_device`).
pub fn may_remove_device(me: &Authed, device: DeviceId) -> Result<(), AccountError> {
    let own = me.session.device.device == device;
    if me.session.device.device != DeviceId::PRIMARY && !own {
        return Err(AccountError::Forbidden);
    }
    Ok(())
}
