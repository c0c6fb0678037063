//! Per-request authentication: a bearer token names a live session; the session's tenant
//! policy may expire it now; the caller learns its user's role, its MFA state and whether it
//! must change its password first.

use hush_protocol::ids::{TenantId, UserId};
use hush_store::{SessionRecord, UserRecord};

use crate::accounts::credentials::password_change_required;
use crate::accounts::error::AccountError;
use crate::accounts::tokens::token_hash;
use crate::hub::Hub;
use crate::mfa::data::session_rec;
use crate::mfa::records::SessionMfaRec;
use crate::now_ms;
use crate::sessions;
use crate::tenant;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Authed {
    /// The session (never revoked at the time of the check).
    pub session: SessionRecord,
    /// Whether the user administers its tenant.
    pub admin: bool,
    /// The session's MFA state (a pending session may use only the MFA routes).
    pub mfa: SessionMfaRec,
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
    check_lifetime(hub, &session, &user).await?;
    let (mfa, change) =
        tokio::join!(session_rec(hub, &session.id), password_change_required(hub, &session.id));
    Ok(Authed { session, admin: user.admin, mfa: mfa?, password_change_required: change? })
}

/// The tenant's session lifetimes: an expired session is revoked now (once, on whichever node
/// sees it first) and refused like a revoked one, with its own error; a live one is marked
/// seen.
async fn check_lifetime(hub: &Hub, session: &SessionRecord, user: &UserRecord) -> Result<(), AccountError> {
    let settings = hub.tenants.settings(&*hub.store, &session.device.tenant).await?;
    let policy = &settings.sessions;
    let now = now_ms();
    let (idle, absolute) = policy.limits_ms(user.admin);
    if idle.is_some() || absolute.is_some() {
        let last_seen = if idle.is_some() {
            hub.tenants.last_seen(&*hub.store, session, idle).await?
        } else {
            session.created_ms
        };
        if let Some(why) = tenant::expiry(policy, user.admin, session, last_seen, now) {
            sessions::expire(hub, session, why).await;
            return Err(AccountError::SessionExpired);
        }
    }
    hub.tenants.touch(&session.id, now, tenant::seen_granularity_ms(policy, user.admin));
    Ok(())
}
