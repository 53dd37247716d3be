//! Errors of the API as RFC 9457 problem documents (`application/problem+json`): a stable `type`
//! URI per kind of problem (documented in `docs/problems.md`, where each URI's anchor points),
//! its `title` and `status`, a `detail` for this occurrence, an `instance` (a URN that the log line
//! of the occurrence carries too) and, for bad input, `errors` with one entry per problem of the
//! request (`detail` and, when a field is to blame, its JSON `pointer`).

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Where the problem types are documented: `type` is this with the kind's anchor.
pub const PROBLEMS_URL: &str = "https://github.com/herald-comms/herald/blob/main/docs/problems.md";

/// The kinds of problem herald answers with: each has one `type` URI, title and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The request is malformed or a field is invalid; nothing was written.
    InvalidRequest,
    /// No credential, or one that is unknown, revoked, expired or fails verification.
    Unauthorized,
    /// The credential is valid but lacks the scope the route needs, or acts for another tenant.
    Forbidden,
    /// The resource does not exist, or belongs to another tenant (the same answer).
    NotFound,
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// The request conflicts with the resource's state (e.g. a replay of a delivered message).
    Conflict,
    /// A document the communication needs is not available yet; the same request may succeed later.
    NotYet,
    /// An Idempotency-Key header is required and missing or malformed.
    IdempotencyKeyMissing,
    /// The Idempotency-Key was used before for a different request.
    IdempotencyKeyReused,
    /// A request with this Idempotency-Key is still being processed.
    IdempotencyKeyInFlight,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body is larger than the API takes.
    PayloadTooLarge,
    /// The request is well formed, but herald's rules cannot apply it.
    Unprocessable,
    /// The credential made more requests than its rate allows.
    RateLimited,
    /// A dependency (the ledger database) is unavailable; nothing was written, try again.
    Unavailable,
    /// A fault in herald itself; nothing of the request's data is in the answer.
    Internal,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 16] = [
        ProblemKind::InvalidRequest,
        ProblemKind::Unauthorized,
        ProblemKind::Forbidden,
        ProblemKind::NotFound,
        ProblemKind::MethodNotAllowed,
        ProblemKind::Conflict,
        ProblemKind::NotYet,
        ProblemKind::IdempotencyKeyMissing,
        ProblemKind::IdempotencyKeyReused,
        ProblemKind::IdempotencyKeyInFlight,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::PayloadTooLarge,
        ProblemKind::Unprocessable,
        ProblemKind::RateLimited,
        ProblemKind::Unavailable,
        ProblemKind::Internal,
    ];

    /// The anchor of the kind in `docs/problems.md`, and the last part of its `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::InvalidRequest => "invalid-request",
            ProblemKind::Unauthorized => "unauthorized",
            ProblemKind::Forbidden => "forbidden",
            ProblemKind::NotFound => "not-found",
            ProblemKind::MethodNotAllowed => "method-not-allowed",
            ProblemKind::Conflict => "conflict",
            ProblemKind::NotYet => "not-yet",
            ProblemKind::IdempotencyKeyMissing => "idempotency-key-missing",
            ProblemKind::IdempotencyKeyReused => "idempotency-key-reused",
            ProblemKind::IdempotencyKeyInFlight => "idempotency-key-in-flight",
            ProblemKind::UnsupportedMediaType => "unsupported-media-type",
            ProblemKind::PayloadTooLarge => "payload-too-large",
            ProblemKind::Unprocessable => "unprocessable",
            ProblemKind::RateLimited => "rate-limited",
            ProblemKind::Unavailable => "unavailable",
            ProblemKind::Internal => "internal",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::InvalidRequest => "The request is invalid",
            ProblemKind::Unauthorized => "Authentication required",
            ProblemKind::Forbidden => "Not allowed for this credential",
            ProblemKind::NotFound => "Not found",
            ProblemKind::MethodNotAllowed => "Method not allowed",
            ProblemKind::Conflict => "Conflict with the resource's state",
            ProblemKind::NotYet => "Not possible yet",
            ProblemKind::IdempotencyKeyMissing => "Idempotency-Key required",
            ProblemKind::IdempotencyKeyReused => "Idempotency-Key reused for another request",
            ProblemKind::IdempotencyKeyInFlight => "A request with this Idempotency-Key is running",
            ProblemKind::UnsupportedMediaType => "Unsupported media type",
            ProblemKind::PayloadTooLarge => "Request body too large",
            ProblemKind::Unprocessable => "The request cannot be applied",
            ProblemKind::RateLimited => "Too many requests",
            ProblemKind::Unavailable => "Temporarily unavailable",
            ProblemKind::Internal => "Internal error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::InvalidRequest | ProblemKind::IdempotencyKeyMissing => {
                StatusCode::BAD_REQUEST
            }
            ProblemKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemKind::Conflict | ProblemKind::NotYet | ProblemKind::IdempotencyKeyInFlight => {
                StatusCode::CONFLICT
            }
            ProblemKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::Unprocessable | ProblemKind::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ProblemKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProblemKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProblemKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn type_uri(self) -> String {
        format!("{PROBLEMS_URL}#{}", self.slug())
    }
}

/// One problem of the input: what is wrong, and where when a field is to blame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldProblem {
    pub detail: String,
    /// A JSON pointer into the body (`/recipientEmail`), or `header:Name` / `query:name` /
    /// `path:name` for the other parts of a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

impl FieldProblem {
    pub fn at(pointer: impl Into<String>, detail: impl Into<String>) -> FieldProblem {
        FieldProblem {
            detail: detail.into(),
            pointer: Some(pointer.into()),
        }
    }

    pub fn general(detail: impl Into<String>) -> FieldProblem {
        FieldProblem {
            detail: detail.into(),
            pointer: None,
        }
    }
}

/// The JSON pointer of a field path as the checks name it (`contact.displayName`, `[2].email`).
pub fn pointer_of(path: &str) -> String {
    let mut pointer = String::new();
    for part in path.split(['.', '[', ']']).filter(|p| !p.is_empty()) {
        pointer.push('/');
        pointer.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    pointer
}

/// An API error, answered as a problem document.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ProblemKind,
    pub detail: String,
    pub errors: Vec<FieldProblem>,
    /// Extra headers: `WWW-Authenticate` on 401, `Retry-After` on 429 and 503, `Allow` on 405.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct ProblemDocument<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    instance: &'a str,
    #[serde(skip_serializing_if = "<[FieldProblem]>::is_empty")]
    errors: &'a [FieldProblem],
}

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Bad input: each problem of the request listed; nothing was written.
    pub fn invalid(errors: Vec<FieldProblem>) -> ApiError {
        ApiError {
            kind: ProblemKind::InvalidRequest,
            detail: format!(
                "{} problem(s) in the request; nothing was written",
                errors.len()
            ),
            errors,
            headers: Vec::new(),
        }
    }

    /// Bad input from checks that name the field first (`field: what is wrong`).
    pub fn bad(problems: Vec<String>) -> ApiError {
        ApiError::invalid(problems.into_iter().map(field_problem).collect())
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(ProblemKind::NotFound, what)
    }

    /// The ledger database or another dependency (the engine) failed: logged here, never shown.
    pub fn unavailable(err: impl std::fmt::Display) -> ApiError {
        tracing::warn!(error = %err, "request failed on a dependency");
        ApiError::new(
            ProblemKind::Unavailable,
            "a dependency of herald (its database or the engine) is unavailable; nothing was \
             written, try again",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// A fault in herald: logged here, the answer says nothing of it.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "request failed inside herald");
        ApiError::new(
            ProblemKind::Internal,
            "herald could not answer this request; the fault is logged",
        )
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

/// `field: detail` (the form the checks write) as a problem with its pointer; other text as a
/// general problem.
fn field_problem(text: String) -> FieldProblem {
    match text.split_once(": ") {
        Some((field, detail))
            if !field.is_empty()
                && field
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._[]".contains(c)) =>
        {
            FieldProblem::at(pointer_of(field), detail)
        }
        _ => FieldProblem::general(text),
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.slug(), self.detail)
    }
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let instance = format!("urn:uuid:{}", uuid::Uuid::now_v7());
        tracing::debug!(problem = self.kind.slug(), status = self.status().as_u16(), %instance, "api problem");
        let document = ProblemDocument {
            kind: self.kind.type_uri(),
            title: self.kind.title(),
            status: self.status().as_u16(),
            detail: &self.detail,
            instance: &instance,
            errors: &self.errors,
        };
        let body = serde_json::to_vec(&document).expect("a problem document serialises");
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_slug_and_a_matching_status_class() {
        let mut slugs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemKind::ALL.len());
        for kind in ProblemKind::ALL {
            let status = kind.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{kind:?}"
            );
            assert!(kind.type_uri().ends_with(&format!("#{}", kind.slug())));
        }
    }

    #[test]
    fn the_checks_field_prefix_becomes_a_pointer() {
        assert_eq!(
            field_problem("contact.displayName: must not be empty".into()),
            FieldProblem::at("/contact/displayName", "must not be empty")
        );
        assert_eq!(
            field_problem("[2].email: not a valid email address".into()),
            FieldProblem::at("/2/email", "not a valid email address")
        );
        assert_eq!(
            field_problem("give exactly one of a and b".into()),
            FieldProblem::general("give exactly one of a and b")
        );
        assert_eq!(pointer_of("a/b.c~d"), "/a~1b/c~0d");
    }

    #[test]
    fn docs_problems_md_documents_every_kind() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/problems.md"))
            .expect("docs/problems.md");
        for kind in ProblemKind::ALL {
            let heading = format!("## {}", kind.slug());
            assert!(doc.contains(&heading), "docs/problems.md lacks '{heading}'");
            assert!(
                doc.contains(&format!("`{}`", kind.status().as_u16())),
                "docs/problems.md names no status {}",
                kind.status().as_u16()
            );
        }
    }
}
