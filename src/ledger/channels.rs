//! What the webhook and in-app channels add to the ledger: replaying a dead-lettered webhook,
//! and reading an inbox (a read notification is an OPENED communication).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::{
    transition, Admitted, Channel, Classification, CommunicationId, CommunicationStatus,
    CommunicationType, Ledger, LedgerError, MessageCategory, NewCommunication, Provenance,
    RecipientType, Rendering, RequestOutcome, ResolvedRecipient, StatusChange, Subject,
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

/// A notification of an inbox.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboxNotification {
    pub notification_id: Uuid,
    pub communication_type: String,
    pub title: String,
    pub body_text: String,
    pub body_html: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

const NOTIFICATION_COLUMNS: &str =
    "notification_id, communication_type, title, body_text, body_html, created_at, read_at";

fn notification(row: &sqlx::postgres::PgRow) -> InboxNotification {
    InboxNotification {
        notification_id: row.get("notification_id"),
        communication_type: row.get("communication_type"),
        title: row.get("title"),
        body_text: row.get("body_text"),
        body_html: row.get("body_html"),
        created_at: row.get("created_at"),
        read_at: row.get("read_at"),
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
        let channel: Channel = row
            .get::<String, _>("channel")
            .parse()
            .map_err(LedgerError::from)?;
        let status: CommunicationStatus = row
            .get::<String, _>("status")
            .parse()
            .map_err(LedgerError::from)?;
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
                .get::<String, _>("communication_type")
                .parse::<CommunicationType>()
                .map_err(LedgerError::from)?,
            category: row
                .get::<String, _>("message_category")
                .parse::<MessageCategory>()
                .map_err(LedgerError::from)?,
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

    /// An inbox, newest first (`unread_only`: not yet read).
    pub async fn inbox(
        &self,
        tenant_id: &str,
        recipient_ref: &str,
        unread_only: bool,
        limit: i64,
    ) -> Result<Vec<InboxNotification>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM inbox_notification
             WHERE tenant_id = $1 AND recipient_ref = $2 AND (NOT $3 OR read_at IS NULL)
             ORDER BY created_at DESC LIMIT $4"
        ))
        .bind(tenant_id)
        .bind(recipient_ref)
        .bind(unread_only)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(notification).collect())
    }

    /// Marks a notification read (once; reading again changes nothing) and its communication
    /// OPENED. Returns None when the tenant has no such notification.
    pub async fn mark_read(
        &self,
        tenant_id: &str,
        id: Uuid,
    ) -> Result<Option<InboxNotification>, LedgerError> {
        let mut tx = self.pool().begin().await?;
        let first_read = sqlx::query(
            "UPDATE inbox_notification SET read_at = now()
             WHERE notification_id = $1 AND tenant_id = $2 AND read_at IS NULL",
        )
        .bind(id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if first_read {
            let status: String = sqlx::query_scalar(
                "SELECT status FROM communication_record WHERE communication_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if status
                .parse::<CommunicationStatus>()?
                .can_become(CommunicationStatus::Opened)
            {
                transition(
                    &mut tx,
                    CommunicationId(id),
                    CommunicationStatus::Opened,
                    StatusChange::default(),
                )
                .await?;
            }
        }
        let row = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM inbox_notification
             WHERE notification_id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.as_ref().map(notification))
    }
}
