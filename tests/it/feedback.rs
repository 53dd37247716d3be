//! Email feedback on a running herald: a hard bounce (herald's documented form) marks the
//! communication BOUNCED, suppresses the address (the next message to it is SUPPRESSED) and raises
//! fallout for a critical type; Postmark's webhook format (basic authentication) records a
//! delivery and an unsubscribe; the same feedback twice is applied once.

use std::time::Duration;

use crate::support::*;
use base64::Engine as _;
use serde_json::{json, Value};

const POSTMARK: &str = "postmark:s3cret-hook";

fn order_created(event_id: &str, order: &str, contact: &str) -> Value {
    json!({
        "eventId": event_id,
        "eventType": "OrderCreated",
        "occurredAt": "2026-11-26T10:00:00Z",
        "orderId": order,
        "data": {"orderNumber": order, "customerContactId": contact}
    })
}

/// Sends an order confirmation to `contact` and returns its id and the Message-ID it went with.
async fn confirm_order(
    api: &Api,
    sink: &smtp_sink::SmtpSink,
    event_id: &str,
    order: &str,
    contact: &str,
) -> (String, String) {
    let (status, body) = api
        .post("/v1/events", order_created(event_id, order, contact))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["communicationIds"][0].as_str().unwrap().to_string();
    let mail = wait_for("the confirmation", Duration::from_secs(30), || {
        let mails = sink.received();
        let id = id.clone();
        async move {
            mails
                .into_iter()
                .find(|m| m.header("Message-ID").is_some_and(|h| h.contains(&id)))
        }
    })
    .await;
    (id, mail.header("Message-ID").unwrap())
}

async fn record(api: &Api, id: &str) -> Value {
    api.get(&format!("/v1/communications/{id}")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_bounce_suppresses_the_address_and_raises_fallout() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-bounce", "Bo Unce", "bo@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let (id, message_id) = confirm_order(&api, &sink, "oc-1", "O-1", "c-bounce").await;
    assert_eq!(
        sink.received()[0]
            .header("X-PM-Metadata-communicationId")
            .as_deref(),
        Some(id.as_str())
    );
    wait_for("SENT", Duration::from_secs(30), || {
        let r = record(&api, &id);
        async move { (r.await["status"] == "SENT").then_some(()) }
    })
    .await;

    let bounce = json!({
        "feedbackId": "bnc-1", "type": "HARD_BOUNCE", "messageId": message_id,
        "occurredAt": "2026-11-26T10:05:00Z", "detail": "550 5.1.1 <bo@customer.example> unknown"
    });
    // Feedback spans tenants: a tenant's key may not post it, a platform key of `operate` may.
    let (status, refused) = api.post("/v1/feedback/email", bounce.clone()).await;
    assert_eq!(status, 403, "{refused}");
    let ops = api.as_platform(&[herald::api::keys::Scope::Operate]).await;
    let (status, applied) = ops.post("/v1/feedback/email", bounce.clone()).await;
    assert_eq!(status, 202, "{applied}");
    assert_eq!(applied["status"], "BOUNCED");
    assert_eq!(applied["effects"], json!(["BOUNCED", "SUPPRESSION_LIST"]));
    let (status, again) = ops.post("/v1/feedback/email", bounce).await;
    assert_eq!((status, &again["duplicate"]), (200, &json!(true)));

    let bounced = record(&api, &id).await;
    assert_eq!(bounced["status"], "BOUNCED");
    assert_eq!(bounced["failureCode"], "HARD_BOUNCE");
    assert!(
        !bounced["failureMessage"].as_str().unwrap().contains("bo@"),
        "{bounced}"
    );
    let feedback: String = sqlx::query_scalar(
        "SELECT feedback FROM communication_delivery_attempt WHERE communication_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(feedback, "HARD_BOUNCE");
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM communication_outbox WHERE event_type = 'CommunicationBounced' AND aggregate_id = '{id}'"
        ))
        .await,
        1
    );
    // An order confirmation is critical: its bounce is fallout.
    let fallout = format!("SELECT count(*) FROM fallout_signal WHERE communication_id = '{id}'");
    wait_for("the fallout signal", Duration::from_secs(30), || async {
        (db.scalar_i64(&fallout).await == 1).then_some(())
    })
    .await;

    // The next message to the address is suppressed, not sent.
    let (status, next) = api
        .post("/v1/events", order_created("oc-2", "O-2", "c-bounce"))
        .await;
    assert_eq!(status, 202, "{next}");
    let next = record(&api, next["communicationIds"][0].as_str().unwrap()).await;
    assert_eq!(next["status"], "SUPPRESSED", "{next}");
    assert_eq!(next["failureCode"], "ADDRESS_SUPPRESSED");

    // Feedback that names nothing herald sent is kept, unmatched; bad feedback is refused.
    let (status, unmatched) = ops
        .post(
            "/v1/feedback/email",
            json!({"feedbackId": "bnc-x", "type": "SOFT_BOUNCE", "providerMessageId": "nope"}),
        )
        .await;
    assert_eq!((status, &unmatched["matched"]), (202, &json!(false)));
    let (status, refused) = ops
        .post("/v1/feedback/email", json!({"type": "EXPLODED"}))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"].as_array().unwrap().len(), 3, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_deliveries_and_unsubscribes_are_applied_with_basic_authentication() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-pm", "Pat Mark", "pat@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(
        &db,
        &sink.url(),
        &[("HERALD_FEEDBACK__POSTMARK_CREDENTIALS", POSTMARK)],
    )
    .await;
    let (id, _) = confirm_order(&api, &sink, "pm-1", "O-9", "c-pm").await;
    wait_for("SENT", Duration::from_secs(30), || {
        let r = record(&api, &id);
        async move { (r.await["status"] == "SENT").then_some(()) }
    })
    .await;
    let post = |body: Value, credentials: &str| {
        let request = api
            .http
            .post(api.url("/v1/feedback/postmark"))
            .header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials)
                ),
            )
            .json(&body)
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let delivery = json!({
        "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Recipient": "pat@customer.example",
        "Tag": "", "DeliveredAt": "2026-11-26T10:01:00Z", "Details": "Test delivery webhook details",
        "Metadata": {"communicationId": id}
    });
    let (status, refused) = post(delivery.clone(), "postmark:wrong").await;
    assert_eq!(status, 401, "{refused}");
    let (status, applied) = post(delivery, POSTMARK).await;
    assert_eq!(status, 202, "{applied}");
    assert_eq!(record(&api, &id).await["status"], "DELIVERED");
    // Audited under the provider's name; the refused call is not.
    type Audited = (String, Option<String>, String, Option<String>, i32);
    let audited: Vec<Audited> = sqlx::query_as(
        "SELECT credential_kind, subject, route, target_id, status FROM api_audit
         WHERE route LIKE '/v1/feedback/%'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        audited,
        vec![(
            "PROVIDER".into(),
            Some("postmark".into()),
            "/v1/feedback/postmark".into(),
            Some(id.clone()),
            202
        )]
    );

    let unsubscribe = json!({
        "RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ServerID": 23, "ChangedAt": "2026-11-26T10:02:00Z", "Recipient": "pat@customer.example",
        "Origin": "Recipient", "SuppressSending": true, "SuppressionReason": "ManualSuppression",
        "Tag": "", "Metadata": {"communicationId": id}
    });
    let (status, applied) = post(unsubscribe, POSTMARK).await;
    assert_eq!(status, 202, "{applied}");
    assert_eq!(applied["effects"], json!(["OPTED_OUT"]));
    let opted_in: bool = sqlx::query_scalar(
        "SELECT opted_in FROM recipient_preference WHERE recipient_ref = 'c-pm' AND category = 'TRANSACTIONAL' AND channel = 'EMAIL'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(!opted_in);
}
