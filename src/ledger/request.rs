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
    Admission, Admitted, CommunicationId, CommunicationStatus, CommunicationType, Ledger,
    LedgerError, MessageCategory, ProcessOrigin, ResolvedRecipient,
};

/// A request for one communication: what it is, to whom (with the intake's verdict), what it
/// says, and where it came from. Built with [`NewCommunication::new`] from its required parts;
/// the optional ones have methods.
#[derive(Debug, Clone)]
pub struct NewCommunication {
    pub tenant_id: String,
    /// Unique per tenant: one business communication per key, whatever the retries.
    pub idempotency_key: String,
    pub class: Classification,
    pub subject: Subject,
    /// The recipient and what the intake decided for it.
    pub admitted: Admitted,
    pub rendering: Rendering,
    pub provenance: Provenance,
    /// Delivery priority (higher first).
    pub priority: i32,
    /// (artifact id, role) of the documents the communication carries.
    pub artifacts: Vec<(String, String)>,
    /// Files to attach when the message is sent.
    pub attachments: Vec<crate::artifacts::AttachmentRef>,
}

/// The delivery priority of a communication whose rule names none.
pub const DEFAULT_PRIORITY: i32 = 50;

/// What kind of communication it is: its type (which drives criticality and retries) and the
/// category opt-outs apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub communication_type: CommunicationType,
    pub category: MessageCategory,
}

/// The business object a communication is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub subject_type: String,
    pub subject_id: String,
    pub quote_id: Option<String>,
    pub order_id: Option<String>,
}

impl Subject {
    pub fn new(subject_type: impl Into<String>, subject_id: impl Into<String>) -> Subject {
        Subject {
            subject_type: subject_type.into(),
            subject_id: subject_id.into(),
            quote_id: None,
            order_id: None,
        }
    }

    /// The quote and order the subject belongs to, when known.
    pub fn of(mut self, quote_id: Option<String>, order_id: Option<String>) -> Subject {
        self.quote_id = quote_id;
        self.order_id = order_id;
        self
    }
}

/// The template version that renders the communication, and the payload it renders.
#[derive(Debug, Clone)]
pub struct Rendering {
    pub template_family: String,
    pub template_version: String,
    pub payload: Value,
}

/// Where a communication came from: who asked, on which rule (with its version), under which
/// correlation id, from which waiting process, and what it follows from.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub requested_by: String,
    pub correlation_id: String,
    /// The rule that asked for it, with its version: `topic:send-proposal:v1`, `rule:…:v2`.
    pub rule_ref: String,
    pub origin: Option<ProcessOrigin>,
    /// The user task the communication is about (reminders, escalations).
    pub about_task_id: Option<String>,
    /// A replay or resend: the original communication (receivers see its id).
    pub resend_of: Option<CommunicationId>,
    /// Alerts aggregated by root cause: the group this one belongs to.
    pub group_key: Option<String>,
}

impl Provenance {
    pub fn new(
        requested_by: impl Into<String>,
        correlation_id: impl Into<String>,
        rule_ref: impl Into<String>,
    ) -> Provenance {
        Provenance {
            requested_by: requested_by.into(),
            correlation_id: correlation_id.into(),
            rule_ref: rule_ref.into(),
            origin: None,
            about_task_id: None,
            resend_of: None,
            group_key: None,
        }
    }

    /// A new correlation id for a communication that starts a conversation of its own.
    pub fn fresh_correlation_id() -> String {
        Uuid::now_v7().to_string()
    }

    pub fn from_process(mut self, origin: ProcessOrigin) -> Provenance {
        self.origin = Some(origin);
        self
    }

    pub fn about_task(mut self, task_id: impl Into<String>) -> Provenance {
        self.about_task_id = Some(task_id.into());
        self
    }

    pub fn resend_of(mut self, original: CommunicationId) -> Provenance {
        self.resend_of = Some(original);
        self
    }

    pub fn in_group(mut self, group_key: Option<String>) -> Provenance {
        self.group_key = group_key;
        self
    }
}

impl NewCommunication {
    pub fn new(
        tenant_id: impl Into<String>,
        idempotency_key: impl Into<String>,
        class: Classification,
        subject: Subject,
        admitted: Admitted,
        rendering: Rendering,
        provenance: Provenance,
    ) -> NewCommunication {
        NewCommunication {
            tenant_id: tenant_id.into(),
            idempotency_key: idempotency_key.into(),
            class,
            subject,
            admitted,
            rendering,
            provenance,
            priority: DEFAULT_PRIORITY,
            artifacts: Vec::new(),
            attachments: Vec::new(),
        }
    }

    pub fn priority(mut self, priority: i32) -> NewCommunication {
        self.priority = priority;
        self
    }

    pub fn carrying(
        mut self,
        artifacts: Vec<(String, String)>,
        attachments: Vec<crate::artifacts::AttachmentRef>,
    ) -> NewCommunication {
        self.artifacts = artifacts;
        self.attachments = attachments;
        self
    }

    pub fn recipient(&self) -> &ResolvedRecipient {
        &self.admitted.recipient
    }

    pub fn origin(&self) -> Option<&ProcessOrigin> {
        self.provenance.origin.as_ref()
    }
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
                status: record_admission(&mut tx, id, new).await?,
                created: true,
            },
            None => existing(&mut tx, new).await?,
        };
        self.conclude(tx, new, outcome).await
    }

    /// Registers the waiting process (when one waits) and commits the request.
    async fn conclude(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        new: &NewCommunication,
        outcome: RequestOutcome,
    ) -> Result<RequestOutcome, LedgerError> {
        if let Some(origin) = new.origin().filter(|o| o.waits_for_outcome) {
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
                        queued |= record_admission(&mut tx, child_id, child).await?
                            == CommunicationStatus::Queued;
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
                    let (to, change) = refusal(&parent.admitted.admission).unwrap_or_else(|| {
                        refusal(&Admission::Fail {
                            code: "NO_RECIPIENT".into(),
                            message: "no recipient was found".into(),
                        })
                        .expect("a failure is a refusal")
                    });
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
        self.conclude(tx, parent, outcome).await
    }

    /// Whether the tenant has a communication with this idempotency key.
    pub async fn has_key(
        &self,
        tenant_id: &str,
        idempotency_key: &str,
    ) -> Result<bool, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM communication_record WHERE tenant_id = $1 AND idempotency_key = $2)",
        )
        .bind(tenant_id)
        .bind(idempotency_key)
        .fetch_one(&self.pool)
        .await?)
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
    .bind(new.class.communication_type.as_str())
    .bind(new.class.category.as_str())
    .bind(&new.subject.subject_type)
    .bind(&new.subject.subject_id)
    .bind(&new.subject.quote_id)
    .bind(&new.subject.order_id)
    .bind(new.admitted.recipient.recipient_type.as_str())
    .bind(&new.admitted.recipient.recipient_ref)
    .bind(new.admitted.recipient.channel.as_str())
    .bind(&new.admitted.address_hash)
    .bind(&new.admitted.address_masked)
    .bind(&new.rendering.template_family)
    .bind(&new.rendering.template_version)
    .bind(&new.idempotency_key)
    .bind(&new.provenance.requested_by)
    .bind(&new.provenance.correlation_id)
    .bind(new.origin().map(|o| &o.process_instance_id))
    .bind(new.origin().and_then(|o| o.business_key.as_ref()))
    .bind(new.origin().and_then(|o| o.activity_id.as_ref()))
    .bind(new.origin().map(|o| &o.topic))
    .bind(parent_id.map(|p| p.0))
    .bind(is_parent)
    .bind(&new.provenance.about_task_id)
    .bind(&new.provenance.rule_ref)
    .bind(new.provenance.resend_of.map(|r| r.0))
    .bind(&new.provenance.group_key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inserted.map(|_| id))
}

/// Links the artifacts, writes CommunicationRequested, and applies the admission: a delivery
/// job (QUEUED), or a business status (SUPPRESSED, FAILED_FINAL) with its reason.
async fn record_admission(
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
    if !new.admitted.decisions.is_empty() {
        let d = &new.admitted.decisions;
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
    let Some((status, change)) = refusal(&new.admitted.admission) else {
        transition::queue_new(
            &mut *conn,
            id,
            transition::NewJob {
                due_at: new.admitted.not_before,
                recipient_address: new.admitted.recipient.address.as_deref(),
                render_payload: &new.rendering.payload,
                locale: new.admitted.recipient.locale.as_deref(),
                attachments: serde_json::to_value(&new.attachments)
                    .expect("attachment references serialise"),
                priority: new.priority,
            },
        )
        .await?;
        return Ok(CommunicationStatus::Queued);
    };
    transition::record_requested(&mut *conn, id).await?;
    transition(&mut *conn, id, status, change).await?;
    Ok(status)
}

/// The business status and reason of an admission that refuses (SUPPRESSED, FAILED_FINAL);
/// None when it queues.
fn refusal(admission: &Admission) -> Option<(CommunicationStatus, StatusChange)> {
    let (to, code, message) = match admission {
        Admission::Queue => return None,
        Admission::Suppress { code, message } => (CommunicationStatus::Suppressed, code, message),
        Admission::Fail { code, message } => (CommunicationStatus::FailedFinal, code, message),
    };
    let change = StatusChange {
        failure_code: Some(code.clone()),
        failure_message: Some(message.clone()),
        ..StatusChange::default()
    };
    Some((to, change))
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
        status: row.try_get("status")?,
        created: false,
    })
}

async fn current_status(
    conn: &mut PgConnection,
    id: CommunicationId,
) -> Result<CommunicationStatus, LedgerError> {
    Ok(
        sqlx::query_scalar("SELECT status FROM communication_record WHERE communication_id = $1")
            .bind(id.0)
            .fetch_one(&mut *conn)
            .await?,
    )
}
