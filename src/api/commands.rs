//! The commands: a business event, an artifact of the registry, a quote revision's proposal.
//! Each acts for the caller's tenant; a body that names a tenant is refused.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::artifacts::{Artifact, DeliveryMode};
use crate::intake::events::{ingest, EventError};
use crate::intake::proposal::{ProposalInput, ProposalKey, RecipientInput};
use crate::intake::IntakeError;
use crate::ledger::{Channel, CommunicationId, CommunicationStatus, CommunicationType};

use super::auth::{Caller, Send};
use super::input::{check_texts, Body, PathOf, Text};
use super::problem::{ApiError, ProblemKind};
use super::{accepted_unless, ApiState};

/// The answer to an event: the communications its rules made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventAccepted {
    event_id: String,
    /// The event was applied before (by its eventId): nothing new was made.
    duplicate: bool,
    communication_ids: Vec<CommunicationId>,
}

/// `POST /v1/events`: a business event for the caller's tenant.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "commands",
    operation_id = "postEvent",
    security(("apiKey" = ["send"]), ("jwt" = ["send"])),
    request_body = super::spec::EventInput,
    responses(
        (status = 202, description = "The event was applied: its rules' communications were requested", body = EventAccepted),
        (status = 200, description = "The event was applied before (the same eventId): nothing new", body = EventAccepted),
        (status = 400, description = "The event is malformed or lacks a field a rule needs (or names a tenantId)"),
        (status = 422, description = "A matching rule cannot be applied (its template or mapping is wrong)"),
    )
)]
pub async fn post_event(
    State(state): State<ApiState>,
    caller: Caller<Send>,
    Body(mut event): Body<Value>,
) -> Result<Response, ApiError> {
    let Some(fields) = event.as_object_mut() else {
        return Err(ApiError::bad(vec!["an event is a JSON object".into()]));
    };
    if fields.contains_key("tenantId") {
        return Err(ApiError::bad(vec![
            "tenantId: the tenant comes from the credential; leave it out".into(),
        ]));
    }
    fields.insert("tenantId".into(), Value::String(caller.tenant.clone()));
    match ingest(&state.intake, &state.rules, &event).await {
        Ok(outcome) => Ok((
            accepted_unless(outcome.duplicate),
            Json(EventAccepted {
                event_id: outcome.event_id,
                duplicate: outcome.duplicate,
                communication_ids: outcome.communication_ids,
            }),
        )
            .into_response()),
        Err(EventError::Invalid(m)) => Err(ApiError::bad(vec![m])),
        Err(EventError::Rule(m)) => Err(ApiError::new(ProblemKind::Unprocessable, m)),
        Err(EventError::Unavailable(m)) => Err(ApiError::unavailable(m)),
    }
}

/// A document of the registry, as the API takes it (the tenant is the caller's).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "artifactId": "A-1", "subjectType": "QUOTE_REVISION", "subjectId": "Q-1001/3",
    "artifactType": "PROPOSAL_PDF", "status": "AVAILABLE",
    "storageLocation": "https://docs.example.com/q-1001-3.pdf", "sizeBytes": 48213,
    "mediaType": "application/pdf", "fileName": "Proposal Q-1001.pdf"
}))]
pub struct ArtifactInput {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    artifact_id: String,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    subject_type: String,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    subject_id: String,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    artifact_type: String,
    status: ArtifactStatus,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    #[serde(default)]
    content_hash: Option<String>,
    #[schema(max_length = 2048, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]+$")]
    storage_location: String,
    #[serde(default, deserialize_with = "super::input::whole_number")]
    #[schema(minimum = 0)]
    size_bytes: Option<i64>,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    media_type: String,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    file_name: String,
}

/// Whether a document can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ArtifactStatus {
    Available,
    Pending,
    Superseded,
}

impl ArtifactStatus {
    fn as_str(self) -> &'static str {
        match self {
            ArtifactStatus::Available => "AVAILABLE",
            ArtifactStatus::Pending => "PENDING",
            ArtifactStatus::Superseded => "SUPERSEDED",
        }
    }
}

/// The answer to a registered document.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRegistered {
    artifact_id: String,
    status: ArtifactStatus,
}

/// `POST /v1/artifacts`: registers (or updates) a document.
#[utoipa::path(
    post,
    path = "/v1/artifacts",
    tag = "commands",
    operation_id = "postArtifact",
    security(("apiKey" = ["send"]), ("jwt" = ["send"])),
    request_body = ArtifactInput,
    responses(
        (status = 201, description = "The document is registered (or updated)", body = ArtifactRegistered),
    )
)]
pub async fn post_artifact(
    State(state): State<ApiState>,
    caller: Caller<Send>,
    Body(input): Body<ArtifactInput>,
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    for (name, value) in [
        ("artifactId", &input.artifact_id),
        ("subjectId", &input.subject_id),
        ("artifactType", &input.artifact_type),
        ("storageLocation", &input.storage_location),
        ("fileName", &input.file_name),
    ] {
        if value.trim().is_empty() {
            problems.push(format!("{name}: must not be empty"));
        }
    }
    problems.extend(check_texts([
        ("artifactId", Some(input.artifact_id.as_str()), Text::Id),
        ("subjectType", Some(input.subject_type.as_str()), Text::Id),
        ("subjectId", Some(input.subject_id.as_str()), Text::Id),
        ("artifactType", Some(input.artifact_type.as_str()), Text::Id),
        ("mediaType", Some(input.media_type.as_str()), Text::Id),
        ("fileName", Some(input.file_name.as_str()), Text::Name),
        (
            "storageLocation",
            Some(input.storage_location.as_str()),
            Text::Url,
        ),
        ("contentHash", input.content_hash.as_deref(), Text::Id),
    ]));
    if input.size_bytes.is_some_and(|n| n < 0) {
        problems.push("sizeBytes: must not be negative".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    let artifact = Artifact {
        tenant_id: caller.tenant,
        artifact_id: input.artifact_id,
        subject_type: input.subject_type,
        subject_id: input.subject_id,
        artifact_type: input.artifact_type,
        status: input.status.as_str().to_string(),
        content_hash: input.content_hash,
        storage_location: input.storage_location,
        size_bytes: input.size_bytes,
        media_type: input.media_type,
        file_name: input.file_name,
    };
    state
        .intake
        .registry
        .register(&artifact)
        .await
        .map_err(ApiError::unavailable)?;
    Ok((
        StatusCode::CREATED,
        Json(ArtifactRegistered {
            artifact_id: artifact.artifact_id,
            status: input.status,
        }),
    )
        .into_response())
}

/// The proposal command: a quote revision's proposal to a contact or an address (exactly one of
/// `recipientContactId` and `recipientEmail`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "artifactId": "A-1", "recipientEmail": "kim@example.com",
    "deliveryMode": "PORTAL_LINK", "messageNote": "As discussed on Monday."
}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProposalCommand {
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

/// The schema of a [`ProposalCommand`] with what its checks add: exactly one recipient, EMAIL
/// as the only channel, ids without blanks or control characters, a note without a carriage
/// return.
pub struct ProposalBody;

impl utoipa::PartialSchema for ProposalBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        const ID: &str =
            r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$";
        let mut schema = serde_json::to_value(<ProposalCommand as utoipa::PartialSchema>::schema())
            .expect("a schema serialises");
        let fields = &mut schema["properties"];
        for id in ["artifactId", "recipientContactId", "locale", "market"] {
            fields[id]["pattern"] = ID.into();
        }
        fields["recipientEmail"]["format"] = "email".into();
        fields["recipientEmail"]["maxLength"] = 200.into();
        fields["channel"] = serde_json::json!({
            "type": ["string", "null"], "enum": ["EMAIL", null], "description": "Proposals go by EMAIL"
        });
        fields["messageNote"]["maxLength"] = 2000.into();
        fields["messageNote"]["pattern"] = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$".into();
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
        let object: utoipa::openapi::Schema =
            serde_json::from_value(schema).expect("the proposal's schema is a schema");
        let given = |field: &str| {
            ObjectBuilder::new()
                .required(field)
                .property(field, ObjectBuilder::new().schema_type(Type::String))
        };
        // Exactly one recipient: one of the two is a string, not both (oneOf).
        AllOfBuilder::new()
            .item(object)
            .item(
                OneOfBuilder::new()
                    .item(given("recipientEmail"))
                    .item(given("recipientContactId")),
            )
            .into()
    }
}

impl ToSchema for ProposalBody {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        <ProposalCommand as ToSchema>::schemas(schemas);
    }
}

/// The answer to a proposal command: the communication it made (or found).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalAccepted {
    communication_id: CommunicationId,
    status: CommunicationStatus,
    communication_type: CommunicationType,
}

/// `POST /v1/quotes/{quoteId}/revisions/{revisionNo}/communications/proposal` with an
/// `Idempotency-Key`: the same key returns the same communication; the same key with another
/// request is refused.
#[utoipa::path(
    post,
    path = "/v1/quotes/{quoteId}/revisions/{revisionNo}/communications/proposal",
    tag = "commands",
    operation_id = "postProposal",
    security(("apiKey" = ["send"]), ("jwt" = ["send"])),
    params(
        ("quoteId" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$", description = "The quote"),
        ("revisionNo" = i64, Path, minimum = 0, description = "The quote's revision"),
    ),
    request_body = ProposalBody,
    responses(
        (status = 201, description = "The proposal's communication was requested", body = ProposalAccepted),
        (status = 200, description = "The communication this key made before (its lifetime past)", body = ProposalAccepted),
        (status = 404, description = "No send-proposal topic is configured"),
        (status = 409, description = "The document is not available yet; the same request may succeed later"),
        (status = 422, description = "The proposal cannot be made (no template, an unknown contact, …)"),
    )
)]
pub async fn post_proposal(
    State(state): State<ApiState>,
    caller: Caller<Send>,
    headers: HeaderMap,
    PathOf((quote_id, revision)): PathOf<(String, i64)>,
    Body(command): Body<ProposalCommand>,
) -> Result<Response, ApiError> {
    let proposals = state
        .proposals
        .clone()
        .ok_or_else(|| ApiError::not_found("no send-proposal topic is configured"))?;
    let mut problems = Vec::new();
    // The idempotency layer replays a retry's first answer; past the key's lifetime, the same
    // key still names the same communication (the ledger's key derives from it).
    let key = super::idempotency::request_key(&headers)
        .map_err(|e| ApiError::new(ProblemKind::IdempotencyKeyMissing, e.to_string()))?;
    let key = Some(key.as_str());
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
    if command.artifact_id.trim().is_empty() {
        problems.push("artifactId: must not be empty".into());
    }
    if revision < 0 {
        problems.push("revisionNo: must not be negative".into());
    }
    problems.extend(check_texts([
        ("quoteId", Some(quote_id.as_str()), Text::Id),
        ("artifactId", Some(command.artifact_id.as_str()), Text::Id),
        (
            "recipientContactId",
            command.recipient_contact_id.as_deref(),
            Text::Id,
        ),
        (
            "recipientEmail",
            command.recipient_email.as_deref(),
            Text::Id,
        ),
        ("locale", command.locale.as_deref(), Text::Id),
        ("market", command.market.as_deref(), Text::Id),
        ("messageNote", command.message_note.as_deref(), Text::Note),
    ]));
    if let Some(problem) = command
        .recipient_email
        .as_deref()
        .filter(|e| e.trim().parse::<lettre::Address>().is_err())
        .map(|_| "recipientEmail: not a valid email address".to_string())
    {
        problems.push(problem);
    }
    let (Some(key), Some(recipient), true) = (key, recipient, problems.is_empty()) else {
        return Err(ApiError::bad(problems));
    };
    let expected_refs = recipient.recipient_refs(state.intake.keys.recipient_ref.as_ref());
    let input = ProposalInput {
        quote_id: quote_id.clone(),
        revision_no: revision,
        artifact_id: command.artifact_id.trim().to_string(),
        tenant_id: caller.tenant.clone(),
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
            let kind = match err {
                IntakeError::NotYet { .. } => ProblemKind::NotYet,
                IntakeError::Permanent { .. } => ProblemKind::Unprocessable,
                IntakeError::Unavailable { .. } => ProblemKind::Unavailable,
            };
            ApiError::new(kind, err.to_string())
        })?;
    if !outcome.created {
        let ledger = &state.intake.ledger;
        let existing = ledger
            .get(&caller.tenant, outcome.communication_id)
            .await
            .map_err(ApiError::unavailable)?
            .ok_or_else(|| ApiError::internal("a communication just found is gone"))?;
        let artifacts = ledger
            .artifact_ids(outcome.communication_id)
            .await
            .map_err(ApiError::unavailable)?;
        if !expected_refs.contains(&existing.recipient_ref)
            || artifacts != vec![input.artifact_id.clone()]
        {
            return Err(ApiError::new(
                ProblemKind::IdempotencyKeyReused,
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
        Json(ProposalAccepted {
            communication_id: outcome.communication_id,
            status: outcome.status,
            communication_type: CommunicationType::QuoteProposalDelivery,
        }),
    )
        .into_response())
}
