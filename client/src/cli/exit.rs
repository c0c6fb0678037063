//! Exit codes (documented in `hush --help` and the README) and the one-line error report.

use hush_client::ClientError;

/// Success.
pub const OK: u8 = 0;
/// Any other failure (the node refused, a file could not be written, ...).
pub const ERROR: u8 = 1;
/// Bad usage: an unknown command or flag, a malformed argument (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// Not authenticated: wrong credentials or code, a revoked or expired session, logged out.
pub const AUTH: u8 = 3;
/// The node could not be reached.
pub const UNREACHABLE: u8 = 4;

/// The text appended to `hush --help`.
pub const HELP: &str = "Exit codes:
  0  success
  1  error (the node refused the request, a local file could not be read or written, ...)
  2  usage error (unknown command or flag, malformed argument)
  3  authentication: wrong credentials or code, session revoked or expired, profile logged out
  4  the node cannot be reached";

/// An error with its own exit code.
#[derive(Debug)]
pub struct Exit {
    /// The exit code.
    pub code: u8,
    /// The message.
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// An authentication failure (exit code [`AUTH`]).
pub fn auth(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit { code: AUTH, message: message.into() })
}

/// The exit code of an error.
pub fn code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(x) = cause.downcast_ref::<Exit>() {
            return x.code;
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return match c {
                ClientError::Http { status: 401, .. } => AUTH,
                ClientError::Transport(_) => UNREACHABLE,
                _ => ERROR,
            };
        }
        if cause.downcast_ref::<hush_protocol::ids::IdError>().is_some() {
            return USAGE;
        }
    }
    ERROR
}
