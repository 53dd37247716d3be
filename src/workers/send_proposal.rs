//! `send-proposal`: deliver a quote proposal to the customer's contact.
//!
//! Reads `quoteId` (String), `revisionNo` (Integer), `artifactId` (String), `tenantId` (String),
//! `recipientEmail` (String) or `recipientContactId` (String), optional `locale`; records the
//! communication under an idempotency key derived from the process business key; completes the
//! task with `communicationId` only.

use std::collections::BTreeMap;

use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::camunda::worker::{BoxFuture, HandlerOutcome, TaskHandler, TechnicalFailure};
use crate::camunda::{LockedTask, VariableError, Variables, VariablesExt};
use crate::ledger::{NewCommunication, ProcessOrigin};
use crate::policy::{self, derive_key, Resolution};
use crate::workers::{ledger_down, ledger_failure};

use super::{admit, completed_with_communication, permanent, HandlerDeps, TopicConfig};
use crate::artifacts::{
    check_for_delivery, signed_link, ArtifactCheck, AttachmentRef, DeliveryMode,
};
use crate::ledger::{Admission, RequestOutcome};
use crate::policy::preferences::{Decision, DecisionOutcome};
use crate::templates::sanitize_note;

pub struct SendProposal {
    topic: TopicConfig,
    deps: HandlerDeps,
}

/// The inputs the topic reads, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalInput {
    pub quote_id: String,
    pub revision_no: i64,
    pub artifact_id: String,
    pub tenant_id: String,
    pub recipient: RecipientInput,
    pub locale: Option<String>,
    /// PORTAL_LINK (default) or ATTACHMENT.
    pub delivery_mode: DeliveryMode,
    /// The sales rep's note, sanitized (no markup, no control characters).
    pub message_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecipientInput {
    Email(String),
    Contact(String),
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

impl ProposalInput {
    pub fn read(vars: &Variables) -> Result<ProposalInput, InputError> {
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
}

/// The proposal document as the message carries it.
struct Document {
    link: Option<String>,
    link_valid_until: Option<String>,
    attachment: Option<AttachmentRef>,
    /// Why the document may not go out (a business refusal).
    refusal: Option<(&'static str, String)>,
}

impl SendProposal {
    pub fn new(topic: TopicConfig, deps: HandlerDeps) -> SendProposal {
        SendProposal { topic, deps }
    }

    /// Checks the proposal document and prepares its link or attachment. A document that is
    /// not there yet makes the task wait and ask again (handleFailure with a retry timeout).
    async fn document(&self, input: &ProposalInput) -> Result<Document, TechnicalFailure> {
        let topic = &self.topic.topic;
        let settings = &self.deps.artifacts;
        let expected = self
            .topic
            .artifact_type
            .as_deref()
            .unwrap_or("PROPOSAL_DOCUMENT");
        let subject_id = format!("{}/{}", input.quote_id, input.revision_no);
        let check = check_for_delivery(
            self.deps.ledger.pool(),
            &input.tenant_id,
            &input.artifact_id,
            "QUOTE_REVISION",
            &subject_id,
            expected,
        )
        .await
        .map_err(|e| ledger_down(topic, e))?;
        let refused = |code: &'static str, message: String| Document {
            link: None,
            link_valid_until: None,
            attachment: None,
            refusal: Some((code, message)),
        };
        let artifact = match check {
            ArtifactCheck::Usable(artifact) => artifact,
            ArtifactCheck::Refused { code, message } => return Ok(refused(code, message)),
            ArtifactCheck::NotYetAvailable => {
                return Err(TechnicalFailure {
                    message: format!("{topic}: document '{}' is not available yet", input.artifact_id),
                    details: format!(
                        "The {expected} '{}' of quote revision {subject_id} is not in herald's artifact registry (or not AVAILABLE) yet. herald asks again; when the retries run out, check the document service, then increment the retries.",
                        input.artifact_id
                    ),
                    permanent: false,
                    retry_after: Some(settings.wait_retry),
                })
            }
        };
        match input.delivery_mode {
            DeliveryMode::PortalLink => {
                let secret = settings.link_secret.as_ref().map(|s| s.expose_secret()).filter(|s| !s.is_empty()).ok_or_else(|| {
                    permanent(
                        format!("{topic}: no secret to sign portal links"),
                        "Set HERALD_ARTIFACTS__LINK_SECRET in herald's environment, then increment the retries.",
                    )
                })?;
                let expires =
                    Utc::now() + chrono::Duration::seconds(settings.link_ttl.as_secs() as i64);
                Ok(Document {
                    link: Some(signed_link(
                        &settings.portal_base_url,
                        secret.as_bytes(),
                        &input.tenant_id,
                        &artifact.artifact_id,
                        expires,
                    )),
                    link_valid_until: Some(expires.format("%Y-%m-%d").to_string()),
                    attachment: None,
                    refusal: None,
                })
            }
            DeliveryMode::Attachment => {
                let size = artifact.size_bytes.unwrap_or(0).max(0) as u64;
                if size > settings.max_attachment_bytes {
                    return Ok(refused(
                        "ARTIFACT_TOO_LARGE",
                        format!(
                            "document '{}' has {size} bytes; attachments may have {} (send a portal link instead)",
                            artifact.artifact_id, settings.max_attachment_bytes
                        ),
                    ));
                }
                Ok(Document {
                    link: None,
                    link_valid_until: None,
                    attachment: Some(AttachmentRef {
                        artifact_id: artifact.artifact_id.clone(),
                        storage_location: artifact.storage_location.clone(),
                        file_name: artifact.file_name.clone(),
                        media_type: artifact.media_type.clone(),
                        max_bytes: settings.max_attachment_bytes,
                    }),
                    refusal: None,
                })
            }
        }
    }

    async fn run(&self, task: &LockedTask) -> Result<String, TechnicalFailure> {
        let topic = &self.topic.topic;
        let input = ProposalInput::read(&task.variables).map_err(|e| {
            permanent(
                format!("{topic}: {e}"),
                format!(
                    "The service task '{}' of process '{}' must provide quoteId (String), revisionNo (Integer), artifactId (String), tenantId (String), recipientEmail or recipientContactId (String), optional locale (String). Fix the model or the process variables, then increment the retries.",
                    task.activity_id.as_deref().unwrap_or("?"),
                    task.process_definition_key.as_deref().unwrap_or("?"),
                ),
            )
        })?;
        let business_key = task.business_key.clone().filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            permanent(
                format!("{topic}: the process instance has no business key"),
                "herald derives the idempotency key from the process business key: start the process with a businessKey (e.g. the quote revision).",
            )
        })?;
        let origin = ProcessOrigin {
            process_instance_id: task.process_instance_id.clone(),
            business_key: Some(business_key.clone()),
            activity_id: task.activity_id.clone(),
            topic: topic.clone(),
            task_id: task.id.clone(),
            waits_for_outcome: self.topic.waits_for_outcome,
        };
        let outcome = self
            .request(
                &input,
                ProposalKey::FromBusinessKey(business_key),
                Some(origin),
            )
            .await?;
        Ok(outcome.communication_id.to_string())
    }

    /// Records a proposal delivery (or finds the one its key names), from a process or from the
    /// API. Business refusals are statuses; errors are technical failures.
    pub async fn request(
        &self,
        input: &ProposalInput,
        key: ProposalKey,
        origin: Option<ProcessOrigin>,
    ) -> Result<RequestOutcome, TechnicalFailure> {
        let topic = &self.topic.topic;

        let resolution = match &input.recipient {
            RecipientInput::Email(address) => {
                policy::recipients::explicit_email(address, input.locale.as_deref())
            }
            RecipientInput::Contact(contact_id) => policy::recipients::contact_email(
                self.deps.ledger.pool(),
                &input.tenant_id,
                contact_id,
                input.locale.as_deref(),
            )
            .await
            .map_err(|e| ledger_down(topic, e))?,
        };

        let mut key_values: BTreeMap<&str, String> = BTreeMap::new();
        key_values.insert("quoteId", input.quote_id.clone());
        key_values.insert("revisionNo", input.revision_no.to_string());
        key_values.insert("artifactId", input.artifact_id.clone());
        key_values.insert("tenantId", input.tenant_id.clone());
        key_values.insert("recipientRef", resolution.recipient_ref().to_string());
        let idempotency_key = match key {
            ProposalKey::FromBusinessKey(business_key) => {
                key_values.insert("businessKey", business_key);
                derive_key(&self.topic.idempotency_key, &key_values).map_err(|e| {
                    permanent(
                        format!("{topic}: {e}"),
                        "Fix the idempotency_key pattern in the topic file.",
                    )
                })?
            }
            ProposalKey::Given(key) => key,
        };

        let locale = match &resolution {
            Resolution::Resolved { recipient, .. } => recipient.locale.clone(),
            _ => input.locale.clone(),
        };
        let template = self.deps.template(&self.topic, locale.as_deref())?;
        let display_name = match &resolution {
            Resolution::Resolved { display_name, .. } => display_name.clone(),
            _ => None,
        };
        let document = self.document(input).await?;
        let payload = json!({
            "quoteNumber": input.quote_id,
            "revisionNo": input.revision_no,
            "documentReference": input.artifact_id,
            "customerDisplayName": display_name.unwrap_or_else(|| "Customer".into()),
            "proposalLink": document.link,
            "linkValidUntil": document.link_valid_until,
            "attachmentName": document.attachment.as_ref().map(|a| a.file_name.clone()),
            "messageNote": input.message_note,
        });
        // Render once now: a template that cannot render is a configuration error for Cockpit,
        // not a delivery failure discovered later.
        self.deps.check_render(&self.topic, template, &payload)?;

        let mut admitted = admit(
            &self.deps,
            &self.topic.purpose(),
            &input.tenant_id,
            resolution,
            locale.clone(),
        )
        .await?;
        // A document that may not go out fails the communication for good, like a recipient
        // that cannot be reached: a business outcome, never an incident.
        if let Some((code, message)) = document.refusal {
            admitted.decisions.push(Decision {
                check: "artifact",
                outcome: DecisionOutcome::Fail,
                reason_code: code.into(),
                detail: message.clone(),
            });
            if matches!(admitted.admission, Admission::Queue) {
                admitted.admission = Admission::Fail {
                    code: code.into(),
                    message,
                };
            }
        }
        let new = NewCommunication {
            tenant_id: input.tenant_id.clone(),
            communication_type: self.topic.communication_type,
            category: self.topic.category,
            subject_type: "QUOTE_REVISION".into(),
            subject_id: format!("{}/{}", input.quote_id, input.revision_no),
            quote_id: Some(input.quote_id.clone()),
            order_id: None,
            recipient: admitted.recipient,
            address_hash: admitted.address_hash,
            address_masked: admitted.address_masked,
            template_family: template.meta.family.clone(),
            template_version: template.meta.version.clone(),
            idempotency_key,
            requested_by: match &origin {
                Some(_) => format!("camunda:{}", self.deps.requested_by),
                None => "api".to_string(),
            },
            correlation_id: uuid::Uuid::now_v7().to_string(),
            origin,
            artifacts: vec![(input.artifact_id.clone(), "PROPOSAL_DOCUMENT".into())],
            render_payload: payload,
            admission: admitted.admission,
            about_task_id: None,
            not_before: admitted.not_before,
            decisions: admitted.decisions,
            attachments: document.attachment.into_iter().collect(),
            rule_ref: self.topic.rule_ref(),
            priority: self.topic.priority,
            resend_of: None,
            group_key: None,
        };
        let outcome = self
            .deps
            .ledger
            .request(&new)
            .await
            .map_err(|e| ledger_failure(topic, e))?;
        tracing::info!(
            communicationId = %outcome.communication_id,
            status = %outcome.status,
            created = outcome.created,
            "communication recorded"
        );
        Ok(outcome)
    }
}

/// Where a proposal's idempotency key comes from.
#[derive(Debug, Clone)]
pub enum ProposalKey {
    /// The topic's pattern, filled with the process business key and the inputs.
    FromBusinessKey(String),
    /// An API caller's `Idempotency-Key`, already scoped.
    Given(String),
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
        let input = ProposalInput::read(&vars(json!({
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
            ProposalInput::read(&vars(base.clone())).unwrap_err(),
            InputError::NoRecipient
        );
        let mut both = base.clone();
        both["recipientEmail"] = json!({"type": "String", "value": "a@b.example"});
        both["recipientContactId"] = json!({"type": "String", "value": "c"});
        assert_eq!(
            ProposalInput::read(&vars(both)).unwrap_err(),
            InputError::TwoRecipients
        );
        let mut wrong = base;
        wrong["recipientEmail"] = json!({"type": "String", "value": "a@b.example"});
        wrong["revisionNo"] = json!({"type": "String", "value": "4"});
        assert!(ProposalInput::read(&vars(wrong))
            .unwrap_err()
            .to_string()
            .contains("revisionNo"));
    }
}
