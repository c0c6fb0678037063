//! A dedicated pool of [`PASSWORD_HASH_CONCURRENCY`] threads for Argon2id.
//!
//! Argon2id allocates 19 MiB per hash. On tokio's blocking pool those allocations land on
//! whichever of its (up to 512) threads runs them, and the allocator keeps a per-thread arena
//! of that size around: a node that had hashed 2,000 passwords sat at 2.5 GB RSS. Two fixed
//! threads keep at most two such arenas, and the bounded queue makes excess logins wait.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::limits::{PASSWORD_HASH_CONCURRENCY, PASSWORD_HASH_QUEUE};

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads; jobs beyond [`PASSWORD_HASH_QUEUE`] waiting are refused (busy).
pub struct HashPool {
    jobs: SyncSender<Job>,
}

impl HashPool {
    /// Starts the threads.
    pub fn new() -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(PASSWORD_HASH_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..PASSWORD_HASH_CONCURRENCY {
            let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
            std::thread::Builder::new().name(format!("hush-argon2-{i}")).spawn(move || loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(p) => p.into_inner().recv(),
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            })?;
        }
        Ok(Self { jobs: tx })
    }

    /// Runs `f` on a hashing thread; `None` if the queue is full or the pool stopped.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.try_send(job).ok()?;
        rx.await.ok()
    }
}
