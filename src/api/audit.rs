//! The audit of the API: every state-changing call of an authenticated caller (any method but
//! GET, HEAD and OPTIONS) is appended to `api_audit` once it has been answered: the credential
//! (key id or JWT subject), the tenant, the route as declared, the target (the path's ids, or the
//! id the answer names), the Idempotency-Key and the status.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::{Authenticated, Credential};
use super::ApiState;

/// The keys of an answer that name what a call made or changed, in the order they are looked for.
const TARGET_KEYS: [&str; 6] = [
    "communicationId",
    "subscriptionId",
    "artifactId",
    "contactId",
    "notificationId",
    "addressHash",
];

/// Answers larger than this (or of unknown length) are not searched for a target id.
const TARGET_SCAN_LIMIT: usize = 64 * 1024;

pub async fn around(
    state: &ApiState,
    caller: Authenticated,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let path_target = path_target(&route, request.uri().path());
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| k.chars().take(255).collect::<String>());
    let response = next.run(request).await;
    let (response, answer_target) = answer_target(response).await;
    let target = answer_target.or(path_target);
    let (kind, key_id, subject) = match &caller.credential {
        Credential::ApiKey(id) => ("API_KEY", Some(*id), None),
        Credential::Jwt { subject } => ("JWT", None, Some(subject.clone())),
        Credential::Provider(name) => ("PROVIDER", None, Some(name.to_string())),
    };
    let written = sqlx::query(
        "INSERT INTO api_audit (credential_kind, key_id, subject, tenant_id, platform, method, route,
                                target_id, idempotency_key, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(kind)
    .bind(key_id)
    .bind(subject)
    .bind(&caller.tenant)
    .bind(caller.platform)
    .bind(&method)
    .bind(&route)
    .bind(&target)
    .bind(&idempotency_key)
    .bind(i32::from(response.status().as_u16()))
    .execute(&state.db)
    .await;
    if let Err(err) = written {
        tracing::error!(error = %err, %route, status = response.status().as_u16(), "the api_audit row could not be written");
    }
    response
}

/// The values of the route's parameters (`{id}`, `{quoteId}`…), joined: what the call is about.
fn path_target(route: &str, path: &str) -> Option<String> {
    let values: Vec<&str> = route
        .split('/')
        .zip(path.split('/'))
        .filter(|(pattern, _)| pattern.starts_with('{'))
        .map(|(_, value)| value)
        .collect();
    (!values.is_empty()).then(|| values.join("/"))
}

/// The id a JSON answer names at its top level, with the answer rebuilt unchanged.
async fn answer_target(response: Response) -> (Response, Option<String>) {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let small = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .is_some_and(|n| n <= TARGET_SCAN_LIMIT as u64);
    if !is_json || !small || !response.status().is_success() {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, TARGET_SCAN_LIMIT).await {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::error!(error = %err, "an answer could not be read for the audit");
            return (Response::from_parts(parts, axum::body::Body::empty()), None);
        }
    };
    let target = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            TARGET_KEYS
                .iter()
                .find_map(|k| v.get(*k).and_then(|id| id.as_str()).map(str::to_string))
        });
    (
        Response::from_parts(parts, axum::body::Body::from(bytes)),
        target,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_the_routes_parameters() {
        assert_eq!(
            path_target(
                "/v1/communications/{id}/resend",
                "/v1/communications/abc/resend"
            ),
            Some("abc".into())
        );
        assert_eq!(
            path_target(
                "/v1/quotes/{quoteId}/revisions/{revisionNo}/communications/proposal",
                "/v1/quotes/Q-1/revisions/3/communications/proposal"
            ),
            Some("Q-1/3".into())
        );
        assert_eq!(path_target("/v1/events", "/v1/events"), None);
    }
}
