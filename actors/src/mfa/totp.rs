//! The TOTP factor: enrolment (a sealed secret, active once confirmed with a first code),
//! turning it off, and checking a code against it (each time step accepted once per user,
//! across the cluster).

use hush_protocol::api::{BackupCodes, MfaMethod, Secret};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::otp::{self, Algorithm, OtpSecret, TOTP_SECRET_BYTES};

use crate::accounts::auth::Authed;
use crate::accounts::error::AccountError;
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::mfa::backup::new_backup_codes;
use crate::mfa::codes::{normalize_code, Outcome};
use crate::mfa::data::{drop_trust_of_user, put_session, stored_policy, update_user, user_rec};
use crate::mfa::error::{MfaError, Result};
use crate::mfa::notify::{changed, initiator};
use crate::mfa::records::{SessionMfaRec, TotpFactor};
use crate::mfa::seal::{aad, random_bytes};
use crate::mfa::stepup::require_step_up;
use crate::now_ms;
use crate::sessions;

/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Hush";

/// Starts a TOTP enrolment: a new secret, not active until confirmed. Returns the secret and
/// the `otpauth://` URI. Open under every level: under `off` the factor is not asked at login
/// but is what an administrator steps up with.
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
    sessions::audit(hub, me.tenant(), &initiator(me, ip), AuditAction::MfaTotpEnroll, None, "started").await;
    Ok((secret, uri, alg, digits))
}

/// Confirms the enrolment: the first code turns it on; returns the backup codes (shown once).
/// The session counts as verified from now, with method [`MfaMethod::Enrollment`]: enough for
/// actions on the user's own account, not a step-up for actions on others (whoever holds a
/// stolen token could enrol a factor of their own).
pub async fn confirm(hub: &Hub, me: &Authed, code: &Secret, ip: Option<String>) -> Result<BackupCodes> {
    let (tenant, user) = (me.tenant(), me.user());
    let now = now_ms();
    let (pending, step) = match first_code(hub, tenant, user, code, now).await? {
        (pending, Some(step)) => (pending, step),
        (_, None) => {
            sessions::audit(hub, tenant, &initiator(me, ip), AuditAction::MfaTotpConfirm, None, "denied")
                .await;
            return Err(MfaError::InvalidCode);
        }
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
    let verified = SessionMfaRec::verified(p.policy.level, MfaMethod::Enrollment, now);
    put_session(hub, &me.session.id, &verified).await?;
    sessions::audit(hub, tenant, &initiator(me, ip), AuditAction::MfaTotpConfirm, None, "ok").await;
    changed(hub, me, "totp_enabled").await;
    tracing::info!(tenant = %tenant, user = %user, "TOTP enabled");
    Ok(BackupCodes { codes })
}

/// The pending enrolment and the time step `code` matches in it (none: a wrong code).
async fn first_code(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    code: &Secret,
    now: u64,
) -> Result<(TotpFactor, Option<u64>)> {
    let key = hub.mfa_key.get().ok_or(MfaError::NoKey)?;
    let (_, snapshot) = user_rec(hub, tenant, user).await?;
    if snapshot.totp.is_some() {
        return Err(MfaError::AlreadyEnrolled);
    }
    let pending = snapshot.pending_totp.ok_or(MfaError::NotEnrolled)?;
    let secret = key.open(&pending.sealed, &aad(tenant, user))?;
    let code = normalize_code(code.expose());
    let step = otp::totp_match(&secret, &code, now / 1000, pending.algorithm, pending.digits)
        .map_err(|_| MfaError::Account(AccountError::Internal))?;
    Ok((pending, step))
}

/// Checks a (normalized) TOTP code against the user's factor: a code of a time step after the
/// last accepted one is accepted (and raises it), anything else counts as a failure.
pub(crate) async fn verify_totp(
    hub: &Hub,
    tenant: &TenantId,
    user: &UserId,
    code: &str,
    now: u64,
) -> Result<Outcome> {
    let key = hub.mfa_key.get().ok_or(MfaError::NoKey)?;
    let unix = now / 1000;
    let aad = aad(tenant, user);
    update_user(hub, tenant, user, |rec| {
        if let Some(until) = rec.locked(now) {
            return Ok(Outcome::Locked(until));
        }
        let Some(f) = rec.totp.as_ref() else { return Ok(Outcome::NotEnrolled) };
        let secret = key.open(&f.sealed, &aad)?;
        let step = otp::totp_match(&secret, code, unix, f.algorithm, f.digits)
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
    .await
}

/// Turns TOTP off (needs a step-up): the factor, backup codes and trusted devices go.
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
    sessions::audit(hub, me.tenant(), &initiator(me, ip), AuditAction::MfaTotpDisable, None, "ok").await;
    changed(hub, me, "totp_disabled").await;
    tracing::info!(tenant = %me.tenant(), user = %me.user(), "TOTP disabled");
    Ok(())
}
