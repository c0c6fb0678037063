//! `hush password`: change the logged-in user's password. The node ends the user's other
//! sessions (this profile's stays).

use clap::Args;
use hush_client::Session;

use super::prompt::ask_secret;

/// `hush password`
#[derive(Args)]
#[command(after_long_help = "Prompts for the current password and the new one twice (on a terminal without
echo, else one line each from standard input). Every other session of yours is
logged out; this profile stays logged in.
Examples:
  hush password
  printf '%s\\n' \"$OLD\" \"$NEW\" \"$NEW\" | hush password")]
pub struct PasswordArgs {
    /// The current password (else asked for).
    #[arg(long, env = "HUSH_PASSWORD", hide_env_values = true)]
    current_password: Option<String>,
    /// The new password (else asked for, twice).
    #[arg(long, env = "HUSH_NEW_PASSWORD", hide_env_values = true)]
    new_password: Option<String>,
}

/// Runs `hush password`.
pub async fn run(s: &Session, a: PasswordArgs) -> anyhow::Result<()> {
    let current = ask_secret(a.current_password, "Current password: ")?;
    let new = super::login::new_password(a.new_password)?;
    s.change_password(&current, &new).await?;
    println!("Password changed. Your other sessions were logged out.");
    Ok(())
}
