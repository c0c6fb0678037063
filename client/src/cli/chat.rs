//! `hush send` and `hush listen`: end-to-end encrypted 1:1 messages.

use std::collections::HashMap;
use std::time::Duration;

use hush_client::messenger::{Event, KeyAction, Messenger};
use hush_client::ClientError;
use hush_protocol::ids::{GroupId, UserId};
use hush_protocol::wire::{SessionEvent, CLOSE_DEVICE_REMOVED, CLOSE_DISPLACED, CLOSE_UNAUTHORIZED};

use super::exit;
use super::profile::{load_state, lock, session_of, state_path, ProfileLock};

/// First wait before `listen` reconnects; doubled after each failed attempt.
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest wait between two reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A messenger on the profile's device for a one-shot command, with the profile's lock held:
/// the socket is taken first (a running `listen` of the profile is displaced, stops writing
/// the state and waits for the lock), then the state is read.
pub async fn messenger(name: &str) -> anyhow::Result<(Messenger, ProfileLock)> {
    let session = session_of(name)?;
    let guard = lock(name)?;
    let conn = session.connect().await?;
    let state = load_state(name)?;
    Ok((Messenger::with_connection(session, conn, state, Some(state_path(name)?)), guard))
}

/// `hush send`: through the profile's running `listen` if there is one.
pub async fn send(profile: &str, to: String, text: Vec<String>) -> anyhow::Result<()> {
    UserId::new(to.clone())?;
    super::control::run(profile, super::control::Request::Send { to, text: text.join(" ") }).await
}

/// `delay` with up to +-50 % jitter, so clients cut off together do not return together.
fn jittered(delay: Duration) -> Duration {
    use rand::Rng;
    delay.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// Why a connection ended, as `listen` sees it.
enum Lost {
    /// Another process of the profile took the socket: reconnect once it releases the lock.
    Displaced,
    /// The node or the network went away: reconnect with backoff.
    Network(String),
}

fn close_code(reason: &Option<String>) -> Option<u16> {
    reason.as_ref().and_then(|c| c.split(' ').next()).and_then(|c| c.parse().ok())
}

/// Sorts a connection error: `Ok` to reconnect, `Err` to exit.
fn classify(e: ClientError) -> anyhow::Result<Lost> {
    match e {
        ClientError::Closed(c) => match close_code(&c) {
            Some(CLOSE_DISPLACED) => Ok(Lost::Displaced),
            Some(CLOSE_UNAUTHORIZED) => Err(exit::auth("the node ended this session (closed 4401)")),
            Some(CLOSE_DEVICE_REMOVED) => Err(exit::auth("this device was removed from the account")),
            _ => Ok(Lost::Network(format!("closed{}", c.map(|c| format!(" ({c})")).unwrap_or_default()))),
        },
        ClientError::Transport(t) => Ok(Lost::Network(t)),
        ClientError::Http { status: 401, .. } => {
            Err(exit::auth("the session is no longer valid: run `hush login` again"))
        }
        e => Err(e.into()),
    }
}

/// `hush listen`: prints messages until `count` or `idle` says stop; after a node restart or a
/// network drop it reconnects with exponential backoff (jittered, capped at [`BACKOFF_MAX`])
/// and resumes: the node kept what was queued meanwhile and delivers it first.
pub async fn listen(profile: &str, count: Option<usize>, idle: Option<u64>) -> anyhow::Result<()> {
    session_of(profile)?;
    // One-shot commands of this profile come through here instead of displacing us.
    let mut control = super::control::bind(profile).await?;
    let mut names: HashMap<GroupId, String> = HashMap::new();
    let mut n = 0usize;
    let mut delay = BACKOFF_START;
    loop {
        // The state is read again at each connection: a one-shot command may have changed it.
        let connected = {
            let _guard = lock(profile)?;
            let session = session_of(profile)?;
            let state = load_state(profile)?;
            Messenger::connect(session, state, Some(state_path(profile)?)).await
        };
        let lost = match connected {
            Ok(mut m) => {
                match run(&mut m, &mut control, &mut names, &mut n, count, idle, &mut delay).await? {
                    None => {
                        m.close().await?;
                        return Ok(());
                    }
                    Some(lost) => lost,
                }
            }
            Err(e) => classify(e)?,
        };
        match lost {
            Lost::Displaced => {
                eprintln!("(another hush command of this profile took the connection; resuming after it)");
                tokio::time::sleep(jittered(BACKOFF_START)).await;
            }
            Lost::Network(why) => {
                let wait = jittered(delay);
                eprintln!("(connection lost: {why}; reconnecting in {:.1} s)", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One connection's events; `None` when listening is over, else why the connection ended.
#[allow(clippy::too_many_arguments)]
async fn run(
    m: &mut Messenger,
    control: &mut super::control::Control,
    names: &mut HashMap<GroupId, String>,
    n: &mut usize,
    count: Option<usize>,
    idle: Option<u64>,
    delay: &mut Duration,
) -> anyhow::Result<Option<Lost>> {
    let me = m.session().user().clone();
    loop {
        if count.is_some_and(|c| *n >= c) {
            return Ok(None);
        }
        let next = {
            let mut job = Box::pin(control.jobs.recv());
            let next = m.next_event_or(&mut job);
            match idle {
                Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), next).await {
                    Ok(r) => r,
                    Err(_) => return Ok(None),
                },
                None => next.await,
            }
        };
        let next = match next {
            Ok(next) => next,
            Err(Some(job)) => {
                let reply = match super::control::execute(m, job.request).await {
                    Ok(line) => super::control::Reply { ok: true, line },
                    Err(e) => super::control::Reply { ok: false, line: format!("{e:#}") },
                };
                let _ = job.reply.send(reply);
                continue;
            }
            // The accept task ended (it does not, short of a panic): go on without it.
            Err(None) => m.next_event().await,
        };
        match next {
            Ok(Event::Text { from, from_device, body, .. }) => {
                println!("{from}/{from_device}: {body}");
                *n += 1;
            }
            Ok(Event::Sent { to, from_device, body, .. }) => {
                println!("{me}/{from_device} to {to}: {body} (sent from your other device)");
                *n += 1;
            }
            Ok(Event::GroupText { group, from, from_device, body, .. }) => {
                if !names.contains_key(&group) {
                    let name = m.session().group(&group).await.map(|g| g.name).unwrap_or_default();
                    names.insert(group.clone(), name);
                }
                let name = names.get(&group).filter(|n| !n.is_empty()).cloned();
                println!("[{}] {from}/{from_device}: {body}", name.unwrap_or_else(|| group.to_string()));
                *n += 1;
            }
            Ok(Event::Account(ev)) => {
                if let SessionEvent::GroupChanged { group, name, .. } = &ev {
                    names.insert(group.clone(), name.clone());
                }
                eprintln!("({})", describe_account(&ev));
            }
            Ok(Event::Undecryptable { from, from_device, reason, quarantined, .. }) => {
                let kept = if quarantined {
                    "kept in the quarantine: `hush quarantine` lists it"
                } else {
                    "the quarantine is full: left on the node"
                };
                eprintln!("(a message from {from}/{from_device} could not be decrypted: {reason}; {kept})");
            }
            Ok(Event::Other { from, from_device, .. }) => {
                eprintln!("(a message from {from}/{from_device} of a kind hush does not show)")
            }
            Ok(Event::RetryRequested { from, from_device, resent, .. }) => {
                let what = if resent {
                    "it was sent again on a fresh session"
                } else {
                    "the next message starts a fresh session"
                };
                eprintln!("({from}/{from_device} could not decrypt a message from this device: {what})")
            }
            Ok(Event::KeysMaintained(a)) => eprintln!("({})", describe_keys(&a)),
            Ok(Event::SenderKeyReceived { .. }) => {}
            Ok(Event::IdentityChanged { user, device }) => {
                eprintln!("(the identity key of {user}/{device} changed: that device was registered again)")
            }
            Ok(Event::UpToDate) => {
                *delay = BACKOFF_START;
                eprintln!("(up to date; waiting for messages)");
            }
            Ok(Event::LoggedOut { reason }) => {
                return Err(exit::auth(format!("logged out by the node: {reason}")))
            }
            Err(e) => return classify(e).map(Some),
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
    }
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
