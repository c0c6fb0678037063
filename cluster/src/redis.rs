//! The Redis bus.
//!
//! Keys and channels (all under `hush:`):
//! - `hush:nodes`: sorted set of node ids scored by their last heartbeat (ms); members are the
//!   nodes seen within [`NODE_TTL`].
//! - `hush:nr:<node>`: the node's last [`NodeReport`] (postcard), written with each heartbeat,
//!   expiring after [`NODE_TTL`].
//! - `hush:p:<tenant>/<user>/<device>`: the id of the node holding the device's socket, with a
//!   [`PRESENCE_TTL`] the owner refreshes every [`PRESENCE_REFRESH`] (only while the key still
//!   names it). A node that dies stops refreshing, so its entries expire on their own.
//! - channel `hush:inbox:<node>`: messages for one node; channel `hush:all`: broadcasts.
//! - `hush:rl:<key>`: a rate-limit token bucket (hash `tokens`, `ts` in ms of Redis' clock),
//!   updated by one Lua script so concurrent takers on any node never share a token; it
//!   expires once it would be full again.
//! - `hush:at:<key>`: an attempt counter (hash `n`, `ts` in ms of Redis' clock) for login
//!   throttling, checked and counted by one Lua script ([`ATTEMPT`], the twin of
//!   [`crate::buckets::Backoff::verdict`]); it expires after the rule's `forget_after`, except
//!   once hard-locked.
//!
//! One supervisor task owns the connections: it (re)connects with backoff, subscribes, reads
//! the channels, heartbeats and refreshes presence. While Redis is down every call fails fast
//! with [`BusError::Unavailable`] and [`Bus::healthy`] is false; on each successful
//! (re)connection it emits [`BusEvent::Reconnected`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use hush_protocol::ids::DeviceAddress;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::buckets::{Backoff, Release, Verdict};
use crate::limits::*;
use crate::{now_ms, Bus, BusError, BusEvent, BusMessage, NodeReport, NodeSeen};

const NODES: &str = "hush:nodes";
const BROADCAST: &str = "hush:all";

fn inbox(node: &str) -> String {
    format!("hush:inbox:{node}")
}

fn presence_key(d: &DeviceAddress) -> String {
    format!("hush:p:{d}")
}

fn report_key(node: &str) -> String {
    format!("hush:nr:{node}")
}

#[derive(Serialize, Deserialize)]
struct Wire {
    from: String,
    msg: BusMessage,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

struct Inner {
    id: String,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    healthy: AtomicBool,
    local: Mutex<HashSet<DeviceAddress>>,
    events: Mutex<Option<mpsc::Receiver<BusEvent>>>,
    withdraw: redis::Script,
    refresh: redis::Script,
    take_token: redis::Script,
    attempt: redis::Script,
    /// The report sent with the next heartbeat.
    report: Mutex<Option<NodeReport>>,
    /// Used while Redis is unreachable.
    fallback: crate::buckets::TokenBuckets,
    /// Used while Redis is unreachable.
    fallback_attempts: crate::buckets::AttemptCounters,
}

/// Checks and counts one attempt under `KEYS[1]`, on Redis' clock: the same rule as
/// [`crate::buckets::Backoff::verdict`]. `ARGV`: free, base ms, max delay ms, lock after, lock
/// ms, max lock ms, hard limit, forget after ms. Returns `{0, n}` if let through as the `n`-th
/// counted attempt, `{1, ms}` if delayed, `{2, ms}` if locked.
const ATTEMPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local free = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local max_delay = tonumber(ARGV[3])
local lock_after = tonumber(ARGV[4])
local lock = tonumber(ARGV[5])
local max_lock = tonumber(ARGV[6])
local hard = tonumber(ARGV[7])
local forget = tonumber(ARGV[8])
local v = redis.call('HMGET', KEYS[1], 'n', 'ts')
local n = tonumber(v[1]) or 0
local ts = tonumber(v[2]) or now
if n < hard and now - ts >= forget then
  n = 0
end
local since = math.max(0, now - ts)
local function doubled(b, steps, cap)
  return math.min(b * math.pow(2, math.min(steps, 31)), cap)
end
if n >= hard then
  return {2, max_lock}
end
if n >= lock_after then
  local l = doubled(lock, n - lock_after, max_lock)
  if since < l then
    return {2, l - since}
  end
elseif n >= free then
  local w = doubled(base, n - free, max_delay)
  if since < w then
    return {1, w - since}
  end
end
n = n + 1
redis.call('HSET', KEYS[1], 'n', tostring(n), 'ts', tostring(now))
if n >= hard then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], forget)
end
return {0, n}
";

/// Gives one attempt back under `KEYS[1]` (a refund).
static REFUND_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(REFUND));

/// See [`REFUND_SCRIPT`].
const REFUND: &str = r"
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if n ~= nil and n > 0 then
  redis.call('HSET', KEYS[1], 'n', tostring(n - 1))
end
return 0
";

/// Takes a token from the bucket `KEYS[1]` (capacity `ARGV[1]`, one token back every `ARGV[2]`
/// ms) on Redis' own clock, so nodes with skewed clocks agree. Returns 0 if taken, else the
/// milliseconds until a token is back.
const TAKE_TOKEN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) / refill)
  ts = now
end
if tokens >= 1 then
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
  redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) * refill) + 1000)
  return 0
end
return math.ceil((1 - tokens) * refill)
";

/// The bus of a clustered node.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

impl RedisBus {
    /// Starts the bus for node `id` on Redis at `url`. Returns at once: if Redis is not
    /// reachable yet the node starts degraded and the supervisor keeps trying.
    pub fn start(url: &str, id: String) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let inner = Arc::new(Inner {
            id,
            client,
            conn: Mutex::new(None),
            healthy: AtomicBool::new(false),
            local: Mutex::new(HashSet::new()),
            events: Mutex::new(Some(rx)),
            withdraw: redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            ),
            refresh: redis::Script::new(
                "for _, k in ipairs(KEYS) do if redis.call('GET', k) == ARGV[1] then redis.call('PEXPIRE', k, ARGV[2]) end end return 0",
            ),
            take_token: redis::Script::new(TAKE_TOKEN),
            attempt: redis::Script::new(ATTEMPT),
            report: Mutex::new(None),
            fallback: crate::buckets::TokenBuckets::default(),
            fallback_attempts: crate::buckets::AttemptCounters::default(),
        });
        tokio::spawn(supervise(inner.clone(), tx));
        Ok(Self { inner })
    }

    fn conn(&self) -> Result<MultiplexedConnection, BusError> {
        let g = match self.inner.conn.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.clone().ok_or_else(|| BusError::Unavailable("not connected to Redis".into()))
    }
}

async fn timed<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, BusError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(r) => r.map_err(unavailable),
        Err(_) => Err(BusError::Unavailable("Redis command timed out".into())),
    }
}

fn set_conn(inner: &Inner, c: Option<MultiplexedConnection>) {
    let mut g = match inner.conn.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    *g = c;
}

async fn heartbeat(inner: &Inner, conn: &mut MultiplexedConnection) -> Result<(), BusError> {
    let now = now_ms();
    let cutoff = now.saturating_sub(NODE_TTL.as_millis() as u64 * 4);
    let report = match inner.report.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let mut pipe = redis::pipe();
    pipe.zadd(NODES, &inner.id, now).ignore().zrembyscore(NODES, 0, cutoff).ignore();
    if let Some(bytes) = report.and_then(|r| postcard::to_allocvec(&r).ok()) {
        pipe.cmd("SET")
            .arg(report_key(&inner.id))
            .arg(bytes)
            .arg("PX")
            .arg(NODE_TTL.as_millis() as u64)
            .ignore();
    }
    timed(pipe.query_async::<()>(conn)).await
}

async fn refresh_presence(inner: &Inner, conn: &mut MultiplexedConnection) -> Result<(), BusError> {
    let keys: Vec<String> = {
        let g = match inner.local.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.iter().map(presence_key).collect()
    };
    for chunk in keys.chunks(REFRESH_CHUNK) {
        let mut inv = inner.refresh.prepare_invoke();
        for k in chunk {
            inv.key(k);
        }
        inv.arg(&inner.id).arg(PRESENCE_TTL.as_millis() as u64);
        timed(inv.invoke_async::<()>(conn)).await?;
    }
    Ok(())
}

async fn supervise(inner: Arc<Inner>, events: mpsc::Sender<BusEvent>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = async {
            let conn = timed(inner.client.get_multiplexed_async_connection()).await?;
            let mut pubsub = timed(inner.client.get_async_pubsub()).await?;
            timed(pubsub.subscribe(inbox(&inner.id))).await?;
            timed(pubsub.subscribe(BROADCAST)).await?;
            Ok::<_, BusError>((conn, pubsub))
        }
        .await;
        let (mut conn, pubsub) = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Redis unreachable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if let Err(e) = heartbeat(&inner, &mut conn).await {
            tracing::warn!(error = %e, "Redis heartbeat failed");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = BACKOFF_MIN;
        set_conn(&inner, Some(conn.clone()));
        inner.healthy.store(true, Ordering::Relaxed);
        tracing::info!(node = %inner.id, "connected to the Redis bus");
        if events.send(BusEvent::Reconnected).await.is_err() {
            return;
        }
        let mut stream = pubsub.into_on_message();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut refresh = tokio::time::interval(PRESENCE_REFRESH);
        beat.tick().await;
        refresh.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let payload: Vec<u8> = match msg.get_payload() {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable bus message");
                            continue;
                        }
                    };
                    match postcard::from_bytes::<Wire>(&payload) {
                        Ok(w) if w.from == inner.id => {}
                        Ok(w) => {
                            if events.send(BusEvent::Message(w.msg)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "undecodable bus message"),
                    }
                }
                _ = beat.tick() => {
                    if let Err(e) = heartbeat(&inner, &mut conn).await {
                        tracing::warn!(error = %e, "Redis heartbeat failed");
                        break;
                    }
                }
                _ = refresh.tick() => {
                    if let Err(e) = refresh_presence(&inner, &mut conn).await {
                        tracing::warn!(error = %e, "presence refresh failed");
                        break;
                    }
                }
            }
        }
        inner.healthy.store(false, Ordering::Relaxed);
        set_conn(&inner, None);
        tracing::warn!(node = %inner.id, "lost the Redis bus; running degraded");
        tokio::time::sleep(backoff).await;
    }
}

#[async_trait]
impl Bus for RedisBus {
    fn node_id(&self) -> &str {
        &self.inner.id
    }

    fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn announce(&self, devices: &[DeviceAddress]) -> Result<(), BusError> {
        {
            let mut g = match self.inner.local.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.extend(devices.iter().cloned());
        }
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        for d in devices {
            pipe.cmd("SET")
                .arg(presence_key(d))
                .arg(&self.inner.id)
                .arg("PX")
                .arg(PRESENCE_TTL.as_millis() as u64)
                .ignore();
        }
        timed(pipe.query_async::<()>(&mut conn)).await
    }

    async fn withdraw(&self, device: &DeviceAddress) -> Result<(), BusError> {
        {
            let mut g = match self.inner.local.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.remove(device);
        }
        let mut conn = self.conn()?;
        let mut inv = self.inner.withdraw.prepare_invoke();
        inv.key(presence_key(device)).arg(&self.inner.id);
        timed(inv.invoke_async::<i64>(&mut conn)).await.map(|_| ())
    }

    async fn locate(&self, devices: &[DeviceAddress]) -> Result<Vec<Option<String>>, BusError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let keys: Vec<String> = devices.iter().map(presence_key).collect();
        let mut cmd = redis::cmd("MGET");
        for k in &keys {
            cmd.arg(k);
        }
        timed(cmd.query_async::<Vec<Option<String>>>(&mut conn)).await
    }

    async fn send_to(&self, node: &str, msg: &BusMessage) -> Result<(), BusError> {
        let bytes = postcard::to_allocvec(&Wire { from: self.inner.id.clone(), msg: msg.clone() })
            .map_err(|e| BusError::Codec(e.to_string()))?;
        let mut conn = self.conn()?;
        timed(redis::cmd("PUBLISH").arg(inbox(node)).arg(bytes).query_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn broadcast(&self, msg: &BusMessage) -> Result<(), BusError> {
        let bytes = postcard::to_allocvec(&Wire { from: self.inner.id.clone(), msg: msg.clone() })
            .map_err(|e| BusError::Codec(e.to_string()))?;
        let mut conn = self.conn()?;
        timed(redis::cmd("PUBLISH").arg(BROADCAST).arg(bytes).query_async::<i64>(&mut conn)).await.map(|_| ())
    }

    fn report(&self, report: NodeReport) {
        match self.inner.report.lock() {
            Ok(mut g) => *g = Some(report),
            Err(p) => *p.into_inner() = Some(report),
        }
    }

    async fn nodes(&self) -> Result<Vec<NodeSeen>, BusError> {
        let mut conn = self.conn()?;
        let cutoff = now_ms().saturating_sub(NODE_TTL.as_millis() as u64);
        let mut live = timed(
            redis::cmd("ZRANGEBYSCORE")
                .arg(NODES)
                .arg(cutoff)
                .arg("+inf")
                .arg("WITHSCORES")
                .query_async::<Vec<(String, f64)>>(&mut conn),
        )
        .await?;
        live.sort_by(|a, b| a.0.cmp(&b.0));
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for (id, _) in &live {
            cmd.arg(report_key(id));
        }
        let reports = timed(cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn)).await?;
        Ok(live
            .into_iter()
            .zip(reports)
            .map(|((id, score), r)| NodeSeen {
                id,
                seen_ms: score as u64,
                report: r.and_then(|b| postcard::from_bytes(&b).ok()),
            })
            .collect())
    }

    fn events(&self) -> Option<mpsc::Receiver<BusEvent>> {
        match self.inner.events.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    async fn take_token(&self, key: &str, capacity: u32, refill: Duration) -> Option<Duration> {
        let refill_ms = (refill.as_millis() as u64).max(1);
        let shared = async {
            let mut conn = self.conn()?;
            let mut inv = self.inner.take_token.prepare_invoke();
            inv.key(format!("hush:rl:{key}")).arg(capacity.max(1)).arg(refill_ms);
            timed(inv.invoke_async::<u64>(&mut conn)).await
        };
        match shared.await {
            Ok(0) => None,
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(e) => {
                // Degraded: limit per node rather than refuse every fetch or allow them all.
                tracing::debug!(error = %e, "rate limit checked locally");
                self.inner.fallback.take(key, capacity, refill)
            }
        }
    }

    async fn attempt(&self, key: &str, rule: &Backoff) -> Verdict {
        let ms = |d: Duration| (d.as_millis() as u64).max(1);
        let shared = async {
            let mut conn = self.conn()?;
            let mut inv = self.inner.attempt.prepare_invoke();
            inv.key(format!("hush:at:{key}"))
                .arg(rule.free)
                .arg(ms(rule.base))
                .arg(ms(rule.max_delay))
                .arg(rule.lock_after)
                .arg(ms(rule.lock))
                .arg(ms(rule.max_lock))
                .arg(rule.hard_limit)
                .arg(ms(rule.forget_after));
            timed(inv.invoke_async::<(u8, u64)>(&mut conn)).await
        };
        match shared.await {
            Ok((0, n)) => Verdict::Allowed(u32::try_from(n).unwrap_or(u32::MAX)),
            Ok((1, ms)) => Verdict::Delayed(Duration::from_millis(ms)),
            Ok((_, ms)) => Verdict::Locked(Duration::from_millis(ms)),
            Err(e) => {
                // Degraded: count per node rather than refuse every login or allow them all.
                tracing::debug!(error = %e, "attempt counted locally");
                self.inner.fallback_attempts.attempt(key, rule)
            }
        }
    }

    async fn release_attempt(&self, key: &str, how: Release) {
        // The local counter may hold attempts counted while Redis was down.
        self.inner.fallback_attempts.release(key, how);
        let shared = async {
            let mut conn = self.conn()?;
            let k = format!("hush:at:{key}");
            match how {
                Release::Reset => {
                    timed(redis::cmd("DEL").arg(&k).query_async::<i64>(&mut conn)).await.map(|_| ())
                }
                Release::Refund => {
                    let mut inv = REFUND_SCRIPT.prepare_invoke();
                    inv.key(k);
                    timed(inv.invoke_async::<i64>(&mut conn)).await.map(|_| ())
                }
            }
        };
        if let Err(e) = shared.await {
            tracing::warn!(error = %e, "attempt counter not released on Redis (it expires)");
        }
    }
}
