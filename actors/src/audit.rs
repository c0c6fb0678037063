//! The audit log's vocabulary (types only, below every domain module): who acted and what
//! they did.

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

/// What an audit record says happened. Stored and filtered by its name ([`AuditAction::as_str`]),
/// which is part of the API: the names never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// `account.lock`: An account locked after repeated failed logins.
    AccountLock,
    /// `account.unlock`: An admin unlocked an account.
    AccountUnlock,
    /// `device.register`: A device registration at login.
    DeviceRegister,
    /// `device.remove`: A device removed (its sessions end).
    DeviceRemove,
    /// `group.add`: Members added to a group.
    GroupAdd,
    /// `group.create`: A group created.
    GroupCreate,
    /// `group.remove`: A member removed from a group.
    GroupRemove,
    /// `login`: A password login (denied, one-time password used, ok).
    Login,
    /// `mfa.backup`: An MFA answer with a backup code.
    MfaBackup,
    /// `mfa.backup.regenerate`: New backup codes generated.
    MfaBackupRegenerate,
    /// `mfa.challenge`: An MFA challenge issued.
    MfaChallenge,
    /// `mfa.enforce`: MFA enforced for one user.
    MfaEnforce,
    /// `mfa.enforce_all`: MFA enforced for every user of the tenant.
    MfaEnforceAll,
    /// `mfa.policy.update`: The tenant's MFA policy changed.
    MfaPolicyUpdate,
    /// `mfa.reset`: A user's MFA reset by an admin.
    MfaReset,
    /// `mfa.step_up`: A step-up verification asked for an action.
    MfaStepUp,
    /// `mfa.totp.confirm`: A TOTP enrolment confirmed (or its code refused).
    MfaTotpConfirm,
    /// `mfa.totp.disable`: TOTP disabled.
    MfaTotpDisable,
    /// `mfa.totp.enroll`: A TOTP enrolment started.
    MfaTotpEnroll,
    /// `mfa.trust.add`: A device trusted for MFA.
    MfaTrustAdd,
    /// `mfa.trust.revoke`: A trusted device revoked.
    MfaTrustRevoke,
    /// `mfa.trusted_device`: A login passed MFA on a trusted device.
    MfaTrustedDevice,
    /// `mfa.verify`: An MFA answer with a TOTP code.
    MfaVerify,
    /// `password.change`: A user changed their password.
    PasswordChange,
    /// `password.reset`: An admin reset a user's password.
    PasswordReset,
    /// `session.expire`: A session expired (idle or absolute limit).
    SessionExpire,
    /// `session.revoke`: A session revoked (by its user, an admin, or a security event).
    SessionRevoke,
    /// `tenant.session_policy`: The tenant's session lifetimes changed.
    TenantSessionPolicy,
    /// `user.create`: A user created.
    UserCreate,
}

impl AuditAction {
    /// Every action, in name order.
    pub const ALL: [AuditAction; 29] = [
        AuditAction::AccountLock,
        AuditAction::AccountUnlock,
        AuditAction::DeviceRegister,
        AuditAction::DeviceRemove,
        AuditAction::GroupAdd,
        AuditAction::GroupCreate,
        AuditAction::GroupRemove,
        AuditAction::Login,
        AuditAction::MfaBackup,
        AuditAction::MfaBackupRegenerate,
        AuditAction::MfaChallenge,
        AuditAction::MfaEnforce,
        AuditAction::MfaEnforceAll,
        AuditAction::MfaPolicyUpdate,
        AuditAction::MfaReset,
        AuditAction::MfaStepUp,
        AuditAction::MfaTotpConfirm,
        AuditAction::MfaTotpDisable,
        AuditAction::MfaTotpEnroll,
        AuditAction::MfaTrustAdd,
        AuditAction::MfaTrustRevoke,
        AuditAction::MfaTrustedDevice,
        AuditAction::MfaVerify,
        AuditAction::PasswordChange,
        AuditAction::PasswordReset,
        AuditAction::SessionExpire,
        AuditAction::SessionRevoke,
        AuditAction::TenantSessionPolicy,
        AuditAction::UserCreate,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::AccountLock => "account.lock",
            AuditAction::AccountUnlock => "account.unlock",
            AuditAction::DeviceRegister => "device.register",
            AuditAction::DeviceRemove => "device.remove",
            AuditAction::GroupAdd => "group.add",
            AuditAction::GroupCreate => "group.create",
            AuditAction::GroupRemove => "group.remove",
            AuditAction::Login => "login",
            AuditAction::MfaBackup => "mfa.backup",
            AuditAction::MfaBackupRegenerate => "mfa.backup.regenerate",
            AuditAction::MfaChallenge => "mfa.challenge",
            AuditAction::MfaEnforce => "mfa.enforce",
            AuditAction::MfaEnforceAll => "mfa.enforce_all",
            AuditAction::MfaPolicyUpdate => "mfa.policy.update",
            AuditAction::MfaReset => "mfa.reset",
            AuditAction::MfaStepUp => "mfa.step_up",
            AuditAction::MfaTotpConfirm => "mfa.totp.confirm",
            AuditAction::MfaTotpDisable => "mfa.totp.disable",
            AuditAction::MfaTotpEnroll => "mfa.totp.enroll",
            AuditAction::MfaTrustAdd => "mfa.trust.add",
            AuditAction::MfaTrustRevoke => "mfa.trust.revoke",
            AuditAction::MfaTrustedDevice => "mfa.trusted_device",
            AuditAction::MfaVerify => "mfa.verify",
            AuditAction::PasswordChange => "password.change",
            AuditAction::PasswordReset => "password.reset",
            AuditAction::SessionExpire => "session.expire",
            AuditAction::SessionRevoke => "session.revoke",
            AuditAction::TenantSessionPolicy => "tenant.session_policy",
            AuditAction::UserCreate => "user.create",
        }
    }

    /// The action with this stored name.
    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session ended, or why its socket was closed: the `reason` of the client's `LoggedOut`
/// frame and of the stored revocation. The names are part of the protocol and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// `logout`: the session's own logout, or a login that could not complete.
    Logout,
    /// `revoked_by_user`: the user revoked it from another session.
    RevokedByUser,
    /// `revoked_by_admin`: an admin revoked it.
    RevokedByAdmin,
    /// `device_removed`: its device was removed.
    DeviceRemoved,
    /// `password_changed`: the user changed the password from another session.
    PasswordChanged,
    /// `password_reset`: an admin reset the user's password.
    PasswordReset,
    /// `expired`: past the tenant's idle or absolute limit.
    Expired,
    /// `mfa_required`: not a revocation; the session stays but must pass MFA before a socket.
    MfaRequired,
}

impl RevocationReason {
    /// Every reason.
    pub const ALL: [RevocationReason; 8] = [
        RevocationReason::Logout,
        RevocationReason::RevokedByUser,
        RevocationReason::RevokedByAdmin,
        RevocationReason::DeviceRemoved,
        RevocationReason::PasswordChanged,
        RevocationReason::PasswordReset,
        RevocationReason::Expired,
        RevocationReason::MfaRequired,
    ];

    /// The name clients and the store see.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Logout => "logout",
            RevocationReason::RevokedByUser => "revoked_by_user",
            RevocationReason::RevokedByAdmin => "revoked_by_admin",
            RevocationReason::DeviceRemoved => "device_removed",
            RevocationReason::PasswordChanged => "password_changed",
            RevocationReason::PasswordReset => "password_reset",
            RevocationReason::Expired => "expired",
            RevocationReason::MfaRequired => "mfa_required",
        }
    }

    /// The stored revocation for this reason, now.
    pub fn at(self, at_ms: u64) -> hush_store::Revocation {
        hush_store::Revocation { at_ms, reason: self.as_str().to_owned() }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{AuditAction, RevocationReason};

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for a in AuditAction::ALL {
            assert!(seen.insert(a.as_str()), "{a} twice");
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("session.revoked"), None);
        let reasons: std::collections::HashSet<_> =
            RevocationReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(reasons.len(), RevocationReason::ALL.len());
    }

    #[test]
    fn the_operations_guide_lists_every_action() {
        let guide = include_str!("../../docs/operations.md");
        let section = guide.split("## Audit actions").nth(1).expect("section in docs/operations.md");
        let section = section.split("\n## ").next().unwrap_or_default();
        let listed: Vec<&str> =
            section.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next()).collect();
        let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(listed, names, "docs/operations.md, \"Audit actions\", against AuditAction::ALL");
    }
}
