//! `hush admin ...`: tenant administration.

use clap::Subcommand;
use hush_protocol::ids::UserId;

use super::profile::session_of;
use super::prompt::ask_secret;

/// Tenant administration commands.
#[derive(Subcommand)]
pub enum AdminCmd {
    /// Create a user.
    CreateUser {
        /// User name.
        user: String,
        /// Initial password (else asked for).
        #[arg(long)]
        password: Option<String>,
        /// Make the user a tenant administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    Users,
}

/// Runs an admin command.
pub async fn run(profile: &str, cmd: AdminCmd) -> anyhow::Result<()> {
    let s = session_of(profile)?;
    match cmd {
        AdminCmd::CreateUser { user, password, admin } => {
            let user = UserId::new(user)?;
            let pw = ask_secret(password, "New user's password: ")?;
            let info = s.create_user(&user, &pw, admin).await?;
            println!("Created {}/{}{}.", info.tenant, info.user, if info.admin { " (admin)" } else { "" });
        }
        AdminCmd::Users => {
            for u in s.list_users().await?.users {
                println!("{}{}", u.user, if u.admin { "  (admin)" } else { "" });
            }
        }
    }
    Ok(())
}
