//! `hushd`, the Hush node, as a library the tests and the binary share.
//!
//! - [`config`]: configuration from a TOML file, then `HUSH_*` environment, then flags.
//! - [`server`]: start (store, hub, actors, HTTP server), first-run bootstrap, graceful stop.
//! - [`routes`]: the HTTP API under `/v1` (one file per area, MFA's `/v1/mfa/...` included),
//!   health, metrics, and the OpenAPI document.
//! - [`ws`]: the WebSocket edge: authentication, frame decoding, the bridge into `DeviceActor`.
//! - [`edge`]: request-body timeouts and the bound on unfinished requests per client address.
//! - [`datadir`]: the data folder's modes (0700, files 0600), created and tightened at start.
//! - [`fallback`]: 405 (with `Allow`) for a known path with another method, else 404.
//! - [`error`]: the one place where errors become HTTP statuses and JSON bodies.
//! - [`apidoc`]: the answers every route of a kind gives, added to the OpenAPI document.
//! - [`auth`]: the extractors (bearer token or console cookie; the MFA gate of a session).
//! - [`console`]: the admin console at `/console` (embedded single-page app, cookie sign-in,
//!   CSRF, server-sent events).
//! - [`qr`]: the TOTP enrolment URI as a QR code (PNG).
//! - [`store_cmd`]: `hushd store check|salvage|backup`, and the control socket a serving node
//!   answers backups on.
//! - [`tls`]: the HTTPS/WSS listener's certificate, reloadable at run time (SIGHUP).
#![warn(missing_docs)]

pub mod apidoc;
pub mod auth;
pub mod config;
pub mod console;
pub mod datadir;
pub mod edge;
pub mod error;
pub mod fallback;
pub mod faults;
pub mod metrics;
pub mod qr;
pub mod routes;
pub mod server;
pub mod store_cmd;
pub mod tls;
pub mod upgrade;
pub mod ws;
