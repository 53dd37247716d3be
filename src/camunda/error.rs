//! Typed errors of the Camunda REST API.

use reqwest::StatusCode;
use serde::Deserialize;

/// The body the engine answers with on errors.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RestException {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    /// Camunda 7.19+ adds a numeric code to some errors.
    #[serde(default)]
    pub code: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CamundaError {
    /// The engine could not be reached or did not answer in time: worth retrying.
    #[error("engine unreachable: {0}")]
    Unavailable(#[source] reqwest::Error),
    /// The external task (or other resource) does not exist any more (completed, cancelled).
    #[error("not found: {0}")]
    NotFound(String),
    /// Another worker holds the lock on the task, or our lock is gone.
    #[error("lock lost: {0}")]
    LockLost(String),
    /// A message could not be correlated: nothing (or more than one execution) waits for it.
    #[error("message not correlated: {0}")]
    CorrelationMismatch(String),
    /// The engine refused the request as malformed (a bug on our side, or a bad model).
    #[error("bad request ({kind}): {message}")]
    BadRequest { kind: String, message: String },
    /// The engine failed while processing (5xx).
    #[error("engine error {status} ({kind}): {message}")]
    Server {
        status: u16,
        kind: String,
        message: String,
    },
    /// The engine answered something we could not read.
    #[error("unreadable engine answer: {0}")]
    Decode(String),
}

impl CamundaError {
    /// Errors that may pass by themselves: connection problems and server overload.
    pub fn is_transient(&self) -> bool {
        match self {
            CamundaError::Unavailable(_) => true,
            CamundaError::Server { status, kind, .. } => {
                *status == 503 || *status == 502 || *status == 504 || is_transient_engine_kind(kind)
            }
            _ => false,
        }
    }

    /// Maps an error answer of the engine to a typed error.
    pub fn from_response(status: StatusCode, body: &str) -> CamundaError {
        let exception: RestException =
            serde_json::from_str(body).unwrap_or_else(|_| RestException {
                kind: String::new(),
                message: body.chars().take(500).collect(),
                code: None,
            });
        let RestException { kind, message, .. } = exception;
        match status.as_u16() {
            404 => CamundaError::NotFound(message),
            400 if message.contains("MismatchingMessageCorrelationException")
                || message.starts_with("Cannot correlate message")
                || kind == "MismatchingMessageCorrelationException" =>
            {
                CamundaError::CorrelationMismatch(message)
            }
            400 if message.contains("is locked by worker")
                || message.contains("It is locked by")
                || message.contains("is not locked") =>
            {
                CamundaError::LockLost(message)
            }
            // The engine answers 500 with a NotFoundException-like message when a task vanished
            // between the lock and the call in some versions.
            500 if kind == "NotFoundException" => CamundaError::NotFound(message),
            code if (400..500).contains(&code) => CamundaError::BadRequest { kind, message },
            code => CamundaError::Server {
                status: code,
                kind,
                message,
            },
        }
    }
}

/// Engine-side exceptions that mean "try again", e.g. an optimistic locking conflict when
/// parallel tasks of one instance complete at the same time.
fn is_transient_engine_kind(kind: &str) -> bool {
    matches!(
        kind,
        "OptimisticLockingException" | "CannotCreateTransactionException"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lock_held_by_another_worker() {
        let body = r#"{"type":"RestException","message":"External Task 3 cannot be completed by worker 'a'. It is locked by worker 'b'."}"#;
        let err = CamundaError::from_response(StatusCode::BAD_REQUEST, body);
        assert!(matches!(err, CamundaError::LockLost(_)), "{err:?}");
        assert!(!err.is_transient());
    }

    #[test]
    fn maps_mismatching_correlation() {
        let body = r#"{"type":"RestException","message":"org.camunda.bpm.engine.MismatchingMessageCorrelationException: Cannot correlate message 'CommunicationSent': No process definition or execution matches the parameters"}"#;
        let err = CamundaError::from_response(StatusCode::BAD_REQUEST, body);
        assert!(
            matches!(err, CamundaError::CorrelationMismatch(_)),
            "{err:?}"
        );
    }

    #[test]
    fn maps_gone_task_and_server_errors() {
        let err = CamundaError::from_response(
            StatusCode::NOT_FOUND,
            r#"{"type":"RestException","message":"External task with id x does not exist"}"#,
        );
        assert!(matches!(err, CamundaError::NotFound(_)));
        let err = CamundaError::from_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"type":"OptimisticLockingException","message":"ENGINE-03005 ..."}"#,
        );
        assert!(err.is_transient());
        let err = CamundaError::from_response(
            StatusCode::BAD_REQUEST,
            r#"{"type":"InvalidRequestException","message":"bad"}"#,
        );
        assert!(matches!(err, CamundaError::BadRequest { .. }));
        assert!(!err.is_transient());
        let err = CamundaError::from_response(StatusCode::BAD_GATEWAY, "<html>proxy</html>");
        assert!(err.is_transient());
    }
}
