//! Digests: the items of a low-priority rule for one recipient, collected in one communication
//! that goes out at the end of its window.

use sqlx::Row;

use super::{CommunicationId, Ledger, LedgerError, NewCommunication};

impl Ledger {
    /// Adds an item's line to the digest `digest` describes (recording the digest with the
    /// window's first item). Returns the digest the item is in: this one, or the one it was
    /// added to before (a retried event); None when this digest is already due or on its way,
    /// and the item belongs to the next window.
    pub async fn add_to_digest(
        &self,
        digest: &NewCommunication,
        item_key: &str,
        line: &str,
    ) -> Result<Option<CommunicationId>, LedgerError> {
        let item_key = format!("{}:{item_key}", digest.tenant_id);
        let earlier: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT digest_id FROM digest_item WHERE item_key = $1")
                .bind(&item_key)
                .fetch_optional(self.pool())
                .await?;
        if let Some(id) = earlier {
            return Ok(Some(CommunicationId(id)));
        }
        let id = self.request(digest).await?.communication_id;
        let mut tx = self.pool().begin().await?;
        // The job's row lock orders the additions and the sender's claim (which skips a
        // locked job until the next round).
        let open = sqlx::query(
            "SELECT NOT done AND locked_by IS NULL AND due_at > now() AS open
             FROM delivery_job WHERE communication_id = $1 FOR UPDATE",
        )
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?
        .is_some_and(|row| row.get::<bool, _>("open"));
        if !open {
            tx.rollback().await?;
            return Ok(None);
        }
        let added = sqlx::query(
            "INSERT INTO digest_item (digest_id, item_key, line) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id.0)
        .bind(&item_key)
        .bind(line)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if added {
            sqlx::query(
                "UPDATE delivery_job SET render_payload = jsonb_set(
                     jsonb_set(render_payload, '{items}',
                               COALESCE(render_payload->'items', '[]'::jsonb) || jsonb_build_array($2::text)),
                     '{count}', to_jsonb(COALESCE((render_payload->>'count')::int, 0) + 1))
                 WHERE communication_id = $1",
            )
            .bind(id.0)
            .bind(line)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(id))
    }
}
