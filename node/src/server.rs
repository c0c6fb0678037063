//! Starting and stopping a node.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use hush_actors::accounts::{self, AccountError};
use hush_actors::control::{CloseAll, Control};
use hush_actors::hub::Hub;
use hush_cluster::redis::RedisBus;
use hush_cluster::{Bus, LocalBus};
use hush_protocol::api::Secret;
use hush_protocol::ids::{TenantId, UserId};
use hush_store::embedded::EmbeddedStore;
use hush_store::Store;

use crate::config::Config;
use crate::error::ApiError;
use crate::tls::CertStore;

/// Largest JSON request body accepted by the HTTP API.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// File name of the embedded store inside the data folder.
pub const STORE_FILE: &str = "hush.redb";

fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    Ok(match &config.redis_url {
        Some(url) => Arc::new(RedisBus::start(url, config.node_id.clone())?),
        None => Arc::new(LocalBus::new(config.node_id.clone())),
    })
}

/// Opens the configured store; for the embedded one also returns its handle (the control
/// socket's backups read through it).
async fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Option<EmbeddedStore>)> {
    if let Some(url) = &config.mongodb_url {
        let store =
            hush_store::mongo::MongoStore::connect_with(url, &config.mongodb_database, config.queue_policy)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the MongoDB store: {e}"))?;
        return Ok((Arc::new(store), None));
    }
    crate::datadir::prepare(&config.data_dir)?;
    let path = config.data_dir.join(STORE_FILE);
    let mfa_key = config.mfa_key_file.clone().unwrap_or_else(|| config.data_dir.join(MFA_KEY_FILE));
    // A missing or empty store in a folder that was initialised is an error, never a first run.
    crate::datadir::check_store(&config.data_dir, &path, &mfa_key)?;
    // Created 0600 before redb opens it (redb would create it with the process umask).
    crate::datadir::create_private(&path)?;
    let store = EmbeddedStore::open_with(&path, config.queue_policy).map_err(|e| {
        let advice = match e.cause() {
            Some(c) => c.advice(),
            None => "see the error above",
        };
        anyhow::anyhow!("cannot open the store at {}: {e} ({advice})", path.display())
    })?;
    Ok((Arc::new(store.clone()), Some(store)))
}

/// File name of the generated MFA key inside the data folder (single node, none configured).
pub const MFA_KEY_FILE: &str = "mfa.key";

fn parse_key(text: &str, path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("MFA key file {} is not base64", path.display()))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("MFA key file {} must hold 32 bytes", path.display()))
}

/// The key sealing TOTP secrets: the configured file; on a single node without one, the data
/// folder's `mfa.key`, generated (mode 0600) at the first start. A cluster must configure one
/// (every node needs the same key), so its absence there stops the start.
pub fn load_mfa_key(config: &Config) -> anyhow::Result<hush_actors::mfa::SealKey> {
    let bytes = match &config.mfa_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read MFA key file {}: {e}", path.display()))?;
            parse_key(&text, path)?
        }
        None if config.mongodb_url.is_some() => anyhow::bail!(
            "a node on a shared MongoDB store needs --mfa-key-file (HUSH_MFA_KEY_FILE), the same on every node"
        ),
        None => {
            crate::datadir::prepare(&config.data_dir)?;
            let path = config.data_dir.join(MFA_KEY_FILE);
            match std::fs::read_to_string(&path) {
                Ok(text) => parse_key(&text, &path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    use base64::Engine;
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let key: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())
                        .map_err(|_| anyhow::anyhow!("no system randomness"))?
                        .expose();
                    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
                    f.write_all(base64::engine::general_purpose::STANDARD.encode(key).as_bytes())?;
                    f.sync_all()?;
                    tracing::warn!(path = %path.display(), "generated a new MFA key (no --mfa-key-file configured); back it up with the data folder");
                    key
                }
                Err(e) => anyhow::bail!("cannot read MFA key file {}: {e}", path.display()),
            }
        }
    };
    hush_actors::mfa::SealKey::new(&bytes).map_err(|e| anyhow::anyhow!("MFA key: {e}"))
}

/// One-time credentials created by a bootstrap.
pub struct Bootstrapped {
    /// The tenant created.
    pub tenant: TenantId,
    /// Its administrator.
    pub admin: UserId,
    /// The administrator's password, shown once.
    pub password: Secret,
}

/// Creates `tenant` and its administrator `admin` (`hushd init`).
pub async fn init(config: &Config, tenant: &str, admin: &str) -> anyhow::Result<Bootstrapped> {
    let tenant = TenantId::new(tenant)?;
    let admin = UserId::new(admin)?;
    let hub = Hub::new(open_store(config).await?.0, Arc::new(LocalBus::new(config.node_id.clone())))?;
    match accounts::bootstrap(&hub, &tenant, &admin).await {
        Ok(password) => {
            if config.mongodb_url.is_none() {
                crate::datadir::mark(&config.data_dir, STORE_FILE)?;
            }
            Ok(Bootstrapped { tenant, admin, password })
        }
        Err(AccountError::Conflict) => anyhow::bail!("tenant {tenant} already exists"),
        Err(e) => Err(e.into()),
    }
}

/// Gives `user` of `tenant` a new one-time password (`hushd admin reset-password`), on the
/// node's host: against the data folder of a stopped node (the embedded store belongs to one
/// process) or the cluster's MongoDB (nodes may run; with `--redis-url` the revoked sessions'
/// sockets close at once and the login lock is cleared cluster-wide).
pub async fn reset_password(config: &Config, tenant: &str, user: &str) -> anyhow::Result<Bootstrapped> {
    let tenant = TenantId::new(tenant)?;
    let user = UserId::new(user)?;
    if config.mongodb_url.is_none() {
        let path = config.data_dir.join(STORE_FILE);
        if !path.exists() {
            anyhow::bail!("no store at {} (wrong --data-dir?)", path.display());
        }
    }
    let (store, _) = open_store(config).await?;
    let bus: Arc<dyn Bus> = match &config.redis_url {
        Some(url) => {
            let bus = RedisBus::start(url, format!("admin-{}", config.node_id))?;
            let t0 = std::time::Instant::now();
            while !bus.healthy() && t0.elapsed() < std::time::Duration::from_secs(5) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if !bus.healthy() {
                tracing::warn!("Redis unreachable: live sockets of the revoked sessions close when they next authenticate, and a login lock stays until it expires");
            }
            Arc::new(bus)
        }
        None => Arc::new(LocalBus::new(config.node_id.clone())),
    };
    let hub = Hub::new(store, bus)?;
    match accounts::reset_password(&hub, &tenant, &user).await {
        Ok(password) => Ok(Bootstrapped { tenant, admin: user, password }),
        Err(AccountError::NotFound) => anyhow::bail!("no user {user} in tenant {tenant}"),
        Err(e) => Err(e.into()),
    }
}

/// Longest wait at a graceful stop for every socket to close (each device actor waits at most
/// its close grace for the client's side and its acks).
pub const MAX_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A started node.
pub struct Running {
    /// The address it listens on (the real port when 0 was asked).
    pub addr: SocketAddr,
    /// Credentials if this start bootstrapped an empty store.
    pub bootstrapped: Option<Bootstrapped>,
    hub: Arc<Hub>,
    control: Control,
    tls: Option<Arc<CertStore>>,
    /// The backup socket of an embedded store (removed when the node stops).
    store_socket: Option<crate::store_cmd::ControlSocket>,
    server: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The TLS certificate store, if configured; a warning for plain HTTP off loopback.
fn open_tls(config: &Config) -> anyhow::Result<Option<Arc<CertStore>>> {
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(CertStore::open(&files.cert, &files.key)?)),
        None => None,
    };
    if tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.listen,
            "serving plain HTTP on a non-loopback address (--insecure-http): tokens and passwords \
             travel in clear unless a TLS-terminating proxy is in front"
        );
    }
    Ok(tls)
}

/// The store, the bus and the hub over them (configured), the bus events dispatched, and the
/// embedded store's control socket.
async fn open_hub(config: &Config) -> anyhow::Result<(Arc<Hub>, Option<crate::store_cmd::ControlSocket>)> {
    let (store, embedded) = open_store(config).await?;
    // A node that cannot offer backups still serves: the operator can stop it and back up the
    // file, and the log says why.
    let store_socket = embedded.and_then(|e| match crate::store_cmd::listen(&config.data_dir, e) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no control socket: `hushd store backup` needs the node stopped");
            None
        }
    });
    let bus = open_bus(config)?;
    let events = bus.events();
    let hub = Hub::with_keys(store, bus, config.keys.clone())?;
    let _ = hub.mfa_key.set(load_mfa_key(config)?);
    hub.groups.set_policy(config.group_policy);
    hub.throttle.set_policy(config.throttle);
    if let Some(events) = events {
        actix_rt::spawn(hush_actors::delivery::bus::run(hub.clone(), events));
    }
    actix_rt::spawn(hush_actors::health::report_loop(hub.clone()));
    tokio::task::spawn_blocking(accounts::warm_up).await?;
    Ok((hub, store_socket))
}

/// An empty store is bootstrapped (tenant `default`, administrator `admin`, a one-time
/// password), unless the data folder says it was initialised before; the data folder is
/// marked; stored records are migrated.
async fn first_run(config: &Config, hub: &Arc<Hub>) -> anyhow::Result<Option<Bootstrapped>> {
    let embedded = config.mongodb_url.is_none();
    let bootstrapped = if hub.store.list_tenants(1).await?.is_empty() {
        if embedded {
            crate::datadir::refuse_empty(&config.data_dir, &config.data_dir.join(STORE_FILE))?;
        }
        let tenant = TenantId::new("default")?;
        let admin = UserId::new("admin")?;
        let password = accounts::bootstrap(hub, &tenant, &admin).await?;
        Some(Bootstrapped { tenant, admin, password })
    } else {
        None
    };
    if embedded {
        crate::datadir::mark(&config.data_dir, STORE_FILE)?;
    }
    // Store migration: every tenant gets the default MFA policy record if it has none.
    let migrated = hush_actors::mfa::migrate(hub).await.map_err(|e| anyhow::anyhow!("MFA migration: {e}"))?;
    if migrated > 0 {
        tracing::info!(tenants = migrated, "wrote the default MFA policy of existing tenants");
    }
    Ok(bootstrapped)
}

/// Starts a node inside the current actix system: binds the listener (before anything else, so
/// a port already taken changes nothing), opens the store, bootstraps an empty one (tenant
/// `default`, administrator `admin`, one-time password), starts the actors and the HTTP
/// server.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    config.check_listener()?;
    let tls = open_tls(config)?;
    // The port first: a start that cannot listen must create nothing (no data folder, no
    // tenant, no administrator whose one-time password nobody would see).
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let (hub, store_socket) = open_hub(config).await?;
    let bootstrapped = first_run(config, &hub).await?;
    actix_rt::spawn(sweep_expired(hub.store.clone(), config.queue_policy.retention));
    actix_rt::spawn(hush_actors::hub::seen_writer(hub.clone()));
    hub.tree.start(hub.metrics.clone()).await.map_err(|e| anyhow::anyhow!("actors not started: {e}"))?;
    let control =
        Control::start(hub.clone()).await.map_err(|e| anyhow::anyhow!("control actor not started: {e}"))?;
    let hub_data = web::Data::from(hub.clone());
    let control_data = web::Data::new(control.clone());
    let edge = config.edge;
    let permits = web::Data::new(crate::edge::SocketPermits::new(edge.max_connections));
    let faults = config.fault_injection;
    if faults {
        tracing::warn!("fault injection is enabled (--fault-injection): for tests only");
    }
    let gate = crate::edge::AddressGate::new(edge.max_incomplete_per_address);
    let console = web::Data::new(crate::console::ConsoleTransport { tls: tls.is_some() });
    let ws_context = crate::upgrade::UpgradeContext { hub: hub.clone(), permits: permits.get_ref().clone() };
    let app = move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crate::edge::guard))
            .app_data(edge)
            .app_data(console.clone())
            .app_data(permits.clone())
            .app_data(hub_data.clone())
            .app_data(control_data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_JSON_BODY)
                    .error_handler(|e, _| ApiError::BadRequest(format!("invalid JSON body: {e}")).into()),
            )
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| ApiError::BadRequest(format!("invalid query: {e}")).into()),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| ApiError::BadRequest(format!("invalid path: {e}")).into()),
            )
            // Before the routes: their `/v1` scope would answer 404 for anything under it.
            .configure(|cfg| crate::faults::configure(cfg, faults))
            .configure(crate::routes::configure)
            .configure(crate::console::configure)
            .default_service(web::to(crate::fallback::unmatched))
    };
    let (server, addr) = build_server(app, config, listener, tls.as_ref(), gate, ws_context)?;
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, node = %config.node_id, bus = hub.bus.kind(), ws_engine = ?config.ws_engine, "listening");
    Ok(Running { addr, bootstrapped, hub, control, tls, store_socket, server: handle, task })
}

/// The HTTP server of `app` on the configured WebSocket engine (not yet running) and its
/// address.
fn build_server<F, I, S, B>(
    app: F,
    config: &Config,
    listener: std::net::TcpListener,
    tls: Option<&Arc<CertStore>>,
    gate: Arc<crate::edge::AddressGate>,
    ws_context: crate::upgrade::UpgradeContext,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, actix_http::Request>,
    S: actix_service::ServiceFactory<actix_http::Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as actix_service::Service<actix_http::Request>>::Future: 'static,
    S::Service: 'static,
    B: actix_web::body::MessageBody + 'static,
{
    Ok(match config.ws_engine {
        crate::config::WsEngine::Actix => {
            let server = HttpServer::new(app)
                .on_connect(move |io, data| gate.on_connect(io, data))
                .workers(config.workers)
                // Small frames must not wait for the peer's delayed ACK (Nagle): that stall
                // alone put the p99 at ~40 ms below saturation. Under load several frames still
                // leave in one write, because the HTTP/1 dispatcher drains every frame already
                // queued before it flushes.
                .tcp_nodelay(true)
                .disable_signals()
                .shutdown_timeout(5);
            let server = match tls {
                Some(store) => {
                    server.listen_rustls_0_23(listener, crate::tls::server_config(store.clone())?)?
                }
                None => server.listen(listener)?,
            };
            let addr =
                server.addrs().first().copied().ok_or_else(|| anyhow::anyhow!("bound to no address"))?;
            (server.run(), addr)
        }
        crate::config::WsEngine::Tungstenite => {
            let tls_config = tls.map(|store| crate::tls::server_config(store.clone())).transpose()?;
            crate::upgrade::serve(app, listener, tls_config, gate, config.workers, ws_context)?
        }
    })
}

/// Longest pause between two sweeps of expired envelopes.
pub const MAX_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Shortest pause between two sweeps.
pub const MIN_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Deletes envelopes past the retention, forever: every quarter of the retention (between
/// [`MIN_SWEEP_INTERVAL`] and [`MAX_SWEEP_INTERVAL`]), in bounded batches of
/// [`hush_store::MAX_EXPIRE_BATCH`] (one store write each) until a batch comes back short.
/// Every node of a cluster sweeps the shared store; a reference is released by exactly one.
/// Until the sweep reaches an envelope, `fetch` already leaves it out.
async fn sweep_expired(store: Arc<dyn Store>, retention: std::time::Duration) {
    let every = (retention / 4).clamp(MIN_SWEEP_INTERVAL, MAX_SWEEP_INTERVAL);
    let batch = hush_store::MAX_EXPIRE_BATCH;
    loop {
        tokio::time::sleep(every).await;
        let mut total = 0u64;
        loop {
            match store.expire(batch).await {
                Ok(n) => {
                    total += n;
                    if n < batch as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "expired envelopes not swept; retrying at the next sweep");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(envelopes = total, "deleted envelopes past the retention");
        }
    }
}

impl Running {
    /// The node's base URL: `https://ADDR` with TLS, else `http://ADDR`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.addr)
    }

    /// Reads the TLS certificate and key files again (SIGHUP). New handshakes get the new
    /// certificate; open connections keep theirs. A file that fails to load keeps the old
    /// certificate; the error says why. Without TLS there is nothing to reload.
    pub fn reload_tls(&self) -> Result<bool, crate::tls::TlsError> {
        match &self.tls {
            Some(store) => store.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Graceful stop: stop accepting, close every socket with 1001, drain the HTTP server.
    /// Every acknowledged write is already durable (each commit syncs), so nothing is lost.
    pub async fn stop(self) {
        let n = self.control.send(CloseAll).await.unwrap_or(0);
        tracing::info!(sockets = n, "shutting down");
        // Every device actor unregisters once it stopped (its close frame handed to its writer,
        // its acks stored): wait for that, bounded, instead of guessing a delay.
        let t0 = std::time::Instant::now();
        while !self.hub.registry.is_empty() && t0.elapsed() < MAX_DRAIN {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let left = self.hub.registry.len();
        if left == 0 {
            tracing::info!(sockets = n, ms = t0.elapsed().as_millis() as u64, "every connection drained");
        } else {
            tracing::warn!(
                sockets = left,
                "connections still open after the drain bound; closing them with the server"
            );
        }
        self.server.stop(true).await;
        let _ = self.task.await;
        drop(self.store_socket);
        self.hub.tree.stop();
        // Every socket and request is done: write the last-seen times recorded since the last
        // batch, then close the store file cleanly (no repair at the next start).
        self.hub.tenants.flush_seen(&*self.hub.store).await;
        self.hub.store.close().await;
        drop(self.hub);
    }
}

/// Runs a node until `shutdown` resolves, then stops it gracefully.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<Running> {
    let running = start(&config).await?;
    shutdown.await;
    Ok(running)
}
