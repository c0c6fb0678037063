//! The control socket of a running `hush listen`.
//!
//! A device has one WebSocket: a second connection of the same device displaces the first
//! (close 4409). So a one-shot command of a profile whose `listen` is running (`send`,
//! `group add|remove|send`) does not connect itself: it hands its request to that `listen`
//! over `<home>/<profile>.sock` (a Unix socket in the 0700 profile folder, itself 0600), and
//! `listen` runs it on its own connection and device state, between two events, and answers.
//! The listener keeps printing; nothing is displaced and one process alone writes the state.
//! With no `listen` running the command connects as before, holding the profile's lock.
//!
//! One JSON line each way: a [`Request`], then a [`Reply`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hush_client::messenger::Messenger;
use hush_protocol::ids::UserId;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::group::{find_group, list_members, users};
use super::profile::{ensure_home, profile_path};

/// Longest request line read from the socket (a message text is far below it).
const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// What a one-shot command asks of its profile's device.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `hush send`.
    Send {
        /// Recipient.
        to: String,
        /// The text.
        text: String,
    },
    /// `hush group send`.
    GroupSend {
        /// Group id or name.
        group: String,
        /// The text.
        text: String,
    },
    /// `hush group add`.
    GroupAdd {
        /// Group id or name.
        group: String,
        /// User names.
        users: Vec<String>,
    },
    /// `hush group remove`.
    GroupRemove {
        /// Group id or name.
        group: String,
        /// User names.
        users: Vec<String>,
    },
}

/// The answer: the line the command prints (stdout if `ok`, else the error on stderr).
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was done.
    pub ok: bool,
    /// The command's output line, or the error.
    pub line: String,
}

/// `<home>/<profile>.sock`.
pub fn socket_path(profile: &str) -> anyhow::Result<PathBuf> {
    Ok(profile_path(profile)?.with_extension("sock"))
}

/// Runs a request on a connected device: what the command prints.
pub async fn execute(m: &mut Messenger, req: Request) -> anyhow::Result<String> {
    Ok(match req {
        Request::Send { to, text } => {
            let to = UserId::new(to)?;
            let id = m.send_text(&to, &text).await?;
            format!("Sent {id} to {to}.")
        }
        Request::GroupSend { group, text } => {
            let g = find_group(m.session(), &group).await?;
            let id = m.send_group_text(&g.id, &text).await?;
            format!("Sent {id} to group {}.", g.name)
        }
        Request::GroupAdd { group, users: names } => {
            let g = find_group(m.session(), &group).await?;
            let g = m.add_members(&g.id, &users(names)?).await?;
            format!("Group {} ({}) now has {}.", g.name, g.id, list_members(&g))
        }
        Request::GroupRemove { group, users: names } => {
            let g = find_group(m.session(), &group).await?;
            let g = m.remove_members(&g.id, &users(names)?).await?;
            format!("Group {} ({}) now has {}.", g.name, g.id, list_members(&g))
        }
    })
}

/// Runs a one-shot command: through the profile's running `listen` if there is one, else on
/// a connection of its own. Prints the command's line.
pub async fn run(profile: &str, req: Request) -> anyhow::Result<()> {
    let path = socket_path(profile)?;
    match UnixStream::connect(&path).await {
        Ok(stream) => {
            let reply = ask(stream, &req)
                .await
                .context("the running `hush listen` of this profile did not answer")?;
            if !reply.ok {
                bail!("{}", reply.line);
            }
            println!("{}", reply.line);
            Ok(())
        }
        // No listener (no socket, or one left by a listener that died): connect ourselves.
        Err(_) => {
            let (mut m, _lock) = super::chat::messenger(profile).await?;
            let line = execute(&mut m, req).await?;
            println!("{line}");
            m.close().await?;
            Ok(())
        }
    }
}

async fn ask(stream: UnixStream, req: &Request) -> anyhow::Result<Reply> {
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    if answer.is_empty() {
        bail!("the connection closed");
    }
    Ok(serde_json::from_str(&answer)?)
}

/// A request handed to `listen`, with the way back.
pub struct Job {
    /// What to do.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Reply>,
}

/// The bound control socket; the file is removed when it is dropped.
pub struct Control {
    path: PathBuf,
    /// Requests from one-shot commands.
    pub jobs: mpsc::Receiver<Job>,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the profile's control socket for `listen`. Refuses if another `listen` of the
/// profile answers on it; a socket left by a listener that died is replaced.
pub async fn bind(profile: &str) -> anyhow::Result<Control> {
    ensure_home()?;
    let path = socket_path(profile)?;
    if UnixStream::connect(&path).await.is_ok() {
        bail!("another `hush listen` of profile '{profile}' is running");
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    let listener = UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    private(&path)?;
    let (tx, jobs) = mpsc::channel(16);
    tokio::spawn(accept(listener, tx));
    Ok(Control { path, jobs })
}

fn private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

async fn accept(listener: UnixListener, tx: mpsc::Sender<Job>) {
    while let Ok((stream, _)) = listener.accept().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let reply = match BufReader::new(read.take(MAX_REQUEST_BYTES)).read_line(&mut line).await {
                Ok(_) => match serde_json::from_str::<Request>(&line) {
                    Ok(request) => {
                        let (reply, answer) = oneshot::channel();
                        if tx.send(Job { request, reply }).await.is_err() {
                            return;
                        }
                        match answer.await {
                            Ok(r) => r,
                            Err(_) => Reply { ok: false, line: "`hush listen` stopped".into() },
                        }
                    }
                    Err(e) => Reply { ok: false, line: format!("bad request: {e}") },
                },
                Err(e) => Reply { ok: false, line: format!("bad request: {e}") },
            };
            if let Ok(mut s) = serde_json::to_string(&reply) {
                s.push('\n');
                let _ = write.write_all(s.as_bytes()).await;
            }
        });
    }
}
