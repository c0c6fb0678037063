//! MFA administration: the tenant's policy, users' MFA status, enforcing and resetting a
//! user's factor.

use std::sync::Arc;

use hush_protocol::api::{Enforced, MfaPolicy, UserMfaStatusList};
use hush_protocol::ids::{TenantId, UserId};

use super::{ControlError, Who};
use crate::hub::Hub;
use crate::limits::MAX_PAGE;
use crate::mfa;

/// The tenant's MFA policy.
pub struct GetMfaPolicy {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
}

pub(super) async fn get_policy(hub: &Arc<Hub>, msg: GetMfaPolicy) -> Result<MfaPolicy, ControlError> {
    Ok(mfa::stored_policy(hub, &msg.tenant).await?.policy)
}

/// Replaces the tenant's MFA policy.
pub struct SetMfaPolicy {
    /// Who asks.
    pub admin: Who,
    /// The new policy.
    pub policy: MfaPolicy,
}

pub(super) async fn set_policy(hub: &Arc<Hub>, msg: SetMfaPolicy) -> Result<MfaPolicy, ControlError> {
    Ok(mfa::set_policy(hub, &msg.admin.who, msg.policy, msg.admin.ip).await?)
}

/// A page of the tenant's users with their MFA status.
pub struct UsersMfaStatus {
    /// The tenant (the administrator's own).
    pub tenant: TenantId,
    /// Start after this name.
    pub after: Option<UserId>,
    /// Page size, capped at [`MAX_PAGE`].
    pub limit: usize,
}

pub(super) async fn users_status(
    hub: &Arc<Hub>,
    msg: UsersMfaStatus,
) -> Result<UserMfaStatusList, ControlError> {
    let limit = msg.limit.clamp(1, MAX_PAGE);
    let users = mfa::users_status(hub, &msg.tenant, msg.after.as_ref(), limit).await?;
    let next = (users.len() == limit).then(|| users.last().map(|u| u.user.to_string())).flatten();
    Ok(UserMfaStatusList { users, next })
}

/// Requires a user to enrol (after the administrator's step-up).
pub struct EnforceMfa {
    /// Who asks.
    pub admin: Who,
    /// The user.
    pub user: UserId,
}

pub(super) async fn enforce_user(hub: &Arc<Hub>, msg: EnforceMfa) -> Result<Enforced, ControlError> {
    let EnforceMfa { admin, user } = msg;
    mfa::require_step_up_for_others(hub, &admin.who, "mfa.enforce", admin.ip.clone()).await?;
    mfa::enforce_user(hub, &admin.who, &user, admin.ip).await?;
    Ok(Enforced { users: 1 })
}

/// Removes a user's factor (the user enrols again).
pub struct ResetMfa {
    /// Who asks.
    pub admin: Who,
    /// The user.
    pub user: UserId,
}

pub(super) async fn reset_user(hub: &Arc<Hub>, msg: ResetMfa) -> Result<(), ControlError> {
    Ok(mfa::reset_user(hub, &msg.admin.who, &msg.user, msg.admin.ip).await?)
}

/// Requires every user of the tenant without a factor to enrol (after the step-up).
pub struct EnforceMfaAll {
    /// Who asks.
    pub admin: Who,
}

pub(super) async fn enforce_all(hub: &Arc<Hub>, msg: EnforceMfaAll) -> Result<Enforced, ControlError> {
    let admin = msg.admin;
    mfa::require_step_up_for_others(hub, &admin.who, "mfa.enforce_all", admin.ip.clone()).await?;
    Ok(Enforced { users: mfa::enforce_all(hub, &admin.who, admin.ip).await? })
}
