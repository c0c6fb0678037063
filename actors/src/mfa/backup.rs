//! Backup codes: ten single-use codes, stored only as Argon2id hashes (their own, lighter
//! parameters), checked all at once on the hashing pool.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm as ArgonAlg, Argon2, Params, Version};
use hush_protocol::api::{BackupCodes, Secret};
use hush_protocol::ids::{TenantId, UserId};

use crate::accounts::auth::Authed;
use crate::accounts::error::AccountError;
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::limits::BACKUP_CODES;
use crate::mfa::codes::{normalize_code, Outcome};
use crate::mfa::data::{update_user, user_rec};
use crate::mfa::error::{MfaError, Result};
use crate::mfa::notify::{changed, initiator};
use crate::mfa::records::BackupCode;
use crate::mfa::seal::random_bytes;
use crate::mfa::stepup::require_step_up;
use crate::sessions;

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
pub(crate) async fn new_backup_codes(hub: &Hub) -> Result<(Vec<Secret>, Vec<BackupCode>)> {
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

/// Checks a (normalized) backup code: a match is used up, a miss counts as a failure.
pub(crate) async fn verify_backup(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    code: &str,
    now: u64,
) -> Result<Outcome> {
    let (_, snapshot) = user_rec(hub, tenant, user).await?;
    if let Some(until) = snapshot.locked(now) {
        return Ok(Outcome::Locked(until));
    }
    if snapshot.totp.is_none() {
        return Ok(Outcome::NotEnrolled);
    }
    let unused: Vec<String> =
        snapshot.backup.iter().filter(|c| c.used_ms.is_none()).map(|c| c.hash.clone()).collect();
    let matched = matching_hash(hub, unused, code.to_owned()).await?;
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

/// The hash of `unused` that `code` matches, if any. Every unused code is checked (one job on
/// the hashing pool), so the time does not say which.
async fn matching_hash(hub: &Hub, unused: Vec<String>, code: String) -> Result<Option<String>> {
    hub.hashing
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
        .ok_or(MfaError::Account(AccountError::Busy))
}

/// A new set of backup codes (needs a step-up); the old set is void.
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
    sessions::audit(hub, me.tenant(), &initiator(me, ip), AuditAction::MfaBackupRegenerate, None, "ok").await;
    changed(hub, me, "backup_codes_regenerated").await;
    Ok(BackupCodes { codes })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backup_code_hash_round_trip() {
        let kdf = backup_kdf();
        let h = kdf.hash_password(b"abcdeabcde").unwrap().to_string();
        assert!(h.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{h}");
        assert!(kdf.verify_password(b"abcdeabcde", h.as_str()).is_ok());
        assert!(kdf.verify_password(b"abcdeabcdf", h.as_str()).is_err());
        assert_eq!(normalize_code(" ABCDE-abcde "), "abcdeabcde");
    }
}
