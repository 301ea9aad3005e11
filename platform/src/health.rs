//! Health probes every service serves:
//! - `GET /health/live`: the process answers; no I/O at all.
//! - `GET /health/ready`: the dependency checks, run in the background and cached, so a
//!   probe never waits on (or piles up against) a database or broker that is away; 503
//!   names what is down.
//! - `GET /health`: the same as ready, for the seed's clients.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use serde_json::{json, Map, Value};

type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;
/// Each check's name and whether it passed, from the last refresh.
type Results = Vec<(&'static str, bool)>;
type DetailsFn = Arc<dyn Fn() -> Vec<(&'static str, String)> + Send + Sync>;

/// How often the background task re-runs the checks.
pub const REFRESH: Duration = Duration::from_secs(1);

struct Check {
    name: &'static str,
    /// Whether the service is ready without it (reported, but 200 either way).
    optional: bool,
    run: CheckFn,
}

/// The dependency checks of one service and their latest results.
#[derive(Clone)]
pub struct Readiness {
    checks: Arc<Vec<Check>>,
    details: Option<DetailsFn>,
    latest: Arc<RwLock<Option<Results>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|c| c.name).collect();
        f.debug_struct("Readiness")
            .field("checks", &names)
            .finish_non_exhaustive()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self {
            checks: Arc::new(Vec::new()),
            details: None,
            latest: Arc::new(RwLock::new(None)),
        }
    }

    fn push(mut self, name: &'static str, optional: bool, run: CheckFn) -> Self {
        Arc::get_mut(&mut self.checks)
            .expect("checks are added before the readiness is shared")
            .push(Check {
                name,
                optional,
                run,
            });
        self
    }

    /// A dependency the service cannot work without.
    pub fn require<F, Fut>(self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.push(name, false, Arc::new(move || Box::pin(check())))
    }

    /// The database behind `pool`, which every service needs: a `SELECT 1` per check.
    pub fn require_database(self, pool: deadpool_postgres::Pool) -> Self {
        self.require("database", move || {
            let pool = pool.clone();
            async move { crate::db::ping(&pool).await }
        })
    }

    /// A dependency whose absence is reported but does not make the service unready.
    pub fn report<F, Fut>(self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.push(name, true, Arc::new(move || Box::pin(check())))
    }

    /// Extra fields of the report (the relay's `role`), read on each probe (no I/O).
    pub fn details(
        mut self,
        details: impl Fn() -> Vec<(&'static str, String)> + Send + Sync + 'static,
    ) -> Self {
        self.details = Some(Arc::new(details));
        self
    }

    /// Runs every check once, concurrently, and keeps the results.
    pub async fn refresh(&self) {
        let results =
            futures::future::join_all(self.checks.iter().map(|check| (check.run)())).await;
        let latest = self
            .checks
            .iter()
            .zip(results)
            .map(|(check, up)| (check.name, up))
            .collect();
        if let Ok(mut slot) = self.latest.write() {
            *slot = Some(latest);
        }
    }

    /// Refreshes every `every` until dropped (the returned handle aborts on drop).
    /// Refreshes every `every` until the returned guard drops.
    pub fn spawn_refresh(&self, every: Duration) -> crate::task::Background {
        let readiness = self.clone();
        crate::task::Background::spawn(async move {
            loop {
                readiness.refresh().await;
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Whether every required check passed at the last refresh, and the report.
    pub fn snapshot(&self) -> (bool, Value) {
        let latest = self.latest.read().ok().and_then(|slot| slot.clone());
        let mut body = Map::new();
        let ready = match &latest {
            None => false,
            Some(results) => self
                .checks
                .iter()
                .zip(results)
                .all(|(check, (_, up))| *up || check.optional),
        };
        let all_up = latest
            .as_ref()
            .is_some_and(|results| results.iter().all(|(_, up)| *up));
        let status = match (&latest, ready, all_up) {
            (None, ..) => "starting",
            (_, true, true) => "ok",
            _ => "degraded",
        };
        body.insert("status".into(), json!(status));
        for (name, up) in latest.iter().flatten() {
            body.insert((*name).into(), json!(if *up { "up" } else { "down" }));
        }
        if let Some(details) = &self.details {
            for (name, value) in details() {
                body.insert(name.into(), json!(value));
            }
        }
        (ready, Value::Object(body))
    }
}

#[derive(Tags)]
enum Tag {
    /// Liveness and readiness probes.
    Probes,
}

/// A required dependency is down (named in the body with `"down"`), or the first check
/// has not finished yet (`"status": "starting"`).
#[derive(Debug, ApiResponse)]
pub enum NotReady {
    #[oai(status = 503)]
    Down(Json<Value>),
}

/// The probes as a poem-openapi API, for each service's `OpenApiService`.
#[derive(Debug, Clone)]
pub struct HealthApi {
    pub readiness: Readiness,
}

impl HealthApi {
    /// 200 when every required dependency answered at the last check (the body lists
    /// each).
    fn ready_response(&self) -> Result<Json<Value>, NotReady> {
        match self.readiness.snapshot() {
            (true, body) => Ok(Json(body)),
            (false, body) => Err(NotReady::Down(Json(body))),
        }
    }
}

#[OpenApi(tag = "Tag::Probes")]
impl HealthApi {
    /// Liveness: the process answers. No I/O, never depends on anything else.
    #[oai(path = "/health/live", method = "get")]
    async fn live(&self) -> Json<Value> {
        Json(json!({ "status": "ok" }))
    }

    /// Readiness: the cached result of the dependency checks (refreshed every second).
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(&self) -> Result<Json<Value>, NotReady> {
        self.ready_response()
    }

    /// The same as `/health/ready`.
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> Result<Json<Value>, NotReady> {
        self.ready_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn ready_follows_the_required_checks_and_reports_the_optional_ones() {
        let db = Arc::new(AtomicBool::new(true));
        let flag = db.clone();
        let readiness = Readiness::new()
            .require("database", move || {
                let up = flag.load(Ordering::SeqCst);
                async move { up }
            })
            .report("broker", || async { false })
            .details(|| vec![("role", "standby".to_owned())]);
        let (ready, body) = readiness.snapshot();
        assert!(!ready);
        assert_eq!(body["status"], "starting");

        readiness.refresh().await;
        let (ready, body) = readiness.snapshot();
        assert!(ready, "{body}");
        assert_eq!(
            body,
            json!({"status": "degraded", "database": "up", "broker": "down", "role": "standby"})
        );

        db.store(false, Ordering::SeqCst);
        readiness.refresh().await;
        let (ready, body) = readiness.snapshot();
        assert!(!ready);
        assert_eq!(body["database"], "down");
    }
}
