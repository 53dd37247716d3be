//! Outcome messages that arrive before the process waits for them are retried until it does,
//! and recorded as failed correlations after their deadline: never lost, never fatal.

use std::time::Duration;

use crate::support::*;
use herald::camunda::CamundaClient;

async fn active_review_task(camunda: &CamundaClient, process_instance_id: &str) -> String {
    let task = wait_for_user_task(camunda, process_instance_id, "review").await;
    task["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_outcome_is_retried_until_the_process_waits_for_it() {
    let camunda = camunda();
    deploy_fixtures(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-8008").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    let instance = camunda
        .start_process(
            "test-proposal-with-review",
            &format!("Q-8008-r1-{}", &lane[5..13]),
            &proposal_vars(
                &lane,
                "Q-8008",
                ("recipientEmail", "early@customer.example"),
            ),
        )
        .await
        .unwrap();
    let review = active_review_task(&camunda, &instance.id).await;
    sink.wait_for(1, Duration::from_secs(30)).await;

    // The email went out while the process sits in the review task: the correlation misses.
    let tries = wait_for("a missed correlation", Duration::from_secs(30), || async {
        let (tries, error): (i32, Option<String>) =
            sqlx::query_as("SELECT tries, last_error FROM camunda_correlation")
                .fetch_optional(&db.pool)
                .await
                .unwrap()?;
        (tries >= 2 && error.is_some_and(|e| e.contains("CommunicationSent"))).then_some(tries)
    })
    .await;
    let status: String = sqlx::query_scalar("SELECT status FROM camunda_correlation")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "PENDING", "still retried after {tries} tries");

    complete_user_task(&review).await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    // herald records the correlation once the engine has answered, which may be just after
    // the process ended.
    wait_for(
        "the correlation recorded",
        Duration::from_secs(10),
        || async {
            let status: String = sqlx::query_scalar("SELECT status FROM camunda_correlation")
                .fetch_one(&db.pool)
                .await
                .unwrap();
            (status == "CORRELATED").then_some(())
        },
    )
    .await;
    assert!(herald.log_text().contains("message correlated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlation_past_its_deadline_is_recorded_as_failed_and_the_relay_goes_on() {
    let camunda = camunda();
    deploy_fixtures(&camunda).await;
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-9009").await;
    db.add_proposal_document("acme", "Q-9010").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = start_herald(
        &db,
        &sink.url(),
        &lane,
        &[("HERALD_RELAY__CORRELATION_DEADLINE_S", "2")],
    )
    .await;
    let stuck = camunda
        .start_process(
            "test-proposal-with-review",
            &format!("Q-9009-r1-{}", &lane[5..13]),
            &proposal_vars(&lane, "Q-9009", ("recipientEmail", "late@customer.example")),
        )
        .await
        .unwrap();
    let failed = wait_for(
        "the correlation to be given up",
        Duration::from_secs(60),
        || async {
            let row: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT status, last_error FROM camunda_correlation WHERE process_instance_id = $1",
            )
            .bind(&stuck.id)
            .fetch_optional(&db.pool)
            .await
            .unwrap();
            row.filter(|(status, _)| status == "FAILED")
        },
    )
    .await;
    let reason = failed.1.unwrap_or_default();
    assert!(
        reason.contains("does not wait for 'CommunicationSent' after 'send_proposal'"),
        "the reason names the message and the task: {reason}"
    );

    // The relay is still alive: another process gets its outcome.
    let next = start_proposal(
        &camunda,
        &lane,
        "Q-9010",
        ("recipientEmail", "next@customer.example"),
    )
    .await;
    wait_until_completed(&camunda, &next.id, Duration::from_secs(60)).await;
    assert_eq!(sink.received().len(), 2);
}
