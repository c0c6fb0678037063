//! Profiles: one per logged-in device, in `$HUSH_HOME` (default `~/.hush`), which is created
//! with mode 0700 (and its parents) on first use. `<name>.json` (server, device, session) and
//! `<name>.state` (the device's end-to-end state) are 0600 and written atomically (a temporary
//! file in the same folder, synced, then renamed over the old one).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hush_client::state::DeviceState;
use hush_client::Client;
use hush_protocol::api::{LoginResponse, Secret};
use hush_protocol::ids::{DeviceId, RegistrationId, TenantId, UserId};
use serde::{Deserialize, Serialize};

/// What `<name>.json` holds.
#[derive(Serialize, Deserialize)]
pub struct Profile {
    /// The node's base URL.
    pub server: String,
    /// The private CA trusted for `server` (absolute path), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The device's registration id.
    pub registration_id: RegistrationId,
    /// The device registered for this profile.
    pub device: Option<DeviceId>,
    /// The session (absent once logged out).
    pub login: Option<LoginResponse>,
    /// The account the device belongs to (kept after logout, so another account's login into
    /// this profile is noticed).
    #[serde(default)]
    pub account: Option<(TenantId, UserId)>,
    /// The token of a `--remember-device` MFA verification: later logins skip the challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_device_token: Option<Secret>,
}

impl Profile {
    /// The account of the profile's device, if it has one.
    pub fn owner(&self) -> Option<(TenantId, UserId)> {
        self.login.as_ref().map(|l| (l.tenant.clone(), l.user.clone())).or_else(|| self.account.clone())
    }
}

/// `--ca-file` of this run (set once, first thing in `run`): wins over the profile's.
static CA_FILE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Records `--ca-file` (made absolute, so a profile saved with it works from any folder).
pub fn set_ca_file(ca: Option<&Path>) -> anyhow::Result<()> {
    let ca = ca.map(std::path::absolute).transpose().context("--ca-file")?;
    let _ = CA_FILE.set(ca);
    Ok(())
}

/// `--ca-file` of this run, if given.
pub fn ca_file_flag() -> Option<PathBuf> {
    CA_FILE.get().cloned().flatten()
}

/// A client of `server` trusting the system's roots, plus `--ca-file` or else `profile_ca`.
pub fn client(server: &str, profile_ca: Option<&Path>) -> anyhow::Result<Client> {
    match CA_FILE.get().and_then(|c| c.as_deref()).or(profile_ca) {
        Some(ca) => Ok(Client::builder(server).ca_file(ca).build()?),
        None => Ok(Client::new(server)),
    }
}

/// The folder of every profile.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("HUSH_HOME") {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    base.join(".hush")
}

/// Creates the profile folder (0700, parents included) if it is missing.
pub fn ensure_home() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let h = home();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&h)
        .with_context(|| format!("cannot create the profile folder {}", h.display()))?;
    Ok(h)
}

/// `<home>/<name>.json`, after checking the name.
pub fn profile_path(name: &str) -> anyhow::Result<PathBuf> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("profile names are letters, digits, '-' and '_'");
    }
    Ok(home().join(format!("{name}.json")))
}

/// `<home>/<name>.state`.
pub fn state_path(name: &str) -> anyhow::Result<PathBuf> {
    Ok(profile_path(name)?.with_extension("state"))
}

/// `<home>/<name>.state.new`: a new device's state, written before its keys are sent and
/// renamed to [`state_path`] once the login completed.
pub fn staged_state_path(name: &str) -> anyhow::Result<PathBuf> {
    Ok(profile_path(name)?.with_extension("state.new"))
}

/// Removes a file that may not exist.
pub fn remove_if_present(path: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// The device state of a profile.
pub fn load_state(name: &str) -> anyhow::Result<DeviceState> {
    DeviceState::load_file(&state_path(name)?)?.with_context(|| {
        format!("profile '{name}' has no end-to-end keys: run `hush --profile {name} login` again")
    })
}

/// The profile, if it exists.
pub fn load(name: &str) -> anyhow::Result<Option<Profile>> {
    let p = profile_path(name)?;
    match std::fs::read(&p) {
        Ok(b) => {
            Ok(Some(serde_json::from_slice(&b).with_context(|| format!("corrupt profile {}", p.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// Writes the profile atomically (0600).
pub fn save(name: &str, p: &Profile) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = profile_path(name)?;
    ensure_home()?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(p)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The saved session of a profile.
pub fn session_of(name: &str) -> anyhow::Result<hush_client::Session> {
    let p = load(name)?.ok_or_else(|| {
        super::exit::auth(format!("profile '{name}' is not logged in: run `hush --profile {name} login`"))
    })?;
    let login = p.login.ok_or_else(|| {
        super::exit::auth(format!("profile '{name}' is logged out: run `hush --profile {name} login`"))
    })?;
    Ok(client(&p.server, p.ca_file.as_deref())?.resume(login))
}

/// An exclusive lock on `<home>/<name>.lock` (flock), held by a command that changes the
/// profile's device state for as long as it may change it; released on drop.
pub struct ProfileLock {
    _file: std::fs::File,
}

/// Waits for the profile's lock.
pub fn lock(name: &str) -> anyhow::Result<ProfileLock> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = profile_path(name)?.with_extension("lock");
    ensure_home()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(ProfileLock { _file: file })
}
