//! The local registry: which devices are connected to this node and how to reach their actors.
//!
//! One entry per device address. A second connection for the same device replaces the entry
//! and the first connection is told to close with 4409 (displaced).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use actix::prelude::*;
use hush_protocol::ids::DeviceAddress;

use crate::device::{Deliver, Disconnect, Notify, Resync};

/// How to reach one live connection.
#[derive(Clone)]
pub struct Conn {
    /// Unique per connection on this node.
    pub id: u64,
    /// The session the socket authenticated with.
    pub session_id: String,
    /// Envelope delivery (bounded mailbox: `try_send` only).
    pub deliver: Recipient<Deliver>,
    /// Asks the connection to close.
    pub disconnect: Recipient<Disconnect>,
    /// Asks the connection to re-read its queue.
    pub resync: Recipient<Resync>,
    /// Advisory frames for the device (`PreKeysLow`, `RotateKeys`; bounded mailbox: `try_send`).
    pub notify: Recipient<Notify>,
}

/// Devices connected to this node.
#[derive(Default)]
pub struct Registry {
    inner: RwLock<HashMap<DeviceAddress, Conn>>,
    next_id: AtomicU64,
}

impl Registry {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a connection; returns the one it displaced, if any.
    pub fn register(&self, addr: DeviceAddress, conn: Conn) -> Option<Conn> {
        match self.inner.write() {
            Ok(mut m) => m.insert(addr, conn),
            Err(p) => p.into_inner().insert(addr, conn),
        }
    }

    /// Removes the entry if it still belongs to connection `id`; true if it did.
    pub fn unregister(&self, addr: &DeviceAddress, id: u64) -> bool {
        let mut m = match self.inner.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.get(addr).is_some_and(|c| c.id == id) {
            m.remove(addr);
            true
        } else {
            false
        }
    }

    /// The live connection of a device on this node.
    pub fn get(&self, addr: &DeviceAddress) -> Option<Conn> {
        match self.inner.read() {
            Ok(m) => m.get(addr).cloned(),
            Err(p) => p.into_inner().get(addr).cloned(),
        }
    }

    /// Every live connection with its device (for shutdown and resync).
    pub fn all(&self) -> Vec<(DeviceAddress, Conn)> {
        let m = match self.inner.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.iter().map(|(a, c)| (a.clone(), c.clone())).collect()
    }

    /// Number of registered devices.
    pub fn len(&self) -> usize {
        match self.inner.read() {
            Ok(m) => m.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    /// True when no device is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
