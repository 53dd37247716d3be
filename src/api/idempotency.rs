//! The HTTP `Idempotency-Key` of the POST commands (draft-ietf-httpapi-idempotency-key-header,
//! with Stripe's conventions where the draft is silent): a middleware that the router puts on
//! the routes that need it.
//!
//! Per tenant (the [`Scope`] the auth layer inserts before this layer runs) and key, the store
//! keeps a fingerprint of the first request (SHA-256 of credential, method, path with query and body)
//! and, once it ran, its response. A retry with the same key and fingerprint gets that response
//! byte for byte (same status, content type and body) with `Idempotent-Replayed: true`, and the
//! handler does not run again; the same key with another fingerprint is 422; the same key while
//! the first request still runs is 409. Only a success (2xx) is kept: every other answer of
//! herald's API wrote nothing (bad input, not found, not yet, a failed dependency), so its key
//! is released and the client may retry with it, corrected or later. A key lives for the store's TTL (24 h by default);
//! after that it counts as unknown. A herald that crashed mid-request leaves its key in flight
//! until the lease it renews while the handler runs runs out; a retry then takes the key over.
//! The table is `api_idempotency` (`migrations/20261202000020_api_idempotency.sql`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

mod store;

use super::problem::{ApiError, FieldProblem, ProblemKind};
pub use store::IdempotencyStore;
use store::{Claim, IdempotencyError, KeyState, StoredResponse};

/// The request header that carries the key.
pub const KEY_HEADER: &str = "Idempotency-Key";
/// The response header that marks a replayed response.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// The longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// The tenant a request acts for: the auth layer inserts it as a request extension before the
/// idempotency layer runs. Keys of different tenants never meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub tenant: String,
    /// The credential that made the request (`key:<id>`, `jwt:<subject>`): part of the
    /// fingerprint, so that a stored answer is replayed only to the credential that got it
    /// (another one, perhaps of fewer scopes, gets 422).
    pub credential: String,
}

/// Why a request's `Idempotency-Key` header is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Idempotency-Key header is required on this command")]
    Missing,
    #[error("the Idempotency-Key header is given more than once")]
    Repeated,
    #[error("the Idempotency-Key header is empty")]
    Empty,
    #[error("the Idempotency-Key header has {0} characters; at most 255")]
    TooLong(usize),
    #[error("the Idempotency-Key header is not a string: printable ASCII, bare or as a quoted structured-field string")]
    Malformed,
}

/// The key of a request: the header's value, bare (`abc-123`, as Stripe's clients send it) or
/// as the draft's structured-field string (`"abc-123"`, unquoted here, so both name one key).
pub fn request_key(headers: &HeaderMap) -> Result<String, KeyError> {
    let mut values = headers.get_all(KEY_HEADER).iter();
    let value = values.next().ok_or(KeyError::Missing)?;
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    let text = value.to_str().map_err(|_| KeyError::Malformed)?.trim();
    let key = match text.strip_prefix('"') {
        Some(quoted) => unquote(quoted)?,
        None if text.contains('"') => return Err(KeyError::Malformed),
        None => text.to_string(),
    };
    if key.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(KeyError::Malformed);
    }
    match key.chars().count() {
        0 => Err(KeyError::Empty),
        n if n > MAX_KEY_CHARS => Err(KeyError::TooLong(n)),
        _ => Ok(key),
    }
}

/// The inside of an sf-string (RFC 8941 §3.3.3) after its opening quote.
fn unquote(rest: &str) -> Result<String, KeyError> {
    let mut key = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => key.push(escaped),
                _ => return Err(KeyError::Malformed),
            },
            '"' if chars.as_str().is_empty() => return Ok(key),
            '"' => return Err(KeyError::Malformed),
            other => key.push(other),
        }
    }
    Err(KeyError::Malformed)
}

/// SHA-256 over the method, the path with its query and the body bytes (the first two cannot
/// hold a line feed, so the framing is unambiguous).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(credential: &str, method: &Method, path_and_query: &str, body: &[u8]) -> Fingerprint {
        let mut hash = Sha256::new();
        hash.update(credential.as_bytes());
        hash.update(b"\n");
        hash.update(method.as_str().as_bytes());
        hash.update(b"\n");
        hash.update(path_and_query.as_bytes());
        hash.update(b"\n");
        hash.update(body);
        Fingerprint(hash.finalize().into())
    }
}

/// Whether the handler's response is kept for replay: a success only. Any other answer wrote
/// nothing, and may change when the client retries (a document that is available by then, a
/// body or Content-Type corrected, a database back up).
pub fn keeps(status: StatusCode) -> bool {
    status.is_success()
}

/// The middleware (`axum::middleware::from_fn_with_state(store, idempotency::layer)`).
pub async fn layer(
    State(store): State<IdempotencyStore>,
    request: Request,
    next: Next,
) -> Response {
    match idempotent(&store, request, next).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn idempotent(
    store: &IdempotencyStore,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(scope) = request.extensions().get::<Scope>().cloned() else {
        tracing::error!(
            path = request.uri().path(),
            "an idempotent route without a tenant scope: the auth layer must insert it first"
        );
        return Err(ApiError::internal(
            "an idempotent route without a tenant scope; nothing was done",
        ));
    };
    let key = request_key(request.headers()).map_err(|e| {
        let mut err = ApiError::new(ProblemKind::IdempotencyKeyMissing, e.to_string());
        err.errors = vec![FieldProblem::at("header:Idempotency-Key", e.to_string())];
        err
    })?;
    let (parts, body) = request.into_parts();
    let body = read_body(body, store.body_limit).await?;
    // The path as the client sent it (a nested router sees its own part only).
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let fingerprint = Fingerprint::of(&scope.credential, &parts.method, path, &body);
    store.purge_now_and_then();
    let unavailable = |err: IdempotencyError| match err {
        IdempotencyError::Database(err) => ApiError::unavailable(err),
        corrupt @ IdempotencyError::Corrupt(_) => {
            tracing::error!(error = %corrupt, "idempotency key unreadable");
            ApiError::internal("the stored Idempotency-Key is unreadable; nothing was done")
        }
    };
    // A key released between the two looks of a claim is claimed again; twice is plenty.
    for _ in 0..3 {
        match store
            .claim(&scope, &key, &fingerprint)
            .await
            .map_err(unavailable)?
        {
            Claim::Taken { claim_id, reused } => {
                if reused {
                    tracing::info!(tenant = %scope.tenant, "an expired Idempotency-Key, or one whose request's lease ran out, is used again");
                }
                let request = Request::from_parts(parts, Body::from(body));
                return Ok(run_holding(store, &scope, &key, claim_id, request, next).await);
            }
            Claim::Held {
                fingerprint: held, ..
            } if held != fingerprint => {
                return Err(ApiError::new(
                    ProblemKind::IdempotencyKeyReused,
                    "this Idempotency-Key was used for another request (another method, path or body); use a new key",
                ))
            }
            Claim::Held {
                state: KeyState::InFlight,
                ..
            } => {
                return Err(ApiError::new(
                    ProblemKind::IdempotencyKeyInFlight,
                    "the first request with this Idempotency-Key is still being processed; retry later",
                ))
            }
            Claim::Held {
                response: Some(response),
                ..
            } => return Ok(response.replay()),
            Claim::Held { response: None, .. } => {
                return Err(unavailable(IdempotencyError::Corrupt(
                    "a done key without a response".into(),
                )))
            }
            Claim::Gone => continue,
        }
    }
    Err(ApiError::new(
        ProblemKind::Unavailable,
        "the Idempotency-Key is being released by a failed request; try again",
    ))
}

/// Reads the body up to `limit` bytes: 413 beyond, 400 when it cannot be read.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            ProblemKind::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes; nothing was done"),
        )),
        Err(err) => Err(ApiError::bad(vec![format!(
            "the request body could not be read: {err}"
        )])),
    }
}

/// Runs the handler while holding the key (renewing its lease), then stores its response or
/// releases the key.
async fn run_holding(
    store: &IdempotencyStore,
    scope: &Scope,
    key: &str,
    claim_id: Uuid,
    request: Request,
    next: Next,
) -> Response {
    let handler = next.run(request);
    tokio::pin!(handler);
    let mut renewal = tokio::time::interval((store.lease / 3).max(Duration::from_millis(100)));
    renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renewal.tick().await;
    let response = loop {
        tokio::select! {
            response = &mut handler => break response,
            _ = renewal.tick() => match store.renew(scope, key, claim_id).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(tenant = %scope.tenant, "a request lost its Idempotency-Key to a retry (its lease ran out)"),
                Err(err) => tracing::warn!(error = %err, "renewing an Idempotency-Key's lease failed"),
            },
        }
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::error!(error = %err, "a handler's response body failed; the key is released");
            if let Err(err) = store.release(scope, key, claim_id).await {
                tracing::warn!(error = %err, "releasing an Idempotency-Key failed; its lease frees it");
            }
            return ApiError::internal(
                "the response could not be produced; retry with the same key",
            )
            .into_response();
        }
    };
    if keeps(parts.status) {
        let stored = StoredResponse {
            status: parts.status,
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            body: body.clone(),
        };
        match store.store(scope, key, claim_id, &stored).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(tenant = %scope.tenant, "a response was not stored: a retry took its Idempotency-Key over")
            }
            // The command ran: its answer goes out; a retry after the lease runs it again.
            Err(err) => {
                tracing::warn!(error = %err, "storing a response under its Idempotency-Key failed")
            }
        }
    } else if let Err(err) = store.release(scope, key, claim_id).await {
        tracing::warn!(error = %err, "releasing an Idempotency-Key failed; its lease frees it");
    }
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(KEY_HEADER, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_key_is_taken_bare_or_as_a_structured_field_string() {
        assert_eq!(request_key(&headers(&["abc-123"])), Ok("abc-123".into()));
        assert_eq!(request_key(&headers(&["  abc-123 "])), Ok("abc-123".into()));
        assert_eq!(
            request_key(&headers(&["\"8e03978e-40d5-43e8-bc93-6894a57f9324\""])),
            Ok("8e03978e-40d5-43e8-bc93-6894a57f9324".into())
        );
        assert_eq!(
            request_key(&headers(&[r#""say \"hi\" \\ bye""#])),
            Ok(r#"say "hi" \ bye"#.into())
        );
        let longest = "k".repeat(MAX_KEY_CHARS);
        assert_eq!(request_key(&headers(&[&longest])), Ok(longest.clone()));
    }

    #[test]
    fn a_missing_empty_long_repeated_or_malformed_key_is_refused() {
        assert_eq!(request_key(&HeaderMap::new()), Err(KeyError::Missing));
        assert_eq!(request_key(&headers(&[""])), Err(KeyError::Empty));
        assert_eq!(request_key(&headers(&["   "])), Err(KeyError::Empty));
        assert_eq!(request_key(&headers(&["\"\""])), Err(KeyError::Empty));
        assert_eq!(
            request_key(&headers(&[&"k".repeat(MAX_KEY_CHARS + 1)])),
            Err(KeyError::TooLong(256))
        );
        assert_eq!(request_key(&headers(&["a", "b"])), Err(KeyError::Repeated));
        for malformed in [
            "\"open",
            "\"a\"b\"",
            "a\"b",
            r#""bad \n escape""#,
            "tab\there",
        ] {
            assert_eq!(
                request_key(&headers(&[malformed])),
                Err(KeyError::Malformed),
                "{malformed}"
            );
        }
        let mut non_ascii = HeaderMap::new();
        non_ascii.insert(KEY_HEADER, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(request_key(&non_ascii), Err(KeyError::Malformed));
    }

    #[test]
    fn the_fingerprint_covers_method_path_query_and_body() {
        let base = Fingerprint::of(
            "key:k",
            &Method::POST,
            "/quotes/Q/revisions/4",
            b"{\"a\":1}",
        );
        assert_eq!(
            base,
            Fingerprint::of(
                "key:k",
                &Method::POST,
                "/quotes/Q/revisions/4",
                b"{\"a\":1}"
            )
        );
        for other in [
            Fingerprint::of("key:k", &Method::PUT, "/quotes/Q/revisions/4", b"{\"a\":1}"),
            Fingerprint::of(
                "key:k",
                &Method::POST,
                "/quotes/Q/revisions/5",
                b"{\"a\":1}",
            ),
            Fingerprint::of(
                "key:k",
                &Method::POST,
                "/quotes/Q/revisions/4?x=1",
                b"{\"a\":1}",
            ),
            Fingerprint::of(
                "key:k",
                &Method::POST,
                "/quotes/Q/revisions/4",
                b"{\"a\": 1}",
            ),
            // The framing keeps path and body apart.
            Fingerprint::of(
                "key:k",
                &Method::POST,
                "/quotes/Q/revisions/4\n{",
                b"\"a\":1}",
            ),
            // Another credential's request is another request.
            Fingerprint::of(
                "key:other",
                &Method::POST,
                "/quotes/Q/revisions/4",
                b"{\"a\":1}",
            ),
        ] {
            assert_ne!(base, other);
        }
        // SHA-256 of "key:k\nPOST\n/p\n".
        assert_eq!(
            hex::encode(Fingerprint::of("key:k", &Method::POST, "/p", b"").0),
            hex::encode(Sha256::digest(b"key:k\nPOST\n/p\n"))
        );
    }

    #[test]
    fn only_successes_are_kept() {
        for kept in [200, 201, 202] {
            assert!(keeps(StatusCode::from_u16(kept).unwrap()), "{kept}");
        }
        for released in [
            400, 401, 403, 404, 408, 409, 413, 415, 422, 425, 429, 500, 502, 503, 504,
        ] {
            assert!(
                !keeps(StatusCode::from_u16(released).unwrap()),
                "{released}"
            );
        }
    }
}
