//! The types of groups (below the group actor and the hub): records, errors, callers, changes.

use hush_protocol::ids::{DeviceAddress, GroupId, TenantId, UserId};
use hush_store::StoreError;
use serde::{Deserialize, Serialize};

use crate::audit::Initiator;

/// Errors of the group operations.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No such group in the caller's tenant, or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The caller sees the group but may not make this change.
    #[error("forbidden")]
    Forbidden,
    /// The request was refused (bad name, unknown user, too many members).
    #[error("{0}")]
    Invalid(String),
    /// The change kept losing compare-and-set races; nothing was changed. Retry.
    #[error("group busy; retry")]
    Contended,
    /// The store failed.
    #[error("store unavailable")]
    Store(#[from] StoreError),
    /// The group's actor could not be reached (node at its actor limit or stopping).
    #[error("group unavailable")]
    Unavailable,
}

/// A stored group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Its id.
    pub id: GroupId,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its name.
    pub name: String,
    /// Members, sorted.
    pub members: Vec<UserId>,
    /// Group administrators (members), sorted.
    pub admins: Vec<UserId>,
    /// Bumped by every removal.
    pub epoch: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A record with its store version.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The record.
    pub rec: GroupRecord,
    /// Its compare-and-set version.
    pub version: u64,
}

/// How much one device has used its current sender key for one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderKeyUse {
    /// The epoch the count belongs to (a new epoch restarts it).
    pub epoch: u64,
    /// First message sent with this key, ms since the Unix epoch.
    pub since_ms: u64,
    /// Messages sent with this key.
    pub count: u64,
}

/// Who asks for a change.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The caller's device (tenant, user, device).
    pub device: DeviceAddress,
    /// Whether the caller administers the tenant.
    pub tenant_admin: bool,
    /// For the audit log.
    pub initiator: Initiator,
}

impl Caller {
    pub(crate) fn sees(&self, rec: &GroupRecord) -> bool {
        self.tenant_admin || rec.members.contains(&self.device.user)
    }
    pub(crate) fn manages(&self, rec: &GroupRecord) -> bool {
        self.tenant_admin || rec.admins.contains(&self.device.user)
    }
}

/// A membership change, applied by the group's actor.
#[derive(Clone, Debug)]
pub enum Change {
    /// Add users.
    Add(Vec<UserId>),
    /// Remove a member (or leave).
    Remove(UserId),
}
