//! Background tasks tied to their owner: a [`Background`] aborts its task when dropped, so
//! a purge, a refresh or a listener never outlives the service or relay that started it.

use std::future::Future;

/// A spawned task that ends when this guard drops.
#[derive(Debug)]
#[must_use = "the task is aborted as soon as its guard drops"]
pub struct Background(tokio::task::JoinHandle<()>);

impl Background {
    /// Spawns `task` on the current runtime.
    pub fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}
