//! Provider feedback (bounces, complaints, deliveries, opens): `POST /v1/feedback/email` in
//! herald's documented form, with a platform credential of scope `operate` (feedback is matched
//! by the provider's message id, across tenants), and `POST /v1/feedback/postmark` in Postmark's
//! webhook format, with HTTP basic authentication (`HERALD_FEEDBACK__POSTMARK_CREDENTIALS`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::feedback::{parse_documented, parse_postmark, Feedback};

use super::auth::{Operate, PlatformCaller};
use super::input::Body;
use super::problem::{ApiError, ProblemKind};
use super::{accepted_unless, ApiState};

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

fn postmark_authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state
        .feedback
        .postmark_credentials
        .as_ref()
        .map(|c| c.expose_secret())
        .filter(|c| !c.is_empty())
    else {
        return Err(super::auth::unauthorized(
            "Postmark feedback is not configured: set HERALD_FEEDBACK__POSTMARK_CREDENTIALS",
            false,
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        });
    match given {
        Some(given) if constant_time_eq(&given, expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            ProblemKind::Unauthorized,
            "missing or wrong basic authentication",
        )
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"herald feedback\""),
        )),
    }
}

/// `POST /v1/feedback/email`: feedback in herald's documented form.
pub async fn post_email_feedback(
    State(state): State<ApiState>,
    _caller: PlatformCaller<Operate>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    let feedback = parse_documented(&body).map_err(ApiError::bad)?;
    apply(&state, feedback).await
}

/// The audit of Postmark's calls (they carry no API credential): each call that passed the
/// basic authentication is recorded under the provider's name.
pub async fn audited(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(refused) = postmark_authorized(&state, request.headers()) {
        return refused.into_response();
    }
    let caller = super::auth::Authenticated {
        credential: super::auth::Credential::Provider("postmark"),
        platform: true,
        scopes: Vec::new(),
        tenant: None,
    };
    super::audit::around(&state, caller, request, next).await
}

/// `POST /v1/feedback/postmark`: Postmark's webhook; record types herald does not use are
/// acknowledged and ignored.
pub async fn post_postmark_feedback(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    postmark_authorized(&state, &headers)?;
    match parse_postmark(&body).map_err(ApiError::bad)? {
        Some(feedback) => apply(&state, feedback).await,
        None => Ok((StatusCode::OK, Json(json!({"ignored": true}))).into_response()),
    }
}

async fn apply(state: &ApiState, feedback: Feedback) -> Result<Response, ApiError> {
    let applied = state
        .intake
        .ledger
        .apply_feedback(&feedback)
        .await
        .map_err(ApiError::unavailable)?;
    let status = accepted_unless(applied.duplicate);
    Ok((
        status,
        Json(json!({
            "feedbackId": feedback.feedback_id,
            "type": feedback.kind.as_str(),
            "matched": applied.communication_id.is_some(),
            "communicationId": applied.communication_id,
            "status": applied.status,
            "duplicate": applied.duplicate,
            "effects": applied.effects,
        })),
    )
        .into_response())
}
