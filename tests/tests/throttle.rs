//! Throttled logins: per account (free failures, doubling delays, a lock), per client address,
//! cluster-wide through Redis; unknown users answered exactly like known ones; admin unlock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use hush_protocol::wire::{ServerFrame, SessionEvent};
use hush_tests::{drain_all, Mongo, Node, Redis};
use serde_json::{json, Value};

/// Small thresholds so a test reaches the lock in seconds: 3 free failures, then waits of
/// 1, 2 and 4 s, the 6th consecutive failure locks for 10 minutes.
const FLAGS: [&str; 6] =
    ["--login-free-failures", "3", "--login-lock-failures", "6", "--login-lock-secs", "600"];

struct Answer {
    status: u16,
    error: String,
    retry_after: Option<u64>,
    body_retry: Option<u64>,
    took: Duration,
}

async fn attempt(node: &Node, user: &str, password: &str) -> Answer {
    let t0 = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/login", node.url()))
        .json(&json!({"tenant": "default", "user": user, "password": password, "device": {"registration_id": 9}}))
        .send()
        .await
        .unwrap();
    let took = t0.elapsed();
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    let v: Value = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        error: v["error"].as_str().unwrap_or("").to_owned(),
        retry_after,
        body_retry: v["retry_after_s"].as_u64(),
        took,
    }
}

/// Sends 30 wrong passwords for `user`, over `nodes` in turn, waiting out each `rate_limited`
/// answer; returns the answers.
async fn thirty_wrong(nodes: &[&Node], user: &str) -> Vec<Answer> {
    let mut out = Vec::new();
    for i in 0..30 {
        let a = attempt(nodes[i % nodes.len()], user, "wrong-password").await;
        if a.status == 429 {
            assert_eq!(a.retry_after, a.body_retry, "Retry-After header and body agree");
            assert!(a.retry_after.unwrap() >= 1);
        }
        if a.error == "rate_limited" {
            tokio::time::sleep(Duration::from_secs(a.retry_after.unwrap())).await;
        }
        out.push(a);
    }
    out
}

fn summary(answers: &[Answer]) -> Vec<(u16, String)> {
    answers.iter().map(|a| (a.status, a.error.clone())).collect()
}

fn check_sequence(answers: &[Answer]) {
    let s = summary(answers);
    let failures = s.iter().filter(|(st, _)| *st == 401).count();
    assert_eq!(failures, 6, "exactly the lock threshold of passwords were checked: {s:?}");
    assert!(s[..3].iter().all(|(st, e)| *st == 401 && e == "unauthorized"), "3 free failures: {s:?}");
    assert_eq!(s[3], (429, "rate_limited".to_owned()), "then a delay: {s:?}");
    let first_lock = s.iter().position(|(_, e)| e == "account_locked").expect("locked");
    assert!(s[first_lock..].iter().all(|(st, e)| *st == 429 && e == "account_locked"), "{s:?}");
    let lock = answers[first_lock].retry_after.unwrap();
    assert!(lock > 590 && lock <= 600, "locked for the configured 600 s: {lock}");
}

/// The bootstrap administrator, stepped up: unlocking is guarded for others (docs/mfa.md).
async fn admin_token(node: &Node) -> String {
    node.stepped_admin().await.login_info().token.expose().to_owned()
}

async fn unlock(node: &Node, token: &str, user: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/admin/users/{user}/unlock", node.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn audit(node: &Node, token: &str, action: &str) -> Vec<Value> {
    let v: Value = reqwest::Client::new()
        .get(format!("{}/v1/admin/audit?action={action}", node.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["records"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_wrong_passwords_lock_the_account_and_an_admin_unlocks_it() {
    let node = Node::start_args(&FLAGS);
    let admin = node.stepped_admin().await;
    let alice = node.user(&admin, "alice").await;
    let mut conn = alice.connect().await.unwrap();
    drain_all(&mut conn).await;
    let answers = thirty_wrong(&[&node], "alice").await;
    check_sequence(&answers);
    // The right password is refused while locked.
    let a = attempt(&node, "alice", "alice-password").await;
    assert_eq!((a.status, a.error.as_str()), (429, "account_locked"));
    // Audited once, and alice's device hears of it.
    let token = admin.login_info().token.expose().to_owned();
    let locks = audit(&node, &token, "account.lock").await;
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["target"], "user:alice");
    let ev = loop {
        match hush_tests::next(&mut conn).await {
            ServerFrame::Deliver(e) if e.event.is_some() => break e.event.unwrap(),
            _ => {}
        }
    };
    assert!(matches!(ev, SessionEvent::AccountLocked { failures: 6, retry_after_s: 600 }), "{ev:?}");
    // Only a tenant administrator unlocks, only users of its tenant; audited.
    assert_eq!(unlock(&node, alice.login_info().token.expose(), "alice").await, 403);
    assert_eq!(unlock(&node, &token, "nobody").await, 404);
    assert_eq!(unlock(&node, &token, "alice").await, 204);
    assert_eq!(audit(&node, &token, "account.unlock").await.len(), 1);
    let a = attempt(&node, "alice", "alice-password").await;
    assert_eq!(a.status, 200, "unlocked: {}", a.error);
    // A success starts the count over: 3 free failures again.
    for _ in 0..3 {
        assert_eq!(attempt(&node, "alice", "wrong-password").await.status, 401);
    }
    assert_eq!(attempt(&node, "alice", "wrong-password").await.error, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_holds_when_the_attempts_are_spread_over_two_clustered_nodes() {
    let redis = Redis::start();
    let mongo = Mongo::start();
    let a = Node::start_clustered_args(&redis, &mongo, "node-a", &FLAGS);
    let mut b = Node::start_clustered_args(&redis, &mongo, "node-b", &FLAGS);
    b.admin_password = a.admin_password.clone();
    let admin = a.admin().await;
    let _alice = a.user(&admin, "alice").await;
    let answers = thirty_wrong(&[&a, &b], "alice").await;
    check_sequence(&answers);
    for node in [&a, &b] {
        let r = attempt(node, "alice", "alice-password").await;
        assert_eq!((r.status, r.error.as_str()), (429, "account_locked"), "locked on both nodes");
    }
    // Unlocked on one node, unlocked everywhere.
    assert_eq!(unlock(&b, &admin_token(&b).await, "alice").await, 204);
    assert_eq!(attempt(&a, "alice", "alice-password").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_known_users_get_the_same_answers_in_the_same_time_class() {
    let node = Node::start_args(&FLAGS);
    let admin = node.admin().await;
    let _bob = node.user(&admin, "bob").await;
    let nodes = [&node];
    let (known, unknown) = tokio::join!(thirty_wrong(&nodes, "bob"), thirty_wrong(&nodes, "nobody"));
    assert_eq!(summary(&known), summary(&unknown), "same statuses and codes");
    check_sequence(&unknown);
    for (k, u) in known.iter().zip(&unknown) {
        let (kr, ur) = (k.retry_after.unwrap_or(0), u.retry_after.unwrap_or(0));
        assert!(kr.abs_diff(ur) <= 1, "same waits: {kr} vs {ur}");
    }
    // A checked attempt costs a password hash for the unknown user as for the known one. The
    // two runs ran side by side on the same node, so they met the same load; without the dummy
    // hash an unknown user would answer in a millisecond against tens for a hash.
    let median = |v: &[Answer]| {
        let mut t: Vec<Duration> = v.iter().filter(|a| a.status == 401).map(|a| a.took).collect();
        t.sort();
        t[t.len() / 2]
    };
    let (k, u) = (median(&known), median(&unknown));
    assert!(u >= k / 2, "an unknown user answers in {u:?}, a known one in {k:?}");
    // The locked unknown user is audited like a known one.
    let token = admin.login_info().token.expose().to_owned();
    let targets: Vec<String> = audit(&node, &token, "account.lock")
        .await
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        targets.contains(&"user:bob".to_owned()) && targets.contains(&"user:nobody".to_owned()),
        "{targets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_password_change_is_throttled_like_a_login() {
    let node = Node::start_args(&FLAGS);
    let admin = node.admin().await;
    let alice = node.user(&admin, "alice").await;
    let new = hush_protocol::api::Secret::new("alice-new-password");
    for _ in 0..3 {
        let e = alice
            .change_password(&hush_protocol::api::Secret::new("wrong-password"), &new)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("wrong_password"), "{e}");
    }
    let e =
        alice.change_password(&hush_protocol::api::Secret::new("alice-password"), &new).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 429") && e.to_string().contains("rate_limited"), "{e}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    alice.change_password(&hush_protocol::api::Secret::new("alice-password"), &new).await.unwrap();
}
