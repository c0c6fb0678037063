//! `hush-actor-cost`: what one idle actor and one message cost in `actix` (the framework the
//! node uses today) and in `ractor` (the one issue 13 moves to), on this machine.
//!
//! For each framework, in a fresh process (`hush-actor-cost actix|ractor|ractor-1`; actix's
//! `System` runs on one thread):
//! - memory per idle actor: RSS (from /proc/self/statm) after spawning N actors that each hold
//!   one `u64` and wait, minus RSS before, divided by N;
//! - one-way message: M `cast`/`do_send` messages to one actor, then one round trip to be sure
//!   all were handled: ns per message;
//! - round trip: M `call`/`send().await` requests answered by the actor: ns per round trip.
//!
//! Run: `cargo run --release -p hush-actor-cost -- actix`, `... -- ractor` (multi-thread
//! runtime) and `... -- ractor-1` (one thread, like actix's `System`); one framework
//! per process, so the allocator's state of one does not count against the other).
#![allow(clippy::print_stdout)]

use std::time::Instant;

/// Idle actors for the memory figure.
const ACTORS: usize = 100_000;
/// Messages for the time figures.
const MESSAGES: u64 = 1_000_000;

fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).ok_or_else(|| anyhow::anyhow!("statm"))?.parse()?;
    Ok(pages * 4096)
}

fn report(framework: &str, per_actor: f64, one_way_ns: f64, round_trip_ns: f64) {
    println!(
        "{framework}: {per_actor:.0} bytes per idle actor ({ACTORS} actors), {one_way_ns:.0} ns per one-way message, {round_trip_ns:.0} ns per round trip ({MESSAGES} messages)"
    );
}

mod with_actix {
    use actix::prelude::*;

    pub struct Idle(pub u64);
    impl Actor for Idle {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u64")]
    pub struct Add(pub u64);

    impl Handler<Add> for Idle {
        type Result = u64;
        fn handle(&mut self, m: Add, _: &mut Context<Self>) -> u64 {
            self.0 = self.0.wrapping_add(m.0);
            self.0
        }
    }

    pub fn run() -> anyhow::Result<()> {
        let sys = actix::System::new();
        sys.block_on(async {
            let before = super::rss_bytes()?;
            let mut held = Vec::with_capacity(super::ACTORS);
            for i in 0..super::ACTORS {
                held.push(Idle(i as u64).start());
            }
            // Let every actor start and settle.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let per_actor = (super::rss_bytes()?.saturating_sub(before)) as f64 / super::ACTORS as f64;
            drop(held);
            let a = Idle(0).start();
            let t = super::Instant::now();
            for i in 0..super::MESSAGES {
                a.do_send(Add(i));
            }
            a.send(Add(0)).await?;
            let one_way = t.elapsed().as_nanos() as f64 / super::MESSAGES as f64;
            let t = super::Instant::now();
            for i in 0..super::MESSAGES {
                a.send(Add(i)).await?;
            }
            let round_trip = t.elapsed().as_nanos() as f64 / super::MESSAGES as f64;
            super::report("actix 0.13", per_actor, one_way, round_trip);
            Ok::<(), anyhow::Error>(())
        })
    }
}

mod with_ractor {
    use ractor::{call, Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

    pub struct Idle;

    pub enum Msg {
        Add(u64),
        Get(u64, RpcReplyPort<u64>),
    }

    impl Actor for Idle {
        type Msg = Msg;
        type State = u64;
        type Arguments = u64;

        async fn pre_start(&self, _: ActorRef<Msg>, start: u64) -> Result<u64, ActorProcessingErr> {
            Ok(start)
        }

        async fn handle(&self, _: ActorRef<Msg>, m: Msg, state: &mut u64) -> Result<(), ActorProcessingErr> {
            match m {
                Msg::Add(n) => *state = state.wrapping_add(n),
                Msg::Get(n, reply) => {
                    *state = state.wrapping_add(n);
                    let _ = reply.send(*state);
                }
            }
            Ok(())
        }
    }

    /// On a multi-thread runtime (as the node runs) or on one thread (as actix does).
    pub fn run(one_thread: bool) -> anyhow::Result<()> {
        let rt = if one_thread {
            tokio::runtime::Builder::new_current_thread().enable_all().build()?
        } else {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?
        };
        rt.block_on(async {
            let before = super::rss_bytes()?;
            let mut held = Vec::with_capacity(super::ACTORS);
            for i in 0..super::ACTORS {
                held.push(Actor::spawn(None, Idle, i as u64).await?);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let per_actor = (super::rss_bytes()?.saturating_sub(before)) as f64 / super::ACTORS as f64;
            for (a, h) in held {
                a.stop(None);
                h.await?;
            }
            let (a, _h) = Actor::spawn(None, Idle, 0).await?;
            let t = super::Instant::now();
            for i in 0..super::MESSAGES {
                a.cast(Msg::Add(i))?;
            }
            call!(a, Msg::Get, 0)?;
            let one_way = t.elapsed().as_nanos() as f64 / super::MESSAGES as f64;
            let t = super::Instant::now();
            for i in 0..super::MESSAGES {
                call!(a, Msg::Get, i)?;
            }
            let round_trip = t.elapsed().as_nanos() as f64 / super::MESSAGES as f64;
            let name = if one_thread { "ractor 0.15 (one thread)" } else { "ractor 0.15 (multi-thread)" };
            super::report(name, per_actor, one_way, round_trip);
            Ok::<(), anyhow::Error>(())
        })
    }
}

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("actix") => with_actix::run(),
        Some("ractor") => with_ractor::run(false),
        Some("ractor-1") => with_ractor::run(true),
        _ => anyhow::bail!("usage: hush-actor-cost actix|ractor|ractor-1"),
    }
}
