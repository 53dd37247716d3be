//! The ledger: the only writer of communication records, delivery attempts, the outbox, the
//! delivery queue and the correlations back into Camunda.

pub mod channels;
pub mod digest;
pub mod fallout;
pub mod model;
pub mod transition;
pub mod wakeup;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

pub use model::*;
pub use transition::{transition, AttemptEnd, StatusChange};

/// What the outbox relay does with an event: the message to correlate into the waiting
/// process (if one waits), and whether it raises fallout. An event type for which this does
/// something must be in [`transition::RELAYED_EVENTS`]; the others are written already
/// published, since no relay subscriber would act on them.
pub fn relay_action(event_type: &str) -> (Option<&'static str>, bool) {
    match event_type {
        "CommunicationSent" => (Some(Outcome::Sent.message_name()), false),
        "CommunicationFailed" => (Some(Outcome::Failed.message_name()), true),
        "CommunicationSuppressed" => (Some(Outcome::Failed.message_name()), false),
        "CommunicationBounced" => (None, true),
        _ => (None, false),
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("communication {0} not found")]
    NotFound(CommunicationId),
    #[error("communication {id} cannot move from {from} to {to}")]
    IllegalTransition {
        id: CommunicationId,
        from: CommunicationStatus,
        to: CommunicationStatus,
    },
    #[error("corrupt ledger value: {0}")]
    Corrupt(#[from] UnknownValue),
}

/// Connects a pool (lazily: the first query connects, so a database outage at start-up is a
/// retryable condition, not a crash).
pub fn connect_lazy(database_url: &str, max_connections: u32) -> Result<PgPool, LedgerError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each use: it would double the round trips of every operation and the
        // queries of an idle fleet. A connection that broke fails its next query, and every
        // caller retries (the pool then opens a fresh one).
        .test_before_acquire(false)
        .connect_lazy(database_url)?)
}

/// What the ledger decided before any provider is involved.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Queue for delivery.
    Queue,
    /// Policy said no (opted out, inactive recipient, …): a business status, no attempt.
    Suppress { code: String, message: String },
    /// Cannot be delivered at all (no recipient, invalid address, …): a business status.
    Fail { code: String, message: String },
}

/// The recipient as resolved by policy. The address is kept only on the delivery job.
#[derive(Debug, Clone)]
pub struct ResolvedRecipient {
    pub recipient_type: RecipientType,
    pub recipient_ref: String,
    pub channel: Channel,
    pub address: Option<String>,
    pub locale: Option<String>,
    /// The recipient's time zone (IANA name) and quiet hours, when known.
    pub timezone: Option<String>,
    pub quiet_hours: Option<(chrono::NaiveTime, chrono::NaiveTime)>,
}

/// The process instance that asked for the communication and waits for its outcome.
#[derive(Debug, Clone)]
pub struct ProcessOrigin {
    pub process_instance_id: String,
    pub business_key: Option<String>,
    pub activity_id: Option<String>,
    pub topic: String,
    pub task_id: String,
    /// Whether the process waits for CommunicationSent/CommunicationFailed.
    pub waits_for_outcome: bool,
}

/// A request for one communication.
#[derive(Debug, Clone)]
pub struct NewCommunication {
    pub tenant_id: String,
    pub communication_type: CommunicationType,
    pub category: MessageCategory,
    pub subject_type: String,
    pub subject_id: String,
    pub quote_id: Option<String>,
    pub order_id: Option<String>,
    pub recipient: ResolvedRecipient,
    pub address_hash: Option<String>,
    pub address_masked: Option<String>,
    pub template_family: String,
    pub template_version: String,
    pub idempotency_key: String,
    pub requested_by: String,
    pub correlation_id: String,
    pub origin: Option<ProcessOrigin>,
    pub artifacts: Vec<(String, String)>,
    pub render_payload: Value,
    pub admission: Admission,
    /// The user task the communication is about (reminders, escalations).
    pub about_task_id: Option<String>,
    /// Not to be delivered before this time (quiet hours, rate limits).
    pub not_before: Option<DateTime<Utc>>,
    /// The policy decisions taken for this recipient, stored with the record.
    pub decisions: Vec<crate::policy::preferences::Decision>,
    /// Files to attach when the message is sent.
    pub attachments: Vec<crate::artifacts::AttachmentRef>,
    /// The rule that asked for it, with its version: `topic:send-proposal:v1`, `rule:…:v2`.
    pub rule_ref: String,
    /// Delivery priority (higher first).
    pub priority: i32,
    /// A replay or resend: the original communication (receivers see its id).
    pub resend_of: Option<CommunicationId>,
    /// Alerts aggregated by root cause: the group this one belongs to.
    pub group_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestOutcome {
    pub communication_id: CommunicationId,
    pub status: CommunicationStatus,
    /// false when the idempotency key named an existing communication.
    pub created: bool,
}

/// A delivery job claimed by a sender, with what it needs to render and send.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub communication_id: CommunicationId,
    pub tenant_id: String,
    pub attempt_no: i32,
    pub channel: Channel,
    pub communication_type: String,
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
        retained: Option<crate::content::Sealed>,
    },
    Retry {
        failure_class: String,
        response_code: Option<i32>,
        summary: String,
        after: Duration,
    },
    Final {
        failure_class: String,
        failure_code: String,
        response_code: Option<i32>,
        summary: String,
    },
}

/// A message to correlate into Camunda.
#[derive(Debug, Clone)]
pub struct CorrelationJob {
    pub row_id: Uuid,
    pub communication_id: CommunicationId,
    pub process_instance_id: String,
    pub message_name: String,
    pub tenant_id: String,
    pub tries: i32,
    pub deadline_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationView {
    pub communication_id: CommunicationId,
    pub tenant_id: String,
    pub communication_type: String,
    pub status: String,
    pub idempotency_key: String,
    pub recipient_type: String,
    pub recipient_ref: String,
    pub address_masked: Option<String>,
    pub channel: String,
    pub template_family: String,
    pub template_version: String,
    pub rendered_content_hash: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub correlation_id: String,
    pub business_key: Option<String>,
    pub process_instance_id: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt_no: i32,
    pub status: String,
    pub failure_class: Option<String>,
    pub provider_message_id: Option<String>,
    pub response_code: Option<i32>,
    pub response_summary: Option<String>,
    pub attempted_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
    correlation_deadline: Duration,
}

impl Ledger {
    pub fn new(pool: PgPool, correlation_deadline: Duration) -> Ledger {
        Ledger {
            pool,
            correlation_deadline,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), LedgerError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Records a communication, or finds the one its idempotency key names; in one
    /// transaction with its outbox events, its delivery job and the waiting process.
    pub async fn request(&self, new: &NewCommunication) -> Result<RequestOutcome, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let outcome = match insert_record(&mut tx, new, None, false).await? {
            Some(id) => RequestOutcome {
                communication_id: id,
                status: admit(&mut tx, id, new).await?,
                created: true,
            },
            None => existing(&mut tx, new).await?,
        };
        if let Some(origin) = new.origin.as_ref().filter(|o| o.waits_for_outcome) {
            self.register_waiter(&mut tx, outcome.communication_id, origin)
                .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Records a parent communication (the id the process gets) with one child per recipient,
    /// or finds the parent its idempotency key names. The parent's outcome follows its
    /// children's; a parent without children fails with NO_RECIPIENT.
    pub async fn request_fanout(
        &self,
        parent: &NewCommunication,
        children: &[NewCommunication],
    ) -> Result<RequestOutcome, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let outcome = match insert_record(&mut tx, parent, None, true).await? {
            Some(parent_id) => {
                transition::record_requested(&mut tx, parent_id).await?;
                let mut created = 0;
                let mut queued = false;
                for child in children {
                    if let Some(child_id) =
                        insert_record(&mut tx, child, Some(parent_id), false).await?
                    {
                        created += 1;
                        queued |=
                            admit(&mut tx, child_id, child).await? == CommunicationStatus::Queued;
                    }
                }
                let status = if queued {
                    transition(
                        &mut tx,
                        parent_id,
                        CommunicationStatus::Queued,
                        StatusChange::default(),
                    )
                    .await?;
                    CommunicationStatus::Queued
                } else if created == 0 {
                    let (code, message) = match &parent.admission {
                        Admission::Fail { code, message }
                        | Admission::Suppress { code, message } => (code.clone(), message.clone()),
                        Admission::Queue => (
                            "NO_RECIPIENT".to_string(),
                            "no recipient was found".to_string(),
                        ),
                    };
                    let change = StatusChange {
                        failure_code: Some(code),
                        failure_message: Some(message),
                        ..StatusChange::default()
                    };
                    let to = if matches!(parent.admission, Admission::Suppress { .. }) {
                        CommunicationStatus::Suppressed
                    } else {
                        CommunicationStatus::FailedFinal
                    };
                    transition(&mut tx, parent_id, to, change).await?;
                    to
                } else {
                    transition::settle_parent(&mut tx, parent_id).await?;
                    current_status(&mut tx, parent_id).await?
                };
                RequestOutcome {
                    communication_id: parent_id,
                    status,
                    created: true,
                }
            }
            None => existing(&mut tx, parent).await?,
        };
        if let Some(origin) = parent.origin.as_ref().filter(|o| o.waits_for_outcome) {
            self.register_waiter(&mut tx, outcome.communication_id, origin)
                .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Whether the recipient got a communication of this type about this subject within the
    /// window (not counting failed or suppressed ones, nor the one with `exclude_key`).
    pub async fn recent_duplicate(
        &self,
        tenant_id: &str,
        recipient_ref: &str,
        kind: CommunicationType,
        subject_id: &str,
        exclude_key: &str,
        window: Duration,
    ) -> Result<bool, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM communication_record
                 WHERE tenant_id = $1 AND recipient_ref = $2 AND communication_type = $3 AND subject_id = $4
                   AND idempotency_key <> $5 AND status NOT IN ('FAILED_FINAL', 'SUPPRESSED') AND NOT is_parent
                   AND requested_at > now() - make_interval(secs => $6::double precision))",
        )
        .bind(tenant_id)
        .bind(recipient_ref)
        .bind(kind.as_str())
        .bind(subject_id)
        .bind(exclude_key)
        .bind(window.as_secs_f64())
        .fetch_one(&self.pool)
        .await?)
    }

    /// When the recipient's communications on `channel` (of `kind`, or all) went or will go,
    /// newest first,
    /// within `window` of now or later: what a rate limit counts. Failed and suppressed ones
    /// do not count, nor the one with `exclude_key`.
    pub async fn scheduled_for(
        &self,
        tenant_id: &str,
        recipient: &ResolvedRecipient,
        kind: Option<CommunicationType>,
        exclude_key: &str,
        window: Duration,
        limit: u32,
    ) -> Result<Vec<DateTime<Utc>>, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(j.due_at, r.requested_at) AS at
             FROM communication_record r LEFT JOIN delivery_job j USING (communication_id)
             WHERE r.tenant_id = $1 AND r.recipient_ref = $2 AND ($3::text IS NULL OR r.communication_type = $3)
               AND r.channel = $7
               AND r.idempotency_key <> $4 AND r.status NOT IN ('FAILED_FINAL', 'SUPPRESSED') AND NOT r.is_parent
               AND COALESCE(j.due_at, r.requested_at) > now() - make_interval(secs => $5::double precision)
             ORDER BY at DESC LIMIT $6",
        )
        .bind(tenant_id)
        .bind(&recipient.recipient_ref)
        .bind(kind.map(|k| k.as_str()))
        .bind(exclude_key)
        .bind(window.as_secs_f64())
        .bind(i64::from(limit))
        .bind(recipient.channel.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether a communication of this rule and group already went (or goes) to the recipient
    /// on its own since `since` (digest records and collected items do not count).
    pub async fn group_seen_since(
        &self,
        tenant_id: &str,
        recipient_ref: &str,
        rule_ref: &str,
        group_key: &str,
        since: DateTime<Utc>,
        exclude_key: &str,
    ) -> Result<bool, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM communication_record
                 WHERE tenant_id = $1 AND recipient_ref = $2 AND rule_ref = $3 AND group_key = $4
                   AND requested_at >= $5 AND subject_type <> 'DIGEST' AND status NOT IN ('SUPPRESSED', 'FAILED_FINAL')
                   AND idempotency_key <> $6)",
        )
        .bind(tenant_id)
        .bind(recipient_ref)
        .bind(rule_ref)
        .bind(group_key)
        .bind(since)
        .bind(exclude_key)
        .fetch_one(&self.pool)
        .await?)
    }

    /// How many parent communications already exist about a user task (reminder ordinals).
    pub async fn count_about_task(&self, topic: &str, task_id: &str) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM communication_record WHERE about_task_id = $1 AND topic = $2 AND parent_id IS NULL",
        )
        .bind(task_id)
        .bind(topic)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The children of a parent communication.
    pub async fn children(
        &self,
        parent: CommunicationId,
    ) -> Result<Vec<CommunicationView>, LedgerError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT communication_id FROM communication_record WHERE parent_id = $1 ORDER BY recipient_ref",
        )
        .bind(parent.0)
        .fetch_all(&self.pool)
        .await?;
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(view) = self.get(CommunicationId(id)).await? {
                views.push(view);
            }
        }
        Ok(views)
    }

    /// Adds a process instance to those waiting for the communication's outcome; when the
    /// outcome is already known, its correlation is scheduled at once.
    async fn register_waiter(
        &self,
        conn: &mut PgConnection,
        id: CommunicationId,
        origin: &ProcessOrigin,
    ) -> Result<(), LedgerError> {
        let row = sqlx::query("SELECT status, tenant_id FROM communication_record WHERE communication_id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_one(&mut *conn)
            .await?;
        let status: CommunicationStatus = row.get::<String, _>("status").parse()?;
        let tenant_id: String = row.get("tenant_id");
        sqlx::query(
            "INSERT INTO communication_waiter (communication_id, process_instance_id, business_key, task_id, tenant_id)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(id.0)
        .bind(&origin.process_instance_id)
        .bind(&origin.business_key)
        .bind(&origin.task_id)
        .bind(&tenant_id)
        .execute(&mut *conn)
        .await?;
        if let Some(outcome) = status.outcome() {
            self.schedule_correlation(
                conn,
                id,
                &origin.process_instance_id,
                &origin.task_id,
                outcome.message_name(),
                &tenant_id,
            )
            .await?;
        }
        Ok(())
    }

    /// When a correlation scheduled now is given up.
    fn correlation_deadline_from_now(&self) -> DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.correlation_deadline)
                .unwrap_or(chrono::Duration::hours(1))
    }

    async fn schedule_correlation(
        &self,
        conn: &mut PgConnection,
        id: CommunicationId,
        process_instance_id: &str,
        task_id: &str,
        message_name: &str,
        tenant_id: &str,
    ) -> Result<(), LedgerError> {
        let deadline = self.correlation_deadline_from_now();
        sqlx::query(
            "INSERT INTO camunda_correlation (correlation_row_id, communication_id, process_instance_id, task_id, message_name, tenant_id, deadline_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(id.0)
        .bind(process_instance_id)
        .bind(task_id)
        .bind(message_name)
        .bind(tenant_id)
        .bind(deadline)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

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
            let channel: String = row.get::<Option<String>, _>("channel").unwrap_or_default();
            let Ok(channel) = channel.parse::<Channel>() else {
                // The attempt has started: it ends, and the communication fails for good.
                tracing::error!(communicationId = %id, channel, "delivery job has an unknown channel; the communication fails");
                corrupt.push(AttemptEnd {
                    communication_id: id,
                    attempt_no: row.get("attempts"),
                    to: CommunicationStatus::FailedFinal,
                    attempt_status: AttemptStatus::FailedFinal,
                    failure_class: Some("CONFIGURATION".into()),
                    failure_code: Some("UNKNOWN_CHANNEL".into()),
                    failure_message: Some(format!(
                        "the record's channel {channel:?} is not one herald knows"
                    )),
                    provider_message_id: None,
                    response_code: None,
                    summary: format!("unknown channel {channel:?}"),
                    content_hash: None,
                    retry_after: None,
                    keep_payload: false,
                });
                continue;
            };
            jobs.push(ClaimedJob {
                communication_id: id,
                tenant_id: row.get("tenant_id"),
                attempt_no: row.get("attempts"),
                channel,
                communication_type: row.get("communication_type"),
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
        for ((job, result), end) in finished.iter().zip(&ended) {
            if !end.fenced {
                continue;
            }
            if !end.moved {
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
                    "INSERT INTO communication_content (communication_id, nonce, ciphertext) VALUES ($1, $2, $3)
                     ON CONFLICT (communication_id) DO UPDATE SET nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext",
                )
                .bind(job.communication_id.0)
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
        Ok(ended.iter().map(|e| e.fenced).collect())
    }

    /// Publishes up to `limit` pending outbox events. Today's subscribers are Camunda (an
    /// outcome event schedules one correlation per waiting process instance) and fallout; the
    /// events neither acts on are written already published (see [`relay_action`]).
    pub async fn relay_outbox(&self, limit: i64) -> Result<usize, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT outbox_id, aggregate_id, event_type, tenant_id FROM communication_outbox
             WHERE status = 'PENDING' ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut published = Vec::with_capacity(rows.len());
        let mut outcomes = (Vec::new(), Vec::new());
        for row in &rows {
            let outbox_id: Uuid = row.get("outbox_id");
            let id = CommunicationId(row.get("aggregate_id"));
            let event_type: String = row.get("event_type");
            let (message_name, fallout) = relay_action(&event_type);
            if let Some(message_name) = message_name {
                outcomes.0.push(id.0);
                outcomes.1.push(message_name);
            }
            if fallout {
                self.raise_fallout(&mut tx, id).await?;
            }
            tracing::debug!(communicationId = %id, event_type, "outbox event published");
            published.push(outbox_id);
        }
        // One correlation per waiting process instance, for all outcomes of the batch. No lock
        // on the records is needed: register_waiter locks the record, and the status change
        // that wrote the event updated it, so a waiter either committed before that change
        // (and is seen here) or read the outcome itself and scheduled its correlation.
        if !outcomes.0.is_empty() {
            sqlx::query(
                "INSERT INTO camunda_correlation (correlation_row_id, communication_id, process_instance_id, task_id,
                     message_name, tenant_id, deadline_at)
                 SELECT gen_random_uuid(), w.communication_id, w.process_instance_id, w.task_id, o.message_name,
                     w.tenant_id, $3
                 FROM communication_waiter w
                 JOIN unnest($1::uuid[], $2::text[]) AS o(communication_id, message_name) USING (communication_id)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&outcomes.0)
            .bind(&outcomes.1)
            .bind(self.correlation_deadline_from_now())
            .execute(&mut *tx)
            .await?;
        }
        if !published.is_empty() {
            sqlx::query("UPDATE communication_outbox SET status = 'PUBLISHED', published_at = now() WHERE outbox_id = ANY($1)")
                .bind(&published)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(published.len())
    }

    /// Claims due correlations for `lease`.
    pub async fn claim_correlations(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<CorrelationJob>, LedgerError> {
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT correlation_row_id FROM camunda_correlation
                 WHERE status = 'PENDING' AND next_try_at <= now() AND (locked_until IS NULL OR locked_until < now())
                 ORDER BY next_try_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             UPDATE camunda_correlation c SET locked_until = now() + make_interval(secs => $2::double precision / 1000),
                 tries = c.tries + 1
             FROM due WHERE c.correlation_row_id = due.correlation_row_id
             RETURNING c.correlation_row_id, c.communication_id, c.process_instance_id, c.message_name, c.tenant_id,
                       c.tries, c.deadline_at",
        )
        .bind(limit)
        .bind(lease.as_millis() as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| CorrelationJob {
                row_id: row.get("correlation_row_id"),
                communication_id: CommunicationId(row.get("communication_id")),
                process_instance_id: row.get("process_instance_id"),
                message_name: row.get("message_name"),
                tenant_id: row.get("tenant_id"),
                tries: row.get("tries"),
                deadline_at: row.get("deadline_at"),
            })
            .collect())
    }

    /// How long until the next pending correlation is due, if there is one.
    pub async fn next_correlation_in(&self) -> Result<Option<Duration>, LedgerError> {
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM (MIN(GREATEST(next_try_at, COALESCE(locked_until, next_try_at))) - now()))::float8
             FROM (SELECT next_try_at, locked_until FROM camunda_correlation WHERE status = 'PENDING'
                   ORDER BY next_try_at LIMIT 64) soonest",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0) + 0.005)))
    }

    pub async fn correlation_done(&self, job: &CorrelationJob) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE camunda_correlation SET status = 'CORRELATED', correlated_at = now(), locked_until = NULL, last_error = NULL
             WHERE correlation_row_id = $1 AND status = 'PENDING' AND tries = $2",
        )
        .bind(job.row_id)
        .bind(job.tries)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Schedules the next try, or records the correlation as failed once past its deadline
    /// (when `give_up_at_deadline`). Returns true when it was given up.
    pub async fn correlation_retry(
        &self,
        job: &CorrelationJob,
        error: &str,
        after: Duration,
        give_up_at_deadline: bool,
    ) -> Result<bool, LedgerError> {
        let next =
            Utc::now() + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::seconds(60));
        let give_up = give_up_at_deadline && next > job.deadline_at;
        sqlx::query(
            "UPDATE camunda_correlation SET status = $2, next_try_at = $3, locked_until = NULL, last_error = $4
             WHERE correlation_row_id = $1 AND status = 'PENDING' AND tries = $5",
        )
        .bind(job.row_id)
        .bind(if give_up { "FAILED" } else { "PENDING" })
        .bind(next)
        .bind(error)
        .bind(job.tries)
        .execute(&self.pool)
        .await?;
        Ok(give_up)
    }

    /// A communication with its attempts (for history, the API and tests).
    pub async fn get(&self, id: CommunicationId) -> Result<Option<CommunicationView>, LedgerError> {
        let Some(row) =
            sqlx::query("SELECT * FROM communication_record WHERE communication_id = $1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT attempt_no, status, failure_class, provider_message_id, response_code, response_summary, attempted_at, completed_at
             FROM communication_delivery_attempt WHERE communication_id = $1 ORDER BY attempt_no",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|a| AttemptView {
            attempt_no: a.get("attempt_no"),
            status: a.get("status"),
            failure_class: a.get("failure_class"),
            provider_message_id: a.get("provider_message_id"),
            response_code: a.get("response_code"),
            response_summary: a.get("response_summary"),
            attempted_at: a.get("attempted_at"),
            completed_at: a.get("completed_at"),
        })
        .collect();
        Ok(Some(CommunicationView {
            communication_id: id,
            tenant_id: row.get("tenant_id"),
            communication_type: row.get("communication_type"),
            status: row.get("status"),
            idempotency_key: row.get("idempotency_key"),
            recipient_type: row.get("recipient_type"),
            recipient_ref: row.get("recipient_ref"),
            address_masked: row.get("address_masked"),
            channel: row.get("channel"),
            template_family: row.get("template_family"),
            template_version: row.get("template_version"),
            rendered_content_hash: row.get("rendered_content_hash"),
            failure_code: row.get("failure_code"),
            failure_message: row.get("failure_message"),
            correlation_id: row.get("correlation_id"),
            business_key: row.get("business_key"),
            process_instance_id: row.get("process_instance_id"),
            requested_at: row.get("requested_at"),
            sent_at: row.get("sent_at"),
            attempts,
        }))
    }
}

/// Inserts a record as REQUESTED; None when its idempotency key exists already.
async fn insert_record(
    conn: &mut PgConnection,
    new: &NewCommunication,
    parent_id: Option<CommunicationId>,
    is_parent: bool,
) -> Result<Option<CommunicationId>, LedgerError> {
    let id = CommunicationId::new();
    let inserted = sqlx::query(
        "INSERT INTO communication_record (communication_id, tenant_id, communication_type, message_category, status,
             subject_type, subject_id, quote_id, order_id, recipient_type, recipient_ref, channel, address_hash,
             address_masked, template_family, template_version, idempotency_key, requested_by, requested_at,
             correlation_id, process_instance_id, business_key, activity_id, topic, parent_id, is_parent, about_task_id, rule_ref,
             resend_of, group_key)
         VALUES ($1, $2, $3, $4, 'REQUESTED', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, now(), $18, $19,
                 $20, $21, $22, $23, $24, $25, $26, $27, $28)
         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
         RETURNING communication_id",
    )
    .bind(id.0)
    .bind(&new.tenant_id)
    .bind(new.communication_type.as_str())
    .bind(new.category.as_str())
    .bind(&new.subject_type)
    .bind(&new.subject_id)
    .bind(&new.quote_id)
    .bind(&new.order_id)
    .bind(new.recipient.recipient_type.as_str())
    .bind(&new.recipient.recipient_ref)
    .bind(new.recipient.channel.as_str())
    .bind(&new.address_hash)
    .bind(&new.address_masked)
    .bind(&new.template_family)
    .bind(&new.template_version)
    .bind(&new.idempotency_key)
    .bind(&new.requested_by)
    .bind(&new.correlation_id)
    .bind(new.origin.as_ref().map(|o| &o.process_instance_id))
    .bind(new.origin.as_ref().and_then(|o| o.business_key.as_ref()))
    .bind(new.origin.as_ref().and_then(|o| o.activity_id.as_ref()))
    .bind(new.origin.as_ref().map(|o| &o.topic))
    .bind(parent_id.map(|p| p.0))
    .bind(is_parent)
    .bind(&new.about_task_id)
    .bind(&new.rule_ref)
    .bind(new.resend_of.map(|r| r.0))
    .bind(&new.group_key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inserted.map(|_| id))
}

/// Links the artifacts, writes CommunicationRequested, and applies the admission: a delivery
/// job (QUEUED), or a business status (SUPPRESSED, FAILED_FINAL) with its reason.
async fn admit(
    conn: &mut PgConnection,
    id: CommunicationId,
    new: &NewCommunication,
) -> Result<CommunicationStatus, LedgerError> {
    if !new.artifacts.is_empty() {
        let (ids, roles): (Vec<&str>, Vec<&str>) = new
            .artifacts
            .iter()
            .map(|(id, role)| (id.as_str(), role.as_str()))
            .unzip();
        sqlx::query(
            "INSERT INTO communication_artifact_link (communication_id, artifact_id, artifact_role)
             SELECT $1, a.artifact_id, a.artifact_role FROM unnest($2::text[], $3::text[]) AS a(artifact_id, artifact_role)",
        )
        .bind(id.0)
        .bind(&ids)
        .bind(&roles)
        .execute(&mut *conn)
        .await?;
    }
    if !new.decisions.is_empty() {
        let d = &new.decisions;
        sqlx::query(
            "INSERT INTO communication_decision (decision_id, communication_id, check_name, outcome, reason_code, detail)
             SELECT d.decision_id, $1, d.check_name, d.outcome, d.reason_code, d.detail
             FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
                 AS d(decision_id, check_name, outcome, reason_code, detail)",
        )
        .bind(id.0)
        .bind(d.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
        .bind(d.iter().map(|x| x.check).collect::<Vec<_>>())
        .bind(d.iter().map(|x| x.outcome.as_str()).collect::<Vec<_>>())
        .bind(d.iter().map(|x| x.reason_code.as_str()).collect::<Vec<_>>())
        .bind(d.iter().map(|x| x.detail.as_str()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let (status, change) = match &new.admission {
        Admission::Queue => {
            transition::queue_new(
                &mut *conn,
                id,
                transition::NewJob {
                    due_at: new.not_before,
                    recipient_address: new.recipient.address.as_deref(),
                    render_payload: &new.render_payload,
                    locale: new.recipient.locale.as_deref(),
                    attachments: serde_json::to_value(&new.attachments)
                        .expect("attachment references serialise"),
                    priority: new.priority,
                },
            )
            .await?;
            return Ok(CommunicationStatus::Queued);
        }
        Admission::Suppress { code, message } | Admission::Fail { code, message } => (
            if matches!(new.admission, Admission::Suppress { .. }) {
                CommunicationStatus::Suppressed
            } else {
                CommunicationStatus::FailedFinal
            },
            StatusChange {
                failure_code: Some(code.clone()),
                failure_message: Some(message.clone()),
                ..StatusChange::default()
            },
        ),
    };
    transition::record_requested(&mut *conn, id).await?;
    transition(&mut *conn, id, status, change).await?;
    Ok(status)
}

async fn existing(
    conn: &mut PgConnection,
    new: &NewCommunication,
) -> Result<RequestOutcome, LedgerError> {
    let row = sqlx::query("SELECT communication_id, status FROM communication_record WHERE tenant_id = $1 AND idempotency_key = $2")
        .bind(&new.tenant_id)
        .bind(&new.idempotency_key)
        .fetch_one(&mut *conn)
        .await?;
    Ok(RequestOutcome {
        communication_id: CommunicationId(row.get("communication_id")),
        status: row.get::<String, _>("status").parse()?,
        created: false,
    })
}

async fn current_status(
    conn: &mut PgConnection,
    id: CommunicationId,
) -> Result<CommunicationStatus, LedgerError> {
    let status: String =
        sqlx::query_scalar("SELECT status FROM communication_record WHERE communication_id = $1")
            .bind(id.0)
            .fetch_one(&mut *conn)
            .await?;
    Ok(status.parse()?)
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
            failure_class: Some(failure_class.clone()),
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
            failure_class: Some(failure_class.clone()),
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
