//! The API of the webhook and in-app channels: subscriptions (create, read, rotate the secret,
//! enable again), replay of a dead-lettered webhook, and inboxes.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::delivery::endpoints::{Subscription, SubscriptionError};
use crate::delivery::webhook::EndpointGuard;
use crate::ledger::inbox::InboxNotification;
use crate::ledger::replay::ReplayError;
use crate::ledger::{CommunicationId, CommunicationStatus};

use super::auth::{Caller, Operate, Read};
use super::history::communication_id;
use super::input::{check_texts, Body, PathOf, QueryOf, Text};
use super::problem::{ApiError, ProblemKind};
use super::ApiState;

/// The query of an inbox: only unread ones, and how many.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// Only the notifications not read yet.
    #[serde(default)]
    unread: bool,
    /// At most this many, newest first (50 when not given).
    #[param(minimum = 1, maximum = 500)]
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

/// A webhook endpoint of the caller's tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://hooks.example.com/herald", "eventTypes": ["communication.delivered"],
    "rateLimitPerSecond": 10
}))]
pub struct SubscriptionInput {
    url: String,
    event_types: Vec<String>,
    /// A `whsec_` secret of the receiver's; herald makes one when absent.
    #[serde(default)]
    secret: Option<String>,
    /// At most this many messages a second to the endpoint, across all senders.
    #[serde(default, deserialize_with = "super::input::whole_number")]
    rate_limit_per_second: Option<i32>,
}

/// A new subscription, with its signing secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionCreated {
    #[serde(flatten)]
    subscription: Subscription,
    /// The `whsec_` signing secret: herald never returns it again.
    secret: String,
}

/// A new signing secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotated {
    subscription_id: String,
    /// The new `whsec_` signing secret (shown this once).
    secret: String,
    /// Messages are signed with the previous secret too for this long.
    previous_secret_valid_for_seconds: u64,
}

/// The answer to a replay: the new record, linked to the original.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayAccepted {
    communication_id: CommunicationId,
    replay_of: CommunicationId,
    status: CommunicationStatus,
    /// false when the Idempotency-Key named a replay made before.
    created: bool,
}

/// A recipient's inbox.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inbox {
    recipient_ref: String,
    /// How many of the notifications listed are unread.
    unread: usize,
    notifications: Vec<InboxNotification>,
}

/// `POST /v1/webhooks/subscriptions`: a webhook endpoint (the URL checked against the
/// endpoint guard).
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions",
    tag = "webhooks",
    operation_id = "postSubscription",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    request_body = SubscriptionInput,
    responses(
        (status = 201, description = "The subscription, with its secret (shown once)", body = SubscriptionCreated),
        (status = 503, description = "No keyring to seal the secret with, or the database is unavailable"),
    )
)]
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
    // Shown this once: herald never returns it again.
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionCreated {
            subscription,
            secret,
        }),
    )
        .into_response())
}

/// `GET /v1/webhooks/subscriptions/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/subscriptions/{id}",
    tag = "webhooks",
    operation_id = "getSubscription",
    security(("apiKey" = ["read"]), ("jwt" = ["read"])),
    params(("id" = String, Path, description = "The subscription")),
    responses(
        (status = 200, description = "The subscription (never its secrets)", body = Subscription),
        (status = 404, description = "No such subscription (or another tenant's)"),
    )
)]
pub async fn get_subscription(
    State(state): State<ApiState>,
    caller: Caller<Read>,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let subscription = state.intake.endpoints.get(&caller.tenant, &id).await?;
    Ok(Json(subscription).into_response())
}

/// `POST /v1/webhooks/subscriptions/{id}/rotate`: a new signing secret; the previous one stays
/// valid for `webhooks.rotation_grace`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions/{id}/rotate",
    tag = "webhooks",
    operation_id = "rotateSubscription",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    params(("id" = String, Path, description = "The subscription")),
    responses(
        (status = 200, description = "The new secret (shown once)", body = SecretRotated),
        (status = 404, description = "No such subscription (or another tenant's)"),
    )
)]
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
    Ok(Json(SecretRotated {
        subscription_id: id,
        secret,
        previous_secret_valid_for_seconds: grace.as_secs(),
    })
    .into_response())
}

/// `POST /v1/webhooks/subscriptions/{id}/enable`: a disabled endpoint receives again.
#[utoipa::path(
    post,
    path = "/v1/webhooks/subscriptions/{id}/enable",
    tag = "webhooks",
    operation_id = "enableSubscription",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    params(("id" = String, Path, description = "The subscription")),
    responses(
        (status = 200, description = "The subscription, enabled", body = Subscription),
        (status = 404, description = "No such subscription (or another tenant's)"),
    )
)]
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
#[utoipa::path(
    post,
    path = "/v1/communications/{id}/replay",
    tag = "webhooks",
    operation_id = "replayCommunication",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    params(("id" = String, Path, format = Uuid, description = "The dead-lettered webhook communication")),
    responses(
        (status = 202, description = "The replay is requested", body = ReplayAccepted),
        (status = 200, description = "The replay this key requested before", body = ReplayAccepted),
        (status = 400, description = "The id is not a communication id"),
        (status = 404, description = "No such communication (or another tenant's)"),
        (status = 409, description = "The communication cannot be replayed (not a dead-lettered webhook)"),
    )
)]
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
                Json(ReplayAccepted {
                    communication_id: outcome.communication_id,
                    replay_of: id,
                    status: outcome.status,
                    created: outcome.created,
                }),
            )
                .into_response())
        }
        Err(ReplayError::NotFound(_)) => Err(ApiError::not_found("no such communication")),
        Err(ReplayError::Refused(m)) => Err(ApiError::new(ProblemKind::Conflict, m)),
        Err(ReplayError::Ledger(e)) => Err(ApiError::unavailable(e)),
    }
}

/// `GET /v1/inbox/{recipientRef}`: a recipient's in-app notifications, newest first.
#[utoipa::path(
    get,
    path = "/v1/inbox/{recipientRef}",
    tag = "inbox",
    operation_id = "getInbox",
    security(("apiKey" = ["read"]), ("jwt" = ["read"])),
    params(("recipientRef" = String, Path, description = "The recipient"), InboxQuery),
    responses(
        (status = 200, description = "The recipient's notifications", body = Inbox),
        (status = 400, description = "The query is invalid"),
    )
)]
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
    Ok(Json(Inbox {
        recipient_ref,
        unread,
        notifications,
    })
    .into_response())
}

/// `POST /v1/inbox/{id}/read`: marks a notification read (the first time counts).
#[utoipa::path(
    post,
    path = "/v1/inbox/{id}/read",
    tag = "inbox",
    operation_id = "readNotification",
    security(("apiKey" = ["read"]), ("jwt" = ["read"])),
    params(("id" = String, Path, format = Uuid, description = "The notification")),
    responses(
        (status = 200, description = "The notification, read", body = InboxNotification),
        (status = 400, description = "The id is not a notification id"),
        (status = 404, description = "No such notification (or another tenant's)"),
    )
)]
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
