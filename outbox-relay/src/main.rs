use std::process::ExitCode;

use clap::Subcommand;
use outbox_relay::service::config::Settings;
use outbox_relay::service::replay_cli::{self, ReplayArgs};
use outbox_relay::service::startup::App;
use platform::service::{self, Cli};

#[derive(Subcommand)]
enum Command {
    /// Re-queue published events so the relay publishes them again, in order.
    Replay(ReplayArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::<Command>::parse_for("outbox-relay", "Moves outbox rows into Kafka");
    let config = cli.config.load::<Settings>()?;
    if let Some(Command::Replay(args)) = cli.command {
        let exit = replay_cli::run(&config, args).await;
        return Ok(ExitCode::from(exit as u8));
    }
    service::serve::<App>(config).await?;
    Ok(ExitCode::SUCCESS)
}
