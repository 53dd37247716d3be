//! What the ledger holds, as the metrics' gauges read it at a scrape (see `crate::metrics`).

use super::{Ledger, LedgerError};
use crate::metrics::LedgerGauges;

impl Ledger {
    /// Communications by type, channel and status; the delivery queue's depth and most overdue
    /// job no sender holds; the oldest unpublished outbox event; the correlations pending and failed.
    pub async fn gauges(&self) -> Result<LedgerGauges, LedgerError> {
        let communications: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT communication_type, channel, status, count(*)
             FROM communication_record GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .fetch_all(&self.pool)
        .await?;
        let (queue_depth, oldest_due_age): (i64, f64) = sqlx::query_as(
            "SELECT count(*),
                    COALESCE(EXTRACT(EPOCH FROM now() - MIN(due_at) FILTER (WHERE due_at < now() AND (locked_until IS NULL OR locked_until < now()))), 0)::float8
             FROM delivery_job WHERE NOT done",
        )
        .fetch_one(&self.pool)
        .await?;
        let outbox_lag: f64 = sqlx::query_scalar(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - MIN(created_at)), 0)::float8
             FROM communication_outbox WHERE status = 'PENDING'",
        )
        .fetch_one(&self.pool)
        .await?;
        let (correlations_pending, correlations_failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'PENDING'), count(*) FILTER (WHERE status = 'FAILED')
             FROM camunda_correlation",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LedgerGauges {
            communications,
            queue_depth,
            oldest_due_age: oldest_due_age.max(0.0),
            outbox_lag: outbox_lag.max(0.0),
            correlations_pending,
            correlations_failed,
        })
    }
}
