//! Noise control on a running herald: a rate limit delays the excess of a critical type (never
//! drops it) and suppresses the excess of another type as RATE_LIMITED.

use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

const RULES: &str = r#"
[[rule]]
id = "order-confirmation"
version = 1
trigger = "OrderCreated"
communication_type = "ORDER_CONFIRMATION"
category = "TRANSACTIONAL"
recipient = "contact:data.customerContactId"
channels = ["EMAIL"]
template_family = "order-confirmation-email"
rate_limit = { max = 2, per = "PT1H" }
effective_from = 2026-01-01T00:00:00Z
subject = "ORDER:orderId"
[rule.payload]
orderNumber = "data.orderNumber"

[[rule]]
id = "fulfillment-update"
version = 1
trigger = "OrderFulfillmentUpdated"
communication_type = "FULFILLMENT_UPDATE"
category = "TRANSACTIONAL"
recipient = "contact:data.customerContactId"
channels = ["EMAIL"]
template_family = "order-confirmation-email"
rate_limit = { max = 1, per = "PT1H", scope = "recipient" }
effective_from = 2026-01-01T00:00:00Z
subject = "ORDER:orderId"
[rule.payload]
orderNumber = "data.orderNumber"
"#;

/// A herald whose event rules are `rules` (kept while the returned file lives).
async fn with_rules(
    db: &TestDb,
    sink: &smtp_sink::SmtpSink,
    rules: &str,
) -> (InProcess, Api, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    let (herald, api) = Api::start(
        db,
        &sink.url(),
        &[("HERALD_PATHS__RULES", file.path().to_str().unwrap())],
    )
    .await;
    (herald, api, file)
}

fn event(kind: &str, id: &str, order: &str) -> Value {
    json!({
        "eventId": id, "eventType": kind, "occurredAt": "2026-11-26T10:00:00Z",
        "orderId": order,
        "data": {"orderNumber": order, "customerContactId": "c-busy"}
    })
}

async fn post(api: &Api, body: Value) -> String {
    let (status, answer) = api.post("/v1/events", body).await;
    assert_eq!(status, 202, "{answer}");
    answer["communicationIds"][0].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_delays_critical_excess_and_suppresses_the_rest() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-busy", "Bea Busy", "busy@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api, _rules) = with_rules(&db, &sink, RULES).await;

    let first = post(&api, event("OrderCreated", "e1", "O-1")).await;
    post(&api, event("OrderCreated", "e2", "O-2")).await;
    let third = post(&api, event("OrderCreated", "e3", "O-3")).await;
    sink.wait_for(2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.received().len(), 2, "two an hour");

    // The third order confirmation is critical: held until the first leaves the window.
    let (status, due, first_at): (String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT r.status, j.due_at, (SELECT requested_at FROM communication_record WHERE communication_id = $2::uuid)
             FROM communication_record r JOIN delivery_job j USING (communication_id) WHERE r.communication_id = $1::uuid",
        )
        .bind(&third)
        .bind(&first)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "QUEUED", "delayed, not dropped");
    let expected = first_at + chrono::Duration::hours(1);
    assert!(
        (due - expected).num_seconds().abs() <= 2,
        "held until {expected}, is {due}"
    );
    let reason: String = sqlx::query_scalar(
        "SELECT reason_code FROM communication_decision WHERE communication_id = $1::uuid AND check_name = 'rate-limit'",
    )
    .bind(&third)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(reason, "RATE_LIMITED");

    // A fulfillment update is not critical, and its limit counts everything the recipient got
    // this hour: suppressed.
    let update = post(&api, event("OrderFulfillmentUpdated", "e4", "O-1")).await;
    let (_, record) = api.get(&format!("/v1/communications/{update}")).await;
    assert_eq!(record["status"], "SUPPRESSED", "{record}");
    assert_eq!(record["failureCode"], "RATE_LIMITED");
    assert_eq!(sink.received().len(), 2);
}

const DIGEST_RULES: &str = r#"
[[rule]]
id = "fulfillment-update"
version = 1
trigger = "OrderFulfillmentUpdated"
communication_type = "FULFILLMENT_UPDATE"
category = "TRANSACTIONAL"
recipient = "contact:data.customerContactId"
channels = ["EMAIL"]
template_family = "fulfillment-update-email"
digest = { every = "PT4S", template_family = "fulfillment-digest-email" }
effective_from = 2026-01-01T00:00:00Z
subject = "ORDER:orderId"
[rule.payload]
orderNumber = "data.orderNumber"
status = "data.status"
"#;

fn update(id: &str, contact: &str, order: &str, status: &str) -> Value {
    json!({
        "eventId": id, "eventType": "OrderFulfillmentUpdated", "occurredAt": "2026-11-26T10:00:00Z",
        "orderId": order,
        "data": {"orderNumber": order, "customerContactId": contact, "status": status}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_priority_updates_go_out_as_one_digest_per_recipient_and_window() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-many", "Max Many", "many@customer.example")
        .await;
    db.add_contact("acme", "c-one", "Olga One", "one@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api, _rules) = with_rules(&db, &sink, DIGEST_RULES).await;
    let items = [
        post(&api, update("u1", "c-many", "O-1", "picked")).await,
        post(&api, update("u2", "c-many", "O-2", "shipped")).await,
        post(&api, update("u3", "c-many", "O-1", "shipped")).await,
        post(&api, update("u4", "c-one", "O-9", "delivered")).await,
    ];
    // The same event again adds nothing.
    let (status, _) = api
        .post("/v1/events", update("u2", "c-many", "O-2", "shipped"))
        .await;
    assert_eq!(status, 200);
    for id in &items {
        let (_, record) = api.get(&format!("/v1/communications/{id}")).await;
        assert_eq!(
            (record["status"].as_str(), record["failureCode"].as_str()),
            (Some("SUPPRESSED"), Some("DIGESTED")),
            "{record}"
        );
    }
    let digests = wait_for("the digests", Duration::from_secs(20), || {
        let mails = sink.received();
        async move {
            let counted: usize = mails
                .iter()
                .map(|m| {
                    m.header("Subject")
                        .unwrap()
                        .split(' ')
                        .next()
                        .unwrap()
                        .parse::<usize>()
                        .unwrap()
                })
                .sum();
            (counted == 4).then_some(mails)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        sink.received().len(),
        digests.len(),
        "nothing more went out"
    );
    let to_many: Vec<_> = digests
        .iter()
        .filter(|m| m.rcpt_to == ["many@customer.example"])
        .collect();
    // The three updates fall into one window, or two when the test straddles a window's end.
    assert!((1..=2).contains(&to_many.len()), "{}", to_many.len());
    let text: String = to_many.iter().map(|m| m.body_text()).collect();
    for line in [
        "Order O-1: picked",
        "Order O-2: shipped",
        "Order O-1: shipped",
    ] {
        let listed = format!("- {line}");
        assert_eq!(text.matches(&listed).count(), 1, "{listed} once in: {text}");
    }
    let to_one: Vec<_> = digests
        .iter()
        .filter(|m| m.rcpt_to == ["one@customer.example"])
        .collect();
    assert_eq!(to_one.len(), 1);
    assert!(to_one[0]
        .header("Subject")
        .unwrap()
        .starts_with("1 updates"));
    assert!(to_one[0].body_text().contains("Order O-9: delivered"));
}

const ALERT_RULES: &str = r#"
[[rule]]
id = "fallout-alert"
version = 1
trigger = "FalloutCaseOpened"
communication_type = "FALLOUT_ALERT"
category = "OPERATIONAL"
# An internal alert goes to the company's own people (engine users), never to an address.
recipient = "camunda-user:data.notify"
channels = ["EMAIL"]
template_family = "fallout-alert-email"
aggregate = { by = "data.reason", every = "PT5S", template_family = "fallout-summary-email" }
effective_from = 2026-01-01T00:00:00Z
subject = "FALLOUT_CASE:data.falloutCaseId"
[rule.payload]
falloutCaseId = "data.falloutCaseId"
reason = "data.reason"
"#;

fn fallout(case: &str, reason: &str, operator: &str) -> Value {
    json!({
        "eventId": case, "eventType": "FalloutCaseOpened", "occurredAt": "2026-11-26T10:00:00Z",
        "data": {"falloutCaseId": case, "reason": reason, "notify": operator}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_alerts_are_aggregated_the_first_at_once_the_rest_in_one_summary() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api, _rules) = with_rules(&db, &sink, ALERT_RULES).await;
    let operator = format!("ops{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    create_user(&operator, "Olga", "Ops", Some("ops@corp.example")).await;
    let cases = ["FC-1", "FC-2", "FC-3", "FC-4"];
    for case in cases {
        post(&api, fallout(case, "billing system down", &operator)).await;
    }
    post(&api, fallout("FC-9", "address invalid", &operator)).await;

    // Every alert reaches the operator exactly once: on its own or as a line of a summary.
    let mails = wait_for("every alert, once", Duration::from_secs(20), || {
        let mails = sink.received();
        async move {
            let text: String = mails
                .iter()
                .map(|m| format!("{}\n{}", m.header("Subject").unwrap(), m.body_text()))
                .collect();
            ["FC-1", "FC-2", "FC-3", "FC-4", "FC-9"]
                .iter()
                .all(|c| text.contains(&format!("Fallout {c}")))
                .then_some(mails)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mails = if sink.received().len() > mails.len() {
        sink.received()
    } else {
        mails
    };
    let subjects: Vec<String> = mails.iter().map(|m| m.header("Subject").unwrap()).collect();
    let singles = subjects
        .iter()
        .filter(|s| s.starts_with("Fallout "))
        .count();
    let summaries: Vec<&smtp_sink::ReceivedMail> = mails
        .iter()
        .filter(|m| {
            m.header("Subject")
                .unwrap()
                .contains("more alerts with the same cause")
        })
        .collect();
    assert_eq!(singles + summaries.len(), mails.len(), "{subjects:?}");
    assert!(
        !summaries.is_empty(),
        "similar alerts were summed up: {subjects:?}"
    );
    assert!(
        (2..5).contains(&singles),
        "the first of each cause at once: {subjects:?}"
    );
    let mut seen = 0;
    for case in ["FC-1", "FC-2", "FC-3", "FC-4", "FC-9"] {
        let alone = subjects
            .iter()
            .filter(|s| s.starts_with(&format!("Fallout {case}:")))
            .count();
        let listed: usize = summaries
            .iter()
            .map(|m| m.body_text().matches(&format!("- Fallout {case}:")).count())
            .sum();
        assert_eq!(
            alone + listed,
            1,
            "{case}: alone {alone}, in summaries {listed}"
        );
        seen += 1;
    }
    assert_eq!(seen, 5);
    let collected = db
        .scalar_i64("SELECT count(*) FROM communication_record WHERE failure_code = 'DIGESTED'")
        .await;
    assert_eq!(collected as usize, 5 - singles);
}
