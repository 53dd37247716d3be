//! Secrets at rest against the real PostgreSQL: webhook signing secrets stored sealed with their
//! key id (plaintext rows of the earlier version sealed at start), messages still signed and
//! verified by the independent `standardwebhooks` package, `herald keys rotate` (the real
//! binary) moving every ciphertext under the new key, no subscription without a key, and
//! explicit addresses' keyed references that leave records made before them alone: a re-fetched
//! task and a retried command find those instead of making a second communication.

use std::time::Duration;

use crate::support::webhook_receiver::WebhookReceiver;
use crate::support::*;
use crate::webhooks::{quote_accepted, start, SECRET};
use herald::camunda::worker::{HandlerOutcome, TaskHandler};
use herald::content::RetainedBody;
use herald::keyring::{Keyring, Sealed};
use herald::workers::send_proposal::SendProposal;
use serde_json::{json, Value};

const EARLIER_SECRET: &str = "whsec_c2VjcmV0IG9mIHRoZSBlYXJsaWVyIHZlcnNpb24h";
/// The key a rotation puts in front of the test ring.
const NEW_KEY: &str = "t2:6e6577206b6579206f662074686520726f746174696f6e207465737421212121";

async fn subscribe(api: &Api, url: &str) -> String {
    let body = crate::webhooks::subscribe(api, url).await;
    assert_eq!(body["secret"], SECRET, "shown once, at creation");
    body["subscriptionId"].as_str().unwrap().to_string()
}

/// A subscription as the earlier version stored it: its secret in plaintext.
async fn insert_plaintext_subscription(db: &TestDb, id: &str, url: &str, event_type: &str) {
    sqlx::query(
        "INSERT INTO webhook_subscription (subscription_id, tenant_id, endpoint_url, event_types, secret)
         VALUES ($1, 'acme', $2, ARRAY[$3], $4)",
    )
    .bind(id)
    .bind(url)
    .bind(event_type)
    .bind(EARLIER_SECRET)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// Sends the event and waits until each communication it made is SENT.
async fn accept_quote(api: &Api, event_id: &str, quote: &str, expected: usize) -> Vec<String> {
    let (status, body) = api
        .post("/v1/events", quote_accepted(event_id, quote))
        .await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> = body["communicationIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), expected, "{body}");
    for id in &ids {
        wait_for(
            &format!("communication {id} to be SENT"),
            Duration::from_secs(30),
            || async move {
                let (_, record) = api.get(&format!("/v1/communications/{id}")).await;
                (record["status"] == "SENT").then_some(())
            },
        )
        .await;
    }
    ids
}

fn assert_verified(receiver: &WebhookReceiver, n: usize) {
    let got = receiver.received();
    assert_eq!(got.len(), n, "{got:?}");
    for request in &got {
        assert!(
            request.verified,
            "standardwebhooks refused the signature: {:?}",
            request.error
        );
    }
}

/// Secrets in plaintext anywhere in the table, or sealed under another key than `key_id`.
async fn secrets_not_sealed_under(db: &TestDb, key_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM webhook_subscription
         WHERE secret IS NOT NULL OR previous_secret IS NOT NULL
            OR secret_key_id IS DISTINCT FROM $1
            OR (previous_secret_ciphertext IS NOT NULL AND previous_secret_key_id <> $1)
            OR position('whsec_'::bytea IN secret_ciphertext) > 0
            OR position('whsec_'::bytea IN coalesce(previous_secret_ciphertext, ''::bytea)) > 0",
    )
    .bind(key_id)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// `herald keys rotate` (the binary) on the test database with the ring `ring`.
async fn keys_rotate(db: &TestDb, ring: &str) -> (bool, String, String) {
    let out = tokio::process::Command::new(herald_bin())
        .args(["keys", "rotate", "--batch", "1"])
        .env("HERALD_DATABASE_URL", &db.url)
        .env("HERALD_KEYS__ENCRYPTION", ring)
        .env_remove("HERALD_CONTENT__KEY")
        .env("HERALD_LOG__FILTER", "warn")
        .output()
        .await
        .expect("herald keys rotate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ring(spec: &str) -> Keyring {
    Keyring::from_settings(Some(spec), None).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signing_secrets_are_stored_sealed_and_messages_still_verify() {
    let db = TestDb::create().await;
    let earlier = WebhookReceiver::start(&[EARLIER_SECRET], "200");
    insert_plaintext_subscription(&db, "ws_earlier", &earlier.url("/hooks"), "quote.accepted")
        .await;
    let receiver = WebhookReceiver::start(&[SECRET], "200");
    let (_herald, api) = start(&db, &[]).await;
    // herald sealed the earlier version's plaintext secret when it started.
    assert_eq!(secrets_not_sealed_under(&db, "t1").await, 0);

    let sid = subscribe(&api, &receiver.url("/hooks")).await;
    let (status, rotated) = api
        .post(
            &format!("/v1/webhooks/subscriptions/{sid}/rotate"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert!(new_secret.starts_with("whsec_"));
    assert_eq!(
        secrets_not_sealed_under(&db, "t1").await,
        0,
        "no plaintext whsec_ after create and rotate"
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM webhook_subscription WHERE previous_secret_ciphertext IS NOT NULL"
        )
        .await,
        1,
        "the secret before the rotation is kept sealed for the grace period"
    );

    accept_quote(&api, "qa-s1", "Q-S1", 2).await;
    assert_verified(&earlier, 1);
    assert_verified(&receiver, 1);
    // Signed with the old and the new secret during the grace period: one that knows only
    // the new one verifies as well.
    let new_only = WebhookReceiver::start(&[&new_secret], "200");
    sqlx::query("UPDATE webhook_subscription SET endpoint_url = $1 WHERE subscription_id = $2")
        .bind(new_only.url("/hooks"))
        .bind(&sid)
        .execute(&db.pool)
        .await
        .unwrap();
    accept_quote(&api, "qa-s2", "Q-S2", 2).await;
    assert_verified(&new_only, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_moves_every_ciphertext_under_the_new_key_and_delivery_still_verifies() {
    let db = TestDb::create().await;
    let receiver = WebhookReceiver::start(&[SECRET], "200");
    let (herald, api) = start(&db, &[]).await;
    subscribe(&api, &receiver.url("/hooks")).await;
    // Written after the start: a row of the earlier version that only the rotation seals.
    insert_plaintext_subscription(&db, "ws_earlier", &receiver.url("/other"), "order.shipped")
        .await;
    let id = accept_quote(&api, "qa-r1", "Q-R1", 1).await.remove(0);
    // A retained body and an inbox notification sealed under t1 (what delivery writes for a
    // template that keeps bodies encrypted), on that communication.
    let t1 = ring(TEST_ENCRYPTION_KEYS);
    let body = RetainedBody {
        subject: "Kept subject".into(),
        text: "Dear Kim".into(),
        html: "<p>Dear Kim</p>".into(),
    };
    for (sql, sealed) in [
        ("INSERT INTO communication_content (communication_id, key_id, nonce, ciphertext) VALUES ($1::uuid, $2, $3, $4)", body.seal(&t1)),
        ("INSERT INTO inbox_notification (notification_id, tenant_id, recipient_ref, communication_type, title, body_text, body_html, body_key_id, body_nonce, body_ciphertext)
          SELECT communication_id, 'acme', 'user:kim', communication_type, '', '', '', $2, $3, $4 FROM communication_record WHERE communication_id = $1::uuid", body.seal(&t1)),
        // The inputs a resend of it needs, as delivery keeps them once its job ended.
        ("INSERT INTO resend_input (communication_id, key_id, nonce, ciphertext, kept_until) VALUES ($1::uuid, $2, $3, $4, now() + interval '1 day')",
         t1.seal(br#"{"payload":{"orderNumber":"ON-1"},"address":"kim@customer.example"}"#)),
    ] {
        sqlx::query(sql)
            .bind(&id)
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let (_, inbox) = api.get("/v1/inbox/user:kim").await;
    assert_eq!(
        inbox["notifications"][0]["title"], "Kept subject",
        "{inbox}"
    );
    herald.stop().await;

    let both = format!("{NEW_KEY},{TEST_ENCRYPTION_KEYS}");
    let (ok, stdout, stderr) = keys_rotate(&db, &both).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout
            .contains("under key t2: 2 webhook signing secrets, 1 retained bodies, 1 inbox bodies, 1 resend inputs"),
        "{stdout}"
    );
    assert_eq!(secrets_not_sealed_under(&db, "t2").await, 0);
    for sql in [
        "SELECT count(*) FROM communication_content WHERE key_id <> 't2'",
        "SELECT count(*) FROM inbox_notification WHERE body_key_id <> 't2'",
        "SELECT count(*) FROM resend_input WHERE key_id <> 't2'",
    ] {
        assert_eq!(db.scalar_i64(sql).await, 0, "{sql}");
    }
    let (ok, stdout, _) = keys_rotate(&db, &both).await;
    assert!(
        ok && stdout.contains(
            "0 webhook signing secrets, 0 retained bodies, 0 inbox bodies, 0 resend inputs"
        ),
        "a second run moves nothing: {stdout}"
    );

    // t1 dropped: everything opens with t2 alone.
    let t2 = ring(NEW_KEY);
    let (key_id, nonce, ciphertext): (String, Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT key_id, nonce, ciphertext FROM communication_content")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let sealed = Sealed {
        key_id,
        nonce,
        ciphertext,
    };
    assert_eq!(RetainedBody::open(&t2, &sealed).unwrap(), body);
    let (_herald, api) = start(&db, &[("HERALD_KEYS__ENCRYPTION", NEW_KEY)]).await;
    let (_, inbox) = api.get("/v1/inbox/user:kim").await;
    assert_eq!(
        inbox["notifications"][0]["title"], "Kept subject",
        "{inbox}"
    );
    assert_eq!(inbox["notifications"][0]["bodyText"], "Dear Kim", "{inbox}");
    let id = accept_quote(&api, "qa-r2", "Q-R2", 1).await.remove(0);
    assert_verified(&receiver, 2);

    // A row sealed under a key the ring lacks stops the run, named, with exit 1.
    let gone = ring("gone:676f6e65206b6579206f662074686520726f746174696f6e2074657374212121");
    let sealed = body.seal(&gone);
    sqlx::query("INSERT INTO communication_content (communication_id, key_id, nonce, ciphertext) VALUES ($1::uuid, $2, $3, $4)")
        .bind(&id)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .execute(&db.pool)
        .await
        .unwrap();
    let (ok, stdout, stderr) = keys_rotate(&db, &format!("t3:{},{NEW_KEY}", "ab".repeat(32))).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains(&format!("the retained body of communication {id}"))
            && stderr.contains("no key 'gone'"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_encryption_key_no_subscription_is_made_and_none_is_kept_in_plaintext() {
    let db = TestDb::create().await;
    let no_key = [("HERALD_KEYS__ENCRYPTION", "")];
    let (herald, api) = start(&db, &no_key).await;
    let (status, body) = api
        .post(
            "/v1/webhooks/subscriptions",
            json!({"url": "http://127.0.0.1:9/hooks", "eventTypes": ["quote.accepted"]}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_string().contains("HERALD_KEYS__ENCRYPTION"),
        "{body}"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM webhook_subscription")
            .await,
        0
    );
    herald.stop().await;

    // A subscription of the earlier version: the API and the delivery refuse to start rather
    // than keep or use its secret in plaintext.
    insert_plaintext_subscription(
        &db,
        "ws_earlier",
        "http://127.0.0.1:9/hooks",
        "quote.accepted",
    )
    .await;
    let settings = test_settings(&db, "smtp://127.0.0.1:9", &new_lane(), &no_key);
    let refused = herald::runtime::start(
        settings,
        herald::runtime::Components::all(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .err()
    .expect("herald refuses to start");
    assert!(
        refused.to_string().contains("1 webhook subscription(s)")
            && refused.to_string().contains("HERALD_KEYS__ENCRYPTION"),
        "{refused}"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM webhook_subscription WHERE secret IS NOT NULL")
            .await,
        1,
        "the secret is not lost"
    );
}

/// Rewrites a communication into what the earlier version recorded for it: the explicit
/// address's unkeyed reference, in the record and in its idempotency key.
async fn as_the_earlier_version_recorded(db: &TestDb, address: &str) -> String {
    let key = test_keys().recipient_ref.unwrap();
    let keyed = herald::policy::address_ref(&key, address);
    let earlier = herald::policy::earlier_address_ref(address);
    let escaped = |r: &str| r.replace(':', "%3A");
    let rows = sqlx::query(
        "UPDATE communication_record SET recipient_ref = $2,
             idempotency_key = replace(idempotency_key, $3, $4)
         WHERE recipient_ref = $1",
    )
    .bind(&keyed)
    .bind(&earlier)
    .bind(escaped(&keyed))
    .bind(escaped(&earlier))
    .execute(&db.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(
        rows, 1,
        "one record for {address} under its keyed reference"
    );
    earlier
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_fetched_again_after_the_upgrade_finds_the_record_made_before_it() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-UPG").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let address = "Upgrade.Buyer@customer.example";
    let instance = camunda
        .start_process(
            "quote-proposal",
            &format!("Q-UPG-r2-{}", &lane[5..13]),
            &proposal_vars(&lane, "Q-UPG", ("recipientEmail", address)),
        )
        .await
        .unwrap();

    // A worker of the earlier version locked the task, recorded the communication (with the
    // unkeyed reference, in the record and its key) and died before completing it.
    let topic = shipped_topic("send-proposal");
    let locked = lock_as_doomed_worker(&camunda, &topic, &lane).await;
    assert_eq!(locked.process_instance_id, instance.id);
    let HandlerOutcome::Complete(vars) = SendProposal::new(topic, intake(&db, &camunda))
        .handle(&locked)
        .await
    else {
        panic!("the handler should have recorded the communication")
    };
    let earlier_id = vars["communicationId"].value.as_str().unwrap().to_string();
    let earlier_ref = as_the_earlier_version_recorded(&db, address).await;

    // The upgraded herald fetches the task again once the lock expires.
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        1,
        "no second communication"
    );
    assert_eq!(sink.received().len(), 1, "exactly one email");
    let vars = history_variables(&camunda, &instance.id).await;
    assert_eq!(vars["communicationId"].as_str(), Some(earlier_id.as_str()));
    let kept: String = sqlx::query_scalar("SELECT recipient_ref FROM communication_record")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        kept, earlier_ref,
        "the record keeps the reference it was made with"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_retried_after_the_upgrade_finds_the_record_made_before_it() {
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-UPA").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let path = "/v1/quotes/Q-UPA/revisions/1/communications/proposal";
    let address = "retry@customer.example";
    let command = json!({"artifactId": "doc-Q-UPA", "recipientEmail": address});
    let post = |body: Value| {
        let request = api
            .http
            .post(api.url(path))
            .bearer_auth(&api.key)
            .header("Idempotency-Key", "upgrade-1")
            .json(&body)
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = post(command.clone()).await;
    assert_eq!(status, 201, "{first}");
    as_the_earlier_version_recorded(&db, address).await;
    // The earlier version kept no Idempotency-Keys of its own: the handler runs again.
    sqlx::query("DELETE FROM api_idempotency")
        .execute(&db.pool)
        .await
        .unwrap();

    let (status, again) = post(command.clone()).await;
    assert_eq!(status, 200, "the retried command finds it: {again}");
    assert_eq!(again["communicationId"], first["communicationId"]);
    // One proposal (what else the ledger holds is named, should it differ: a CI run once found
    // five records here, which this message will explain when it recurs).
    let records: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT communication_type, status, failure_code FROM communication_record ORDER BY created_at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|(kind, _, _)| kind == "QUOTE_PROPOSAL_DELIVERY")
            .count(),
        1,
        "{records:?}"
    );
    // Another address under the same key is still another request.
    let mut other = command;
    other["recipientEmail"] = json!("someone-else@customer.example");
    let (status, conflict) = post(other).await;
    assert_eq!(status, 422, "{conflict}");
}
