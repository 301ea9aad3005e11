//! Building the relay process apart from running it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::FutureExt;
use poem::{get, EndpointExt};
use poem_openapi::OpenApiService;

use super::config::Config;
use super::health::{self, BrokerProbe};
use crate::relay::{create_producer_with, Relay, RelayStatus};
use platform::health::{HealthApi, Readiness, REFRESH};
use platform::http::Listener;
use platform::service::{Service, Shutdown};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot bind the HTTP port")]
    Bind(#[from] std::io::Error),
    #[error("cannot create the Kafka producer")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

#[derive(Debug)]
pub struct App {
    listener: Listener,
    metrics: platform::http::MetricsAt,
    pool: Pool,
    status: Arc<RelayStatus>,
    readiness: Readiness,
    relay: Relay,
}

impl App {
    pub fn status(&self) -> Arc<RelayStatus> {
        self.status.clone()
    }
}

impl Service for App {
    const NAME: &'static str = "outbox-relay";
    type Settings = super::config::Settings;
    type BuildError = BuildError;

    /// Binds the port and creates the producer; neither the database nor Kafka has to be
    /// up yet (the relay waits and retries).
    async fn build(config: Config) -> Result<Self, BuildError> {
        let listener = Listener::bind(&config.common.host, config.settings.port).await?;
        let metrics =
            platform::http::MetricsAt::bind(&config.common, config.profile, crate::relay::METRICS)
                .await?;
        let context = platform::kafka::KafkaContext::default();
        let access = context.access.clone();
        let settings = config.settings.producer(&config.kafka);
        // The health probe's plain producer; the relay makes its transactional one when
        // it leads.
        let producer = create_producer_with(&settings, context.clone())?;
        let relay = Relay::new(config.db.clone(), settings, config.settings.relay())
            .with_kafka_context(context);
        let pool = config.db.pool();
        let status = relay.status();
        let broker = Arc::new(BrokerProbe::new(producer, access.clone()));
        let role = status.clone();
        // The relay answers 200 as a standby; a database or a broker it cannot reach, or
        // brokers that refuse its credentials or TLS settings, make it unready (it waits
        // and retries meanwhile, and turns ready by itself).
        let readiness = Readiness::new()
            .require_database(pool.clone())
            // Unready only while the brokers refuse the client (credentials, TLS).
            .require("kafka", {
                let access = access.clone();
                move || {
                    let refused = access.refused().is_some();
                    async move { !refused }
                }
            })
            .require("broker", move || {
                let broker = broker.clone();
                async move { broker.is_up().await }
            })
            .details(move || {
                let role = if role.is_leader() {
                    "leader"
                } else {
                    "standby"
                };
                let mut details = vec![("role", role.to_owned())];
                if let Some(refused) = access.refused() {
                    details.push(("kafka_refused", refused));
                }
                details
            });
        Ok(Self {
            listener,
            metrics,
            pool,
            status,
            readiness,
            relay,
        })
    }

    /// Relays and serves `/health` and `/metrics` until `shutdown`; then finishes the batch
    /// in flight and flushes the producer.
    async fn run_until_stopped(self, shutdown: impl Shutdown) -> std::io::Result<()> {
        let stop = (Box::pin(shutdown) as Pin<Box<dyn Future<Output = ()> + Send>>).shared();
        let relay = tokio::spawn(self.relay.run(stop.clone()));
        let _refresh = self.readiness.spawn_refresh(REFRESH);
        let api = OpenApiService::new(
            HealthApi {
                readiness: self.readiness,
            },
            "outbox-relay",
            env!("CARGO_PKG_VERSION"),
        )
        .description("The relay's probes; `/metrics` serves Prometheus text.");
        let app = self
            .metrics
            .mount(
                platform::http::documented(api),
                get(health::metrics(self.pool.clone())),
            )
            .around(platform::metrics::matched_route)
            .around(platform::error::as_json)
            .around(platform::metrics::red);
        let _metrics = self.metrics.spawn(get(health::metrics(self.pool)));
        tracing::info!(port = self.listener.port(), "outbox-relay listening");
        let served = self.listener.serve(app, stop).await;
        if let Err(error) = relay.await {
            tracing::error!(%error, "relay task ended abnormally");
        }
        served
    }

    fn port(&self) -> u16 {
        self.listener.port()
    }
}
