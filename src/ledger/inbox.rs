//! Inboxes of the in-app channel: a recipient's notifications, and reading one (a read
//! notification is an OPENED communication).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::content::RetainedBody;
use crate::keyring::{KeyError, Keyring, Sealed};

use super::{
    transition, CommunicationId, CommunicationStatus, CommunicationType, Ledger, LedgerError,
    StatusChange,
};

/// A notification of an inbox.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxNotification {
    pub notification_id: Uuid,
    pub communication_type: CommunicationType,
    pub title: String,
    pub body_text: String,
    pub body_html: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

const NOTIFICATION_COLUMNS: &str =
    "notification_id, communication_type, title, body_text, body_html, created_at, read_at,
     body_key_id, body_nonce, body_ciphertext";

/// A notification as read: a sealed one (a template that keeps bodies encrypted) opened.
fn notification(
    row: &sqlx::postgres::PgRow,
    keyring: Option<&Keyring>,
) -> Result<InboxNotification, LedgerError> {
    let sealed: Option<(String, Vec<u8>, Vec<u8>)> = match (
        row.try_get("body_key_id")?,
        row.try_get("body_nonce")?,
        row.try_get("body_ciphertext")?,
    ) {
        (Some(key_id), Some(nonce), Some(ciphertext)) => Some((key_id, nonce, ciphertext)),
        _ => None,
    };
    let (title, body_text, body_html) = match sealed {
        Some((key_id, nonce, ciphertext)) => {
            let keyring = keyring.ok_or(KeyError::NoKeyring)?;
            let body = RetainedBody::open(
                keyring,
                &Sealed {
                    key_id,
                    nonce,
                    ciphertext,
                },
            )?;
            (body.subject, body.text, body.html)
        }
        None => (row.get("title"), row.get("body_text"), row.get("body_html")),
    };
    Ok(InboxNotification {
        notification_id: row.get("notification_id"),
        communication_type: row.try_get("communication_type")?,
        title,
        body_text,
        body_html,
        created_at: row.get("created_at"),
        read_at: row.get("read_at"),
    })
}

impl Ledger {
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
        rows.iter()
            .map(|row| notification(row, self.keyring.as_ref()))
            .collect()
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
            let status: CommunicationStatus = sqlx::query_scalar(
                "SELECT status FROM communication_record WHERE communication_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if status.can_become(CommunicationStatus::Opened) {
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
        row.as_ref()
            .map(|row| notification(row, self.keyring.as_ref()))
            .transpose()
    }
}
