//! `hush-revoke`: time from one admin call that revokes many live sessions to the close of each
//! of their sockets, with the sockets spread over several nodes.
//!
//! Creates `--sessions` users (`<prefix>-<i>`, one device each) if absent, logs each in, opens
//! its socket on node `i % N` of `--servers`, waits until every socket is up to date, then calls
//! `DELETE /v1/admin/sessions/active` on the first node and records, per socket, the time from
//! the call to its `LoggedOut` frame and to its close. Prints p50/p99/max. Traffic goes only to
//! the given servers (use loopback addresses).
//!
//! A socket that has read its close frame ends its side of the connection at once (the node
//! sees what it would see from a real device), but the connection is freed only after every
//! socket is measured: 1,000 devices share this process's one core, and freeing each one (its
//! file descriptor, buffers and HTTP client) before the next close frame is read was half of
//! that core during the closes, which the node's own time was then measured with
//! (`benches/README.md`, session 15).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hush_benches::{admin_login, admin_step_up, login_users, totp_file};
use hush_client::{Client, ClientError};
use hush_protocol::api::Secret;
use hush_protocol::ids::TenantId;
use hush_protocol::wire::ServerFrame;

#[derive(Parser)]
#[command(name = "hush-revoke", about = "Revocation latency across nodes")]
struct Args {
    /// Comma-separated node URLs; sockets are spread over them round-robin.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// The bootstrap administrator's password.
    #[arg(long, env = "HUSH_ADMIN_PASSWORD")]
    admin_password: String,
    /// Tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Live sessions to revoke.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// User name prefix.
    #[arg(long, default_value = "revoke")]
    prefix: String,
    /// Concurrent logins during setup (Argon2id is costly).
    #[arg(long, default_value_t = 8)]
    login_concurrency: usize,
    /// Sockets speak JSON text frames (`hush.json`) instead of postcard.
    #[arg(long)]
    json: bool,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.servers.is_empty() {
        bail!("--servers is required");
    }
    let tenant = TenantId::new(&args.tenant)?;
    let first = Client::new(&args.servers[0]);
    let admin = admin_login(&first, &tenant, &args.admin_password, "revoke-bench").await?;
    // Revoking every session is a sensitive action: the administrator steps up first (it
    // enrols TOTP on the first run; the secret stays in a 0600 file under /tmp).
    admin_step_up(&admin, &totp_file(&args.servers[0])).await.context("administrator step-up")?;
    let password = Secret::new("revoke-bench-password");
    let t_setup = Instant::now();
    let sessions =
        login_users(&admin, &first, &tenant, &args.prefix, args.sessions, &password, args.login_concurrency)
            .await?;
    eprintln!("{} sessions logged in in {:.1} s", sessions.len(), t_setup.elapsed().as_secs_f64());

    // Open every socket on its node and wait until each is up to date.
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.sessions);
    let start = Arc::new(tokio::sync::OnceCell::<Instant>::new());
    let mut waiters = Vec::new();
    let json = args.json;
    // A node admits at most 256 unfinished handshakes per client address (slow-client
    // protection): open the sockets 64 at a time, as hush-load does.
    let handshakes = Arc::new(tokio::sync::Semaphore::new(64));
    for (i, s) in sessions.iter().enumerate() {
        let node = &args.servers[i % args.servers.len()];
        let s = Client::new(node).resume(s.login_info().clone());
        let ready_tx = ready_tx.clone();
        let start = start.clone();
        let handshakes = handshakes.clone();
        waiters.push(tokio::spawn(async move {
            let permit = handshakes.acquire_owned().await?;
            let mut conn = s.connect_encoded(json).await?;
            drop(permit);
            let mut logged_out = None;
            loop {
                match conn.next_frame().await {
                    Ok(ServerFrame::QueueEmpty) => {
                        let _ = ready_tx.send(()).await;
                    }
                    Ok(ServerFrame::LoggedOut { .. }) => {
                        logged_out = start.get().map(|t| t.elapsed());
                    }
                    Ok(ServerFrame::Deliver(e)) => {
                        let _ = conn.ack(vec![e.seq]).await;
                    }
                    Ok(_) => {}
                    Err(ClientError::Closed(reason)) => {
                        let closed = start.get().map(|t| t.elapsed());
                        // The node sees this device end its side at once, as it would; the
                        // connection itself is freed after every socket is measured (see above).
                        let _ = conn.end_stream().await;
                        return Ok::<_, anyhow::Error>((logged_out, closed, reason, conn));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..args.sessions {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await.context("sockets not ready")?;
    }
    eprintln!("{} sockets up on {} nodes", args.sessions, args.servers.len());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    let _ = start.set(t0);
    let revoked = admin.admin_revoke_all_active().await?;
    let call = t0.elapsed();

    let mut closes = Vec::new();
    let mut logged = Vec::new();
    let mut wrong_code = 0;
    let mut ended = Vec::with_capacity(waiters.len());
    for w in waiters {
        let (lo, cl, reason, conn) =
            tokio::time::timeout(Duration::from_secs(30), w).await.context("a socket never closed")???;
        ended.push(conn);
        if !reason.as_deref().is_some_and(|r| r.starts_with("4401")) {
            wrong_code += 1;
        }
        if let Some(d) = cl {
            closes.push(d.as_secs_f64() * 1e3);
        }
        if let Some(d) = lo {
            logged.push(d.as_secs_f64() * 1e3);
        }
    }
    drop(ended);
    closes.sort_by(f64::total_cmp);
    logged.sort_by(f64::total_cmp);
    println!(
        "revoked {revoked} sessions over {} nodes; call returned in {:.1} ms",
        args.servers.len(),
        call.as_secs_f64() * 1e3
    );
    println!(
        "call -> LoggedOut: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={})",
        pct(&logged, 0.5),
        pct(&logged, 0.99),
        logged.last().copied().unwrap_or(f64::NAN),
        logged.len()
    );
    println!(
        "call -> close:     p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n={}, not 4401: {wrong_code})",
        pct(&closes, 0.5),
        pct(&closes, 0.99),
        closes.last().copied().unwrap_or(f64::NAN),
        closes.len()
    );
    Ok(())
}
