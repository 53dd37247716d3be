//! The delivery queue on a real PostgreSQL: leases that expire, fencing of a sender that lost
//! its lease, and a job that cannot start not blocking the others.

use std::time::Duration;

use crate::support::*;
use herald::ledger::{AttemptResult, Ledger};

fn sent() -> AttemptResult {
    AttemptResult::Sent {
        provider_message_id: Some("p-1".into()),
        response_code: Some(250),
        summary: "ok".into(),
        content_hash: "h".into(),
        attachment_hashes: Vec::new(),
        retained: None,
    }
}

/// Queues "spoiled" (then changed by `set`, a SQL SET clause) and "sound", and claims: only
/// "sound" is claimed. Returns the ledger and the spoiled one's id.
async fn spoiled_and_sound(db: &TestDb, set: &str) -> (Ledger, herald::ledger::CommunicationId) {
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let spoiled = ledger
        .request(&order_confirmation("spoiled"))
        .await
        .unwrap()
        .communication_id;
    ledger.request(&order_confirmation("sound")).await.unwrap();
    // A database written by something else than this herald: its CHECK constraints gone.
    for column in ["status", "channel"] {
        sqlx::query(&format!(
            "ALTER TABLE communication_record DROP CONSTRAINT communication_record_{column}_check"
        ))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    sqlx::query(&format!(
        "UPDATE communication_record SET {set} WHERE communication_id = $1"
    ))
    .bind(spoiled.0)
    .execute(&db.pool)
    .await
    .unwrap();
    let claimed = ledger
        .claim_jobs("sender", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].correlation_id, "sound");
    (ledger, spoiled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_lost_its_lease_cannot_record_and_the_next_one_takes_over() {
    let db = TestDb::create().await;
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let id = ledger
        .request(&order_confirmation("o1"))
        .await
        .unwrap()
        .communication_id;

    let first = ledger
        .claim_jobs("sender-a", 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        ledger
            .claim_jobs("sender-b", 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "a leased job is not claimed twice"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = ledger
        .claim_jobs("sender-b", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        second.len(),
        1,
        "the expired lease lets another sender take the job"
    );
    assert_eq!(second[0].attempt_no, 2);

    assert!(
        !ledger
            .finish_attempt(&first[0], "sender-a", sent())
            .await
            .unwrap(),
        "fenced"
    );
    assert!(ledger
        .finish_attempt(&second[0], "sender-b", sent())
        .await
        .unwrap());
    let view = ledger.get("acme", id).await.unwrap().unwrap();
    assert_eq!(view.status, "SENT");
    let statuses: Vec<&str> = view.attempts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(statuses, vec!["ABANDONED", "ACCEPTED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_start_leaves_the_queue_without_blocking_the_others() {
    let db = TestDb::create().await;
    // A record that says SENT while its job is still queued (a hand edit, a bug elsewhere).
    let (_, bad) = spoiled_and_sound(&db, "status = 'SENT'").await;
    let done: bool =
        sqlx::query_scalar("SELECT done FROM delivery_job WHERE communication_id = $1")
            .bind(bad.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(done, "the bad job left the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_notification_read_before_its_attempt_was_recorded_ends_opened() {
    use herald::ledger::{Channel, RecipientType, ResolvedRecipient};
    let db = TestDb::create().await;
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let mut request = order_confirmation("inbox");
    request.admitted.recipient = ResolvedRecipient {
        recipient_type: RecipientType::User,
        recipient_ref: "user:ines".into(),
        channel: Channel::InApp,
        address: Some("user:ines".into()),
        locale: None,
        timezone: None,
        quiet_hours: None,
        market: None,
    };
    let id = ledger.request(&request).await.unwrap().communication_id;
    let job = ledger
        .claim_jobs("sender", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    // The adapter stored the notification, and the recipient read it at once.
    sqlx::query(
        "INSERT INTO inbox_notification (notification_id, tenant_id, recipient_ref, communication_type, title, body_text, body_html)
         VALUES ($1, 'acme', 'user:ines', 'ORDER_CONFIRMATION', 't', 'b', 'h')",
    )
    .bind(id.0)
    .execute(&db.pool)
    .await
    .unwrap();
    let read = ledger.mark_read("acme", id.0).await.unwrap().unwrap();
    assert!(read.read_at.is_some());
    assert_eq!(
        ledger.get("acme", id).await.unwrap().unwrap().status,
        "SENDING"
    );
    assert!(ledger.finish_attempt(&job, "sender", sent()).await.unwrap());
    assert_eq!(
        ledger.get("acme", id).await.unwrap().unwrap().status,
        "OPENED",
        "the read is not lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_attempts_recorded_together_each_get_their_own_outcome_and_event() {
    let db = TestDb::create().await;
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    for key in ["b-sent", "b-retry", "b-final", "b-lost"] {
        ledger.request(&order_confirmation(key)).await.unwrap();
    }
    let jobs = ledger
        .claim_jobs("sender", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 4);
    let job = |key: &str| {
        jobs.iter()
            .find(|j| j.correlation_id == key)
            .expect("claimed")
    };
    // Another sender holds "b-lost" now (its lease was taken over).
    sqlx::query("UPDATE delivery_job SET locked_by = 'other' WHERE communication_id = $1")
        .bind(job("b-lost").communication_id.0)
        .execute(&db.pool)
        .await
        .unwrap();
    let retry = AttemptResult::Retry {
        failure_class: herald::ledger::FailureClass::ProviderUnavailable,
        response_code: Some(421),
        summary: "try later".into(),
        after: Duration::from_secs(60),
    };
    let final_ = AttemptResult::Final {
        failure_class: herald::ledger::FailureClass::InvalidRecipient,
        failure_code: "RECIPIENT_INVALID".into(),
        response_code: Some(550),
        summary: "no such user".into(),
    };
    let fenced = ledger
        .finish_attempts(
            "sender",
            &[
                (job("b-sent"), sent()),
                (job("b-retry"), retry),
                (job("b-final"), final_),
                (job("b-lost"), sent()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(fenced, vec![true, true, true, false]);

    let status = |key: &'static str| {
        let id = job(key).communication_id;
        let ledger = ledger.clone();
        async move { ledger.get("acme", id).await.unwrap().unwrap() }
    };
    let sent_view = status("b-sent").await;
    assert_eq!(sent_view.status, "SENT");
    assert_eq!(sent_view.attempts[0].status, "ACCEPTED");
    assert_eq!(
        sent_view.attempts[0].provider_message_id.as_deref(),
        Some("p-1")
    );
    let retry_view = status("b-retry").await;
    assert_eq!(retry_view.status, "FAILED_RETRYABLE");
    assert_eq!(retry_view.attempts[0].response_code, Some(421));
    let final_view = status("b-final").await;
    assert_eq!(final_view.status, "FAILED_FINAL");
    assert_eq!(
        final_view.failure_code.as_deref(),
        Some("RECIPIENT_INVALID")
    );
    let lost_view = status("b-lost").await;
    assert_eq!(lost_view.status, "SENDING", "a lost lease writes nothing");
    assert_eq!(lost_view.attempts[0].status, "IN_PROGRESS");

    // The retry is due again in a minute; the others left the queue.
    let jobs_left: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT r.correlation_id, j.done, j.due_at > now() + interval '50 seconds'
         FROM delivery_job j JOIN communication_record r USING (communication_id) ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        jobs_left,
        vec![
            ("b-final".into(), true, false),
            ("b-lost".into(), false, false),
            ("b-retry".into(), false, true),
            ("b-sent".into(), true, false),
        ]
    );
    // One event per outcome, each about its own record, with the record's status.
    let events: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT r.correlation_id, o.event_type, o.payload->>'status' FROM communication_outbox o
         JOIN communication_record r ON r.communication_id = o.aggregate_id
         WHERE o.event_type IN ('CommunicationSent', 'CommunicationFailed') ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        vec![
            (
                "b-final".into(),
                "CommunicationFailed".into(),
                "FAILED_FINAL".into()
            ),
            ("b-sent".into(), "CommunicationSent".into(), "SENT".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_channel_is_unknown_fails_for_good_instead_of_staying_sending() {
    let db = TestDb::create().await;
    // A channel this herald does not know (written by a newer version, or by hand).
    let (ledger, bad) = spoiled_and_sound(&db, "channel = 'PIGEON'").await;
    // Reading it back is an error too, never a default.
    let read = ledger.get("acme", bad).await.unwrap_err();
    assert!(
        matches!(read, herald::ledger::LedgerError::Corrupt(ref v) if v.value == "PIGEON"),
        "{read}"
    );
    let (status, code) = db
        .outcome_where(&format!("communication_id = '{}'", bad.0))
        .await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("FAILED_FINAL", Some("UNKNOWN_CHANNEL"))
    );
    let attempts: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM communication_delivery_attempt WHERE communication_id = $1",
    )
    .bind(bad.0)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(attempts, ["FAILED_FINAL"]);
    let failed_events = db
        .scalar_i64(&format!(
            "SELECT count(*) FROM communication_outbox WHERE aggregate_id = '{}' AND event_type = 'CommunicationFailed'",
            bad.0
        ))
        .await;
    assert_eq!(failed_events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_a_value_the_enums_do_not_know() {
    let db = TestDb::create().await;
    queue_many(&db, "checked", 1, 1, order_confirmation).await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT communication_id FROM communication_record")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    for (table, set, key) in [
        (
            "communication_record",
            "channel = 'PIGEON'",
            "communication_id",
        ),
        (
            "communication_record",
            "status = 'LOST'",
            "communication_id",
        ),
        (
            "communication_record",
            "communication_type = 'GOSSIP'",
            "communication_id",
        ),
        (
            "communication_outbox",
            "event_type = 'CommunicationVanished'",
            "aggregate_id",
        ),
    ] {
        let refused = sqlx::query(&format!("UPDATE {table} SET {set} WHERE {key} = $1"))
            .bind(id)
            .execute(&db.pool)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("check constraint"),
            "{table} {set}: {refused}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_due_time_is_the_soonest_over_every_priority_level() {
    let db = TestDb::create().await;
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    assert_eq!(ledger.next_due_in().await.unwrap(), None, "empty queue");
    let mut ids = Vec::new();
    for key in ["urgent", "routine", "low"] {
        ids.push(
            ledger
                .request(&order_confirmation(key))
                .await
                .unwrap()
                .communication_id,
        );
    }
    // Three levels; the lowest one holds the soonest job, the highest one a leased job.
    for (id, priority, due_in_s, leased_s) in [
        (ids[0], 90, -5, Some(40)),
        (ids[1], 50, 30, None),
        (ids[2], 10, 12, None),
    ] {
        sqlx::query(
            "UPDATE delivery_job SET priority = $2,
                 due_at = now() + make_interval(secs => $3),
                 locked_until = now() + make_interval(secs => $4), locked_by = 'x'
             WHERE communication_id = $1",
        )
        .bind(id.0)
        .bind(priority)
        .bind(due_in_s as f64)
        .bind(leased_s.map(|s: i32| s as f64))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    // The low-priority job due in 12 s comes first, not the leased one (40 s) or the routine
    // one (30 s).
    assert_next_due_in(&ledger, 12).await;
    // Once the low job is done, the routine job's time counts.
    sqlx::query("UPDATE delivery_job SET done = true WHERE communication_id = $1")
        .bind(ids[2].0)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_next_due_in(&ledger, 30).await;
}

/// The next job falls due in about `seconds` (less the time the test took, plus the margin
/// `next_due_in` adds).
async fn assert_next_due_in(ledger: &Ledger, seconds: u64) {
    let due = ledger.next_due_in().await.unwrap().expect("jobs are open");
    assert!(
        due > Duration::from_secs(seconds - 1) && due < Duration::from_millis(seconds * 1000 + 100),
        "expected about {seconds} s: {due:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_round_and_one_relay_round_step_by_step() {
    use herald::delivery::email::{EmailAdapter, EmailSettings};
    use herald::delivery::{DeliveryEngine, DeliveryOptions, RetryPolicy};
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let templates = std::sync::Arc::new(
        herald::templates::TemplateRegistry::load(
            &std::path::Path::new(MANIFEST_DIR).join("templates"),
        )
        .unwrap(),
    );
    let mut engine = DeliveryEngine::new(
        ledger.clone(),
        templates,
        DeliveryOptions {
            worker_id: "stepper".into(),
            batch_size: 10,
            max_in_flight: 10,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            keyring: None,
        },
    );
    engine.register(std::sync::Arc::new(
        EmailAdapter::new(&EmailSettings {
            url: sink.url(),
            from: "herald <noreply@herald.local>".into(),
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
            pool_max: 1,
            pool_get_timeout: Duration::from_secs(5),
        })
        .unwrap(),
    ));
    assert_eq!(
        engine.deliver_due_once().await.unwrap(),
        0,
        "nothing due yet"
    );
    for key in ["step-1", "step-2"] {
        ledger.request(&order_confirmation(key)).await.unwrap();
    }
    assert_eq!(engine.deliver_due_once().await.unwrap(), 2);
    assert_eq!(engine.deliver_due_once().await.unwrap(), 0, "both sent");
    assert_eq!(sink.received().len(), 2);
    let sent = db
        .scalar_i64("SELECT count(*) FROM communication_record WHERE status = 'SENT'")
        .await;
    assert_eq!(sent, 2);
    // The relay's round publishes the two CommunicationSent events (nobody waits for them).
    assert_eq!(ledger.relay_outbox(100).await.unwrap(), 2);
    assert_eq!(ledger.relay_outbox(100).await.unwrap(), 0);
}
