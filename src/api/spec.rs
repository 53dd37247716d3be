//! The OpenAPI 3.1 document of the API, generated from the handlers' `#[utoipa::path]`
//! annotations as the router registers them (`routes!`), so that a route cannot exist without
//! its spec. Each route group documents what its layer adds where the layer is put on
//! ([`idempotent`], [`authenticated`]); [`finish`] adds what every operation shares: the security
//! schemes, the `Problem` schema with an example per kind of problem, and the problem answers of
//! a JSON body (400, 413, 415). `docs/openapi.json` is the committed copy (`herald openapi`).

use serde_json::{json, Value};
use utoipa::openapi::path::{Operation, Parameter};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::SecurityScheme;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

use super::idempotency::{KEY_HEADER, MAX_KEY_CHARS};
use super::keys::Scope;
use super::problem::{ProblemKind, PROBLEM_JSON};

/// The security scheme of herald's API keys (`herald_<env>_…`).
pub const API_KEY: &str = "apiKey";
/// The security scheme of JWTs from an identity provider.
pub const JWT: &str = "jwt";
/// The HTTP basic authentication of Postmark's webhook.
pub const POSTMARK: &str = "postmarkBasic";
/// The extension that names an operation's scope (also in its security requirements).
pub const SCOPE_EXTENSION: &str = "x-herald-scope";

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("the spec's own JSON has the shape of its type")
}

/// Every operation of the document, in path order.
pub fn operations_mut(openapi: &mut OpenApi) -> Vec<&mut Operation> {
    openapi
        .paths
        .paths
        .values_mut()
        .flat_map(|item| {
            [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
        })
        .filter_map(Option::as_mut)
        .collect()
}

fn add_parameter(operation: &mut Operation, parameter: Value) {
    let parameter: Parameter = from_json(parameter);
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(parameter));
}

/// A problem answer of `status`, unless the handler documented it already (its description
/// then stays; [`finish`] gives every problem answer its content).
fn add_problem(operation: &mut Operation, status: u16, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(Response::new(description)));
}

/// What the `Idempotency-Key` layer adds to the commands: the header, 400 when it is missing,
/// 409 while the first request runs, 422 when it was used for another request.
pub fn idempotent(openapi: &mut OpenApi) {
    for operation in operations_mut(openapi) {
        add_parameter(
            operation,
            json!({
                "name": KEY_HEADER,
                "in": "header",
                "required": true,
                "description": "A key of the client's (a UUID, say) that makes a retry safe: the same key with the same request replays the first success byte for byte (with `Idempotent-Replayed: true`); with another request it is 422; while the first runs, 409. Kept per tenant for `api.idempotency_ttl` (24 h). Bare or as a structured-field string (`\"…\"`).",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_KEY_CHARS,
                    "pattern": "^[!#-~]([ !#-~]*[!#-~])?$",
                },
            }),
        );
        add_problem(
            operation,
            400,
            "The Idempotency-Key header is missing or malformed, or the request is invalid",
        );
        add_problem(
            operation,
            409,
            "A request with this Idempotency-Key is still running",
        );
        add_problem(
            operation,
            422,
            "This Idempotency-Key was used for another request",
        );
        for code in ["200", "201", "202"] {
            if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(code) {
                response.headers.insert(
                    super::idempotency::REPLAYED_HEADER.to_string(),
                    from_json(json!({
                        "description": "`true` on a replay of the first success of this Idempotency-Key",
                        "schema": {"type": "string", "enum": ["true"]},
                    })),
                );
            }
        }
    }
}

/// What the auth layer adds to the routes behind it: the `Herald-Tenant` header of platform
/// credentials, 401, 403, 429 and 503 (the key store unavailable), and each operation's scope
/// as `x-herald-scope` (taken from its security requirements).
pub fn authenticated(openapi: &mut OpenApi) {
    for operation in operations_mut(openapi) {
        add_parameter(
            operation,
            json!({
                "name": "Herald-Tenant",
                "in": "header",
                "required": false,
                "description": "The tenant a platform credential acts for. A tenant's own credential acts for its tenant only: leave it out (another tenant is 403).",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            }),
        );
        add_problem(
            operation,
            400,
            "Herald-Tenant is malformed, or a platform credential names no tenant",
        );
        add_problem(
            operation,
            401,
            "No credential, or one that is unknown, revoked or expired",
        );
        add_problem(
            operation,
            403,
            "The credential lacks the operation's scope, or acts for another tenant",
        );
        add_problem(
            operation,
            429,
            "The credential is over its request rate; retry after Retry-After seconds",
        );
        add_problem(
            operation,
            503,
            "The database is unavailable; nothing was written, try again",
        );
        let scopes = scopes_of(operation);
        if let [scope] = scopes.as_slice() {
            operation
                .extensions
                .get_or_insert_with(Default::default)
                .insert(SCOPE_EXTENSION.to_string(), json!(scope.as_str()));
        }
    }
}

/// The scopes an operation's security requirements name (each requirement names the same).
pub fn scopes_of(operation: &Operation) -> Vec<Scope> {
    let requirements = serde_json::to_value(&operation.security).unwrap_or(Value::Null);
    let mut scopes: Vec<Scope> = requirements
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|requirement| requirement.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|s| s.as_str()?.parse().ok())
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

/// An example of each kind of problem, as herald answers it.
fn example_of(kind: ProblemKind) -> Value {
    let detail = match kind {
        ProblemKind::InvalidRequest => "1 problem(s) in the request; nothing was written",
        ProblemKind::Unauthorized => "this route needs Authorization: Bearer <API key>",
        ProblemKind::Forbidden => "this route needs the 'send' scope",
        ProblemKind::NotFound => "no such communication",
        ProblemKind::MethodNotAllowed => "this route does not take this method",
        ProblemKind::Conflict => "only a dead-lettered webhook can be replayed",
        ProblemKind::NotYet => "the document is not available yet; retry later",
        ProblemKind::IdempotencyKeyMissing => {
            "the Idempotency-Key header is required on this command"
        }
        ProblemKind::IdempotencyKeyReused => {
            "this Idempotency-Key was used for another request (another method, path or body); use a new key"
        }
        ProblemKind::IdempotencyKeyInFlight => {
            "a request with this Idempotency-Key is still running; retry when it has been answered"
        }
        ProblemKind::UnsupportedMediaType => "the body must be application/json",
        ProblemKind::PayloadTooLarge => {
            "the body is larger than the API takes (api.max_body_bytes)"
        }
        ProblemKind::Unprocessable => "rule 'order-confirmation': the template has no version",
        ProblemKind::RateLimited => "this credential is over its request rate; retry in 1 s",
        ProblemKind::Unavailable => {
            "a dependency of herald (its database or the engine) is unavailable; nothing was written, try again"
        }
        ProblemKind::Internal => "herald could not answer this request; the fault is logged",
    };
    let mut example = json!({
        "type": kind.type_uri(),
        "title": kind.title(),
        "status": kind.status().as_u16(),
        "detail": detail,
        "instance": "urn:uuid:01938d4e-8f4c-7a51-9d0e-4b1c2f3a5e6d",
    });
    if kind == ProblemKind::InvalidRequest {
        example["errors"] =
            json!([{"detail": "not a valid email address", "pointer": "/recipientEmail"}]);
    }
    example
}

/// The `Problem` schema: RFC 9457 with herald's closed set of `type` URIs.
fn problem_schema() -> Schema {
    let types: Vec<String> = ProblemKind::ALL.iter().map(|k| k.type_uri()).collect();
    let mut statuses: Vec<u16> = ProblemKind::ALL
        .iter()
        .map(|k| k.status().as_u16())
        .collect();
    statuses.sort();
    statuses.dedup();
    from_json(json!({
        "type": "object",
        "description": "An RFC 9457 problem document (application/problem+json); the kinds are documented in docs/problems.md.",
        "required": ["type", "title", "status", "detail", "instance"],
        "additionalProperties": false,
        "properties": {
            "type": {"type": "string", "format": "uri", "enum": types, "description": "The kind of problem: stable, code against it"},
            "title": {"type": "string", "description": "The kind's title"},
            "status": {"type": "integer", "enum": statuses},
            "detail": {"type": "string", "description": "What went wrong in this occurrence"},
            "instance": {"type": "string", "pattern": "^urn:uuid:[0-9a-f-]{36}$", "description": "The occurrence; herald's log line of it carries the same URN"},
            "errors": {
                "type": "array",
                "description": "Each problem of the input (invalid-request)",
                "items": {
                    "type": "object",
                    "required": ["detail"],
                    "additionalProperties": false,
                    "properties": {
                        "detail": {"type": "string"},
                        "pointer": {"type": "string", "description": "A JSON pointer into the body (`/recipientEmail`), or `header:Name`, `query`, `path`"},
                    },
                },
            },
        },
    }))
}

fn header(description: &str, required: bool, schema: Value) -> RefOr<utoipa::openapi::Header> {
    from_json(json!({"description": description, "required": required, "schema": schema}))
}

/// A problem answer's content (its examples those of the kinds with its status) and headers.
fn fill_problem(status: u16, response: &mut Response) {
    let mut content = Content::new(Some(Ref::from_schema_name("Problem")));
    for kind in ProblemKind::ALL
        .into_iter()
        .filter(|k| k.status().as_u16() == status)
    {
        content.examples.insert(
            kind.slug().to_string(),
            from_json(json!({"$ref": format!("#/components/examples/{}", kind.slug())})),
        );
    }
    response
        .content
        .insert(PROBLEM_JSON.to_string(), RefOr::T(content));
    match status {
        401 => {
            response.headers.insert(
                "WWW-Authenticate".into(),
                header(
                    "The challenge (RFC 6750 for bearer credentials)",
                    true,
                    json!({"type": "string"}),
                ),
            );
        }
        403 => {
            response.headers.insert(
                "WWW-Authenticate".into(),
                header(
                    "`error=\"insufficient_scope\"` and the scope, when the scope is missing",
                    false,
                    json!({"type": "string"}),
                ),
            );
        }
        429 | 503 => {
            response.headers.insert(
                "Retry-After".into(),
                header(
                    "Seconds to wait before retrying",
                    status == 429,
                    json!({"type": "string", "pattern": "^[0-9]+$"}),
                ),
            );
        }
        _ => {}
    }
}

/// The document as served and committed: info, servers, security schemes, the `Problem` schema,
/// the problem answers of a JSON body and the content of every problem answer.
pub fn finish(mut openapi: OpenApi) -> OpenApi {
    openapi.info = from_json(json!({
        "title": "herald",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "herald's communication API: commands (events, artifacts, proposals), the contact directory and preferences, webhook endpoints, inboxes, provider feedback and communication history. Every route under /v1 but the provider feedback and this document needs `Authorization: Bearer <API key or JWT>`; the tenant comes from the credential. Errors are RFC 9457 problem documents (docs/problems.md).",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    }));
    for operation in operations_mut(&mut openapi) {
        if operation.request_body.is_some() {
            add_problem(
                operation,
                400,
                "The body is not valid JSON, or a field is invalid; nothing was written",
            );
            add_problem(
                operation,
                413,
                "The body is larger than the API takes (api.max_body_bytes)",
            );
            add_problem(operation, 415, "The body is not application/json");
        }
        for (code, response) in operation.responses.responses.iter_mut() {
            let (Ok(status), RefOr::T(response)) = (code.parse::<u16>(), response) else {
                continue;
            };
            // A failure with a body of its own (readiness' 503) is documented as it is.
            if status >= 400 && response.content.is_empty() {
                fill_problem(status, response);
            }
        }
    }
    let components = openapi.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".into(), RefOr::T(problem_schema()));
    for kind in ProblemKind::ALL {
        components.examples.insert(
            kind.slug().to_string(),
            from_json(json!({"summary": kind.title(), "value": example_of(kind)})),
        );
    }
    for (name, scheme) in [
        (
            API_KEY,
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "herald_<environment>_<key>",
                   "description": "An API key of `herald api-keys create` (shown once): `Authorization: Bearer herald_live_…`"}),
        ),
        (
            JWT,
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "A JWT of the configured identity provider (issuer, audience, expiry checked); its tenant and scopes are claims"}),
        ),
        (
            POSTMARK,
            json!({"type": "http", "scheme": "basic",
                   "description": "Postmark's webhook credentials (HERALD_FEEDBACK__POSTMARK_CREDENTIALS)"}),
        ),
    ] {
        let scheme: SecurityScheme = from_json(scheme);
        components
            .security_schemes
            .insert(name.into(), RefOr::T(scheme));
    }
    openapi
}

/// The document as JSON: pretty, keys in a stable order, with a final newline.
pub fn to_json(openapi: &OpenApi) -> String {
    let value = serde_json::to_value(openapi).expect("the OpenAPI document serialises");
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value serialises");
    text.push('\n');
    text
}

/// Where the committed copy of the document is kept.
pub const DOCUMENT_PATH: &str = "docs/openapi.json";

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("{0}: {1}")]
    Io(std::path::PathBuf, #[source] std::io::Error),
    #[error("{0} is not what the handlers generate: run `herald openapi` and commit it")]
    Stale(std::path::PathBuf),
}

/// Writes the document to `path`.
pub fn write_document(path: &std::path::Path) -> Result<(), DocumentError> {
    std::fs::write(path, to_json(&super::openapi()))
        .map_err(|e| DocumentError::Io(path.to_path_buf(), e))
}

/// Fails unless `path` holds the document as the handlers generate it.
pub fn check_document(path: &std::path::Path) -> Result<(), DocumentError> {
    let kept =
        std::fs::read_to_string(path).map_err(|e| DocumentError::Io(path.to_path_buf(), e))?;
    if kept == to_json(&super::openapi()) {
        Ok(())
    } else {
        Err(DocumentError::Stale(path.to_path_buf()))
    }
}

/// The schema of a business event (`POST /v1/events`): the fields herald reads; the rest is the
/// event's payload, which rules map from.
pub struct EventInput;

impl utoipa::PartialSchema for EventInput {
    fn schema() -> RefOr<Schema> {
        RefOr::T(from_json(json!({
            "type": "object",
            "description": "A business event: applied once per eventId; rules matching its eventType make communications. The tenant is the caller's: a tenantId is refused.",
            "required": ["eventId", "eventType", "occurredAt"],
            "properties": {
                "eventId": {"type": "string", "pattern": "\\S", "description": "The event's id: the same id again is a duplicate (200)"},
                "eventType": {"type": "string", "pattern": "\\S", "example": "OrderConfirmed"},
                "occurredAt": {"type": "string", "format": "date-time"},
                "data": {"type": "object", "description": "The event's payload, as the rules read it"},
            },
            "example": {
                "eventId": "evt-2026-0001",
                "eventType": "OrderConfirmed",
                "occurredAt": "2026-12-01T09:30:00Z",
                "data": {"orderId": "O-1001", "customerEmail": "kim@example.com"},
            },
        })))
    }
}

impl utoipa::ToSchema for EventInput {}

/// Declares `$body`, the schema of the command body `$command` with its recipient rule (see
/// [`with_recipients`]): `exactly` one recipient, or at most one.
macro_rules! recipient_body {
    ($(#[$meta:meta])* $body:ident, $command:ty, exactly = $exactly:expr) => {
        $(#[$meta])*
        pub struct $body;

        impl utoipa::PartialSchema for $body {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
                super::spec::with_recipients::<$command>($exactly)
            }
        }

        impl utoipa::ToSchema for $body {
            fn schemas(
                schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>,
            ) {
                <$command as utoipa::ToSchema>::schemas(schemas);
            }
        }
    };
}
pub(super) use recipient_body;

/// The schema of a command body `T` with the rule of its recipient fields (`recipientEmail`,
/// `recipientContactId`) that the handler checks: `exactly` one of them, or at most one.
pub fn with_recipients<T: utoipa::PartialSchema>(exactly: bool) -> RefOr<utoipa::openapi::Schema> {
    let given = |field: &str| json!({"type": "object", "required": [field], "properties": {field: {"type": "string"}}});
    let mut choices = vec![given("recipientEmail"), given("recipientContactId")];
    if !exactly {
        // Neither: both absent or null (one that is a string matches its own choice).
        choices.push(json!({"type": "object", "properties": {
            "recipientEmail": {"type": "null"}, "recipientContactId": {"type": "null"}}}));
    }
    let rule = json!({"oneOf": choices});
    let body = serde_json::to_value(T::schema()).expect("a schema serialises");
    serde_json::from_value(json!({"allOf": [body, rule]}))
        .expect("the recipients' rule is a schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_openapi_json_is_what_the_handlers_generate() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT_PATH);
        let kept = std::fs::read_to_string(&path).expect("docs/openapi.json");
        let generated = to_json(&crate::api::openapi());
        assert!(
            kept == generated,
            "docs/openapi.json is not what the handlers generate: run `cargo run -- openapi`"
        );
        // Generating twice gives the same bytes (a stable order).
        assert_eq!(generated, to_json(&crate::api::openapi()));
    }

    #[test]
    fn every_operation_names_one_scope_for_both_schemes_or_is_public() {
        let mut openapi = crate::api::openapi();
        let public = [
            "getHealth",
            "getLiveness",
            "getReadiness",
            "getOpenApi",
            "postPostmarkFeedback",
            // (the last one has its own basic authentication)
        ];
        for operation in operations_mut(&mut openapi) {
            let id = operation.operation_id.clone().expect("an operationId");
            let requirements = serde_json::to_value(&operation.security).unwrap();
            if public.contains(&id.as_str()) {
                assert!(
                    !operation.responses.responses.contains_key("403"),
                    "{id} is public but answers 403"
                );
                continue;
            }
            let schemes: Vec<String> = requirements
                .as_array()
                .unwrap_or_else(|| panic!("{id} has no security requirement"))
                .iter()
                .flat_map(|r| r.as_object().unwrap().keys().cloned())
                .collect();
            assert_eq!(schemes, [API_KEY, JWT], "{id}");
            let scopes = scopes_of(operation);
            assert_eq!(scopes.len(), 1, "{id} names one scope: {requirements}");
            for requirement in requirements.as_array().unwrap() {
                for names in requirement.as_object().unwrap().values() {
                    assert_eq!(names, &json!([scopes[0].as_str()]), "{id}");
                }
            }
            let extensions = serde_json::to_value(&operation.extensions).unwrap();
            assert_eq!(
                extensions[SCOPE_EXTENSION],
                json!(scopes[0].as_str()),
                "{id}"
            );
            for status in ["401", "403", "429", "503"] {
                assert!(
                    operation.responses.responses.contains_key(status),
                    "{id} lacks {status}"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn refs(value: &Value, found: &mut Vec<String>) {
            match value {
                Value::Object(fields) => {
                    if let Some(Value::String(target)) = fields.get("$ref") {
                        found.push(target.clone());
                    }
                    fields.values().for_each(|v| refs(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
                _ => {}
            }
        }
        let document = serde_json::to_value(crate::api::openapi()).unwrap();
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 50);
        for target in found {
            let pointer = target.strip_prefix('#').expect("a local reference");
            assert!(
                document.pointer(pointer).is_some(),
                "{target} does not resolve"
            );
        }
    }

    #[test]
    fn text_enums_are_documented_with_their_stored_texts() {
        use crate::ledger::{Channel, CommunicationStatus};
        let document = serde_json::to_value(crate::api::openapi()).unwrap();
        let schemas = &document["components"]["schemas"];
        let texts = |name: &str| schemas[name]["enum"].clone();
        let channels: Vec<Value> = Channel::ALL.iter().map(|c| json!(c)).collect();
        assert_eq!(texts("Channel"), json!(channels));
        let statuses: Vec<Value> = CommunicationStatus::ALL.iter().map(|c| json!(c)).collect();
        assert_eq!(texts("CommunicationStatus"), json!(statuses));
    }

    #[test]
    fn every_problem_answer_is_a_problem_document_with_examples_of_its_status() {
        let mut openapi = crate::api::openapi();
        let mut seen = 0;
        for operation in operations_mut(&mut openapi) {
            for (code, response) in &operation.responses.responses {
                let RefOr::T(response) = response else {
                    panic!("inline responses only")
                };
                let status: u16 = code.parse().unwrap();
                if status < 400 {
                    assert!(!response.content.contains_key(PROBLEM_JSON));
                    continue;
                }
                // The one failure that answers with its own body: readiness' checks.
                if operation.operation_id.as_deref() == Some("getReadiness") {
                    assert_eq!(code, "503");
                    assert!(!response.content.contains_key(PROBLEM_JSON));
                    continue;
                }
                seen += 1;
                let content = serde_json::to_value(&response.content[PROBLEM_JSON]).unwrap();
                assert_eq!(content["schema"]["$ref"], "#/components/schemas/Problem");
                let examples = content["examples"].as_object().unwrap();
                assert!(!examples.is_empty(), "{code}");
                for slug in examples.keys() {
                    let kind = ProblemKind::ALL
                        .into_iter()
                        .find(|k| k.slug() == slug)
                        .unwrap();
                    assert_eq!(kind.status().as_u16(), status);
                }
            }
        }
        assert!(seen > 50, "{seen} problem answers");
        let document = serde_json::to_value(&openapi).unwrap();
        for kind in ProblemKind::ALL {
            let example = &document["components"]["examples"][kind.slug()]["value"];
            assert_eq!(example["type"], json!(kind.type_uri()));
            assert_eq!(example["status"], json!(kind.status().as_u16()));
        }
    }
}
