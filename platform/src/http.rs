//! The build/run split every service's HTTP side follows: bind first (port 0 works in
//! tests, and `port()` tells which one was chosen), then serve until a shutdown future
//! resolves, letting in-flight requests finish.

use std::future::Future;
use std::time::Duration;

use poem::listener::{Acceptor, Listener as _, TcpAcceptor, TcpListener};
use poem::{Endpoint, IntoEndpoint, Server};
use serde::Deserialize;

use super::telemetry::LogFormat;

/// Settings every service process has.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Common {
    /// Address to bind (`HOST`); the port is each service's own setting (`PORT`).
    pub host: String,
    pub log_level: String,
    pub log_format: LogFormat,
    /// `host:port` serving `/metrics` apart from the service's API (`METRICS_ADDR`); see
    /// [`MetricsAt`].
    pub metrics_addr: Option<String>,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            log_level: "info".into(),
            log_format: LogFormat::Pretty,
            metrics_addr: None,
        }
    }
}

/// A service's documented routes: the OpenAPI document at `/openapi.json`, Swagger UI at
/// `/docs`, and the API itself at `/`.
pub fn documented<T: poem_openapi::OpenApi + 'static>(
    api: poem_openapi::OpenApiService<T, ()>,
) -> poem::Route {
    crate::metrics::learn_routes(&api.spec());
    poem::Route::new()
        .at("/openapi.json", api.spec_endpoint())
        .nest("/docs", api.swagger_ui())
        .nest("/", api)
}

/// An internal service's whole HTTP side: [`documented`] routes, `/metrics`, the RED
/// figures of every route, the body limit, the JSON error body on every refusal, and the keys its callers present (the
/// internal-key check reads them from the request).
pub fn internal<T: poem_openapi::OpenApi + 'static>(
    api: poem_openapi::OpenApiService<T, ()>,
    keys: crate::internal_key::ServerKeys,
    metrics: &MetricsAt,
) -> impl Endpoint + 'static {
    use poem::EndpointExt;
    metrics
        .mount(documented(api), poem::get(crate::metrics::endpoint))
        .around(crate::metrics::matched_route)
        .around(crate::body_limit::limit)
        .around(crate::error::as_json)
        .data(keys)
        .around(crate::metrics::red)
}

/// Where a service serves `/metrics`: on its own listener at `METRICS_ADDR` when that is
/// set (and then not beside the API); otherwise beside the API in `development` and
/// nowhere in the other profiles, so the figures never sit on a public port by accident.
#[derive(Debug)]
pub enum MetricsAt {
    /// Beside the API, on the service's main listener.
    Main,
    /// On a listener of its own.
    Own(Listener),
    /// Not served.
    Off,
}

impl MetricsAt {
    /// Decides from `METRICS_ADDR` and the profile, binding the metrics listener if any.
    /// Installs the process's recorder first, so nothing counted before the first scrape
    /// is lost, and describes the service's `families` (their `# HELP` lines).
    pub async fn bind(
        common: &Common,
        profile: crate::config::Profile,
        families: &[crate::metrics::Family],
    ) -> std::io::Result<Self> {
        crate::metrics::handle();
        crate::metrics::describe(families);
        let addr = common.metrics_addr.as_deref().map(str::trim);
        match addr.filter(|addr| !addr.is_empty()) {
            Some(addr) => Ok(Self::Own(Listener::bind_addr(addr).await?)),
            None if profile.is_development() => Ok(Self::Main),
            None => {
                tracing::info!(
                    profile = profile.name(),
                    "METRICS_ADDR is not set: /metrics is not served"
                );
                Ok(Self::Off)
            }
        }
    }

    /// The port of the metrics listener, if it has its own.
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Own(listener) => Some(listener.port()),
            Self::Main | Self::Off => None,
        }
    }

    /// `routes`, with `/metrics` among them when it goes beside the API.
    pub fn mount<E>(&self, routes: poem::Route, metrics: E) -> poem::Route
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        match self {
            Self::Main => routes.at("/metrics", metrics),
            Self::Own(_) | Self::Off => routes,
        }
    }

    /// Serves `/metrics` on its own listener (if it has one) until the guard drops.
    pub fn spawn<E>(self, metrics: E) -> Option<crate::task::Background>
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        let Self::Own(listener) = self else {
            return None;
        };
        tracing::info!(port = listener.port(), "metrics listening");
        let app = poem::Route::new().at("/metrics", metrics);
        Some(crate::task::Background::spawn(async move {
            if let Err(error) = listener.serve(app, std::future::pending()).await {
                tracing::error!(%error, "the metrics listener failed");
            }
        }))
    }
}

/// How long in-flight requests may run on after a shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

pub struct Listener {
    acceptor: TcpAcceptor,
    port: u16,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("port", &self.port)
            .finish()
    }
}

impl Listener {
    pub async fn bind(host: &str, port: u16) -> std::io::Result<Self> {
        Self::bind_addr(&format!("{host}:{port}")).await
    }

    /// Binds `host:port` (port 0 picks one; [`Listener::port`] tells which).
    pub async fn bind_addr(addr: &str) -> std::io::Result<Self> {
        let acceptor = TcpListener::bind(addr.to_owned()).into_acceptor().await?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().map(|a| a.port()))
            .unwrap_or_default();
        Ok(Self { acceptor, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn serve<E>(
        self,
        app: E,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()>
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
        <E::Endpoint as Endpoint>::Output: 'static,
    {
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(GRACE))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;

    fn common(metrics_addr: Option<&str>) -> Common {
        Common {
            metrics_addr: metrics_addr.map(str::to_owned),
            ..Common::default()
        }
    }

    #[tokio::test]
    async fn metrics_leave_the_api_listener_outside_development_or_with_metrics_addr() {
        let at = |c, p| async move { MetricsAt::bind(&c, p, &[]).await.unwrap() };
        assert!(matches!(
            at(common(None), Profile::Development).await,
            MetricsAt::Main
        ));
        for profile in [Profile::Docker, Profile::Production] {
            assert!(matches!(at(common(None), profile).await, MetricsAt::Off));
            assert!(matches!(
                at(common(Some(" ")), profile).await,
                MetricsAt::Off
            ));
        }
        for profile in [Profile::Development, Profile::Docker, Profile::Production] {
            let own = at(common(Some("127.0.0.1:0")), profile).await;
            assert!(own.port().is_some_and(|port| port != 0), "{own:?}");
            let routes = own.mount(poem::Route::new(), poem::get(crate::metrics::endpoint));
            let request = poem::Request::builder().uri_str("/metrics").finish();
            let answer = routes.get_response(request).await;
            assert_eq!(answer.status(), poem::http::StatusCode::NOT_FOUND);
        }
        assert!(
            MetricsAt::bind(&common(Some("not an address")), Profile::Docker, &[])
                .await
                .is_err()
        );
    }
}
