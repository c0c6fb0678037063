//! The libsignal example app (`examples/libsignal-app`, Node.js with libsignal's own npm package
//! `@signalapp/libsignal-client` 0.103) as the tests drive it: a child process speaking the
//! line-oriented JSON of `driver.mjs`, with every event line it printed kept.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hush_protocol::api::Secret;
use hush_protocol::ids::UserId;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::dev::Dev;
use crate::Node;

/// How long one wait for the app may take.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/libsignal-app")
}

/// Fails with what to run when the example's dependencies are not installed.
pub fn check_installed() {
    let dir = example_dir();
    assert!(
        dir.join("node_modules/@signalapp/libsignal-client/package.json").exists()
            && dir.join("node_modules/ws/package.json").exists(),
        "the libsignal example's node_modules are missing ({}): run `npm ci --prefix examples/libsignal-app` \
         from the repository root (scripts/test.sh does it)",
        dir.join("node_modules").display()
    );
}

pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// A text never produced by anything but this test.
pub fn text(label: &str) -> String {
    format!("libsignal-app-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// One process of the libsignal app (`node driver.mjs`), and every line it printed so far.
pub struct App {
    /// The user (failure messages).
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every event line read so far (replies are not kept).
    pub events: Vec<Value>,
    next_request: u64,
}

impl App {
    /// Starts the app for `user` (password `<user>-password`) with its device in `state`: the
    /// first start registers a new device, later ones log in again as that device. Returns once
    /// the app is connected (`ready`).
    pub async fn start(node: &Node, user: &str, state: &Path) -> App {
        check_installed();
        let mut child = Command::new("node")
            .current_dir(example_dir())
            .arg("driver.mjs")
            .arg(node.url())
            .arg(user)
            .arg(format!("{user}-password"))
            .arg(state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("`node` (Node.js 20) not found: it runs the libsignal example");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut app = App { name: user.to_owned(), child, stdin, lines, events: Vec::new(), next_request: 1 };
        app.wait_event("ready", |e| e["event"] == "ready").await;
        app
    }

    /// Reads one line from the app, failing after [`WAIT`].
    async fn read(&mut self, what: &str) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!("{}: no line within {WAIT:?} waiting for {what}; events: {:?}", self.name, self.events)
            })
            .unwrap()
            .unwrap_or_else(|| {
                panic!("{}: the app exited waiting for {what}; events: {:?}", self.name, self.events)
            });
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
        assert!(v["event"] != "error", "{}: the app reported an error: {v}", self.name);
        v
    }

    /// Reads until an event matches `want` (it may have come already); returns it.
    pub async fn wait_event(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(e) = self.events.iter().find(|e| want(e)) {
            return e.clone();
        }
        loop {
            let v = self.read(what).await;
            if v.get("reply").is_some() {
                panic!("{}: an unexpected reply while waiting for {what}: {v}", self.name);
            }
            self.events.push(v.clone());
            if want(&v) {
                return v;
            }
        }
    }

    /// Sends a request and waits for its reply (events read meanwhile are kept).
    pub async fn request(&mut self, mut req: Value) -> Value {
        let n = self.next_request;
        self.next_request += 1;
        req["n"] = json!(n);
        self.stdin.write_all(format!("{req}\n").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        loop {
            let v = self.read(&format!("the reply to {req}")).await;
            if v.get("reply").is_some() {
                assert_eq!(v["reply"], json!(n), "{}: replies out of order", self.name);
                assert!(v.get("error").is_none(), "{}: {req} failed: {v}", self.name);
                return v["ok"].clone();
            }
            self.events.push(v);
        }
    }

    /// Sends a text to `to`; returns its message id once the node accepted it.
    pub async fn send(&mut self, to: &str, body: &str) -> String {
        let ok = self.request(json!({"cmd": "send", "to": to, "text": body})).await;
        ok["id"].as_str().expect("a message id").to_owned()
    }

    /// Closes the socket and opens a new one (same login session, same process).
    pub async fn reconnect(&mut self) {
        let readies = |events: &[Value]| events.iter().filter(|e| e["event"] == "ready").count();
        let before = readies(&self.events);
        // The driver prints the new `ready` before its reply.
        self.request(json!({"cmd": "reconnect"})).await;
        assert_eq!(readies(&self.events), before + 1, "{}: connected again: {:?}", self.name, self.events);
    }

    /// Waits for the decrypted message whose body is `body` (`what` names it in a failure);
    /// fails at once when the app reports a message it could not decrypt.
    async fn wait_message(&mut self, what: &str, body: &str) -> Value {
        self.wait_event(what, |e| {
            assert!(e["event"] != "undecryptable", "libsignal could not decrypt a message: {e}");
            e["event"] == "message" && e["body"] == body
        })
        .await
    }

    /// Waits for the text `body` from `from` and returns its event. Fails at once when the app
    /// reports a message it could not decrypt.
    pub async fn expect_text(&mut self, from: &str, body: &str) -> Value {
        let ev = self.wait_message(&format!("the text {body:?} from {from}"), body).await;
        assert_eq!(ev["from"], from, "{ev}");
        assert_eq!(ev["kind"], "text", "a Content with a dataMessage: {ev}");
        ev
    }

    /// Sends a text to `group` (sender key distributed first where needed); returns its message
    /// id once the node accepted it.
    pub async fn group_send(&mut self, group: &str, body: &str) -> String {
        let ok = self.request(json!({"cmd": "group_send", "group": group, "text": body})).await;
        ok["id"].as_str().expect("a message id").to_owned()
    }

    /// Waits for the group text `body` from `from`/`from_device` in `group` (libsignal's
    /// `groupDecrypt` of a `sender_key` envelope) and returns its event. Fails at once when the
    /// app reports a message it could not decrypt.
    pub async fn expect_group_text(
        &mut self,
        group: &str,
        from: &str,
        from_device: u32,
        body: &str,
    ) -> Value {
        let ev = self.wait_message(&format!("the group text {body:?} from {from}/{from_device}"), body).await;
        assert_eq!(ev["from"], from, "{ev}");
        assert_eq!(ev["from_device"], json!(from_device), "{ev}");
        assert_eq!(ev["group"], group, "{ev}");
        assert_eq!(ev["content_type"], "sender_key", "{ev}");
        assert_eq!(ev["kind"], "text", "a Content with a dataMessage: {ev}");
        ev
    }

    /// Reads whatever the app prints until `quiet` passes without a line.
    pub async fn idle(&mut self, quiet: Duration) {
        loop {
            let Ok(line) = tokio::time::timeout(quiet, self.lines.next_line()).await else { return };
            let line = line
                .unwrap()
                .unwrap_or_else(|| panic!("{}: the app exited; events: {:?}", self.name, self.events));
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
            assert!(v["event"] != "error", "{}: the app reported an error: {v}", self.name);
            assert!(v.get("reply").is_none(), "{}: an unexpected reply: {v}", self.name);
            self.events.push(v);
        }
    }

    /// The device id the app logged in as.
    pub fn device(&self) -> u32 {
        let d =
            self.events.iter().find(|e| e["event"] == "ready").expect("ready")["device"].as_u64().unwrap();
        u32::try_from(d).unwrap()
    }

    /// How many message events carried `body` (deduplication: exactly one).
    pub fn count(&self, body: &str) -> usize {
        self.events.iter().filter(|e| e["event"] == "message" && e["body"] == body).count()
    }

    /// Ends the process cleanly (it closes its socket first).
    pub async fn quit(mut self) {
        let n = self.next_request;
        self.stdin.write_all(format!("{}\n", json!({"n": n, "cmd": "quit"})).as_bytes()).await.unwrap();
        let status =
            tokio::time::timeout(WAIT, self.child.wait()).await.expect("the app did not exit").unwrap();
        assert!(status.success(), "{}: the app exited with {status}", self.name);
    }
}

pub async fn users(node: &Node, names: &[&str]) {
    let admin = node.admin().await;
    for u in names {
        admin.create_user(&uid(u), &Secret::new(format!("{u}-password")), false).await.unwrap();
    }
}

/// Registers an SDK device of `user` (fresh identity, pre-keys uploaded) and connects it.
pub async fn sdk_device(node: &Node, user: &str) -> Dev {
    crate::dev::register_and_connect(node, user, &format!("{user}-sdk")).await
}
