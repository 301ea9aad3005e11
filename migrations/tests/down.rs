//! `migrate down N` against the real PostgreSQL: each undo file restores exactly the schema
//! before its migration, and a refused or failed down changes nothing.

use migrations::DownError;
use platform_db::DbConfig;
use tokio_postgres::Client;

/// The server from the same settings the services and `make` use (`DB_*`, `DATABASE_URL`),
/// as the development profile reads them (tests run in development whatever `ENV` says).
fn server() -> DbConfig {
    DbConfig::from_env_vars(std::env::vars().filter(|(k, _)| k != "ENV")).expect("DB_* settings")
}

async fn connect(name: &str) -> Client {
    server()
        .with_database(name)
        .connect()
        .await
        .expect("connect")
}

fn scratch_name() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// A migrated scratch database.
async fn migrated() -> Client {
    let name = scratch_name();
    migrations::create_scratch_database(&server(), &name)
        .await
        .expect("scratch database");
    connect(&name).await
}

/// An empty scratch database (no migration applied).
async fn empty() -> Client {
    let name = scratch_name();
    let admin = connect("postgres").await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    connect(&name).await
}

/// Everything a migration can define, one sorted line each.
async fn schema(client: &Client) -> Vec<String> {
    const USER_NAMESPACES: &str =
        "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'";
    let queries = [
        format!("SELECT 'schema ' || nspname || ' ' || coalesce(nspacl, acldefault('n', nspowner))::text FROM pg_namespace n WHERE {USER_NAMESPACES}"),
        format!(
            "SELECT 'relation ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' '
                    || coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::\"char\", c.relowner))::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_NAMESPACES} AND c.relname <> 'refinery_schema_history'"
        ),
        "SELECT concat_ws(' ', 'column', table_schema, table_name, column_name, data_type, is_nullable,
                column_default, is_identity, identity_generation)
         FROM information_schema.columns
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
           AND table_name <> 'refinery_schema_history'"
            .to_owned(),
        format!(
            "SELECT 'constraint ' || n.nspname || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
             FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE {USER_NAMESPACES}"
        ),
        "SELECT 'index ' || indexdef FROM pg_indexes
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
           AND tablename <> 'refinery_schema_history'"
            .to_owned(),
        format!(
            "SELECT 'function ' || pg_get_functiondef(p.oid)
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_NAMESPACES}"
        ),
        "SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal".to_owned(),
        "SELECT 'default privileges ' || defaclnamespace::regnamespace::text || ' ' || defaclobjtype::text
                || ' ' || defaclacl::text FROM pg_default_acl"
            .to_owned(),
        format!(
            "SELECT 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE {USER_NAMESPACES} AND t.typtype IN ('e', 'd', 'r')"
        ),
        "SELECT 'extension ' || extname FROM pg_extension".to_owned(),
    ];
    let mut lines = Vec::new();
    for query in queries {
        for row in client.query(query.as_str(), &[]).await.expect(&query) {
            let line: String = row.get(0);
            // refinery's own bookkeeping is not part of any migration.
            if !line.contains("refinery_schema_history") {
                lines.push(line);
            }
        }
    }
    lines.sort();
    lines
}

async fn history(client: &Client) -> Vec<i32> {
    client
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn every_migration_has_an_undo_file() {
    let problems = migrations::undo_problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn each_undo_restores_the_schema_before_its_migration() {
    let mut client = empty().await;
    let versions: Vec<(u32, String)> = migrations::known();
    assert!(!versions.is_empty());

    // Up one migration at a time, remembering the schema after each.
    let mut before = vec![schema(&client).await];
    for (version, _) in &versions {
        migrations::run_to(&mut client, *version).await.expect("up");
        before.push(schema(&client).await);
    }
    let full = before.pop().expect("one per migration");

    // Down one at a time: each step must land exactly where its migration started.
    for (version, name) in versions.iter().rev() {
        let reverted = migrations::down(&mut client, 1).await.expect("down 1");
        assert_eq!(reverted, [(*version, name.clone())]);
        let expected = before.pop().expect("one per migration");
        assert_eq!(
            schema(&client).await,
            expected,
            "undo/V{version}__{name}.undo.sql does not revert V{version}__{name}.sql exactly"
        );
    }
    assert!(history(&client).await.is_empty());

    // And up again gives the same schema as the first time.
    migrations::run(&mut client).await.expect("up again");
    assert_eq!(schema(&client).await, full);
}

#[tokio::test]
async fn up_down_all_up_gives_the_same_schema() {
    let mut client = migrated().await;
    let full = schema(&client).await;
    let count = migrations::known().len() as u32;

    let reverted = migrations::down(&mut client, count)
        .await
        .expect("down all");
    let newest_first: Vec<u32> = migrations::known().iter().rev().map(|(v, _)| *v).collect();
    assert_eq!(
        reverted.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        newest_first
    );
    assert!(history(&client).await.is_empty());
    assert_eq!(schema(&client).await, schema(&empty().await).await);

    migrations::run(&mut client).await.expect("up again");
    assert_eq!(schema(&client).await, full);
    let known: Vec<u32> = migrations::known().into_iter().map(|(v, _)| v).collect();
    assert_eq!(migrations::applied(&mut client).await.unwrap(), known);
}

#[tokio::test]
async fn down_refuses_more_than_is_applied_and_changes_nothing() {
    let mut client = migrated().await;
    let before = schema(&client).await;
    let count = migrations::known().len() as u32;

    let err = migrations::down(&mut client, count + 1).await.unwrap_err();
    assert!(matches!(err, DownError::TooMany { .. }), "{err}");
    let err = migrations::down(&mut client, 0).await.unwrap_err();
    assert!(matches!(err, DownError::ZeroSteps), "{err}");
    assert_eq!(history(&client).await.len(), count as usize);
    assert_eq!(schema(&client).await, before);
}

#[tokio::test]
async fn down_on_a_new_database_has_nothing_to_revert() {
    let mut client = empty().await;
    let err = migrations::down(&mut client, 1).await.unwrap_err();
    assert!(matches!(err, DownError::NothingApplied), "{err}");
}

#[tokio::test]
async fn down_refuses_a_migration_that_differs_from_this_build() {
    let mut client = migrated().await;
    let (newest, _) = migrations::known().pop().expect("a migration");
    let newest = newest as i32;
    client
        .execute(
            "UPDATE refinery_schema_history SET checksum = '1' WHERE version = $1",
            &[&newest],
        )
        .await
        .unwrap();
    let before = schema(&client).await;

    let err = migrations::down(&mut client, 1).await.unwrap_err();
    assert!(matches!(err, DownError::Divergent { .. }), "{err}");
    assert_eq!(schema(&client).await, before);
}

#[tokio::test]
async fn a_failing_undo_reverts_nothing() {
    let mut client = migrated().await;
    let known = migrations::known();
    let before = schema(&client).await;
    let history_before = history(&client).await;
    // Something built on V1's users table: its undo's DROP (no CASCADE) must fail, and the
    // newer migrations reverted before it in the same call must come back.
    client
        .batch_execute("CREATE VIEW public.user_emails AS SELECT email FROM users.users")
        .await
        .unwrap();

    let err = migrations::down(&mut client, known.len() as u32)
        .await
        .unwrap_err();
    assert!(matches!(err, DownError::Undo { version: 1, .. }), "{err}");
    assert_eq!(history(&client).await, history_before);
    client
        .batch_execute("DROP VIEW public.user_emails")
        .await
        .unwrap();
    assert_eq!(schema(&client).await, before);
}
