//! The commands of `hush`, one module per area. `main.rs` holds the command enum and the
//! dispatch; each module parses nothing itself beyond its own subcommand enum.
//!
//! - [`profile`]: the profile folder and files.
//! - [`prompt`]: terminal or stdin prompts.
//! - [`login`]: login and logout.
//! - [`chat`]: send and listen.
//! - [`group`], [`devices`], [`admin`]: the other commands.
//! - [`exit`]: exit codes and the one-line error report.

pub mod admin;
pub mod chat;
pub mod devices;
pub mod exit;
pub mod group;
pub mod login;
pub mod profile;
pub mod prompt;
