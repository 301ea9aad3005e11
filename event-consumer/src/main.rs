use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use event_consumer::config::Config;
use event_consumer::startup::App;
use platform::{shutdown, telemetry};

#[derive(Parser)]
#[command(about = "Idempotent consumer of user events")]
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
        "event-consumer",
        &config.common.log_level,
        config.common.log_format,
    );
    config.warn_if_development();
    config.db.check_at_start().await?;
    let app = App::build(config)
        .await
        .context("starting event-consumer")?;
    app.run_until_stopped(shutdown::signal()).await?;
    Ok(())
}
