//! `reconcile`: compares the `user_directory` read model with user-service's users, field
//! by field (email, names, phone, role, status, version), through user-service's internal
//! paginated endpoint (the consumer never reads the `users` schema). A user whose newer
//! events are still in flight (it changed within the grace period) is "behind", not
//! differing. `--repair` asks user-service for a `UserSnapshot` of each differing user,
//! waits until the consumer has applied them, and checks again. Each run is recorded for
//! the admin dashboard. Only field names are reported, never their values.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_postgres::{GenericClient, Pool};
use platform::wire::{
    DirectoryPage, DirectoryUser, Drift, DriftedUser, ReconcileReport, ReconcileSummary,
    SnapshotRequest, SnapshotResult,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::directory::Entry;

/// Users per page asked of user-service (its maximum), and snapshots per request.
pub const PAGE: usize = 1000;
/// Most users a report lists (the summary counts them all).
pub const LISTED: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("user-service is not configured: set USER_SERVICE_URL and USER_SERVICE_API_KEY (or INTERNAL_API_KEY)")]
    NotConfigured,
    #[error("user-service cannot be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("user-service answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("database unavailable")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
}

/// user-service's internal directory endpoints, as the consumer calls them.
#[derive(Clone)]
pub struct Source {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// From the consumer's settings; `None` without a key to present.
    pub fn from_settings(settings: &crate::config::Settings) -> Option<Self> {
        let key = settings.user_service_key()?.clone();
        if key.expose_secret().is_empty() {
            return None;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        Some(Self {
            http,
            base: settings.user_service_url.trim_end_matches('/').to_owned(),
            key,
        })
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, Error> {
        let response = response.map_err(Error::Unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Error::Refused {
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        response.json().await.map_err(Error::Unreachable)
    }

    /// The page of users after `after`.
    pub async fn page(&self, after: Option<Uuid>) -> Result<DirectoryPage, Error> {
        let after = after.map(|id| format!("&after={id}")).unwrap_or_default();
        let request = self
            .http
            .get(format!(
                "{}/api/v1/internal/users?limit={PAGE}{after}",
                self.base
            ))
            .bearer_auth(self.key.expose_secret());
        Self::answer(request.send().await).await
    }

    /// Asks for a `UserSnapshot` of each of `ids`, [`PAGE`] per request.
    pub async fn snapshots(&self, ids: &[Uuid]) -> Result<SnapshotResult, Error> {
        let mut all = SnapshotResult {
            written: Vec::new(),
            not_found: Vec::new(),
        };
        for chunk in ids.chunks(PAGE) {
            let request = self
                .http
                .post(format!("{}/api/v1/internal/users/snapshots", self.base))
                .bearer_auth(self.key.expose_secret())
                .json(&SnapshotRequest {
                    user_ids: chunk.to_vec(),
                });
            let result: SnapshotResult = Self::answer(request.send().await).await?;
            all.written.extend(result.written);
            all.not_found.extend(result.not_found);
        }
        Ok(all)
    }
}

/// How a run judges users.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A user changed within this long may be behind instead of differing.
    pub grace: Duration,
    /// How long `--repair` waits for its snapshots to be applied.
    pub repair_wait: Duration,
}

/// The fields of `read` that differ from `source`.
fn differing(read: &Entry, source: &DirectoryUser) -> Vec<String> {
    let mut fields = Vec::new();
    let mut check = |name: &str, same: bool| {
        if !same {
            fields.push(name.to_owned());
        }
    };
    check("email", read.email == source.email);
    check("first_name", read.first_name == source.first_name);
    check("last_name", read.last_name == source.last_name);
    check("phone", read.phone == source.phone);
    check("role", read.role == source.role.as_str());
    check("status", read.status == source.status);
    check("version", read.version == source.version);
    fields
}

/// The verdict on one user, `None` when the row matches.
fn judge(
    user_id: Uuid,
    read: Option<&Entry>,
    source: Option<&DirectoryUser>,
    grace: chrono::Duration,
) -> Option<DriftedUser> {
    let recent = |source: &DirectoryUser| Utc::now() - source.updated_at < grace;
    let (drift, fields) = match (read, source) {
        (None, None) => return None,
        (Some(_), None) => (Drift::Unknown, Vec::new()),
        (None, Some(source)) if recent(source) => (Drift::Behind, Vec::new()),
        (None, Some(_)) => (Drift::Missing, Vec::new()),
        (Some(read), Some(source)) => {
            let fields = differing(read, source);
            if fields.is_empty() {
                return None;
            }
            if read.version < source.version && recent(source) {
                (Drift::Behind, fields)
            } else {
                (Drift::Differs, fields)
            }
        }
    };
    Some(DriftedUser {
        user_id,
        drift,
        fields,
        read_model_version: read.map(|r| r.version),
        user_service_version: source.map(|s| s.version),
    })
}

const RANGE: &str = "
    SELECT user_id, email, first_name, last_name, phone, role, status, version
    FROM consumer.user_directory
    WHERE user_id > coalesce($1, '00000000-0000-0000-0000-000000000000'::uuid)
      AND ($2::uuid IS NULL OR user_id <= $2)
    ORDER BY user_id";

async fn rows_in(
    client: &impl GenericClient,
    after: Option<Uuid>,
    through: Option<Uuid>,
) -> Result<Vec<(Uuid, Entry)>, tokio_postgres::Error> {
    let statement = client.prepare_cached(RANGE).await?;
    Ok(client
        .query(&statement, &[&after, &through])
        .await?
        .iter()
        .map(Entry::from_row)
        .collect())
}

/// One full comparison: user-service's users page by page, each page merged with the
/// read-model rows of the same id range.
pub async fn check(
    pool: &Pool,
    source: &Source,
    options: Options,
) -> Result<ReconcileReport, Error> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let grace = chrono::Duration::from_std(options.grace).unwrap_or(chrono::Duration::MAX);
    let client = pool.get().await?;
    let mut summary = ReconcileSummary {
        started_at,
        seconds: 0.0,
        checked: 0,
        differ: 0,
        behind: 0,
        repaired: 0,
    };
    let mut users = Vec::new();
    let mut after: Option<Uuid> = None;
    loop {
        let page = source.page(after).await?;
        let through = page.next_after;
        let rows = rows_in(&client, after, through).await?;
        let mut read = rows.into_iter().peekable();
        let mut merged: Vec<(Uuid, Option<Entry>, Option<&DirectoryUser>)> = Vec::new();
        for user in &page.users {
            while let Some((id, _)) = read.peek() {
                if *id >= user.id {
                    break;
                }
                let (id, entry) = read.next().expect("peeked");
                merged.push((id, Some(entry), None));
            }
            let entry = match read.peek() {
                Some((id, _)) if *id == user.id => read.next().map(|(_, e)| e),
                _ => None,
            };
            merged.push((user.id, entry, Some(user)));
        }
        merged.extend(read.map(|(id, entry)| (id, Some(entry), None)));
        for (id, entry, user) in merged {
            summary.checked += 1;
            let Some(verdict) = judge(id, entry.as_ref(), user, grace) else {
                continue;
            };
            if verdict.drift == Drift::Behind {
                summary.behind += 1;
            } else {
                summary.differ += 1;
            }
            if users.len() < LISTED {
                users.push(verdict);
            }
        }
        match through {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    summary.seconds = clock.elapsed().as_secs_f64();
    Ok(ReconcileReport {
        summary,
        users,
        before: None,
        repaired_users: Vec::new(),
    })
}

/// Asks for a snapshot of every differing user of `report` (all of them, not only the
/// listed ones: the check runs again to collect them), waits until the consumer has
/// applied them (or `options.repair_wait` passed), and checks again.
pub async fn repair(
    pool: &Pool,
    source: &Source,
    options: Options,
    report: ReconcileReport,
) -> Result<ReconcileReport, Error> {
    let mut ids: Vec<Uuid> = report
        .users
        .iter()
        .filter(|u| u.drift != Drift::Behind)
        .map(|u| u.user_id)
        .collect();
    if ids.is_empty() {
        return Ok(report);
    }
    ids.sort();
    let written = source.snapshots(&ids).await?;
    // Rows of ids user-service does not know are the read model's own mistake: no event
    // will ever correct them, so they go.
    if !written.not_found.is_empty() {
        let client = pool.get().await?;
        client
            .execute(
                "DELETE FROM consumer.user_directory WHERE user_id = ANY($1)",
                &[&written.not_found],
            )
            .await?;
    }
    let events: Vec<Uuid> = written.written.iter().map(|w| w.event_id).collect();
    wait_applied(pool, &events, options.repair_wait).await?;
    let mut after = check(pool, source, options).await?;
    after.summary.repaired = ids.len() as i64;
    after.before = Some(report.summary);
    after.repaired_users = report
        .users
        .into_iter()
        .filter(|u| u.drift != Drift::Behind)
        .collect();
    Ok(after)
}

/// Waits until every one of `events` is in the inbox, or `patience` has passed.
async fn wait_applied(pool: &Pool, events: &[Uuid], patience: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + patience;
    let mut waiting: HashSet<Uuid> = events.iter().copied().collect();
    while !waiting.is_empty() && Instant::now() < deadline {
        let client = pool.get().await?;
        let ids: Vec<Uuid> = waiting.iter().copied().collect();
        for row in client
            .query(
                "SELECT event_id FROM consumer.processed_events WHERE event_id = ANY($1)",
                &[&ids],
            )
            .await?
        {
            waiting.remove(&row.get::<_, Uuid>(0));
        }
        drop(client);
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if !waiting.is_empty() {
        tracing::warn!(
            waiting = waiting.len(),
            "some repair snapshots were not applied in time; is the consumer running?"
        );
    }
    Ok(())
}

/// Records a run for the admin dashboard.
pub async fn record(pool: &Pool, summary: &ReconcileSummary) -> Result<(), Error> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO consumer.reconcile_runs \
             (started_at, seconds, checked, differ, behind, repaired) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &summary.started_at,
                &summary.seconds,
                &summary.checked,
                &summary.differ,
                &summary.behind,
                &summary.repaired,
            ],
        )
        .await?;
    Ok(())
}

/// A check, the repair when asked, and the record of the run.
pub async fn run(
    pool: &Pool,
    source: &Source,
    options: Options,
    repair_it: bool,
) -> Result<ReconcileReport, Error> {
    let mut report = check(pool, source, options).await?;
    if repair_it && report.summary.differ > 0 {
        report = repair(pool, source, options, report).await?;
    }
    record(pool, &report.summary).await?;
    Ok(report)
}

/// The lines the command prints: one per listed user, then the summary.
pub fn lines(report: &ReconcileReport) -> Vec<String> {
    let mut lines = Vec::new();
    let version = |v: Option<i64>| v.map_or_else(|| "none".to_owned(), |v| format!("v{v}"));
    let listed = report.repaired_users.iter().chain(&report.users);
    for user in listed {
        let what = match user.drift {
            Drift::Differs => "differs",
            Drift::Missing => "missing",
            Drift::Unknown => "unknown",
            Drift::Behind => "behind ",
        };
        let fields = if user.fields.is_empty() {
            String::new()
        } else {
            format!(" {}", user.fields.join(","))
        };
        lines.push(format!(
            "{what} {}{fields} (read model {}, user-service {})",
            user.user_id,
            version(user.read_model_version),
            version(user.user_service_version),
        ));
    }
    let summary = |label: &str, s: &ReconcileSummary| {
        format!(
            "{label}{} users checked in {:.2} s: {} differ, {} behind",
            s.checked, s.seconds, s.differ, s.behind
        )
    };
    if let Some(before) = &report.before {
        // The repaired users are listed first (as the first check found them).
        let first = report.repaired_users.len();
        lines.insert(first, summary("before repair: ", before));
        let asked = format!(
            "repair: asked user-service for {} snapshots",
            report.summary.repaired
        );
        lines.insert(first + 1, asked);
    }
    lines.push(summary("", &report.summary));
    lines
}

/// The `reconcile` command: prints the report; exit code 0 when in sync, 1 when not, 2
/// when it could not run.
pub async fn command(config: &crate::config::Config, repair_it: bool, grace: Option<u64>) -> u8 {
    let Some(source) = Source::from_settings(&config.settings) else {
        eprintln!("reconcile: {}", Error::NotConfigured);
        return 2;
    };
    let options = Options {
        grace: Duration::from_secs(grace.unwrap_or(config.settings.reconcile_grace_ms / 1000)),
        repair_wait: Duration::from_secs(60),
    };
    let pool = config.db.pool();
    match run(&pool, &source, options, repair_it).await {
        Ok(report) => {
            for line in lines(&report) {
                println!("{line}");
            }
            u8::from(report.summary.differ > 0)
        }
        Err(error) => {
            eprintln!("reconcile: {}", platform::telemetry::error_chain(&error));
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::wire::Role;
    use platform::wire::UserStatus;

    fn source(version: i64, updated_ago_s: i64) -> DirectoryUser {
        DirectoryUser {
            id: Uuid::nil(),
            email: Some("a@example.com".into()),
            first_name: Some("Ada".into()),
            last_name: Some("L".into()),
            phone: None,
            role: Role::User,
            status: UserStatus::Active,
            version,
            updated_at: Utc::now() - chrono::Duration::seconds(updated_ago_s),
        }
    }

    fn read(version: i64, first: &str) -> Entry {
        Entry {
            email: Some("a@example.com".into()),
            first_name: Some(first.into()),
            last_name: Some("L".into()),
            phone: None,
            role: "user".into(),
            status: UserStatus::Active,
            version,
        }
    }

    #[test]
    fn a_row_that_lags_a_recent_change_is_behind_and_an_old_lag_differs() {
        let grace = chrono::Duration::seconds(30);
        let id = Uuid::nil();
        assert_eq!(
            judge(id, Some(&read(2, "Ada")), Some(&source(2, 100)), grace),
            None
        );
        let behind = judge(id, Some(&read(1, "X")), Some(&source(2, 1)), grace).unwrap();
        assert_eq!(behind.drift, Drift::Behind);
        let old = judge(id, Some(&read(1, "X")), Some(&source(2, 100)), grace).unwrap();
        assert_eq!(
            (old.drift, old.fields.clone()),
            (
                Drift::Differs,
                vec!["first_name".to_owned(), "version".to_owned()]
            )
        );
        let same_version = judge(id, Some(&read(2, "X")), Some(&source(2, 1)), grace).unwrap();
        assert_eq!(same_version.drift, Drift::Differs);
        assert_eq!(
            judge(id, None, Some(&source(1, 100)), grace).unwrap().drift,
            Drift::Missing
        );
        assert_eq!(
            judge(id, Some(&read(1, "Ada")), None, grace).unwrap().drift,
            Drift::Unknown
        );
    }
}
