//! The delivery engine: claims due jobs from the durable queue, renders, sends through the
//! channel's adapter, and records each attempt with the retry policy applied.

pub mod adapter;
pub mod email;
pub mod endpoints;
pub mod failure;
pub mod inapp;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

use backon::{ExponentialBuilder, Retryable};

use crate::pause::Backoff;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::ledger::wakeup::Woke;
use crate::ledger::{AttemptResult, Channel, ClaimedJob, Ledger};
use crate::templates::TemplateRegistry;

use crate::artifacts::AttachmentRef;
pub use adapter::{ChannelAdapter, DeliveryOutcome, OutboundAttachment, OutboundMessage};
pub use failure::{FailureClass, RetryPolicy, RetrySchedule};
use sha2::Digest;

#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    pub worker_id: String,
    pub batch_size: i64,
    /// Attempts in flight at once.
    pub max_in_flight: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    /// Seals the bodies that templates ask to retain (and their inbox notifications).
    pub keyring: Option<crate::keyring::Keyring>,
}

pub struct DeliveryEngine {
    ledger: Ledger,
    templates: Arc<TemplateRegistry>,
    adapters: HashMap<Channel, Arc<dyn ChannelAdapter>>,
    options: DeliveryOptions,
}

impl DeliveryEngine {
    pub fn new(
        ledger: Ledger,
        templates: Arc<TemplateRegistry>,
        options: DeliveryOptions,
    ) -> DeliveryEngine {
        DeliveryEngine {
            ledger,
            templates,
            adapters: HashMap::new(),
            options,
        }
    }

    /// Registers the adapter of a channel (one line per channel at start-up).
    pub fn register(&mut self, adapter: Arc<dyn ChannelAdapter>) {
        self.adapters.insert(adapter.channel(), adapter);
    }

    /// Runs until `shutdown`; attempts in flight are finished first. Jobs are claimed as slots
    /// come free (at most `batch_size` per claim, `max_in_flight` at once): a slow job never
    /// holds back the next claim, and no claimed job waits inside herald while its lease runs.
    /// While busy, a claim waits for a quarter of the slots (or the batch) to be free, so that
    /// one statement claims many jobs; ended attempts are recorded together by one recorder.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut wakeup = self.ledger.wakeup("herald_delivery");
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let max = self.options.max_in_flight.max(1);
        let slots = Arc::new(tokio::sync::Semaphore::new(max));
        let claim_at = (max / 4).clamp(1, self.options.batch_size.max(1) as usize);
        let (ended, ended_rx) = tokio::sync::mpsc::unbounded_channel();
        let recorder = tokio::spawn(self.clone().record(ended_rx).with_current_subscriber());
        let sweeper = tokio::spawn(
            sweep_resend_inputs(self.ledger.clone(), shutdown.clone()).with_current_subscriber(),
        );
        let mut running = JoinSet::new();
        tracing::info!(worker_id = %self.options.worker_id, "delivery loop started");
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            // Slots are held from the claim until the attempt is recorded; the claim waits
            // until enough are free (only this loop takes them, so they stay free).
            if slots.available_permits() < claim_at {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    enough = slots.acquire_many(claim_at as u32) => drop(enough),
                }
            }
            let limit = self
                .options
                .batch_size
                .min(slots.available_permits() as i64);
            match self
                .ledger
                .claim_jobs(&self.options.worker_id, limit, self.options.lease)
                .await
            {
                Ok(jobs) if !jobs.is_empty() => {
                    backoff.reset();
                    for job in jobs {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            unreachable!("no more jobs are claimed than there are free slots")
                        };
                        let engine = self.clone();
                        let ended = ended.clone();
                        let span = tracing::info_span!(
                            "delivery",
                            communicationId = %job.communication_id,
                            correlationId = %job.correlation_id,
                            businessKey = job.business_key.as_deref().unwrap_or(""),
                            attempt = job.attempt_no,
                        );
                        running.spawn(
                            async move {
                                let result = engine.deliver(&job).await;
                                // The slot is freed once the attempt is recorded.
                                let _ = ended.send(Ended { job, result, slot });
                            }
                            .instrument(span)
                            .with_current_subscriber(),
                        );
                    }
                }
                Ok(_) => {
                    let wait = match self.ledger.next_due_in().await {
                        Ok(Some(due)) => due.min(self.options.poll_interval),
                        _ => self.options.poll_interval,
                    };
                    if wakeup.wait(wait, &shutdown).await == Woke::Shutdown {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.next_delay().as_millis() as u64, "claiming delivery jobs failed");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                }
            }
        }
        if !running.is_empty() {
            tracing::info!(
                in_flight = running.len(),
                "finishing the attempts in flight"
            );
        }
        while running.join_next().await.is_some() {}
        drop(ended);
        let _ = recorder.await;
        let _ = sweeper.await;
        tracing::info!("delivery loop stopped");
    }

    /// One delivery round, for tests and tools that want it step by step: claims up to a
    /// batch of due jobs, attempts each, and records them in one transaction. Returns how many
    /// were attempted (0: nothing was due).
    pub async fn deliver_due_once(&self) -> Result<usize, crate::ledger::LedgerError> {
        let jobs = self
            .ledger
            .claim_jobs(
                &self.options.worker_id,
                self.options.batch_size,
                self.options.lease,
            )
            .await?;
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            results.push((job, self.deliver(job).await));
        }
        self.ledger
            .finish_attempts(&self.options.worker_id, &results)
            .await?;
        Ok(jobs.len())
    }

    /// Records ended attempts, all those waiting in one transaction, until every sender of
    /// `ended` is gone.
    async fn record(self: Arc<Self>, mut ended: tokio::sync::mpsc::UnboundedReceiver<Ended>) {
        const MOST: usize = 256;
        let mut batch = Vec::with_capacity(MOST);
        while ended.recv_many(&mut batch, MOST).await > 0 {
            let results: Vec<(&ClaimedJob, AttemptResult)> =
                batch.iter().map(|e| (&e.job, e.result.clone())).collect();
            match self
                .ledger
                .finish_attempts(&self.options.worker_id, &results)
                .await
            {
                Ok(fenced) => {
                    for (ended, fenced) in batch.iter().zip(fenced) {
                        if !fenced {
                            lease_lost(&ended.job);
                        }
                    }
                }
                // One by one, each retried: a passing fault or one row that cannot be written
                // does not hold back the others.
                Err(err) => {
                    tracing::warn!(error = %err, attempts = batch.len(), "recording ended attempts together failed; recording them one by one");
                    let mut singles = JoinSet::new();
                    for ended in batch.drain(..) {
                        let engine = self.clone();
                        singles.spawn(
                            async move { engine.record_one(ended).await }.with_current_subscriber(),
                        );
                    }
                    while singles.join_next().await.is_some() {}
                }
            }
            batch.clear();
        }
    }

    async fn record_one(&self, ended: Ended) {
        let span = tracing::info_span!(
            "delivery",
            communicationId = %ended.job.communication_id,
            correlationId = %ended.job.correlation_id,
            attempt = ended.job.attempt_no,
        );
        // The provider has answered: recording it must not be lost to a passing database fault,
        // or the lease would expire and the message would go out again.
        let recorded = (|| {
            self.ledger
                .finish_attempt(&ended.job, &self.options.worker_id, ended.result.clone())
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_total_delay(Some(self.options.lease)),
        )
        .instrument(span.clone())
        .await;
        let _entered = span.enter();
        match recorded {
            Ok(true) => {}
            Ok(false) => lease_lost(&ended.job),
            Err(err) => {
                tracing::error!(error = %err, "could not record the attempt; the lease will expire")
            }
        }
    }

    /// Sends one claimed job and says how it went.
    async fn deliver(&self, job: &ClaimedJob) -> AttemptResult {
        let result = self.attempt(job).await;
        match &result {
            AttemptResult::Sent { .. } => {
                tracing::info!(to = job.address_masked.as_deref().unwrap_or("?"), "sent")
            }
            AttemptResult::Retry {
                failure_class,
                after,
                summary,
                ..
            } => {
                tracing::warn!(%failure_class, retry_in_ms = after.as_millis() as u64, %summary, "attempt failed; retry scheduled")
            }
            AttemptResult::Final {
                failure_class,
                summary,
                ..
            } => {
                tracing::error!(%failure_class, %summary, "attempt failed; communication failed for good")
            }
        }
        result
    }

    async fn attempt(&self, job: &ClaimedJob) -> AttemptResult {
        let final_config = |code: &str, summary: String| AttemptResult::Final {
            failure_class: FailureClass::Configuration,
            failure_code: code.into(),
            response_code: None,
            summary,
        };
        let Some(adapter) = self.adapters.get(&job.channel) else {
            return final_config(
                "CHANNEL_NOT_CONFIGURED",
                format!("no adapter for channel {}", job.channel),
            );
        };
        let Some(address) = job.recipient_address.clone() else {
            return final_config("NO_ADDRESS", "the delivery job has no address".into());
        };
        let template = match self
            .templates
            .for_delivery(&job.template_family, &job.template_version)
        {
            Ok(template) => template,
            Err(err @ crate::templates::TemplateError::Withdrawn { .. }) => {
                return final_config("TEMPLATE_WITHDRAWN", err.to_string())
            }
            Err(err) => return final_config("TEMPLATE_ERROR", err.to_string()),
        };
        let rendered = match self.templates.render(template, &job.render_payload) {
            Ok(rendered) => rendered,
            Err(err) => return final_config("TEMPLATE_ERROR", err.to_string()),
        };
        // A body the template says to keep is kept encrypted, or the message is not sent.
        let retained = if template.meta.retention == crate::content::ENCRYPTED_BODY {
            let Some(keyring) = &self.options.keyring else {
                return final_config(
                    "CONTENT_KEY_MISSING",
                    format!(
                        "{} keeps bodies encrypted: set HERALD_KEYS__ENCRYPTION",
                        template.id()
                    ),
                );
            };
            Some(
                crate::content::RetainedBody {
                    subject: rendered.subject.clone(),
                    text: rendered.text.clone(),
                    html: rendered.html.clone(),
                }
                .seal(keyring),
            )
        } else {
            None
        };
        let mut attachments = Vec::with_capacity(job.attachments.len());
        let mut attachment_hashes = Vec::with_capacity(job.attachments.len());
        for reference in &job.attachments {
            match read_attachment(reference).await {
                Ok((attachment, hash)) => {
                    attachment_hashes.push((reference.artifact_id.clone(), hash));
                    attachments.push(attachment);
                }
                Err(failure) => return self.failed(job, failure),
            }
        }
        let message = OutboundMessage {
            communication_id: job.communication_id,
            tenant_id: job.tenant_id.clone(),
            communication_type: job.communication_type,
            origin_id: job.origin_id,
            requested_at: job.requested_at,
            correlation_id: job.correlation_id.clone(),
            attempt_no: job.attempt_no,
            address,
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
            attachments,
            retained: retained.clone(),
        };
        // A send must end well inside the lease, or another sender could take the job over
        // while this one is still talking to the provider.
        let budget = self.options.lease.mul_f64(0.8);
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(budget, adapter.send(&message)).await;
        crate::metrics::attempt_took(job.channel.as_str(), started.elapsed());
        let outcome = match sent {
            Ok(outcome) => outcome,
            Err(_) => DeliveryOutcome::Failed {
                class: FailureClass::Timeout,
                response_code: None,
                summary: format!(
                    "no answer from the provider within {} ms",
                    budget.as_millis()
                ),
                retry_after: None,
            },
        };
        match outcome {
            DeliveryOutcome::Accepted {
                provider_message_id,
                response_code,
                summary,
            } => AttemptResult::Sent {
                provider_message_id,
                response_code,
                summary,
                content_hash: rendered.content_hash,
                attachment_hashes,
                retained,
            },
            failed @ DeliveryOutcome::Failed { .. } => self.failed(job, failed),
        }
    }

    /// Applies the retry schedule to a failed attempt.
    fn failed(&self, job: &ClaimedJob, outcome: DeliveryOutcome) -> AttemptResult {
        let DeliveryOutcome::Failed {
            class,
            response_code,
            summary,
            retry_after,
        } = outcome
        else {
            unreachable!("failed() is only called with DeliveryOutcome::Failed")
        };
        match self
            .options
            .retry
            .for_type(Some(job.communication_type))
            .next_delay(job.attempt_no, class, retry_after)
        {
            Some(after) => AttemptResult::Retry {
                failure_class: class,
                response_code,
                summary,
                after,
            },
            None => AttemptResult::Final {
                failure_class: class,
                failure_code: if class.is_retryable() {
                    "RETRIES_EXHAUSTED".into()
                } else {
                    class.as_str().into()
                },
                response_code,
                summary,
            },
        }
    }
}

/// How often each delivery loop deletes the resend inputs whose window has passed, and how
/// many rows one statement deletes at most.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
const SWEEP_BATCH: i64 = 1000;

/// Deletes expired resend inputs (`delivery.resend_window`), now and every [`SWEEP_EVERY`],
/// until `shutdown`; a failed round is tried again at the next.
async fn sweep_resend_inputs(ledger: Ledger, shutdown: CancellationToken) {
    loop {
        let mut purged = 0;
        loop {
            match ledger.purge_expired_resend_inputs(SWEEP_BATCH).await {
                Ok(n) => {
                    purged += n;
                    if n < SWEEP_BATCH as u64 || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "deleting expired resend inputs failed");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::debug!(purged, "expired resend inputs deleted");
        }
        if !crate::pause::sleep_or_shutdown(SWEEP_EVERY, &shutdown).await {
            return;
        }
    }
}

/// An attempt that ended, waiting to be recorded; its slot is freed with it.
struct Ended {
    job: ClaimedJob,
    result: AttemptResult,
    #[allow(dead_code)]
    slot: tokio::sync::OwnedSemaphorePermit,
}

fn lease_lost(job: &ClaimedJob) {
    tracing::warn!(communicationId = %job.communication_id, correlationId = %job.correlation_id,
        "lease lost before the attempt was recorded; another sender owns the job");
}

/// Reads a file to attach, within its size limit; returns it with the sha256 of its bytes.
async fn read_attachment(
    reference: &AttachmentRef,
) -> Result<(OutboundAttachment, String), DeliveryOutcome> {
    let path = reference
        .storage_location
        .strip_prefix("file://")
        .unwrap_or(&reference.storage_location);
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| DeliveryOutcome::Failed {
            // The document store may come back: retried on the schedule.
            class: FailureClass::ProviderUnavailable,
            response_code: None,
            summary: format!("artifact {} could not be read: {e}", reference.artifact_id),
            retry_after: None,
        })?;
    if bytes.len() as u64 > reference.max_bytes {
        return Err(DeliveryOutcome::Failed {
            class: FailureClass::PermanentRejection,
            response_code: None,
            summary: format!(
                "artifact {} has {} bytes, more than the {} an attachment may have",
                reference.artifact_id,
                bytes.len(),
                reference.max_bytes
            ),
            retry_after: None,
        });
    }
    let hash = hex::encode(sha2::Sha256::digest(&bytes));
    Ok((
        OutboundAttachment {
            file_name: reference.file_name.clone(),
            media_type: reference.media_type.clone(),
            bytes,
        },
        hash,
    ))
}
