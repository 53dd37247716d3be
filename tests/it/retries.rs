//! Retries by failure class against a real SMTP server: 4xx is retried as a new attempt on the
//! same record, 5xx fails for good and drives the BPMN failure path.

use std::time::Duration;

use crate::support::*;

const FAST_RETRIES: (&str, &str) = ("HERALD_DELIVERY__RETRY_SCHEDULE_S", "0,0.5,0.5");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_451_then_250_gives_two_attempts_on_one_record() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-4004").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    sink.script_recipient("busy@customer.example", &[451]);
    let lane = new_lane();
    let _herald = start_herald(&db, &sink.url(), &lane, &[FAST_RETRIES]).await;

    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-4004",
        ("recipientEmail", "busy@customer.example"),
    )
    .await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;

    assert_eq!(sink.received().len(), 1);
    let record = completed_communication(&camunda, &db, &instance.id).await;
    assert_eq!(record.status, "SENT");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        1
    );
    assert_eq!(record.attempts.len(), 2, "{:?}", record.attempts);
    assert_eq!(record.attempts[0].status, "FAILED_RETRYABLE");
    assert_eq!(record.attempts[0].response_code, Some(451));
    assert_eq!(
        record.attempts[0].failure_class,
        Some(herald::ledger::FailureClass::TemporaryRejection)
    );
    assert_eq!(record.attempts[1].status, "ACCEPTED");
    assert_eq!(record.attempts[1].response_code, Some(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_550_fails_final_and_the_process_takes_the_failure_path() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-5005").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    sink.script_recipient("nobody@customer.example", &[550]);
    let lane = new_lane();
    // A proposal is critical: its final failure alerts the operations group.
    let operator = format!("ops{}", &lane[5..13]);
    create_user(
        &operator,
        "Ops",
        "Watch",
        Some(&format!("{operator}@corp.example")),
    )
    .await;
    ensure_group("operations", &[&operator]).await;
    let herald = start_herald(&db, &sink.url(), &lane, &[FAST_RETRIES]).await;

    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-5005",
        ("recipientEmail", "nobody@customer.example"),
    )
    .await;
    let task = wait_for_user_task(&camunda, &instance.id, "handle_failed_delivery").await;
    assert_eq!(task["name"], "Handle failed proposal delivery");

    assert!(sink.received_except_alerts().is_empty());
    let record = completed_communication(&camunda, &db, &instance.id).await;
    let id = record.communication_id;
    assert_eq!(record.status, "FAILED_FINAL");
    assert_eq!(record.failure_code.as_deref(), Some("INVALID_RECIPIENT"));
    assert_eq!(
        record.attempts.len(),
        1,
        "a permanent failure is not retried"
    );
    assert_eq!(record.attempts[0].response_code, Some(550));
    let failed_events = db
        .scalar_i64(
            &format!("SELECT count(*) FROM communication_outbox WHERE event_type = 'CommunicationFailed' AND aggregate_id = '{id}'"),
        )
        .await;
    assert_eq!(failed_events, 1);
    // The provider quoted the address in its answer: neither the ledger nor the log keep it.
    assert!(!record
        .failure_message
        .unwrap_or_default()
        .contains("nobody@"));
    assert!(!record.attempts[0]
        .response_summary
        .clone()
        .unwrap_or_default()
        .contains("nobody@"));
    assert!(
        herald.log_text().contains("n***@customer.example"),
        "the log names the masked address"
    );
    assert!(
        !herald.log_text().contains("nobody@customer.example"),
        "no raw address in herald's log"
    );

    // Fallout: the operator has the alert in the inbox and by email, naming the communication.
    let to = format!("{operator}@corp.example");
    let alert = wait_for(
        "the fallout alert by email",
        Duration::from_secs(30),
        || {
            let mails = sink.received();
            let to = to.clone();
            async move { mails.into_iter().find(|m| m.rcpt_to == [to.clone()]) }
        },
    )
    .await;
    assert_eq!(
        alert.header("X-Herald-Communication-Type").as_deref(),
        Some("FALLOUT_ALERT")
    );
    assert!(alert.header("Subject").unwrap().contains(&id.to_string()));
    let reason = alert.body_text();
    assert!(
        reason.contains("INVALID_RECIPIENT") && reason.contains("QUOTE_PROPOSAL_DELIVERY"),
        "{reason}"
    );
    assert!(
        !reason.contains("nobody@"),
        "no raw address in the alert: {reason}"
    );
    let in_app: Vec<(String,)> = wait_for("the alert in the inbox", Duration::from_secs(30), || {
        let query = sqlx::query_as("SELECT title FROM inbox_notification WHERE recipient_ref = $1")
            .bind(format!("user:{operator}"))
            .fetch_all(&db.pool);
        async move { Some(query.await.unwrap()).filter(|rows: &Vec<(String,)>| !rows.is_empty()) }
    })
    .await;
    assert_eq!(in_app.len(), 1, "{in_app:?}");
    assert!(in_app[0].0.contains(&id.to_string()));
    let raised = format!(
        "SELECT count(*) FROM fallout_signal WHERE communication_id = '{id}' AND status = 'RAISED'"
    );
    wait_for(
        "the fallout signal to be raised",
        Duration::from_secs(30),
        || async { (db.scalar_i64(&raised).await == 1).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_explicit_address_is_a_business_failure_not_an_incident() {
    let ProposalScene {
        camunda,
        db,
        sink: _sink,
        lane,
        herald: _herald,
    } = ProposalScene::start("Q-6006", &[]).await;
    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-6006",
        ("recipientEmail", "not-an-address"),
    )
    .await;
    wait_for_user_task(&camunda, &instance.id, "handle_failed_delivery").await;
    let incidents = camunda
        .get_json(&format!("/incident?processInstanceId={}", instance.id))
        .await
        .unwrap();
    assert_eq!(incidents.as_array().unwrap().len(), 0);
    let (status, code) = db
        .outcome_where("communication_type = 'QUOTE_PROPOSAL_DELIVERY'")
        .await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("FAILED_FINAL", Some("INVALID_ADDRESS"))
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM communication_delivery_attempt a JOIN communication_record r USING (communication_id)
             WHERE r.communication_type = 'QUOTE_PROPOSAL_DELIVERY'"
        )
        .await,
        0
    );
}

/// A retry due sooner than the poll interval leaves on time: the statement that requeues the
/// job wakes the delivery loops, which otherwise slept until their poll (60 s here) because
/// nothing was due when they went to sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_sooner_than_the_poll_interval_leave_on_time() {
    const SCHEDULE_S: [f64; 4] = [0.0, 1.0, 2.0, 3.0];
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let order = order_confirmation("slow-retry");
    let address = order.admitted.recipient.address.clone().unwrap();
    sink.script_recipient(&address, &[451, 451, 451]);
    let settings = test_settings(
        &db,
        &sink.url(),
        &new_lane(),
        &[
            ("HERALD_DELIVERY__POLL_INTERVAL_MS", "60000"),
            ("HERALD_DELIVERY__RETRY_SCHEDULE_S", "0,1,2,3"),
            ("HERALD_DELIVERY__JITTER", "0"),
        ],
    );
    let delivery_only = herald::runtime::Components {
        workers: false,
        delivery: true,
        relay: false,
        api: false,
    };
    let herald = spawn_herald(settings, delivery_only).await;
    let ledger = herald::ledger::Ledger::new(db.pool.clone(), Duration::from_secs(60));
    ledger.request(&order).await.unwrap();

    // (attempt, status, started, ended) in seconds since the epoch, as the ledger has them.
    let attempts = || async {
        sqlx::query_as::<_, (i32, String, f64, Option<f64>)>(
            "SELECT attempt_no, status, EXTRACT(EPOCH FROM attempted_at)::float8,
                    EXTRACT(EPOCH FROM completed_at)::float8
             FROM communication_delivery_attempt ORDER BY attempt_no",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    // The schedule takes 6 s; with the poll's 60 s per retry it would take minutes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut seen = attempts().await;
    while !(seen.len() == 4 && seen[3].3.is_some()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = attempts().await;
    }
    herald.stop().await;
    let statuses: Vec<&str> = seen.iter().map(|a| a.1.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "FAILED_RETRYABLE",
            "FAILED_RETRYABLE",
            "FAILED_RETRYABLE",
            "ACCEPTED"
        ],
        "{seen:?}"
    );
    for pair in seen.windows(2) {
        let (before, next) = (&pair[0], &pair[1]);
        let planned = SCHEDULE_S[before.0 as usize];
        let waited = next.2 - before.3.unwrap();
        println!(
            "attempt {}: planned {planned:.1} s after attempt {} ended, left after {waited:.3} s",
            next.0, before.0
        );
        // Due at the end of the attempt before plus the delay (the same now()); claimed once
        // due, so never early.
        assert!(
            (planned - 0.001..planned + 0.5).contains(&waited),
            "attempt {} was planned {planned} s after attempt {} ended and left after {waited:.3} s: {seen:?}",
            next.0,
            before.0
        );
    }
}

/// The statement that records a retry notifies the delivery loops of every process (any
/// listener hears it); the hot path stays quiet: neither a claim nor attempts that requeue
/// nothing notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeue_notifies_the_delivery_loops_and_nothing_else_of_the_hot_path_does() {
    use herald::ledger::wakeup::Heard;
    use herald::ledger::{AttemptResult, FailureClass, Ledger};
    let db = TestDb::create().await;
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let mut listener = ledger.wakeup("herald_delivery");
    // Connects and listens.
    assert_eq!(listener.hear(Duration::from_millis(50)).await, Heard::Quiet);
    for key in ["requeue-1", "requeue-2", "requeue-3", "requeue-4"] {
        ledger.request(&order_confirmation(key)).await.unwrap();
    }
    let mut inserts = 0;
    while let Heard::Payload(_) = listener.hear(Duration::from_millis(300)).await {
        inserts += 1;
    }
    assert!(inserts >= 1, "queueing a job notifies");
    let quiet = Duration::from_millis(300);

    let jobs = ledger
        .claim_jobs("sender-x", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 4);
    assert_eq!(listener.hear(quiet).await, Heard::Quiet, "a claim");

    let sent = AttemptResult::Sent {
        provider_message_id: Some("<id@test>".into()),
        response_code: Some(250),
        summary: "250 ok".into(),
        content_hash: "hash".into(),
        attachment_hashes: Vec::new(),
        retained: None,
    };
    let failed = AttemptResult::Final {
        failure_class: FailureClass::InvalidRecipient,
        failure_code: "INVALID_RECIPIENT".into(),
        response_code: Some(550),
        summary: "550 no such user".into(),
    };
    let ended = ledger
        .finish_attempts("sender-x", &[(&jobs[0], sent), (&jobs[1], failed)])
        .await
        .unwrap();
    assert_eq!(ended, [true, true]);
    assert_eq!(
        listener.hear(quiet).await,
        Heard::Quiet,
        "attempts that requeue nothing"
    );

    let retry = AttemptResult::Retry {
        failure_class: FailureClass::TemporaryRejection,
        response_code: Some(451),
        summary: "451 try later".into(),
        after: Duration::from_secs(2),
    };
    let ended = ledger
        .finish_attempts(
            "sender-x",
            &[(&jobs[2], retry.clone()), (&jobs[3], retry.clone())],
        )
        .await
        .unwrap();
    assert_eq!(ended, [true, true]);
    assert_eq!(
        listener.hear(Duration::from_secs(5)).await,
        Heard::Payload(String::new()),
        "a statement that requeues"
    );
    assert_eq!(listener.hear(quiet).await, Heard::Quiet, "once");

    // A lost lease writes nothing, and requeues nothing.
    let ended = ledger
        .finish_attempts("sender-y", &[(&jobs[2], retry)])
        .await
        .unwrap();
    assert_eq!(ended, [false]);
    assert_eq!(listener.hear(quiet).await, Heard::Quiet, "a fenced attempt");
}

/// A loop's listener connects at its first wait, after the loop's first look at the queue: a
/// job queued in between notified nobody yet listening. That first wait returns at once, so
/// the loop looks again instead of sleeping its poll over the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_just_began_listening_says_to_look_again() {
    use herald::ledger::wakeup::Woke;
    let db = TestDb::create().await;
    let ledger = herald::ledger::Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let mut wakeup = ledger.wakeup("herald_delivery");
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Notified before the listener listens.
    ledger
        .request(&order_confirmation("before-listen"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        wakeup.wait(Duration::from_secs(10), &shutdown).await,
        Woke::Notified
    );
    assert!(started.elapsed() < Duration::from_secs(5), "at once");
    // Listening now: the next wait sleeps until a notification or its timeout.
    assert_eq!(
        wakeup.wait(Duration::from_millis(300), &shutdown).await,
        Woke::TimedOut
    );
    ledger
        .request(&order_confirmation("while-listening"))
        .await
        .unwrap();
    assert_eq!(
        wakeup.wait(Duration::from_secs(10), &shutdown).await,
        Woke::Notified
    );
}
