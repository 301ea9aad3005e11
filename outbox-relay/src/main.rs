use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use outbox_relay::service::config::Config;
use outbox_relay::service::replay_cli::{self, ReplayArgs};
use outbox_relay::service::startup::App;
use platform::{shutdown, telemetry};

#[derive(Parser)]
#[command(about = "Moves outbox rows into Kafka")]
struct Cli {
    /// YAML configuration file (overrides the ENV profile; environment variables win).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Re-queue published events so the relay publishes them again, in order.
    Replay(ReplayArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    if let Some(Command::Replay(args)) = cli.command {
        let exit = replay_cli::run(&config, args).await;
        return Ok(ExitCode::from(exit as u8));
    }
    telemetry::init(
        "outbox-relay",
        &config.common.log_level,
        config.common.log_format,
    );
    config.warn_if_development();
    config.db.check_at_start().await?;
    let app = App::build(config).await.context("starting outbox-relay")?;
    app.run_until_stopped(shutdown::signal()).await?;
    Ok(ExitCode::SUCCESS)
}
