//! Configuration: a TOML file (`--config` / `HUSH_CONFIG`), then `HUSH_*` environment variables,
//! then command-line flags; each later source overrides the earlier ones.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use hush_actors::keys::KeyPolicy;
use serde::Deserialize;
use std::time::Duration;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

pub use crate::upgrade::WsEngine;

/// Command line of `hushd`.
#[derive(Parser, Debug)]
#[command(name = "hushd", version, about = "Hush messaging node")]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "HUSH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on (`127.0.0.1:0` picks a free port and logs it).
    #[arg(long, env = "HUSH_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Folder of the embedded store.
    #[arg(long, env = "HUSH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Redis URL linking the nodes of a cluster (unset: this node runs alone).
    #[arg(long, env = "HUSH_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// MongoDB URL of the shared store (unset: the embedded store in the data folder).
    #[arg(long, env = "HUSH_MONGODB_URL", global = true)]
    pub mongodb_url: Option<String>,
    /// MongoDB database name.
    #[arg(long, env = "HUSH_MONGODB_DATABASE", global = true)]
    pub mongodb_database: Option<String>,
    /// This node's id in the cluster (default: random at each start).
    #[arg(long, env = "HUSH_NODE_ID", global = true)]
    pub node_id: Option<String>,
    /// Log format.
    #[arg(long, env = "HUSH_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "HUSH_WORKERS", global = true)]
    pub workers: Option<usize>,
    /// File holding the key that seals TOTP secrets at rest: 32 bytes, standard base64 (every
    /// node of a cluster needs the same one). Unset on a single node: `mfa.key` in the data
    /// folder, generated at first start.
    #[arg(long, env = "HUSH_MFA_KEY_FILE", global = true)]
    pub mfa_key_file: Option<PathBuf>,
    /// Push `PreKeysLow` to a device when fetches leave it fewer one-time keys of a kind than
    /// this (default 10).
    #[arg(long, env = "HUSH_PREKEY_LOW_THRESHOLD", global = true)]
    pub prekey_low_threshold: Option<u32>,
    /// Pre-key bundle fetches per (requesting device, target device) in a burst (default 6).
    #[arg(long, env = "HUSH_PREKEY_FETCH_BUCKET", global = true)]
    pub prekey_fetch_bucket: Option<u32>,
    /// Seconds until one more pre-key fetch is allowed (default 600).
    #[arg(long, env = "HUSH_PREKEY_FETCH_REFILL_SECS", global = true)]
    pub prekey_fetch_refill_secs: Option<u64>,
    /// Age in seconds past which the node asks a device to rotate its signed pre-key and
    /// last-resort key (default 604800, 7 days).
    #[arg(long, env = "HUSH_PREKEY_ROTATION_AGE_SECS", global = true)]
    pub prekey_rotation_age_secs: Option<u64>,
    /// A group sender is asked to rotate its sender key once it is this old, in seconds
    /// (default 7 days).
    #[arg(long, env = "HUSH_GROUP_SENDER_KEY_MAX_AGE_SECS", global = true)]
    pub group_sender_key_max_age_secs: Option<u64>,
    /// A group sender is asked to rotate its sender key after this many messages (default 1,000).
    #[arg(long, env = "HUSH_GROUP_SENDER_KEY_MAX_MESSAGES", global = true)]
    pub group_sender_key_max_messages: Option<u64>,
    /// TLS certificate chain (PEM, leaf first): the node serves HTTPS and WSS. Needs
    /// `--tls-key`. Read again on SIGHUP.
    #[arg(long, env = "HUSH_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the TLS certificate (PEM: PKCS#8, PKCS#1 or SEC1). Read again on SIGHUP.
    #[arg(long, env = "HUSH_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy:
    /// tokens and passwords travel in clear otherwise).
    #[arg(long, env = "HUSH_INSECURE_HTTP", global = true)]
    pub insecure_http: bool,
    /// Undelivered envelopes are deleted this many seconds after the node accepted them
    /// (default 2592000, 30 days, as Signal-Server); never delivered after it.
    #[arg(long, env = "HUSH_ENVELOPE_RETENTION_SECS", global = true)]
    pub envelope_retention_secs: Option<u64>,
    /// Undelivered envelopes one device's queue holds at most (default 10000); a send that
    /// would exceed it is refused with `queue_full` and nothing of it is stored.
    #[arg(long, env = "HUSH_MAX_QUEUE_PER_DEVICE", global = true)]
    pub max_queue_per_device: Option<u64>,
    /// Failed logins of one account that cost nothing; each further one doubles the wait before
    /// the next attempt, from 1 s (default 5).
    #[arg(long, env = "HUSH_LOGIN_FREE_FAILURES", global = true)]
    pub login_free_failures: Option<u32>,
    /// Consecutive failed logins that lock an account (default 20, at most 100).
    #[arg(long, env = "HUSH_LOGIN_LOCK_FAILURES", global = true)]
    pub login_lock_failures: Option<u32>,
    /// Seconds the first lock lasts; each failure after it doubles the lock, up to a day, and
    /// 100 consecutive failures lock until an administrator unlocks (default 900).
    #[arg(long, env = "HUSH_LOGIN_LOCK_SECS", global = true)]
    pub login_lock_secs: Option<u64>,
    /// Seconds a request body may take to arrive after its head (default 30); a late body is
    /// answered 408 and its connection closes.
    #[arg(long, env = "HUSH_REQUEST_BODY_TIMEOUT_SECS", global = true)]
    pub request_body_timeout_secs: Option<u64>,
    /// Bytes per second a request body must average after a 5 s grace period (default 240;
    /// 0 turns the check off).
    #[arg(long, env = "HUSH_REQUEST_BODY_MIN_RATE", global = true)]
    pub request_body_min_rate: Option<u64>,
    /// Connections of one client address (IPv6: one /64) that may have a request not yet
    /// complete (default 256; 0 turns the bound off, e.g. behind a proxy).
    #[arg(long, env = "HUSH_MAX_INCOMPLETE_PER_ADDRESS", global = true)]
    pub max_incomplete_per_address: Option<usize>,
    /// WebSocket connections open at once, authenticated or not (default 100,000); more
    /// upgrades are refused with 503.
    #[arg(long, env = "HUSH_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Which code runs WebSockets after the upgrade (default tungstenite; actix is the fallback).
    #[arg(long, env = "HUSH_WS_ENGINE", global = true, value_enum)]
    pub ws_engine: Option<WsEngine>,
    /// Test builds only (feature `fault-injection`): serve `POST /v1/test/faults`.
    #[cfg(feature = "fault-injection")]
    #[arg(long, global = true, hide = true)]
    pub fault_injection: bool,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the node (the default).
    Serve,
    /// Create a tenant and its first administrator, print one-time credentials, and exit.
    /// Run it while the node is stopped (the embedded store is single-process).
    Init {
        /// Tenant name.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Administrator user name.
        #[arg(long, default_value = "admin")]
        admin: String,
    },
    /// Check, salvage or back up the embedded store, on the node's host.
    Store {
        /// What to do.
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Maintenance on this node's store, run on its host.
    Admin {
        /// What to do.
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// `hushd store ...`: the embedded store file (`hush.redb` in the data folder).
#[derive(Subcommand, Debug, Clone)]
pub enum StoreCommand {
    /// Verify every page of a store file against its checksum, without writing to it; prints
    /// records per table and every damaged page, exits 1 if anything is damaged. Refuses a
    /// file a running node holds.
    Check {
        /// Store file (default: `hush.redb` in the data folder).
        file: Option<PathBuf>,
    },
    /// Copy every readable record of a (damaged) store file into a new store `DIR/hush.redb`,
    /// reporting per table what was lost. The file is only read. Refuses a file a running node
    /// holds.
    Salvage {
        /// Store file (default: `hush.redb` in the data folder).
        file: Option<PathBuf>,
        /// New folder for the salvaged store (must not exist, or be empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Write a consistent copy of the data folder's store to a new file: asked of the node
    /// serving the folder (it keeps serving), else read from the file directly.
    Backup {
        /// The backup file (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
}

/// `hushd admin ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Give a user a new one-time password (printed once; a new one must be set at the next
    /// login), revoke its sessions and clear its login lock: the way back in for a locked-out
    /// administrator. Against the data folder, stop the node first (the embedded store belongs
    /// to one process); against MongoDB (`--mongodb-url`) the nodes may run.
    ResetPassword {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// User name.
        #[arg(long)]
        user: String,
    },
}

/// The same settings as a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Cli::listen`].
    pub listen: Option<SocketAddr>,
    /// See [`Cli::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Cli::redis_url`].
    pub redis_url: Option<String>,
    /// See [`Cli::mongodb_url`].
    pub mongodb_url: Option<String>,
    /// See [`Cli::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`Cli::workers`].
    pub workers: Option<usize>,
    /// See [`Cli::prekey_low_threshold`].
    pub prekey_low_threshold: Option<u32>,
    /// See [`Cli::prekey_fetch_bucket`].
    pub prekey_fetch_bucket: Option<u32>,
    /// See [`Cli::prekey_fetch_refill_secs`].
    pub prekey_fetch_refill_secs: Option<u64>,
    /// See [`Cli::prekey_rotation_age_secs`].
    pub prekey_rotation_age_secs: Option<u64>,
    /// See [`Cli::group_sender_key_max_age_secs`].
    pub group_sender_key_max_age_secs: Option<u64>,
    /// See [`Cli::group_sender_key_max_messages`].
    pub group_sender_key_max_messages: Option<u64>,
    /// See [`Cli::node_id`].
    pub node_id: Option<String>,
    /// See [`Cli::mongodb_database`].
    pub mongodb_database: Option<String>,
    /// See [`Cli::mfa_key_file`].
    pub mfa_key_file: Option<PathBuf>,
    /// See [`Cli::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Cli::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`Cli::insecure_http`].
    pub insecure_http: Option<bool>,
    /// See [`Cli::envelope_retention_secs`].
    pub envelope_retention_secs: Option<u64>,
    /// See [`Cli::max_queue_per_device`].
    pub max_queue_per_device: Option<u64>,
    /// See [`Cli::login_free_failures`].
    pub login_free_failures: Option<u32>,
    /// See [`Cli::login_lock_failures`].
    pub login_lock_failures: Option<u32>,
    /// See [`Cli::login_lock_secs`].
    pub login_lock_secs: Option<u64>,
    /// See [`Cli::request_body_timeout_secs`].
    pub request_body_timeout_secs: Option<u64>,
    /// See [`Cli::request_body_min_rate`].
    pub request_body_min_rate: Option<u64>,
    /// See [`Cli::max_incomplete_per_address`].
    pub max_incomplete_per_address: Option<usize>,
    /// See [`Cli::max_connections`].
    pub max_connections: Option<usize>,
    /// See [`Cli::ws_engine`].
    pub ws_engine: Option<WsEngine>,
}

/// The certificate and key files of the TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Redis URL, if clustered.
    pub redis_url: Option<String>,
    /// MongoDB URL, if clustered.
    pub mongodb_url: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// HTTP workers.
    pub workers: usize,
    /// The pre-key policy.
    pub keys: KeyPolicy,
    /// When group senders are asked to rotate their sender keys.
    pub group_policy: hush_actors::groups::GroupPolicy,
    /// Node id in the cluster.
    pub node_id: String,
    /// MongoDB database name.
    pub mongodb_database: String,
    /// The MFA key file, if configured.
    pub mfa_key_file: Option<PathBuf>,
    /// The TLS listener's files; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Plain HTTP allowed on a non-loopback address.
    pub insecure_http: bool,
    /// Envelope retention and the per-device queue bound.
    pub queue_policy: hush_store::QueuePolicy,
    /// Login throttling.
    pub throttle: hush_actors::throttle::ThrottlePolicy,
    /// Request-body timeouts and the bound on unfinished requests per client address.
    pub edge: crate::edge::EdgeLimits,
    /// Serve `POST /v1/test/faults` (only ever true in a build with `fault-injection`).
    pub fault_injection: bool,
    /// Which code runs WebSockets after the upgrade.
    pub ws_engine: WsEngine,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./hush-data"),
            redis_url: None,
            mongodb_url: None,
            log_format: LogFormat::Text,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            keys: KeyPolicy::default(),
            group_policy: hush_actors::groups::GroupPolicy::default(),
            node_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            mongodb_database: "hush".into(),
            mfa_key_file: None,
            tls: None,
            insecure_http: false,
            queue_policy: hush_store::QueuePolicy::default(),
            throttle: hush_actors::throttle::ThrottlePolicy::default(),
            edge: crate::edge::EdgeLimits::default(),
            fault_injection: false,
            ws_engine: WsEngine::default(),
        }
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
}

impl Config {
    /// Merges defaults, the file named by the command line (if any), and the command line
    /// (which clap has already merged with the environment, flags winning).
    pub fn resolve(cli: &Cli) -> anyhow::Result<Self> {
        let file = match &cli.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let d = Config::default();
        let workers = cli.workers.or(file.workers).unwrap_or(d.workers);
        if workers == 0 {
            anyhow::bail!("workers must be at least 1");
        }
        let keys = resolve_keys(cli, &file, &d.keys)?;
        let group_policy = resolve_group_policy(cli, &file, &d.group_policy)?;
        let tls = resolve_tls(cli, &file)?;
        let queue_policy = resolve_queue_policy(cli, &file, &d.queue_policy)?;
        let t = d.throttle.account;
        let throttle = hush_actors::throttle::ThrottlePolicy::with_account(
            cli.login_free_failures.or(file.login_free_failures).unwrap_or(t.free),
            cli.login_lock_failures.or(file.login_lock_failures).unwrap_or(t.lock_after),
            cli.login_lock_secs.or(file.login_lock_secs).map(Duration::from_secs).unwrap_or(t.lock),
        )
        .map_err(|e| anyhow::anyhow!("login throttling: {e}"))?;
        let edge = resolve_edge(cli, &file, &d.edge)?;
        #[cfg(feature = "fault-injection")]
        let fault_injection = cli.fault_injection;
        #[cfg(not(feature = "fault-injection"))]
        let fault_injection = false;
        Ok(Config {
            fault_injection,
            ws_engine: cli.ws_engine.or(file.ws_engine).unwrap_or(d.ws_engine),
            edge,
            tls,
            insecure_http: cli.insecure_http || file.insecure_http.unwrap_or(false),
            queue_policy,
            throttle,
            group_policy,
            listen: cli.listen.or(file.listen).unwrap_or(d.listen),
            data_dir: cli.data_dir.clone().or(file.data_dir).unwrap_or(d.data_dir),
            redis_url: cli.redis_url.clone().or(file.redis_url),
            mongodb_url: cli.mongodb_url.clone().or(file.mongodb_url),
            log_format: cli.log_format.or(file.log_format).unwrap_or(d.log_format),
            workers,
            keys,
            node_id: cli.node_id.clone().or(file.node_id).unwrap_or(d.node_id),
            mongodb_database: cli
                .mongodb_database
                .clone()
                .or(file.mongodb_database)
                .unwrap_or(d.mongodb_database),
            mfa_key_file: cli.mfa_key_file.clone().or(file.mfa_key_file),
        })
    }
}

/// The pre-key policy of [`Config::resolve`].
fn resolve_keys(cli: &Cli, file: &FileConfig, d: &KeyPolicy) -> anyhow::Result<KeyPolicy> {
    let keys = KeyPolicy {
        low_threshold: cli.prekey_low_threshold.or(file.prekey_low_threshold).unwrap_or(d.low_threshold),
        fetch_bucket: cli.prekey_fetch_bucket.or(file.prekey_fetch_bucket).unwrap_or(d.fetch_bucket),
        fetch_refill: cli
            .prekey_fetch_refill_secs
            .or(file.prekey_fetch_refill_secs)
            .map(Duration::from_secs)
            .unwrap_or(d.fetch_refill),
        rotation_age: cli
            .prekey_rotation_age_secs
            .or(file.prekey_rotation_age_secs)
            .map(Duration::from_secs)
            .unwrap_or(d.rotation_age),
    };
    if keys.fetch_bucket == 0 || keys.fetch_refill.is_zero() {
        anyhow::bail!("prekey_fetch_bucket and prekey_fetch_refill_secs must be at least 1");
    }
    Ok(keys)
}

/// The group sender-key policy of [`Config::resolve`].
fn resolve_group_policy(
    cli: &Cli,
    file: &FileConfig,
    gp: &hush_actors::groups::GroupPolicy,
) -> anyhow::Result<hush_actors::groups::GroupPolicy> {
    let max_age = cli
        .group_sender_key_max_age_secs
        .or(file.group_sender_key_max_age_secs)
        .map(std::time::Duration::from_secs)
        .unwrap_or(gp.sender_key_max_age);
    let max_messages = cli
        .group_sender_key_max_messages
        .or(file.group_sender_key_max_messages)
        .unwrap_or(gp.sender_key_max_messages);
    if max_age.is_zero() || max_messages == 0 {
        anyhow::bail!("group sender-key limits must be at least 1");
    }
    Ok(hush_actors::groups::GroupPolicy {
        sender_key_max_age: max_age,
        sender_key_max_messages: max_messages,
    })
}

/// The TLS files of [`Config::resolve`]: both or neither.
fn resolve_tls(cli: &Cli, file: &FileConfig) -> anyhow::Result<Option<TlsFiles>> {
    match (cli.tls_cert.clone().or(file.tls_cert.clone()), cli.tls_key.clone().or(file.tls_key.clone())) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key (HUSH_TLS_KEY) too"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert (HUSH_TLS_CERT) too"),
    }
}

/// The queue policy of [`Config::resolve`].
fn resolve_queue_policy(
    cli: &Cli,
    file: &FileConfig,
    dq: &hush_store::QueuePolicy,
) -> anyhow::Result<hush_store::QueuePolicy> {
    let queue_policy = hush_store::QueuePolicy {
        retention: cli
            .envelope_retention_secs
            .or(file.envelope_retention_secs)
            .map(Duration::from_secs)
            .unwrap_or(dq.retention),
        max_per_device: cli.max_queue_per_device.or(file.max_queue_per_device).unwrap_or(dq.max_per_device),
    };
    if queue_policy.retention.is_zero() || queue_policy.max_per_device == 0 {
        anyhow::bail!("envelope_retention_secs and max_queue_per_device must be at least 1");
    }
    Ok(queue_policy)
}

/// The request-body limits of [`Config::resolve`].
fn resolve_edge(
    cli: &Cli,
    file: &FileConfig,
    de: &crate::edge::EdgeLimits,
) -> anyhow::Result<crate::edge::EdgeLimits> {
    let edge = crate::edge::EdgeLimits {
        body_timeout: cli
            .request_body_timeout_secs
            .or(file.request_body_timeout_secs)
            .map(Duration::from_secs)
            .unwrap_or(de.body_timeout),
        body_min_rate: cli.request_body_min_rate.or(file.request_body_min_rate).unwrap_or(de.body_min_rate),
        max_incomplete_per_address: cli
            .max_incomplete_per_address
            .or(file.max_incomplete_per_address)
            .unwrap_or(de.max_incomplete_per_address),
        max_connections: cli.max_connections.or(file.max_connections).unwrap_or(de.max_connections),
    };
    if edge.max_connections == 0 {
        anyhow::bail!("max_connections must be at least 1");
    }
    if edge.body_timeout.is_zero() {
        anyhow::bail!("request_body_timeout_secs must be at least 1");
    }
    Ok(edge)
}

impl Config {
    /// Refuses plain HTTP on an address other machines can reach, unless the operator said
    /// `--insecure-http` (a TLS-terminating proxy in front): tokens and passwords would travel
    /// in clear.
    pub fn check_listener(&self) -> anyhow::Result<()> {
        if self.tls.is_none() && !self.insecure_http && !self.listen.ip().is_loopback() {
            anyhow::bail!(
                "refusing to serve plain HTTP on {}: passwords and tokens would travel in clear; \
                 give --tls-cert and --tls-key (HUSH_TLS_CERT/HUSH_TLS_KEY), or --insecure-http \
                 if a TLS-terminating proxy is in front",
                self.listen
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("hush-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hush.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/x\"\nworkers = 3\n").unwrap();
        let cli =
            Cli::parse_from(["hushd", "--config", file.to_str().unwrap(), "--listen", "127.0.0.1:9100"]);
        let c = Config::resolve(&cli).unwrap();
        assert_eq!(c.listen.port(), 9100, "flag wins over file");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"), "file wins over default");
        assert_eq!(c.workers, 3);
        assert_eq!(c.keys.fetch_bucket, 6, "default");
        std::fs::write(&file, "prekey_fetch_bucket = 50\nprekey_rotation_age_secs = 5\n").unwrap();
        let cli =
            Cli::parse_from(["hushd", "--config", file.to_str().unwrap(), "--prekey-fetch-bucket", "7"]);
        let c = Config::resolve(&cli).unwrap();
        assert_eq!(c.keys.fetch_bucket, 7, "flag wins over file");
        assert_eq!(c.keys.rotation_age, Duration::from_secs(5));
        assert_eq!(c.keys.low_threshold, 10);
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        assert!(Config::resolve(&cli).is_err(), "unknown keys are refused");
    }

    #[test]
    fn tls_files_come_in_pairs_and_plain_http_stays_on_loopback() {
        let c = Config::resolve(&Cli::parse_from(["hushd", "--tls-cert", "c.pem", "--tls-key", "k.pem"]))
            .unwrap();
        assert_eq!(c.tls, Some(TlsFiles { cert: "c.pem".into(), key: "k.pem".into() }));
        assert!(Config::resolve(&Cli::parse_from(["hushd", "--tls-cert", "c.pem"])).is_err());
        assert!(Config::resolve(&Cli::parse_from(["hushd", "--tls-key", "k.pem"])).is_err());
        let plain = |args: &[&str]| {
            let mut a = vec!["hushd"];
            a.extend_from_slice(args);
            Config::resolve(&Cli::parse_from(a)).unwrap().check_listener()
        };
        assert!(plain(&["--listen", "127.0.0.1:0"]).is_ok());
        assert!(plain(&["--listen", "[::1]:0"]).is_ok());
        let e = plain(&["--listen", "0.0.0.0:0"]).unwrap_err().to_string();
        assert!(e.contains("--tls-cert") && e.contains("--insecure-http"), "{e}");
        assert!(plain(&["--listen", "0.0.0.0:0", "--insecure-http"]).is_ok());
        assert!(plain(&["--listen", "0.0.0.0:0", "--tls-cert", "c", "--tls-key", "k"]).is_ok());
        // The same from the TOML file.
        let dir = std::env::temp_dir().join(format!("hush-cfg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hush.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\ntls_cert = \"/etc/c.pem\"\ntls_key = \"/etc/k.pem\"\n",
        )
        .unwrap();
        let c = Config::resolve(&Cli::parse_from(["hushd", "--config", file.to_str().unwrap()])).unwrap();
        assert_eq!(c.tls, Some(TlsFiles { cert: "/etc/c.pem".into(), key: "/etc/k.pem".into() }));
        assert!(c.check_listener().is_ok());
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\ninsecure_http = true\n").unwrap();
        let c = Config::resolve(&Cli::parse_from(["hushd", "--config", file.to_str().unwrap()])).unwrap();
        assert!(c.insecure_http && c.check_listener().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
