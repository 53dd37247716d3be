//! Topic handlers, one file per topic: each reads its task's variables, hands the intake what
//! the task asks for, and completes the task with `communicationId` only. The topic files of
//! `topics/*.toml` wire them ([`topics`]).

pub mod element_templates;
pub mod fetch_counts;
pub mod inputs;
pub mod send_proposal;
pub mod task_notice;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::camunda::worker::{
    HandlerOutcome, IncidentPolicy, Subscription, TaskHandler, TechnicalFailure,
};
use crate::camunda::{LockedTask, TypedValue, Variables};
use crate::intake::{Intake, IntakeError};
use crate::ledger::ProcessOrigin;

pub use topics::{
    load_topics, FetchConfig, HandlerKind, IncidentConfig, ModelerConfig, TopicConfig, TopicError,
};

/// Builds the subscriptions of the enabled topics.
pub fn subscriptions(topics: &[TopicConfig], intake: &Intake) -> Vec<Subscription> {
    topics
        .iter()
        .filter(|t| {
            let active = t.enabled && t.effective_at(Utc::now());
            if !active {
                tracing::info!(topic = %t.topic, "topic disabled or not effective: not subscribed");
            }
            active
        })
        .map(|topic| {
            let handler: Arc<dyn TaskHandler> = match topic.handler {
                HandlerKind::SendProposal => Arc::new(send_proposal::SendProposal::new(
                    topic.clone(),
                    intake.clone(),
                )),
                HandlerKind::ApprovalReminder => Arc::new(task_notice::TaskNotice::new(
                    topic.clone(),
                    intake.clone(),
                    task_notice::NoticeKind::Reminder,
                )),
                HandlerKind::Escalation => Arc::new(task_notice::TaskNotice::new(
                    topic.clone(),
                    intake.clone(),
                    task_notice::NoticeKind::Escalation,
                )),
            };
            subscription(topic, handler)
        })
        .collect()
}

/// What an operator is told to do about a process without a business key.
pub(crate) const HINT_BUSINESS_KEY: &str = "herald derives idempotency keys from the process business key: start the process with a businessKey (e.g. the quote revision).";
/// What an operator is told to do about a task variable of the wrong type.
pub(crate) const HINT_VARIABLE_TYPE: &str = "Fix the variable's type in the model.";

/// What the worker loop fetches for a topic, and the handler that serves its tasks.
pub fn subscription(topic: &TopicConfig, handler: Arc<dyn TaskHandler>) -> Subscription {
    Subscription {
        topic: topic.topic.clone(),
        lock_duration: Duration::from_millis(topic.lock_duration_ms),
        variables: topic.variables.clone(),
        include_extension_properties: topic.include_extension_properties,
        order: topic.fetch.order(),
        incident: IncidentPolicy {
            retries: topic.incident.retries,
            retry_timeouts: topic
                .incident
                .retry_timeouts_ms
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
            lock_losses: topic.incident.lock_losses,
        },
        handler,
    }
}

/// A failure that no retry fixes (a model or configuration error): an incident at once.
pub(crate) fn permanent(
    message: impl Into<String>,
    details: impl Into<String>,
) -> TechnicalFailure {
    TechnicalFailure {
        message: message.into(),
        details: details.into(),
        permanent: true,
        retry_after: None,
    }
}

/// What the engine is told when the intake could not take a task's request: an outage is
/// retried (then an incident), something that waits is asked for again after its delay,
/// anything else is an incident at once.
pub(crate) fn task_failure(err: IntakeError) -> TechnicalFailure {
    match err {
        IntakeError::Unavailable { message, detail } => TechnicalFailure {
            message,
            details: detail,
            permanent: false,
            retry_after: None,
        },
        IntakeError::Permanent { message, detail } => permanent(message, detail),
        IntakeError::NotYet {
            message,
            detail,
            retry_after,
        } => TechnicalFailure {
            message,
            details: detail,
            permanent: false,
            retry_after: Some(retry_after),
        },
    }
}

/// The process instance a task belongs to, as the ledger records it with the communication.
impl ProcessOrigin {
    pub fn from_task(task: &LockedTask, business_key: &str, waits_for_outcome: bool) -> Self {
        ProcessOrigin {
            process_instance_id: task.process_instance_id.clone(),
            business_key: Some(business_key.to_string()),
            activity_id: task.activity_id.clone(),
            process_definition_id: task.process_definition_id.clone(),
            activity_instance_id: task.activity_instance_id.clone(),
            topic: task.topic_name.clone(),
            task_id: task.id.clone(),
            waits_for_outcome,
        }
    }
}

/// The task's business key: herald derives idempotency keys from it, so a process without
/// one is a model error.
pub(crate) fn business_key(task: &LockedTask) -> Result<String, TechnicalFailure> {
    task.business_key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            permanent(
                format!(
                    "{}: the process instance has no business key",
                    task.topic_name
                ),
                HINT_BUSINESS_KEY,
            )
        })
}

/// A handler's result as the task's outcome: complete with `communicationId` only, or report
/// the failure.
pub(crate) fn completed_with_communication(
    result: Result<String, TechnicalFailure>,
) -> HandlerOutcome {
    match result {
        Ok(communication_id) => {
            let mut variables = Variables::new();
            variables.insert(
                "communicationId".into(),
                TypedValue::string(communication_id),
            );
            HandlerOutcome::Complete(variables)
        }
        Err(failure) => HandlerOutcome::Failure(failure),
    }
}
