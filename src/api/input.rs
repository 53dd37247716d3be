//! What the API takes in, checked before a handler sees it: JSON bodies (`application/json`
//! only, within the body limit, parsed strictly with the pointer of the first wrong field), path
//! segments and query strings, each refused as a problem document, never half-read. Each is then
//! checked against its schema in the API's document (`contract`). And the checks of free text: no
//! control characters (so nothing reaches a mail header that could start a new one), no over-long
//! strings.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::contract;
use super::problem::{ApiError, FieldProblem, ProblemKind};

/// A JSON body of type `T`, parsed with `deny_unknown_fields` where `T` asks for it.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let method = req.method().clone();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .cloned()
            .ok_or_else(|| ApiError::internal("a JSON body read outside a routed request"))?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        // The document's rules first (they name where, never what was sent), then the type.
        let document: serde_json::Value = parse_json(&bytes)?;
        contract::check_body(&method, route.as_str(), &document)?;
        let value = typed(document)?;
        Ok(Body(value))
    }
}

/// 415 unless the body says it is JSON (`application/json` or a `+json` type).
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            ProblemKind::UnsupportedMediaType,
            if content_type.is_empty() {
                "the body must be application/json; the request has no Content-Type".to_string()
            } else {
                "the body must be application/json".to_string()
            },
        ))
    }
}

pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ProblemKind::PayloadTooLarge,
            "the body is larger than the API takes (api.max_body_bytes)",
        )
    } else {
        ApiError::new(ProblemKind::InvalidRequest, "the body could not be read")
    }
}

/// Parses JSON strictly: a syntax error, a wrong type, a missing or an unknown field is a 400
/// that names where.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let syntax = |inner: &serde_json::Error| {
        ApiError::invalid(vec![FieldProblem::general(format!(
            "the body is not valid JSON (line {}, column {})",
            inner.line(),
            inner.column()
        ))])
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let inner = err.inner();
        if inner.is_syntax() || inner.is_eof() {
            return syntax(inner);
        }
        // serde's message without its position suffix: it names the field and the type.
        let text = inner.to_string();
        let detail = match text.rfind(" at line ") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        let path = err.path().to_string();
        let problem = if path == "." || path.is_empty() {
            FieldProblem::general(detail)
        } else {
            FieldProblem::at(super::problem::pointer_of(&path), detail)
        };
        ApiError::invalid(vec![problem])
    })?;
    deserializer.end().map_err(|e| syntax(&e))?;
    Ok(value)
}

/// An optional whole number of a JSON body (`#[serde(default, deserialize_with = ...)]`): JSON
/// Schema, and so the API's document, counts `1256.0` as an integer, so herald takes it as one;
/// a fraction, or a number out of the field's range, is refused.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::Error;
    use serde::Deserialize;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
            .map(|f| f as i64)
    });
    let whole = whole.ok_or_else(|| D::Error::custom(format!("{number} is not a whole number")))?;
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{number} is out of range")))
}

/// Reads a checked JSON value as `T`: a wrong field is a 400 with its pointer.
fn typed<T: DeserializeOwned>(document: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(document).map_err(|err| {
        let text = err.inner().to_string();
        let path = err.path().to_string();
        if path == "." || path.is_empty() {
            ApiError::invalid(vec![FieldProblem::general(text)])
        } else {
            ApiError::invalid(vec![FieldProblem::at(
                super::problem::pointer_of(&path),
                text,
            )])
        }
    })
}

/// Path segments of type `T`; one that does not parse is a 400 naming it.
pub struct PathOf<T>(pub T);

impl<S, T> FromRequestParts<S> for PathOf<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The document's rules first (they name the segment), then the type.
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .cloned()
            .ok_or_else(|| ApiError::internal("path segments read outside a routed request"))?;
        let segments = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::internal(format!("path segments: {}", e.body_text())))?;
        contract::check_path(&parts.method, route.as_str(), segments.iter())?;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathOf(p.0))
            .map_err(|e: PathRejection| {
                ApiError::invalid(vec![FieldProblem::at("path", e.body_text())])
            })
    }
}

/// A query string of type `T` (strict where `T` denies unknown fields).
pub struct QueryOf<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryOf<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The document's rules first (they name the parameter), then the type.
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .ok_or_else(|| ApiError::internal("a query read outside a routed request"))?;
        contract::check_query(
            &parts.method,
            route.as_str(),
            parts.uri.query().unwrap_or(""),
        )?;
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryOf(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::invalid(vec![FieldProblem::at("query", e.body_text())])
            })
    }
}

/// The kinds of free text the API takes, and what each may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// An id or a reference (`contactId`, `recipientRef`): at most 200 characters, no control
    /// characters, no surrounding blanks.
    Id,
    /// A name that may reach a mail header or a subject (`displayName`, a key's name): at most
    /// 200 characters, no control characters.
    Name,
    /// A note written to a customer (`messageNote`): at most 2000 characters; line feeds and tabs
    /// are allowed, no other control character (a carriage return could start a mail header).
    Note,
    /// A URL: at most 2048 characters, no control characters or blanks.
    Url,
}

impl Text {
    fn max_chars(self) -> usize {
        match self {
            Text::Id | Text::Name => 200,
            Text::Note => 2000,
            Text::Url => 2048,
        }
    }
}

/// The problem with a free-text value, if any (`field: what is wrong`).
pub fn check_text(field: &str, value: &str, kind: Text) -> Option<String> {
    let max = kind.max_chars();
    if value.chars().count() > max {
        return Some(format!("{field}: at most {max} characters"));
    }
    let allowed = |c: char| kind == Text::Note && (c == '\n' || c == '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Some(format!("{field}: control characters are not allowed"));
    }
    if matches!(kind, Text::Id | Text::Url) && value.trim() != value {
        return Some(format!("{field}: no leading or trailing blanks"));
    }
    if kind == Text::Url && value.chars().any(char::is_whitespace) {
        return Some(format!("{field}: a URL has no blanks"));
    }
    None
}

/// Collects the problems of several free-text values.
pub fn check_texts<'a>(
    values: impl IntoIterator<Item = (&'a str, Option<&'a str>, Text)>,
) -> Vec<String> {
    values
        .into_iter()
        .filter_map(|(field, value, kind)| value.and_then(|v| check_text(field, v, kind)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        artifact_id: String,
        #[serde(default)]
        revision: Option<i64>,
    }

    fn pointer(err: &ApiError) -> Option<&str> {
        err.errors.first().and_then(|e| e.pointer.as_deref())
    }

    #[test]
    fn strict_json_names_the_field_at_fault() {
        assert!(parse_json::<Sample>(br#"{"artifactId":"a"}"#).is_ok());
        let unknown = parse_json::<Sample>(br#"{"artifactId":"a","tenantId":"x"}"#).unwrap_err();
        assert_eq!(unknown.kind, ProblemKind::InvalidRequest);
        assert!(
            unknown.errors[0]
                .detail
                .contains("unknown field `tenantId`"),
            "{unknown:?}"
        );
        let wrong = parse_json::<Sample>(br#"{"artifactId":"a","revision":"x"}"#).unwrap_err();
        assert_eq!(pointer(&wrong), Some("/revision"));
        assert!(!wrong.errors[0].detail.contains("line"), "{wrong:?}");
        let missing = parse_json::<Sample>(b"{}").unwrap_err();
        assert!(missing.errors[0]
            .detail
            .contains("missing field `artifactId`"));
        let syntax = parse_json::<Sample>(b"{\"artifactId\":").unwrap_err();
        assert!(
            syntax.errors[0].detail.contains("not valid JSON"),
            "{syntax:?}"
        );
        let trailing = parse_json::<Sample>(br#"{"artifactId":"a"} x"#).unwrap_err();
        assert!(
            trailing.errors[0].detail.contains("not valid JSON"),
            "{trailing:?}"
        );
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats_and_fractions_are_refused() {
        #[derive(Debug, Deserialize)]
        struct Size {
            #[serde(default, deserialize_with = "whole_number")]
            n: Option<i32>,
        }
        let n = |text: &str| parse_json::<Size>(text.as_bytes()).map(|s| s.n);
        assert_eq!(n(r#"{"n": 1256}"#).unwrap(), Some(1256));
        assert_eq!(n(r#"{"n": 1256.0}"#).unwrap(), Some(1256));
        assert_eq!(n(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(n("{}").unwrap(), None);
        let fraction = n(r#"{"n": 1.5}"#).unwrap_err();
        assert_eq!(fraction.errors[0].pointer.as_deref(), Some("/n"));
        assert!(n(r#"{"n": 3000000000}"#).is_err());
        assert!(n(r#"{"n": "1"}"#).is_err());
    }

    #[test]
    fn content_types_other_than_json_are_refused() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(
            require_json(&headers).unwrap_err().kind,
            ProblemKind::UnsupportedMediaType
        );
        for (value, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(require_json(&headers).is_ok(), ok, "{value}");
        }
    }

    #[test]
    fn free_text_refuses_control_characters_and_length() {
        assert_eq!(
            check_text("messageNote", "Hello,\n\tsee you", Text::Note),
            None
        );
        assert!(check_text("messageNote", "Hi\r\nBcc: x@evil.example", Text::Note).is_some());
        assert!(check_text("displayName", "Kim\nBcc: x", Text::Name).is_some());
        assert!(check_text("displayName", "Kim\u{0}", Text::Name).is_some());
        assert!(check_text("contactId", " c-1", Text::Id).is_some());
        assert_eq!(
            check_text("displayName", &"é".repeat(200), Text::Name),
            None
        );
        assert!(check_text("displayName", &"é".repeat(201), Text::Name).is_some());
        assert!(check_text("url", "https://x.example/a b", Text::Url).is_some());
        assert_eq!(
            check_texts([
                ("a", Some("ok"), Text::Id),
                ("b", None, Text::Id),
                ("c", Some("x\u{7}"), Text::Name)
            ]),
            vec!["c: control characters are not allowed".to_string()]
        );
    }
}
