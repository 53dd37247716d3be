//! What a resend starts from: the original record as the intake needs it to make a new one
//! (its kind, subject, recipient, template, the documents it carries), and its content while
//! the delivery job still holds it (a job's payload and address are erased once the
//! communication reaches a final state; only a webhook's payload is kept).

use serde_json::Value;
use sqlx::Row;

use super::{
    Channel, Classification, CommunicationId, CommunicationStatus, Ledger, LedgerError,
    RecipientType, Subject,
};

/// The original of a resend.
#[derive(Debug, Clone)]
pub struct ResendSource {
    pub id: CommunicationId,
    pub class: Classification,
    pub status: CommunicationStatus,
    pub channel: Channel,
    pub is_parent: bool,
    pub subject: Subject,
    pub recipient_type: RecipientType,
    pub recipient_ref: String,
    pub template_family: String,
    pub template_version: String,
    pub rule_ref: Option<String>,
    pub correlation_id: String,
    pub priority: Option<i32>,
    /// The render payload, while the delivery job holds it.
    pub payload: Option<Value>,
    /// The raw address, while the delivery job holds it.
    pub address: Option<String>,
    pub locale: Option<String>,
    /// The files the job attaches (empty for a portal link).
    pub attachments: Vec<crate::artifacts::AttachmentRef>,
    /// (artifact id, role) of the documents it carries.
    pub artifacts: Vec<(String, String)>,
}

impl Ledger {
    /// The tenant's communication `id` as a resend starts from it; another tenant's is `None`,
    /// as one that does not exist.
    pub async fn resend_source(
        &self,
        tenant_id: &str,
        id: CommunicationId,
    ) -> Result<Option<ResendSource>, LedgerError> {
        let Some(row) = sqlx::query(
            "SELECT r.*, j.render_payload, j.recipient_address, j.locale, j.priority,
                    COALESCE(j.attachments, '[]'::jsonb) AS job_attachments
             FROM communication_record r LEFT JOIN delivery_job j USING (communication_id)
             WHERE r.communication_id = $1 AND r.tenant_id = $2",
        )
        .bind(id.0)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let artifacts = sqlx::query(
            "SELECT artifact_id, artifact_role FROM communication_artifact_link
             WHERE communication_id = $1 ORDER BY artifact_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get("artifact_id"), r.get("artifact_role")))
        .collect();
        let attachments =
            serde_json::from_value(row.get::<Value, _>("job_attachments")).unwrap_or_default();
        Ok(Some(ResendSource {
            id,
            class: Classification {
                communication_type: row.try_get("communication_type")?,
                category: row.try_get("message_category")?,
            },
            status: row.try_get("status")?,
            channel: row.try_get("channel")?,
            is_parent: row.get("is_parent"),
            subject: Subject::new(
                row.get::<String, _>("subject_type"),
                row.get::<String, _>("subject_id"),
            )
            .of(row.get("quote_id"), row.get("order_id")),
            recipient_type: row.try_get("recipient_type")?,
            recipient_ref: row.get("recipient_ref"),
            template_family: row.get("template_family"),
            template_version: row.get("template_version"),
            rule_ref: row.get("rule_ref"),
            correlation_id: row.get("correlation_id"),
            priority: row.get("priority"),
            payload: row.get("render_payload"),
            address: row.get("recipient_address"),
            locale: row.get("locale"),
            attachments,
            artifacts,
        }))
    }
}
