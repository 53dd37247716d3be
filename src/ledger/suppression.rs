//! The suppression list: addresses (by their hash, never the address) that are not sent to
//! again. The bounce handler adds to it (`feedback`), an operator through the API; the policy
//! check reads it. Entries of tenant `*` are global and not a tenant's to change. A tenant's
//! list is read newest first in keyset pages on `(created_at, address_hash)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::listing::CursorError;
use super::{Ledger, LedgerError};

/// The tenant of the global entries, which no tenant changes.
pub const GLOBAL_TENANT: &str = "*";

/// One entry of a tenant's suppression list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionEntry {
    /// The SHA-256 (hex) of the trimmed, lower-cased address, as the policy check hashes it.
    pub address_hash: String,
    /// Why it is suppressed (`HARD_BOUNCE`, `COMPLAINT`, or an operator's reason).
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// The position after an entry of the list: its `created_at` and hash. Opaque to clients:
/// base64url of a version byte of its own (a cursor of another list is refused), the time in
/// microseconds and the hash's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionCursor {
    pub created_at: DateTime<Utc>,
    pub address_hash: String,
}

const CURSOR_VERSION: u8 = 0x53;
/// The longest hash a cursor holds (the column is text; herald writes 64 hex digits).
const MAX_HASH_BYTES: usize = 128;

impl SuppressionCursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(9 + self.address_hash.len());
        bytes.push(CURSOR_VERSION);
        bytes.extend_from_slice(&self.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.address_hash.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses a cursor strictly: base64url without padding, a cursor of this list.
    pub fn parse(text: &str) -> Result<SuppressionCursor, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Encoding)?;
        if bytes.len() < 10 || bytes.len() > 9 + MAX_HASH_BYTES || bytes[0] != CURSOR_VERSION {
            return Err(CursorError::Shape);
        }
        let micros = i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let created_at = DateTime::from_timestamp_micros(micros).ok_or(CursorError::Time)?;
        let address_hash =
            String::from_utf8(bytes[9..].to_vec()).map_err(|_| CursorError::Shape)?;
        Ok(SuppressionCursor {
            created_at,
            address_hash,
        })
    }
}

/// A page of the list, and the cursor of the next one when there may be more.
#[derive(Debug, Clone)]
pub struct SuppressionPage {
    pub data: Vec<SuppressionEntry>,
    pub next: Option<SuppressionCursor>,
}

fn entry(row: &sqlx::postgres::PgRow) -> SuppressionEntry {
    SuppressionEntry {
        address_hash: row.get("address_hash"),
        reason: row.get("reason"),
        created_at: row.get("created_at"),
    }
}

impl Ledger {
    /// A page of the tenant's own entries (not the global ones), newest first, after `after`.
    /// `limit` is at least 1.
    pub async fn suppressions(
        &self,
        tenant_id: &str,
        after: Option<&SuppressionCursor>,
        limit: u32,
    ) -> Result<SuppressionPage, LedgerError> {
        let limit = limit.max(1);
        let rows = sqlx::query(
            "SELECT address_hash, reason, created_at FROM suppression_entry
             WHERE tenant_id = $1
               AND ($2::timestamptz IS NULL OR (created_at, address_hash) < ($2, $3::text))
             ORDER BY created_at DESC, address_hash DESC
             LIMIT $4",
        )
        .bind(tenant_id)
        .bind(after.map(|c| c.created_at))
        .bind(after.map(|c| c.address_hash.as_str()))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.pool())
        .await?;
        let mut data: Vec<SuppressionEntry> = rows.iter().map(entry).collect();
        let more = data.len() > limit as usize;
        data.truncate(limit as usize);
        let next = more
            .then(|| data.last())
            .flatten()
            .map(|last| SuppressionCursor {
                created_at: last.created_at,
                address_hash: last.address_hash.clone(),
            });
        Ok(SuppressionPage { data, next })
    }

    /// Adds an address (by its hash) to the tenant's list: the entry, and whether it is new
    /// (false: it was there already, with its first reason and time).
    pub async fn suppress(
        &self,
        tenant_id: &str,
        address_hash: &str,
        reason: &str,
    ) -> Result<(SuppressionEntry, bool), LedgerError> {
        debug_assert_ne!(tenant_id, GLOBAL_TENANT);
        let inserted = sqlx::query(
            "INSERT INTO suppression_entry (tenant_id, address_hash, reason) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, address_hash) DO NOTHING
             RETURNING address_hash, reason, created_at",
        )
        .bind(tenant_id)
        .bind(address_hash)
        .bind(reason)
        .fetch_optional(self.pool())
        .await?;
        if let Some(row) = inserted {
            return Ok((entry(&row), true));
        }
        let row = sqlx::query(
            "SELECT address_hash, reason, created_at FROM suppression_entry
             WHERE tenant_id = $1 AND address_hash = $2",
        )
        .bind(tenant_id)
        .bind(address_hash)
        .fetch_one(self.pool())
        .await?;
        Ok((entry(&row), false))
    }

    /// Removes the tenant's own entry for a hash: false when the tenant has none (a global
    /// entry is not the tenant's, and stays).
    pub async fn unsuppress(
        &self,
        tenant_id: &str,
        address_hash: &str,
    ) -> Result<bool, LedgerError> {
        if tenant_id == GLOBAL_TENANT {
            return Ok(false);
        }
        let deleted =
            sqlx::query("DELETE FROM suppression_entry WHERE tenant_id = $1 AND address_hash = $2")
                .bind(tenant_id)
                .bind(address_hash)
                .execute(self.pool())
                .await?;
        Ok(deleted.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_another_lists_cursor_is_refused() {
        let cursor = SuppressionCursor {
            created_at: DateTime::from_timestamp_micros(1_764_150_000_123_456).unwrap(),
            address_hash: "ab".repeat(32),
        };
        assert_eq!(SuppressionCursor::parse(&cursor.encode()), Ok(cursor));
        let history = super::super::listing::Cursor {
            created_at: Utc::now(),
            id: super::super::CommunicationId::new(),
        };
        assert_eq!(
            SuppressionCursor::parse(&history.encode()),
            Err(CursorError::Shape)
        );
        assert_eq!(
            SuppressionCursor::parse("not base64!"),
            Err(CursorError::Encoding)
        );
        assert_eq!(
            SuppressionCursor::parse(&URL_SAFE_NO_PAD.encode([CURSOR_VERSION; 9])),
            Err(CursorError::Shape)
        );
    }
}
