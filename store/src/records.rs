//! Stored records. They are serialized with postcard in the embedded store; every field that
//! could be secret is stored only as a hash (tokens) or a password hash (passwords).

use std::fmt;

use hush_protocol::ids::{DeviceAddress, DeviceId, RegistrationId, TenantId, UserId};
use hush_protocol::wire::{ContentType, Envelope};
use serde::{Deserialize, Serialize};

/// SHA-256 of a session token. Tokens are 256-bit random values, so a fast hash suffices; the
/// store never sees a token itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Its name.
    pub name: TenantId,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A user account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its name.
    pub user: UserId,
    /// Argon2id PHC string (salted; never the password).
    pub password_hash: String,
    /// Administers the tenant.
    pub admin: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .field("admin", &self.admin)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// One registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Device id; 1 is the primary.
    pub id: DeviceId,
    /// Current registration id.
    pub registration_id: RegistrationId,
    /// Label.
    pub name: String,
    /// Registration time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A user's devices with the version used for compare-and-set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSet {
    /// Incremented by every change; 0 means never written.
    pub version: u64,
    /// The devices, sorted by id.
    pub devices: Vec<DeviceRecord>,
}

impl DeviceSet {
    /// The device with this id, if registered.
    pub fn get(&self, id: DeviceId) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.id == id)
    }
}

/// Why and when a session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Why: a name of `hush_actors::audit::RevocationReason` (`logout`, `revoked_by_admin`, ...).
    pub reason: String,
}

/// A login session, bound to one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public id (128-bit random, hex), used to list and revoke.
    pub id: String,
    /// SHA-256 of the token.
    pub token_hash: TokenHash,
    /// Address of the device this session is for.
    pub device: DeviceAddress,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Client user agent at login, if sent.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub ip: Option<String>,
    /// Set once the session is revoked; a revoked session never acts again.
    pub revoked: Option<Revocation>,
}

impl SessionRecord {
    /// True until revoked.
    pub fn active(&self) -> bool {
        self.revoked.is_none()
    }
}

/// One audit record: who did what, when, from where, with what result. Append-only; never
/// holds a secret (no token, password or code: only ids and names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Assigned by the store, increasing within a tenant (0 on append).
    pub id: u64,
    /// The tenant the action belongs to.
    pub tenant: TenantId,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Who acted (the user name; for a failed login, the name that was tried).
    pub actor: Option<UserId>,
    /// The actor's session, when authenticated.
    pub actor_session: Option<String>,
    /// What: `login`, `logout`, `session.revoke`, `device.add`, `device.remove`, `user.create`, ...
    pub action: String,
    /// On what (a session id, `user/device`, a user name).
    pub target: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// `ok`, `denied`, `failed`.
    pub result: String,
}

/// A filter over the audit log (newest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<UserId>,
    /// Only this action.
    pub action: Option<String>,
    /// Only records with an id below this (pagination: the last id of the previous page).
    pub before: Option<u64>,
    /// Page size.
    pub limit: usize,
}

/// An envelope to append to one device's queue (its `seq` is assigned by the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEnvelope {
    /// The recipient device.
    pub to: DeviceAddress,
    /// The envelope; `seq` is ignored and replaced.
    pub envelope: Envelope,
}

/// One envelope for many devices (a group message): its content is stored once, and each
/// device's queue gets an entry referring to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedEnvelope {
    /// The recipient devices (each at most once).
    pub to: Vec<DeviceAddress>,
    /// The envelope; `seq` is assigned per device, and `sync` is set on the copies for the
    /// sender's own devices (`to.user == envelope.from`), as on 1:1 sync copies.
    pub envelope: Envelope,
}

/// An envelope as stored before group messages (no `group` field): redb schema-2 queues and
/// older MongoDB queue documents. Read through [`decode_stored`], never written.
#[derive(Serialize, Deserialize)]
pub(crate) struct EnvelopeV2 {
    pub seq: u64,
    pub id: hush_protocol::ids::MessageId,
    pub from: UserId,
    pub from_device: DeviceId,
    pub timestamp_ms: u64,
    pub sync: bool,
    pub content: hush_protocol::wire::Payload,
    pub event: Option<hush_protocol::wire::SessionEvent>,
}

/// An envelope as stored before content types (group messages, no `content_type`): redb
/// schema-3 queues and MongoDB queue documents written before it. Read through
/// [`decode_stored`], never written.
#[derive(Serialize, Deserialize)]
pub(crate) struct EnvelopeV3 {
    pub seq: u64,
    pub id: hush_protocol::ids::MessageId,
    pub from: UserId,
    pub from_device: DeviceId,
    pub timestamp_ms: u64,
    pub sync: bool,
    pub content: hush_protocol::wire::Payload,
    pub event: Option<hush_protocol::wire::SessionEvent>,
    pub group: Option<hush_protocol::wire::GroupStamp>,
}

/// Decodes a stored record: a prefix `P` (the device address, the shared content's id, or
/// nothing) then an envelope in the current format or, failing that, in an older one. Postcard
/// has no field tags and the envelope ends the record: an old record simply ends where the new
/// field would start, so the newest format that decodes is the record's own.
///
/// Compatibility of envelopes stored before content types: a node event reads as `event`, a
/// group message as `sender_key` (a group message can be nothing else), and a 1:1 message as
/// `unknown` (Signal's `UNKNOWN` = 0): the node did not record whether it was a pre-key message
/// and does not guess; the receiver tells by itself, as it did when it was stored.
pub(crate) fn decode_stored<P: serde::de::DeserializeOwned>(bytes: &[u8]) -> crate::Result<(P, Envelope)> {
    let (prefix, rest) =
        postcard::take_from_bytes::<P>(bytes).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
    let env = match postcard::from_bytes::<Envelope>(rest) {
        Ok(v) => v,
        Err(e) => match postcard::from_bytes::<EnvelopeV3>(rest) {
            Ok(o) => o.into(),
            Err(_) => postcard::from_bytes::<EnvelopeV2>(rest)
                .map(Envelope::from)
                .map_err(|_| crate::StoreError::Corrupt(e.to_string()))?,
        },
    };
    Ok((prefix, env))
}

/// The type an envelope stored before content types is read with (see [`decode_stored`]).
fn legacy_type(event: bool, group: bool) -> ContentType {
    if event {
        ContentType::Event
    } else if group {
        ContentType::SenderKey
    } else {
        ContentType::Unknown
    }
}

impl From<EnvelopeV3> for Envelope {
    fn from(o: EnvelopeV3) -> Self {
        Envelope {
            content_type: legacy_type(o.event.is_some(), o.group.is_some()),
            seq: o.seq,
            id: o.id,
            from: o.from,
            from_device: o.from_device,
            timestamp_ms: o.timestamp_ms,
            sync: o.sync,
            content: o.content,
            event: o.event,
            group: o.group,
        }
    }
}

impl From<EnvelopeV2> for Envelope {
    fn from(o: EnvelopeV2) -> Self {
        Envelope {
            content_type: legacy_type(o.event.is_some(), false),
            seq: o.seq,
            id: o.id,
            from: o.from,
            from_device: o.from_device,
            timestamp_ms: o.timestamp_ms,
            sync: o.sync,
            content: o.content,
            event: o.event,
            group: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hush_protocol::wire::{GroupStamp, Payload, SessionEvent};

    fn addr() -> DeviceAddress {
        DeviceAddress::new(TenantId::new("t").unwrap(), UserId::new("bob").unwrap(), DeviceId::PRIMARY)
    }

    fn v3(event: Option<SessionEvent>, group: Option<GroupStamp>) -> EnvelopeV3 {
        EnvelopeV3 {
            seq: 9,
            id: uuid::Uuid::from_u128(5),
            from: UserId::new("alice").unwrap(),
            from_device: DeviceId::PRIMARY,
            timestamp_ms: 77,
            sync: false,
            content: Payload(vec![1, 2, 3]),
            event,
            group,
        }
    }

    #[test]
    fn envelopes_stored_before_groups_still_decode() {
        let o = v3(None, None);
        let old = EnvelopeV2 {
            seq: o.seq,
            id: o.id,
            from: o.from,
            from_device: o.from_device,
            timestamp_ms: o.timestamp_ms,
            sync: o.sync,
            content: o.content,
            event: None,
        };
        let bytes = postcard::to_allocvec(&(&addr(), &old)).unwrap();
        let (a, env): (DeviceAddress, Envelope) = decode_stored(&bytes).unwrap();
        assert_eq!(
            (a, env.seq, env.content.0, env.group, env.content_type),
            (addr(), 9, vec![1, 2, 3], None, ContentType::Unknown)
        );
    }

    #[test]
    fn envelopes_stored_before_content_types_still_decode() {
        let stamp = GroupStamp { group: hush_protocol::ids::GroupId::random(), epoch: 3 };
        let event = SessionEvent::DeviceAdded { device: DeviceId::PRIMARY };
        let cases = [
            (v3(None, None), ContentType::Unknown),
            (v3(None, Some(stamp.clone())), ContentType::SenderKey),
            (v3(Some(event), None), ContentType::Event),
        ];
        for (old, want) in cases {
            // As a 1:1 queue entry, a shared-content reference, and a MongoDB `env` field.
            let (group, event) = (old.group.clone(), old.event.clone());
            let bytes = postcard::to_allocvec(&(&addr(), &old)).unwrap();
            let (a, env): (DeviceAddress, Envelope) = decode_stored(&bytes).unwrap();
            assert_eq!(
                (a, env.seq, &env.content.0[..], env.content_type),
                (addr(), 9, &[1u8, 2, 3][..], want)
            );
            assert_eq!((env.group, env.event), (group.clone(), event.clone()));
            let bytes = postcard::to_allocvec(&(&addr(), 41u64, &old)).unwrap();
            let ((a, blob), env): ((DeviceAddress, u64), Envelope) = decode_stored(&bytes).unwrap();
            assert_eq!((a, blob, env.content_type, env.group), (addr(), 41, want, group));
            let ((), env): ((), Envelope) = decode_stored(&postcard::to_allocvec(&old).unwrap()).unwrap();
            assert_eq!((env.id, env.content_type), (uuid::Uuid::from_u128(5), want));
        }
    }

    #[test]
    fn current_envelopes_decode_as_themselves() {
        for t in ContentType::KNOWN {
            let mut new: Envelope = v3(None, None).into();
            new.group = Some(GroupStamp { group: hush_protocol::ids::GroupId::random(), epoch: 3 });
            new.content_type = t;
            let bytes = postcard::to_allocvec(&(&addr(), &new)).unwrap();
            let (_, back): (DeviceAddress, Envelope) = decode_stored(&bytes).unwrap();
            assert_eq!(back, new);
        }
        // Garbage is refused, not read as an old format.
        assert!(decode_stored::<DeviceAddress>(&[1, 2, 3]).is_err());
    }
}
