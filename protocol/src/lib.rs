//! Hush protocol: everything two Hush parties must agree on, with no I/O.
//!
//! - [`limits`]: every size bound of the wire protocol, as named constants.
//! - [`ids`]: validated identifier newtypes, parsed once at the edge.
//! - [`wire`]: the client <-> node frames (one externally tagged enum per direction) and their
//!   codecs (postcard for binary frames, JSON for text frames).
//! - [`api`]: JSON bodies of the HTTP API shared by the node and the client SDK.
//! - [`otp`]: HOTP (RFC 4226) and TOTP (RFC 6238) codes and the `otpauth://` enrolment URI.
//! - [`e2e`]: the end-to-end encryption library (identity keys, XEdDSA, X3DH, Double Ratchet,
//!   Sender Keys). The node only verifies public keys with it; clients encrypt with it.
#![warn(missing_docs)]

pub mod api;
// `hush_no_e2e` lets the node be built while the E2E library is mid-change in the same tree.
#[cfg(not(hush_no_e2e))]
pub mod e2e;
pub mod ids;
pub mod limits;
pub mod otp;
pub mod wire;

mod content_type;
