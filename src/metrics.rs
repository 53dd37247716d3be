//! herald's metrics, in Prometheus' text format at `GET /metrics` (the `metrics` facade with
//! `metrics-exporter-prometheus`). Every name starts with `herald_`; labels stay bounded: types,
//! channels, statuses, failure classes, topics, routes, never a tenant, recipient or id.
//!
//! Two kinds: what happens, counted where it happens once it is committed (attempts, fetches,
//! handler outcomes, API requests), and what the ledger holds, read from it at each scrape
//! (communications by type, channel and status; the queue; the outbox; correlations), so that a
//! scrape says what the ledger says whichever process did the work.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Seconds: from a few milliseconds (an attempt on loopback) to hours (a retried delivery).
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    7200.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder of this process, installed at the first call (one per process).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder installed before (a test process with several heralds) keeps its
        // place; this handle then renders what this recorder saw, nothing.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed before herald's");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        "herald_attempts_total",
        "Delivery attempts ended, by channel, attempt status and failure class"
    );
    describe_histogram!(
        "herald_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "How long an attempt took, by channel"
    );
    describe_histogram!(
        "herald_delivery_latency_seconds",
        metrics::Unit::Seconds,
        "From a communication's request to its sending, by channel"
    );
    describe_histogram!(
        "herald_fetch_and_lock_seconds",
        metrics::Unit::Seconds,
        "fetchAndLock calls (long polls) to the engine"
    );
    describe_counter!(
        "herald_tasks_fetched_total",
        "External tasks locked by this process, by topic"
    );
    describe_counter!(
        "herald_task_outcomes_total",
        "How handled tasks ended, by topic and outcome (complete, failure, bpmn_error, incident)"
    );
    describe_counter!(
        "herald_lock_extensions_total",
        "Lock extensions of external tasks, by topic"
    );
    describe_counter!(
        "herald_lock_losses_total",
        "External tasks whose lock was lost before herald reported, by topic"
    );
    describe_counter!(
        "herald_api_requests_total",
        "API requests, by route (as documented), method and status"
    );
    describe_gauge!(
        "herald_communications",
        "Communications in the ledger, by type, channel and status"
    );
    describe_gauge!(
        "herald_queue_depth",
        "Delivery jobs not done (due now or later)"
    );
    describe_gauge!(
        "herald_queue_oldest_due_age_seconds",
        "How long the most overdue delivery job has been due (0: none overdue)"
    );
    describe_gauge!(
        "herald_outbox_lag_seconds",
        "Age of the oldest outbox event not yet published (0: none)"
    );
    describe_gauge!(
        "herald_correlations",
        "Messages to correlate into the engine, by state (pending, failed)"
    );
}

/// An attempt that ended and was recorded.
pub fn attempt_ended(channel: &str, status: &str, failure_class: Option<&str>) {
    counter!("herald_attempts_total", "channel" => channel.to_string(), "status" => status.to_string(),
        "failure_class" => failure_class.unwrap_or("none").to_string())
    .increment(1);
}

/// How long a channel's provider took to answer an attempt (or to time out).
pub fn attempt_took(channel: &str, took: Duration) {
    histogram!("herald_attempt_duration_seconds", "channel" => channel.to_string())
        .record(took.as_secs_f64());
}

/// A communication sent, `since_request` after it was requested.
pub fn sent(channel: &str, since_request: Duration) {
    histogram!("herald_delivery_latency_seconds", "channel" => channel.to_string())
        .record(since_request.as_secs_f64());
}

/// A fetchAndLock call that answered with `tasks` tasks per topic.
pub fn fetched<'a>(took: Duration, topics: impl IntoIterator<Item = &'a str>) {
    histogram!("herald_fetch_and_lock_seconds").record(took.as_secs_f64());
    for topic in topics {
        counter!("herald_tasks_fetched_total", "topic" => topic.to_string()).increment(1);
    }
}

/// How a handled task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    Complete,
    Failure,
    BpmnError,
    Incident,
}

impl TaskOutcome {
    fn as_str(self) -> &'static str {
        match self {
            TaskOutcome::Complete => "complete",
            TaskOutcome::Failure => "failure",
            TaskOutcome::BpmnError => "bpmn_error",
            TaskOutcome::Incident => "incident",
        }
    }
}

pub fn task_outcome(topic: &str, outcome: TaskOutcome) {
    counter!("herald_task_outcomes_total", "topic" => topic.to_string(), "outcome" => outcome.as_str())
        .increment(1);
}

pub fn lock_extended(topic: &str) {
    counter!("herald_lock_extensions_total", "topic" => topic.to_string()).increment(1);
}

pub fn lock_lost(topic: &str) {
    counter!("herald_lock_losses_total", "topic" => topic.to_string()).increment(1);
}

/// An API request answered; `route` is the documented path (`/v1/communications/{id}`), or
/// `unmatched` for none, so that ids never become labels.
pub fn api_request(route: &str, method: &str, status: u16) {
    // HTTP allows any token as a method: the label takes the known ones, the rest are `other`.
    let method: &'static str = match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    counter!("herald_api_requests_total", "route" => route.to_string(), "method" => method,
        "status" => status.to_string())
    .increment(1);
}

/// What the ledger holds at a scrape.
#[derive(Debug, Default)]
pub struct LedgerGauges {
    /// (type, channel, status, count)
    pub communications: Vec<(String, String, String, i64)>,
    pub queue_depth: i64,
    pub oldest_due_age: f64,
    pub outbox_lag: f64,
    pub correlations_pending: i64,
    pub correlations_failed: i64,
}

/// Sets the ledger's gauges, then renders every metric in Prometheus' text format.
pub fn render(gauges: &LedgerGauges) -> String {
    // A combination seen at an earlier scrape and gone now (every one of them moved on) is 0,
    // not its last count.
    static SEEN: Mutex<BTreeSet<(String, String, String)>> = Mutex::new(BTreeSet::new());
    let handle = handle();
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let now: BTreeSet<(String, String, String)> = gauges
        .communications
        .iter()
        .map(|(k, c, s, _)| (k.clone(), c.clone(), s.clone()))
        .collect();
    for (kind, channel, status) in seen.difference(&now) {
        gauge!("herald_communications", "type" => kind.clone(), "channel" => channel.clone(),
            "status" => status.clone())
        .set(0.0);
    }
    for (kind, channel, status, count) in &gauges.communications {
        gauge!("herald_communications", "type" => kind.clone(), "channel" => channel.clone(),
            "status" => status.clone())
        .set(*count as f64);
    }
    seen.extend(now);
    drop(seen);
    gauge!("herald_queue_depth").set(gauges.queue_depth as f64);
    gauge!("herald_queue_oldest_due_age_seconds").set(gauges.oldest_due_age);
    gauge!("herald_outbox_lag_seconds").set(gauges.outbox_lag);
    gauge!("herald_correlations", "state" => "pending").set(gauges.correlations_pending as f64);
    gauge!("herald_correlations", "state" => "failed").set(gauges.correlations_failed as f64);
    handle.run_upkeep();
    handle.render()
}
