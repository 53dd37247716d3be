//! The transactional outbox: events written with every status change, and the relay round
//! that publishes them (correlations into Camunda, fallout).

use sqlx::Row;
use uuid::Uuid;

use super::{CommunicationId, EventType, Ledger, LedgerError};

impl Ledger {
    /// Publishes up to `limit` pending outbox events. Today's subscribers are Camunda (an
    /// outcome event schedules one correlation per waiting process instance) and fallout; the
    /// events neither acts on are written already published (see [`EventType::relay_action`]).
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
            let event_type: EventType = match row.try_get("event_type") {
                Ok(event_type) => event_type,
                // One row this herald cannot read must not stop the relay: no subscriber of
                // this herald acts on an event it does not know.
                Err(err) => {
                    tracing::error!(communicationId = %id, error = %err, "outbox event of a type herald does not know; published without a subscriber");
                    published.push(outbox_id);
                    continue;
                }
            };
            let action = event_type.relay_action();
            if let Some(outcome) = action.correlate {
                outcomes.0.push(id.0);
                outcomes.1.push(outcome.message_name());
            }
            if action.fallout {
                self.raise_fallout(&mut tx, id).await?;
            }
            tracing::debug!(communicationId = %id, %event_type, "outbox event published");
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
