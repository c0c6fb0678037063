//! `hush`: the command-line client. Profiles (one per logged-in device) live in `$HUSH_HOME`
//! (default `~/.hush`), one JSON file each, readable by the owner only.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hush_client::{random_registration_id, Client, ClientError};
use hush_protocol::api::{DeviceRequest, LoginResponse, Secret};
use hush_protocol::ids::{DeviceId, RegistrationId, TenantId, UserId};
use hush_protocol::wire::ServerFrame;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(name = "hush", version, about = "Hush command-line client")]
struct Cli {
    /// Profile name: one per logged-in device.
    #[arg(long, short, env = "HUSH_PROFILE", default_value = "default", global = true)]
    profile: String,
    /// Node URL (used by `login`; later commands use the profile's).
    #[arg(long, env = "HUSH_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Log in; registers this profile's device on first login.
    Login {
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// User name.
        #[arg(long)]
        user: String,
        /// Password (else $HUSH_PASSWORD, else asked for).
        #[arg(long, env = "HUSH_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Device label.
        #[arg(long, default_value = "cli")]
        device_name: String,
    },
    /// End this profile's session.
    Logout,
    /// List devices of a user (default: your own).
    Devices {
        /// User name.
        user: Option<String>,
    },
    /// Send a message to a user (every device of theirs and your other devices).
    Send {
        /// Recipient user name.
        to: String,
        /// The message text.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Print incoming messages (acknowledging them) until interrupted.
    Listen {
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds without a message.
        #[arg(long)]
        idle: Option<u64>,
    },
    /// Tenant administration.
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
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

#[derive(Serialize, Deserialize)]
struct Profile {
    server: String,
    registration_id: RegistrationId,
    device: Option<DeviceId>,
    login: Option<LoginResponse>,
}

fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("HUSH_HOME") {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    base.join(".hush")
}

fn profile_path(name: &str) -> anyhow::Result<PathBuf> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("profile names are letters, digits, '-' and '_'");
    }
    Ok(home().join(format!("{name}.json")))
}

fn load(name: &str) -> anyhow::Result<Option<Profile>> {
    let p = profile_path(name)?;
    match std::fs::read(&p) {
        Ok(b) => {
            Ok(Some(serde_json::from_slice(&b).with_context(|| format!("corrupt profile {}", p.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn save(name: &str, p: &Profile) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = profile_path(name)?;
    std::fs::create_dir_all(home())?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(p)?)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

fn session_of(name: &str) -> anyhow::Result<hush_client::Session> {
    let p = load(name)?
        .with_context(|| format!("profile '{name}' is not logged in: run `hush --profile {name} login`"))?;
    let login = p
        .login
        .with_context(|| format!("profile '{name}' is logged out: run `hush --profile {name} login`"))?;
    Ok(Client::new(p.server).resume(login))
}

fn ask_password(given: Option<String>, prompt: &str) -> anyhow::Result<Secret> {
    match given {
        Some(p) => Ok(Secret::new(p)),
        None => Ok(Secret::new(rpassword::prompt_password(prompt)?)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Login { tenant, user, password, device_name } => {
            let tenant = TenantId::new(tenant)?;
            let user = UserId::new(user)?;
            let password = ask_password(password, "Password: ")?;
            let existing = load(&cli.profile)?;
            let same_user = existing
                .as_ref()
                .and_then(|p| p.login.as_ref())
                .is_some_and(|l| l.user == user && l.tenant == tenant);
            let (registration_id, device) = match &existing {
                Some(p) if same_user || p.login.is_none() => (p.registration_id, p.device),
                _ => (random_registration_id(), None),
            };
            let client = Client::new(&cli.server);
            let req =
                DeviceRequest { id: device, registration_id, name: Some(device_name), identity_key: None };
            let session = client.login(&tenant, &user, &password, req).await?;
            let info = session.login_info().clone();
            println!("Logged in as {}/{} on device {}.", info.tenant, info.user, info.device);
            save(
                &cli.profile,
                &Profile {
                    server: cli.server,
                    registration_id,
                    device: Some(info.device),
                    login: Some(info),
                },
            )?;
        }
        Cmd::Logout => {
            let s = session_of(&cli.profile)?;
            s.logout().await?;
            if let Some(mut p) = load(&cli.profile)? {
                p.login = None;
                save(&cli.profile, &p)?;
            }
            println!("Logged out.");
        }
        Cmd::Devices { user } => {
            let s = session_of(&cli.profile)?;
            let user = user.map(UserId::new).transpose()?;
            let list = s.devices(user.as_ref()).await?;
            for d in list.devices {
                println!("{}/{}  registration {}  {}", list.user, d.id, d.registration_id.get(), d.name);
            }
        }
        Cmd::Send { to, text } => {
            let s = session_of(&cli.profile)?;
            let to = UserId::new(to)?;
            let text = text.join(" ");
            let mut conn = s.connect().await?;
            // Not yet end-to-end encrypted: the E2E layer (issue 5) replaces this identity map.
            let id = conn.send_message(&to, |_, _| text.as_bytes().to_vec()).await?;
            println!("Sent {id} to {to}.");
            let _ = conn.close().await;
        }
        Cmd::Listen { count, idle } => {
            let s = session_of(&cli.profile)?;
            let mut conn = s.connect().await?;
            let mut n = 0usize;
            loop {
                let next = match idle {
                    Some(secs) => {
                        match tokio::time::timeout(Duration::from_secs(secs), conn.next_frame()).await {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    }
                    None => conn.next_frame().await,
                };
                match next {
                    Ok(ServerFrame::Deliver(env)) => {
                        let text = String::from_utf8_lossy(&env.content.0);
                        let tag = if env.sync { " (sent from your other device)" } else { "" };
                        println!("{}/{}: {}{}", env.from, env.from_device, text, tag);
                        conn.ack(vec![env.seq]).await?;
                        n += 1;
                        if count.is_some_and(|c| n >= c) {
                            break;
                        }
                    }
                    Ok(ServerFrame::QueueEmpty) => eprintln!("(up to date; waiting for messages)"),
                    Ok(ServerFrame::LoggedOut { reason }) => {
                        eprintln!("Logged out by the node: {reason}");
                        break;
                    }
                    Ok(_) => {}
                    Err(ClientError::Closed(c)) => {
                        bail!("connection closed{}", c.map(|c| format!(": {c}")).unwrap_or_default())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let _ = conn.close().await;
        }
        Cmd::Admin { cmd } => {
            let s = session_of(&cli.profile)?;
            match cmd {
                AdminCmd::CreateUser { user, password, admin } => {
                    let user = UserId::new(user)?;
                    let pw = ask_password(password, "New user's password: ")?;
                    let info = s.create_user(&user, &pw, admin).await?;
                    println!(
                        "Created {}/{}{}.",
                        info.tenant,
                        info.user,
                        if info.admin { " (admin)" } else { "" }
                    );
                }
                AdminCmd::Users => {
                    for u in s.list_users().await?.users {
                        println!("{}{}", u.user, if u.admin { "  (admin)" } else { "" });
                    }
                }
            }
        }
    }
    Ok(())
}
