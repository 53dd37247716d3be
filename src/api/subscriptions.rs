//! The API of the webhook and in-app channels: subscriptions (create, read, rotate the secret,
//! enable again), replay of a dead-lettered webhook, and inboxes.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::delivery::endpoints::SubscriptionError;
use crate::delivery::webhook::EndpointGuard;
use crate::ledger::replay::ReplayError;
use crate::ledger::CommunicationId;

use super::auth::{Caller, Operate, Read};
use super::history::communication_id;
use super::input::{check_texts, Body, PathOf, QueryOf, Text};
use super::problem::{ApiError, ProblemKind};
use super::ApiState;

/// The query of an inbox: only unread ones, and how many.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboxQuery {
    #[serde(default)]
    unread: bool,
    limit: Option<i64>,
}

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Invalid(m) => ApiError::bad(vec![m]),
            SubscriptionError::NotFound(_) => ApiError::not_found("no such webhook subscription"),
            SubscriptionError::Database(e) => ApiError::unavailable(e),
            SubscriptionError::Key(_) => ApiError::new(ProblemKind::Unavailable, e.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionInput {
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
    caller: Caller<Operate>,
    Body(input): Body<SubscriptionInput>,
) -> Result<Response, ApiError> {
    let mut problems = check_texts([("url", Some(input.url.as_str()), Text::Url)]);
    problems.extend(
        input.event_types.iter().enumerate().filter_map(|(n, t)| {
            super::input::check_text(&format!("eventTypes[{n}]"), t, Text::Id)
        }),
    );
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
            &caller.tenant,
            &input.url,
            &input.event_types,
            input.secret,
            input.rate_limit_per_second,
        )
        .await?;
    tracing::info!(subscriptionId = %subscription.subscription_id, tenantId = %subscription.tenant_id, "webhook subscription created");
    let mut body = serde_json::to_value(&subscription).map_err(ApiError::internal)?;
    // Shown this once: herald never returns it again.
    body["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn get_subscription(
    State(state): State<ApiState>,
    caller: Caller<Read>,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let subscription = state.intake.endpoints.get(&caller.tenant, &id).await?;
    Ok(Json(subscription).into_response())
}

pub async fn rotate_subscription(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let grace = state.webhooks.rotation_grace;
    let secret = state
        .intake
        .endpoints
        .rotate(&caller.tenant, &id, grace)
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
    caller: Caller<Operate>,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let subscription = state.intake.endpoints.enable(&caller.tenant, &id).await?;
    tracing::info!(subscriptionId = %id, "webhook endpoint enabled");
    Ok(Json(subscription).into_response())
}

/// Replays a dead-lettered webhook: a new record linked to the original (same `webhook-id`).
pub async fn replay(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    headers: HeaderMap,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let tenant_id = caller.tenant.as_str();
    let id: CommunicationId = communication_id(&id)?;
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
        Err(ReplayError::NotFound(_)) => Err(ApiError::not_found("no such communication")),
        Err(ReplayError::Refused(m)) => Err(ApiError::new(ProblemKind::Conflict, m)),
        Err(ReplayError::Ledger(e)) => Err(ApiError::unavailable(e)),
    }
}

pub async fn get_inbox(
    State(state): State<ApiState>,
    caller: Caller<Read>,
    PathOf(recipient_ref): PathOf<String>,
    QueryOf(query): QueryOf<InboxQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad(vec!["query.limit: 1 to 500".into()]));
    }
    let notifications = state
        .intake
        .ledger
        .inbox(&caller.tenant, &recipient_ref, query.unread, limit)
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
    caller: Caller<Read>,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let id: uuid::Uuid = id
        .parse()
        .map_err(|_| ApiError::bad(vec!["id: not a notification id (a UUID)".into()]))?;
    state
        .intake
        .ledger
        .mark_read(&caller.tenant, id)
        .await
        .map_err(ApiError::unavailable)?
        .map(|n| Json(n).into_response())
        .ok_or_else(|| ApiError::not_found("no such notification"))
}
