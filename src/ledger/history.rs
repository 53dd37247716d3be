//! History: a communication with its attempts, decisions, artifacts, events, children and
//! resends, as the API, operators and tests read it; and the tenant's communications as a list,
//! newest first, in keyset pages (`listing`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{
    AttemptStatus, Channel, CommunicationId, CommunicationStatus, CommunicationType,
    DecisionOutcome, FailureClass, Ledger, LedgerError, RecipientType,
};

pub use super::listing::{Cursor, CursorError, HistoryFilter, Page, Summary};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationView {
    pub communication_id: CommunicationId,
    pub tenant_id: String,
    pub communication_type: CommunicationType,
    pub status: CommunicationStatus,
    pub idempotency_key: String,
    pub subject_type: String,
    pub subject_id: String,
    pub quote_id: Option<String>,
    pub order_id: Option<String>,
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
    /// The fan-out parent this record is one recipient of.
    pub parent_id: Option<CommunicationId>,
    /// The communication this one resends (or replays).
    pub resend_of: Option<CommunicationId>,
    pub requested_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub final_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<AttemptView>,
}

/// One decision of the intake, as history shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub check: String,
    pub outcome: DecisionOutcome,
    pub reason_code: String,
    pub detail: String,
}

/// One delivery attempt: the provider's summary of it, never its payloads.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt_no: i32,
    /// The provider the attempt went through (`smtp`, `postmark`, `webhook`, `inbox`).
    pub provider: String,
    pub status: AttemptStatus,
    pub failure_class: Option<FailureClass>,
    pub provider_message_id: Option<String>,
    pub response_code: Option<i32>,
    pub response_summary: Option<String>,
    pub attempted_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A document a communication carries: its id and role, and the hash of the bytes attached
/// (a portal link has none). Never a signed link.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactView {
    pub artifact_id: String,
    pub role: String,
    pub sent_bytes_hash: Option<String>,
}

/// An event of the communication in the outbox: what it was and whether it was published. The
/// payload is left out: it holds no raw address, but it repeats the record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: i32,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

/// A communication's whole history: the record with its attempts, the intake's decisions, the
/// documents it carries, its outbox events, its children (a fan-out parent's recipients) and
/// the communications that resend it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationDetail {
    #[serde(flatten)]
    pub record: CommunicationView,
    pub decisions: Vec<DecisionView>,
    pub artifacts: Vec<ArtifactView>,
    pub events: Vec<EventView>,
    pub children: Vec<CommunicationView>,
    /// The ids of the communications made as resends (or replays) of this one, oldest first.
    pub resends: Vec<CommunicationId>,
}

impl Ledger {
    /// A tenant's communication with its whole history; another tenant's is `None`, as one that
    /// does not exist.
    pub async fn detail(
        &self,
        tenant_id: &str,
        id: CommunicationId,
    ) -> Result<Option<CommunicationDetail>, LedgerError> {
        let Some(record) = self.get(tenant_id, id).await? else {
            return Ok(None);
        };
        let artifacts = sqlx::query(
            "SELECT artifact_id, artifact_role, sent_bytes_hash FROM communication_artifact_link
             WHERE communication_id = $1 ORDER BY artifact_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| ArtifactView {
            artifact_id: row.get("artifact_id"),
            role: row.get("artifact_role"),
            sent_bytes_hash: row.get("sent_bytes_hash"),
        })
        .collect();
        let events = sqlx::query(
            "SELECT outbox_id, event_type, event_version, status, created_at, published_at
             FROM communication_outbox WHERE aggregate_id = $1 AND tenant_id = $2
             ORDER BY created_at, outbox_id",
        )
        .bind(id.0)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| EventView {
            event_id: row.get("outbox_id"),
            event_type: row.get("event_type"),
            event_version: row.get("event_version"),
            status: row.get("status"),
            created_at: row.get("created_at"),
            published_at: row.get("published_at"),
        })
        .collect();
        let resends = sqlx::query_scalar(
            "SELECT communication_id FROM communication_record WHERE resend_of = $1 AND tenant_id = $2
             ORDER BY created_at, communication_id",
        )
        .bind(id.0)
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(CommunicationId)
        .collect();
        Ok(Some(CommunicationDetail {
            decisions: self.decisions(id).await?,
            children: self.children(tenant_id, id).await?,
            record,
            artifacts,
            events,
            resends,
        }))
    }

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
            "SELECT attempt_no, provider, status, failure_class, provider_message_id, response_code, response_summary, attempted_at, completed_at
             FROM communication_delivery_attempt WHERE communication_id = $1 ORDER BY attempt_no",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|a| {
            Ok(AttemptView {
                attempt_no: a.get("attempt_no"),
                provider: a.get("provider"),
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
            subject_type: row.get("subject_type"),
            subject_id: row.get("subject_id"),
            quote_id: row.get("quote_id"),
            order_id: row.get("order_id"),
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
            parent_id: row.get::<Option<Uuid>, _>("parent_id").map(CommunicationId),
            resend_of: row.get::<Option<Uuid>, _>("resend_of").map(CommunicationId),
            requested_at: row.get("requested_at"),
            sent_at: row.get("sent_at"),
            final_at: row.get("final_at"),
            created_at: row.get("created_at"),
            attempts,
        }))
    }
}
