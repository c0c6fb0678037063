//! Benchmarks and the load generator, and the setup the load binaries share.

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
