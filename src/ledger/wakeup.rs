//! Wake-ups through PostgreSQL LISTEN/NOTIFY with a polling fallback: an idle process sleeps
//! until a notification arrives (new work within milliseconds) or its poll interval ends.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio_util::sync::CancellationToken;

pub struct Wakeup {
    pool: PgPool,
    channel: &'static str,
    listener: Option<PgListener>,
    /// Whether this listener is connected, as readiness reads it ([`listeners`]).
    state: Arc<AtomicU8>,
}

/// A listener that has not tried to connect yet (its loop is busy, and listens when idle).
const UNTRIED: u8 = 0;
const UP: u8 = 1;
/// It tried and has no connection (lost, or refused): it polls instead, and misses nothing.
const DOWN: u8 = 2;

/// A listener as readiness sees it: its channel, and its state (while it lives).
type ListenerFlag = (&'static str, Weak<AtomicU8>);

/// The listeners of this process.
static LISTENERS: LazyLock<Mutex<Vec<ListenerFlag>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Each live listener of this process: its channel, and whether it is down (it tried to
/// connect and has no connection: it polls instead). One that has not tried yet, because its
/// loop has been busy since the start, is not down.
pub fn listeners() -> Vec<(&'static str, bool)> {
    let mut all = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|(_, flag)| flag.strong_count() > 0);
    all.iter()
        .filter_map(|(channel, flag)| {
            flag.upgrade()
                .map(|f| (*channel, f.load(Ordering::Relaxed) == DOWN))
        })
        .collect()
}

/// What [`Wakeup::hear`] heard.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// A notification, with its payload.
    Payload(String),
    /// Nothing within the timeout; the listener is connected.
    Quiet,
    /// No listener connection (lost or not made): notifications may have been missed.
    Deaf,
}

/// Why `wait` returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Woke {
    Notified,
    TimedOut,
    Shutdown,
}

/// A pool of one connection, with the options of `pool`, for a listener: a LISTEN holds its
/// connection for good, and must not take one of the pool's working connections.
pub fn listener_pool(pool: &PgPool) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with((*pool.connect_options()).clone())
}

impl Wakeup {
    pub fn new(pool: PgPool, channel: &'static str) -> Wakeup {
        let state = Arc::new(AtomicU8::new(UNTRIED));
        LISTENERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((channel, Arc::downgrade(&state)));
        Wakeup {
            pool: listener_pool(&pool),
            channel,
            listener: None,
            state,
        }
    }

    /// Keeps `listener` (or its loss) and says so to readiness.
    fn keep(&mut self, listener: Option<PgListener>) {
        self.state.store(
            if listener.is_some() { UP } else { DOWN },
            Ordering::Relaxed,
        );
        self.listener = listener;
    }

    async fn listener(&mut self) -> Option<&mut PgListener> {
        if self.listener.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => match listener.listen(self.channel).await {
                    Ok(()) => self.keep(Some(listener)),
                    Err(err) => {
                        tracing::warn!(channel = self.channel, error = %err, "LISTEN failed; polling");
                        self.keep(None);
                    }
                },
                Err(err) => {
                    tracing::warn!(channel = self.channel, error = %err, "no listener connection; polling");
                    self.keep(None);
                }
            }
        }
        self.listener.as_mut()
    }

    /// The next notification's payload, waiting at most `timeout`; for listeners that need to
    /// know what changed, not only that something did.
    pub async fn hear(&mut self, timeout: Duration) -> Heard {
        let Some(listener) = self.listener().await else {
            return Heard::Deaf;
        };
        match tokio::time::timeout(timeout, listener.try_recv()).await {
            Err(_) => Heard::Quiet,
            Ok(Ok(Some(notification))) => Heard::Payload(notification.payload().to_string()),
            Ok(Ok(None)) => {
                // The connection was lost: a new one is made at the next call.
                self.keep(None);
                Heard::Deaf
            }
            Ok(Err(err)) => {
                tracing::warn!(channel = self.channel, error = %err, "listener failed; reconnecting");
                self.keep(None);
                Heard::Deaf
            }
        }
    }

    /// Waits for a notification, at most `timeout`. A listener that was not listening yet (the
    /// first wait, or the first after its connection was lost) returns at once: what was
    /// notified before its LISTEN is lost to it, so the caller looks for work once more.
    pub async fn wait(&mut self, timeout: Duration, shutdown: &CancellationToken) -> Woke {
        let channel = self.channel;
        let sleep = tokio::time::sleep(timeout);
        tokio::pin!(sleep);
        let was_listening = self.listener.is_some();
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return Woke::Shutdown,
            listener = self.listener() => listener.is_some(),
        };
        if connected && !was_listening {
            return Woke::Notified;
        }
        let Some(listener) = self.listener.as_mut().filter(|_| connected) else {
            return tokio::select! {
                _ = shutdown.cancelled() => Woke::Shutdown,
                _ = &mut sleep => Woke::TimedOut,
            };
        };
        let woke = tokio::select! {
            _ = shutdown.cancelled() => Woke::Shutdown,
            _ = &mut sleep => Woke::TimedOut,
            received = listener.try_recv() => match received {
                Ok(Some(_)) => Woke::Notified,
                // The connection was lost: notifications may have been missed, so look for work
                // (a new connection is made at the next wait).
                Ok(None) => {
                    self.keep(None);
                    Woke::Notified
                }
                Err(err) => {
                    tracing::warn!(channel, error = %err, "listener failed; reconnecting");
                    self.keep(None);
                    Woke::Notified
                }
            },
        };
        if woke == Woke::Notified {
            // Several notifications often come together; take them all as one wake-up.
            if let Some(listener) = self.listener.as_mut() {
                while listener.next_buffered().is_some() {}
            }
        }
        woke
    }
}
