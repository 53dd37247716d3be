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
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

use crate::feedback::{parse_documented, parse_postmark, Feedback};
use crate::ledger::CommunicationId;

use super::auth::{Operate, PlatformCaller};
use super::input::Body;
use super::problem::{ApiError, ProblemKind};
use super::{accepted_unless, ApiState};

/// Feedback in herald's documented form (`POST /v1/feedback/email`).
pub struct EmailFeedback;

impl utoipa::PartialSchema for EmailFeedback {
    fn schema() -> RefOr<Schema> {
        let body = json!({
                "type": "object",
                "description": "Provider feedback on a message: applied once per feedbackId. The message is named by communicationId (or messageId, the same), else by providerMessageId.",
                "required": ["feedbackId", "type"],
                "properties": {
                    "feedbackId": {"type": "string", "minLength": 1, "description": "The provider's event id"},
                    "type": {"type": "string", "enum": ["HARD_BOUNCE", "SOFT_BOUNCE", "COMPLAINT", "UNSUBSCRIBE", "DELIVERED", "OPENED", "CLICKED"]},
                    "communicationId": {"type": "string", "format": "uuid"},
                    "messageId": {"type": "string", "minLength": 1, "description": "The Message-ID header herald set (`<communicationId@host>`)"},
                    "providerMessageId": {"type": "string", "minLength": 1},
                    "occurredAt": {"type": "string", "format": "date-time"},
                    "detail": {"type": "string", "description": "The provider's description (addresses masked, at most 500 characters kept)"},
                },
                "example": {"feedbackId": "pm-bounce-8812", "type": "HARD_BOUNCE", "providerMessageId": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817", "occurredAt": "2026-12-01T09:31:00Z"},
        });
        // The message must be named, one way or another.
        let named = |field: &str| json!({"type": "object", "required": [field]});
        let rule = json!({"anyOf": [named("communicationId"), named("messageId"), named("providerMessageId")]});
        RefOr::T(
            serde_json::from_value(json!({"allOf": [body, rule]})).expect("the schema is a schema"),
        )
    }
}

impl ToSchema for EmailFeedback {}

/// A Postmark webhook record (`POST /v1/feedback/postmark`), in Postmark's own format.
pub struct PostmarkRecord;

impl utoipa::PartialSchema for PostmarkRecord {
    fn schema() -> RefOr<Schema> {
        RefOr::T(
            serde_json::from_value(json!({
                "type": "object",
                "description": "Postmark's webhook record (Bounce, SpamComplaint, Delivery, Open, Click, SubscriptionChange); other record types are acknowledged and ignored.",
                "required": ["RecordType"],
                "properties": {
                    "RecordType": {"type": "string"},
                    "MessageID": {"type": "string"},
                    "Metadata": {"type": "object"},
                },
                "example": {"RecordType": "Delivery", "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817", "DeliveredAt": "2026-12-01T09:31:00Z", "Metadata": {"communicationId": "0193a1f2-7c4d-7e8a-9b1c-2d3e4f5a6b7c"}},
            }))
            .expect("the schema is a schema"),
        )
    }
}

impl ToSchema for PostmarkRecord {}

/// How a feedback was applied.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackApplied {
    feedback_id: String,
    #[serde(rename = "type")]
    #[schema(example = "HARD_BOUNCE")]
    kind: String,
    /// Whether a communication of herald's was found for it.
    matched: bool,
    communication_id: Option<CommunicationId>,
    /// The communication's status after it.
    status: Option<String>,
    /// The feedback was applied before (the same feedbackId): nothing changed.
    duplicate: bool,
    /// What changed: `BOUNCED`, `SUPPRESSION_LIST`, `OPTED_OUT`, …
    effects: Vec<String>,
}

/// A Postmark record herald takes no action on, acknowledged.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackIgnored {
    /// Always true.
    ignored: bool,
}

/// The answer to a Postmark record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PostmarkAnswer {
    Applied(FeedbackApplied),
    Ignored(FeedbackIgnored),
}

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
#[utoipa::path(
    post,
    path = "/v1/feedback/email",
    tag = "feedback",
    operation_id = "postEmailFeedback",
    description = "Needs a platform credential (feedback is matched across tenants).",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    request_body = EmailFeedback,
    responses(
        (status = 202, description = "The feedback is applied", body = FeedbackApplied),
        (status = 200, description = "The feedback was applied before (the same feedbackId)", body = FeedbackApplied),
    )
)]
pub async fn post_email_feedback(
    State(state): State<ApiState>,
    _caller: PlatformCaller<Operate>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    let feedback = parse_documented(&body).map_err(ApiError::bad)?;
    let (status, applied) = apply(&state, feedback).await?;
    Ok((status, Json(applied)).into_response())
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
#[utoipa::path(
    post,
    path = "/v1/feedback/postmark",
    tag = "feedback",
    operation_id = "postPostmarkFeedback",
    security(("postmarkBasic" = [])),
    request_body = PostmarkRecord,
    responses(
        (status = 202, description = "The feedback is applied", body = FeedbackApplied),
        (status = 200, description = "Applied before, or a record type herald takes no action on", body = PostmarkAnswer),
        (status = 401, description = "Missing or wrong basic authentication, or Postmark feedback is not configured"),
        (status = 503, description = "The database is unavailable; nothing was written, try again"),
    )
)]
pub async fn post_postmark_feedback(
    State(state): State<ApiState>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    // Its basic authentication was checked once, by `audited`, the layer of this route.
    match parse_postmark(&body).map_err(ApiError::bad)? {
        Some(feedback) => {
            let (status, applied) = apply(&state, feedback).await?;
            Ok((status, Json(PostmarkAnswer::Applied(applied))).into_response())
        }
        None => Ok((
            StatusCode::OK,
            Json(PostmarkAnswer::Ignored(FeedbackIgnored { ignored: true })),
        )
            .into_response()),
    }
}

async fn apply(
    state: &ApiState,
    feedback: Feedback,
) -> Result<(StatusCode, FeedbackApplied), ApiError> {
    let applied = state
        .intake
        .ledger
        .apply_feedback(&feedback)
        .await
        .map_err(ApiError::unavailable)?;
    let status = accepted_unless(applied.duplicate);
    Ok((
        status,
        FeedbackApplied {
            feedback_id: feedback.feedback_id,
            kind: feedback.kind.as_str().to_string(),
            matched: applied.communication_id.is_some(),
            communication_id: applied.communication_id,
            status: applied.status,
            duplicate: applied.duplicate,
            effects: applied.effects,
        },
    ))
}
