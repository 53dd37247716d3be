//! The suppression list of the caller's tenant (scope operate): addresses herald does not send
//! to, by their hash only (an address given is hashed at once, the way the policy check hashes
//! it, and never kept or answered). The global entries (tenant `*`) are not a tenant's: it
//! neither lists nor deletes them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::ledger::suppression::{SuppressionCursor, SuppressionEntry};

use super::auth::{Caller, Operate};
use super::history::{DEFAULT_LIMIT, MAX_LIMIT};
use super::input::{check_texts, Body, PathOf, QueryOf, Text};
use super::problem::ApiError;
use super::ApiState;

/// The pattern of an address hash: the SHA-256 of the address, in lower-case hex.
const HASH: &str = "^[0-9a-f]{64}$";

/// The query of `GET /v1/suppressions`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuppressionQuery {
    /// Entries per page: 1 to 200, 50 when not given.
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// Where the page starts: the `cursor` of the previous page's `next` link.
    #[serde(default)]
    cursor: Option<String>,
}

/// A page of the suppression list, newest first; `next` is the path of the next page when
/// there may be more, `null` on the last.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionList {
    pub data: Vec<SuppressionEntry>,
    pub next: Option<String>,
}

/// `GET /v1/suppressions`: the tenant's suppressed addresses (their hashes, never an address),
/// why and since when, newest first, `limit` at a time; follow `next` for the next page.
#[utoipa::path(
    get,
    path = "/v1/suppressions",
    tag = "suppressions",
    operation_id = "listSuppressions",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    params(SuppressionQuery),
    responses(
        (status = 200, description = "A page of the tenant's suppression list, newest first", body = SuppressionList),
        (status = 400, description = "The limit or the cursor is invalid"),
    )
)]
pub async fn list_suppressions(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    QueryOf(query): QueryOf<SuppressionQuery>,
) -> Result<Response, ApiError> {
    let mut problems = check_texts([("cursor", query.cursor.as_deref(), Text::Id)]);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        problems.push(format!("limit: from 1 to {MAX_LIMIT}"));
    }
    let after = match query.cursor.as_deref().map(SuppressionCursor::parse) {
        Some(Err(e)) => {
            problems.push(e.to_string());
            None
        }
        Some(Ok(cursor)) => Some(cursor),
        None => None,
    };
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    let page = state
        .intake
        .ledger
        .suppressions(&caller.tenant, after.as_ref(), limit)
        .await
        .map_err(ApiError::unavailable)?;
    let next = page.next.map(|cursor| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("limit", &limit.to_string())
            .append_pair("cursor", &cursor.encode())
            .finish();
        format!("/v1/suppressions?{query}")
    });
    Ok(Json(SuppressionList {
        data: page.data,
        next,
    })
    .into_response())
}

/// An address to suppress, and why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuppressionInput {
    /// The address; herald keeps only its hash.
    #[schema(max_length = 200, format = Email)]
    email: String,
    /// Why it is suppressed, as the list shows it.
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    reason: String,
}

/// `POST /v1/suppressions` with an `Idempotency-Key` (scope operate): the address is not sent
/// to again by the tenant (the policy check makes its communications SUPPRESSED, code
/// `ADDRESS_SUPPRESSED`). The answer names its hash; an address already on the list keeps its
/// first reason and time (200).
#[utoipa::path(
    post,
    path = "/v1/suppressions",
    tag = "suppressions",
    operation_id = "postSuppression",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    request_body = SuppressionInput,
    responses(
        (status = 201, description = "The address is on the list now", body = SuppressionEntry),
        (status = 200, description = "The address was on the list already", body = SuppressionEntry),
    )
)]
pub async fn post_suppression(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    Body(input): Body<SuppressionInput>,
) -> Result<Response, ApiError> {
    let mut problems = check_texts([
        ("email", Some(input.email.as_str()), Text::Id),
        ("reason", Some(input.reason.as_str()), Text::Name),
    ]);
    if input.email.parse::<lettre::Address>().is_err() {
        problems.push("email: not a valid email address".into());
    }
    if input.reason.trim().is_empty() {
        problems.push("reason: must not be empty".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    let hash = crate::policy::hash_address(&input.email);
    let (entry, created) = state
        .intake
        .ledger
        .suppress(&caller.tenant, &hash, input.reason.trim())
        .await
        .map_err(ApiError::unavailable)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)).into_response())
}

/// `DELETE /v1/suppressions/{addressHash}` (scope operate): the tenant sends to the address
/// again (unless a global entry or another check stops it). A hash the tenant has no entry
/// for, a global one among them, answers 404.
#[utoipa::path(
    delete,
    path = "/v1/suppressions/{addressHash}",
    tag = "suppressions",
    operation_id = "deleteSuppression",
    security(("apiKey" = ["operate"]), ("jwt" = ["operate"])),
    params(("addressHash" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The entry's addressHash")),
    responses(
        (status = 204, description = "The entry is gone"),
        (status = 404, description = "The tenant has no entry for this hash"),
    )
)]
pub async fn delete_suppression(
    State(state): State<ApiState>,
    caller: Caller<Operate>,
    PathOf(hash): PathOf<String>,
) -> Result<Response, ApiError> {
    if !is_address_hash(&hash) {
        return Err(ApiError::bad(vec![format!(
            "addressHash: not an address hash ({HASH})"
        )]));
    }
    let deleted = state
        .intake
        .ledger
        .unsuppress(&caller.tenant, &hash)
        .await
        .map_err(ApiError::unavailable)?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(
            "the tenant has no suppression of this address",
        ))
    }
}

/// 64 lower-case hex digits.
fn is_address_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_hash_is_what_the_policy_check_makes() {
        let hash = crate::policy::hash_address(" Kim@Example.com ");
        assert!(is_address_hash(&hash));
        assert!(!is_address_hash(&hash.to_uppercase()));
        assert!(!is_address_hash(&hash[1..]));
        assert!(!is_address_hash("kim@example.com"));
    }
}
