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
