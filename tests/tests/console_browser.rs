//! The admin console in a real headless browser (chromium over WebDriver): sign-in with a
//! password and a TOTP code, a non-administrator refused, a revocation that closes the user's
//! live socket with 4401 and removes the row without a reload, a policy change that challenges
//! the next login, the audit search, and on every page no console error and no request to
//! another host; on three nodes, sessions held on other nodes listed with their node and one
//! revoked from node A's console, and the cluster's nodes on the health page. With
//! `HUSH_CONSOLE_SCREENSHOTS=<folder>` each page's screenshot is written there (that is how
//! `docs/console/` is made).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hush_client::ClientError;
use hush_protocol::api::MfaLevel;
use hush_tests::browser::Browser;
use hush_tests::{enrol, Mongo, Node, Redis};

async fn browser() -> Option<Browser> {
    match Browser::start().await {
        Some(b) => Some(b),
        None if hush_tests::tools_required() => {
            panic!("chromium and chromedriver are required (scripts/test.sh installs them)")
        }
        None => {
            eprintln!("skipped: chromium or chromedriver is not installed");
            None
        }
    }
}

async fn shot(b: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("HUSH_CONSOLE_SCREENSHOTS") {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), b.screenshot().await).unwrap();
    }
}

/// No console error or warning since the last check, and every request went to the node.
async fn clean(b: &Browser, node: &Node, page: &str) {
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "{page}: console errors {errors:?}");
    for url in b.requests().await {
        assert!(url.starts_with(&format!("{}/", node.url())), "{page}: request to {url}");
    }
}

async fn close_reason(conn: &mut hush_client::Connection) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), conn.next_frame()).await.expect("closed in time")
        {
            Ok(_) => continue,
            Err(ClientError::Closed(Some(r))) => return r,
            Err(e) => return e.to_string(),
        }
    }
}

async fn sign_in(b: &Browser, node: &Node, user: &str, password: &str) {
    b.client.goto(&format!("{}/console", node.url())).await.unwrap();
    b.fill("#user", user).await;
    b.fill("#password", password).await;
    b.click("#signin-submit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_in_with_totp_revokes_live_and_finds_it_in_the_audit_log() {
    let Some(b) = browser().await else { return };
    let node = Node::start();
    let admin = node.stepped_admin().await;
    let alice = node.user(&admin, "alice").await;
    let bob = node.user(&admin, "bob").await;
    let password = node.admin_password_set().await;
    let mut alice_socket = alice.connect().await.unwrap();

    // A user who is not an administrator is refused.
    sign_in(&b, &node, "bob", "bob-password").await;
    b.wait_text("#signin-error", "not an administrator").await;
    shot(&b, "signin").await;
    clean(&b, &node, "sign-in").await;

    // The administrator: password, then the TOTP challenge.
    sign_in(&b, &node, "admin", &password).await;
    b.wait("#mfa-code").await;
    shot(&b, "mfa").await;
    b.fill("#mfa-code", &node.admin_code().await).await;
    b.click("#mfa-submit").await;
    let alice_id = alice.login_info().session_id.clone();
    let bob_id = bob.login_info().session_id.clone();
    let alice_row = format!("tr[data-session='{alice_id}']");
    let bob_row = format!("tr[data-session='{bob_id}']");
    b.wait(&alice_row).await;
    b.wait(&bob_row).await;
    shot(&b, "sessions").await;
    clean(&b, &node, "sessions").await;

    // Revoke alice's session in the console: her live socket closes with 4401, the row goes.
    b.client.execute("window.hushMarker = 'no reload';", vec![]).await.unwrap();
    b.click(&format!("button[data-session='{alice_id}']")).await;
    let reason = close_reason(&mut alice_socket).await;
    assert!(reason.starts_with("4401"), "alice's socket: {reason}");
    b.wait_gone(&alice_row).await;

    // Bob's session revoked elsewhere (the API): his row disappears by itself.
    assert_eq!(admin.admin_revoke_session(&bob_id).await.unwrap(), 1);
    b.wait_gone(&bob_row).await;
    let marker = b.client.execute("return window.hushMarker;", vec![]).await.unwrap();
    assert_eq!(marker, "no reload", "the page was not reloaded");

    // The audit log has the revocation.
    b.click("a[data-page='audit']").await;
    b.fill("#audit-action", "session.revoke").await;
    b.click("#audit-filter button[type='submit']").await;
    let text = b.wait_text("#audit-body", &alice_id).await;
    assert!(text.contains("session.revoke"), "{text}");
    shot(&b, "audit").await;
    clean(&b, &node, "audit").await;

    for page in ["users", "policy", "health"] {
        b.click(&format!("a[data-page='{page}']")).await;
        b.wait("main h1").await;
        let want = match page {
            "users" => "#users-body tr[data-user='alice']",
            "policy" => "#mfa-policy",
            _ => "#cluster-body tr[data-node]",
        };
        b.wait(want).await;
        if page == "users" {
            // Alice's devices open under her row: her one device, by id and name.
            b.click("tr[data-user='alice'] button.devices").await;
            b.wait("tr[data-devices-of='alice'] tr[data-device='1']").await;
        }
        shot(&b, page).await;
        clean(&b, &node, page).await;
    }

    // Sign-out ends the console's session.
    b.click("#signout").await;
    b.wait_text("#signin-error", "Signed out").await;
    clean(&b, &node, "sign-out").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_in_the_console_challenges_the_next_login() {
    let Some(b) = browser().await else { return };
    let node = Node::start();
    let admin = node.stepped_admin().await;
    let erin = node.user(&admin, "erin").await;
    let mut factor = enrol(&erin).await;
    let mut policy = admin.mfa_policy().await.unwrap();
    policy.level = MfaLevel::Off;
    admin.set_mfa_policy(&policy).await.unwrap();
    let login = node.device("erin").await;
    assert!(
        login.login_info().mfa.as_ref().and_then(|m| m.challenge.as_ref()).is_none(),
        "level off: no challenge"
    );

    // Level off: the admin's sign-in is not challenged, the policy change asks for a step-up.
    let password = node.admin_password_set().await;
    sign_in(&b, &node, "admin", &password).await;
    b.wait("#sessions").await;
    b.click("a[data-page='policy']").await;
    b.wait("#mfa-level").await;
    b.client
        .execute(
            "const s = document.getElementById('mfa-level'); s.value = 'optional'; s.dispatchEvent(new Event('input'));
             document.getElementById('mfa-digits').value = '8'; document.getElementById('mfa-algorithm').value = 'SHA256';",
            vec![],
        )
        .await
        .unwrap();
    b.click("#mfa-policy button[type='submit']").await;
    b.wait("#stepup-code").await;
    b.fill("#stepup-code", &node.admin_code().await).await;
    b.click("#stepup button[type='submit']").await;
    b.wait_text("#toast", "MFA policy saved").await;
    clean(&b, &node, "policy").await;
    let saved = admin.mfa_policy().await.unwrap();
    assert_eq!(saved.level, MfaLevel::Optional);
    // The TOTP parameters for new enrolments were saved with it; the other settings kept.
    assert_eq!((saved.totp_digits, saved.totp_algorithm), (8, hush_protocol::otp::Algorithm::Sha256));
    assert_eq!(
        (saved.grace_period_secs, saved.exempt_roles.clone()),
        (policy.grace_period_secs, policy.exempt_roles.clone())
    );

    // Erin's next login is challenged, and her factor answers it.
    let next = node.device("erin").await;
    let challenge = next.login_info().mfa.as_ref().and_then(|m| m.challenge.clone()).expect("challenged");
    factor.answer(&next, &challenge.challenge_id).await;
    assert!(next.devices(None).await.is_ok());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_three_nodes_the_console_shows_every_node_and_revokes_a_socket_held_on_another() {
    let Some(b) = browser().await else { return };
    let (redis, mongo) = (Redis::start(), Mongo::start());
    let nodes = Node::three_clustered(&redis, &mongo);
    let admin = nodes[0].stepped_admin().await;
    let _ = nodes[0].user(&admin, "alice").await;
    let _ = nodes[0].user(&admin, "bob").await;
    // Alice's socket on node B, bob's on node C; the console runs on node A.
    let alice = nodes[1].device("alice").await;
    let bob = nodes[2].device("bob").await;
    let mut alice_socket = alice.connect().await.unwrap();
    let _bob_socket = bob.connect().await.unwrap();
    let password = nodes[0].admin_password_set().await;
    sign_in(&b, &nodes[0], "admin", &password).await;
    b.wait("#mfa-code").await;
    b.fill("#mfa-code", &nodes[0].admin_code().await).await;
    b.click("#mfa-submit").await;

    // Each row names the node holding its socket.
    let alice_id = alice.login_info().session_id.clone();
    let bob_id = bob.login_info().session_id.clone();
    let alice_row = format!("tr[data-session='{alice_id}']");
    b.wait_text(&format!("{alice_row} td.node"), "node-b").await;
    b.wait_text(&format!("tr[data-session='{bob_id}'] td.node"), "node-c").await;
    shot(&b, "cluster-sessions").await;
    clean(&b, &nodes[0], "sessions on three nodes").await;

    // Revoked from node A's console: the socket on node B closes with 4401, the row goes.
    b.click(&format!("button[data-session='{alice_id}']")).await;
    let reason = close_reason(&mut alice_socket).await;
    assert!(reason.starts_with("4401"), "alice's socket: {reason}");
    b.wait_gone(&alice_row).await;

    // The health page lists the three nodes and, refreshed live, their connections.
    b.click("a[data-page='health']").await;
    b.wait_text("#cluster-summary", "3 node(s) on the redis bus").await;
    for id in ["node-a", "node-b", "node-c"] {
        b.wait(&format!("#cluster-body tr[data-node='{id}']")).await;
    }
    b.wait_text("#cluster-body tr[data-node='node-a'] td", "(this node)").await;
    b.wait_text("#cluster-body tr[data-node='node-c'] td.connections", "1").await;
    b.wait_text("#cluster-body tr[data-node='node-b'] td.connections", "0").await;
    shot(&b, "cluster-health").await;
    clean(&b, &nodes[0], "health on three nodes").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_administrator_chooses_a_password_in_the_console() {
    let Some(b) = browser().await else { return };
    let node = Node::start();
    let one_time = node.admin_password.clone().expect("bootstrap password");
    sign_in(&b, &node, "admin", &one_time).await;
    b.wait("#password-form").await;
    shot(&b, "password").await;

    // Two different new passwords: refused in the page, nothing sent.
    b.fill("#current-password", &one_time).await;
    b.fill("#new-password-1", "console-chosen-1").await;
    b.fill("#new-password-2", "console-chosen-2").await;
    b.click("#password-submit").await;
    b.wait_text("#password-error", "differ").await;
    // A wrong current password: the API's answer, shown.
    b.fill("#current-password", "not-the-password").await;
    b.fill("#new-password-2", "console-chosen-1").await;
    b.click("#password-submit").await;
    b.wait_text("#password-error", "current password is wrong").await;
    // The right one: in.
    b.fill("#current-password", &one_time).await;
    b.click("#password-submit").await;
    b.wait("#sessions").await;
    clean(&b, &node, "password change").await;

    // The new password works for the API; the one-time one no longer does.
    let client = node.client();
    assert!(hush_tests::try_login(&client, "default", "admin", "console-chosen-1").await.is_ok());
    assert!(hush_tests::try_login(&client, "default", "admin", &one_time).await.is_err());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_without_a_factor_enrols_in_the_console_when_the_tenant_requires_one() {
    let Some(b) = browser().await else { return };
    let node = Node::start();
    let admin = node.stepped_admin().await;
    let dana = hush_protocol::ids::UserId::new("dana").unwrap();
    admin.create_user(&dana, &hush_protocol::api::Secret::new("dana-password"), true).await.unwrap();
    let mut policy = admin.mfa_policy().await.unwrap();
    policy.level = MfaLevel::Required;
    policy.grace_period_secs = 0;
    admin.set_mfa_policy(&policy).await.unwrap();

    sign_in(&b, &node, "dana", "dana-password").await;
    b.wait("#enrol-qr").await;
    let secret = b.wait("#enrol-secret").await.text().await.unwrap();
    shot(&b, "enrol").await;
    // A wrong code is refused and changes nothing.
    b.fill("#enrol-code", "000000").await;
    b.click("#enrol-submit").await;
    b.wait_text("#enrol-error", "invalid code").await;
    let mut factor = hush_tests::Factor::new(&secret, Vec::new());
    b.fill("#enrol-code", &factor.totp().await).await;
    b.click("#enrol-submit").await;
    b.wait("#backup-codes li").await;
    let codes = b.wait("#backup-codes").await.text().await.unwrap();
    assert_eq!(codes.lines().filter(|l| !l.trim().is_empty()).count(), 10, "{codes}");
    b.click("#backup-done").await;
    b.wait("#sessions").await;
    clean(&b, &node, "enrolment").await;

    let status = admin.users_mfa_status(None, None).await.unwrap();
    let row = status.users.iter().find(|u| u.user == dana).unwrap();
    assert!(row.totp_enabled && row.backup_codes_left == 10, "{row:?}");
    // The key is not shown again: a new sign-in is challenged for a code instead.
    b.click("#signout").await;
    b.wait_text("#signin-error", "Signed out").await;
    sign_in(&b, &node, "dana", "dana-password").await;
    b.wait("#mfa-code").await;
    let page = b.client.source().await.unwrap();
    assert!(!page.contains(&secret), "the TOTP key is rendered again");
    b.close().await;
}
