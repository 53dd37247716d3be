//! The outbox relay: publishes each outbox event once and correlates outcomes into the
//! waiting Camunda process instances, retrying until the process is ready or a deadline passes.

mod correlate;

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::camunda::CamundaClient;
use crate::ledger::wakeup::Woke;
use crate::ledger::{CorrelationJob, Ledger};
use crate::pause::{sleep_or_shutdown, Backoff};
use correlate::{Correlator, Outcome};

#[derive(Debug, Clone)]
pub struct RelayOptions {
    pub batch_size: i64,
    pub poll_interval: Duration,
    /// After a wake-up, the outbox relay waits this long for more events before reading.
    pub gather: Duration,
    /// First wait after a failed correlation; doubles per try up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// The relays' wait after a failed round: 250 ms, doubling up to 10 s.
fn loop_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(250), Duration::from_secs(10))
}

/// Moves outbox events to their subscribers until `shutdown`.
pub async fn run_outbox(ledger: Ledger, options: RelayOptions, shutdown: CancellationToken) {
    let mut wakeup = ledger.wakeup("herald_outbox");
    let mut backoff = loop_backoff();
    tracing::info!("outbox relay started");
    while !shutdown.is_cancelled() {
        match ledger.relay_outbox(options.batch_size).await {
            Ok(n) if n > 0 => backoff.reset(),
            Ok(_) => match wakeup.wait(options.poll_interval, &shutdown).await {
                Woke::Shutdown => break,
                // Let more events gather after a wake-up: one round for many commits.
                Woke::Notified
                    if !options.gather.is_zero()
                        && !sleep_or_shutdown(options.gather, &shutdown).await =>
                {
                    break
                }
                _ => {}
            },
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay failed; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!("outbox relay stopped");
}

/// Correlates CommunicationSent / CommunicationFailed into the waiting instances until
/// `shutdown`; `waiting_topics` are the topics whose processes wait for their outcome.
pub async fn run_correlations(
    ledger: Ledger,
    camunda: CamundaClient,
    waiting_topics: HashSet<String>,
    options: RelayOptions,
    shutdown: CancellationToken,
) {
    let correlator = Correlator::new(camunda, waiting_topics);
    let mut wakeup = ledger.wakeup("herald_correlation");
    let mut backoff = loop_backoff();
    tracing::info!("correlation relay started");
    while !shutdown.is_cancelled() {
        match ledger
            .claim_correlations(options.batch_size, Duration::from_secs(60))
            .await
        {
            Ok(jobs) if !jobs.is_empty() => {
                backoff.reset();
                for job in jobs {
                    if shutdown.is_cancelled() {
                        // The rest of the batch is claimed: its lease runs out and another
                        // relay (or this one, restarted) takes it.
                        break;
                    }
                    correlate(&ledger, &correlator, &options, &job).await;
                }
            }
            Ok(_) => {
                let wait = match ledger.next_correlation_in().await {
                    Ok(Some(due)) => due.min(options.poll_interval),
                    _ => options.poll_interval,
                };
                if wakeup.wait(wait, &shutdown).await == Woke::Shutdown {
                    break;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "claiming correlations failed; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!("correlation relay stopped");
}

/// The wait before try `tries + 1`.
pub fn correlation_backoff(options: &RelayOptions, tries: i32) -> Duration {
    let factor = 2u32.saturating_pow((tries - 1).clamp(0, 20) as u32);
    options
        .min_backoff
        .saturating_mul(factor)
        .min(options.max_backoff)
}

async fn correlate(
    ledger: &Ledger,
    correlator: &Correlator,
    options: &RelayOptions,
    job: &CorrelationJob,
) {
    let span = tracing::info_span!(
        "correlation",
        communicationId = %job.communication_id,
        processInstanceId = %job.process_instance_id,
        message = %job.message_name,
        tries = job.tries,
    );
    let _entered = span.enter();
    let (error, give_up_at_deadline) = match correlator.correlate(job).await {
        Outcome::Correlated => {
            tracing::info!("message correlated");
            if let Err(err) = ledger.correlation_done(job).await {
                tracing::warn!(error = %err, "correlated, but could not record it; it will be tried again");
            }
            return;
        }
        Outcome::Unwaited(reason) => {
            tracing::info!(%reason, "nobody waits for the message any more; recorded as UNWAITED, not retried");
            if let Err(err) = ledger.correlation_unwaited(job, &reason).await {
                tracing::warn!(error = %err, "could not record the correlation as unwaited; its lease will expire");
            }
            return;
        }
        Outcome::NotYet(reason) => (reason, true),
        Outcome::Failed {
            error,
            give_up_at_deadline,
        } => (error, give_up_at_deadline),
    };
    let after = correlation_backoff(options, job.tries);
    match ledger
        .correlation_retry(job, &error, after, give_up_at_deadline)
        .await
    {
        Ok(true) => {
            tracing::error!(%error, "correlation given up after its deadline; recorded as FAILED")
        }
        Ok(false) => {
            tracing::debug!(%error, retry_in_ms = after.as_millis() as u64, "correlation retried later")
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not record the correlation try; its lease will expire")
        }
    }
}

/// Turns fallout signals into alerts through the rule set (`CommunicationFallout` events),
/// until `shutdown`. Each signal is applied once: its event id is the failed communication's.
pub async fn run_fallout(
    intake: crate::intake::Intake,
    rules: std::sync::Arc<crate::policy::rules::RuleSet>,
    options: RelayOptions,
    shutdown: CancellationToken,
) {
    use crate::intake::events::{ingest, EventError};
    let ledger = intake.ledger.clone();
    let mut wakeup = ledger.wakeup("herald_fallout");
    let mut backoff = loop_backoff();
    tracing::info!("fallout loop started");
    while !shutdown.is_cancelled() {
        let signals = match ledger.claim_fallout(options.batch_size.min(20)).await {
            Ok(signals) => signals,
            Err(err) => {
                tracing::warn!(error = %err, "claiming fallout signals failed; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        if signals.is_empty() {
            if wakeup.wait(options.poll_interval, &shutdown).await == Woke::Shutdown {
                break;
            }
            continue;
        }
        for signal in signals {
            let id = signal.communication_id;
            let recorded = match ingest(&intake, &rules, &signal.event).await {
                Ok(outcome) => {
                    if outcome.communication_ids.is_empty() {
                        tracing::warn!(communicationId = %id, "fallout: no rule handles CommunicationFallout; nobody was alerted");
                    } else {
                        tracing::warn!(communicationId = %id, alerts = outcome.communication_ids.len(), "fallout raised");
                    }
                    ledger.fallout_raised(id, &outcome.communication_ids).await
                }
                Err(EventError::Unavailable(message)) => {
                    let wait = options
                        .min_backoff
                        .saturating_mul(1 << signal.tries.clamp(0, 10))
                        .min(options.max_backoff);
                    tracing::warn!(communicationId = %id, error = %message, retry_in_ms = wait.as_millis() as u64, "fallout could not be raised yet");
                    ledger.fallout_failed(id, &message, wait, false).await
                }
                Err(err @ (EventError::Rule(_) | EventError::Invalid(_))) => {
                    tracing::error!(communicationId = %id, error = %err, "fallout cannot be raised: fix the CommunicationFallout rule");
                    ledger
                        .fallout_failed(id, &err.to_string(), Duration::ZERO, true)
                        .await
                }
            };
            if let Err(err) = recorded {
                tracing::warn!(communicationId = %id, error = %err, "fallout outcome not recorded; it is tried again");
            }
        }
    }
    tracing::info!("fallout loop stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_backoff_doubles_up_to_a_cap() {
        let options = RelayOptions {
            batch_size: 10,
            poll_interval: Duration::from_secs(5),
            gather: Duration::ZERO,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        };
        assert_eq!(correlation_backoff(&options, 1), Duration::from_millis(200));
        assert_eq!(correlation_backoff(&options, 2), Duration::from_millis(400));
        assert_eq!(
            correlation_backoff(&options, 4),
            Duration::from_millis(1600)
        );
        assert_eq!(correlation_backoff(&options, 40), Duration::from_secs(30));
    }
}
