//! `hush`: the command-line client. The commands live in [`cli`], one module per area; this
//! file holds the command enum, the dispatch and the exit code. Profiles are described in
//! [`cli::profile`].
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cli::group::GroupCmd;

#[derive(Parser)]
#[command(
    name = "hush",
    version,
    about = "Hush command-line client: end-to-end encrypted chat, your account, and tenant administration",
    after_help = cli::exit::HELP
)]
struct Cli {
    /// Profile name: one per logged-in device.
    #[arg(
        long,
        short,
        env = "HUSH_PROFILE",
        default_value = "default",
        global = true,
        help_heading = "Global options"
    )]
    profile: String,
    /// Node URL (used by `login`; later commands use the profile's).
    #[arg(
        long,
        env = "HUSH_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true,
        help_heading = "Global options"
    )]
    server: String,
    /// CA certificate (PEM) to trust besides the system's roots, for a node whose certificate a
    /// private CA issued. Saved in the profile at login; later commands use it.
    #[arg(long, env = "HUSH_CA_FILE", global = true, help_heading = "Global options")]
    ca_file: Option<std::path::PathBuf>,
    /// Output of listings and results: table (for people) or json (for scripts).
    #[arg(long, short, env = "HUSH_OUTPUT", value_enum, default_value_t = cli::output::Output::Table, global = true, help_heading = "Global options")]
    output: cli::output::Output,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Log in; registers this profile's device (with its keys) on first login. Asks for the
    /// password, a second-factor code and a new password as the account needs them (from the
    /// terminal, else one line each from stdin).
    Login {
        /// Tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// User name.
        #[arg(long)]
        user: String,
        /// Password (else $HUSH_PASSWORD, else asked for).
        #[arg(long, env = "HUSH_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Device label.
        #[arg(long, default_value = "cli")]
        device_name: String,
        /// The second factor, if the account has one: a TOTP code or a backup code (else
        /// asked for at the `Code:` prompt).
        #[arg(long, env = "HUSH_MFA_CODE", hide_env_values = true)]
        code: Option<String>,
        /// After the second factor, trust this device: its next logins skip the challenge.
        #[arg(long)]
        remember_device: bool,
        /// The new password, when the node says the password was one-time (else asked for
        /// twice).
        #[arg(long, env = "HUSH_NEW_PASSWORD", hide_env_values = true)]
        new_password: Option<String>,
        /// Replace a profile that holds another account's device (that device is logged out
        /// first).
        #[arg(long)]
        force: bool,
    },
    /// End this profile's session.
    Logout,
    /// List your devices or a user's; remove one of yours.
    Devices(cli::sessions::DevicesArgs),
    /// List your login sessions; revoke one, the others, or all.
    Sessions(cli::sessions::SessionsArgs),
    /// Change your password (your other sessions are logged out).
    Password(cli::account::PasswordArgs),
    /// Your second factor: status, enroll, confirm, backup codes, trusted devices, disable.
    Mfa(cli::mfa::MfaArgs),
    /// Show how many one-time pre-keys the node holds for this device.
    Keys,
    /// Send a message to a user (every device of theirs and your other devices).
    Send {
        /// Recipient user name.
        to: String,
        /// The message text.
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// Print incoming messages (acknowledging them) until interrupted.
    Listen {
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds without a message.
        #[arg(long)]
        idle: Option<u64>,
    },
    /// List the messages `listen` received but could not decrypt (kept, not dropped).
    Quarantine,
    /// Groups: create, add, remove, send, list.
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// Tenant administration: users, MFA, sessions, policies, audit log.
    Admin(cli::admin::AdminArgs),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    cli::profile::set_ca_file(cli.ca_file.as_deref())?;
    let profile = cli.profile.as_str();
    let out = cli.output;
    let session = || cli::profile::session_of(profile);
    match cli.cmd {
        Cmd::Login { tenant, user, password, device_name, code, remember_device, new_password, force } => {
            let args = cli::login::LoginArgs {
                server: cli.server,
                tenant,
                user,
                password,
                device_name,
                code,
                remember_device,
                new_password,
                force,
            };
            cli::login::login(profile, args).await
        }
        Cmd::Logout => cli::login::logout(profile).await,
        Cmd::Devices(a) => cli::sessions::devices(&session()?, a, out).await,
        Cmd::Sessions(a) => cli::sessions::run_in_profile(profile, a, out).await,
        Cmd::Password(a) => cli::account::run(&session()?, a).await,
        Cmd::Mfa(a) => cli::mfa::run(&session()?, a, out).await,
        Cmd::Keys => cli::sessions::keys(&session()?, out).await,
        Cmd::Send { to, text } => cli::chat::send(profile, to, text).await,
        Cmd::Listen { count, idle } => cli::chat::listen(profile, count, idle).await,
        Cmd::Quarantine => cli::quarantine::list(profile, out),
        Cmd::Group { cmd } => cli::group::run(profile, cmd, out).await,
        Cmd::Admin(a) => cli::admin::run(&session()?, a, out).await,
    }
}

fn main() -> ExitCode {
    let cli =
        match cli::help::command(Cli::command()).try_get_matches().and_then(|m| Cli::from_arg_matches(&m)) {
            Ok(c) => c,
            Err(e) => cli::help::usage_error(e),
        };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(cli::exit::ERROR);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::from(cli::exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit::code(&e))
        }
    }
}
