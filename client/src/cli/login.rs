//! `hush login` and `hush logout`.
//!
//! A login completes or leaves nothing behind. A new device's state is staged in
//! `<profile>.state.new` (private halves on disk before any public key is sent); the login
//! request carries the device's signed pre-key and Kyber last-resort key, so the node registers
//! device and keys at once (a refused key refuses the login and registers nothing). Then: the
//! MFA challenge if the node asks for one (a TOTP or backup code: `--code`, else `Code:`), a
//! new password if the node says the password was one-time (`--new-password`, else asked for
//! twice), the one-time pre-keys, and only then are `<profile>.state` and `<profile>.json`
//! written. A failure before the device is registered logs the session out and removes the
//! staged state.

use anyhow::{anyhow, bail, Context};
use hush_client::state::DeviceState;
use hush_client::{random_registration_id, upload_request, ClientError, Session};
use hush_protocol::api::{DeviceRequest, LoginResponse, Secret};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::Payload;

use super::profile::{
    ca_file_flag, client, ensure_home, load, remove_if_present, save, session_of, staged_state_path,
    state_path, Profile,
};
use super::prompt::{ask_line, ask_secret, interactive};

/// Attempts at the `Code:` prompt on a terminal (a script gets one).
const CODE_ATTEMPTS: usize = 3;

/// What `hush login` was given.
pub struct LoginArgs {
    /// The node.
    pub server: String,
    /// Tenant.
    pub tenant: String,
    /// User name.
    pub user: String,
    /// Password, if given.
    pub password: Option<String>,
    /// Device label.
    pub device_name: String,
    /// The MFA code (TOTP or backup), if given.
    pub code: Option<String>,
    /// Trust this device after the MFA challenge.
    pub remember_device: bool,
    /// The new password when the node requires one, if given.
    pub new_password: Option<String>,
    /// Log the profile's device of another account out and replace it.
    pub force: bool,
}

/// `hush login`.
pub async fn login(profile: &str, a: LoginArgs) -> anyhow::Result<()> {
    let tenant = TenantId::new(a.tenant.clone())?;
    let user = UserId::new(a.user.clone())?;
    let existing = load(profile)?;
    let mut kept = None;
    let mut trusted = None;
    let mut kept_ca = None;
    if let Some(p) = existing {
        if p.server == a.server {
            kept_ca = p.ca_file.clone();
        }
        let owner = p.owner();
        let same = owner.as_ref().is_some_and(|(t, u)| *t == tenant && *u == user) && p.server == a.server;
        if same {
            kept = DeviceState::load_file(&state_path(profile)?)?.map(|st| (st, p.device));
            trusted = p.trusted_device_token.clone();
        } else {
            let who = owner.map(|(t, u)| format!("{t}/{u}")).unwrap_or_else(|| "another account".into());
            if !a.force {
                bail!(
                    "profile '{profile}' belongs to {who} on {}: use another --profile, or --force to log that device out and replace it",
                    p.server
                );
            }
            if let Some(l) = p.login {
                match client(&p.server, p.ca_file.as_deref())?.resume(l).logout().await {
                    Ok(()) | Err(ClientError::Http { status: 401, .. }) => {}
                    Err(e) => {
                        return Err(anyhow!(e).context(format!(
                            "cannot log out {who}'s device of profile '{profile}' (nothing changed)"
                        )))
                    }
                }
            }
            remove_if_present(&state_path(profile)?)?;
            remove_if_present(&super::profile::profile_path(profile)?)?;
            eprintln!("Logged out {who}'s device of profile '{profile}'.");
        }
    }
    let password = ask_secret(a.password.clone(), "Password: ")?;
    let fresh = kept.is_none();
    let (mut state, device) = match kept {
        Some(k) => k,
        None => (DeviceState::generate(random_registration_id())?, None),
    };
    // Without --ca-file, a new login to the same node keeps the profile's CA.
    let ca_file = ca_file_flag().or(kept_ca);
    let staged = staged_state_path(profile)?;
    if fresh {
        ensure_home()?;
        state.save_file(&staged)?;
    }
    let done = complete(
        &a,
        ca_file.as_deref(),
        &tenant,
        &user,
        &password,
        device,
        trusted,
        fresh,
        &mut state,
        &staged,
    )
    .await;
    let (info, trusted) = match done {
        Ok(d) => d,
        Err(e) => {
            if fresh {
                remove_if_present(&staged)?;
            }
            return Err(e);
        }
    };
    if fresh {
        state.save_file(&staged)?;
        std::fs::rename(&staged, state_path(profile)?).context("cannot save the device state")?;
    } else {
        state.save_file(&state_path(profile)?)?;
    }
    save(
        profile,
        &Profile {
            server: a.server.clone(),
            ca_file,
            registration_id: state.registration_id(),
            device: Some(info.device),
            account: Some((info.tenant.clone(), info.user.clone())),
            trusted_device_token: trusted,
            login: Some(info.clone()),
        },
    )?;
    println!("Logged in as {}/{} on device {}.", info.tenant, info.user, info.device);
    Ok(())
}

/// The login itself; on an error the session (if any) is logged out again.
#[allow(clippy::too_many_arguments)]
async fn complete(
    a: &LoginArgs,
    ca_file: Option<&std::path::Path>,
    tenant: &TenantId,
    user: &UserId,
    password: &Secret,
    device: Option<hush_protocol::ids::DeviceId>,
    trusted: Option<Secret>,
    fresh: bool,
    state: &mut DeviceState,
    staged: &std::path::Path,
) -> anyhow::Result<(LoginResponse, Option<Secret>)> {
    let req = DeviceRequest {
        id: device,
        registration_id: state.registration_id(),
        name: Some(a.device_name.clone()),
        identity_key: Some(Payload(state.identity_key().serialize().to_vec())),
        keys: if fresh { Some(upload_request(&state.signed_upload()?)) } else { None },
    };
    let client = client(&a.server, ca_file)?;
    let session = client.login_trusted(tenant, user, password, req, trusted.clone()).await?;
    state.set_registration_id(session.login_info().registration_id);
    match after_login(a, &session, password, trusted, fresh, state, staged).await {
        Ok(r) => Ok(r),
        Err(e) => {
            // A new device the node registered at this login is unlinked again (its keys,
            // queue and sessions go with it), so no sender ever encrypts to a device whose
            // private keys this failed login throws away. (A login still waiting for its MFA
            // challenge registered nothing: the node answers 401 and nothing changes.)
            if fresh {
                let _ = session.remove_device(session.login_info().device).await;
            }
            let _ = session.logout().await;
            Err(e)
        }
    }
}

async fn after_login(
    a: &LoginArgs,
    session: &Session,
    password: &Secret,
    mut trusted: Option<Secret>,
    fresh: bool,
    state: &mut DeviceState,
    staged: &std::path::Path,
) -> anyhow::Result<(LoginResponse, Option<Secret>)> {
    let mut info = session.login_info().clone();
    if session.mfa_pending() {
        let verified = challenge(a, session).await?;
        info.mfa = Some(verified.session);
        if verified.trusted_device_token.is_some() {
            trusted = verified.trusted_device_token;
        }
    }
    if session.password_change_required() {
        eprintln!("This password was one-time: choose a new one.");
        let new = new_password(a.new_password.clone())?;
        session.change_password(password, &new).await.context("the new password was refused")?;
        eprintln!("Password changed.");
    }
    if fresh {
        let up = state.one_time_upload()?;
        state.save_file(staged)?;
        // The device already has its signed keys; without one-time keys it still works, and
        // the node asks for them (PreKeysLow) when it next connects.
        if let Err(e) = session.upload_keys(&upload_request(&up)).await {
            eprintln!("warning: one-time pre-keys not uploaded ({e}); `hush listen` uploads them when the node asks");
        }
    }
    Ok((info, trusted))
}

/// Answers the login's MFA challenge with a TOTP code (digits) or a backup code.
async fn challenge(a: &LoginArgs, session: &Session) -> anyhow::Result<hush_protocol::api::MfaVerified> {
    let challenge = session
        .login_info()
        .mfa
        .as_ref()
        .and_then(|m| m.challenge.as_ref())
        .map(|c| c.challenge_id.clone())
        .context("the node asks for a second factor but sent no challenge")?;
    let attempts = if a.code.is_none() && interactive() { CODE_ATTEMPTS } else { 1 };
    eprintln!("This account has two-factor authentication: enter a code from your authenticator app, or a backup code.");
    let mut last = None;
    for _ in 0..attempts {
        let code = ask_line(a.code.clone(), "Code: ")?;
        let backup = !code.chars().all(|c| c.is_ascii_digit());
        match session.mfa_answer(&challenge, &Secret::new(code), backup, a.remember_device).await {
            Ok(v) => return Ok(v),
            Err(e @ ClientError::Http { status: 401, .. }) => {
                eprintln!("That code was not accepted.");
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map(anyhow::Error::from).unwrap_or_else(|| anyhow!("no code")))
}

/// The new password: given, or asked for twice.
pub fn new_password(given: Option<String>) -> anyhow::Result<Secret> {
    let new = match given {
        Some(p) => Secret::new(p),
        None => {
            let first = ask_secret(None, "New password: ")?;
            let again = ask_secret(None, "New password again: ")?;
            if first != again {
                bail!("the two new passwords differ; nothing changed");
            }
            first
        }
    };
    if new.expose().is_empty() {
        bail!("the new password is empty; nothing changed");
    }
    Ok(new)
}

/// `hush logout`.
pub async fn logout(profile: &str) -> anyhow::Result<()> {
    let s = session_of(profile)?;
    s.logout().await?;
    if let Some(mut p) = load(profile)? {
        p.login = None;
        save(profile, &p)?;
    }
    println!("Logged out.");
    Ok(())
}
