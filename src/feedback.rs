//! Email feedback (`POST /feedback/email`) as providers write it: bounces, complaints,
//! unsubscribes, deliveries, opens and clicks, in herald's documented JSON form or in
//! Postmark's webhook format, read into one [`Feedback`]. The ledger applies it once
//! ([`crate::ledger::Ledger::apply_feedback`]).

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use crate::ledger::feedback::{Applied, Feedback, FeedbackKind, MessageRef};
use crate::ledger::CommunicationId;

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
