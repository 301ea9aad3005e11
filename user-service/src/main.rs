use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use platform::service::{self, Cli};
use user_service::config::Settings;
use user_service::startup::App;
use user_service::users;

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Give a user a role (how the first admin is made).
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: users::Role,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::<Command>::parse_for(
        "user-service",
        "Users and the transactional outbox write path",
    );
    let config = cli.config.load::<Settings>()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            service::serve::<App>(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SetRole { email, role } => {
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
