//! Retention: published rows are kept for a replay window, then purged in small batches
//! so that every DELETE is a short transaction that never holds up writers (they only
//! insert new, unpublished rows, which a purge never touches).

use std::time::Duration;

use deadpool_postgres::GenericClient;

/// Deletes at most `batch` rows published longer than `older_than` ago (each call its own
/// short transaction when `client` is not in one). Returns how many it deleted.
const PURGE: &str = "DELETE FROM users.outbox WHERE id IN ( \
    SELECT id FROM users.outbox \
    WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1) \
    ORDER BY published_at LIMIT $2)";

#[tracing::instrument(skip(client), err)]
pub async fn purge_once<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(PURGE).await?;
    client
        .execute(&statement, &[&older_than.as_secs_f64(), &batch])
        .await
}

/// Purges batch after batch until no old published row is left; returns the total.
pub async fn purge<C: GenericClient + Sync>(
    client: &C,
    older_than: Duration,
    batch: i64,
) -> Result<u64, tokio_postgres::Error> {
    let mut total = 0;
    loop {
        let deleted = purge_once(client, older_than, batch).await?;
        total += deleted;
        if deleted < batch.max(1) as u64 {
            if total > 0 {
                tracing::info!(total, "purged published outbox rows past retention");
            }
            return Ok(total);
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_accepts_the_usual_units_and_zero_keeps() {
        assert_eq!(
            parse_retention("7d"),
            Ok(Some(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(
            parse_retention("12h"),
            Ok(Some(Duration::from_secs(43_200)))
        );
        assert_eq!(parse_retention("30m"), Ok(Some(Duration::from_secs(1_800))));
        assert_eq!(parse_retention("45s"), Ok(Some(Duration::from_secs(45))));
        assert_eq!(
            parse_retention("1week"),
            Ok(Some(Duration::from_secs(604_800)))
        );
        assert_eq!(parse_retention("0"), Ok(None));
        assert_eq!(parse_retention("0d"), Ok(None));
        assert!(parse_retention("seven days").is_err());
        assert!(parse_retention("7 lightyears").is_err());
        assert!(parse_retention("").is_err());
    }
}
