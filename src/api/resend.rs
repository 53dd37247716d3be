//! `POST /v1/communications/{id}/resend`: a new record linked to the original.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use crate::intake::resend::{ResendError, ResendInput};
use crate::intake::IntakeError;

use super::auth::{Caller, Operate};
use super::history::communication_id;
use super::input::{check_texts, Body, PathOf, Text};
use super::orders::{answer, one_recipient};
use super::problem::{ApiError, ProblemKind};
use super::ApiState;

/// A resend: to the original's recipient unless one is given, with an optional reason.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResendCommand {
    /// Another address to send to (at most one of this and `recipientContactId`).
    #[serde(default)]
    #[schema(max_length = 200, format = Email)]
    recipient_email: Option<String>,
    /// Another contact of the directory to send to.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    recipient_contact_id: Option<String>,
    /// Why it is resent, as history shows it.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    reason: Option<String>,
}

super::spec::recipient_body!(
    /// The schema of [`ResendCommand`] with what its check adds: at most one recipient.
    ResendBody,
    ResendCommand,
    exactly = false
);

/// `POST /v1/communications/{id}/resend` with an `Idempotency-Key` (scope operate): a new
/// communication linked to the original (`resendOf` in its history, listed in the original's
/// `resends`), to the same recipient unless `recipientEmail` or `recipientContactId` names
/// another. Policy applies again: a suppressed recipient makes a SUPPRESSED resend, not an
/// error. Its ledger key is `resend:{id}:api:{Idempotency-Key}`. A proposal is made again (a
/// fresh portal link); another communication is resent with its content, kept sealed for
/// `delivery.resend_window` after its delivery ended (409 once only its hash is kept); a
/// webhook is replayed instead (409). Another tenant's communication answers 404, as one that
/// does not exist.
#[utoipa::path(
    post,
    path = "/v1/communications/{id}/resend",
    tag = "commands",
    operation_id = "postResend",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    params(("id" = String, Path, format = Uuid, description = "The original communication")),
    request_body = ResendBody,
    responses(
        (status = 201, description = "The resend's communication was requested", body = super::orders::CommandAnswer),
        (status = 200, description = "The resend this key made before (its lifetime past)", body = super::orders::CommandAnswer),
        (status = 404, description = "No such communication (or another tenant's)"),
        (status = 409, description = "The communication cannot be resent (its content is no longer kept, or a webhook: replay it)"),
    )
)]
pub async fn post_resend(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    headers: HeaderMap,
    PathOf(id): PathOf<String>,
    Body(command): Body<ResendCommand>,
) -> Result<Response, ApiError> {
    let id = communication_id(&id)?;
    let key = super::idempotency::request_key(&headers)
        .map_err(|e| ApiError::new(ProblemKind::IdempotencyKeyMissing, e.to_string()))?;
    let mut problems = check_texts([("reason", command.reason.as_deref(), Text::Note)]);
    let recipient = one_recipient(
        command.recipient_email.as_deref(),
        command.recipient_contact_id.as_deref(),
        &mut problems,
    );
    if command.recipient_email.is_some() && command.recipient_contact_id.is_some() {
        problems.push("give at most one of recipientEmail and recipientContactId".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    let input = ResendInput {
        tenant_id: caller.tenant,
        original: id,
        recipient,
        reason: command
            .reason
            .as_deref()
            .map(crate::templates::sanitize_note)
            .filter(|r| !r.is_empty()),
        key: format!("resend:{id}:api:{key}"),
    };
    let outcome = state
        .intake
        .resend(state.proposals.as_deref(), &input)
        .await
        .map_err(|err| match err {
            ResendError::NotFound => ApiError::not_found("no such communication"),
            ResendError::Refused(m) => ApiError::new(ProblemKind::Conflict, m),
            ResendError::Intake(e) => {
                let kind = match e {
                    IntakeError::NotYet { .. } => ProblemKind::NotYet,
                    IntakeError::Permanent { .. } => ProblemKind::Unprocessable,
                    IntakeError::Unavailable { .. } => ProblemKind::Unavailable,
                };
                ApiError::new(kind, e.to_string())
            }
        })?;
    let kind = state
        .intake
        .ledger
        .get(&input.tenant_id, outcome.communication_id)
        .await
        .map_err(ApiError::unavailable)?
        .map(|v| v.communication_type)
        .ok_or_else(|| ApiError::internal("a communication just made is gone"))?;
    Ok(answer(outcome, kind))
}
