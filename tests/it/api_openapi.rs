//! The OpenAPI document against the real router (herald with its API on the real PostgreSQL):
//! `GET /v1/openapi.json` serves `docs/openapi.json` without a credential; every documented
//! operation is routed under its method (no credential: 401, never 404 or 405); and every
//! operation's documented scope is the one its handler's `Caller<S>` demands: a key with every
//! other scope is 403 naming that scope, a key with that scope alone passes the check.

use crate::support::*;
use herald::api::keys::Scope;
use serde_json::Value;

/// An operation of the document: its method, its path with the parameters filled in, the path
/// as the document writes it, and the scope it names (`None`: a public one).
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: reqwest::Method,
    pub path: String,
    pub route: String,
    pub scope: Option<Scope>,
}

/// Every operation of the document, each path parameter filled by `fill(route, name)`; a
/// parameter `fill` does not know fails the test (a new route needs its fixture).
pub fn operations_with(fill: impl Fn(&str, &str) -> Option<String>) -> Vec<Operation> {
    let document = serde_json::to_value(herald::api::openapi()).unwrap();
    let mut operations = Vec::new();
    for (route, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let path = route
                .split('/')
                .map(
                    |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => fill(route, name).unwrap_or_else(|| {
                            panic!("{method} {route}: no fixture fills the parameter {{{name}}}")
                        }),
                        None => segment.to_string(),
                    },
                )
                .collect::<Vec<_>>()
                .join("/");
            let scope = operation
                .get("x-herald-scope")
                .and_then(Value::as_str)
                .map(|s| s.parse::<Scope>().unwrap());
            operations.push(Operation {
                method,
                path,
                route: route.clone(),
                scope,
            });
        }
    }
    assert!(operations.len() >= 17, "{operations:?}");
    operations
}

/// Every operation of the document, its parameters filled with values that name nothing.
pub fn operations() -> Vec<Operation> {
    operations_with(|_, name| {
        Some(
            match name {
                "revisionNo" => "4",
                "id" => "0193a1f2-7c4d-7e8a-9b1c-2d3e4f5a6b7c",
                "quoteId" => "Q-scope",
                "contactId" => "c-scope",
                "recipientRef" => "contact:c-scope",
                "orderId" => "O-scope",
                "caseId" => "FC-scope",
                "addressHash" => "0000000000000000000000000000000000000000000000000000000000000000",
                "domain" => "scope.example",
                _ => return None,
            }
            .to_string(),
        )
    })
}

async fn call(api: &Api, method: &reqwest::Method, path: &str) -> reqwest::Response {
    api.request(method.clone(), path)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_document_is_served_and_every_operation_is_routed() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (herald, api) = Api::start(&db, &sink.url(), &[]).await;

    let served = api
        .http
        .get(api.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json");
    assert!(
        served.bytes().await.unwrap() == committed,
        "GET /v1/openapi.json differs from docs/openapi.json"
    );

    for Operation {
        method,
        path,
        scope,
        ..
    } in operations()
    {
        let response = api
            .http
            .request(method.clone(), api.url(&path))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        match scope {
            // No credential: the auth layer answers before anything else.
            Some(_) => {
                assert_eq!(status, 401, "{method} {path}");
                assert!(response.headers().contains_key("www-authenticate"));
            }
            // The public ones: health and the document answer, Postmark's wants its own
            // basic authentication (none is configured here); readiness may be 503 (it reads
            // the listeners of every herald this test process runs, some of them made deaf on
            // purpose by other tests).
            None => assert!(
                [200, 401, 503].contains(&status),
                "{method} {path}: {status}"
            ),
        }
    }
    herald.stop().await;
}

#[tokio::test]
async fn every_operation_demands_the_scope_its_document_names() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (herald, api) = Api::start(&db, &sink.url(), &[]).await;
    let mut checked = 0;
    for Operation {
        method,
        path,
        scope,
        ..
    } in operations()
    {
        let Some(scope) = scope else { continue };
        let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != scope).collect();
        // The provider feedback spans tenants: its callers are platform keys.
        let platform = path == "/v1/feedback/email" || path == "/metrics";
        let (without, with) = if platform {
            (
                api.as_platform(&others).await,
                api.as_platform(&[scope]).await,
            )
        } else {
            (
                Api {
                    key: api_key(&db.pool, Some(API_TENANT), &others).await,
                    ..api.clone()
                },
                Api {
                    key: api_key(&db.pool, Some(API_TENANT), &[scope]).await,
                    ..api.clone()
                },
            )
        };
        let refused = call(&without, &method, &path).await;
        assert_eq!(refused.status(), 403, "{method} {path} without '{scope}'");
        let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains(&format!("scope=\"{scope}\"")),
            "{method} {path}: {challenge}"
        );
        let allowed = call(&with, &method, &path).await;
        assert_ne!(
            allowed.status(),
            403,
            "{method} {path} with '{scope}' alone: {:?}",
            allowed.text().await
        );
        checked += 1;
    }
    assert!(checked >= 14, "{checked} operations checked");
    herald.stop().await;
}
