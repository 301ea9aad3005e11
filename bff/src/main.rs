use std::path::PathBuf;

use anyhow::Context;
use bff::config::Config;
use bff::startup::App;
use clap::Parser;
use outbox_relay::platform::{shutdown, telemetry};

#[derive(Parser)]
#[command(about = "The public backend-for-frontend")]
struct Cli {
    /// YAML configuration file (overrides the ENV profile; environment variables win).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    telemetry::init("bff", &config.common.log_level, config.common.log_format);
    let app = App::build(config).await.context("starting bff")?;
    app.run_until_stopped(shutdown::signal()).await?;
    Ok(())
}
