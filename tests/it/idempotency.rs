//! One business communication per idempotency key, whatever the duplicates and crashes.

use std::time::Duration;

use crate::support::*;
use herald::camunda::worker::{HandlerOutcome, TaskHandler};
use herald::workers::send_proposal::SendProposal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_business_key_started_twice_sends_one_email() {
    let ProposalScene {
        camunda,
        db,
        sink,
        lane,
        herald: _herald,
    } = ProposalScene::start("Q-2002", &[]).await;

    let business_key = format!("Q-2002-r1-{}", &lane[5..13]);
    let vars = proposal_vars(
        &lane,
        "Q-2002",
        ("recipientEmail", "buyer@customer.example"),
    );
    let first = camunda
        .start_process("quote-proposal", &business_key, &vars)
        .await
        .unwrap();
    let second = camunda
        .start_process("quote-proposal", &business_key, &vars)
        .await
        .unwrap();
    wait_until_completed(&camunda, &first.id, Duration::from_secs(60)).await;
    wait_until_completed(&camunda, &second.id, Duration::from_secs(60)).await;

    // Give a duplicate every chance to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received().len(), 1, "exactly one email");
    let a = history_variables(&camunda, &first.id).await["communicationId"].clone();
    let b = history_variables(&camunda, &second.id).await["communicationId"].clone();
    assert_eq!(a, b, "both instances hold the same communication");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        1
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_delivery_attempt")
            .await,
        1
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_waiter")
            .await,
        2
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM camunda_correlation WHERE status = 'CORRELATED'")
            .await,
        2,
        "each instance got its own CommunicationSent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_crashing_between_insert_and_complete_sends_once() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-3003").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let business_key = format!("Q-3003-r2-{}", &lane[5..13]);
    let instance = camunda
        .start_process(
            "quote-proposal",
            &business_key,
            &proposal_vars(&lane, "Q-3003", ("recipientEmail", "cfo@customer.example")),
        )
        .await
        .unwrap();

    // A first worker locks the task for 2 s, records the communication with herald's own
    // handler, and dies before it completes the task.
    let topic = shipped_topic("send-proposal");
    let locked = lock_as_doomed_worker(&camunda, &topic, &lane).await;
    assert_eq!(locked.process_instance_id, instance.id);
    let intake = intake(&db, &camunda);
    let handler = SendProposal::new(topic, intake);
    let HandlerOutcome::Complete(vars) = handler.handle(&locked).await else {
        panic!("the handler should have recorded the communication")
    };
    let crashed_id = vars["communicationId"].value.as_str().unwrap().to_string();
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        1
    );
    assert!(sink.received().is_empty());

    // herald starts; once the dead worker's lock expires it fetches the task again.
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.received().len(), 1, "exactly one email");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        1
    );
    let vars = history_variables(&camunda, &instance.id).await;
    assert_eq!(
        vars["communicationId"].as_str(),
        Some(crashed_id.as_str()),
        "the re-fetched task got the existing record"
    );
}
