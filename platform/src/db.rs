//! The PostgreSQL connection settings every service shares (`DB_*`, `DATABASE_URL`, TLS)
//! and its pool: the `platform-db` crate, which the `migrate` tool uses too.

pub use platform_db::*;
