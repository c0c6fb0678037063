//! `hush-load`: an open-loop load generator for `hushd`.
//!
//! N authenticated WebSocket clients (one user with one device each), M messages per second in
//! total, K-byte payloads from a random connection to a random other user. Messages are
//! scheduled at fixed times whatever the node answers (open loop), and every latency is measured
//! from the *scheduled* send time, so a stall in the node (or in this generator) shows up in the
//! percentiles instead of silently lowering the offered rate (no coordinated omission).
//!
//! Setup: users `{prefix}-{i}` are created through the admin API if absent, logged in with
//! bounded concurrency (Argon2id makes each login cost tens of milliseconds) and their tokens are
//! cached in a file under /tmp, so reruns against the same node skip the logins. Then every
//! connection is opened and drained (queued leftovers are acknowledged) until `QueueEmpty`.
//!
//! The first 8 bytes of each payload carry the scheduled send time (nanoseconds since this
//! process's epoch), the message id carries it too, so the receiver computes delivery latency and
//! the sender computes `Accepted` latency without any shared map.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hush_client::{Client, ClientError, Session};
use hush_protocol::api::{DeviceRequest, LoginResponse, Secret};
use hush_protocol::ids::{DeviceId, RegistrationId, TenantId, UserId};
use hush_protocol::wire::{
    ClientFrame, DeviceMessage, Payload, SendMessage, ServerFrame, SUBPROTOCOL_JSON, SUBPROTOCOL_POSTCARD,
};
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Password of every load user.
const USER_PASSWORD: &str = "hush-load-password";
/// Largest latency the histograms hold, microseconds (2 minutes).
const MAX_LATENCY_US: u64 = 120_000_000;
/// Frames a writer coalesces before flushing the socket.
const WRITE_BATCH: usize = 64;
/// A delivery receipt's content: its send time (8 bytes), then this marker, then zeros.
const RECEIPT_MARK: &[u8; 4] = b"RCPT";
/// Bytes of a receipt's content (messages must be longer with `--receipts`).
const RECEIPT_BYTES: usize = 16;
/// Set in the second half of a receipt's message id (the first half is its send time).
const RECEIPT_ID_TAG: u64 = 1 << 63;

/// The two frame encodings a node speaks (WebSocket subprotocols `hush.postcard`, `hush.json`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Postcard,
    Json,
}

impl Encoding {
    fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Postcard => SUBPROTOCOL_POSTCARD,
            Encoding::Json => SUBPROTOCOL_JSON,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Postcard => "postcard",
            Encoding::Json => "json",
        }
    }

    /// One client frame as a WebSocket message of this encoding.
    fn encode(self, f: &ClientFrame) -> Option<Message> {
        match self {
            Encoding::Postcard => f.encode_binary().ok().map(|b| Message::Binary(b.into())),
            Encoding::Json => f.encode_text().ok().map(|t| Message::Text(t.into())),
        }
    }
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "hush-load",
    about = "Open-loop load generator for hushd: N connections, M msg/s, K-byte payloads"
)]
struct Args {
    /// Base URL of the node (users are created and logged in here).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Password of the tenant administrator (needed only to create missing users).
    #[arg(long, env = "HUSH_ADMIN_PASSWORD")]
    admin_password: Option<String>,
    /// Administrator user name.
    #[arg(long, default_value = "admin")]
    admin_user: String,
    /// Tenant of the load users.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Number of WebSocket connections (one user, one device each).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Offered load in messages per second, all connections together; 0 keeps the connections
    /// idle (for memory measurements).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// A sweep: these rates one after another on the same connections (instead of `--rate`),
    /// each with its own warm-up, window and grace, then one table. Give them in rising order.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// The sweep stops after the first rate whose delivery p99 is above this (ms): a saturated
    /// node leaves a backlog that would only spoil the higher rates.
    #[arg(long, default_value_t = 1000.0)]
    sweep_stop_ms: f64,
    /// Frame encoding on the sockets: `postcard` (binary frames) or `json` (text frames).
    #[arg(long, value_enum, default_value_t = Encoding::Postcard)]
    encoding: Encoding,
    /// Payload bytes per message (at least 8: the first 8 carry the send time).
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Seconds of load before the measured window.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds to wait after the last scheduled send for outstanding answers and deliveries.
    #[arg(long, default_value_t = 10)]
    grace: u64,
    /// Users are named `{prefix}-{i}`.
    #[arg(long, default_value = "load")]
    user_prefix: String,
    /// PID of the hushd process, to report its RSS per connection (from /proc/PID/status).
    #[arg(long)]
    hushd_pid: Option<u32>,
    /// Node the sending half of the users connects to (cross-node runs).
    #[arg(long)]
    senders_server: Option<String>,
    /// Node the receiving half of the users connects to (cross-node runs).
    #[arg(long)]
    receivers_server: Option<String>,
    /// Logins (and user creations) in flight at once.
    #[arg(long, default_value_t = 8)]
    login_concurrency: usize,
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Runtime worker threads of the generator (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Token cache file (default: /tmp/hush-load-<server>-<prefix>.json).
    #[arg(long)]
    token_cache: Option<PathBuf>,
    /// Also print the summary as one JSON line (prefixed `RESULT `).
    #[arg(long)]
    json: bool,
    /// Answer every delivered message with a delivery receipt: a 16-byte `Send` back to its
    /// sender (so two sends per message), measured on its own.
    #[arg(long)]
    receipts: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.payload < 8 {
        bail!("--payload must be at least 8 bytes");
    }
    if args.receipts && args.payload <= RECEIPT_BYTES {
        bail!("--payload must be more than {RECEIPT_BYTES} bytes with --receipts");
    }
    if args.connections < 2 {
        bail!("--connections must be at least 2");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a non-negative number");
    }
    if args.rates.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
        bail!("--rates must be positive numbers");
    }
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    rt.block_on(run(args))
}

// ---------------------------------------------------------------------------------------------
// Statistics

fn new_hist() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| anyhow!("histogram: {e}"))
}

struct Stats {
    epoch: Instant,
    /// Measured window, nanoseconds since `epoch` (set when the load starts).
    window_start: AtomicU64,
    window_end: AtomicU64,
    /// True once the load phase began (earlier deliveries are leftovers from the queue).
    loading: AtomicBool,
    sent: AtomicU64,
    accepted: AtomicU64,
    /// Receipts handed to the writers, and receipts delivered back to the senders.
    receipts_sent: AtomicU64,
    receipts_delivered: AtomicU64,
    delivered: AtomicU64,
    delivered_in_window: AtomicU64,
    leftovers: AtomicU64,
    refused: AtomicU64,
    disconnects: AtomicU64,
    send_errors: AtomicU64,
    /// Delivery latency of messages scheduled in the window.
    delivery: Mutex<Histogram<u64>>,
    /// Delivery latency of receipts sent in the window (receipt sent -> delivered to the
    /// message's sender).
    receipt: Mutex<Histogram<u64>>,
    /// `Send` -> `Accepted` latency of messages scheduled in the window.
    accept: Mutex<Histogram<u64>>,
    /// Lag of the generator itself: scheduled time -> frame handed to the socket.
    lag: Mutex<Histogram<u64>>,
    /// Delivery latency over the last progress interval.
    interval: Mutex<Histogram<u64>>,
}

impl Stats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            epoch: Instant::now(),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            loading: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            receipts_sent: AtomicU64::new(0),
            receipts_delivered: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            delivered_in_window: AtomicU64::new(0),
            leftovers: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            delivery: Mutex::new(new_hist()?),
            receipt: Mutex::new(new_hist()?),
            accept: Mutex::new(new_hist()?),
            lag: Mutex::new(new_hist()?),
            interval: Mutex::new(new_hist()?),
        })
    }

    /// Zeroes every counter and histogram before the next rate of a sweep.
    fn reset(&self) {
        for c in [
            &self.sent,
            &self.accepted,
            &self.receipts_sent,
            &self.receipts_delivered,
            &self.delivered,
            &self.delivered_in_window,
            &self.refused,
            &self.disconnects,
            &self.send_errors,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        for h in [&self.delivery, &self.receipt, &self.accept, &self.lag, &self.interval] {
            if let Ok(mut h) = h.lock() {
                h.reset();
            }
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn in_window(&self, t_ns: u64) -> bool {
        t_ns >= self.window_start.load(Ordering::Relaxed) && t_ns < self.window_end.load(Ordering::Relaxed)
    }
}

fn record(h: &Mutex<Histogram<u64>>, ns: u64) {
    let us = (ns / 1_000).clamp(1, MAX_LATENCY_US);
    if let Ok(mut h) = h.lock() {
        let _ = h.record(us);
    }
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.value_at_quantile(q) as f64 / 1_000.0
}

fn snapshot(h: &Mutex<Histogram<u64>>) -> Option<Histogram<u64>> {
    h.lock().ok().map(|h| h.clone())
}

// ---------------------------------------------------------------------------------------------
// Users, logins and the token cache

struct User {
    name: UserId,
    registration_id: RegistrationId,
}

fn registration_id(i: usize) -> anyhow::Result<RegistrationId> {
    let v = u32::try_from(i % 16_383 + 1)?;
    Ok(RegistrationId::new(v)?)
}

fn cache_path(args: &Args) -> PathBuf {
    if let Some(p) = &args.token_cache {
        return p.clone();
    }
    let clean: String = format!("{}-{}-{}", args.server, args.tenant, args.user_prefix)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from(format!("/tmp/hush-load-{clean}.json"))
}

fn load_cache(path: &PathBuf) -> HashMap<String, String> {
    std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
}

fn save_cache(path: &PathBuf, tokens: &HashMap<String, String>) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(serde_json::to_string(tokens)?.as_bytes())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn resume(client: &Client, tenant: &TenantId, user: &UserId, token: &str) -> anyhow::Result<Session> {
    Ok(client.resume(LoginResponse {
        token: Secret::new(token),
        session_id: String::new(),
        tenant: tenant.clone(),
        user: user.clone(),
        device: DeviceId::PRIMARY,
        admin: false,
        // Unused by the SDK after login.
        registration_id: RegistrationId::new(1)?,
        mfa: None,
        password_change_required: false,
    }))
}

/// Logs in as device 1, registering it first when `fresh` (or when device 1 does not exist).
async fn login(
    client: &Client,
    tenant: &TenantId,
    user: &User,
    password: &Secret,
    fresh: bool,
) -> anyhow::Result<Session> {
    let req = |id: Option<DeviceId>| -> anyhow::Result<DeviceRequest> {
        Ok(match id {
            // A new device registers keys (thrown away: hush-load relays bytes), so senders see it.
            None => DeviceRequest {
                registration_id: user.registration_id,
                ..hush_client::relay_only_device(Some("hush-load".into()))?
            },
            Some(_) => DeviceRequest {
                id,
                registration_id: user.registration_id,
                name: Some("hush-load".into()),
                identity_key: None,
                keys: None,
            },
        })
    };
    if !fresh {
        match client.login(tenant, &user.name, password, req(Some(DeviceId::PRIMARY))?).await {
            Ok(s) => return Ok(s),
            Err(ClientError::Http { status, .. }) if status != 401 && status != 429 => {}
            Err(e) => return Err(anyhow!("login of {}: {e}", user.name)),
        }
    }
    let s = client
        .login(tenant, &user.name, password, req(None)?)
        .await
        .map_err(|e| anyhow!("login of {}: {e}", user.name))?;
    if s.device() != DeviceId::PRIMARY {
        bail!(
            "{} got device {} instead of 1: the load users must have exactly one device",
            s.user(),
            s.device()
        );
    }
    Ok(s)
}

/// Makes sure every user exists and has a token; returns the tokens by user index.
async fn prepare_users(args: &Args, users: &[User]) -> anyhow::Result<Vec<String>> {
    let client = Client::new(args.server.clone());
    let tenant = TenantId::new(args.tenant.clone())?;
    let path = cache_path(args);
    let mut cache = load_cache(&path);
    // Tokens die with the node's data folder: check one before trusting the file.
    if let Some((name, token)) = cache.iter().find(|(k, _)| !k.starts_with('@')) {
        let user = UserId::new(name.clone())?;
        if resume(&client, &tenant, &user, token)?.devices(None).await.is_err() {
            println!("token cache {} is stale, logging in again", path.display());
            cache.clear();
        }
    }
    let missing: Vec<usize> =
        (0..users.len()).filter(|&i| !cache.contains_key(users[i].name.as_str())).collect();
    if missing.is_empty() {
        println!("all {} tokens from {}", users.len(), path.display());
    } else {
        let t0 = Instant::now();
        let admin_pw = args.admin_password.clone().ok_or_else(|| {
            anyhow!(
                "{} users need creating or logging in: pass --admin-password or HUSH_ADMIN_PASSWORD",
                missing.len()
            )
        })?;
        let admin = admin_session(&client, &tenant, args, &admin_pw, &mut cache).await?;
        println!("creating/logging in {} users ({} at a time)...", missing.len(), args.login_concurrency);
        let sem = Arc::new(Semaphore::new(args.login_concurrency.max(1)));
        let password = Secret::new(USER_PASSWORD);
        let mut tasks = Vec::new();
        for &i in &missing {
            let permit = sem.clone().acquire_owned().await?;
            let admin = admin.clone();
            let client = client.clone();
            let tenant = tenant.clone();
            let password = password.clone();
            let name = users[i].name.clone();
            let reg = users[i].registration_id;
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let fresh = match admin.create_user(&name, &password, false).await {
                    Ok(_) => true,
                    Err(ClientError::Http { status: 409, .. }) => false,
                    Err(e) => return Err(anyhow!("create {name}: {e}")),
                };
                let user = User { name, registration_id: reg };
                let s = login(&client, &tenant, &user, &password, fresh).await?;
                Ok::<_, anyhow::Error>((i, s.login_info().token.expose().to_owned()))
            }));
        }
        let mut done = 0usize;
        for t in tasks {
            let (i, token) = t.await??;
            cache.insert(users[i].name.as_str().to_owned(), token);
            done += 1;
            if done % 500 == 0 {
                println!("  {done}/{} users ready", missing.len());
                save_cache(&path, &cache)?;
            }
        }
        save_cache(&path, &cache)?;
        println!(
            "users ready in {:.1} s ({:.1} ms per user)",
            t0.elapsed().as_secs_f64(),
            t0.elapsed().as_secs_f64() * 1e3 / missing.len() as f64
        );
    }
    users
        .iter()
        .map(|u| cache.get(u.name.as_str()).cloned().ok_or_else(|| anyhow!("no token for {}", u.name)))
        .collect()
}

async fn admin_session(
    client: &Client,
    tenant: &TenantId,
    args: &Args,
    password: &str,
    cache: &mut HashMap<String, String>,
) -> anyhow::Result<Session> {
    let name = UserId::new(args.admin_user.clone())?;
    if let Some(t) = cache.get("@admin") {
        let s = resume(client, tenant, &name, t)?;
        if s.devices(None).await.is_ok() {
            return Ok(s);
        }
    }
    let user = User { name, registration_id: registration_id(0)? };
    let s = login(client, tenant, &user, &Secret::new(password), false).await?;
    cache.insert("@admin".into(), s.login_info().token.expose().to_owned());
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Connections

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn ws_connect(base: &str, token: &str, encoding: Encoding) -> anyhow::Result<Ws> {
    let url = format!("{}/v1/ws", base.trim_end_matches('/').replacen("http", "ws", 1));
    let mut req = url.into_client_request()?;
    let h = req.headers_mut();
    h.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
    h.insert("sec-websocket-protocol", HeaderValue::from_static(encoding.subprotocol()));
    // Small buffers: 10,000 connections with tungstenite's 128 KiB default would cost the
    // generator 1.3 GB.
    let cfg = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), true).await?;
    Ok(ws)
}

enum Cmd {
    Send {
        sched_ns: u64,
        seq: u64,
        to: u32,
    },
    /// A delivery receipt to user `to`, sent at `sent_ns`.
    Receipt {
        sent_ns: u64,
        seq: u64,
        to: u32,
    },
    Ack(u64),
}

struct Shared {
    stats: Stats,
    users: Vec<User>,
    payload: usize,
    /// Each user's index (receipts go back to a message's sender); empty without `--receipts`.
    index: HashMap<UserId, u32>,
    encoding: Encoding,
}

/// A 1:1 frame of `content` to user `u` (its primary device).
fn send_frame(u: &User, id: uuid::Uuid, content: Vec<u8>) -> ClientFrame {
    ClientFrame::Send(SendMessage {
        id,
        to: u.name.clone(),
        devices: vec![DeviceMessage {
            device: DeviceId::PRIMARY,
            registration_id: u.registration_id,
            content: Payload(content),
            content_type: hush_protocol::wire::ContentType::Ciphertext,
        }],
        sync: Vec::new(),
    })
}

/// Whether a delivered content is a receipt, and then its send time.
fn receipt_sent_ns(content: &[u8]) -> Option<u64> {
    if content.len() != RECEIPT_BYTES || content.get(8..12) != Some(RECEIPT_MARK.as_slice()) {
        return None;
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(content.get(..8)?);
    Some(u64::from_le_bytes(ts))
}

async fn writer(shared: Arc<Shared>, mut sink: SplitSink<Ws, Message>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let st = &shared.stats;
    let mut acks: Vec<u64> = Vec::new();
    let mut batch: Vec<Cmd> = Vec::with_capacity(WRITE_BATCH);
    'outer: while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        for c in batch.drain(..) {
            // A message carries its scheduled time, a receipt its send time and a marker.
            let (t_ns, id_low, to, receipt) = match c {
                Cmd::Ack(s) => {
                    acks.push(s);
                    continue;
                }
                Cmd::Send { sched_ns, seq, to } => (sched_ns, seq, to, false),
                Cmd::Receipt { sent_ns, seq, to } => (sent_ns, RECEIPT_ID_TAG | seq, to, true),
            };
            let Some(u) = shared.users.get(to as usize) else {
                continue;
            };
            let mut content = vec![0u8; if receipt { RECEIPT_BYTES } else { shared.payload }];
            content[..8].copy_from_slice(&t_ns.to_le_bytes());
            if receipt {
                content[8..12].copy_from_slice(RECEIPT_MARK);
            }
            let frame = send_frame(u, uuid::Uuid::from_u64_pair(t_ns, id_low), content);
            let Some(m) = shared.encoding.encode(&frame) else {
                st.send_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if sink.feed(m).await.is_err() {
                st.send_errors.fetch_add(1, Ordering::Relaxed);
                break 'outer;
            }
            st.sent.fetch_add(1, Ordering::Relaxed);
            if !receipt && st.in_window(t_ns) {
                record(&st.lag, st.now_ns().saturating_sub(t_ns));
            }
        }
        if !acks.is_empty() {
            let Some(m) = shared.encoding.encode(&ClientFrame::Ack { seqs: std::mem::take(&mut acks) })
            else {
                continue;
            };
            if sink.feed(m).await.is_err() {
                break;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Reads one connection's frames until `stop`; tells `ready` once the queue drain is over.
async fn reader(
    shared: Arc<Shared>,
    mut stream: SplitStream<Ws>,
    tx: mpsc::UnboundedSender<Cmd>,
    ready: mpsc::UnboundedSender<()>,
    mut stop: watch::Receiver<bool>,
) {
    let st = &shared.stats;
    let mut drained = false;
    let mut refusals_shown = 0u32;
    let mut receipts = 0u64;
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = stop.changed() => return,
        };
        let decoded = match msg {
            Some(Ok(Message::Binary(b))) => ServerFrame::decode_binary(&b),
            Some(Ok(Message::Text(t))) => ServerFrame::decode_text(&t),
            Some(Ok(Message::Close(c))) => {
                if !*stop.borrow() {
                    st.disconnects.fetch_add(1, Ordering::Relaxed);
                    eprintln!("connection closed by the node: {c:?}");
                }
                return;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                if !*stop.borrow() {
                    st.disconnects.fetch_add(1, Ordering::Relaxed);
                    eprintln!("connection error: {e}");
                }
                return;
            }
            None => {
                if !*stop.borrow() {
                    st.disconnects.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        };
        let frame = match decoded {
            Ok(f) => f,
            Err(e) => {
                st.refused.fetch_add(1, Ordering::Relaxed);
                eprintln!("undecodable frame: {e}");
                continue;
            }
        };
        match frame {
            ServerFrame::Deliver(env) => {
                let _ = tx.send(Cmd::Ack(env.seq));
                let now = st.now_ns();
                if !drained || !st.loading.load(Ordering::Relaxed) || env.content.0.len() < 8 {
                    st.leftovers.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if let Some(sent) = receipt_sent_ns(&env.content.0) {
                    st.receipts_delivered.fetch_add(1, Ordering::Relaxed);
                    if st.in_window(sent) {
                        record(&st.receipt, now.saturating_sub(sent));
                    }
                    continue;
                }
                if let Some(&to) = shared.index.get(&env.from) {
                    receipts += 1;
                    st.receipts_sent.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(Cmd::Receipt { sent_ns: now, seq: receipts, to });
                }
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&env.content.0[..8]);
                let sched = u64::from_le_bytes(ts);
                let lat = now.saturating_sub(sched);
                st.delivered.fetch_add(1, Ordering::Relaxed);
                if st.in_window(now) {
                    st.delivered_in_window.fetch_add(1, Ordering::Relaxed);
                }
                if st.in_window(sched) {
                    record(&st.delivery, lat);
                }
                record(&st.interval, lat);
            }
            ServerFrame::Accepted { id } => {
                st.accepted.fetch_add(1, Ordering::Relaxed);
                let (sched, _) = id.as_u64_pair();
                if st.in_window(sched) {
                    record(&st.accept, st.now_ns().saturating_sub(sched));
                }
            }
            ServerFrame::QueueEmpty => {
                if !drained {
                    drained = true;
                    let _ = ready.send(());
                }
            }
            ServerFrame::Ready { .. } => {}
            f @ (ServerFrame::Error { .. }
            | ServerFrame::MismatchedDevices { .. }
            | ServerFrame::StaleDevices { .. }
            | ServerFrame::StaleEpoch { .. }) => {
                st.refused.fetch_add(1, Ordering::Relaxed);
                if refusals_shown < 3 {
                    refusals_shown += 1;
                    eprintln!("refused: {f:?}");
                }
            }
            ServerFrame::LoggedOut { reason } => {
                eprintln!("logged out: {reason}");
            }
            // hush-load uploads no pre-keys and fetches none.
            ServerFrame::KeyCounts { .. }
            | ServerFrame::PreKeys { .. }
            | ServerFrame::PreKeysLow { .. }
            | ServerFrame::RotateKeys { .. } => {}
        }
    }
}

/// Sends the scheduled messages to the writers, at fixed times whatever the node does.
fn schedule(
    shared: &Shared,
    senders: &[mpsc::UnboundedSender<Cmd>],
    rate: f64,
    total: Duration,
    load_start: u64,
    split: bool,
    half: usize,
) -> u64 {
    let st = &shared.stats;
    let n = senders.len();
    if rate <= 0.0 {
        let end = load_start + u64::try_from(total.as_nanos()).unwrap_or(u64::MAX);
        while st.now_ns() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        return 0;
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    let period_ns = 1e9 / rate;
    let total_msgs = (total.as_secs_f64() * rate) as u64;
    let mut k = 0u64;
    while k < total_msgs {
        let elapsed = st.now_ns().saturating_sub(load_start);
        let due = ((elapsed as f64 / period_ns) as u64 + 1).min(total_msgs);
        while k < due {
            let sched_ns = load_start + (k as f64 * period_ns) as u64;
            let (from, to) = if split {
                (rng.gen_range(0..half), rng.gen_range(half..n))
            } else {
                let from = rng.gen_range(0..n);
                let mut to = rng.gen_range(0..n - 1);
                if to >= from {
                    to += 1;
                }
                (from, to)
            };
            if let Some(s) = senders.get(from) {
                let _ = s.send(Cmd::Send { sched_ns, seq: k, to: to as u32 });
            }
            k += 1;
        }
        let next = load_start + (k as f64 * period_ns) as u64;
        let wait = next.saturating_sub(st.now_ns()).max(100_000);
        std::thread::sleep(Duration::from_nanos(wait));
    }
    k
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> f64 {
    // USER_HZ is 100 on every Linux this runs on; no libc call needed.
    100.0
}

/// The kernel's TCP socket memory (`/proc/net/sockstat`, `TCP: ... mem N`, in pages) in KiB,
/// and the TCP sockets in use.
fn tcp_kernel_kib() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = s.lines().find(|l| l.starts_with("TCP:"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let field =
        |name: &str| f.iter().position(|w| *w == name).and_then(|i| f.get(i + 1)?.parse::<u64>().ok());
    // Pages of 4 KiB on every machine this runs on.
    Some((field("mem")? * 4, field("inuse")?))
}

/// Kernel slab memory of sockets (`/proc/slabinfo`, readable by root only): the caches a TCP
/// socket and its file take (`TCP`, `sock_inode_cache`, `eventpoll_epi`, `filp`), in KiB.
fn socket_slab_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let mut bytes = 0u64;
    for l in s.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if matches!(f.first(), Some(&("TCP" | "sock_inode_cache" | "eventpoll_epi" | "filp"))) {
            bytes += f.get(1)?.parse::<u64>().ok()? * f.get(3)?.parse::<u64>().ok()?;
        }
    }
    Some(bytes / 1024)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The run

async fn run(args: Args) -> anyhow::Result<()> {
    let n = args.connections;
    let users: Vec<User> = (0..n)
        .map(|i| {
            Ok(User {
                name: UserId::new(format!("{}-{i}", args.user_prefix))?,
                registration_id: registration_id(i)?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let split = args.senders_server.is_some() || args.receivers_server.is_some();
    let senders_url = args.senders_server.clone().unwrap_or(args.server.clone());
    let receivers_url = args.receivers_server.clone().unwrap_or(args.server.clone());
    let half = n / 2;

    let tokens = prepare_users(&args, &users).await?;
    let index = if args.receipts {
        users
            .iter()
            .enumerate()
            .map(|(i, u)| Ok((u.name.clone(), u32::try_from(i)?)))
            .collect::<anyhow::Result<_>>()?
    } else {
        HashMap::new()
    };
    let encoding = args.encoding;
    let shared = Arc::new(Shared { stats: Stats::new()?, users, payload: args.payload, index, encoding });

    let rss_before = args.hushd_pid.and_then(rss_kb);
    let kernel_before = tcp_kernel_kib();
    let slab_before = socket_slab_kib();
    println!(
        "connecting {n} clients ({} handshakes at a time){}...",
        args.connect_concurrency,
        if split {
            format!(": senders to {senders_url}, receivers to {receivers_url}")
        } else {
            String::new()
        }
    );
    let t_connect = Instant::now();
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut handshakes = Vec::with_capacity(n);
    for (i, token) in tokens.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let url = if split && i >= half { receivers_url.clone() } else { senders_url.clone() };
        handshakes.push(tokio::spawn(async move {
            let _permit = permit;
            let r = ws_connect(&url, &token, encoding).await;
            drop(token);
            r
        }));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut senders: Vec<mpsc::UnboundedSender<Cmd>> = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(2 * n);
    for (i, h) in handshakes.into_iter().enumerate() {
        let ws = h.await?.with_context(|| format!("connecting {}", shared.users[i].name))?;
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(writer(shared.clone(), sink, rx)));
        tasks.push(tokio::spawn(reader(
            shared.clone(),
            stream,
            tx.clone(),
            ready_tx.clone(),
            stop_rx.clone(),
        )));
        senders.push(tx);
    }
    drop(ready_tx);
    let connected_s = t_connect.elapsed().as_secs_f64();
    // Every connection drains its leftovers before the load starts.
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut ready = 0usize;
    while ready < n {
        match tokio::time::timeout_at(drain_deadline, ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            Ok(None) => bail!("connections closed before their queues drained ({ready}/{n})"),
            Err(_) => bail!("queues not drained within 120 s ({ready}/{n} ready)"),
        }
    }
    let st = &shared.stats;
    println!(
        "{n} connections up and drained in {:.2} s (handshake + token auth: {connected_s:.2} s), {} leftover envelopes acked",
        t_connect.elapsed().as_secs_f64(),
        st.leftovers.load(Ordering::Relaxed)
    );
    let mut rss_per_conn = None;
    if let (Some(pid), Some(before)) = (args.hushd_pid, rss_before) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(after) = rss_kb(pid) {
            let per = (after as f64 - before as f64) * 1024.0 / n as f64;
            println!(
                "hushd RSS: {before} KiB before connecting, {after} KiB with {n} connections: {:.1} KB per connection",
                per / 1000.0
            );
            rss_per_conn = Some((before, after, per));
        }
        if let (Some((kb0, s0)), Some((kb1, s1))) = (kernel_before, tcp_kernel_kib()) {
            // Both ends of every connection are on this machine: half the sockets are the node's.
            println!(
                "kernel TCP memory (/proc/net/sockstat, both ends): {kb0} KiB -> {kb1} KiB, sockets in use {s0} -> {s1}: {:.2} KB per connection (both ends)",
                (kb1.saturating_sub(kb0)) as f64 * 1024.0 / 1000.0 / n as f64
            );
        }
        if let (Some(k0), Some(k1)) = (slab_before, socket_slab_kib()) {
            println!(
                "kernel socket slabs (TCP, sock_inode_cache, eventpoll_epi, filp; both ends): {k0} KiB -> {k1} KiB: {:.2} KB per connection (both ends)",
                (k1.saturating_sub(k0)) as f64 * 1024.0 / 1000.0 / n as f64
            );
        }
    }

    // Load phases: one rate, or a sweep of rates on the same connections.
    let setup = Setup { n, connected_s, rss_per_conn, split, half };
    let rates = if args.rates.is_empty() { vec![args.rate] } else { args.rates.clone() };
    let mut results = Vec::with_capacity(rates.len());
    for (k, &rate) in rates.iter().enumerate() {
        if k > 0 {
            // What the last rate left in flight settles before the counters restart.
            tokio::time::sleep(Duration::from_secs(2)).await;
            st.reset();
        }
        let r = phase(&args, &shared, &senders, rate, &setup).await?;
        let saturated = r.p99 > args.sweep_stop_ms;
        results.push(r);
        if saturated && k + 1 < rates.len() {
            println!("p99 above {} ms at {rate:.0} msg/s: the sweep stops here", args.sweep_stop_ms);
            break;
        }
    }
    let _ = stop_tx.send(true);
    drop(senders);
    // Writers end when their channel closes; readers on `stop`.
    let shutdown = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
    if results.len() > 1 {
        print_sweep(&args, &results);
    }
    Ok(())
}

/// What the connection phase measured, for every rate's summary.
struct Setup {
    n: usize,
    connected_s: f64,
    rss_per_conn: Option<(u64, u64, f64)>,
    split: bool,
    half: usize,
}

/// One rate's figures, for the sweep's table.
struct PhaseResult {
    rate: f64,
    delivered_rate: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    receipt_p99: f64,
    accepted_p99: f64,
    /// hushd's CPU over the measured window, percent of one core.
    cpu_node: Option<f64>,
    /// Refused, unanswered, undelivered, disconnects and write errors together.
    errors: u64,
}

fn print_sweep(args: &Args, results: &[PhaseResult]) {
    println!(
        "--- hush-load sweep ({}{}) ---",
        args.encoding.name(),
        if args.receipts { ", receipts" } else { "" }
    );
    println!(
        "| offered msg/s | delivered msg/s | p50 ms | p99 ms | p99.9 ms |{} Accepted p99 ms | hushd CPU | errors |",
        if args.receipts { " receipt p99 ms |" } else { "" }
    );
    println!("|---|---|---|---|---|{}---|---|---|", if args.receipts { "---|" } else { "" });
    for r in results {
        let receipt = if args.receipts { format!(" {:.2} |", r.receipt_p99) } else { String::new() };
        let cpu = r.cpu_node.map_or_else(|| "n/a".to_owned(), |c| format!("{c:.0}%"));
        println!(
            "| {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |{receipt} {:.2} | {cpu} | {} |",
            r.rate, r.delivered_rate, r.p50, r.p99, r.p999, r.accepted_p99, r.errors
        );
    }
    let best = results
        .iter()
        .filter(|r| r.p99 < 50.0 && r.errors == 0)
        .map(|r| r.rate)
        .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))));
    match best {
        Some(b) => println!("highest offered rate with p99 < 50 ms and no error: {b:.0} msg/s"),
        None => println!("no offered rate had p99 < 50 ms without error"),
    }
}

/// One load phase at `rate`: warm-up, measured window, grace; prints its summary.
async fn phase(
    args: &Args,
    shared: &Arc<Shared>,
    senders: &[mpsc::UnboundedSender<Cmd>],
    rate: f64,
    setup: &Setup,
) -> anyhow::Result<PhaseResult> {
    let st = &shared.stats;
    let (n, split, half) = (setup.n, setup.split, setup.half);
    let warmup = Duration::from_secs(args.warmup);
    let measured = Duration::from_secs(args.duration);
    let total = warmup + measured;
    let load_start = st.now_ns();
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    st.window_start.store(load_start + ns(warmup), Ordering::Relaxed);
    st.window_end.store(load_start + ns(total), Ordering::Relaxed);
    st.loading.store(true, Ordering::Relaxed);
    let load_t0 = tokio::time::Instant::now();
    println!(
        "offering {rate} msg/s of {} B for {} s warm-up + {} s measured",
        args.payload, args.warmup, args.duration
    );

    // The scheduler runs on its own thread with sub-millisecond sleeps (tokio's timer has a
    // 1 ms granularity, which alone would add up to 1 ms to every latency).
    let scheduler = {
        let shared = shared.clone();
        let senders = senders.to_vec();
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || schedule(&shared, &senders, rate, total, load_start, split, half))?
    };

    // Progress once a second until every scheduled message is answered and delivered, or the
    // grace period is over.
    let grace_end = load_t0 + total + Duration::from_secs(args.grace);
    let mut last = (0u64, 0u64, 0u64);
    let mut second = 0u64;
    let mut progress = tokio::time::interval_at(load_t0 + Duration::from_secs(1), Duration::from_secs(1));
    let mut scheduled: Option<u64> = None;
    let mut scheduler = Some(scheduler);
    // CPU is counted over the measured window only (the warm-up is left out).
    let mut cpu_start = (args.hushd_pid.and_then(cpu_ticks), cpu_ticks(std::process::id()));
    let mut cpu_window = None;
    loop {
        progress.tick().await;
        second += 1;
        if second == args.warmup {
            cpu_start = (args.hushd_pid.and_then(cpu_ticks), cpu_ticks(std::process::id()));
        }
        if second == args.warmup + args.duration {
            cpu_window = Some((args.hushd_pid.and_then(cpu_ticks), cpu_ticks(std::process::id())));
        }
        if let Some(h) = scheduler.take_if(|h| h.is_finished()) {
            scheduled = Some(h.join().map_err(|_| anyhow!("scheduler thread failed"))?);
        }
        let sent = st.sent.load(Ordering::Relaxed);
        let acc = st.accepted.load(Ordering::Relaxed);
        let del = st.delivered.load(Ordering::Relaxed);
        let errors = st.refused.load(Ordering::Relaxed)
            + st.disconnects.load(Ordering::Relaxed)
            + st.send_errors.load(Ordering::Relaxed);
        let p99 = match st.interval.lock() {
            Ok(mut h) => {
                let v = quantile_ms(&h, 0.99);
                h.reset();
                v
            }
            Err(_) => f64::NAN,
        };
        let phase = if second <= args.warmup {
            "warm-up"
        } else if second <= args.warmup + args.duration {
            "measure"
        } else {
            "grace"
        };
        println!(
            "[{second:>3}s {phase}] sent {sent} (+{}) accepted {acc} (+{}) delivered {del} (+{}) errors {errors} p99(1s) {p99:.2} ms",
            sent - last.0,
            acc - last.1,
            del - last.2
        );
        last = (sent, acc, del);
        if let Some(total_sched) = scheduled {
            let refused = st.refused.load(Ordering::Relaxed);
            let (rsent, rdel) =
                (st.receipts_sent.load(Ordering::Relaxed), st.receipts_delivered.load(Ordering::Relaxed));
            if acc + refused >= total_sched + rsent && del + rdel >= acc {
                break;
            }
        }
        if tokio::time::Instant::now() >= grace_end {
            break;
        }
    }
    if let Some(h) = scheduler {
        // The scheduler ends by itself at warm-up + duration; the grace period is over by now.
        let _ = h.join();
    }
    let end_rss = args.hushd_pid.and_then(rss_kb);

    // Summary.
    let sent = st.sent.load(Ordering::Relaxed);
    let acc = st.accepted.load(Ordering::Relaxed);
    let del = st.delivered.load(Ordering::Relaxed);
    let refused = st.refused.load(Ordering::Relaxed);
    let disconnects = st.disconnects.load(Ordering::Relaxed);
    let send_errors = st.send_errors.load(Ordering::Relaxed);
    let unanswered = sent.saturating_sub(acc + refused);
    let rsent = st.receipts_sent.load(Ordering::Relaxed);
    let rdel = st.receipts_delivered.load(Ordering::Relaxed);
    let undelivered = acc.saturating_sub(del + rdel);
    let dwin = st.delivered_in_window.load(Ordering::Relaxed);
    let delivered_rate = dwin as f64 / measured.as_secs_f64().max(1e-9);
    let d = snapshot(&st.delivery).ok_or_else(|| anyhow!("histogram poisoned"))?;
    let a = snapshot(&st.accept).ok_or_else(|| anyhow!("histogram poisoned"))?;
    let l = snapshot(&st.lag).ok_or_else(|| anyhow!("histogram poisoned"))?;
    let r = snapshot(&st.receipt).ok_or_else(|| anyhow!("histogram poisoned"))?;
    println!("--- hush-load summary ---");
    println!(
        "connections {n}, payload {} B, offered {rate:.0} msg/s, window {} s after {} s warm-up",
        args.payload, args.duration, args.warmup
    );
    println!("delivered in window: {dwin} ({delivered_rate:.0} msg/s)");
    println!(
        "delivery latency (from scheduled send): p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (n={})",
        quantile_ms(&d, 0.5),
        quantile_ms(&d, 0.99),
        quantile_ms(&d, 0.999),
        d.max() as f64 / 1e3,
        d.len()
    );
    if args.receipts {
        println!(
            "receipt delivery latency (receipt sent -> delivered to the sender): p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (n={}); receipts sent {rsent}, delivered {rdel}",
            quantile_ms(&r, 0.5),
            quantile_ms(&r, 0.99),
            quantile_ms(&r, 0.999),
            r.max() as f64 / 1e3,
            r.len()
        );
    }
    println!(
        "accepted latency (send -> Accepted, receipts included): p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        quantile_ms(&a, 0.5),
        quantile_ms(&a, 0.99),
        quantile_ms(&a, 0.999),
        a.max() as f64 / 1e3
    );
    println!(
        "generator lag (scheduled -> written): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        quantile_ms(&l, 0.5),
        quantile_ms(&l, 0.99),
        l.max() as f64 / 1e3
    );
    println!(
        "totals: sent {sent}, accepted {acc}, delivered {del}; errors: refused {refused}, unanswered after grace {unanswered}, accepted but undelivered {undelivered}, disconnects {disconnects}, write errors {send_errors}"
    );
    let secs = args.duration.max(1) as f64;
    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.0}%", (b.saturating_sub(a)) as f64 / clk_tck() / secs * 100.0),
        _ => "n/a".into(),
    };
    if let Some((node_end, gen_end)) = cpu_window {
        println!(
            "CPU during the measured window: hushd {}, hush-load {} (100% = one core)",
            pct(cpu_start.0, node_end),
            pct(cpu_start.1, gen_end)
        );
    }
    if let Some((before, after, per)) = setup.rss_per_conn {
        println!(
            "hushd RSS: {before} KiB idle, {after} KiB with {n} connections -> {:.1} KB per connection; {} KiB at the end of the load",
            per / 1000.0,
            end_rss.unwrap_or(0)
        );
    }
    let cpu_node = match (cpu_start.0, cpu_window.and_then(|w| w.0)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / clk_tck() / secs * 100.0),
        _ => None,
    };
    if args.json {
        let v = serde_json::json!({
            "connections": n,
            "encoding": args.encoding.name(),
            "payload": args.payload,
            "offered": rate,
            "delivered_per_s": delivered_rate,
            "p50_ms": quantile_ms(&d, 0.5),
            "p99_ms": quantile_ms(&d, 0.99),
            "p999_ms": quantile_ms(&d, 0.999),
            "max_ms": d.max() as f64 / 1e3,
            "accepted_p50_ms": quantile_ms(&a, 0.5),
            "accepted_p99_ms": quantile_ms(&a, 0.99),
            "lag_p99_ms": quantile_ms(&l, 0.99),
            "receipts": args.receipts,
            "receipts_sent": rsent,
            "receipts_delivered": rdel,
            "receipt_p50_ms": quantile_ms(&r, 0.5),
            "receipt_p99_ms": quantile_ms(&r, 0.99),
            "sent": sent,
            "accepted": acc,
            "delivered": del,
            "refused": refused,
            "unanswered": unanswered,
            "undelivered": undelivered,
            "disconnects": disconnects,
            "write_errors": send_errors,
            "connect_s": setup.connected_s,
            "hushd_cpu_pct": cpu_node,
            "rss_before_kib": setup.rss_per_conn.map(|r| r.0),
            "rss_after_kib": setup.rss_per_conn.map(|r| r.1),
            "rss_per_conn_bytes": setup.rss_per_conn.map(|r| r.2),
        });
        println!("RESULT {v}");
    }
    Ok(PhaseResult {
        rate,
        delivered_rate,
        p50: quantile_ms(&d, 0.5),
        p99: quantile_ms(&d, 0.99),
        p999: quantile_ms(&d, 0.999),
        receipt_p99: quantile_ms(&r, 0.99),
        accepted_p99: quantile_ms(&a, 0.99),
        cpu_node,
        errors: refused + unanswered + undelivered + disconnects + send_errors,
    })
}
