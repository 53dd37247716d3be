//! The transactional outbox: events written with every status change, and the relay round
//! that publishes them (correlations into Camunda, fallout).

use sqlx::Row;
use uuid::Uuid;

use super::{CommunicationId, Ledger, LedgerError, Outcome};

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

impl Ledger {
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
}
