//! Communication history of the caller's tenant.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::ledger::CommunicationId;

use super::auth::{Caller, Read};
use super::input::PathOf;
use super::problem::ApiError;
use super::ApiState;

/// A communication id of a path: one that does not parse is a 400.
pub fn communication_id(id: &str) -> Result<CommunicationId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad(vec!["id: not a communication id (a UUID)".into()]))
}

/// `GET /v1/communications/{id}`: the record with its attempts, its policy decisions and (for a
/// parent) its children. Another tenant's answers 404, as one that does not exist.
#[utoipa::path(
    get,
    path = "/v1/communications/{id}",
    tag = "history",
    operation_id = "getCommunication",
    security(("apiKey" = ["read"]), ("jwt" = ["read"])),
    params(("id" = String, Path, format = Uuid, description = "The communication")),
    responses(
        (status = 200, description = "The communication with its attempts, decisions and children", body = Object),
        (status = 400, description = "The id is not a communication id"),
        (status = 404, description = "No such communication (or another tenant's)"),
    )
)]
pub async fn get_communication(
    State(state): State<ApiState>,
    caller: Caller<Read>,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let id = communication_id(&id)?;
    let ledger = &state.intake.ledger;
    let view = ledger
        .get(&caller.tenant, id)
        .await
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ApiError::not_found("no such communication"))?;
    let children = ledger
        .children(&caller.tenant, id)
        .await
        .map_err(ApiError::unavailable)?;
    let decisions = ledger.decisions(id).await.map_err(ApiError::unavailable)?;
    let mut body = serde_json::to_value(&view).map_err(ApiError::internal)?;
    body["decisions"] = serde_json::to_value(decisions).map_err(ApiError::internal)?;
    body["children"] = serde_json::to_value(children).map_err(ApiError::internal)?;
    Ok(Json(body).into_response())
}
