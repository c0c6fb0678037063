//! Who an MFA action is audited as, and the `MfaChanged` event every device of the user gets.

use hush_protocol::wire::SessionEvent;

use crate::accounts::auth::Authed;
use crate::hub::Hub;
use crate::sessions::{self, Initiator};

/// The caller as the audit log names them.
pub(crate) fn initiator(me: &Authed, ip: Option<String>) -> Initiator {
    Initiator { user: Some(me.user().clone()), session: Some(me.session.id.clone()), ip }
}

/// Tells every device of the caller's user that their MFA changed (`change` says how).
pub(crate) async fn changed(hub: &Hub, me: &Authed, change: &str) {
    let ev = SessionEvent::MfaChanged { change: change.to_owned() };
    sessions::emit(hub, me.tenant(), me.user(), me.session.device.device, None, ev).await;
}
