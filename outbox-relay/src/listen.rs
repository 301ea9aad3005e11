//! Wake-ups: LISTEN on the channel the outbox trigger notifies, on a dedicated connection,
//! so an event committed while the relay idles is picked up within milliseconds. The
//! relay still polls at an interval as a fallback (a notification can be lost while this
//! connection reconnects).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use platform::backoff::Backoff;
use platform::db::DbConfig;
use platform::task::Background;

/// The channel `users.outbox_notify()` notifies.
pub const CHANNEL: &str = "outbox_events";

const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What a replay request says in its notification.
pub const REPLAY: &str = "replay";

/// A running LISTEN task; stops when dropped.
#[derive(Debug)]
pub struct Wakeups {
    notify: Arc<Notify>,
    replay: Arc<AtomicBool>,
    _task: Background,
}

impl Wakeups {
    /// Starts listening (and reconnecting with backoff whenever the connection is lost).
    pub fn spawn(db: DbConfig) -> Self {
        let notify = Arc::new(Notify::new());
        let replay = Arc::new(AtomicBool::new(false));
        let task = Background::spawn(listen_forever(db, notify.clone(), replay.clone()));
        Self {
            notify,
            replay,
            _task: task,
        }
    }

    /// Whether a replay was requested since the last call.
    pub fn take_replay_request(&self) -> bool {
        self.replay.swap(false, Ordering::SeqCst)
    }

    /// Resolves at the next notification (or at once if one came since the last call).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

async fn listen_forever(db: DbConfig, notify: Arc<Notify>, replay: Arc<AtomicBool>) {
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    loop {
        let delay = backoff.next_delay();
        match listen_once(&db, &notify, &replay).await {
            Ok(()) => tracing::warn!("LISTEN connection closed; reconnecting"),
            Err(error) => tracing::warn!(%error, ?delay, "LISTEN connection failed; retrying"),
        }
        // Rows (or a replay) may have arrived while we were not listening.
        replay.store(true, Ordering::SeqCst);
        notify.notify_one();
        tokio::time::sleep(delay).await;
    }
}

async fn listen_once(
    db: &DbConfig,
    notify: &Notify,
    replay: &AtomicBool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = db.connect_raw().await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("LISTEN {CHANNEL}");
    let listen = client.batch_execute(&sql);
    // The connection must be polled for the LISTEN to complete.
    tokio::pin!(listen);
    loop {
        tokio::select! {
            result = &mut listen => { result?; break; }
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    }
    tracing::debug!(channel = CHANNEL, "listening for outbox notifications");
    notify.notify_one();
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(notification) = message? {
            if notification.payload() == REPLAY {
                replay.store(true, Ordering::SeqCst);
            }
            notify.notify_one();
        }
    }
    Ok(())
}
