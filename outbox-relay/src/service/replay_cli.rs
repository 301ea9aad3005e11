//! `outbox-relay replay`: re-queue published rows from the command line.

use chrono::{DateTime, Utc};
use clap::Args;

use super::config::Config;
use crate::replay::{replay, ReplayError, ReplayFilter};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Only rows created at or after this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub since: Option<DateTime<Utc>>,
    /// Only rows created before this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<DateTime<Utc>>,
    /// Only events of this type (e.g. UserRegistered).
    #[arg(long)]
    pub event_type: Option<String>,
    /// Only events of this aggregate (user id).
    #[arg(long)]
    pub aggregate_id: Option<String>,
    /// Replay every retained row (required when no other filter is given).
    #[arg(long)]
    pub all: bool,
    /// Only count what would be re-queued.
    #[arg(long)]
    pub dry_run: bool,
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-01-31T12:00:00Z"))
}

/// How the command ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    Failed = 1,
    Usage = 2,
}

/// Runs the replay and prints the outcome (`re-queued N events` or
/// `would re-queue N events (dry run)`).
pub async fn run(config: &Config, args: ReplayArgs) -> Exit {
    let filter = ReplayFilter {
        since: args.since,
        until: args.until,
        event_type: args.event_type,
        aggregate_id: args.aggregate_id,
        all: args.all,
    };
    if filter.is_unfiltered() && !filter.all {
        eprintln!(
            "refusing to replay everything: give --since, --until, --event-type or --aggregate-id, or --all to replay every retained event"
        );
        return Exit::Usage;
    }
    let client = match config.db.connect().await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot connect to the database: {error}");
            return Exit::Failed;
        }
    };
    let result = replay(&client, &filter, args.dry_run).await;
    audit(&client, &filter, args.dry_run, &result).await;
    match result {
        Ok(count) if args.dry_run => {
            println!("would re-queue {count} {} (dry run)", events(count));
            Exit::Done
        }
        Ok(count) => {
            println!("re-queued {count} {}", events(count));
            Exit::Done
        }
        Err(error @ (ReplayError::NoFilter | ReplayError::EmptyWindow)) => {
            eprintln!("{error}");
            Exit::Usage
        }
        Err(error) => {
            eprintln!(
                "replay failed: {}",
                platform::telemetry::error_chain(&error)
            );
            Exit::Failed
        }
    }
}

/// The audit record of this command (an operator's: no actor); a record that cannot be
/// written is said on stderr, and the replay stands.
async fn audit(
    client: &tokio_postgres::Client,
    filter: &ReplayFilter,
    dry_run: bool,
    result: &Result<u64, ReplayError>,
) {
    use platform::audit::{insert, Actor, Entry, Outcome};
    let parameters = serde_json::json!({
        "since": filter.since, "until": filter.until, "event_type": filter.event_type,
        "aggregate_id": filter.aggregate_id, "all": filter.all, "dry_run": dry_run,
    });
    let (outcome, detail) = match result {
        Ok(count) => (
            Outcome::Ok,
            serde_json::json!({ "count": count, "dry_run": dry_run }),
        ),
        Err(error @ (ReplayError::NoFilter | ReplayError::EmptyWindow)) => (
            Outcome::Refused,
            serde_json::json!({ "message": error.to_string() }),
        ),
        Err(error) => (
            Outcome::Failed,
            serde_json::json!({ "error": error.to_string() }),
        ),
    };
    let entry = Entry {
        actor: Actor::Cli,
        action: "outbox.replay",
        parameters: &parameters,
        outcome,
        detail: Some(&detail),
    };
    if let Err(error) = insert(client, &entry).await {
        eprintln!("the audit record could not be written: {error}");
    }
}

fn events(count: u64) -> &'static str {
    if count == 1 {
        "event"
    } else {
        "events"
    }
}
