use std::process::ExitCode;

use clap::Subcommand;
use event_consumer::config::Settings;
use event_consumer::dlq_cli::{self, DlqCommand};
use event_consumer::startup::App;
use platform::service::{self, Cli};

#[derive(Subcommand)]
enum Command {
    /// Consume and serve the internal API (the default).
    Serve,
    /// Work the dead-letter topic: list, show and redrive dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Compare the read model with user-service's users; exit 0 when in sync, 1 when some
    /// differ, 2 when it cannot run.
    Reconcile {
        /// Ask user-service for a snapshot of each differing user, then check again.
        #[arg(long)]
        repair: bool,
        /// Seconds within which a changed user counts as behind rather than differing
        /// (default RECONCILE_GRACE_MS).
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::<Command>::parse_for("event-consumer", "Idempotent consumer of user events");
    let config = cli.config.load::<Settings>()?;
    if let Some(Command::Dlq(command)) = cli.command {
        return Ok(ExitCode::from(dlq_cli::run(&config, command).await));
    }
    if let Some(Command::Reconcile {
        repair,
        grace_seconds,
    }) = cli.command
    {
        let code = event_consumer::reconcile::command(&config, repair, grace_seconds).await;
        return Ok(ExitCode::from(code));
    }
    service::serve::<App>(config).await?;
    Ok(ExitCode::SUCCESS)
}
