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
}

impl Default for Common {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            log_level: "info".into(),
            log_format: LogFormat::Pretty,
        }
    }
}

/// A service's documented routes: the OpenAPI document at `/openapi.json`, Swagger UI at
/// `/docs`, and the API itself at `/`.
pub fn documented<T: poem_openapi::OpenApi + 'static>(
    api: poem_openapi::OpenApiService<T, ()>,
) -> poem::Route {
    poem::Route::new()
        .at("/openapi.json", api.spec_endpoint())
        .nest("/docs", api.swagger_ui())
        .nest("/", api)
}

/// An internal service's whole HTTP side: [`documented`] routes, `/metrics`, the body
/// limit, the JSON error body on every refusal, and the keys its callers present (the
/// internal-key check reads them from the request).
pub fn internal<T: poem_openapi::OpenApi + 'static>(
    api: poem_openapi::OpenApiService<T, ()>,
    keys: crate::internal_key::ServerKeys,
) -> impl Endpoint + 'static {
    use poem::EndpointExt;
    documented(api)
        .at("/metrics", poem::get(crate::metrics::endpoint))
        .around(crate::body_limit::limit)
        .around(crate::error::as_json)
        .data(keys)
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
        let acceptor = TcpListener::bind(format!("{host}:{port}"))
            .into_acceptor()
            .await?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().map(|a| a.port()))
            .unwrap_or(port);
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
