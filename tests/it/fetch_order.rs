//! The `[fetch]` section of a topic file decides the order herald's fetches take the topic's
//! tasks in: by `camunda:taskPriority` (highest first) and then by creation time, on the real
//! engine. Topics with different orders are fetched by requests of their own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::camunda::worker::{BoxFuture, HandlerOutcome, TaskHandler};
use herald::camunda::{LockedTask, TypedValue, Variables};
use herald::workers::{FetchConfig, TopicConfig};

use crate::support::*;

/// Completes every task at once, noting the business key and priority in the order handled.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Option<i64>)>>,
}

impl Recorder {
    fn keys(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl TaskHandler for Recorder {
    fn handle<'a>(&'a self, task: &'a LockedTask) -> BoxFuture<'a, HandlerOutcome> {
        self.seen
            .lock()
            .unwrap()
            .push((task.business_key.clone().unwrap_or_default(), task.priority));
        Box::pin(async { HandlerOutcome::Complete(Variables::new()) })
    }
}

/// A topic file like the shipped send-proposal one, for `topic`, with `fetch` as its
/// `[fetch]` section.
fn topic_with_fetch(topic: &str, fetch: &str) -> TopicConfig {
    let mut config = shipped_topic("send-proposal");
    config.topic = topic.into();
    config.fetch = toml::from_str::<FetchConfig>(fetch).expect("a [fetch] section");
    config
}

/// Starts one instance of `process` per priority, in order and a little apart (their tasks'
/// creation times differ); the business keys are `<prefix><index>`.
async fn start_instances(lane: &str, process: &str, prefix: &str, priorities: &[i64]) {
    let camunda = camunda();
    for (i, prio) in priorities.iter().enumerate() {
        let mut vars = Variables::new();
        vars.insert("heraldLane".into(), TypedValue::string(lane));
        vars.insert("prio".into(), TypedValue::long(*prio));
        camunda
            .start_process(process, &format!("{prefix}{i}"), &vars)
            .await
            .expect("start an ordered process");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn wait_for_handled(recorder: &Recorder, n: usize) {
    wait_for(
        &format!("{n} tasks handled"),
        Duration::from_secs(60),
        || async { (recorder.seen.lock().unwrap().len() >= n).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_come_by_priority_then_oldest_first() {
    deploy_fixtures(&camunda()).await;
    let db = TestDb::create().await;
    let lane = new_lane();
    // Every task is there before herald fetches; one task a fetch shows the engine's order.
    start_instances(&lane, "test-ordered-a", "k", &[10, 50, 30, 50, 10]).await;
    let topic = topic_with_fetch(
        "herald-test-ordered-a",
        "use_priority = true\nsort_by_create_time = \"asc\"",
    );
    let recorder = Arc::new(Recorder::default());
    let worker = InProcessWorker::start(
        &db,
        &format!("herald-test-order-{lane}"),
        &lane,
        vec![herald::workers::subscription(&topic, recorder.clone())],
        1,
        1,
    );
    wait_for_handled(&recorder, 5).await;
    worker.stop().await;

    assert_eq!(recorder.keys(), ["k1", "k3", "k2", "k0", "k4"]);
    let priorities: Vec<Option<i64>> = recorder.seen.lock().unwrap().iter().map(|s| s.1).collect();
    assert_eq!(
        priorities,
        [Some(50), Some(50), Some(30), Some(10), Some(10)],
        "the fetched task carries the model's camunda:taskPriority"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_with_different_orders_each_keep_their_own() {
    deploy_fixtures(&camunda()).await;
    let db = TestDb::create().await;
    let lane = new_lane();
    start_instances(&lane, "test-ordered-a", "a", &[90, 10, 50]).await;
    start_instances(&lane, "test-ordered-b", "b", &[10, 90, 10, 50]).await;
    // a: newest first, priorities ignored; b: priority, then oldest first.
    let newest_first = topic_with_fetch(
        "herald-test-ordered-a",
        "use_priority = false\nsort_by_create_time = \"desc\"",
    );
    let by_priority = topic_with_fetch(
        "herald-test-ordered-b",
        "use_priority = true\nsort_by_create_time = \"asc\"",
    );
    let a = Arc::new(Recorder::default());
    let b = Arc::new(Recorder::default());
    let worker = InProcessWorker::start(
        &db,
        &format!("herald-test-order-{lane}"),
        &lane,
        vec![
            herald::workers::subscription(&newest_first, a.clone()),
            herald::workers::subscription(&by_priority, b.clone()),
        ],
        // One slot for each order's request: each fetches one task at a time.
        2,
        1,
    );
    wait_for_handled(&a, 3).await;
    wait_for_handled(&b, 4).await;
    worker.stop().await;

    assert_eq!(a.keys(), ["a2", "a1", "a0"]);
    assert_eq!(b.keys(), ["b1", "b3", "b0", "b2"]);
}
