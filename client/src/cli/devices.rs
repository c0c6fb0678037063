//! `hush devices`: a user's devices.

use hush_protocol::ids::UserId;

use super::profile::session_of;

/// `hush devices [USER]`.
pub async fn list(profile: &str, user: Option<String>) -> anyhow::Result<()> {
    let s = session_of(profile)?;
    let user = user.map(UserId::new).transpose()?;
    let list = s.devices(user.as_ref()).await?;
    for d in list.devices {
        println!("{}/{}  registration {}  {}", list.user, d.id, d.registration_id.get(), d.name);
    }
    Ok(())
}
