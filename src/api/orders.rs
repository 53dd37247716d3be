//! Commands about orders and fallout cases: an order confirmation to a contact or an address,
//! and a manual escalation of a fallout case to a group. Both go through the rules the events
//! use (template family, payload, channels, policy); a refused recipient is the communication's
//! business status (SUPPRESSED, FAILED_FINAL), never an error.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::intake::commands::{Escalation, OrderConfirmation};
use crate::intake::events::EventError;
use crate::intake::proposal::RecipientInput;
use crate::ledger::{CommunicationId, CommunicationStatus, CommunicationType, RequestOutcome};

use super::auth::{Caller, Send};
use super::input::{check_texts, Body, PathOf, Text};
use super::problem::{ApiError, ProblemKind};
use super::ApiState;

/// The order confirmation command: to a contact of the directory or an explicit address.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderConfirmationCommand {
    /// The contact of the directory to confirm to (this or `recipientEmail`).
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    recipient_contact_id: Option<String>,
    /// The address to confirm to (this or `recipientContactId`).
    #[serde(default)]
    #[schema(max_length = 200, format = Email)]
    recipient_email: Option<String>,
    /// The order number the customer sees; the order id when not given.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    order_number: Option<String>,
    /// The locale of the message when the recipient has none (`en`, `de`).
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    locale: Option<String>,
    /// The market whose template version wins (`DE`, `CH`); the contact's when not given.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    market: Option<String>,
}

super::spec::recipient_body!(
    /// The schema of [`OrderConfirmationCommand`] with what its check adds: exactly one recipient.
    OrderConfirmationBody,
    OrderConfirmationCommand,
    exactly = true
);

/// The manual escalation of a fallout case.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscalationCommand {
    /// The Camunda group whose members are told (`operations`): a group of the caller's tenant
    /// in the engine.
    #[schema(
        max_length = 200,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    group: String,
    /// The escalation level, from 1 (the same case, group and level is one escalation).
    #[schema(minimum = 1)]
    level: u32,
    /// Why the case is escalated, as the operators read it.
    #[schema(
        max_length = 2000,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    reason: String,
    /// A note added to the reason.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    note: Option<String>,
    /// The order number of the case, when there is one.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    order_number: Option<String>,
}

/// What a command made: its communication (201), or the one its key named before (200).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandAnswer {
    pub communication_id: CommunicationId,
    pub status: CommunicationStatus,
    pub communication_type: CommunicationType,
}

pub(super) fn answer(outcome: RequestOutcome, kind: CommunicationType) -> Response {
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(CommandAnswer {
            communication_id: outcome.communication_id,
            status: outcome.status,
            communication_type: kind,
        }),
    )
        .into_response()
}

fn command_error(err: EventError) -> ApiError {
    match err {
        EventError::Invalid(m) => ApiError::bad(vec![m]),
        EventError::Rule(m) => ApiError::new(ProblemKind::Unprocessable, m),
        EventError::Unavailable(m) => ApiError::unavailable(m),
    }
}

/// The one recipient of a command (`recipientEmail` or `recipientContactId`), checked.
pub(super) fn one_recipient(
    email: Option<&str>,
    contact: Option<&str>,
    problems: &mut Vec<String>,
) -> Option<RecipientInput> {
    problems.extend(check_texts([
        ("recipientContactId", contact, Text::Id),
        ("recipientEmail", email, Text::Id),
    ]));
    match (email, contact) {
        (Some(email), None) => {
            if email.trim().parse::<lettre::Address>().is_err() {
                problems.push("recipientEmail: not a valid email address".into());
            }
            Some(RecipientInput::Email(email.trim().to_string()))
        }
        (None, Some(contact)) if !contact.trim().is_empty() => {
            Some(RecipientInput::Contact(contact.trim().to_string()))
        }
        (None, Some(_)) => {
            problems.push("recipientContactId: must not be empty".into());
            None
        }
        _ => None,
    }
}

/// `POST /v1/orders/{orderId}/communications/confirmation` with an `Idempotency-Key`: the
/// order's confirmation to a contact or an address, with the template family and policy of the
/// confirmations that `OrderCreated` events make. The ledger's key is
/// `order-confirmation:{orderId}:{recipientRef}:v1` scoped with the `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/v1/orders/{orderId}/communications/confirmation",
    tag = "commands",
    operation_id = "postOrderConfirmation",
    security(("apiKey" = ["send"]), ("jwt" = ["send"])),
    params(("orderId" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$", description = "The order")),
    request_body = OrderConfirmationBody,
    responses(
        (status = 201, description = "The confirmation's communication was requested", body = CommandAnswer),
        (status = 200, description = "The communication this key made before (its lifetime past)", body = CommandAnswer),
        (status = 422, description = "The confirmation cannot be made (an unknown contact, no rule, …)"),
    )
)]
pub async fn post_order_confirmation(
    State(state): State<ApiState>,
    caller: Caller<Send>,
    headers: HeaderMap,
    PathOf(order_id): PathOf<String>,
    Body(command): Body<OrderConfirmationCommand>,
) -> Result<Response, ApiError> {
    let key = super::idempotency::request_key(&headers)
        .map_err(|e| ApiError::new(ProblemKind::IdempotencyKeyMissing, e.to_string()))?;
    let mut problems = check_texts([
        ("orderId", Some(order_id.as_str()), Text::Id),
        ("orderNumber", command.order_number.as_deref(), Text::Id),
        ("locale", command.locale.as_deref(), Text::Id),
        ("market", command.market.as_deref(), Text::Id),
    ]);
    let recipient = one_recipient(
        command.recipient_email.as_deref(),
        command.recipient_contact_id.as_deref(),
        &mut problems,
    );
    if recipient.is_none() && problems.is_empty() {
        problems.push("give exactly one of recipientEmail and recipientContactId".into());
    }
    let (Some(recipient), true) = (recipient, problems.is_empty()) else {
        return Err(ApiError::bad(problems));
    };
    let command = OrderConfirmation {
        tenant_id: caller.tenant,
        order_id,
        order_number: command.order_number,
        recipient,
        locale: command.locale,
        market: command.market,
        request_key: key,
    };
    let outcome = state
        .intake
        .order_confirmation(&state.rules, &command)
        .await
        .map_err(command_error)?;
    Ok(answer(outcome, CommunicationType::OrderConfirmation))
}

/// `POST /v1/fallout/{caseId}/escalations` with an `Idempotency-Key`: a manual escalation of a
/// fallout case to the members of a Camunda group, at a level, with the template family and
/// policy of the fallout alerts that `FalloutCaseOpened` events make. The answer is the parent
/// communication (its children are the members' messages, one per member and channel); its key
/// is `fallout-alert:{falloutCaseId}:{recipientGroup}:{escalationLevel}:v1`, so the same
/// escalation asked for again is the same communication (200). The group must be one of the
/// caller's tenant in the engine (a tenant-group membership in Camunda's identity service):
/// another tenant's group answers as one that does not exist (422).
#[utoipa::path(
    post,
    path = "/v1/fallout/{caseId}/escalations",
    tag = "commands",
    operation_id = "postEscalation",
    security(("apiKey" = ["send"]), ("jwt" = ["send"])),
    params(("caseId" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$", description = "The fallout case")),
    request_body = EscalationCommand,
    responses(
        (status = 201, description = "The escalation's communication (a parent of one per member and channel) was requested", body = CommandAnswer),
        (status = 200, description = "The same case, group and level was escalated before", body = CommandAnswer),
        (status = 422, description = "The escalation cannot be made (no group of the tenant of that name, no rule, …)"),
    )
)]
pub async fn post_escalation(
    State(state): State<ApiState>,
    caller: Caller<Send>,
    PathOf(case_id): PathOf<String>,
    Body(command): Body<EscalationCommand>,
) -> Result<Response, ApiError> {
    let mut problems = check_texts([
        ("caseId", Some(case_id.as_str()), Text::Id),
        ("group", Some(command.group.as_str()), Text::Id),
        ("reason", Some(command.reason.as_str()), Text::Note),
        ("note", command.note.as_deref(), Text::Note),
        ("orderNumber", command.order_number.as_deref(), Text::Id),
    ]);
    if command.group.is_empty() {
        problems.push("group: must not be empty".into());
    }
    if command.reason.trim().is_empty() {
        problems.push("reason: must not be empty".into());
    }
    if !(1..=99).contains(&command.level) {
        problems.push("level: from 1 to 99".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    let mut reason = crate::templates::sanitize_note(&command.reason);
    if let Some(note) = command
        .note
        .as_deref()
        .map(crate::templates::sanitize_note)
        .filter(|n| !n.is_empty())
    {
        reason = format!("{reason}\n{note}");
    }
    let command = Escalation {
        tenant_id: caller.tenant,
        case_id,
        group: command.group,
        level: command.level,
        reason,
        order_number: command.order_number,
    };
    let outcome = state
        .intake
        .escalation(&state.rules, &command)
        .await
        .map_err(command_error)?;
    Ok(answer(outcome, CommunicationType::FalloutAlert))
}
