//! The database schema of the whole platform, as embedded refinery migrations.
//!
//! One cluster, one schema per service: `users` (user-service), `auth` (bff) and
//! `consumer` (event-consumer). The first migrations were numbered by owner (1-9 shared
//! foundation, 10-19 user-service, 20-29 outbox relay, 30-39 event-consumer, 40-49 bff).
//! Every new one takes the next number after the highest ([`next_version`]): refinery
//! refuses to apply a migration numbered below one a database already has, so numbers are
//! only ever appended. The owner goes in the name and the file's first comment.
//!
//! Each `sql/V{n}__{name}.sql` has its exact reverse in `undo/V{n}__{name}.undo.sql`, which
//! [`down`] runs. Undo files live outside `sql/` so that refinery never embeds them.

use refinery::Report;
use tokio_postgres::Client;

mod create;
mod down;
pub mod roles;

pub use create::{create, next_version, validate_name, CreateError, Created};
pub use down::{down, undo_problems, DownError};

mod embedded {
    refinery::embed_migrations!("sql");
}

fn embedded_migrations() -> Vec<refinery::Migration> {
    embedded::migrations::runner().get_migrations().clone()
}

/// A migration's version as this crate's `u32`, whichever integer type the refinery
/// release uses (u32 up to 0.8, i32 from 0.9).
fn version_of(migration: &refinery::Migration) -> u32 {
    u32::try_from(i64::from(migration.version())).expect("migration versions are positive")
}

/// The channel the outbox trigger notifies once per inserting statement.
pub const OUTBOX_CHANNEL: &str = "outbox_events";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Migration(#[from] Error),
}

/// Creates a new database `name` on the server `server` points at and migrates it.
/// Tests use one each (named `test_...`, dropped by `scripts/infra.sh clean-test-dbs`), so
/// no test depends on another's data.
pub async fn create_scratch_database(
    server: &platform_db::DbConfig,
    name: &str,
) -> std::result::Result<(), ScratchError> {
    let client = server.with_database("postgres").connect().await?;
    // Identifiers cannot be bound as parameters; the caller's name is quoted.
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await?;
    drop(client);

    let mut client = server.with_database(name).connect().await?;
    run(&mut client).await?;
    Ok(())
}

/// Applies every pending migration.
pub async fn run(client: &mut Client) -> Result<Report> {
    Ok(embedded::migrations::runner()
        .set_abort_divergent(true)
        .run_async(client)
        .await?)
}

/// Applies the pending migrations up to and including `version`, no further.
pub async fn run_to(client: &mut Client, version: u32) -> Result<Report> {
    Ok(embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_target(refinery::Target::Version(
            i64::from(version)
                .try_into()
                .expect("a version this crate knows fits refinery's type"),
        ))
        .run_async(client)
        .await?)
}

/// The migrations compiled into this binary, as `(version, name)`.
pub fn known() -> Vec<(u32, String)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (version_of(m), m.name().to_owned()))
        .collect()
}

/// The versions already applied to the database (empty on a new database).
pub async fn applied(client: &mut Client) -> Result<Vec<u32>> {
    let migrations = embedded::migrations::runner()
        .get_applied_migrations_async(client)
        .await?;
    Ok(migrations.iter().map(version_of).collect())
}
