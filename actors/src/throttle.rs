//! Login throttling: password and MFA attempts, per account and per client address, counted
//! cluster-wide by the bus ([`hush_cluster::Bus::attempt`]; a lone node, or a node while Redis
//! is down, counts in memory).
//!
//! - Per account (`tenant/user`, whether or not the user exists, so an unknown user gets
//!   exactly the answers of a known one): password attempts. The first
//!   [`ThrottlePolicy::account`]`.free` failures cost nothing, each further one doubles the wait
//!   before the next attempt, and `lock_after` consecutive failures lock the account
//!   (`account_locked`) for `lock`, doubling with each failure after that, up to a hard lock at
//!   `hard_limit` (at most 100, NIST SP 800-63B) that only an administrator's unlock or
//!   `hushd admin reset-password` clears. A correct password starts the count over.
//!   MFA codes have their own per-account lock (the factor's, in [`crate::mfa`]).
//! - Per client address: password and MFA attempts. Failures are counted (a success gives its
//!   attempt back), with many free ones (offices behind one address) and a doubling delay
//!   after them; an address is never locked.
//!
//! Every attempt is counted before the password is checked, so parallel attempts cannot get
//! past the budget; a refused attempt runs no hash (for known and unknown users alike) and
//! counts nothing. A lock is audited (`account.lock`) and sent to the user's devices
//! ([`SessionEvent::AccountLocked`]).

use std::time::Duration;

use hush_cluster::buckets::{Release, Verdict};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::SessionEvent;

use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::sessions::{self, Initiator};

/// The throttling rules and the node's copy of them are configured policies, kept with the
/// others in [`crate::policy`] (below every domain module, the hub included).
pub use crate::policy::{Throttle, ThrottlePolicy, MAX_CONSECUTIVE_FAILURES};

/// Why an attempt was refused before anything was checked (defined with the account errors,
/// which carry it, so that they need nothing of the throttle).
pub use crate::accounts::error::Refused;

fn secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

/// The counter key of an account's password attempts.
pub fn account_key(tenant: &TenantId, user: &UserId) -> String {
    format!("login:{tenant}/{user}")
}

fn address_key(ip: &str) -> String {
    format!("login-ip:{ip}")
}

/// Attempts counted for one request; report the outcome with [`Guard::succeeded`] or
/// [`Guard::failed`] (dropping it leaves them counted as failures).
#[must_use]
pub struct Guard {
    account: Option<(String, u32)>,
    address: Option<String>,
}

/// Counts a password attempt for `tenant/user` from `ip`, or refuses it.
pub async fn password_attempt(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    ip: Option<&str>,
) -> Result<Guard, Refused> {
    let policy = hub.throttle.policy();
    let address = address_attempt(hub, &policy, ip).await?;
    let key = account_key(tenant, user);
    let refused = match hub.bus.attempt(&key, &policy.account).await {
        Verdict::Allowed(n) => return Ok(Guard { account: Some((key, n)), address }),
        Verdict::Locked(d) => Refused::Locked(secs(d)),
        Verdict::Delayed(d) => Refused::RateLimited(secs(d)),
    };
    // Refused before any check: the address's attempt is not a failure.
    if let Some(a) = &address {
        hub.bus.release_attempt(a, Release::Refund).await;
    }
    Err(refused)
}

/// Counts an MFA code attempt from `ip` (the account's factor has its own lock), or refuses it.
pub async fn code_attempt(hub: &Hub, ip: Option<&str>) -> Result<Guard, Refused> {
    let policy = hub.throttle.policy();
    let address = address_attempt(hub, &policy, ip).await?;
    Ok(Guard { account: None, address })
}

async fn address_attempt(
    hub: &Hub,
    policy: &ThrottlePolicy,
    ip: Option<&str>,
) -> Result<Option<String>, Refused> {
    let Some(ip) = ip else { return Ok(None) };
    let key = address_key(ip);
    match hub.bus.attempt(&key, &policy.address).await {
        Verdict::Allowed(_) => Ok(Some(key)),
        Verdict::Delayed(d) => Err(Refused::RateLimited(secs(d))),
        Verdict::Locked(d) => Err(Refused::RateLimited(secs(d))),
    }
}

impl Guard {
    /// The attempt succeeded: the account's count starts over, the address gets its attempt
    /// back.
    pub async fn succeeded(self, hub: &Hub) {
        if let Some((key, _)) = &self.account {
            hub.bus.release_attempt(key, Release::Reset).await;
        }
        if let Some(a) = &self.address {
            hub.bus.release_attempt(a, Release::Refund).await;
        }
    }

    /// The attempt failed (it stays counted). If this failure locks the account, the lock is
    /// audited and, for an existing user, sent to its devices. Returns whether it locked.
    pub async fn failed(
        self,
        hub: &Hub,
        tenant: &TenantId,
        user: &UserId,
        exists: bool,
        ip: Option<String>,
    ) -> bool {
        let Some((_, n)) = self.account else { return false };
        let rule = hub.throttle.policy().account;
        if !rule.locks_at(n) {
            return false;
        }
        let lock = match rule.verdict(n, 0, 0) {
            Verdict::Locked(d) => d,
            _ => rule.lock,
        };
        let retry_after_s = secs(lock);
        tracing::warn!(tenant = %tenant, user = %user, failures = n, lock_s = retry_after_s, "account locked after failed logins");
        let actor = Initiator { user: Some(user.clone()), session: None, ip };
        let result =
            if n >= rule.hard_limit { "locked".to_owned() } else { format!("locked {retry_after_s}s") };
        sessions::audit(hub, tenant, &actor, AuditAction::AccountLock, Some(format!("user:{user}")), &result)
            .await;
        if exists {
            let ev = SessionEvent::AccountLocked { failures: n, retry_after_s };
            sessions::emit(hub, tenant, user, hush_protocol::ids::DeviceId::PRIMARY, None, ev).await;
        }
        true
    }
}

/// Clears an account's failed logins and lock (administrator unlock, password reset).
pub async fn unlock(hub: &Hub, tenant: &TenantId, user: &UserId) {
    hub.bus.release_attempt(&account_key(tenant, user), Release::Reset).await;
}
