//! Embeds the undo SQL files and makes a new migration file rebuild the crate.
//!
//! `embed_migrations!` only notices edits to files it already embeds; without the
//! `rerun-if-changed` on the folders, a migration created by `migrate create` would not be
//! compiled into `migrate up` until something else changed.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=sql");
    println!("cargo:rerun-if-changed=undo");

    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let undo_dir = Path::new(&manifest).join("undo");
    let mut files: Vec<_> = fs::read_dir(&undo_dir)
        .expect("migrations/undo exists")
        .map(|entry| entry.expect("readable migrations/undo").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();

    let mut code = String::from("pub(crate) const FILES: &[(&str, &str)] = &[\n");
    for path in files {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 name");
        let full = path.to_str().expect("UTF-8 path");
        writeln!(code, "    ({file_name:?}, include_str!({full:?})),").expect("write to String");
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("undo_files.rs");
    fs::write(out, code).expect("write undo_files.rs");
}
