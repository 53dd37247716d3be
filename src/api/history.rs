//! Communication history of the caller's tenant: one communication with its whole history, and
//! lists of them (all, or one quote's), filtered, newest first, in keyset pages. Another
//! tenant's communication or quote answers as one that does not exist.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::history::{Cursor, HistoryFilter, Summary};
use crate::ledger::{Channel, CommunicationId, CommunicationStatus, CommunicationType};

use super::auth::{Caller, Read};
use super::input::{check_texts, PathOf, QueryOf, Text};
use super::problem::ApiError;
use super::ApiState;

/// The page size when the query names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page a query may ask for.
pub const MAX_LIMIT: u32 = 200;

/// A communication id of a path: one that does not parse is a 400.
pub fn communication_id(id: &str) -> Result<CommunicationId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::invalid(vec![super::problem::FieldProblem::at(
            "path:id",
            "not a communication id (a UUID)",
        )])
    })
}

/// `GET /v1/communications/{id}`: the record with its attempts (the provider's summary, never
/// its payloads), the intake's decisions, the documents it carries (id, role, hash of the bytes
/// attached; never a link), its outbox events (type, version, status, times), its children (a
/// fan-out parent's recipients), `resendOf` and the ids of its `resends`. Another tenant's
/// answers 404, as one that does not exist.
#[utoipa::path(
    get,
    path = "/v1/communications/{id}",
    tag = "history",
    operation_id = "getCommunication",
    security(("apiKey" = ["read"]), ("jwt" = ["read"])),
    params(("id" = String, Path, format = Uuid, description = "The communication")),
    responses(
        (status = 200, description = "The communication with its attempts, decisions, artifacts, events, children and resends", body = crate::ledger::history::CommunicationDetail),
        (status = 404, description = "No such communication (or another tenant's)"),
    )
)]
pub async fn get_communication(
    State(state): State<ApiState>,
    caller: Caller<Read>,
    PathOf(id): PathOf<String>,
) -> Result<Response, ApiError> {
    let id = communication_id(&id)?;
    let detail = state
        .intake
        .ledger
        .detail(&caller.tenant, id)
        .await
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ApiError::not_found("no such communication"))?;
    Ok(Json(detail).into_response())
}

/// Declares a history list's query: the filters and page every list takes (`status`, `type`,
/// `channel`, `orderId`, `recipientRef`, `from`, `to`, `limit`, `cursor`), then its own fields.
/// Every parameter is optional; an unknown one, an unknown status, type or channel, a time that
/// is not RFC 3339, a limit outside 1..=200 or a cursor this list did not make is a 400.
macro_rules! history_query {
    ($(#[$meta:meta])* $name:ident { $($(#[$own:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Only communications in this status (`SENT`, `SUPPRESSED`, …).
            #[serde(default)]
            status: Option<CommunicationStatus>,
            /// Only communications of this type (`ORDER_CONFIRMATION`, …).
            #[serde(default, rename = "type")]
            communication_type: Option<CommunicationType>,
            /// Only communications on this channel (`EMAIL`, `IN_APP`, `WEBHOOK`).
            #[serde(default)]
            channel: Option<Channel>,
            /// Only communications of this order.
            #[serde(default)]
            #[param(
                max_length = 200,
                pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
            )]
            order_id: Option<String>,
            /// Only communications to this recipient reference (a contact id, `user:…`, …).
            #[serde(default)]
            #[param(
                max_length = 200,
                pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
            )]
            recipient_ref: Option<String>,
            /// Made at or after this time (RFC 3339).
            #[serde(default)]
            from: Option<DateTime<Utc>>,
            /// Made before this time (RFC 3339).
            #[serde(default)]
            to: Option<DateTime<Utc>>,
            /// Communications per page: 1 to 200, 50 when not given.
            #[serde(default)]
            #[param(minimum = 1, maximum = 200)]
            limit: Option<u32>,
            /// Where the page starts: the `cursor` of the previous page's `next` link.
            #[serde(default)]
            cursor: Option<String>,
            $($(#[$own])* $field: $ty,)*
        }
    };
}

history_query!(
    /// The query of `GET /v1/communications`.
    HistoryQuery {
        /// Only communications of this quote.
        #[serde(default)]
        #[param(
            max_length = 200,
            pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$"
        )]
        quote_id: Option<String>,
    }
);

history_query!(
    /// The query of `GET /v1/quotes/{quoteId}/communications` (the path names the quote).
    QuoteHistoryQuery {}
);

impl From<QuoteHistoryQuery> for HistoryQuery {
    fn from(q: QuoteHistoryQuery) -> HistoryQuery {
        HistoryQuery {
            status: q.status,
            communication_type: q.communication_type,
            channel: q.channel,
            order_id: q.order_id,
            recipient_ref: q.recipient_ref,
            from: q.from,
            to: q.to,
            limit: q.limit,
            cursor: q.cursor,
            quote_id: None,
        }
    }
}

/// A page of communications, newest first; `next` is the path of the next page (same filters)
/// when there may be more, `null` on the last.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationList {
    pub data: Vec<Summary>,
    pub next: Option<String>,
}

/// `GET /v1/communications`: the tenant's communications, filtered by `status`, `type`,
/// `channel`, `quoteId`, `orderId`, `recipientRef`, `from` and `to`, newest first, `limit` at a
/// time; follow `next` for the next page. Every row that existed when the first page was read
/// appears exactly once across the pages, whatever is inserted meanwhile
/// (`ledger::listing` says what holds for rows inserted while paging).
#[utoipa::path(
    get,
    path = "/v1/communications",
    tag = "history",
    operation_id = "listCommunications",
    security(("apiKey" = ["read"]), ("jwt" = ["read"])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of the tenant's communications, newest first", body = CommunicationList),
        (status = 400, description = "A filter, the limit or the cursor is invalid"),
    )
)]
pub async fn list_communications(
    State(state): State<ApiState>,
    caller: Caller<Read>,
    QueryOf(query): QueryOf<HistoryQuery>,
) -> Result<Response, ApiError> {
    list(&state, &caller.tenant, query, None).await
}

/// `GET /v1/quotes/{quoteId}/communications`: the same list for one quote (the records, not
/// provider logs). A quote of another tenant, or one without communications, is an empty list.
#[utoipa::path(
    get,
    path = "/v1/quotes/{quoteId}/communications",
    tag = "history",
    operation_id = "listQuoteCommunications",
    security(("apiKey" = ["read"]), ("jwt" = ["read"])),
    params(
        ("quoteId" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,198}[^\s\x00-\x1f\x7f-\x9f])?$", description = "The quote"),
        QuoteHistoryQuery,
    ),
    responses(
        (status = 200, description = "A page of the quote's communications, newest first", body = CommunicationList),
        (status = 400, description = "A filter, the limit or the cursor is invalid"),
    )
)]
pub async fn list_quote_communications(
    State(state): State<ApiState>,
    caller: Caller<Read>,
    PathOf(quote_id): PathOf<String>,
    QueryOf(query): QueryOf<QuoteHistoryQuery>,
) -> Result<Response, ApiError> {
    let problems = check_texts([("quoteId", Some(quote_id.as_str()), Text::Id)]);
    if !problems.is_empty() {
        return Err(ApiError::bad(problems));
    }
    list(&state, &caller.tenant, query.into(), Some(quote_id)).await
}

async fn list(
    state: &ApiState,
    tenant: &str,
    query: HistoryQuery,
    path_quote: Option<String>,
) -> Result<Response, ApiError> {
    let mut problems = check_texts([
        ("quoteId", query.quote_id.as_deref(), Text::Id),
        ("orderId", query.order_id.as_deref(), Text::Id),
        ("recipientRef", query.recipient_ref.as_deref(), Text::Id),
        ("cursor", query.cursor.as_deref(), Text::Id),
    ]);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        problems.push(format!("limit: from 1 to {MAX_LIMIT}"));
    }
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            problems.push("from: must not be after to".into());
        }
    }
    let after = match query.cursor.as_deref().map(Cursor::parse) {
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
    let filter = HistoryFilter {
        status: query.status,
        communication_type: query.communication_type,
        channel: query.channel,
        quote_id: path_quote.clone().or(query.quote_id.clone()),
        order_id: query.order_id.clone(),
        recipient_ref: query.recipient_ref.clone(),
        from: query.from,
        to: query.to,
        after,
    };
    let page = state
        .intake
        .ledger
        .list(tenant, &filter, limit)
        .await
        .map_err(ApiError::unavailable)?;
    let next = page.next.map(|cursor| {
        let base = match &path_quote {
            Some(quote) => format!("/v1/quotes/{}/communications", path_segment(quote)),
            None => "/v1/communications".to_string(),
        };
        format!("{base}?{}", next_query(&query, limit, &cursor))
    });
    Ok(Json(CommunicationList {
        data: page.data,
        next,
    })
    .into_response())
}

/// The query of the next page: the same filters and limit, and the cursor.
fn next_query(query: &HistoryQuery, limit: u32, cursor: &Cursor) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let mut put = |name: &str, value: Option<&str>| {
        if let Some(value) = value {
            out.append_pair(name, value);
        }
    };
    put("status", query.status.map(|s| s.as_str()));
    put("type", query.communication_type.map(|t| t.as_str()));
    put("channel", query.channel.map(|c| c.as_str()));
    put("quoteId", query.quote_id.as_deref());
    put("orderId", query.order_id.as_deref());
    put("recipientRef", query.recipient_ref.as_deref());
    let from = query.from.map(|t| t.to_rfc3339());
    put("from", from.as_deref());
    let to = query.to.map(|t| t.to_rfc3339());
    put("to", to.as_deref());
    put("limit", Some(&limit.to_string()));
    put("cursor", Some(&cursor.encode()));
    out.finish()
}

/// A path segment, percent-encoded.
fn path_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_keeps_the_filters_and_escapes_them() {
        let cursor = Cursor {
            created_at: Utc::now(),
            id: CommunicationId::new(),
        };
        let query = HistoryQuery {
            status: Some(CommunicationStatus::Sent),
            recipient_ref: Some("a b&c".into()),
            from: Some("2026-12-01T00:00:00+01:00".parse().unwrap()),
            ..HistoryQuery::default()
        };
        let text = next_query(&query, 10, &cursor);
        assert_eq!(
            text,
            format!(
                "status=SENT&recipientRef=a+b%26c&from=2026-11-30T23%3A00%3A00%2B00%3A00&limit=10&cursor={}",
                cursor.encode()
            )
        );
        let uri: axum::http::Uri = format!("/v1/communications?{text}").parse().unwrap();
        let parsed = axum::extract::Query::<HistoryQuery>::try_from_uri(&uri)
            .unwrap()
            .0;
        assert_eq!(parsed.recipient_ref.as_deref(), Some("a b&c"));
        assert_eq!(parsed.from, query.from);
        assert_eq!(path_segment("Q 1/2"), "Q%201%2F2");
    }
}
