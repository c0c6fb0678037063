//! The login, above accounts and MFA: it checks the password (throttled), decides with MFA
//! whether the login must pass a challenge, registers the device (or, for a challenged login,
//! only reserves it), opens the session and tells the user's devices. [`verify`] answers a
//! session's challenge and applies the device change its login left pending.
//!
//! Accounts and MFA do not call each other for this: this module is the only one that calls
//! both.

use hush_protocol::api::{
    DeviceRequest, LoginRequest, LoginResponse, MfaState, MfaVerified, Secret, SessionMfa,
};
use hush_protocol::ids::{DeviceAddress, DeviceId, RegistrationId};
use hush_protocol::limits::MAX_PASSWORD_BYTES;
use hush_protocol::wire::SessionEvent;
use hush_store::{SessionRecord, UserRecord};

use crate::accounts::auth::Authed;
use crate::accounts::credentials::{claim_one_time, credential, mark_password_change, Credential};
use crate::accounts::devices::{complete_pending_device, register_device, reserve_device, Registered};
use crate::accounts::error::AccountError;
use crate::accounts::passwords::verify_password;
use crate::accounts::tokens::{new_public_id, new_token, token_hash};
use crate::audit::AuditAction;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::mfa::challenge::{check_answer, mark_verified, Factor};
use crate::mfa::data::session_rec;
use crate::mfa::decision::{login_must_challenge, on_login, set_pending_device};
use crate::mfa::error::MfaError;
use crate::mfa::notify::initiator;
use crate::now_ms;
use crate::sessions::{self, Initiator};
use crate::throttle::{self, Guard};

/// Where a login came from (kept in the session record).
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    /// Peer address.
    pub ip: Option<String>,
    /// `User-Agent` header, truncated.
    pub user_agent: Option<String>,
}

/// An MFA error as the login reports it: account and store errors as they are, anything else
/// as internal.
fn account_error(e: MfaError) -> AccountError {
    match e {
        MfaError::Account(a) => a,
        _ => AccountError::Internal,
    }
}

/// Logs in with a password, registering or re-registering the device, and opens a session.
pub async fn login(hub: &Hub, req: LoginRequest, client: ClientInfo) -> Result<LoginResponse, AccountError> {
    login_for(hub, req, client, false).await
}

/// A login that only administrators may make (the admin console's sign-in): anyone else's
/// correct password gets [`AccountError::Forbidden`], audited as a denied login, with no device
/// registered and no session opened.
pub async fn admin_login(
    hub: &Hub,
    req: LoginRequest,
    client: ClientInfo,
) -> Result<LoginResponse, AccountError> {
    login_for(hub, req, client, true).await
}

async fn login_for(
    hub: &Hub,
    req: LoginRequest,
    client: ClientInfo,
    admins_only: bool,
) -> Result<LoginResponse, AccountError> {
    if req.password.expose().len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Unauthorized);
    }
    let actor = Initiator { user: Some(req.user.clone()), session: None, ip: client.ip.clone() };
    let (user, one_time) = check_password(hub, &req, &client, &actor).await?;
    if admins_only && !user.admin {
        tracing::info!(tenant = %req.tenant, "admin sign-in refused: not an administrator");
        sessions::audit(hub, &req.tenant, &actor, AuditAction::Login, None, "not_admin").await;
        return Err(AccountError::Forbidden);
    }
    let device = login_device(hub, &user, &req).await?;
    let token = new_token();
    let session = open_session(hub, &user, device.id, one_time, &token, client).await?;
    let mfa = settle_mfa(hub, &user, &session, &req, device.pending).await?;
    announce(hub, &user, &session, actor, device.added).await;
    Ok(LoginResponse {
        token,
        session_id: session.id,
        tenant: user.tenant,
        user: user.user,
        device: device.id,
        admin: user.admin,
        registration_id: device.registration_id,
        mfa: Some(mfa),
        password_change_required: one_time,
    })
}

/// Checks the login's password, throttled per account and client address; a one-time password
/// serves one login. Returns the user and whether the password was a one-time one.
async fn check_password(
    hub: &Hub,
    req: &LoginRequest,
    client: &ClientInfo,
    actor: &Initiator,
) -> Result<(UserRecord, bool), AccountError> {
    let guard = match throttle::password_attempt(hub, &req.tenant, &req.user, client.ip.as_deref()).await {
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
        sessions::audit(hub, &req.tenant, actor, AuditAction::Login, None, "denied").await;
        guard.failed(hub, &req.tenant, &req.user, exists, client.ip.clone()).await;
        return Err(AccountError::Unauthorized);
    };
    let one_time = cred.as_ref().is_some_and(|c| c.one_time);
    let guard = match cred.as_ref().filter(|c| c.one_time) {
        Some(c) => claim_one_time_login(hub, req, client, actor, &user, c, guard).await?,
        None => guard,
    };
    guard.succeeded(hub).await;
    Ok((user, one_time))
}

/// Claims the one login a one-time password serves; a second login with it is refused (and
/// counted as a failure).
async fn claim_one_time_login(
    hub: &Hub,
    req: &LoginRequest,
    client: &ClientInfo,
    actor: &Initiator,
    user: &UserRecord,
    c: &Credential,
    guard: Guard,
) -> Result<Guard, AccountError> {
    if claim_one_time(hub, user, c).await? {
        return Ok(guard);
    }
    Metrics::add(&hub.metrics.login_failures, 1);
    tracing::info!(tenant = %req.tenant, "login refused: one-time password already used");
    sessions::audit(hub, &req.tenant, actor, AuditAction::Login, None, "one_time_password_used").await;
    guard.failed(hub, &req.tenant, &req.user, true, client.ip.clone()).await;
    Err(AccountError::OneTimePasswordUsed)
}

/// The device of a login: registered, or (for a login that must pass a challenge) reserved.
struct LoginDevice {
    id: DeviceId,
    added: bool,
    registration_id: RegistrationId,
    /// The device change a challenged login asked for, applied once it verifies.
    pending: Option<DeviceRequest>,
}

/// Registers the login's device, or reserves it if the login must pass a challenge first.
async fn login_device(hub: &Hub, user: &UserRecord, req: &LoginRequest) -> Result<LoginDevice, AccountError> {
    // A login that must pass an MFA challenge changes no device yet (no new device, no new
    // registration id or identity key, no pre-keys deleted): a password alone must not let
    // anyone re-key or add a device. The change is kept with the pending session and applied
    // when it verifies (`complete_pending_device`).
    let defer = login_must_challenge(hub, user, req.device.id, req.trusted_device_token.as_ref())
        .await
        .map_err(account_error)?;
    if defer {
        let (id, registration_id, request) = reserve_device(hub, user, &req.device).await?;
        return Ok(LoginDevice { id, added: false, registration_id, pending: Some(request) });
    }
    let Registered { device, added, registration_id } = register_device(hub, user, &req.device, None).await?;
    Ok(LoginDevice { id: device, added, registration_id, pending: None })
}

/// Creates the login's session (marked first if it must change its password).
async fn open_session(
    hub: &Hub,
    user: &UserRecord,
    device: DeviceId,
    one_time: bool,
    token: &Secret,
    client: ClientInfo,
) -> Result<SessionRecord, AccountError> {
    let session_id = new_public_id();
    if one_time {
        // Marked before the session exists, so no moment sees it unrestricted.
        mark_password_change(hub, &session_id).await?;
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
    Ok(session)
}

/// Decides the new session's MFA state; keeps a reserved device change with a pending session,
/// or applies it at once if the policy no longer challenges the login. If that fails, the
/// session is revoked.
async fn settle_mfa(
    hub: &Hub,
    user: &UserRecord,
    session: &SessionRecord,
    req: &LoginRequest,
    pending: Option<DeviceRequest>,
) -> Result<SessionMfa, AccountError> {
    let existing_device = req.device.id.is_some();
    let mfa = on_login(hub, user, session, existing_device, req.trusted_device_token.as_ref())
        .await
        .map_err(account_error)?;
    let Some(request) = pending else { return Ok(mfa) };
    let r = if mfa.state == MfaState::MfaPending {
        set_pending_device(hub, &session.id, request).await.map_err(account_error)
    } else {
        // The policy changed between the two decisions: no challenge after all.
        complete_pending_device(hub, user, session, &request).await
    };
    if let Err(e) = r {
        let _ =
            hub.store.revoke_session(&session.id, crate::audit::RevocationReason::Logout.at(now_ms())).await;
        return Err(e);
    }
    Ok(mfa)
}

/// Counts, audits and logs a successful login, and tells the user's devices (a new device,
/// then the new login).
async fn announce(hub: &Hub, user: &UserRecord, session: &SessionRecord, actor: Initiator, added: bool) {
    let device = session.device.device;
    Metrics::add(&hub.metrics.logins, 1);
    let actor = Initiator { session: Some(session.id.clone()), ..actor };
    let target = Some(format!("session:{} device:{}", session.id, session.device));
    sessions::audit(hub, &user.tenant, &actor, AuditAction::Login, target, "ok").await;
    if added {
        let ev = SessionEvent::DeviceAdded { device };
        sessions::emit(hub, &user.tenant, &user.user, device, Some(device), ev).await;
    }
    let ev = SessionEvent::NewLogin { session_id: session.id.clone(), device, ip: session.ip.clone() };
    sessions::emit(hub, &user.tenant, &user.user, device, Some(device), ev).await;
    tracing::info!(tenant = %user.tenant, user = %user.user, device = %device, session = %session.id, "login");
}

/// Answers this session's MFA challenge (a login's or a step-up's) with a code of `factor`. A
/// success marks the session verified (method and time) and may trust the device (`remember`);
/// the device change a challenged login asked for is applied first (if it cannot be, the
/// session stays pending and the error is returned). A failure is counted, told to every device
/// of the user, and may lock the factor.
pub async fn verify(
    hub: &Hub,
    me: &Authed,
    challenge_id: &str,
    code: &Secret,
    factor: Factor,
    remember: bool,
    ip: Option<String>,
) -> Result<MfaVerified, MfaError> {
    let answered = check_answer(hub, me, challenge_id, code, factor, ip.clone()).await?;
    // The device change the login asked for happens only now.
    if let Some(request) = session_rec(hub, &me.session.id).await?.pending_device {
        let account = hub.store.get_user(me.tenant(), me.user()).await?.ok_or(AccountError::Unauthorized)?;
        if let Err(e) = complete_pending_device(hub, &account, &me.session, &request).await {
            let target = Some(format!("session:{} device:{}", me.session.id, me.session.device));
            sessions::audit(
                hub,
                me.tenant(),
                &initiator(me, ip),
                AuditAction::DeviceRegister,
                target,
                "failed",
            )
            .await;
            return Err(MfaError::Account(e));
        }
    }
    mark_verified(hub, me, answered, remember, ip).await
}
