//! The `users.users` table: plain functions over a client or the caller's transaction.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::validation::NewUser;

pub use platform::wire::{Role, User};

/// A user from a row of its columns.
pub fn from_row(row: &Row) -> User {
    user_from_row(row)
}

fn user_from_row(row: &Row) -> User {
    User {
        id: row.get("id"),
        email: row.get("email"),
        phone: row.get("phone"),
        first_name: row.get("first_name"),
        last_name: row.get("last_name"),
        role: Role::from_db(row.get("role")),
        is_active: row.get("is_active"),
        created_at: row.get("created_at"),
        version: row.get("version"),
    }
}

/// What a credential check needs of a user.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: String,
    pub role: Role,
    pub is_active: bool,
}

/// Which unique field a registration collided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Email,
    Phone,
}

impl Taken {
    pub fn field(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
        }
    }

    /// The database's verdict, read from the unique violation's constraint name: no
    /// check-then-insert race can slip between a look-up and the insert.
    pub fn of(error: &tokio_postgres::Error) -> Option<Self> {
        let db = error.as_db_error()?;
        if db.code() != &SqlState::UNIQUE_VIOLATION {
            return None;
        }
        match db.constraint()? {
            "users_email_key" => Some(Self::Email),
            "users_phone_key" => Some(Self::Phone),
            _ => None,
        }
    }
}

/// The columns [`from_row`] reads.
pub(crate) const COLUMNS: &str =
    "id, email, phone, first_name, last_name, role, is_active, created_at, version";

/// The user `id` (not erased), its row locked until the caller's transaction ends (a change of the user
/// and its versioned event are written under this lock).
pub async fn lock<C: GenericClient + Sync>(
    tx: &C,
    id: Uuid,
) -> Result<Option<User>, tokio_postgres::Error> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM users.users WHERE id = $1 AND erased_at IS NULL FOR UPDATE"
            ),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(user_from_row))
}

const INSERT: &str = "INSERT INTO users.users \
    (id, email, phone, password_hash, first_name, last_name) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    RETURNING id, email, phone, first_name, last_name, role, is_active, created_at, version";

/// Inserts `user` with its password hash. A taken email or phone is a unique violation;
/// see [`Taken::of`].
#[tracing::instrument(skip_all, err)]
pub async fn insert<C: GenericClient + Sync>(
    tx: &C,
    user: &NewUser,
    password_hash: &str,
) -> Result<User, tokio_postgres::Error> {
    let statement = tx.prepare_cached(INSERT).await?;
    let row = tx
        .query_one(
            &statement,
            &[
                &Uuid::now_v7(),
                &user.email,
                &user.phone,
                &password_hash,
                &user.first_name,
                &user.last_name,
            ],
        )
        .await?;
    Ok(user_from_row(&row))
}

#[tracing::instrument(skip(client), err)]
pub async fn find_by_id<C: GenericClient + Sync>(
    client: &C,
    id: Uuid,
) -> Result<Option<User>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM users.users WHERE id = $1 AND erased_at IS NULL"
        ))
        .await?;
    Ok(client
        .query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(user_from_row))
}

const CREDENTIALS: &str = "SELECT id, password_hash, role, is_active FROM users.users \
    WHERE lower(email) = lower($1)";

/// Looks a user up by email, case-insensitively (served by the `lower(email)` index).
#[tracing::instrument(skip_all, err)]
pub async fn find_credentials<C: GenericClient + Sync>(
    client: &C,
    email: &str,
) -> Result<Option<Credentials>, tokio_postgres::Error> {
    let statement = client.prepare_cached(CREDENTIALS).await?;
    Ok(client
        .query_opt(&statement, &[&email.trim()])
        .await?
        .map(|row| Credentials {
            id: row.get("id"),
            password_hash: row.get("password_hash"),
            role: Role::from_db(row.get("role")),
            is_active: row.get("is_active"),
        }))
}

/// A role change as `set-role` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub id: Uuid,
    pub email: String,
    pub previous: Role,
    pub current: Role,
    /// The user's version after the change (unchanged when the role was already `current`).
    pub version: i64,
}

impl RoleChange {
    pub fn changed(&self) -> bool {
        self.previous != self.current
    }
}

/// A role change is a change of the user: its version goes up by one, unless the role
/// stays what it was.
const SET_ROLE: &str = "UPDATE users.users AS u SET role = $2, updated_at = now(), \
    version = u.version + CASE WHEN old.role = $2 THEN 0 ELSE 1 END \
    FROM (SELECT id, role FROM users.users WHERE lower(email) = lower($1) FOR UPDATE) AS old \
    WHERE u.id = old.id \
    RETURNING u.id, u.email, old.role AS previous, u.role AS current, u.version";

/// Gives the user with `email` the role `role`
/// table's check); `None` when no user has that email.
#[tracing::instrument(skip(client, email), err)]
pub async fn set_role<C: GenericClient + Sync>(
    client: &C,
    email: &str,
    role: Role,
) -> Result<Option<RoleChange>, tokio_postgres::Error> {
    let statement = client.prepare_cached(SET_ROLE).await?;
    Ok(client
        .query_opt(&statement, &[&email.trim(), &role.as_str()])
        .await?
        .map(|row| RoleChange {
            id: row.get("id"),
            email: row.get("email"),
            previous: Role::from_db(row.get("previous")),
            current: Role::from_db(row.get("current")),
            version: row.get("version"),
        }))
}

/// Records a role change made on the operator's command line in the audit log: the user
/// id and the roles, never the email.
pub async fn audit_role_change<C: tokio_postgres::GenericClient + Sync>(
    client: &C,
    change: &RoleChange,
) -> Result<(), tokio_postgres::Error> {
    let parameters = serde_json::json!({ "user_id": change.id, "role": change.current.as_str() });
    let detail = serde_json::json!({
        "previous": change.previous.as_str(),
        "current": change.current.as_str(),
    });
    let entry = platform::audit::Entry {
        actor: platform::audit::Actor::Cli,
        action: "user.set_role",
        parameters: &parameters,
        outcome: platform::audit::Outcome::Ok,
        detail: Some(&detail),
    };
    platform::audit::insert(client, &entry).await
}
