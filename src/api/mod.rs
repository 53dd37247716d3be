//! herald's HTTP API (axum): business events in, the contact directory, preferences, the
//! artifact registry, and communication history. JSON everywhere; errors as
//! `{"error": "…", "problems": [...]}` with 400 (bad input, nothing written), 401, 404, 422
//! (a rule cannot be applied) or 503 (try again).

mod feedback;
pub mod jwt;
mod subscriptions;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::artifacts::Artifact;
use crate::artifacts::DeliveryMode;
use crate::intake::events::{ingest, EventError};
use crate::intake::proposal::{ProposalInput, ProposalKey, Proposals, RecipientInput};
use crate::intake::{Intake, IntakeError};
use crate::ledger::{Channel, CommunicationId, MessageCategory};
use crate::policy::directory::Contact;
use crate::policy::rules::RuleSet;

#[derive(Clone)]
pub struct ApiState {
    pub intake: Intake,
    pub rules: Arc<RuleSet>,
    /// When set, every request but /health needs `Authorization: Bearer <token>`.
    pub token: Option<secrecy::SecretString>,
    /// The send-proposal handler, when the topic is configured.
    pub proposals: Option<Arc<Proposals>>,
    pub webhooks: crate::config::WebhookSettings,
    pub feedback: crate::config::FeedbackSettings,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/events", post(post_event))
        .route("/contacts/{tenant}/{contact}", put(put_contact))
        .route("/contacts/{tenant}/import", post(import_contacts))
        .route("/preferences/{tenant}", put(put_preference))
        .route("/artifacts", post(post_artifact))
        .route("/communications/{id}", get(get_communication))
        .route("/communications/{id}/replay", post(subscriptions::replay))
        .route(
            "/webhooks/subscriptions",
            post(subscriptions::post_subscription),
        )
        .route(
            "/webhooks/subscriptions/{id}",
            get(subscriptions::get_subscription),
        )
        .route(
            "/webhooks/subscriptions/{id}/rotate",
            post(subscriptions::rotate_subscription),
        )
        .route(
            "/webhooks/subscriptions/{id}/enable",
            post(subscriptions::enable_subscription),
        )
        .route("/feedback/email", post(feedback::post_email_feedback))
        .route("/inbox/{recipient}", get(subscriptions::get_inbox))
        .route("/inbox/{id}/read", post(subscriptions::read_notification))
        .route(
            "/quotes/{quote}/revisions/{revision}/communications/proposal",
            post(post_proposal),
        )
        .with_state(state)
}

/// An API error: a status and a message, with the problems of the input when there are several.
pub struct ApiError {
    status: StatusCode,
    message: String,
    problems: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn bad(problems: Vec<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "{} problem(s) in the request; nothing was written",
                problems.len()
            ),
            problems,
        }
    }

    fn unavailable(err: impl std::fmt::Display) -> ApiError {
        tracing::warn!(error = %err, "request failed on a dependency");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger database unavailable; try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
        }
        (self.status, Json(body)).into_response()
    }
}

/// A caller that showed the API's bearer token (when one is configured): an extractor, so that
/// a route that takes it cannot forget the check.
pub struct Authorized;

impl axum::extract::FromRequestParts<ApiState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        authorize(state, &parts.headers).map(|()| Authorized)
    }
}

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.expose_secret().as_bytes()) => {
            Ok(())
        }
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )),
    }
}

/// 202 for what was taken in now, 200 for a repetition of what was taken in before.
fn accepted_unless(duplicate: bool) -> StatusCode {
    if duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn post_event(
    State(state): State<ApiState>,
    _caller: Authorized,
    Json(event): Json<Value>,
) -> Result<Response, ApiError> {
    match ingest(&state.intake, &state.rules, &event).await {
        Ok(outcome) => {
            let status = accepted_unless(outcome.duplicate);
            Ok((
                status,
                Json(json!({
                    "eventId": outcome.event_id,
                    "duplicate": outcome.duplicate,
                    "communicationIds": outcome.communication_ids,
                })),
            )
                .into_response())
        }
        Err(EventError::Invalid(m)) => Err(ApiError::bad(vec![m])),
        Err(EventError::Rule(m)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m)),
        Err(EventError::Unavailable(m)) => Err(ApiError::unavailable(m)),
    }
}

/// A contact of the directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactInput {
    #[serde(default)]
    pub contact_id: Option<String>,
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    /// The contact's market (`DE`, `CH`): template versions made for it win.
    #[serde(default)]
    pub market: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    /// Quiet hours, `HH:MM`, both or neither.
    #[serde(default)]
    pub quiet_start: Option<String>,
    #[serde(default)]
    pub quiet_end: Option<String>,
}

fn yes() -> bool {
    true
}

type QuietTimes = (Option<chrono::NaiveTime>, Option<chrono::NaiveTime>);

fn check_contact(contact: &ContactInput, at: &str) -> Result<QuietTimes, Vec<String>> {
    let mut problems = Vec::new();
    if contact.display_name.trim().is_empty() {
        problems.push(format!("{at}.displayName: must not be empty"));
    }
    if let Some(email) = contact.email.as_deref().filter(|e| !e.is_empty()) {
        if email.parse::<lettre::Address>().is_err() {
            problems.push(format!("{at}.email: not a valid email address"));
        }
    }
    if let Some(zone) = &contact.timezone {
        if zone.parse::<chrono_tz::Tz>().is_err() {
            problems.push(format!("{at}.timezone: '{zone}' is not an IANA time zone"));
        }
    }
    let time = |field: &str, value: &Option<String>, problems: &mut Vec<String>| {
        value
            .as_deref()
            .and_then(|v| match chrono::NaiveTime::parse_from_str(v, "%H:%M") {
                Ok(t) => Some(t),
                Err(_) => {
                    problems.push(format!("{at}.{field}: '{v}' is not HH:MM"));
                    None
                }
            })
    };
    let start = time("quietStart", &contact.quiet_start, &mut problems);
    let end = time("quietEnd", &contact.quiet_end, &mut problems);
    if contact.quiet_start.is_some() != contact.quiet_end.is_some() {
        problems.push(format!("{at}: quietStart and quietEnd go together"));
    }
    if problems.is_empty() {
        Ok((start, end))
    } else {
        Err(problems)
    }
}

/// A checked contact of the API, as the directory keeps it.
fn contact_record<'a>(id: &'a str, contact: &'a ContactInput, quiet: QuietTimes) -> Contact<'a> {
    Contact {
        contact_id: id,
        display_name: &contact.display_name,
        email: contact.email.as_deref(),
        locale: contact.locale.as_deref(),
        market: contact.market.as_deref(),
        timezone: contact.timezone.as_deref(),
        active: contact.active,
        quiet,
    }
}

async fn put_contact(
    State(state): State<ApiState>,
    _caller: Authorized,
    Path((tenant, contact_id)): Path<(String, String)>,
    Json(contact): Json<ContactInput>,
) -> Result<Response, ApiError> {
    let quiet = check_contact(&contact, "contact").map_err(ApiError::bad)?;
    state
        .intake
        .directory
        .upsert_contacts(&tenant, &[contact_record(&contact_id, &contact, quiet)])
        .await
        .map_err(ApiError::unavailable)?;
    Ok(
        Json(json!({"tenantId": tenant, "contactId": contact_id, "upserted": true}))
            .into_response(),
    )
}

/// Upserts a whole list in one transaction: any invalid entry and nothing is written.
async fn import_contacts(
    State(state): State<ApiState>,
    _caller: Authorized,
    Path(tenant): Path<String>,
    Json(contacts): Json<Vec<ContactInput>>,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let mut checked = Vec::with_capacity(contacts.len());
    for (n, contact) in contacts.iter().enumerate() {
        let at = format!("[{n}]");
        match (&contact.contact_id, check_contact(contact, &at)) {
            (Some(id), Ok(quiet)) if !id.trim().is_empty() => {
                checked.push((id.trim().to_string(), contact, quiet))
            }
            (_, Err(mut p)) => problems.append(&mut p),
            _ => problems.push(format!("{at}.contactId: required in an import")),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    let records: Vec<Contact> = checked
        .iter()
        .map(|(id, contact, quiet)| contact_record(id, contact, *quiet))
        .collect();
    state
        .intake
        .directory
        .upsert_contacts(&tenant, &records)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(json!({"tenantId": tenant, "upserted": checked.len()})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PreferenceInput {
    recipient_ref: String,
    category: MessageCategory,
    channel: Channel,
    opted_in: bool,
    #[serde(default)]
    source: Option<String>,
}

async fn put_preference(
    State(state): State<ApiState>,
    _caller: Authorized,
    Path(tenant): Path<String>,
    Json(pref): Json<PreferenceInput>,
) -> Result<Response, ApiError> {
    if pref.recipient_ref.trim().is_empty() {
        return Err(ApiError::bad(
            vec!["recipientRef: must not be empty".into()],
        ));
    }
    state
        .intake
        .directory
        .set_preference(
            &tenant,
            pref.recipient_ref.trim(),
            pref.category,
            pref.channel,
            pref.opted_in,
            pref.source.as_deref().unwrap_or("api"),
        )
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(
        json!({"tenantId": tenant, "recipientRef": pref.recipient_ref, "optedIn": pref.opted_in}),
    )
    .into_response())
}

async fn post_artifact(
    State(state): State<ApiState>,
    _caller: Authorized,
    Json(artifact): Json<Artifact>,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    for (name, value) in [
        ("tenantId", &artifact.tenant_id),
        ("artifactId", &artifact.artifact_id),
        ("subjectId", &artifact.subject_id),
        ("artifactType", &artifact.artifact_type),
        ("storageLocation", &artifact.storage_location),
        ("fileName", &artifact.file_name),
    ] {
        if value.trim().is_empty() {
            problems.push(format!("{name}: must not be empty"));
        }
    }
    if !matches!(
        artifact.status.as_str(),
        "AVAILABLE" | "PENDING" | "SUPERSEDED"
    ) {
        problems.push("status: AVAILABLE, PENDING or SUPERSEDED".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    state
        .intake
        .registry
        .register(&artifact)
        .await
        .map_err(ApiError::unavailable)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"artifactId": artifact.artifact_id, "status": artifact.status})),
    )
        .into_response())
}

/// A communication with its attempts, its policy decisions and (for a parent) its children.
async fn get_communication(
    State(state): State<ApiState>,
    _caller: Authorized,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: CommunicationId = id
        .parse()
        .map_err(|_| ApiError::bad(vec![format!("'{id}' is not a communication id")]))?;
    let ledger = &state.intake.ledger;
    let view = ledger
        .get(id)
        .await
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no communication {id}")))?;
    let children = ledger.children(id).await.map_err(ApiError::unavailable)?;
    let decisions = ledger.decisions(id).await.map_err(ApiError::unavailable)?;
    let mut body = serde_json::to_value(&view).map_err(ApiError::unavailable)?;
    body["decisions"] = serde_json::to_value(decisions).map_err(ApiError::unavailable)?;
    body["children"] = serde_json::to_value(children).map_err(ApiError::unavailable)?;
    Ok(Json(body).into_response())
}

/// The proposal command: a quote revision's proposal to a contact or an address, by API.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProposalCommand {
    tenant_id: String,
    artifact_id: String,
    #[serde(default)]
    recipient_contact_id: Option<String>,
    #[serde(default)]
    recipient_email: Option<String>,
    #[serde(default)]
    channel: Option<Channel>,
    #[serde(default)]
    delivery_mode: Option<DeliveryMode>,
    #[serde(default)]
    message_note: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    /// The market whose template version wins (`DE`, `CH`); the contact's when not given.
    #[serde(default)]
    market: Option<String>,
}

/// `POST /quotes/{quoteId}/revisions/{revisionNo}/communications/proposal` with an
/// `Idempotency-Key`: the same key returns the same communication; the same key with another
/// request is a conflict.
async fn post_proposal(
    State(state): State<ApiState>,
    _caller: Authorized,
    headers: HeaderMap,
    Path((quote_id, revision)): Path<(String, i64)>,
    Json(command): Json<ProposalCommand>,
) -> Result<Response, ApiError> {
    let proposals = state.proposals.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no send-proposal topic is configured",
        )
    })?;
    let mut problems = Vec::new();
    let key = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200);
    if key.is_none() {
        problems.push("Idempotency-Key header: required (at most 200 characters)".to_string());
    }
    let recipient = match (&command.recipient_email, &command.recipient_contact_id) {
        (Some(email), None) => Some(RecipientInput::Email(email.trim().to_string())),
        (None, Some(contact)) => Some(RecipientInput::Contact(contact.trim().to_string())),
        _ => {
            problems.push("give exactly one of recipientEmail and recipientContactId".into());
            None
        }
    };
    if command.channel.is_some_and(|c| c != Channel::Email) {
        problems.push("channel: proposals go by EMAIL".into());
    }
    for (name, value) in [
        ("tenantId", &command.tenant_id),
        ("artifactId", &command.artifact_id),
    ] {
        if value.trim().is_empty() {
            problems.push(format!("{name}: must not be empty"));
        }
    }
    let (Some(key), Some(recipient), true) = (key, recipient, problems.is_empty()) else {
        return Err(ApiError::bad(problems));
    };
    let expected_ref = recipient.recipient_ref();
    let input = ProposalInput {
        quote_id: quote_id.clone(),
        revision_no: revision,
        artifact_id: command.artifact_id.trim().to_string(),
        tenant_id: command.tenant_id.trim().to_string(),
        recipient,
        locale: command.locale,
        market: command.market,
        delivery_mode: command.delivery_mode.unwrap_or(DeliveryMode::PortalLink),
        message_note: command
            .message_note
            .as_deref()
            .map(crate::templates::sanitize_note)
            .filter(|n| !n.is_empty()),
    };
    let scoped = format!("quote-proposal-delivery:api:{quote_id}/{revision}:{key}");
    let outcome = proposals
        .request(&input, ProposalKey::Given(scoped), None)
        .await
        .map_err(|err| {
            let status = match err {
                IntakeError::NotYet { .. } => StatusCode::CONFLICT,
                IntakeError::Permanent { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                IntakeError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError::new(status, err.to_string())
        })?;
    if !outcome.created {
        let existing = state
            .intake
            .ledger
            .get(outcome.communication_id)
            .await
            .map_err(ApiError::unavailable)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "communication vanished"))?;
        let artifacts = state
            .intake
            .ledger
            .artifact_ids(outcome.communication_id)
            .await
            .map_err(ApiError::unavailable)?;
        if existing.recipient_ref != expected_ref || artifacts != vec![input.artifact_id.clone()] {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "this Idempotency-Key was used for another request; use a new key",
            ));
        }
    }
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "communicationId": outcome.communication_id,
            "status": outcome.status,
            "communicationType": "QUOTE_PROPOSAL_DELIVERY",
        })),
    )
        .into_response())
}
