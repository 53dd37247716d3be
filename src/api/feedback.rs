//! `POST /feedback/email`: provider feedback in herald's documented form (under the API's bearer
//! token) or Postmark's webhook format (HTTP basic authentication with the credentials of
//! `HERALD_FEEDBACK__POSTMARK_CREDENTIALS`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::feedback::{parse_documented, parse_postmark};

use super::{accepted_unless, authorize, constant_time_eq, ApiError, ApiState};

fn postmark_authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state
        .feedback
        .postmark_credentials
        .as_ref()
        .map(|c| c.expose_secret())
        .filter(|c| !c.is_empty())
    else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Postmark feedback is not configured: set HERALD_FEEDBACK__POSTMARK_CREDENTIALS",
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
            StatusCode::UNAUTHORIZED,
            "missing or wrong basic authentication",
        )),
    }
}

pub async fn post_email_feedback(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let parsed = if body.get("RecordType").is_some() {
        postmark_authorized(&state, &headers)?;
        parse_postmark(&body)
    } else {
        authorize(&state, &headers)?;
        parse_documented(&body).map(Some)
    };
    let Some(feedback) = parsed.map_err(ApiError::bad)? else {
        return Ok((StatusCode::OK, Json(json!({"ignored": true}))).into_response());
    };
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
