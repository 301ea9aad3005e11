//! `migrate up` applies pending migrations; `migrate status` lists them.

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Apply or inspect the platform's database migrations")]
struct Cli {
    #[arg(long, env = "DB_HOST", default_value = "127.0.0.1")]
    db_host: String,
    #[arg(long, env = "DB_PORT", default_value_t = 5432)]
    db_port: u16,
    #[arg(long, env = "DB_NAME", default_value = "event_driven_db")]
    db_name: String,
    #[arg(long, env = "DB_USER", default_value = "postgres")]
    db_user: String,
    #[arg(
        long,
        env = "DB_PASSWORD",
        default_value = "postgres",
        hide_env_values = true
    )]
    db_password: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply every pending migration.
    Up,
    /// List the migrations and whether each is applied.
    Status,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = tokio_postgres::Config::new();
    config
        .host(&cli.db_host)
        .port(cli.db_port)
        .dbname(&cli.db_name)
        .user(&cli.db_user)
        .password(&cli.db_password);
    let (mut client, connection) =
        config
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| {
                format!(
                    "connecting to {}:{}/{}",
                    cli.db_host, cli.db_port, cli.db_name
                )
            })?;
    tokio::spawn(connection);

    match cli.command {
        Command::Up => {
            let report = migrations::run(&mut client).await?;
            let applied = report.applied_migrations();
            if applied.is_empty() {
                println!("database is up to date");
            }
            for m in applied {
                println!("applied V{} {}", m.version(), m.name());
            }
        }
        Command::Status => {
            let applied = migrations::applied(&mut client).await?;
            for (version, name) in migrations::known() {
                let state = if applied.contains(&version) {
                    "applied"
                } else {
                    "pending"
                };
                println!("V{version:<3} {name:<40} {state}");
            }
        }
    }
    Ok(())
}
