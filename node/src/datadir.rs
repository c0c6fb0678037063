//! The data folder is private to the user running the node: the folder (and any folder in it)
//! 0700, every file in it 0600. The store holds password hashes, hashed tokens and sealed TOTP
//! secrets, `mfa.key` the key that unseals them: nobody else on the host may read either.
//!
//! [`prepare`] runs at every start before anything is opened: it creates a missing folder 0700,
//! and on an existing folder removes every group/other permission bit it finds (logging each
//! change, so an operator learns that a backup or a copy widened the modes). Files the node
//! creates itself are created 0600 from the start ([`create_private`]), never chmod-ed after.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the data folder and of every folder in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in the data folder.
pub const FILE_MODE: u32 = 0o600;
/// Entries [`prepare`] examines at most (the folder holds a handful of files; a folder with
/// more is not a Hush data folder, and the start stops rather than walking it for minutes).
pub const MAX_ENTRIES: usize = 10_000;
/// Folder levels [`prepare`] descends at most.
pub const MAX_DEPTH: usize = 8;

/// Creates `dir` (0700) if missing, then tightens it and everything in it: folders to 0700 and
/// files to 0600 at most (bits already cleared stay cleared). Symbolic links are not followed.
/// Returns how many entries were changed.
pub fn prepare(dir: &Path) -> anyhow::Result<usize> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("cannot create the data folder {}: {e}", dir.display()))?;
    let mut seen = 0usize;
    let mut changed = 0usize;
    tighten(dir, 0, &mut seen, &mut changed)?;
    Ok(changed)
}

fn tighten(path: &Path, depth: usize, seen: &mut usize, changed: &mut usize) -> anyhow::Result<()> {
    *seen += 1;
    if *seen > MAX_ENTRIES {
        anyhow::bail!(
            "the data folder holds more than {MAX_ENTRIES} entries; is {} really a Hush data folder?",
            path.display()
        );
    }
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        tracing::warn!(path = %path.display(), "symbolic link in the data folder left as it is");
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let wanted = if ft.is_dir() { mode & DIR_MODE } else { mode & FILE_MODE };
    if mode != wanted {
        std::fs::set_permissions(path, Permissions::from_mode(wanted))
            .map_err(|e| anyhow::anyhow!("cannot restrict the mode of {}: {e}", path.display()))?;
        tracing::warn!(
            path = %path.display(),
            from = %format!("{mode:04o}"),
            to = %format!("{wanted:04o}"),
            "data folder entry was readable by others; mode restricted"
        );
        *changed += 1;
    }
    if ft.is_dir() && depth < MAX_DEPTH {
        let entries =
            std::fs::read_dir(path).map_err(|e| anyhow::anyhow!("cannot list {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| anyhow::anyhow!("cannot list {}: {e}", path.display()))?;
            tighten(&entry.path(), depth + 1, seen, changed)?;
        }
    }
    Ok(())
}

/// Creates `path` with mode 0600 if it does not exist (an existing file is left as it is, its
/// content untouched), so a file another library then opens is never world-readable, not even
/// for an instant.
pub fn create_private(path: &Path) -> anyhow::Result<()> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))
}

/// File name of the marker a data folder gets once its store holds a tenant: from then on a
/// missing or empty store file is a damaged data folder, never a first run.
pub const MARKER_FILE: &str = "hush-data.json";

/// What [`check_store`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFile {
    /// No store file (or an empty one) in a folder that was never initialised: a first run.
    New,
    /// A store file with content.
    Existing,
}

fn refuse(store: &Path, what: &str, evidence: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "the store file {} {what}, but this data folder was initialised before ({} exists): \
         refusing to start on an empty store, which would replace every account, session and \
         queued message with a new administrator. Restore {} from a backup \
         (docs/operations.md, \"Backup and restore\"); to really start anew, move the whole data \
         folder away first",
        store.display(),
        evidence.display(),
        store.display(),
    )
}

/// Checks, before anything opens it, that `store` (in data folder `dir`) is not missing or
/// empty while the folder shows it was initialised: by the marker, or by an `mfa.key` (folders
/// initialised before the marker existed). Creates nothing.
pub fn check_store(dir: &Path, store: &Path, mfa_key: &Path) -> anyhow::Result<StoreFile> {
    let len = match std::fs::metadata(store) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => anyhow::bail!("cannot read {}: {e}", store.display()),
    };
    if len.is_some_and(|l| l > 0) {
        return Ok(StoreFile::Existing);
    }
    let what = if len.is_none() { "is missing" } else { "is empty (0 bytes)" };
    for evidence in [dir.join(MARKER_FILE), mfa_key.to_path_buf()] {
        if evidence.exists() {
            return Err(refuse(store, what, &evidence));
        }
    }
    Ok(StoreFile::New)
}

/// The refusal for a store file that opened but holds no tenant in a marked folder.
pub fn refuse_empty(dir: &Path, store: &Path) -> anyhow::Result<()> {
    let marker = dir.join(MARKER_FILE);
    if marker.exists() {
        return Err(refuse(store, "holds no tenant", &marker));
    }
    Ok(())
}

/// Writes the marker (0600, synced) if it is missing: called once the store holds a tenant.
pub fn mark(dir: &Path, store_file: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let path = dir.join(MARKER_FILE);
    if path.exists() {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let body = serde_json::json!({
        "store": store_file,
        "initialised_ms": now,
        "note": "this data folder holds a Hush store; a missing or empty store file is an error, not a first run",
    });
    let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", tmp.display()))?;
    f.write_all(body.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_folder_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/data");
        assert_eq!(prepare(&dir).unwrap(), 0);
        assert_eq!(mode(&dir), 0o700);
        create_private(&dir.join("f")).unwrap();
        assert_eq!(mode(&dir.join("f")), 0o600);
    }

    #[test]
    fn wider_modes_are_tightened_and_tighter_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("wide"), b"x").unwrap();
        std::fs::set_permissions(dir.join("wide"), Permissions::from_mode(0o666)).unwrap();
        std::fs::write(dir.join("ro"), b"x").unwrap();
        std::fs::set_permissions(dir.join("ro"), Permissions::from_mode(0o400)).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::set_permissions(dir.join("sub"), Permissions::from_mode(0o775)).unwrap();
        std::fs::write(dir.join("sub/x"), b"x").unwrap();
        std::fs::set_permissions(dir.join("sub/x"), Permissions::from_mode(0o755)).unwrap();
        assert_eq!(prepare(&dir).unwrap(), 4);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("wide")), 0o600);
        assert_eq!(mode(&dir.join("ro")), 0o400);
        assert_eq!(mode(&dir.join("sub")), 0o700);
        assert_eq!(mode(&dir.join("sub/x")), 0o700 & FILE_MODE);
        create_private(&dir.join("wide")).unwrap();
        assert_eq!(std::fs::read(dir.join("wide")).unwrap(), b"x", "an existing file keeps its content");
        assert_eq!(prepare(&dir).unwrap(), 0, "a second pass changes nothing");
    }

    #[test]
    fn a_missing_or_empty_store_in_an_initialised_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (store, key) = (dir.join("hush.redb"), dir.join("mfa.key"));
        assert_eq!(check_store(dir, &store, &key).unwrap(), StoreFile::New);
        std::fs::write(&store, b"").unwrap();
        assert_eq!(check_store(dir, &store, &key).unwrap(), StoreFile::New, "a fresh folder's empty file");
        mark(dir, "hush.redb").unwrap();
        assert_eq!(mode(&dir.join(MARKER_FILE)), 0o600);
        let e = check_store(dir, &store, &key).unwrap_err().to_string();
        assert!(e.contains("is empty (0 bytes)") && e.contains("Backup and restore"), "{e}");
        std::fs::remove_file(&store).unwrap();
        assert!(check_store(dir, &store, &key).unwrap_err().to_string().contains("is missing"));
        assert!(refuse_empty(dir, &store).is_err());
        std::fs::write(&store, b"x").unwrap();
        assert_eq!(check_store(dir, &store, &key).unwrap(), StoreFile::Existing);
        // A folder from before the marker: its MFA key is the evidence.
        std::fs::remove_file(dir.join(MARKER_FILE)).unwrap();
        std::fs::remove_file(&store).unwrap();
        std::fs::write(&key, b"k").unwrap();
        assert!(check_store(dir, &store, &key).unwrap_err().to_string().contains("mfa.key"));
    }
}
