//! Building the service (bind, pool, keys, clients) apart from running it, so tests can
//! start it on port 0 and drive it through its real listener.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use platform::config::ConfigError;
use platform::health::{HealthApi, REFRESH};
use platform::http::{Listener, MetricsAt};
use platform::metrics;
use platform::service::{Service, Shutdown};
use platform::task::Background;
use poem::middleware::Cors;
use poem::{get, Endpoint, EndpointExt};
use poem_openapi::OpenApiService;

use crate::api::admin::AdminApi;
use crate::api::auth::AuthApi;
use crate::api::users::UsersApi;
use crate::client_ip::TrustedProxies;
use crate::config::Config;
use crate::rate_limit::{RateLimit, RateLimits};
use crate::same_origin;
use crate::state::AppState;
use crate::upstream::Upstream;
use crate::{security_headers, traceparent};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("building the HTTP client")]
    Http(#[from] reqwest::Error),
}

#[derive(Debug)]
pub struct App {
    listener: Listener,
    metrics: MetricsAt,
    state: Arc<AppState>,
    limits: Arc<RateLimits>,
    cors_origins: Vec<String>,
}

type Apis = (HealthApi, UsersApi, AuthApi, AdminApi);

/// The OpenAPI service of every public endpoint.
pub fn openapi(state: Arc<AppState>) -> OpenApiService<Apis, ()> {
    let apis = (
        HealthApi {
            readiness: state.readiness.clone(),
        },
        UsersApi {
            state: state.clone(),
        },
        AuthApi {
            state: state.clone(),
        },
        AdminApi { state },
    );
    OpenApiService::new(apis, "bff", env!("CARGO_PKG_VERSION"))
        .description(
            "The public API of the outbox user platform: registration, PASETO v4.public \
             sessions with refresh rotation, profile, and admin views. Errors are \
             `{\"error\", \"message\", \"details\"?}`; limited routes answer 429 with a \
             `Retry-After` header.",
        )
        .server("/")
}

impl App {
    pub fn pool(&self) -> &Pool {
        &self.state.pool
    }

    /// The whole HTTP application with its middleware.
    pub fn endpoint(&self) -> impl Endpoint + 'static {
        let api = openapi(self.state.clone());
        let routes = self
            .metrics
            .mount(platform::http::documented(api), get(metrics::endpoint))
            .around(platform::metrics::matched_route)
            // Inside CORS, which turns errors into plain responses before the outer one.
            .around(crate::api::errors::as_json)
            .around(traceparent::apply)
            .around(platform::body_limit::limit)
            .with(RateLimit(self.limits.clone()))
            .boxed();
        let mut cors = Cors::new();
        if self.cors_origins.is_empty() {
            // No origin is allowed, `null` included: the middleware still answers
            // preflights, with no allow-origin, so browsers refuse cross-origin calls.
            cors = cors.allow_origins_fn(|_| false).allow_credentials(false);
        } else {
            cors = cors
                .allow_origins(self.cors_origins.iter().map(String::as_str))
                .allow_headers([
                    "authorization",
                    "content-type",
                    "idempotency-key",
                    "if-match",
                    "traceparent",
                ])
                .allow_methods(["GET", "POST", "PATCH", "DELETE"])
                .expose_headers(["etag"]);
        }
        routes
            .with(cors)
            .around(same_origin::allow)
            // CORS and same-origin refusals.
            .around(crate::api::errors::as_json)
            .around(security_headers::apply)
            // One boxed type: the nested middleware types are too deep for the compiler.
            .boxed()
            .around(platform::metrics::red)
    }
}

impl Service for App {
    const NAME: &'static str = "bff";
    type Settings = crate::config::Settings;
    type BuildError = StartError;

    async fn build(config: Config) -> Result<Self, StartError> {
        let settings = config.settings.clone();
        let keys = settings.token_keys();
        let proxies = TrustedProxies::new(settings.trusted_proxies.clone());
        let (user_service_key, event_consumer_key) = settings.upstream_keys();
        let upstream = Upstream::new(
            &settings.user_service_url,
            &settings.event_consumer_url,
            user_service_key,
            event_consumer_key,
            settings.upstream_timeout(),
        )?;
        let listener = Listener::bind(&config.common.host, settings.port).await?;
        let metrics = MetricsAt::bind(&config.common, config.profile, crate::METRICS).await?;
        let pool = config.db.pool();
        let limits = Arc::new(RateLimits::new(&settings, proxies));
        let cors_origins = settings.cors_origins.clone();
        let state = Arc::new(AppState::new(pool, keys, upstream, settings));
        Ok(Self {
            listener,
            metrics,
            state,
            limits,
            cors_origins,
        })
    }

    async fn run_until_stopped(self, shutdown: impl Shutdown) -> std::io::Result<()> {
        let limits = self.limits.clone();
        let _evictor = Background::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                limits.evict_idle();
            }
        });
        let _purge = Background::spawn(crate::retention::run(
            self.state.pool.clone(),
            self.state.settings.auth_purge_interval(),
        ));
        let _refresh = self.state.readiness.spawn_refresh(REFRESH);
        let app = self.endpoint();
        let _metrics = self.metrics.spawn(get(metrics::endpoint));
        tracing::info!(port = self.listener.port(), "bff listening");
        let served = self.listener.serve(app, shutdown).await;
        served
    }

    fn port(&self) -> u16 {
        self.listener.port()
    }
}
