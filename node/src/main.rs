//! `hushd`: parse the configuration, start the node, wait for SIGINT/SIGTERM, stop gracefully.
#![allow(clippy::print_stdout)]

use clap::Parser;
use hush_node::config::{Cli, Command, Config, LogFormat};
use hush_node::server;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("HUSH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
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

fn main() -> anyhow::Result<()> {
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
        Command::Serve => system.block_on(async {
            let running = server::start(&config).await?;
            if let Some(b) = &running.bootstrapped {
                print_credentials(b, true);
            }
            println!("hushd listening on http://{}", running.addr);
            shutdown_signal().await;
            running.stop().await;
            Ok(())
        }),
    }
}
