//! The services' database roles (made by `V42__service_roles`) and their passwords.
//!
//! A password is sent as a SCRAM-SHA-256 verifier computed here, never in clear text, so
//! neither the server's statement log nor anyone on the wire sees it.

use tokio_postgres::Client;

/// Each service's role, and the setting holding its password for `migrate passwords`.
pub const SERVICE_ROLES: [(&str, &str); 4] = [
    ("user_service", "USER_SERVICE_DB_PASSWORD"),
    ("outbox_relay", "OUTBOX_RELAY_DB_PASSWORD"),
    ("event_consumer", "EVENT_CONSUMER_DB_PASSWORD"),
    ("bff", "BFF_DB_PASSWORD"),
];

/// Sets `role`'s password (a role of [`SERVICE_ROLES`] only).
pub async fn set_password(
    client: &Client,
    role: &str,
    password: &str,
) -> Result<(), tokio_postgres::Error> {
    assert!(
        SERVICE_ROLES.iter().any(|(name, _)| *name == role),
        "{role} is not a service role"
    );
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    // ALTER ROLE takes no parameters: the server quotes both into the statement.
    let statement: String = client
        .query_one(
            "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
            &[&role, &verifier],
        )
        .await?
        .get(0);
    client.batch_execute(&statement).await
}
