//! `Idempotency-Key` for registration: the first answer to a key is stored and replayed
//! for 24 hours; the same key with a different body, or while the first request still
//! runs, is refused. Keys are scoped per client (the address the rate limiter sees): the
//! same key from another client is another request, so nobody can replay or block a key
//! someone else chose. The key row is claimed with `INSERT .. ON CONFLICT DO NOTHING`, so
//! two concurrent requests cannot both run.

use deadpool_postgres::GenericClient;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub type Result<T, E = tokio_postgres::Error> = std::result::Result<T, E>;

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// What a request carrying a key may do.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// First use: run the request, then [`finish`] (or [`abandon`] on a transient failure).
    Fresh,
    /// Already answered: send this again.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    /// The key was used with another body.
    Mismatch,
    /// The first request with this key has not finished.
    InProgress,
}

const EXPIRE: &str = "DELETE FROM auth.idempotency_keys WHERE client = $1 AND key = $2 \
     AND (created_at < now() - interval '24 hours' \
          OR (response_status IS NULL AND created_at < now() - interval '5 minutes'))";
const CLAIM: &str = "INSERT INTO auth.idempotency_keys (client, key, request_hash) \
     VALUES ($1, $2, $3) ON CONFLICT (client, key) DO NOTHING";
const EXISTING: &str = "SELECT request_hash, response_status, response_body \
     FROM auth.idempotency_keys WHERE client = $1 AND key = $2";
const FINISH: &str = "UPDATE auth.idempotency_keys \
     SET response_status = $3, response_body = $4 WHERE client = $1 AND key = $2";
const ABANDON: &str =
    "DELETE FROM auth.idempotency_keys WHERE client = $1 AND key = $2 AND response_status IS NULL";

/// An HMAC of the request body: comparable, yet it reveals nothing of the password in it.
pub fn fingerprint(secret: &[u8], body: &[u8]) -> Vec<u8> {
    match <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; this arm only satisfies the type.
        Err(_) => <Sha256 as sha2::Digest>::digest(body).to_vec(),
    }
}

/// A key as one client used it.
#[derive(Debug, Clone, Copy)]
pub struct Scoped<'a> {
    /// Who sent it (the client address).
    pub client: &'a str,
    /// The `Idempotency-Key` header.
    pub key: &'a str,
}

pub async fn begin(client: &impl GenericClient, key: Scoped<'_>, hash: &[u8]) -> Result<Claim> {
    let Scoped { client: who, key } = key;
    let expire = client.prepare_cached(EXPIRE).await?;
    client.execute(&expire, &[&who, &key]).await?;
    let claim = client.prepare_cached(CLAIM).await?;
    if client.execute(&claim, &[&who, &key, &hash]).await? == 1 {
        return Ok(Claim::Fresh);
    }
    let existing = client.prepare_cached(EXISTING).await?;
    let Some(row) = client.query_opt(&existing, &[&who, &key]).await? else {
        // Finished and expired between the two statements: treat as still running, the
        // client's retry will claim it.
        return Ok(Claim::InProgress);
    };
    let stored: Vec<u8> = row.get(0);
    let same: bool = subtle::ConstantTimeEq::ct_eq(stored.as_slice(), hash).into();
    if !same {
        return Ok(Claim::Mismatch);
    }
    match (
        row.get::<_, Option<i16>>(1),
        row.get::<_, Option<serde_json::Value>>(2),
    ) {
        (Some(status), Some(body)) => Ok(Claim::Replay {
            status: status as u16,
            body,
        }),
        _ => Ok(Claim::InProgress),
    }
}

pub async fn finish(
    client: &impl GenericClient,
    key: Scoped<'_>,
    status: u16,
    body: &serde_json::Value,
) -> Result<()> {
    let finish = client.prepare_cached(FINISH).await?;
    client
        .execute(&finish, &[&key.client, &key.key, &(status as i16), body])
        .await?;
    Ok(())
}

/// Releases a key whose request failed for a passing reason, so a retry may run.
pub async fn abandon(client: &impl GenericClient, key: Scoped<'_>) -> Result<()> {
    let abandon = client.prepare_cached(ABANDON).await?;
    client.execute(&abandon, &[&key.client, &key.key]).await?;
    Ok(())
}
