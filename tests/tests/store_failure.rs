//! An operator's bad day (issue 12): a full disk under load, and a store file that went
//! missing or empty.
//!
//! - A full disk refuses sends with `unavailable` (nothing stored), `/readyz` says 503
//!   `disk_full` within 2 s, the log says it a few times, not once per send; once space is
//!   freed the node accepts again without a restart, and every accepted envelope is delivered,
//!   in order, and no refused one.
//! - A data folder that was initialised never takes a missing or 0-byte store file for a first
//!   run: the node exits non-zero naming the file and the recovery, and creates nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hush_protocol::ids::UserId;
use hush_protocol::wire::{ClientFrame, ErrorCode, ServerFrame};
use hush_tests::{bin, drain, Node};

/// A tmpfs of `size` mounted on a new folder, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root): the test then cannot run here.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs { dir: dir.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system of `dir` with `dir/filler` until it says "no space left".
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let mb = vec![0x5a; 1 << 20];
    while f.write_all(&mb).is_ok() {}
    // The last megabyte may have gone in part: fill what is left page by page.
    let page = vec![0x5a; 4096];
    while f.write_all(&page).is_ok() {}
    while f.write_all(&[0x5a]).is_ok() {}
    let _ = f.sync_all();
    path
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Accepted,
    Unavailable,
}

/// Sends 256-byte envelopes to bob's device one after another (each answer awaited, so the
/// order of acceptance is the order of sending) until `stop`; records every answer.
async fn send_until(
    sender: hush_client::Session,
    bob_reg: u32,
    log: Arc<Mutex<Vec<(uuid::Uuid, Outcome)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut conn = sender.connect().await.unwrap();
    drain(&mut conn).await;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let m = hush_tests::send_to_primary("bob", bob_reg, vec![7; 256]);
        let id = m.id;
        conn.send_frame(&ClientFrame::Send(m)).await.unwrap();
        let outcome = loop {
            match hush_tests::next(&mut conn).await {
                ServerFrame::Accepted { id: a } if a == id => break Outcome::Accepted,
                ServerFrame::Error { id: Some(e), code, message, .. } if e == id => {
                    assert_eq!(code, ErrorCode::Unavailable, "a refused send says unavailable: {message}");
                    break Outcome::Unavailable;
                }
                ServerFrame::Deliver(_) | ServerFrame::QueueEmpty | ServerFrame::Ready { .. } => {}
                other => panic!("unexpected answer to a send: {other:?}"),
            }
        };
        log.lock().unwrap().push((id, outcome));
        if outcome == Outcome::Unavailable {
            // A client backs off a little before it retries.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

async fn readyz(node: &Node) -> (u16, serde_json::Value) {
    let r = node.client().http().get(format!("{}/readyz", node.url())).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn count(log: &Mutex<Vec<(uuid::Uuid, Outcome)>>, o: Outcome) -> usize {
    log.lock().unwrap().iter().filter(|(_, x)| *x == o).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_reports_503_and_recovers_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(_fs) = Tmpfs::mount(&data, "24m") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI runs as root and must mount the tmpfs this test fills");
        }
        println!("SKIPPED: mounting a tmpfs needs root");
        return;
    };
    // The node's log goes next to the data folder (outside the tmpfs), so it can still log.
    let node = Node::start_in(&data, None);
    let admin = node.admin().await;
    let bob = node.user(&admin, "bob").await;
    let sender = node.user(&admin, "sender").await;
    let bob_reg = admin.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id;

    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = tokio::spawn(send_until(sender, u32::from(bob_reg.get()), log.clone(), stop.clone()));
    hush_tests::eventually(60, "300 sends accepted", || count(&log, Outcome::Accepted) >= 300).await;
    assert_eq!(count(&log, Outcome::Unavailable), 0, "no refusal before the disk is full");
    assert_eq!(readyz(&node).await.0, 200);

    // The disk fills up while the sender goes on.
    let filler = fill(&data);
    hush_tests::eventually(60, "a send refused on the full disk", || count(&log, Outcome::Unavailable) > 0)
        .await;
    let first_refusal = Instant::now();
    let log_lines_before = node.log().lines().count();
    loop {
        let (status, body) = readyz(&node).await;
        if status == 503 {
            assert_eq!(body["store"], "disk_full", "{body}");
            assert_eq!(body["status"], "unavailable", "{body}");
            break;
        }
        assert!(
            first_refusal.elapsed() < Duration::from_secs(2),
            "/readyz still {status} {body} 2 s after the first refusal"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A 10 s storm of refused sends writes a few lines, not one per send.
    let refused_before = count(&log, Outcome::Unavailable);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let refused_in_storm = count(&log, Outcome::Unavailable) - refused_before;
    let node_log = node.log();
    let storm_lines: Vec<&str> = node_log.lines().skip(log_lines_before).collect();
    println!("storm: {refused_in_storm} sends refused in 10 s, {} log lines", storm_lines.len());
    assert!(
        refused_in_storm >= 100,
        "only {refused_in_storm} sends refused in 10 s: no storm to judge the log by"
    );
    assert!(
        storm_lines.len() <= 40,
        "{} log lines for {refused_in_storm} refused sends in 10 s:\n{}",
        storm_lines.len(),
        storm_lines.join("\n")
    );
    assert!(
        node_log.lines().any(|l| l.contains("disk_full") && l.contains("ERROR")),
        "the log names the cause:\n{node_log}"
    );
    assert!(!node_log.contains("store closed"), "the log blames the wrong cause:\n{node_log}");
    assert_eq!(readyz(&node).await.0, 503, "still failing while the disk is full");

    // Space comes back: the node accepts again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let accepted_before = count(&log, Outcome::Accepted);
    let freed = Instant::now();
    while count(&log, Outcome::Accepted) < accepted_before + 50 {
        assert!(
            freed.elapsed() < Duration::from_secs(30) && !task.is_finished(),
            "sends not accepted again 30 s after space was freed; node log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = readyz(&node).await;
    assert_eq!((status, body["store"].as_str()), (200, Some("ok")), "{body}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();

    // Every accepted envelope is delivered, in the order it was accepted; no refused one is.
    let outcomes = log.lock().unwrap().clone();
    let accepted: Vec<uuid::Uuid> =
        outcomes.iter().filter(|(_, o)| *o == Outcome::Accepted).map(|(id, _)| *id).collect();
    let refused: std::collections::HashSet<uuid::Uuid> =
        outcomes.iter().filter(|(_, o)| *o == Outcome::Unavailable).map(|(id, _)| *id).collect();
    let mut conn = bob.connect().await.unwrap();
    let got = drain(&mut conn).await;
    let mut seen = std::collections::HashSet::new();
    let delivered: Vec<uuid::Uuid> = got.iter().map(|e| e.id).filter(|id| seen.insert(*id)).collect();
    let stored_refused: Vec<_> = delivered.iter().filter(|id| refused.contains(id)).collect();
    assert!(stored_refused.is_empty(), "{} refused sends were stored and delivered", stored_refused.len());
    assert_eq!(
        delivered.len(),
        accepted.len(),
        "accepted {} envelopes, {} delivered",
        accepted.len(),
        delivered.len()
    );
    assert_eq!(delivered, accepted, "delivered in another order than accepted");
}

/// Starts `hushd` on `data` and waits for it to exit; returns (success, stdout + stderr).
fn start_and_wait(data: &Path) -> (bool, String) {
    let out = Command::new(bin("hushd"))
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len())
        })
        .collect();
    v.sort();
    v
}

/// A node whose store holds a user, and its data folder.
async fn node_with_alice() -> (Node, PathBuf) {
    let node = Node::start();
    let admin = node.admin().await;
    node.user(&admin, "alice").await;
    let data = node.data_dir.clone();
    (node, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_empty_store_file_is_refused_not_taken_for_a_first_run() {
    let (mut node, data) = node_with_alice().await;
    assert!(node.terminate());
    let store = data.join("hush.redb");
    assert!(data.join("hush-data.json").exists(), "an initialised folder carries its marker");
    // A graceful stop closed the file cleanly: the next start needs no repair.
    let check =
        Command::new(bin("hushd")).args(["store", "check", "--data-dir"]).arg(&data).output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{report}{}", String::from_utf8_lossy(&check.stderr));
    assert!(!report.contains("not closed cleanly"), "{report}");

    // Truncated to 0 bytes (a copy gone wrong, a full disk during a restore).
    std::fs::write(&store, b"").unwrap();
    let before = listing(&data);
    let (ok, out) = start_and_wait(&data);
    assert!(!ok, "a node started on an empty store file:\n{out}");
    assert!(out.contains(&store.display().to_string()), "the message names the file:\n{out}");
    assert!(
        out.contains("is empty (0 bytes)") && out.contains("Backup and restore"),
        "and the recovery:\n{out}"
    );
    assert!(!out.contains("First run") && !out.contains("One-time password"), "no new administrator:\n{out}");
    assert_eq!(listing(&data), before, "nothing was created or changed");

    // Deleted.
    std::fs::remove_file(&store).unwrap();
    let before = listing(&data);
    let (ok, out) = start_and_wait(&data);
    assert!(!ok, "a node started without its store file:\n{out}");
    assert!(out.contains("is missing") && out.contains(&store.display().to_string()), "{out}");
    assert!(!out.contains("First run"), "{out}");
    assert_eq!(listing(&data), before, "nothing was created");
    assert!(!store.exists());

    // A folder from before the marker: the MFA key alone is the evidence.
    std::fs::remove_file(data.join("hush-data.json")).unwrap();
    let (ok, out) = start_and_wait(&data);
    assert!(!ok && out.contains("mfa.key"), "{out}");
    assert!(!store.exists());
}

/// A store file that cannot be opened is named by its cause, one line, no crash: held by
/// another node (`locked`), or damaged (`corrupted`, even where redb itself would panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_opened_is_named_by_its_cause() {
    let (mut node, data) = node_with_alice().await;
    let (ok, out) = start_and_wait(&data);
    assert!(!ok, "a second node opened a store another one holds:\n{out}");
    assert!(out.contains("locked") && out.contains("stop it first"), "{out}");
    assert!(!out.contains("corrupted") && !out.contains("panicked"), "{out}");

    assert!(node.terminate());
    let store = data.join("hush.redb");
    let mut bytes = std::fs::read(&store).unwrap();
    for off in (8192..bytes.len()).step_by(4096) {
        bytes[off + 100] ^= 0xff;
    }
    std::fs::write(&store, &bytes).unwrap();
    let (ok, out) = start_and_wait(&data);
    assert!(!ok, "a node started on a damaged store:\n{out}");
    assert!(out.contains("corrupted") && out.contains("hushd store check"), "{out}");
    assert!(!out.contains("panicked") && !out.contains("locked"), "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("hushd: error")).collect();
    assert_eq!(errors.len(), 1, "{out}");
}
