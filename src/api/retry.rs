//! `POST /v1/communications/{id}/retry`: a FAILED_RETRYABLE communication's next attempt now.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::ledger::retry::RetryError;
use crate::ledger::{CommunicationId, CommunicationStatus};

use super::auth::{Caller, Operate};
use super::history::communication_id;
use super::input::PathOf;
use super::problem::{ApiError, ProblemKind};
use super::ApiState;

/// A retry taken in: the communication, and its status now (FAILED_RETRYABLE until a sender
/// takes it, within moments).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryAnswer {
    pub communication_id: CommunicationId,
    pub status: CommunicationStatus,
}

/// `POST /v1/communications/{id}/retry` with an `Idempotency-Key` (scope operate): the next
/// attempt of a FAILED_RETRYABLE communication is due now instead of at the end of its back-off
/// (the delivery loops are woken at once). The same record, its attempts numbered on: no new
/// communication, and no attempt beyond the one its retry schedule had left. Another status is
/// 409 (FAILED_FINAL: resend it; SENT: nothing to retry); another tenant's communication
/// answers 404, as one that does not exist.
#[utoipa::path(
    post,
    path = "/v1/communications/{id}/retry",
    tag = "commands",
    operation_id = "postRetry",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    params(("id" = String, Path, format = Uuid, description = "The communication")),
    responses(
        (status = 202, description = "The next attempt is due now", body = RetryAnswer),
        (status = 400, description = "The id is not a communication id"),
        (status = 404, description = "No such communication (or another tenant's)"),
        (status = 409, description = "The communication is not FAILED_RETRYABLE (FAILED_FINAL: resend it; SENT: nothing to retry), or an attempt is under way"),
    )
)]
pub async fn post_retry(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let id = communication_id(&id)?;
    let status = state
        .intake
        .ledger
        .retry_now(&caller.tenant, id)
        .await
        .map_err(|err| match err {
            RetryError::NotFound(_) => ApiError::not_found("no such communication"),
            RetryError::Refused(m) => ApiError::new(ProblemKind::Conflict, m),
            RetryError::Ledger(e) => ApiError::unavailable(e),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryAnswer {
            communication_id: id,
            status,
        }),
    )
        .into_response())
}
