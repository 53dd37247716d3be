//! The in-app channel: a notification stored in the recipient's inbox (read through
//! `GET /inbox/{recipientRef}`). The inbox is this channel's provider; storing is idempotent
//! per communication, so a retried attempt never makes a second notification.

use sqlx::PgPool;

use crate::camunda::worker::BoxFuture;
use crate::ledger::Channel;

use super::adapter::{ChannelAdapter, DeliveryOutcome, OutboundMessage};
use super::failure::FailureClass;

pub struct InAppAdapter {
    pool: PgPool,
}

impl InAppAdapter {
    pub fn new(pool: PgPool) -> InAppAdapter {
        InAppAdapter { pool }
    }
}

impl ChannelAdapter for InAppAdapter {
    fn channel(&self) -> Channel {
        Channel::InApp
    }

    fn send<'a>(&'a self, message: &'a OutboundMessage) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(async move {
            // A template that keeps bodies encrypted keeps its notifications sealed too: the
            // inbox opens them when it is read.
            let (title, text, html) = match &message.retained {
                Some(_) => ("", "", ""),
                None => (
                    message.subject.as_str(),
                    message.text.as_str(),
                    message.html.as_str(),
                ),
            };
            let sealed = message.retained.as_ref();
            let stored = sqlx::query(
                "INSERT INTO inbox_notification
                     (notification_id, tenant_id, recipient_ref, communication_type, title, body_text, body_html,
                      body_key_id, body_nonce, body_ciphertext)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (notification_id) DO NOTHING",
            )
            .bind(message.communication_id.0)
            .bind(&message.tenant_id)
            .bind(&message.address)
            .bind(message.communication_type)
            .bind(title)
            .bind(text)
            .bind(html)
            .bind(sealed.map(|s| s.key_id.as_str()))
            .bind(sealed.map(|s| s.nonce.as_slice()))
            .bind(sealed.map(|s| s.ciphertext.as_slice()))
            .execute(&self.pool)
            .await;
            match stored {
                Ok(_) => DeliveryOutcome::Accepted {
                    provider_message_id: Some(message.communication_id.to_string()),
                    response_code: None,
                    summary: "stored in the inbox".into(),
                },
                Err(e) => DeliveryOutcome::Failed {
                    class: FailureClass::ProviderUnavailable,
                    response_code: None,
                    summary: format!("the inbox could not be written: {e}"),
                    retry_after: None,
                },
            }
        })
    }
}
