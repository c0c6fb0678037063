//! The commands of `hush`, one module per area. `main.rs` holds the command enum and the
//! dispatch; each module parses nothing itself beyond its own subcommand enum.
//!
//! - [`profile`]: the profile folder and files.
//! - [`prompt`]: terminal or stdin prompts.
//! - [`login`]: login and logout.
//! - [`chat`]: send and listen; [`quarantine`]: what `listen` could not decrypt; [`control`]: the running `listen`'s socket, which one-shot
//!   commands of its profile go through instead of displacing it.
//! - [`group`]: the group commands.
//! - [`sessions`]: your sessions, devices and pre-key counts; [`account`]: password change;
//!   [`mfa`]: your second factor; [`admin`]: tenant administration.
//! - [`stepup`]: the step-up prompt (`--code`) of protected actions.
//! - [`output`]: tables and `--output json`; [`help`]: the grouped `--help` and one-line
//!   usage errors.
//! - [`exit`]: exit codes and the one-line error report.

pub mod account;
pub mod admin;
pub mod chat;
pub mod control;
pub mod exit;
pub mod group;
pub mod help;
pub mod login;
pub mod mfa;
pub mod output;
pub mod profile;
pub mod prompt;
pub mod quarantine;
pub mod sessions;
pub mod stepup;
