//! herald's fault suite (`scripts/faults`): real faults against a real fleet, each scenario
//! ending with every communication sent exactly once or in a recorded final state, and herald
//! recovering without a restart. Prints one line per scenario and a last line summing them up;
//! exits non-zero when any scenario loses or duplicates a communication.
//!
//!   cargo run --example faults [scenario...]
//!
//! Needs the stack (`scripts/stack up postgres engine`, `.stack/env` loaded) and the debug
//! build of herald. A message a sender had handed to the SMTP server when it died (its outcome
//! unknown to herald) may be delivered again: it then carries the same Message-ID, which
//! receivers de-duplicate on; such redeliveries are reported, not counted as duplicates.

#[path = "../tests/it/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::Connection;
use support::*;

#[derive(Debug, Default, Clone)]
struct Tally {
    sent: usize,
    expected: usize,
    duplicates: usize,
    lost: usize,
    redelivered: usize,
    failed_final: usize,
    /// What the scenario should have seen herald do and did not (e.g. notice a dead poll).
    missed: Vec<String>,
}

impl Tally {
    fn ok(&self) -> bool {
        self.duplicates == 0 && self.lost == 0 && self.missed.is_empty()
    }
}

/// A query that survives the faults the suite causes: retried until it answers.
async fn count(db: &TestDb, sql: &str) -> i64 {
    loop {
        match sqlx::query_scalar::<_, i64>(sql).fetch_one(&db.pool).await {
            Ok(n) => return n,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

const FINAL: &str = "('SENT','DELIVERED','OPENED','CLICKED','BOUNCED','FAILED_FINAL','SUPPRESSED')";

/// Waits until `expected` communications of `kind` reached a final state (or `timeout`).
async fn settle(db: &TestDb, kind: &str, expected: usize, timeout: Duration) {
    let sql = format!(
        "SELECT count(*) FROM communication_record WHERE communication_type = '{kind}' AND NOT is_parent AND status IN {FINAL}"
    );
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if count(db, &sql).await as usize >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What the SMTP server received against what the ledger says, for communications of `kind`.
async fn tally(db: &TestDb, sink: &smtp_sink::SmtpSink, kind: &str, expected: usize) -> Tally {
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    for mail in sink.received() {
        let id = mail
            .header("Message-ID")
            .unwrap_or_default()
            .trim_matches(['<', '>'])
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        *deliveries.entry(id).or_default() += 1;
    }
    let records: Vec<(String, String, i64)> = loop {
        match sqlx::query_as(
            "SELECT r.communication_id::text, r.status,
                    (SELECT count(*) FROM communication_delivery_attempt a
                      WHERE a.communication_id = r.communication_id AND a.status = 'ACCEPTED')
             FROM communication_record r WHERE r.communication_type = $1 AND NOT r.is_parent",
        )
        .bind(kind)
        .fetch_all(&db.pool)
        .await
        {
            Ok(rows) => break rows,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let mut tally = Tally {
        expected,
        ..Tally::default()
    };
    // More records than communications asked for would be duplicates by idempotency key.
    tally.duplicates += records.len().saturating_sub(expected);
    for (id, status, accepted) in &records {
        let received = deliveries.get(id).copied().unwrap_or(0);
        if *accepted > 1 {
            tally.duplicates += 1;
        }
        tally.redelivered += received.saturating_sub(1);
        // Sent: the ledger says so and the server has it. Anything else not final is lost.
        match status.as_str() {
            "FAILED_FINAL" | "SUPPRESSED" | "BOUNCED" => tally.failed_final += 1,
            "SENT" | "DELIVERED" | "OPENED" | "CLICKED" if received > 0 => tally.sent += 1,
            _ => {}
        }
    }
    tally.lost = expected.saturating_sub(tally.sent + tally.failed_final);
    tally
}

fn stack(args: &[&str]) {
    let status = Command::new(format!("{MANIFEST_DIR}/scripts/stack"))
        .args(args)
        .status()
        .expect("scripts/stack");
    assert!(status.success(), "scripts/stack {args:?} failed");
}

const ORDERS: &str = "ORDER_CONFIRMATION";

/// SIGKILL of a sender with a batch in flight, in the middle of SMTP sessions.
async fn kill_mid_batch() -> Tally {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    sink.set_rcpt_delay(Duration::from_millis(50));
    queue_many(&db, "kill", 300, 4, order_confirmation).await;
    let settings = [
        ("HERALD_DELIVERY__LEASE_MS", "3000"),
        ("HERALD_DELIVERY__MAX_IN_FLIGHT", "16"),
    ];
    let mut doomed = sender(&db, &sink.url(), "doomed", &settings);
    sink.wait_for(60, Duration::from_secs(60)).await;
    doomed.kill();
    let _heir = sender(&db, &sink.url(), "heir", &settings);
    settle(&db, ORDERS, 300, Duration::from_secs(120)).await;
    tally(&db, &sink, ORDERS, 300).await
}

/// PostgreSQL restarted under a running sender.
async fn postgres_restart() -> Tally {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    sink.set_rcpt_delay(Duration::from_millis(5));
    queue_many(&db, "pgr", 300, 4, order_confirmation).await;
    let _herald = sender(&db, &sink.url(), "pg-restart", &[]);
    sink.wait_for(60, Duration::from_secs(60)).await;
    stack(&["restart", "postgres"]);
    settle(&db, ORDERS, 300, Duration::from_secs(120)).await;
    tally(&db, &sink, ORDERS, 300).await
}

/// herald's database connections cut by `pg_terminate_backend`, three times.
async fn terminate_backends() -> Tally {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    sink.set_rcpt_delay(Duration::from_millis(5));
    queue_many(&db, "term", 300, 4, order_confirmation).await;
    let _herald = sender(&db, &sink.url(), "terminated", &[]);
    sink.wait_for(60, Duration::from_secs(60)).await;
    let mut cut = 0;
    for _ in 0..3 {
        // The suite's own pool is cut too: the next query reconnects. Only client
        // connections of herald's role: an autovacuum worker on the database is a
        // superuser process that this role may not (and need not) terminate.
        let _ = sqlx::query("SELECT 1").execute(&db.pool).await;
        let mut admin = sqlx::PgConnection::connect(&std::env::var("HERALD_DATABASE_URL").unwrap())
            .await
            .expect("admin connection");
        cut += sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()
               AND backend_type = 'client backend' AND usename = current_user",
        )
        .bind(&db.name)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("terminate-backends: {cut} connections cut");
    assert!(cut > 0, "the scenario cut no connection");
    settle(&db, ORDERS, 300, Duration::from_secs(120)).await;
    tally(&db, &sink, ORDERS, 300).await
}

/// An SMTP server that answers 421 and drops every connection for 30 s.
async fn smtp_outage() -> Tally {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    queue_many(&db, "out", 200, 4, order_confirmation).await;
    sink.set_outage(true);
    let _herald = sender(
        &db,
        &sink.url(),
        "outage",
        &[(
            "HERALD_DELIVERY__RETRY_SCHEDULE_S",
            "0,2,4,6,8,10,10,10,10,10",
        )],
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    sink.set_outage(false);
    settle(&db, ORDERS, 200, Duration::from_secs(90)).await;
    tally(&db, &sink, ORDERS, 200).await
}

/// The engine restarted while herald's workers long-poll; processes started before and after.
async fn engine_restart() -> Tally {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = Herald::start(&db, &sink.url(), &lane, &[]);
    let mut quotes = Vec::new();
    for i in 0..20 {
        let quote = format!("Q-ER{i}");
        db.add_proposal_document("acme", &quote).await;
        quotes.push(quote);
    }
    let start = |quote: String| {
        let camunda = camunda.clone();
        let lane = lane.clone();
        async move {
            // The engine may still be starting: try until it takes the process.
            loop {
                let vars =
                    proposal_vars(&lane, &quote, ("recipientEmail", "buyer@customer.example"));
                let key = format!("{quote}-{}", &lane[5..13]);
                if camunda
                    .start_process("quote-proposal", &key, &vars)
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    for quote in &quotes[..10] {
        start(quote.clone()).await;
    }
    sink.wait_for(3, Duration::from_secs(60)).await;
    stack(&["restart", "engine"]);
    for quote in &quotes[10..] {
        start(quote.clone()).await;
    }
    settle(&db, "QUOTE_PROPOSAL_DELIVERY", 20, Duration::from_secs(120)).await;
    let mut tally = tally(&db, &sink, "QUOTE_PROPOSAL_DELIVERY", 20).await;
    // Every process took its outcome: none waits for a message that never comes.
    let waiting = count(
        &db,
        "SELECT count(*) FROM camunda_correlation WHERE status <> 'CORRELATED'",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting = waiting;
    while waiting > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        waiting = count(
            &db,
            "SELECT count(*) FROM camunda_correlation WHERE status <> 'CORRELATED'",
        )
        .await;
    }
    if waiting > 0 {
        eprintln!("engine-restart: {waiting} outcome(s) not correlated into their process");
        tally.lost += waiting as usize;
    }
    tally
}

/// A long poll whose connection dies silently: a proxy between herald and the engine stops
/// forwarding (keeps every connection open, answers nothing) for 8 s while processes start,
/// then forwards again. herald must give up the silent polls after long poll + margin, poll
/// anew, and finish every process, those started during the stall too.
async fn long_poll_stall() -> Tally {
    const STALL: Duration = Duration::from_secs(8);
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let engine = url::Url::parse(&camunda_url()).expect("HERALD_CAMUNDA_URL");
    let upstream = engine.socket_addrs(|| None).expect("the engine's address")[0];
    let proxy = stall_proxy::StallProxy::start(upstream).await.unwrap();
    // Tasks whose answer the stall swallowed are locked for nobody until their lock ends: a
    // short lock keeps the scenario short.
    let topics = topics_with("send-proposal.toml", |t| {
        t.replace("lock_duration_ms = 30000", "lock_duration_ms = 3000")
    });
    let herald = Herald::start(
        &db,
        &sink.url(),
        &lane,
        &[
            ("HERALD_CAMUNDA_URL", &proxy.url(engine.path())),
            ("HERALD_CAMUNDA__LONG_POLL_MS", "2000"),
            ("HERALD_CAMUNDA__LONG_POLL_MARGIN", "2s"),
            ("HERALD_PATHS__TOPICS", topics.path().to_str().unwrap()),
        ],
    );
    let mut instances = Vec::new();
    for i in 0..10 {
        let quote = format!("Q-LP{i}");
        db.add_proposal_document("acme", &quote).await;
        if i == 5 {
            sink.wait_for(5, Duration::from_secs(60)).await;
            proxy.stall();
        }
        let vars = proposal_vars(&lane, &quote, ("recipientEmail", "buyer@customer.example"));
        let key = format!("{quote}-{}", &lane[5..13]);
        let instance = camunda
            .start_process("quote-proposal", &key, &vars)
            .await
            .expect("the engine takes the process (herald's path to it is stalled, not ours)");
        instances.push(instance.id);
    }
    let stalled_at = Instant::now();
    let noticed = "long poll unanswered within its timeout";
    let deadline = stalled_at + STALL;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let gave_up = herald.log_text().matches(noticed).count();
    let accepted = proxy.accepted();
    proxy.resume();
    settle(&db, "QUOTE_PROPOSAL_DELIVERY", 10, Duration::from_secs(60)).await;
    let mut tally = tally(&db, &sink, "QUOTE_PROPOSAL_DELIVERY", 10).await;
    eprintln!(
        "long-poll-stall: herald gave up {gave_up} silent long poll(s) during the {} s stall; the proxy took {accepted} connection(s) by then",
        STALL.as_secs()
    );
    if gave_up == 0 {
        tally
            .missed
            .push("herald did not notice the silent long poll".into());
    }
    // Every process took its outcome and ended, those started during the stall too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut open = instances.len();
    while Instant::now() < deadline {
        open = 0;
        for id in &instances {
            let state = camunda
                .get_json(&format!("/history/process-instance/{id}"))
                .await
                .map(|h| h["state"] == "COMPLETED")
                .unwrap_or(false);
            open += usize::from(!state);
        }
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if open > 0 {
        tally
            .missed
            .push(format!("{open} process instance(s) did not complete"));
    }
    tally
}

#[tokio::main]
async fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let scenarios: [&str; 6] = [
        "kill-mid-batch",
        "postgres-restart",
        "terminate-backends",
        "engine-restart",
        "long-poll-stall",
        "smtp-outage",
    ];
    let mut total = Tally::default();
    let mut failed = Vec::new();
    for name in scenarios {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let started = Instant::now();
        let tally = match name {
            "kill-mid-batch" => kill_mid_batch().await,
            "postgres-restart" => postgres_restart().await,
            "terminate-backends" => terminate_backends().await,
            "engine-restart" => engine_restart().await,
            "long-poll-stall" => long_poll_stall().await,
            _ => smtp_outage().await,
        };
        println!(
            "scenario {name}: sent {}, expected {}, duplicates {}, lost {} (final failures {}, redelivered with the same Message-ID {}; {:.1} s) {}{}",
            tally.sent,
            tally.expected,
            tally.duplicates,
            tally.lost,
            tally.failed_final,
            tally.redelivered,
            started.elapsed().as_secs_f64(),
            if tally.ok() { "ok" } else { "FAILED" },
            if tally.missed.is_empty() {
                String::new()
            } else {
                format!(": {}", tally.missed.join("; "))
            }
        );
        if !tally.ok() {
            failed.push(name);
        }
        total.sent += tally.sent;
        total.expected += tally.expected;
        total.duplicates += tally.duplicates;
        total.lost += tally.lost;
        total.redelivered += tally.redelivered;
        total.failed_final += tally.failed_final;
    }
    println!(
        "faults: sent {}, expected {}, duplicates {}, lost {}, redelivered {}: {}",
        total.sent,
        total.expected,
        total.duplicates,
        total.lost,
        total.redelivered,
        if failed.is_empty() {
            "all scenarios passed".to_string()
        } else {
            format!("FAILED: {}", failed.join(", "))
        }
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
