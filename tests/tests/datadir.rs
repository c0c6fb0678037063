//! The data folder is private: a node started on a folder that does not exist creates it 0700
//! with every file 0600; a node started on an existing folder with wider modes tightens them
//! and says so in its log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hush_tests::{bin, Node};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every entry under `dir` (itself included) with its mode.
fn walk(dir: &Path) -> Vec<(std::path::PathBuf, bool, u32)> {
    let mut out = vec![(dir.to_owned(), true, mode(dir))];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push((p.clone(), false, mode(&p)));
        }
    }
    out
}

fn assert_private(dir: &Path) {
    let entries = walk(dir);
    let files: Vec<_> =
        entries.iter().filter(|e| !e.1).map(|e| e.0.file_name().unwrap().to_owned()).collect();
    assert!(files.iter().any(|f| f == "hush.redb"), "no store file in {files:?}");
    assert!(files.iter().any(|f| f == "mfa.key"), "no mfa.key in {files:?}");
    for (p, is_dir, m) in entries {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{} has mode {m:04o}, want {want:04o}", p.display());
    }
}

#[test]
fn a_new_data_folder_is_0700_and_its_files_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("new/data");
    assert!(!data.exists());
    // Started by hand: the harness creates its data folder itself, and this test is about the
    // node creating it.
    let mut child = Command::new(bin("hushd"))
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--data-dir"])
        .arg(&data)
        .env("HUSH_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("hushd did not start");
        if line.starts_with("hushd listening on") {
            break;
        }
    }
    assert_private(&data);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wider_modes_on_an_existing_folder_are_tightened_at_start_and_logged() {
    let mut node = Node::start();
    // Someone restored a backup with the wrong modes.
    let data = node.data_dir.clone();
    assert!(node.terminate());
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["hush.redb", "mfa.key"] {
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::write(data.join("notes.txt"), b"left by an operator").unwrap();
    std::fs::set_permissions(data.join("notes.txt"), std::fs::Permissions::from_mode(0o666)).unwrap();
    node.restart();
    assert_private(&data);
    let log = node.log();
    for f in ["hush.redb", "mfa.key", "notes.txt"] {
        assert!(
            log.lines().any(|l| l.contains("mode restricted") && l.contains(f)),
            "no log line names the tightened {f}:\n{log}"
        );
    }
    // The node still works on the tightened folder (it can read its store and key).
    let admin = node.admin().await;
    assert!(!admin.devices(None).await.unwrap().devices.is_empty());
}
