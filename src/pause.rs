//! How herald's background loops wait (the workers' fetch loop, the delivery loop, the outbox,
//! correlation and fallout relays): after a failed round, a delay that doubles up to a cap
//! (backon's exponential schedule) and starts again after a round that worked; and every
//! sleep ends early at shutdown.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// The delays after failed rounds: `first`, then doubling up to `max`.
pub struct Backoff {
    schedule: ExponentialBuilder,
    delays: ExponentialBackoff,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        let schedule = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        let mut delays = schedule.build();
        let next = delays.next().unwrap_or(first);
        Backoff {
            schedule,
            delays,
            next,
        }
    }

    /// The delay the next failure waits.
    pub fn next_delay(&self) -> Duration {
        self.next
    }

    /// A round worked: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.delays = self.schedule.build();
        self.next = self.delays.next().unwrap_or(self.next);
    }

    /// A round failed: waits the current delay (the next one is longer). False when shutdown
    /// came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = self.delays.next().unwrap_or(delay);
        sleep_or_shutdown(delay, shutdown).await
    }
}

/// Sleeps `delay`, or until shutdown: false when shutdown came first.
pub async fn sleep_or_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_double_up_to_the_cap_and_start_again_after_a_good_round() {
        let shutdown = CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let mut waited = Vec::new();
        for _ in 0..5 {
            waited.push(backoff.next_delay());
            assert!(backoff.wait(&shutdown).await);
        }
        let ms = |v: u64| Duration::from_millis(v);
        assert_eq!(waited, [ms(250), ms(500), ms(1000), ms(1000), ms(1000)]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(250));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_wait() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!backoff.wait(&shutdown).await);
        assert!(!sleep_or_shutdown(Duration::from_secs(60), &shutdown).await);
    }
}
