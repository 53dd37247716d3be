//! The API's own document as the check of what it takes in: every JSON body, path segment and
//! query parameter is validated against the schema `docs/openapi.json` gives it, before a
//! handler reads it. What the document refuses is a 400 naming the field, so herald and its spec
//! cannot disagree on what a valid request is (a pattern, a length, a range, an enum or a
//! required field written in the document is the check itself, not a second copy of it). The
//! handlers' own checks come after: what a schema cannot say (a recipient that exists, an address
//! lettre can send to).
//!
//! The answers never hold the value that was refused (it may be an address): only where it is
//! and which rule it breaks.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::Method;
use jsonschema::Validator;
use serde_json::{json, Value};

use super::problem::{ApiError, FieldProblem};

/// The validators of every operation of the document, by method and route (`/v1/…/{id}`).
struct Contract {
    bodies: HashMap<(Method, String), Validator>,
    parameters: HashMap<(Method, String), Vec<Parameter>>,
}

/// A path or query parameter of an operation, with the validator of its schema.
struct Parameter {
    name: String,
    location: Location,
    /// What the text of the parameter is read as before it is validated.
    kind: Kind,
    validator: Validator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Boolean,
}

static CONTRACT: LazyLock<Contract> = LazyLock::new(|| {
    let document = serde_json::to_value(super::openapi()).expect("the API document serializes");
    Contract::of(&document).unwrap_or_else(|e| panic!("the API document's schemas compile: {e}"))
});

/// Compiles the document's validators now (at the start, not at the first request); a schema
/// that does not compile is a fault of the code, found by the unit tests.
pub fn prepare() {
    LazyLock::force(&CONTRACT);
}

impl Contract {
    fn of(document: &Value) -> Result<Contract, String> {
        let components = document.get("components").cloned().unwrap_or(json!({}));
        let compile = |schema: &Value| -> Result<Validator, String> {
            // The schema inside a document of the components, so that its `$ref`s resolve.
            let root = json!({ "allOf": [schema], "components": components });
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                // An address is one that what sends it (lettre) takes.
                .with_format("email", |s: &str| s.parse::<lettre::Address>().is_ok())
                .build(&root)
                .map_err(|e| e.to_string())
        };
        let mut contract = Contract {
            bodies: HashMap::new(),
            parameters: HashMap::new(),
        };
        let paths = document
            .get("paths")
            .and_then(Value::as_object)
            .ok_or("the document has no paths")?;
        for (route, operations) in paths {
            for (method, operation) in operations.as_object().into_iter().flatten() {
                let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                    continue;
                };
                let key = (method, route.clone());
                let body = operation.pointer("/requestBody/content/application~1json/schema");
                if let Some(schema) = body {
                    let validator =
                        compile(schema).map_err(|e| format!("{} {}: {e}", key.0, key.1))?;
                    contract.bodies.insert(key.clone(), validator);
                }
                let mut parameters = Vec::new();
                for parameter in operation
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let location = match parameter.get("in").and_then(Value::as_str) {
                        Some("path") => Location::Path,
                        Some("query") => Location::Query,
                        _ => continue,
                    };
                    let name = parameter
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            format!("{} {}: a parameter without a name", key.0, key.1)
                        })?;
                    let schema = parameter.get("schema").cloned().unwrap_or(json!({}));
                    let kind = kind_of(&schema, &components);
                    parameters.push(Parameter {
                        name: name.to_string(),
                        location,
                        kind,
                        validator: compile(&schema)
                            .map_err(|e| format!("{} {} {name}: {e}", key.0, key.1))?,
                    });
                }
                contract.parameters.insert(key, parameters);
            }
        }
        Ok(contract)
    }
}

/// What a parameter's text is read as: its schema's `type`, through a `$ref` to the components.
fn kind_of(schema: &Value, components: &Value) -> Kind {
    let resolved = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#/components")
            .and_then(|pointer| components.pointer(pointer))
            .unwrap_or(schema),
        None => schema,
    };
    match resolved.get("type").and_then(Value::as_str) {
        Some("integer") => Kind::Integer,
        Some("boolean") => Kind::Boolean,
        _ => Kind::Text,
    }
}

/// At most this many problems are listed for one request (a body of thousands of wrong items
/// gets a short answer, cheaply).
const MAX_PROBLEMS: usize = 50;

/// The operation a request is checked as: a HEAD is answered by the route's GET.
fn key(method: &Method, route: &str) -> (Method, String) {
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    (method, route.to_string())
}

/// A routed request whose operation the document lacks: a fault of herald, never let through.
fn undocumented(method: &Method, route: &str) -> ApiError {
    ApiError::internal(format!(
        "{method} {route} is routed but not in the API's document"
    ))
}

/// The problems of `instance` under `validator`, each at `pointer` followed by where inside.
fn problems(validator: &Validator, instance: &Value, pointer: &str) -> Vec<FieldProblem> {
    let mut problems: Vec<FieldProblem> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for error in validator.iter_errors(instance) {
        if problems.len() >= MAX_PROBLEMS {
            break;
        }
        let at = format!("{pointer}{}", error.instance_path().as_str());
        let detail = error.masked().to_string();
        if !seen.insert((at.clone(), detail.clone())) {
            continue;
        }
        problems.push(if at.is_empty() {
            FieldProblem::general(detail)
        } else {
            FieldProblem::at(at, detail)
        });
    }
    problems
}

/// Checks a JSON body against the schema of its operation (`route` as the router matched it).
pub fn check_body(method: &Method, route: &str, body: &Value) -> Result<(), ApiError> {
    let key = key(method, route);
    if !CONTRACT.parameters.contains_key(&key) {
        return Err(undocumented(method, route));
    }
    // An operation the document gives no body takes none the handler reads as JSON.
    let Some(validator) = CONTRACT.bodies.get(&key) else {
        return Err(undocumented(method, route));
    };
    let found = problems(validator, body, "");
    if found.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(found))
    }
}

/// Checks the path segments of a request against their schemas.
pub fn check_path<'a>(
    method: &Method,
    route: &str,
    segments: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ApiError> {
    let segments: HashMap<&str, &str> = segments.into_iter().collect();
    check_parameters(method, route, Location::Path, |name| {
        segments.get(name).map(|v| vec![*v])
    })
}

/// Checks the query parameters of a request (`query` undecoded, as in the URI) against their
/// schemas; parameters the document does not name are left to the handler's reading.
pub fn check_query(method: &Method, route: &str, query: &str) -> Result<(), ApiError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    check_parameters(method, route, Location::Query, |name| {
        let values: Vec<&str> = pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then_some(values)
    })
}

fn check_parameters<'v>(
    method: &Method,
    route: &str,
    location: Location,
    value_of: impl Fn(&str) -> Option<Vec<&'v str>>,
) -> Result<(), ApiError> {
    let Some(parameters) = CONTRACT.parameters.get(&key(method, route)) else {
        return Err(undocumented(method, route));
    };
    let mut found = Vec::new();
    for parameter in parameters.iter().filter(|p| p.location == location) {
        for text in value_of(&parameter.name).into_iter().flatten() {
            let instance = match parameter.kind {
                Kind::Text => Value::String(text.to_string()),
                // A text that is no number is the typed reading's to refuse, with its words.
                Kind::Integer => match text.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => continue,
                },
                Kind::Boolean => match text {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => continue,
                },
            };
            let pointer = match location {
                Location::Path => format!("path:{}", parameter.name),
                Location::Query => format!("query:{}", parameter.name),
            };
            found.extend(problems(&parameter.validator, &instance, &pointer));
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_of_the_document_has_its_checks() {
        let document = serde_json::to_value(super::super::openapi()).unwrap();
        let contract = Contract::of(&document).expect("every schema compiles");
        let mut bodies = 0;
        for (route, operations) in document["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                let key = (method.to_ascii_uppercase().parse().unwrap(), route.clone());
                let documented = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path" || p["in"] == "query")
                    .count();
                assert_eq!(
                    contract.parameters[&key].len(),
                    documented,
                    "{method} {route}"
                );
                if operation.get("requestBody").is_some() {
                    assert!(contract.bodies.contains_key(&key), "{method} {route}");
                    bodies += 1;
                }
            }
        }
        assert!(bodies >= 10, "{bodies}");
    }

    #[test]
    fn a_body_the_document_refuses_is_refused_without_its_values() {
        let route = "/v1/orders/{orderId}/communications/confirmation";
        let ok = json!({"orderNumber": "SO-1", "recipientContactId": "c-1"});
        assert!(check_body(&Method::POST, route, &ok).is_ok());
        let empty = json!({"orderNumber": "", "recipientContactId": "0"});
        let err = check_body(&Method::POST, route, &empty).unwrap_err();
        assert_eq!(err.kind, super::super::ProblemKind::InvalidRequest);
        assert_eq!(
            err.errors[0].pointer.as_deref(),
            Some("/orderNumber"),
            "{err:?}"
        );
        let secret =
            json!({"orderNumber": "SO\u{7}secret-value", "recipientEmail": "kim@example.com"});
        let err = check_body(&Method::POST, route, &secret).unwrap_err();
        let text = format!("{err:?}");
        assert!(
            !text.contains("secret-value") && !text.contains("kim@"),
            "{text}"
        );
        let both = json!({"recipientContactId": "c-1", "recipientEmail": "kim@example.com"});
        assert!(check_body(&Method::POST, route, &both).is_err());
        // Thousands of wrong items: a short answer.
        let many = serde_json::Value::Array(vec![json!({"displayName": " "}); 5000]);
        let err = check_body(&Method::POST, "/v1/contacts/import", &many).unwrap_err();
        assert_eq!(err.errors.len(), MAX_PROBLEMS);
    }

    #[test]
    fn path_and_query_parameters_are_checked_against_their_schemas() {
        let route = "/v1/orders/{orderId}/communications/confirmation";
        assert!(check_path(&Method::POST, route, [("orderId", "SO-1")]).is_ok());
        let err = check_path(&Method::POST, route, [("orderId", " SO-1")]).unwrap_err();
        assert_eq!(err.errors[0].pointer.as_deref(), Some("path:orderId"));
        let list = "/v1/communications";
        assert!(check_query(&Method::GET, list, "limit=20&status=SENT").is_ok());
        let err = check_query(&Method::GET, list, "limit=201").unwrap_err();
        assert_eq!(err.errors[0].pointer.as_deref(), Some("query:limit"));
        assert!(check_query(&Method::GET, list, "status=LOST").is_err());
        assert!(check_query(&Method::GET, list, "from=yesterday").is_err());
        // A text where a number belongs is left to the typed reading.
        assert!(check_query(&Method::GET, list, "limit=many").is_ok());
        // A HEAD is checked as its GET; a route the document lacks is refused, never let through.
        assert!(check_query(&Method::HEAD, list, "limit=201").is_err());
        assert_eq!(
            check_query(&Method::GET, "/v1/no-such-route", "")
                .unwrap_err()
                .kind,
            super::super::ProblemKind::Internal
        );
    }
}
