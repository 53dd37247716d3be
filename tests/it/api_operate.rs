//! The operate and admin routes on a running herald: the suppression list (added by address,
//! listed and deleted by hash only, in keyset pages; it suppresses sends and deleting it lets
//! them go out), a retry that brings a FAILED_RETRYABLE communication's next attempt forward,
//! and the tenant policy (switching communications off, blocking a domain); each tenant sees
//! and changes only its own, and each route wants its scope.

use std::time::Duration;

use crate::support::*;
use herald::api::keys::Scope;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn order_created(event_id: &str, order: &str, contact: &str) -> Value {
    json!({
        "eventId": event_id,
        "eventType": "OrderCreated",
        "occurredAt": "2026-11-26T10:00:00Z",
        "orderId": order,
        "data": {"orderNumber": order, "customerContactId": contact}
    })
}

/// Asks for an order confirmation to `contact`; its communication id.
async fn order(api: &Api, event_id: &str, contact: &str) -> String {
    let (status, body) = api
        .post(
            "/v1/events",
            order_created(event_id, &format!("O-{event_id}"), contact),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["communicationIds"][0].as_str().unwrap().to_string()
}

async fn record(api: &Api, id: &str) -> Value {
    let (status, body) = api.get(&format!("/v1/communications/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The record once its status is `status`.
async fn record_when(api: &Api, id: &str, status: &str, within: Duration) -> Value {
    wait_for(&format!("{id} {status}"), within, || async {
        let r = record(api, id).await;
        (r["status"] == status).then_some(r)
    })
    .await
}

async fn delete(api: &Api, path: &str) -> u16 {
    api.request(reqwest::Method::DELETE, path)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn with_scopes(api: &Api, tenant: &str, scopes: &[Scope]) -> Api {
    Api {
        key: api_key(&api.db, Some(tenant), scopes).await,
        ..api.clone()
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suppression_list_suppresses_by_hash_pages_and_is_the_tenants_own() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-sue", "Sue Pressed", "sue@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let sue = sha256_hex("sue@customer.example");

    // Added by address (any case, any blanks): answered, and kept, by its hash only.
    let (status, added) = api
        .post(
            "/v1/suppressions",
            json!({"email": " Sue@Customer.example", "reason": "asked by phone"}),
        )
        .await;
    assert_eq!(status, 400, "blanks around an address are refused: {added}");
    let (status, added) = api
        .post(
            "/v1/suppressions",
            json!({"email": "Sue@Customer.example", "reason": "asked by phone"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["addressHash"], sue.as_str());
    assert_eq!(added["reason"], "asked by phone");
    assert!(!added.to_string().contains('@'), "{added}");
    let (status, again) = api
        .post(
            "/v1/suppressions",
            json!({"email": "sue@customer.example", "reason": "again"}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, added, "an entry keeps its first reason and time");
    let audited = db
        .scalar_i64(&format!(
            "SELECT count(*) FROM api_audit WHERE method = 'POST' AND route = '/v1/suppressions' AND target_id = '{sue}'"
        ))
        .await;
    assert_eq!(audited, 2);

    // Two more, and a global entry (tenant '*'), which the tenant neither lists nor deletes.
    for email in ["one@customer.example", "two@customer.example"] {
        let (status, body) = api
            .post(
                "/v1/suppressions",
                json!({"email": email, "reason": "complaint"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let global = sha256_hex("everyone@customer.example");
    sqlx::query(
        "INSERT INTO suppression_entry (tenant_id, address_hash, reason) VALUES ('*', $1, 'COMPLAINT')",
    )
    .bind(&global)
    .execute(&db.pool)
    .await
    .unwrap();
    let (status, first) = api.get("/v1/suppressions?limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"].as_array().unwrap().len(), 2, "{first}");
    let next = first["next"].as_str().expect("a next page").to_string();
    let (status, second) = api.get(&next).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["data"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["next"], Value::Null);
    let listed: Vec<Value> = [&first, &second]
        .iter()
        .flat_map(|p| p["data"].as_array().unwrap().clone())
        .collect();
    let hashes: Vec<&str> = listed
        .iter()
        .map(|e| e["addressHash"].as_str().unwrap())
        .collect();
    let mut expected = vec![
        sue.clone(),
        sha256_hex("one@customer.example"),
        sha256_hex("two@customer.example"),
    ];
    let mut sorted: Vec<String> = hashes.iter().map(|h| h.to_string()).collect();
    sorted.sort();
    expected.sort();
    assert_eq!(
        sorted, expected,
        "each entry once, the global one not at all"
    );
    let times: Vec<&str> = listed
        .iter()
        .map(|e| e["createdAt"].as_str().unwrap())
        .collect();
    let mut newest_first = times.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, newest_first);
    for entry in &listed {
        assert_eq!(
            entry.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["addressHash", "createdAt", "reason"]
        );
    }
    let (status, _) = api.get("/v1/suppressions?limit=0").await;
    assert_eq!(status, 400);
    let (status, _) = api.get("/v1/suppressions?cursor=bm9wZQ").await;
    assert_eq!(status, 400);

    // A send to the address is SUPPRESSED.
    let blocked = order(&api, "sup-1", "c-sue").await;
    let blocked = record(&api, &blocked).await;
    assert_eq!(blocked["status"], "SUPPRESSED", "{blocked}");
    assert_eq!(blocked["failureCode"], "ADDRESS_SUPPRESSED");

    // Another tenant sees none of it and cannot delete it; a read key may not even look.
    let globex = api.as_tenant("globex").await;
    let (status, theirs) = globex.get("/v1/suppressions").await;
    assert_eq!((status, &theirs["data"]), (200, &json!([])), "{theirs}");
    assert_eq!(
        delete(&globex, &format!("/v1/suppressions/{sue}")).await,
        404
    );
    let reader = with_scopes(&api, "acme", &[Scope::Read]).await;
    let (status, refused) = reader.get("/v1/suppressions").await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        delete(&reader, &format!("/v1/suppressions/{sue}")).await,
        403
    );
    assert_eq!(
        delete(&api, &format!("/v1/suppressions/{global}")).await,
        404
    );
    assert_eq!(delete(&api, "/v1/suppressions/not-a-hash").await, 400);

    // Deleted (and audited): the next send goes out.
    assert_eq!(delete(&api, &format!("/v1/suppressions/{sue}")).await, 204);
    assert_eq!(delete(&api, &format!("/v1/suppressions/{sue}")).await, 404);
    let audited: Vec<(i32, Option<String>)> = sqlx::query_as(
        "SELECT status, target_id FROM api_audit
         WHERE method = 'DELETE' AND route = '/v1/suppressions/{addressHash}' AND tenant_id = 'acme'
         ORDER BY at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        audited.contains(&(204, Some(sue.clone()))) && audited.contains(&(404, Some(sue.clone()))),
        "{audited:?}"
    );
    let sent = order(&api, "sup-2", "c-sue").await;
    record_when(&api, &sent, "SENT", Duration::from_secs(30)).await;
    assert!(sink
        .received()
        .iter()
        .any(|m| m.header("Message-ID").is_some_and(|h| h.contains(&sent))));
    let (status, rest) = api.get("/v1/suppressions").await;
    assert_eq!(status, 200);
    assert_eq!(rest["data"].as_array().unwrap().len(), 2, "{rest}");
    let stays = db
        .scalar_i64("SELECT count(*) FROM suppression_entry WHERE tenant_id = '*'")
        .await;
    assert_eq!(stays, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_sends_a_failed_retryable_one_at_once_on_the_same_record() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-busy", "Bea Busy", "busy@customer.example")
        .await;
    db.add_contact("acme", "c-fine", "Fin Fine", "fine@customer.example")
        .await;
    db.add_contact("acme", "c-gone", "Gus Gone", "gone@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    sink.script_recipient("busy@customer.example", &[451]);
    sink.script_recipient("gone@customer.example", &[550]);
    // The second attempt is due ten minutes after the first, and the delivery loop polls once a
    // minute: only the retry (and the wake-up it sends) makes it go out within seconds.
    let (_herald, api) = Api::start(
        &db,
        &sink.url(),
        &[
            ("HERALD_DELIVERY__RETRY_SCHEDULE_S", "0,600"),
            ("HERALD_DELIVERY__JITTER", "0"),
            ("HERALD_DELIVERY__POLL_INTERVAL_MS", "60000"),
        ],
    )
    .await;

    let fine = order(&api, "r-fine", "c-fine").await;
    let busy = order(&api, "r-busy", "c-busy").await;
    record_when(&api, &fine, "SENT", Duration::from_secs(30)).await;
    let failed = record_when(&api, &busy, "FAILED_RETRYABLE", Duration::from_secs(30)).await;
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1, "{failed}");

    // What is not FAILED_RETRYABLE is refused, saying why; another tenant's is not found.
    let (status, sent) = api
        .post(&format!("/v1/communications/{fine}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "{sent}");
    assert!(
        sent["detail"]
            .as_str()
            .unwrap()
            .contains("nothing to retry"),
        "{sent}"
    );
    let globex = api.as_tenant("globex").await;
    let (status, body) = globex
        .post(&format!("/v1/communications/{busy}/retry"), json!({}))
        .await;
    assert_eq!(status, 404, "{body}");
    let reader = with_scopes(&api, "acme", &[Scope::Read, Scope::Send]).await;
    let (status, body) = reader
        .post(&format!("/v1/communications/{busy}/retry"), json!({}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        record(&api, &busy).await["status"],
        "FAILED_RETRYABLE",
        "refused retries change nothing"
    );

    let records_before = db
        .scalar_i64("SELECT count(*) FROM communication_record")
        .await;
    let (status, taken) = api
        .post(&format!("/v1/communications/{busy}/retry"), json!({}))
        .await;
    assert_eq!(status, 202, "{taken}");
    assert_eq!(
        taken,
        json!({"communicationId": busy, "status": "FAILED_RETRYABLE"})
    );
    let sent = record_when(&api, &busy, "SENT", Duration::from_secs(15)).await;
    let attempts = sent["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{sent}");
    assert_eq!(attempts[0]["status"], "FAILED_RETRYABLE");
    assert_eq!(attempts[1]["status"], "ACCEPTED");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        records_before,
        "a retry makes no new record"
    );
    assert_eq!(
        sink.received()
            .iter()
            .filter(|m| m.header("Message-ID").is_some_and(|h| h.contains(&busy)))
            .count(),
        1
    );
    let (status, again) = api
        .post(&format!("/v1/communications/{busy}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "{again}");

    // One that failed for good is resent, not retried (its fallout comes after: nothing else
    // woke the delivery loop above).
    let gone = order(&api, "r-gone", "c-gone").await;
    record_when(&api, &gone, "FAILED_FINAL", Duration::from_secs(30)).await;
    let (status, final_) = api
        .post(&format!("/v1/communications/{gone}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "{final_}");
    assert!(
        final_["detail"].as_str().unwrap().contains("resend"),
        "{final_}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_policy_switches_communications_off_and_blocks_domains_for_its_tenant_only() {
    let db = TestDb::create().await;
    for tenant in ["acme", "globex"] {
        db.add_contact(tenant, "c-kim", "Kim Meier", "kim@customer.example")
            .await;
        db.add_contact(tenant, "c-spam", "Sam Spam", "sam@blocked.example")
            .await;
    }
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let globex = api.as_tenant("globex").await;

    // The defaults; an operate key may neither read nor set them.
    let (status, policy) = api.get("/v1/policy").await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(
        policy,
        json!({"communicationsEnabled": true, "quietStart": null, "quietEnd": null,
               "timezone": "UTC", "blockedDomains": [], "updatedAt": null})
    );
    let operator = with_scopes(&api, "acme", &[Scope::Operate, Scope::Read, Scope::Send]).await;
    let (status, refused) = operator.get("/v1/policy").await;
    assert_eq!(status, 403, "{refused}");
    let (status, _) = operator
        .put(
            "/v1/policy",
            json!({"communicationsEnabled": false, "timezone": "UTC"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = operator
        .put("/v1/policy/blocked-domains/blocked.example", json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, bad) = api
        .put(
            "/v1/policy",
            json!({"communicationsEnabled": false, "quietStart": "22:00", "timezone": "Mars/Olympus"}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");

    // Communications off: the next command's communication is SUPPRESSED; globex's goes out.
    let (status, off) = api
        .put(
            "/v1/policy",
            json!({"communicationsEnabled": false, "quietStart": "22:00", "quietEnd": "06:30",
                   "timezone": "Europe/Zurich"}),
        )
        .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["communicationsEnabled"], false);
    assert_eq!(
        (&off["quietStart"], &off["quietEnd"], &off["timezone"]),
        (&json!("22:00"), &json!("06:30"), &json!("Europe/Zurich"))
    );
    assert!(off["updatedAt"].is_string(), "{off}");
    let (_, shown) = api.get("/v1/policy").await;
    assert_eq!(shown, off);
    let quiet = order(&api, "p-off", "c-kim").await;
    let quiet = record(&api, &quiet).await;
    assert_eq!(
        (&quiet["status"], &quiet["failureCode"]),
        (&json!("SUPPRESSED"), &json!("TENANT_DISABLED")),
        "{quiet}"
    );
    let (_, theirs) = globex.get("/v1/policy").await;
    assert_eq!(theirs["communicationsEnabled"], true);
    let loud = order(&globex, "p-on", "c-kim").await;
    record_when(&globex, &loud, "SENT", Duration::from_secs(30)).await;

    // On again, with a blocked domain (lower-cased): mail to it is SUPPRESSED, for acme only.
    let (status, on) = api
        .put(
            "/v1/policy",
            json!({"communicationsEnabled": true, "timezone": "UTC"}),
        )
        .await;
    assert_eq!(status, 200, "{on}");
    assert_eq!(
        (&on["quietStart"], &on["quietEnd"]),
        (&Value::Null, &Value::Null)
    );
    let (status, block) = api
        .put(
            "/v1/policy/blocked-domains/Blocked.Example",
            json!({"reason": "abuse"}),
        )
        .await;
    assert_eq!(status, 201, "{block}");
    assert_eq!(
        (&block["domain"], &block["reason"]),
        (&json!("blocked.example"), &json!("abuse"))
    );
    let (status, reblock) = api
        .put("/v1/policy/blocked-domains/blocked.example", json!({}))
        .await;
    assert_eq!(status, 200, "{reblock}");
    assert_eq!(reblock["createdAt"], block["createdAt"]);
    for bad in ["localhost", "a..example"] {
        let (status, body) = api
            .put(&format!("/v1/policy/blocked-domains/{bad}"), json!({}))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (_, shown) = api.get("/v1/policy").await;
    assert_eq!(
        shown["blockedDomains"].as_array().unwrap().len(),
        1,
        "{shown}"
    );
    assert_eq!(shown["blockedDomains"][0]["domain"], "blocked.example");
    let spam = order(&api, "p-spam", "c-spam").await;
    let spam = record(&api, &spam).await;
    assert_eq!(
        (&spam["status"], &spam["failureCode"]),
        (&json!("SUPPRESSED"), &json!("DOMAIN_BLOCKED")),
        "{spam}"
    );
    let kim = order(&api, "p-kim", "c-kim").await;
    record_when(&api, &kim, "SENT", Duration::from_secs(30)).await;
    let (_, theirs) = globex.get("/v1/policy").await;
    assert_eq!(theirs["blockedDomains"], json!([]));
    assert_eq!(
        delete(&globex, "/v1/policy/blocked-domains/blocked.example").await,
        404
    );
    let their_spam = order(&globex, "p-their-spam", "c-spam").await;
    record_when(&globex, &their_spam, "SENT", Duration::from_secs(30)).await;

    // Lifted (audited), once.
    assert_eq!(
        delete(&api, "/v1/policy/blocked-domains/blocked.example").await,
        204
    );
    assert_eq!(
        delete(&api, "/v1/policy/blocked-domains/blocked.example").await,
        404
    );
    let audited = db
        .scalar_i64(
            "SELECT count(*) FROM api_audit WHERE route = '/v1/policy/blocked-domains/{domain}' AND tenant_id = 'acme'",
        )
        .await;
    assert_eq!(
        audited, 7,
        "the PUTs (one of them 403, two 400) and the DELETEs"
    );
    let unblocked = order(&api, "p-spam-2", "c-spam").await;
    record_when(&api, &unblocked, "SENT", Duration::from_secs(30)).await;
}
