//! Fallout: a critical communication that failed for good (or bounced) becomes an operational
//! alert through the rule set, once. The signal is written with the outbox event's publication;
//! the fallout loop turns it into a `CommunicationFallout` business event for the rules.

use serde_json::json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{CommunicationId, CommunicationType, Criticality, Ledger, LedgerError};

/// The business event the rules see (trigger `CommunicationFallout`).
pub const FALLOUT_EVENT: &str = "CommunicationFallout";

/// A pending fallout signal.
#[derive(Debug, Clone)]
pub struct FalloutSignal {
    pub communication_id: CommunicationId,
    pub tries: i32,
    pub event: serde_json::Value,
}

/// Whether a final failure of this type is fallout: critical types, never an alert itself (an
/// alert about an alert would never end).
pub fn raises_fallout(kind: CommunicationType) -> bool {
    kind.criticality() >= Criticality::High && kind != CommunicationType::FalloutAlert
}

impl Ledger {
    /// Writes the fallout signal of a communication that failed for good, when it is critical
    /// (in the relay's transaction; once per communication).
    pub(crate) async fn raise_fallout(
        &self,
        conn: &mut PgConnection,
        id: CommunicationId,
    ) -> Result<(), LedgerError> {
        let row = sqlx::query(
            "SELECT tenant_id, communication_type, status, subject_type, subject_id, quote_id, order_id,
                    recipient_ref, channel, failure_code, failure_message, correlation_id, business_key,
                    is_parent
             FROM communication_record WHERE communication_id = $1",
        )
        .bind(id.0)
        .fetch_one(&mut *conn)
        .await?;
        let kind: CommunicationType = row.try_get("communication_type")?;
        // A parent's outcome follows its children, which raise their own fallout.
        if !raises_fallout(kind) || row.get::<bool, _>("is_parent") {
            return Ok(());
        }
        let tenant_id: String = row.get("tenant_id");
        let subject = format!(
            "{} {}",
            row.get::<String, _>("subject_type"),
            row.get::<String, _>("subject_id")
        );
        let failure_code: Option<String> = row.get("failure_code");
        let failure_message: Option<String> = row.get("failure_message");
        let reason = format!(
            "{kind} on {} to {} for {subject} is {}: {}{}",
            row.get::<String, _>("channel"),
            row.get::<String, _>("recipient_ref"),
            row.get::<String, _>("status"),
            failure_code.as_deref().unwrap_or("no reason code"),
            failure_message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
        );
        let event = json!({
            "eventId": format!("fallout:{id}"),
            "eventType": FALLOUT_EVENT,
            "occurredAt": chrono::Utc::now().to_rfc3339(),
            "tenantId": tenant_id,
            "correlationId": row.get::<String, _>("correlation_id"),
            "quoteId": row.get::<Option<String>, _>("quote_id"),
            "orderId": row.get::<Option<String>, _>("order_id"),
            "data": {
                "communicationId": id.to_string(),
                "communicationType": kind.as_str(),
                "failureCode": failure_code,
                "businessKey": row.get::<Option<String>, _>("business_key"),
                "subject": subject,
                "reason": reason,
            }
        });
        sqlx::query(
            "INSERT INTO fallout_signal (communication_id, tenant_id, event) VALUES ($1, $2, $3)
             ON CONFLICT (communication_id) DO NOTHING",
        )
        .bind(id.0)
        .bind(&tenant_id)
        .bind(&event)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Claims due fallout signals for a minute.
    pub async fn claim_fallout(&self, limit: i64) -> Result<Vec<FalloutSignal>, LedgerError> {
        let rows = sqlx::query(
            "UPDATE fallout_signal SET next_try_at = now() + interval '1 minute', tries = tries + 1
             WHERE communication_id IN (
                 SELECT communication_id FROM fallout_signal
                 WHERE status = 'PENDING' AND next_try_at <= now()
                 ORDER BY next_try_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING communication_id, tries, event",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| FalloutSignal {
                communication_id: CommunicationId(row.get("communication_id")),
                tries: row.get("tries"),
                event: row.get("event"),
            })
            .collect())
    }

    /// The signal became these alerts.
    pub async fn fallout_raised(
        &self,
        id: CommunicationId,
        alerts: &[CommunicationId],
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE fallout_signal SET status = 'RAISED', raised_at = now(), alert_ids = $2, last_error = NULL
             WHERE communication_id = $1",
        )
        .bind(id.0)
        .bind(alerts.iter().map(|a| a.0).collect::<Vec<Uuid>>())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The signal could not be raised: tried again after `after`, or given up (`give_up`) with
    /// the error kept for operators.
    pub async fn fallout_failed(
        &self,
        id: CommunicationId,
        error: &str,
        after: std::time::Duration,
        give_up: bool,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE fallout_signal SET last_error = $2,
                 status = CASE WHEN $4 THEN 'FAILED' ELSE status END,
                 next_try_at = now() + make_interval(secs => $3)
             WHERE communication_id = $1",
        )
        .bind(id.0)
        .bind(error)
        .bind(after.as_secs_f64())
        .bind(give_up)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_types_raise_fallout_and_alerts_never_do() {
        assert!(raises_fallout(CommunicationType::QuoteProposalDelivery));
        assert!(raises_fallout(CommunicationType::OrderConfirmation));
        assert!(raises_fallout(CommunicationType::ExternalWebhook));
        assert!(!raises_fallout(CommunicationType::FalloutAlert));
        assert!(!raises_fallout(CommunicationType::ApprovalReminder));
        assert!(!raises_fallout(CommunicationType::InternalDigest));
    }
}
