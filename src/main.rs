//! `handler`: the custom handler the Functions host starts (no arguments = `serve`), and the
//! operator's tool.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use teams_notifications::config::{Config, LogFormat};
use teams_notifications::{cli, functions, logging, startup};

#[derive(Parser)]
#[command(
    name = "handler",
    version,
    about = "Microsoft Graph change notifications for Teams, verified, decrypted and archived"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT (the default).
    Serve,
    /// Run the whole notification path on this machine: no Azure, no setup.
    Demo {
        /// Where the demo's certificate and archive go.
        #[arg(long, default_value = "./data/demo")]
        dir: std::path::PathBuf,
    },
    /// Play Graph against a running handler (rich notifications, encrypted and signed).
    Simulate(cli::simulate::SimulateArgs),
    /// List, create, renew, delete or reconcile the Graph subscriptions (SUBSCRIPTIONS_FILE).
    Subscriptions {
        #[command(subcommand)]
        cmd: cli::subscriptions::SubscriptionsCommand,
    },
    /// Decrypt a captured notification (collection, item, quarantine or raw record) offline.
    Decrypt {
        /// The JSON file.
        file: std::path::PathBuf,
    },
    /// Re-process quarantined and raw items with the configured keys (idempotent).
    Replay,
    /// Emergency alerts: pending, delivered and expired per route, with latencies.
    Alerts {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Send a test card to every alert route and print what each answered.
    AlertTest,
    /// Summarise what the archive holds.
    Report {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Who attended which meeting, when, for how long, who waited in the lobby.
    Attendance(cli::attendance::AttendanceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The demo narrates itself; its expected warnings (forgeries) would only be noise.
    logging::init(
        log_format,
        if matches!(cli.command, Some(Command::Demo { .. })) {
            "error,warp=off"
        } else {
            "info"
        },
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve().await,
            Command::Demo { dir } => cli::demo::run(&dir).await.map(|_| ()),
            Command::Simulate(args) => cli::simulate::run(args, &Config::from_env()?).await,
            Command::Subscriptions { cmd } => {
                cli::subscriptions::run(cmd, &Config::from_env()?).await
            }
            Command::Decrypt { file } => cli::decrypt::run(&file, &Config::from_env()?).await,
            Command::Replay => cli::archive_ops::replay(&Config::from_env()?).await,
            Command::Alerts { json } => cli::alerts::status(&Config::from_env()?, json).await,
            Command::AlertTest => cli::alerts::test(&Config::from_env()?).await,
            Command::Report { json } => cli::archive_ops::report(&Config::from_env()?, json).await,
            Command::Attendance(args) => cli::attendance::run(args, &Config::from_env()?).await,
        }
    });
    // The drain is over (or the command is done): work still on the blocking pool (a
    // decryption of a request nobody waits for) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let app = startup::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    tracing::info!(port = config.port, "listening");
    functions::routes::run(listener, app.state(), shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM (what the Functions host sends): stop accepting, drain in-flight requests.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: draining in-flight requests");
}
