//! Per-route, per-client rate limits (GCRA through governor), as a middleware.
//!
//! Memory stays bounded: idle clients are forgotten by [`RateLimits::evict_idle`] (run
//! periodically), and when a route already tracks `max_clients` busy clients, further new
//! clients share one overflow bucket instead of growing the table. IPv6 clients are keyed
//! by their /64, which one host can otherwise walk through freely.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use serde::Serialize;

use crate::client_ip::TrustedProxies;
use crate::config::Settings;

/// The 429 body, exactly as the design fixes it.
#[derive(Debug, Serialize, poem_openapi::Object)]
pub struct RateLimited {
    /// Always `Too many requests`.
    pub error: String,
    /// Always `Rate limit exceeded. Please try again later.`
    pub message: String,
    /// `N seconds`, as in the `Retry-After` header.
    pub retry_after: String,
}

impl RateLimited {
    pub fn new(seconds: u64) -> Self {
        Self {
            error: "Too many requests".into(),
            message: "Rate limit exceeded. Please try again later.".into(),
            retry_after: format!("{seconds} seconds"),
        }
    }
}

struct RouteLimit {
    method: Method,
    path: &'static str,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

/// The limits of every limited route.
pub struct RateLimits {
    routes: Vec<RouteLimit>,
    proxies: TrustedProxies,
    max_clients: usize,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<&str> = self.routes.iter().map(|r| r.path).collect();
        f.debug_struct("RateLimits")
            .field("routes", &routes)
            .field("max_clients", &self.max_clients)
            .finish_non_exhaustive()
    }
}

/// Key shared by new clients once a route's table is full.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

impl RateLimits {
    pub fn new(settings: &Settings, proxies: TrustedProxies) -> Self {
        let table = [
            (
                Method::POST,
                "/api/v1/register",
                settings.rate_limit_register_per_min,
            ),
            (
                Method::POST,
                "/api/v1/auth/login",
                settings.rate_limit_login_per_min,
            ),
            (
                Method::POST,
                "/api/v1/auth/refresh",
                settings.rate_limit_refresh_per_min,
            ),
            (
                Method::POST,
                "/api/v1/auth/logout",
                settings.rate_limit_logout_per_min,
            ),
            (
                Method::GET,
                "/api/v1/protected/profile",
                settings.rate_limit_profile_per_min,
            ),
            (
                Method::GET,
                "/api/v1/protected/admin/dashboard",
                settings.rate_limit_admin_per_min,
            ),
            (
                Method::POST,
                "/api/v1/protected/admin/outbox/replay",
                settings.rate_limit_admin_per_min,
            ),
        ];
        let routes = table
            .into_iter()
            .map(|(method, path, per_min)| RouteLimit {
                method,
                path,
                limiter: RateLimiter::keyed(Quota::per_minute(
                    NonZeroU32::new(per_min).unwrap_or(NonZeroU32::MIN),
                )),
            })
            .collect();
        Self {
            routes,
            proxies,
            max_clients: settings.rate_limit_max_clients.max(1),
            clock: DefaultClock::default(),
        }
    }

    /// Forgets clients whose buckets are full again (idle long enough).
    pub fn evict_idle(&self) {
        for route in &self.routes {
            route.limiter.retain_recent();
            route.limiter.shrink_to_fit();
        }
    }

    /// Clients currently tracked, over all routes.
    pub fn tracked(&self) -> usize {
        self.routes.iter().map(|r| r.limiter.len()).sum()
    }

    /// `Err(seconds to wait)` when the client is over the route's limit.
    fn check(&self, method: &Method, path: &str, client: IpAddr) -> Result<(), u64> {
        let Some(route) = self
            .routes
            .iter()
            .find(|r| r.method == method && r.path == path.trim_end_matches('/'))
        else {
            return Ok(());
        };
        let mut key = key_of(client);
        if route.limiter.len() >= self.max_clients {
            route.limiter.retain_recent();
            if route.limiter.len() >= self.max_clients {
                key = OVERFLOW;
            }
        }
        route.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Round up: a client that waits the advertised time must get through.
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

fn key_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
        v4 => v4,
    }
}

/// The 429 answer with its `Retry-After` header.
pub fn too_many(seconds: u64) -> Response {
    let seconds = seconds.max(1);
    let body = serde_json::to_string(&RateLimited::new(seconds)).unwrap_or_default();
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header("Retry-After", seconds.to_string())
        .content_type("application/json; charset=utf-8")
        .body(body)
}

/// The middleware applying [`RateLimits`] to every request.
#[derive(Debug)]
pub struct RateLimit(pub Arc<RateLimits>);

impl<E: Endpoint> Middleware<E> for RateLimit {
    type Output = RateLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RateLimitEndpoint {
            inner,
            limits: self.0.clone(),
        }
    }
}

#[derive(Debug)]
pub struct RateLimitEndpoint<E> {
    inner: E,
    limits: Arc<RateLimits>,
}

impl<E: Endpoint> Endpoint for RateLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        if let Some(client) = self.limits.proxies.client_of(&req) {
            if let Err(seconds) = self.limits.check(req.method(), req.uri().path(), client) {
                metrics::counter!("bff_rate_limited_total").increment(1);
                return Ok(too_many(seconds));
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_min: u32, max_clients: usize) -> RateLimits {
        let settings = Settings {
            rate_limit_login_per_min: per_min,
            rate_limit_max_clients: max_clients,
            ..Settings::default()
        };
        RateLimits::new(&settings, TrustedProxies::default())
    }

    #[test]
    fn the_limit_holds_per_client_and_per_route() {
        let limits = limits(2, 100);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let login = "/api/v1/auth/login";
        assert!(limits.check(&Method::POST, login, a).is_ok());
        assert!(limits.check(&Method::POST, login, a).is_ok());
        let wait = limits.check(&Method::POST, login, a).unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(limits.check(&Method::POST, login, b).is_ok());
        assert!(limits.check(&Method::GET, "/health", a).is_ok());
    }

    #[test]
    fn a_flood_of_addresses_cannot_grow_the_table_past_its_bound() {
        let limits = limits(5, 50);
        for i in 0..5000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limits.check(&Method::POST, "/api/v1/auth/login", ip);
        }
        assert!(limits.tracked() <= 51, "{}", limits.tracked());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limits = limits(1, 100);
        let login = "/api/v1/auth/login";
        assert!(limits
            .check(&Method::POST, login, "2001:db8::1".parse().unwrap())
            .is_ok());
        assert!(limits
            .check(&Method::POST, login, "2001:db8::2".parse().unwrap())
            .is_err());
    }
}
