//! herald's HTTP API (axum), all of it under `/v1/`: commands (proposals, events, artifacts), the
//! contact directory and preferences, webhook endpoints, inboxes, provider feedback, communication
//! history, the suppression list, retries and the tenant's policy. Every route but the provider
//! feedback needs a credential of the tenant (`Authorization: Bearer <API key>`, see `auth`); the
//! tenant comes from the credential, never from the request. Errors are problem documents
//! (`problem`); bodies are checked strictly (`input`), and every body, path segment and query
//! parameter against its schema in the API's own document (`contract`): what the document says a
//! request may hold is the check.
//!
//! ## Adding a route (routes and spec cannot drift)
//! 1. Write the handler with `#[utoipa::path(method, path = "/v1/…", tag = "…", security(…),
//!    params(…), request_body = T, responses(…))]`: `security` names the scope of the handler's
//!    `Caller<S>` for both schemes (`security(("apiKey" = ["read"]), ("jwt" = ["read"]))`;
//!    the `api_openapi` tests check it against the extractor), `responses` the successes as
//!    named `ToSchema` types and the problems only this handler answers (`(status = 404,
//!    description = "…")`, no body: [`spec::finish`] gives every problem answer the `Problem`
//!    schema and its examples).
//! 2. Register it with `.routes(routes!(module::handler))` in the group of [`routes`] whose layers
//!    it needs: `commands` (POST commands: Idempotency-Key), `authenticated` (a credential) or the
//!    public top. The group documents what its layer adds (the headers, 401/403/429/503,
//!    409/422), and a JSON body gets 400/413/415 by itself.
//! 3. `cargo run -- openapi` rewrites `docs/openapi.json` (a unit test fails until it does).

mod audit;
pub mod auth;
mod commands;
pub mod contract;
mod directory;
mod feedback;
mod gate;
mod history;
pub mod idempotency;
pub mod input;
pub mod jwt;
pub mod keys;
pub mod limit;
mod meta;
mod orders;
mod policy;
pub mod problem;
mod resend;
mod retry;
pub mod spec;
mod subscriptions;
mod suppressions;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The API's routes with their spec: `state` is `None` only to read the spec ([`openapi`]), which
/// the layers do not change.
fn routes(state: Option<&ApiState>) -> OpenApiRouter<ApiState> {
    // The POST commands: each needs an Idempotency-Key, its first answer is replayed.
    let mut commands = OpenApiRouter::new()
        .routes(routes!(commands::post_event))
        .routes(routes!(commands::post_artifact))
        .routes(routes!(commands::post_proposal))
        .routes(routes!(orders::post_order_confirmation))
        .routes(routes!(orders::post_escalation))
        .routes(routes!(resend::post_resend))
        .routes(routes!(retry::post_retry))
        .routes(routes!(suppressions::post_suppression))
        .routes(routes!(directory::import_contacts))
        .routes(routes!(subscriptions::replay))
        .routes(routes!(subscriptions::post_subscription))
        .routes(routes!(subscriptions::rotate_subscription))
        .routes(routes!(subscriptions::enable_subscription))
        .routes(routes!(subscriptions::read_notification));
    spec::idempotent(commands.get_openapi_mut());
    if let Some(state) = state {
        commands = commands.route_layer(axum::middleware::from_fn_with_state(
            state.idempotency.clone(),
            idempotency::layer,
        ));
    }
    let mut authenticated = OpenApiRouter::new()
        .routes(routes!(directory::put_contact))
        .routes(routes!(directory::put_preference))
        .routes(routes!(history::list_communications))
        .routes(routes!(history::get_communication))
        .routes(routes!(history::list_quote_communications))
        .routes(routes!(subscriptions::get_subscription))
        .routes(routes!(subscriptions::get_inbox))
        // Operations staff: a platform credential of `read`.
        .routes(routes!(meta::metrics))
        .routes(routes!(suppressions::list_suppressions))
        .routes(routes!(suppressions::delete_suppression))
        // The tenant's policy (admin): PUT and DELETE are idempotent by nature.
        .routes(routes!(policy::get_policy, policy::put_policy))
        .routes(routes!(
            policy::put_blocked_domain,
            policy::delete_blocked_domain
        ))
        // Provider feedback is matched across tenants, and deduplicated by its feedbackId.
        .routes(routes!(feedback::post_email_feedback))
        .merge(commands);
    spec::authenticated(authenticated.get_openapi_mut());
    if let Some(state) = state {
        authenticated = authenticated.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::layer,
        ));
    }
    // Postmark's calls are audited under the provider's name once its credentials pass.
    let mut postmark = OpenApiRouter::new().routes(routes!(feedback::post_postmark_feedback));
    if let Some(state) = state {
        postmark = postmark.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            feedback::audited,
        ));
    }
    OpenApiRouter::new()
        .routes(routes!(meta::health))
        .routes(routes!(meta::live))
        .routes(routes!(meta::ready))
        .routes(routes!(meta::openapi_json))
        // Postmark calls this one with its own credentials (see feedback.rs).
        .merge(postmark)
        .merge(authenticated)
}

/// The OpenAPI document of the API (what `GET /v1/openapi.json` serves and
/// `docs/openapi.json` keeps), built from the routes without a database.
pub fn openapi() -> utoipa::openapi::OpenApi {
    spec::finish(routes(None).into_openapi())
}

pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    contract::prepare();
    let (router, _) = routes(Some(&state)).split_for_parts();
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ProblemKind::MethodNotAllowed,
                "this route does not take this method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(counted))
        .with_state(state)
}

/// Counts each answered request by its documented route (never its ids), method and status.
async fn counted(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    crate::metrics::api_request(&route, &method, response.status().as_u16());
    response
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
