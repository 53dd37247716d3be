//! Technical failures inside a handler reach Cockpit as failures with decreasing retries, then
//! an incident; after the fix, bumping the retries finishes the work without duplicates.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_unreachable_while_a_task_is_locked_raises_an_incident_then_recovers() {
    let camunda = camunda();
    deploy(&camunda).await;
    let mut db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-7007").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();

    // The topic file as shipped, with short retry timeouts for the test.
    let topics = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(MANIFEST_DIR).join("topics/send-proposal.toml"),
    )
    .unwrap();
    let mut topic: toml::Table = toml::from_str(&shipped).unwrap();
    let incident = topic["incident"].as_table_mut().unwrap();
    incident.insert("retries".into(), toml::Value::Integer(2));
    incident.insert(
        "retry_timeouts_ms".into(),
        toml::Value::Array(vec![toml::Value::Integer(300)]),
    );
    std::fs::write(
        topics.path().join("send-proposal.toml"),
        toml::to_string(&topic).unwrap(),
    )
    .unwrap();

    let herald = start_herald(
        &db,
        &sink.url(),
        &lane,
        &[("HERALD_PATHS__TOPICS", topics.path().to_str().unwrap())],
    )
    .await;
    wait_for(
        "herald to start its worker",
        Duration::from_secs(30),
        || async { herald.log_text().contains("worker started").then_some(()) },
    )
    .await;

    db.set_reachable(false).await;
    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-7007",
        ("recipientEmail", "ops-check@customer.example"),
    )
    .await;

    let incident = wait_for_first_within(
        &camunda,
        "an incident",
        &format!("/incident?processInstanceId={}", instance.id),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(incident["incidentType"], "failedExternalTask");
    let message = incident["incidentMessage"].as_str().unwrap_or("");
    assert!(message.contains("ledger database unavailable"), "{message}");
    let task_id = incident["configuration"].as_str().unwrap().to_string();
    let (task, details) = incident_task(&camunda, &incident).await;
    assert_eq!(task["retries"], 0);
    assert!(
        details.contains("database"),
        "the details say what failed: {details}"
    );
    assert!(
        !details.contains("ops-check@"),
        "error details must not carry the address: {details}"
    );
    assert!(sink.received().is_empty());
    assert!(
        herald
            .log_text()
            .contains("task failed; the engine retries it"),
        "retries were counted down first"
    );

    // The operator fixes the database and bumps the retries in Cockpit.
    db.set_reachable(true).await;
    db.reconnect().await;
    camunda.set_retries(&task_id, 1).await.unwrap();
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    assert_eq!(sink.received().len(), 1);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        1
    );
    let open = camunda
        .get_json(&format!("/incident?processInstanceId={}", instance.id))
        .await
        .unwrap();
    assert_eq!(
        open.as_array().unwrap().len(),
        0,
        "the incident is resolved"
    );
}
