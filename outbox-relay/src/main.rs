use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use outbox_relay::platform::{shutdown, telemetry};
use outbox_relay::service::config::Config;
use outbox_relay::service::startup::App;

#[derive(Parser)]
#[command(about = "Moves outbox rows into Kafka")]
struct Cli {
    /// YAML configuration file (overrides the ENV profile; environment variables win).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    telemetry::init(
        "outbox-relay",
        &config.common.log_level,
        config.common.log_format,
    );
    let app = App::build(config).await.context("starting outbox-relay")?;
    app.run_until_stopped(shutdown::signal()).await?;
    Ok(())
}
