//! Email feedback (`POST /feedback/email`): bounces, complaints, unsubscribes, deliveries, opens
//! and clicks, in herald's documented JSON form or in Postmark's webhook format. Each piece of
//! feedback is applied once (by its id): the record moves on (BOUNCED, DELIVERED, …), the
//! attempt notes it, hard bounces and complaints put the address hash on the suppression list,
//! an unsubscribe opts the recipient out of the category, and a bounce of a critical
//! communication raises fallout through the outbox.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::ledger::{
    transition, CommunicationId, CommunicationStatus, Ledger, LedgerError, StatusChange,
};

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

    fn parse(text: &str) -> Option<FeedbackKind> {
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
    fn status(self) -> Option<CommunicationStatus> {
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

fn text<'a>(doc: &'a Value, field: &str) -> Option<&'a str> {
    doc.get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn when(doc: &Value, field: &str, problems: &mut Vec<String>) -> DateTime<Utc> {
    match text(doc, field).map(DateTime::parse_from_rfc3339) {
        Some(Ok(at)) => at.with_timezone(&Utc),
        Some(Err(e)) => {
            problems.push(format!("{field}: not RFC 3339 ({e})"));
            Utc::now()
        }
        None => Utc::now(),
    }
}

/// A provider's description, at most 500 characters, its addresses masked.
fn masked_detail(detail: &str) -> String {
    crate::policy::redact_addresses(&detail.chars().take(500).collect::<String>())
}

/// A communication id from `<id@domain>` (herald's Message-ID) or the bare id.
fn communication_of(text: &str) -> Option<CommunicationId> {
    let bare = text.trim().trim_start_matches('<').trim_end_matches('>');
    let id = bare.split_once('@').map(|(id, _)| id).unwrap_or(bare);
    id.parse().ok()
}

/// herald's documented form:
/// `{"feedbackId", "type": HARD_BOUNCE|SOFT_BOUNCE|COMPLAINT|UNSUBSCRIBE|DELIVERED|OPENED|CLICKED,
///   "communicationId" or "messageId" (the Message-ID herald set) or "providerMessageId",
///   "occurredAt" (RFC 3339, optional), "detail" (optional)}`.
pub fn parse_documented(doc: &Value) -> Result<Feedback, Vec<String>> {
    let mut problems = Vec::new();
    let feedback_id = text(doc, "feedbackId").map(str::to_string);
    if feedback_id.is_none() {
        problems.push(
            "feedbackId: required (the provider's event id; feedback is applied once)".into(),
        );
    }
    let kind = match text(doc, "type") {
        Some(t) => FeedbackKind::parse(t).or_else(|| {
            problems.push(format!("type: '{t}' is not HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, UNSUBSCRIBE, DELIVERED, OPENED or CLICKED"));
            None
        }),
        None => {
            problems.push("type: required".into());
            None
        }
    };
    let message = if let Some(id) = text(doc, "communicationId").or_else(|| text(doc, "messageId"))
    {
        communication_of(id)
            .map(MessageRef::Communication)
            .or_else(|| {
                problems.push(format!(
                    "communicationId/messageId: '{id}' names no communication"
                ));
                None
            })
    } else if let Some(id) = text(doc, "providerMessageId") {
        Some(MessageRef::ProviderMessageId(id.to_string()))
    } else {
        problems.push("communicationId, messageId or providerMessageId: one is required".into());
        None
    };
    let occurred_at = when(doc, "occurredAt", &mut problems);
    match (feedback_id, kind, message) {
        (Some(feedback_id), Some(kind), Some(message)) if problems.is_empty() => Ok(Feedback {
            feedback_id: format!("herald:{feedback_id}"),
            source: "herald",
            message,
            kind,
            occurred_at,
            detail: text(doc, "detail").map(masked_detail),
        }),
        _ => Err(problems),
    }
}

/// Postmark's webhooks (RecordType Bounce, SpamComplaint, Delivery, Open, Click,
/// SubscriptionChange). The message is found by the `communicationId` metadata herald sets
/// (`X-PM-Metadata-communicationId`), else by Postmark's MessageID on the attempt.
/// Records herald takes no action on (a re-subscription, inbound mail) give `Ok(None)`: they are
/// acknowledged, so that Postmark does not send them again.
pub fn parse_postmark(doc: &Value) -> Result<Option<Feedback>, Vec<String>> {
    let mut problems = Vec::new();
    let record_type = text(doc, "RecordType").unwrap_or_default();
    let (kind, at_field) = match record_type {
        "Bounce" => {
            let kind = match text(doc, "Type").unwrap_or_default() {
                "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated" => {
                    FeedbackKind::HardBounce
                }
                "SpamComplaint" | "SpamNotification" => FeedbackKind::Complaint,
                "Unsubscribe" => FeedbackKind::Unsubscribe,
                _ => FeedbackKind::SoftBounce,
            };
            (kind, "BouncedAt")
        }
        "SpamComplaint" => (FeedbackKind::Complaint, "BouncedAt"),
        "Delivery" => (FeedbackKind::Delivered, "DeliveredAt"),
        "Open" => (FeedbackKind::Opened, "ReceivedAt"),
        "Click" => (FeedbackKind::Clicked, "ReceivedAt"),
        "SubscriptionChange"
            if doc.get("SuppressSending").and_then(Value::as_bool) == Some(true) =>
        {
            (FeedbackKind::Unsubscribe, "ChangedAt")
        }
        other => {
            tracing::info!(
                recordType = other,
                "Postmark record acknowledged; herald takes no action on it"
            );
            return Ok(None);
        }
    };
    let metadata_id = doc
        .get("Metadata")
        .and_then(|m| m.get("communicationId"))
        .and_then(Value::as_str)
        .and_then(communication_of);
    let provider_id = text(doc, "MessageID");
    let message = match (metadata_id, provider_id) {
        (Some(id), _) => MessageRef::Communication(id),
        (None, Some(id)) => MessageRef::ProviderMessageId(id.to_string()),
        (None, None) => {
            return Err(vec![
                "MessageID or Metadata.communicationId: one is required".into(),
            ])
        }
    };
    let event_id = doc
        .get("ID")
        .map(|v| v.to_string())
        .or_else(|| provider_id.map(str::to_string))
        // Never one id for different records: a later bounce would pass for a duplicate.
        .unwrap_or_else(|| {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(doc.to_string().as_bytes())[..12])
        });
    let occurred_at = when(doc, at_field, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(Feedback {
        feedback_id: format!("postmark:{record_type}:{event_id}:{}", kind.as_str()),
        source: "postmark",
        message,
        kind,
        occurred_at,
        detail: text(doc, "Description")
            .or_else(|| text(doc, "SuppressionReason"))
            .map(masked_detail),
    }))
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

/// Applies feedback once.
pub async fn apply(ledger: &Ledger, feedback: &Feedback) -> Result<Applied, LedgerError> {
    let mut tx = ledger.pool().begin().await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_form_is_read_and_bad_input_named() {
        let id = CommunicationId::new();
        let fb = parse_documented(&json!({
            "feedbackId": "evt-1", "type": "HARD_BOUNCE",
            "messageId": format!("<{id}@herald.local>"), "occurredAt": "2026-11-26T10:00:00Z",
            "detail": "550 mailbox unknown"
        }))
        .unwrap();
        assert_eq!(fb.message, MessageRef::Communication(id));
        assert_eq!(fb.kind, FeedbackKind::HardBounce);
        assert_eq!(fb.feedback_id, "herald:evt-1");
        let problems = parse_documented(&json!({"type": "EXPLODED"})).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn postmark_records_map_to_feedback() {
        let id = CommunicationId::new();
        let bounce = parse_postmark(&json!({
            "RecordType": "Bounce", "ID": 4323372036854775807u64, "Type": "HardBounce", "TypeCode": 1,
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Email": "jane@customer.example",
            "BouncedAt": "2026-11-26T10:00:00Z", "Description": "The address jane@customer.example does not exist",
            "Metadata": {"communicationId": id.to_string()}
        }))
        .unwrap()
        .unwrap();
        assert_eq!(bounce.kind, FeedbackKind::HardBounce);
        assert_eq!(bounce.message, MessageRef::Communication(id));
        assert!(
            !bounce.detail.unwrap().contains("jane@"),
            "addresses are masked"
        );
        let soft = parse_postmark(
            &json!({"RecordType": "Bounce", "ID": 1, "Type": "Transient", "MessageID": "m-1"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(soft.kind, FeedbackKind::SoftBounce);
        assert_eq!(soft.message, MessageRef::ProviderMessageId("m-1".into()));
        let complaint =
            parse_postmark(&json!({"RecordType": "SpamComplaint", "ID": 2, "MessageID": "m-2"}))
                .unwrap()
                .unwrap();
        assert_eq!(complaint.kind, FeedbackKind::Complaint);
        let delivered = parse_postmark(&json!({"RecordType": "Delivery", "MessageID": "m-3", "DeliveredAt": "2026-11-26T10:00:00Z"}))
        .unwrap()
        .unwrap();
        assert_eq!(delivered.kind, FeedbackKind::Delivered);
        let unsubscribed = parse_postmark(&json!({"RecordType": "SubscriptionChange", "MessageID": "m-4", "SuppressSending": true}))
        .unwrap()
        .unwrap();
        assert_eq!(unsubscribed.kind, FeedbackKind::Unsubscribe);
        assert_eq!(parse_postmark(&json!({"RecordType": "Inbound"})), Ok(None));
        let no_ids = |detail: &str| {
            parse_postmark(&json!({"RecordType": "Bounce", "Type": "HardBounce",
                "Metadata": {"communicationId": id.to_string()}, "Description": detail}))
            .unwrap()
            .unwrap()
            .feedback_id
        };
        assert_ne!(
            no_ids("one"),
            no_ids("two"),
            "records without ids stay apart"
        );
    }
}
