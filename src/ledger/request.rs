//! Requests: a communication recorded once per idempotency key, with its decisions, its
//! artifacts, its delivery job or business status and its waiting process, in one
//! transaction; and the reads the intake makes before it asks (duplicates, rate limits,
//! alert groups, reminder ordinals).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::transition::{self, transition, StatusChange};
use super::{
    Admission, CommunicationId, CommunicationStatus, CommunicationType, Ledger, LedgerError,
    MessageCategory, ProcessOrigin, ResolvedRecipient,
};

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
    pub decisions: Vec<super::Decision>,
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

impl Ledger {
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
