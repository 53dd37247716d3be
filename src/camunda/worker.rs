//! The external-task worker loop: long polling over several topics, a bounded number of
//! tasks in flight, lock extension for slow handlers, failure reporting for Cockpit, and a
//! graceful shutdown that stops fetching and finishes (or unlocks) what it holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::instrument::WithSubscriber;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::{CamundaClient, FailureReport, FetchAndLock, LockedTask, TopicRequest};
use super::error::CamundaError;
use super::variables::Variables;
use crate::pause::{sleep_or_shutdown, Backoff};

/// The shortest time between two fetches that both came back empty.
const MIN_EMPTY_FETCH: Duration = Duration::from_millis(500);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a handler decided about a task.
#[derive(Debug)]
pub enum HandlerOutcome {
    /// Complete the task with these variables.
    Complete(Variables),
    /// A technical failure: reported with `handleFailure`, retried by the engine until the
    /// retries run out, then an incident. `permanent` failures (configuration or model errors
    /// that no retry can fix) go to an incident at once.
    Failure(TechnicalFailure),
    /// A business error the BPMN models with an error boundary event.
    BpmnError { code: String, message: String },
}

#[derive(Debug, Clone)]
pub struct TechnicalFailure {
    /// Short, for Cockpit's incident list.
    pub message: String,
    /// Longer, already free of addresses and secrets.
    pub details: String,
    pub permanent: bool,
    /// Wait at least this long before the next try (e.g. a dependency that is not ready yet).
    pub retry_after: Option<Duration>,
}

/// Handles the tasks of one topic.
pub trait TaskHandler: Send + Sync + 'static {
    fn handle<'a>(&'a self, task: &'a LockedTask) -> BoxFuture<'a, HandlerOutcome>;
}

/// How failures of a topic's tasks are retried by the engine before they become incidents.
#[derive(Debug, Clone)]
pub struct IncidentPolicy {
    /// Retries after the first failure; 0 raises an incident at the first failure.
    pub retries: i32,
    /// Waits between tries; the last one repeats.
    pub retry_timeouts: Vec<Duration>,
}

impl IncidentPolicy {
    /// The `retries` and `retryTimeout` to report for a failure of a task that had `current`
    /// retries (`None` before its first failure).
    pub fn next(&self, current: Option<i32>, permanent: bool) -> (i32, Duration) {
        let remaining = if permanent {
            0
        } else {
            match current {
                None => self.retries,
                Some(r) => (r - 1).max(0),
            }
        };
        let index = (self.retries - remaining).max(0) as usize;
        let timeout = self
            .retry_timeouts
            .get(index)
            .or(self.retry_timeouts.last())
            .copied()
            .unwrap_or(Duration::from_secs(10));
        (remaining, timeout)
    }
}

/// One topic the worker fetches.
#[derive(Clone)]
pub struct Subscription {
    pub topic: String,
    pub lock_duration: Duration,
    pub variables: Vec<String>,
    pub include_extension_properties: bool,
    pub incident: IncidentPolicy,
    pub handler: Arc<dyn TaskHandler>,
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub worker_id: String,
    /// At most this many tasks per fetch.
    pub max_tasks: u32,
    /// At most this many tasks handled at once.
    pub max_in_flight: usize,
    /// Long polling timeout of fetchAndLock.
    pub long_poll: Duration,
    /// Only tasks whose process has these variable values (e.g. a lane of a fleet).
    pub process_variables: BTreeMap<String, serde_json::Value>,
    /// How long shutdown waits for tasks in flight before it unlocks them.
    pub shutdown_grace: Duration,
}

/// Runs until `shutdown` is cancelled; returns after in-flight tasks were finished or unlocked.
pub async fn run(
    client: CamundaClient,
    options: WorkerOptions,
    subscriptions: Vec<Subscription>,
    shutdown: CancellationToken,
) {
    let handlers: HashMap<String, Subscription> = subscriptions
        .iter()
        .map(|s| (s.topic.clone(), s.clone()))
        .collect();
    let topics: Vec<TopicRequest> = subscriptions
        .iter()
        .map(|s| TopicRequest {
            topic_name: s.topic.clone(),
            lock_duration: s.lock_duration.as_millis() as u64,
            variables: Some(s.variables.clone()),
            process_variables: options.process_variables.clone(),
            include_extension_properties: s.include_extension_properties,
        })
        .collect();
    let permits = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    // While busy, the next fetch waits for half of the slots (at most maxTasks) to be free:
    // one fetchAndLock (a query the engine pays for, often the dearest of a task's requests)
    // brings many tasks, not one per completion, and the other half keeps the engine busy
    // meanwhile.
    let fetch_at = (options.max_in_flight.max(1) / 2).clamp(1, options.max_tasks.max(1) as usize);
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    tracing::info!(worker_id = %options.worker_id, topics = ?handlers.keys().collect::<Vec<_>>(), "worker started");

    loop {
        while tasks.try_join_next().is_some() {}
        // Wait for room before asking the engine for more work.
        let mut room = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_many_owned(fetch_at as u32) => permit.expect("semaphore never closed"),
        };
        let mut held: Vec<_> = (0..fetch_at)
            .map(|_| room.split(1).expect("one of the permits held"))
            .collect();
        drop(room);
        while held.len() < options.max_tasks.max(1) as usize {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let request = FetchAndLock {
            worker_id: options.worker_id.clone(),
            max_tasks: held.len() as u32,
            use_priority: true,
            async_response_timeout: Some(options.long_poll.as_millis() as u64),
            topics: topics.clone(),
        };
        let asked_at = tokio::time::Instant::now();
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = client.fetch_and_lock(&request) => r,
        };
        let locked = match fetched {
            Ok(locked) if locked.is_empty() && asked_at.elapsed() < MIN_EMPTY_FETCH => {
                // An empty answer that came back at once (no long polling, or a newer request
                // of the same workerId cancelled this one): do not hammer the engine.
                if !sleep_or_shutdown(MIN_EMPTY_FETCH, &shutdown).await {
                    break;
                }
                continue;
            }
            Ok(locked) => {
                backoff.reset();
                locked
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.next_delay().as_millis() as u64, "fetchAndLock failed");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        for task in locked {
            let Some(permit) = held.pop() else {
                // The engine never returns more than maxTasks; give the task back if it did.
                tracing::error!(task_id = %task.id, "engine returned more tasks than asked for; unlocking");
                let _ = client.unlock(&task.id).await;
                continue;
            };
            let Some(sub) = handlers.get(&task.topic_name).cloned() else {
                tracing::error!(task_id = %task.id, topic = %task.topic_name, "task of an unknown topic; unlocking");
                let _ = client.unlock(&task.id).await;
                continue;
            };
            in_flight.lock().unwrap().insert(task.id.clone());
            let client = client.clone();
            let worker_id = options.worker_id.clone();
            let in_flight = in_flight.clone();
            let span = tracing::info_span!(
                "external_task",
                topic = %task.topic_name,
                taskId = %task.id,
                businessKey = task.business_key.as_deref().unwrap_or(""),
                processInstanceId = %task.process_instance_id,
            );
            tasks.spawn(
                async move {
                    execute(&client, &worker_id, &sub, &task).await;
                    in_flight.lock().unwrap().remove(&task.id);
                    drop(permit);
                }
                .instrument(span)
                .with_current_subscriber(),
            );
        }
        drop(held);
    }

    tracing::info!(worker_id = %options.worker_id, in_flight = tasks.len(), "worker stopping: no more fetches");
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        let left: Vec<String> = in_flight.lock().unwrap().drain().collect();
        for task_id in left {
            match client.unlock(&task_id).await {
                Ok(()) => tracing::info!(task_id, "unlocked a task left in flight at shutdown"),
                Err(err) => {
                    tracing::warn!(task_id, error = %err, "could not unlock task at shutdown; its lock will expire")
                }
            }
        }
    }
    tracing::info!(worker_id = %options.worker_id, "worker stopped");
}

/// Runs the handler (extending the lock while it works) and reports its outcome.
async fn execute(client: &CamundaClient, worker_id: &str, sub: &Subscription, task: &LockedTask) {
    let keep_alive = CancellationToken::new();
    let extender = {
        let client = client.clone();
        let worker_id = worker_id.to_string();
        let task_id = task.id.clone();
        let lock = sub.lock_duration;
        let stop = keep_alive.clone();
        tokio::spawn(
            async move {
                let every = (lock * 2 / 3).max(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(err) = client.extend_lock(&task_id, &worker_id, lock).await {
                        tracing::warn!(error = %err, "could not extend the lock");
                        return;
                    }
                }
            }
            .with_current_subscriber(),
        )
    };
    // The handler runs in a task of its own so that a panic (a bug) is reported to the engine
    // as an incident instead of leaving the task locked and extended for ever.
    let handler = sub.handler.clone();
    let owned = task.clone();
    let outcome = match tokio::spawn(
        async move { handler.handle(&owned).await }.with_current_subscriber(),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(err) => HandlerOutcome::Failure(TechnicalFailure {
            message: format!("{}: herald's handler failed unexpectedly (a bug)", task.topic_name),
            details: format!("{err}. Report it to the herald team with the herald log of this task; increment the retries after the fix."),
            permanent: true,
            retry_after: None,
        }),
    };
    keep_alive.cancel();
    let _ = extender.await;
    report(client, worker_id, sub, task, &outcome).await;
}

/// Tells the engine how the task ended.
async fn report(
    client: &CamundaClient,
    worker_id: &str,
    sub: &Subscription,
    task: &LockedTask,
    outcome: &HandlerOutcome,
) {
    let reported: Result<(), CamundaError> = match outcome {
        HandlerOutcome::Complete(variables) => {
            match client.complete(&task.id, worker_id, variables).await {
                // The engine refused to go on (e.g. a model error after the task): make it an
                // incident with a countdown rather than a silent loop of lock expiries.
                Err(
                    err @ (CamundaError::BadRequest { .. }
                    | CamundaError::Server { .. }
                    | CamundaError::Decode(_)),
                ) => {
                    let failure = TechnicalFailure {
                        message: format!(
                            "{}: the engine refused to complete the task",
                            task.topic_name
                        ),
                        details: err.to_string(),
                        permanent: false,
                        retry_after: None,
                    };
                    Box::pin(report(
                        client,
                        worker_id,
                        sub,
                        task,
                        &HandlerOutcome::Failure(failure),
                    ))
                    .await;
                    return;
                }
                other => other,
            }
        }
        HandlerOutcome::Failure(failure) => {
            let (retries, mut timeout) = sub.incident.next(task.retries, failure.permanent);
            if let Some(after) = failure.retry_after {
                timeout = timeout.max(after);
            }
            if retries == 0 {
                tracing::error!(error = %failure.message, "task failed; retries exhausted, the engine raises an incident");
            } else {
                tracing::warn!(error = %failure.message, retries, retry_in_ms = timeout.as_millis() as u64, "task failed; the engine retries it");
            }
            let report = FailureReport {
                worker_id: worker_id.to_string(),
                error_message: truncate(&failure.message, 600),
                error_details: truncate(&failure.details, 3500),
                retries,
                retry_timeout: timeout.as_millis() as u64,
            };
            client.handle_failure(&task.id, &report).await
        }
        HandlerOutcome::BpmnError { code, message } => {
            client
                .bpmn_error(&task.id, worker_id, code, message, &Variables::new())
                .await
        }
    };
    match reported {
        Ok(()) => tracing::debug!("task reported"),
        Err(CamundaError::NotFound(message)) => {
            // Cancelled by a boundary event, or completed by a worker whose lock expired: the
            // handler's effect is idempotent, so there is nothing to undo.
            tracing::info!(%message, "task is gone; nothing to report")
        }
        Err(CamundaError::LockLost(message)) => {
            tracing::warn!(%message, "lock lost to another worker; it will report the task")
        }
        Err(err) => {
            tracing::error!(error = %err, "could not report the task; its lock will expire and it is fetched again")
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IncidentPolicy {
        IncidentPolicy {
            retries: 3,
            retry_timeouts: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
        }
    }

    #[test]
    fn retries_count_down_and_timeouts_grow() {
        let p = policy();
        assert_eq!(p.next(None, false), (3, Duration::from_secs(5)));
        assert_eq!(p.next(Some(3), false), (2, Duration::from_secs(30)));
        assert_eq!(p.next(Some(2), false), (1, Duration::from_secs(120)));
        assert_eq!(p.next(Some(1), false), (0, Duration::from_secs(120)));
        // An operator bumped the retries to 1 after a fix: one more try, then an incident again.
        assert_eq!(p.next(Some(1), false).0, 0);
        assert_eq!(p.next(Some(0), false).0, 0);
    }

    #[test]
    fn permanent_failures_raise_an_incident_at_once() {
        assert_eq!(policy().next(None, true).0, 0);
        assert_eq!(policy().next(Some(3), true).0, 0);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ääää", 3), "ä…");
    }
}
