//! The audit log's vocabulary (types only, below every domain module): who acted.

use hush_protocol::ids::UserId;

/// Who performs an action (for the audit log).
#[derive(Clone, Debug, Default)]
pub struct Initiator {
    /// The acting user (or the user name tried, for a failed login).
    pub user: Option<UserId>,
    /// The acting session.
    pub session: Option<String>,
    /// Client address.
    pub ip: Option<String>,
}
