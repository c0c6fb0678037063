//! Validated identifier newtypes, parsed once at the edge (HTTP route, WebSocket frame, config).
//!
//! Names (tenants, users) are 1..=64 bytes of lowercase ASCII letters, digits, `.`, `_`, `-`,
//! starting with a letter or digit, so they are safe in URLs, logs and store keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::{MAX_DEVICE_ID, MAX_NAME_BYTES, MAX_REGISTRATION_ID};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A name was empty, too long, or had a character outside `[a-z0-9._-]`.
    #[error("invalid {kind}: expected 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")]
    InvalidName {
        /// Which kind of name (tenant, user).
        kind: &'static str,
    },
    /// A device id was 0 or above [`MAX_DEVICE_ID`].
    #[error("invalid device id: expected 1..=127")]
    InvalidDeviceId,
    /// A registration id was 0 or wider than 14 bits.
    #[error("invalid registration id: expected 1..=16383")]
    InvalidRegistrationId,
    /// A group id was not 32 lower-case hex digits.
    #[error("invalid group id: expected 32 lower-case hex digits")]
    InvalidGroupId,
}

fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_BYTES
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates a name.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                if valid_name(&s) {
                    Ok(Self(s))
                } else {
                    Err(IdError::InvalidName { kind: $kind })
                }
            }
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_id!(
    /// A tenant: an isolated organisation. Nothing crosses tenants.
    TenantId,
    "tenant name"
);
name_id!(
    /// A user name, unique within its tenant.
    UserId,
    "user name"
);

/// A device of a user: 1 is the primary, linked devices follow (libsignal device ids, 1..=127).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DeviceId(u8);

impl DeviceId {
    /// The primary device of every account.
    pub const PRIMARY: DeviceId = DeviceId(1);

    /// Validates a device id.
    pub fn new(v: u32) -> Result<Self, IdError> {
        if (1..=MAX_DEVICE_ID).contains(&v) {
            Ok(Self(v as u8))
        } else {
            Err(IdError::InvalidDeviceId)
        }
    }
    /// The numeric id.
    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}
impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl FromStr for DeviceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        s.parse::<u32>().map_err(|_| IdError::InvalidDeviceId).and_then(Self::new)
    }
}
impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(u32::from(self.0))
    }
}
impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(u32::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A device's 14-bit registration id; a re-registered device gets a new one, and senders still
/// holding the old one get `StaleDevices`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RegistrationId(u16);

impl RegistrationId {
    /// Validates a registration id (1..=16383).
    pub fn new(v: u32) -> Result<Self, IdError> {
        if v >= 1 && v <= u32::from(MAX_REGISTRATION_ID) {
            Ok(Self(v as u16))
        } else {
            Err(IdError::InvalidRegistrationId)
        }
    }
    /// The numeric id.
    pub fn get(self) -> u16 {
        self.0
    }
}
impl Serialize for RegistrationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}
impl<'de> Deserialize<'de> for RegistrationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(u32::from(u16::deserialize(d)?)).map_err(serde::de::Error::custom)
    }
}

/// A group: 128 random bits chosen by the node, written as 32 lower-case hex digits. Opaque to
/// clients (nothing can be learnt from it, nothing guessed), safe in URLs, logs and store keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(String);

impl GroupId {
    /// Hex digits of a group id.
    pub const LEN: usize = 32;

    /// Parses and validates a group id.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.len() == Self::LEN && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
            Ok(Self(s))
        } else {
            Err(IdError::InvalidGroupId)
        }
    }
    /// A new random group id (128 bits from the OS generator).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for GroupId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}
impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({:?})", self.0)
    }
}
impl Serialize for GroupId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for GroupId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A client-chosen message id (a UUID), echoed in `Accepted` and carried to the recipient so
/// that clients can deduplicate at-least-once delivery.
pub type MessageId = uuid::Uuid;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(UserId::new("alice").is_ok());
        assert!(UserId::new("a.b_c-9").is_ok());
        assert!(UserId::new("").is_err());
        assert!(UserId::new("Alice").is_err());
        assert!(UserId::new("-x").is_err());
        assert!(UserId::new("a/b").is_err());
        assert!(UserId::new("x".repeat(65)).is_err());
        assert!(UserId::new("x".repeat(64)).is_ok());
        let e: Result<UserId, _> = serde_json::from_str("\"a b\"");
        assert!(e.is_err());
    }

    #[test]
    fn device_and_registration_ids_are_bounded() {
        assert!(DeviceId::new(0).is_err());
        assert!(DeviceId::new(128).is_err());
        assert_eq!(DeviceId::new(127).unwrap().get(), 127);
        assert!(RegistrationId::new(0).is_err());
        assert!(RegistrationId::new(16384).is_err());
        assert_eq!(RegistrationId::new(16383).unwrap().get(), 16383);
        let r: Result<DeviceId, _> = serde_json::from_str("0");
        assert!(r.is_err());
    }

    #[test]
    fn group_ids_are_random_hex() {
        let a = GroupId::random();
        assert_eq!(a.as_str().len(), GroupId::LEN);
        assert_eq!(GroupId::new(a.as_str()).unwrap(), a);
        assert_ne!(GroupId::random(), a);
        assert!(GroupId::new("ABCDEF0123456789abcdef0123456789").is_err());
        assert!(GroupId::new("abc").is_err());
        assert!(GroupId::new("g".repeat(32)).is_err());
    }
}

/// One device of one user of one tenant: the unit of presence, routing and queueing.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct DeviceAddress {
    /// The tenant.
    pub tenant: TenantId,
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
}

impl DeviceAddress {
    /// Builds an address.
    pub fn new(tenant: TenantId, user: UserId, device: DeviceId) -> Self {
        Self { tenant, user, device }
    }
}

impl fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.user, self.device)
    }
}
