//! Benchmarks and the load generator, and the setup the load binaries share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use hush_client::{random_registration_id, Client, ClientError, Session};
use hush_protocol::api::{DeviceRequest, Secret};
use hush_protocol::ids::{DeviceId, TenantId, UserId};

/// A request for a new device (with keys, so senders see it), or for device `id` of the user.
pub fn device_request(id: Option<DeviceId>, name: &str) -> anyhow::Result<DeviceRequest> {
    Ok(match id {
        None => hush_client::relay_only_device(Some(name.into()))?,
        Some(id) => DeviceRequest {
            id: Some(id),
            registration_id: random_registration_id(),
            name: Some(name.into()),
            identity_key: None,
            keys: None,
        },
    })
}

/// Logs the tenant administrator in on its device 1 (the one its first login registered), or
/// on a new device when it has none, so repeated runs do not pile up devices (a user has at
/// most 6).
pub async fn admin_login(
    client: &Client,
    tenant: &TenantId,
    password: &str,
    name: &str,
) -> anyhow::Result<Session> {
    let admin = UserId::new("admin")?;
    let secret = Secret::new(password);
    let session =
        match client.login(tenant, &admin, &secret, device_request(Some(DeviceId::PRIMARY), name)?).await {
            Ok(s) => s,
            Err(ClientError::Http { status, .. }) if status != 401 && status != 429 => client
                .login(tenant, &admin, &secret, device_request(None, name)?)
                .await
                .context("admin login")?,
            Err(e) => return Err(e).context("admin login"),
        };
    if session.login_info().password_change_required {
        anyhow::bail!(
            "the administrator's password is one-time: log in once, set a new password (POST /v1/account/password) and pass that one"
        );
    }
    Ok(session)
}

/// Creates the users `{prefix}-{i}` for `i < n` through `admin` (existing ones are kept) and
/// logs each in on its device 1, registering it on the first run, so repeated runs reuse one
/// device per user instead of piling up offline devices. At most `concurrency` logins run at
/// once (Argon2id is costly). Returns the sessions in user order.
pub async fn login_users(
    admin: &Session,
    client: &Client,
    tenant: &TenantId,
    prefix: &str,
    n: usize,
    password: &Secret,
    concurrency: usize,
) -> anyhow::Result<Vec<Session>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut logins = Vec::with_capacity(n);
    for i in 0..n {
        let user = UserId::new(format!("{prefix}-{i}"))?;
        let (admin, client, tenant, password, sem, name) =
            (admin.clone(), client.clone(), tenant.clone(), password.clone(), sem.clone(), prefix.to_owned());
        logins.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            match admin.create_user(&user, &password, false).await {
                Ok(_) | Err(ClientError::Http { status: 409, .. }) => {}
                Err(e) => return Err(anyhow::anyhow!("create {user}: {e}")),
            }
            let existing =
                client.login(&tenant, &user, &password, device_request(Some(DeviceId::PRIMARY), &name)?);
            match existing.await {
                Ok(s) => Ok::<Session, anyhow::Error>(s),
                Err(_) => Ok(client.login(&tenant, &user, &password, device_request(None, &name)?).await?),
            }
        }));
    }
    let mut sessions = Vec::with_capacity(n);
    for l in logins {
        sessions.push(l.await??);
    }
    Ok(sessions)
}

/// The bench administrator's TOTP secret, kept between runs of the tools that need a step-up.
#[derive(serde::Serialize, serde::Deserialize)]
struct TotpFile {
    secret: String,
    algorithm: hush_protocol::otp::Algorithm,
    digits: u32,
    /// The last time step whose code was used (each step's code is accepted once).
    last_step: u64,
}

fn save_totp(path: &Path, f: &TotpFile) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    out.write_all(serde_json::to_string(f)?.as_bytes())?;
    Ok(())
}

/// The file [`admin_step_up`] keeps the administrator's TOTP secret in, for node `server`.
pub fn totp_file(server: &str) -> PathBuf {
    let clean: String = server.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    PathBuf::from(format!("/tmp/hush-bench-admin-totp-{clean}.json"))
}

/// Proves the administrator's second factor for this session, the step-up that sensitive
/// actions (revoking every session) need: on the first run it enrols TOTP and keeps the secret in
/// `path` (mode 0600, a benchmark administrator's only), then answers a challenge with the code
/// of a time step not used before (waiting up to 30 s for one).
pub async fn admin_step_up(admin: &Session, path: &Path) -> anyhow::Result<()> {
    use hush_protocol::otp::{step_of, totp, OtpSecret};
    let now =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let status = admin.mfa_status().await.context("MFA status")?;
    let mut file: Option<TotpFile> =
        std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok());
    if !status.totp_enabled {
        let e = admin.totp_enroll().await.context("TOTP enrolment")?;
        let secret = OtpSecret::from_base32(e.secret.expose())?;
        let t = now();
        let code = totp(&secret, t, e.algorithm, e.digits)?;
        admin.totp_confirm(&Secret::new(code)).await.context("TOTP confirmation")?;
        let f = TotpFile {
            secret: e.secret.expose().to_owned(),
            algorithm: e.algorithm,
            digits: e.digits,
            last_step: step_of(t),
        };
        save_totp(path, &f)?;
        file = Some(f);
    }
    let mut f = file.ok_or_else(|| {
        anyhow::anyhow!("the administrator has TOTP on, but {} does not hold its secret", path.display())
    })?;
    let secret = OtpSecret::from_base32(&f.secret)?;
    while step_of(now()) <= f.last_step {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let t = now();
    let code = totp(&secret, t, f.algorithm, f.digits)?;
    let challenge = admin.mfa_challenge().await.context("MFA challenge")?;
    admin
        .mfa_answer(&challenge.challenge_id, &Secret::new(code), false, false)
        .await
        .context("MFA answer")?;
    f.last_step = step_of(t);
    save_totp(path, &f)
}
