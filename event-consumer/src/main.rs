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
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::<Command>::parse_for("event-consumer", "Idempotent consumer of user events");
    let config = cli.config.load::<Settings>()?;
    if let Some(Command::Dlq(command)) = cli.command {
        return Ok(ExitCode::from(dlq_cli::run(&config, command).await));
    }
    service::serve::<App>(config).await?;
    Ok(ExitCode::SUCCESS)
}
