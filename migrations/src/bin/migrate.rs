//! `migrate up` applies pending migrations, `migrate down N` reverts the last N,
//! `migrate status` lists them, `migrate create NAME` writes the next migration's files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Apply, revert, inspect or create the platform's database migrations")]
struct Cli {
    #[command(flatten)]
    db: Db,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Db {
    #[arg(long, env = "DB_HOST", default_value = "127.0.0.1")]
    db_host: String,
    #[arg(long, env = "DB_PORT", default_value_t = 5432)]
    db_port: u16,
    #[arg(long, env = "DB_NAME", default_value = "event_driven_db")]
    db_name: String,
    #[arg(long, env = "DB_USER", default_value = "postgres")]
    db_user: String,
    /// The role's password (default `postgres`, the development one).
    #[arg(long, env = "DB_PASSWORD", hide_env_values = true)]
    db_password: Option<String>,
    /// A file holding the password (the Docker secrets convention); DB_PASSWORD wins.
    #[arg(long, env = "DB_PASSWORD_FILE")]
    db_password_file: Option<PathBuf>,
}

impl Db {
    fn password(&self) -> anyhow::Result<String> {
        match (&self.db_password, &self.db_password_file) {
            (Some(password), _) => Ok(password.clone()),
            (None, Some(file)) => {
                let password = std::fs::read_to_string(file)
                    .with_context(|| format!("DB_PASSWORD_FILE: cannot read {}", file.display()))?;
                Ok(password.trim_end_matches(['\r', '\n']).to_owned())
            }
            (None, None) => Ok("postgres".to_owned()),
        }
    }

    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.db_host)
            .port(self.db_port)
            .dbname(&self.db_name)
            .user(&self.db_user)
            .password(self.password()?);
        let (client, connection) =
            config
                .connect(tokio_postgres::NoTls)
                .await
                .with_context(|| {
                    format!(
                        "connecting to {}:{}/{}",
                        self.db_host, self.db_port, self.db_name
                    )
                })?;
        tokio::spawn(connection);
        Ok(client)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Apply every pending migration.
    Up,
    /// Revert the last N applied migrations (default 1) with their undo files, in one
    /// transaction. Drops the data those migrations hold; refused when ENV=production.
    Down {
        #[arg(default_value_t = 1)]
        n: u32,
        #[arg(long, env = "ENV", default_value = "development", hide = true)]
        env: String,
    },
    /// List the migrations and whether each is applied.
    Status,
    /// Write the next migration, sql/V{next}__NAME.sql, and its undo file.
    Create {
        /// lower-case snake_case, e.g. add_users_locale
        name: String,
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))]
        sql_dir: PathBuf,
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/undo"))]
        undo_dir: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // One line with the cause chain: these errors are for the person at the terminal.
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Create {
            name,
            sql_dir,
            undo_dir,
        } => {
            let created = migrations::create(&sql_dir, &undo_dir, &name)?;
            println!("created {}", shown(&created.migration));
            println!("created {}", shown(&created.undo));
            println!(
                "V{}: write the change in the first file and its exact reverse in the second; \
                 `make migrate` applies it, `make test` checks that the undo reverts it",
                created.version
            );
        }
        Command::Up => {
            let mut client = cli.db.connect().await?;
            let report = migrations::run(&mut client).await?;
            let applied = report.applied_migrations();
            if applied.is_empty() {
                println!("database is up to date");
            }
            for m in applied {
                println!("applied V{} {}", m.version(), m.name());
            }
        }
        Command::Down { n, env } => {
            if env == "production" {
                anyhow::bail!(
                    "refusing `down` with ENV=production: it drops tables and their data. \
                     Revert in production with a new forward migration (`make migrate-create`)"
                );
            }
            let mut client = cli.db.connect().await?;
            let reverted = migrations::down(&mut client, n)
                .await
                .with_context(|| format!("reverting on {}", cli.db.db_name))?;
            for (version, name) in reverted {
                println!("reverted V{version} {name}");
            }
        }
        Command::Status => {
            let mut client = cli.db.connect().await?;
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

/// `path` relative to the working directory when it is below it.
fn shown(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative
        .unwrap_or_else(|| path.to_owned())
        .display()
        .to_string()
}
