//! The services' database roles against the real PostgreSQL: each logs in with the password
//! `migrate passwords` set, works on what it owns, and is refused everything else (SQLSTATE
//! 42501), DDL included.

use platform_db::DbConfig;
use secrecy::SecretString;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

fn server() -> DbConfig {
    DbConfig::from_env_vars(std::env::vars().filter(|(k, _)| k != "ENV")).expect("DB_* settings")
}

/// Every test sets the same password, so tests running side by side (roles belong to the
/// whole cluster) agree.
const PASSWORD: &str = "role-password-for-the-test-suite";

/// A migrated scratch database, the service roles' passwords set, and a connection to it
/// as each role.
async fn as_roles() -> Vec<(&'static str, Client)> {
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    migrations::create_scratch_database(&server(), &name)
        .await
        .expect("scratch database");
    let admin = server()
        .with_database(&name)
        .connect()
        .await
        .expect("connect");
    let mut clients = Vec::new();
    for (role, _) in migrations::roles::SERVICE_ROLES {
        migrations::roles::set_password(&admin, role, PASSWORD)
            .await
            .expect("set password");
        let mut config = server().with_database(&name);
        config.db_user = role.to_owned();
        config.db_password = SecretString::from(PASSWORD);
        let client = config
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        clients.push((role, client));
    }
    clients
}

const USERS: &str = "SELECT count(*) FROM users.users";
const OUTBOX_READ: &str = "SELECT count(*) FROM users.outbox";
const OUTBOX_WRITE: &str = "INSERT INTO users.outbox (event_id, aggregate_type, aggregate_id, \
     event_type, topic, payload) VALUES (gen_random_uuid(), 'user', 'u', 'T', 't', '{}')";
const OUTBOX_CHANGE: &str = "UPDATE users.outbox SET payload = '{}' WHERE false";
const RELAY_RECORD: &str =
    "UPDATE users.outbox_relay SET published_total = published_total WHERE false";
const RELAY_PARK: &str = "INSERT INTO users.outbox_parked (outbox_id, aggregate_id, error) \
     SELECT 0, 'a', 'e' WHERE false";
const RELAY_REPLAYS: &str = "UPDATE users.outbox_replays SET sent = sent WHERE false";
const REPLAY_REQUEST: &str = "INSERT INTO users.outbox_replays (up_to, published, rows) \
     SELECT 0, '3:3:', 0 WHERE false";
const OUTBOX_PURGE: &str = "DELETE FROM users.outbox WHERE false";
const SESSIONS: &str = "SELECT count(*) FROM auth.sessions";
const INBOX: &str = "SELECT count(*) FROM consumer.processed_events";
const AUDIT_ADD: &str =
    "INSERT INTO auth.audit_log (via, action, outcome) VALUES ('cli', 'test', 'ok')";
const AUDIT_READ: &str = "SELECT count(*) FROM auth.audit_log";
const AUDIT_CHANGE: &str = "UPDATE auth.audit_log SET outcome = 'ok' WHERE false";
const AUDIT_DELETE: &str = "DELETE FROM auth.audit_log WHERE false";
const REDRIVES: &str = "SELECT count(*) FROM consumer.dlq_redrives";

/// Whether `sql` runs as this role; a refusal must be for lack of privilege.
async fn allowed(role: &str, client: &Client, sql: &str) -> bool {
    match client.batch_execute(sql).await {
        Ok(()) => true,
        Err(error) if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => false,
        Err(error) => panic!("{role}: {sql}: {error}"),
    }
}

#[tokio::test]
async fn each_service_role_works_on_what_it_owns_and_nothing_else() {
    let expected: [(&str, &[&str], &[&str]); 4] = [
        (
            "user_service",
            &[
                USERS,
                OUTBOX_READ,
                OUTBOX_WRITE,
                OUTBOX_CHANGE,
                REPLAY_REQUEST,
                AUDIT_ADD,
            ],
            &[SESSIONS, INBOX, AUDIT_READ, AUDIT_CHANGE, AUDIT_DELETE],
        ),
        (
            "outbox_relay",
            &[
                OUTBOX_READ,
                OUTBOX_PURGE,
                RELAY_RECORD,
                RELAY_PARK,
                RELAY_REPLAYS,
                REPLAY_REQUEST,
                AUDIT_ADD,
            ],
            &[
                USERS,
                OUTBOX_WRITE,
                // The relay never changes an outbox row.
                OUTBOX_CHANGE,
                SESSIONS,
                INBOX,
                AUDIT_READ,
                AUDIT_DELETE,
            ],
        ),
        (
            "event_consumer",
            &[
                INBOX,
                "SELECT count(*) FROM consumer.counters",
                REDRIVES,
                AUDIT_ADD,
            ],
            &[USERS, OUTBOX_READ, SESSIONS, AUDIT_READ, AUDIT_CHANGE],
        ),
        (
            "bff",
            &[SESSIONS, AUDIT_ADD, AUDIT_READ],
            &[USERS, OUTBOX_READ, INBOX, AUDIT_CHANGE, AUDIT_DELETE],
        ),
    ];
    let clients = as_roles().await;
    for ((role, client), (name, yes, no)) in clients.iter().zip(expected) {
        assert_eq!(*role, name);
        for sql in yes {
            assert!(allowed(role, client, sql).await, "{role} may: {sql}");
        }
        for sql in no {
            assert!(!allowed(role, client, sql).await, "{role} may not: {sql}");
        }
        // No role changes the schema, not even its own.
        for schema in ["users", "auth", "consumer", "public"] {
            let ddl = format!("CREATE TABLE {schema}.intruder (id int)");
            assert!(!allowed(role, client, &ddl).await, "{role}: {ddl}");
        }
        let superuser: bool = client
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!superuser, "{role}");
    }
}
