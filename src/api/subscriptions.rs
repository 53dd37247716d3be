//! The API of the webhook and in-app channels: subscriptions (create, read, rotate the secret,
//! enable again), replay of a dead-lettered webhook, and inboxes.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::delivery::endpoints::SubscriptionError;
use crate::delivery::webhook::EndpointGuard;
use crate::ledger::replay::ReplayError;
use crate::ledger::CommunicationId;

use super::{authorize, ApiError, ApiState};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantQuery {
    tenant_id: Option<String>,
    #[serde(default)]
    unread: bool,
    limit: Option<i64>,
}

/// An authorized request about one tenant (`?tenantId=`): the bearer token is checked first,
/// then the tenant is required.
pub struct TenantScope {
    tenant: String,
    unread: bool,
    limit: Option<i64>,
}

impl axum::extract::FromRequestParts<ApiState> for TenantScope {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        authorize(state, &parts.headers)?;
        let Query(query) = Query::<TenantQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad(vec![format!("query: {e}")]))?;
        let tenant = query
            .tenant_id
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ApiError::bad(vec!["tenantId: the query needs ?tenantId=".into()]))?;
        Ok(TenantScope {
            tenant,
            unread: query.unread,
            limit: query.limit,
        })
    }
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Invalid(m) => ApiError::bad(vec![m]),
            SubscriptionError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            SubscriptionError::Database(e) => ApiError::unavailable(e),
            SubscriptionError::Key(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionInput {
    tenant_id: String,
    url: String,
    event_types: Vec<String>,
    /// A `whsec_` secret of the receiver's; herald makes one when absent.
    #[serde(default)]
    secret: Option<String>,
    /// At most this many messages a second to the endpoint, across all senders.
    #[serde(default)]
    rate_limit_per_second: Option<i32>,
}

pub async fn post_subscription(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(input): Json<SubscriptionInput>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let mut problems = Vec::new();
    if input.tenant_id.trim().is_empty() {
        problems.push("tenantId: must not be empty".to_string());
    }
    let guard = EndpointGuard::new(&state.webhooks);
    if let Err(refused) = guard.check(&input.url).await {
        problems.push(format!("url: {refused}"));
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    let (subscription, secret) = state
        .intake
        .endpoints
        .create(
            &input.tenant_id,
            &input.url,
            &input.event_types,
            input.secret,
            input.rate_limit_per_second,
        )
        .await?;
    tracing::info!(subscriptionId = %subscription.subscription_id, tenantId = %subscription.tenant_id, "webhook subscription created");
    let mut body = serde_json::to_value(&subscription).map_err(ApiError::unavailable)?;
    // Shown this once: herald never returns it again.
    body["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn get_subscription(
    State(state): State<ApiState>,
    scope: TenantScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let subscription = state.intake.endpoints.get(&scope.tenant, &id).await?;
    Ok(Json(subscription).into_response())
}

pub async fn rotate_subscription(
    State(state): State<ApiState>,
    scope: TenantScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let grace = state.webhooks.rotation_grace;
    let secret = state
        .intake
        .endpoints
        .rotate(&scope.tenant, &id, grace)
        .await?;
    tracing::info!(subscriptionId = %id, "webhook secret rotated");
    Ok(Json(json!({
        "subscriptionId": id,
        "secret": secret,
        "previousSecretValidForSeconds": grace.as_secs(),
    }))
    .into_response())
}

pub async fn enable_subscription(
    State(state): State<ApiState>,
    scope: TenantScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let subscription = state.intake.endpoints.enable(&scope.tenant, &id).await?;
    tracing::info!(subscriptionId = %id, "webhook endpoint enabled");
    Ok(Json(subscription).into_response())
}

/// Replays a dead-lettered webhook: a new record linked to the original (same `webhook-id`).
pub async fn replay(
    State(state): State<ApiState>,
    headers: HeaderMap,
    scope: TenantScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant_id = scope.tenant.as_str();
    let id: CommunicationId = id
        .parse()
        .map_err(|_| ApiError::bad(vec![format!("'{id}' is not a communication id")]))?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("replay:{id}:{}", k.trim()));
    match state.intake.ledger.replay(tenant_id, id, key).await {
        Ok(outcome) => {
            tracing::info!(communicationId = %outcome.communication_id, replayOf = %id, created = outcome.created, "webhook replay requested");
            Ok((
                if outcome.created {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                },
                Json(json!({
                    "communicationId": outcome.communication_id,
                    "replayOf": id,
                    "status": outcome.status,
                    "created": outcome.created,
                })),
            )
                .into_response())
        }
        Err(ReplayError::NotFound(id)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no communication {id}"),
        )),
        Err(ReplayError::Refused(m)) => Err(ApiError::new(StatusCode::CONFLICT, m)),
        Err(ReplayError::Ledger(e)) => Err(ApiError::unavailable(e)),
    }
}

pub async fn get_inbox(
    State(state): State<ApiState>,
    scope: TenantScope,
    Path(recipient_ref): Path<String>,
) -> Result<Response, ApiError> {
    let limit = scope.limit.unwrap_or(50).clamp(1, 500);
    let notifications = state
        .intake
        .ledger
        .inbox(&scope.tenant, &recipient_ref, scope.unread, limit)
        .await
        .map_err(ApiError::unavailable)?;
    let unread = notifications.iter().filter(|n| n.read_at.is_none()).count();
    Ok(Json(json!({
        "recipientRef": recipient_ref,
        "unread": unread,
        "notifications": notifications,
    }))
    .into_response())
}

pub async fn read_notification(
    State(state): State<ApiState>,
    scope: TenantScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: uuid::Uuid = id
        .parse()
        .map_err(|_| ApiError::bad(vec![format!("'{id}' is not a notification id")]))?;
    state
        .intake
        .ledger
        .mark_read(&scope.tenant, id)
        .await
        .map_err(ApiError::unavailable)?
        .map(|n| Json(n).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no notification {id}")))
}
