//! `send-proposal`: deliver a quote proposal to the customer's contact.
//!
//! Reads what [`PROPOSAL_INPUTS`] declares: `quoteId` (String), `revisionNo` (Integer),
//! `artifactId` (String), `tenantId` (String), `recipientEmail` (String) or
//! `recipientContactId` (String), optional `locale`, `market`, `deliveryMode` and
//! `messageNote`; a variable that is null counts as absent. The intake records the
//! communication under an idempotency key derived from the process business key; the task is
//! completed with `communicationId` only.

use crate::artifacts::DeliveryMode;
use crate::camunda::worker::{BoxFuture, HandlerOutcome, TaskHandler, TechnicalFailure};
use crate::camunda::{LockedTask, VariableError, Variables, VariablesExt};
use crate::intake::proposal::{ProposalInput, ProposalKey, Proposals, RecipientInput};
use crate::intake::Intake;
use crate::ledger::ProcessOrigin;
use crate::templates::sanitize_note;

use super::inputs::{Choice, InputKind, InputPattern, InputSource, TaskInput, LOCALE_PATTERN};
use super::{business_key, completed_with_communication, permanent, task_failure, TopicConfig};

/// What [`read_input`] reads, in the order a designer fills it in.
pub const PROPOSAL_INPUTS: &[TaskInput] = &[
    TaskInput {
        name: "quoteId",
        kind: InputKind::String,
        required: true,
        pattern: None,
        label: "Quote id",
        description: "The quote the proposal is for.",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "revisionNo",
        kind: InputKind::Integer,
        required: true,
        pattern: None,
        label: "Quote revision",
        description: "The revision of the quote the document belongs to (an Integer).",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "artifactId",
        kind: InputKind::String,
        required: true,
        pattern: None,
        label: "Proposal document",
        description: "The document's id in herald's artifact registry: an AVAILABLE PROPOSAL_DOCUMENT of the same tenant and quote revision (the task waits while it is not there yet).",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "tenantId",
        kind: InputKind::String,
        required: true,
        pattern: None,
        label: "Tenant",
        description: "The tenant the quote and the document belong to.",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "recipientEmail",
        kind: InputKind::String,
        required: false,
        pattern: Some(InputPattern {
            regex: r"[^@\s]+@[^@\s]+\.[^@\s]+",
            message: "An email address such as buyer@example.com, or an expression such as ${buyerEmail}.",
        }),
        label: "Recipient email",
        description: "The customer's email address. Give either this or the recipient contact id, never both.",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "recipientContactId",
        kind: InputKind::String,
        required: false,
        pattern: None,
        label: "Recipient contact id",
        description: "A contact of herald's contact directory (address, name, locale and market come from it). Give either this or the recipient email, never both.",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "locale",
        kind: InputKind::String,
        required: false,
        pattern: Some(LOCALE_PATTERN),
        label: "Locale",
        description: "The language of the proposal, e.g. de-AT (then de, then en). Empty: the contact's locale, else en.",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "market",
        kind: InputKind::String,
        required: false,
        pattern: None,
        label: "Market",
        description: "A template version made for this market wins, e.g. CH. Empty: the contact's market.",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "deliveryMode",
        kind: InputKind::Choice(delivery_modes),
        required: false,
        pattern: None,
        label: "Delivery mode",
        description: "How the document reaches the customer: a signed link to the portal (the default) or an attachment.",
        source: InputSource::Variable,
    },
    TaskInput {
        name: "messageNote",
        kind: InputKind::Text,
        required: false,
        pattern: None,
        label: "Note to the customer",
        description: "The sales rep's note, shown in the email; markup and control characters are stripped.",
        source: InputSource::Variable,
    },
];

/// The delivery modes a model may ask for, as [`DeliveryMode`] names them.
fn delivery_modes() -> Vec<Choice> {
    DeliveryMode::ALL
        .into_iter()
        .map(|mode| Choice {
            value: mode.as_str(),
            name: match mode {
                DeliveryMode::PortalLink => "Portal link",
                DeliveryMode::Attachment => "Attachment",
            },
        })
        .collect()
}

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

    /// Every declared input, set: the required ones and the optional ones but
    /// `recipientContactId` (the recipient is given by email).
    fn all_inputs() -> serde_json::Value {
        json!({
            "quoteId": {"type": "String", "value": "Q-1"},
            "revisionNo": {"type": "Integer", "value": 4},
            "artifactId": {"type": "String", "value": "doc-1"},
            "tenantId": {"type": "String", "value": "acme"},
            "recipientEmail": {"type": "String", "value": "buyer@example.com"},
            "locale": {"type": "String", "value": "de-AT"},
            "market": {"type": "String", "value": "CH"},
            "deliveryMode": {"type": "String", "value": "ATTACHMENT"},
            "messageNote": {"type": "String", "value": "Hello"}
        })
    }

    #[test]
    fn the_declared_inputs_are_the_ones_read() {
        let full = all_inputs();
        let input = read_input(&vars(full.clone())).unwrap();
        assert_eq!(input.market.as_deref(), Some("CH"));
        assert_eq!(input.delivery_mode, DeliveryMode::Attachment);
        let recipients = ["recipientEmail", "recipientContactId"];
        for declared in PROPOSAL_INPUTS {
            let name = declared.name;
            if recipients.contains(&name) {
                continue;
            }
            // Read: a value of the wrong type is refused, naming the variable.
            let mut wrong = full.clone();
            wrong[name] = json!({"type": "Boolean", "value": true});
            let err = read_input(&vars(wrong)).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
            // A null (an input parameter without value) is the same as a missing variable.
            let mut null = full.clone();
            null[name] = json!({"type": "Null", "value": null});
            let mut missing = full.clone();
            missing.as_object_mut().unwrap().remove(name);
            for (how, v) in [("null", null), ("missing", missing)] {
                match read_input(&vars(v)) {
                    Ok(_) => assert!(!declared.required, "{name} {how} was accepted"),
                    Err(e) => {
                        assert!(declared.required, "{name} {how}: {e}");
                        assert!(e.to_string().contains(name), "{name}: {e}");
                    }
                }
            }
        }
        // Either recipient may be null when the other is given.
        let mut by_contact = full.clone();
        by_contact["recipientEmail"] = json!({"type": "Null", "value": null});
        by_contact["recipientContactId"] = json!({"type": "String", "value": "c-1"});
        assert_eq!(
            read_input(&vars(by_contact)).unwrap().recipient,
            RecipientInput::Contact("c-1".into())
        );
        let mut by_email = full;
        by_email["recipientContactId"] = json!({"type": "Null", "value": null});
        assert!(read_input(&vars(by_email)).is_ok());
    }

    #[test]
    fn every_delivery_mode_offered_is_accepted() {
        let choices = delivery_modes();
        assert_eq!(choices.len(), DeliveryMode::ALL.len());
        for choice in choices {
            let mut v = all_inputs();
            v["deliveryMode"] = json!({"type": "String", "value": choice.value});
            assert_eq!(
                read_input(&vars(v)).unwrap().delivery_mode.as_str(),
                choice.value
            );
        }
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
