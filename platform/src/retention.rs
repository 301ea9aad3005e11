//! Retention, one way for every service: a setting such as `7d` or `0` (keep forever),
//! deletes in bounded batches (each statement its own short transaction, so no purge holds
//! a long lock), and the background round that runs a purge every so often.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Object, Pool};
use serde::{Deserialize, Deserializer};
use tokio_postgres::types::ToSql;

/// Parses a retention such as `7d`, `12h`, `90m`, `1week` (humantime's units), or `0`
/// (keep forever, `None`).
pub fn parse_retention(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(None);
    }
    humantime::parse_duration(text)
        .map(|d| (!d.is_zero()).then_some(d))
        .map_err(|e| format!("{text:?} is not a duration like 7d, 12h, 30m or 0 ({e})"))
}

/// Deserializes the retention setting `name` (a string, or the number `0`), for a
/// one-line `deserialize_with` function per setting.
pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
    name: &str,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Text(String),
        Number(u64),
    }
    let text = match Text::deserialize(deserializer)? {
        Text::Text(text) => text,
        Text::Number(n) => n.to_string(),
    };
    parse_retention(&text).map_err(|e| serde::de::Error::custom(format!("{name}: {e}")))
}

/// Runs the DELETE `sql` again and again until it deletes fewer than `batch` rows; returns
/// the total. `sql` takes `params` and then the batch size as its last parameter (its
/// `LIMIT`). Run it outside a transaction, so that each statement commits on its own.
pub async fn delete_in_batches<C: GenericClient + Sync>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    let batch = batch.max(1);
    let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
    all.push(&batch);
    let mut total = 0;
    loop {
        let deleted = client.execute(&statement, &all).await?;
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// Runs `purge` with a pooled connection now and then every `every`, for as long as the
/// task runs. A failure is logged and tried again at the next round; a round that deleted
/// anything says how much of `what`.
pub async fn purge_every<F, Fut>(pool: Pool, every: Duration, what: &'static str, mut purge: F)
where
    F: FnMut(Object) -> Fut,
    Fut: Future<Output = Result<u64, tokio_postgres::Error>>,
{
    let mut rounds = tokio::time::interval(every);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        rounds.tick().await;
        let client = match pool.get().await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, what, "purge skipped: no database connection");
                continue;
            }
        };
        match purge(client).await {
            Ok(0) => {}
            Ok(total) => tracing::info!(total, what, "purged rows past their retention"),
            Err(error) => tracing::warn!(%error, what, "purge failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_accepts_the_usual_units_and_zero_keeps() {
        let days = |n: u64| Ok(Some(Duration::from_secs(n * 86_400)));
        assert_eq!(parse_retention("7d"), days(7));
        assert_eq!(parse_retention("1week"), days(7));
        assert_eq!(
            parse_retention("12h"),
            Ok(Some(Duration::from_secs(43_200)))
        );
        assert_eq!(parse_retention("30m"), Ok(Some(Duration::from_secs(1_800))));
        assert_eq!(parse_retention("0"), Ok(None));
        assert_eq!(parse_retention("0d"), Ok(None));
        assert!(parse_retention("seven days").is_err());
        assert!(parse_retention("").is_err());
    }
}
