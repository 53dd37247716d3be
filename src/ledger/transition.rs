//! The one place where a communication's status changes: the record, the attempt and the
//! outbox row are written in the caller's transaction, together or not at all.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::model::{
    AttemptStatus, Channel, CommunicationId, CommunicationStatus, EventType, FailureClass,
};
use super::LedgerError;

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
) -> Result<TransitionedRecord, LedgerError> {
    let row = sqlx::query(
        "SELECT status, tenant_id, parent_id, is_parent FROM communication_record WHERE communication_id = $1 FOR UPDATE",
    )
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(LedgerError::NotFound(id))?;
    let from: CommunicationStatus = row.try_get("status")?;
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

/// The outbox row of an event about a record `r` as it is now (never a raw address, never a
/// body), from `e(event_id, event_type, at)`: one SQL text for the single and the batch forms.
fn event_insert_sql(from: &str) -> String {
    format!(
        "INSERT INTO communication_outbox (outbox_id, tenant_id, aggregate_type, aggregate_id, event_type,
             event_version, payload, headers, created_at, status, published_at)
         SELECT e.event_id, r.tenant_id, 'Communication', r.communication_id, e.event_type, 1,
             jsonb_build_object(
                 'eventId', e.event_id, 'eventType', e.event_type, 'eventVersion', 1,
                 'occurredAt', to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                 'tenantId', r.tenant_id, 'communicationId', r.communication_id,
                 'type', r.communication_type, 'status', r.status,
                 'subject', jsonb_build_object('type', r.subject_type, 'id', r.subject_id),
                 'quoteId', r.quote_id, 'orderId', r.order_id,
                 'artifactIds', COALESCE((SELECT jsonb_agg(l.artifact_id ORDER BY l.artifact_id)
                                          FROM communication_artifact_link l
                                          WHERE l.communication_id = r.communication_id), '[]'::jsonb),
                 'channel', r.channel, 'recipientType', r.recipient_type, 'recipientRef', r.recipient_ref,
                 'correlationId', r.correlation_id, 'businessKey', r.business_key, 'rule', r.rule_ref,
                 'template', r.template_family || ':' || r.template_version,
                 'failureCode', r.failure_code),
             jsonb_build_object('correlationId', r.correlation_id), e.at,
             CASE WHEN e.event_type IN ({relayed}) THEN 'PENDING' ELSE 'PUBLISHED' END,
             CASE WHEN e.event_type IN ({relayed}) THEN NULL ELSE e.at END
         {from}",
        // The events the relay acts on (correlation, fallout) are written PENDING; all others
        // are written PUBLISHED: no relay subscriber would act on them.
        relayed = EventType::relayed()
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

static EVENT_INSERT: LazyLock<String> = LazyLock::new(|| {
    event_insert_sql(
        "FROM communication_record r,
              (SELECT $2::uuid AS event_id, $3::text AS event_type, $4::timestamptz AS at) e
         WHERE r.communication_id = $1",
    )
});

/// Writes an event about the record as it is now, in one statement (the outbox's insert
/// trigger wakes the relay).
async fn append_event(
    conn: &mut PgConnection,
    id: CommunicationId,
    event_type: EventType,
    now: DateTime<Utc>,
) -> Result<(), LedgerError> {
    sqlx::query(&EVENT_INSERT)
        .bind(id.0)
        .bind(Uuid::now_v7())
        .bind(event_type)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Writes the CommunicationRequested event of a record just inserted as REQUESTED.
pub async fn record_requested(
    conn: &mut PgConnection,
    id: CommunicationId,
) -> Result<(), LedgerError> {
    append_event(conn, id, EventType::CommunicationRequested, Utc::now()).await
}

/// The delivery job of a communication being queued.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub due_at: Option<DateTime<Utc>>,
    pub recipient_address: Option<&'a str>,
    pub render_payload: &'a serde_json::Value,
    pub locale: Option<&'a str>,
    pub attachments: serde_json::Value,
    pub priority: i32,
}

static QUEUE_NEW: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH t AS (SELECT clock_timestamp() AS at),
         requested AS ({requested}),
         moved AS (
             UPDATE communication_record r SET status = 'QUEUED', updated_at = now(), version = r.version + 1
             WHERE r.communication_id = $1 AND r.status = 'REQUESTED' AND NOT r.is_parent
             RETURNING r.*),
         job AS (
             INSERT INTO delivery_job (communication_id, tenant_id, due_at, recipient_address, render_payload,
                 locale, attachments, priority)
             SELECT communication_id, tenant_id, COALESCE($5, now()), $6, $7, $8, $9, $10 FROM moved
             RETURNING communication_id),
         queued AS ({queued})
         SELECT count(*) FROM job",
        requested = event_insert_sql(
            "FROM communication_record r,
                  (SELECT $2::uuid AS event_id, 'CommunicationRequested'::text AS event_type, t.at FROM t) e
             WHERE r.communication_id = $1
             RETURNING outbox_id"
        ),
        queued = event_insert_sql(
            "FROM moved r,
                  -- one microsecond later: the outbox is read in order of creation
                  (SELECT $3::uuid AS event_id, $4::text AS event_type,
                          t.at + interval '1 microsecond' AS at FROM t) e
             RETURNING outbox_id"
        ),
    )
});

/// Queues a record just inserted as REQUESTED, in one statement: its CommunicationRequested
/// event, the move to QUEUED with its event, and its delivery job (whose insert trigger wakes
/// the senders). The batch-free fast path of [`record_requested`] then [`transition`].
pub async fn queue_new(
    conn: &mut PgConnection,
    id: CommunicationId,
    job: NewJob<'_>,
) -> Result<(), LedgerError> {
    let queued: i64 = sqlx::query_scalar(&QUEUE_NEW)
        .bind(id.0)
        .bind(Uuid::now_v7())
        .bind(Uuid::now_v7())
        .bind(CommunicationStatus::Queued.event_type())
        .bind(job.due_at)
        .bind(job.recipient_address)
        .bind(job.render_payload)
        .bind(job.locale)
        .bind(&job.attachments)
        .bind(job.priority)
        .fetch_one(&mut *conn)
        .await?;
    if queued != 1 {
        let from: String = sqlx::query_scalar(
            "SELECT status FROM communication_record WHERE communication_id = $1",
        )
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(LedgerError::NotFound(id))?;
        return Err(LedgerError::IllegalTransition {
            id,
            from: from.parse()?,
            to: CommunicationStatus::Queued,
        });
    }
    Ok(())
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
    Box::pin(transition(conn, parent, outcome, change)).await?;
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
             FROM moved m JOIN claimed c USING (communication_id)
             WHERE c.attempts > 1 AND a.communication_id = m.communication_id AND a.attempt_no < c.attempts
               AND a.status = 'IN_PROGRESS'
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

/// How a sender's attempt ended, for [`end_attempts`].
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub communication_id: CommunicationId,
    pub attempt_no: i32,
    /// SENT, FAILED_RETRYABLE or FAILED_FINAL: the moves a SENDING record makes.
    pub to: CommunicationStatus,
    pub attempt_status: AttemptStatus,
    pub failure_class: Option<FailureClass>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub provider_message_id: Option<String>,
    pub response_code: Option<i32>,
    pub summary: String,
    pub content_hash: Option<String>,
    /// Some: the job is due again after this wait; None: the job is done.
    pub retry_after: Option<Duration>,
    /// A job that is done keeps its render payload (a dead-lettered webhook, for replay).
    pub keep_payload: bool,
}

/// What [`end_attempts`] did with one ended attempt.
#[derive(Debug, Clone)]
pub struct EndedAttempt {
    pub communication_id: CommunicationId,
    /// false: the sender had lost its lease; nothing was written.
    pub fenced: bool,
    /// false (when fenced): the record was no longer SENDING and kept its status.
    pub moved: bool,
}

static END_ATTEMPTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH input AS (
             SELECT * FROM unnest($2::uuid[], $3::int[], $4::text[], $5::text[], $6::uuid[], $7::text[],
                                  $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::text[],
                                  $14::text[], $15::bigint[], $16::bool[])
                 AS i(communication_id, attempt_no, to_status, event_type, event_id, attempt_status,
                      failure_class, failure_code, failure_message, provider_message_id, response_code,
                      summary, content_hash, retry_ms, keep_payload)),
         fenced AS (
             UPDATE delivery_job j SET locked_by = NULL, locked_until = NULL,
                 done = i.retry_ms IS NULL,
                 due_at = CASE WHEN i.retry_ms IS NULL THEN j.due_at
                               ELSE now() + make_interval(secs => i.retry_ms::double precision / 1000) END,
                 recipient_address = CASE WHEN i.retry_ms IS NULL THEN NULL ELSE j.recipient_address END,
                 render_payload = CASE WHEN i.retry_ms IS NULL AND NOT i.keep_payload THEN NULL
                                       ELSE j.render_payload END
             FROM input i
             WHERE j.communication_id = i.communication_id AND j.locked_by = $1
               AND j.attempts = i.attempt_no AND NOT j.done
             RETURNING j.communication_id, j.done),
         -- A job due again wakes the delivery loops of every process: one that went to sleep
         -- while this attempt was in flight (nothing else due) would sleep until its poll.
         -- One notification per statement that requeues (LIMIT 1), none for one that does not;
         -- read by the final SELECT, or it would not run.
         requeued AS (
             SELECT pg_notify('herald_delivery', '') FROM fenced WHERE NOT done LIMIT 1),
         finished AS (
             UPDATE communication_delivery_attempt a SET status = i.attempt_status, failure_class = i.failure_class,
                 provider_message_id = i.provider_message_id, response_code = i.response_code,
                 response_summary = i.summary, request_payload_hash = i.content_hash, completed_at = now()
             FROM fenced f JOIN input i USING (communication_id)
             WHERE a.communication_id = f.communication_id AND a.attempt_no = i.attempt_no
             RETURNING a.communication_id),
         moved AS (
             UPDATE communication_record r SET status = i.to_status, updated_at = now(), version = r.version + 1,
                 sent_at = CASE WHEN i.to_status = 'SENT' THEN now() ELSE r.sent_at END,
                 final_at = CASE WHEN i.to_status = 'FAILED_FINAL' THEN now() ELSE r.final_at END,
                 failure_code = COALESCE(i.failure_code, r.failure_code),
                 failure_message = COALESCE(i.failure_message, r.failure_message),
                 rendered_content_hash = COALESCE(i.content_hash, r.rendered_content_hash)
             FROM fenced f JOIN input i USING (communication_id)
             WHERE r.communication_id = f.communication_id AND r.status = 'SENDING' AND NOT r.is_parent
             RETURNING r.*),
         events AS ({events})
         SELECT f.communication_id, m.communication_id IS NOT NULL AS moved, m.parent_id, m.channel, m.status,
                (SELECT count(*) FROM requeued) AS woken
         FROM fenced f LEFT JOIN moved m USING (communication_id)",
        events = event_insert_sql(
            "FROM moved r JOIN (SELECT communication_id, event_id, event_type, clock_timestamp() AS at
                                FROM input WHERE event_type IS NOT NULL) e USING (communication_id)
             RETURNING outbox_id"
        ),
    )
});

/// Ends many attempts in one statement: each job still leased by `worker` (at that attempt)
/// is released (done, or due again), its attempt gets its outcome, its SENDING record moves on
/// and the status's event is written; then parents whose children are all settled get their
/// outcome, and an inbox notification read before it was recorded as sent is OPENED. This is
/// the batch form of [`transition`] for the moves a sender makes at scale; a lost lease
/// writes nothing for that job. A statement that makes a job due again notifies
/// `herald_delivery` once, so that the delivery loops of every process look at the queue
/// again (a retry sooner than their poll leaves on time); one that requeues nothing is silent.
pub async fn end_attempts(
    conn: &mut PgConnection,
    worker: &str,
    ends: &[AttemptEnd],
) -> Result<Vec<EndedAttempt>, LedgerError> {
    for end in ends {
        debug_assert!(CommunicationStatus::Sending.can_become(end.to));
    }
    let col = |f: &dyn Fn(&AttemptEnd) -> Option<String>| ends.iter().map(f).collect::<Vec<_>>();
    let rows = sqlx::query(&END_ATTEMPTS)
        .bind(worker)
        .bind(
            ends.iter()
                .map(|e| e.communication_id.0)
                .collect::<Vec<_>>(),
        )
        .bind(ends.iter().map(|e| e.attempt_no).collect::<Vec<_>>())
        .bind(col(&|e| Some(e.to.as_str().to_string())))
        .bind(col(&|e| e.to.event_type().map(|t| t.as_str().to_string())))
        .bind(ends.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
        .bind(col(&|e| Some(e.attempt_status.as_str().to_string())))
        .bind(col(&|e| e.failure_class.map(|c| c.as_str().to_string())))
        .bind(col(&|e| e.failure_code.clone()))
        .bind(col(&|e| e.failure_message.clone()))
        .bind(col(&|e| e.provider_message_id.clone()))
        .bind(ends.iter().map(|e| e.response_code).collect::<Vec<_>>())
        .bind(col(&|e| Some(e.summary.clone())))
        .bind(col(&|e| e.content_hash.clone()))
        .bind(
            ends.iter()
                .map(|e| e.retry_after.map(|d| d.as_millis() as i64))
                .collect::<Vec<_>>(),
        )
        .bind(ends.iter().map(|e| e.keep_payload).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    let mut parents = Vec::new();
    let mut sent_to_inbox = Vec::new();
    let mut done = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = row.get("communication_id");
        let moved: bool = row.get("moved");
        if moved {
            let status: CommunicationStatus = row.try_get("status")?;
            if let (Some(parent), Some(_)) =
                (row.get::<Option<Uuid>, _>("parent_id"), status.outcome())
            {
                parents.push(parent);
            }
            if status == CommunicationStatus::Sent
                && row.get::<String, _>("channel") == Channel::InApp.as_str()
            {
                sent_to_inbox.push(id);
            }
        }
        done.insert(id, moved);
    }
    // Parents in one order, so that two senders settling the same parents never deadlock.
    parents.sort();
    parents.dedup();
    for parent in parents {
        settle_parent(conn, CommunicationId(parent)).await?;
    }
    if !sent_to_inbox.is_empty() {
        let read: Vec<Uuid> = sqlx::query_scalar(
            "SELECT notification_id FROM inbox_notification
             WHERE notification_id = ANY($1) AND read_at IS NOT NULL ORDER BY notification_id",
        )
        .bind(&sent_to_inbox)
        .fetch_all(&mut *conn)
        .await?;
        for id in read {
            transition(
                conn,
                CommunicationId(id),
                CommunicationStatus::Opened,
                StatusChange::default(),
            )
            .await?;
        }
    }
    Ok(ends
        .iter()
        .map(|e| EndedAttempt {
            communication_id: e.communication_id,
            fenced: done.contains_key(&e.communication_id.0),
            moved: done.get(&e.communication_id.0).copied().unwrap_or(false),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_written_by_a_status_change_and_the_relay_acts_on_the_outcomes() {
        for event_type in EventType::ALL {
            assert!(
                CommunicationStatus::ALL
                    .iter()
                    .any(|s| s.event_type() == Some(*event_type)),
                "{event_type}: no status change writes it"
            );
        }
        assert_eq!(
            EventType::relayed(),
            [
                EventType::CommunicationSuppressed,
                EventType::CommunicationSent,
                EventType::CommunicationFailed,
                EventType::CommunicationBounced,
            ]
        );
        // The outbox's insert writes exactly the relayed events PENDING.
        let sql = event_insert_sql("");
        for event_type in EventType::ALL {
            assert_eq!(
                sql.contains(&format!("'{event_type}'")),
                event_type.is_relayed(),
                "{event_type}"
            );
        }
    }
}
