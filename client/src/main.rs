//! `hush`: the command-line client. Profiles (one per logged-in device) live in `$HUSH_HOME`
//! (default `~/.hush`), readable by the owner only: `<name>.json` (server, device, session) and
//! `<name>.state` (the device's end-to-end state: identity and pre-keys with their private
//! halves, sessions, sender keys). Only one `hush` process should use a profile at a time.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hush_client::messenger::{Event, KeyAction, Messenger};
use hush_client::state::DeviceState;
use hush_client::{login_device, random_registration_id, upload_request, Client, ClientError};
use hush_protocol::api::{GroupInfo, LoginResponse, Secret};
use hush_protocol::ids::{DeviceId, GroupId, RegistrationId, TenantId, UserId};
use hush_protocol::wire::SessionEvent;
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
    /// Groups: create, add, remove, send, list.
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// Tenant administration.
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Create a group; you are a member and its administrator.
    Create {
        /// A name for the group.
        name: String,
        /// Other members (user names).
        members: Vec<String>,
    },
    /// Add members to a group (its administrators).
    Add {
        /// The group: its id, or its name if only one of your groups has it.
        group: String,
        /// User names.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Remove members from a group (its administrators), or yourself (leave).
    Remove {
        /// The group: its id, or its name if only one of your groups has it.
        group: String,
        /// User names.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Send a message to every member of a group.
    Send {
        /// The group: its id, or its name if only one of your groups has it.
        group: String,
        /// The message text.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// List your groups.
    List,
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

fn state_path(name: &str) -> anyhow::Result<PathBuf> {
    Ok(profile_path(name)?.with_extension("state"))
}

fn load_state(name: &str) -> anyhow::Result<DeviceState> {
    DeviceState::load_file(&state_path(name)?)?.with_context(|| {
        format!("profile '{name}' has no end-to-end keys: run `hush --profile {name} login` again")
    })
}

async fn messenger(name: &str) -> anyhow::Result<Messenger> {
    let session = session_of(name)?;
    let state = load_state(name)?;
    Ok(Messenger::connect(session, state, Some(state_path(name)?)).await?)
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

/// A group named by id, or by a name only one of the user's groups has.
async fn find_group(s: &hush_client::Session, group: &str) -> anyhow::Result<GroupInfo> {
    if let Ok(id) = GroupId::new(group) {
        return Ok(s.group(&id).await?);
    }
    let mut found: Vec<GroupInfo> =
        s.groups().await?.groups.into_iter().filter(|g| g.name == group).collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no group of yours is named '{group}'"),
        n => bail!("{n} of your groups are named '{group}': use its id (`hush group list`)"),
    }
}

fn users(names: Vec<String>) -> anyhow::Result<Vec<UserId>> {
    Ok(names.into_iter().map(UserId::new).collect::<Result<Vec<_>, _>>()?)
}

fn list_members(g: &GroupInfo) -> String {
    g.members.iter().map(UserId::as_str).collect::<Vec<_>>().join(", ")
}

async fn group_command(profile: &str, cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::Create { name, members } => {
            let s = session_of(profile)?;
            let g = s.create_group(&name, &users(members)?).await?;
            println!("Created group {} ({}) with {}.", g.name, g.id, list_members(&g));
        }
        GroupCmd::Add { group, users: names } => {
            let mut m = messenger(profile).await?;
            let g = find_group(m.session(), &group).await?;
            let g = m.add_members(&g.id, &users(names)?).await?;
            println!("Group {} ({}) now has {}.", g.name, g.id, list_members(&g));
            m.close().await?;
        }
        GroupCmd::Remove { group, users: names } => {
            let mut m = messenger(profile).await?;
            let g = find_group(m.session(), &group).await?;
            let g = m.remove_members(&g.id, &users(names)?).await?;
            println!("Group {} ({}) now has {}.", g.name, g.id, list_members(&g));
            m.close().await?;
        }
        GroupCmd::Send { group, text } => {
            let mut m = messenger(profile).await?;
            let g = find_group(m.session(), &group).await?;
            let id = m.send_group_text(&g.id, &text.join(" ")).await?;
            println!("Sent {id} to group {}.", g.name);
            m.close().await?;
        }
        GroupCmd::List => {
            let s = session_of(profile)?;
            for g in s.groups().await?.groups {
                println!("{}  {}  (epoch {}): {}", g.id, g.name, g.epoch, list_members(&g));
            }
        }
    }
    Ok(())
}

fn describe_keys(a: &KeyAction) -> String {
    match a {
        KeyAction::Replenished { ec, kyber } => {
            format!("uploaded {ec} EC and {kyber} Kyber one-time pre-keys")
        }
        KeyAction::RotatedSignedKeys => "rotated the signed pre-key and the last-resort key".into(),
        KeyAction::SenderKeyRotated { group, epoch } => {
            format!("new sender key for group {group} (epoch {epoch}) sent to its members")
        }
        KeyAction::SenderKeyDistributed { group, devices } => {
            format!("sender key for group {group} sent to {devices} new device(s)")
        }
    }
}

fn describe_account(ev: &SessionEvent) -> String {
    match ev {
        SessionEvent::NewLogin { device, ip, .. } => {
            format!(
                "new login on your device {device}{}",
                ip.as_ref().map(|i| format!(" from {i}")).unwrap_or_default()
            )
        }
        SessionEvent::DeviceAdded { device } => format!("device {device} was added to your account"),
        SessionEvent::DeviceRemoved { device } => format!("device {device} was removed from your account"),
        SessionEvent::SessionRevoked { device, reason, .. } => {
            format!("a session of your device {device} ended: {reason}")
        }
        SessionEvent::GroupChanged { group, name, members, by, .. } => {
            let list = members.iter().map(UserId::as_str).collect::<Vec<_>>().join(", ");
            format!("group {name} ({group}) changed by {by}: members {list}")
        }
        SessionEvent::RotateSenderKey { group, reason, .. } => {
            format!("the node asks for a new sender key in group {group} ({reason})")
        }
        SessionEvent::DistributeSenderKey { group, devices, .. } => {
            format!("{} new device(s) in group {group}", devices.len())
        }
        SessionEvent::MfaFailed { attempts, locked_until_ms, .. } => format!(
            "a second-factor attempt failed ({attempts} in a row){}",
            if locked_until_ms.is_some() { "; the factor is locked for now" } else { "" }
        ),
        SessionEvent::MfaChanged { change } => format!("your second factor changed: {change}"),
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
            // The same user on this profile keeps its device and end-to-end state; anything else
            // registers a new device with a fresh identity.
            let kept = match &existing {
                Some(p) if same_user || p.login.is_none() => {
                    DeviceState::load_file(&state_path(&cli.profile)?)?.map(|st| (st, p.device))
                }
                _ => None,
            };
            let fresh = kept.is_none();
            let (mut state, device) = match kept {
                Some(k) => k,
                None => (DeviceState::generate(random_registration_id())?, None),
            };
            let client = Client::new(&cli.server);
            let session =
                login_device(&client, &tenant, &user, &password, device, Some(device_name), &mut state)
                    .await?;
            let info = session.login_info().clone();
            if fresh {
                // Private halves on disk before the public keys are published.
                let up = state.full_upload()?;
                state.save_file(&state_path(&cli.profile)?)?;
                session.upload_keys(&upload_request(&up)).await?;
            }
            state.save_file(&state_path(&cli.profile)?)?;
            println!("Logged in as {}/{} on device {}.", info.tenant, info.user, info.device);
            save(
                &cli.profile,
                &Profile {
                    server: cli.server,
                    registration_id: state.registration_id(),
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
            let to = UserId::new(to)?;
            let text = text.join(" ");
            let mut m = messenger(&cli.profile).await?;
            let id = m.send_text(&to, &text).await?;
            println!("Sent {id} to {to}.");
            m.close().await?;
        }
        Cmd::Listen { count, idle } => {
            let mut m = messenger(&cli.profile).await?;
            let me = m.session().user().clone();
            let mut names: std::collections::HashMap<GroupId, String> = std::collections::HashMap::new();
            let mut n = 0usize;
            loop {
                let next = match idle {
                    Some(secs) => {
                        match tokio::time::timeout(Duration::from_secs(secs), m.next_event()).await {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    }
                    None => m.next_event().await,
                };
                match next {
                    Ok(Event::Text { from, from_device, body, .. }) => {
                        println!("{from}/{from_device}: {body}");
                        n += 1;
                    }
                    Ok(Event::Sent { to, from_device, body, .. }) => {
                        println!("{me}/{from_device} to {to}: {body} (sent from your other device)");
                        n += 1;
                    }
                    Ok(Event::GroupText { group, from, from_device, body, .. }) => {
                        if !names.contains_key(&group) {
                            let name = m.session().group(&group).await.map(|g| g.name).unwrap_or_default();
                            names.insert(group.clone(), name);
                        }
                        let name = names.get(&group).filter(|n| !n.is_empty()).cloned();
                        println!(
                            "[{}] {from}/{from_device}: {body}",
                            name.unwrap_or_else(|| group.to_string())
                        );
                        n += 1;
                    }
                    Ok(Event::Account(ev)) => {
                        if let SessionEvent::GroupChanged { group, name, .. } = &ev {
                            names.insert(group.clone(), name.clone());
                        }
                        eprintln!("({})", describe_account(&ev));
                    }
                    Ok(Event::Undecryptable { from, from_device, reason, .. }) => {
                        eprintln!("(a message from {from}/{from_device} could not be decrypted: {reason})");
                    }
                    Ok(Event::KeysMaintained(a)) => eprintln!("({})", describe_keys(&a)),
                    Ok(Event::SenderKeyReceived { .. }) => {}
                    Ok(Event::IdentityChanged { user, device }) => {
                        eprintln!(
                            "(the identity key of {user}/{device} changed: that device was registered again)"
                        )
                    }
                    Ok(Event::UpToDate) => eprintln!("(up to date; waiting for messages)"),
                    Ok(Event::LoggedOut { reason }) => {
                        eprintln!("Logged out by the node: {reason}");
                        break;
                    }
                    Err(ClientError::Closed(c)) => {
                        bail!("connection closed{}", c.map(|c| format!(": {c}")).unwrap_or_default())
                    }
                    Err(e) => return Err(e.into()),
                }
                if count.is_some_and(|c| n >= c) {
                    break;
                }
            }
            m.close().await?;
        }
        Cmd::Group { cmd } => group_command(&cli.profile, cmd).await?,
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
