//! `hush login` and `hush logout`.

use hush_client::state::DeviceState;
use hush_client::{login_device, random_registration_id, upload_request};
use hush_protocol::ids::{TenantId, UserId};

use super::profile::{ca_file_flag, client, load, save, session_of, state_path, Profile};
use super::prompt::ask_secret;

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
}

/// `hush login`.
pub async fn login(profile: &str, a: LoginArgs) -> anyhow::Result<()> {
    let tenant = TenantId::new(a.tenant)?;
    let user = UserId::new(a.user)?;
    let password = ask_secret(a.password, "Password: ")?;
    let existing = load(profile)?;
    let same_user = existing
        .as_ref()
        .and_then(|p| p.login.as_ref())
        .is_some_and(|l| l.user == user && l.tenant == tenant);
    // The same user on this profile keeps its device and end-to-end state; anything else
    // registers a new device with a fresh identity.
    let kept = match &existing {
        Some(p) if same_user || p.login.is_none() => {
            DeviceState::load_file(&state_path(profile)?)?.map(|st| (st, p.device))
        }
        _ => None,
    };
    let fresh = kept.is_none();
    let (mut state, device) = match kept {
        Some(k) => k,
        None => (DeviceState::generate(random_registration_id())?, None),
    };
    // Without --ca-file, a new login to the same node keeps the profile's CA.
    let ca_file = ca_file_flag()
        .or_else(|| existing.as_ref().filter(|p| p.server == a.server).and_then(|p| p.ca_file.clone()));
    let client = client(&a.server, ca_file.as_deref())?;
    let session =
        login_device(&client, &tenant, &user, &password, device, Some(a.device_name), &mut state).await?;
    let info = session.login_info().clone();
    if fresh {
        // Private halves on disk before the public keys are published.
        let up = state.full_upload()?;
        state.save_file(&state_path(profile)?)?;
        session.upload_keys(&upload_request(&up)).await?;
    }
    state.save_file(&state_path(profile)?)?;
    println!("Logged in as {}/{} on device {}.", info.tenant, info.user, info.device);
    save(
        profile,
        &Profile {
            server: a.server,
            ca_file,
            registration_id: state.registration_id(),
            device: Some(info.device),
            login: Some(info),
        },
    )?;
    Ok(())
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
