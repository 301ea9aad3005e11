use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use outbox_relay::platform::{shutdown, telemetry};
use user_service::config::Config;
use user_service::startup::App;

#[derive(Parser)]
#[command(about = "Users and the transactional outbox write path")]
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
        "user-service",
        &config.common.log_level,
        config.common.log_format,
    );
    let app = App::build(config).await.context("starting user-service")?;
    app.run_until_stopped(shutdown::signal()).await?;
    Ok(())
}
