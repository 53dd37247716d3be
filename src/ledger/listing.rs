//! A tenant's communications as a list, newest first, in keyset pages.
//!
//! The order is `(created_at, communication_id)` descending: `created_at` is the time the
//! record's transaction started and never changes, `communication_id` (a UUIDv7) breaks ties,
//! so the order is total and stable. A page continues strictly after the [`Cursor`] of the
//! previous page's last row; what is guaranteed across pages:
//!
//! - every row that existed when the first page was read, matches the filters and keeps
//!   matching them, appears exactly once (none skipped, none repeated), whatever is inserted
//!   meanwhile;
//! - a row inserted while the pages are read appears at most once: not at all when it sorts
//!   before the cursor (newer than the rows already read, the usual case), once when its
//!   transaction started before the cursor's row but committed later (an earlier `created_at`);
//! - a row whose status changes while the pages are read can leave or enter a `status` filter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::{
    Channel, CommunicationId, CommunicationStatus, CommunicationType, Ledger, LedgerError,
    RecipientType,
};

/// The position after a row: its `created_at` and id. Opaque to clients: base64url of a version
/// byte, the time in microseconds and the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: CommunicationId,
}

/// Why a cursor is refused (the API answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("cursor: not base64url")]
    Encoding,
    #[error("cursor: not a cursor of this list (wrong length or version)")]
    Shape,
    #[error("cursor: the time it holds is out of range")]
    Time,
}

const CURSOR_VERSION: u8 = 1;
const CURSOR_BYTES: usize = 1 + 8 + 16;

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_BYTES);
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.0.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses a cursor strictly: base64url without padding, exactly one version-1 cursor.
    pub fn parse(text: &str) -> Result<Cursor, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Encoding)?;
        if bytes.len() != CURSOR_BYTES || bytes[0] != CURSOR_VERSION {
            return Err(CursorError::Shape);
        }
        let micros = i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let created_at = DateTime::from_timestamp_micros(micros).ok_or(CursorError::Time)?;
        let id = Uuid::from_slice(&bytes[9..]).map_err(|_| CursorError::Shape)?;
        Ok(Cursor {
            created_at,
            id: CommunicationId(id),
        })
    }
}

/// What to list: a tenant's communications, filtered, `limit` at a time, after `after`.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub status: Option<CommunicationStatus>,
    pub communication_type: Option<CommunicationType>,
    pub channel: Option<Channel>,
    pub quote_id: Option<String>,
    pub order_id: Option<String>,
    pub recipient_ref: Option<String>,
    /// Made at or after this time (`created_at`).
    pub from: Option<DateTime<Utc>>,
    /// Made before this time (`created_at`).
    pub to: Option<DateTime<Utc>>,
    pub after: Option<Cursor>,
}

/// One communication in a list: the record without its attempts and history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub communication_id: CommunicationId,
    pub communication_type: CommunicationType,
    pub status: CommunicationStatus,
    pub channel: Channel,
    pub recipient_type: RecipientType,
    pub recipient_ref: String,
    pub address_masked: Option<String>,
    pub subject_type: String,
    pub subject_id: String,
    pub quote_id: Option<String>,
    pub order_id: Option<String>,
    pub template_family: String,
    pub template_version: String,
    pub failure_code: Option<String>,
    pub parent_id: Option<CommunicationId>,
    pub resend_of: Option<CommunicationId>,
    pub requested_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A page of a list, and the cursor of the next one when there may be more.
#[derive(Debug, Clone)]
pub struct Page {
    pub data: Vec<Summary>,
    pub next: Option<Cursor>,
}

impl Ledger {
    /// A page of the tenant's communications, newest first (see the module's notes for what is
    /// guaranteed across pages). `limit` is at least 1.
    pub async fn list(
        &self,
        tenant_id: &str,
        filter: &HistoryFilter,
        limit: u32,
    ) -> Result<Page, LedgerError> {
        let limit = limit.max(1);
        let rows = sqlx::query(
            "SELECT communication_id, communication_type, status, channel, recipient_type, recipient_ref,
                    address_masked, subject_type, subject_id, quote_id, order_id, template_family,
                    template_version, failure_code, parent_id, resend_of, requested_at, sent_at, created_at
             FROM communication_record
             WHERE tenant_id = $1
               AND ($2::text IS NULL OR status = $2)
               AND ($3::text IS NULL OR communication_type = $3)
               AND ($4::text IS NULL OR channel = $4)
               AND ($5::text IS NULL OR quote_id = $5)
               AND ($6::text IS NULL OR order_id = $6)
               AND ($7::text IS NULL OR recipient_ref = $7)
               AND ($8::timestamptz IS NULL OR created_at >= $8)
               AND ($9::timestamptz IS NULL OR created_at < $9)
               AND ($10::timestamptz IS NULL OR (created_at, communication_id) < ($10, $11::uuid))
             ORDER BY created_at DESC, communication_id DESC
             LIMIT $12",
        )
        .bind(tenant_id)
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.communication_type.map(|t| t.as_str()))
        .bind(filter.channel.map(|c| c.as_str()))
        .bind(&filter.quote_id)
        .bind(&filter.order_id)
        .bind(&filter.recipient_ref)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.after.map(|c| c.created_at))
        .bind(filter.after.map(|c| c.id.0))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut data = rows
            .into_iter()
            .map(|row| {
                Ok(Summary {
                    communication_id: CommunicationId(row.get("communication_id")),
                    communication_type: row.try_get("communication_type")?,
                    status: row.try_get("status")?,
                    channel: row.try_get("channel")?,
                    recipient_type: row.try_get("recipient_type")?,
                    recipient_ref: row.get("recipient_ref"),
                    address_masked: row.get("address_masked"),
                    subject_type: row.get("subject_type"),
                    subject_id: row.get("subject_id"),
                    quote_id: row.get("quote_id"),
                    order_id: row.get("order_id"),
                    template_family: row.get("template_family"),
                    template_version: row.get("template_version"),
                    failure_code: row.get("failure_code"),
                    parent_id: row.get::<Option<Uuid>, _>("parent_id").map(CommunicationId),
                    resend_of: row.get::<Option<Uuid>, _>("resend_of").map(CommunicationId),
                    requested_at: row.get("requested_at"),
                    sent_at: row.get("sent_at"),
                    created_at: row.get("created_at"),
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        let more = data.len() > limit as usize;
        data.truncate(limit as usize);
        let next = more.then(|| data.last()).flatten().map(|last| Cursor {
            created_at: last.created_at,
            id: last.communication_id,
        });
        Ok(Page { data, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_to_the_microsecond() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_633_600_123_456).unwrap(),
            id: CommunicationId::new(),
        };
        let text = cursor.encode();
        assert!(text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(Cursor::parse(&text), Ok(cursor));
    }

    #[test]
    fn a_bad_cursor_is_refused() {
        let good = Cursor {
            created_at: Utc::now(),
            id: CommunicationId::new(),
        }
        .encode();
        assert_eq!(Cursor::parse("not a cursor!"), Err(CursorError::Encoding));
        assert_eq!(
            Cursor::parse(&format!("{good}=")),
            Err(CursorError::Encoding)
        );
        assert_eq!(Cursor::parse(""), Err(CursorError::Shape));
        assert_eq!(
            Cursor::parse(&good[..good.len() - 2]),
            Err(CursorError::Shape)
        );
        assert_eq!(Cursor::parse(&format!("{good}AA")), Err(CursorError::Shape));
        // Another version byte.
        let mut bytes = URL_SAFE_NO_PAD.decode(&good).unwrap();
        bytes[0] = 2;
        assert_eq!(
            Cursor::parse(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(CursorError::Shape)
        );
        // A time no timestamp has.
        bytes[0] = CURSOR_VERSION;
        bytes[1..9].copy_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(
            Cursor::parse(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(CursorError::Time)
        );
    }
}
