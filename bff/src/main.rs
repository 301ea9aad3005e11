use std::path::PathBuf;

use anyhow::Context;
use bff::config::Config;
use bff::startup::App;
use clap::{Parser, Subcommand};
use platform::{shutdown, telemetry};

#[derive(Parser)]
#[command(about = "The public backend-for-frontend")]
struct Cli {
    /// YAML configuration file (overrides the ENV profile; environment variables win).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the public API (the default).
    Serve,
    /// Print a fresh Ed25519 token key pair as PASERK strings, and its key id.
    Keygen,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Keygen) = cli.command {
        let (secret, public, kid) = bff::tokens::generate_paserk()?;
        println!("TOKEN_SECRET_KEY={secret}");
        println!("TOKEN_PUBLIC_KEYS={public}");
        println!("# kid: {kid}");
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    telemetry::init("bff", &config.common.log_level, config.common.log_format);
    config.warn_if_development();
    config.db.check_at_start().await?;
    let app = App::build(config).await.context("starting bff")?;
    app.run_until_stopped(shutdown::signal()).await?;
    Ok(())
}
