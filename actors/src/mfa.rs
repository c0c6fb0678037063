//! Multi-factor authentication: TOTP enrolment, the login challenge, backup codes, trusted
//! devices, tenant policies with grace periods and exemptions, and step-up for sensitive actions.
//!
//! Everything lives in the store's generic key-value records (postcard values), so every node
//! of a cluster sees the same state and every decision is a compare-and-set:
//!
//! | namespace | key | record |
//! |---|---|---|
//! | `mfa_policy` | `<tenant>` | [`StoredPolicy`]: the tenant's policy |
//! | `mfa_user` | `<tenant>/<user>` | [`UserMfa`]: factors, backup codes, last TOTP step, failures |
//! | `mfa_session` | `<session id>` | [`SessionMfaRec`]: the session's state and open challenge |
//! | `mfa_trust` | `<tenant>/<user>/<device, 3 digits>` | [`TrustRec`]: a remembered device |
//!
//! A TOTP code is accepted once per user across the cluster: the user record keeps the last
//! accepted time step, and a code is accepted only by the compare-and-set that raises it.
//! Failures are counted in the same record (5 per 15 minutes, then a lock that doubles with each
//! lockout; 100 consecutive failures lock the factor for good). TOTP secrets are sealed with
//! AES-256-GCM under the node's MFA key (bound to tenant and user as associated data); backup
//! codes and trust tokens are stored only hashed. No secret or code reaches a log or an audit
//! record.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm as ArgonAlg, Argon2, Params, Version};
use futures_util::future::join_all;
use hush_protocol::api::{
    BackupCodes, DeviceRequest, MfaChallenge, MfaLevel, MfaMethod, MfaPolicy, MfaState, MfaStatus,
    MfaVerified, Role, Secret, SessionMfa, TrustedDevice, UserMfaStatus,
};
use hush_protocol::ids::{DeviceId, TenantId, UserId};
use hush_protocol::otp::{self, Algorithm, OtpSecret, TOTP_SECRET_BYTES};
use hush_protocol::wire::{SessionEvent, CLOSE_UNAUTHORIZED};
use hush_store::{SessionRecord, StoreError, UserRecord};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::accounts::{self, AccountError, Authed};
use crate::hub::Hub;
use crate::limits::{
    BACKUP_CODES, MFA_CAS_RETRIES, MFA_CHALLENGE_TTL_MS, MFA_FAILURES_PER_WINDOW, MFA_FAILURE_WINDOW_MS,
    MFA_MAX_CONSECUTIVE_FAILURES, MFA_MAX_LOCK_MS, MFA_MAX_TRUSTED_LISTED, MFA_REFRESH_PAGE,
};
use crate::now_ms;
use crate::sessions::{self, Initiator};

/// Namespace of tenant policies.
pub const NS_POLICY: &str = "mfa_policy";
/// Namespace of per-user MFA records.
pub const NS_USER: &str = "mfa_user";
/// Namespace of per-session MFA state.
pub const NS_SESSION: &str = "mfa_session";
/// Namespace of trusted devices.
pub const NS_TRUST: &str = "mfa_trust";

/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Hush";

/// Why an MFA operation failed. Mapped to HTTP statuses at the node's edge.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The session must pass its MFA challenge first.
    #[error("MFA verification required: use the /v1/mfa routes")]
    Required,
    /// The grace period is over: the user must enrol before anything else.
    #[error("MFA enrolment required: the grace period is over")]
    EnrollRequired,
    /// The action needs a recent MFA verification.
    #[error("this action needs a recent MFA verification (POST /v1/mfa/challenge, then /v1/mfa/verify)")]
    StepUpRequired,
    /// The action needs a step-up and the user has no second factor to step up with.
    #[error(
        "this action needs a second factor: enrol TOTP first (POST /v1/mfa/totp/enroll, then /v1/mfa/totp/confirm), then step up"
    )]
    StepUpEnrollRequired,
    /// Wrong, expired or already used code.
    #[error("invalid code")]
    InvalidCode,
    /// The challenge id is not this session's open challenge, or it expired.
    #[error("unknown or expired challenge")]
    InvalidChallenge,
    /// Too many failures: the factor is locked until then (ms since the Unix epoch).
    #[error("too many failed attempts: locked")]
    Locked {
        /// End of the lock (`u64::MAX`: until an administrator resets the factor).
        until_ms: u64,
    },
    /// The user has no (confirmed, or pending for `confirm`) TOTP factor.
    #[error("no TOTP factor enrolled")]
    NotEnrolled,
    /// TOTP is already on; disable it first.
    #[error("TOTP is already enabled")]
    AlreadyEnrolled,
    /// The node has no MFA key (configuration error).
    #[error("MFA key not configured")]
    NoKey,
    /// An account or store error.
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<StoreError> for MfaError {
    fn from(e: StoreError) -> Self {
        MfaError::Account(AccountError::Store(e))
    }
}

type Result<T, E = MfaError> = std::result::Result<T, E>;

/// The AES-256-GCM key sealing TOTP secrets at rest. Its `Debug` prints no key bytes.
pub struct SealKey(ring::aead::LessSafeKey);

impl SealKey {
    /// A key from 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Result<Self> {
        let k = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, bytes)
            .map_err(|_| MfaError::Account(AccountError::Internal))?;
        Ok(Self(ring::aead::LessSafeKey::new(k)))
    }

    /// Seals `plain`: a random 96-bit nonce, then ciphertext and tag.
    fn seal(&self, plain: &[u8], aad: &str) -> Result<Vec<u8>> {
        let nonce = random_bytes::<12>();
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| MfaError::Account(AccountError::Internal))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(out)
    }

    fn open(&self, sealed: &[u8], aad: &str) -> Result<OtpSecret> {
        if sealed.len() < 12 {
            return Err(StoreError::Corrupt("sealed TOTP secret too short".into()).into());
        }
        let (nonce, ct) = sealed.split_at(12);
        let mut nonce_bytes = [0u8; 12];
        nonce_bytes.copy_from_slice(nonce);
        let mut buf = ct.to_vec();
        let plain = self
            .0
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce_bytes),
                ring::aead::Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| StoreError::Corrupt("TOTP secret does not open with this node's MFA key".into()))?;
        let secret = OtpSecret::new(plain.to_vec());
        zeroize::Zeroize::zeroize(&mut buf);
        Ok(secret)
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// A tenant's policy as stored, with when MFA last became required (a user's grace counts only
/// from a login after that).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// The policy as administrators see it.
    pub policy: MfaPolicy,
    /// When the level last changed from not requiring MFA to requiring it, ms.
    pub required_since_ms: u64,
}

/// The policy of a tenant that never set one (written for every tenant by [`migrate`]).
pub fn default_policy() -> MfaPolicy {
    MfaPolicy {
        level: MfaLevel::Optional,
        grace_period_secs: 48 * 3600,
        exempt_users: Vec::new(),
        exempt_roles: Vec::new(),
        totp_algorithm: Algorithm::Sha1,
        totp_digits: 6,
        trusted_device_days: 30,
        trusted_device_secs: None,
        step_up_window_secs: 600,
    }
}

/// A TOTP factor: its secret sealed under the node's MFA key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpFactor {
    /// Nonce, ciphertext and tag of the secret.
    pub sealed: Vec<u8>,
    /// HMAC.
    pub algorithm: Algorithm,
    /// Code length.
    pub digits: u32,
    /// Enrolment time, ms.
    pub created_ms: u64,
}

/// One backup code: an Argon2id PHC string (salted), and when it was used.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCode {
    /// Argon2id hash of the normalized code.
    pub hash: String,
    /// Set once used.
    pub used_ms: Option<u64>,
}

/// Everything MFA about one user.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMfa {
    /// The confirmed TOTP factor.
    pub totp: Option<TotpFactor>,
    /// An enrolment waiting for its first code.
    pub pending_totp: Option<TotpFactor>,
    /// Backup codes of the current set.
    pub backup: Vec<BackupCode>,
    /// An administrator enforced MFA on this user (ms), whatever the tenant level.
    pub enforced_ms: Option<u64>,
    /// When this user's grace period started (first login after enforcement).
    pub grace_started_ms: Option<u64>,
    /// The last TOTP time step accepted: a code of this step or an earlier one is refused.
    pub last_step: u64,
    /// Start of the current failure window, ms.
    pub fail_window_start_ms: u64,
    /// Failures in the current window.
    pub fail_window_count: u32,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Locks since the last success (each doubles the next lock).
    pub lockouts: u32,
    /// Locked until, ms.
    pub locked_until_ms: u64,
}

impl UserMfa {
    fn backup_left(&self) -> u32 {
        self.backup.iter().filter(|c| c.used_ms.is_none()).count() as u32
    }
    fn locked(&self, now: u64) -> Option<u64> {
        (self.locked_until_ms > now).then_some(self.locked_until_ms)
    }
    fn reset_failures(&mut self) {
        self.fail_window_count = 0;
        self.consecutive_failures = 0;
        self.lockouts = 0;
    }
    /// Counts one failure; returns (failures in the window, lock end if now locked).
    fn fail(&mut self, now: u64) -> (u32, Option<u64>) {
        if now >= self.fail_window_start_ms.saturating_add(MFA_FAILURE_WINDOW_MS) {
            self.fail_window_start_ms = now;
            self.fail_window_count = 0;
        }
        self.fail_window_count += 1;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let attempts = self.fail_window_count;
        if self.consecutive_failures >= MFA_MAX_CONSECUTIVE_FAILURES {
            // NIST SP 800-63B: no more than 100 consecutive failures, ever.
            self.locked_until_ms = u64::MAX;
        } else if self.fail_window_count >= MFA_FAILURES_PER_WINDOW {
            self.lockouts += 1;
            let factor = 1u64 << (self.lockouts - 1).min(16);
            let d = MFA_FAILURE_WINDOW_MS.saturating_mul(factor).min(MFA_MAX_LOCK_MS);
            self.locked_until_ms = now + d;
            self.fail_window_count = 0;
            self.fail_window_start_ms = now + d;
        }
        (attempts, self.locked(now))
    }
    fn failures_now(&self, now: u64) -> u32 {
        if now < self.fail_window_start_ms.saturating_add(MFA_FAILURE_WINDOW_MS) {
            self.fail_window_count
        } else {
            0
        }
    }
}

/// An open challenge of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRec {
    /// Random 128-bit id, hex.
    pub id: String,
    /// Expiry, ms.
    pub expires_ms: u64,
}

/// A session's MFA state (absent: [`MfaState::None`], as for sessions older than MFA).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMfaRec {
    /// The state (`EnrollRequired` is never stored: it is `None` past `enroll_deadline_ms`).
    pub state: MfaState,
    /// The tenant's level when decided.
    pub level: MfaLevel,
    /// How the factor was proved.
    pub method: Option<MfaMethod>,
    /// When.
    pub verified_at_ms: Option<u64>,
    /// The open challenge.
    pub challenge: Option<ChallengeRec>,
    /// Enrolment deadline of a user in the grace period.
    pub enroll_deadline_ms: Option<u64>,
    /// The device registration a pending login asked for, applied once the session verifies
    /// (a password alone changes no device).
    pub pending_device: Option<DeviceRequest>,
}

impl SessionMfaRec {
    /// What the session may not do now, if anything.
    pub fn block(&self, now: u64) -> Option<MfaError> {
        match self.state {
            MfaState::MfaPending => Some(MfaError::Required),
            MfaState::None if self.enroll_deadline_ms.is_some_and(|d| now >= d) => {
                Some(MfaError::EnrollRequired)
            }
            _ => None,
        }
    }

    /// The client view.
    pub fn view(&self, now: u64) -> SessionMfa {
        let state = match self.block(now) {
            Some(MfaError::EnrollRequired) => MfaState::EnrollRequired,
            _ => self.state,
        };
        SessionMfa {
            state,
            level: self.level,
            method: self.method,
            verified_at_ms: self.verified_at_ms,
            challenge: self.challenge.as_ref().map(|c| MfaChallenge {
                challenge_id: c.id.clone(),
                expires_ms: c.expires_ms,
                methods: vec![MfaMethod::Totp, MfaMethod::Backup],
            }),
            enroll_deadline_ms: self.enroll_deadline_ms,
        }
    }
}

/// A trusted device: the SHA-256 of its token and the trust's end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRec {
    /// SHA-256 of the trust token (256 random bits, so a fast hash suffices).
    pub token_hash: [u8; 32],
    /// When trusted, ms.
    pub created_ms: u64,
    /// Trusted until, ms.
    pub expires_ms: u64,
}

fn user_key(tenant: &TenantId, user: &UserId) -> String {
    format!("{tenant}/{user}")
}

fn trust_prefix(tenant: &TenantId, user: &UserId) -> String {
    format!("{tenant}/{user}/")
}

fn trust_key(tenant: &TenantId, user: &UserId, device: DeviceId) -> String {
    format!("{tenant}/{user}/{:03}", device.get())
}

fn aad(tenant: &TenantId, user: &UserId) -> String {
    format!("hush-totp-v1/{tenant}/{user}")
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| StoreError::Corrupt(e.to_string()).into())
}

async fn read<T: DeserializeOwned>(hub: &Hub, ns: &str, key: &str) -> Result<Option<(u64, T)>> {
    match hub.store.kv_get(ns, key).await? {
        None => Ok(None),
        Some(e) => {
            let v = postcard::from_bytes(&e.value).map_err(|e| StoreError::Corrupt(format!("{ns}: {e}")))?;
            Ok(Some((e.version, v)))
        }
    }
}

/// The tenant's policy (the default if none is stored).
pub async fn stored_policy(hub: &Hub, tenant: &TenantId) -> Result<StoredPolicy> {
    Ok(read::<StoredPolicy>(hub, NS_POLICY, tenant.as_str())
        .await?
        .map(|(_, p)| p)
        .unwrap_or(StoredPolicy { policy: default_policy(), required_since_ms: 0 }))
}

/// Writes the default policy for every tenant that has none (run at every start: a create-only
/// write, so concurrent nodes and restarts are harmless). Returns how many were written.
pub async fn migrate(hub: &Hub) -> Result<usize> {
    let mut written = 0;
    for t in hub.store.list_tenants(crate::limits::MAX_TENANTS_MIGRATED).await? {
        if write_default_policy(hub, &t.name).await? {
            written += 1;
        }
    }
    Ok(written)
}

/// Writes the default policy of a new tenant unless it has one; true if written.
pub async fn write_default_policy(hub: &Hub, tenant: &TenantId) -> Result<bool> {
    let rec = StoredPolicy { policy: default_policy(), required_since_ms: 0 };
    match hub.store.kv_put(NS_POLICY, tenant.as_str(), 0, encode(&rec)?).await {
        Ok(_) => Ok(true),
        Err(StoreError::VersionConflict) | Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn user_rec(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<(u64, UserMfa)> {
    Ok(read::<UserMfa>(hub, NS_USER, &user_key(tenant, user)).await?.unwrap_or_default())
}

/// Reads, changes and writes a user's record with compare-and-set, retrying on conflicts.
/// `f` may run several times; it must decide only from the record it is given.
async fn update_user<R>(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    mut f: impl FnMut(&mut UserMfa) -> Result<R>,
) -> Result<R> {
    let key = user_key(tenant, user);
    for _ in 0..MFA_CAS_RETRIES {
        let (version, mut rec) = user_rec(hub, tenant, user).await?;
        let before = rec.clone();
        let r = f(&mut rec)?;
        if rec == before {
            return Ok(r);
        }
        match hub.store.kv_put(NS_USER, &key, version, encode(&rec)?).await {
            Ok(_) => return Ok(r),
            Err(StoreError::VersionConflict) | Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(MfaError::Account(AccountError::Busy))
}

/// The MFA state of a session (the default for sessions without a record).
pub async fn session_rec(hub: &Hub, session_id: &str) -> Result<SessionMfaRec, StoreError> {
    match hub.store.kv_get(NS_SESSION, session_id).await? {
        None => Ok(SessionMfaRec::default()),
        Some(e) => {
            postcard::from_bytes(&e.value).map_err(|e| StoreError::Corrupt(format!("{NS_SESSION}: {e}")))
        }
    }
}

/// Deletes the MFA state of a revoked session (a failure only leaves a small dead record).
pub async fn forget(hub: &Hub, session_id: &str) {
    if let Err(e) = hub.store.kv_delete(NS_SESSION, session_id, None).await {
        tracing::warn!(error = %e, session = %session_id, "MFA state of a revoked session not deleted");
    }
}

async fn put_session(hub: &Hub, session_id: &str, rec: &SessionMfaRec) -> Result<()> {
    hub.store.kv_set(NS_SESSION, session_id, encode(rec)?).await?;
    Ok(())
}

/// What the policy asks of one user.
#[derive(Clone, Copy, Debug)]
struct Needs {
    exempt: bool,
    required: bool,
    enrolled: bool,
    /// Logins must pass a challenge (the user has TOTP and MFA applies to them).
    challenge: bool,
    /// When the requirement started for this user (policy or enforcement), ms.
    required_since_ms: u64,
}

fn needs(p: &StoredPolicy, user: &UserId, admin: bool, rec: &UserMfa) -> Needs {
    let role = if admin { Role::Admin } else { Role::Member };
    let policy = &p.policy;
    let exempt = policy.exempt_users.contains(user) || policy.exempt_roles.contains(&role);
    let on = policy.level != MfaLevel::Off && !exempt;
    let by_level = match policy.level {
        MfaLevel::Required => true,
        MfaLevel::RequiredForAdmins => admin,
        MfaLevel::Off | MfaLevel::Optional => false,
    };
    let required = on && (by_level || rec.enforced_ms.is_some());
    let since = match (by_level, rec.enforced_ms) {
        (true, Some(e)) => p.required_since_ms.min(e),
        (true, None) => p.required_since_ms,
        (false, Some(e)) => e,
        (false, None) => 0,
    };
    let enrolled = rec.totp.is_some();
    Needs { exempt, required, enrolled, challenge: on && enrolled, required_since_ms: since }
}

/// How long a device stays trusted under this policy, ms (0: trust is not offered).
fn trust_ms(p: &StoredPolicy) -> u64 {
    p.policy
        .trusted_device_secs
        .unwrap_or(u64::from(p.policy.trusted_device_days) * 86_400)
        .saturating_mul(1000)
}

fn grace_deadline(p: &StoredPolicy, rec: &UserMfa) -> Option<u64> {
    rec.grace_started_ms.map(|s| s.saturating_add(p.policy.grace_period_secs.saturating_mul(1000)))
}

/// Starts the user's grace period now if MFA is required of them, they have none, and their
/// grace has not started since the requirement began.
async fn ensure_grace(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    n: &Needs,
    rec: UserMfa,
) -> Result<UserMfa> {
    if !n.required || n.enrolled || rec.grace_started_ms.is_some_and(|g| g >= n.required_since_ms) {
        return Ok(rec);
    }
    let since = n.required_since_ms;
    let now = now_ms();
    update_user(hub, tenant, user, |r| {
        if r.grace_started_ms.is_none_or(|g| g < since) {
            r.grace_started_ms = Some(now);
        }
        Ok(r.clone())
    })
    .await
}

fn new_challenge(now: u64) -> ChallengeRec {
    ChallengeRec { id: accounts::new_public_id(), expires_ms: now + MFA_CHALLENGE_TTL_MS }
}

/// The state a session should have under the policy, given its previous state.
fn decide(
    p: &StoredPolicy,
    n: &Needs,
    deadline: Option<u64>,
    prev: Option<&SessionMfaRec>,
    trusted: bool,
    now: u64,
) -> SessionMfaRec {
    let level = p.policy.level;
    if n.challenge {
        if let Some(v) = prev.filter(|s| s.state == MfaState::Verified) {
            return SessionMfaRec { level, enroll_deadline_ms: None, ..v.clone() };
        }
        if trusted {
            return SessionMfaRec {
                state: MfaState::Verified,
                level,
                method: Some(MfaMethod::TrustedDevice),
                verified_at_ms: Some(now),
                challenge: None,
                enroll_deadline_ms: None,
                pending_device: None,
            };
        }
        let challenge = prev
            .filter(|s| s.state == MfaState::MfaPending)
            .and_then(|s| s.challenge.clone())
            .filter(|c| c.expires_ms > now)
            .unwrap_or_else(|| new_challenge(now));
        return SessionMfaRec {
            state: MfaState::MfaPending,
            level,
            method: None,
            verified_at_ms: None,
            challenge: Some(challenge),
            enroll_deadline_ms: None,
            // Still pending: the device change the login asked for still waits.
            pending_device: prev
                .filter(|s| s.state == MfaState::MfaPending)
                .and_then(|s| s.pending_device.clone()),
        };
    }
    let deadline = if n.required && !n.enrolled { deadline } else { None };
    match prev.filter(|s| s.state == MfaState::Verified) {
        Some(v) => SessionMfaRec { level, enroll_deadline_ms: deadline, challenge: None, ..v.clone() },
        None => SessionMfaRec { level, enroll_deadline_ms: deadline, ..SessionMfaRec::default() },
    }
}

async fn trusted(
    hub: &Hub,
    p: &StoredPolicy,
    tenant: &TenantId,
    user: &UserId,
    device: DeviceId,
    token: &Secret,
    now: u64,
) -> Result<bool> {
    if trust_ms(p) == 0 {
        return Ok(false);
    }
    let Some((_, t)) = read::<TrustRec>(hub, NS_TRUST, &trust_key(tenant, user, device)).await? else {
        return Ok(false);
    };
    let h: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
    Ok(bool::from(h.ct_eq(&t.token_hash)) && t.expires_ms > now)
}

/// Whether a login must pass a challenge before it may do anything (the user has a factor
/// that applies and `device` is not a trusted device presenting its token). Decided before
/// the device is registered: see `accounts::login`.
pub async fn login_must_challenge(
    hub: &Hub,
    user: &UserRecord,
    device: Option<DeviceId>,
    trust_token: Option<&Secret>,
) -> Result<bool> {
    let (tenant, name) = (&user.tenant, &user.user);
    let p = stored_policy(hub, tenant).await?;
    let (_, rec) = user_rec(hub, tenant, name).await?;
    let n = needs(&p, name, user.admin, &rec);
    if !n.challenge {
        return Ok(false);
    }
    let is_trusted = match (trust_token, device) {
        (Some(t), Some(d)) => trusted(hub, &p, tenant, name, d, t, now_ms()).await?,
        _ => false,
    };
    Ok(!is_trusted)
}

/// Keeps the device registration a pending login asked for with its session.
pub async fn set_pending_device(hub: &Hub, session_id: &str, request: DeviceRequest) -> Result<()> {
    let mut rec = session_rec(hub, session_id).await?;
    rec.pending_device = Some(request);
    put_session(hub, session_id, &rec).await
}

/// Decides a new session's MFA state at login (challenge, trusted device, grace period) and
/// stores it. `trust_token` counts only for an existing device named by the login.
pub async fn on_login(
    hub: &Hub,
    user: &UserRecord,
    session: &SessionRecord,
    existing_device: bool,
    trust_token: Option<&Secret>,
) -> Result<SessionMfa> {
    let (tenant, name) = (&user.tenant, &user.user);
    let now = now_ms();
    let p = stored_policy(hub, tenant).await?;
    let (_, rec) = user_rec(hub, tenant, name).await?;
    let n = needs(&p, name, user.admin, &rec);
    let rec = ensure_grace(hub, tenant, name, &n, rec).await?;
    let is_trusted = match trust_token {
        Some(t) if n.challenge && existing_device => {
            trusted(hub, &p, tenant, name, session.device.device, t, now).await?
        }
        _ => false,
    };
    let state = decide(&p, &n, grace_deadline(&p, &rec), None, is_trusted, now);
    put_session(hub, &session.id, &state).await?;
    let actor =
        Initiator { user: Some(name.clone()), session: Some(session.id.clone()), ip: session.ip.clone() };
    let target = Some(format!("session:{}", session.id));
    match (state.state, is_trusted) {
        (MfaState::MfaPending, _) => {
            sessions::audit(hub, tenant, &actor, "mfa.challenge", target, "issued").await
        }
        (MfaState::Verified, true) => {
            sessions::audit(hub, tenant, &actor, "mfa.trusted_device", target, "ok").await
        }
        _ => {}
    }
    Ok(state.view(now))
}

fn initiator(me: &Authed, ip: Option<String>) -> Initiator {
    Initiator { user: Some(me.user().clone()), session: Some(me.session.id.clone()), ip }
}

/// `POST /v1/mfa/challenge`: a new challenge for this session (the login's, or a step-up).
///
/// Also under the level `off`: logins are not challenged then, but a factor still serves the
/// step-up of actions on others (see [`require_step_up_for_others`]).
pub async fn challenge(hub: &Hub, me: &Authed, ip: Option<String>) -> Result<MfaChallenge> {
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    if rec.totp.is_none() {
        return Err(MfaError::NotEnrolled);
    }
    let now = now_ms();
    let mut s = session_rec(hub, &me.session.id).await?;
    s.challenge = Some(new_challenge(now));
    put_session(hub, &me.session.id, &s).await?;
    let target = Some(format!("session:{}", me.session.id));
    sessions::audit(hub, me.tenant(), &initiator(me, ip), "mfa.challenge", target, "issued").await;
    s.view(now).challenge.ok_or(MfaError::Account(AccountError::Internal))
}

async fn open_challenge(hub: &Hub, me: &Authed, challenge_id: &str, now: u64) -> Result<SessionMfaRec> {
    let s = session_rec(hub, &me.session.id).await?;
    let ok = s
        .challenge
        .as_ref()
        .is_some_and(|c| bool::from(c.id.as_bytes().ct_eq(challenge_id.as_bytes())) && c.expires_ms > now);
    if ok {
        Ok(s)
    } else {
        Err(MfaError::InvalidChallenge)
    }
}

enum Outcome {
    Ok,
    Failed { attempts: u32, locked_until: Option<u64> },
    Locked(u64),
    NotEnrolled,
}

fn normalize_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_lowercase()).collect()
}

/// `POST /v1/mfa/verify` (TOTP) or `POST /v1/mfa/backup` (`backup` true): answers this
/// session's challenge. A success marks the session verified (method and time) and may trust
/// the device; a failure is counted, told to every device of the user, and may lock the factor.
pub async fn verify(
    hub: &Hub,
    me: &Authed,
    challenge_id: &str,
    code: &Secret,
    backup: bool,
    remember_device: bool,
    ip: Option<String>,
) -> Result<MfaVerified> {
    let now = now_ms();
    let actor = initiator(me, ip);
    let action = if backup { "mfa.backup" } else { "mfa.verify" };
    let target = Some(format!("session:{}", me.session.id));
    let (tenant, user) = (me.tenant(), me.user());
    match open_challenge(hub, me, challenge_id, now).await {
        Ok(_) => {}
        Err(e) => {
            sessions::audit(hub, tenant, &actor, action, target, "invalid_challenge").await;
            return Err(e);
        }
    }
    let p = stored_policy(hub, tenant).await?;
    let code = normalize_code(code.expose());
    let outcome = if backup {
        verify_backup(hub, tenant, user, &code, now).await?
    } else {
        let key = hub.mfa_key.get().ok_or(MfaError::NoKey)?;
        let unix = now / 1000;
        let aad = aad(tenant, user);
        update_user(hub, tenant, user, |rec| {
            if let Some(until) = rec.locked(now) {
                return Ok(Outcome::Locked(until));
            }
            let Some(f) = rec.totp.as_ref() else { return Ok(Outcome::NotEnrolled) };
            let secret = key.open(&f.sealed, &aad)?;
            let step = otp::totp_match(&secret, &code, unix, f.algorithm, f.digits)
                .map_err(|_| MfaError::Account(AccountError::Internal))?;
            match step {
                Some(step) if step > rec.last_step => {
                    rec.last_step = step;
                    rec.reset_failures();
                    Ok(Outcome::Ok)
                }
                // A wrong code, or one already accepted (this step or an earlier one).
                _ => {
                    let (attempts, locked_until) = rec.fail(now);
                    Ok(Outcome::Failed { attempts, locked_until })
                }
            }
        })
        .await?
    };
    match outcome {
        Outcome::Ok => {}
        Outcome::NotEnrolled => return Err(MfaError::NotEnrolled),
        Outcome::Locked(until) => {
            sessions::audit(hub, tenant, &actor, action, target, "locked").await;
            return Err(MfaError::Locked { until_ms: until });
        }
        Outcome::Failed { attempts, locked_until } => {
            let result = if locked_until.is_some() { "denied_locked" } else { "denied" };
            sessions::audit(hub, tenant, &actor, action, target, result).await;
            tracing::info!(tenant = %tenant, user = %user, session = %me.session.id, attempts, "MFA code refused");
            let ev = SessionEvent::MfaFailed {
                session_id: me.session.id.clone(),
                attempts,
                locked_until_ms: locked_until,
            };
            sessions::emit(hub, tenant, user, me.session.device.device, None, ev).await;
            return Err(MfaError::InvalidCode);
        }
    }
    // The device change the login asked for happens only now.
    if let Some(request) = session_rec(hub, &me.session.id).await?.pending_device {
        let account = hub.store.get_user(tenant, user).await?.ok_or(AccountError::Unauthorized)?;
        if let Err(e) = accounts::complete_pending_device(hub, &account, &me.session, &request).await {
            let target = Some(format!("session:{} device:{}", me.session.id, me.session.device));
            sessions::audit(hub, tenant, &actor, "device.register", target, "failed").await;
            return Err(MfaError::Account(e));
        }
    }
    let method = if backup { MfaMethod::Backup } else { MfaMethod::Totp };
    let verified = SessionMfaRec {
        state: MfaState::Verified,
        level: p.policy.level,
        method: Some(method),
        verified_at_ms: Some(now),
        challenge: None,
        enroll_deadline_ms: None,
        pending_device: None,
    };
    put_session(hub, &me.session.id, &verified).await?;
    sessions::audit(hub, tenant, &actor, action, target, "ok").await;
    if backup {
        let ev = SessionEvent::MfaChanged { change: "backup_code_used".into() };
        sessions::emit(hub, tenant, user, me.session.device.device, None, ev).await;
    }
    let (token, until) = if remember_device && trust_ms(&p) > 0 {
        let token = accounts::new_token();
        let until = now + trust_ms(&p);
        let rec = TrustRec {
            token_hash: Sha256::digest(token.expose().as_bytes()).into(),
            created_ms: now,
            expires_ms: until,
        };
        let key = trust_key(tenant, user, me.session.device.device);
        hub.store.kv_set(NS_TRUST, &key, encode(&rec)?).await?;
        let target = Some(format!("device:{}", me.session.device));
        sessions::audit(hub, tenant, &actor, "mfa.trust.add", target, "ok").await;
        let ev = SessionEvent::MfaChanged { change: "device_trusted".into() };
        sessions::emit(hub, tenant, user, me.session.device.device, None, ev).await;
        (Some(token), Some(until))
    } else {
        (None, None)
    };
    Ok(MfaVerified { session: verified.view(now), trusted_device_token: token, trusted_until_ms: until })
}

/// Argon2id for backup codes: 8 MiB, 1 pass. A code carries 50 random bits and guesses are
/// limited by the failure lock, so the KDF only has to make an offline search of a stolen
/// record costly; the lighter parameters keep checking the ten codes of a set (one pool job)
/// at about a tenth of the cost of ten password hashes.
fn backup_kdf() -> Argon2<'static> {
    let params = Params::new(8 * 1024, 1, 1, None).unwrap_or_default();
    Argon2::new(ArgonAlg::Argon2id, Version::V0x13, params)
}

/// Ten new codes (50 bits each, `xxxxx-xxxxx` in a 32-letter alphabet without look-alikes) and
/// their hashes, computed on the hashing pool.
async fn new_backup_codes(hub: &Hub) -> Result<(Vec<Secret>, Vec<BackupCode>)> {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz023456789";
    let codes: Vec<String> = (0..BACKUP_CODES)
        .map(|_| {
            let b = random_bytes::<10>();
            let s: String = b.iter().map(|x| ALPHABET[usize::from(x & 31)] as char).collect();
            format!("{}-{}", &s[..5], &s[5..])
        })
        .collect();
    let plain: Vec<String> = codes.iter().map(|c| normalize_code(c)).collect();
    let hashes = hub
        .hashing
        .run(move || {
            let kdf = backup_kdf();
            plain
                .iter()
                .map(|c| kdf.hash_password(c.as_bytes()).map(|h| h.to_string()))
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .await
        .ok_or(MfaError::Account(AccountError::Busy))?
        .map_err(|_| MfaError::Account(AccountError::Internal))?;
    let recs = hashes.into_iter().map(|hash| BackupCode { hash, used_ms: None }).collect();
    Ok((codes.into_iter().map(Secret::new).collect(), recs))
}

async fn verify_backup(hub: &Hub, tenant: &TenantId, user: &UserId, code: &str, now: u64) -> Result<Outcome> {
    let (_, snapshot) = user_rec(hub, tenant, user).await?;
    if let Some(until) = snapshot.locked(now) {
        return Ok(Outcome::Locked(until));
    }
    if snapshot.totp.is_none() {
        return Ok(Outcome::NotEnrolled);
    }
    let unused: Vec<String> =
        snapshot.backup.iter().filter(|c| c.used_ms.is_none()).map(|c| c.hash.clone()).collect();
    let code = code.to_owned();
    // Every unused code is checked (one job on the hashing pool), so the time does not say which.
    let matched = hub
        .hashing
        .run(move || {
            let kdf = backup_kdf();
            let mut found = None;
            for h in &unused {
                let ok = kdf.verify_password(code.as_bytes(), h.as_str()).is_ok();
                if ok && found.is_none() {
                    found = Some(h.clone());
                }
            }
            found
        })
        .await
        .ok_or(MfaError::Account(AccountError::Busy))?;
    update_user(hub, tenant, user, |rec| {
        if let Some(until) = rec.locked(now) {
            return Ok(Outcome::Locked(until));
        }
        let slot = matched
            .as_ref()
            .and_then(|h| rec.backup.iter_mut().find(|c| c.hash == *h && c.used_ms.is_none()));
        match slot {
            Some(c) => {
                // Used once: the compare-and-set makes a concurrent second use of it fail here.
                c.used_ms = Some(now);
                rec.reset_failures();
                Ok(Outcome::Ok)
            }
            None => {
                let (attempts, locked_until) = rec.fail(now);
                Ok(Outcome::Failed { attempts, locked_until })
            }
        }
    })
    .await
}

/// `POST /v1/mfa/totp/enroll`: a new TOTP secret, not active until confirmed. Returns the
/// secret and the `otpauth://` URI. Open under every level: under `off` the factor is not asked
/// at login but is what an administrator steps up with.
pub async fn enroll(
    hub: &Hub,
    me: &Authed,
    ip: Option<String>,
) -> Result<(OtpSecret, String, Algorithm, u32)> {
    let p = stored_policy(hub, me.tenant()).await?;
    let key = hub.mfa_key.get().ok_or(MfaError::NoKey)?;
    let secret = OtpSecret::new(random_bytes::<TOTP_SECRET_BYTES>().to_vec());
    let (alg, digits) = (p.policy.totp_algorithm, p.policy.totp_digits);
    let factor = TotpFactor {
        sealed: key.seal(secret.expose(), &aad(me.tenant(), me.user()))?,
        algorithm: alg,
        digits,
        created_ms: now_ms(),
    };
    let started = update_user(hub, me.tenant(), me.user(), |rec| {
        if rec.totp.is_some() {
            return Ok(false);
        }
        rec.pending_totp = Some(factor.clone());
        Ok(true)
    })
    .await?;
    if !started {
        return Err(MfaError::AlreadyEnrolled);
    }
    let account = format!("{}@{}", me.user(), me.tenant());
    let uri = otp::otpauth_uri(ISSUER, &account, &secret, alg, digits);
    sessions::audit(hub, me.tenant(), &initiator(me, ip), "mfa.totp.enroll", None, "started").await;
    Ok((secret, uri, alg, digits))
}

/// `POST /v1/mfa/totp/confirm`: the first code turns the enrolment on; returns the backup
/// codes (shown once). The session counts as verified from now, with method
/// [`MfaMethod::Enrollment`]: enough for actions on the user's own account, not a step-up for
/// actions on others (whoever holds a stolen token could enrol a factor of their own).
pub async fn confirm(hub: &Hub, me: &Authed, code: &Secret, ip: Option<String>) -> Result<BackupCodes> {
    let (tenant, user) = (me.tenant(), me.user());
    let key = hub.mfa_key.get().ok_or(MfaError::NoKey)?;
    let now = now_ms();
    let (_, snapshot) = user_rec(hub, tenant, user).await?;
    if snapshot.totp.is_some() {
        return Err(MfaError::AlreadyEnrolled);
    }
    let pending = snapshot.pending_totp.ok_or(MfaError::NotEnrolled)?;
    let secret = key.open(&pending.sealed, &aad(tenant, user))?;
    let code = normalize_code(code.expose());
    let step = otp::totp_match(&secret, &code, now / 1000, pending.algorithm, pending.digits)
        .map_err(|_| MfaError::Account(AccountError::Internal))?;
    let actor = initiator(me, ip);
    let Some(step) = step else {
        sessions::audit(hub, tenant, &actor, "mfa.totp.confirm", None, "denied").await;
        return Err(MfaError::InvalidCode);
    };
    let (codes, hashed) = new_backup_codes(hub).await?;
    let done = update_user(hub, tenant, user, |rec| {
        if rec.totp.is_some() || rec.pending_totp.as_ref() != Some(&pending) || step <= rec.last_step {
            return Ok(false);
        }
        rec.totp = rec.pending_totp.take();
        rec.last_step = step;
        rec.backup = hashed.clone();
        rec.reset_failures();
        rec.locked_until_ms = 0;
        Ok(true)
    })
    .await?;
    if !done {
        return Err(MfaError::InvalidCode);
    }
    let p = stored_policy(hub, tenant).await?;
    let verified = SessionMfaRec {
        state: MfaState::Verified,
        level: p.policy.level,
        method: Some(MfaMethod::Enrollment),
        verified_at_ms: Some(now),
        challenge: None,
        enroll_deadline_ms: None,
        pending_device: None,
    };
    put_session(hub, &me.session.id, &verified).await?;
    sessions::audit(hub, tenant, &actor, "mfa.totp.confirm", None, "ok").await;
    let ev = SessionEvent::MfaChanged { change: "totp_enabled".into() };
    sessions::emit(hub, tenant, user, me.session.device.device, None, ev).await;
    tracing::info!(tenant = %tenant, user = %user, "TOTP enabled");
    Ok(BackupCodes { codes })
}

/// Step-up of an action on the caller's own account (revoking their other sessions, turning
/// their TOTP off, new backup codes): refuses with [`MfaError::StepUpRequired`] unless this
/// session verified a code (TOTP, backup, or the confirmation of its enrolment) within the
/// tenant's step-up window. Only for users who have MFA or must have it (not under `off`, not
/// for exempt users): a user without a factor loses nothing to a thief of their token that the
/// token did not already give.
pub async fn require_step_up(hub: &Hub, me: &Authed, what: &str, ip: Option<String>) -> Result<()> {
    let p = stored_policy(hub, me.tenant()).await?;
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    let n = needs(&p, me.user(), me.admin, &rec);
    if p.policy.level == MfaLevel::Off || n.exempt || !(n.enrolled || n.required) {
        return Ok(());
    }
    let s = session_rec(hub, &me.session.id).await?;
    let by = [MfaMethod::Totp, MfaMethod::Backup, MfaMethod::Enrollment];
    if verified_within(&p, &s, &by, 0, now_ms()) {
        return Ok(());
    }
    step_up_denied(hub, me, what, ip, "denied").await;
    Err(MfaError::StepUpRequired)
}

/// Step-up of an action on other principals or on the tenant (see `docs/mfa.md`, "Step-up":
/// every admin action that changes another principal's access, credentials, sessions or MFA,
/// creates an administrator, or changes a tenant policy). Applies whatever the tenant's level
/// and exemptions: a caller without a confirmed factor is refused with
/// [`MfaError::StepUpEnrollRequired`]; one whose session has not answered a challenge (TOTP or
/// backup code) with their current factor within the step-up window, with
/// [`MfaError::StepUpRequired`]. Confirming an enrolment is no such answer: a token without a
/// recent step-up could otherwise enrol a factor of its own and count that as one.
pub async fn require_step_up_for_others(
    hub: &Hub,
    me: &Authed,
    what: &str,
    ip: Option<String>,
) -> Result<()> {
    let p = stored_policy(hub, me.tenant()).await?;
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    let Some(factor) = rec.totp.as_ref() else {
        step_up_denied(hub, me, what, ip, "denied_no_factor").await;
        return Err(MfaError::StepUpEnrollRequired);
    };
    let s = session_rec(hub, &me.session.id).await?;
    if verified_within(&p, &s, &[MfaMethod::Totp, MfaMethod::Backup], factor.created_ms, now_ms()) {
        return Ok(());
    }
    step_up_denied(hub, me, what, ip, "denied").await;
    Err(MfaError::StepUpRequired)
}

/// Whether the session verified by one of `by` at or after `since_ms` and within the tenant's
/// step-up window.
fn verified_within(p: &StoredPolicy, s: &SessionMfaRec, by: &[MfaMethod], since_ms: u64, now: u64) -> bool {
    let window = p.policy.step_up_window_secs.saturating_mul(1000);
    s.state == MfaState::Verified
        && s.method.is_some_and(|m| by.contains(&m))
        && s.verified_at_ms.is_some_and(|t| t >= since_ms && now.saturating_sub(t) <= window)
}

async fn step_up_denied(hub: &Hub, me: &Authed, what: &str, ip: Option<String>, result: &str) {
    sessions::audit(hub, me.tenant(), &initiator(me, ip), "mfa.step_up", Some(what.to_owned()), result).await;
}

/// Drops every trusted device of a user (all sessions revoked, MFA disabled).
pub async fn drop_trust_of_user(hub: &Hub, tenant: &TenantId, user: &UserId) -> Result<()> {
    hub.store.kv_replace_prefix(NS_TRUST, &trust_prefix(tenant, user), Vec::new()).await?;
    Ok(())
}

/// Drops every trusted device of a tenant (an administrator revoked every session).
pub async fn drop_trust_of_tenant(hub: &Hub, tenant: &TenantId) -> Result<()> {
    hub.store.kv_replace_prefix(NS_TRUST, &format!("{tenant}/"), Vec::new()).await?;
    Ok(())
}

/// Drops the trust of one device (revoked by the user, or the device removed); true if it existed.
pub async fn drop_trust(hub: &Hub, tenant: &TenantId, user: &UserId, device: DeviceId) -> Result<bool> {
    Ok(hub.store.kv_delete(NS_TRUST, &trust_key(tenant, user, device), None).await?)
}

/// `DELETE /v1/mfa/trusted-devices/{device}`.
pub async fn revoke_trust(hub: &Hub, me: &Authed, device: DeviceId, ip: Option<String>) -> Result<bool> {
    let existed = drop_trust(hub, me.tenant(), me.user(), device).await?;
    if existed {
        let target = Some(format!("device:{}/{}/{}", me.tenant(), me.user(), device));
        sessions::audit(hub, me.tenant(), &initiator(me, ip), "mfa.trust.revoke", target, "ok").await;
        let ev = SessionEvent::MfaChanged { change: "trust_revoked".into() };
        sessions::emit(hub, me.tenant(), me.user(), me.session.device.device, None, ev).await;
    }
    Ok(existed)
}

/// `GET /v1/mfa/trusted-devices`: the caller's unexpired trusted devices.
pub async fn trusted_devices(hub: &Hub, me: &Authed) -> Result<Vec<TrustedDevice>> {
    let now = now_ms();
    let prefix = trust_prefix(me.tenant(), me.user());
    let entries = hub.store.kv_scan(NS_TRUST, &prefix, None, MFA_MAX_TRUSTED_LISTED).await?;
    let mut out = Vec::new();
    for e in entries {
        let Ok(t) = postcard::from_bytes::<TrustRec>(&e.value) else { continue };
        let Some(dev) = e.key.strip_prefix(&prefix).and_then(|d| d.parse::<u32>().ok()) else { continue };
        let Ok(device) = DeviceId::new(dev) else { continue };
        if t.expires_ms > now {
            out.push(TrustedDevice { device, created_ms: t.created_ms, expires_ms: t.expires_ms });
        }
    }
    Ok(out)
}

/// `DELETE /v1/mfa/totp`: turns TOTP off (needs a step-up): the factor, backup codes and
/// trusted devices go.
pub async fn disable(hub: &Hub, me: &Authed, ip: Option<String>) -> Result<()> {
    require_step_up(hub, me, "mfa.disable", ip.clone()).await?;
    let had = update_user(hub, me.tenant(), me.user(), |rec| {
        let had = rec.totp.is_some() || rec.pending_totp.is_some();
        rec.totp = None;
        rec.pending_totp = None;
        rec.backup.clear();
        Ok(had)
    })
    .await?;
    if !had {
        return Err(MfaError::NotEnrolled);
    }
    drop_trust_of_user(hub, me.tenant(), me.user()).await?;
    sessions::audit(hub, me.tenant(), &initiator(me, ip), "mfa.totp.disable", None, "ok").await;
    let ev = SessionEvent::MfaChanged { change: "totp_disabled".into() };
    sessions::emit(hub, me.tenant(), me.user(), me.session.device.device, None, ev).await;
    tracing::info!(tenant = %me.tenant(), user = %me.user(), "TOTP disabled");
    Ok(())
}

/// `POST /v1/mfa/backup/regenerate`: a new set of backup codes (needs a step-up); the old set
/// is void.
pub async fn regenerate_backup(hub: &Hub, me: &Authed, ip: Option<String>) -> Result<BackupCodes> {
    require_step_up(hub, me, "mfa.backup.regenerate", ip.clone()).await?;
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    if rec.totp.is_none() {
        return Err(MfaError::NotEnrolled);
    }
    let (codes, hashed) = new_backup_codes(hub).await?;
    let ok = update_user(hub, me.tenant(), me.user(), |rec| {
        if rec.totp.is_none() {
            return Ok(false);
        }
        rec.backup = hashed.clone();
        Ok(true)
    })
    .await?;
    if !ok {
        return Err(MfaError::NotEnrolled);
    }
    sessions::audit(hub, me.tenant(), &initiator(me, ip), "mfa.backup.regenerate", None, "ok").await;
    let ev = SessionEvent::MfaChanged { change: "backup_codes_regenerated".into() };
    sessions::emit(hub, me.tenant(), me.user(), me.session.device.device, None, ev).await;
    Ok(BackupCodes { codes })
}

/// `GET /v1/mfa/status`.
pub async fn status(hub: &Hub, me: &Authed) -> Result<MfaStatus> {
    let now = now_ms();
    let p = stored_policy(hub, me.tenant()).await?;
    let (_, rec) = user_rec(hub, me.tenant(), me.user()).await?;
    let n = needs(&p, me.user(), me.admin, &rec);
    let s = session_rec(hub, &me.session.id).await?;
    let mut view = s.view(now);
    if view.enroll_deadline_ms.is_none() && n.required && !n.enrolled {
        view.enroll_deadline_ms = grace_deadline(&p, &rec);
    }
    Ok(MfaStatus {
        level: p.policy.level,
        required: n.required,
        exempt: n.exempt,
        totp_enabled: n.enrolled,
        backup_codes_left: rec.backup_left(),
        failed_attempts: rec.failures_now(now),
        locked_until_ms: rec.locked(now),
        session: view,
    })
}

/// The MFA part of a session listing.
pub async fn session_views(hub: &Hub, ids: &[String]) -> Vec<Option<SessionMfa>> {
    let now = now_ms();
    join_all(ids.iter().map(|id| async move { session_rec(hub, id).await.ok().map(|r| r.view(now)) })).await
}

/// Checks a policy an administrator submits.
fn validate(p: &MfaPolicy) -> Result<()> {
    let bad = |m: &str| Err(MfaError::Account(AccountError::Invalid(m.to_owned())));
    if !matches!(p.totp_digits, 6 | 8) {
        return bad("totp_digits must be 6 or 8");
    }
    if p.grace_period_secs > 365 * 86_400 {
        return bad("grace_period_secs must be at most one year");
    }
    if p.trusted_device_days > 365 || p.trusted_device_secs.is_some_and(|s| s > 365 * 86_400) {
        return bad("trusted devices are remembered at most 365 days");
    }
    if !(1..=86_400).contains(&p.step_up_window_secs) {
        return bad("step_up_window_secs must be 1..=86400");
    }
    if p.exempt_users.len() > crate::limits::MFA_MAX_EXEMPT_USERS {
        return bad("too many exempt users");
    }
    Ok(())
}

/// `PUT /v1/admin/tenant/mfa`: replaces the tenant's policy (needs a step-up), then brings every
/// live session of the tenant under it and tells the affected users.
pub async fn set_policy(
    hub: &Arc<Hub>,
    me: &Authed,
    policy: MfaPolicy,
    ip: Option<String>,
) -> Result<MfaPolicy> {
    validate(&policy)?;
    require_step_up_for_others(hub, me, "mfa.policy", ip.clone()).await?;
    let tenant = me.tenant();
    let now = now_ms();
    let requires = |l: MfaLevel| matches!(l, MfaLevel::Required | MfaLevel::RequiredForAdmins);
    for _ in 0..MFA_CAS_RETRIES {
        let cur = read::<StoredPolicy>(hub, NS_POLICY, tenant.as_str()).await?;
        let (version, old) = match cur {
            Some((v, p)) => (v, p),
            None => (0, StoredPolicy { policy: default_policy(), required_since_ms: 0 }),
        };
        let required_since_ms =
            if requires(policy.level) && !requires(old.policy.level) { now } else { old.required_since_ms };
        let rec = StoredPolicy { policy: policy.clone(), required_since_ms };
        match hub.store.kv_put(NS_POLICY, tenant.as_str(), version, encode(&rec)?).await {
            Ok(_) => {
                let target = Some(format!("tenant:{tenant} level:{:?}", policy.level));
                sessions::audit(hub, tenant, &initiator(me, ip), "mfa.policy.update", target, "ok").await;
                refresh_tenant(hub, tenant, "policy_changed").await?;
                return Ok(policy);
            }
            Err(StoreError::VersionConflict) | Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(MfaError::Account(AccountError::Busy))
}

/// Brings the live sessions of one user under the current policy; returns whether any changed.
async fn refresh_user(
    hub: &Hub,
    p: &StoredPolicy,
    tenant: &TenantId,
    user: &UserId,
    sessions_of: &[SessionRecord],
    change: &str,
) -> Result<bool> {
    let Some(account) = hub.store.get_user(tenant, user).await? else { return Ok(false) };
    let (_, rec) = user_rec(hub, tenant, user).await?;
    let n = needs(p, user, account.admin, &rec);
    let rec = if sessions_of.is_empty() { rec } else { ensure_grace(hub, tenant, user, &n, rec).await? };
    let now = now_ms();
    let mut changed = false;
    let mut kick = Vec::new();
    for s in sessions_of {
        let prev = session_rec(hub, &s.id).await?;
        let mut next = decide(p, &n, grace_deadline(p, &rec), Some(&prev), false, now);
        if next.state != MfaState::MfaPending {
            // Released without a challenge (policy or admin reset): the device change the login
            // asked for is applied now; if it cannot be (its new device id was taken), the
            // session ends and the user logs in again.
            if let Some(request) = prev.pending_device.as_ref().filter(|_| prev.state == MfaState::MfaPending)
            {
                if let Err(e) = accounts::complete_pending_device(hub, &account, s, request).await {
                    tracing::info!(session = %s.id, error = %e, "pending device change not applicable; session ended");
                    let r = hush_store::Revocation { at_ms: now, reason: "logout".into() };
                    hub.store.revoke_session(&s.id, r).await?;
                    kick.push(s.clone());
                    continue;
                }
            }
            next.pending_device = None;
        }
        if next != prev {
            changed = true;
            if next.state == MfaState::MfaPending && prev.state != MfaState::MfaPending {
                kick.push(s.clone());
            }
            put_session(hub, &s.id, &next).await?;
        }
    }
    if !kick.is_empty() {
        // A session that must now pass a challenge loses its chat sockets until it does.
        sessions::kick_sessions(hub, &kick, "mfa_required", CLOSE_UNAUTHORIZED).await;
    }
    if changed {
        let from = sessions_of.first().map(|s| s.device.device).unwrap_or(DeviceId::PRIMARY);
        let ev = SessionEvent::MfaChanged { change: change.to_owned() };
        sessions::emit(hub, tenant, user, from, None, ev).await;
    }
    Ok(changed)
}

/// Brings every live session of a tenant under its current policy.
async fn refresh_tenant(hub: &Hub, tenant: &TenantId, change: &str) -> Result<()> {
    let p = stored_policy(hub, tenant).await?;
    let mut after: Option<String> = None;
    let mut by_user: std::collections::BTreeMap<UserId, Vec<SessionRecord>> = Default::default();
    loop {
        let page = hub.store.active_sessions(tenant, after.as_deref(), MFA_REFRESH_PAGE).await?;
        let full = page.len() == MFA_REFRESH_PAGE;
        after = page.last().map(|s| s.id.clone());
        for s in page {
            by_user.entry(s.device.user.clone()).or_default().push(s);
        }
        if !full {
            break;
        }
    }
    for (user, list) in by_user {
        refresh_user(hub, &p, tenant, &user, &list, change).await?;
    }
    Ok(())
}

/// `POST /v1/admin/users/{user}/mfa/enforce`: MFA becomes required of this user, whatever the
/// tenant level (their grace period starts at their next login, or now if they have live
/// sessions).
pub async fn enforce_user(hub: &Hub, me: &Authed, user: &UserId, ip: Option<String>) -> Result<()> {
    let tenant = me.tenant();
    if hub.store.get_user(tenant, user).await?.is_none() {
        return Err(MfaError::Account(AccountError::NotFound));
    }
    let now = now_ms();
    update_user(hub, tenant, user, |rec| {
        if rec.enforced_ms.is_none() {
            rec.enforced_ms = Some(now);
        }
        Ok(())
    })
    .await?;
    sessions::audit(hub, tenant, &initiator(me, ip), "mfa.enforce", Some(format!("user:{user}")), "ok").await;
    let p = stored_policy(hub, tenant).await?;
    let live: Vec<SessionRecord> =
        hub.store.sessions_of_user(tenant, user).await?.into_iter().filter(|s| s.active()).collect();
    refresh_user(hub, &p, tenant, user, &live, "enforced").await?;
    Ok(())
}

/// `DELETE /v1/admin/users/{user}/mfa`: an administrator resets a user's MFA (lost
/// authenticator, factor locked for good): the factor, backup codes, failure lock and trusted
/// devices go; the user's pending sessions are released (or get a grace deadline if MFA is
/// required of them) and their devices are told.
pub async fn reset_user(hub: &Hub, me: &Authed, user: &UserId, ip: Option<String>) -> Result<()> {
    let tenant = me.tenant();
    if hub.store.get_user(tenant, user).await?.is_none() {
        return Err(MfaError::Account(AccountError::NotFound));
    }
    require_step_up_for_others(hub, me, "mfa.reset", ip.clone()).await?;
    update_user(hub, tenant, user, |rec| {
        rec.totp = None;
        rec.pending_totp = None;
        rec.backup.clear();
        rec.reset_failures();
        rec.locked_until_ms = 0;
        Ok(())
    })
    .await?;
    drop_trust_of_user(hub, tenant, user).await?;
    sessions::audit(hub, tenant, &initiator(me, ip), "mfa.reset", Some(format!("user:{user}")), "ok").await;
    let p = stored_policy(hub, tenant).await?;
    let live: Vec<SessionRecord> =
        hub.store.sessions_of_user(tenant, user).await?.into_iter().filter(|s| s.active()).collect();
    refresh_user(hub, &p, tenant, user, &live, "reset").await?;
    tracing::info!(tenant = %tenant, user = %user, "MFA reset by an administrator");
    Ok(())
}

/// `POST /v1/admin/mfa/enforce-all`: [`enforce_user`] for every user of the tenant.
pub async fn enforce_all(hub: &Hub, me: &Authed, ip: Option<String>) -> Result<usize> {
    let tenant = me.tenant();
    let now = now_ms();
    let mut after: Option<UserId> = None;
    let mut n = 0;
    loop {
        let page = hub.store.list_users(tenant, after.as_ref(), crate::limits::MAX_PAGE).await?;
        let full = page.len() == crate::limits::MAX_PAGE;
        after = page.last().map(|u| u.user.clone());
        for u in &page {
            update_user(hub, tenant, &u.user, |rec| {
                if rec.enforced_ms.is_none() {
                    rec.enforced_ms = Some(now);
                }
                Ok(())
            })
            .await?;
            n += 1;
        }
        if !full {
            break;
        }
    }
    sessions::audit(hub, tenant, &initiator(me, ip), "mfa.enforce_all", Some(format!("users:{n}")), "ok")
        .await;
    refresh_tenant(hub, tenant, "enforced").await?;
    Ok(n)
}

/// `GET /v1/admin/users/mfa-status`: one page of the tenant's users with their MFA state.
pub async fn users_status(
    hub: &Hub,
    tenant: &TenantId,
    after: Option<&UserId>,
    limit: usize,
) -> Result<Vec<UserMfaStatus>> {
    let p = stored_policy(hub, tenant).await?;
    let now = now_ms();
    let users = hub.store.list_users(tenant, after, limit).await?;
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        let (_, rec) = user_rec(hub, tenant, &u.user).await?;
        let n = needs(&p, &u.user, u.admin, &rec);
        let deadline = (n.required && !n.enrolled).then(|| grace_deadline(&p, &rec)).flatten();
        out.push(UserMfaStatus {
            user: u.user.clone(),
            admin: u.admin,
            totp_enabled: n.enrolled,
            backup_codes_left: rec.backup_left(),
            enforced: rec.enforced_ms.is_some(),
            exempt: n.exempt,
            required: n.required,
            enroll_deadline_ms: deadline,
            locked_until_ms: rec.locked(now),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A pending login's device request, keys or none, survives the session record's encoding.
    #[test]
    fn a_pending_device_request_round_trips() {
        use hush_protocol::api::{SignedPreKey, UploadKeysRequest};
        use hush_protocol::wire::Payload;
        let key =
            SignedPreKey { key_id: 7, public_key: Payload(vec![5; 33]), signature: Payload(vec![1; 64]) };
        for keys in [
            None,
            Some(UploadKeysRequest {
                signed_pre_key: Some(key.clone()),
                pre_keys: vec![],
                kyber_pre_keys: vec![],
                kyber_last_resort: Some(key),
            }),
        ] {
            let device = DeviceRequest {
                id: None,
                registration_id: hush_protocol::ids::RegistrationId::new(42).unwrap(),
                name: Some("laptop".into()),
                identity_key: Some(Payload(vec![5; 33])),
                keys,
            };
            let rec = SessionMfaRec { pending_device: Some(device.clone()), ..Default::default() };
            let back: SessionMfaRec = postcard::from_bytes(&encode(&rec).unwrap()).unwrap();
            assert_eq!(back.pending_device.map(|d| format!("{d:?}")), Some(format!("{device:?}")));
        }
    }

    #[test]
    fn failures_lock_after_five_then_grow_and_cap_at_100() {
        let mut r = UserMfa::default();
        let t0 = 1_000_000;
        for i in 1..=4 {
            assert_eq!(r.fail(t0 + i), (i as u32, None));
        }
        let (n, locked) = r.fail(t0 + 5);
        assert_eq!(n, 5);
        assert_eq!(locked, Some(t0 + 5 + MFA_FAILURE_WINDOW_MS));
        // After the first lock, five more failures lock twice as long.
        let t1 = t0 + 5 + MFA_FAILURE_WINDOW_MS;
        for i in 1..=4 {
            assert_eq!(r.fail(t1 + i).1, None);
        }
        assert_eq!(r.fail(t1 + 5).1, Some(t1 + 5 + 2 * MFA_FAILURE_WINDOW_MS));
        r.consecutive_failures = MFA_MAX_CONSECUTIVE_FAILURES - 1;
        assert_eq!(r.fail(t1 + 10 * MFA_MAX_LOCK_MS).1, Some(u64::MAX));
    }

    #[test]
    fn sealed_secrets_are_bound_to_the_user_and_key() {
        let k = SealKey::new(&[7u8; 32]).unwrap();
        let sealed = k.seal(b"12345678901234567890", "hush-totp-v1/a/b").unwrap();
        assert!(!sealed.windows(20).any(|w| w == b"12345678901234567890"));
        assert_eq!(k.open(&sealed, "hush-totp-v1/a/b").unwrap().expose(), b"12345678901234567890");
        assert!(k.open(&sealed, "hush-totp-v1/a/c").is_err());
        assert!(SealKey::new(&[8u8; 32]).unwrap().open(&sealed, "hush-totp-v1/a/b").is_err());
        assert_eq!(format!("{k:?}"), "SealKey(***)");
    }

    #[test]
    fn backup_code_hash_round_trip() {
        let kdf = backup_kdf();
        let h = kdf.hash_password(b"abcdeabcde").unwrap().to_string();
        assert!(h.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{h}");
        assert!(kdf.verify_password(b"abcdeabcde", h.as_str()).is_ok());
        assert!(kdf.verify_password(b"abcdeabcdf", h.as_str()).is_err());
        assert_eq!(normalize_code(" ABCDE-abcde "), "abcdeabcde");
    }

    /// What counts as a step-up: only the listed methods, only after `since`, only inside the
    /// window; an enrolment counts where `Enrollment` is listed (own account), not otherwise.
    #[test]
    fn verified_within_the_window_by_the_listed_methods() {
        let mut p = StoredPolicy { policy: default_policy(), required_since_ms: 0 };
        p.policy.step_up_window_secs = 10;
        let at = |method, t| SessionMfaRec {
            state: MfaState::Verified,
            method: Some(method),
            verified_at_ms: Some(t),
            ..Default::default()
        };
        let others = [MfaMethod::Totp, MfaMethod::Backup];
        let own = [MfaMethod::Totp, MfaMethod::Backup, MfaMethod::Enrollment];
        let now = 100_000;
        assert!(verified_within(&p, &at(MfaMethod::Totp, now - 10_000), &others, 0, now));
        assert!(!verified_within(&p, &at(MfaMethod::Totp, now - 10_001), &others, 0, now), "stale");
        assert!(verified_within(&p, &at(MfaMethod::Backup, now), &others, 0, now));
        assert!(!verified_within(&p, &at(MfaMethod::Enrollment, now), &others, 0, now), "just enrolled");
        assert!(verified_within(&p, &at(MfaMethod::Enrollment, now), &own, 0, now));
        assert!(!verified_within(&p, &at(MfaMethod::TrustedDevice, now), &own, 0, now));
        assert!(
            !verified_within(&p, &at(MfaMethod::Totp, now - 5), &others, now - 4, now),
            "an older factor"
        );
        let pending = SessionMfaRec { state: MfaState::MfaPending, ..at(MfaMethod::Totp, now) };
        assert!(!verified_within(&p, &pending, &own, 0, now));
    }

    #[test]
    fn decide_pending_trusted_grace() {
        let p = StoredPolicy { policy: default_policy(), required_since_ms: 0 };
        let mut rec = UserMfa::default();
        let alice = UserId::new("alice").unwrap();
        let n = needs(&p, &alice, false, &rec);
        assert!(!n.challenge && !n.required);
        assert_eq!(decide(&p, &n, None, None, false, 5).state, MfaState::None);
        rec.totp = Some(TotpFactor { sealed: vec![], algorithm: Algorithm::Sha1, digits: 6, created_ms: 0 });
        let n = needs(&p, &alice, false, &rec);
        let s = decide(&p, &n, None, None, false, 5);
        assert_eq!(s.state, MfaState::MfaPending);
        assert!(s.challenge.is_some());
        assert_eq!(decide(&p, &n, None, None, true, 5).method, Some(MfaMethod::TrustedDevice));
        let mut p2 = p.clone();
        p2.policy.exempt_users.push(alice.clone());
        assert_eq!(decide(&p2, &needs(&p2, &alice, false, &rec), None, None, false, 5).state, MfaState::None);
        let mut p3 = p.clone();
        p3.policy.level = MfaLevel::Required;
        let fresh = UserMfa { grace_started_ms: Some(1_000), ..UserMfa::default() };
        let n = needs(&p3, &alice, false, &fresh);
        let s = decide(&p3, &n, grace_deadline(&p3, &fresh), None, false, 5);
        assert_eq!(s.enroll_deadline_ms, Some(1_000 + 48 * 3600 * 1000));
        assert!(s.block(5).is_none());
        assert!(matches!(s.block(1_000 + 48 * 3600 * 1000), Some(MfaError::EnrollRequired)));
    }
}
