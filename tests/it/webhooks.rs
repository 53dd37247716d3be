//! The webhook channel against real HTTP receivers on loopback that verify every signature with
//! the independent `standardwebhooks` package: retries keep the webhook-id, 4xx is final,
//! timeouts are retried, the SSRF guard, secret rotation, the circuit breaker, disabled
//! endpoints (dead letter) and manual replay.

use std::time::Duration;

use crate::support::webhook_receiver::WebhookReceiver;
use crate::support::*;
use serde_json::{json, Value};

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) fn quote_accepted(event_id: &str, quote: &str) -> Value {
    json!({
        "eventId": event_id,
        "eventType": "QuoteAccepted",
        "occurredAt": "2026-11-26T10:00:00Z",
        "quoteId": quote,
        "data": {"quoteId": quote, "revisionNo": 3, "customerId": "CUST-9",
                 "margin": 0.31, "approvalReason": "strategic account"}
    })
}

pub(crate) async fn start(db: &TestDb, extra: &[(&str, &str)]) -> (InProcess, Api) {
    let mut env = vec![("HERALD_DELIVERY__RETRY_SCHEDULE_S", "0,0.4,0.4,0.4,0.4,0.4")];
    env.extend_from_slice(extra);
    Api::start(db, "smtp://127.0.0.1:9", &env).await
}

pub(crate) async fn subscribe(api: &Api, url: &str) -> Value {
    let (status, body) = api
        .post(
            "/v1/webhooks/subscriptions",
            json!({"url": url, "eventTypes": ["quote.accepted"], "secret": SECRET}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Sends the event and returns the one communication it made.
async fn accept_quote(api: &Api, event_id: &str, quote: &str) -> String {
    let (status, body) = api
        .post("/v1/events", quote_accepted(event_id, quote))
        .await;
    assert_eq!(status, 202, "{body}");
    let ids = body["communicationIds"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "{body}");
    ids[0].as_str().unwrap().to_string()
}

async fn communication(api: &Api, id: &str) -> Value {
    let (status, body) = api.get(&format!("/v1/communications/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_status(api: &Api, id: &str, wanted: &str) -> Value {
    wait_for(
        &format!("communication {id} to be {wanted}"),
        Duration::from_secs(30),
        || async move {
            let body = communication(api, id).await;
            (body["status"] == wanted).then_some(body)
        },
    )
    .await
}

async fn wait_requests(
    receiver: &WebhookReceiver,
    n: usize,
) -> Vec<crate::support::webhook_receiver::Received> {
    wait_for(
        &format!("{n} webhook requests"),
        Duration::from_secs(30),
        || {
            let got = receiver.received();
            async move { (got.len() >= n).then_some(got) }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried_with_the_same_webhook_id_until_it_succeeds() {
    let db = TestDb::create().await;
    let receiver = WebhookReceiver::start(&[SECRET], "500,503,204");
    let (_herald, api) = start(&db, &[]).await;
    subscribe(&api, &receiver.url("/hooks/quotes")).await;
    let id = accept_quote(&api, "qa-1", "Q-100").await;
    let record = wait_status(&api, &id, "SENT").await;

    let requests = receiver.received();
    assert_eq!(requests.len(), 3, "{requests:?}");
    for r in &requests {
        assert!(
            r.verified,
            "standardwebhooks refused the signature: {:?}",
            r.error
        );
        assert_eq!(
            r.webhook_id, requests[0].webhook_id,
            "one webhook-id for every retry"
        );
        assert_eq!(r.body, requests[0].body, "the same body on every retry");
    }
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 503, 204]
    );
    let body = requests[0].json();
    assert_eq!(body["type"], "quote.accepted");
    assert_eq!(
        body["data"],
        json!({"quoteId": "Q-100", "revisionNo": 3, "customerId": "CUST-9", "acceptedAt": "2026-11-26T10:00:00Z"}),
        "only the template's schema: no margin, no approval reason"
    );
    assert_eq!(requests[0].correlation_id.as_deref(), Some("qa-1"));
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["failureClass"], "PROVIDER_UNAVAILABLE");
    assert_eq!(attempts[0]["responseCode"], 500);
    assert_eq!(attempts[2]["status"], "ACCEPTED");
    assert_eq!(record["recipientType"], "WEBHOOK_SUBSCRIPTION");
    assert_eq!(record["channel"], "WEBHOOK");
    assert_eq!(
        db.scalar_i64("SELECT consecutive_failures::bigint FROM webhook_subscription")
            .await,
        0,
        "a success closes the circuit"
    );
    // The same event again changes nothing.
    let (status, again) = api
        .post("/v1/events", quote_accepted("qa-1", "Q-100"))
        .await;
    assert_eq!(status, 200, "{again}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_final_without_a_retry_and_an_operator_can_replay_it() {
    let db = TestDb::create().await;
    let receiver = WebhookReceiver::start(&[SECRET], "400");
    let (_herald, api) = start(&db, &[]).await;
    subscribe(&api, &receiver.url("/hooks")).await;
    let id = accept_quote(&api, "qa-2", "Q-200").await;
    let failed = wait_status(&api, &id, "FAILED_FINAL").await;
    assert_eq!(failed["failureCode"], "PERMANENT_REJECTION");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(receiver.received().len(), 1, "a 400 is never retried");
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1);

    // Another tenant cannot replay it.
    let globex = api.as_tenant("globex").await;
    let (status, _) = globex
        .post(&format!("/v1/communications/{id}/replay"), Value::Null)
        .await;
    assert_eq!(
        status, 404,
        "another tenant's communication does not exist for it"
    );
    // A delivered webhook is not replayed; the dead-lettered one is, once.
    receiver.set_script("400,200");
    let replay = |key: &'static str| {
        let request = api
            .http
            .post(api.url(&format!("/v1/communications/{id}/replay")))
            .bearer_auth(&api.key)
            .header("Idempotency-Key", key)
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = replay("op-1").await;
    assert_eq!(status, 202, "{body}");
    let replay_id = body["communicationId"].as_str().unwrap().to_string();
    assert_ne!(replay_id, id);
    // The retry replays the first answer.
    let (status, same) = replay("op-1").await;
    assert_eq!((status, &same), (202, &body));
    wait_status(&api, &replay_id, "SENT").await;
    let requests = wait_requests(&receiver, 2).await;
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].webhook_id, requests[0].webhook_id,
        "a replay keeps the webhook-id so that receivers can de-duplicate"
    );
    assert!(requests[1].verified, "{:?}", requests[1].error);
    assert_eq!(
        communication(&api, &id).await["status"],
        "FAILED_FINAL",
        "the original stays as it was"
    );
    let (status, body) = api
        .post(
            &format!("/v1/communications/{replay_id}/replay"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_retried() {
    let db = TestDb::create().await;
    let receiver = WebhookReceiver::start(&[SECRET], "sleep2000,200");
    let (_herald, api) = start(&db, &[("HERALD_WEBHOOKS__TIMEOUT_MS", "700")]).await;
    subscribe(&api, &receiver.url("/hooks")).await;
    let id = accept_quote(&api, "qa-3", "Q-300").await;
    let record = wait_status(&api, &id, "SENT").await;
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{record}");
    assert_eq!(attempts[0]["failureClass"], "TIMEOUT");
    assert_eq!(attempts[1]["status"], "ACCEPTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_refuses_internal_endpoints_at_registration_and_at_send_time() {
    let db = TestDb::create().await;
    let (_herald, api) = start(&db, &[]).await;
    for url in [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080/engine-rest",
        "http://[::1]:8080/",
        "ftp://example.com/hook",
    ] {
        let (status, body) = api
            .post(
                "/v1/webhooks/subscriptions",
                json!({"url": url, "eventTypes": ["quote.accepted"]}),
            )
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body.to_string().contains("SSRF guard"), "{body}");
    }
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM webhook_subscription")
            .await,
        0
    );

    // An endpoint that became internal after it was registered is refused when sending.
    sqlx::query(
        "INSERT INTO webhook_subscription (subscription_id, tenant_id, endpoint_url, event_types, secret)
         VALUES ('ws_old', 'acme', 'http://192.168.7.7:9/hook', ARRAY['quote.accepted'], $1)",
    )
    .bind(SECRET)
    .execute(&db.pool)
    .await
    .unwrap();
    let id = accept_quote(&api, "qa-4", "Q-400").await;
    let failed = wait_status(&api, &id, "FAILED_FINAL").await;
    assert_eq!(failed["failureCode"], "CONFIGURATION");
    assert!(
        failed["attempts"][0]["responseSummary"]
            .as_str()
            .unwrap()
            .contains("SSRF guard"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_messages_verify_with_the_old_and_the_new_secret() {
    let db = TestDb::create().await;
    let old_only = WebhookReceiver::start(&[SECRET], "200");
    let (_herald, api) = start(&db, &[]).await;
    let subscription = subscribe(&api, &old_only.url("/hooks")).await;
    let sid = subscription["subscriptionId"].as_str().unwrap().to_string();
    assert!(
        subscription.get("secret").is_some(),
        "the secret is shown once, at creation"
    );
    let (_, shown) = api.get(&format!("/v1/webhooks/subscriptions/{sid}")).await;
    assert!(shown.get("secret").is_none(), "and never again: {shown}");

    let (status, rotated) = api
        .post(
            &format!("/v1/webhooks/subscriptions/{sid}/rotate"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert!(new_secret.starts_with("whsec_") && new_secret != SECRET);

    let id = accept_quote(&api, "qa-5", "Q-500").await;
    wait_status(&api, &id, "SENT").await;
    let seen = old_only.received();
    assert!(
        seen[0].verified,
        "the old secret still verifies: {:?}",
        seen[0].error
    );
    assert_eq!(seen[0].signature.as_deref().unwrap().split(' ').count(), 2);

    let new_only = WebhookReceiver::start(&[&new_secret], "200");
    sqlx::query("UPDATE webhook_subscription SET endpoint_url = $1")
        .bind(new_only.url("/hooks"))
        .execute(&db.pool)
        .await
        .unwrap();
    let id = accept_quote(&api, "qa-6", "Q-600").await;
    wait_status(&api, &id, "SENT").await;
    let seen = new_only.received();
    assert!(
        seen[0].verified,
        "the new secret verifies: {:?}",
        seen[0].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_holds_requests_back_until_its_cooldown_ends() {
    let db = TestDb::create().await;
    let receiver = WebhookReceiver::start(&[SECRET], "503,503,200");
    let (_herald, api) = start(
        &db,
        &[
            ("HERALD_WEBHOOKS__BREAKER_THRESHOLD", "2"),
            ("HERALD_WEBHOOKS__BREAKER_COOLDOWN_S", "2"),
            ("HERALD_DELIVERY__RETRY_SCHEDULE_S", "0,0.2,0.2,0.2,0.2,0.2"),
        ],
    )
    .await;
    subscribe(&api, &receiver.url("/hooks")).await;
    let id = accept_quote(&api, "qa-7", "Q-700").await;
    let record = wait_status(&api, &id, "SENT").await;
    let requests = receiver.received();
    assert_eq!(requests.len(), 3, "no request while the circuit is open");
    let attempts = record["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{record}");
    assert!(attempts[2]["responseSummary"]
        .as_str()
        .unwrap()
        .contains("circuit open"));
    let ts = |r: &crate::support::webhook_receiver::Received| {
        r.timestamp.as_deref().unwrap().parse::<i64>().unwrap()
    };
    assert!(
        ts(&requests[2]) - ts(&requests[1]) >= 1,
        "the cooldown was waited out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_disabled_its_messages_dead_lettered_and_replayed_once_enabled() {
    let db = TestDb::create().await;
    let receiver = WebhookReceiver::start(&[SECRET], "503");
    let (_herald, api) = start(
        &db,
        &[
            ("HERALD_WEBHOOKS__DISABLE_AFTER", "2"),
            ("HERALD_WEBHOOKS__BREAKER_THRESHOLD", "100"),
        ],
    )
    .await;
    let sid = subscribe(&api, &receiver.url("/hooks")).await["subscriptionId"]
        .as_str()
        .unwrap()
        .to_string();
    let id = accept_quote(&api, "qa-8", "Q-800").await;
    let failed = wait_status(&api, &id, "FAILED_FINAL").await;
    assert_eq!(failed["failureCode"], "ENDPOINT_DISABLED");
    assert_eq!(receiver.received().len(), 2);
    let (_, subscription) = api.get(&format!("/v1/webhooks/subscriptions/{sid}")).await;
    assert_eq!(subscription["status"], "DISABLED", "{subscription}");

    let (status, refused) = api
        .post(&format!("/v1/communications/{id}/replay"), Value::Null)
        .await;
    assert_eq!(status, 409, "a disabled endpoint gets no replay: {refused}");
    receiver.set_script("503,503,200");
    let (status, enabled) = api
        .post(
            &format!("/v1/webhooks/subscriptions/{sid}/enable"),
            Value::Null,
        )
        .await;
    assert_eq!((status, &enabled["status"]), (200, &json!("ACTIVE")));
    let (status, replay) = api
        .post(&format!("/v1/communications/{id}/replay"), Value::Null)
        .await;
    assert_eq!(status, 202, "{replay}");
    wait_status(&api, replay["communicationId"].as_str().unwrap(), "SENT").await;
    let requests = receiver.received();
    assert_eq!(requests.len(), 3);
    assert!(requests
        .iter()
        .all(|r| r.verified && r.webhook_id == requests[0].webhook_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_rate_limit_shared_by_two_senders_spaces_the_requests_without_losing_any() {
    let db = TestDb::create().await;
    let receiver = WebhookReceiver::start(&[SECRET], "204");
    let (_herald, api) = start(&db, &[]).await;
    // A second sender on the same queue: the limit holds across the fleet.
    let _second = sender(&db, "smtp://127.0.0.1:9", "second", &[]);
    let (status, body) = api
        .post(
            "/v1/webhooks/subscriptions",
            json!({"url": receiver.url("/limited"), "eventTypes": ["quote.accepted"],
                   "secret": SECRET, "rateLimitPerSecond": 5}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rateLimitPerSecond"], 5);
    let (status, body) = api
        .post(
            "/v1/webhooks/subscriptions",
            json!({"url": receiver.url("/x"), "eventTypes": ["quote.accepted"],
                   "rateLimitPerSecond": 0}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(accept_quote(&api, &format!("qa-rl-{i}"), &format!("Q-RL-{i}")).await);
    }
    for id in &ids {
        let record = wait_status(&api, id, "SENT").await;
        assert_eq!(
            record["attempts"].as_array().unwrap().len(),
            1,
            "a message waits for its slot: no failed attempt {record}"
        );
    }
    let mut at: Vec<i64> = receiver
        .received()
        .iter()
        .map(|r| r.received_at_ms)
        .collect();
    assert_eq!(at.len(), 10, "each sent once");
    at.sort();
    // Five a second: ten slots span 9 × 200 ms. A request may arrive after its slot (the
    // first of each sender opens a connection, on a busy machine up to some 100 ms late),
    // never before: the span is at least 1.5 s (without the limit, ten requests take a few ms).
    assert!(
        at[9] - at[0] >= 1_500,
        "requests came too fast for the limit: {:?}",
        at.iter().map(|t| t - at[0]).collect::<Vec<_>>()
    );
    // And no window of one second has more than five (plus one at its edge).
    for (i, t) in at.iter().enumerate() {
        let within = at[i..].iter().take_while(|u| **u - t < 1_000).count();
        assert!(within <= 6, "{within} requests within a second from {t}");
    }
}
