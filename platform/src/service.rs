//! What every service binary's `main` does, in one place: read `--config FILE`, load the
//! layered configuration, start telemetry, warn about the development profile, check the
//! database, build the service and serve it until SIGINT or SIGTERM.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::{ServiceConfig, ServiceSettings};
use crate::{shutdown, telemetry};

/// The command line of a service binary: `--config FILE` and the binary's own
/// subcommands; none means serve.
#[derive(Debug, clap::Parser)]
pub struct Cli<C: clap::Subcommand> {
    #[command(flatten)]
    pub config: ConfigFile,
    #[command(subcommand)]
    pub command: Option<C>,
}

impl<C: clap::Subcommand> Cli<C> {
    /// Parses the process's arguments for the binary `name` described by `about`; prints
    /// help or the usage error and exits when they do not parse.
    pub fn parse_for(name: &'static str, about: &'static str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Self::command()
            .name(name)
            .bin_name(name)
            .about(about)
            .get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

/// The option every service binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFile {
    /// YAML configuration file (overrides the ENV profile; environment variables win).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigFile {
    /// The configuration from the profile, this file and the environment.
    pub fn load<S: ServiceSettings>(&self) -> anyhow::Result<ServiceConfig<S>> {
        ServiceConfig::load(self.config.as_deref()).context("loading configuration")
    }
}

/// What a service runs until: a future that resolves when it must stop (a signal in
/// production, a test's channel in tests).
pub trait Shutdown: Future<Output = ()> + Send + 'static {}

impl<F: Future<Output = ()> + Send + 'static> Shutdown for F {}

/// A service process: built from its configuration (bound, connected), then run until a
/// shutdown future resolves.
pub trait Service: Sized + Send + 'static {
    /// The name in logs and telemetry (`bff`, `user-service`...).
    const NAME: &'static str;
    type Settings: ServiceSettings;
    type BuildError: std::error::Error + Send + Sync + 'static;

    fn build(
        config: ServiceConfig<Self::Settings>,
    ) -> impl Future<Output = Result<Self, Self::BuildError>>;

    /// The port its HTTP listener was bound to (the one chosen, for `PORT=0`).
    fn port(&self) -> u16;

    fn run_until_stopped(
        self,
        shutdown: impl Shutdown,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'static;
}

/// Starts telemetry, checks the database, builds `S` and serves it until SIGINT or SIGTERM.
pub async fn serve<S: Service>(config: ServiceConfig<S::Settings>) -> anyhow::Result<()> {
    telemetry::init(S::NAME, &config.common.log_level, config.common.log_format);
    config.warn_if_development();
    config
        .db
        .check_at_start(!config.profile.is_development())
        .await?;
    let service = S::build(config)
        .await
        .with_context(|| format!("starting {}", S::NAME))?;
    let served = service.run_until_stopped(shutdown::signal()).await;
    // The last spans go out before the process ends, whatever ended it.
    telemetry::shutdown();
    served?;
    Ok(())
}
