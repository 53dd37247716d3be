//! The HTTP `Idempotency-Key` of the API's POST commands, through the real proposal route on
//! the real PostgreSQL: a retry replays the first response byte for byte and writes nothing;
//! another request with the same key is 422 and a command without a key 400, both writing
//! nothing; a key whose first request still runs is 409 (ten concurrent identical requests:
//! one runs, nine are told so, and all ten then replay its one communication); an expired key
//! and the key of a request whose herald crashed past its lease are used again.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};
use sha2::Digest;

/// The proposal route of quote `quote`, revision 4 (the revision of the test documents).
fn path(quote: &str) -> String {
    format!("/v1/quotes/{quote}/revisions/4/communications/proposal")
}

/// The proposal command of `quote`'s document to `email`, as the bytes sent.
fn command(quote: &str, email: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "artifactId": format!("doc-{quote}"),
        "recipientEmail": email,
        "deliveryMode": "PORTAL_LINK",
    }))
    .unwrap()
}

/// An answer of the API, as received.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    replayed: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The same answer, marked as replayed.
    fn replayed(&self) -> Answer {
        Answer {
            replayed: Some("true".into()),
            ..self.clone()
        }
    }
}

/// POSTs `body` to `path` with `key` (no header when None).
async fn post(api: &Api, path: &str, key: Option<&str>, body: &[u8]) -> Answer {
    let mut request = api
        .http
        .post(api.url(path))
        .bearer_auth(&api.key)
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, content_type, replayed) = (
        response.status().as_u16(),
        header("content-type"),
        header("idempotent-replayed"),
    );
    Answer {
        status,
        content_type,
        replayed,
        body: response.bytes().await.unwrap().to_vec(),
    }
}

async fn proposal_records(db: &TestDb) -> i64 {
    db.scalar_i64(
        "SELECT count(*) FROM communication_record WHERE communication_type = 'QUOTE_PROPOSAL_DELIVERY'",
    )
    .await
}

/// The state of `key`'s row (of tenant acme), if any.
async fn key_state(db: &TestDb, key: &str) -> Option<(String, Option<i16>)> {
    sqlx::query_as(
        "SELECT state, response_status FROM api_idempotency
         WHERE tenant_id = 'acme' AND idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

/// The database, a document for each of `quotes`, and herald with its API.
async fn scene(quotes: &[&str]) -> (TestDb, smtp_sink::SmtpSink, InProcess, Arc<Api>) {
    let db = TestDb::create().await;
    for quote in quotes {
        db.add_proposal_document("acme", quote).await;
    }
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (herald, api) = Api::start(&db, &sink.url(), &[]).await;
    (db, sink, herald, Arc::new(api))
}

/// Holds the proposal handler of `quote` and `key` at its ledger insert: an uncommitted record
/// with the ledger idempotency key the handler derives, until the transaction is rolled back.
async fn hold_ledger_insert(
    db: &TestDb,
    quote: &str,
    key: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut held = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO communication_record (communication_id, tenant_id, communication_type, message_category,
             status, subject_type, subject_id, quote_id, recipient_type, recipient_ref, channel,
             template_family, template_version, idempotency_key, requested_by, requested_at, correlation_id)
         VALUES (gen_random_uuid(), 'acme', 'QUOTE_PROPOSAL_DELIVERY', 'TRANSACTIONAL', 'REQUESTED',
             'QUOTE_REVISION', $1 || '/4', $1, 'ADDRESS', 'held@test.example', 'EMAIL', 'held', 'held',
             'quote-proposal-delivery:api:' || $1 || '/4:' || $2, 'test', now(), 'held')",
    )
    .bind(quote)
    .bind(key)
    .execute(&mut *held)
    .await
    .unwrap();
    held
}

/// Waits until `key`'s first request holds it (its row is in flight).
async fn wait_in_flight(db: &TestDb, key: &str) {
    wait_for("the key in flight", Duration::from_secs(10), || async {
        key_state(db, key)
            .await
            .filter(|(state, _)| state == "IN_FLIGHT")
    })
    .await;
}

/// SHA-256 of credential, method, path and body, as herald fingerprints a request of `api`'s
/// key (the only key of the test's database).
async fn fingerprint(db: &TestDb, path: &str, body: &[u8]) -> Vec<u8> {
    let key_id: uuid::Uuid = sqlx::query_scalar("SELECT key_id FROM api_key")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let mut framed = format!("key:{key_id}\nPOST\n{path}\n").into_bytes();
    framed.extend_from_slice(body);
    sha2::Sha256::digest(&framed).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_first_response_byte_for_byte_and_writes_nothing() {
    let (db, _sink, _herald, api) = scene(&["Q-R1"]).await;
    let body = command("Q-R1", "buyer@customer.example");
    let first = post(&api, &path("Q-R1"), Some("retry-1"), &body).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.replayed, None);
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    let id = first.json()["communicationId"].clone();
    assert!(id.is_string(), "{id}");
    // The key as the draft writes it (a structured-field string) is the same key.
    for key in ["retry-1", "\"retry-1\""] {
        let again = post(&api, &path("Q-R1"), Some(key), &body).await;
        assert_eq!(again, first.replayed(), "same status, type and bytes");
    }
    assert_eq!(proposal_records(&db).await, 1);
    assert_eq!(
        key_state(&db, "retry-1").await,
        Some(("DONE".into(), Some(201)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_request_with_the_same_key_is_422_and_writes_nothing() {
    let (db, _sink, _herald, api) = scene(&["Q-O1", "Q-O2"]).await;
    let body = command("Q-O1", "buyer@customer.example");
    let first = post(&api, &path("Q-O1"), Some("other-1"), &body).await;
    assert_eq!(first.status, 201, "{first:?}");
    let other_body = command("Q-O1", "someone-else@customer.example");
    let other_path = command("Q-O2", "buyer@customer.example");
    for (path, body) in [(path("Q-O1"), &other_body), (path("Q-O2"), &other_path)] {
        let refused = post(&api, &path, Some("other-1"), body).await;
        assert_eq!(refused.status, 422, "{refused:?}");
        assert_eq!(refused.replayed, None);
        assert!(
            refused.json()["detail"]
                .as_str()
                .unwrap()
                .contains("used for another request"),
            "{refused:?}"
        );
    }
    assert_eq!(proposal_records(&db).await, 1);
    // The key still answers its own request.
    let again = post(&api, &path("Q-O1"), Some("other-1"), &body).await;
    assert_eq!(again, first.replayed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_without_a_usable_key_is_400_and_writes_nothing() {
    let (db, _sink, _herald, api) = scene(&["Q-K1"]).await;
    let body = command("Q-K1", "buyer@customer.example");
    let too_long = "k".repeat(256);
    for key in [
        None,
        Some(""),
        Some("   "),
        Some(too_long.as_str()),
        Some("\"open"),
    ] {
        let refused = post(&api, &path("Q-K1"), key, &body).await;
        assert_eq!(refused.status, 400, "{key:?}: {refused:?}");
        assert!(
            refused.json()["errors"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{refused:?}"
        );
    }
    assert_eq!(proposal_records(&db).await, 0);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM api_idempotency").await,
        0
    );
    // The longest key is fine.
    let longest = "k".repeat(255);
    let accepted = post(&api, &path("Q-K1"), Some(&longest), &body).await;
    assert_eq!(accepted.status, 201, "{accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_first_request_still_runs_is_409() {
    let (db, _sink, _herald, api) = scene(&["Q-F1"]).await;
    let body = command("Q-F1", "buyer@customer.example");
    let held = hold_ledger_insert(&db, "Q-F1", "flight-1").await;
    let first = tokio::spawn({
        let (api, body) = (api.clone(), body.clone());
        async move { post(&api, &path("Q-F1"), Some("flight-1"), &body).await }
    });
    wait_in_flight(&db, "flight-1").await;
    let busy = post(&api, &path("Q-F1"), Some("flight-1"), &body).await;
    assert_eq!(busy.status, 409, "{busy:?}");
    assert!(
        busy.json()["detail"]
            .as_str()
            .unwrap()
            .contains("still being processed"),
        "{busy:?}"
    );
    assert!(
        !first.is_finished(),
        "the first request waits at its ledger insert"
    );
    held.rollback().await.unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(proposal_records(&db).await, 1);
    // The 409 stored nothing: the retry is the first request's answer.
    let retry = post(&api, &path("Q-F1"), Some("flight-1"), &body).await;
    assert_eq!(retry, first.replayed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_identical_requests_make_one_record() {
    let (db, _sink, _herald, api) = scene(&["Q-C1"]).await;
    let body = command("Q-C1", "buyer@customer.example");
    // The one request that takes the key waits at its ledger insert while the other nine
    // arrive: the draft answers each of them 409 (the first is still being processed).
    let held = hold_ledger_insert(&db, "Q-C1", "burst-1").await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (api, body) = (api.clone(), body.clone());
        requests.spawn(async move { post(&api, &path("Q-C1"), Some("burst-1"), &body).await });
    }
    for _ in 0..9 {
        let busy = tokio::time::timeout(Duration::from_secs(20), requests.join_next())
            .await
            .expect("nine requests answer while the first runs")
            .unwrap()
            .unwrap();
        assert_eq!(busy.status, 409, "{busy:?}");
    }
    assert_eq!(requests.len(), 1, "one request runs");
    held.rollback().await.unwrap();
    let first = requests.join_next().await.unwrap().unwrap();
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(proposal_records(&db).await, 1);
    // All ten clients retry and get the one answer, with its one communication.
    let mut retries = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (api, body) = (api.clone(), body.clone());
        retries.spawn(async move { post(&api, &path("Q-C1"), Some("burst-1"), &body).await });
    }
    let answers = retries.join_all().await;
    assert_eq!(answers.len(), 10);
    for answer in &answers {
        assert_eq!(answer, &first.replayed());
        assert_eq!(
            answer.json()["communicationId"],
            first.json()["communicationId"]
        );
    }
    assert_eq!(proposal_records(&db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_used_again_and_purged() {
    let db = TestDb::create().await;
    for quote in ["Q-E1", "Q-E2"] {
        db.add_proposal_document("acme", quote).await;
    }
    // A key that expired long ago: the first command a herald takes purges it.
    sqlx::query(
        "INSERT INTO api_idempotency (tenant_id, idempotency_key, fingerprint, state, response_status,
             response_content_type, response_body, created_at, expires_at)
         VALUES ('acme', 'stale', $1, 'DONE', 201, 'application/json', '{}', now() - interval '3 days',
             now() - interval '2 days')",
    )
    .bind(vec![0u8; 32])
    .execute(&db.pool)
    .await
    .unwrap();
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let body = command("Q-E1", "buyer@customer.example");
    let first = post(&api, &path("Q-E1"), Some("expiring"), &body).await;
    assert_eq!(first.status, 201, "{first:?}");
    wait_for("the stale key purged", Duration::from_secs(10), || async {
        key_state(&db, "stale").await.is_none().then_some(())
    })
    .await;
    let expire = || async {
        sqlx::query(
            "UPDATE api_idempotency SET created_at = now() - interval '25 hours',
                 expires_at = now() - interval '1 hour' WHERE idempotency_key = 'expiring'",
        )
        .execute(&db.pool)
        .await
        .unwrap();
    };
    // Before it expires, another request with the key is refused; after, it runs.
    let other = command("Q-E2", "buyer@customer.example");
    assert_eq!(
        post(&api, &path("Q-E2"), Some("expiring"), &other)
            .await
            .status,
        422
    );
    expire().await;
    let second = post(&api, &path("Q-E2"), Some("expiring"), &other).await;
    assert_eq!(second.status, 201, "{second:?}");
    assert_eq!(second.replayed, None);
    assert_ne!(
        second.json()["communicationId"],
        first.json()["communicationId"]
    );
    assert_eq!(proposal_records(&db).await, 2);
    // The first request, once its key expired, runs again: the ledger still knows its
    // communication (200, not a replay of the 201), and makes no second one.
    expire().await;
    let rerun = post(&api, &path("Q-E1"), Some("expiring"), &body).await;
    assert_eq!(rerun.status, 200, "{rerun:?}");
    assert_eq!(rerun.replayed, None);
    assert_eq!(
        rerun.json()["communicationId"],
        first.json()["communicationId"]
    );
    assert_eq!(proposal_records(&db).await, 2);
    let (expires_in_hours,): (f64,) = sqlx::query_as(
        "SELECT (extract(epoch FROM expires_at - now()) / 3600)::float8 FROM api_idempotency
         WHERE idempotency_key = 'expiring'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        (23.9..=24.0).contains(&expires_in_hours),
        "a fresh 24 h: {expires_in_hours}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_request_past_its_lease_is_taken_over() {
    let (db, _sink, _herald, api) = scene(&["Q-L1"]).await;
    let body = command("Q-L1", "buyer@customer.example");
    // What a herald that crashed mid-request leaves: the key in flight, its lease running.
    let crashed = |key: &'static str, fingerprint: Vec<u8>, lease: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query(&format!(
                "INSERT INTO api_idempotency (tenant_id, idempotency_key, fingerprint, state, claim_id,
                     lease_until, expires_at)
                 VALUES ('acme', $1, $2, 'IN_FLIGHT', gen_random_uuid(), now() + interval '{lease}',
                     now() + interval '24 hours')"
            ))
            .bind(key)
            .bind(fingerprint)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    crashed(
        "crash-1",
        fingerprint(&db, &path("Q-L1"), &body).await,
        "1 hour",
    )
    .await;
    let busy = post(&api, &path("Q-L1"), Some("crash-1"), &body).await;
    assert_eq!(busy.status, 409, "within its lease: {busy:?}");
    assert_eq!(proposal_records(&db).await, 0);

    sqlx::query("UPDATE api_idempotency SET lease_until = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .unwrap();
    let taken = post(&api, &path("Q-L1"), Some("crash-1"), &body).await;
    assert_eq!(taken.status, 201, "past its lease: {taken:?}");
    assert_eq!(taken.replayed, None);
    assert_eq!(proposal_records(&db).await, 1);
    assert_eq!(
        key_state(&db, "crash-1").await,
        Some(("DONE".into(), Some(201)))
    );
    let retry = post(&api, &path("Q-L1"), Some("crash-1"), &body).await;
    assert_eq!(retry, taken.replayed());

    // A lease that ran out is taken over by the same request only.
    crashed(
        "crash-2",
        fingerprint(&db, &path("Q-L1"), b"{}").await,
        "-1 second",
    )
    .await;
    let other = post(&api, &path("Q-L1"), Some("crash-2"), &body).await;
    assert_eq!(other.status, 422, "{other:?}");
    assert_eq!(proposal_records(&db).await, 1);
}
