//! The bounded mailboxes of a connection's tasks: the device actor's, the session actor's and
//! the socket writer's frame queue.
//!
//! They are flume's channels: an empty one is a small shared struct whose queue is allocated by
//! the first message and grows only as far as the messages in flight. tokio's `mpsc` allocates
//! a block of 32 slots and a cache-padded channel state when it is made: with three per
//! connection that was 4.1 KB of an idle connection's 13.1 KB of heap (heaptrack of 10,000
//! idle connections, `benches/README.md`, issue 15, session 12).
//!
//! Receiving is cancel-safe (a message stays queued when a `recv_async` future is dropped
//! before it completes), which the actors' `select!` loops rely on.

pub use flume::{Receiver, Sender, TryRecvError, TrySendError};

/// A mailbox of at most `cap` messages.
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    flume::bounded(cap)
}

/// How many more messages `tx` takes now.
pub fn room<T>(tx: &Sender<T>) -> usize {
    tx.capacity().map_or(usize::MAX, |cap| cap.saturating_sub(tx.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_counts_down_and_a_full_mailbox_refuses() {
        let (tx, rx) = bounded(2);
        assert_eq!(room(&tx), 2);
        tx.try_send(1).unwrap();
        assert_eq!(room(&tx), 1);
        tx.try_send(2).unwrap();
        assert_eq!(room(&tx), 0);
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(room(&tx), 1);
        drop(rx);
        assert!(tx.is_disconnected());
        assert!(matches!(tx.try_send(4), Err(TrySendError::Disconnected(4))));
    }

    #[test]
    fn a_receive_dropped_after_its_wake_loses_nothing() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let (tx, rx) = bounded::<u32>(4);
        let mut cx = Context::from_waker(Waker::noop());
        // A receive that waits, is woken by a send and is dropped before it is polled again,
        // as the losing arm of a select! is.
        let mut waiting = Box::pin(rx.recv_async());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        tx.try_send(7).unwrap();
        drop(waiting);
        let mut next = Box::pin(rx.recv_async());
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
    }
}
