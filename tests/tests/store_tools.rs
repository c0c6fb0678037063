//! `hushd store check|salvage|backup` against stores made by real nodes.
//!
//! The tests count records with redb itself (read-only, per table), and find a live leaf of the
//! queue table from the page layout redb documents (`docs/design.md` of the redb crate: a leaf
//! is type byte 1, a u16 entry count, the value end offsets, then the fixed-width u64 keys,
//! then the values), checking every record of the page against what redb returns for its key.
//! Copy-on-write leaves stale copies of pages in the file; a stale copy flipped changes nothing
//! redb reads, so the page kept is the first candidate whose flip `store check` reports as that
//! very page: `check` serves as the liveness oracle only, every count is the test's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_client::Session;
use hush_protocol::ids::UserId;
use hush_protocol::wire::{ClientFrame, ServerFrame};
use hush_tests::{bin, drain, Node};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_by_seq");
/// Content of envelope `i`: a marker the tests find in the file and in what bob receives.
fn content(i: usize) -> Vec<u8> {
    let mut c = format!("MARK{i:06}:").into_bytes();
    c.resize(200, b'.');
    c
}

fn marker_in(bytes: &[u8]) -> Option<usize> {
    let at = bytes.windows(4).position(|w| w == b"MARK")?;
    std::str::from_utf8(bytes.get(at + 4..at + 10)?).ok()?.parse().ok()
}

/// Runs `hushd` with `args`.
fn hushd(args: &[&str]) -> Output {
    std::process::Command::new(bin("hushd")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Opens a copy of the store at `path` with redb. A node stopped with SIGTERM leaves its file
/// marked "not closed cleanly" today (its store writer thread outlives `main`), which redb's
/// read-only open refuses; the writable open repairs it, so it runs on a copy.
fn open_copy(path: &Path) -> (redb::Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(path, &copy).unwrap();
    (redb::Database::open(&copy).unwrap(), dir)
}

/// Records per table, read by redb.
fn counts(path: &Path) -> BTreeMap<String, u64> {
    let (db, _dir) = open_copy(path);
    let t = db.begin_read().unwrap();
    t.list_tables()
        .unwrap()
        .map(|h| {
            let name = h.name().to_owned();
            (name, t.open_untyped_table(h).unwrap().len().unwrap())
        })
        .collect()
}

/// The queue, seq -> value, read by redb.
fn queue(path: &Path) -> BTreeMap<u64, Vec<u8>> {
    let (db, _dir) = open_copy(path);
    let t = db.begin_read().unwrap();
    let q = t.open_table(QUEUE).unwrap();
    q.iter().unwrap().map(|i| i.unwrap()).map(|(k, v)| (k.value(), v.value().to_vec())).collect()
}

/// Pages that hold, by redb's leaf layout, only records of the live queue with exactly their
/// values: (offset, the keys of the page, offset of a byte inside the values).
fn queue_leaf_candidates(file: &[u8], live: &BTreeMap<u64, Vec<u8>>) -> Vec<(usize, Vec<u64>, usize)> {
    let page = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    for off in (page..file.len()).step_by(page) {
        let p = &file[off..off + page];
        let n = u16::from_le_bytes([p[2], p[3]]) as usize;
        if p[0] != 1 || n < 2 || 4 + 12 * n > page {
            continue;
        }
        let keys_at = 4 + 4 * n;
        let keys: Vec<u64> = (0..n)
            .map(|i| u64::from_le_bytes(p[keys_at + 8 * i..keys_at + 8 * i + 8].try_into().unwrap()))
            .collect();
        let mut start = keys_at + 8 * n;
        let mut ok = true;
        for (i, k) in keys.iter().enumerate() {
            let end = u32::from_le_bytes(p[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize;
            if end < start || end > page || live.get(k).map(Vec::as_slice) != Some(&p[start..end]) {
                ok = false;
                break;
            }
            start = end;
        }
        if ok {
            out.push((off, keys, keys_at + 8 * n + 20));
        }
    }
    out
}

/// Pipelines envelopes `from..` to bob's device 1 until `stop`, recording the ids accepted
/// (in order) and their index.
async fn send(
    session: Session,
    bob_reg: u32,
    from: usize,
    limit: usize,
    accepted: Arc<Mutex<Vec<(uuid::Uuid, usize)>>>,
    stop: Arc<AtomicBool>,
) {
    let mut conn = session.connect().await.unwrap();
    let _ = drain(&mut conn).await;
    let window = 32;
    let (mut sent, mut inflight) = (from, BTreeMap::new());
    loop {
        while inflight.len() < window && sent < from + limit && !stop.load(Ordering::Relaxed) {
            let m = hush_tests::send_to_primary("bob", bob_reg, content(sent));
            let id = m.id;
            conn.send_frame(&ClientFrame::Send(m)).await.unwrap();
            inflight.insert(id, sent);
            sent += 1;
        }
        if inflight.is_empty() {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(20), conn.next_frame()).await.unwrap().unwrap() {
            ServerFrame::Accepted { id } => {
                let i = inflight.remove(&id).unwrap();
                accepted.lock().unwrap().push((id, i));
            }
            ServerFrame::Error { .. } => panic!("a send was refused"),
            _ => {}
        }
    }
}

/// A node with users alice and bob, bob offline: returns the node, alice, bob and bob's
/// registration id.
async fn node_with_users() -> (Node, Session, Session, u32) {
    let node = Node::start();
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let _carol = node.user(&admin, "carol").await;
    let reg =
        admin.devices(Some(&UserId::new("bob").unwrap())).await.unwrap().devices[0].registration_id.get();
    (node, alice, bob, u32::from(reg))
}

/// A new data folder holding `store` as its store and the original node's MFA key.
fn data_folder(root: &Path, name: &str, store: &Path, original: &Path) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(store, d.join("hush.redb")).unwrap();
    std::fs::copy(original.join("mfa.key"), d.join("mfa.key")).unwrap();
    d
}

fn one_line(o: &Output) -> String {
    let e = text(&o.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "one line on stderr, got: {e:?}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_a_flipped_byte_and_salvage_keeps_every_other_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, alice, bob, bob_reg) = node_with_users().await;
    let accepted = Arc::new(Mutex::new(Vec::new()));
    send(alice, bob_reg, 0, 600, accepted.clone(), Arc::new(AtomicBool::new(false))).await;
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 600);
    assert!(node.terminate());
    let original = tmp.path().join("original.redb");
    std::fs::copy(node.data_dir.join("hush.redb"), &original).unwrap();
    let before = counts(&original);
    let live = queue(&original);
    assert!(before["users"] >= 4 && before["sessions"] >= 4, "{before:?}");
    // seq -> envelope index, from the markers in the values (the node may queue events too).
    let index: BTreeMap<u64, usize> = live.iter().filter_map(|(k, v)| Some((*k, marker_in(v)?))).collect();
    assert_eq!(index.len(), 600);
    let total = before["queue_by_seq"];
    let (first, last) = (*index.keys().next().unwrap(), *index.keys().last().unwrap());

    // A healthy file: exit 0.
    let ok = hushd(&["store", "check", original.to_str().unwrap()]);
    assert!(ok.status.success(), "{}{}", text(&ok.stdout), text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains(&format!("table queue_by_seq: {total} records, {total} readable, 0 lost")),
        "{}",
        text(&ok.stdout)
    );
    assert!(text(&ok.stdout).contains("store: healthy"));

    // Flip one byte inside the values of a live queue leaf (not the first or the last one).
    let bytes = std::fs::read(&original).unwrap();
    let mut candidates = queue_leaf_candidates(&bytes, &live);
    candidates.retain(|(_, keys, _)| keys[0] > first && *keys.last().unwrap() < last);
    candidates.sort_by_key(|(_, keys, _)| std::cmp::Reverse(keys.len()));
    assert!(!candidates.is_empty(), "no queue leaf found in the file");
    let damaged = tmp.path().join("damaged.redb");
    let mut found = None;
    let mut tried = 0;
    for (off, keys, inside) in candidates.iter().take(20) {
        tried += 1;
        std::fs::copy(&original, &damaged).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&damaged).unwrap();
        f.write_all_at(&[bytes[off + inside] ^ 0x01], (off + inside) as u64).unwrap();
        drop(f);
        let out = hushd(&["store", "check", damaged.to_str().unwrap()]);
        if out.status.success() {
            continue; // a stale copy: nothing reads it
        }
        let report = text(&out.stdout);
        assert!(
            report.contains(&format!("table queue_by_seq: DAMAGED leaf page at offset {off} (")),
            "check names another page than the one flipped: {report}"
        );
        assert!(one_line(&out).contains("damaged"));
        found = Some((*off, keys.clone(), report));
        break;
    }
    let (off, lost_keys, report) = found.expect("no candidate page was live");
    let n = lost_keys.len();
    assert!(
        report.contains(&format!(
            "table queue_by_seq: {total} records, {} readable, {n} lost",
            total - n as u64
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("records after {} and before {}", lost_keys[0] - 1, lost_keys[n - 1] + 1)),
        "{report}"
    );
    for (t, c) in &before {
        if t != "queue_by_seq" {
            assert!(
                report.contains(&format!("table {t}: {c} records, {c} readable, 0 lost")),
                "{t}: {report}"
            );
        }
    }
    assert!(report.contains("store: DAMAGED (1 page(s) refused"), "{report}");
    eprintln!(
        "{} candidate leaves, {tried} tried; flipped a byte of the live queue leaf at offset {off} holding seqs {lost_keys:?}",
        candidates.len()
    );

    // Salvage: every record but those of the page.
    let salvaged = tmp.path().join("salvaged");
    let out = hushd(&["store", "salvage", damaged.to_str().unwrap(), "--to", salvaged.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("({n} record(s) lost)")), "{}", text(&out.stdout));
    let file = salvaged.join("hush.redb");
    let after = counts(&file);
    for (t, c) in &before {
        let expected = if t == "queue_by_seq" { c - n as u64 } else { *c };
        assert_eq!(after.get(t).copied().unwrap_or(0), expected, "table {t}");
    }
    assert!(after.iter().all(|(t, c)| *c == 0 || before.contains_key(t)), "{after:?}");
    let got = queue(&file);
    let missing: Vec<u64> = live.keys().filter(|k| !got.contains_key(k)).copied().collect();
    assert_eq!(missing, lost_keys, "exactly the records of the damaged page are missing");
    assert!(got.iter().all(|(k, v)| live.get(k) == Some(v)), "every other record is copied as it was");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(hushd(&["store", "check", file.to_str().unwrap()]).status.success());

    // The salvaged store serves: bob's queue, but for the lost page, is delivered.
    let data = data_folder(tmp.path(), "served", &file, &node.data_dir);
    let node2 = Node::start_in(&data, Some(&node.addr));
    assert!(node2.admin_password.is_none(), "the salvaged store is not mistaken for a first run");
    let mut conn = bob.connect().await.unwrap();
    let delivered: BTreeSet<usize> =
        drain(&mut conn).await.iter().map(|e| marker_in(&e.content.0).unwrap()).collect();
    let lost: BTreeSet<usize> = lost_keys.iter().filter_map(|k| index.get(k).copied()).collect();
    assert!(!lost.is_empty());
    let expected: BTreeSet<usize> = accepted.iter().map(|(_, i)| *i).filter(|i| !lost.contains(i)).collect();
    assert_eq!(delivered, expected);
    // New envelopes get fresh sequence numbers after the salvaged ones.
    let alice = node2.device("alice").await;
    let mut a = alice.connect().await.unwrap();
    let _ = drain(&mut a).await;
    a.send_message(&UserId::new("bob").unwrap(), |_, _| content(999)).await.unwrap();
    match hush_tests::next(&mut conn).await {
        ServerFrame::Deliver(e) => assert_eq!(marker_in(&e.content.0), Some(999)),
        other => panic!("expected the new envelope, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_restores_every_envelope_accepted_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut node, alice, bob, bob_reg) = node_with_users().await;
    let socket = node.data_dir.join("hushd.sock");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(send(alice, bob_reg, 0, usize::MAX / 2, accepted.clone(), stop.clone()));
    let t0 = std::time::Instant::now();
    while accepted.lock().unwrap().len() < 1500 {
        assert!(t0.elapsed() < Duration::from_secs(60), "sender too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The store file is the node's: check refuses it rather than read a moving file.
    let busy = hushd(&["store", "check", node.data_dir.join("hush.redb").to_str().unwrap()]);
    assert!(!busy.status.success());
    assert!(one_line(&busy).contains("in use by a running node"));

    let before: HashSet<uuid::Uuid> = accepted.lock().unwrap().iter().map(|(id, _)| *id).collect();
    let backup = tmp.path().join("backup.redb");
    let t_backup = std::time::Instant::now();
    let args =
        ["--data-dir", node.data_dir.to_str().unwrap(), "store", "backup", "--to", backup.to_str().unwrap()];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin("hushd")).args(&args).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("written by the serving node"), "{}", text(&out.stdout));
    let at_backup_end = accepted.lock().unwrap().len();
    eprintln!("backup took {:?}; accepted meanwhile: {}", t_backup.elapsed(), at_backup_end - before.len());
    // The node kept accepting during and after the backup.
    while accepted.lock().unwrap().len() < at_backup_end + 100 {
        assert!(t0.elapsed() < Duration::from_secs(120), "sender stalled after the backup");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    let all: HashSet<uuid::Uuid> = accepted.lock().unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(node.terminate());
    assert!(!socket.exists(), "the control socket is removed at stop");
    let check = hushd(&["store", "check", backup.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check.stdout));

    // Restore: a new data folder with the backup and the MFA key, on the same address.
    let data = data_folder(tmp.path(), "restored", &backup, &node.data_dir);
    let _node2 = Node::start_in(&data, Some(&node.addr));
    let mut conn = bob.connect().await.unwrap();
    let delivered: HashSet<uuid::Uuid> = drain(&mut conn).await.iter().map(|e| e.id).collect();
    let missing = before.iter().filter(|id| !delivered.contains(id)).count();
    assert_eq!(missing, 0, "{missing} of {} envelopes accepted before the backup are missing", before.len());
    assert!(delivered.is_subset(&all), "only accepted envelopes are delivered");
    assert!(delivered.len() < all.len(), "envelopes accepted after the backup are not in it");
    eprintln!(
        "accepted before the backup: {}, restored and delivered: {}, accepted in all: {}",
        before.len(),
        delivered.len(),
        all.len()
    );
}

#[test]
fn bad_input_is_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        v.sort();
        v
    };
    std::fs::write(p("notes.txt"), "not a store ".repeat(100)).unwrap();
    std::fs::create_dir(p("full")).unwrap();
    std::fs::write(p("full/keep"), b"keep").unwrap();
    std::fs::write(p("exists.redb"), b"keep").unwrap();
    std::fs::create_dir(p("data")).unwrap();
    let start = listing();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["store".into(), "check".into(), p("none.redb")], "no store file at"),
        (vec!["store".into(), "check".into(), p("notes.txt")], "is not a redb store file"),
        (vec!["store".into(), "salvage".into(), p("none.redb"), "--to".into(), p("out")], "no store file at"),
        (
            vec!["store".into(), "salvage".into(), p("notes.txt"), "--to".into(), p("out")],
            "is not a redb store file",
        ),
        (
            vec!["--data-dir".into(), p("data"), "store".into(), "backup".into(), "--to".into(), p("b.redb")],
            "no store file at",
        ),
        (
            vec![
                "--data-dir".into(),
                p("data"),
                "store".into(),
                "backup".into(),
                "--to".into(),
                p("exists.redb"),
            ],
            "already exists",
        ),
    ];
    for (args, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = hushd(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let e = one_line(&out);
        assert!(e.contains(says), "{args:?}: {e}");
        assert!(out.stdout.is_empty(), "{args:?} printed {}", text(&out.stdout));
        assert_eq!(listing(), start, "{args:?} wrote something");
    }
    // A real store, salvaged into a folder that is not empty.
    let data = tmp.path().join("data");
    let mut node = Node::start_in(&data, None);
    assert!(node.terminate());
    let start = listing();
    let out = hushd(&["store", "salvage", data.join("hush.redb").to_str().unwrap(), "--to", &p("full")]);
    assert!(!out.status.success());
    assert!(one_line(&out).contains("already exists"));
    assert_eq!(listing(), start);
    assert_eq!(std::fs::read_dir(p("full")).unwrap().count(), 1);
    assert_eq!(std::fs::read(p("exists.redb")).unwrap(), b"keep");
}
