//! Hush groups with libsignal app members (`examples/libsignal-app`, libsignal's own npm package
//! 0.103, run through `driver.mjs`) and Hush SDK members on one real `hushd`, and the `hush` CLI
//! chatting with a libsignal app.
//!
//! (a) A group of two libsignal apps and two SDK users (one with two devices): every member
//!     device reads every text sent by every other (libsignal's `groupDecrypt` of the SDK's
//!     Sender Keys messages, the SDK's of the apps'), each kind sending. Then an app member is
//!     removed, the remaining members rotate (the apps on the node's `RotateSenderKey`, each
//!     remaining sender's new chain reaches the app with the new epoch) and read everything
//!     again, while the removed app reads none of it (no group text, no sender key of the new
//!     epoch); then an SDK member is removed, likewise.
//! (b) `hush send <app user>`: libsignal decrypts it and the `Content.dataMessage.body` is the
//!     text; the app's answer is printed by `hush listen`.
//!
//! The example's `node_modules` must be installed (`npm ci --prefix examples/libsignal-app`;
//! `scripts/test.sh` does it): without them the test fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hush_client::messenger::Event;
use hush_protocol::ids::GroupId;
use hush_protocol::wire::{ContentType, SessionEvent};
use hush_tests::cli::{has_line, Cli};
use hush_tests::dev::Dev;
use hush_tests::libsignal::{check_installed, sdk_device, text, uid, users, App};
use hush_tests::Node;
use serde_json::json;

/// One text sent to the group: sender user, sender device, body.
type Sent = (String, u32, String);

/// The app sends `label`'s text to the group; returns what it sent.
async fn app_sends(app: &mut App, group: &GroupId, label: &str) -> Sent {
    let t = text(label);
    app.group_send(group.as_str(), &t).await;
    (app.name.clone(), app.device(), t)
}

/// The SDK device sends `label`'s text to the group; returns what it sent.
async fn sdk_sends(dev: &mut Dev, group: &GroupId, label: &str) -> Sent {
    let t = text(label);
    dev.m.send_group_text(group, &t).await.unwrap();
    (dev.user().as_str().to_owned(), dev.device().get(), t)
}

/// Every app reads every text of `sent` it did not send itself.
async fn apps_read(apps: &mut [&mut App], group: &GroupId, sent: &[Sent]) {
    for app in apps.iter_mut() {
        for (from, device, body) in sent {
            if *from == app.name && *device == app.device() {
                continue;
            }
            app.expect_group_text(group.as_str(), from, *device, body).await;
        }
    }
}

/// Every SDK device reads every text of `sent` it did not send itself (the sender's other
/// devices too, as sync copies).
async fn devs_read(devs: &mut [&mut Dev], group: &GroupId, sent: &[Sent]) {
    for dev in devs.iter_mut() {
        for (from, device, body) in sent {
            if *from == dev.user().as_str() && *device == dev.device().get() {
                continue;
            }
            let ev = dev
                .until(
                    &format!("the group text {body:?} from {from}/{device}"),
                    |e| matches!(e, Event::GroupText { body: b, .. } if b == body),
                )
                .await;
            let Event::GroupText { group: g, from: f, from_device, content_type, .. } = ev else {
                unreachable!()
            };
            assert_eq!((&g, f.as_str(), from_device.get()), (group, from.as_str(), *device), "{}", dev.name);
            assert_eq!(content_type, ContentType::SenderKey);
        }
        assert_eq!(dev.undecryptable(), 0, "{}: {:?}", dev.name, dev.events);
    }
}

/// The app, removed from `group` at event index `from`, read no text of the group after it, and
/// got no sender key of the group made for epoch `epoch` or later (so it could not decrypt one).
fn app_read_nothing(app: &App, group: &GroupId, from: usize, epoch: u64, sent: &[Sent]) {
    let after = &app.events[from..];
    for e in after {
        assert!(
            !(e["event"] == "message" && e["group"] == group.as_str()),
            "{}: read after removal: {e}",
            app.name
        );
        assert!(e["event"] != "undecryptable", "{}: {e}", app.name);
        assert!(
            !(e["event"] == "sender_key_received"
                && e["group"] == group.as_str()
                && e["epoch"].as_u64().unwrap() >= epoch),
            "{}: got a sender key of the new epoch: {e}",
            app.name
        );
    }
    for (_, _, body) in sent {
        assert_eq!(app.count(body), 0, "{}: read {body}", app.name);
    }
    assert!(
        after.iter().any(|e| e["event"] == "group_left" && e["group"] == group.as_str()),
        "{}: told it left the group: {after:?}",
        app.name
    );
}

/// Each remaining sender's new chain reached the app with epoch `epoch`.
fn app_got_new_keys(app: &App, group: &GroupId, epoch: u64, senders: &[(&str, u32)]) {
    for (user, device) in senders {
        assert!(
            app.events.iter().any(|e| e["event"] == "sender_key_received"
                && e["group"] == group.as_str()
                && e["from"] == *user
                && e["from_device"] == json!(device)
                && e["epoch"] == json!(epoch)),
            "{}: no sender key of epoch {epoch} from {user}/{device}: {:?}",
            app.name,
            app.events
        );
    }
}

/// The app rotated: it distributed a new chain for `epoch`.
fn app_rotated(app: &App, group: &GroupId, epoch: u64) {
    assert!(
        app.events.iter().any(|e| e["event"] == "sender_key_distributed"
            && e["group"] == group.as_str()
            && e["epoch"] == json!(epoch)
            && e["rotated"] == json!(true)),
        "{}: no new sender key for epoch {epoch}: {:?}",
        app.name,
        app.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_of_libsignal_apps_and_sdk_users_reads_everything_and_rotates_on_removals() {
    check_installed();
    let node = Node::start();
    users(&node, &["lia", "leo", "sam", "sue"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut lia = App::start(&node, "lia", &dir.path().join("lia.json")).await;
    let mut leo = App::start(&node, "leo", &dir.path().join("leo.json")).await;
    let mut sam1 = sdk_device(&node, "sam").await;
    let mut sam2 = sdk_device(&node, "sam").await;
    let mut sue = sdk_device(&node, "sue").await;
    assert_eq!((sam1.device().get(), sam2.device().get()), (1, 2));

    // sam (SDK) owns the group.
    let group = sam1.m.create_group("mixed", &[uid("lia"), uid("leo"), uid("sue")]).await.unwrap();

    // Every member sends, each kind; every other member device reads every text.
    let sent = vec![
        app_sends(&mut lia, &group, "lia-1").await,
        sdk_sends(&mut sam1, &group, "sam1-1").await,
        app_sends(&mut leo, &group, "leo-1").await,
        sdk_sends(&mut sue, &group, "sue-1").await,
        sdk_sends(&mut sam2, &group, "sam2-1").await,
    ];
    apps_read(&mut [&mut lia, &mut leo], &group, &sent).await;
    devs_read(&mut [&mut sam1, &mut sam2, &mut sue], &group, &sent).await;

    // An app member is removed: the epoch goes up, the others rotate.
    let leo_from = leo.events.len();
    let info = sam1.m.remove_members(&group, &[uid("leo")]).await.unwrap();
    let e2 = info.epoch;
    assert!(!info.members.contains(&uid("leo")), "{info:?}");
    let sent2 = vec![
        sdk_sends(&mut sue, &group, "sue-2").await,
        app_sends(&mut lia, &group, "lia-2").await,
        sdk_sends(&mut sam2, &group, "sam2-2").await,
        sdk_sends(&mut sam1, &group, "sam1-2").await,
    ];
    apps_read(&mut [&mut lia], &group, &sent2).await;
    devs_read(&mut [&mut sam1, &mut sam2, &mut sue], &group, &sent2).await;
    app_rotated(&lia, &group, e2);
    app_got_new_keys(&lia, &group, e2, &[("sam", 1), ("sam", 2), ("sue", 1)]);

    // An SDK member is removed, likewise.
    let sue_from = sue.events.len();
    let info = sam1.m.remove_members(&group, &[uid("sue")]).await.unwrap();
    let e3 = info.epoch;
    assert!(e3 > e2, "{info:?}");
    let sent3 = vec![
        app_sends(&mut lia, &group, "lia-3").await,
        sdk_sends(&mut sam2, &group, "sam2-3").await,
        sdk_sends(&mut sam1, &group, "sam1-3").await,
    ];
    apps_read(&mut [&mut lia], &group, &sent3).await;
    devs_read(&mut [&mut sam1, &mut sam2], &group, &sent3).await;
    app_rotated(&lia, &group, e3);
    app_got_new_keys(&lia, &group, e3, &[("sam", 1), ("sam", 2)]);

    // The removed members read nothing sent after their removal.
    leo.idle(Duration::from_secs(2)).await;
    let after_leo: Vec<Sent> = sent2.iter().chain(&sent3).cloned().collect();
    app_read_nothing(&leo, &group, leo_from, e2, &after_leo);
    sue.pump_idle(Duration::from_secs(2)).await;
    let after = &sue.events[sue_from..];
    assert!(
        !after.iter().any(|e| matches!(e, Event::GroupText { .. } | Event::Undecryptable { .. })),
        "sue read (or was sent) a group message after her removal: {after:?}"
    );
    for (_, _, body) in &sent3 {
        assert!(!sue.has_text(body), "sue read {body}");
    }
    assert!(
        after
            .iter()
            .any(|e| matches!(e, Event::Account(SessionEvent::GroupChanged { group: g, members, .. })
            if *g == group && !members.contains(&uid("sue")))),
        "sue was told she left: {after:?}"
    );

    // Every text read exactly once by the apps.
    for (_, _, body) in sent.iter().chain(&sent2).chain(&sent3) {
        assert!(lia.count(body) <= 1, "lia read {body} twice");
    }
    lia.quit().await;
    leo.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_a_libsignal_app_chat_both_ways() {
    check_installed();
    let node = Node::start();
    users(&node, &["cli", "app"]).await;
    let cli = Cli::new(&node);
    cli.login("cli", "cli", "cli-password");
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::start(&node, "app", &dir.path().join("app.json")).await;

    // `hush send`: libsignal decrypts it; the Content's dataMessage.body is the text.
    let t1 = text("cli-to-app");
    cli.run("cli", &["send", "app", &t1]);
    let ev = app.expect_text("cli", &t1).await;
    assert_eq!(ev["body"], json!(t1), "{ev}");
    assert_eq!(ev["kind"], "text", "{ev}");
    assert_eq!(ev["content_type"], "prekey", "the CLI started the session: {ev}");

    // The app answers on that session; `hush listen` prints it.
    let t2 = text("app-to-cli");
    app.send("cli", &t2).await;
    let out = cli.run("cli", &["listen", "--count", "1"]);
    assert!(has_line(&out, &format!("app/{}: {t2}", app.device())), "listen printed: {out}");

    // And once more each way on the established session.
    let t3 = text("cli-to-app-2");
    cli.run("cli", &["send", "app", &t3]);
    let ev = app.expect_text("cli", &t3).await;
    assert_eq!(ev["content_type"], "ciphertext", "{ev}");
    let t4 = text("app-to-cli-2");
    app.send("cli", &t4).await;
    let out = cli.run("cli", &["listen", "--count", "1"]);
    assert!(has_line(&out, &format!("app/{}: {t4}", app.device())), "listen printed: {out}");
    app.quit().await;
}
