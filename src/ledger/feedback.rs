//! Email feedback as the ledger records it: which message it is about, what the provider
//! reports, and its application (once per feedback id) to the record, its attempt, the
//! suppression list and the recipient's preferences.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{transition, CommunicationId, CommunicationStatus, Ledger, LedgerError, StatusChange};

/// What the provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackKind {
    HardBounce,
    SoftBounce,
    Complaint,
    Unsubscribe,
    Delivered,
    Opened,
    Clicked,
}

impl FeedbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::HardBounce => "HARD_BOUNCE",
            FeedbackKind::SoftBounce => "SOFT_BOUNCE",
            FeedbackKind::Complaint => "COMPLAINT",
            FeedbackKind::Unsubscribe => "UNSUBSCRIBE",
            FeedbackKind::Delivered => "DELIVERED",
            FeedbackKind::Opened => "OPENED",
            FeedbackKind::Clicked => "CLICKED",
        }
    }

    pub fn parse(text: &str) -> Option<FeedbackKind> {
        [
            FeedbackKind::HardBounce,
            FeedbackKind::SoftBounce,
            FeedbackKind::Complaint,
            FeedbackKind::Unsubscribe,
            FeedbackKind::Delivered,
            FeedbackKind::Opened,
            FeedbackKind::Clicked,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }

    /// The status the communication moves to, if any.
    pub fn status(self) -> Option<CommunicationStatus> {
        match self {
            FeedbackKind::HardBounce => Some(CommunicationStatus::Bounced),
            // A complaint comes on mail that arrived: the address is suppressed, the message
            // stays delivered (a complaint is no delivery failure and raises no fallout).
            FeedbackKind::Complaint => None,
            FeedbackKind::Delivered => Some(CommunicationStatus::Delivered),
            FeedbackKind::Opened => Some(CommunicationStatus::Opened),
            FeedbackKind::Clicked => Some(CommunicationStatus::Clicked),
            FeedbackKind::SoftBounce | FeedbackKind::Unsubscribe => None,
        }
    }
}

/// Which message the feedback is about.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageRef {
    Communication(CommunicationId),
    /// The provider's id, as kept on the attempt.
    ProviderMessageId(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub feedback_id: String,
    pub source: &'static str,
    pub message: MessageRef,
    pub kind: FeedbackKind,
    pub occurred_at: DateTime<Utc>,
    pub detail: Option<String>,
}

/// How the feedback was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub communication_id: Option<CommunicationId>,
    pub status: Option<String>,
    pub duplicate: bool,
    /// What changed: `BOUNCED`, `SUPPRESSION_LIST`, `OPTED_OUT`, …
    pub effects: Vec<String>,
}

impl Ledger {
    /// Applies feedback once: the record moves on (BOUNCED, DELIVERED, …), the attempt notes it,
    /// hard bounces and complaints put the address hash on the suppression list, an unsubscribe
    /// opts the recipient out of the category; a bounce of a critical communication raises
    /// fallout through the outbox.
    pub async fn apply_feedback(&self, feedback: &Feedback) -> Result<Applied, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let record = match &feedback.message {
        MessageRef::Communication(id) => sqlx::query(
            "SELECT communication_id, tenant_id, status, address_hash, recipient_ref, message_category, channel, is_parent
             FROM communication_record WHERE communication_id = $1 FOR UPDATE",
        )
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?,
        MessageRef::ProviderMessageId(pid) => sqlx::query(
            "SELECT r.communication_id, r.tenant_id, r.status, r.address_hash, r.recipient_ref, r.message_category, r.channel,
                    r.is_parent
             FROM communication_record r JOIN communication_delivery_attempt a USING (communication_id)
             WHERE a.provider_message_id = $1 ORDER BY a.attempted_at DESC LIMIT 1 FOR UPDATE OF r",
        )
        .bind(pid)
        .fetch_optional(&mut *tx)
        .await?,
    };
        let id = record
            .as_ref()
            .map(|r| CommunicationId(r.get("communication_id")));
        let inserted = sqlx::query(
        "INSERT INTO communication_feedback (feedback_id, communication_id, tenant_id, source, kind, occurred_at, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (feedback_id) DO NOTHING",
    )
    .bind(&feedback.feedback_id)
    .bind(id.map(|i| i.0))
    .bind(record.as_ref().map(|r| r.get::<String, _>("tenant_id")))
    .bind(feedback.source)
    .bind(feedback.kind.as_str())
    .bind(feedback.occurred_at)
    .bind(&feedback.detail)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
        let Some(record) = record else {
            tx.commit().await?;
            tracing::warn!(feedbackId = %feedback.feedback_id, kind = feedback.kind.as_str(), "feedback for an unknown message kept unmatched");
            return Ok(Applied {
                communication_id: None,
                status: None,
                duplicate: !inserted,
                effects: Vec::new(),
            });
        };
        let id = CommunicationId(record.get("communication_id"));
        let mut status: String = record.get("status");
        // Email feedback is about one email: not a parent (which sent nothing itself), not another
        // channel's message. It is kept, and changes nothing.
        if record.get::<bool, _>("is_parent") || record.get::<String, _>("channel") != "EMAIL" {
            tx.commit().await?;
            tracing::warn!(communicationId = %id, feedbackId = %feedback.feedback_id, "email feedback about a communication that is no single email: kept, not applied");
            return Ok(Applied {
                communication_id: Some(id),
                status: Some(status),
                duplicate: !inserted,
                effects: Vec::new(),
            });
        }
        if !inserted {
            tx.commit().await?;
            return Ok(Applied {
                communication_id: Some(id),
                status: Some(status),
                duplicate: true,
                effects: Vec::new(),
            });
        }
        let mut effects = Vec::new();
        sqlx::query(
            "UPDATE communication_delivery_attempt SET feedback = $2, feedback_at = $3
         WHERE communication_id = $1 AND attempt_no = (
             SELECT max(attempt_no) FROM communication_delivery_attempt
             WHERE communication_id = $1 AND status = 'ACCEPTED')",
        )
        .bind(id.0)
        .bind(feedback.kind.as_str())
        .bind(feedback.occurred_at)
        .execute(&mut *tx)
        .await?;
        if let Some(to) = feedback.kind.status() {
            let from: CommunicationStatus = status.parse()?;
            if from.can_become(to) {
                let change = match to {
                    CommunicationStatus::Bounced => StatusChange {
                        failure_code: Some(feedback.kind.as_str().into()),
                        failure_message: feedback.detail.clone(),
                        ..StatusChange::default()
                    },
                    _ => StatusChange::default(),
                };
                transition(&mut tx, id, to, change).await?;
                status = to.as_str().to_string();
                effects.push(to.as_str().to_string());
            }
        }
        let tenant_id: String = record.get("tenant_id");
        if matches!(
            feedback.kind,
            FeedbackKind::HardBounce | FeedbackKind::Complaint
        ) {
            if let Some(hash) = record.get::<Option<String>, _>("address_hash") {
                sqlx::query(
                "INSERT INTO suppression_entry (tenant_id, address_hash, reason) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&tenant_id)
            .bind(hash)
            .bind(feedback.kind.as_str())
            .execute(&mut *tx)
            .await?;
                effects.push("SUPPRESSION_LIST".into());
            }
        }
        if feedback.kind == FeedbackKind::Unsubscribe {
            sqlx::query(
            "INSERT INTO recipient_preference (tenant_id, recipient_ref, category, channel, opted_in, source)
             VALUES ($1, $2, $3, $4, false, 'feedback')
             ON CONFLICT (tenant_id, recipient_ref, category, channel)
             DO UPDATE SET opted_in = false, source = 'feedback', updated_at = now()",
        )
        .bind(&tenant_id)
        .bind(record.get::<String, _>("recipient_ref"))
        .bind(record.get::<String, _>("message_category"))
        .bind(record.get::<String, _>("channel"))
        .execute(&mut *tx)
        .await?;
            effects.push("OPTED_OUT".into());
        }
        tx.commit().await?;
        tracing::info!(communicationId = %id, kind = feedback.kind.as_str(), source = feedback.source, ?effects, "feedback applied");
        Ok(Applied {
            communication_id: Some(id),
            status: Some(status),
            duplicate: false,
            effects,
        })
    }
}
