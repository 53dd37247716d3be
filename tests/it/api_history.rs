//! Commands and history on a running herald: resends linked both ways, the order confirmation
//! and fallout escalation commands, the history list's filters and keyset pages (with inserts
//! running while it is read), bad queries refused, and the detail of a communication.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

async fn records(db: &TestDb) -> i64 {
    db.scalar_i64("SELECT count(*) FROM communication_record")
        .await
}

/// Every page of `path` (which has a query), following `next`; the ids in order.
async fn all_pages(api: &Api, first: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut path = Some(first.to_string());
    while let Some(p) = path {
        let (status, page) = api.get(&p).await;
        assert_eq!(status, 200, "{p}: {page}");
        pages += 1;
        for row in page["data"].as_array().unwrap() {
            ids.push(row["communicationId"].as_str().unwrap().to_string());
        }
        path = page["next"].as_str().map(str::to_string);
        assert!(pages < 100, "the pages do not end");
    }
    (ids, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_and_pages_without_skipping_or_repeating_while_rows_are_inserted() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let ledger = herald::ledger::Ledger::new(db.pool.clone(), Duration::from_secs(60));
    queue_many(&db, "page", 23, 2, order_confirmation).await;
    // One suppressed, one of another type on another quote, one of another tenant.
    let mut suppressed = order_confirmation("quiet");
    suppressed.admitted.admission = herald::ledger::Admission::Suppress {
        code: "OPTED_OUT".into(),
        message: "opted out".into(),
    };
    let quiet = ledger.request(&suppressed).await.unwrap().communication_id;
    let mut alert = order_confirmation("alert");
    alert.class.communication_type = herald::ledger::CommunicationType::FalloutAlert;
    alert.subject.quote_id = Some("Q-77".into());
    let alert = ledger.request(&alert).await.unwrap().communication_id;
    let mut foreign = order_confirmation("foreign");
    foreign.tenant_id = "globex".into();
    ledger.request(&foreign).await.unwrap();
    let existing: HashSet<String> = sqlx::query_scalar::<_, uuid::Uuid>(
        "SELECT communication_id FROM communication_record WHERE tenant_id = 'acme'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|u| u.to_string())
    .collect();
    assert_eq!(existing.len(), 25);

    // Pages of 7 while another task keeps inserting.
    let writer = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                ledger
                    .request(&order_confirmation(&format!("late-{i}")))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    let (ids, pages) = all_pages(&api, "/v1/communications?limit=7").await;
    writer.await.unwrap();
    assert!(pages >= 4, "{pages} pages");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a row was repeated: {ids:?}");
    for id in &existing {
        assert!(unique.contains(id), "row {id} was skipped");
    }
    // Newest first: the order of (created_at, id) descending.
    let (_, first_page) = api.get("/v1/communications?limit=200").await;
    let rows = first_page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 45);
    assert!(first_page["next"].is_null());
    for pair in rows.windows(2) {
        let key = |r: &Value| {
            (
                r["createdAt"]
                    .as_str()
                    .unwrap()
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap(),
                r["communicationId"].as_str().unwrap().to_string(),
            )
        };
        assert!(key(&pair[0]) > key(&pair[1]));
    }
    // The next link keeps the filters.
    let (_, page) = api
        .get("/v1/communications?type=ORDER_CONFIRMATION&channel=EMAIL&limit=2")
        .await;
    let next = page["next"].as_str().unwrap();
    assert!(
        next.starts_with(
            "/v1/communications?type=ORDER_CONFIRMATION&channel=EMAIL&limit=2&cursor="
        ),
        "{next}"
    );

    // Each filter.
    let only = |path: &'static str| {
        let api = api.clone();
        async move {
            let (status, page) = api.get(path).await;
            assert_eq!(status, 200, "{path}: {page}");
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["communicationId"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        only("/v1/communications?status=SUPPRESSED").await,
        vec![quiet.to_string()]
    );
    assert_eq!(
        only("/v1/communications?type=FALLOUT_ALERT").await,
        vec![alert.to_string()]
    );
    assert_eq!(
        only("/v1/communications?quoteId=Q-77").await,
        vec![alert.to_string()]
    );
    assert_eq!(
        only("/v1/quotes/Q-77/communications").await,
        vec![alert.to_string()]
    );
    assert_eq!(
        only("/v1/communications?orderId=quiet").await,
        vec![quiet.to_string()]
    );
    assert_eq!(
        only("/v1/communications?recipientRef=contact-quiet").await,
        vec![quiet.to_string()]
    );
    assert!(only("/v1/communications?channel=WEBHOOK").await.is_empty());
    assert_eq!(
        only("/v1/communications?channel=EMAIL&limit=200")
            .await
            .len(),
        45
    );
    assert!(only("/v1/communications?to=2000-01-01T00:00:00Z")
        .await
        .is_empty());
    assert_eq!(
        only("/v1/communications?from=2000-01-01T00:00:00Z&limit=200")
            .await
            .len(),
        45
    );
    assert!(only("/v1/communications?from=2999-01-01T00:00:00Z")
        .await
        .is_empty());
    // Another tenant's quote is an empty list, its records are not in ours.
    let globex = api.as_tenant("globex").await;
    let (_, theirs) = globex.get("/v1/quotes/Q-77/communications").await;
    assert_eq!(theirs["data"], json!([]));
    let (_, theirs) = globex.get("/v1/communications").await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);

    // Bad queries: 400, a problem document, nothing written.
    let before = records(&db).await;
    for bad in [
        "/v1/communications?cursor=not-a-cursor",
        "/v1/communications?cursor=AQ",
        "/v1/communications?limit=0",
        "/v1/communications?limit=201",
        "/v1/communications?limit=ten",
        "/v1/communications?status=LOST",
        "/v1/communications?type=POSTCARD",
        "/v1/communications?channel=FAX",
        "/v1/communications?from=yesterday",
        "/v1/communications?tenantId=globex",
        "/v1/communications?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
        "/v1/quotes/Q-77/communications?quoteId=Q-1",
    ] {
        let response = api.request(reqwest::Method::GET, bad).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
    }
    assert_eq!(records(&db).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_confirmation_command_sends_and_its_detail_shows_the_history() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    db.add_contact("acme", "c-ord", "Olga Orders", "olga@customer.example")
        .await;
    let path = "/v1/orders/O-900/communications/confirmation";
    let (status, made) = api
        .post(
            path,
            json!({"recipientContactId": "c-ord", "orderNumber": "ON-900"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["communicationType"], "ORDER_CONFIRMATION");
    let mails = sink.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Your order ON-900 is confirmed")
    );
    assert!(mails[0].body_text().contains("Dear Olga Orders"));
    let id = made["communicationId"].as_str().unwrap().to_string();
    let key: String = sqlx::query_scalar("SELECT idempotency_key FROM communication_record")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        key.starts_with("order-confirmation:O-900:c-ord:v1:api:"),
        "{key}"
    );

    let detail = wait_for(
        "the confirmation to be SENT",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            let id = id.clone();
            async move {
                let (_, d) = api.get(&format!("/v1/communications/{id}")).await;
                (d["status"] == "SENT" && d["events"].as_array().is_some_and(|e| e.len() >= 3))
                    .then_some(d)
            }
        },
    )
    .await;
    assert_eq!(detail["orderId"], "O-900");
    assert_eq!(detail["recipientRef"], "c-ord");
    let attempt = &detail["attempts"][0];
    for field in [
        "provider",
        "status",
        "responseCode",
        "responseSummary",
        "attemptedAt",
        "completedAt",
    ] {
        assert!(!attempt[field].is_null(), "{field}: {attempt}");
    }
    assert!(attempt.get("requestPayloadHash").is_none(), "{attempt}");
    let events: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"CommunicationRequested"), "{events:?}");
    assert!(events.contains(&"CommunicationSent"), "{events:?}");

    // To an explicit address herald knows no name for: a neutral greeting (schemathesis found
    // this one refused for the template's missing recipientName).
    let (status, made) = api
        .post(
            "/v1/orders/O-901/communications/confirmation",
            json!({"recipientEmail": "buyer@customer.example"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let mails = sink.wait_for(2, Duration::from_secs(30)).await;
    let to_address = mails
        .iter()
        .find(|m| m.rcpt_to[0] == "buyer@customer.example")
        .expect("the confirmation to the address");
    assert!(
        to_address.body_text().contains("Dear customer,"),
        "{}",
        to_address.body_text()
    );
    assert!(detail["events"][0].get("payload").is_none());
    for field in ["decisions", "artifacts", "children", "resends"] {
        assert!(detail[field].is_array(), "{field}: {detail}");
    }
    assert!(detail["resendOf"].is_null());
    let text = detail.to_string();
    assert!(!text.contains("olga@customer.example"), "{text}");

    // Bad commands write nothing.
    let before = records(&db).await;
    for body in [
        json!({}),
        json!({"recipientContactId": "c-ord", "recipientEmail": "x@customer.example"}),
        json!({"recipientEmail": "not an address"}),
        json!({"recipientContactId": "c-ord", "tenantId": "globex"}),
    ] {
        let (status, problem) = api.post(path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {problem}");
    }
    assert_eq!(records(&db).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_is_resent_to_the_same_or_another_recipient_and_linked_both_ways() {
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-RS").await;
    db.add_contact("acme", "c-rs", "Rita Resend", "rita@customer.example")
        .await;
    db.add_contact("acme", "c-other", "Otto Other", "otto@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let (status, first) = api
        .post(
            "/v1/quotes/Q-RS/revisions/4/communications/proposal",
            json!({"artifactId": "doc-Q-RS", "recipientContactId": "c-rs"}),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let original = first["communicationId"].as_str().unwrap().to_string();
    sink.wait_for(1, Duration::from_secs(30)).await;
    let resend_path = format!("/v1/communications/{original}/resend");

    // The same recipient, once per Idempotency-Key.
    let send = |key: &'static str, body: Value| {
        let request = api
            .http
            .post(api.url(&resend_path))
            .bearer_auth(&api.key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send();
        async move {
            let r = request.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, same) = send("rs-1", json!({"reason": "customer lost it"})).await;
    assert_eq!(status, 201, "{same}");
    assert_eq!(same["communicationType"], "QUOTE_PROPOSAL_DELIVERY");
    let (status, again) = send("rs-1", json!({"reason": "customer lost it"})).await;
    assert_eq!((status, &again), (201, &same));
    // Another recipient.
    let (status, other) = send("rs-2", json!({"recipientContactId": "c-other"})).await;
    assert_eq!(status, 201, "{other}");
    let mails = sink.wait_for(3, Duration::from_secs(30)).await;
    let to: Vec<String> = mails.iter().filter_map(|m| m.header("To")).collect();
    assert_eq!(
        to.iter().filter(|t| t.contains("rita@")).count(),
        2,
        "{to:?}"
    );
    assert_eq!(
        to.iter().filter(|t| t.contains("otto@")).count(),
        1,
        "{to:?}"
    );
    assert_eq!(records(&db).await, 3);

    // resendOf both ways.
    let same_id = same["communicationId"].as_str().unwrap();
    let other_id = other["communicationId"].as_str().unwrap();
    let (_, view) = api.get(&format!("/v1/communications/{same_id}")).await;
    assert_eq!(view["resendOf"], original.as_str());
    assert_eq!(view["recipientRef"], "c-rs");
    assert_eq!(view["decisions"][0]["reasonCode"], "RESEND");
    assert!(view["decisions"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("customer lost it"));
    assert_eq!(view["artifacts"][0]["artifactId"], "doc-Q-RS");
    let (_, view) = api.get(&format!("/v1/communications/{other_id}")).await;
    assert_eq!(view["recipientRef"], "c-other");
    let (_, view) = api.get(&format!("/v1/communications/{original}")).await;
    assert_eq!(view["resends"], json!([same_id, other_id]));
    // The quote's list has all three.
    let (_, list) = api.get("/v1/quotes/Q-RS/communications").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);

    // Another tenant: 404 with the body of a missing one, nothing written.
    let globex = api.as_tenant("globex").await;
    let (status, theirs) = globex.post(&resend_path, json!({})).await;
    assert_eq!(status, 404);
    let missing = format!("/v1/communications/{}/resend", uuid::Uuid::now_v7());
    let (status, none) = api.post(&missing, json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(theirs["detail"], none["detail"]);
    assert_eq!(theirs["type"], none["type"]);
    let (status, theirs) = globex.get(&format!("/v1/communications/{original}")).await;
    assert_eq!(status, 404, "{theirs}");
    assert_eq!(records(&db).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_escalation_reaches_the_members_of_the_group() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    // Fresh ids (letters and digits) per run: the engine is shared.
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let (ada, bob, desk) = (
        format!("escada{run}"),
        format!("escbob{run}"),
        format!("escdesk{run}"),
    );
    create_user(&ada, "Ada", "Escalate", Some(&format!("{ada}@ops.example"))).await;
    create_user(&bob, "Bob", "Escalate", Some(&format!("{bob}@ops.example"))).await;
    ensure_group(&desk, &[&ada, &bob]).await;
    let path = "/v1/fallout/F-31/escalations";
    let body = json!({"group": desk, "level": 2, "reason": "order stuck in provisioning", "note": "call the carrier"});
    // Camunda's groups span tenants: one that is not the tenant's is refused, as a missing one.
    let (status, refused) = api.post(path, body.clone()).await;
    assert_eq!(status, 422, "{refused}");
    let theirs = format!("escother{run}");
    ensure_group(&theirs, &[&ada]).await;
    tenant_group(&format!("globex{run}"), &theirs).await;
    let (status, other) = api
        .post(path, json!({"group": theirs, "level": 2, "reason": "x"}))
        .await;
    assert_eq!(status, 422, "{other}");
    let (status, missing) = api
        .post(
            path,
            json!({"group": format!("nogroup{run}"), "level": 2, "reason": "x"}),
        )
        .await;
    assert_eq!(status, 422, "{missing}");
    let shape = |p: &Value| (p["type"].clone(), p["title"].clone());
    assert_eq!(shape(&other), shape(&missing));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        0
    );
    assert!(sink.received().is_empty());
    tenant_group(API_TENANT, &desk).await;
    let (status, made) = api.post(path, body.clone()).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["communicationType"], "FALLOUT_ALERT");
    let mails = sink.wait_for(2, Duration::from_secs(30)).await;
    let mut to: Vec<String> = mails.iter().filter_map(|m| m.header("To")).collect();
    to.sort();
    assert_eq!(
        to,
        vec![format!("{ada}@ops.example"), format!("{bob}@ops.example")]
    );
    assert!(
        mails[0].body_text().contains("Escalation level 2"),
        "{}",
        mails[0].body_text()
    );
    let id = made["communicationId"].as_str().unwrap();
    let (_, view) = api.get(&format!("/v1/communications/{id}")).await;
    assert_eq!(
        view["idempotencyKey"],
        format!("fallout-alert:F-31:{desk}:2:v1")
    );
    // Each member in the inbox and by email.
    assert_eq!(view["children"].as_array().unwrap().len(), 4, "{view}");
    // The same escalation again (another Idempotency-Key) is the same communication.
    let (status, again) = api.post(path, body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["communicationId"], made["communicationId"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.received().len(), 2);
    let (status, _) = api
        .post(path, json!({"group": desk, "level": 0, "reason": "x"}))
        .await;
    assert_eq!(status, 400);
}
