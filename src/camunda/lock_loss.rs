//! Tasks whose lock is lost again and again (the handler outlives every extension, its
//! extensions fail, or the herald holding it stops mid-task) end in an incident after a
//! configured count instead of being fetched for ever.
//!
//! The count cannot live in one process: the next fetch may be another herald node's. So every
//! fetch is counted in a shared store ([`FetchCounter`], the ledger's `external_task_fetch`
//! table) until herald reports the task (complete, failure, BPMN error) or finds it gone. A task
//! fetched once more than `lock_losses` allows was left unreported that many times: herald
//! reports a failure with retries 0 instead of running the handler again.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

/// What a [`FetchCounter`] answers with (the worker's handlers use the same shape).
pub type CounterFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The error of a [`FetchCounter`]: the store could not be reached or answered something odd.
#[derive(Debug, thiserror::Error)]
#[error("fetch counter: {0}")]
pub struct CounterError(pub String);

/// Counts the fetches of external tasks since herald last reported them, shared by every
/// herald node of an engine.
pub trait FetchCounter: Send + Sync + 'static {
    /// Records one fetch of each task (`(task id, topic)`) and answers, per task id, how often
    /// it has been fetched since herald last reported it, this fetch included.
    fn fetched<'a>(
        &'a self,
        tasks: &'a [(String, String)],
    ) -> CounterFuture<'a, Result<HashMap<String, u32>, CounterError>>;

    /// herald reported the task to the engine, or the engine no longer has it: forget it.
    fn reported<'a>(&'a self, task_id: &'a str) -> CounterFuture<'a, Result<(), CounterError>>;

    /// herald gave the task back unfinished on purpose (shutdown): that fetch lost no lock.
    fn given_back<'a>(&'a self, task_id: &'a str) -> CounterFuture<'a, Result<(), CounterError>>;
}

/// The locks lost before this fetch, when they are more than `limit` allows: the task goes to
/// an incident. `fetches` counts this fetch; every earlier one ended without a report.
pub fn too_many_losses(fetches: u32, limit: u32) -> Option<u32> {
    let lost = fetches.saturating_sub(1);
    (lost >= limit && lost > 0).then_some(lost)
}

/// What Cockpit shows for a task whose lock was lost `lost` times (`limit` allowed).
/// The message and the details.
pub fn incident(topic: &str, lost: u32, limit: u32, lock_duration_ms: u128) -> (String, String) {
    (
        format!("{topic}: the handler outlived its lock {lost} times"),
        format!(
            "herald fetched this task {fetches} times without reporting it: {lost} times its \
             lock (lock_duration_ms = {lock_duration_ms}, extended while the handler runs) ran \
             out or was taken before the handler ended, and a later fetch, by this or another \
             herald node, took the task again. herald stops here instead of running it again \
             ([incident] lock_losses = {limit} in topics/{topic}.toml). Search herald's log for \
             this taskId ('could not extend the lock', 'lock lost', a herald stopped mid-task), \
             fix why the handler is slow or its extensions fail (engine or database \
             reachability), or raise lock_duration_ms if the work is that long; then increment \
             the retries. The handler's effect is idempotent: a re-run never sends twice.",
            fetches = lost + 1,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetch_after_the_last_allowed_loss_goes_to_an_incident() {
        assert_eq!(too_many_losses(1, 3), None);
        assert_eq!(too_many_losses(3, 3), None);
        assert_eq!(too_many_losses(4, 3), Some(3));
        assert_eq!(too_many_losses(9, 3), Some(8));
        // A count the store does not know yet (0) is never an incident.
        assert_eq!(too_many_losses(0, 1), None);
        assert_eq!(too_many_losses(2, 1), Some(1));
    }

    #[test]
    fn the_incident_says_how_often_and_what_to_do() {
        let (message, details) = incident("send-proposal", 3, 3, 30000);
        assert_eq!(
            message,
            "send-proposal: the handler outlived its lock 3 times"
        );
        assert!(details.contains("fetched this task 4 times"));
        assert!(details.contains("increment the retries"));
        assert!(details.contains("lock_losses = 3 in topics/send-proposal.toml"));
    }
}
