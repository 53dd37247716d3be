//! The external-task worker loop: long polling over several topics, a bounded number of
//! tasks in flight, lock extension for slow handlers, failure reporting for Cockpit, and a
//! graceful shutdown that stops fetching and finishes (or unlocks) what it holds.
//!
//! Topics that ask for the same fetch order share one fetchAndLock (one long poll); every other
//! order gets a fetch loop of its own ([`FetchGroup`]). All loops share the worker id, the bound
//! on tasks in flight and the shutdown. A long poll that gets no answer within its timeout plus
//! a margin is taken for a dead connection and a new one starts. A task fetched again and again
//! without herald reporting it (its lock lost each time) goes to an incident ([`lock_loss`]).
//!
//! [`lock_loss`]: super::lock_loss

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::instrument::WithSubscriber;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::{CamundaClient, FailureReport, LockedTask, TopicRequest};
use super::error::CamundaError;
use super::fetch::{FetchGroup, FetchOrder};
use super::lock_loss::{self, FetchCounter};
use super::variables::Variables;
use crate::pause::{sleep_or_shutdown, Backoff};

/// The shortest time between two fetches that both came back empty.
const MIN_EMPTY_FETCH: Duration = Duration::from_millis(500);
/// How long a fetch waits for the fetch counter before it runs its tasks uncounted.
const COUNTER_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Locks a task may lose (fetched again before herald reported it) before the next fetch
    /// reports an incident instead of running the handler again; at least 1.
    pub lock_losses: u32,
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
    /// The order the engine hands out tasks in; topics of one order share a request.
    pub order: FetchOrder,
    pub incident: IncidentPolicy,
    pub handler: Arc<dyn TaskHandler>,
}

#[derive(Clone)]
pub struct WorkerOptions {
    pub worker_id: String,
    /// At most this many tasks per fetch.
    pub max_tasks: u32,
    /// At most this many tasks handled at once.
    pub max_in_flight: usize,
    /// Long polling timeout of fetchAndLock.
    pub long_poll: Duration,
    /// How much longer than `long_poll` a fetch waits for its answer before it takes the
    /// connection for dead and polls anew.
    pub long_poll_margin: Duration,
    /// Only tasks whose process has these variable values (e.g. a lane of a fleet).
    pub process_variables: BTreeMap<String, serde_json::Value>,
    /// How long shutdown waits for tasks in flight before it unlocks them.
    pub shutdown_grace: Duration,
    /// Where the fetches of every task are counted, shared by all herald nodes.
    pub fetch_counter: Arc<dyn FetchCounter>,
}

/// What the fetch loops of one worker share.
struct Shared {
    client: CamundaClient,
    options: WorkerOptions,
    handlers: HashMap<String, Subscription>,
    permits: Arc<Semaphore>,
    /// Tasks being handled (their fetch counts, for the unlock at shutdown).
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
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
    let groups = FetchGroup::by_order(subscriptions.iter().map(|s| {
        let topic = TopicRequest {
            topic_name: s.topic.clone(),
            lock_duration: s.lock_duration.as_millis() as u64,
            variables: Some(s.variables.clone()),
            process_variables: options.process_variables.clone(),
            include_extension_properties: s.include_extension_properties,
        };
        (s.order, topic)
    }));
    let worker_id = options.worker_id.clone();
    let shutdown_grace = options.shutdown_grace;
    let shared = Arc::new(Shared {
        client,
        permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
        options,
        handlers,
        in_flight: Arc::default(),
    });
    tracing::info!(%worker_id, topics = ?shared.handlers.keys().collect::<Vec<_>>(), requests = groups.len(), "worker started");

    // A loop holds the slots it asks for while it long-polls: each gets a fair share of them,
    // so that one loop's long poll never keeps the others from fetching.
    let share = (shared.options.max_in_flight.max(1) / groups.len().max(1))
        .clamp(1, shared.options.max_tasks.max(1) as usize);
    let mut loops = JoinSet::new();
    for group in groups {
        loops.spawn(
            fetch_loop(shared.clone(), group, share, shutdown.clone()).with_current_subscriber(),
        );
    }
    let mut task_sets = Vec::new();
    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(tasks) => task_sets.push(tasks),
            Err(err) => tracing::error!(error = %err, "a fetch loop ended unexpectedly (a bug)"),
        }
    }

    let in_flight: usize = task_sets.iter().map(|t| t.len()).sum();
    tracing::info!(%worker_id, in_flight, "worker stopping: no more fetches");
    let drained = tokio::time::timeout(shutdown_grace, async {
        for tasks in &mut task_sets {
            while tasks.join_next().await.is_some() {}
        }
    })
    .await;
    if drained.is_err() {
        for tasks in &mut task_sets {
            tasks.abort_all();
        }
        let left: Vec<String> = shared
            .in_flight
            .lock()
            .unwrap()
            .drain()
            .map(|(id, _)| id)
            .collect();
        for task_id in left {
            match shared.client.unlock(&task_id).await {
                Ok(()) => {
                    tracing::info!(task_id, "unlocked a task left in flight at shutdown");
                    if let Err(err) = shared.options.fetch_counter.given_back(&task_id).await {
                        tracing::warn!(task_id, error = %err, "could not record the task as given back; its next fetch counts as a lost lock");
                    }
                }
                Err(err) => {
                    tracing::warn!(task_id, error = %err, "could not unlock task at shutdown; its lock will expire")
                }
            }
        }
    }
    tracing::info!(%worker_id, "worker stopped");
}

/// Fetches the tasks of one group, at most `share` a fetch, until shutdown; returns the tasks
/// it still has in flight.
async fn fetch_loop(
    shared: Arc<Shared>,
    group: FetchGroup,
    share: usize,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    let options = &shared.options;
    let client = &shared.client;
    let permits = &shared.permits;
    // While busy, the next fetch waits for half of the slots (at most maxTasks) to be free:
    // one fetchAndLock (a query the engine pays for, often the dearest of a task's requests)
    // brings many tasks, not one per completion, and the other half keeps the engine busy
    // meanwhile.
    let fetch_at = (options.max_in_flight.max(1) / 2).clamp(1, share);
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    tracing::debug!(topics = ?group.topic_names(), order = ?group.order, "fetch loop started");

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
        while held.len() < share {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let request = group.request(&options.worker_id, held.len() as u32, options.long_poll);
        let http_timeout = request.http_timeout(options.long_poll_margin);
        let asked_at = tokio::time::Instant::now();
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = client.fetch_and_lock_within(&request, options.long_poll_margin) => r,
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
                crate::metrics::fetched(
                    asked_at.elapsed(),
                    locked.iter().map(|t| t.topic_name.as_str()),
                );
                locked
            }
            Err(CamundaError::Unavailable(err))
                if err.is_timeout() && asked_at.elapsed() >= http_timeout =>
            {
                // No answer within the long poll and its margin: the connection died without
                // closing (an engine or proxy that stopped answering). The wait was the pause;
                // a new poll (on a new connection) starts at once.
                tracing::warn!(
                    timeout_ms = http_timeout.as_millis() as u64,
                    "long poll unanswered within its timeout (long poll + margin): connection taken for dead, polling anew"
                );
                continue;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.next_delay().as_millis() as u64, "fetchAndLock failed");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        let counts = count_fetches(&*options.fetch_counter, &locked).await;
        for task in locked {
            let Some(permit) = held.pop() else {
                // The engine never returns more than maxTasks; give the task back if it did.
                tracing::error!(task_id = %task.id, "engine returned more tasks than asked for; unlocking");
                let _ = client.unlock(&task.id).await;
                continue;
            };
            let Some(sub) = shared.handlers.get(&task.topic_name).cloned() else {
                tracing::error!(task_id = %task.id, topic = %task.topic_name, "task of an unknown topic; unlocking");
                let _ = client.unlock(&task.id).await;
                continue;
            };
            *shared
                .in_flight
                .lock()
                .unwrap()
                .entry(task.id.clone())
                .or_default() += 1;
            let fetches = counts.get(&task.id).copied();
            let shared = shared.clone();
            let span = tracing::info_span!(
                "external_task",
                topic = %task.topic_name,
                taskId = %task.id,
                businessKey = task.business_key.as_deref().unwrap_or(""),
                processInstanceId = %task.process_instance_id,
            );
            tasks.spawn(
                async move {
                    let (client, worker_id) = (&shared.client, shared.options.worker_id.as_str());
                    let lost = fetches.and_then(|n| lock_loss::too_many_losses(n, sub.incident.lock_losses));
                    let settled = match lost {
                        Some(lost) => {
                            tracing::error!(lost, limit = sub.incident.lock_losses, "the task's lock was lost too often; reporting an incident instead of running the handler again");
                            let (message, details) = lock_loss::incident(&sub.topic, lost, sub.incident.lock_losses, sub.lock_duration.as_millis());
                            let failure = TechnicalFailure { message, details, permanent: true, retry_after: None };
                            report(client, worker_id, &sub, &task, &HandlerOutcome::Failure(failure)).await
                        }
                        None => execute(client, worker_id, &sub, &task).await,
                    };
                    if settled {
                        if let Err(err) = shared.options.fetch_counter.reported(&task.id).await {
                            tracing::warn!(error = %err, "could not clear the task's fetch count");
                        }
                    }
                    {
                        let mut in_flight = shared.in_flight.lock().unwrap();
                        if let Some(n) = in_flight.get_mut(&task.id) {
                            *n -= 1;
                            if *n == 0 {
                                in_flight.remove(&task.id);
                            }
                        }
                    }
                    drop(permit);
                }
                .instrument(span)
                .with_current_subscriber(),
            );
        }
        drop(held);
    }
    tasks
}

/// Counts this fetch of `locked` in the shared store. When the store cannot answer, the tasks
/// run uncounted (a fetch is never held up by it); the count resumes with the next fetch.
async fn count_fetches(counter: &dyn FetchCounter, locked: &[LockedTask]) -> HashMap<String, u32> {
    if locked.is_empty() {
        return HashMap::new();
    }
    let tasks: Vec<(String, String)> = locked
        .iter()
        .map(|t| (t.id.clone(), t.topic_name.clone()))
        .collect();
    match tokio::time::timeout(COUNTER_TIMEOUT, counter.fetched(&tasks)).await {
        Ok(Ok(counts)) => counts,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, tasks = tasks.len(), "could not count the fetch; its tasks run uncounted");
            HashMap::new()
        }
        Err(_) => {
            tracing::warn!(
                tasks = tasks.len(),
                "the fetch counter did not answer in time; the tasks run uncounted"
            );
            HashMap::new()
        }
    }
}

/// Runs the handler (extending the lock while it works) and reports its outcome; true when
/// the engine took the report or no longer has the task.
async fn execute(
    client: &CamundaClient,
    worker_id: &str,
    sub: &Subscription,
    task: &LockedTask,
) -> bool {
    let keep_alive = CancellationToken::new();
    let extender = {
        let client = client.clone();
        let worker_id = worker_id.to_string();
        let task_id = task.id.clone();
        let lock = sub.lock_duration;
        let stop = keep_alive.clone();
        let topic = task.topic_name.clone();
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
                    crate::metrics::lock_extended(&topic);
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
    report(client, worker_id, sub, task, &outcome).await
}

/// Tells the engine how the task ended; true when the engine took the report or no longer
/// has the task (herald is done with it), false when the task will be fetched again.
async fn report(
    client: &CamundaClient,
    worker_id: &str,
    sub: &Subscription,
    task: &LockedTask,
    outcome: &HandlerOutcome,
) -> bool {
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
                    return Box::pin(report(
                        client,
                        worker_id,
                        sub,
                        task,
                        &HandlerOutcome::Failure(failure),
                    ))
                    .await;
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
        Ok(()) => {
            tracing::debug!("task reported");
            let counted = match outcome {
                HandlerOutcome::Complete(_) => crate::metrics::TaskOutcome::Complete,
                HandlerOutcome::Failure(f)
                    if sub.incident.next(task.retries, f.permanent).0 == 0 =>
                {
                    crate::metrics::TaskOutcome::Incident
                }
                HandlerOutcome::Failure(_) => crate::metrics::TaskOutcome::Failure,
                HandlerOutcome::BpmnError { .. } => crate::metrics::TaskOutcome::BpmnError,
            };
            crate::metrics::task_outcome(&task.topic_name, counted);
            true
        }
        Err(CamundaError::NotFound(message)) => {
            // Cancelled by a boundary event, or completed by a worker whose lock expired: the
            // handler's effect is idempotent, so there is nothing to undo.
            tracing::info!(%message, "task is gone; nothing to report");
            true
        }
        Err(CamundaError::LockLost(message)) => {
            crate::metrics::lock_lost(&task.topic_name);
            tracing::warn!(%message, "lock lost to another worker; it will report the task");
            false
        }
        Err(err) => {
            tracing::error!(error = %err, "could not report the task; its lock will expire and it is fetched again");
            false
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
            lock_losses: 3,
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
