//! `hush admin ...`: tenant administration (the caller must be a tenant administrator): users,
//! their MFA and login locks, sessions, the tenant's MFA and session policies, the audit log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use hush_client::{AuditFilter, Session};
use hush_protocol::api::{AuditEntry, AuditPage, MfaLevel, MfaPolicy, Role, SessionPolicy};
use hush_protocol::ids::UserId;
use hush_protocol::otp::Algorithm;

use super::output::{self, Output};
use super::stepup::{self, StepUp};

/// Most audit records one `hush admin audit` prints (the node pages by 500 at most).
pub const MAX_AUDIT_RECORDS: usize = 10_000;
/// Page size asked of the node when paging through users, sessions or audit records.
const PAGE: usize = 500;

/// `hush admin ...`
#[derive(Args)]
#[command(after_long_help = "Examples:
  hush admin users
  hush admin create-user carol --password carol-secret-1
  hush admin unlock carol
  hush admin reset-mfa carol --code 123456
  hush admin enforce-mfa --all
  hush admin sessions --user carol
  hush admin sessions revoke --user carol
  hush admin policy mfa set --level required --grace 2d
  hush admin policy sessions set --idle-timeout 30m --absolute-timeout none
  hush admin audit --actor carol --since 1h")]
pub struct AdminArgs {
    #[command(subcommand)]
    cmd: AdminCmd,
    #[command(flatten)]
    step: StepUp,
}

/// Tenant administration commands.
#[derive(Subcommand)]
enum AdminCmd {
    /// List the tenant's users (with --mfa: their MFA state).
    Users(UsersArgs),
    /// Create a user.
    CreateUser {
        /// User name.
        user: UserId,
        /// Initial password (else asked for).
        #[arg(long)]
        password: Option<String>,
        /// Make the user a tenant administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Lift a user's login lock after too many wrong passwords.
    Unlock {
        /// User name.
        user: UserId,
    },
    /// Reset a user's MFA (lost authenticator, factor locked): they enrol again (needs a code).
    ResetMfa {
        /// User name.
        user: UserId,
    },
    /// Require MFA of one user, or of everyone, whatever the tenant level (needs a code).
    #[command(group(clap::ArgGroup::new("who").required(true).args(["user", "all"])))]
    EnforceMfa {
        /// User name.
        user: Option<UserId>,
        /// Every user of the tenant.
        #[arg(long)]
        all: bool,
    },
    /// List active sessions (the tenant's, or one user's); revoke one, a user's, or all.
    Sessions(SessionsArgs),
    /// Show or change the tenant's MFA and session policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Read the audit log, newest first, with filters.
    Audit(AuditArgs),
    /// The cluster's live nodes: connections, store, bus link, version, last heartbeat.
    Nodes,
}

#[derive(Args)]
struct UsersArgs {
    /// Show each user's MFA state (TOTP, backup codes, enforcement, grace, lock).
    #[arg(long)]
    mfa: bool,
    /// Start after this user name (paging).
    #[arg(long, value_name = "USER")]
    after: Option<UserId>,
    /// At most this many users (default: all).
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SessionsArgs {
    #[command(subcommand)]
    cmd: Option<AdminSessionsCmd>,
    /// Only this user's sessions.
    #[arg(long)]
    user: Option<UserId>,
    /// Start after this session id (paging the tenant's list).
    #[arg(long, value_name = "ID")]
    after: Option<String>,
    /// At most this many sessions (default: all).
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Subcommand)]
enum AdminSessionsCmd {
    /// Revoke one session, every session of a user, or every active session but yours (needs
    /// a code).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "user", "all"])))]
    Revoke {
        /// A session id (see `hush admin sessions`).
        id: Option<String>,
        /// Every session of this user.
        #[arg(long)]
        user: Option<UserId>,
        /// Every active session of the tenant but yours ("log everyone out").
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// The MFA policy: level, grace period, exemptions, TOTP settings, trust, step-up window.
    #[command(subcommand)]
    Mfa(MfaPolicyCmd),
    /// Session lifetimes: idle and absolute timeouts, for members and administrators.
    #[command(subcommand)]
    Sessions(SessionPolicyCmd),
}

#[derive(Subcommand)]
enum MfaPolicyCmd {
    /// Show the MFA policy.
    Show,
    /// Change the named settings of the MFA policy; the others stay (needs a code).
    #[command(after_long_help = "Durations: seconds (600) or with units (10m, 48h, 2d).
Examples:
  hush admin policy mfa set --level required --grace 2d
  hush admin policy mfa set --exempt-users svc-bot,kiosk --exempt-roles ''
  hush admin policy mfa set --step-up-window 5m --trusted-device-days 7")]
    Set(MfaPolicySet),
}

#[derive(Clone, Copy, ValueEnum)]
enum Level {
    Off,
    Optional,
    Required,
    RequiredForAdmins,
}

#[derive(Clone, Copy, ValueEnum)]
enum Alg {
    #[value(name = "SHA1", alias = "sha1")]
    Sha1,
    #[value(name = "SHA256", alias = "sha256")]
    Sha256,
    #[value(name = "SHA512", alias = "sha512")]
    Sha512,
}

#[derive(Args)]
struct MfaPolicySet {
    /// Who must use MFA.
    #[arg(long)]
    level: Option<Level>,
    /// Time a user has to enrol once MFA is required of them.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    grace: Option<u64>,
    /// Users never challenged, comma-separated ('' for none); replaces the list.
    #[arg(long, value_name = "USERS", value_delimiter = ',', num_args = 0..)]
    exempt_users: Option<Vec<String>>,
    /// Roles never challenged (admin, member), comma-separated ('' for none).
    #[arg(long, value_name = "ROLES", value_delimiter = ',', num_args = 0..)]
    exempt_roles: Option<Vec<String>>,
    /// HMAC of new enrolments.
    #[arg(long)]
    totp_algorithm: Option<Alg>,
    /// Digits of new enrolments (6 or 8).
    #[arg(long)]
    totp_digits: Option<u32>,
    /// How long "remember this device" lasts, days (0: never offered).
    #[arg(long)]
    trusted_device_days: Option<u32>,
    /// Overrides --trusted-device-days with a duration ('none' to go back to days).
    #[arg(long, value_name = "DURATION|none", value_parser = opt_duration)]
    trusted_device_time: Option<Limit>,
    /// Sensitive actions need a verification at most this old.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    step_up_window: Option<u64>,
}

#[derive(Subcommand)]
enum SessionPolicyCmd {
    /// Show the session lifetimes.
    Show,
    /// Change the named lifetimes; the others stay ('none': no limit).
    #[command(after_long_help = "Durations: seconds (600) or with units (30m, 12h, 30d), or 'none'.
Example:
  hush admin policy sessions set --idle-timeout 30m --absolute-timeout 30d")]
    Set(SessionPolicySet),
}

#[derive(Args)]
struct SessionPolicySet {
    /// A member's session ends after this long without activity.
    #[arg(long, value_name = "DURATION|none", value_parser = opt_duration)]
    idle_timeout: Option<Limit>,
    /// A member's session ends this long after login.
    #[arg(long, value_name = "DURATION|none", value_parser = opt_duration)]
    absolute_timeout: Option<Limit>,
    /// An administrator's session ends after this long without activity.
    #[arg(long, value_name = "DURATION|none", value_parser = opt_duration)]
    admin_idle_timeout: Option<Limit>,
    /// An administrator's session ends this long after login.
    #[arg(long, value_name = "DURATION|none", value_parser = opt_duration)]
    admin_absolute_timeout: Option<Limit>,
}

#[derive(Args)]
#[command(
    after_long_help = "Times: RFC 3339 (2026-12-03T14:00:00Z), a date (2026-12-03, UTC), or an age (90m, 2d).
Examples:
  hush admin audit --since 1h
  hush admin audit --actor bob --action session.revoke --limit 20
  hush admin audit --before 1234 --output json       # the next page"
)]
struct AuditArgs {
    /// Only records of this actor.
    #[arg(long)]
    actor: Option<UserId>,
    /// Only this action (e.g. login, session.revoke, mfa.reset, user.create).
    #[arg(long)]
    action: Option<String>,
    /// Only records at or after this time.
    #[arg(long, value_name = "TIME", value_parser = time_ms)]
    since: Option<u64>,
    /// Only records at or before this time.
    #[arg(long, value_name = "TIME", value_parser = time_ms)]
    until: Option<u64>,
    /// Only records older than this id (the `next` of a previous page).
    #[arg(long, value_name = "ID")]
    before: Option<u64>,
    /// At most this many records.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_AUDIT_RECORDS as u64))]
    limit: u64,
}

/// A duration: whole seconds, or with units (`10m`, `48h`, `2d`).
fn duration(s: &str) -> Result<u64, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| format!("'{s}' is not a duration (600, 10m, 48h, 2d): {e}"))
}

/// A duration in seconds, or `none` (no limit). A newtype: clap reads `Option<Option<_>>`
/// as a flag with an optional value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limit(Option<u64>);

/// A duration or `none`.
fn opt_duration(s: &str) -> Result<Limit, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Limit(None));
    }
    duration(s).map(|d| Limit(Some(d)))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A point in time as ms since the Unix epoch: RFC 3339, a UTC date, or an age before now.
fn time_ms(s: &str) -> Result<u64, String> {
    let t = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        humantime::parse_rfc3339(&format!("{s}T00:00:00Z")).map_err(|e| e.to_string())
    } else if s.contains('-') || s.contains(':') {
        humantime::parse_rfc3339_weak(s).map_err(|e| e.to_string())
    } else {
        let age = humantime::parse_duration(s).map_err(|e| e.to_string());
        return age
            .map(|d| now_ms().saturating_sub(d.as_millis() as u64))
            .map_err(|e| format!("'{s}' is not a time (2026-12-03T14:00:00Z, 2026-12-03, 90m): {e}"));
    };
    t.map(|t| t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64)
        .map_err(|e| format!("'{s}' is not a time (2026-12-03T14:00:00Z, 2026-12-03, 90m): {e}"))
}

fn level_name(l: MfaLevel) -> String {
    serde_json::to_value(l).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn print_mfa_policy(p: &MfaPolicy, out: Output) -> anyhow::Result<()> {
    if out.json() {
        return output::print_json(p);
    }
    let list = |v: Vec<String>| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
    println!("Level:                 {}", level_name(p.level));
    println!("Grace period:          {}", output::secs(p.grace_period_secs));
    println!("Exempt users:          {}", list(p.exempt_users.iter().map(|u| u.to_string()).collect()));
    println!(
        "Exempt roles:          {}",
        list(
            p.exempt_roles
                .iter()
                .map(|r| if *r == Role::Admin { "admin".into() } else { "member".into() })
                .collect()
        )
    );
    let alg = serde_json::to_value(p.totp_algorithm)?;
    println!("TOTP:                  {}, {} digits", alg.as_str().unwrap_or("?"), p.totp_digits);
    match p.trusted_device_secs {
        Some(s) => println!("Trusted devices:       {}", output::secs(s)),
        None => println!("Trusted devices:       {} days", p.trusted_device_days),
    }
    println!("Step-up window:        {}", output::secs(p.step_up_window_secs));
    Ok(())
}

fn print_session_policy(p: &SessionPolicy, out: Output) -> anyhow::Result<()> {
    if out.json() {
        return output::print_json(p);
    }
    println!("Idle timeout:                   {}", output::opt_secs(p.idle_timeout_s));
    println!("Absolute timeout:               {}", output::opt_secs(p.absolute_timeout_s));
    println!("Administrator idle timeout:     {}", output::opt_secs(p.admin_idle_timeout_s));
    println!("Administrator absolute timeout: {}", output::opt_secs(p.admin_absolute_timeout_s));
    Ok(())
}

fn roles(v: Vec<String>) -> anyhow::Result<Vec<Role>> {
    v.into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| match r.as_str() {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => bail!("'{other}' is not a role (admin, member)"),
        })
        .collect()
}

fn apply_mfa(mut p: MfaPolicy, set: MfaPolicySet) -> anyhow::Result<MfaPolicy> {
    let mut changed = false;
    let mut mark = || changed = true;
    if let Some(l) = set.level {
        mark();
        p.level = match l {
            Level::Off => MfaLevel::Off,
            Level::Optional => MfaLevel::Optional,
            Level::Required => MfaLevel::Required,
            Level::RequiredForAdmins => MfaLevel::RequiredForAdmins,
        };
    }
    if let Some(g) = set.grace {
        mark();
        p.grace_period_secs = g;
    }
    if let Some(u) = set.exempt_users {
        mark();
        p.exempt_users =
            u.into_iter().filter(|u| !u.is_empty()).map(UserId::new).collect::<Result<_, _>>()?;
    }
    if let Some(r) = set.exempt_roles {
        mark();
        p.exempt_roles = roles(r)?;
    }
    if let Some(a) = set.totp_algorithm {
        mark();
        p.totp_algorithm = match a {
            Alg::Sha1 => Algorithm::Sha1,
            Alg::Sha256 => Algorithm::Sha256,
            Alg::Sha512 => Algorithm::Sha512,
        };
    }
    if let Some(d) = set.totp_digits {
        mark();
        p.totp_digits = d;
    }
    if let Some(d) = set.trusted_device_days {
        mark();
        p.trusted_device_days = d;
    }
    if let Some(t) = set.trusted_device_time {
        mark();
        p.trusted_device_secs = t.0;
    }
    if let Some(w) = set.step_up_window {
        mark();
        p.step_up_window_secs = w;
    }
    if !changed {
        bail!("nothing to set: name at least one setting (see `hush admin policy mfa set --help`)");
    }
    Ok(p)
}

fn apply_sessions(mut p: SessionPolicy, set: SessionPolicySet) -> anyhow::Result<SessionPolicy> {
    let fields = [
        (set.idle_timeout, &mut p.idle_timeout_s),
        (set.absolute_timeout, &mut p.absolute_timeout_s),
        (set.admin_idle_timeout, &mut p.admin_idle_timeout_s),
        (set.admin_absolute_timeout, &mut p.admin_absolute_timeout_s),
    ];
    let mut changed = false;
    for (given, field) in fields {
        if let Some(v) = given {
            *field = v.0;
            changed = true;
        }
    }
    if !changed {
        bail!("nothing to set: name at least one timeout (see `hush admin policy sessions set --help`)");
    }
    Ok(p)
}

async fn users(s: &Session, a: UsersArgs, out: Output) -> anyhow::Result<()> {
    let want = a.limit.unwrap_or(usize::MAX);
    let mut after = a.after;
    if a.mfa {
        let mut all = Vec::new();
        loop {
            let page = s.users_mfa_status(after.as_ref(), Some(PAGE.min(want - all.len()))).await?;
            all.extend(page.users);
            match page.next {
                Some(n) if all.len() < want => after = Some(UserId::new(n)?),
                _ => break,
            }
        }
        if out.json() {
            return output::print_json(&serde_json::json!({ "users": all }));
        }
        let mut t = output::table(&[
            "user",
            "admin",
            "totp",
            "backup codes",
            "required",
            "enforced",
            "exempt",
            "enrol before",
            "locked until",
        ]);
        for u in &all {
            t.add_row(vec![
                u.user.to_string(),
                output::yes(u.admin).into(),
                if u.totp_enabled { "on".into() } else { "off".into() },
                u.backup_codes_left.to_string(),
                output::yes(u.required).into(),
                output::yes(u.enforced).into(),
                output::yes(u.exempt).into(),
                output::opt_time(u.enroll_deadline_ms),
                output::opt_time(u.locked_until_ms),
            ]);
        }
        output::print_table(&t, "No users.");
        return Ok(());
    }
    let mut all = Vec::new();
    loop {
        let ask = PAGE.min(want - all.len());
        let page = s.list_users_page(after.as_ref(), Some(ask)).await?;
        let full = page.users.len() == ask;
        after = page.users.last().map(|u| u.user.clone());
        all.extend(page.users);
        if !full || all.len() >= want {
            break;
        }
    }
    if out.json() {
        return output::print_json(&serde_json::json!({ "users": all }));
    }
    let mut t = output::table(&["user", "admin", "created"]);
    for u in &all {
        t.add_row(vec![u.user.to_string(), output::yes(u.admin).into(), output::time(u.created_ms)]);
    }
    output::print_table(&t, "No users.");
    Ok(())
}

async fn sessions(s: &Session, a: SessionsArgs, step: &StepUp, out: Output) -> anyhow::Result<()> {
    match a.cmd {
        None => {
            let list = match &a.user {
                Some(u) => s.admin_user_sessions(u).await?.sessions,
                None => {
                    let want = a.limit.unwrap_or(usize::MAX);
                    let mut after = a.after;
                    let mut all = Vec::new();
                    loop {
                        let page = s
                            .admin_active_sessions(after.as_deref(), Some(PAGE.min(want - all.len())))
                            .await?;
                        all.extend(page.sessions);
                        match page.next {
                            Some(n) if all.len() < want => after = Some(n),
                            _ => break,
                        }
                    }
                    all
                }
            };
            if out.json() {
                return output::print_json(&serde_json::json!({ "sessions": list }));
            }
            super::sessions::print_sessions(&list, true);
        }
        Some(AdminSessionsCmd::Revoke { id, user, all }) => {
            let n = if all {
                stepup::run(s, step, || s.admin_revoke_all_active()).await?
            } else if let Some(u) = user {
                stepup::run(s, step, || s.admin_revoke_user_sessions(&u)).await?
            } else if let Some(id) = id {
                stepup::run(s, step, || s.admin_revoke_session(&id)).await?
            } else {
                bail!("name a session id, --user or --all");
            };
            if out.json() {
                return output::print_json(&serde_json::json!({ "revoked": n }));
            }
            println!("Revoked {n} session{}.", if n == 1 { "" } else { "s" });
        }
    }
    Ok(())
}

async fn audit(s: &Session, a: AuditArgs, out: Output) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (a.since, a.until) {
        if from > to {
            bail!("--since is after --until");
        }
    }
    let want = a.limit as usize;
    let mut filter =
        AuditFilter { actor: a.actor, action: a.action, before: a.before, limit: Some(PAGE.min(want)) };
    let mut records: Vec<AuditEntry> = Vec::new();
    // Where the next page of what was asked for starts, if there may be one (`--before`).
    let next = 'pages: loop {
        let page = s.audit(&filter).await.context("reading the audit log")?;
        for r in page.records {
            if a.until.is_some_and(|u| r.at_ms > u) {
                continue;
            }
            if a.since.is_some_and(|f| r.at_ms < f) {
                break 'pages None;
            }
            records.push(r);
            if records.len() == want {
                break 'pages records.last().map(|r| r.id);
            }
        }
        match page.next {
            Some(n) => filter.before = Some(n),
            None => break None,
        }
    };
    if out.json() {
        return output::print_json(&AuditPage { records, next });
    }
    let mut t = output::table(&["id", "time", "actor", "action", "target", "result", "ip"]);
    for r in &records {
        t.add_row(vec![
            r.id.to_string(),
            output::time(r.at_ms),
            r.actor.clone().unwrap_or_else(|| "-".into()),
            r.action.clone(),
            r.target.clone().unwrap_or_else(|| "-".into()),
            r.result.clone(),
            r.ip.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    output::print_table(&t, "No audit records match.");
    if let Some(n) = next {
        eprintln!("(more: add --before {n})");
    }
    Ok(())
}

/// Runs `hush admin ...`.
pub async fn run(s: &Session, args: AdminArgs, out: Output) -> anyhow::Result<()> {
    let step = &args.step;
    match args.cmd {
        AdminCmd::Users(a) => users(s, a, out).await?,
        AdminCmd::CreateUser { user, password, admin } => {
            let pw = super::prompt::ask_secret(password, "New user's password: ")?;
            let info = stepup::run(s, step, || s.create_user(&user, &pw, admin)).await?;
            if out.json() {
                return output::print_json(&info);
            }
            println!("Created {}/{}{}.", info.tenant, info.user, if info.admin { " (admin)" } else { "" });
        }
        AdminCmd::Unlock { user } => {
            stepup::run(s, step, || s.unlock_user(&user)).await?;
            println!("Unlocked {user}: they may log in again.");
        }
        AdminCmd::ResetMfa { user } => {
            stepup::run(s, step, || s.reset_mfa(&user)).await?;
            println!("Reset the MFA of {user}: factor, backup codes, lock and trusted devices are gone.");
        }
        AdminCmd::EnforceMfa { user, all } => {
            let n = match (user, all) {
                (_, true) => stepup::run(s, step, || s.enforce_mfa_all()).await?,
                (Some(u), false) => stepup::run(s, step, || s.enforce_mfa(&u)).await?,
                (None, false) => bail!("name a user or --all"),
            };
            if out.json() {
                return output::print_json(&n);
            }
            println!("MFA is now required of {} user{}.", n.users, if n.users == 1 { "" } else { "s" });
        }
        AdminCmd::Sessions(a) => sessions(s, a, step, out).await?,
        AdminCmd::Policy(PolicyCmd::Mfa(MfaPolicyCmd::Show)) => {
            print_mfa_policy(&s.mfa_policy().await?, out)?
        }
        AdminCmd::Policy(PolicyCmd::Mfa(MfaPolicyCmd::Set(set))) => {
            let p = apply_mfa(s.mfa_policy().await?, set)?;
            let p = stepup::run(s, step, || s.set_mfa_policy(&p)).await?;
            print_mfa_policy(&p, out)?;
        }
        AdminCmd::Policy(PolicyCmd::Sessions(SessionPolicyCmd::Show)) => {
            print_session_policy(&s.session_policy().await?, out)?
        }
        AdminCmd::Policy(PolicyCmd::Sessions(SessionPolicyCmd::Set(set))) => {
            let p = apply_sessions(s.session_policy().await?, set)?;
            let p = stepup::run(s, step, || s.set_session_policy(&p)).await?;
            print_session_policy(&p, out)?;
        }
        AdminCmd::Audit(a) => audit(s, a, out).await?,
        AdminCmd::Nodes => nodes(s, out).await?,
    }
    Ok(())
}

async fn nodes(s: &Session, out: Output) -> anyhow::Result<()> {
    let c = s.admin_cluster().await.context("reading the cluster's nodes")?;
    if out.json() {
        return output::print_json(&c);
    }
    let mut t =
        output::table(&["node", "connections", "store", "bus", "version", "started", "last heartbeat"]);
    let dash = || "-".to_owned();
    for n in &c.nodes {
        t.add_row(vec![
            format!("{}{}", n.id, if n.this { " *" } else { "" }),
            n.connections.map(|c| c.to_string()).unwrap_or_else(dash),
            n.store.clone().unwrap_or_else(dash),
            n.bus_healthy.map(|b| if b { "up" } else { "down" }.to_owned()).unwrap_or_else(dash),
            n.version.clone().unwrap_or_else(dash),
            n.started_ms.map(output::time).unwrap_or_else(dash),
            output::time(n.seen_ms),
        ]);
    }
    output::print_table(&t, "No live nodes.");
    let link = if c.bus_healthy { "" } else { " (this node's link is down: only itself is listed)" };
    eprintln!("{} node(s) on the {} bus{link}.", c.nodes.len(), c.bus);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(duration("600"), Ok(600));
        assert_eq!(duration("10m"), Ok(600));
        assert_eq!(duration("2d"), Ok(172_800));
        assert!(duration("soon").is_err());
        assert_eq!(opt_duration("none"), Ok(Limit(None)));
        assert_eq!(opt_duration("1h"), Ok(Limit(Some(3600))));
        assert_eq!(time_ms("2026-12-03T14:00:00Z"), Ok(1_796_306_400_000));
        assert_eq!(time_ms("2026-12-03"), Ok(1_796_256_000_000));
        let ago = time_ms("1h").unwrap();
        assert!(ago <= now_ms() - 3_600_000 && ago > now_ms() - 3_700_000);
        assert!(time_ms("yesterday-ish").is_err());
    }
}
