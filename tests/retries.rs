//! Retries by failure class against a real SMTP server: 4xx is retried as a new attempt on the
//! same record, 5xx fails for good and drives the BPMN failure path.

mod support;

use std::time::Duration;

use herald::ledger::{CommunicationId, Ledger};
use support::*;

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
    let _herald = Herald::start(&db, &sink.url(), &lane, &[FAST_RETRIES]);

    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-4004",
        ("recipientEmail", "busy@customer.example"),
    )
    .await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;

    assert_eq!(sink.received().len(), 1);
    let id: CommunicationId = history_variables(&camunda, &instance.id).await["communicationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let record = Ledger::new(db.pool.clone(), Duration::from_secs(60))
        .get(id)
        .await
        .unwrap()
        .unwrap();
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
        record.attempts[0].failure_class.as_deref(),
        Some("TEMPORARY_REJECTION")
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
    let herald = Herald::start(&db, &sink.url(), &lane, &[FAST_RETRIES]);

    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-5005",
        ("recipientEmail", "nobody@customer.example"),
    )
    .await;
    let task = wait_for_user_task(&camunda, &instance.id, "handle_failed_delivery").await;
    assert_eq!(task["name"], "Handle failed proposal delivery");

    assert!(sink.received().is_empty());
    let id: CommunicationId = history_variables(&camunda, &instance.id).await["communicationId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let record = Ledger::new(db.pool.clone(), Duration::from_secs(60))
        .get(id)
        .await
        .unwrap()
        .unwrap();
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
            "SELECT count(*) FROM communication_outbox WHERE event_type = 'CommunicationFailed'",
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_explicit_address_is_a_business_failure_not_an_incident() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-6006").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = Herald::start(&db, &sink.url(), &lane, &[]);
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
    let (status, code): (String, Option<String>) =
        sqlx::query_as("SELECT status, failure_code FROM communication_record")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("FAILED_FINAL", Some("INVALID_ADDRESS"))
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_delivery_attempt")
            .await,
        0
    );
}
