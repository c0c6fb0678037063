//! `hush sessions` (the user's own login sessions) and `hush devices` (the user's devices, or
//! another user's).

use anyhow::bail;
use clap::{Args, Subcommand};
use hush_client::Session;
use hush_protocol::api::{DeviceList, SessionInfo};
use hush_protocol::ids::{DeviceId, UserId};

use super::output::{self, Output};
use super::stepup::{self, StepUp};

/// What a command did to this profile's own session.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// This profile's session lives on.
    None,
    /// This profile's session was revoked: the profile is logged out.
    LoggedOut,
}

/// `hush sessions ...`
#[derive(Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_long_help = "Examples:
  hush sessions                        # your active sessions, * marks this one
  hush sessions --output json
  hush sessions revoke 3f9c2a...       # one session (another one needs a code if you use MFA)
  hush sessions revoke --others        # every session but this one
  hush sessions revoke --all           # every session, this one included (logs this profile out)"
)]
pub struct SessionsArgs {
    #[command(subcommand)]
    cmd: Option<SessionsCmd>,
    #[command(flatten)]
    step: StepUp,
}

#[derive(Subcommand)]
enum SessionsCmd {
    /// List your active sessions on every device (the default).
    List,
    /// Revoke one session, every other one, or all of them; their sockets close at once.
    Revoke(RevokeArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "others", "all"])))]
struct RevokeArgs {
    /// The session id (see `hush sessions`).
    id: Option<String>,
    /// Every session of yours but this one.
    #[arg(long)]
    others: bool,
    /// Every session of yours, this one included.
    #[arg(long)]
    all: bool,
}

/// Prints sessions as a table (or JSON by the caller). `with_user` adds the user column.
pub fn print_sessions(list: &[SessionInfo], with_user: bool) {
    let mut header = vec!["id"];
    if with_user {
        header.push("user");
    }
    header.extend(["device", "node", "created", "last seen", "expires", "ip", "mfa"]);
    let mut t = output::table(&header);
    for s in list {
        let mut row = vec![format!("{}{}", s.id, if s.current { " *" } else { "" })];
        if with_user {
            row.push(s.user.to_string());
        }
        row.extend([
            s.device.to_string(),
            s.node.clone().unwrap_or_else(|| "-".into()),
            output::time(s.created_ms),
            output::opt_time(s.last_seen_ms),
            s.expires_ms.map(output::time).unwrap_or_else(|| "never".into()),
            s.ip.clone().unwrap_or_else(|| "-".into()),
            super::mfa::session_state(s.mfa.as_ref()),
        ]);
        t.add_row(row);
    }
    output::print_table(&t, "No active sessions.");
}

/// Runs `hush sessions ...`.
pub async fn run(s: &Session, args: SessionsArgs, out: Output) -> anyhow::Result<Effect> {
    match args.cmd {
        None | Some(SessionsCmd::List) => {
            let list = s.sessions().await?;
            if out.json() {
                output::print_json(&list)?;
            } else {
                print_sessions(&list.sessions, false);
            }
            Ok(Effect::None)
        }
        Some(SessionsCmd::Revoke(r)) => {
            let mine = s.login_info().session_id.clone();
            let (n, effect) = if r.all {
                (s.revoke_all_sessions().await?, Effect::LoggedOut)
            } else if r.others {
                (stepup::run(s, &args.step, || s.revoke_other_sessions()).await?, Effect::None)
            } else if let Some(id) = r.id {
                let effect = if id == mine { Effect::LoggedOut } else { Effect::None };
                (stepup::run(s, &args.step, || s.revoke_session(&id)).await?, effect)
            } else {
                bail!("name a session id, --others or --all");
            };
            if out.json() {
                output::print_json(&serde_json::json!({ "revoked": n }))?;
            } else {
                println!("Revoked {n} session{}.", if n == 1 { "" } else { "s" });
                if effect == Effect::LoggedOut {
                    println!("This profile's session was one of them: log in again to use it.");
                }
            }
            Ok(effect)
        }
    }
}

/// `hush devices ...`
#[derive(Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_long_help = "Examples:
  hush devices                         # your devices
  hush devices bob                     # bob's devices (the ones messages to bob are encrypted for)
  hush devices remove 3                # from your primary device (1) only"
)]
pub struct DevicesArgs {
    /// A user of your tenant (default: you).
    user: Option<UserId>,
    #[command(subcommand)]
    cmd: Option<DevicesCmd>,
}

#[derive(Subcommand)]
enum DevicesCmd {
    /// List the devices of a user (default: yours).
    List {
        /// A user of your tenant (default: you).
        user: Option<UserId>,
    },
    /// Remove one of your linked devices (run it on your primary device): its sessions, queue
    /// and sockets go with it.
    Remove {
        /// The device id (see `hush devices`).
        device: DeviceId,
    },
}

fn print_devices(list: &DeviceList, out: Output) -> anyhow::Result<()> {
    if out.json() {
        return output::print_json(list);
    }
    let mut t = output::table(&["device", "name", "registration", "created"]);
    for d in &list.devices {
        t.add_row(vec![
            format!("{}/{}", list.user, d.id),
            d.name.clone(),
            d.registration_id.get().to_string(),
            output::time(d.created_ms),
        ]);
    }
    output::print_table(&t, "No devices.");
    Ok(())
}

/// Runs `hush sessions ...` for `profile`, which is marked logged out when its own session
/// was revoked.
pub async fn run_in_profile(profile: &str, args: SessionsArgs, out: Output) -> anyhow::Result<()> {
    let s = super::profile::session_of(profile)?;
    if run(&s, args, out).await? == Effect::LoggedOut {
        if let Some(mut p) = super::profile::load(profile)? {
            p.login = None;
            super::profile::save(profile, &p)?;
        }
    }
    Ok(())
}

/// Runs `hush devices ...`.
pub async fn devices(s: &Session, args: DevicesArgs, out: Output) -> anyhow::Result<()> {
    match args.cmd {
        None => print_devices(&s.devices(args.user.as_ref()).await?, out),
        Some(DevicesCmd::List { user }) => print_devices(&s.devices(user.as_ref()).await?, out),
        Some(DevicesCmd::Remove { device }) => {
            s.remove_device(device).await?;
            println!("Removed device {device}.");
            Ok(())
        }
    }
}

/// Runs `hush keys`.
pub async fn keys(s: &Session, out: Output) -> anyhow::Result<()> {
    let k = s.key_counts().await?;
    if out.json() {
        return output::print_json(&k);
    }
    println!("One-time pre-keys on the node for this device: {} EC, {} Kyber.", k.ec, k.kyber);
    println!("(`hush listen` uploads more when the node asks.)");
    Ok(())
}
