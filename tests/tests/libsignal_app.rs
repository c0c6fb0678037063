//! A real libsignal app on a Hush node: `examples/libsignal-app` (Node.js, libsignal's own npm
//! package `@signalapp/libsignal-client` 0.103 and `ws`), run as child processes through its
//! line-oriented JSON driver (`driver.mjs`), on one real `hushd`.
//!
//! (a) Two libsignal app users exchange texts both ways (the first as a `prekey` message, later
//!     ones as `ciphertext`), also after one app process ended and a new one logged in again
//!     as the same device from its state file, and after the other reconnected its socket.
//! (b) A libsignal app user and a Hush SDK user (`hush_tests::dev::Dev`) exchange texts both
//!     ways: libsignal's decryption of the SDK's message yields the text in
//!     `Content.dataMessage.body`, and the SDK's `Event::Text` carries the app's text.
//!
//! The example's `node_modules` must be installed (`npm ci --prefix examples/libsignal-app`;
//! `scripts/test.sh` does it): without them the test fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hush_client::messenger::{Event, Messenger};
use hush_client::Client;
use hush_protocol::api::Secret;
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::ContentType;
use hush_tests::dev::Dev;
use hush_tests::Node;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long one wait for the app may take.
const WAIT: Duration = Duration::from_secs(30);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/libsignal-app")
}

/// Fails with what to run when the example's dependencies are not installed.
fn check_installed() {
    let dir = example_dir();
    assert!(
        dir.join("node_modules/@signalapp/libsignal-client/package.json").exists()
            && dir.join("node_modules/ws/package.json").exists(),
        "the libsignal example's node_modules are missing ({}): run `npm ci --prefix examples/libsignal-app` \
         from the repository root (scripts/test.sh does it)",
        dir.join("node_modules").display()
    );
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// A text never produced by anything but this test.
fn text(label: &str) -> String {
    format!("libsignal-app-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// One process of the libsignal app (`node driver.mjs`), and every line it printed so far.
struct App {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every event line read so far (replies are not kept).
    events: Vec<Value>,
    next_request: u64,
}

impl App {
    /// Starts the app for `user` (password `<user>-password`) with its device in `state`: the
    /// first start registers a new device, later ones log in again as that device. Returns once
    /// the app is connected (`ready`).
    async fn start(node: &Node, user: &str, state: &Path) -> App {
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
    async fn wait_event(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
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
    async fn request(&mut self, mut req: Value) -> Value {
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
    async fn send(&mut self, to: &str, body: &str) -> String {
        let ok = self.request(json!({"cmd": "send", "to": to, "text": body})).await;
        ok["id"].as_str().expect("a message id").to_owned()
    }

    /// Closes the socket and opens a new one (same login session, same process).
    async fn reconnect(&mut self) {
        let readies = |events: &[Value]| events.iter().filter(|e| e["event"] == "ready").count();
        let before = readies(&self.events);
        // The driver prints the new `ready` before its reply.
        self.request(json!({"cmd": "reconnect"})).await;
        assert_eq!(readies(&self.events), before + 1, "{}: connected again: {:?}", self.name, self.events);
    }

    /// Waits for the text `body` from `from` and returns its event. Fails at once when the app
    /// reports a message it could not decrypt.
    async fn expect_text(&mut self, from: &str, body: &str) -> Value {
        let what = format!("the text {body:?} from {from}");
        let ev = self
            .wait_event(&what, |e| {
                assert!(e["event"] != "undecryptable", "libsignal could not decrypt a message: {e}");
                e["event"] == "message" && e["body"] == body
            })
            .await;
        assert_eq!(ev["from"], from, "{ev}");
        assert_eq!(ev["kind"], "text", "a Content with a dataMessage: {ev}");
        ev
    }

    /// How many message events carried `body` (deduplication: exactly one).
    fn count(&self, body: &str) -> usize {
        self.events.iter().filter(|e| e["event"] == "message" && e["body"] == body).count()
    }

    /// Ends the process cleanly (it closes its socket first).
    async fn quit(mut self) {
        let n = self.next_request;
        self.stdin.write_all(format!("{}\n", json!({"n": n, "cmd": "quit"})).as_bytes()).await.unwrap();
        let status =
            tokio::time::timeout(WAIT, self.child.wait()).await.expect("the app did not exit").unwrap();
        assert!(status.success(), "{}: the app exited with {status}", self.name);
    }
}

async fn users(node: &Node, names: &[&str]) {
    let admin = node.admin().await;
    for u in names {
        admin.create_user(&uid(u), &Secret::new(format!("{u}-password")), false).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_libsignal_apps_chat_through_a_node_also_after_a_reconnect() {
    check_installed();
    let node = Node::start();
    users(&node, &["alice", "bob"]).await;
    let dir = tempfile::tempdir().unwrap();
    let (alice_state, bob_state) = (dir.path().join("alice.json"), dir.path().join("bob.json"));
    let mut alice = App::start(&node, "alice", &alice_state).await;
    let mut bob = App::start(&node, "bob", &bob_state).await;

    // Alice starts the session from Bob's bundle: a pre-key message.
    let t1 = text("a1");
    alice.send("bob", &t1).await;
    let ev = bob.expect_text("alice", &t1).await;
    assert_eq!(ev["content_type"], "prekey", "{ev}");
    assert_eq!(ev["from_device"], json!(1), "{ev}");

    // Bob answers on that session.
    let t2 = text("b1");
    bob.send("alice", &t2).await;
    let ev = alice.expect_text("bob", &t2).await;
    assert_eq!(ev["content_type"], "ciphertext", "{ev}");

    // Alice's next message, now that Bob answered, is a plain SignalMessage.
    let t3 = text("a2");
    alice.send("bob", &t3).await;
    let ev = bob.expect_text("alice", &t3).await;
    assert_eq!(ev["content_type"], "ciphertext", "{ev}");

    // Bob's process ends; Alice writes while he is away; a new process logs in again as the
    // same device (from its state file), gets what was queued, and answers.
    bob.quit().await;
    let t4 = text("a3-offline");
    alice.send("bob", &t4).await;
    let mut bob = App::start(&node, "bob", &bob_state).await;
    assert_eq!(bob.events[0]["device"], json!(1), "the same device logged in again: {:?}", bob.events);
    let ev = bob.expect_text("alice", &t4).await;
    assert_eq!(ev["content_type"], "ciphertext", "the session survived the restart: {ev}");
    bob.wait_event("the queue drained", |e| e["event"] == "queue_empty").await;
    let t5 = text("b2-after-restart");
    bob.send("alice", &t5).await;
    alice.expect_text("bob", &t5).await;

    // Alice reconnects her socket; both directions still work.
    alice.reconnect().await;
    let t6 = text("b3");
    bob.send("alice", &t6).await;
    alice.expect_text("bob", &t6).await;
    let t7 = text("a4-after-reconnect");
    alice.send("bob", &t7).await;
    bob.expect_text("alice", &t7).await;

    // Every text read exactly once: acked envelopes do not come again.
    for t in [&t2, &t5, &t6] {
        assert_eq!(alice.count(t), 1, "alice read {t} once: {:?}", alice.events);
    }
    for t in [&t4, &t7] {
        assert_eq!(bob.count(t), 1, "bob read {t} once: {:?}", bob.events);
    }
    alice.quit().await;
    bob.quit().await;
}

/// Registers an SDK device of `user` (fresh identity, pre-keys uploaded) and connects it.
async fn sdk_device(node: &Node, user: &str) -> Dev {
    let client = Client::new(node.url());
    let (session, state) = hush_client::register_device(
        &client,
        &TenantId::new("default").unwrap(),
        &uid(user),
        &Secret::new(format!("{user}-password")),
        Some(format!("{user}-sdk")),
    )
    .await
    .unwrap();
    let m = Messenger::connect(session, state, None).await.unwrap();
    let mut d = Dev::new(format!("{user}-sdk"), m);
    d.pump_until("queue drained", |ev| ev.contains(&Event::UpToDate)).await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libsignal_app_and_a_hush_sdk_user_chat_both_ways() {
    check_installed();
    let node = Node::start();
    users(&node, &["carol", "dave"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut carol = App::start(&node, "carol", &dir.path().join("carol.json")).await;
    let mut dave = sdk_device(&node, "dave").await;

    // libsignal -> SDK: the app starts the session from the SDK device's bundle.
    let t1 = text("app-to-sdk");
    carol.send("dave", &t1).await;
    let ev =
        dave.until("the app's first text", |e| matches!(e, Event::Text { body, .. } if *body == t1)).await;
    let Event::Text { from, content_type, .. } = ev else { unreachable!() };
    assert_eq!(from, uid("carol"));
    assert_eq!(content_type, ContentType::PreKey);

    // SDK -> libsignal, on the session the app started: libsignal decrypts it, and the text is
    // in Content.dataMessage.body.
    let t2 = text("sdk-to-app");
    dave.m.send_text(&uid("carol"), &t2).await.unwrap();
    let ev = carol.expect_text("dave", &t2).await;
    assert_eq!(ev["content_type"], "ciphertext", "{ev}");

    // And on: the app answers on the established session.
    let t3 = text("app-to-sdk-2");
    carol.send("dave", &t3).await;
    let ev =
        dave.until("the app's second text", |e| matches!(e, Event::Text { body, .. } if *body == t3)).await;
    assert!(matches!(ev, Event::Text { content_type: ContentType::Ciphertext, .. }), "{ev:?}");

    // The SDK starting a session itself (a new SDK user writes first, from the app's bundle).
    users(&node, &["erin"]).await;
    let mut erin = sdk_device(&node, "erin").await;
    let t4 = text("sdk-first");
    erin.m.send_text(&uid("carol"), &t4).await.unwrap();
    let ev = carol.expect_text("erin", &t4).await;
    assert_eq!(ev["content_type"], "prekey", "{ev}");
    let t5 = text("app-answers-sdk");
    carol.send("erin", &t5).await;
    erin.until("the app's answer", |e| matches!(e, Event::Text { body, .. } if *body == t5)).await;

    assert_eq!(dave.undecryptable(), 0, "{:?}", dave.events);
    assert_eq!(erin.undecryptable(), 0, "{:?}", erin.events);
    carol.quit().await;
}
