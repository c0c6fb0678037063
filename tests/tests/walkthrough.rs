//! The README's five-minute walkthrough, run as a newcomer runs it: on a machine whose `$HOME`
//! does not exist yet, `hushd` started with no flag from an empty folder (so on
//! 127.0.0.1:8080, data in ./hush-data), then every line of the walkthrough block of README.md,
//! exactly as printed, through `bash`. Each `# ...` line under a command is an output line the
//! README promises: it must appear (`...` stands for what differs from run to run).
//!
//! Two substitutions only: `cargo run --release --bin hushd` and `cargo build --release --bin
//! hush && export PATH=...` use the binaries this test suite built (debug), and `listen` runs
//! in the background while the next commands run, as in a second terminal. A person types the
//! one-time password and the new one at the prompts; here they come on stdin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use hush_tests::bin;
use hush_tests::cli::{has_line, lines_of, wait_for};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// The lines of the sh code blocks between `from` and `to`.
fn block_lines(readme: &str, from: &str, to: &str) -> Vec<String> {
    let start = readme.find(from).unwrap_or_else(|| panic!("README marker {from}"));
    let end = start + readme[start..].find(to).unwrap_or_else(|| panic!("README marker {to}"));
    let mut out = Vec::new();
    let mut inside = false;
    for l in readme[start..end].lines() {
        let l = l.trim_end();
        if l.starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside && !l.is_empty() {
            out.push(l.to_owned());
        }
    }
    out
}

/// A README line is a command, followed by the output lines it promises.
#[derive(Debug)]
struct Step {
    line: String,
    expect: Vec<String>,
}

fn steps(lines: &[String]) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for l in lines {
        match l.strip_prefix("# ") {
            Some(e) => out.last_mut().expect("an output line before any command").expect.push(e.to_owned()),
            None => out.push(Step { line: l.clone(), expect: Vec::new() }),
        }
    }
    out
}

/// Kills a child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The environment of a newcomer's shell: no HUSH_* settings (profiles go to the default,
/// `~/.hush`), a home that does not exist.
fn newcomer(cmd: &mut Command, home: &Path, path: &str) {
    cmd.env_clear().env("PATH", path).env("HOME", home).env("LANG", "C.UTF-8");
}

#[test]
fn readme_walkthrough_works_as_written() {
    let readme = readme();
    let root = tempfile::tempdir().unwrap();
    // Nothing exists yet: neither $HOME nor $HUSH_HOME (its default, ~/.hush).
    let home = root.path().join("home").join("newcomer");
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let hushd = bin("hushd");
    let bin_dir: PathBuf = hushd.parent().unwrap().to_owned();
    assert!(bin_dir.join("hush").exists(), "the hush binary is built next to hushd");
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display());

    // The first terminal.
    let node_steps = steps(&block_lines(&readme, "<!-- walkthrough:node -->", "<!-- walkthrough:start -->"));
    assert_eq!(node_steps.len(), 1, "{node_steps:?}");
    assert_eq!(node_steps[0].line, "cargo run --release --bin hushd");
    let mut cmd = Command::new(&hushd);
    newcomer(&mut cmd, &home, &path);
    cmd.current_dir(&work).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut node = Killed(cmd.spawn().unwrap());
    let node_out = lines_of(node.0.stdout.take().unwrap());
    let mut printed = Vec::new();
    wait_for(&node_out, &mut printed, "hushd listening on ...", "hushd");
    for e in &node_steps[0].expect {
        assert!(printed.iter().any(|l| has_line(l, e)), "hushd did not print `{e}`: {printed:?}");
    }
    let one_time = printed
        .iter()
        .find_map(|l| l.strip_prefix("One-time password (shown only now): "))
        .expect("the one-time password")
        .trim()
        .to_owned();
    assert!(work.join("hush-data").is_dir(), "data in ./hush-data");

    // The other terminals.
    let all = steps(&block_lines(&readme, "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"));
    assert!(all.len() >= 14, "walkthrough too short: {all:?}");
    let new_admin_password = "walkthrough-admin-pw-1";
    let mut listener: Option<(Killed, mpsc::Receiver<String>, mpsc::Receiver<String>)> = None;
    let mut heard = Vec::new();
    let mut admin_logins = 0;
    for step in &all {
        let line = step.line.as_str();
        if line.starts_with("cargo build --release --bin hush && export PATH=")
            || line.starts_with("export PATH=")
        {
            assert!(line.contains("export PATH=\"$PWD/target/release:$PATH\""), "{line}");
            continue;
        }
        assert!(line.starts_with("hush "), "a README line this test does not know how to run: {line}");
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(line).current_dir(&work);
        newcomer(&mut cmd, &home, &path);
        if line.ends_with(" listen") {
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let out = lines_of(child.stdout.take().unwrap());
            let err = lines_of(child.stderr.take().unwrap());
            let mut seen = Vec::new();
            // It is connected and caught up before the next terminal starts.
            wait_for(&err, &mut seen, "(up to date; waiting for messages)", "listen");
            listener = Some((Killed(child), out, err));
            continue;
        }
        let stdin = if line == "hush --profile admin login --user admin" {
            // At `Password:` the one-time password; then the new one, twice.
            admin_logins += 1;
            format!("{one_time}\n{new_admin_password}\n{new_admin_password}\n")
        } else {
            String::new()
        };
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "`{line}` failed: {stdout}{stderr}");
        assert!(!stderr.contains("error"), "`{line}`: {stderr}");
        let both = format!("{stdout}{stderr}");
        for e in &step.expect {
            assert!(has_line(&both, e), "`{line}` did not print `{e}`; it printed:\n{both}");
        }
        // What the README says the listener prints.
        if let Some((_, out, _)) = &listener {
            if line == "hush --profile bob send alice \"hello from bob\"" {
                wait_for(out, &mut heard, "bob/1: hello from bob", "alice's listen");
            }
            if line == "hush --profile bob group send project \"hello team\"" {
                wait_for(out, &mut heard, "[project] bob/1: hello team", "alice's listen");
            }
        }
    }
    assert_eq!(admin_logins, 1, "the walkthrough logs the administrator in once");
    for said in ["`bob/1: hello from bob`", "`[project] bob/1: hello team`"] {
        assert!(readme.contains(said), "the README no longer says {said}");
        let said = said.trim_matches('`');
        assert!(heard.iter().any(|l| l == said), "alice's listen printed {heard:?}");
    }

    // Alice's own group commands went through her running listen: it was never displaced.
    let (mut listen, _, err) = listener.expect("the walkthrough runs listen");
    assert!(listen.0.try_wait().unwrap().is_none(), "alice's listen stopped");
    let err: Vec<String> = err.try_iter().collect();
    assert!(!err.iter().any(|l| l.contains("took the connection") || l.contains("4409")), "{err:?}");

    // The profile folder and files are private to their owner.
    use std::os::unix::fs::PermissionsExt;
    let hush_home = home.join(".hush");
    let mode = std::fs::metadata(&hush_home).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "profile folder mode");
    for f in ["admin.json", "admin.state", "alice.json", "alice.state", "bob.json", "bob.state"] {
        let mode = std::fs::metadata(hush_home.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} readable by others");
    }

    // The one-time password is dead; the new one works.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = hush_client::Client::new("http://127.0.0.1:8080");
        let old = hush_tests::try_login(&c, "default", "admin", &one_time).await;
        assert!(old.is_err(), "the one-time password still works");
        let new = hush_tests::try_login(&c, "default", "admin", new_admin_password).await;
        assert!(
            new.is_ok_and(|s| !s.login_info().password_change_required),
            "the new password does not work"
        );
    });
    drop(listen);
    drop(node);
}

#[test]
fn output_patterns_match_as_the_readme_means() {
    assert!(has_line("Sent 1234 to alice.", "Sent ... to alice."));
    assert!(!has_line("Sent 1234 to bob.", "Sent ... to alice."));
    assert!(has_line("x\nCreated default/alice.\n", "Created default/alice."));
    assert!(!has_line("Created default/alice2.", "Created default/alice."));
    assert!(!has_line("warning: Created default/alice.", "Created default/alice."));
}
