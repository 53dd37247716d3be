//! What the API says about itself: its health (`/health`, and `/health/live` and
//! `/health/ready` in the shape container platforms probe) and its OpenAPI document.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;

/// The answer of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` while herald answers.
    #[schema(example = "ok")]
    status: HealthStatus,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// `GET /health`: herald answers (no credential needed).
#[utoipa::path(
    get,
    path = "/health",
    tag = "meta",
    operation_id = "getHealth",
    responses((status = 200, description = "herald answers", body = Health))
)]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
    })
}

/// `GET /health/live`: the process runs (no credential needed). A platform restarts herald when
/// this fails; it never depends on the database or the engine.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "meta",
    operation_id = "getLiveness",
    responses((status = 200, description = "The process runs", body = Health))
)]
pub async fn live() -> Json<Health> {
    health().await
}

/// Whether herald can do its work now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub status: ReadinessStatus,
    /// Every check, in a fixed order: `database`, `migrations`, `engine`, `listeners`.
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadinessStatus {
    Ready,
    Unready,
}

/// One check of readiness.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `database`, `migrations`, `engine` or `listeners`.
    #[schema(example = "database")]
    pub name: &'static str,
    pub status: CheckStatus,
    /// What failed, in words that hold no address or credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Up,
    Down,
}

/// How long one check may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

fn check(name: &'static str, failure: Option<String>) -> Check {
    Check {
        name,
        status: if failure.is_some() {
            CheckStatus::Down
        } else {
            CheckStatus::Up
        },
        detail: failure,
    }
}

/// `GET /health/ready`: herald can do its work (no credential needed): the database answers,
/// its schema has every migration of this build, the engine answers, and every LISTEN
/// connection of this process is up. 503 with the failing checks otherwise.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "meta",
    operation_id = "getReadiness",
    responses(
        (status = 200, description = "herald is ready", body = Readiness),
        (status = 503, description = "A check failed: the answer names it", body = Readiness),
    )
)]
pub async fn ready(State(state): State<ApiState>) -> Response {
    let ledger = &state.intake.ledger;
    let timed = |what: &str| format!("no answer within {} s ({what})", CHECK_TIMEOUT.as_secs());
    let database = async {
        match tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&state.db)).await
        {
            Ok(Ok(_)) => None,
            Ok(Err(_)) => Some("the database cannot be reached".to_string()),
            Err(_) => Some(timed("database")),
        }
    };
    let migrations = async {
        match tokio::time::timeout(CHECK_TIMEOUT, ledger.pending_migrations()).await {
            Ok(Ok(pending)) if pending.is_empty() => None,
            Ok(Ok(pending)) => Some(format!(
                "{} migration(s) of this build not applied (first {}): run herald migrate",
                pending.len(),
                pending[0]
            )),
            Ok(Err(_)) => Some("the schema's migrations cannot be read".to_string()),
            Err(_) => Some(timed("migrations")),
        }
    };
    let engine = async {
        match tokio::time::timeout(CHECK_TIMEOUT, state.intake.camunda.get_json("/version")).await {
            Ok(Ok(_)) => None,
            Ok(Err(_)) => Some("the engine's REST API does not answer".to_string()),
            Err(_) => Some(timed("engine")),
        }
    };
    let (database, migrations, engine) = tokio::join!(database, migrations, engine);
    let deaf: Vec<&str> = crate::ledger::wakeup::listeners()
        .into_iter()
        .filter(|(_, down)| *down)
        .map(|(channel, _)| channel)
        .collect();
    let listeners =
        (!deaf.is_empty()).then(|| format!("not listening (polling instead): {}", deaf.join(", ")));
    let checks = vec![
        check("database", database),
        check("migrations", migrations),
        check("engine", engine),
        check("listeners", listeners),
    ];
    let ready = checks.iter().all(|c| c.status == CheckStatus::Up);
    let answer = Readiness {
        status: if ready {
            ReadinessStatus::Ready
        } else {
            ReadinessStatus::Unready
        },
        checks,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(answer)).into_response()
}

/// `GET /metrics`: herald's metrics in Prometheus' text format, for a platform credential of
/// `read` (operations staff: the counts span tenants, though no label names a tenant, a
/// recipient or an id). The ledger's gauges are read at most every 10 s, however often it is
/// scraped.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    operation_id = "getMetrics",
    security(("apiKey" = ["read"]), ("jwt" = ["read"])),
    responses(
        (status = 200, description = "Every metric, its name starting with herald_", content_type = "text/plain", body = String),
        (status = 503, description = "The ledger cannot be read for its gauges"),
    )
)]
pub async fn metrics(
    State(state): State<ApiState>,
    _caller: super::auth::PlatformCaller<super::auth::Read>,
) -> Response {
    static LAST: tokio::sync::Mutex<Option<(std::time::Instant, String)>> =
        tokio::sync::Mutex::const_new(None);
    let mut last = LAST.lock().await;
    if let Some((at, text)) = last.as_ref() {
        if at.elapsed() < GAUGES_EVERY {
            return ([(header::CONTENT_TYPE, METRICS_TYPE)], text.clone()).into_response();
        }
    }
    match state.intake.ledger.gauges().await {
        Ok(gauges) => {
            let text = crate::metrics::render(&gauges);
            *last = Some((std::time::Instant::now(), text.clone()));
            ([(header::CONTENT_TYPE, METRICS_TYPE)], text).into_response()
        }
        Err(err) => super::ApiError::unavailable(err).into_response(),
    }
}

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How often a scrape reads the ledger's gauges (a scrape in between gets the last text).
const GAUGES_EVERY: Duration = Duration::from_secs(10);

/// `GET /v1/openapi.json`: this API's OpenAPI document (no credential needed).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API (docs/openapi.json)", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| super::spec::to_json(&super::openapi()));
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.as_str(),
    )
}
