//! Retry now: a FAILED_RETRYABLE communication's next attempt falls due at once instead of at
//! the end of its back-off. Its delivery job's due time becomes now and the delivery loops of
//! every process are woken (`herald_delivery`, as a requeue wakes them); the record and its
//! attempts are the delivery's to write, as for any attempt.

use sqlx::Row;

use super::{CommunicationId, CommunicationStatus, Ledger, LedgerError};

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// No such communication, or another tenant's.
    #[error("communication {0} not found")]
    NotFound(CommunicationId),
    /// The communication has no attempt to bring forward (409), with the reason.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<sqlx::Error> for RetryError {
    fn from(e: sqlx::Error) -> Self {
        RetryError::Ledger(LedgerError::from(e))
    }
}

/// Why a communication in `status` is not retried.
fn refusal(status: CommunicationStatus) -> String {
    match status {
        CommunicationStatus::FailedFinal => {
            "the communication failed for good (FAILED_FINAL): resend it instead".into()
        }
        CommunicationStatus::Sent => "the communication was sent: there is nothing to retry".into(),
        other => format!(
            "only a FAILED_RETRYABLE communication is retried; this one is {}",
            other.as_str()
        ),
    }
}

impl Ledger {
    /// Makes the next attempt of the tenant's FAILED_RETRYABLE communication due now and wakes
    /// the delivery loops; the status it has (still FAILED_RETRYABLE until a sender claims it).
    /// One statement: the job moves only while the record is FAILED_RETRYABLE and no sender
    /// holds the job, so a retry racing a claim changes nothing.
    pub async fn retry_now(
        &self,
        tenant_id: &str,
        id: CommunicationId,
    ) -> Result<CommunicationStatus, RetryError> {
        let row = sqlx::query(
            "WITH target AS (
                 SELECT communication_id, tenant_id, status FROM communication_record
                 WHERE communication_id = $1),
             due AS (
                 UPDATE delivery_job j SET due_at = now()
                 FROM target t
                 WHERE j.communication_id = t.communication_id AND t.tenant_id = $2
                   AND t.status = 'FAILED_RETRYABLE' AND NOT j.done
                   AND (j.locked_until IS NULL OR j.locked_until < now())
                 RETURNING j.communication_id),
             woken AS (
                 SELECT pg_notify('herald_delivery', '') FROM due LIMIT 1)
             SELECT t.tenant_id, t.status, (SELECT count(*) FROM due) AS moved,
                    (SELECT count(*) FROM woken) AS woken
             FROM target t",
        )
        .bind(id.0)
        .bind(tenant_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(RetryError::NotFound(id))?;
        // Another tenant's communication does not exist for this one.
        if row.get::<String, _>("tenant_id") != tenant_id {
            return Err(RetryError::NotFound(id));
        }
        let status: CommunicationStatus = row.try_get("status").map_err(LedgerError::from)?;
        if status != CommunicationStatus::FailedRetryable {
            return Err(RetryError::Refused(refusal(status)));
        }
        if row.get::<i64, _>("moved") == 0 {
            return Err(RetryError::Refused(
                "an attempt of this communication is under way (or it has no delivery job)".into(),
            ));
        }
        tracing::info!(communicationId = %id, "retry: the next attempt is due now");
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_what_to_do_instead() {
        assert!(refusal(CommunicationStatus::FailedFinal).contains("resend"));
        assert!(refusal(CommunicationStatus::Sent).contains("nothing to retry"));
        assert!(refusal(CommunicationStatus::Queued).contains("QUEUED"));
    }
}
