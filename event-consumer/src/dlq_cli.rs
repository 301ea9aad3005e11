//! `event-consumer dlq list | show | redrive`: the dead-letter topic from the command line.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::dead_letters::{DeadLetter, DeadLetters, Error, Filter, LetterId, Selection};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one dead letter with its headers and value.
    Show {
        /// `PARTITION-OFFSET`, as `list` prints it.
        id: String,
    },
    /// Send dead letters back to the consumed topic (each one once, however often this
    /// runs).
    Redrive {
        /// Every dead letter not redriven yet.
        #[arg(long)]
        all: bool,
        /// This dead letter (`PARTITION-OFFSET`); may be given more than once.
        #[arg(long = "id")]
        ids: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Only print what would be redriven.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only those dead-lettered at or after this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    pub since: Option<DateTime<Utc>>,
    /// Only this event type (e.g. UserRegistered).
    #[arg(long)]
    pub event_type: Option<String>,
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Self {
        Self {
            since: args.since,
            event_type: args.event_type,
        }
    }
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-01-31T12:00:00Z"))
}

/// Runs the command, printing its outcome; answers the process exit code (0 done, 1
/// failed, 2 a usage error such as an unknown id).
pub async fn run(config: &Config, command: DlqCommand) -> u8 {
    let tool = DeadLetters::new(
        config.kafka.clone(),
        config.db.pool(),
        &config.settings.consumer_dlq_topic,
        &config.settings.consumer_topic,
    );
    let audited = matches!(command, DlqCommand::Redrive { .. });
    let parameters = redrive_parameters(&command);
    let mut summary = None;
    let result = execute(&tool, command, &mut summary).await;
    if audited {
        audit(config, &parameters, &result, summary).await;
    }
    match result {
        Ok(exit) => exit,
        Err(error @ Error::Invalid(_)) => {
            eprintln!("{error}");
            2
        }
        Err(error) => {
            eprintln!("dlq: {error}");
            1
        }
    }
}

/// What a redrive was asked for, as its audit record's parameters.
fn redrive_parameters(command: &DlqCommand) -> serde_json::Value {
    match command {
        DlqCommand::Redrive {
            all,
            ids,
            filter,
            dry_run,
        } => serde_json::json!({
            "all": all, "ids": ids, "since": filter.since, "event_type": filter.event_type,
            "dry_run": dry_run,
        }),
        _ => serde_json::Value::Null,
    }
}

/// The audit record of a redrive (an operator's: no actor); a record that cannot be
/// written is said on stderr, and the redrive stands.
async fn audit(
    config: &Config,
    parameters: &serde_json::Value,
    result: &Result<u8, Error>,
    summary: Option<serde_json::Value>,
) {
    use platform::audit::{insert, Actor, Entry, Outcome};
    let (outcome, detail) = match result {
        Ok(0) => (Outcome::Ok, summary),
        Ok(2) | Err(Error::Invalid(_)) => (Outcome::Refused, summary),
        Ok(_) => (Outcome::Failed, summary),
        Err(error) => (
            Outcome::Failed,
            Some(serde_json::json!({ "error": error.to_string() })),
        ),
    };
    let entry = Entry {
        actor: Actor::Cli,
        action: "dlq.redrive",
        parameters,
        outcome,
        detail: detail.as_ref(),
    };
    let written = match config.db.connect().await {
        Ok(client) => insert(&client, &entry).await.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = written {
        eprintln!("the audit record could not be written: {error}");
    }
}

/// Runs `command`; a redrive leaves what it did in `summary` (for its audit record).
async fn execute(
    tool: &DeadLetters,
    command: DlqCommand,
    summary: &mut Option<serde_json::Value>,
) -> Result<u8, Error> {
    match command {
        DlqCommand::List { filter, limit } => {
            let letters = tool.list(&filter.into(), limit).await?;
            for letter in &letters {
                println!("{}", line(letter));
            }
            println!("{} dead letter{}", letters.len(), plural(letters.len()));
            Ok(0)
        }
        DlqCommand::Show { id } => {
            let id: LetterId = id.parse()?;
            match tool.show(id).await? {
                Some(detail) => {
                    let text = serde_json::to_string_pretty(&detail)
                        .map_err(|e| Error::Invalid(e.to_string()))?;
                    println!("{text}");
                    Ok(0)
                }
                None => {
                    eprintln!("there is no dead letter {id}");
                    Ok(2)
                }
            }
        }
        DlqCommand::Redrive {
            all,
            ids,
            filter,
            dry_run,
        } => {
            let selection = Selection {
                all,
                ids,
                filter: filter.into(),
                dry_run,
            };
            let report = tool.redrive(&selection).await?;
            *summary = Some(serde_json::json!({
                "dry_run": report.dry_run,
                "redriven": report.redriven.iter().map(|l| &l.id).collect::<Vec<_>>(),
                "already_redriven": report.already_redriven,
                "failed": report.failed.iter().map(|f| &f.id).collect::<Vec<_>>(),
            }));
            let verb = if report.dry_run {
                "would redrive"
            } else {
                "redriven"
            };
            for letter in &report.redriven {
                println!("{verb} {}", line(letter));
            }
            for id in &report.already_redriven {
                println!("skipped {id}: redriven before");
            }
            for failure in &report.failed {
                println!("failed {}: {}", failure.id, failure.error);
            }
            let n = report.redriven.len();
            println!(
                "{verb} {n} dead letter{}{}, {} skipped, {} failed",
                plural(n),
                if report.dry_run { " (dry run)" } else { "" },
                report.already_redriven.len(),
                report.failed.len()
            );
            Ok(if report.failed.is_empty() { 0 } else { 1 })
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One dead letter on one line: id, type, event id, when, why, and whether redriven.
fn line(letter: &DeadLetter) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let redriven = match letter.redriven_at {
        Some(at) => format!(" [redriven {}]", at.format("%Y-%m-%dT%H:%M:%SZ")),
        None => String::new(),
    };
    format!(
        "{}  {}  {}  {}  {}{}",
        letter.id,
        or_dash(&letter.event_type),
        or_dash(&letter.event_id),
        or_dash(&letter.failed_at),
        or_dash(&letter.error),
        redriven
    )
}
