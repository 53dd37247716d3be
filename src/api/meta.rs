//! What the API says about itself: its health and its OpenAPI document.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

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
