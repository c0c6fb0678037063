//! The README's five-minute walkthrough, run as written: every `hush` command between the
//! walkthrough markers of README.md is executed against a real node, in order. The only
//! changes: the administrator's one-time password is passed with `--password` (a person pastes
//! it at the prompt), and `listen` runs in the background and stops after one message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hush_tests::{bin, Node};

fn walkthrough_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("<!-- walkthrough:start -->").expect("walkthrough start marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("walkthrough end marker");
    readme[start..end].lines().map(str::trim).filter(|l| l.starts_with("hush ")).map(split_shell).collect()
}

/// Splits a command line on spaces, honouring double quotes (all the README uses).
fn split_shell(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn readme_walkthrough_works_as_written() {
    let node = Node::start();
    let home = tempfile::tempdir().unwrap();
    let cmds = walkthrough_commands();
    assert!(cmds.len() >= 7, "walkthrough too short: {cmds:?}");
    let hush = bin("hush");
    let mut listener = None;
    for args in cmds {
        let mut args: Vec<String> = args[1..].to_vec();
        if args.windows(2).any(|w| w == ["login", "--user"]) && !args.contains(&"--password".to_owned()) {
            args.push("--password".into());
            // The harness has replaced the one-time password (a login with it may only set a
            // new one).
            args.push(node.admin_password_set_blocking());
        }
        let mut cmd = Command::new(&hush);
        cmd.args(&args).env("HUSH_HOME", home.path()).env("HUSH_SERVER", node.url());
        if args.contains(&"listen".to_owned()) {
            cmd.arg("--count").arg("1").stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            // Wait until the listener is connected and up to date before anyone sends.
            let stderr = child.stderr.take().unwrap();
            let mut line = String::new();
            BufReader::new(stderr).read_line(&mut line).unwrap();
            assert!(line.contains("up to date"), "listen did not connect: {line}");
            listener = Some(child);
            continue;
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "`hush {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut child = listener.expect("the walkthrough has a listen step");
    let t0 = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "listener got no message");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut out).unwrap();
    assert_eq!(out.trim(), "bob/1: hello from bob");
    // The profile files are private to their owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.path().join("alice.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "profile readable by others");
}
