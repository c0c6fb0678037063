//! `hush send` and `hush listen`: end-to-end encrypted 1:1 messages.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use hush_client::messenger::{Event, KeyAction, Messenger};
use hush_client::ClientError;
use hush_protocol::ids::{GroupId, UserId};
use hush_protocol::wire::SessionEvent;

use super::profile::{load_state, session_of, state_path};

/// A messenger on the profile's device.
pub async fn messenger(name: &str) -> anyhow::Result<Messenger> {
    let session = session_of(name)?;
    let state = load_state(name)?;
    Ok(Messenger::connect(session, state, Some(state_path(name)?)).await?)
}

/// `hush send`.
pub async fn send(profile: &str, to: String, text: Vec<String>) -> anyhow::Result<()> {
    let to = UserId::new(to)?;
    let text = text.join(" ");
    let mut m = messenger(profile).await?;
    let id = m.send_text(&to, &text).await?;
    println!("Sent {id} to {to}.");
    m.close().await?;
    Ok(())
}

/// `hush listen`.
pub async fn listen(profile: &str, count: Option<usize>, idle: Option<u64>) -> anyhow::Result<()> {
    let mut m = messenger(profile).await?;
    let me = m.session().user().clone();
    let mut names: HashMap<GroupId, String> = HashMap::new();
    let mut n = 0usize;
    loop {
        let next = match idle {
            Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), m.next_event()).await {
                Ok(r) => r,
                Err(_) => break,
            },
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
                println!("[{}] {from}/{from_device}: {body}", name.unwrap_or_else(|| group.to_string()));
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
                eprintln!("(the identity key of {user}/{device} changed: that device was registered again)")
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
        SessionEvent::AccountLocked { failures, retry_after_s } => format!(
            "your account is locked after {failures} failed logins (for {retry_after_s} s, or until an administrator unlocks it)"
        ),
    }
}
