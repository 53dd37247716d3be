//! History: a communication with its attempts, as the API, operators and tests read it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{
    AttemptStatus, Channel, CommunicationId, CommunicationStatus, CommunicationType,
    DecisionOutcome, FailureClass, Ledger, LedgerError, RecipientType,
};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationView {
    pub communication_id: CommunicationId,
    pub tenant_id: String,
    pub communication_type: CommunicationType,
    pub status: CommunicationStatus,
    pub idempotency_key: String,
    pub recipient_type: RecipientType,
    pub recipient_ref: String,
    pub address_masked: Option<String>,
    pub channel: Channel,
    pub template_family: String,
    pub template_version: String,
    pub rendered_content_hash: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub correlation_id: String,
    pub business_key: Option<String>,
    pub process_instance_id: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: Vec<AttemptView>,
}

/// One decision of the intake, as history shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub check: String,
    pub outcome: DecisionOutcome,
    pub reason_code: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt_no: i32,
    pub status: AttemptStatus,
    pub failure_class: Option<FailureClass>,
    pub provider_message_id: Option<String>,
    pub response_code: Option<i32>,
    pub response_summary: Option<String>,
    pub attempted_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Ledger {
    /// The children of a tenant's parent communication.
    pub async fn children(
        &self,
        tenant_id: &str,
        parent: CommunicationId,
    ) -> Result<Vec<CommunicationView>, LedgerError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT communication_id FROM communication_record WHERE parent_id = $1 AND tenant_id = $2
             ORDER BY recipient_ref",
        )
        .bind(parent.0)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(view) = self.get(tenant_id, CommunicationId(id)).await? {
                views.push(view);
            }
        }
        Ok(views)
    }

    /// The intake's decisions about a communication, in the order they were taken.
    pub async fn decisions(&self, id: CommunicationId) -> Result<Vec<DecisionView>, LedgerError> {
        sqlx::query(
            "SELECT check_name, outcome, reason_code, detail FROM communication_decision
             WHERE communication_id = $1 ORDER BY decided_at, decision_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| {
            Ok(DecisionView {
                check: row.get("check_name"),
                outcome: row.try_get("outcome")?,
                reason_code: row.get("reason_code"),
                detail: row.get("detail"),
            })
        })
        .collect()
    }

    /// The artifacts a communication carries.
    pub async fn artifact_ids(&self, id: CommunicationId) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT artifact_id FROM communication_artifact_link WHERE communication_id = $1 ORDER BY artifact_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A tenant's communication with its attempts; another tenant's is `None`, as one that does
    /// not exist.
    pub async fn get(
        &self,
        tenant_id: &str,
        id: CommunicationId,
    ) -> Result<Option<CommunicationView>, LedgerError> {
        let Some(row) = sqlx::query(
            "SELECT * FROM communication_record WHERE communication_id = $1 AND tenant_id = $2",
        )
        .bind(id.0)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT attempt_no, status, failure_class, provider_message_id, response_code, response_summary, attempted_at, completed_at
             FROM communication_delivery_attempt WHERE communication_id = $1 ORDER BY attempt_no",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|a| {
            Ok(AttemptView {
                attempt_no: a.get("attempt_no"),
                status: a.try_get("status")?,
                failure_class: a.try_get("failure_class")?,
                provider_message_id: a.get("provider_message_id"),
                response_code: a.get("response_code"),
                response_summary: a.get("response_summary"),
                attempted_at: a.get("attempted_at"),
                completed_at: a.get("completed_at"),
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
        Ok(Some(CommunicationView {
            communication_id: id,
            tenant_id: row.get("tenant_id"),
            communication_type: row.try_get("communication_type")?,
            status: row.try_get("status")?,
            idempotency_key: row.get("idempotency_key"),
            recipient_type: row.try_get("recipient_type")?,
            recipient_ref: row.get("recipient_ref"),
            address_masked: row.get("address_masked"),
            channel: row.try_get("channel")?,
            template_family: row.get("template_family"),
            template_version: row.get("template_version"),
            rendered_content_hash: row.get("rendered_content_hash"),
            failure_code: row.get("failure_code"),
            failure_message: row.get("failure_message"),
            correlation_id: row.get("correlation_id"),
            business_key: row.get("business_key"),
            process_instance_id: row.get("process_instance_id"),
            requested_at: row.get("requested_at"),
            sent_at: row.get("sent_at"),
            attempts,
        }))
    }
}
