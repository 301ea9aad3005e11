//! Sessions (refresh-token families) in the `auth` schema, and the short-lived cache of
//! their state that keeps access-token checks off the database.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use platform::wire::Role;
use uuid::Uuid;

pub type Result<T, E = platform::error::DbError> = std::result::Result<T, E>;

const INSERT_SESSION: &str = "INSERT INTO auth.sessions (id, user_id, role, expires_at) \
     VALUES ($1, $2, $3, $4)";
const INSERT_REFRESH: &str = "INSERT INTO auth.refresh_tokens (jti, session_id) VALUES ($1, $2)";
/// Marks a refresh token used, only if it is unused and its session is live.
const USE_REFRESH: &str = "UPDATE auth.refresh_tokens r SET used_at = now() \
     FROM auth.sessions s \
     WHERE r.jti = $1 AND r.session_id = $2 AND r.used_at IS NULL \
       AND s.id = r.session_id AND s.revoked_at IS NULL AND s.expires_at > now() \
     RETURNING s.user_id, s.role, s.expires_at";
const REVOKE: &str = "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $2 \
     WHERE id = $1 AND revoked_at IS NULL";
const SET_ROLE: &str = "UPDATE auth.sessions SET role = $2 WHERE id = $1";
const IS_LIVE: &str = "SELECT revoked_at IS NULL AND expires_at > now() \
     FROM auth.sessions WHERE id = $1";

/// A session's identity as its tokens carry it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Rotation {
    /// The token was good; `new_jti` is the next one in the family.
    Rotated { session: Session, new_jti: Uuid },
    /// The token had been used before: the whole session is now revoked.
    ReuseDetected,
    /// Unknown token, or the session is revoked or expired.
    Invalid,
}

/// Opens a session with its first refresh token; returns the token's jti.
pub async fn create(client: &impl GenericClient, session: &Session) -> Result<Uuid> {
    let insert = client.prepare_cached(INSERT_SESSION).await?;
    client
        .execute(
            &insert,
            &[
                &session.id,
                &session.user_id,
                &session.role.as_str(),
                &session.expires_at,
            ],
        )
        .await?;
    let jti = Uuid::now_v7();
    let refresh = client.prepare_cached(INSERT_REFRESH).await?;
    client.execute(&refresh, &[&jti, &session.id]).await?;
    Ok(jti)
}

/// Trades refresh token `jti` of session `sid` for the next one. Call inside a
/// transaction: marking the old token used and issuing the new one go together.
///
/// `role` is the user's current role: a session whose role changed carries the new one
/// from here on.
pub async fn rotate(
    client: &impl GenericClient,
    sid: Uuid,
    jti: Uuid,
    role: Role,
) -> Result<Rotation> {
    let used = client.prepare_cached(USE_REFRESH).await?;
    if let Some(row) = client.query_opt(&used, &[&jti, &sid]).await? {
        let session = Session {
            id: sid,
            user_id: row.get(0),
            role,
            expires_at: row.get(2),
        };
        if Role::from_db(row.get(1)) != role {
            let update = client.prepare_cached(SET_ROLE).await?;
            client.execute(&update, &[&sid, &role.as_str()]).await?;
        }
        let new_jti = Uuid::now_v7();
        let insert = client.prepare_cached(INSERT_REFRESH).await?;
        client.execute(&insert, &[&new_jti, &sid]).await?;
        return Ok(Rotation::Rotated { session, new_jti });
    }
    let known = client
        .query_opt(
            "SELECT used_at IS NOT NULL FROM auth.refresh_tokens WHERE jti = $1 AND session_id = $2",
            &[&jti, &sid],
        )
        .await?;
    match known.map(|row| row.get::<_, bool>(0)) {
        Some(true) => {
            // A used token shows up again: it was copied. Both holders lose the family.
            revoke(client, sid, "refresh token reuse").await?;
            Ok(Rotation::ReuseDetected)
        }
        _ => Ok(Rotation::Invalid),
    }
}

/// Revokes a session; returns whether it was live.
pub async fn revoke(client: &impl GenericClient, sid: Uuid, reason: &str) -> Result<bool> {
    let revoke = client.prepare_cached(REVOKE).await?;
    Ok(client.execute(&revoke, &[&sid, &reason]).await? == 1)
}

/// Revokes every live session of `user_id` but `keep`; returns how many.
pub async fn revoke_others(
    client: &impl GenericClient,
    user_id: Uuid,
    keep: Uuid,
    reason: &str,
) -> Result<u64> {
    let revoke = client
        .prepare_cached(
            "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $3 \
             WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
        )
        .await?;
    Ok(client.execute(&revoke, &[&user_id, &keep, &reason]).await?)
}

/// Forgets an erased user, in one transaction: every session (with its refresh tokens)
/// and every stored registration answer of the user go. Returns the sessions' ids.
pub async fn forget_user(
    client: &mut deadpool_postgres::Client,
    user_id: Uuid,
) -> Result<Vec<Uuid>> {
    let tx = client.transaction().await?;
    let sessions: Vec<Uuid> = tx
        .query(
            "DELETE FROM auth.sessions WHERE user_id = $1 RETURNING id",
            &[&user_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    tx.execute(
        "DELETE FROM auth.idempotency_keys WHERE response_body->>'id' = $1",
        &[&user_id.to_string()],
    )
    .await?;
    tx.commit().await?;
    Ok(sessions)
}

/// Whether a session is neither revoked nor expired.
pub async fn is_live(client: &impl GenericClient, sid: Uuid) -> Result<bool> {
    let query = client.prepare_cached(IS_LIVE).await?;
    Ok(client
        .query_opt(&query, &[&sid])
        .await?
        .is_some_and(|row| row.get::<_, bool>(0)))
}

/// What an access token of a session may do now: `Some(role)` while the session is live
/// and its user active (with the user's current role), `None` once it must be refused.
pub type Standing = Option<Role>;

/// Remembers, for a few seconds, each session's [`Standing`], so that access-token checks
/// cost no round trip; a logout elsewhere, a role change or a deactivation shows within
/// `ttl`. Bounded (moka evicts the least useful entries), so a flood of sessions cannot
/// grow it.
#[derive(Debug)]
pub struct LivenessCache {
    entries: moka::sync::Cache<Uuid, Standing>,
}

/// Sessions remembered at most.
const LIVENESS_CAPACITY: u64 = 100_000;

impl LivenessCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(LIVENESS_CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The remembered standing of session `sid`, if it is fresh.
    pub fn get(&self, sid: Uuid) -> Option<Standing> {
        self.entries.get(&sid)
    }

    /// Remembers the standing of session `sid` for the cache's time to live.
    pub fn remember(&self, sid: Uuid, standing: Standing) {
        self.entries.insert(sid, standing);
    }

    /// Records a revocation made by this process, so it applies here at once.
    pub fn revoked(&self, sid: Uuid) {
        self.entries.insert(sid, None);
    }
}
