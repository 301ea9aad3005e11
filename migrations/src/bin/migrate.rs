//! `migrate up` applies pending migrations, `migrate down N` reverts the last N,
//! `migrate status` lists them, `migrate create NAME` writes the next migration's files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The database comes from the same settings as the services' (environment only):
/// `DB_HOST`, `DB_PORT`, `DB_NAME`, `DB_USER`, `DB_PASSWORD` (or `DB_PASSWORD_FILE`), or
/// `DATABASE_URL` (or `DATABASE_URL_FILE`), and TLS with `DB_SSLMODE`, `DB_SSLROOTCERT`,
/// `DB_SSLCERT`, `DB_SSLKEY`; `ENV` decides the TLS default (verify-full outside
/// development).
#[derive(Parser)]
#[command(about = "Apply, revert, inspect or create the platform's database migrations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The two settings that hold a password may come as files (the Docker secrets convention).
const SECRET_FILES: [&str; 2] = ["DB_PASSWORD", "DATABASE_URL"];

fn db_config() -> anyhow::Result<platform_db::DbConfig> {
    let mut env: std::collections::HashMap<String, String> = std::env::vars().collect();
    for name in SECRET_FILES {
        if let Some(value) = secret_setting(name)? {
            env.insert(name.to_owned(), value);
        }
    }
    platform_db::DbConfig::from_env_vars(env).map_err(anyhow::Error::msg)
}

/// `name` from the environment, else from the file `name_FILE` names (trailing newline
/// dropped); `None` when neither is set.
fn secret_setting(name: &str) -> anyhow::Result<Option<String>> {
    if let Ok(value) = std::env::var(name) {
        return Ok(Some(value));
    }
    let Ok(path) = std::env::var(format!("{name}_FILE")) else {
        return Ok(None);
    };
    let value = std::fs::read_to_string(&path)
        .with_context(|| format!("{name}_FILE: cannot read {path}"))?;
    Ok(Some(value.trim_end_matches(['\r', '\n']).to_owned()))
}

async fn connect(db: &platform_db::DbConfig) -> anyhow::Result<tokio_postgres::Client> {
    Ok(db.connect_explained().await?)
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
    /// Set the services' database roles' passwords from USER_SERVICE_DB_PASSWORD,
    /// OUTBOX_RELAY_DB_PASSWORD, EVENT_CONSUMER_DB_PASSWORD and BFF_DB_PASSWORD (or their
    /// `_FILE`s); a role whose setting is absent is left as it is.
    Passwords,
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
            let db = db_config()?;
            let mut client = connect(&db).await?;
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
            let db = db_config()?;
            let mut client = connect(&db).await?;
            let reverted = migrations::down(&mut client, n)
                .await
                .with_context(|| format!("reverting on {}", db.db_name))?;
            for (version, name) in reverted {
                println!("reverted V{version} {name}");
            }
        }
        Command::Passwords => {
            // Every given password is checked before any is set.
            let mut given = Vec::new();
            for (role, setting) in migrations::roles::SERVICE_ROLES {
                match secret_setting(setting)? {
                    Some(password) if password.chars().count() < 16 => anyhow::bail!(
                        "{setting} is shorter than 16 characters (try `openssl rand -hex 32`); \
                         no password was changed"
                    ),
                    Some(password) => given.push((role, password)),
                    None => println!("{role}: {setting} not given, left as it is"),
                }
            }
            let db = db_config()?;
            let client = connect(&db).await?;
            for (role, password) in given {
                migrations::roles::set_password(&client, role, &password)
                    .await
                    .with_context(|| format!("setting the password of {role}"))?;
                println!("{role}: password set");
            }
        }
        Command::Status => {
            let db = db_config()?;
            let mut client = connect(&db).await?;
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
