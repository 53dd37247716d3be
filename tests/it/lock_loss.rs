//! A task whose lock is lost again and again (the handler outlives its lock: its extensions
//! fail because the lock was taken away) ends in an incident after the topic's
//! `[incident] lock_losses`, counted across herald nodes, and is not fetched again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald::camunda::worker::{BoxFuture, HandlerOutcome, TaskHandler};
use herald::camunda::{LockedTask, TypedValue, Variables};
use herald::workers::fetch_counts::FetchCounts;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// A handler that loses its lock (the engine takes it away: its extensions fail and another
/// node can fetch the task) and then works on until `release`.
struct Outlives {
    calls: Arc<AtomicUsize>,
    release: CancellationToken,
}

impl TaskHandler for Outlives {
    fn handle<'a>(&'a self, task: &'a LockedTask) -> BoxFuture<'a, HandlerOutcome> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            camunda()
                .unlock(&task.id)
                .await
                .expect("take the lock away");
            self.release.cancelled().await;
            HandlerOutcome::Complete(Variables::new())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_loses_its_lock_too_often_ends_in_an_incident_across_nodes() {
    let camunda = camunda();
    deploy_fixtures(&camunda).await;
    let db = TestDb::create().await;
    let lane = new_lane();
    let mut topic = shipped_topic("send-proposal");
    topic.topic = "herald-test-ordered-a".into();
    topic.incident.lock_losses = 2;

    // Three nodes with one slot each: a node whose handler still runs fetches nothing more,
    // so each node sees the task once and only the shared count knows it was lost twice.
    let calls = Arc::new(AtomicUsize::new(0));
    let release = CancellationToken::new();
    let nodes: Vec<InProcessWorker> = ["a", "b", "c"]
        .iter()
        .map(|node| {
            let handler = Arc::new(Outlives {
                calls: calls.clone(),
                release: release.clone(),
            });
            let mut subscription = herald::workers::subscription(&topic, handler);
            // Extended every ~670 ms: the first extension after the lock is gone fails.
            subscription.lock_duration = Duration::from_secs(1);
            InProcessWorker::start(
                &db,
                &format!("herald-test-lockloss-{node}-{lane}"),
                &lane,
                vec![subscription],
                1,
                1,
            )
        })
        .collect();

    let mut vars = Variables::new();
    vars.insert("heraldLane".into(), TypedValue::string(&lane));
    vars.insert("prio".into(), TypedValue::long(0));
    let instance = camunda
        .start_process("test-ordered-a", &format!("lockloss-{lane}"), &vars)
        .await
        .expect("start the process");

    let incident = wait_for_first_within(
        &camunda,
        "an incident",
        &format!("/incident?processInstanceId={}", instance.id),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(incident["incidentType"], "failedExternalTask");
    assert_eq!(
        incident["incidentMessage"].as_str().unwrap_or(""),
        "herald-test-ordered-a: the handler outlived its lock 2 times"
    );
    let task_id = incident["configuration"].as_str().unwrap().to_string();
    let (task, details) = incident_task(&camunda, &incident).await;
    assert_eq!(task["retries"], 0);
    assert!(details.contains("fetched this task 3 times"), "{details}");
    assert!(details.contains("increment the retries"), "{details}");

    // No endless loop: the third fetch raised the incident instead of a third run, and nothing
    // fetches the task any more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let counts = FetchCounts::new(db.pool.clone(), "test");
    assert_eq!(
        counts.fetches(&task_id).await.unwrap(),
        None,
        "reported: the count starts again after the retries are raised"
    );

    release.cancel();
    for node in nodes {
        node.stop().await;
    }
}
