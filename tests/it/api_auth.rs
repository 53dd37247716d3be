//! Who may call the API, against a running herald: every route refuses a request without a
//! credential (401 with a challenge), with a key lacking the route's scope (403), with a revoked or
//! expired key (401); another tenant's resources answer as missing ones; a platform key acts for
//! the tenant it names; JWTs of an identity provider are checked for signature, issuer, audience
//! and expiry; a credential over its rate gets 429; every state change is audited, append-only;
//! an exposed address needs credentials; `herald api-keys` makes, lists and revokes keys; bad
//! input is refused as a problem document and writes nothing.

use std::time::Duration;

use herald::api::keys::Scope;
use reqwest::Method;
use serde_json::{json, Value};

use crate::api_openapi::Operation;
use crate::jwt::{ec_key, jwks, TestKey, AUDIENCE, ISSUER};
use crate::support::*;

const NOBODY: &str = "0194f7a0-0000-7000-8000-000000000000";

/// Sends `method path` with `bearer` (none when `None`), a JSON body unless a GET, and a fresh
/// Idempotency-Key.
async fn call(
    api: &Api,
    method: &Method,
    path: &str,
    bearer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    call_with(api, method, path, bearer, &json!({})).await
}

/// A valid body for the operations on `route` that take one, so that a call reaches the
/// handler's lookup instead of stopping at the body's check.
fn valid_body(route: &str) -> Value {
    match route {
        "/v1/contacts/{contactId}" => json!({"displayName": "Kim", "email": "kim@other.example"}),
        "/v1/orders/{orderId}/communications/confirmation" => json!({"recipientContactId": "c-1"}),
        "/v1/fallout/{caseId}/escalations" => {
            json!({"group": "no-such-group", "level": 1, "reason": "stuck"})
        }
        "/v1/quotes/{quoteId}/revisions/{revisionNo}/communications/proposal" => {
            json!({"artifactId": "doc-1", "recipientContactId": "c-1"})
        }
        _ => json!({}),
    }
}

async fn call_with(
    api: &Api,
    method: &Method,
    path: &str,
    bearer: Option<&str>,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = api
        .http
        .request(method.clone(), api.url(path))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if method != Method::GET {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn sha256(key: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).to_vec()
}

fn problem_type(body: &Value) -> &str {
    body["type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('#')
        .next()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_credential_with_its_scope_and_refuses_revoked_and_expired_keys() {
    let db = TestDb::create().await;
    let (_herald, api) = Api::start(&db, "smtp://127.0.0.1:9", &[]).await;
    let revoked = api_key(&db.pool, Some("acme"), &Scope::ALL).await;
    let expired = api_key(&db.pool, Some("acme"), &Scope::ALL).await;
    sqlx::query("UPDATE api_key SET revoked_at = now() WHERE secret_hash = $1")
        .bind(sha256(&revoked))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE api_key SET expires_at = now() - interval '1 second' WHERE secret_hash = $1",
    )
    .bind(sha256(&expired))
    .execute(&db.pool)
    .await
    .unwrap();
    // Every operation of the API's document but the public ones.
    let operations: Vec<Operation> = crate::api_openapi::operations()
        .into_iter()
        .filter(|o| o.scope.is_some())
        .collect();
    assert!(operations.len() >= 20, "{operations:?}");
    for route in operations {
        let at = format!("{} {}", route.method, route.path);
        let (method, path) = (&route.method, route.path.as_str());
        let (status, headers, body) = call(&api, method, path, None).await;
        assert_eq!(status, 401, "{at}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json", "{at}");
        assert_eq!(
            headers["www-authenticate"], "Bearer realm=\"herald\"",
            "{at}"
        );
        assert_eq!(problem_type(&body), "unauthorized", "{at}");
        for (key, what) in [(&revoked, "revoked"), (&expired, "expired")] {
            let (status, headers, body) = call(&api, method, path, Some(key)).await;
            assert_eq!(status, 401, "{at} with a {what} key: {body}");
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .contains("error=\"invalid_token\""),
                "{at}"
            );
            assert!(
                body["detail"].as_str().unwrap().contains(what),
                "{at}: {body}"
            );
        }
        let (status, _, body) = call(&api, method, path, Some("herald_test_not-a-key")).await;
        assert_eq!(status, 401, "{at} with an unknown key: {body}");
        // A key with every scope but the one the route needs (a tenant key, for a platform route).
        let others: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| Some(*s) != route.scope)
            .collect();
        let lacking = api_key(&db.pool, Some("acme"), &others).await;
        let (status, headers, body) = call(&api, method, path, Some(&lacking)).await;
        assert_eq!(status, 403, "{at} without its scope: {body}");
        assert_eq!(problem_type(&body), "forbidden", "{at}");
        if let Some(scope) = route.scope {
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .contains(&format!("scope=\"{scope}\"")),
                "{at}"
            );
        }
    }
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await
            + db.scalar_i64("SELECT count(*) FROM contact").await
            + db.scalar_i64("SELECT count(*) FROM webhook_subscription")
                .await,
        0,
        "no refused request wrote anything"
    );
}

/// Everything of a problem document but its `instance` (which names the occurrence).
fn without_instance(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("instance");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_resources_answer_as_missing_ones_and_platform_keys_name_their_tenant() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-1", "Cara", "cara@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let (status, body) = api
        .post(
            "/v1/events",
            json!({"eventId": "e-1", "eventType": "OrderCreated", "occurredAt": "2026-11-26T10:00:00Z",
                   "orderId": "O-1", "data": {"orderNumber": "O-1", "customerContactId": "c-1"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["communicationIds"][0].as_str().unwrap().to_string();
    let (status, subscription) = api
        .post(
            "/v1/webhooks/subscriptions",
            json!({"url": "http://127.0.0.1:9/acme", "eventTypes": ["quote.accepted"]}),
        )
        .await;
    assert_eq!(status, 201, "{subscription}");
    let sid = subscription["subscriptionId"].as_str().unwrap().to_string();

    let before = db
        .scalar_i64("SELECT count(*) FROM communication_record WHERE tenant_id = 'acme'")
        .await;
    let (_, subscription_before) = api.get(&format!("/v1/webhooks/subscriptions/{sid}")).await;

    // Every operation of the document that names a resource, with acme's resources in its path,
    // called by another tenant, answers exactly as it does for resources that do not exist.
    let globex = api.as_tenant("globex").await;
    let acme = crate::api_openapi::operations_with(|route, name| {
        Some(match name {
            "id" if route.starts_with("/v1/webhooks/subscriptions/") => sid.clone(),
            // A notification's id is its communication's.
            "id" => id.clone(),
            "orderId" | "quoteId" => "O-1".to_string(),
            "contactId" => "c-1".to_string(),
            "recipientRef" => "contact:c-1".to_string(),
            "revisionNo" => "1".to_string(),
            "caseId" => "FC-1".to_string(),
            "addressHash" => "0".repeat(64),
            "domain" => "customer.example".to_string(),
            _ => return None,
        })
    });
    let nobody = crate::api_openapi::operations();
    let mut compared = 0;
    for theirs in acme
        .iter()
        .filter(|o| o.scope.is_some() && o.route.contains('{'))
    {
        let missing = nobody
            .iter()
            .find(|o| o.method == theirs.method && o.route == theirs.route)
            .unwrap();
        let at = format!("{} {}", theirs.method, theirs.path);
        let sent = valid_body(&theirs.route);
        let (status, _, body) = call_with(
            &globex,
            &theirs.method,
            &theirs.path,
            Some(&globex.key),
            &sent,
        )
        .await;
        let (missing_status, _, missing_body) = call_with(
            &globex,
            &missing.method,
            &missing.path,
            Some(&globex.key),
            &sent,
        )
        .await;
        assert_ne!(status, 400, "{at}: the call must reach the lookup: {body}");
        assert_eq!(status, missing_status, "{at}: {body} / {missing_body}");
        if status == 404 {
            assert_eq!(
                without_instance(body.clone()),
                without_instance(missing_body),
                "{at}"
            );
        }
        let text = body.to_string();
        for secret in [id.as_str(), sid.as_str(), "acme", "cara@", "Cara"] {
            assert!(!text.contains(secret), "{at} shows '{secret}': {text}");
        }
        compared += 1;
    }
    assert!(compared >= 12, "{compared} operations compared");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record WHERE tenant_id = 'acme'")
            .await,
        before,
        "another tenant's calls made nothing of acme's"
    );
    let (_, subscription_after) = api.get(&format!("/v1/webhooks/subscriptions/{sid}")).await;
    assert_eq!(
        subscription_before, subscription_after,
        "its secret was not rotated"
    );
    let (status, own) = api.get(&format!("/v1/communications/{id}")).await;
    assert_eq!((status, own["tenantId"].as_str()), (200, Some("acme")));

    // A platform key reads the tenant it names, and must name one.
    let ops = api.as_platform(&[Scope::Read]).await;
    let (status, body) = ops.get(&format!("/v1/communications/{id}")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["pointer"], "header:Herald-Tenant",
        "{body}"
    );
    let named = |tenant: &str| {
        ops.request(Method::GET, &format!("/v1/communications/{id}"))
            .header("Herald-Tenant", tenant)
            .send()
    };
    assert_eq!(named("acme").await.unwrap().status().as_u16(), 200);
    assert_eq!(named("globex").await.unwrap().status().as_u16(), 404);
    assert_eq!(named("not a tenant").await.unwrap().status().as_u16(), 400);
    // A tenant key cannot act for another tenant.
    let response = api
        .request(Method::GET, &format!("/v1/communications/{id}"))
        .header("Herald-Tenant", "globex")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

fn jwt(key: &TestKey, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_of_the_identity_provider_are_checked_and_carry_tenant_and_scopes() {
    let db = TestDb::create().await;
    let idp = ec_key("idp-1");
    let impostor = ec_key("idp-1");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&idp]).to_string()).unwrap();
    let (_herald, api) = Api::start(
        &db,
        "smtp://127.0.0.1:9",
        &[
            ("HERALD_API__JWT__JWKS", file.to_str().unwrap()),
            ("HERALD_API__JWT__ISSUER", ISSUER),
            ("HERALD_API__JWT__AUDIENCE", AUDIENCE),
        ],
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "crm-service", "tenant": "acme",
                                "scope": "openid send read", "iat": now, "exp": now + 300});
        edit(&mut claims);
        claims
    };
    let inbox = |token: String| {
        api.http
            .get(api.url("/v1/inbox/user:kim"))
            .bearer_auth(token)
            .send()
    };
    let good = inbox(jwt(&idp, claims(&|_| {}))).await.unwrap();
    assert_eq!(good.status().as_u16(), 200);
    for (what, token) in [
        ("another key's signature", jwt(&impostor, claims(&|_| {}))),
        (
            "another issuer",
            jwt(&idp, claims(&|c| c["iss"] = json!("https://evil.example"))),
        ),
        (
            "another audience",
            jwt(&idp, claims(&|c| c["aud"] = json!("billing"))),
        ),
        (
            "an expired token",
            jwt(&idp, claims(&|c| c["exp"] = json!(now - 600))),
        ),
        (
            "a token not valid yet",
            jwt(&idp, claims(&|c| c["nbf"] = json!(now + 600))),
        ),
        (
            "no tenant",
            jwt(
                &idp,
                claims(&|c| {
                    c.as_object_mut().unwrap().remove("tenant");
                }),
            ),
        ),
    ] {
        let response = inbox(token).await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{what}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{what}"
        );
    }
    // The token's scopes are herald's scopes: `send read` does not operate.
    let response = api
        .http
        .put(api.url("/v1/contacts/c-1"))
        .bearer_auth(jwt(&idp, claims(&|_| {})))
        .json(&json!({"displayName": "Kim"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // A state change by a JWT is audited under its subject.
    let response = api
        .http
        .post(api.url("/v1/events"))
        .bearer_auth(jwt(&idp, claims(&|_| {})))
        .header("Idempotency-Key", "jwt-1")
        .json(&json!({"eventId": "e-j", "eventType": "Nothing", "occurredAt": "2026-11-26T10:00:00Z"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let audited: (String, Option<String>, String, i32) = sqlx::query_as(
        "SELECT credential_kind, subject, tenant_id, status FROM api_audit WHERE idempotency_key = 'jwt-1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        audited,
        (
            "JWT".into(),
            Some("crm-service".into()),
            "acme".into(),
            i32::from(status)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_over_its_rate_waits_and_others_go_on() {
    let db = TestDb::create().await;
    let (_herald, api) = Api::start(
        &db,
        "smtp://127.0.0.1:9",
        &[
            ("HERALD_API__RATE_LIMIT__PER_SECOND", "1"),
            ("HERALD_API__RATE_LIMIT__BURST", "3"),
        ],
    )
    .await;
    let other = api.as_tenant("globex").await;
    let path = "/v1/inbox/user:kim";
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(api.request(Method::GET, path).send().await.unwrap());
    }
    let last = statuses.pop().unwrap();
    assert!(statuses.iter().all(|r| r.status().as_u16() == 200));
    assert_eq!(last.status().as_u16(), 429);
    let retry: u64 = last.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(last.json::<Value>().await.unwrap()["status"], 429);
    assert_eq!(
        other.get(path).await.0,
        200,
        "another credential is not held back"
    );
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(api.get(path).await.0, 200, "after Retry-After it may go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_are_audited_append_only_and_reads_are_not() {
    let db = TestDb::create().await;
    let (_herald, api) = Api::start(&db, "smtp://127.0.0.1:9", &[]).await;
    let response = api
        .request(Method::PUT, "/v1/contacts/c-a")
        .json(&json!({"displayName": "Ada", "email": "ada@customer.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let refused = api
        .http
        .post(api.url("/v1/contacts/import"))
        .bearer_auth(&api.key)
        .header("Idempotency-Key", "audit-1")
        .json(&json!([{"displayName": "no id"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    api.get("/v1/inbox/user:ada").await;
    let rows: Vec<(String, String, String, Option<String>, i32, bool)> = sqlx::query_as(
        "SELECT method, route, tenant_id, target_id, status, key_id IS NOT NULL FROM api_audit ORDER BY audit_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "PUT".into(),
                "/v1/contacts/{contactId}".into(),
                "acme".into(),
                Some("c-a".into()),
                200,
                true
            ),
            (
                "POST".into(),
                "/v1/contacts/import".into(),
                "acme".into(),
                None,
                400,
                true
            ),
        ]
    );
    let key: Option<String> = sqlx::query_scalar(
        "SELECT idempotency_key FROM api_audit WHERE route = '/v1/contacts/import'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(key.as_deref(), Some("audit-1"));
    for change in [
        "UPDATE api_audit SET status = 201",
        "DELETE FROM api_audit",
        "TRUNCATE api_audit",
    ] {
        let err = sqlx::query(change).execute(&db.pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{change}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exposed_address_needs_a_usable_credential() {
    let db = TestDb::create().await;
    let exposed = [("HERALD_API__LISTEN", "0.0.0.0:0")];
    let only_api = herald::runtime::Components {
        workers: false,
        delivery: false,
        relay: false,
        api: true,
    };
    let settings = test_settings(&db, "smtp://127.0.0.1:9", &new_lane(), &exposed);
    let refused = herald::runtime::start(
        settings,
        only_api,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .err()
    .expect("no credential: no start on 0.0.0.0");
    assert!(
        refused
            .to_string()
            .contains("refusing to listen on 0.0.0.0"),
        "{refused}"
    );
    // A revoked key is no credential either; a usable one is.
    api_key(&db.pool, Some("acme"), &[Scope::Read]).await;
    sqlx::query("UPDATE api_key SET revoked_at = now()")
        .execute(&db.pool)
        .await
        .unwrap();
    let settings = test_settings(&db, "smtp://127.0.0.1:9", &new_lane(), &exposed);
    assert!(herald::runtime::start(
        settings,
        only_api,
        tokio_util::sync::CancellationToken::new()
    )
    .await
    .is_err());
    api_key(&db.pool, Some("acme"), &[Scope::Read]).await;
    let settings = test_settings(&db, "smtp://127.0.0.1:9", &new_lane(), &exposed);
    let herald = spawn_herald(settings, only_api).await;
    assert!(!herald.api_address.unwrap().ip().is_loopback());
    herald.stop().await;
    // On loopback herald starts without any credential, and says so.
    let fresh = TestDb::create().await;
    let settings = test_settings(&fresh, "smtp://127.0.0.1:9", &new_lane(), &[]);
    let herald = spawn_herald(settings, only_api).await;
    assert!(
        herald.log_text().contains("no API credentials exist"),
        "{}",
        herald.log_text()
    );
    herald.stop().await;
}

fn herald_cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(herald_bin())
        .args(args)
        .env("HERALD_DATABASE_URL", &db.url)
        .env("HERALD_API__KEY_ENVIRONMENT", "test")
        .env("HERALD_LOG__FILTER", "warn")
        .output()
        .expect("run herald")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_made_shown_once_listed_without_secret_and_revoked_at_once() {
    let db = TestDb::create().await;
    let made = herald_cli(
        &db,
        &[
            "api-keys",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "send,read",
            "--name",
            "CRM",
        ],
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let stdout = String::from_utf8(made.stdout).unwrap();
    let key = stdout.trim_end_matches('\n');
    assert_eq!(
        stdout.lines().count(),
        1,
        "the key alone on stdout: {stdout}"
    );
    let secret = key
        .strip_prefix("herald_test_")
        .expect("herald_<env>_ prefix");
    assert!(
        secret.len() >= 43
            && secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
        "{key}"
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_hash FROM api_key")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, sha256(key), "only the key's SHA-256 is kept");
    let platform = herald_cli(
        &db,
        &[
            "api-keys",
            "create",
            "--platform",
            "--scope",
            "read",
            "--expires-in",
            "1h",
        ],
    );
    assert!(platform.status.success());
    let refused = herald_cli(
        &db,
        &[
            "api-keys",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "send,write",
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("'write' is not a scope"));
    let neither = herald_cli(&db, &["api-keys", "create", "--scope", "read"]);
    assert!(
        !neither.status.success(),
        "a key needs --tenant or --platform"
    );

    let listed = herald_cli(&db, &["api-keys", "list", "--tenant", "acme", "--json"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        !listed.contains(secret) && !listed.contains(&secret[4..]),
        "no secret in the list"
    );
    let entry: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(entry["name"], "CRM");
    assert_eq!(entry["scopes"], json!(["send", "read"]));
    assert_eq!(
        herald_cli(&db, &["api-keys", "list"])
            .stdout
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        2
    );

    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let inbox = || {
        api.http
            .get(api.url("/v1/inbox/user:x"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(inbox().await.unwrap().status().as_u16(), 200);
    let used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM api_key WHERE name = 'CRM'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(used.is_some(), "its use is noted");
    let revoked = herald_cli(
        &db,
        &["api-keys", "revoke", entry["keyId"].as_str().unwrap()],
    );
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(
        inbox().await.unwrap().status().as_u16(),
        401,
        "revoked: refused at once"
    );
    let unknown = herald_cli(&db, &["api-keys", "revoke", NOBODY]);
    assert!(!unknown.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_problem_document_and_writes_nothing() {
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-B").await;
    let (_herald, api) = Api::start(
        &db,
        "smtp://127.0.0.1:9",
        &[("HERALD_API__MAX_BODY_BYTES", "4096")],
    )
    .await;
    let path = "/v1/quotes/Q-B/revisions/4/communications/proposal";
    let good = json!({"artifactId": "doc-Q-B", "recipientEmail": "b@customer.example"});
    let post = |body: reqwest::Body, content_type: &str| {
        api.request(Method::POST, path)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(&str, reqwest::Body, &str, u16, &str)> = vec![
        ("malformed JSON", "{\"artifactId\":".into(), "application/json", 400, "invalid-request"),
        ("a text body", good.to_string().into(), "text/plain", 415, "unsupported-media-type"),
        ("a body over the limit", format!("{{\"artifactId\":\"{}\"}}", "x".repeat(5000)).into(), "application/json", 413, "payload-too-large"),
        ("a tenantId", json!({"tenantId": "globex", "artifactId": "doc-Q-B", "recipientEmail": "b@customer.example"}).to_string().into(), "application/json", 400, "invalid-request"),
        ("a wrong type", json!({"artifactId": 7, "recipientEmail": "b@customer.example"}).to_string().into(), "application/json", 400, "invalid-request"),
        ("a control character in the note", json!({"artifactId": "doc-Q-B", "recipientEmail": "b@customer.example", "messageNote": "a\u{1b}[31m"}).to_string().into(), "application/json", 400, "invalid-request"),
        ("an over-long note", json!({"artifactId": "doc-Q-B", "recipientEmail": "b@customer.example", "messageNote": "n".repeat(2001)}).to_string().into(), "application/json", 400, "invalid-request"),
    ];
    for (what, body, content_type, status, kind) in cases {
        let response = post(body, content_type).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem_type(&problem), kind, "{what}: {problem}");
        assert_eq!(problem["status"], status, "{what}");
        assert!(
            problem["instance"]
                .as_str()
                .unwrap()
                .starts_with("urn:uuid:"),
            "{what}"
        );
    }
    let bad_revision = api
        .post(
            "/v1/quotes/Q-B/revisions/four/communications/proposal",
            good.clone(),
        )
        .await;
    assert_eq!(bad_revision.0, 400, "{}", bad_revision.1);
    let bad_id = api.get("/v1/communications/not-a-uuid").await;
    assert_eq!(
        (bad_id.0, bad_id.1["errors"][0]["pointer"].as_str()),
        (400, Some("path:id"))
    );
    // What the document refuses is refused by herald, named by where it is (and HEAD as GET).
    for (path, pointer) in [
        ("/v1/communications?limit=201", "query:limit"),
        ("/v1/communications?orderId=%20O-1", "query:orderId"),
        ("/v1/communications?status=LOST", "query:status"),
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(
            (status, body["errors"][0]["pointer"].as_str()),
            (400, Some(pointer)),
            "{path}: {body}"
        );
        let head = api.request(Method::HEAD, path).send().await.unwrap();
        assert_eq!(head.status().as_u16(), 400, "HEAD {path}");
    }
    let (status, body) = api
        .post(
            "/v1/orders/O-1/communications/confirmation",
            json!({"orderNumber": "", "recipientEmail": "kim@customer.example"}),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["pointer"].as_str()),
        (400, Some("/orderNumber")),
        "{body}"
    );
    assert!(!body.to_string().contains("kim@"), "{body}");
    let (status, body) = api.send(Method::DELETE, "/v1/events", Value::Null).await;
    assert_eq!((status, problem_type(&body)), (405, "method-not-allowed"));
    let (status, body) = api.get("/v1/nothing-here").await;
    assert_eq!((status, problem_type(&body)), (404, "not-found"));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        0
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM api_idempotency").await,
        0,
        "no answer kept"
    );
    // The same request, corrected, goes through.
    assert_eq!(api.post(path, good).await.0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_answer_is_replayed_to_its_own_credential_only_and_kept_sealed() {
    let db = TestDb::create().await;
    let (_herald, api) = Api::start(&db, "smtp://127.0.0.1:9", &[]).await;
    let create = |key: &str| {
        api.http
            .post(api.url("/v1/webhooks/subscriptions"))
            .bearer_auth(key)
            .header("Idempotency-Key", "sub-1")
            .json(&json!({"url": "http://127.0.0.1:9/hooks", "eventTypes": ["quote.accepted"]}))
            .send()
    };
    let first = create(&api.key).await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    let secret = first["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    // The same credential gets the answer again; another one of the tenant (here of every
    // scope, so that only the credential differs) does not: the secret is shown to its owner.
    let again = create(&api.key).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let colleague = api_key(&db.pool, Some("acme"), &Scope::ALL).await;
    let other = create(&colleague).await.unwrap();
    assert_eq!(other.status().as_u16(), 422);
    assert!(!other.text().await.unwrap().contains(&secret));
    // The kept answer is sealed: no secret in the table.
    let bodies: Vec<(Vec<u8>, Option<String>)> =
        sqlx::query_as("SELECT response_body, response_key_id FROM api_idempotency")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].1.is_some(), "sealed under a key id");
    assert!(!String::from_utf8_lossy(&bodies[0].0).contains("whsec_"));
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM webhook_subscription")
            .await,
        1
    );
}
