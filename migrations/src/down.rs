//! `migrate down N`: reverts the last N applied migrations with their reviewed undo files.
//!
//! Refinery itself only goes forward. Each `V{n}__{name}.sql` has an exact reverse in
//! `undo/V{n}__{name}.undo.sql`; `down` runs the undo SQL and deletes refinery's history row
//! for each reverted migration, all in ONE transaction: it reverts all N or nothing.

use tokio_postgres::Client;

mod files {
    // `FILES`: (file name, SQL) of every file in undo/, written by the build script.
    include!(concat!(env!("OUT_DIR"), "/undo_files.rs"));
}

const UNDO_SUFFIX: &str = ".undo.sql";

#[derive(Debug, thiserror::Error)]
pub enum DownError {
    #[error("say how many migrations to revert (1 or more)")]
    ZeroSteps,
    #[error("no migration is applied to this database; nothing to revert")]
    NothingApplied,
    #[error("asked to revert {requested} migrations but only {applied} are applied")]
    TooMany { requested: u32, applied: usize },
    #[error("V{version} {name} is applied but unknown to this build; revert it with the build that applied it")]
    Unknown { version: i32, name: String },
    #[error("V{version} {name} as applied differs from this build's (name or checksum); refusing to guess its undo")]
    Divergent { version: i32, name: String },
    #[error("V{version} {name} has no undo file (migrations/undo/V{version}__{name}.undo.sql); write one, or revert with a new forward migration")]
    NoUndo { version: u32, name: String },
    #[error("the undo of V{version} {name} failed; nothing was reverted")]
    Undo {
        version: u32,
        name: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// One undo file, paired with its migration by version and name.
#[derive(Debug, Clone, Copy)]
struct Undo {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

/// Parses `V{n}__{name}.undo.sql`.
fn parse(file_name: &'static str) -> Option<(u32, &'static str)> {
    let rest = file_name.strip_prefix('V')?.strip_suffix(UNDO_SUFFIX)?;
    let (version, name) = rest.split_once("__")?;
    if !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((version.parse().ok()?, name))
}

fn undo_files() -> impl Iterator<Item = Undo> {
    files::FILES.iter().filter_map(|&(file_name, sql)| {
        let (version, name) = parse(file_name)?;
        Some(Undo { version, name, sql })
    })
}

fn undo_for(version: u32, name: &str) -> Option<Undo> {
    undo_files().find(|u| u.version == version && u.name == name)
}

/// What keeps `down` from reverting every migration, one line each: a migration without an
/// undo file, an undo file without its migration, an undo file named wrongly. Empty when
/// every migration can be reverted.
pub fn undo_problems() -> Vec<String> {
    let known = crate::known();
    let mut problems = Vec::new();
    for (version, name) in &known {
        if undo_for(*version, name).is_none() {
            problems.push(format!(
                "V{version}__{name}.sql has no undo/V{version}__{name}{UNDO_SUFFIX}"
            ));
        }
    }
    for &(file_name, _) in files::FILES {
        match parse(file_name) {
            None => problems.push(format!(
                "undo/{file_name} is not named V{{n}}__{{name}}{UNDO_SUFFIX}"
            )),
            Some((version, name)) => {
                if !known.iter().any(|(v, n)| *v == version && n == name) {
                    problems.push(format!(
                        "undo/{file_name} has no migration V{version}__{name}.sql"
                    ));
                }
            }
        }
    }
    problems
}

/// Reverts the last `steps` applied migrations, newest first, in one transaction; returns
/// them as `(version, name)` in the order reverted. Checks everything before changing
/// anything: each migration must be the one this build embeds and have an undo file.
pub async fn down(client: &mut Client, steps: u32) -> Result<Vec<(u32, String)>, DownError> {
    if steps == 0 {
        return Err(DownError::ZeroSteps);
    }
    let tx = client.transaction().await?;
    let has_history: bool = tx
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !has_history {
        return Err(DownError::NothingApplied);
    }
    // A concurrent `up` or `down` waits for this one instead of interleaving with it.
    tx.batch_execute("LOCK TABLE refinery_schema_history IN EXCLUSIVE MODE")
        .await?;
    let rows = tx
        .query(
            "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version DESC",
            &[],
        )
        .await?;
    if rows.is_empty() {
        return Err(DownError::NothingApplied);
    }
    if steps as usize > rows.len() {
        return Err(DownError::TooMany {
            requested: steps,
            applied: rows.len(),
        });
    }

    let embedded = crate::embedded_migrations();
    let mut plan = Vec::new();
    for row in rows.iter().take(steps as usize) {
        let version: i32 = row.get(0);
        let name: Option<String> = row.get(1);
        let checksum: Option<String> = row.get(2);
        let name = name.unwrap_or_default();
        let Some(migration) = embedded
            .iter()
            .find(|m| i64::from(m.version()) == i64::from(version))
        else {
            return Err(DownError::Unknown { version, name });
        };
        if migration.name() != name
            || checksum.as_deref() != Some(migration.checksum().to_string().as_str())
        {
            return Err(DownError::Divergent { version, name });
        }
        let undo =
            undo_for(crate::version_of(migration), &name).ok_or_else(|| DownError::NoUndo {
                version: crate::version_of(migration),
                name: name.clone(),
            })?;
        plan.push(undo);
    }

    for undo in &plan {
        tx.batch_execute(undo.sql)
            .await
            .map_err(|source| DownError::Undo {
                version: undo.version,
                name: undo.name.to_owned(),
                source,
            })?;
        let version = i32::try_from(undo.version).expect("the version came from an INT4 row");
        tx.execute(
            "DELETE FROM refinery_schema_history WHERE version = $1",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(plan
        .into_iter()
        .map(|u| (u.version, u.name.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_undo_file_names() {
        assert_eq!(
            parse("V40__auth_sessions.undo.sql"),
            Some((40, "auth_sessions"))
        );
        assert_eq!(parse("V40__auth_sessions.sql"), None);
        assert_eq!(parse("U40__auth_sessions.undo.sql"), None);
        assert_eq!(parse("Vx__a.undo.sql"), None);
    }
}
