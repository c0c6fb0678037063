//! `hushd store check|salvage|backup`, and the node's side of a backup while it serves.
//!
//! The embedded store belongs to one process, so a backup of a serving node cannot open the
//! file: the node listens on a Unix socket in its data folder ([`SOCKET_FILE`], mode 0600 in a
//! 0700 folder, and only a peer with the folder owner's uid is answered) and writes the
//! snapshot itself, from one read transaction, while it keeps serving. When no node answers
//! there, `hushd store backup` opens the store file itself.
//!
//! Protocol (one request per connection, both ends bounded): the client sends
//! `backup <absolute path>\n`; the node answers `ok\n` or `error <reason>\n`, then the report
//! lines, then closes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hush_store::embedded::EmbeddedStore;
use hush_store::maintenance;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::{Config, StoreCommand};
use crate::server::STORE_FILE;

/// File name of the control socket inside the data folder.
pub const SOCKET_FILE: &str = "hushd.sock";
/// Longest request line accepted, in bytes (a path and a verb).
pub const MAX_REQUEST_BYTES: u64 = 4096;
/// Longest answer a client reads, in bytes (a report of a few lines per table).
pub const MAX_REPLY_BYTES: u64 = 64 * 1024;
/// How long the node waits for a request once a client connected.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for the snapshot to be written.
pub const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// The listening control socket of a serving node; removed when dropped.
pub struct ControlSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens on `<data_dir>/hushd.sock` for backup requests. Called once the store is open, so
/// this process owns the data folder: a socket file found there is a dead node's, replaced.
pub fn listen(data_dir: &Path, store: EmbeddedStore) -> anyhow::Result<ControlSocket> {
    let path = data_dir.join(SOCKET_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale control socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    let owner =
        std::fs::metadata(data_dir).with_context(|| format!("cannot read {}", data_dir.display()))?.uid();
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // The folder is 0700 already; the socket's own mode says the same to anyone who looks.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(crate::datadir::FILE_MODE))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    let task = actix_rt::spawn(async move {
        // One request at a time: a snapshot reads the whole store, two at once gain nothing.
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Err(e) = answer(stream, owner, &store).await {
                tracing::warn!(error = %e, "control socket request failed");
            }
        }
    });
    Ok(ControlSocket { path, task })
}

async fn answer(stream: UnixStream, owner: u32, store: &EmbeddedStore) -> anyhow::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    if uid != owner {
        write.write_all(b"error only the owner of the data folder may ask\n").await?;
        anyhow::bail!("refused a request from uid {uid}");
    }
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await??;
    let reply = match line.trim_end_matches('\n').split_once(' ') {
        Some(("backup", to)) if Path::new(to).is_absolute() => {
            tracing::info!(to, "backup requested on the control socket");
            match store.snapshot_to(Path::new(to)).await {
                Ok(report) => {
                    tracing::info!(to, "backup written");
                    format!("ok\n{report}\n")
                }
                Err(e) => format!("error {e}\n"),
            }
        }
        _ => "error expected `backup <absolute path>`\n".to_owned(),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await?;
    Ok(())
}

/// What a `hushd store` command prints: the report (stdout) and, when the command must exit
/// non-zero after it (a damaged file under `check`), the one-line reason (stderr).
pub struct Outcome {
    /// The report, for stdout.
    pub report: String,
    /// Why the command fails although it produced a report.
    pub failure: Option<String>,
}

impl From<String> for Outcome {
    fn from(report: String) -> Self {
        Outcome { report, failure: None }
    }
}

/// Runs `hushd store ...`. An error is one line for stderr, and nothing was written.
pub async fn run(config: &Config, command: &StoreCommand) -> anyhow::Result<Outcome> {
    if config.mongodb_url.is_some() {
        anyhow::bail!(
            "`hushd store` works on the embedded store of a data folder, not on MongoDB (use mongodump)"
        );
    }
    let default_file = || config.data_dir.join(STORE_FILE);
    match command {
        StoreCommand::Check { file } => {
            let file = file.clone().unwrap_or_else(default_file);
            let (file, report) = blocking(move || maintenance::check(&file).map(|r| (file, r))).await?;
            let failure = (!report.healthy()).then(|| {
                format!("{} is damaged: `hushd store salvage` copies what is readable", file.display())
            });
            Ok(Outcome { report: report.to_string(), failure })
        }
        StoreCommand::Salvage { file, to } => {
            let file = file.clone().unwrap_or_else(default_file);
            let to = to.clone();
            let report = blocking(move || maintenance::salvage(&file, &to)).await?;
            Ok(format!("{report}\nsalvage: wrote {} ({} record(s) lost)", STORE_FILE, report.lost()).into())
        }
        StoreCommand::Backup { to } => {
            let to = std::path::absolute(to).with_context(|| format!("bad target {}", to.display()))?;
            if to.symlink_metadata().is_ok() {
                return Err(maintenance::MaintenanceError::TargetExists(to).into());
            }
            let socket = config.data_dir.join(SOCKET_FILE);
            match UnixStream::connect(&socket).await {
                Ok(stream) => backup_via(stream, &to).await.map(Outcome::from),
                Err(_) => {
                    let from = default_file();
                    let report = blocking(move || maintenance::snapshot_file(&from, &to)).await?;
                    Ok(format!("{report}\n(no node serves this data folder: read the store file directly)")
                        .into())
                }
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, maintenance::MaintenanceError> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

async fn backup_via(stream: UnixStream, to: &Path) -> anyhow::Result<String> {
    let to_text = to.to_str().context("the target path is not UTF-8")?;
    if to_text.contains('\n') {
        anyhow::bail!("the target path holds a line break");
    }
    let (read, mut write) = stream.into_split();
    write.write_all(format!("backup {to_text}\n").as_bytes()).await?;
    let mut reply = String::new();
    tokio::time::timeout(BACKUP_TIMEOUT, read.take(MAX_REPLY_BYTES).read_to_string(&mut reply))
        .await
        .context("the node did not finish the backup in time")??;
    let (status, report) = reply.split_once('\n').unwrap_or((reply.as_str(), ""));
    match status.strip_prefix("error ") {
        Some(e) => anyhow::bail!("the node refused the backup: {e}"),
        None if status == "ok" => Ok(format!("{}\n(written by the serving node)", report.trim_end())),
        None => anyhow::bail!("unexpected answer from the node: {status}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    async fn ask(socket: &Path, request: &str) -> String {
        let mut s = UnixStream::connect(socket).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        reply
    }

    #[actix_rt::test]
    async fn the_socket_answers_backups_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join(STORE_FILE)).unwrap();
        let control = listen(dir.path(), store).unwrap();
        let socket = dir.path().join(SOCKET_FILE);
        assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

        assert!(ask(&socket, "backup relative.redb\n").await.starts_with("error expected"));
        assert!(ask(&socket, "restore /x\n").await.starts_with("error expected"));
        let to = dir.path().join("b.redb");
        let reply = ask(&socket, &format!("backup {}\n", to.display())).await;
        assert!(
            reply.starts_with("ok\n") && reply.contains("table queue_by_seq: 0 records copied"),
            "{reply}"
        );
        assert!(to.exists());
        let again = ask(&socket, &format!("backup {}\n", to.display())).await;
        assert!(again.starts_with("error ") && again.contains("already exists"), "{again}");

        drop(control);
        assert!(!socket.exists(), "the socket file is removed with the listener");
    }
}
