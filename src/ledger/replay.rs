//! Replay of a dead-lettered webhook: a new record linked to the original, with the same
//! payload and the same `webhook-id`, once its endpoint is active again.

use serde_json::Value;
use sqlx::Row;

use super::{
    Admitted, Channel, Classification, CommunicationId, CommunicationStatus, Ledger, LedgerError,
    NewCommunication, Provenance, RecipientType, Rendering, RequestOutcome, ResolvedRecipient,
    Subject,
};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("communication {0} not found")]
    NotFound(CommunicationId),
    /// The communication cannot be replayed (409), with the reason.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<sqlx::Error> for ReplayError {
    fn from(e: sqlx::Error) -> Self {
        ReplayError::Ledger(LedgerError::Database(e))
    }
}

impl Ledger {
    /// Replays a dead-lettered webhook (FAILED_FINAL on WEBHOOK): a new record linked to the
    /// original, with the same payload and the same `webhook-id`, so receivers that saw it
    /// can tell. The endpoint must be active again.
    pub async fn replay(
        &self,
        tenant_id: &str,
        id: CommunicationId,
        idempotency_key: Option<String>,
    ) -> Result<RequestOutcome, ReplayError> {
        let row = sqlx::query(
            "SELECT r.*, j.render_payload, COALESCE(r.resend_of, r.communication_id) AS origin_id,
                    (SELECT count(*) FROM communication_record x
                      WHERE x.resend_of = COALESCE(r.resend_of, r.communication_id)) AS replays
             FROM communication_record r LEFT JOIN delivery_job j USING (communication_id)
             WHERE r.communication_id = $1",
        )
        .bind(id.0)
        .fetch_optional(self.pool())
        .await?
        .ok_or(ReplayError::NotFound(id))?;
        // Another tenant's communication does not exist for this one.
        if row.get::<String, _>("tenant_id") != tenant_id {
            return Err(ReplayError::NotFound(id));
        }
        let channel: Channel = row.try_get("channel").map_err(LedgerError::from)?;
        let status: CommunicationStatus = row.try_get("status").map_err(LedgerError::from)?;
        if channel != Channel::Webhook {
            return Err(ReplayError::Refused(format!(
                "only webhooks are replayed; this is {channel} (resend it instead)"
            )));
        }
        if status != CommunicationStatus::FailedFinal {
            return Err(ReplayError::Refused(format!(
                "only a dead-lettered (FAILED_FINAL) webhook is replayed; this one is {status}"
            )));
        }
        let Some(payload) = row.get::<Option<Value>, _>("render_payload") else {
            return Err(ReplayError::Refused(
                "the payload of this webhook was not kept: it cannot be replayed".into(),
            ));
        };
        let recipient_ref: String = row.get("recipient_ref");
        let subscription_id = recipient_ref
            .strip_prefix("webhook:")
            .ok_or_else(|| ReplayError::Refused("not a webhook subscription".into()))?
            .to_string();
        let subscription_status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM webhook_subscription WHERE subscription_id = $1 AND tenant_id = $2",
        )
        .bind(&subscription_id)
        .bind(row.get::<String, _>("tenant_id"))
        .fetch_optional(self.pool())
        .await?;
        match subscription_status.as_deref() {
            Some("ACTIVE") => {}
            Some(other) => {
                return Err(ReplayError::Refused(format!(
                    "endpoint {subscription_id} is {other}: enable it first"
                )))
            }
            None => {
                return Err(ReplayError::Refused(format!(
                    "webhook subscription {subscription_id} no longer exists"
                )))
            }
        }
        let origin_id = CommunicationId(row.get("origin_id"));
        let replays: i64 = row.get("replays");
        let class = Classification {
            communication_type: row
                .try_get("communication_type")
                .map_err(LedgerError::from)?,
            category: row.try_get("message_category").map_err(LedgerError::from)?,
        };
        let subject = Subject::new(
            row.get::<String, _>("subject_type"),
            row.get::<String, _>("subject_id"),
        )
        .of(row.get("quote_id"), row.get("order_id"));
        let admitted = Admitted {
            address_hash: row.get("address_hash"),
            address_masked: row.get("address_masked"),
            ..Admitted::unreachable(ResolvedRecipient {
                recipient_type: RecipientType::WebhookSubscription,
                recipient_ref,
                channel,
                address: Some(subscription_id),
                locale: None,
                timezone: None,
                quiet_hours: None,
                market: None,
            })
        };
        let rendering = Rendering {
            template_family: row.get("template_family"),
            template_version: row.get("template_version"),
            payload,
        };
        let provenance = Provenance::new(
            "api:replay",
            row.get::<String, _>("correlation_id"),
            format!("replay-of:{id}"),
        )
        .resend_of(origin_id);
        let new = NewCommunication::new(
            row.get::<String, _>("tenant_id"),
            idempotency_key.unwrap_or_else(|| format!("replay:{origin_id}:{}", replays + 1)),
            class,
            subject,
            admitted,
            rendering,
            provenance,
        );
        Ok(self.request(&new).await?)
    }
}
