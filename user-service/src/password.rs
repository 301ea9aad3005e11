//! scrypt password hashes (PHC strings), computed off the async threads and capped in
//! number, because each one is a large, CPU-bound memory allocation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scrypt::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use scrypt::{Params, Scrypt};
use tokio::sync::Semaphore;

/// OWASP's scrypt recommendation: N = 2^17, r = 8, p = 1.
pub const OWASP_LOG_N: u8 = 17;
const R: u32 = 8;
const P: u32 = 1;
const OUTPUT_LEN: usize = 32;

/// Memory all concurrent hashes may use together. At log_n 17 one hash takes
/// 128 * r * N = 128 MiB, so this admits 4; the core count usually binds first.
const MEMORY_BUDGET_BYTES: u64 = 512 * 1024 * 1024;
/// How long a request waits for a hashing slot before it is told to come back later.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid scrypt parameters")]
    Params(#[from] scrypt::errors::InvalidParams),
    #[error("password hashing failed: {0}")]
    Hash(scrypt::password_hash::Error),
    #[error("the password hashing queue is full")]
    QueueFull,
    #[error("every hashing slot stayed busy for {0:?}")]
    Busy(Duration),
    #[error("the hashing task did not finish")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes running or waiting by default: four per core.
pub fn default_queue(cores: usize) -> usize {
    4 * cores.max(1)
}

/// Bytes one scrypt evaluation allocates: 128 * r * 2^log_n.
pub fn memory_per_hash(log_n: u8) -> u64 {
    (128 * u64::from(R)) << log_n
}

/// How many hashes may run at once: no more than there are cores (scrypt is CPU-bound,
/// more would only add latency and memory), and no more than the memory budget allows
/// (a burst of registrations must not allocate gigabytes). At least one.
pub fn concurrency_cap(log_n: u8, cores: usize) -> usize {
    let by_memory = (MEMORY_BUDGET_BYTES / memory_per_hash(log_n)).max(1) as usize;
    cores.clamp(1, by_memory)
}

#[derive(Debug, Clone)]
pub struct Hasher {
    params: Params,
    /// Hashes running or waiting, at most the queue size: a request beyond it is told to
    /// come back later at once, so a flood cannot pile up requests (and passwords) in memory.
    queue: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    cap: usize,
    /// A hash of a random secret, verified against when the email is unknown, so that
    /// case costs the same as a wrong password.
    dummy: Arc<str>,
}

impl Hasher {
    /// Builds the hasher and computes the dummy hash (one full hash: ~0.3 s at log_n 17).
    /// `queue` bounds the hashes running or waiting; 0 means [`default_queue`].
    pub async fn new(log_n: u8, queue: usize) -> Result<Self, HashError> {
        let params = Params::new(log_n, R, P, OUTPUT_LEN)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cap = concurrency_cap(log_n, cores);
        let queue = if queue == 0 {
            default_queue(cores)
        } else {
            queue
        };
        let mut hasher = Self {
            params,
            queue: Arc::new(Semaphore::new(queue.max(1))),
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            dummy: Arc::from(""),
        };
        let secret = hex(&rand::random::<[u8; 32]>());
        hasher.dummy = Arc::from(hasher.hash(secret).await?);
        tracing::info!(log_n, cap, queue, "password hasher ready");
        Ok(hasher)
    }

    pub fn concurrency(&self) -> usize {
        self.cap
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params;
        self.run(move || {
            let salt =
                SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(HashError::Hash)?;
            Scrypt
                .hash_password_customized(password.as_bytes(), None, None, params, &salt)
                .map(|h| h.to_string())
                .map_err(HashError::Hash)
        })
        .await
    }

    /// Whether `password` matches `stored`; `None` verifies against the dummy hash (and
    /// answers false) so an unknown account takes as long as a known one.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy.to_string());
        let matches = self
            .run(move || {
                let parsed = PasswordHash::new(&stored).map_err(HashError::Hash)?;
                Ok(Scrypt.verify_password(password.as_bytes(), &parsed).is_ok())
            })
            .await?;
        Ok(known && matches)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let _place = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| HashError::QueueFull)?;
        let _slot = tokio::time::timeout(QUEUE_TIMEOUT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy(QUEUE_TIMEOUT))?
            .map_err(|_| HashError::Busy(Duration::ZERO))?;
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(work).await?;
        metrics::histogram!("password_hash_seconds").record(started.elapsed().as_secs_f64());
        result
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_cores_and_memory() {
        assert_eq!(memory_per_hash(17), 128 * 1024 * 1024);
        assert_eq!(concurrency_cap(17, 2), 2);
        assert_eq!(concurrency_cap(17, 64), 4);
        assert_eq!(concurrency_cap(20, 8), 1);
        assert_eq!(concurrency_cap(10, 0), 1);
    }

    #[tokio::test]
    async fn hashes_are_phc_strings_that_verify() {
        let hasher = Hasher::new(10, 0).await.unwrap();
        let hash = hasher.hash("a long passphrase".into()).await.unwrap();
        assert!(hash.starts_with("$scrypt$ln=10,r=8,p=1$"), "{hash}");
        assert!(hasher
            .verify("a long passphrase".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("a long passphrasE".into(), Some(hash))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_instead_of_piling_up() {
        let hasher = Hasher::new(10, 1).await.unwrap();
        let _taken = hasher.queue.clone().try_acquire_owned().unwrap();
        let refused = hasher.hash("a long passphrase".into()).await;
        assert!(matches!(refused, Err(HashError::QueueFull)), "{refused:?}");
        drop(_taken);
        assert!(hasher.hash("a long passphrase".into()).await.is_ok());
        assert_eq!(default_queue(2), 8);
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let hasher = Hasher::new(10, 0).await.unwrap();
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
    }
}
