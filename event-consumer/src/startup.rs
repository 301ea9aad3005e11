//! Building the service (bind, pool, Kafka clients) apart from running it, so tests can
//! start it on port 0 and drive it through its real listener.

use deadpool_postgres::Pool;
use platform::health::{HealthApi, Readiness, REFRESH};
use platform::http::Listener;
use platform::service::{Service, Shutdown};
use poem_openapi::OpenApiService;

use crate::api::dlq::DlqApi;
use crate::api::reconcile::ReconcileApi;
use crate::api::stats::StatsApi;
use crate::config::Config;
use crate::dead_letters::DeadLetters;
use crate::engine::{self, Consumer};
use crate::retention;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind the HTTP listener")]
    Bind(#[from] std::io::Error),
    #[error("cannot create the Kafka consumer")]
    Consumer(#[from] engine::Error),
}

#[derive(Debug)]
pub struct App {
    listener: Listener,
    pool: Pool,
    keys: platform::internal_key::ServerKeys,
    metrics: platform::http::MetricsAt,
    consumer: Consumer,
    dead_letters: DeadLetters,
    /// Purge processed events older than this (`None`: keep them), every `purge_every`.
    retention: Option<std::time::Duration>,
    purge_every: std::time::Duration,
    /// user-service, for `reconcile` and gap repair (none without a key).
    source: Option<crate::reconcile::Source>,
    gap_timeout: std::time::Duration,
    gap_check: std::time::Duration,
    reconcile: crate::reconcile::Options,
}

impl App {
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Service for App {
    const NAME: &'static str = "event-consumer";
    type Settings = crate::config::Settings;
    type BuildError = Error;

    async fn build(config: Config) -> Result<Self, Error> {
        let listener = Listener::bind(&config.common.host, config.settings.port).await?;
        let metrics =
            platform::http::MetricsAt::bind(&config.common, config.profile, engine::METRICS)
                .await?;
        let pool = config.db.pool();
        let consumer = Consumer::new(&config.settings, &config.kafka, pool.clone())?;
        let keys = config.internal_keys.clone();
        let dead_letters = DeadLetters::new(
            config.kafka.clone(),
            pool.clone(),
            &config.settings.consumer_dlq_topic,
            &config.settings.consumer_topic,
        );
        let settings = &config.settings;
        let source = crate::reconcile::Source::from_settings(settings);
        Ok(Self {
            source,
            gap_timeout: std::time::Duration::from_millis(settings.consumer_gap_timeout_ms),
            gap_check: std::time::Duration::from_millis(settings.consumer_gap_check_ms),
            reconcile: crate::reconcile::Options {
                grace: std::time::Duration::from_millis(settings.reconcile_grace_ms),
                repair_wait: std::time::Duration::from_secs(60),
            },
            dead_letters,
            retention: config.settings.inbox_retention,
            purge_every: std::time::Duration::from_millis(config.settings.inbox_purge_interval_ms),
            keys,
            listener,
            metrics,
            pool,
            consumer,
        })
    }

    /// Consumes and serves HTTP until `shutdown`; the consumer settles its batch, commits
    /// its offsets and leaves the group before this returns.
    async fn run_until_stopped(self, shutdown: impl Shutdown) -> std::io::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let broker = self.consumer.broker_check();
        let readiness = Readiness::new()
            .require_database(self.pool.clone())
            // Unready only while the brokers refuse the client (credentials, TLS).
            .require("kafka", {
                let broker = broker.clone();
                move || {
                    let broker = broker.clone();
                    async move { broker.ready().await }
                }
            })
            .require("broker", {
                let broker = broker.clone();
                move || {
                    let broker = broker.clone();
                    async move { broker.reachable().await }
                }
            })
            .details(move || {
                broker
                    .refused()
                    .map(|r| ("kafka_refused", r))
                    .into_iter()
                    .collect()
            });
        let _refresh = readiness.spawn_refresh(REFRESH);
        let api = OpenApiService::new(
            (
                HealthApi { readiness },
                StatsApi {
                    pool: self.pool.clone(),
                },
                DlqApi {
                    dead_letters: self.dead_letters.clone(),
                },
                ReconcileApi {
                    pool: self.pool.clone(),
                    source: self.source.clone(),
                    options: self.reconcile,
                },
            ),
            "event-consumer",
            env!("CARGO_PKG_VERSION"),
        )
        .server(format!("http://127.0.0.1:{}", self.port()));
        let app = platform::http::internal(api, self.keys, &self.metrics);
        let _metrics = self.metrics.spawn(poem::get(platform::metrics::endpoint));
        tracing::info!(port = self.listener.port(), "event-consumer listening");
        let consumer = tokio::spawn(self.consumer.run(wait(stopped.clone())));
        let _purge = self.retention.map(|older_than| {
            platform::task::Background::spawn(retention::run(
                self.pool.clone(),
                older_than,
                self.purge_every,
            ))
        });
        let _gaps = platform::task::Background::spawn(crate::gaps::watch(
            self.pool.clone(),
            self.source.clone(),
            self.gap_timeout,
            self.gap_check,
        ));
        let serve = self.listener.serve(app, wait(stopped.clone()));
        tokio::pin!(serve, shutdown);
        // The server stops gracefully on the same signal as the consumer; if it fails on
        // its own, the consumer is stopped too.
        let served = tokio::select! {
            served = &mut serve => served,
            () = &mut shutdown => {
                let _ = stop.send(true);
                serve.await
            }
        };
        let _ = stop.send(true);
        if let Err(error) = consumer.await {
            tracing::error!(%error, "consumer task failed");
        }
        served
    }

    fn port(&self) -> u16 {
        self.listener.port()
    }
}
