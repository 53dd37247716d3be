//! The HTTP API on a running herald: business events applied once per eventId through the
//! rules, the dedupe window, the contact directory, document announcements, and the token.

use std::time::Duration;

use crate::support::*;
use crate::templates_governance::copy_tree;
use serde_json::{json, Value};

pub(crate) fn order_created(event_id: &str, order: &str, contact: &str) -> Value {
    json!({
        "eventId": event_id,
        "eventType": "OrderCreated",
        "eventVersion": 1,
        "occurredAt": "2026-11-26T10:00:00Z",
        "orderId": order,
        "subject": {"type": "ORDER", "id": order},
        "data": {"orderNumber": order, "customerContactId": contact}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_applied_once_and_a_near_duplicate_is_deduped() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let (status, _) = api
        .put("/v1/contacts/contact-9",
            json!({"displayName": "Dana Buyer", "email": "dana@customer.example", "locale": "en", "timezone": "Europe/Vienna"}),
        )
        .await;
    assert_eq!(status, 200);

    let (status, first) = api
        .post("/v1/events", order_created("evt-1", "O-100", "contact-9"))
        .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["communicationIds"].as_array().unwrap().len(), 1);
    let mails = sink.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Your order O-100 is confirmed")
    );
    assert!(mails[0].body_text().contains("Dear Dana Buyer"));
    // What the request logged is in this herald's own log, the address masked.
    let log = herald.log_text();
    assert!(log.contains("event applied"), "{log}");
    assert!(!log.contains("dana@customer.example"), "{log}");

    // The same event again: nothing new, the same communication.
    let (status, again) = api
        .post("/v1/events", order_created("evt-1", "O-100", "contact-9"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["communicationIds"], first["communicationIds"]);

    // Another event about the same order for the same contact inside the window: DEDUPED.
    let (status, near) = api
        .post("/v1/events", order_created("evt-2", "O-100", "contact-9"))
        .await;
    assert_eq!(status, 202);
    let id = near["communicationIds"][0].as_str().unwrap().to_string();
    let (_, view) = api.get(&format!("/v1/communications/{id}")).await;
    assert_eq!(view["status"], "SUPPRESSED");
    assert_eq!(view["failureCode"], "DEDUPED");
    assert!(view["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["reasonCode"] == "DEDUPED"));

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.received().len(), 1);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        2
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM inbound_event").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallout_reaches_the_operations_group_in_the_engine() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let s = &new_lane()[5..13].to_string();
    let (u1, u2) = (format!("ops{s}a"), format!("ops{s}b"));
    create_user(&u1, "Olli", "Ops", Some(&format!("{u1}@corp.example"))).await;
    create_user(&u2, "Orla", "Ops", Some(&format!("{u2}@corp.example"))).await;
    ensure_group("operations", &[&u1, &u2]).await;
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let event = json!({
        "eventId": format!("fallout-{s}"),
        "eventType": "FalloutCaseOpened",
        "occurredAt": "2026-11-26T10:00:00Z",
        "orderId": "O-7",
        "data": {"falloutCaseId": format!("FC-{s}"), "orderNumber": "O-7", "reason": "provisioning rejected the order"}
    });
    let (status, body) = api.post("/v1/events", event).await;
    assert_eq!(status, 202, "{body}");
    let ours = [format!("{u1}@corp.example"), format!("{u2}@corp.example")];
    let mails = wait_for("both operators' alerts", Duration::from_secs(30), || {
        let received = sink.received();
        let ours = ours.clone();
        async move {
            let mine: Vec<_> = received
                .into_iter()
                .filter(|m| ours.contains(&m.rcpt_to[0]))
                .collect();
            (mine.len() == 2).then_some(mine)
        }
    })
    .await;
    for mail in mails {
        assert!(mail
            .header("Subject")
            .unwrap()
            .starts_with(&format!("Fallout FC-{s}")));
        assert!(mail.body_text().contains("provisioning rejected the order"));
    }
    // The rule says IN_APP and EMAIL, "all": each operator also has it in the inbox.
    let channels: Vec<(String,)> = sqlx::query_as(
        "SELECT channel FROM communication_record WHERE recipient_ref = $1 ORDER BY channel",
    )
    .bind(format!("user:{u1}"))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(channels, [("EMAIL".to_string(),), ("IN_APP".to_string(),)]);
    let globex = api.as_tenant("globex").await;
    let inbox = |api: &Api, query: &str| {
        let request = api
            .request(reqwest::Method::GET, &format!("/v1/inbox/user:{u1}{query}"))
            .send();
        async move { request.await.unwrap().json::<Value>().await.unwrap() }
    };
    let listed = wait_for("the alert in the inbox", Duration::from_secs(30), || {
        let listed = inbox(&api, "");
        async move {
            let listed = listed.await;
            (listed["notifications"].as_array().unwrap().len() == 1).then_some(listed)
        }
    })
    .await;
    assert_eq!(listed["unread"], 1);
    let note = &listed["notifications"][0];
    assert!(
        note["title"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Fallout FC-{s}")),
        "{note}"
    );
    assert_eq!(
        note["bodyText"].as_str().unwrap().trim(),
        "provisioning rejected the order"
    );
    assert_eq!(note["communicationType"], "FALLOUT_ALERT");
    let other_tenant = inbox(&globex, "").await;
    assert!(
        other_tenant["notifications"].as_array().unwrap().is_empty(),
        "{other_tenant}"
    );

    let id = note["notificationId"].as_str().unwrap();
    let (status, read) = api.post(&format!("/v1/inbox/{id}/read"), Value::Null).await;
    assert_eq!(status, 200, "{read}");
    assert!(read["readAt"].is_string(), "{read}");
    assert_eq!(
        inbox(&api, "?unread=true").await["notifications"],
        json!([])
    );
    let (_, record) = api.get(&format!("/v1/communications/{id}")).await;
    assert_eq!(
        record["status"], "OPENED",
        "a read notification is an opened communication"
    );
    assert_eq!(record["channel"], "IN_APP");
    let (status, _) = globex
        .post(&format!("/v1/inbox/{id}/read"), Value::Null)
        .await;
    assert_eq!(status, 404, "another tenant cannot touch it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_problems_and_writes_nothing() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let (status, body) = api
        .post("/v1/contacts/import",
            json!([
                {"contactId": "c-1", "displayName": "Good One", "email": "good@customer.example"},
                {"contactId": "c-2", "displayName": "Bad One", "email": "not an address", "timezone": "Mars/Olympus"},
                {"contactId": "c-3", "displayName": "Empty One", "email": ""},
            ]),
        )
        .await;
    assert_eq!(status, 400);
    let problems = body["errors"].to_string();
    assert!(
        problems.contains("/1/email")
            && problems.contains("/1/timezone")
            && problems.contains("/2/email"),
        "{body}"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM contact").await,
        0,
        "all or nothing"
    );

    let (status, body) = api
        .post("/v1/contacts/import",
            json!([
                {"contactId": "c-1", "displayName": "Good One", "email": "good@customer.example"},
                {"contactId": "c-2", "displayName": "Fixed One", "email": "fixed@customer.example", "quietStart": "20:00", "quietEnd": "07:00"},
            ]),
        )
        .await;
    assert_eq!((status, body["upserted"].as_i64()), (200, Some(2)));

    let (status, body) = api
        .post("/v1/events", json!({"eventType": "OrderCreated"}))
        .await;
    assert_eq!(status, 400);
    assert!(body["errors"].to_string().contains("eventId"), "{body}");
    // An event a rule cannot use (no customerContactId): refused, not recorded, can be sent again.
    let mut event = order_created("evt-x", "O-1", "c-1");
    event["data"]
        .as_object_mut()
        .unwrap()
        .remove("customerContactId");
    let (status, body) = api.post("/v1/events", event).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(db.scalar_i64("SELECT count(*) FROM inbound_event").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_announced_by_events_supersede_older_ones_and_a_key_is_required() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let announce = |id: &str| {
        json!({
            "eventId": format!("doc-{id}"),
            "eventType": "DocumentArtifactAvailable",
            "occurredAt": "2026-11-26T10:00:00Z",
            "data": {"artifactId": id, "artifactType": "PROPOSAL_DOCUMENT", "quoteId": "Q-D1", "revisionNo": 4,
                     "storageLocation": "file:///srv/docs/x.pdf", "fileName": "x.pdf", "sizeBytes": 1000}
        })
    };
    let anonymous = api
        .http
        .post(api.url("/v1/events"))
        .header("Idempotency-Key", "k-anon")
        .json(&announce("doc-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401, "without a key");
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"herald\""
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM artifact").await, 0);
    for id in ["doc-a", "doc-b"] {
        let (status, body) = api.post("/v1/events", announce(id)).await;
        assert_eq!(status, 202, "{body}");
    }
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT artifact_id, status FROM artifact ORDER BY artifact_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec![
            ("doc-a".into(), "SUPERSEDED".into()),
            ("doc-b".into(), "AVAILABLE".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proposal_command_is_idempotent_and_its_note_cannot_inject_anything() {
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-API").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let path = "/v1/quotes/Q-API/revisions/4/communications/proposal";
    let command = json!({
        "artifactId": "doc-Q-API",
        "recipientEmail": "buyer@customer.example",
        "deliveryMode": "PORTAL_LINK",
        "messageNote": "Happy to discuss <script>alert('x')</script><b>pricing</b>\nBcc: victim@evil.example",
    });
    let post = |key: &'static str, body: Value| {
        let request = api
            .http
            .post(api.url(path))
            .bearer_auth(&api.key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send();
        async move {
            let response = request.await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    // A carriage return could start a mail header: refused, nothing written.
    let mut injecting = command.clone();
    injecting["messageNote"] = json!("Hi\r\nBcc: victim@evil.example");
    let (status, refused) = post("key-0", injecting).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"][0]["pointer"], "/messageNote", "{refused}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        0
    );
    let (status, first) = post("key-1", command.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["communicationType"], "QUOTE_PROPOSAL_DELIVERY");
    // The retry replays the first answer (tests/it/api_idempotency.rs has the details).
    let (status, again) = post("key-1", command.clone()).await;
    assert_eq!((status, &again), (201, &first));
    let mut other = command.clone();
    other["recipientEmail"] = json!("someone-else@customer.example");
    let (status, conflict) = post("key-1", other).await;
    assert_eq!(status, 422, "{conflict}");
    let missing = api
        .http
        .post(api.url(path))
        .bearer_auth(&api.key)
        .json(&command)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 400, "no Idempotency-Key");
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    let mails = sink.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.header("Bcc").is_none(), "the note cannot add a header");
    let body = mail.body_text();
    assert!(body.contains("Happy to discuss pricing"), "{body}");
    assert!(
        !body.contains("<script>") && !body.contains("<b>pricing"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.received().len(), 1, "one email for one key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_retains_bodies_keeps_them_encrypted() {
    // The shipped templates plus a released version of the order confirmation that keeps bodies.
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    copy_tree(
        &std::path::Path::new(MANIFEST_DIR).join("templates"),
        &templates,
    );
    let shipped = templates.join("order-confirmation-email/2026.11.0");
    let kept = templates.join("order-confirmation-email/2026.11.2");
    copy_tree(&shipped, &kept);
    let meta = std::fs::read_to_string(kept.join("template.toml")).unwrap();
    let meta = meta
        .replace("version = \"2026.11.0\"", "version = \"2026.11.2\"")
        .replace(
            "effective_from = \"2026-11-01T00:00:00Z\"",
            "effective_from = \"2026-11-20T00:00:00Z\"",
        )
        .replace(
            "retention = \"HASH_ONLY\"",
            "retention = \"ENCRYPTED_BODY\"",
        );
    std::fs::write(kept.join("template.toml"), meta).unwrap();
    herald::templates::TemplateRegistry::record_approved(&templates).unwrap();

    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let key = "0f".repeat(32);
    let (_herald, api) = Api::start(
        &db,
        &sink.url(),
        &[
            ("HERALD_PATHS__TEMPLATES", templates.to_str().unwrap()),
            // The older setting alone: its key is the keyring's current one.
            ("HERALD_KEYS__ENCRYPTION", ""),
            ("HERALD_CONTENT__KEY", &key),
        ],
    )
    .await;
    api.put(
        "/v1/contacts/contact-k",
        json!({"displayName": "Kim Keep", "email": "kim@customer.example"}),
    )
    .await;
    let (status, body) = api
        .post("/v1/events", order_created("evt-k", "O-KEEP", "contact-k"))
        .await;
    assert_eq!(status, 202, "{body}");
    sink.wait_for(1, Duration::from_secs(30)).await;
    let (version, key_id, nonce, ciphertext): (String, String, Vec<u8>, Vec<u8>) = wait_for("the retained body", Duration::from_secs(10), || async {
        sqlx::query_as(
            "SELECT r.template_version, c.key_id, c.nonce, c.ciphertext FROM communication_content c JOIN communication_record r USING (communication_id)",
        )
        .fetch_optional(&db.pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(version, "2026.11.2");
    assert!(
        !String::from_utf8_lossy(&ciphertext).contains("Kim Keep"),
        "stored encrypted"
    );
    // The older setting's key is the keyring's key `content`.
    assert_eq!(key_id, herald::keyring::LEGACY_CONTENT_KEY_ID);
    let keyring = herald::keyring::Keyring::from_settings(None, Some(&key))
        .unwrap()
        .unwrap();
    let body = herald::content::RetainedBody::open(
        &keyring,
        &herald::keyring::Sealed {
            key_id,
            nonce,
            ciphertext,
        },
    )
    .unwrap();
    assert_eq!(body.subject, "Your order O-KEEP is confirmed");
    assert!(body.text.contains("Dear Kim Keep"));
}
