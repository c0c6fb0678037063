//! `hush group ...`: create, add, remove, send, list.

use anyhow::bail;
use clap::Subcommand;
use hush_protocol::api::GroupInfo;
use hush_protocol::ids::{GroupId, UserId};

use super::profile::session_of;

/// Group commands.
#[derive(Subcommand)]
pub enum GroupCmd {
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

/// A group named by id, or by a name only one of the user's groups has.
pub async fn find_group(s: &hush_client::Session, group: &str) -> anyhow::Result<GroupInfo> {
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

/// Parses user names.
pub fn users(names: Vec<String>) -> anyhow::Result<Vec<UserId>> {
    Ok(names.into_iter().map(UserId::new).collect::<Result<Vec<_>, _>>()?)
}

pub fn list_members(g: &GroupInfo) -> String {
    g.members.iter().map(UserId::as_str).collect::<Vec<_>>().join(", ")
}

/// Runs a group command.
pub async fn run(profile: &str, cmd: GroupCmd, out: super::output::Output) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::Create { name, members } => {
            let s = session_of(profile)?;
            let g = s.create_group(&name, &users(members)?).await?;
            println!("Created group {} ({}) with {}.", g.name, g.id, list_members(&g));
        }
        GroupCmd::Add { group, users } => {
            super::control::run(profile, super::control::Request::GroupAdd { group, users }).await?
        }
        GroupCmd::Remove { group, users } => {
            super::control::run(profile, super::control::Request::GroupRemove { group, users }).await?
        }
        GroupCmd::Send { group, text } => {
            super::control::run(profile, super::control::Request::GroupSend { group, text: text.join(" ") })
                .await?
        }
        GroupCmd::List => {
            let s = session_of(profile)?;
            let list = s.groups().await?;
            if out.json() {
                super::output::print_json(&list)?;
            } else {
                let mut t = super::output::table(&["id", "name", "epoch", "members"]);
                for g in &list.groups {
                    t.add_row(vec![g.id.to_string(), g.name.clone(), g.epoch.to_string(), list_members(g)]);
                }
                super::output::print_table(&t, "No groups.");
            }
        }
    }
    Ok(())
}
