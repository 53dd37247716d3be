//! `GET /metrics` of a herald process (`herald run`, so that its recorder is its own) after a
//! scenario through the API: the communications by status, the attempts by status and the API
//! requests by route, as scraped, equal what the ledger and the test counted.

use std::collections::BTreeMap;
use std::time::Duration;

use herald::api::keys::Scope;
use serde_json::json;

use crate::health::api_address;
use crate::support::*;

/// The samples of `metric` in a Prometheus text exposition: labels → value.
fn samples(text: &str, metric: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let (name, labels) = match name_labels.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (name_labels, ""),
            };
            (name == metric).then(|| (labels.to_string(), value.parse().unwrap()))
        })
        .collect()
}

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn value(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, metric)
        .into_iter()
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_values_equal_the_ledger_and_the_requests_made() {
    let db = TestDb::create().await;
    for n in 1..=3 {
        db.add_contact(
            "acme",
            &format!("c-{n}"),
            "Cara",
            &format!("cara{n}@customer.example"),
        )
        .await;
    }
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let herald = Herald::start(&db, &sink.url(), &new_lane(), &[]);
    let address = api_address(&herald).await;
    let key = api_key(&db.pool, Some("acme"), &[Scope::Send, Scope::Operate]).await;
    let http = reqwest::Client::new();
    let post = |path: String, body: serde_json::Value| {
        http.post(format!("http://{address}{path}"))
            .bearer_auth(&key)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body)
            .send()
    };
    // One address suppressed: its confirmation is SUPPRESSED, the others go out.
    let suppressed = post(
        "/v1/suppressions".into(),
        json!({"email": "cara3@customer.example", "reason": "complained"}),
    )
    .await
    .unwrap();
    assert_eq!(suppressed.status().as_u16(), 201);
    for n in 1..=3 {
        let made = post(
            format!("/v1/orders/O-{n}/communications/confirmation"),
            json!({"recipientContactId": format!("c-{n}")}),
        )
        .await
        .unwrap();
        assert_eq!(made.status().as_u16(), 201);
    }
    sink.wait_for(2, Duration::from_secs(30)).await;
    wait_for("both sent", Duration::from_secs(30), || {
        let pool = db.pool.clone();
        async move {
            let sent: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM communication_record WHERE status = 'SENT'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (sent == 2).then_some(())
        }
    })
    .await;

    // For operations staff: a tenant's key is refused, a platform key of `read` scrapes.
    let tenant_scrape = http
        .get(format!("http://{address}/metrics"))
        .bearer_auth(api_key(&db.pool, Some("acme"), &Scope::ALL).await)
        .send()
        .await
        .unwrap();
    assert_eq!(tenant_scrape.status().as_u16(), 403);
    let scraped = http
        .get(format!("http://{address}/metrics"))
        .bearer_auth(api_key(&db.pool, None, &[Scope::Read]).await)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status().as_u16(), 200);
    assert!(scraped.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = scraped.text().await.unwrap();

    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM communication_record GROUP BY 1 ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(by_status.len() >= 2, "{by_status:?}");
    for (status, count) in &by_status {
        assert_eq!(
            value(&text, "herald_communications", &[("status", status)]),
            *count as f64,
            "{status}"
        );
    }
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM communication_delivery_attempt WHERE status = 'ACCEPTED'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(
        value(
            &text,
            "herald_attempts_total",
            &[("status", "ACCEPTED"), ("channel", "EMAIL")]
        ),
        attempts as f64
    );
    let route = "/v1/orders/{orderId}/communications/confirmation";
    assert_eq!(
        value(
            &text,
            "herald_api_requests_total",
            &[("route", route), ("status", "201")]
        ),
        3.0
    );
    assert_eq!(value(&text, "herald_queue_depth", &[]), 0.0);
    // Bounded labels: no tenant, order, contact or address in any of them.
    for secret in ["acme", "O-1", "c-1", "cara", "customer.example"] {
        assert!(!text.contains(secret), "/metrics names '{secret}'");
    }
    assert!(text.contains("herald_delivery_latency_seconds_bucket"));
    drop(herald);
}
