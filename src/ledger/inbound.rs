//! Inbound business events (`POST /events`): each applied once per tenant and event id, with
//! the communications it asked for.

use chrono::{DateTime, Utc};

use super::{CommunicationId, Ledger, LedgerError};

impl Ledger {
    /// The communications an event already asked for, when it was applied before.
    pub async fn applied_event(
        &self,
        tenant_id: &str,
        event_id: &str,
    ) -> Result<Option<Vec<CommunicationId>>, LedgerError> {
        let seen: Option<Vec<uuid::Uuid>> = sqlx::query_scalar(
            "SELECT communication_ids FROM inbound_event WHERE tenant_id = $1 AND event_id = $2",
        )
        .bind(tenant_id)
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(seen.map(|ids| ids.into_iter().map(CommunicationId).collect()))
    }

    /// Records that an event was applied, with the communications it asked for.
    pub async fn record_event(
        &self,
        tenant_id: &str,
        event_id: &str,
        event_type: &str,
        occurred_at: DateTime<Utc>,
        communication_ids: &[CommunicationId],
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO inbound_event (tenant_id, event_id, event_type, occurred_at, communication_ids)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(tenant_id)
        .bind(event_id)
        .bind(event_type)
        .bind(occurred_at)
        .bind(communication_ids.iter().map(|i| i.0).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
