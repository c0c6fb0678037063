//! The `hush` CLI as a test drives it: one profile folder per [`Cli`], commands that must
//! succeed or fail with one error line, and an [`Authenticator`] app making RFC 6238 codes.

use std::io::Write;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{bin, Node};

/// A profile folder (`HUSH_HOME`) and the node the commands talk to.
pub struct Cli {
    url: String,
    /// The node's test CA, for a TLS node (`HUSH_CA_FILE`).
    ca: Option<PathBuf>,
    home: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Cli {
    /// A new, empty profile folder for `node`.
    pub fn new(node: &Node) -> Cli {
        let tmp = tempfile::tempdir().unwrap();
        Cli { url: node.url(), ca: ca_of(node), home: tmp.path().to_owned(), _tmp: Some(tmp) }
    }

    /// Commands with `home` as profile folder (it need not exist).
    pub fn at(node: &Node, home: &Path) -> Cli {
        Cli { url: node.url(), ca: ca_of(node), home: home.to_owned(), _tmp: None }
    }

    /// The profile folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `hush --profile <profile> <args>`, with no HUSH_* setting inherited but the folder and
    /// the node.
    pub fn cmd(&self, profile: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin("hush"));
        c.arg("--profile")
            .arg(profile)
            .args(args)
            .env("HUSH_HOME", &self.home)
            .env("HUSH_SERVER", &self.url)
            .env_remove("HUSH_OUTPUT")
            .env_remove("HUSH_MFA_CODE")
            .env_remove("HUSH_NEW_PASSWORD")
            .env_remove("HUSH_CA_FILE")
            .env_remove("HUSH_PROFILE")
            .env_remove("HUSH_PASSWORD")
            // A panic would print its backtrace: the "one error line, no backtrace" checks see it.
            .env("RUST_BACKTRACE", "1");
        if let Some(ca) = &self.ca {
            c.env("HUSH_CA_FILE", ca);
        }
        c
    }

    /// Runs with `stdin` as standard input.
    pub fn exec(&self, profile: &str, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .cmd(profile, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// A command that must succeed; its stdout.
    pub fn run_in(&self, profile: &str, args: &[&str], stdin: &str) -> String {
        let out = self.exec(profile, args, stdin);
        assert!(
            out.status.success(),
            "`hush --profile {profile} {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// [`Cli::run_in`] with nothing on stdin.
    pub fn run(&self, profile: &str, args: &[&str]) -> String {
        self.run_in(profile, args, "")
    }

    /// A command that must succeed, with `--output json`; its parsed stdout.
    pub fn json(&self, profile: &str, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.run(profile, &a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// A command that must fail with one `error: ...` line on stderr and no backtrace; the
    /// exit code and that line.
    pub fn fail_code(&self, profile: &str, args: &[&str], stdin: &str) -> (i32, String) {
        let out = self.exec(profile, args, stdin);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "`hush {}` should fail; stdout: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        // A prompt or a notice may precede the error on stderr.
        let last = lines.last().copied().unwrap_or_default();
        assert!(last.starts_with("error: "), "stderr of `hush {}`: {err}", args.join(" "));
        assert!(
            lines.iter().filter(|l| l.starts_with("error")).count() == 1
                && !err.contains("backtrace")
                && !err.contains("panicked"),
            "more than one error line for `hush {}`: {err}",
            args.join(" ")
        );
        (out.status.code().unwrap_or(-1), last.to_owned())
    }

    /// [`Cli::fail_code`]'s line.
    pub fn fail_in(&self, profile: &str, args: &[&str], stdin: &str) -> String {
        self.fail_code(profile, args, stdin).1
    }

    /// [`Cli::fail_in`] with nothing on stdin.
    pub fn fail(&self, profile: &str, args: &[&str]) -> String {
        self.fail_in(profile, args, "")
    }

    /// `hush login` with a password.
    pub fn login(&self, profile: &str, user: &str, password: &str) {
        self.run(profile, &["login", "--user", user, "--password", password]);
    }

    /// Starts `listen` (stdout and stderr piped); see [`crate::lines_of`].
    pub fn spawn_listen(&self, profile: &str) -> Child {
        self.cmd(profile, &["listen"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The files of the profile folder (none if it does not exist).
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(&self.home) {
            Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }
}

fn ca_of(node: &Node) -> Option<PathBuf> {
    node.tls.as_ref().map(|t| t.ca_file.clone())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// An authenticator app (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits), written here from the
/// RFCs rather than taken from the node, giving codes of strictly increasing time steps (the
/// node refuses a step twice).
pub struct Authenticator {
    key: Vec<u8>,
    last: u64,
}

/// RFC 6238's time step.
pub const TOTP_STEP_SECS: u64 = 30;

impl Authenticator {
    /// From the base32 secret of an `otpauth://` URI.
    pub fn new(secret_b32: &str) -> Authenticator {
        let key = data_encoding::BASE32_NOPAD.decode(secret_b32.trim_end_matches('=').as_bytes()).unwrap();
        Authenticator { key, last: 0 }
    }

    /// RFC 4226's HOTP value of `counter` (6 digits).
    pub fn hotp(key: &[u8], counter: u64) -> String {
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key),
            &counter.to_be_bytes(),
        );
        let h = tag.as_ref();
        let off = usize::from(h[19] & 0x0f);
        let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
        format!("{:06}", bin % 1_000_000)
    }

    /// A code of a time step not used before, within the node's window.
    pub async fn fresh(&mut self) -> String {
        loop {
            // Not in the last seconds of a step: the code must still be good when it arrives.
            while now_secs() % TOTP_STEP_SECS > TOTP_STEP_SECS - 3 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let now = now_secs() / TOTP_STEP_SECS;
            let step = (self.last + 1).max(now - 1);
            if step <= now + 1 {
                self.last = step;
                return Self::hotp(&self.key, step);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Whether some line of `text` matches `pattern`, where `...` stands for anything.
pub fn has_line(text: &str, pattern: &str) -> bool {
    text.lines().map(str::trim).any(|l| {
        let parts: Vec<&str> = pattern.split("...").collect();
        if parts.len() == 1 {
            return l == pattern;
        }
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !l.starts_with(first) || !l.ends_with(last) || l.len() < first.len() + last.len() {
            return false;
        }
        let mut rest = &l[first.len()..l.len() - last.len()];
        for p in &parts[1..parts.len() - 1] {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
        true
    })
}

/// Lines a background process prints, read on a thread.
pub fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

pub fn wait_for(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, want: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|l| has_line(l, want)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("{what} never printed `{want}`; it printed {seen:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (its 8-digit values, last 6 digits).
    #[test]
    fn rfc_6238_vectors() {
        let key = b"12345678901234567890";
        for (t, code) in [(59u64, "94287082"), (1_111_111_109, "07081804"), (1_234_567_890, "89005924")] {
            assert_eq!(Authenticator::hotp(key, t / 30), code[2..]);
        }
    }
}
