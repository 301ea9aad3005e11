use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use platform::{shutdown, telemetry};
use user_service::config::Config;
use user_service::startup::App;
use user_service::users;

#[derive(Parser)]
#[command(about = "Users and the transactional outbox write path")]
struct Cli {
    /// YAML configuration file (overrides the ENV profile; environment variables win).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Give a user a role (how the first admin is made).
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: Role,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Admin,
    User,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            telemetry::init(
                "user-service",
                &config.common.log_level,
                config.common.log_format,
            );
            config.warn_if_development();
            config.db.check_at_start().await?;
            let app = App::build(config).await.context("starting user-service")?;
            app.run_until_stopped(shutdown::signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SetRole { email, role } => {
            let role = match role {
                Role::Admin => users::Role::Admin,
                Role::User => users::Role::User,
            };
            let client = config
                .db
                .pool()
                .get()
                .await
                .context("connecting to the database")?;
            match users::set_role(&client, &email, role).await? {
                Some(change) => {
                    println!(
                        "{} ({}): role {} -> {}",
                        change.email, change.id, change.previous, change.current
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no user has the email {email:?}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
