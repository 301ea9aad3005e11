//! `migrate create NAME`: the next versioned migration file and its undo file.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Longest accepted name; refinery stores it in a `varchar(255)` and people type it.
const MAX_NAME_LEN: usize = 60;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(
        "bad migration name {name:?}: {reason}; use lower-case snake_case, e.g. add_users_locale"
    )]
    BadName { name: String, reason: &'static str },
    #[error("a migration named {name:?} already exists: {existing}")]
    Duplicate { name: String, existing: String },
    #[error("migration numbers end at {}", u32::MAX)]
    VersionsExhausted,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What [`create`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub version: u32,
    /// `{sql_dir}/V{version}__{name}.sql`
    pub migration: PathBuf,
    /// `{undo_dir}/V{version}__{name}.undo.sql`
    pub undo: PathBuf,
}

/// Checks that `name` makes a refinery file name that reads well: `[a-z][a-z0-9_]*`, no
/// `__` (refinery's version separator), no trailing `_`, at most 60 characters.
pub fn validate_name(name: &str) -> Result<(), CreateError> {
    let bad = |reason| {
        Err(CreateError::BadName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 60 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a lower-case letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return bad("only a-z, 0-9 and _ are allowed");
    }
    if name.contains("__") {
        return bad("`__` separates the version from the name");
    }
    if name.ends_with('_') {
        return bad("it ends with `_`");
    }
    Ok(())
}

/// Parses a refinery versioned file name, `V{n}__{name}.sql`, into `(n, name)`.
fn parse_versioned(file_name: &str) -> Option<(u32, &str)> {
    let rest = file_name.strip_prefix('V')?.strip_suffix(".sql")?;
    let (version, name) = rest.split_once("__")?;
    // The same shape refinery embeds: `\w+` names, so `V1__x.undo.sql` is not one.
    if version.is_empty()
        || !version.bytes().all(|b| b.is_ascii_digit())
        || name.is_empty()
        || !name.chars().all(|c| c.is_alphanumeric() || c == '_')
    {
        return None;
    }
    Some((version.parse().ok()?, name))
}

/// The versioned migrations in `sql_dir`, as `(version, name)`, unsorted.
fn existing(sql_dir: &Path) -> Result<Vec<(u32, String)>, CreateError> {
    let io = |source| CreateError::Io {
        path: sql_dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(sql_dir).map_err(io)? {
        let file_name = entry.map_err(io)?.file_name();
        if let Some((version, name)) = file_name.to_str().and_then(parse_versioned) {
            found.push((version, name.to_owned()));
        }
    }
    Ok(found)
}

/// The version `create` gives the next migration: one more than the highest in `sql_dir`
/// (1 in an empty folder).
///
/// Always after the highest, never a free number in an owner's range: refinery refuses to
/// apply a migration numbered below one a database already has, so a gap filled later
/// would break every database migrated past it.
pub fn next_version(sql_dir: &Path) -> Result<u32, CreateError> {
    let highest = existing(sql_dir)?.into_iter().map(|(v, _)| v).max();
    match highest {
        None => Ok(1),
        Some(v) => v.checked_add(1).ok_or(CreateError::VersionsExhausted),
    }
}

/// Writes `V{next}__{name}.sql` into `sql_dir` and its undo stub into `undo_dir`, never
/// overwriting a file. Refuses a bad name or one that an existing migration has.
pub fn create(sql_dir: &Path, undo_dir: &Path, name: &str) -> Result<Created, CreateError> {
    validate_name(name)?;
    if let Some((version, _)) = existing(sql_dir)?.into_iter().find(|(_, n)| n == name) {
        return Err(CreateError::Duplicate {
            name: name.to_owned(),
            existing: format!("V{version}__{name}.sql"),
        });
    }
    let version = next_version(sql_dir)?;
    let stem = format!("V{version}__{name}");
    let migration = sql_dir.join(format!("{stem}.sql"));
    let undo = undo_dir.join(format!("{stem}.undo.sql"));

    write_new(
        &migration,
        &format!(
            "-- {stem}: say here why this change is needed.\n\
             -- Applied once, in its own transaction, by `make migrate`; never edit it after it\n\
             -- has been merged: write a new migration instead.\n"
        ),
    )?;
    let undo_text = format!(
        "-- Reverts {stem}.sql exactly (`make migrate-down`): drop what it created, in\n\
         -- reverse order, without CASCADE. Runs in one transaction with the removal of its\n\
         -- history row, so no BEGIN or COMMIT here.\n"
    );
    if let Err(e) = write_new(&undo, &undo_text) {
        // Half a pair would leave a migration without its undo.
        let _ = fs::remove_file(&migration);
        return Err(e);
    }
    Ok(Created {
        version,
        migration,
        undo,
    })
}

fn write_new(path: &Path, text: &str) -> Result<(), CreateError> {
    let io = |source| CreateError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_versioned_sql_file_names() {
        assert_eq!(
            parse_versioned("V40__auth_sessions.sql"),
            Some((40, "auth_sessions"))
        );
        assert_eq!(parse_versioned("V1__a.undo.sql"), None);
        assert_eq!(parse_versioned("U2__x.sql"), None);
        assert_eq!(parse_versioned("V__x.sql"), None);
        assert_eq!(parse_versioned("V2_x.sql"), None);
        assert_eq!(parse_versioned("V2__x.rs"), None);
        assert_eq!(parse_versioned("README.md"), None);
    }
}
