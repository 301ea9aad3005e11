//! Per-route, per-client rate limits (GCRA through governor), as a middleware.
//!
//! Each client has its own bucket per route, kept in a bounded cache (moka, least recently
//! used first out). Memory stays bounded without any request scanning a table: a client
//! idle for the quota's whole period has a full bucket again, so its entry expires; when
//! the cache is full, the least recently seen client's bucket goes (it comes back full).
//! New clients always get a bucket of their own, never one shared with strangers. IPv6
//! clients are keyed by their /64, which one host can otherwise walk through freely. HEAD
//! counts as GET: it runs the same handler.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
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
    quota: Quota,
    clients: Cache<IpAddr, Arc<DefaultDirectRateLimiter>>,
}

impl RouteLimit {
    fn new(method: Method, path: &'static str, per_min: u32, max_clients: u64) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_min).unwrap_or(NonZeroU32::MIN));
        // After one whole period without a request the bucket is full again: forgetting
        // it then changes nothing.
        let refill = quota.replenish_interval() * quota.burst_size().get();
        Self {
            method,
            path,
            quota,
            clients: Cache::builder()
                .max_capacity(max_clients)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_idle(refill.max(Duration::from_secs(1)))
                .build(),
        }
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.method == method && same_route(self.path, path.trim_end_matches('/'))
    }
}

/// Whether `path` is an instance of the route template `route`, where a `{name}` segment
/// stands for any one non-empty segment.
fn same_route(route: &str, path: &str) -> bool {
    let mut route = route.split('/');
    let mut path = path.split('/');
    loop {
        match (route.next(), path.next()) {
            (None, None) => return true,
            (Some(r), Some(p)) if r == p => {}
            (Some(r), Some(p)) if r.starts_with('{') && r.ends_with('}') && !p.is_empty() => {}
            _ => return false,
        }
    }
}

/// The limits of every limited route.
pub struct RateLimits {
    routes: Vec<RouteLimit>,
    proxies: TrustedProxies,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<&str> = self.routes.iter().map(|r| r.path).collect();
        f.debug_struct("RateLimits")
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

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
                Method::PATCH,
                "/api/v1/protected/profile",
                settings.rate_limit_profile_per_min,
            ),
            // A password check, like a login: the login's limit.
            (
                Method::POST,
                "/api/v1/protected/password",
                settings.rate_limit_login_per_min,
            ),
            (
                Method::DELETE,
                "/api/v1/protected/account",
                settings.rate_limit_login_per_min,
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
            (
                Method::GET,
                "/api/v1/protected/admin/dlq",
                settings.rate_limit_admin_per_min,
            ),
            (
                Method::GET,
                "/api/v1/protected/admin/dlq/{id}",
                settings.rate_limit_admin_per_min,
            ),
            (
                Method::POST,
                "/api/v1/protected/admin/dlq/redrive",
                settings.rate_limit_admin_per_min,
            ),
            (
                Method::GET,
                "/api/v1/protected/admin/audit",
                settings.rate_limit_admin_per_min,
            ),
            (
                Method::POST,
                "/api/v1/protected/admin/users/{id}/deactivate",
                settings.rate_limit_admin_per_min,
            ),
            (
                Method::POST,
                "/api/v1/protected/admin/users/{id}/reactivate",
                settings.rate_limit_admin_per_min,
            ),
        ];
        let max_clients = settings.rate_limit_max_clients.max(1) as u64;
        let routes = table
            .into_iter()
            .map(|(method, path, per_min)| RouteLimit::new(method, path, per_min, max_clients))
            .collect();
        Self {
            routes,
            proxies,
            clock: DefaultClock::default(),
        }
    }

    /// Runs the caches' pending expiry and eviction work now (it also runs, in small
    /// steps, as requests come).
    pub fn evict_idle(&self) {
        for route in &self.routes {
            route.clients.run_pending_tasks();
        }
    }

    /// Clients currently tracked, over all routes.
    pub fn tracked(&self) -> usize {
        self.evict_idle();
        self.routes
            .iter()
            .map(|r| r.clients.entry_count() as usize)
            .sum()
    }

    /// The template of the limited route `path` is an instance of.
    fn route_of(&self, method: &Method, path: &str) -> Option<&'static str> {
        let route = self.routes.iter().find(|r| r.matches(method, path))?;
        Some(route.path)
    }

    /// `Err(seconds to wait)` when the client is over the route's limit.
    fn check(&self, method: &Method, path: &str, client: IpAddr) -> Result<(), u64> {
        let Some(route) = self.routes.iter().find(|r| r.matches(method, path)) else {
            return Ok(());
        };
        let bucket = route.clients.get_with(key_of(client), || {
            Arc::new(RateLimiter::direct(route.quota))
        });
        bucket.check().map_err(|not_until| {
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

/// The client address the limits were applied to, as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

#[derive(Debug)]
pub struct RateLimitEndpoint<E> {
    inner: E,
    limits: Arc<RateLimits>,
}

impl<E: Endpoint> Endpoint for RateLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        if let Some(client) = self.limits.proxies.client_of(&req) {
            if let Err(seconds) = self.limits.check(req.method(), req.uri().path(), client) {
                metrics::counter!("bff_rate_limited_total").increment(1);
                // Answered before the router: the route is the limited one.
                if let Some(route) = self.limits.route_of(req.method(), req.uri().path()) {
                    platform::metrics::set_route(&req, route);
                }
                return Ok(too_many(seconds));
            }
            // Handlers that pass the client on (the login's account throttle) read it here.
            req.extensions_mut().insert(ClientIp(client));
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
        assert!(limits.tracked() <= 50, "{}", limits.tracked());
    }

    #[test]
    fn with_the_table_full_new_clients_do_not_share_a_bucket() {
        let limits = limits(1, 10);
        let login = "/api/v1/auth/login";
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..10 {
            assert!(limits.check(&Method::POST, login, ip(i)).is_ok());
        }
        limits.evict_idle();
        // Two strangers arriving at a full table each get their own allowance...
        assert!(limits.check(&Method::POST, login, ip(100)).is_ok());
        assert!(limits.check(&Method::POST, login, ip(101)).is_ok());
        // ...and their own limit.
        assert!(limits.check(&Method::POST, login, ip(101)).is_err());
    }

    #[test]
    fn a_route_with_a_parameter_limits_every_instance_together() {
        let settings = Settings {
            rate_limit_admin_per_min: 2,
            ..Settings::default()
        };
        let limits = RateLimits::new(&settings, TrustedProxies::default());
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let letter = |id: &str| format!("/api/v1/protected/admin/dlq/{id}");
        assert!(limits.check(&Method::GET, &letter("0-1"), a).is_ok());
        assert!(limits.check(&Method::GET, &letter("0-2/"), a).is_ok());
        assert!(limits.check(&Method::GET, &letter("0-3"), a).is_err());
        // Neither the list nor a deeper path is that route.
        assert!(same_route("/a/{id}", "/a/x"));
        assert!(!same_route("/a/{id}", "/a"));
        assert!(!same_route("/a/{id}", "/a/"));
        assert!(!same_route("/a/{id}", "/a/x/y"));
        assert!(!same_route("/a/b", "/a/b/c"));
    }

    #[test]
    fn head_counts_against_the_get_limit() {
        let settings = Settings {
            rate_limit_profile_per_min: 2,
            ..Settings::default()
        };
        let limits = RateLimits::new(&settings, TrustedProxies::default());
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        let profile = "/api/v1/protected/profile";
        assert!(limits.check(&Method::HEAD, profile, a).is_ok());
        assert!(limits.check(&Method::GET, profile, a).is_ok());
        assert!(limits.check(&Method::HEAD, profile, a).is_err());
        assert!(limits.check(&Method::GET, profile, a).is_err());
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
