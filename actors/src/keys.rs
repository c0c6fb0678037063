//! Pre-key distribution (issue 5): identity keys, uploads checked against them, counts,
//! bundle fetches that hand out each one-time key at most once across the cluster, the
//! `PreKeysLow` push, the cluster-wide fetch rate limit and the rotation policy.
//!
//! Everything lives in the store's key-value space, namespace [`NS`]:
//!
//! | key | value |
//! |---|---|
//! | `id/<tenant>/<user>/<device>` | the device's identity key (33 bytes) |
//! | `k/<tenant>/<user>/<device>/spk` | signed EC pre-key, with its upload time |
//! | `k/<tenant>/<user>/<device>/lrk` | Kyber last-resort key, with its upload time |
//! | `k/<tenant>/<user>/<device>/ec/<key id>` | one EC one-time pre-key per entry |
//! | `k/<tenant>/<user>/<device>/ky/<key id>` | one Kyber one-time pre-key per entry |
//! | `k/<tenant>/<user>/<device>/low` | a `PreKeysLow` is owed, as stores before `s/` kept it |
//! | `s/<tenant>/<user>/<device>/…` | what a connect reads: key ages, an owed `PreKeysLow` ([`state`]) |
//!
//! Numbers are zero-padded to 10 digits, so key order is numeric order. One entry per one-time
//! key makes a fetch's `kv_take_first` exact: two fetches on any nodes never get the same key.
//! Identity keys sit under their own prefix so a device listing reads them in one scan; the
//! three small per-device records sort after the one-time keys (`low` < `lrk` < `spk`), so one
//! scan starting past `ky/` reads all three.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hush_protocol::api::{DevicePreKeys, KeyCounts, PreKey, PreKeyResponse, SignedPreKey, UploadKeysRequest};
use hush_protocol::e2e::{self, KeyError, PublicKey};
use hush_protocol::ids::{DeviceAddress, DeviceId, MessageId, RegistrationId, TenantId, UserId};
use hush_protocol::limits::{EC_PUBLIC_KEY_BYTES, MAX_KEYS_PER_UPLOAD};
use hush_protocol::wire::{ErrorCode, Payload, ServerFrame};
use hush_store::{KvEntry, StoreError};
use serde::{Deserialize, Serialize};

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::now_ms;

mod state;
use state::Ages;

/// The key-value namespace of this module.
pub const NS: &str = "keys";

pub use crate::policy::{
    KeyPolicy, DEFAULT_FETCH_BUCKET, DEFAULT_FETCH_REFILL, DEFAULT_LOW_THRESHOLD, DEFAULT_ROTATION_AGE,
};

/// Why a key operation was refused. Mapped to HTTP statuses (422, 404, 429, 503) and wire error
/// codes at the edges.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A signature does not verify under the device's identity key, or it has none.
    #[error("{0}")]
    InvalidSignature(String),
    /// A key does not parse.
    #[error("{0}")]
    InvalidKey(String),
    /// A key id is out of range or repeated.
    #[error("{0}")]
    InvalidKeyId(String),
    /// A list is longer than [`MAX_KEYS_PER_UPLOAD`].
    #[error("{0}")]
    TooManyKeys(String),
    /// No such user or device, or no keys to hand out.
    #[error("no such user or device, or no keys")]
    NotFound,
    /// A device registering keys (none stored yet, or all replaced) sent no Kyber last-resort
    /// key: libsignal 0.103 cannot start a session without one.
    #[error(
        "a signed Kyber last-resort key (kyber_last_resort) is required when a device registers its keys"
    )]
    MissingKyberLastResort,
    /// The fetch bucket is empty; retry after this long.
    #[error("pre-key fetch rate limit; retry after {} s", retry_secs(*.0))]
    RateLimited(Duration),
    /// The store failed; nothing was changed (a fetch may have consumed keys it did not hand out).
    #[error("store unavailable")]
    Store(#[from] StoreError),
}

/// Whole seconds to wait, rounded up (at least 1).
pub fn retry_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl KeysError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            KeysError::InvalidSignature(_) => ErrorCode::InvalidSignature,
            KeysError::InvalidKey(_) => ErrorCode::InvalidKey,
            KeysError::InvalidKeyId(_) => ErrorCode::InvalidKeyId,
            KeysError::TooManyKeys(_) => ErrorCode::TooManyKeys,
            KeysError::NotFound => ErrorCode::NotFound,
            KeysError::MissingKyberLastResort => ErrorCode::MissingKyberLastResort,
            KeysError::RateLimited(_) => ErrorCode::PrekeyRateLimited,
            KeysError::Store(_) => ErrorCode::Unavailable,
        }
    }

    /// The `Error` frame answering request `id`.
    pub fn frame(&self, id: MessageId) -> ServerFrame {
        if let KeysError::Store(e) = self {
            hush_store::failure::log_failure(e, "key request failed");
        }
        let retry_after_s = match self {
            KeysError::RateLimited(d) => Some(retry_secs(*d)),
            _ => None,
        };
        ServerFrame::Error { id: Some(id), code: self.code(), message: self.to_string(), retry_after_s }
    }

    fn key(what: &str, e: KeyError) -> Self {
        match e {
            KeyError::InvalidKey => KeysError::InvalidKey(format!("{what}: invalid key")),
            KeyError::InvalidSignature => KeysError::InvalidSignature(format!("{what}: invalid signature")),
            KeyError::InvalidKeyId => KeysError::InvalidKeyId(format!("{what}: key id outside 0..=2^31-1")),
        }
    }
}

/// A stored public key (signature empty for EC one-time keys).
#[derive(Serialize, Deserialize)]
struct StoredKey {
    key_id: u32,
    public_key: Vec<u8>,
    signature: Vec<u8>,
    uploaded_ms: u64,
}

impl StoredKey {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        postcard::to_allocvec(self).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
    fn decode(e: &KvEntry) -> Result<Self, StoreError> {
        postcard::from_bytes(&e.value).map_err(|e| StoreError::Corrupt(format!("stored pre-key: {e}")))
    }
    fn signed(&self) -> SignedPreKey {
        SignedPreKey {
            key_id: i64::from(self.key_id),
            public_key: Payload(self.public_key.clone()),
            signature: Payload(self.signature.clone()),
        }
    }
    fn one_time(&self) -> PreKey {
        PreKey { key_id: i64::from(self.key_id), public_key: Payload(self.public_key.clone()) }
    }
}

fn id_key(a: &DeviceAddress) -> String {
    format!("id/{}/{}/{:010}", a.tenant, a.user, a.device.get())
}
fn dev_prefix(a: &DeviceAddress) -> String {
    format!("k/{}/{}/{:010}/", a.tenant, a.user, a.device.get())
}
fn ec_prefix(a: &DeviceAddress) -> String {
    format!("{}ec/", dev_prefix(a))
}
fn ky_prefix(a: &DeviceAddress) -> String {
    format!("{}ky/", dev_prefix(a))
}
fn one_time_key(prefix: &str, id: u32) -> String {
    format!("{prefix}{id:010}")
}

/// Checks an identity key given at login: exactly 33 bytes, type `0x05`.
pub fn check_identity_key(bytes: &[u8]) -> Result<Vec<u8>, KeysError> {
    if bytes.len() != EC_PUBLIC_KEY_BYTES {
        return Err(KeysError::InvalidKey(format!("an identity key is {EC_PUBLIC_KEY_BYTES} bytes")));
    }
    let k = PublicKey::deserialize(bytes).map_err(|e| KeysError::key("identity key", e))?;
    Ok(k.serialize().to_vec())
}

/// The identity key of a device, if it registered one.
pub async fn identity_of(hub: &Hub, addr: &DeviceAddress) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(hub.store.kv_get(NS, &id_key(addr)).await?.map(|e| e.value))
}

/// The identity keys of a user's devices (one scan), for device listings.
pub async fn identities(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
) -> Result<HashMap<DeviceId, Vec<u8>>, StoreError> {
    let prefix = format!("id/{tenant}/{user}/");
    let entries = hub.store.kv_scan(NS, &prefix, None, hush_store::MAX_KV_SCAN).await?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let id: u32 = e.key.rsplit('/').next()?.parse().ok()?;
            Some((DeviceId::new(id).ok()?, e.value))
        })
        .collect())
}

/// Records a device's identity key. With `reset` (a new device, or a new identity for an
/// existing one) every pre-key stored for the device is deleted first, so nothing signed by
/// another identity is ever handed out for it.
pub async fn set_identity(
    hub: &Hub,
    addr: &DeviceAddress,
    key: Vec<u8>,
    reset: bool,
) -> Result<(), StoreError> {
    if reset {
        // The identity goes first: without it the device's old keys are never served.
        hub.store.kv_delete(NS, &id_key(addr), None).await?;
        wipe(hub, addr).await?;
    }
    hub.store.kv_set(NS, &id_key(addr), key).await?;
    Ok(())
}

/// Forgets a device's identity and keys (device removed, or a new device without an identity
/// key taking a free device id).
pub async fn forget_device(hub: &Hub, addr: &DeviceAddress) -> Result<(), StoreError> {
    hub.store.kv_delete(NS, &id_key(addr), None).await?;
    wipe(hub, addr).await
}

/// Deletes a device's keys and their state records.
async fn wipe(hub: &Hub, addr: &DeviceAddress) -> Result<(), StoreError> {
    hub.store.kv_replace_prefix(NS, &dev_prefix(addr), Vec::new()).await?;
    hub.store.kv_replace_prefix(NS, &state::region(addr), Vec::new()).await
}

struct Checked {
    spk: Option<StoredKey>,
    ec: Vec<StoredKey>,
    ky: Vec<StoredKey>,
    lrk: Option<StoredKey>,
}

fn check_upload(identity: &[u8], req: &UploadKeysRequest, now: u64) -> Result<Checked, KeysError> {
    for (n, what) in [(req.pre_keys.len(), "pre_keys"), (req.kyber_pre_keys.len(), "kyber_pre_keys")] {
        if n > MAX_KEYS_PER_UPLOAD {
            return Err(KeysError::TooManyKeys(format!("{what}: {n} keys, at most {MAX_KEYS_PER_UPLOAD}")));
        }
    }
    let signed_ec = |k: &SignedPreKey, what: &str| {
        e2e::verify_signed_ec_prekey(identity, k.key_id, &k.public_key.0, &k.signature.0)
            .map(|v| StoredKey {
                key_id: v.key_id.get(),
                public_key: v.public_key.serialize().to_vec(),
                signature: v.signature,
                uploaded_ms: now,
            })
            .map_err(|e| KeysError::key(what, e))
    };
    let kyber = |k: &SignedPreKey, what: &str| {
        e2e::verify_kyber_prekey(identity, k.key_id, &k.public_key.0, &k.signature.0)
            .map(|v| StoredKey {
                key_id: v.key_id.get(),
                public_key: v.public_key.serialize().to_vec(),
                signature: v.signature,
                uploaded_ms: now,
            })
            .map_err(|e| KeysError::key(what, e))
    };
    let spk = req.signed_pre_key.as_ref().map(|k| signed_ec(k, "signed_pre_key")).transpose()?;
    let lrk = req.kyber_last_resort.as_ref().map(|k| kyber(k, "kyber_last_resort")).transpose()?;
    let mut ec = Vec::with_capacity(req.pre_keys.len());
    for (i, k) in req.pre_keys.iter().enumerate() {
        let v = e2e::parse_one_time_prekey(k.key_id, &k.public_key.0)
            .map_err(|e| KeysError::key(&format!("pre_keys[{i}]"), e))?;
        ec.push(StoredKey {
            key_id: v.key_id.get(),
            public_key: v.public_key.serialize().to_vec(),
            signature: Vec::new(),
            uploaded_ms: now,
        });
    }
    let mut ky = Vec::with_capacity(req.kyber_pre_keys.len());
    for (i, k) in req.kyber_pre_keys.iter().enumerate() {
        ky.push(kyber(k, &format!("kyber_pre_keys[{i}]"))?);
    }
    for (list, what) in [(&ec, "pre_keys"), (&ky, "kyber_pre_keys")] {
        let mut seen = HashSet::with_capacity(list.len());
        if let Some(k) = list.iter().find(|k| !seen.insert(k.key_id)) {
            return Err(KeysError::InvalidKeyId(format!("{what}: key id {} appears twice", k.key_id)));
        }
    }
    Ok(Checked { spk, ec, ky, lrk })
}

/// Checks the keys a login carries against the identity key it carries (nothing stored).
pub fn check_keys(identity: &[u8], req: &UploadKeysRequest) -> Result<(), KeysError> {
    check_upload(identity, req, now_ms()).map(|_| ())
}

/// Stores an upload of device `addr` after checking every key against its identity key;
/// a refused upload stores nothing. Returns the counts after it, and asks the device to rotate
/// if an old signed key is still in place.
pub async fn upload(
    hub: &Hub,
    addr: &DeviceAddress,
    req: &UploadKeysRequest,
) -> Result<KeyCounts, KeysError> {
    let identity = identity_of(hub, addr).await?.ok_or_else(|| {
        KeysError::InvalidSignature("this device has no identity key: log in with one first".into())
    })?;
    let now = now_ms();
    let checked = check_upload(&identity, req, now)?;
    if checked.lrk.is_none() && !has_last_resort(hub, addr).await? {
        return Err(KeysError::MissingKyberLastResort);
    }
    let prefix = dev_prefix(addr);
    if let Some(k) = &checked.spk {
        hub.store.kv_set(NS, &format!("{prefix}spk"), k.encode()?).await?;
    }
    if let Some(k) = &checked.lrk {
        hub.store.kv_set(NS, &format!("{prefix}lrk"), k.encode()?).await?;
    }
    for (list, p) in [(&checked.ec, ec_prefix(addr)), (&checked.ky, ky_prefix(addr))] {
        if !list.is_empty() {
            let entries = list
                .iter()
                .map(|k| Ok((one_time_key(&p, k.key_id), k.encode()?)))
                .collect::<Result<_, StoreError>>()?;
            hub.store.kv_replace_prefix(NS, &p, entries).await?;
        }
    }
    hub.store.kv_delete_many(NS, vec![format!("{prefix}low"), state::low_key(addr)]).await?;
    let counts = counts(hub, addr).await?;
    tracing::debug!(device = %addr, ec = counts.ec, kyber = counts.kyber, "pre-keys uploaded");
    let ages = Ages::of(&meta(hub, addr).await?);
    state::set_ages(hub, addr, ages).await?;
    if let Some(ask) = rotation_ask(hub, ages, now) {
        crate::delivery::push(hub, addr, ask).await;
    }
    Ok(counts)
}

/// The one-time keys a device has left.
pub async fn counts(hub: &Hub, addr: &DeviceAddress) -> Result<KeyCounts, StoreError> {
    let (ecp, kyp) = (ec_prefix(addr), ky_prefix(addr));
    let (ec, ky) = tokio::join!(hub.store.kv_count(NS, &ecp), hub.store.kv_count(NS, &kyp));
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(KeyCounts { ec: clamp(ec?), kyber: clamp(ky?) })
}

/// The small per-device records among the keys: signed pre-key, last-resort key, and whether
/// a `PreKeysLow` is owed as stores before the [`state`] region recorded it.
#[derive(Default)]
struct Meta {
    spk: Option<StoredKey>,
    lrk: Option<StoredKey>,
    low: bool,
}

/// Whether the device has a signed pre-key: without one no sender can start a session with it,
/// so it is not listed to senders.
pub async fn has_keys(hub: &Hub, addr: &DeviceAddress) -> Result<bool, StoreError> {
    // One point read, nothing decoded: the record's presence is the answer.
    Ok(hub.store.kv_get(NS, &format!("{}spk", dev_prefix(addr))).await?.is_some())
}

/// Whether the device has a Kyber last-resort key stored (one point read).
pub async fn has_last_resort(hub: &Hub, addr: &DeviceAddress) -> Result<bool, StoreError> {
    Ok(hub.store.kv_get(NS, &format!("{}lrk", dev_prefix(addr))).await?.is_some())
}

async fn meta(hub: &Hub, addr: &DeviceAddress) -> Result<Meta, StoreError> {
    let prefix = dev_prefix(addr);
    // `~` is the last printable character: this starts right after every `ky/` entry.
    let after = format!("{prefix}ky/~");
    let mut m = Meta::default();
    for e in hub.store.kv_scan(NS, &prefix, Some(&after), 3).await? {
        match &e.key[prefix.len()..] {
            "spk" => m.spk = Some(StoredKey::decode(&e)?),
            "lrk" => m.lrk = Some(StoredKey::decode(&e)?),
            "low" => m.low = true,
            _ => {}
        }
    }
    Ok(m)
}

fn rotation_ask(hub: &Hub, ages: Ages, now: u64) -> Option<ServerFrame> {
    let age = hub.keys.rotation_age.as_millis() as u64;
    let old = |ms: Option<u64>| ms.is_some_and(|ms| now.saturating_sub(ms) >= age);
    let (signed_pre_key, last_resort) = (old(ages.spk_ms), old(ages.lrk_ms));
    (signed_pre_key || last_resort).then_some(ServerFrame::RotateKeys { signed_pre_key, last_resort })
}

/// What a device hears when it connects: `RotateKeys` if a signed key is too old, and
/// `PreKeysLow` if one is owed. Nothing for a device that never uploaded keys.
/// Read from the device's [`state`] records (one small scan), or from its key records the first
/// time a device whose keys predate them connects.
pub async fn connect_notices(hub: &Hub, addr: &DeviceAddress) -> Result<Vec<ServerFrame>, StoreError> {
    let (ages, low) = match state::read(hub, addr).await? {
        (Some(ages), low) => (ages, low),
        (None, low) => {
            let m = meta(hub, addr).await?;
            let ages = Ages::of(&m);
            state::copy_in(hub, addr, ages, m.low).await?;
            (ages, low || m.low)
        }
    };
    let mut out = Vec::new();
    if let Some(ask) = rotation_ask(hub, ages, now_ms()) {
        out.push(ask);
    }
    if low {
        let c = counts(hub, addr).await?;
        out.push(ServerFrame::PreKeysLow { ec: c.ec, kyber: c.kyber });
    }
    Ok(out)
}

/// Fetches the keys of one device of `user` (or of all its devices), consuming one EC and one
/// Kyber one-time key per device, each rate limited per (`requester`, target device).
pub async fn fetch(
    hub: &Hub,
    requester: &DeviceAddress,
    user: &UserId,
    device: Option<DeviceId>,
) -> Result<PreKeyResponse, KeysError> {
    let set = hub.directory.get(&requester.tenant, user).await?;
    let targets: Vec<_> = match device {
        Some(d) => vec![set.get(d).ok_or(KeysError::NotFound)?.clone()],
        None => set.devices.clone(),
    };
    if targets.is_empty() {
        return Err(KeysError::NotFound);
    }
    let policy = &hub.keys;
    for t in &targets {
        let key = format!("pk:{requester}>{user}/{}", t.id);
        if let Some(wait) = hub.bus.take_token(&key, policy.fetch_bucket, policy.fetch_refill).await {
            Metrics::add(&hub.metrics.prekey_fetches_limited, 1);
            return Err(KeysError::RateLimited(wait));
        }
    }
    let mut devices = Vec::with_capacity(targets.len());
    for t in targets {
        let addr = DeviceAddress::new(requester.tenant.clone(), user.clone(), t.id);
        if let Some(keys) = fetch_device(hub, &addr, t.registration_id).await? {
            devices.push(keys);
        }
    }
    if devices.is_empty() {
        return Err(KeysError::NotFound);
    }
    Metrics::add(&hub.metrics.prekey_bundles_served, devices.len() as u64);
    Ok(PreKeyResponse { user: user.clone(), devices })
}

async fn fetch_device(
    hub: &Hub,
    addr: &DeviceAddress,
    registration_id: RegistrationId,
) -> Result<Option<DevicePreKeys>, StoreError> {
    let (m, identity) = tokio::join!(meta(hub, addr), identity_of(hub, addr));
    let (m, identity) = (m?, identity?);
    let (Some(spk), Some(identity)) = (m.spk, identity) else {
        return Ok(None);
    };
    let (ecp, kyp) = (ec_prefix(addr), ky_prefix(addr));
    let (ec, ky) = tokio::join!(hub.store.kv_take_first(NS, &ecp), hub.store.kv_take_first(NS, &kyp));
    let pre_key = ec?.map(|e| StoredKey::decode(&e)).transpose()?;
    let kyber_one_time = ky?.map(|e| StoredKey::decode(&e)).transpose()?;
    let consumed = pre_key.is_some() || kyber_one_time.is_some();
    let kyber = kyber_one_time.as_ref().or(m.lrk.as_ref()).map(StoredKey::signed);
    if consumed {
        check_low(hub, addr, m.low).await?;
    }
    Ok(Some(DevicePreKeys {
        device_id: addr.device,
        registration_id,
        identity_key: Payload(identity),
        signed_pre_key: spk.signed(),
        pre_key: pre_key.as_ref().map(StoredKey::one_time),
        kyber_pre_key: kyber,
    }))
}

/// After a fetch consumed keys: if a kind is below the threshold and no notice is owed yet,
/// record one (so a device offline now hears it when it connects) and push it live. The
/// create-if-absent write makes the live push happen once per low period across the cluster.
/// `owed_before`: a notice is owed as a store before the [`state`] region recorded it.
async fn check_low(hub: &Hub, addr: &DeviceAddress, owed_before: bool) -> Result<(), StoreError> {
    if owed_before || hub.store.kv_get(NS, &state::low_key(addr)).await?.is_some() {
        return Ok(());
    }
    let c = counts(hub, addr).await?;
    let t = hub.keys.low_threshold;
    if c.ec >= t && c.kyber >= t {
        return Ok(());
    }
    match hub.store.kv_put(NS, &state::low_key(addr), 0, Vec::new()).await {
        Ok(_) => {
            crate::delivery::push(hub, addr, ServerFrame::PreKeysLow { ec: c.ec, kyber: c.kyber }).await;
            Ok(())
        }
        Err(StoreError::VersionConflict) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn hexs(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn vectors() -> serde_json::Value {
        // The copy of shared/vectors/libsignal kept in the repository.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/tests/vectors/libsignal/prekeys.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("prekeys.json")).unwrap()
    }

    fn signed(v: &serde_json::Value) -> SignedPreKey {
        SignedPreKey {
            key_id: v["key_id"].as_i64().unwrap(),
            public_key: Payload(hexs(v["public_key"].as_str().unwrap())),
            signature: Payload(hexs(v["signature"].as_str().unwrap())),
        }
    }

    fn upload_of(d: &serde_json::Value) -> UploadKeysRequest {
        UploadKeysRequest {
            signed_pre_key: Some(signed(&d["signed_pre_key"])),
            pre_keys: d["one_time_pre_keys"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|k| PreKey {
                            key_id: k["key_id"].as_i64().unwrap(),
                            public_key: Payload(hexs(k["public_key"].as_str().unwrap())),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            kyber_pre_keys: vec![signed(&d["kyber_pre_key"])],
            kyber_last_resort: Some(signed(&d["last_resort_kyber"])),
        }
    }

    #[test]
    fn libsignal_uploads_are_checked_like_libsignal() {
        let v = vectors();
        for d in v["devices"].as_array().unwrap() {
            let id = hexs(d["identity_key"]["public_key"].as_str().unwrap());
            let c = check_upload(&id, &upload_of(d), 5).unwrap();
            assert_eq!(c.ec.len(), 5);
            assert_eq!(c.spk.unwrap().public_key, hexs(d["signed_pre_key"]["public_key"].as_str().unwrap()));
        }
        for b in v["bad_uploads"].as_array().unwrap() {
            let id = hexs(b["identity_key"].as_str().unwrap());
            let err =
                check_upload(&id, &upload_of(b), 5).err().unwrap_or_else(|| panic!("{} accepted", b["id"]));
            let want = match b["expect"].as_str().unwrap() {
                "reject_invalid_signature" => ErrorCode::InvalidSignature,
                "reject_invalid_key" => ErrorCode::InvalidKey,
                "reject_invalid_key_id" => ErrorCode::InvalidKeyId,
                other => panic!("{other}"),
            };
            assert_eq!(err.code(), want, "{}: {err}", b["id"]);
        }
    }

    #[test]
    fn lists_are_bounded_and_ids_unique() {
        let v = vectors();
        let d = &v["devices"][0];
        let id = hexs(d["identity_key"]["public_key"].as_str().unwrap());
        let mut req = upload_of(d);
        let k = req.pre_keys[0].clone();
        req.pre_keys = (0..=MAX_KEYS_PER_UPLOAD as i64).map(|i| PreKey { key_id: i, ..k.clone() }).collect();
        assert_eq!(check_upload(&id, &req, 0).err().unwrap().code(), ErrorCode::TooManyKeys);
        req.pre_keys.truncate(MAX_KEYS_PER_UPLOAD);
        assert!(check_upload(&id, &req, 0).is_ok());
        req.pre_keys[1].key_id = 0;
        assert_eq!(check_upload(&id, &req, 0).err().unwrap().code(), ErrorCode::InvalidKeyId);
        assert!(check_identity_key(&id).is_ok());
        assert!(check_identity_key(&id[..32]).is_err());
        let mut long = id.clone();
        long.push(0);
        assert!(check_identity_key(&long).is_err());
    }
}
