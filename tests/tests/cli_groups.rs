//! The `hush` CLI's group commands against a real node: create, send, add, remove, list, with
//! `listen` decrypting what each member may read. The profile state files are private to their
//! owner and, like the node's data folder, hold no plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hush_tests::{bin, Node};

struct Cli<'a> {
    node: &'a Node,
    home: &'a Path,
}

impl Cli<'_> {
    fn cmd(&self, profile: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin("hush"));
        c.arg("--profile")
            .arg(profile)
            .args(args)
            .env("HUSH_HOME", self.home)
            .env("HUSH_SERVER", self.node.url());
        c
    }

    /// Runs a command that must succeed; returns its stdout.
    fn run(&self, profile: &str, args: &[&str]) -> String {
        let out = self.cmd(profile, args).output().unwrap();
        assert!(
            out.status.success(),
            "`hush --profile {profile} {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `listen` and waits until it is up to date (before anyone sends to it).
    fn listen(&self, profile: &str, extra: &[&str]) -> Child {
        let mut args = vec!["listen"];
        args.extend_from_slice(extra);
        let mut child =
            self.cmd(profile, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap() == 0 {
                let mut out = String::new();
                let _ = child.stdout.take().unwrap().read_to_string(&mut out);
                panic!("{profile}: listen ended before it was up to date: {seen}{out}");
            }
            seen.push_str(&line);
            if line.contains("up to date") {
                break;
            }
        }
        // Keep draining stderr so the child never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        child
    }
}

/// Runs `listen` over what is already queued; returns its stdout.
fn listen_queued(cli: &Cli<'_>, profile: &str, extra: &[&str]) -> String {
    let mut args = vec!["listen"];
    args.extend_from_slice(extra);
    let child = cli.cmd(profile, &args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    finish(child)
}

/// Waits for `child` to exit (it stops after `--count` messages or `--idle` seconds) and
/// returns its stdout.
fn finish(mut child: Child) -> String {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(30), "listener did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    out
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else { return false };
    rd.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            files_contain(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        }
    })
}

#[test]
fn group_commands_end_to_end() {
    let node = Node::start();
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { node: &node, home: home.path() };
    let admin_password = node.admin_password_set_blocking();
    cli.run("admin", &["login", "--user", "admin", "--password", &admin_password]);
    for u in ["alice", "bob", "carol"] {
        cli.run("admin", &["admin", "create-user", u, "--password", &format!("{u}-secret-1")]);
        cli.run(u, &["login", "--user", u, "--password", &format!("{u}-secret-1")]);
    }
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let first = format!("hello team {tag}");
    let second = format!("carol is here {tag}");
    let third = format!("bob has left {tag}");

    let out = cli.run("alice", &["group", "create", "project", "bob"]);
    assert!(out.starts_with("Created group project ("), "{out}");
    let alice = cli.listen("alice", &["--count", "1"]);
    cli.run("bob", &["group", "send", "project", &first]);
    assert_eq!(finish(alice).trim(), format!("[project] bob/1: {first}"));

    // carol joins: she reads what is sent from now on, not what came before.
    cli.run("alice", &["group", "add", "project", "carol"]);
    cli.run("bob", &["group", "send", "project", &second]);
    assert_eq!(listen_queued(&cli, "carol", &["--idle", "3"]).trim(), format!("[project] bob/1: {second}"));

    // bob is removed: alice's next message reaches carol, not bob.
    let out = cli.run("alice", &["group", "remove", "project", "bob"]);
    assert!(out.contains("now has alice, carol"), "{out}");
    cli.run("alice", &["group", "send", "project", &third]);
    assert_eq!(listen_queued(&cli, "carol", &["--count", "1"]).trim(), format!("[project] alice/1: {third}"));
    let bob_out = listen_queued(&cli, "bob", &["--idle", "3"]);
    assert!(!bob_out.contains(&third), "{bob_out}");

    let list = cli.run("alice", &["group", "list"]);
    assert!(list.contains("project") && list.contains("alice, carol"), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&cli.run("alice", &["group", "list", "--output", "json"])).unwrap();
    let members: Vec<&str> =
        json["groups"][0]["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert_eq!(
        (json["groups"][0]["name"].as_str(), members),
        (Some("project"), vec!["alice", "carol"]),
        "{json}"
    );

    // Private profile state; no plaintext in it nor in the node's data folder.
    use std::os::unix::fs::PermissionsExt;
    for u in ["alice", "bob", "carol"] {
        let p = home.path().join(format!("{u}.state"));
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o077, 0, "{u}.state");
    }
    for t in [&first, &second, &third] {
        assert!(!files_contain(home.path(), t.as_bytes()), "plaintext in a profile");
        assert!(!files_contain(&node.data_dir, t.as_bytes()), "plaintext in the node's data");
        assert!(!node.log().contains(t.as_str()), "plaintext in the node's log");
    }
    assert!(files_contain(&node.data_dir, b"carol"), "the data folder was not searched");
}
