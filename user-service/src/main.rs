use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use platform::service::{self, Cli};
use user_service::config::Settings;
use user_service::startup::App;
use user_service::{lifecycle, users};

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
            let mut client = config
                .db
                .pool()
                .get()
                .await
                .context("connecting to the database")?;
            // The change and its audit record commit together.
            let tx = client.transaction().await?;
            let change = users::set_role(&tx, &email, role).await?;
            if let Some(change) = change.as_ref().filter(|c| c.changed()) {
                let event = lifecycle::role_changed(change, &config.settings.events_topic);
                outbox_relay::enqueue(&tx, &event).await?;
            }
            if let Some(change) = &change {
                users::audit_role_change(&*tx, change).await?;
            }
            tx.commit().await?;
            match change {
                Some(change) => {
                    tracing::info!(user_id = %change.id, previous = %change.previous.as_str(), current = %change.current.as_str(), "role changed");
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
