//! The `hush` CLI's account and administration commands against a real node, each checked
//! through the API: sessions, devices, keys, MFA (enrol with the terminal QR code, confirm,
//! backup codes, trusted devices, step-up, disable), and for administrators users, MFA
//! enforcement and reset, sessions, the tenant policies and the audit log. Bad input gets one
//! line on stderr and a non-zero exit, and changes nothing. A last test keeps every route of
//! `/openapi.json` mapped to a command or listed as API-only in docs/cli.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use std::process::Command;
use std::time::Duration;

use hush_client::Session;
use hush_protocol::api::{MfaPolicy, Secret};
use hush_protocol::ids::{DeviceId, TenantId, UserId};
use hush_tests::cli::{Authenticator, Cli};
use hush_tests::{bin, login, Node};
use serde_json::Value;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// A user (not an administrator unless `admin`) with password `<name>-password`.
async fn user(admin: &Session, name: &str, is_admin: bool) {
    admin.create_user(&uid(name), &Secret::new(format!("{name}-password")), is_admin).await.unwrap();
}

/// An administrator `root` with a TOTP factor, logged in with the CLI: its login answers the
/// challenge, a step-up for the tenant's window, as the admin commands guarded for others need
/// (docs/mfa.md, "Step-up"). `admin` must be stepped up (creating an administrator is guarded).
async fn root_admin(node: &Node, admin: &Session, cli: &Cli) -> hush_tests::Factor {
    user(admin, "root", true).await;
    let s = login(&node.client(), "default", "root", "root-password").await;
    let mut f = hush_tests::enrol(&s).await;
    let code = f.totp().await;
    cli.run("root", &["login", "--user", "root", "--password", "root-password", "--code", &code]);
    f
}

/// Another device of `name` with real keys (as a client registers it).
async fn device(node: &Node, name: &str) -> Session {
    let tenant = TenantId::new("default").unwrap();
    let (s, _) = hush_client::register_device(
        &node.client(),
        &tenant,
        &uid(name),
        &Secret::new(format!("{name}-password")),
        Some("sdk".into()),
    )
    .await
    .unwrap();
    s
}

/// Reads a QR code drawn with Unicode half blocks (background = dark module, as `hush mfa
/// enroll` draws it for a dark terminal) back into pixels and decodes it.
fn decode_terminal_qr(text: &str) -> String {
    let rows: Vec<Vec<char>> = text
        .lines()
        .take_while(|l| l.chars().all(|c| matches!(c, ' ' | '█' | '▀' | '▄')) && !l.is_empty())
        .map(|l| l.chars().collect())
        .collect();
    assert!(rows.len() > 10, "no QR code drawn: {text}");
    const SCALE: usize = 4;
    let w = rows.iter().map(Vec::len).max().unwrap();
    let h = rows.len() * 2;
    let mut img = vec![0u8; w * h * SCALE * SCALE];
    for (y, row) in rows.iter().enumerate() {
        for (x, c) in row.iter().enumerate() {
            let (top, bottom) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            for (half, lit) in [(0, top), (1, bottom)] {
                let v = if lit { 255 } else { 0 };
                for dy in 0..SCALE {
                    let py = (y * 2 + half) * SCALE + dy;
                    for dx in 0..SCALE {
                        img[py * w * SCALE + x * SCALE + dx] = v;
                    }
                }
            }
        }
    }
    let (pw, ph) = (w * SCALE, h * SCALE);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(pw, ph, |x, y| img[y * pw + x]);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the terminal drawing");
    grids[0].decode().unwrap().1
}

fn line_after<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' line in: {out}"))
        .trim()
}

#[tokio::test]
async fn sessions_devices_and_keys_of_a_user() {
    let node = Node::start();
    let admin = node.admin().await;
    user(&admin, "bob", false).await;
    let cli = Cli::new(&node);
    cli.login("bob", "bob", "bob-password");
    let d2 = device(&node, "bob").await;
    let d3 = device(&node, "bob").await;

    // Listing: three sessions, this profile's marked current.
    let v = cli.json("bob", &["sessions"]);
    let list = v["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{v}");
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["device"], 1);
    for s in list {
        assert!(s["id"].is_string() && s["created_ms"].is_u64() && s["user"] == "bob", "{s}");
    }
    let table = cli.run("bob", &["sessions"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    let d2_id = d2.login_info().session_id.clone();
    assert!(table.contains(&d2_id), "{table}");

    // Revoke one: gone from the API listing, its token refused.
    let out = cli.run("bob", &["sessions", "revoke", &d2_id]);
    assert!(out.contains("Revoked 1 session."), "{out}");
    let left = d3.sessions().await.unwrap().sessions;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|s| s.id != d2_id));
    assert!(d2.sessions().await.is_err());

    // Bad input: one line, nothing changed.
    let err = cli.fail("bob", &["sessions", "revoke", "no-such-session"]);
    assert!(err.starts_with("error: not_found"), "{err}");
    let err = cli.fail("bob", &["sessions", "revoke"]);
    assert!(err.contains("<ID|--others|--all>"), "{err}");
    let err = cli.fail("bob", &["sessions", "revoke", "x", "--all"]);
    assert!(err.contains("cannot be used with"), "{err}");
    assert_eq!(d3.sessions().await.unwrap().sessions.len(), 2);

    // Revoke the others: only this profile's session is left.
    let v = cli.json("bob", &["sessions", "revoke", "--others"]);
    assert_eq!(v["revoked"], 1);
    assert!(d3.sessions().await.is_err());
    let v = cli.json("bob", &["sessions"]);
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);

    // Devices: list (JSON and table), another user's, remove one.
    let v = cli.json("bob", &["devices"]);
    assert_eq!(v["user"], "bob");
    let ids: Vec<u64> = v["devices"].as_array().unwrap().iter().map(|d| d["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
    let table = cli.run("bob", &["devices", "bob"]);
    assert!(table.starts_with("DEVICE") && table.contains("bob/3"), "{table}");
    let v = cli.json("bob", &["devices", "admin"]);
    assert_eq!(v["user"], "admin");
    let err = cli.fail("bob", &["devices", "remove", "abc"]);
    assert!(err.contains("invalid value 'abc'"), "{err}");
    let err = cli.fail("bob", &["devices", "remove", "9"]);
    assert!(err.starts_with("error: not_found"), "{err}");
    assert_eq!(admin.devices(Some(&uid("bob"))).await.unwrap().devices.len(), 3);
    cli.run("bob", &["devices", "remove", "3"]);
    let left: Vec<DeviceId> =
        admin.devices(Some(&uid("bob"))).await.unwrap().devices.iter().map(|d| d.id).collect();
    assert_eq!(left.iter().map(|d| d.get()).collect::<Vec<_>>(), [1, 2]);

    // Keys: what this device's login uploaded.
    let v = cli.json("bob", &["keys"]);
    assert_eq!(v["ec"].as_u64().unwrap(), hush_client::state::ONE_TIME_BATCH as u64, "{v}");
    assert!(v["kyber"].as_u64().unwrap() > 0);

    // Revoke all: this profile is logged out and says so.
    let out = cli.run("bob", &["sessions", "revoke", "--all"]);
    assert!(out.contains("log in again"), "{out}");
    assert!(admin.admin_user_sessions(&uid("bob")).await.unwrap().sessions.is_empty());
    let err = cli.fail("bob", &["sessions"]);
    assert!(err.contains("logged out"), "{err}");
}

#[tokio::test]
async fn mfa_enrol_confirm_trust_step_up_and_disable() {
    let node = Node::start();
    // Stepped up: it changes the MFA policy.
    let admin = node.stepped_admin().await;
    user(&admin, "bob", false).await;
    let cli = Cli::new(&node);
    cli.login("bob", "bob", "bob-password");
    let v = cli.json("bob", &["mfa", "status"]);
    assert_eq!(v["totp_enabled"], false);
    assert_eq!(v["level"], "optional");

    // Enrol: the terminal QR code holds the URI printed below it, which holds the secret.
    let out = cli.run("bob", &["mfa", "enroll"]);
    let uri = line_after(&out, "URI:");
    let secret = line_after(&out, "Secret:");
    assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")), "{out}");
    assert_eq!(decode_terminal_qr(&out), uri);
    let mut app = Authenticator::new(secret);

    // A wrong code: one line, TOTP still off.
    let err = cli.fail("bob", &["mfa", "confirm", "000000"]);
    assert!(err.starts_with("error: invalid_code"), "{err}");
    assert_eq!(cli.json("bob", &["mfa", "status"])["totp_enabled"], false);

    let out = cli.run("bob", &["mfa", "confirm", &app.fresh().await]);
    let codes: Vec<String> = out.lines().filter_map(|l| l.strip_prefix("  ")).map(str::to_owned).collect();
    assert_eq!(codes.len(), 10, "{out}");
    let st = cli.json("bob", &["mfa", "status"]);
    assert_eq!((st["totp_enabled"].as_bool(), st["backup_codes_left"].as_u64()), (Some(true), Some(10)));

    // Trusted devices: a second device that passed its challenge with "remember me".
    let d2 = login(&node.client(), "default", "bob", "bob-password").await;
    let ch = d2.login_info().mfa.as_ref().and_then(|m| m.challenge.clone()).expect("challenge");
    let verified = d2.mfa_answer(&ch.challenge_id, &Secret::new(codes[0].clone()), true, true).await.unwrap();
    assert!(verified.trusted_device_token.is_some());
    let v = cli.json("bob", &["mfa", "trusted"]);
    let devices: Vec<u64> =
        v["devices"].as_array().unwrap().iter().map(|d| d["device"].as_u64().unwrap()).collect();
    assert_eq!(devices, [u64::from(d2.device().get())]);
    let table = cli.run("bob", &["mfa", "trusted"]);
    assert!(table.starts_with("DEVICE"), "{table}");
    cli.fail("bob", &["mfa", "trusted", "revoke", "nope"]);
    cli.run("bob", &["mfa", "trusted", "revoke", &d2.device().to_string()]);
    assert!(d2.trusted_devices().await.unwrap().devices.is_empty());

    // Step-up: with a 1 s window, regenerating the backup codes asks for a code (stdin here).
    let mut p: MfaPolicy = admin.mfa_policy().await.unwrap();
    p.step_up_window_secs = 1;
    admin.set_mfa_policy(&p).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let code = app.fresh().await;
    let out = cli.run_in("bob", &["mfa", "backup-codes", "regenerate"], &format!("{code}\n"));
    let new_codes: Vec<String> =
        out.lines().filter_map(|l| l.strip_prefix("  ")).map(str::to_owned).collect();
    assert_eq!(new_codes.len(), 10, "{out}");
    assert!(new_codes.iter().all(|c| !codes.contains(c)));
    assert_eq!(d2.mfa_status().await.unwrap().backup_codes_left, 10);

    // Disable: without an answer it fails and changes nothing; an old backup code is void now;
    // a new one works.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = cli.fail("bob", &["mfa", "disable"]);
    assert!(err.contains("no answer"), "{err}");
    let err = cli.fail("bob", &["mfa", "disable", "--code", &codes[1]]);
    assert!(err.starts_with("error: invalid_code"), "{err}");
    assert!(d2.mfa_status().await.unwrap().totp_enabled);
    let out = cli.run("bob", &["mfa", "disable", "--code", &new_codes[0]]);
    assert!(out.contains("TOTP is off"), "{out}");
    assert!(!d2.mfa_status().await.unwrap().totp_enabled);
}

#[tokio::test]
async fn admin_users_mfa_sessions_policies_and_audit() {
    let node = Node::start();
    let admin = node.stepped_admin().await;
    let cli = Cli::new(&node);
    let _root = root_admin(&node, &admin, &cli).await;

    // Users: create (and refuse bad input), list as JSON and table.
    let v = cli.json("root", &["admin", "create-user", "carol", "--password", "carol-password"]);
    assert_eq!((v["user"].as_str(), v["admin"].as_bool()), (Some("carol"), Some(false)));
    let err = cli.fail("root", &["admin", "create-user", "carol", "--password", "x-password"]);
    assert!(err.starts_with("error: conflict"), "{err}");
    let err = cli.fail("root", &["admin", "create-user", "bad name!", "--password", "x-password"]);
    assert!(err.contains("bad name!"), "{err}");
    let names: Vec<String> =
        admin.list_users().await.unwrap().users.iter().map(|u| u.user.to_string()).collect();
    assert_eq!(names, ["admin", "carol", "root"]);
    let v = cli.json("root", &["admin", "users"]);
    let listed: Vec<&str> =
        v["users"].as_array().unwrap().iter().map(|u| u["user"].as_str().unwrap()).collect();
    assert_eq!(listed, ["admin", "carol", "root"]);
    let v = cli.json("root", &["admin", "users", "--after", "admin", "--limit", "1"]);
    assert_eq!(v["users"].as_array().unwrap().len(), 1);
    assert_eq!(v["users"][0]["user"], "carol");
    let table = cli.run("root", &["admin", "users"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["USER", "ADMIN", "CREATED"], "{table}");
    assert!(table.lines().any(|l| l.split_whitespace().take(2).eq(["carol", "no"])), "{table}");

    // Nodes: a node alone lists itself, on the local bus, its store ok.
    let v = cli.json("root", &["admin", "nodes"]);
    assert_eq!(v["bus"], "local", "{v}");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{v}");
    assert_eq!(nodes[0]["id"], v["node"]);
    assert_eq!((nodes[0]["this"].as_bool(), nodes[0]["store"].as_str()), (Some(true), Some("ok")), "{v}");
    let table = cli.run("root", &["admin", "nodes"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[..3], ["NODE", "CONNECTIONS", "STORE"], "{table}");
    assert!(table.lines().nth(1).is_some_and(|l| l.contains(" *")), "{table}");

    // Session policy: set, shown by the API and by `show`; a bad duration changes nothing.
    let v = cli.json(
        "root",
        &["admin", "policy", "sessions", "set", "--idle-timeout", "45m", "--absolute-timeout", "none"],
    );
    assert_eq!(v["idle_timeout_s"], 2700);
    let p = admin.session_policy().await.unwrap();
    assert_eq!((p.idle_timeout_s, p.absolute_timeout_s), (Some(2700), None));
    let err = cli.fail("root", &["admin", "policy", "sessions", "set", "--idle-timeout", "soon"]);
    assert!(err.contains("not a duration"), "{err}");
    let err = cli.fail("root", &["admin", "policy", "sessions", "set"]);
    assert!(err.contains("nothing to set"), "{err}");
    assert_eq!(admin.session_policy().await.unwrap(), p);
    assert_eq!(cli.json("root", &["admin", "policy", "sessions", "show"])["idle_timeout_s"], 2700);
    let shown = cli.run("root", &["admin", "policy", "sessions", "show"]);
    assert!(shown.contains("45m") && shown.contains("none"), "{shown}");

    // MFA policy: named settings change, the others stay.
    let before = admin.mfa_policy().await.unwrap();
    let v = cli.json(
        "root",
        &[
            "admin",
            "policy",
            "mfa",
            "set",
            "--step-up-window",
            "5m",
            "--exempt-roles",
            "member",
            "--grace",
            "1d",
        ],
    );
    assert_eq!(v["step_up_window_secs"], 300);
    let after = admin.mfa_policy().await.unwrap();
    assert_eq!((after.step_up_window_secs, after.grace_period_secs), (300, 86_400));
    assert_eq!(after.exempt_roles, [hush_protocol::api::Role::Member]);
    assert_eq!(
        (after.level, after.totp_digits, after.exempt_users.clone()),
        (before.level, before.totp_digits, before.exempt_users.clone())
    );
    let err = cli.fail("root", &["admin", "policy", "mfa", "set", "--totp-digits", "7"]);
    assert!(err.starts_with("error: invalid_request"), "{err}");
    cli.fail("root", &["admin", "policy", "mfa", "set", "--level", "sometimes"]);
    assert_eq!(admin.mfa_policy().await.unwrap(), after);
    assert_eq!(cli.json("root", &["admin", "policy", "mfa", "show"])["grace_period_secs"], 86_400);
    let _ = cli.json("root", &["admin", "policy", "mfa", "set", "--exempt-roles", ""]);
    assert!(admin.mfa_policy().await.unwrap().exempt_roles.is_empty());

    // Enforcement and reset.
    let v = cli.json("root", &["admin", "enforce-mfa", "carol"]);
    assert_eq!(v["users"], 1);
    let st = admin.users_mfa_status(None, None).await.unwrap();
    assert!(st.users.iter().find(|u| u.user.as_str() == "carol").unwrap().enforced);
    let v = cli.json("root", &["admin", "users", "--mfa"]);
    let carol = v["users"].as_array().unwrap().iter().find(|u| u["user"] == "carol").unwrap().clone();
    assert_eq!((carol["enforced"].as_bool(), carol["required"].as_bool()), (Some(true), Some(true)));
    cli.fail("root", &["admin", "enforce-mfa"]);
    let err = cli.fail("root", &["admin", "enforce-mfa", "nobody"]);
    assert!(err.starts_with("error: not_found"), "{err}");
    user(&admin, "dave", false).await;
    let dave = login(&node.client(), "default", "dave", "dave-password").await;
    let e = dave.totp_enroll().await.unwrap();
    let mut app = Authenticator::new(e.secret.expose());
    dave.totp_confirm(&Secret::new(app.fresh().await)).await.unwrap();
    assert!(dave.mfa_status().await.unwrap().totp_enabled);
    let out = cli.run("root", &["admin", "reset-mfa", "dave"]);
    assert!(out.contains("Reset the MFA of dave"), "{out}");
    assert!(!dave.mfa_status().await.unwrap().totp_enabled);

    // Sessions: the tenant's, a user's; revoke one, a user's, every one but mine.
    let dave2 = device(&node, "dave").await;
    let v = cli.json("root", &["admin", "sessions"]);
    let users: BTreeSet<&str> =
        v["sessions"].as_array().unwrap().iter().map(|s| s["user"].as_str().unwrap()).collect();
    assert_eq!(users, BTreeSet::from(["admin", "dave", "root"]));
    let v = cli.json("root", &["admin", "sessions", "--user", "dave"]);
    assert_eq!(v["sessions"].as_array().unwrap().len(), 2);
    let table = cli.run("root", &["admin", "sessions", "--user", "dave"]);
    assert!(
        table.starts_with("ID") && table.contains("USER") && table.contains(&dave2.login_info().session_id),
        "{table}"
    );
    cli.run("root", &["admin", "sessions", "revoke", &dave2.login_info().session_id]);
    let left = admin.admin_user_sessions(&uid("dave")).await.unwrap().sessions;
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].id, dave2.login_info().session_id);
    let err = cli.fail("root", &["admin", "sessions", "revoke", "no-such-session"]);
    assert!(err.starts_with("error: not_found"), "{err}");
    let v = cli.json("root", &["admin", "sessions", "revoke", "--user", "dave"]);
    assert_eq!(v["revoked"], 1);
    assert!(admin.admin_user_sessions(&uid("dave")).await.unwrap().sessions.is_empty());

    // Audit: filters by actor and action, paging, time bounds (one line for a bad range).
    let v = cli.json("root", &["admin", "audit", "--actor", "root"]);
    let recs = v["records"].as_array().unwrap();
    assert!(recs.iter().all(|r| r["actor"] == "root"), "{v}");
    assert!(
        recs.iter()
            .any(|r| r["action"] == "user.create" && r["target"].as_str().unwrap_or("").contains("carol")),
        "{v}"
    );
    let v = cli.json("root", &["admin", "audit", "--action", "user.create"]);
    let creates = v["records"].as_array().unwrap();
    assert!(creates.len() >= 4 && creates.iter().all(|r| r["action"] == "user.create"), "{v}");
    let v = cli.json("root", &["admin", "audit", "--limit", "1"]);
    assert_eq!(v["records"].as_array().unwrap().len(), 1);
    let next = v["next"].as_u64().expect("a next page");
    assert_eq!(next, v["records"][0]["id"].as_u64().unwrap());
    let older = cli.json("root", &["admin", "audit", "--limit", "2", "--before", &next.to_string()]);
    let ids: Vec<u64> =
        older["records"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < next && ids[1] < ids[0]);
    assert!(!cli.json("root", &["admin", "audit", "--since", "1h"])["records"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(cli.json("root", &["admin", "audit", "--until", "2000-01-01"])["records"]
        .as_array()
        .unwrap()
        .is_empty());
    let err = cli.fail("root", &["admin", "audit", "--since", "2030-01-01", "--until", "2029-01-01"]);
    assert!(err.contains("--since is after --until"), "{err}");
    let table = cli.run("root", &["admin", "audit", "--limit", "3"]);
    assert!(table.starts_with("ID") && table.lines().count() == 4, "{table}");

    // Everyone out but me: the bootstrap admin's SDK session is refused afterwards.
    let v = cli.json("root", &["admin", "sessions", "revoke", "--all"]);
    assert!(v["revoked"].as_u64().unwrap() >= 1);
    assert!(admin.list_users().await.is_err());
    let v = cli.json("root", &["admin", "sessions"]);
    let left = v["sessions"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0]["user"].as_str(), left[0]["current"].as_bool()), (Some("root"), Some(true)));

    // A member is refused the admin commands with one line.
    user_via_cli(&cli);
    let err = cli.fail("erin", &["admin", "users"]);
    assert!(err.starts_with("error: forbidden"), "{err}");

    // Everyone must use MFA now. Once root's step-up is older than the window, the next
    // protected action asks for a code, and none is given: one line, nothing revoked.
    let v = cli.json("root", &["admin", "enforce-mfa", "--all"]);
    assert!(v["users"].as_u64().unwrap() >= 5, "{v}");
    let v = cli.json("root", &["admin", "policy", "mfa", "set", "--step-up-window", "1s"]);
    assert_eq!(v["step_up_window_secs"], 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = cli.fail("root", &["admin", "sessions", "revoke", "--user", "erin"]);
    assert!(err.contains("no answer"), "{err}");
    assert_eq!(
        cli.json("root", &["admin", "sessions", "--user", "erin"])["sessions"].as_array().unwrap().len(),
        1
    );
}

fn user_via_cli(cli: &Cli) {
    cli.run("root", &["admin", "create-user", "erin", "--password", "erin-password"]);
    cli.login("erin", "erin", "erin-password");
}

/// One row of a route table in docs/cli.md: (method, path, third column).
fn rows(section: &str) -> Vec<(String, String, String)> {
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').map(str::trim).collect();
            (cells.len() == 3
                && ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&cells[0])
                && cells[1].starts_with('/'))
            .then(|| (cells[0].to_lowercase(), cells[1].to_owned(), cells[2].to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn every_route_has_a_command_or_a_reason() {
    let node = Node::start();
    let doc: Value =
        reqwest::get(format!("{}/openapi.json", node.url())).await.unwrap().json().await.unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                routes.insert((method.clone(), path.clone()));
            }
        }
    }
    assert!(routes.len() > 40, "{routes:?}");
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap();
    let (mapped_part, rest) = md.split_once("## API-only, deliberately").expect("an API-only section");
    let api_only_part = rest.split("\n## ").next().unwrap();
    let mapped = rows(mapped_part);
    let api_only = rows(api_only_part);
    let mut seen = BTreeSet::new();
    for (m, p, _) in mapped.iter().chain(&api_only) {
        assert!(
            routes.contains(&(m.clone(), p.clone())),
            "docs/cli.md names {m} {p}, which the node does not have"
        );
        assert!(seen.insert((m.clone(), p.clone())), "docs/cli.md lists {m} {p} twice");
    }
    let missing: Vec<String> = routes
        .iter()
        .filter(|r| !seen.contains(*r))
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(missing.is_empty(), "routes with neither a CLI command nor a reason in docs/cli.md: {missing:?}");
    for (_, _, why) in &api_only {
        assert!(why.len() > 20, "an API-only route needs a reason: {why}");
    }
    // Every command of the table exists, with the flags it names.
    let mut checked = BTreeSet::new();
    for (m, p, cell) in &mapped {
        let cmd =
            cell.split('`').nth(1).unwrap_or_else(|| panic!("{m} {p}: no `hush ...` command in {cell}"));
        let words: Vec<&str> = cmd.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"hush"), "{cmd}");
        let path: Vec<&str> = words[1..]
            .iter()
            .take_while(|w| !w.starts_with('-') && !w.chars().next().unwrap().is_ascii_uppercase())
            .copied()
            .collect();
        let flags: Vec<&str> = words.iter().filter(|w| w.starts_with("--")).copied().collect();
        if !checked.insert(cmd.to_owned()) {
            continue;
        }
        let mut args = path.clone();
        args.push("--help");
        let out = Command::new(bin("hush")).args(&args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`hush {}` is not a command ({m} {p}): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        for f in flags {
            assert!(
                help.contains(&format!("{f} ")) || help.contains(&format!("{f}\n")),
                "`{cmd}`: no {f} in its help:\n{help}"
            );
        }
    }
}

#[tokio::test]
async fn password_change_and_admin_unlock() {
    let node = Node::start_args(&[
        "--login-free-failures",
        "2",
        "--login-lock-failures",
        "3",
        "--login-lock-secs",
        "600",
    ]);
    let admin = node.stepped_admin().await;
    user(&admin, "bob", false).await;
    user(&admin, "carol", false).await;
    let cli = Cli::new(&node);
    let _root = root_admin(&node, &admin, &cli).await;
    cli.login("bob", "bob", "bob-password");
    let other = login(&node.client(), "default", "bob", "bob-password").await;

    // Typos and a wrong current password: one line each, the password unchanged.
    let err = cli.fail_in("bob", &["password"], "bob-password\nnew-secret-1\nnew-secret-2\n");
    assert!(err.contains("differ"), "{err}");
    let err = cli.fail_in("bob", &["password"], "wrong-password\nnew-secret-1\nnew-secret-1\n");
    assert!(err.starts_with("error: wrong_password"), "{err}");
    assert!(other.sessions().await.is_ok());

    let out = cli.run_in("bob", &["password"], "bob-password\nnew-secret-1\nnew-secret-1\n");
    assert!(out.contains("Password changed"), "{out}");
    assert!(other.sessions().await.is_err(), "the other session is revoked");
    assert_eq!(cli.json("bob", &["sessions"])["sessions"].as_array().unwrap().len(), 1, "this one stays");
    assert!(hush_tests::try_login(&node.client(), "default", "bob", "bob-password").await.is_err());
    login(&node.client(), "default", "bob", "new-secret-1").await;

    // Lock carol with wrong passwords, then unlock her with the CLI.
    let mut locked = false;
    for _ in 0..10 {
        match hush_tests::try_login(&node.client(), "default", "carol", "wrong").await {
            Err(hush_client::ClientError::Http { body, .. }) if body.error == "account_locked" => {
                locked = true;
                break;
            }
            Err(hush_client::ClientError::Http { body, .. }) if body.error == "rate_limited" => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(_) => {}
            Ok(_) => panic!("a wrong password was accepted"),
        }
    }
    assert!(locked, "carol was never locked");
    assert!(hush_tests::try_login(&node.client(), "default", "carol", "carol-password").await.is_err());
    let err = cli.fail("root", &["admin", "unlock", "nobody"]);
    assert!(err.starts_with("error: not_found"), "{err}");
    let err = cli.fail("bob", &["admin", "unlock", "carol"]);
    assert!(err.starts_with("error: forbidden"), "{err}");
    let out = cli.run("root", &["admin", "unlock", "carol"]);
    assert!(out.contains("Unlocked carol"), "{out}");
    login(&node.client(), "default", "carol", "carol-password").await;
}
