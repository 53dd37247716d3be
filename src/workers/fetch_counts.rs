//! The fetch counts of external tasks (`external_task_fetch`), shared by every herald node on
//! the database: how often each task was fetched since herald last reported it. The worker
//! loop asks it on every fetch and sends a task that lost its lock too often to an incident
//! ([`crate::camunda::lock_loss`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::camunda::lock_loss::{CounterError, FetchCounter};
use crate::camunda::worker::BoxFuture;

/// Rows of tasks that vanished unreported (cancelled while no herald held them) go after this.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often one process prunes them.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The `external_task_fetch` table, written for one worker id.
pub struct FetchCounts {
    pool: PgPool,
    worker_id: String,
    last_pruned: Mutex<Option<Instant>>,
}

impl FetchCounts {
    pub fn new(pool: PgPool, worker_id: impl Into<String>) -> FetchCounts {
        FetchCounts {
            pool,
            worker_id: worker_id.into(),
            last_pruned: Mutex::new(None),
        }
    }

    /// Records one fetch of each `(task id, topic)`; answers each task's fetches since its
    /// last report, this one included.
    pub async fn record(
        &self,
        tasks: &[(String, String)],
    ) -> Result<HashMap<String, u32>, sqlx::Error> {
        self.prune_now_and_then().await?;
        let (ids, topics): (Vec<&str>, Vec<&str>) = tasks
            .iter()
            .map(|(id, topic)| (id.as_str(), topic.as_str()))
            .unzip();
        let rows: Vec<(String, i32)> = sqlx::query_as(
            "INSERT INTO external_task_fetch (task_id, topic, fetches, last_worker_id)
             SELECT task_id, topic, 1, $3 FROM unnest($1::text[], $2::text[]) AS t(task_id, topic)
             ON CONFLICT (task_id) DO UPDATE
                SET fetches = external_task_fetch.fetches + 1,
                    last_fetched_at = now(),
                    last_worker_id = EXCLUDED.last_worker_id
             RETURNING task_id, fetches",
        )
        .bind(&ids)
        .bind(&topics)
        .bind(&self.worker_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, fetches)| (id, fetches.max(0) as u32))
            .collect())
    }

    /// herald is done with the task: its count starts again at the next fetch.
    pub async fn forget(&self, task_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM external_task_fetch WHERE task_id = $1")
            .bind(task_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The task was given back on purpose: its latest fetch lost no lock.
    pub async fn uncount(&self, task_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE external_task_fetch SET fetches = greatest(fetches - 1, 0) WHERE task_id = $1",
        )
        .bind(task_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The fetches counted for `task_id` (none: not counted, or reported).
    pub async fn fetches(&self, task_id: &str) -> Result<Option<u32>, sqlx::Error> {
        let fetches: Option<i32> =
            sqlx::query_scalar("SELECT fetches FROM external_task_fetch WHERE task_id = $1")
                .bind(task_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(fetches.map(|n| n.max(0) as u32))
    }

    async fn prune_now_and_then(&self) -> Result<(), sqlx::Error> {
        let due = {
            let mut last = self.last_pruned.lock().unwrap();
            let due = last.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            sqlx::query(
                "DELETE FROM external_task_fetch WHERE last_fetched_at < now() - make_interval(secs => $1)",
            )
            .bind(KEEP.as_secs_f64())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}

fn counter_error(err: sqlx::Error) -> CounterError {
    CounterError(err.to_string())
}

impl FetchCounter for FetchCounts {
    fn fetched<'a>(
        &'a self,
        tasks: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<HashMap<String, u32>, CounterError>> {
        Box::pin(async move { self.record(tasks).await.map_err(counter_error) })
    }

    fn reported<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), CounterError>> {
        Box::pin(async move { self.forget(task_id).await.map_err(counter_error) })
    }

    fn given_back<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), CounterError>> {
        Box::pin(async move { self.uncount(task_id).await.map_err(counter_error) })
    }
}
