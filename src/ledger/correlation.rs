//! Correlations back into Camunda: the processes waiting for a communication's outcome, and
//! the messages that tell them (claimed, retried and given up by the relay).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{CommunicationId, CommunicationStatus, Ledger, LedgerError, ProcessOrigin};

/// A message to correlate into Camunda.
#[derive(Debug, Clone)]
pub struct CorrelationJob {
    pub row_id: Uuid,
    pub communication_id: CommunicationId,
    pub process_instance_id: String,
    pub message_name: String,
    pub tenant_id: String,
    pub tries: i32,
    pub deadline_at: DateTime<Utc>,
    /// Where herald's task ran, when the waiter recorded it (rows from before did not).
    pub task: Option<TaskRun>,
}

/// Where the task whose outcome is correlated ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRun {
    pub task_id: String,
    pub process_definition_id: String,
    pub activity_id: String,
    pub activity_instance_id: String,
}

impl Ledger {
    /// Adds a process instance to those waiting for the communication's outcome; when the
    /// outcome is already known, its correlation is scheduled at once.
    pub(super) async fn register_waiter(
        &self,
        conn: &mut PgConnection,
        id: CommunicationId,
        origin: &ProcessOrigin,
    ) -> Result<(), LedgerError> {
        let row = sqlx::query("SELECT status, tenant_id FROM communication_record WHERE communication_id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_one(&mut *conn)
            .await?;
        let status: CommunicationStatus = row.try_get("status")?;
        let tenant_id: String = row.get("tenant_id");
        sqlx::query(
            "INSERT INTO communication_waiter (communication_id, process_instance_id, business_key, task_id, tenant_id,
                                              process_definition_id, activity_id, activity_instance_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(id.0)
        .bind(&origin.process_instance_id)
        .bind(&origin.business_key)
        .bind(&origin.task_id)
        .bind(&tenant_id)
        .bind(&origin.process_definition_id)
        .bind(&origin.activity_id)
        .bind(&origin.activity_instance_id)
        .execute(&mut *conn)
        .await?;
        if let Some(outcome) = status.outcome() {
            self.schedule_correlation(
                conn,
                id,
                &origin.process_instance_id,
                &origin.task_id,
                outcome.message_name(),
                &tenant_id,
            )
            .await?;
        }
        Ok(())
    }

    /// When a correlation scheduled now is given up.
    pub(super) fn correlation_deadline_from_now(&self) -> DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.correlation_deadline)
                .unwrap_or(chrono::Duration::hours(1))
    }

    async fn schedule_correlation(
        &self,
        conn: &mut PgConnection,
        id: CommunicationId,
        process_instance_id: &str,
        task_id: &str,
        message_name: &str,
        tenant_id: &str,
    ) -> Result<(), LedgerError> {
        let deadline = self.correlation_deadline_from_now();
        sqlx::query(
            "INSERT INTO camunda_correlation (correlation_row_id, communication_id, process_instance_id, task_id, message_name, tenant_id, deadline_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(id.0)
        .bind(process_instance_id)
        .bind(task_id)
        .bind(message_name)
        .bind(tenant_id)
        .bind(deadline)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Claims due correlations for `lease`.
    pub async fn claim_correlations(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<CorrelationJob>, LedgerError> {
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT correlation_row_id FROM camunda_correlation
                 WHERE status = 'PENDING' AND next_try_at <= now() AND (locked_until IS NULL OR locked_until < now())
                 ORDER BY next_try_at LIMIT $1 FOR UPDATE SKIP LOCKED),
             claimed AS (
                 UPDATE camunda_correlation c SET locked_until = now() + make_interval(secs => $2::double precision / 1000),
                     tries = c.tries + 1
                 FROM due WHERE c.correlation_row_id = due.correlation_row_id
                 RETURNING c.correlation_row_id, c.communication_id, c.process_instance_id, c.task_id, c.message_name,
                           c.tenant_id, c.tries, c.deadline_at)
             SELECT claimed.*, w.process_definition_id, w.activity_id, w.activity_instance_id
             FROM claimed LEFT JOIN communication_waiter w
               ON w.communication_id = claimed.communication_id AND w.task_id = claimed.task_id",
        )
        .bind(limit)
        .bind(lease.as_millis() as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| CorrelationJob {
                row_id: row.get("correlation_row_id"),
                communication_id: CommunicationId(row.get("communication_id")),
                process_instance_id: row.get("process_instance_id"),
                message_name: row.get("message_name"),
                tenant_id: row.get("tenant_id"),
                tries: row.get("tries"),
                deadline_at: row.get("deadline_at"),
                task: match (
                    row.get::<Option<String>, _>("process_definition_id"),
                    row.get::<Option<String>, _>("activity_id"),
                    row.get::<Option<String>, _>("activity_instance_id"),
                ) {
                    (
                        Some(process_definition_id),
                        Some(activity_id),
                        Some(activity_instance_id),
                    ) => Some(TaskRun {
                        task_id: row.get("task_id"),
                        process_definition_id,
                        activity_id,
                        activity_instance_id,
                    }),
                    _ => None,
                },
            })
            .collect())
    }

    /// How long until the next pending correlation is due, if there is one.
    pub async fn next_correlation_in(&self) -> Result<Option<Duration>, LedgerError> {
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM (MIN(GREATEST(next_try_at, COALESCE(locked_until, next_try_at))) - now()))::float8
             FROM (SELECT next_try_at, locked_until FROM camunda_correlation WHERE status = 'PENDING'
                   ORDER BY next_try_at LIMIT 64) soonest",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0) + 0.005)))
    }

    pub async fn correlation_done(&self, job: &CorrelationJob) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE camunda_correlation SET status = 'CORRELATED', correlated_at = now(), locked_until = NULL, last_error = NULL
             WHERE correlation_row_id = $1 AND status = 'PENDING' AND tries = $2",
        )
        .bind(job.row_id)
        .bind(job.tries)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Schedules the next try, or records the correlation as failed once past its deadline
    /// (when `give_up_at_deadline`). Returns true when it was given up.
    pub async fn correlation_retry(
        &self,
        job: &CorrelationJob,
        error: &str,
        after: Duration,
        give_up_at_deadline: bool,
    ) -> Result<bool, LedgerError> {
        let next =
            Utc::now() + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::seconds(60));
        let give_up = give_up_at_deadline && next > job.deadline_at;
        sqlx::query(
            "UPDATE camunda_correlation SET status = $2, next_try_at = $3, locked_until = NULL, last_error = $4
             WHERE correlation_row_id = $1 AND status = 'PENDING' AND tries = $5",
        )
        .bind(job.row_id)
        .bind(if give_up { "FAILED" } else { "PENDING" })
        .bind(next)
        .bind(error)
        .bind(job.tries)
        .execute(&self.pool)
        .await?;
        Ok(give_up)
    }

    /// Records that nobody waits for the message and nobody will (the process went on without
    /// it): not retried, and no failure of the communication.
    pub async fn correlation_unwaited(
        &self,
        job: &CorrelationJob,
        reason: &str,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE camunda_correlation SET status = 'UNWAITED', locked_until = NULL, last_error = $2
             WHERE correlation_row_id = $1 AND status = 'PENDING' AND tries = $3",
        )
        .bind(job.row_id)
        .bind(reason)
        .bind(job.tries)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
