//! One active relay, any number of standbys: two relay loops on one database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_relay::relay::RelayStatus;
use platform::db::DbConfig;
use platform::testing::{stop_signal, TcpProxy};
use tests::relay_kit::*;
use tokio::sync::oneshot;

struct Running {
    status: Arc<RelayStatus>,
    task: tokio::task::JoinHandle<()>,
    _stop: oneshot::Sender<()>,
}

fn start(db: &DbConfig) -> Running {
    let relay = relay(db, fast_config(100));
    let status = relay.status();
    let (stop, stopped) = stop_signal();
    let task = tokio::spawn(relay.run(stopped));
    Running {
        status,
        task,
        _stop: stop,
    }
}

async fn leads(status: &RelayStatus) -> bool {
    eventually(Duration::from_secs(5), || async { status.is_leader() }).await
}

async fn drained(db: &DbConfig) -> bool {
    eventually(Duration::from_secs(10), || async {
        unpublished(db).await == 0
    })
    .await
}

/// Whether, within 10 s, the scratch database shows the relay's LISTEN connection and
/// its pool connection both idle after their statements: `LISTEN` done, and a read of a
/// window of new rows finished.
async fn idle(db: &DbConfig) -> bool {
    let client = db.connect().await.expect("connect");
    let listen = format!("LISTEN {}", outbox_relay::listen::CHANNEL);
    eventually(Duration::from_secs(10), || {
        let (client, listen) = (&client, &listen);
        async move {
            let row = client
                .query_one(
                    "SELECT count(*) FILTER (WHERE query = $1), \
                            count(*) FILTER (WHERE query LIKE 'SELECT s.snap::text, o.*%') \
                     FROM pg_stat_activity \
                     WHERE datname = current_database() AND state = 'idle' AND pid <> pg_backend_pid()",
                    &[listen],
                )
                .await
                .expect("pg_stat_activity");
            row.get::<_, i64>(0) > 0 && row.get::<_, i64>(1) > 0
        }
    })
    .await
}

#[tokio::test]
async fn two_relays_exactly_one_publishes_and_the_standby_takes_over_when_it_dies() {
    let db = scratch_db().await;
    let topic = scratch_topic(3).await;
    let first = start(&db);
    assert!(leads(&first.status).await);
    let second = start(&db);

    let mut ids = write_events(&db, &topic, "UserRegistered", &interleaved(5, 2)).await;
    assert!(drained(&db).await, "the leader publishes, woken by NOTIFY");
    assert_eq!(first.status.published(), 10);
    assert_eq!(second.status.published(), 0, "the standby never publishes");
    assert!(!second.status.is_leader());

    // The leader dies: its lock session goes with it.
    first.task.abort();
    let died = Instant::now();
    assert!(leads(&second.status).await, "standby took over");
    assert!(died.elapsed() < Duration::from_secs(5));

    ids.extend(write_events(&db, &topic, "UserRegistered", &interleaved(5, 1)).await);
    assert!(drained(&db).await);
    assert_eq!(second.status.published(), 5);

    let records = read_topic(&topic, 15, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 15, "each event exactly once");
    let mut got = event_ids(&records);
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
}

#[tokio::test]
async fn a_leader_that_loses_its_database_session_stops_and_the_standby_takes_over() {
    let db = scratch_db().await;
    let topic = scratch_topic(1).await;
    let proxy = TcpProxy::start(
        format!("{}:{}", db.db_host, db.db_port)
            .parse()
            .expect("a socket address"),
    )
    .await
    .unwrap();
    let via_proxy = DbConfig {
        db_port: proxy.port(),
        db_timeout_ms: 500,
        ..db.clone()
    };
    let cut_off = start(&via_proxy);
    assert!(leads(&cut_off.status).await);
    let standby = start(&db);

    proxy.cut();
    let cut = Instant::now();
    assert!(leads(&standby.status).await);
    assert!(cut.elapsed() < Duration::from_secs(5));
    assert!(
        !cut_off.status.is_leader(),
        "the cut-off relay stopped leading"
    );

    let ids = write_events(&db, &topic, "UserRegistered", &interleaved(3, 1)).await;
    assert!(drained(&db).await);
    assert_eq!(standby.status.published(), 3);
    assert_eq!(cut_off.status.published(), 0);
    assert_eq!(published_ids(&topic, 3).await, ids);
}

#[tokio::test]
async fn an_event_committed_while_idle_is_published_on_notify_not_at_the_next_poll() {
    let db = scratch_db().await;
    let topic = scratch_topic(1).await;
    let config = outbox_relay::relay::RelayConfig {
        poll_interval: Duration::from_secs(600),
        ..fast_config(100)
    };
    let relay = relay(&db, config);
    let status = relay.status();
    let (_stop, stopped) = stop_signal();
    tokio::spawn(relay.run(stopped));
    assert!(leads(&status).await);
    // It is idle once its LISTEN is in place and its first (empty) claim has run: from
    // then on only a notification (or the 10-minute poll) starts another batch.
    assert!(
        idle(&db).await,
        "the relay listens and its first batch is done"
    );

    let ids = write_events(&db, &topic, "UserRegistered", &interleaved(1, 1)).await;
    assert!(
        drained(&db).await,
        "published long before the 10-minute poll"
    );
    assert_eq!(published_ids(&topic, 1).await, ids);
}
