//! herald's HTTP API (axum), all of it under `/v1/`: commands (proposals, events, artifacts),
//! the contact directory and preferences, webhook endpoints, inboxes, provider feedback and
//! communication history. Every route but the provider feedback needs a credential of the
//! tenant (`Authorization: Bearer <API key>`, see `auth`); the tenant comes from the credential,
//! never from the request. Errors are problem documents (`problem`); bodies are checked strictly
//! (`input`).

mod audit;
pub mod auth;
mod commands;
mod directory;
mod feedback;
mod gate;
mod history;
pub mod idempotency;
pub mod input;
pub mod jwt;
pub mod keys;
pub mod limit;
mod orders;
pub mod problem;
mod resend;
mod subscriptions;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::intake::proposal::Proposals;
use crate::intake::Intake;
use crate::policy::rules::RuleSet;

pub use idempotency::IdempotencyStore;
pub use problem::{ApiError, ProblemKind};

#[derive(Clone)]
pub struct ApiState {
    pub intake: Intake,
    pub rules: Arc<RuleSet>,
    /// The API's own tables (api_key, api_audit): a handle of its own on the database.
    pub db: PgPool,
    pub keys: keys::ApiKeys,
    /// The verifier of JWT bearer tokens, when `[api.jwt]` is configured.
    pub jwt: Option<jwt::JwtVerifier>,
    pub limits: limit::Limits,
    /// The send-proposal handler, when the topic is configured.
    pub proposals: Option<Arc<Proposals>>,
    pub webhooks: crate::config::WebhookSettings,
    pub feedback: crate::config::FeedbackSettings,
    /// The stored answers of the POST commands' `Idempotency-Key`s.
    pub idempotency: IdempotencyStore,
}

pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    // The POST commands: each needs an Idempotency-Key, its first answer is replayed.
    let commands = Router::new()
        .route("/v1/events", post(commands::post_event))
        .route("/v1/artifacts", post(commands::post_artifact))
        .route(
            "/v1/quotes/{quoteId}/revisions/{revisionNo}/communications/proposal",
            post(commands::post_proposal),
        )
        .route(
            "/v1/orders/{orderId}/communications/confirmation",
            post(orders::post_order_confirmation),
        )
        .route(
            "/v1/fallout/{caseId}/escalations",
            post(orders::post_escalation),
        )
        .route("/v1/contacts/import", post(directory::import_contacts))
        .route("/v1/communications/{id}/resend", post(resend::post_resend))
        .route(
            "/v1/communications/{id}/replay",
            post(subscriptions::replay),
        )
        .route(
            "/v1/webhooks/subscriptions",
            post(subscriptions::post_subscription),
        )
        .route(
            "/v1/webhooks/subscriptions/{id}/rotate",
            post(subscriptions::rotate_subscription),
        )
        .route(
            "/v1/webhooks/subscriptions/{id}/enable",
            post(subscriptions::enable_subscription),
        )
        .route(
            "/v1/inbox/{id}/read",
            post(subscriptions::read_notification),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.idempotency.clone(),
            idempotency::layer,
        ));
    let authenticated = Router::new()
        .route("/v1/contacts/{contactId}", put(directory::put_contact))
        .route("/v1/preferences", put(directory::put_preference))
        .route("/v1/communications", get(history::list_communications))
        .route("/v1/communications/{id}", get(history::get_communication))
        .route(
            "/v1/quotes/{quoteId}/communications",
            get(history::list_quote_communications),
        )
        .route(
            "/v1/webhooks/subscriptions/{id}",
            get(subscriptions::get_subscription),
        )
        .route("/v1/inbox/{recipientRef}", get(subscriptions::get_inbox))
        // Provider feedback is matched across tenants, and deduplicated by its feedbackId.
        .route("/v1/feedback/email", post(feedback::post_email_feedback))
        .merge(commands)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::layer,
        ));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        // Postmark calls this one with its own credentials (see feedback.rs).
        .route(
            "/v1/feedback/postmark",
            post(feedback::post_postmark_feedback).route_layer(
                axum::middleware::from_fn_with_state(state.clone(), feedback::audited),
            ),
        )
        .merge(authenticated)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ProblemKind::MethodNotAllowed,
                "this route does not take this method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// 202 for what was taken in now, 200 for a repetition of what was taken in before.
fn accepted_unless(duplicate: bool) -> StatusCode {
    if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("api: cannot listen on {0}: {1}")]
    Listen(String, #[source] std::io::Error),
    #[error(
        "api: refusing to listen on {0} without credentials: no API key can be used and no \
         [api.jwt] is configured. Create a key (herald api-keys create --tenant T --scope …), \
         configure JWTs, or listen on a loopback address"
    )]
    Insecure(std::net::SocketAddr),
    #[error("api: {0}")]
    Settings(String),
    #[error("api: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("api.jwt: {0}")]
    Jwt(#[from] jwt::JwtError),
}

/// Binds the API's address, secure by default: any address but a loopback one only with
/// credentials that can be used; on loopback without any, herald says so and starts (every call
/// answers 401 until a key is made).
pub async fn bind(
    settings: &crate::config::ApiSettings,
    keys: &keys::ApiKeys,
) -> Result<tokio::net::TcpListener, StartError> {
    let jwt = settings.jwt.is_some();
    keys::check_environment(&settings.key_environment).map_err(StartError::Settings)?;
    if settings.max_body_bytes == 0 {
        return Err(StartError::Settings(
            "api.max_body_bytes must be above 0".into(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| StartError::Listen(settings.listen.clone(), e))?;
    let address = listener
        .local_addr()
        .map_err(|e| StartError::Listen(settings.listen.clone(), e))?;
    if !jwt && !keys.any_usable().await? {
        if !address.ip().is_loopback() {
            return Err(StartError::Insecure(address));
        }
        tracing::warn!(listen = %address, "no API credentials exist: the API listens on loopback only, and answers 401 until a key is made (herald api-keys create)");
    }
    Ok(listener)
}
