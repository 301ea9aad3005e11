//! `migrate create NAME`: the file names and version numbers it produces, in a temporary
//! folder (never in migrations/sql).

use std::fs;
use std::path::{Path, PathBuf};

use migrations::{create, next_version, CreateError};

/// A fresh temporary `sql/` and `undo/` pair, removed when dropped.
struct Dirs {
    root: PathBuf,
}

impl Dirs {
    fn new(existing: &[&str]) -> Self {
        let root = std::env::temp_dir().join(format!("migrate_create_{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(root.join("sql")).unwrap();
        fs::create_dir_all(root.join("undo")).unwrap();
        for name in existing {
            fs::write(root.join("sql").join(name), "SELECT 1;\n").unwrap();
        }
        Dirs { root }
    }
    fn sql(&self) -> PathBuf {
        self.root.join("sql")
    }
    fn undo(&self) -> PathBuf {
        self.root.join("undo")
    }
    fn files(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn a_new_migration_takes_the_next_version_after_the_highest() {
    let dirs = Dirs::new(&[
        "V1__schemas_users_outbox.sql",
        "V30__consumer_inbox.sql",
        "V40__auth_sessions.sql",
        "README.md",
        // not a versioned migration: ignored when numbering
        "V99__notes.undo.sql",
    ]);
    let created = create(&dirs.sql(), &dirs.undo(), "add_users_locale").unwrap();
    assert_eq!(created.version, 41);
    assert_eq!(
        created.migration,
        dirs.sql().join("V41__add_users_locale.sql")
    );
    assert_eq!(
        created.undo,
        dirs.undo().join("V41__add_users_locale.undo.sql")
    );
    assert!(fs::read_to_string(&created.migration)
        .unwrap()
        .starts_with("-- V41__add_users_locale"));
    assert!(fs::read_to_string(&created.undo)
        .unwrap()
        .contains("Reverts V41__add_users_locale.sql"));

    let second = create(&dirs.sql(), &dirs.undo(), "add_users_timezone").unwrap();
    assert_eq!(second.version, 42);
    assert_eq!(next_version(&dirs.sql()).unwrap(), 43);
    assert_eq!(
        dirs.files(&dirs.undo()),
        [
            "V41__add_users_locale.undo.sql",
            "V42__add_users_timezone.undo.sql"
        ]
    );
}

#[test]
fn the_first_migration_of_an_empty_folder_is_v1() {
    let dirs = Dirs::new(&[]);
    let created = create(&dirs.sql(), &dirs.undo(), "initial").unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(dirs.files(&dirs.sql()), ["V1__initial.sql"]);
}

#[test]
fn bad_names_are_refused_and_nothing_is_written() {
    let dirs = Dirs::new(&["V1__schemas_users_outbox.sql"]);
    let too_long = "a".repeat(61);
    for bad in [
        "",
        "AddUsers",
        "add-users",
        "add users",
        "1_add_users",
        "_add_users",
        "add__users",
        "add_users_",
        "add_users.sql",
        "ajouté",
        too_long.as_str(),
    ] {
        let err = create(&dirs.sql(), &dirs.undo(), bad).unwrap_err();
        assert!(
            matches!(err, CreateError::BadName { .. }),
            "{bad:?} gave {err}"
        );
        assert!(err.to_string().contains("snake_case"), "{err}");
    }
    assert_eq!(dirs.files(&dirs.sql()), ["V1__schemas_users_outbox.sql"]);
    assert!(dirs.files(&dirs.undo()).is_empty());
}

#[test]
fn a_name_already_used_is_refused() {
    let dirs = Dirs::new(&["V1__schemas_users_outbox.sql", "V30__consumer_inbox.sql"]);
    let err = create(&dirs.sql(), &dirs.undo(), "consumer_inbox").unwrap_err();
    assert!(matches!(err, CreateError::Duplicate { .. }), "{err}");
    assert!(err.to_string().contains("V30__consumer_inbox.sql"), "{err}");
    assert_eq!(dirs.files(&dirs.sql()).len(), 2);
}

#[test]
fn the_embedded_migrations_are_exactly_the_versioned_files_of_sql() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut on_disk: Vec<(u32, String)> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .map(|f| {
            let stem = f
                .strip_suffix(".sql")
                .unwrap_or_else(|| panic!("sql/{f} is not a .sql file"));
            let (v, name) = stem
                .strip_prefix('V')
                .and_then(|s| s.split_once("__"))
                .unwrap_or_else(|| panic!("sql/{f} is not named V{{n}}__{{name}}.sql"));
            (v.parse().unwrap(), name.to_owned())
        })
        .collect();
    on_disk.sort();
    let mut known = migrations::known();
    known.sort();
    assert_eq!(known, on_disk);
}
