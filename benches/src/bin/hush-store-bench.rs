//! Write-path benchmark of the embedded store (`hush_store::embedded::EmbeddedStore`).
//!
//! `--tasks` concurrent tasks, each one device, loop: enqueue one envelope of `--payload` bytes
//! to its device, then ack it (two separate write jobs, as the node does). Every write waits for
//! its group commit (fsync). Reports jobs/s, jobs per commit, mean commit latency (from the
//! store's own `CommitStats`) and the enqueue/ack call latencies. `--backlog` pre-fills that
//! many envelopes which are never acked, to measure with a larger queue B-tree.
//!
//! ```text
//! hush-store-bench --dir /work/tmp --tasks 1000 --payload 256 --warmup 2 --duration 10
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hdrhistogram::Histogram;
use hush_protocol::ids::{DeviceAddress, DeviceId, TenantId, UserId};
use hush_protocol::wire::{Envelope, Payload};
use hush_store::embedded::EmbeddedStore;
use hush_store::{NewEnvelope, QueueStore, StoreStats};

#[derive(Parser, Debug)]
struct Args {
    /// Folder for the temporary store file (use the disk under test).
    #[arg(long, default_value = "/work/tmp")]
    dir: std::path::PathBuf,
    /// Concurrent enqueue+ack loops (one device each).
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// Payload bytes per envelope.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Envelopes queued before the run and never acked (spread over the devices).
    #[arg(long, default_value_t = 0)]
    backlog: usize,
    /// Drain the backlog meanwhile: every N-th ack of a task also acks its device's oldest
    /// backlog envelope (one ack job, two seqs), as a node draining a queue after overload
    /// does; 0 = never.
    #[arg(long, default_value_t = 0)]
    drain: u64,
}

fn envelope(to: &DeviceAddress, from: &UserId, payload: usize, i: u64) -> NewEnvelope {
    NewEnvelope {
        to: to.clone(),
        envelope: Envelope {
            seq: 0,
            id: uuid::Uuid::from_u128(u128::from(i) + 1),
            from: from.clone(),
            from_device: DeviceId::PRIMARY,
            timestamp_ms: hush_store::now_ms() + i,
            sync: false,
            content: Payload(vec![(i % 251) as u8; payload]),
            event: None,
            group: None,
            content_type: hush_protocol::wire::ContentType::Ciphertext,
        },
    }
}

#[derive(Default)]
struct Lat {
    enqueue: Option<Histogram<u64>>,
    ack: Option<Histogram<u64>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.join(format!("store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = EmbeddedStore::open(&dir.join("hush.redb")).context("open store")?;
    let tenant = TenantId::new("default")?;
    let addrs: Vec<DeviceAddress> = (0..args.tasks)
        .map(|i| Ok(DeviceAddress::new(tenant.clone(), UserId::new(format!("load-{i}"))?, DeviceId::PRIMARY)))
        .collect::<anyhow::Result<_>>()?;
    let from = UserId::new("load-sender")?;
    if args.backlog > 0 {
        let mut i = 0u64;
        while (i as usize) < args.backlog {
            let chunk: Vec<NewEnvelope> = (0..1000.min(args.backlog - i as usize))
                .map(|k| envelope(&addrs[(i as usize + k) % addrs.len()], &from, args.payload, i + k as u64))
                .collect();
            i += chunk.len() as u64;
            store.enqueue(chunk).await?;
        }
        println!("backlog: {} envelopes queued", store.depth());
    }
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (t, addr) in addrs.iter().enumerate() {
        let store = store.clone();
        let addr = addr.clone();
        let from = from.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let payload = args.payload;
        let drain = args.drain;
        handles.push(tokio::spawn(async move {
            let mut lat = Lat {
                enqueue: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
                ack: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            };
            let mut i = (t as u64) << 32;
            let mut old: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
            if drain > 0 {
                let mut after = 0;
                loop {
                    let page = store.fetch(&addr, after, 1024).await?;
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    old.extend(page.iter().map(|e| e.seq));
                }
            }
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let out = store.enqueue(vec![envelope(&addr, &from, payload, i)]).await?;
                let t1 = Instant::now();
                let mut seqs: Vec<u64> = out.iter().map(|e| e.seq).collect();
                if drain > 0 && i % drain == 0 {
                    seqs.extend(old.pop_front());
                }
                store.ack(&addr, seqs).await?;
                let t2 = Instant::now();
                i += 1;
                if measuring.load(Ordering::Relaxed) {
                    if let Some(h) = lat.enqueue.as_mut() {
                        let _ = h.record((t1 - t0).as_micros() as u64);
                    }
                    if let Some(h) = lat.ack.as_mut() {
                        let _ = h.record((t2 - t1).as_micros() as u64);
                    }
                }
            }
            anyhow::Ok(lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let s0 = store.commit_stats();
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let s1 = store.commit_stats();
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut enq = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ack = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for h in handles {
        let lat = h.await??;
        if let Some(e) = lat.enqueue {
            enq.add(e)?;
        }
        if let Some(a) = lat.ack {
            ack.add(a)?;
        }
    }
    let commits = s1.commits - s0.commits;
    let jobs = s1.jobs - s0.jobs;
    let sum_us = s1.sum_us - s0.sum_us;
    let mean_commit_ms = if commits > 0 { sum_us as f64 / commits as f64 / 1000.0 } else { 0.0 };
    let busy = sum_us as f64 / 1e6 / secs;
    println!(
"tasks {} payload {} B backlog {} drain 1/{}: {:.0} jobs/s ({:.0} msgs/s), {} commits, {:.0} jobs/commit, \
         commit mean {:.2} ms, writer busy {:.0}%, {:.1} us/job",
        args.tasks,
        args.payload,
        args.backlog,
        args.drain,
        jobs as f64 / secs,
        jobs as f64 / secs / 2.0,
        commits,
        if commits > 0 { jobs as f64 / commits as f64 } else { 0.0 },
        mean_commit_ms,
        busy * 100.0,
        if jobs > 0 { sum_us as f64 / jobs as f64 } else { 0.0 },
    );
    println!(
        "enqueue p50/p99/max {:.2}/{:.2}/{:.2} ms, ack p50/p99/max {:.2}/{:.2}/{:.2} ms, queue depth at end {}",
        enq.value_at_quantile(0.5) as f64 / 1000.0,
        enq.value_at_quantile(0.99) as f64 / 1000.0,
        enq.max() as f64 / 1000.0,
        ack.value_at_quantile(0.5) as f64 / 1000.0,
        ack.value_at_quantile(0.99) as f64 / 1000.0,
        ack.max() as f64 / 1000.0,
        store.depth(),
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
