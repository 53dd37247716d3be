//! `send-proposal`: deliver a quote proposal to the customer's contact.
//!
//! Reads `quoteId` (String), `revisionNo` (Integer), `artifactId` (String), `tenantId` (String),
//! `recipientEmail` (String) or `recipientContactId` (String), optional `locale`,
//! `deliveryMode` and `messageNote`; the intake records the communication under an
//! idempotency key derived from the process business key; the task is completed with
//! `communicationId` only.

use crate::artifacts::DeliveryMode;
use crate::camunda::worker::{BoxFuture, HandlerOutcome, TaskHandler, TechnicalFailure};
use crate::camunda::{LockedTask, VariableError, Variables, VariablesExt};
use crate::intake::proposal::{ProposalInput, ProposalKey, Proposals, RecipientInput};
use crate::intake::Intake;
use crate::ledger::ProcessOrigin;
use crate::templates::sanitize_note;

use super::{business_key, completed_with_communication, permanent, task_failure, TopicConfig};

pub struct SendProposal {
    proposals: Proposals,
    waits_for_outcome: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    #[error(transparent)]
    Variable(#[from] VariableError),
    #[error("give the recipient as either recipientEmail or recipientContactId, not both")]
    TwoRecipients,
    #[error("no recipient: set recipientEmail or recipientContactId")]
    NoRecipient,
    #[error("{0}")]
    DeliveryMode(String),
}

/// The inputs the topic reads, checked.
pub fn read_input(vars: &Variables) -> Result<ProposalInput, InputError> {
    let recipient = match (
        vars.opt_str("recipientEmail")?,
        vars.opt_str("recipientContactId")?,
    ) {
        (Some(_), Some(_)) => return Err(InputError::TwoRecipients),
        (Some(email), None) => RecipientInput::Email(email.to_string()),
        (None, Some(contact)) => RecipientInput::Contact(contact.to_string()),
        (None, None) => return Err(InputError::NoRecipient),
    };
    Ok(ProposalInput {
        quote_id: vars.require_str("quoteId")?.to_string(),
        revision_no: vars.require_i64("revisionNo")?,
        artifact_id: vars.require_str("artifactId")?.to_string(),
        tenant_id: vars.require_str("tenantId")?.to_string(),
        recipient,
        locale: vars.opt_str("locale")?.map(str::to_string),
        market: vars.opt_str("market")?.map(str::to_string),
        delivery_mode: match vars.opt_str("deliveryMode")? {
            Some(mode) => mode.parse().map_err(InputError::DeliveryMode)?,
            None => DeliveryMode::PortalLink,
        },
        message_note: vars
            .opt_str("messageNote")?
            .map(sanitize_note)
            .filter(|n| !n.is_empty()),
    })
}

/// The topic's proposal deliveries, as the intake takes them (the API sends through the same).
pub fn proposals(topic: &TopicConfig, intake: Intake) -> Proposals {
    Proposals::new(
        intake,
        &topic.topic,
        topic.purpose(),
        topic.idempotency_key.clone(),
        topic.artifact_type.clone(),
    )
}

impl SendProposal {
    pub fn new(topic: TopicConfig, intake: Intake) -> SendProposal {
        SendProposal {
            proposals: proposals(&topic, intake),
            waits_for_outcome: topic.waits_for_outcome,
        }
    }

    async fn run(&self, task: &LockedTask) -> Result<String, TechnicalFailure> {
        let input = read_input(&task.variables).map_err(|e| {
            permanent(
                format!("{}: {e}", task.topic_name),
                format!(
                    "The service task '{}' of process '{}' must provide quoteId (String), revisionNo (Integer), artifactId (String), tenantId (String), recipientEmail or recipientContactId (String), optional locale (String). Fix the model or the process variables, then increment the retries.",
                    task.activity_id.as_deref().unwrap_or("?"),
                    task.process_definition_key.as_deref().unwrap_or("?"),
                ),
            )
        })?;
        let business_key = business_key(task)?;
        let origin = ProcessOrigin::from_task(task, &business_key, self.waits_for_outcome);
        let outcome = self
            .proposals
            .request(
                &input,
                ProposalKey::FromBusinessKey(business_key),
                Some(origin),
            )
            .await
            .map_err(task_failure)?;
        Ok(outcome.communication_id.to_string())
    }
}

impl TaskHandler for SendProposal {
    fn handle<'a>(&'a self, task: &'a LockedTask) -> BoxFuture<'a, HandlerOutcome> {
        Box::pin(async move { completed_with_communication(self.run(task).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> Variables {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reads_the_topic_contract() {
        let input = read_input(&vars(json!({
            "quoteId": {"type": "String", "value": "Q-1"},
            "revisionNo": {"type": "Integer", "value": 4},
            "artifactId": {"type": "String", "value": "doc-1"},
            "tenantId": {"type": "String", "value": "acme"},
            "recipientContactId": {"type": "String", "value": "contact-551"}
        })))
        .unwrap();
        assert_eq!(
            input.recipient,
            RecipientInput::Contact("contact-551".into())
        );
        assert_eq!(input.revision_no, 4);
        assert_eq!(input.locale, None);
    }

    #[test]
    fn refuses_ambiguous_or_missing_recipients() {
        let base = json!({
            "quoteId": {"type": "String", "value": "Q-1"},
            "revisionNo": {"type": "Integer", "value": 4},
            "artifactId": {"type": "String", "value": "doc-1"},
            "tenantId": {"type": "String", "value": "acme"}
        });
        assert_eq!(
            read_input(&vars(base.clone())).unwrap_err(),
            InputError::NoRecipient
        );
        let mut both = base.clone();
        both["recipientEmail"] = json!({"type": "String", "value": "a@b.example"});
        both["recipientContactId"] = json!({"type": "String", "value": "c"});
        assert_eq!(
            read_input(&vars(both)).unwrap_err(),
            InputError::TwoRecipients
        );
        let mut wrong = base;
        wrong["recipientEmail"] = json!({"type": "String", "value": "a@b.example"});
        wrong["revisionNo"] = json!({"type": "String", "value": "4"});
        assert!(read_input(&vars(wrong))
            .unwrap_err()
            .to_string()
            .contains("revisionNo"));
    }
}
