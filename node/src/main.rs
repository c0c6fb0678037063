//! `hushd`: parse the configuration, start the node, wait for SIGINT/SIGTERM (SIGHUP reloads
//! the TLS certificate), stop gracefully.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::Parser;
use hush_node::config::{AdminCommand, Cli, Command, Config, LogFormat};
use hush_node::server;
use hush_node::store_cmd;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// actix-http logs every request its parser refuses (URL or head too large, `Content-Length`
/// with `chunked`) as an ERROR "stream error": a client's mistake, answered 400/431 already, that
/// anyone can repeat to flood the log. Silenced unless `HUSH_LOG` names `actix_http` itself.
const QUIET_PARSER: &str = "actix_http::h1::dispatcher=off";

fn init_logging(format: LogFormat) {
    let spec =
        std::env::var("HUSH_LOG").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "info".into());
    let spec = if spec.contains("actix_http") { spec } else { format!("{spec},{QUIET_PARSER}") };
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_PARSER}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Waits for SIGINT or SIGTERM; every SIGHUP meanwhile reloads the TLS certificate (a file
/// that fails to load keeps the old certificate, and the log says why).
async fn run_until_shutdown(running: &server::Running, mut term: Signal, mut hup: Signal) {
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => match running.reload_tls() {
                Ok(true) => tracing::info!("SIGHUP: reloaded the TLS certificate and key"),
                Ok(false) => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed, keeping the current certificate"),
            },
        }
    }
}

fn print_credentials(b: &server::Bootstrapped, first_run: bool) {
    if first_run {
        println!("First run: created tenant '{}' with administrator '{}'.", b.tenant, b.admin);
    } else {
        println!("Created tenant '{}' with administrator '{}'.", b.tenant, b.admin);
    }
    println!("One-time password (shown only now): {}", b.password.expose());
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hushd: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::resolve(&cli)?;
    init_logging(config.log_format);
    let system = actix_rt::System::new();
    match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Init { tenant, admin } => {
            let b = system.block_on(server::init(&config, &tenant, &admin))?;
            print_credentials(&b, false);
            Ok(())
        }
        Command::Admin { command: AdminCommand::ResetPassword { tenant, user } } => {
            let b = system.block_on(server::reset_password(&config, &tenant, &user))?;
            println!(
                "Reset the password of '{}' in tenant '{}'; a new one must be set at the next login.",
                b.admin, b.tenant
            );
            println!("One-time password (shown only now): {}", b.password.expose());
            Ok(())
        }
        Command::Store { command } => {
            let out = system.block_on(store_cmd::run(&config, &command))?;
            println!("{}", out.report);
            match out.failure {
                Some(why) => anyhow::bail!(why),
                None => Ok(()),
            }
        }
        Command::Serve => system.block_on(async {
            // Installed before the start line is printed: from then on a SIGHUP reloads and
            // never takes the default action (terminate).
            let term = signal(SignalKind::terminate())?;
            let hup = signal(SignalKind::hangup())?;
            let running = server::start(&config).await?;
            if let Some(b) = &running.bootstrapped {
                print_credentials(b, true);
            }
            println!("hushd listening on {}", running.url());
            run_until_shutdown(&running, term, hup).await;
            running.stop().await;
            Ok(())
        }),
    }
}
