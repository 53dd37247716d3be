//! Topic files are rules with dates and hours, seen from a running herald on the real engine:
//! a topic not yet effective is not subscribed; a topic with business hours holds a notice due
//! outside them until the next opening.

use std::time::Duration;

use crate::support::*;
use chrono::{Datelike, Utc};
use herald::camunda::{TypedValue, Variables};

/// A quote-approval process in `lane` whose one reminder fires after a second.
async fn start_reminded_approval(
    camunda: &herald::camunda::CamundaClient,
    lane: &str,
    quote: &str,
    approver: &str,
) {
    let mut vars = Variables::new();
    vars.insert("heraldLane".into(), TypedValue::string(lane));
    vars.insert("tenantId".into(), TypedValue::string("acme"));
    vars.insert("approver".into(), TypedValue::string(approver));
    vars.insert("reminderCycle".into(), TypedValue::string("R1/PT1S"));
    vars.insert("escalationAfter".into(), TypedValue::string("PT1H"));
    camunda
        .start_process(
            "quote-approval",
            &format!("{quote}-{}", &lane[5..13]),
            &vars,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_before_its_effective_date_is_not_subscribed() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-EFF1").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let future = topics_with("send-proposal.toml", |text| {
        format!("effective_from = 2099-01-01T00:00:00Z\n{text}")
    });
    let topics = future.path().to_string_lossy().to_string();
    let early = start_herald(
        &db,
        &sink.url(),
        &lane,
        &[("HERALD_PATHS__TOPICS", &topics)],
    )
    .await;
    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-EFF1",
        ("recipientEmail", "eff@customer.example"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tasks = camunda
        .get_json(&format!("/external-task?processInstanceId={}", instance.id))
        .await
        .unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    assert!(
        tasks[0]["workerId"].is_null(),
        "nobody fetched the task: {tasks}"
    );
    assert!(sink.received().is_empty());
    assert!(
        early.log_text().contains("not effective"),
        "the log says why the topic is idle"
    );

    // With the topic in effect, the same task is served.
    let _now = start_herald(&db, &sink.url(), &lane, &[]).await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_outside_business_hours_waits_for_the_opening() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let approver = format!("bea{}", &lane[5..13]);
    create_user(
        &approver,
        "Bea",
        "Approver",
        Some(&format!("{approver}@corp.example")),
    )
    .await;
    // Open every day but today (UTC): closed now, opening tomorrow at 00:00 UTC.
    let today = Utc::now().weekday();
    let days: Vec<String> = (0..7)
        .map(|d| chrono::Weekday::try_from(d as u8).unwrap())
        .filter(|d| *d != today)
        .map(|d| format!("\"{}\"", d.to_string().to_uppercase()))
        .collect();
    let hours = format!(
        "business_hours = {{ start = \"00:00\", end = \"23:59\", days = [{}], timezone = \"UTC\" }}\n",
        days.join(", ")
    );
    let closed = topics_with("approval-reminder.toml", |text| format!("{hours}{text}"));
    let topics = closed.path().to_string_lossy().to_string();
    let _herald = start_herald(
        &db,
        &sink.url(),
        &lane,
        &[("HERALD_PATHS__TOPICS", &topics)],
    )
    .await;
    start_reminded_approval(&camunda, &lane, "Q-BH", &approver).await;

    let due: chrono::DateTime<Utc> = wait_for("the held reminder", Duration::from_secs(30), || {
        let query = sqlx::query_scalar(
            "SELECT j.due_at FROM delivery_job j JOIN communication_record r USING (communication_id)
             WHERE r.recipient_ref = $1 AND r.status = 'QUEUED'",
        )
        .bind(format!("user:{approver}"))
        .fetch_optional(&db.pool);
        async move { query.await.unwrap() }
    })
    .await;
    let tomorrow = (Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(due, tomorrow, "held until business hours open");
    let reason: String = sqlx::query_scalar(
        "SELECT d.reason_code FROM communication_decision d JOIN communication_record r USING (communication_id)
         WHERE r.recipient_ref = $1 AND d.check_name = 'business-hours'",
    )
    .bind(format!("user:{approver}"))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(reason, "OUTSIDE_BUSINESS_HOURS");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sink.received().is_empty(), "nothing goes out while closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_falls_back_to_the_inbox_for_an_approver_without_an_email_address() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let approver = format!("noah{}", &lane[5..13]);
    create_user(&approver, "Noah", "Nomail", None).await;
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    start_reminded_approval(&camunda, &lane, "Q-IN", &approver).await;
    let (channel, status): (String, String) = wait_for("the reminder", Duration::from_secs(30), || {
        let query = sqlx::query_as(
            "SELECT channel, status FROM communication_record WHERE recipient_ref = $1 AND status = 'SENT'",
        )
        .bind(format!("user:{approver}"))
        .fetch_optional(&db.pool);
        async move { query.await.unwrap() }
    })
    .await;
    assert_eq!((channel.as_str(), status.as_str()), ("IN_APP", "SENT"));
    let (title,): (String,) =
        sqlx::query_as("SELECT title FROM inbox_notification WHERE recipient_ref = $1")
            .bind(format!("user:{approver}"))
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        title.starts_with("Reminder 1: \"Approve quote\""),
        "{title}"
    );
    let decided: Vec<(String,)> = sqlx::query_as(
        "SELECT d.reason_code FROM communication_decision d JOIN communication_record r USING (communication_id)
         WHERE r.recipient_ref = $1 ORDER BY d.decided_at, d.decision_id",
    )
    .bind(format!("user:{approver}"))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        decided.iter().any(|(code,)| code == "NO_VALID_ADDRESS"),
        "the record says why email was not used: {decided:?}"
    );
    assert!(sink.received().is_empty());
}
