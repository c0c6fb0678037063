//! `hush login` and `hush listen` as users meet them: a failed login (wrong password, node
//! killed mid-login, keys refused) leaves no device and no profile; a TOTP user logs in through
//! the `Code:` prompt, with a backup code, and with a remembered device (over TLS); a profile of another
//! account is not overwritten without `--force`; `listen` survives a `kill -9` of the node and
//! prints what was sent meanwhile, and the profile's one-shot commands never displace it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hush_protocol::api::{DeviceRequest, Secret};
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::Payload;
use hush_tests::cli::{lines_of, wait_for, Authenticator, Cli};
use hush_tests::{login, Node};

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// Files of profile `p` in the folder (`p.json`, `p.state`, `p.state.new`, ...).
fn profile_files(cli: &Cli, p: &str) -> Vec<String> {
    cli.files().into_iter().filter(|f| f.starts_with(&format!("{p}."))).collect()
}

/// The ids of `user`'s devices, as the user's own session lists them (keyless ones too).
fn device_ids(cli: &Cli, profile: &str) -> Vec<u64> {
    let v = cli.json(profile, &["devices"]);
    v["devices"].as_array().unwrap().iter().map(|d| d["id"].as_u64().unwrap()).collect()
}

/// `listen --count n` of `profile`: the n lines it prints.
fn receive(cli: &Cli, profile: &str, n: usize) -> Vec<String> {
    let out = cli.run(profile, &["listen", "--count", &n.to_string(), "--idle", "30"]);
    out.lines().map(str::to_owned).collect()
}

/// Users alice and bob, each logged in with the CLI on profile of their name.
async fn alice_and_bob(node: &Node) -> Cli {
    let admin = node.admin().await;
    for u in ["alice", "bob"] {
        admin.create_user(&uid(u), &Secret::new(format!("{u}-password")), false).await.unwrap();
    }
    let cli = Cli::new(node);
    cli.login("alice", "alice", "alice-password");
    cli.login("bob", "bob", "bob-password");
    cli
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_leaves_no_device_and_no_profile() {
    let mut node = Node::start();
    let cli = alice_and_bob(&node).await;
    assert_eq!(device_ids(&cli, "bob"), [1]);

    // A wrong password: exit 3, one line, nothing written.
    let (code, line) = cli.fail_code("bob2", &["login", "--user", "bob", "--password", "wrong-password"], "");
    assert_eq!(code, 3, "{line}");
    assert!(profile_files(&cli, "bob2").is_empty(), "{:?}", cli.files());

    // Keys refused: a login whose signed pre-key carries a bad signature registers nothing.
    let tenant = TenantId::new("default").unwrap();
    let st = hush_client::state::DeviceState::generate(hush_client::random_registration_id()).unwrap();
    let mut keys = hush_client::upload_request(&st.signed_upload().unwrap());
    keys.signed_pre_key.as_mut().unwrap().signature.0[0] ^= 1;
    let req = DeviceRequest {
        id: None,
        registration_id: st.registration_id(),
        name: Some("tampered".into()),
        identity_key: Some(Payload(st.identity_key().serialize().to_vec())),
        keys: Some(keys),
    };
    let r = node.client().login(&tenant, &uid("bob"), &Secret::new("bob-password"), req).await;
    match r {
        Err(hush_client::ClientError::Http { status: 400, .. }) => {}
        other => panic!("a login with a bad key signature: {other:?}"),
    }
    assert_eq!(device_ids(&cli, "bob"), [1], "no device from the refused login");

    // A device registered without keys (an old client whose key upload never came) is not
    // listed to senders, and sends to bob's other device go on working.
    let keyless = DeviceRequest {
        id: None,
        registration_id: hush_client::random_registration_id(),
        name: Some("keyless".into()),
        identity_key: Some(Payload(st.identity_key().serialize().to_vec())),
        keys: None,
    };
    node.client().login(&tenant, &uid("bob"), &Secret::new("bob-password"), keyless).await.unwrap();
    assert_eq!(device_ids(&cli, "bob"), [1, 2], "bob sees his own keyless device");
    let seen_by_alice = cli.json("alice", &["devices", "bob"]);
    let ids: Vec<u64> =
        seen_by_alice["devices"].as_array().unwrap().iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1], "senders do not see it: {seen_by_alice}");
    cli.run("alice", &["send", "bob", "past", "the", "keyless", "one"]);
    assert_eq!(receive(&cli, "bob", 1), ["alice/1: past the keyless one"]);

    // The node stops answering mid-login, then dies: the CLI says it cannot reach the node.
    let stop = |sig: &str, pid: u32| {
        assert!(std::process::Command::new("kill").arg(sig).arg(pid.to_string()).status().unwrap().success());
    };
    stop("-STOP", node.pid());
    let child = cli
        .cmd("bob3", &["login", "--user", "bob", "--password", "bob-password"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill9();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.lines().filter(|l| l.starts_with("error: ")).count() == 1 && !err.contains("panicked"),
        "{err}"
    );
    assert!(profile_files(&cli, "bob3").is_empty(), "{:?}", cli.files());
    node.restart();
    assert_eq!(device_ids(&cli, "bob"), [1, 2], "no device from the interrupted login");

    // Sending to bob still works, for his device.
    cli.run("alice", &["send", "bob", "still", "here"]);
    assert_eq!(receive(&cli, "bob", 1), ["alice/1: still here"]);

    // A profile of another account is kept unless --force; --force logs its device out.
    let (_, line) = cli.fail_code("bob", &["login", "--user", "alice", "--password", "alice-password"], "");
    assert!(line.contains("--force") && line.contains("default/bob"), "{line}");
    assert_eq!(device_ids(&cli, "bob"), [1, 2], "bob's profile untouched");
    let old_bob = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(cli.home().join("bob.json")).unwrap(),
    )
    .unwrap();
    cli.run("bob", &["login", "--user", "alice", "--password", "alice-password", "--force"]);
    let token = old_bob["login"]["token"].as_str().unwrap();
    let st = reqwest::Client::new()
        .get(format!("{}/v1/sessions", node.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, 401, "bob's old session is logged out");
    let me = cli.json("bob", &["sessions"]);
    assert!(me["sessions"].as_array().is_some_and(|s| !s.is_empty()), "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_user_logs_in_through_the_code_prompt_and_with_a_backup_code() {
    // Over TLS, with the test CA given to the CLI (HUSH_CA_FILE).
    let node = Node::start_tls();
    assert!(node.url().starts_with("https://"));
    let admin = node.admin().await;
    admin.create_user(&uid("carol"), &Secret::new("carol-password"), false).await.unwrap();
    let carol = login(&node.client(), "default", "carol", "carol-password").await;
    let e = carol.totp_enroll().await.unwrap();
    let mut app = Authenticator::new(e.secret.expose());
    let backup = carol.totp_confirm(&Secret::new(app.fresh().await)).await.unwrap().codes;
    let cli = Cli::new(&node);
    let pw = ["login", "--user", "carol", "--password", "carol-password"];

    // A wrong code at the prompt: exit 3, nothing written.
    let (code, line) = cli.fail_code("c1", &pw, "000000\n");
    assert_eq!(code, 3, "{line}");
    assert!(profile_files(&cli, "c1").is_empty(), "{:?}", cli.files());

    // The code the app shows, typed at the `Code:` prompt (stdin here).
    let out = cli.exec("c1", &pw, &format!("{}\n", app.fresh().await));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("two-factor"), "the prompt explains itself: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Logged in as default/carol"));
    assert_eq!(cli.json("c1", &["mfa", "status"])["totp_enabled"], true, "the session works");

    // A backup code with --code; it counts once.
    let code = backup[0].expose().to_owned();
    let mut args = pw.to_vec();
    args.extend(["--code", &code]);
    cli.run("c2", &args);
    assert_eq!(cli.json("c2", &["mfa", "status"])["backup_codes_left"], 9);
    let (code_exit, line) = cli.fail_code("c3", &args, "");
    assert_eq!(code_exit, 3, "a used backup code: {line}");
    assert!(profile_files(&cli, "c3").is_empty());

    // --remember-device: the next login of that device asks for no code.
    cli.run("c1", &["logout"]);
    let fresh = app.fresh().await;
    let mut args = pw.to_vec();
    args.extend(["--code", &fresh, "--remember-device"]);
    cli.run("c1", &args);
    cli.run("c1", &["logout"]);
    let out = cli.exec("c1", &pw, "");
    assert!(out.status.success(), "a trusted device: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("two-factor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_resumes_after_the_node_is_killed_and_one_shot_commands_go_through_it() {
    let mut node = Node::start();
    let cli = alice_and_bob(&node).await;
    let mut listen = cli.spawn_listen("alice");
    let out = lines_of(listen.stdout.take().unwrap());
    let err = lines_of(listen.stderr.take().unwrap());
    let (mut printed, mut notes) = (Vec::new(), Vec::new());
    wait_for(&err, &mut notes, "(up to date; waiting for messages)", "listen");
    cli.run("bob", &["send", "alice", "before"]);
    wait_for(&out, &mut printed, "bob/1: before", "listen");

    // Alice's own commands while she listens: through the listener, which keeps its socket.
    let sent = cli.run("alice", &["send", "bob", "from", "alice"]);
    assert!(sent.starts_with("Sent ") && sent.trim_end().ends_with(" to bob."), "{sent}");
    assert_eq!(receive(&cli, "bob", 1), ["alice/1: from alice"]);
    // A second listen of the profile is refused (it would displace the first).
    let (_, line) = cli.fail_code("alice", &["listen"], "");
    assert!(line.contains("already") || line.contains("running"), "{line}");

    // kill -9 of the node; listen notices, waits, reconnects once it is back.
    node.kill9();
    wait_for(&err, &mut notes, "(connection lost: ...", "listen");
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.restart();
    cli.run("bob", &["send", "alice", "during", "one"]);
    cli.run("bob", &["send", "alice", "during", "two"]);
    wait_for(&out, &mut printed, "bob/1: during two", "listen");
    assert_eq!(printed, ["bob/1: before", "bob/1: during one", "bob/1: during two"], "in order, once each");
    assert!(listen.try_wait().unwrap().is_none(), "listen still runs");
    assert!(!notes.iter().any(|l| l.contains("took the connection")), "{notes:?}");
    listen.kill().unwrap();
    listen.wait().unwrap();
}

/// A login the node answered, whose last step then failed (here the replacement of a one-time
/// password is refused, as after a typo), unlinks the device the node registered: no device is
/// left for senders to encrypt to, and no profile is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_failing_after_the_node_registered_its_device_unlinks_it() {
    let mut node = Node::start();
    let admin = node.admin().await;
    admin.create_user(&uid("carol"), &Secret::new("carol-password"), false).await.unwrap();
    // carol gets a one-time password (the documented recovery), on the stopped node's folder.
    assert!(node.terminate());
    let out = std::process::Command::new(hush_tests::bin("hushd"))
        .args(["admin", "reset-password", "--tenant", "default", "--user", "carol", "--data-dir"])
        .arg(&node.data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let one_time = stdout
        .lines()
        .find_map(|l| l.strip_prefix("One-time password (shown only now): "))
        .unwrap_or_else(|| panic!("no one-time password: {stdout}"))
        .trim()
        .to_owned();
    node.restart();
    let cli = Cli::new(&node);
    let pw = format!("--password={one_time}");
    let (code, line) =
        cli.fail_code("carol", &["login", "--user", "carol", &pw, "--new-password", "short"], "");
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("new password was refused"), "{line}");
    assert!(profile_files(&cli, "carol").is_empty(), "{:?}", cli.files());
    // carol has no device left: the node answers her device list with 404, as for a user who
    // never logged in.
    match admin.devices(Some(&uid("carol"))).await {
        Err(hush_client::ClientError::Http { status: 404, .. }) => {}
        other => panic!("the failed login's device is still listed: {other:?}"),
    }
    // The device was registered with keys before the failure: the audit log shows its removal.
    // A usage error is exit 2, one line, and changes nothing either.
    let (code, line) = cli.fail_code("carol", &["login", "--user", "carol", "--no-such-flag"], "");
    assert_eq!(code, 2, "{line}");
    assert!(profile_files(&cli, "carol").is_empty(), "{:?}", cli.files());
    let filter = hush_client::AuditFilter { action: Some("device.remove".into()), ..Default::default() };
    let audit = admin.audit(&filter).await.unwrap();
    assert_eq!(audit.records.len(), 1, "{audit:?}");
}
