//! The delivery queue: jobs claimed by senders under a lease (each claim starts an attempt),
//! and the ends of attempts recorded in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use super::transition::{self, AttemptEnd};
use super::{
    AttemptStatus, Channel, CommunicationId, CommunicationStatus, CommunicationType, FailureClass,
    Ledger, LedgerError,
};

/// A delivery job claimed by a sender, with what it needs to render and send.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub communication_id: CommunicationId,
    pub tenant_id: String,
    pub attempt_no: i32,
    pub channel: Channel,
    pub communication_type: CommunicationType,
    pub recipient_address: Option<String>,
    pub address_masked: Option<String>,
    pub render_payload: Value,
    pub locale: Option<String>,
    pub template_family: String,
    pub template_version: String,
    pub correlation_id: String,
    pub business_key: Option<String>,
    pub attachments: Vec<crate::artifacts::AttachmentRef>,
    pub requested_at: DateTime<Utc>,
    /// The communication receivers know this one as: itself, or the original of a replay.
    pub origin_id: CommunicationId,
}

/// How an attempt ended, as the delivery engine decided (retry policy applied).
#[derive(Debug, Clone)]
pub enum AttemptResult {
    Sent {
        provider_message_id: Option<String>,
        response_code: Option<i32>,
        summary: String,
        content_hash: String,
        /// (artifact id, sha256 of the bytes sent) of each attachment.
        attachment_hashes: Vec<(String, String)>,
        /// The encrypted body, when the template's retention policy keeps it.
        retained: Option<crate::keyring::Sealed>,
    },
    Retry {
        failure_class: FailureClass,
        response_code: Option<i32>,
        summary: String,
        after: Duration,
    },
    Final {
        failure_class: FailureClass,
        failure_code: String,
        response_code: Option<i32>,
        summary: String,
    },
}

impl Ledger {
    /// Claims up to `limit` due delivery jobs for `worker`, each for `lease`; every claim starts
    /// a new attempt and moves its record to SENDING.
    pub async fn claim_jobs(
        &self,
        worker: &str,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, LedgerError> {
        // One statement, in its own transaction: an idle sender costs one query per round.
        let mut conn = self.pool.acquire().await?;
        let started =
            transition::start_attempts(&mut conn, worker, limit, lease.as_millis() as i64).await?;
        let mut jobs = Vec::with_capacity(started.len());
        let mut stuck = Vec::new();
        let mut corrupt = Vec::new();
        for job in started {
            let row = job.row;
            let id = CommunicationId(row.get("communication_id"));
            // One job that cannot start (a record in a state that cannot send, a corrupt
            // value) must not block the queue: it leaves the queue, loudly, the others go on.
            if !job.started {
                tracing::error!(communicationId = %id, "delivery job cannot start; taken out of the queue");
                stuck.push(id.0);
                continue;
            }
            // A channel or type this herald does not know (written by a newer version, or by
            // hand): the attempt has started, so it ends, and the communication fails for good.
            let known = row
                .try_get::<Channel, _>("channel")
                .map_err(|e| ("UNKNOWN_CHANNEL", e))
                .and_then(|channel| {
                    row.try_get::<CommunicationType, _>("communication_type")
                        .map(|kind| (channel, kind))
                        .map_err(|e| ("UNKNOWN_COMMUNICATION_TYPE", e))
                });
            let (channel, communication_type) = match known {
                Ok(known) => known,
                Err((code, err)) => {
                    let problem = match &err {
                        sqlx::Error::ColumnDecode { source, .. } => source.to_string(),
                        other => other.to_string(),
                    };
                    tracing::error!(communicationId = %id, code, %problem, "delivery job has a value herald does not know; the communication fails");
                    corrupt.push(AttemptEnd {
                        communication_id: id,
                        attempt_no: row.get("attempts"),
                        to: CommunicationStatus::FailedFinal,
                        attempt_status: AttemptStatus::FailedFinal,
                        failure_class: Some(FailureClass::Configuration),
                        failure_code: Some(code.into()),
                        failure_message: Some(format!(
                            "the record holds a value herald does not know: {problem}"
                        )),
                        provider_message_id: None,
                        response_code: None,
                        summary: problem,
                        content_hash: None,
                        retry_after: None,
                        keep_payload: false,
                    });
                    continue;
                }
            };
            jobs.push(ClaimedJob {
                communication_id: id,
                tenant_id: row.get("tenant_id"),
                attempt_no: row.get("attempts"),
                channel,
                communication_type,
                recipient_address: row.get("recipient_address"),
                address_masked: row.get("address_masked"),
                render_payload: row
                    .get::<Option<Value>, _>("render_payload")
                    .unwrap_or(Value::Null),
                locale: row.get("locale"),
                template_family: row.get("template_family"),
                template_version: row.get("template_version"),
                correlation_id: row.get("correlation_id"),
                business_key: row.get("business_key"),
                attachments: row
                    .get::<sqlx::types::Json<Vec<crate::artifacts::AttachmentRef>>, _>(
                        "attachments",
                    )
                    .0,
                requested_at: row.get("requested_at"),
                origin_id: CommunicationId(row.get("origin_id")),
            });
        }
        if !corrupt.is_empty() {
            let mut tx = self.pool.begin().await?;
            transition::end_attempts(&mut tx, worker, &corrupt).await?;
            tx.commit().await?;
        }
        if !stuck.is_empty() {
            sqlx::query(
                "UPDATE delivery_job SET done = true, locked_by = NULL, locked_until = NULL,
                     recipient_address = NULL, render_payload = NULL
                 WHERE communication_id = ANY($1)",
            )
            .bind(&stuck)
            .execute(&mut *conn)
            .await?;
        }
        Ok(jobs)
    }

    /// How long until the next job falls due (or its lease runs out), if there is one: the
    /// soonest of the first jobs by due time in each priority level. The levels are walked on
    /// the claim's index (priority, due_at), one probe per level: a sort of every open job
    /// would cost milliseconds on a long queue, at every empty claim.
    pub async fn next_due_in(&self) -> Result<Option<Duration>, LedgerError> {
        let seconds: Option<f64> = sqlx::query_scalar(
            "WITH RECURSIVE level(priority) AS (
                 (SELECT priority FROM delivery_job WHERE NOT done ORDER BY priority DESC LIMIT 1)
                 UNION ALL
                 SELECT (SELECT j.priority FROM delivery_job j
                         WHERE NOT j.done AND j.priority < level.priority
                         ORDER BY j.priority DESC LIMIT 1)
                 FROM level WHERE level.priority IS NOT NULL)
             SELECT EXTRACT(EPOCH FROM (MIN(GREATEST(s.due_at, COALESCE(s.locked_until, s.due_at))) - now()))::float8
             FROM level CROSS JOIN LATERAL (
                 SELECT j.due_at, j.locked_until FROM delivery_job j
                 WHERE NOT j.done AND j.priority = level.priority
                 ORDER BY j.priority DESC, j.due_at LIMIT 64) s
             WHERE level.priority IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0) + 0.005)))
    }

    /// Records how an attempt ended. Returns false (and changes nothing) when the sender's
    /// lease was lost to another sender in the meantime.
    pub async fn finish_attempt(
        &self,
        job: &ClaimedJob,
        worker: &str,
        result: AttemptResult,
    ) -> Result<bool, LedgerError> {
        Ok(self.finish_attempts(worker, &[(job, result)]).await?[0])
    }

    /// Records how many attempts ended, in one transaction (see
    /// [`transition::end_attempts`]): for each, false when the sender's lease was lost to
    /// another sender in the meantime (nothing is written for it).
    pub async fn finish_attempts(
        &self,
        worker: &str,
        finished: &[(&ClaimedJob, AttemptResult)],
    ) -> Result<Vec<bool>, LedgerError> {
        let ends: Vec<AttemptEnd> = finished
            .iter()
            .map(|(job, result)| attempt_end(job, result))
            .collect();
        let mut tx = self.pool.begin().await?;
        let ended = transition::end_attempts(&mut tx, worker, &ends).await?;
        let mut hashed = (Vec::new(), Vec::new(), Vec::new());
        // What a resend needs, kept sealed as the job erases it (nothing without a keyring).
        let mut kept = Vec::new();
        for (((job, result), end), outcome) in finished.iter().zip(&ends).zip(&ended) {
            if !outcome.fenced {
                continue;
            }
            if self.keyring.is_some()
                && super::resend::keeps_inputs(job, end.retry_after.is_some(), self.resend_window)
            {
                kept.push(*job);
            }
            if !outcome.moved {
                tracing::error!(communicationId = %job.communication_id,
                    "the attempt ended but the record was no longer SENDING; its status is kept");
            }
            let AttemptResult::Sent {
                retained,
                attachment_hashes,
                ..
            } = result
            else {
                continue;
            };
            if let Some(sealed) = retained {
                sqlx::query(
                    "INSERT INTO communication_content (communication_id, key_id, nonce, ciphertext) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (communication_id) DO UPDATE SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext",
                )
                .bind(job.communication_id.0)
                .bind(&sealed.key_id)
                .bind(&sealed.nonce)
                .bind(&sealed.ciphertext)
                .execute(&mut *tx)
                .await?;
            }
            for (artifact_id, hash) in attachment_hashes {
                hashed.0.push(job.communication_id.0);
                hashed.1.push(artifact_id.clone());
                hashed.2.push(hash.clone());
            }
        }
        if let Some(keyring) = &self.keyring {
            super::resend::keep_inputs(&mut tx, keyring, self.resend_window, &kept).await?;
        }
        if !hashed.0.is_empty() {
            sqlx::query(
                "UPDATE communication_artifact_link l SET sent_bytes_hash = h.hash
                 FROM unnest($1::uuid[], $2::text[], $3::text[]) AS h(communication_id, artifact_id, hash)
                 WHERE l.communication_id = h.communication_id AND l.artifact_id = h.artifact_id",
            )
            .bind(&hashed.0)
            .bind(&hashed.1)
            .bind(&hashed.2)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for (((job, _), end), ended) in finished.iter().zip(&ends).zip(&ended) {
            if !ended.fenced {
                continue;
            }
            crate::metrics::attempt_ended(
                job.channel.as_str(),
                end.attempt_status.as_str(),
                end.failure_class.map(|c| c.as_str()),
            );
            if end.to == CommunicationStatus::Sent {
                let since = (chrono::Utc::now() - job.requested_at)
                    .to_std()
                    .unwrap_or_default();
                crate::metrics::sent(job.channel.as_str(), since);
            }
        }
        Ok(ended.iter().map(|e| e.fenced).collect())
    }
}

/// The record's move, the attempt's outcome and the job's release for an ended attempt.
fn attempt_end(job: &ClaimedJob, result: &AttemptResult) -> AttemptEnd {
    let end = AttemptEnd {
        communication_id: job.communication_id,
        attempt_no: job.attempt_no,
        to: CommunicationStatus::Sent,
        attempt_status: AttemptStatus::Accepted,
        failure_class: None,
        failure_code: None,
        failure_message: None,
        provider_message_id: None,
        response_code: None,
        summary: String::new(),
        content_hash: None,
        retry_after: None,
        keep_payload: false,
    };
    match result {
        AttemptResult::Sent {
            provider_message_id,
            response_code,
            summary,
            content_hash,
            ..
        } => AttemptEnd {
            provider_message_id: provider_message_id.clone(),
            response_code: *response_code,
            summary: summary.clone(),
            content_hash: Some(content_hash.clone()),
            ..end
        },
        AttemptResult::Retry {
            failure_class,
            response_code,
            summary,
            after,
        } => AttemptEnd {
            to: CommunicationStatus::FailedRetryable,
            attempt_status: AttemptStatus::FailedRetryable,
            failure_class: Some(*failure_class),
            response_code: *response_code,
            summary: summary.clone(),
            retry_after: Some(*after),
            ..end
        },
        AttemptResult::Final {
            failure_class,
            failure_code,
            response_code,
            summary,
        } => AttemptEnd {
            to: CommunicationStatus::FailedFinal,
            attempt_status: AttemptStatus::FailedFinal,
            failure_class: Some(*failure_class),
            failure_code: Some(failure_code.clone()),
            failure_message: Some(summary.clone()),
            response_code: *response_code,
            summary: summary.clone(),
            // A webhook that failed for good keeps its payload: it is dead-lettered, and an
            // operator can replay it (POST /communications/{id}/replay).
            keep_payload: job.channel == Channel::Webhook,
            ..end
        },
    }
}

/// The provider name recorded on attempts.
pub fn provider_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "smtp",
        Channel::Webhook => "http",
        Channel::InApp => "inbox",
    }
}
