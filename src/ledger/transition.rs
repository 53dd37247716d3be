//! The one place where a communication's status changes: the record, the attempt and the
//! outbox row are written in the caller's transaction, together or not at all.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::model::{AttemptStatus, Channel, CommunicationId, CommunicationStatus};
use super::LedgerError;

/// An attempt row to write with the status change.
#[derive(Debug, Clone)]
pub enum AttemptWrite {
    /// A sender claimed the communication: a new attempt starts.
    Start {
        attempt_no: i32,
        channel: Channel,
        provider: String,
        claimed_by: String,
    },
    /// The sender reports how the attempt ended.
    Finish {
        attempt_no: i32,
        status: AttemptStatus,
        failure_class: Option<String>,
        provider_message_id: Option<String>,
        response_code: Option<i32>,
        response_summary: Option<String>,
        request_payload_hash: Option<String>,
    },
}

/// What else changes on the record with the status.
#[derive(Debug, Clone, Default)]
pub struct StatusChange {
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub rendered_content_hash: Option<String>,
}

/// The record as a transition leaves it (what events and callers need).
#[derive(Debug, Clone)]
pub struct TransitionedRecord {
    pub communication_id: CommunicationId,
    pub tenant_id: String,
    pub status: CommunicationStatus,
}

/// Moves a communication to `to`, writes the attempt and the status's outbox event.
/// Refuses a move the lifecycle does not allow (the record is left untouched).
pub async fn transition(
    conn: &mut PgConnection,
    id: CommunicationId,
    to: CommunicationStatus,
    change: StatusChange,
    attempt: Option<AttemptWrite>,
) -> Result<TransitionedRecord, LedgerError> {
    let row = sqlx::query(
        "SELECT status, tenant_id, parent_id, is_parent FROM communication_record WHERE communication_id = $1 FOR UPDATE",
    )
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(LedgerError::NotFound(id))?;
    let from: CommunicationStatus = row.get::<String, _>("status").parse()?;
    let tenant_id: String = row.get("tenant_id");
    let parent_id: Option<Uuid> = row.get("parent_id");
    let is_parent: bool = row.get("is_parent");
    let allowed = if is_parent {
        from.can_become_as_parent(to)
    } else {
        from.can_become(to)
    };
    if !allowed {
        return Err(LedgerError::IllegalTransition { id, from, to });
    }
    let now = Utc::now();
    let is_final = matches!(
        to,
        CommunicationStatus::FailedFinal
            | CommunicationStatus::Suppressed
            | CommunicationStatus::Bounced
    );
    sqlx::query(
        "UPDATE communication_record SET status = $2, updated_at = $3, version = version + 1,
             sent_at = CASE WHEN $2 = 'SENT' THEN $3 ELSE sent_at END,
             final_at = CASE WHEN $4 THEN $3 ELSE final_at END,
             failure_code = COALESCE($5, failure_code),
             failure_message = COALESCE($6, failure_message),
             rendered_content_hash = COALESCE($7, rendered_content_hash)
         WHERE communication_id = $1",
    )
    .bind(id.0)
    .bind(to.as_str())
    .bind(now)
    .bind(is_final)
    .bind(&change.failure_code)
    .bind(&change.failure_message)
    .bind(&change.rendered_content_hash)
    .execute(&mut *conn)
    .await?;

    if let Some(attempt) = attempt {
        write_attempt(conn, id, &tenant_id, attempt, now).await?;
    }
    if let Some(event_type) = to.event_type() {
        append_event(conn, id, event_type, now).await?;
    }
    if let (Some(parent), Some(_)) = (parent_id, to.outcome()) {
        settle_parent(conn, CommunicationId(parent)).await?;
    }
    Ok(TransitionedRecord {
        communication_id: id,
        tenant_id,
        status: to,
    })
}

async fn write_attempt(
    conn: &mut PgConnection,
    id: CommunicationId,
    tenant_id: &str,
    attempt: AttemptWrite,
    now: DateTime<Utc>,
) -> Result<(), LedgerError> {
    match attempt {
        AttemptWrite::Start {
            attempt_no,
            channel,
            provider,
            claimed_by,
        } => {
            // A previous attempt still open means its sender vanished: its outcome is unknown.
            sqlx::query(
                "UPDATE communication_delivery_attempt SET status = 'ABANDONED', completed_at = $2,
                     response_summary = 'lease expired before the sender reported'
                 WHERE communication_id = $1 AND status = 'IN_PROGRESS'",
            )
            .bind(id.0)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO communication_delivery_attempt
                     (attempt_id, tenant_id, communication_id, attempt_no, channel, provider, status, claimed_by, attempted_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'IN_PROGRESS', $7, $8)",
            )
            .bind(Uuid::now_v7())
            .bind(tenant_id)
            .bind(id.0)
            .bind(attempt_no)
            .bind(channel.as_str())
            .bind(provider)
            .bind(claimed_by)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        AttemptWrite::Finish {
            attempt_no,
            status,
            failure_class,
            provider_message_id,
            response_code,
            response_summary,
            request_payload_hash,
        } => {
            sqlx::query(
                "UPDATE communication_delivery_attempt SET status = $3, failure_class = $4, provider_message_id = $5,
                     response_code = $6, response_summary = $7, request_payload_hash = $8, completed_at = $9
                 WHERE communication_id = $1 AND attempt_no = $2",
            )
            .bind(id.0)
            .bind(attempt_no)
            .bind(status.as_str())
            .bind(failure_class)
            .bind(provider_message_id)
            .bind(response_code)
            .bind(response_summary)
            .bind(request_payload_hash)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Writes an event about the record as it is now (never a raw address, never a body).
async fn append_event(
    conn: &mut PgConnection,
    id: CommunicationId,
    event_type: &str,
    now: DateTime<Utc>,
) -> Result<(), LedgerError> {
    let row = sqlx::query(
        "SELECT r.tenant_id, r.communication_type, r.status, r.subject_type, r.subject_id, r.quote_id, r.order_id,
                r.channel, r.recipient_type, r.recipient_ref, r.correlation_id, r.failure_code, r.template_family,
                r.template_version, r.business_key, r.rule_ref,
                COALESCE((SELECT array_agg(artifact_id ORDER BY artifact_id) FROM communication_artifact_link a
                          WHERE a.communication_id = r.communication_id), '{}') AS artifact_ids
         FROM communication_record r WHERE r.communication_id = $1",
    )
    .bind(id.0)
    .fetch_one(&mut *conn)
    .await?;
    let event_id = Uuid::now_v7();
    let tenant_id: String = row.get("tenant_id");
    let payload = json!({
        "eventId": event_id,
        "eventType": event_type,
        "eventVersion": 1,
        "occurredAt": now,
        "tenantId": tenant_id,
        "communicationId": id,
        "type": row.get::<String, _>("communication_type"),
        "status": row.get::<String, _>("status"),
        "subject": { "type": row.get::<String, _>("subject_type"), "id": row.get::<String, _>("subject_id") },
        "quoteId": row.get::<Option<String>, _>("quote_id"),
        "orderId": row.get::<Option<String>, _>("order_id"),
        "artifactIds": row.get::<Vec<String>, _>("artifact_ids"),
        "channel": row.get::<String, _>("channel"),
        "recipientType": row.get::<String, _>("recipient_type"),
        "recipientRef": row.get::<String, _>("recipient_ref"),
        "correlationId": row.get::<String, _>("correlation_id"),
        "businessKey": row.get::<Option<String>, _>("business_key"),
        "rule": row.get::<Option<String>, _>("rule_ref"),
        "template": format!("{}:{}", row.get::<String, _>("template_family"), row.get::<String, _>("template_version")),
        "failureCode": row.get::<Option<String>, _>("failure_code"),
    });
    sqlx::query(
        "INSERT INTO communication_outbox (outbox_id, tenant_id, aggregate_type, aggregate_id, event_type, event_version, payload, headers, created_at)
         VALUES ($1, $2, 'Communication', $3, $4, 1, $5, $6, $7)",
    )
    .bind(event_id)
    .bind(&tenant_id)
    .bind(id.0)
    .bind(event_type)
    .bind(&payload)
    .bind(json!({ "correlationId": row.get::<String, _>("correlation_id") }))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify('herald_outbox', '')")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Writes the CommunicationRequested event of a record just inserted as REQUESTED.
pub async fn record_requested(
    conn: &mut PgConnection,
    id: CommunicationId,
) -> Result<(), LedgerError> {
    append_event(conn, id, "CommunicationRequested", Utc::now()).await
}

/// Gives a parent communication its outcome once every child has one: SENT when at least one
/// child went out, SUPPRESSED when all were suppressed, FAILED_FINAL otherwise.
pub fn parent_outcome(children: &[CommunicationStatus]) -> Option<CommunicationStatus> {
    if children.is_empty() || children.iter().any(|c| c.outcome().is_none()) {
        return None;
    }
    if children
        .iter()
        .any(|c| c.outcome() == Some(super::model::Outcome::Sent))
    {
        Some(CommunicationStatus::Sent)
    } else if children
        .iter()
        .all(|c| *c == CommunicationStatus::Suppressed)
    {
        Some(CommunicationStatus::Suppressed)
    } else {
        Some(CommunicationStatus::FailedFinal)
    }
}

/// Moves a parent to its outcome when its children allow it (in the caller's transaction).
pub async fn settle_parent(
    conn: &mut PgConnection,
    parent: CommunicationId,
) -> Result<(), LedgerError> {
    let current: String = sqlx::query_scalar(
        "SELECT status FROM communication_record WHERE communication_id = $1 FOR UPDATE",
    )
    .bind(parent.0)
    .fetch_one(&mut *conn)
    .await?;
    let current: CommunicationStatus = current.parse()?;
    if current.outcome().is_some() {
        return Ok(());
    }
    let children: Vec<String> =
        sqlx::query_scalar("SELECT status FROM communication_record WHERE parent_id = $1")
            .bind(parent.0)
            .fetch_all(&mut *conn)
            .await?;
    let children = children
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<CommunicationStatus>, _>>()?;
    let Some(outcome) = parent_outcome(&children) else {
        return Ok(());
    };
    let change = match outcome {
        CommunicationStatus::Sent => StatusChange::default(),
        _ => StatusChange {
            failure_code: Some("NO_RECIPIENT_REACHED".into()),
            failure_message: Some(format!(
                "none of the {} recipients was reached",
                children.len()
            )),
            ..StatusChange::default()
        },
    };
    Box::pin(transition(conn, parent, outcome, change, None)).await?;
    Ok(())
}

/// A delivery job whose attempt has just started (see [`start_attempts`]).
pub struct StartedJob {
    pub row: sqlx::postgres::PgRow,
    /// false: the record was in a state that cannot send; the job must leave the queue.
    pub started: bool,
}

/// Claims up to `limit` due jobs for `worker` and starts an attempt on each, in one statement:
/// the jobs are leased, their records move to SENDING, a previous attempt still open (its
/// sender vanished) becomes ABANDONED, and the new attempt is written. SENDING publishes no
/// event, so no outbox row is due. This is the batch form of [`transition`] for the one move
/// a sender makes at scale; the rules are the same (`QUEUED`, `FAILED_RETRYABLE` or a
/// `SENDING` whose lease expired may start; a parent never does).
pub async fn start_attempts(
    conn: &mut PgConnection,
    worker: &str,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<StartedJob>, LedgerError> {
    let startable: Vec<&str> = CommunicationStatus::ALL
        .iter()
        .filter(|s| s.can_become(CommunicationStatus::Sending))
        .map(|s| s.as_str())
        .collect();
    let channels: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
    let providers: Vec<&str> = Channel::ALL
        .iter()
        .map(|c| super::provider_name(*c))
        .collect();
    // Data-modifying CTEs run to completion whether or not the final SELECT reads them.
    let rows = sqlx::query(
        "WITH due AS (
             SELECT communication_id FROM delivery_job
             WHERE NOT done AND due_at <= now() AND (locked_until IS NULL OR locked_until < now())
             ORDER BY priority DESC, due_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED),
         claimed AS (
             UPDATE delivery_job j SET locked_by = $1,
                 locked_until = now() + make_interval(secs => $3::double precision / 1000),
                 attempts = j.attempts + 1
             FROM due WHERE j.communication_id = due.communication_id
             RETURNING j.communication_id, j.attempts, j.recipient_address, j.render_payload, j.locale, j.attachments),
         moved AS (
             UPDATE communication_record r SET status = 'SENDING', updated_at = now(), version = r.version + 1
             FROM claimed c
             WHERE r.communication_id = c.communication_id AND r.status = ANY($4) AND NOT r.is_parent
             RETURNING r.communication_id, r.tenant_id, r.channel, r.communication_type, r.template_family,
                 r.template_version, r.correlation_id, r.business_key, r.address_masked, r.requested_at,
                 COALESCE(r.resend_of, r.communication_id) AS origin_id),
         abandoned AS (
             UPDATE communication_delivery_attempt a SET status = 'ABANDONED', completed_at = now(),
                 response_summary = 'lease expired before the sender reported'
             FROM moved m WHERE a.communication_id = m.communication_id AND a.status = 'IN_PROGRESS'
             RETURNING a.communication_id),
         started AS (
             INSERT INTO communication_delivery_attempt
                 (attempt_id, tenant_id, communication_id, attempt_no, channel, provider, status, claimed_by, attempted_at)
             SELECT gen_random_uuid(), m.tenant_id, m.communication_id, c.attempts, m.channel,
                    COALESCE((SELECT p.provider FROM unnest($5::text[], $6::text[]) AS p(channel, provider)
                              WHERE p.channel = m.channel), 'unknown'),
                    'IN_PROGRESS', $1, now()
             FROM moved m JOIN claimed c USING (communication_id)
             RETURNING communication_id)
         SELECT c.communication_id, c.attempts, c.recipient_address, c.render_payload, c.locale, c.attachments,
                m.tenant_id, m.channel, m.communication_type, m.template_family, m.template_version,
                m.correlation_id, m.business_key, m.address_masked, m.requested_at, m.origin_id,
                m.communication_id IS NOT NULL AS started
         FROM claimed c LEFT JOIN moved m USING (communication_id)",
    )
    .bind(worker)
    .bind(limit)
    .bind(lease_ms)
    .bind(&startable)
    .bind(&channels)
    .bind(&providers)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| StartedJob {
            started: row.get("started"),
            row,
        })
        .collect())
}
