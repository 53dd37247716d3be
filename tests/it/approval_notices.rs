//! approval-reminder and escalation on the real engine: recipients from Camunda's identity
//! service, one record per recipient under a parent, reminders never resent for a re-fetched
//! task but sent again for the next timer firing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use herald::camunda::worker::{HandlerOutcome, TaskHandler};
use herald::camunda::{TypedValue, Variables};
use herald::ledger::{CommunicationId, Ledger};
use herald::workers::task_notice::{NoticeKind, TaskNotice};

fn approval_vars(lane: &str, extra: &[(&str, TypedValue)]) -> Variables {
    let mut v = Variables::new();
    v.insert("heraldLane".into(), TypedValue::string(lane));
    v.insert("tenantId".into(), TypedValue::string("acme"));
    for (name, value) in extra {
        v.insert(name.to_string(), value.clone());
    }
    v
}

/// Starts a quote-approval process in `lane` with these settings.
async fn start_approval(
    camunda: &herald::camunda::CamundaClient,
    lane: &str,
    quote: &str,
    settings: &[(&str, TypedValue)],
) -> herald::camunda::client::ProcessInstance {
    camunda
        .start_process(
            "quote-approval",
            &format!("{quote}-r1-{}", short(lane)),
            &approval_vars(lane, settings),
        )
        .await
        .expect("start quote-approval")
}

fn short(lane: &str) -> &str {
    &lane[5..13]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_go_to_the_assignee_once_per_timer_firing() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let approver = format!("anna{}", short(&lane));
    create_user(
        &approver,
        "Anna",
        "Approver",
        Some(&format!("{approver}@corp.example")),
    )
    .await;
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;

    let instance = start_approval(
        &camunda,
        &lane,
        "Q-A1",
        &[
            ("approver", TypedValue::string(&approver)),
            ("reminderCycle", TypedValue::string("R2/PT3S")),
            ("escalationAfter", TypedValue::string("PT1H")),
        ],
    )
    .await;
    let mails = sink.wait_for(2, Duration::from_secs(60)).await;
    assert_eq!(mails.len(), 2);
    for mail in &mails {
        assert_eq!(mail.rcpt_to, vec![format!("{approver}@corp.example")]);
        assert!(
            mail.body().contains("Hello Anna Approver"),
            "{}",
            mail.body()
        );
    }
    let mut subjects: Vec<String> = mails.iter().map(|m| m.header("Subject").unwrap()).collect();
    subjects.sort();
    assert!(
        subjects[0].starts_with("Reminder 1: \"Approve quote\""),
        "{subjects:?}"
    );
    assert!(
        subjects[1].starts_with("Reminder 2: \"Approve quote\""),
        "{subjects:?}"
    );

    // Two parents (one per firing), each with one child; the approval task is still open.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record WHERE is_parent")
            .await,
        2
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record WHERE parent_id IS NOT NULL AND status = 'SENT'").await,
        2
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM communication_record WHERE is_parent AND status = 'SENT'"
        )
        .await,
        2,
        "a parent is SENT once its children are"
    );
    wait_for_user_task(&camunda, &instance.id, "approve_quote").await;
    assert_eq!(sink.received().len(), 2, "R2: no third reminder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refetched_reminder_task_is_not_sent_twice() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let approver = format!("bob{}", short(&lane));
    create_user(
        &approver,
        "Bob",
        "Builder",
        Some(&format!("{approver}@corp.example")),
    )
    .await;
    let instance = start_approval(
        &camunda,
        &lane,
        "Q-A2",
        &[
            ("approver", TypedValue::string(&approver)),
            ("reminderCycle", TypedValue::string("R1/PT1S")),
            ("escalationAfter", TypedValue::string("PT1H")),
        ],
    )
    .await;

    // A first worker locks the reminder task for 2 s, records the reminder, and dies.
    let topic = shipped_topic("approval-reminder");
    let locked = lock_as_doomed_worker(&camunda, &topic, &lane).await;
    assert_eq!(
        locked
            .extension_properties
            .get("taskDefinitionKey")
            .map(String::as_str),
        Some("approve_quote"),
        "extension properties are fetched"
    );
    assert_eq!(
        locked
            .extension_properties
            .get("taskDefinitionKey")
            .map(String::as_str),
        Some("approve_quote")
    );
    let intake = intake(&db, &camunda);
    let handler = TaskNotice::new(topic, intake, NoticeKind::Reminder);
    let HandlerOutcome::Complete(vars) = handler.handle(&locked).await else {
        panic!("the handler should have recorded the reminder")
    };
    let first_id = vars["communicationId"].value.as_str().unwrap().to_string();

    // herald sends the queued reminder and, after the lock expired, fetches the task again.
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    wait_for_first(
        &camunda,
        "the reminder task to be completed",
        &format!(
            "/history/variable-instance?processInstanceId={}&variableName=communicationId",
            instance.id
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.received().len(), 1, "one reminder, not two");
    let completed_with = history_variables(&camunda, &instance.id).await["communicationId"].clone();
    assert_eq!(completed_with.as_str(), Some(first_id.as_str()));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        2,
        "one parent, one child"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unassigned_reminders_reach_candidates_and_escalation_reaches_the_group() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let s = short(&lane);
    let (c1, c2, m1, m2, nomail) = (
        format!("cara{s}"),
        format!("carl{s}"),
        format!("mia{s}"),
        format!("max{s}"),
        format!("nomail{s}"),
    );
    create_user(
        &c1,
        "Cara",
        "Candidate",
        Some(&format!("{c1}@corp.example")),
    )
    .await;
    create_user(
        &c2,
        "Carl",
        "Candidate",
        Some(&format!("{c2}@corp.example")),
    )
    .await;
    create_user(&m1, "Mia", "Manager", Some(&format!("{m1}@corp.example"))).await;
    create_user(&m2, "Max", "Manager", Some(&format!("{m2}@corp.example"))).await;
    create_user(&nomail, "No", "Mail", None).await;
    let approvers = format!("approvers{s}");
    let managers = format!("managers{s}");
    create_group(&approvers, &[&c1, &c2]).await;
    create_group(&managers, &[&m1, &m2, &nomail]).await;
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;

    let instance = camunda
        .start_process(
            "quote-approval",
            &format!("Q-A3-r1-{s}"),
            &approval_vars(
                &lane,
                &[
                    ("approverGroup", TypedValue::string(&approvers)),
                    ("reminderCycle", TypedValue::string("R1/PT1S")),
                    ("escalationAfter", TypedValue::string("PT8S")),
                    ("escalationGroup", TypedValue::string(&managers)),
                ],
            ),
        )
        .await
        .unwrap();
    let escalated = wait_for_user_task(&camunda, &instance.id, "approve_quote_escalated").await;
    // The manager without an address makes the escalation fallout: operators get an alert,
    // which is not counted here.
    wait_for("four notices", Duration::from_secs(60), || {
        let mails = sink.received_except_alerts();
        async move { (mails.len() >= 4).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails = sink.received_except_alerts();
    let by_rcpt: BTreeMap<String, String> = mails
        .iter()
        .map(|m| (m.rcpt_to[0].clone(), m.header("Subject").unwrap()))
        .collect();
    assert_eq!(mails.len(), 4, "{by_rcpt:?}");
    assert!(by_rcpt[&format!("{c1}@corp.example")].starts_with("Reminder 1"));
    assert!(by_rcpt[&format!("{c2}@corp.example")].starts_with("Reminder 1"));
    assert!(by_rcpt[&format!("{m1}@corp.example")].starts_with("Escalation: \"Approve quote\""));
    assert!(by_rcpt[&format!("{m2}@corp.example")].starts_with("Escalation"));
    let escalation = mails
        .iter()
        .find(|m| m.rcpt_to[0].starts_with(&m1))
        .unwrap();
    assert!(
        escalation
            .body_text()
            .contains("assigned to nobody (unassigned), has waited"),
        "{}",
        escalation.body_text()
    );

    // The group member without an address is a recorded business failure, not an incident.
    let (status, code) = db
        .outcome_where(&format!("recipient_ref = 'user:{nomail}'"))
        .await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("FAILED_FINAL", Some("NO_VALID_ADDRESS"))
    );
    let incidents = camunda
        .get_json(&format!("/incident?processInstanceId={}", instance.id))
        .await
        .unwrap();
    assert_eq!(incidents.as_array().unwrap().len(), 0);

    // History shows both levels: the escalation's parent and its three children.
    let escalation_id: String = sqlx::query_scalar(
        "SELECT communication_id::text FROM communication_record WHERE is_parent AND communication_type = 'SLA_ESCALATION'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let children = ledger
        .children("acme", escalation_id.parse::<CommunicationId>().unwrap())
        .await
        .unwrap();
    assert_eq!(children.len(), 3);
    let parent = ledger
        .get("acme", escalation_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        parent.status, "SENT",
        "two of three reached: the escalation went out"
    );

    // The process reassigned the task to the managers.
    let links = camunda
        .get_json(&format!(
            "/task/{}/identity-links",
            escalated["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert!(
        links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["groupId"] == managers.as_str()),
        "{links}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedupe_window_on_the_topic_holds_back_the_next_reminder() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let approver = format!("dora{}", short(&lane));
    create_user(
        &approver,
        "Dora",
        "Dedupe",
        Some(&format!("{approver}@corp.example")),
    )
    .await;
    // The shipped topic with a one-hour dedupe window.
    let topics = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(std::path::Path::new(MANIFEST_DIR).join("topics")).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.ends_with("approval-reminder.toml") {
            text = text.replace(
                "waits_for_outcome = false",
                "waits_for_outcome = false\ndedupe_window = \"PT1H\"",
            );
        }
        std::fs::write(topics.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let _herald = start_herald(
        &db,
        &sink.url(),
        &lane,
        &[("HERALD_PATHS__TOPICS", topics.path().to_str().unwrap())],
    )
    .await;
    start_approval(
        &camunda,
        &lane,
        "Q-A4",
        &[
            ("approver", TypedValue::string(&approver)),
            ("reminderCycle", TypedValue::string("R2/PT3S")),
            ("escalationAfter", TypedValue::string("PT1H")),
        ],
    )
    .await;
    wait_for(
        "both reminders to be recorded",
        Duration::from_secs(60),
        || async {
            let n = db
                .scalar_i64("SELECT count(*) FROM communication_record WHERE parent_id IS NOT NULL")
                .await;
            (n == 2).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sink.received().len(),
        1,
        "the second reminder is held back by the window"
    );
    let statuses: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT status, failure_code, rule_ref FROM communication_record WHERE parent_id IS NOT NULL ORDER BY requested_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(statuses[0].0, "SENT");
    assert_eq!(
        (statuses[1].0.as_str(), statuses[1].1.as_deref()),
        ("SUPPRESSED", Some("DEDUPED"))
    );
    assert_eq!(
        statuses[0].2, "topic:approval-reminder:v1",
        "the rule and its version are evidence"
    );
}
