//! herald's benchmark (`scripts/bench`): herald against the bare references it is measured
//! against, on the same machine and servers; prints a table, and with `--json` one JSON object
//! as the last line.
//!
//! - emails_per_s, webhooks_per_s: the *drain* of a queue filled beforehand: communications
//!   queued in the ledger (N, default 20,000, HERALD_BENCH_N), then sent by one
//!   `herald run --only delivery,relay` to a loopback SMTP sink / HTTP receiver:
//!   N / (last sent_at - first attempt). Their creation is not in the figure.
//! - p50_ms, p99_ms: creation to SENT, under an offered load of half the measured rate for 10 s.
//! - sustained_emails_per_s, sustained_webhooks_per_s: end to end. Producers paced by the clock
//!   send business events through the intake (`events::ingest`, what `POST /events` runs: rules,
//!   recipients, policy, noise checks, templates, the ledger request, the inbound-event record)
//!   on a pool of their own while one sender delivers them; the offered rate goes up in steps
//!   held HERALD_BENCH_STEP_S (default 30) seconds, from HERALD_BENCH_SUSTAINED_START (default
//!   200) a second, ×1.5 until a step fails, then one step at the geometric middle of the last
//!   held and the first failed rate. A step holds when the producers offered ≥ 95 % of its rate,
//!   at its end no more than one second's worth of its rate was offered and not yet SENT, and
//!   the p99 of its communications' creation to SENT is ≤ 1 s. The figure is the offered rate of
//!   the highest step that held, with that step's p50/p99 (sustained_*_p50_ms, _p99_ms).
//! - db_roundtrips_per_comm: statements PostgreSQL executed for 500 communications, from
//!   creation to SENT (statement log; needs root to switch it on for the bench database).
//! - peak_rss_mib: the herald processes' peak resident set (VmHWM) of the drain runs.
//! - smtp_limit_per_s: postfix's smtp-source to the same sink, same concurrency;
//!   http_limit_per_s: wrk POSTing the same body to the same receiver;
//!   pg_insert_tps: pgbench, one-row INSERTs into a table like communication_record, as many
//!   clients as herald's pool. The ratios divide herald's figures by the lower of its channel's
//!   limit and pg_insert_tps.
//! - camunda_tasks_per_s, java_client_tasks_per_s, engine_ceiling_tasks_per_s: send-proposal
//!   tasks a second through herald's workers (recording each communication), the official Java
//!   client (doing nothing) and herald's worker loop run in this process with a handler that
//!   completes at once without ledger work (the engine's ceiling for herald's loop).

#[path = "../tests/it/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::ledger::{
    Admission, Channel, CommunicationType, Ledger, MessageCategory, NewCommunication,
    RecipientType, ResolvedRecipient,
};
use serde_json::{json, Value};
use support::*;

const SMTP_CONNECTIONS: &str = "4";
const POOL: &str = "10";
/// herald's default `delivery.max_in_flight`: wrk's concurrency.
const IN_FLIGHT: usize = 128;

fn n() -> usize {
    std::env::var("HERALD_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn webhook(key: &str) -> NewCommunication {
    let mut new = order_confirmation(key);
    new.class.communication_type = CommunicationType::ExternalWebhook;
    new.class.category = MessageCategory::Transactional;
    new.admitted.recipient = ResolvedRecipient {
        recipient_type: RecipientType::WebhookSubscription,
        recipient_ref: "webhook:ws_bench".into(),
        channel: Channel::Webhook,
        address: Some("ws_bench".into()),
        locale: None,
        timezone: None,
        quiet_hours: None,
        market: None,
    };
    new.rendering.template_family = "quote-accepted-webhook".into();
    new.rendering.template_version = "2026.11.0".into();
    new.rendering.payload =
        json!({"quoteId": key, "revisionNo": 3, "acceptedAt": "2026-11-26T10:00:00Z"});
    new.admitted.admission = Admission::Queue;
    new
}

async fn scalar_f64(db: &TestDb, sql: &str) -> f64 {
    sqlx::query_scalar::<_, Option<f64>>(sql)
        .fetch_one(&db.pool)
        .await
        .expect(sql)
        .unwrap_or(0.0)
}

async fn wait_sent(db: &TestDb, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let sent = db
            .scalar_i64("SELECT count(*) FROM communication_record WHERE status = 'SENT'")
            .await as usize;
        if sent >= count {
            return;
        }
        assert!(Instant::now() < deadline, "only {sent} of {count} sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn peak_rss_mib(herald: &Herald) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", herald.pid().unwrap()))
        .unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The sender under test: SMTP connections and database pool as documented.
fn bench_sender(db: &TestDb, smtp_url: &str) -> Herald {
    let env = [
        ("HERALD_SMTP__POOL_MAX", SMTP_CONNECTIONS),
        ("HERALD_DATABASE__MAX_CONNECTIONS", POOL),
        ("HERALD_LOG__FILTER", "warn"),
    ];
    sender(db, smtp_url, "bench", &env)
}

/// What one channel's run measured.
struct ChannelRun {
    per_s: f64,
    p50: f64,
    p99: f64,
    /// The load the latency was measured under (half the throughput, when the writers keep up).
    offered_per_s: f64,
    rss: f64,
}

/// Throughput over a queue of `count`, then latency under half that rate.
async fn run_channel(
    db: &TestDb,
    smtp_url: &str,
    make: fn(&str) -> NewCommunication,
    count: usize,
) -> ChannelRun {
    queue_many(db, "tp", count, 8, make).await;
    let herald = bench_sender(db, smtp_url);
    wait_sent(db, count).await;
    let span = scalar_f64(
        db,
        "SELECT EXTRACT(EPOCH FROM (max(r.sent_at) - min(a.attempted_at)))::float8
         FROM communication_record r JOIN communication_delivery_attempt a USING (communication_id)",
    )
    .await;
    let per_s = count as f64 / span.max(0.001);
    // Latency under an offered load of half the throughput, for 10 s.
    let rate = (per_s / 2.0).max(1.0);
    // The writers have their own pool, as wide as herald's; a writer that falls behind
    // delays the next request rather than queueing on the pool.
    let writers_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(POOL.parse().unwrap())
        .connect(&db.url)
        .await
        .unwrap();
    let ledger = Ledger::new(writers_pool, Duration::from_secs(60));
    let offered = (rate * 10.0) as usize;
    let started = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(POOL.parse().unwrap()));
    for i in 0..offered {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let ledger = ledger.clone();
        let permit = in_flight.clone().acquire_owned().await.unwrap();
        writers.spawn(async move {
            ledger
                .request(&make(&format!("lat-{i}")))
                .await
                .expect("queue");
            drop(permit);
        });
    }
    let offered_per_s = offered as f64 / started.elapsed().as_secs_f64().max(10.0);
    if offered_per_s < rate * 0.9 {
        eprintln!("bench: the writers offered {offered_per_s:.0}/s, not the {rate:.0}/s planned");
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    wait_sent(db, count + offered).await;
    let p = |q: f64| {
        format!(
            "SELECT (percentile_cont({q}) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (sent_at - requested_at)) * 1000))::float8
             FROM communication_record WHERE idempotency_key LIKE 'test:lat-%'"
        )
    };
    let p50 = scalar_f64(db, &p(0.5)).await;
    let p99 = scalar_f64(db, &p(0.99)).await;
    ChannelRun {
        per_s,
        p50,
        p99,
        offered_per_s,
        rss: peak_rss_mib(&herald),
    }
}

/// A fast HTTP receiver (204 to every POST), counting requests.
async fn receiver() -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

/// Events a second the sustained runs start with (`HERALD_BENCH_SUSTAINED_START`).
fn sustained_start() -> f64 {
    std::env::var("HERALD_BENCH_SUSTAINED_START")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| *v > 0.0)
        .unwrap_or(200.0)
}

/// How long each step of a sustained run holds its rate (`HERALD_BENCH_STEP_S`).
fn step_seconds() -> f64 {
    std::env::var("HERALD_BENCH_STEP_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| *v > 0.0)
        .unwrap_or(30.0)
}

/// Events handed to the intake at once: enough to keep the producers' pool of 10 busy; a
/// producer that has no free slot when an event is due falls behind the clock (offered <
/// planned).
const INTAKE_CONCURRENCY: usize = 32;
/// The coarse search's factor between steps; the refinement is one step at the geometric
/// middle of the last rate held and the first one failed.
const STEP_FACTOR: f64 = 1.5;
/// A sustained run starts no step beyond 12 step lengths of wall time (6 minutes at 30 s).
const STEP_BUDGET: f64 = 12.0;
/// The email contacts the order confirmations go to, in turn.
const CONTACTS: usize = 100;

/// A sustained run's channel, and the business event that makes one communication on it.
#[derive(Clone, Copy, PartialEq)]
enum Intake {
    /// OrderCreated: rule `order-confirmation`, to a contact of the directory.
    Email,
    /// QuoteAccepted: rule `quote-accepted-webhook`, to the subscription to quote.accepted.
    Webhook,
}

impl Intake {
    fn name(self) -> &'static str {
        match self {
            Intake::Email => "email",
            Intake::Webhook => "webhook",
        }
    }

    /// Event `i` of the step `marker` (its correlationId, which its communication keeps): a new
    /// order / quote each, so that no dedupe window applies.
    fn event(self, marker: &str, i: usize) -> Value {
        let id = format!("{marker}-{i}");
        let occurred_at = chrono::Utc::now().to_rfc3339();
        match self {
            Intake::Email => json!({
                "eventId": id,
                "eventType": "OrderCreated",
                "eventVersion": 1,
                "occurredAt": occurred_at,
                "tenantId": "acme",
                "orderId": id,
                "correlationId": marker,
                "subject": {"type": "ORDER", "id": id},
                "data": {"orderNumber": id, "customerContactId": format!("bench-contact-{}", i % CONTACTS)}
            }),
            Intake::Webhook => json!({
                "eventId": id,
                "eventType": "QuoteAccepted",
                "eventVersion": 1,
                "occurredAt": occurred_at,
                "tenantId": "acme",
                "quoteId": id,
                "correlationId": marker,
                "data": {"quoteId": id, "revisionNo": 3, "customerId": "CUST-BENCH"}
            }),
        }
    }
}

/// The producers' side: herald's intake on a pool of its own (10 connections, as herald's API
/// process has), the shipped rules, and the database the step figures are read from.
struct Producers {
    intake: Intake,
    deps: Arc<herald::intake::Intake>,
    rules: Arc<herald::policy::rules::RuleSet>,
    db: TestDb,
}

/// One step of a sustained run.
struct Step {
    planned_per_s: f64,
    offered_per_s: f64,
    /// Events offered and not yet SENT at the middle and at the end of the step.
    backlog_mid: i64,
    backlog_end: i64,
    /// Creation (`requested_at`) to `sent_at` of the step's communications.
    p50_ms: f64,
    p99_ms: f64,
    /// How long `events::ingest` took per event, and how late the latest event was offered.
    ingest_p50_ms: f64,
    ingest_p99_ms: f64,
    late_ms: f64,
    /// Every communication of the step was SENT afterwards (else the search stops: the next
    /// step would inherit a queue).
    drained: bool,
    /// Why the step did not hold (empty: it held).
    failed: Vec<String>,
}

impl Step {
    fn held(&self) -> bool {
        self.failed.is_empty()
    }
}

/// What a sustained run found.
struct Sustained {
    /// The offered rate of the highest step that held, with its latencies.
    per_s: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Communications of the step `marker` SENT so far, and the ones that will not be
/// (suppressed or failed).
async fn step_counts(pool: &sqlx::PgPool, marker: &str) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE sent_at IS NOT NULL),
                count(*) FILTER (WHERE sent_at IS NULL AND status IN ('SUPPRESSED', 'FAILED_FINAL', 'FAILED_RETRYABLE')),
                count(*)
         FROM communication_record WHERE correlation_id = $1",
    )
    .bind(marker)
    .fetch_one(pool)
    .await
    .expect("count a step's communications")
}

impl Producers {
    async fn new(intake: Intake, hook_url: Option<&str>) -> Producers {
        let db = TestDb::create().await;
        match intake {
            Intake::Email => {
                for c in 0..CONTACTS {
                    db.add_contact(
                        "acme",
                        &format!("bench-contact-{c}"),
                        &format!("Buyer {c}"),
                        &format!("buyer-{c}@customer.example"),
                    )
                    .await;
                }
            }
            Intake::Webhook => {
                add_bench_subscription(&db, hook_url.expect("a receiver for the webhooks")).await
            }
        }
        let pool = herald::ledger::connect_lazy(&db.url, POOL.parse().unwrap()).unwrap();
        let deps = herald::intake::Intake::on(
            pool,
            Duration::from_secs(3600),
            camunda(),
            Arc::new(
                herald::templates::TemplateRegistry::load(
                    &std::path::Path::new(MANIFEST_DIR).join("templates"),
                )
                .expect("templates/"),
            ),
            test_artifact_settings(),
            "herald-bench-api".into(),
        );
        let rules = herald::policy::rules::RuleSet::load(
            &std::path::Path::new(MANIFEST_DIR).join("rules/events.toml"),
        )
        .expect("rules/events.toml");
        Producers {
            intake,
            deps: Arc::new(deps),
            rules: Arc::new(rules),
            db,
        }
    }

    /// Offers `rate` events a second for `seconds`, paced by the clock, then waits until every
    /// communication of the step is SENT.
    async fn step(&self, marker: &str, rate: f64, seconds: f64) -> Step {
        let count = ((rate * seconds).round() as usize).max(1);
        let offered = Arc::new(AtomicU64::new(0));
        let slots = Arc::new(tokio::sync::Semaphore::new(INTAKE_CONCURRENCY));
        let started = Instant::now();
        let backlog_at = |at: f64| {
            let pool = self.db.pool.clone();
            let offered = offered.clone();
            let marker = marker.to_string();
            tokio::spawn(async move {
                tokio::time::sleep_until((started + Duration::from_secs_f64(at)).into()).await;
                let until_now = offered.load(Ordering::Relaxed) as i64;
                until_now - step_counts(&pool, &marker).await.0
            })
        };
        let mid = backlog_at(seconds / 2.0);
        let end = backlog_at(seconds);
        let mut producers = tokio::task::JoinSet::new();
        let mut late = Duration::ZERO;
        for i in 0..count {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let slot = slots.clone().acquire_owned().await.unwrap();
            late = late.max(due.elapsed());
            let event = self.intake.event(marker, i);
            let (deps, rules) = (self.deps.clone(), self.rules.clone());
            offered.fetch_add(1, Ordering::Relaxed);
            producers.spawn(async move {
                let began = Instant::now();
                let outcome = herald::intake::events::ingest(&deps, &rules, &event).await;
                drop(slot);
                let took = began.elapsed().as_secs_f64() * 1000.0;
                outcome.map(|o| (took, o.communication_ids.len()))
            });
        }
        // The last event was due at (count - 1) / rate: a producer that fell behind offered
        // the step's events over a longer time.
        let offered_per_s = count as f64 / started.elapsed().as_secs_f64().max(seconds);
        let backlog_end = end.await.unwrap();
        let backlog_mid = mid.await.unwrap();
        let mut ingest_ms = Vec::with_capacity(count);
        let mut refused = Vec::new();
        while let Some(done) = producers.join_next().await {
            match done.unwrap() {
                Ok((took, 1)) => ingest_ms.push(took),
                Ok((_, made)) => panic!(
                    "an {} event made {made} communications, not one: the bench's rules, contacts or subscription are wrong",
                    self.intake.name()
                ),
                Err(e) => refused.push(e.to_string()),
            }
        }
        ingest_ms.sort_by(f64::total_cmp);
        let drained = self.drain(marker, ingest_ms.len() as i64, seconds).await;
        let (p50_ms, p99_ms): (Option<f64>, Option<f64>) = sqlx::query_as(
            "SELECT (percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (sent_at - requested_at)) * 1000))::float8,
                    (percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (sent_at - requested_at)) * 1000))::float8
             FROM communication_record WHERE correlation_id = $1 AND sent_at IS NOT NULL",
        )
        .bind(marker)
        .fetch_one(&self.db.pool)
        .await
        .expect("a step's latencies");
        let (p50_ms, p99_ms) = (p50_ms.unwrap_or(0.0), p99_ms.unwrap_or(0.0));
        let mut failed = Vec::new();
        if let Some(first) = refused.first() {
            failed.push(format!(
                "{} events refused by the intake (first: {first})",
                refused.len()
            ));
        }
        if offered_per_s < 0.95 * rate {
            failed.push(format!(
                "offered {offered_per_s:.0}/s < 95 % of {rate:.0}/s"
            ));
        }
        if backlog_end as f64 > rate {
            failed.push(format!(
                "{backlog_end} not SENT at the end > {rate:.0} (one second's worth)"
            ));
        }
        if p99_ms > 1000.0 {
            failed.push(format!("p99 {p99_ms:.0} ms > 1 s"));
        }
        if !drained {
            failed.push("did not drain".into());
        }
        Step {
            planned_per_s: rate,
            offered_per_s,
            backlog_mid,
            backlog_end,
            p50_ms,
            p99_ms,
            ingest_p50_ms: percentile(&ingest_ms, 0.5),
            ingest_p99_ms: percentile(&ingest_ms, 0.99),
            late_ms: late.as_secs_f64() * 1000.0,
            drained,
            failed,
        }
    }

    /// Waits until the `expected` communications of the step are SENT (false: some were
    /// suppressed or failed, or they were not all sent within 60 s plus 4 step lengths).
    async fn drain(&self, marker: &str, expected: i64, seconds: f64) -> bool {
        let deadline = Instant::now() + Duration::from_secs_f64(60.0 + 4.0 * seconds);
        loop {
            let (sent, lost, recorded) = step_counts(&self.db.pool, marker).await;
            if lost > 0 {
                eprintln!("bench: {lost} communications of {marker} were suppressed or failed");
                return false;
            }
            if sent >= expected && recorded == sent {
                return true;
            }
            if Instant::now() > deadline {
                eprintln!("bench: {marker}: only {sent} of {expected} SENT");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The highest rate of business events the intake and one sender (`herald run --only
/// delivery,relay`) carry end to end, held for a step (see the top of this file for the rule).
async fn sustained(intake: Intake, smtp_url: &str, hook_url: Option<&str>) -> Sustained {
    let producers = Producers::new(intake, hook_url).await;
    let herald = bench_sender(&producers.db, smtp_url);
    let seconds = step_seconds();
    let start = sustained_start();
    let name = intake.name();
    // Not measured: the sender's start-up, the first connections, the first templates.
    let warm = producers
        .step(&format!("sus-{name}-warmup"), start, seconds.min(3.0))
        .await;
    assert!(
        warm.drained,
        "the {name} sender did not send the warm-up's communications"
    );
    let began = Instant::now();
    let (mut held, mut failed): (Option<Step>, Option<f64>) = (None, None);
    let mut rate = start;
    let mut refined = false;
    let mut steps = 0;
    loop {
        if began.elapsed().as_secs_f64() + seconds > STEP_BUDGET * seconds {
            eprintln!(
                "bench: sustained {name}: out of time after {steps} steps; the figure is a lower bound"
            );
            break;
        }
        steps += 1;
        let step = producers
            .step(&format!("sus-{name}-{steps}"), rate, seconds)
            .await;
        eprintln!(
            "bench: sustained {name} step {steps}: {:.0}/s planned, {:.0}/s offered (latest {:.0} ms late), backlog {} mid / {} end, p50 {:.0} ms, p99 {:.0} ms, ingest p50 {:.1} ms p99 {:.1} ms: {}",
            step.planned_per_s,
            step.offered_per_s,
            step.late_ms,
            step.backlog_mid,
            step.backlog_end,
            step.p50_ms,
            step.p99_ms,
            step.ingest_p50_ms,
            step.ingest_p99_ms,
            if step.held() {
                "held".to_string()
            } else {
                format!("not held ({})", step.failed.join("; "))
            }
        );
        let drained = step.drained;
        if step.held() {
            if held
                .as_ref()
                .is_none_or(|h| step.offered_per_s > h.offered_per_s)
            {
                held = Some(step);
            }
        } else {
            failed = Some(failed.map_or(rate, |f: f64| f.min(rate)));
        }
        if !drained || refined {
            break;
        }
        let last_held = held.as_ref().map(|h| h.planned_per_s);
        rate = match (last_held, failed) {
            (Some(low), None) => low * STEP_FACTOR,
            (None, Some(high)) if high / STEP_FACTOR >= 1.0 => high / STEP_FACTOR,
            (None, _) => {
                eprintln!("bench: sustained {name}: not even 1 event a second held");
                break;
            }
            (Some(low), Some(high)) => {
                refined = true;
                (low * high).sqrt()
            }
        };
    }
    eprintln!(
        "bench: sustained {name}: the sender's peak RSS {:.1} MiB",
        peak_rss_mib(&herald)
    );
    drop(herald);
    Sustained {
        per_s: held.as_ref().map(|h| h.offered_per_s),
        p50: held.as_ref().map(|h| h.p50_ms),
        p99: held.as_ref().map(|h| h.p99_ms),
    }
}

/// A new database whose statements PostgreSQL logs (None: not root, the log cannot be
/// switched on), with a pool opened after the switch.
async fn logged_db(figure: &str) -> Option<TestDb> {
    let db = TestDb::create().await;
    let socket = format!("{MANIFEST_DIR}/.stack/pg/run");
    let port = std::env::var("HERALD_STACK_PG_PORT").unwrap_or_else(|_| "55432".into());
    let switched = Command::new("runuser")
        .args([
            "-u", "postgres", "--", "psql", "-h", &socket, "-p", &port, "-d", "postgres", "-qc",
        ])
        .arg(format!(
            "ALTER DATABASE \"{}\" SET log_statement = 'all'",
            db.name
        ))
        .current_dir("/")
        .status()
        .is_ok_and(|s| s.success());
    if !switched {
        eprintln!("bench: cannot switch on the statement log (needs root): {figure} not measured");
        return None;
    }
    // New connections pick the setting up.
    Some(TestDb {
        pool: sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&db.url)
            .await
            .unwrap(),
        ..db
    })
}

/// The statement log of the stack's PostgreSQL, read from a mark on.
struct StatementLog {
    path: String,
    from: usize,
}

impl StatementLog {
    fn mark() -> StatementLog {
        let path = format!("{MANIFEST_DIR}/.stack/pg/postgres.log");
        let from = std::fs::read_to_string(&path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        StatementLog { path, from }
    }

    /// Statements logged since the mark.
    fn statements(&self) -> usize {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .skip(self.from)
            .filter(|l| l.contains("execute ") || l.contains("statement: "))
            .count()
    }
}

/// Statements PostgreSQL executed per communication, creation to SENT (None: not root).
async fn roundtrips() -> Option<f64> {
    let db = logged_db("db_roundtrips_per_comm").await?;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let herald = bench_sender(&db, &sink.url());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = StatementLog::mark();
    queue_many(&db, "rt", 500, 8, order_confirmation).await;
    wait_sent(&db, 500).await;
    let count = log.statements();
    drop(herald);
    Some(count as f64 / 500.0)
}

/// Statements a second of one idle herald running everything (workers, delivery, relays, API)
/// with its default poll intervals, over `HERALD_BENCH_IDLE_S` (default 60) seconds.
async fn idle_queries_per_s() -> Option<f64> {
    let db = logged_db("idle_queries_per_s").await?;
    let seconds: u64 = std::env::var("HERALD_BENCH_IDLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let herald = Herald::start_with(
        &db,
        &sink.url(),
        &new_lane(),
        &["run"],
        &[
            ("HERALD_LOG__FILTER", "warn"),
            // The defaults, not the tests' short intervals.
            ("HERALD_RELAY__POLL_INTERVAL_MS", "10000"),
            ("HERALD_DELIVERY__POLL_INTERVAL_MS", "10000"),
        ],
    );
    // Start-up (migrations, first claims) is not idling.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = StatementLog::mark();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let count = log.statements();
    drop(herald);
    Some(count as f64 / seconds as f64)
}

async fn add_bench_subscription(db: &TestDb, url: &str) {
    sqlx::query(
        "INSERT INTO webhook_subscription (subscription_id, tenant_id, endpoint_url, event_types, secret)
         VALUES ('ws_bench', 'acme', $1, ARRAY['quote.accepted'], 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')",
    )
    .bind(url)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// pgbench's one-row inserts into a table like communication_record, on a database of its own.
async fn pgbench() -> Option<f64> {
    let db = TestDb::create().await;
    sqlx::query("CREATE TABLE bench_record (LIKE communication_record INCLUDING ALL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pgbench"))
        .find(|p| p.exists())?;
    let script = std::env::temp_dir().join("herald-bench-insert.sql");
    std::fs::write(
        &script,
        "INSERT INTO bench_record (communication_id, tenant_id, communication_type, message_category, status,
             subject_type, subject_id, order_id, recipient_type, recipient_ref, channel, address_hash, address_masked,
             template_family, template_version, idempotency_key, requested_by, requested_at, correlation_id, rule_ref)
         VALUES (gen_random_uuid(), 'acme', 'ORDER_CONFIRMATION', 'TRANSACTIONAL', 'REQUESTED', 'ORDER', 'O-1', 'O-1',
             'CONTACT', 'contact-1', 'EMAIL', md5(random()::text), 'c***@customer.example', 'order-confirmation-email',
             '2026.11.0', md5(random()::text), 'bench', now(), md5(random()::text), 'rule:order-confirmation:v1');\n",
    )
    .ok()?;
    let out = Command::new(bin)
        .args(["-n", "-c", POOL, "-j", "2", "-T", "10", "-f"])
        .arg(&script)
        .arg(&db.url)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
}

fn which(bin: &str) -> Option<String> {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("command -v {bin} || ls /usr/sbin/{bin} 2>/dev/null"),
        ])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then_some(path)
}

async fn smtp_limit(count: usize) -> Option<f64> {
    let bin = which("smtp-source")?;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let addr = sink.addr().to_string();
    let started = Instant::now();
    let status = tokio::process::Command::new(bin)
        .args([
            "-s",
            SMTP_CONNECTIONS,
            "-m",
            &count.to_string(),
            "-l",
            "2048",
        ])
        .args([
            "-f",
            "bench@herald.local",
            "-t",
            "buyer@customer.example",
            &addr,
        ])
        .status()
        .await
        .ok()?;
    let took = started.elapsed().as_secs_f64();
    (status.success() && sink.received().len() >= count).then_some(count as f64 / took)
}

fn http_limit(url: &str, concurrency: usize) -> Option<f64> {
    let bin = which("wrk")?;
    let body = json!({"type": "quote.accepted", "timestamp": "2026-11-26T10:00:00.000Z",
                      "data": {"quoteId": "Q-1", "revisionNo": 3, "acceptedAt": "2026-11-26T10:00:00Z"}});
    let script = std::env::temp_dir().join("herald-bench-post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = [[{body}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )
    .ok()?;
    let out = Command::new(bin)
        .args(["-t", "2", "-c", &concurrency.to_string(), "-d", "10s", "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Starts `m` quote-proposal instances in `lane`, eight at a time.
async fn start_instances(camunda: &herald::camunda::CamundaClient, lane: &str, m: usize) {
    let mut starters = tokio::task::JoinSet::new();
    for w in 0..8 {
        let camunda = camunda.clone();
        let lane = lane.to_string();
        starters.spawn(async move {
            for i in (w..m).step_by(8) {
                let vars = proposal_vars(
                    &lane,
                    "Q-BENCH",
                    ("recipientEmail", "buyer@customer.example"),
                );
                camunda
                    .start_process(
                        "quote-proposal",
                        &format!("Q-BENCH-{i}-{}", &lane[5..13]),
                        &vars,
                    )
                    .await
                    .expect("start quote-proposal");
            }
        });
    }
    while let Some(done) = starters.join_next().await {
        done.unwrap();
    }
}

/// send-proposal tasks fetched, recorded and completed per second: by herald's workers (the
/// first figure), by the official Java client doing nothing (the second), and by herald's
/// worker loop completing at once without ledger work (the third: the engine's ceiling for
/// herald's loop), on `m` instances per run, started beforehand. After a warm-up of the engine
/// (1,000 instances for herald, 500 for Java: the JIT compiles its hot paths), they run in the
/// order herald, Java, ceiling, ceiling, Java, herald, and each figure is the mean of its two
/// runs: the order is the same read from either end, so a drift of the engine (JIT, caches, a
/// busier machine) that grows steadily over the runs weighs on the three alike. Each run's
/// instances are deleted after it.
async fn camunda_throughput(m: usize) -> (Option<f64>, Option<f64>, Option<f64>) {
    let camunda = camunda();
    deploy(&camunda).await;
    let _ = herald_workers(&camunda, 1_000).await;
    let _ = java_client(&camunda, 500).await;
    let h1 = herald_workers(&camunda, m).await;
    let j1 = java_client(&camunda, m).await;
    let c1 = engine_ceiling(&camunda, m).await;
    let c2 = engine_ceiling(&camunda, m).await;
    let j2 = java_client(&camunda, m).await;
    let h2 = herald_workers(&camunda, m).await;
    eprintln!(
        "bench: camunda runs: herald {h1:.1}, Java {}, ceiling {c1:.1}, ceiling {c2:.1}, Java {}, herald {h2:.1} tasks/s",
        fmt(j1),
        fmt(j2)
    );
    let java = j1.zip(j2).map(|(a, b)| (a + b) / 2.0);
    (Some((h1 + h2) / 2.0), java, Some((c1 + c2) / 2.0))
}

/// Waits until the `m` tasks of `lane` were completed (no instance of the lane left at
/// send_proposal; the process then waits for the outcome message) and returns when that was
/// seen: the end of herald's runs and of the ceiling's alike.
async fn lane_completed(
    camunda: &herald::camunda::CamundaClient,
    lane: &str,
    m: usize,
    deadline: Instant,
) -> chrono::DateTime<chrono::Utc> {
    let waiting = format!(
        "/process-instance/count?variables=heraldLane_eq_{lane}&activityIdIn=send_proposal"
    );
    loop {
        let left = camunda.get_json(&waiting).await.expect("count instances")["count"]
            .as_i64()
            .unwrap_or(-1);
        if left == 0 {
            return chrono::Utc::now();
        }
        assert!(
            Instant::now() < deadline,
            "the {m} tasks of {lane} were not completed ({left} left)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One run of herald's workers on `m` new instances: tasks per second from the first record
/// (herald's own start-up not counted) to the last completion.
async fn herald_workers(camunda: &herald::camunda::CamundaClient, m: usize) -> f64 {
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-BENCH").await;
    let lane = new_lane();
    start_instances(camunda, &lane, m).await;
    // Like the Java client, herald fetches the one topic measured (a fleet can assign topics
    // to its processes by their topic directory): each topic of a fetch is one more filter
    // the engine evaluates.
    let topics = std::env::temp_dir().join(format!("herald-bench-topics-{lane}"));
    std::fs::create_dir_all(&topics).unwrap();
    std::fs::copy(
        format!("{MANIFEST_DIR}/topics/send-proposal.toml"),
        topics.join("send-proposal.toml"),
    )
    .unwrap();
    let herald = Herald::start_with(
        &db,
        "smtp://127.0.0.1:9",
        &lane,
        &["run", "--only", "workers"],
        &[
            ("HERALD_PATHS__TOPICS", topics.to_str().unwrap()),
            // Fetches of 100 (the Java client's maxTasks), each when half of the 200 slots
            // are free: with a lane filter the engine's fetch query costs tens of
            // milliseconds, so fewer, fuller fetches leave it more time for completions.
            ("HERALD_CAMUNDA__MAX_TASKS", CAMUNDA_MAX_TASKS),
            ("HERALD_CAMUNDA__MAX_IN_FLIGHT", CAMUNDA_MAX_IN_FLIGHT),
            ("HERALD_DATABASE__MAX_CONNECTIONS", POOL),
            ("HERALD_LOG__FILTER", "warn"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    while (db
        .scalar_i64("SELECT count(*) FROM communication_record")
        .await as usize)
        < m
    {
        assert!(
            Instant::now() < deadline,
            "herald did not take the {m} tasks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Until the last task is completed.
    let done_at = lane_completed(camunda, &lane, m, deadline).await;
    // From the first record (herald's own start-up not counted) to the last completion.
    let first: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT min(created_at) FROM communication_record")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    drop(herald);
    let _ = std::fs::remove_dir_all(&topics);
    delete_lane(camunda, &lane).await;
    let span = (done_at - first).num_milliseconds() as f64 / 1000.0;
    m as f64 / span.max(0.001)
}

/// herald's worker settings in the Camunda runs: `camunda.max_tasks`, `camunda.max_in_flight`.
const CAMUNDA_MAX_TASKS: &str = "100";
const CAMUNDA_MAX_IN_FLIGHT: &str = "200";

/// A send-proposal handler that does no ledger work: it completes the task at once with a
/// fixed `communicationId` (herald completes with `communicationId` only), so that the only
/// difference to herald's handler is the work herald does for a task.
#[derive(Default)]
struct CompleteAtOnce {
    first_call: std::sync::OnceLock<chrono::DateTime<chrono::Utc>>,
    calls: AtomicU64,
}

impl herald::camunda::worker::TaskHandler for CompleteAtOnce {
    fn handle<'a>(
        &'a self,
        _task: &'a herald::camunda::LockedTask,
    ) -> herald::camunda::worker::BoxFuture<'a, herald::camunda::worker::HandlerOutcome> {
        self.first_call.get_or_init(chrono::Utc::now);
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async {
            let mut variables = herald::camunda::Variables::new();
            variables.insert(
                "communicationId".into(),
                herald::camunda::TypedValue::string("bench-ceiling"),
            );
            herald::camunda::worker::HandlerOutcome::Complete(variables)
        })
    }
}

/// One run of herald's worker loop (`camunda::worker::run`, in this process) with a handler
/// that completes at once, on `m` new instances: the fetch of herald's workers (the shipped
/// send-proposal topic's lock and variables, the lane filter, 100 a fetch, 200 in flight),
/// tasks per second from the first handler call to the last completion.
async fn engine_ceiling(camunda: &herald::camunda::CamundaClient, m: usize) -> f64 {
    let lane = new_lane();
    start_instances(camunda, &lane, m).await;
    let rate = complete_at_once(camunda, &lane, m).await;
    delete_lane(camunda, &lane).await;
    rate
}

/// Completes the `m` send-proposal tasks of `lane` with herald's worker loop and a handler
/// that does no ledger work; tasks a second. The instances then wait for the outcome.
async fn complete_at_once(camunda: &herald::camunda::CamundaClient, lane: &str, m: usize) -> f64 {
    use herald::camunda::worker::WorkerOptions;
    let topic = shipped_topic("send-proposal");
    let handler = Arc::new(CompleteAtOnce::default());
    let subscription = herald::workers::subscription(&topic, handler.clone());
    // herald counts every fetch (the lock-loss limit): the ceiling pays for it too.
    let db = TestDb::create().await;
    let worker_id = format!("herald-bench-ceiling-{}", std::process::id());
    let options = WorkerOptions {
        worker_id: worker_id.clone(),
        max_tasks: CAMUNDA_MAX_TASKS.parse().unwrap(),
        max_in_flight: CAMUNDA_MAX_IN_FLIGHT.parse().unwrap(),
        // As every herald the bench starts (tests/support sets it), herald_workers' too.
        long_poll: Duration::from_millis(LONG_POLL_MS.parse().unwrap()),
        long_poll_margin: herald::camunda::fetch::DEFAULT_LONG_POLL_MARGIN,
        process_variables: [("heraldLane".to_string(), Value::String(lane.to_string()))].into(),
        shutdown_grace: Duration::from_secs(10),
        fetch_counter: Arc::new(herald::workers::fetch_counts::FetchCounts::new(
            db.pool.clone(),
            worker_id,
        )),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(herald::camunda::worker::run(
        camunda.clone(),
        options,
        vec![subscription],
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(900);
    while (handler.calls.load(Ordering::Relaxed) as usize) < m {
        assert!(
            Instant::now() < deadline,
            "the ceiling's worker did not take the {m} tasks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done_at = lane_completed(camunda, lane, m, deadline).await;
    let first = *handler.first_call.get().expect("a first call");
    shutdown.cancel();
    worker.await.expect("the ceiling's worker loop");
    let span = (done_at - first).num_milliseconds() as f64 / 1000.0;
    m as f64 / span.max(0.001)
}

fn correlation_instances() -> usize {
    std::env::var("HERALD_BENCH_CORRELATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

/// Outcomes correlated a second, herald's against a reference, on `m` quote-proposal instances
/// each: the *drain* of `m` outcomes (the instances wait at the gateway, their emails SENT by
/// `herald run --only workers,delivery` beforehand, the outcome events in the outbox) by one
/// `herald run --only relay` (outbox relay and correlations), from the first correlation to the
/// last; and the reference, `m` other waiting
/// instances correlated by process instance with one `POST /message` each, one at a time, by
/// the bench (what herald's relay did per outcome before it looked for the waiting execution:
/// it now reads the activity-instance tree and the subscriptions, and triggers one).
async fn correlation_drain(m: usize) -> (f64, f64) {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-BENCH").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    start_instances(&camunda, &lane, m).await;
    let pending = |status: &'static str| {
        let db = &db;
        async move {
            db.scalar_i64(&format!(
                "SELECT count(*) FROM camunda_correlation WHERE status = '{status}'"
            ))
            .await as usize
        }
    };
    let fill = Herald::start_with(
        &db,
        &sink.url(),
        &lane,
        &["run", "--only", "workers,delivery"],
        &[("HERALD_LOG__FILTER", "warn")],
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    // SENT, their outcome events waiting in the outbox: the relay schedules and correlates.
    while (db
        .scalar_i64("SELECT count(*) FROM communication_record WHERE status = 'SENT'")
        .await as usize)
        < m
    {
        assert!(Instant::now() < deadline, "the {m} outcomes were not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(fill);
    let relay = Herald::start_with(
        &db,
        &sink.url(),
        &lane,
        &["run", "--only", "relay"],
        &[("HERALD_LOG__FILTER", "warn")],
    );
    while pending("CORRELATED").await < m {
        assert!(
            Instant::now() < deadline,
            "the {m} outcomes were not correlated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let span: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM max(correlated_at) - min(correlated_at))::float8 FROM camunda_correlation",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    drop(relay);
    // Every instance of the lane has ended with its message.
    let ours = (m - 1) as f64 / span.max(0.001);

    let reference_lane = new_lane();
    start_instances(&camunda, &reference_lane, m).await;
    let _ = complete_at_once(&camunda, &reference_lane, m).await;
    let waiting = camunda
        .get_json(&format!(
            "/process-instance?variables=heraldLane_eq_{reference_lane}&maxResults={m}"
        ))
        .await
        .expect("the waiting instances");
    let ids: Vec<String> = waiting
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), m);
    let started = Instant::now();
    for id in &ids {
        let message = herald::camunda::MessageCorrelation {
            message_name: "CommunicationSent".into(),
            process_instance_id: Some(id.clone()),
            business_key: None,
            tenant_id: None,
            process_variables: herald::camunda::Variables::new(),
            all: false,
            result_enabled: true,
        };
        camunda
            .correlate(&message)
            .await
            .expect("the reference correlates");
    }
    // Those instances have ended with their message too.
    let reference = m as f64 / started.elapsed().as_secs_f64().max(0.001);
    (ours, reference)
}

/// Deletes the process instances of `lane` (an asynchronous batch of the engine) and waits
/// until they are gone: instances left waiting would lengthen the variable filter of every
/// later fetch, and slow each run down more than the one before.
async fn delete_lane(camunda: &herald::camunda::CamundaClient, lane: &str) {
    let body = json!({
        "processInstanceQuery": {
            "variables": [{"name": "heraldLane", "operator": "eq", "value": lane}]
        },
        "deleteReason": "herald bench: run over",
        "skipCustomListeners": true,
        "skipSubprocesses": true,
    });
    let answer = reqwest::Client::new()
        .post(format!("{}/process-instance/delete", camunda_url()))
        .json(&body)
        .send()
        .await
        .expect("delete the lane's instances");
    assert!(
        answer.status().is_success(),
        "the engine refused to delete the lane's instances: {}",
        answer.text().await.unwrap_or_default()
    );
    let count = format!("/process-instance/count?variables=heraldLane_eq_{lane}");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = camunda.get_json(&count).await.expect("count instances");
        if left["count"].as_i64() == Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the engine did not delete the instances of {lane}: {left}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One run of the Java client on `m` new instances (timed inside the JVM).
async fn java_client(camunda: &herald::camunda::CamundaClient, m: usize) -> Option<f64> {
    let java_lane = new_lane();
    start_instances(camunda, &java_lane, m).await;
    let module = format!("{MANIFEST_DIR}/bench/java-client/target");
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!(
            "{module}/java-client-bench-0.1.0.jar:{module}/dependency/*"
        ))
        .arg("herald.bench.Main")
        .arg(camunda_url())
        .arg(m.to_string())
        .arg(&java_lane)
        .output();
    delete_lane(camunda, &java_lane).await;
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("java_client_tasks_per_s "))
            .and_then(|v| v.trim().parse().ok()),
        Ok(out) => {
            eprintln!(
                "bench: the Java client failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("bench: the Java client did not start ({e}): build bench/java-client first");
            None
        }
    }
}

fn instances() -> usize {
    std::env::var("HERALD_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn fmt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "not measured".into())
}

fn fmt0(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}"))
        .unwrap_or_else(|| "not measured".into())
}

fn fmt2(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}"))
        .unwrap_or_else(|| "not measured".into())
}

/// `ours` / the lowest of the references (None when one was not measured).
fn ratio(ours: f64, refs: &[Option<f64>]) -> Option<f64> {
    let known: Vec<f64> = refs.iter().flatten().copied().collect();
    (known.len() == refs.len()).then(|| ours / known.iter().cloned().fold(f64::INFINITY, f64::min))
}

#[tokio::main]
async fn main() {
    let json_out = std::env::args().any(|a| a == "--json");
    let count = n();
    eprintln!("bench: {count} communications per channel");

    // HERALD_BENCH_ONLY=email|webhook|camunda: those figures only (for working on them);
    // sustained-email|sustained-webhook: the end-to-end figure of a channel, then its ratio's
    // references; camunda-herald|camunda-java|camunda-ceiling: one run of one side, on an
    // engine already warm.
    let only = std::env::var("HERALD_BENCH_ONLY").ok();
    if let Some(side @ ("camunda-herald" | "camunda-java" | "camunda-ceiling")) = only.as_deref() {
        let camunda = camunda();
        deploy(&camunda).await;
        let rate = match side {
            "camunda-herald" => Some(herald_workers(&camunda, instances()).await),
            "camunda-ceiling" => Some(engine_ceiling(&camunda, instances()).await),
            _ => java_client(&camunda, instances()).await,
        };
        println!("{side}: {} tasks/s", fmt(rate));
        return;
    }
    if only.as_deref() == Some("correlations") {
        let (ours, reference) = correlation_drain(correlation_instances()).await;
        println!(
            "correlations: herald {ours:.1}/s (drain of {} pending), POST /message by process instance {reference:.1}/s (ratio {:.2})",
            correlation_instances(),
            ours / reference
        );
        return;
    }
    if only.as_deref() == Some("camunda") {
        let (ours, java, ceiling) = camunda_throughput(instances()).await;
        println!(
            "camunda: herald {} tasks/s, Java client {} tasks/s, engine ceiling {} tasks/s (herald at {} of the ceiling)",
            fmt(ours),
            fmt(java),
            fmt(ceiling),
            fmt2(ours.zip(ceiling).map(|(a, b)| a / b)),
        );
        return;
    }
    if let Some(mode @ ("sustained-email" | "sustained-webhook")) = only.as_deref() {
        // The channel's reference and pgbench right after (the machine's speed drifts).
        let (run, limit, limit_name) = if mode == "sustained-email" {
            let sink = smtp_sink::SmtpSink::start().await.unwrap();
            let run = sustained(Intake::Email, &sink.url(), None).await;
            drop(sink);
            (run, smtp_limit(count).await, "smtp-source")
        } else {
            let (url, _) = receiver().await;
            let run = sustained(Intake::Webhook, "smtp://127.0.0.1:9", Some(&url)).await;
            (run, http_limit(&url, IN_FLIGHT), "wrk")
        };
        let tps = pgbench().await;
        let ratio = run.per_s.and_then(|per_s| ratio(per_s, &[limit, tps]));
        println!(
            "{mode}: {}/s held for {} s, p50 {} ms, p99 {} ms; {limit_name} {}/s, pgbench {} tps (ratio {})",
            fmt0(run.per_s),
            step_seconds(),
            fmt0(run.p50),
            fmt0(run.p99),
            fmt0(limit),
            fmt(tps),
            fmt2(ratio),
        );
        return;
    }
    if let Some(channel) = only.as_deref() {
        let db = TestDb::create().await;
        let (make, url): (fn(&str) -> NewCommunication, String) = match channel {
            "email" => (order_confirmation, String::new()),
            "webhook" => (webhook, receiver().await.0),
            other => panic!(
                "HERALD_BENCH_ONLY={other}: email, webhook, sustained-email, sustained-webhook, camunda, camunda-herald, camunda-java, camunda-ceiling or correlations"
            ),
        };
        let sink = smtp_sink::SmtpSink::start().await.unwrap();
        if !url.is_empty() {
            add_bench_subscription(&db, &url).await;
        }
        let run = run_channel(&db, &sink.url(), make, count).await;
        // The ratio's usual denominator, measured right after (the machine's speed drifts).
        let tps = pgbench().await;
        println!(
            "{channel}: {:.0}/s, p50 {:.0} ms, p99 {:.0} ms at {:.0}/s offered, peak RSS {:.1} MiB; pgbench {} tps (ratio {})",
            run.per_s,
            run.p50,
            run.p99,
            run.offered_per_s,
            run.rss,
            fmt(tps),
            tps.map(|t| format!("{:.2}", run.per_s / t))
                .unwrap_or_else(|| "not measured".into()),
        );
        return;
    }
    let email_db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let email = run_channel(&email_db, &sink.url(), order_confirmation, count).await;
    let (emails_per_s, p50_ms, p99_ms) = (email.per_s, email.p50, email.p99);
    eprintln!("bench: emails {emails_per_s:.0}/s, p50 {p50_ms:.0} ms, p99 {p99_ms:.0} ms");

    let hook_db = TestDb::create().await;
    let (url, hits) = receiver().await;
    add_bench_subscription(&hook_db, &url).await;
    let hook = run_channel(&hook_db, "smtp://127.0.0.1:9", webhook, count).await;
    let (webhooks_per_s, hook_p50, hook_p99) = (hook.per_s, hook.p50, hook.p99);
    eprintln!(
        "bench: webhooks {webhooks_per_s:.0}/s ({} requests), p50 {hook_p50:.0} ms, p99 {hook_p99:.0} ms",
        hits.load(Ordering::Relaxed)
    );

    // End to end: through the intake, paced, stepped up (the drain figures above leave the
    // creation of the records out).
    let sustained_sink = smtp_sink::SmtpSink::start().await.unwrap();
    let sustained_email = sustained(Intake::Email, &sustained_sink.url(), None).await;
    drop(sustained_sink);
    let sustained_hook = sustained(Intake::Webhook, "smtp://127.0.0.1:9", Some(&url)).await;
    eprintln!(
        "bench: sustained emails {}/s, webhooks {}/s",
        fmt0(sustained_email.per_s),
        fmt0(sustained_hook.per_s)
    );

    let db_roundtrips_per_comm = roundtrips().await;
    let idle_queries_per_s = idle_queries_per_s().await;
    let pg_insert_tps = pgbench().await;
    let smtp_limit_per_s = smtp_limit(count).await;
    let http_limit_per_s = http_limit(&url, IN_FLIGHT);

    let instances = instances();
    let (camunda_tasks_per_s, java_client_tasks_per_s, engine_ceiling_tasks_per_s) =
        camunda_throughput(instances).await;
    let camunda_ratio = camunda_tasks_per_s
        .zip(java_client_tasks_per_s)
        .map(|(a, b)| a / b);
    let camunda_ceiling_ratio = camunda_tasks_per_s
        .zip(engine_ceiling_tasks_per_s)
        .map(|(a, b)| a / b);
    let email_ratio = ratio(emails_per_s, &[smtp_limit_per_s, pg_insert_tps]);
    let webhook_ratio = ratio(webhooks_per_s, &[http_limit_per_s, pg_insert_tps]);
    let sustained_email_ratio = sustained_email
        .per_s
        .and_then(|per_s| ratio(per_s, &[smtp_limit_per_s, pg_insert_tps]));
    let sustained_webhook_ratio = sustained_hook
        .per_s
        .and_then(|per_s| ratio(per_s, &[http_limit_per_s, pg_insert_tps]));
    let peak_rss_mib = email.rss.max(hook.rss);

    let rows = [
        ("emails_per_s", Some(emails_per_s)),
        ("webhooks_per_s", Some(webhooks_per_s)),
        ("p50_ms (email)", Some(p50_ms)),
        ("p99_ms (email)", Some(p99_ms)),
        ("p50_ms (webhook)", Some(hook_p50)),
        ("p99_ms (webhook)", Some(hook_p99)),
        ("latency offered_per_s (email)", Some(email.offered_per_s)),
        ("latency offered_per_s (webhook)", Some(hook.offered_per_s)),
        ("sustained_emails_per_s", sustained_email.per_s),
        ("sustained_email_p50_ms", sustained_email.p50),
        ("sustained_email_p99_ms", sustained_email.p99),
        ("sustained_webhooks_per_s", sustained_hook.per_s),
        ("sustained_webhook_p50_ms", sustained_hook.p50),
        ("sustained_webhook_p99_ms", sustained_hook.p99),
        ("db_roundtrips_per_comm", db_roundtrips_per_comm),
        ("idle_queries_per_s (one process)", idle_queries_per_s),
        ("peak_rss_mib", Some(peak_rss_mib)),
        ("smtp_limit_per_s (smtp-source)", smtp_limit_per_s),
        ("http_limit_per_s (wrk)", http_limit_per_s),
        ("pg_insert_tps (pgbench)", pg_insert_tps),
        ("email_ratio", email_ratio),
        ("webhook_ratio", webhook_ratio),
        ("sustained_email_ratio", sustained_email_ratio),
        ("sustained_webhook_ratio", sustained_webhook_ratio),
        ("camunda_tasks_per_s", camunda_tasks_per_s),
        ("java_client_tasks_per_s", java_client_tasks_per_s),
        ("engine_ceiling_tasks_per_s", engine_ceiling_tasks_per_s),
        ("camunda_ratio", camunda_ratio),
        ("camunda_ceiling_ratio", camunda_ceiling_ratio),
    ];
    println!("{:<34} {:>14}", "figure", "value");
    for (name, value) in rows {
        println!("{name:<34} {:>14}", fmt(value));
    }
    if json_out {
        let figures: Value = json!({
            "n": count,
            "emails_per_s": emails_per_s,
            "webhooks_per_s": webhooks_per_s,
            "p50_ms": p50_ms,
            "p99_ms": p99_ms,
            "webhook_p50_ms": hook_p50,
            "webhook_p99_ms": hook_p99,
            "latency_offered_per_s": email.offered_per_s,
            "webhook_latency_offered_per_s": hook.offered_per_s,
            "db_roundtrips_per_comm": db_roundtrips_per_comm,
            "idle_queries_per_s": idle_queries_per_s,
            "peak_rss_mib": peak_rss_mib,
            "smtp_limit_per_s": smtp_limit_per_s,
            "http_limit_per_s": http_limit_per_s,
            "pg_insert_tps": pg_insert_tps,
            "email_ratio": email_ratio,
            "webhook_ratio": webhook_ratio,
            "camunda_instances": instances,
            "camunda_tasks_per_s": camunda_tasks_per_s,
            "java_client_tasks_per_s": java_client_tasks_per_s,
            "camunda_ratio": camunda_ratio,
            "sustained_emails_per_s": sustained_email.per_s,
            "sustained_email_p50_ms": sustained_email.p50,
            "sustained_email_p99_ms": sustained_email.p99,
            "sustained_webhooks_per_s": sustained_hook.per_s,
            "sustained_webhook_p50_ms": sustained_hook.p50,
            "sustained_webhook_p99_ms": sustained_hook.p99,
            "sustained_email_ratio": sustained_email_ratio,
            "sustained_webhook_ratio": sustained_webhook_ratio,
            "engine_ceiling_tasks_per_s": engine_ceiling_tasks_per_s,
            "camunda_ceiling_ratio": camunda_ceiling_ratio,
        });
        println!("{figures}");
    }
}
