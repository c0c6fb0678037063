//! Step-up of the actions guarded for others (docs/mfa.md, "Step-up") against real `hushd`
//! processes: the bypass chain of issue 12 is refused at its first step; an administrator
//! without a second factor is refused every guarded action under every MFA level (also when
//! exempt); every `/v1/admin` route of `/openapi.json` is called with a fresh, a stale and a
//! just-enrolled verification; the CLI says to enrol on `mfa_enrollment_required`. TOTP codes
//! come from `hush_tests::Factor` (the harness's own RFC 6238 code, `hush_tests::cli::Authenticator::hotp`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use hush_client::Session;
use hush_tests::{bin, enrol, login, step_up, Node};
use serde_json::{json, Value};

async fn call(
    node: &Node,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("{}{path}", node.url());
    let mut rb = match method {
        "GET" => c.get(url),
        "POST" => c.post(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        m => panic!("method {m}"),
    };
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn tok(s: &Session) -> String {
    s.login_info().token.expose().to_owned()
}

/// Creates a user with password `<name>-password`; the administrator must be stepped up for
/// `is_admin`.
async fn make_user(node: &Node, admin: &str, name: &str, is_admin: bool) {
    let body = json!({"user": name, "password": format!("{name}-password"), "admin": is_admin});
    let (st, v) = call(node, "POST", "/v1/admin/users", Some(admin), Some(body)).await;
    assert_eq!(st, 201, "create {name}: {v}");
}

async fn session(node: &Node, name: &str) -> Session {
    login(&node.client(), "default", name, &format!("{name}-password")).await
}

/// Changes some fields of the tenant's MFA policy.
async fn put_mfa(node: &Node, token: &str, change: Value) -> (u16, Value) {
    let (st, mut p) = call(node, "GET", "/v1/admin/tenant/mfa", Some(token), None).await;
    assert_eq!(st, 200, "{p}");
    for (k, v) in change.as_object().unwrap() {
        p[k] = v.clone();
    }
    call(node, "PUT", "/v1/admin/tenant/mfa", Some(token), Some(p)).await
}

/// The users and sessions the guarded routes act on.
struct Targets {
    /// A member whose sessions an administrator revokes (two live sessions).
    revoke: Session,
    /// A member one of whose sessions an administrator revokes by id.
    one: Session,
    /// A member with TOTP, whose MFA an administrator resets.
    reset: Session,
}

impl Targets {
    async fn make(node: &Node, admin: &str) -> Targets {
        for name in ["t-unlock", "t-revoke", "t-one", "t-enforce", "t-reset"] {
            make_user(node, admin, name, false).await;
        }
        let revoke = session(node, "t-revoke").await;
        let one = session(node, "t-one").await;
        let reset = session(node, "t-reset").await;
        enrol(&reset).await;
        Targets { revoke, one, reset }
    }
}

/// One route of the table: `method`, the path as `/openapi.json` names it, and whether it is
/// step-up guarded for others (docs/mfa.md). `POST /v1/admin/users` is guarded only with
/// `admin: true`: it has a row for each body.
struct Route {
    method: &'static str,
    path: &'static str,
    guarded: bool,
    variant: &'static str,
}

const fn r(method: &'static str, path: &'static str, guarded: bool, variant: &'static str) -> Route {
    Route { method, path, guarded, variant }
}

/// Every admin route. Keep in step with the table in docs/mfa.md; the walk fails on a
/// `/v1/admin` route of `/openapi.json` missing here.
const ROUTES: &[Route] = &[
    r("GET", "/v1/admin/users", false, ""),
    r("POST", "/v1/admin/users", false, "member"),
    r("GET", "/v1/admin/users/mfa-status", false, ""),
    r("GET", "/v1/admin/users/{user}/sessions", false, ""),
    r("GET", "/v1/admin/sessions/active", false, ""),
    r("GET", "/v1/admin/audit", false, ""),
    r("GET", "/v1/admin/cluster", false, ""),
    r("GET", "/v1/admin/tenant/mfa", false, ""),
    r("GET", "/v1/admin/tenant/sessions", false, ""),
    r("POST", "/v1/admin/users", true, "admin"),
    r("POST", "/v1/admin/users/{user}/unlock", true, ""),
    r("DELETE", "/v1/admin/users/{user}/sessions", true, ""),
    r("DELETE", "/v1/admin/sessions/{id}", true, ""),
    r("POST", "/v1/admin/users/{user}/mfa/enforce", true, ""),
    r("DELETE", "/v1/admin/users/{user}/mfa", true, ""),
    r("PUT", "/v1/admin/tenant/sessions", true, ""),
    r("PUT", "/v1/admin/tenant/mfa", true, ""),
    r("POST", "/v1/admin/mfa/enforce-all", true, ""),
    // Last: it ends every other session of the tenant.
    r("DELETE", "/v1/admin/sessions/active", true, ""),
];

/// The concrete request of a route for one pass (`pass` names what a pass creates).
async fn request(
    node: &Node,
    token: &str,
    route: &Route,
    t: &Targets,
    pass: &str,
) -> (String, Option<Value>) {
    let path = match (route.method, route.path) {
        ("GET", "/v1/admin/users/{user}/sessions") | ("DELETE", "/v1/admin/users/{user}/sessions") => {
            "/v1/admin/users/t-revoke/sessions".to_owned()
        }
        (_, "/v1/admin/users/{user}/unlock") => "/v1/admin/users/t-unlock/unlock".to_owned(),
        (_, "/v1/admin/users/{user}/mfa/enforce") => "/v1/admin/users/t-enforce/mfa/enforce".to_owned(),
        (_, "/v1/admin/users/{user}/mfa") => "/v1/admin/users/t-reset/mfa".to_owned(),
        (_, "/v1/admin/sessions/{id}") => format!("/v1/admin/sessions/{}", t.one.login_info().session_id),
        (_, p) => p.to_owned(),
    };
    let body = match (route.method, route.path, route.variant) {
        ("POST", "/v1/admin/users", "member") => {
            Some(json!({"user": format!("m-{pass}"), "password": "member-password", "admin": false}))
        }
        ("POST", "/v1/admin/users", "admin") => {
            Some(json!({"user": format!("a-{pass}"), "password": "admin-password", "admin": true}))
        }
        ("PUT", "/v1/admin/tenant/sessions", _) => {
            let (_, mut p) = call(node, "GET", "/v1/admin/tenant/sessions", Some(token), None).await;
            p["idle_timeout_s"] = json!(86_400);
            Some(p)
        }
        ("PUT", "/v1/admin/tenant/mfa", _) => {
            let (_, mut p) = call(node, "GET", "/v1/admin/tenant/mfa", Some(token), None).await;
            p["grace_period_secs"] = json!(3600);
            Some(p)
        }
        _ => None,
    };
    (path, body)
}

/// Calls every route as `token`; a guarded route must answer 403 `refusal` (when given) or
/// succeed (when `None`), an unguarded one must always succeed.
async fn pass(node: &Node, token: &str, t: &Targets, name: &str, refusal: Option<&str>) {
    for route in ROUTES {
        let (path, body) = request(node, token, route, t, name).await;
        let (st, v) = call(node, route.method, &path, Some(token), body).await;
        let what = format!("{name}: {} {path} {}", route.method, route.variant);
        match (route.guarded, refusal) {
            (true, Some(code)) => assert_eq!((st, v["error"].as_str()), (403, Some(code)), "{what}: {v}"),
            _ => assert!((200..300).contains(&st), "{what} should be allowed: {st} {v}"),
        }
        if route.guarded && refusal.is_none() && route.method == "DELETE" && path.contains("sessions") {
            assert!(
                v["revoked"].as_u64().unwrap() >= 1,
                "{what}: the refused passes revoked it already: {v}"
            );
        }
    }
}

/// `(user, enforced, totp_enabled)` of every user.
async fn mfa_states(node: &Node, token: &str) -> Vec<(String, bool, bool)> {
    let (st, v) = call(node, "GET", "/v1/admin/users/mfa-status?limit=500", Some(token), None).await;
    assert_eq!(st, 200, "{v}");
    v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["user"].as_str().unwrap().to_owned(), u["enforced"] == true, u["totp_enabled"] == true))
        .collect()
}

async fn users(node: &Node, token: &str) -> Vec<String> {
    let (_, v) = call(node, "GET", "/v1/admin/users?limit=500", Some(token), None).await;
    v["users"].as_array().unwrap().iter().map(|u| u["user"].as_str().unwrap().to_owned()).collect()
}

async fn alive(node: &Node, s: &Session) -> bool {
    call(node, "GET", "/v1/devices", Some(&tok(s)), None).await.0 == 200
}

async fn audit_count(node: &Node, token: &str, action: &str, result: Option<&str>) -> usize {
    let (_, v) =
        call(node, "GET", &format!("/v1/admin/audit?action={action}&limit=500"), Some(token), None).await;
    v["records"].as_array().unwrap().iter().filter(|r| result.is_none_or(|x| r["result"] == x)).count()
}

/// Issue 12's reproduction: an administrator whose verification is older than the window
/// creates an administrator without a factor, which then does what the first could not. The
/// first step is refused now, and the creation changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bypass_chain_is_refused_at_its_first_step() {
    let node = Node::start();
    let a = node.stepped_admin().await;
    let at = tok(&a);
    make_user(&node, &at, "u", false).await;
    let u = session(&node, "u").await;
    let (st, v) = put_mfa(&node, &at, json!({"step_up_window_secs": 2})).await;
    assert_eq!(st, 200, "{v}");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (st, v) = call(&node, "DELETE", "/v1/admin/users/u/sessions", Some(&at), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")), "{v}");
    let body = json!({"user": "x", "password": "x-password-1", "admin": true});
    let (st, v) = call(&node, "POST", "/v1/admin/users", Some(&at), Some(body)).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")), "creating an administrator: {v}");
    assert!(v["message"].as_str().unwrap().contains("/v1/mfa/challenge"), "{v}");
    // Nothing was created: no user x, and its password logs nobody in.
    assert!(!users(&node, &at).await.contains(&"x".to_owned()));
    let login_x = json!({"tenant": "default", "user": "x", "password": "x-password-1",
        "device": {"registration_id": 9}});
    assert_eq!(call(&node, "POST", "/v1/login", None, Some(login_x)).await.0, 401);
    assert!(alive(&node, &u).await, "u's session was not revoked");
    // A member may still be created without a step-up; the refusals are audited.
    make_user(&node, &at, "v", false).await;
    assert_eq!(audit_count(&node, &at, "mfa.step_up", Some("denied")).await, 2);
}

/// An administrator without a factor: every guarded action answers 403
/// `mfa_enrollment_required` under every level, also when administrators are exempt, and
/// nothing changes. Under `required_for_admins` it enrols in its grace period: the confirmation
/// is no step-up (`step_up_required`), a challenge answered afterwards is. Under `off` a factor
/// can still be enrolled and stepped up with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_without_a_factor_is_refused_every_guarded_action_whatever_the_level() {
    let node = Node::start();
    let a = node.stepped_admin().await;
    let at = tok(&a);
    let t = Targets::make(&node, &at).await;
    make_user(&node, &at, "x", true).await;
    make_user(&node, &at, "z", true).await;
    let (_, sessions_before) = call(&node, "GET", "/v1/admin/tenant/sessions", Some(&at), None).await;
    let states_before = mfa_states(&node, &at).await;

    let levels = [
        json!({"level": "off"}),
        json!({"level": "optional"}),
        json!({"level": "required", "exempt_roles": ["admin"]}),
        json!({"level": "required_for_admins", "exempt_roles": []}),
    ];
    let mut x = None;
    for level in levels {
        let (st, v) = put_mfa(&node, &at, level.clone()).await;
        assert_eq!(st, 200, "{v}");
        let s = session(&node, "x").await;
        let (st, status) = call(&node, "GET", "/v1/mfa/status", Some(&tok(&s)), None).await;
        assert_eq!((st, status["totp_enabled"].as_bool()), (200, Some(false)), "{status}");
        let (_, p) = call(&node, "GET", "/v1/admin/tenant/mfa", Some(&tok(&s)), None).await;
        for route in ROUTES.iter().filter(|r| r.guarded) {
            let (path, body) = request(&node, &tok(&s), route, &t, "x").await;
            let (st, v) = call(&node, route.method, &path, Some(&tok(&s)), body).await;
            assert_eq!(
                (st, v["error"].as_str()),
                (403, Some("mfa_enrollment_required")),
                "{level}: {} {path} {}: {v}",
                route.method,
                route.variant
            );
            assert!(v["message"].as_str().unwrap().contains("enrol TOTP first"), "{v}");
        }
        // Nothing changed.
        let (_, p_after) = call(&node, "GET", "/v1/admin/tenant/mfa", Some(&at), None).await;
        assert_eq!(p_after, p, "{level}");
        x = Some(s);
    }
    assert!(alive(&node, &t.revoke).await && alive(&node, &t.one).await && alive(&node, &t.reset).await);
    assert_eq!(call(&node, "GET", "/v1/admin/tenant/sessions", Some(&at), None).await.1, sessions_before);
    assert_eq!(mfa_states(&node, &at).await, states_before, "no enforcement, no reset");
    assert!(!users(&node, &at).await.contains(&"a-x".to_owned()), "no administrator created");
    assert_eq!(audit_count(&node, &at, "account.unlock", None).await, 0);
    assert!(audit_count(&node, &at, "mfa.step_up", Some("denied_no_factor")).await >= 4 * 10);

    // Under required_for_admins, x enrols in its grace period: the confirmation is no step-up.
    let x = x.unwrap();
    let mut f = enrol(&x).await;
    let (_, status) = call(&node, "GET", "/v1/mfa/status", Some(&tok(&x)), None).await;
    assert_eq!(status["session"]["method"], "enrollment", "{status}");
    let (st, v) = call(&node, "DELETE", "/v1/admin/users/t-revoke/sessions", Some(&tok(&x)), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")), "{v}");
    let (st, v) = put_mfa(&node, &tok(&x), json!({"level": "off"})).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")), "{v}");
    // A challenge answered with the new factor is one.
    step_up(&x, &mut f).await;
    let (st, v) = call(&node, "DELETE", "/v1/admin/users/t-revoke/sessions", Some(&tok(&x)), None).await;
    assert_eq!((st, v["revoked"].as_u64()), (200, Some(1)), "{v}");

    // Under off, z (no factor) is refused, enrols (enrolment is open under off), is refused
    // again until it answers a challenge, then may act.
    let (st, v) = put_mfa(&node, &tok(&x), json!({"level": "off"})).await;
    assert_eq!(st, 200, "{v}");
    let z = session(&node, "z").await;
    assert!(z.login_info().mfa.as_ref().and_then(|m| m.challenge.as_ref()).is_none(), "not challenged");
    let one = format!("/v1/admin/sessions/{}", t.one.login_info().session_id);
    let (st, v) = call(&node, "DELETE", &one, Some(&tok(&z)), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("mfa_enrollment_required")), "{v}");
    let mut zf = enrol(&z).await;
    let (st, v) = call(&node, "DELETE", &one, Some(&tok(&z)), None).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("step_up_required")), "{v}");
    step_up(&z, &mut zf).await;
    let (st, v) = call(&node, "DELETE", &one, Some(&tok(&z)), None).await;
    assert_eq!((st, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    assert!(!alive(&node, &t.one).await);
}

/// Every `/v1/admin` route of `/openapi.json`, called by an administrator who just enrolled
/// (confirmed its factor, no challenge since), by one whose last step-up is older than the
/// window, and by one stepped up now: guarded routes refuse the first two (and change nothing)
/// and allow the third; the others allow all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_with_a_fresh_a_stale_and_a_just_enrolled_verification() {
    let node = Node::start();
    let a = node.stepped_admin().await;
    let at = tok(&a);

    // The table is the node's list of admin routes, no more, no less.
    let (st, doc) = call(&node, "GET", "/openapi.json", None, None).await;
    assert_eq!(st, 200);
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/v1/admin") {
            for method in ops.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let table: BTreeSet<(String, String)> =
        ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    assert_eq!(
        documented, table,
        "every /v1/admin route of /openapi.json must be in ROUTES (and docs/mfa.md)"
    );
    // The guarded routes document both refusals.
    for route in ROUTES.iter().filter(|r| r.guarded) {
        let d = doc["paths"][route.path][route.method.to_lowercase()]["responses"]["403"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            d.contains("step_up_required") && d.contains("mfa_enrollment_required"),
            "{} {}: 403 documented as {d:?}",
            route.method,
            route.path
        );
    }

    let t = Targets::make(&node, &at).await;
    // Just enrolled: an administrator who confirmed its factor and answered no challenge since.
    make_user(&node, &at, "newbie", true).await;
    let newbie = session(&node, "newbie").await;
    enrol(&newbie).await;
    // Stale: an administrator who stepped up, then outlived the window.
    make_user(&node, &at, "stale", true).await;
    let stale = session(&node, "stale").await;
    let mut sf = enrol(&stale).await;
    step_up(&stale, &mut sf).await;

    pass(&node, &tok(&newbie), &t, "enrolled", Some("step_up_required")).await;
    let (st, v) = put_mfa(&node, &at, json!({"step_up_window_secs": 5})).await;
    assert_eq!(st, 200, "{v}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    pass(&node, &tok(&stale), &t, "stale", Some("step_up_required")).await;

    // The refused calls changed nothing.
    let names = users(&node, &at).await;
    assert!(names.contains(&"m-enrolled".to_owned()) && names.contains(&"m-stale".to_owned()));
    assert!(!names.iter().any(|n| n.starts_with("a-")), "{names:?}");
    assert!(alive(&node, &t.revoke).await && alive(&node, &t.one).await && alive(&node, &t.reset).await);
    let states = mfa_states(&node, &at).await;
    assert!(states.iter().all(|(_, enforced, _)| !enforced), "{states:?}");
    assert!(states.iter().any(|(u, _, totp)| u == "t-reset" && *totp), "{states:?}");
    let (_, sp) = call(&node, "GET", "/v1/admin/tenant/sessions", Some(&at), None).await;
    assert_ne!(sp["idle_timeout_s"], 86_400, "{sp}");
    let (_, mp) = call(&node, "GET", "/v1/admin/tenant/mfa", Some(&at), None).await;
    assert_ne!(mp["grace_period_secs"], 3600, "{mp}");
    assert_eq!(audit_count(&node, &at, "account.unlock", None).await, 0);

    // Fresh: a new administrator session that answered its login challenge; it first sets the
    // window back (within the 5 s window; a slow machine gets another try).
    let mut fresh = node.stepped_admin().await;
    for attempt in 0.. {
        let (st, v) = put_mfa(&node, &tok(&fresh), json!({"step_up_window_secs": 600})).await;
        if st == 200 {
            break;
        }
        assert!(attempt < 3 && v["error"] == "step_up_required", "{v}");
        fresh = node.stepped_admin().await;
    }
    pass(&node, &tok(&fresh), &t, "fresh", None).await;
    let names = users(&node, &tok(&fresh)).await;
    assert!(names.contains(&"a-fresh".to_owned()), "{names:?}");
    let states = mfa_states(&node, &tok(&fresh)).await;
    assert!(states.iter().all(|(_, enforced, _)| *enforced), "{states:?}");
    assert!(states.iter().any(|(u, _, totp)| u == "t-reset" && !*totp), "{states:?}");
    let (_, sp) = call(&node, "GET", "/v1/admin/tenant/sessions", Some(&tok(&fresh)), None).await;
    assert_eq!(sp["idle_timeout_s"], 86_400, "{sp}");
    assert_eq!(audit_count(&node, &tok(&fresh), "account.unlock", None).await, 1);
    assert!(!alive(&node, &t.revoke).await && !alive(&node, &t.one).await && !alive(&node, &newbie).await);
}

/// `hush` answers `mfa_enrollment_required` with one line that says to enrol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_to_enrol_on_mfa_enrollment_required() {
    let node = Node::start();
    let a = node.stepped_admin().await;
    make_user(&node, &tok(&a), "x", true).await;
    make_user(&node, &tok(&a), "carol", false).await;
    let carol = session(&node, "carol").await;
    let home = tempfile::tempdir().unwrap();
    let hush = |args: &[&str]| {
        std::process::Command::new(bin("hush"))
            .args(["--profile", "x"])
            .args(args)
            .env("HUSH_HOME", home.path())
            .env("HUSH_SERVER", node.url())
            .env_remove("HUSH_MFA_CODE")
            .env_remove("HUSH_PASSWORD")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = hush(&["login", "--user", "x", "--password", "x-password"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for args in [
        &["admin", "sessions", "revoke", "--user", "carol"][..],
        &["admin", "create-user", "y", "--password", "y-password", "--admin"][..],
        &["admin", "policy", "sessions", "set", "--idle-timeout", "1h"][..],
    ] {
        let out = hush(args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: mfa_enrollment_required") && lines[0].contains("`hush mfa enroll`"),
            "{args:?}: {err}"
        );
    }
    assert!(alive(&node, &carol).await);
}
