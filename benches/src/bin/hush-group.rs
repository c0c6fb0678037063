//! `hush-group`: one message to a large group, time until the last member has it.
//!
//! Creates `--members` users (`<prefix>-<i>`, one device each) if absent, logs each in, puts
//! them all in one group created by member 0, opens every member's socket and drains its queue.
//! Then, `--rounds` times, member 0 sends one `GroupSend` and the time from just before the
//! frame is written to the moment the LAST of the other members' sockets has read its `Deliver`
//! is recorded (and, separately, the time to the sender's `Accepted`). Rounds do not overlap: the
//! next starts `--pause-ms` after every member has the previous one. Every delivery is acked,
//! as a client would. Prints p50/p99/max of both. Traffic goes only to the given server.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hush_benches::{admin_login, admin_step_up, login_users, totp_file};
use hush_client::Client;
use hush_protocol::api::Secret;
use hush_protocol::ids::{TenantId, UserId};
use hush_protocol::wire::{ClientFrame, GroupSendMessage, Payload, ServerFrame};

#[derive(Parser)]
#[command(
    name = "hush-group",
    about = "Group fan-out latency: one message, time until the last member has it"
)]
struct Args {
    /// Node URL.
    #[arg(long)]
    server: String,
    /// The bootstrap administrator's password.
    #[arg(long, env = "HUSH_ADMIN_PASSWORD")]
    admin_password: String,
    /// Tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Group members, the sender included (each with one device, all online).
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Messages sent (measured rounds).
    #[arg(long, default_value_t = 500)]
    rounds: usize,
    /// Unmeasured rounds first.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Ciphertext bytes per message.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Pause between rounds, ms.
    #[arg(long, default_value_t = 20)]
    pause_ms: u64,
    /// User name prefix.
    #[arg(long, default_value = "grp")]
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

/// What the receivers report: for the current round, how many have it and the latest time.
struct Round {
    current: AtomicU64,
    got: AtomicU64,
    last_ns: AtomicU64,
    done: tokio::sync::Notify,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.members < 2 {
        bail!("--members must be at least 2");
    }
    let tenant = TenantId::new(&args.tenant)?;
    let client = Client::new(&args.server);
    let admin = admin_login(&client, &tenant, &args.admin_password, "group-bench").await?;
    // An administrator with TOTP on (hush-revoke enrols it) logs in MFA-pending: answer the
    // challenge with the secret hush-revoke keeps, as it does.
    if admin.login_info().mfa.as_ref().is_some_and(|m| m.state == hush_protocol::api::MfaState::MfaPending) {
        admin_step_up(&admin, &totp_file(&args.server)).await.context("administrator MFA")?;
    }
    let password = Secret::new("group-bench-password");
    let t_setup = Instant::now();
    let sessions =
        login_users(&admin, &client, &tenant, &args.prefix, args.members, &password, args.login_concurrency)
            .await?;
    let others: Vec<UserId> = sessions[1..].iter().map(|s| s.user().clone()).collect();
    let group = sessions[0].create_group("bench", &others).await.context("create group")?;
    eprintln!(
        "setup: {} members logged in, group {} created in {:.1} s",
        args.members,
        group.id,
        t_setup.elapsed().as_secs_f64()
    );

    let round = Arc::new(Round {
        current: AtomicU64::new(u64::MAX),
        got: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        done: tokio::sync::Notify::new(),
    });
    let epoch0 = Instant::now();
    let receivers = (args.members - 1) as u64;
    let mut ready = Vec::new();
    let json = args.json;
    for s in &sessions[1..] {
        let mut conn = s.connect_encoded(json).await.context("connect")?;
        let round = round.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        ready.push(rx);
        tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                let f = match conn.next_frame().await {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("receiver: {e}");
                        return;
                    }
                };
                match f {
                    ServerFrame::Deliver(env) => {
                        if env.group.is_some() && env.content.0.len() >= 8 {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&env.content.0[..8]);
                            if u64::from_le_bytes(b) == round.current.load(Ordering::Acquire) {
                                let ns = epoch0.elapsed().as_nanos() as u64;
                                round.last_ns.fetch_max(ns, Ordering::AcqRel);
                                if round.got.fetch_add(1, Ordering::AcqRel) + 1 == receivers {
                                    round.done.notify_one();
                                }
                            }
                        }
                        let _ = conn.ack(vec![env.seq]).await;
                    }
                    ServerFrame::QueueEmpty => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    for r in ready {
        r.await.context("a receiver did not drain its queue")?;
    }
    let mut sender = sessions[0].connect_encoded(args.json).await.context("sender connect")?;
    loop {
        if let ServerFrame::QueueEmpty = sender.next_frame().await? {
            break;
        }
    }
    eprintln!("{} receivers online; sending {} + {} rounds", receivers, args.warmup, args.rounds);

    let mut last_ms = Vec::with_capacity(args.rounds);
    let mut accepted_ms = Vec::with_capacity(args.rounds);
    for r in 0..(args.warmup + args.rounds) as u64 {
        round.got.store(0, Ordering::Release);
        round.last_ns.store(0, Ordering::Release);
        round.current.store(r, Ordering::Release);
        let mut content = vec![0x5a; args.size.max(8)];
        content[..8].copy_from_slice(&r.to_le_bytes());
        let msg = GroupSendMessage {
            id: uuid::Uuid::new_v4(),
            group: group.id.clone(),
            epoch: group.epoch,
            content: Payload(content),
            content_type: hush_protocol::wire::ContentType::SenderKey,
        };
        let t0 = epoch0.elapsed().as_nanos() as u64;
        let notified = round.done.notified();
        sender.send_frame(&ClientFrame::GroupSend(msg)).await?;
        let acc = loop {
            match sender.next_frame().await? {
                ServerFrame::Accepted { .. } => break epoch0.elapsed().as_nanos() as u64,
                ServerFrame::Deliver(env) => sender.ack(vec![env.seq]).await?,
                f @ (ServerFrame::StaleEpoch { .. } | ServerFrame::Error { .. }) => bail!("refused: {f:?}"),
                _ => {}
            }
        };
        // Exactly one permit per round: the receiver that completes it calls `notify_one`.
        if tokio::time::timeout(Duration::from_secs(10), notified).await.is_err() {
            bail!(
                "round {r}: only {} of {receivers} members got the message within 10 s",
                round.got.load(Ordering::Acquire)
            );
        }
        let last = round.last_ns.load(Ordering::Acquire);
        if r >= args.warmup as u64 {
            last_ms.push(last.saturating_sub(t0) as f64 / 1e6);
            accepted_ms.push(acc.saturating_sub(t0) as f64 / 1e6);
        }
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    last_ms.sort_by(f64::total_cmp);
    accepted_ms.sort_by(f64::total_cmp);
    println!(
        "group of {} (1 device each, all online), {} B messages, {} rounds:",
        args.members, args.size, args.rounds
    );
    println!(
        "  last member has it: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(&last_ms, 0.5),
        pct(&last_ms, 0.99),
        pct(&last_ms, 1.0)
    );
    println!(
        "  sender's Accepted:  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        pct(&accepted_ms, 0.5),
        pct(&accepted_ms, 0.99),
        pct(&accepted_ms, 1.0)
    );
    Ok(())
}
