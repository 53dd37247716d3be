//! A quote proposal to the customer's contact, as the `send-proposal` topic and the API's
//! `POST /quotes/{quoteId}/revisions/{revisionNo}/proposal-deliveries` ask for it: the
//! recipient resolved and admitted, the proposal document checked (a portal link signed, or
//! an attachment prepared), the template rendered once, and one request to the ledger.

use std::collections::BTreeMap;

use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::artifacts::{signed_link, ArtifactCheck, AttachmentRef, DeliveryMode};
use crate::ledger::{
    Channel, NewCommunication, ProcessOrigin, Provenance, Rendering, RequestOutcome, Subject,
};
use crate::policy::{self, derive_key, Resolution};
use crate::templates::{origins_of, FieldKind, PassedField, Source};

use super::admission::mark_failed;
use super::{Intake, IntakeError, Purpose, HINT_KEY_PATTERN, HINT_LINK_SECRET};

/// A proposal delivery as asked for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalInput {
    pub quote_id: String,
    pub revision_no: i64,
    pub artifact_id: String,
    pub tenant_id: String,
    pub recipient: RecipientInput,
    pub locale: Option<String>,
    /// The market whose template version wins over the one for all markets (`DE`, `CH`); the
    /// contact's market when not given.
    pub market: Option<String>,
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

impl RecipientInput {
    /// The recipient references a record for this recipient may carry (before resolution):
    /// a contact's id; for an explicit address its keyed reference (when the key is set) and
    /// the one records made before references were keyed carry.
    pub fn recipient_refs(&self, key: Option<&crate::keyring::RefKey>) -> Vec<String> {
        match self {
            RecipientInput::Email(address) => key
                .map(|key| policy::address_ref(key, address.trim()))
                .into_iter()
                .chain([policy::earlier_address_ref(address.trim())])
                .collect(),
            RecipientInput::Contact(contact) => vec![contact.clone()],
        }
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

/// Proposal deliveries of one topic: its purpose, its key pattern and the document type a
/// proposal must carry.
pub struct Proposals {
    intake: Intake,
    /// The topic whose variables the proposal's values are (the API's commands send through
    /// it too): where `templates/fields.toml` classifies them.
    topic: String,
    purpose: Purpose,
    key_pattern: String,
    artifact_type: String,
}

/// What a proposal's template receives, field by field, and where each value comes from (the
/// topic's variables, or the same fields of the API command). `herald check` judges every
/// version of the topic's family that can be selected against it; a test holds it to
/// [`proposal_payload`].
pub const PROPOSAL_PAYLOAD: &[PassedField] = &[
    PassedField {
        name: "quoteNumber",
        kind: FieldKind::String,
        always: true,
        source: Source::Variable("quoteId"),
    },
    PassedField {
        name: "revisionNo",
        kind: FieldKind::Integer,
        always: true,
        source: Source::Variable("revisionNo"),
    },
    PassedField {
        name: "documentReference",
        kind: FieldKind::String,
        always: true,
        source: Source::Variable("artifactId"),
    },
    PassedField {
        name: "customerDisplayName",
        kind: FieldKind::String,
        always: true,
        source: Source::Contact("displayName"),
    },
    PassedField {
        name: "proposalLink",
        kind: FieldKind::String,
        always: false,
        source: Source::Herald("signed portal link"),
    },
    PassedField {
        name: "linkValidUntil",
        kind: FieldKind::String,
        always: false,
        source: Source::Herald("portal link's expiry date"),
    },
    PassedField {
        name: "attachmentName",
        kind: FieldKind::String,
        always: false,
        source: Source::Artifact("fileName"),
    },
    PassedField {
        name: "messageNote",
        kind: FieldKind::String,
        always: false,
        source: Source::Variable("messageNote"),
    },
];

/// The payload of a proposal's template ([`PROPOSAL_PAYLOAD`] says what each field is).
fn proposal_payload(
    input: &ProposalInput,
    display_name: Option<String>,
    document: &Document,
) -> serde_json::Value {
    json!({
        "quoteNumber": input.quote_id,
        "revisionNo": input.revision_no,
        "documentReference": input.artifact_id,
        "customerDisplayName": display_name.unwrap_or_else(|| "Customer".into()),
        "proposalLink": document.link,
        "linkValidUntil": document.link_valid_until,
        "attachmentName": document.attachment.as_ref().map(|a| a.file_name.clone()),
        "messageNote": input.message_note,
    })
}

/// The proposal document as the message carries it.
struct Document {
    link: Option<String>,
    link_valid_until: Option<String>,
    attachment: Option<AttachmentRef>,
    /// Why the document may not go out (a business refusal).
    refusal: Option<(&'static str, String)>,
}

impl Document {
    fn refused(code: &'static str, message: String) -> Document {
        Document {
            link: None,
            link_valid_until: None,
            attachment: None,
            refusal: Some((code, message)),
        }
    }
}

impl Proposals {
    pub fn new(
        intake: Intake,
        topic: &str,
        purpose: Purpose,
        key_pattern: String,
        artifact_type: Option<String>,
    ) -> Proposals {
        Proposals {
            intake,
            topic: topic.to_string(),
            purpose,
            key_pattern,
            artifact_type: artifact_type.unwrap_or_else(|| "PROPOSAL_DOCUMENT".into()),
        }
    }

    /// Records a proposal delivery (or finds the one its key names), from a process or from
    /// the API. Business refusals are statuses; errors are the intake's.
    pub async fn request(
        &self,
        input: &ProposalInput,
        key: ProposalKey,
        origin: Option<ProcessOrigin>,
    ) -> Result<RequestOutcome, IntakeError> {
        self.request_as(input, key, origin, None).await
    }

    /// A resend of proposal `original`: a new record linked to it, made as a new proposal is
    /// (recipient admitted, document checked, a fresh portal link), with the operator's reason
    /// as a decision.
    pub async fn resend(
        &self,
        input: &ProposalInput,
        key: String,
        original: crate::ledger::CommunicationId,
        reason: Option<String>,
    ) -> Result<RequestOutcome, IntakeError> {
        self.request_as(
            input,
            ProposalKey::Given(key),
            None,
            Some((original, reason)),
        )
        .await
    }

    async fn request_as(
        &self,
        input: &ProposalInput,
        key: ProposalKey,
        origin: Option<ProcessOrigin>,
        resend: Option<(crate::ledger::CommunicationId, Option<String>)>,
    ) -> Result<RequestOutcome, IntakeError> {
        let label = &self.purpose.label;
        let resolution = match &input.recipient {
            RecipientInput::Email(address) => policy::recipients::explicit_email(
                self.intake.ref_key(label)?,
                address,
                input.locale.as_deref(),
            ),
            RecipientInput::Contact(contact_id) => self
                .intake
                .directory
                .contact_email(&input.tenant_id, contact_id, input.locale.as_deref())
                .await
                .map_err(|e| IntakeError::ledger_down(label, e))?,
        };
        let idempotency_key = self.key(input, resolution.recipient_ref(), key.clone())?;
        // A proposal to an explicit address recorded before references were keyed keeps its
        // key and reference.
        let (idempotency_key, resolution) = match &input.recipient {
            RecipientInput::Email(address) => {
                let earlier_ref = policy::earlier_address_ref(address.trim());
                let earlier_key = self.key(input, &earlier_ref, key)?;
                self.intake
                    .keep_earlier_ref(
                        label,
                        &input.tenant_id,
                        idempotency_key,
                        resolution,
                        earlier_key,
                        earlier_ref,
                    )
                    .await?
            }
            RecipientInput::Contact(_) => (idempotency_key, resolution),
        };
        let (locale, market, display_name) = match &resolution {
            Resolution::Resolved {
                recipient,
                display_name,
            } => (
                recipient.locale.clone(),
                input.market.clone().or_else(|| recipient.market.clone()),
                display_name.clone(),
            ),
            _ => (input.locale.clone(), input.market.clone(), None),
        };
        let template = self.intake.family_template(
            &self.purpose,
            &self.purpose.template_family,
            locale.as_deref(),
            market.as_deref(),
        )?;
        let document = self.document(input).await?;
        let payload = proposal_payload(input, display_name, &document);
        self.intake.check_render(
            &self.purpose,
            template,
            &payload,
            &origins_of(PROPOSAL_PAYLOAD, &self.topic),
            resolution.recipient_type(),
        )?;

        let mut admitted = self
            .intake
            .admit_on(
                &self.purpose,
                &input.tenant_id,
                resolution,
                locale,
                Channel::Email,
            )
            .await?;
        // A document that may not go out fails the communication for good, like a recipient
        // that cannot be reached: a business outcome, never an incident.
        if let Some((code, message)) = document.refusal {
            mark_failed(&mut admitted, "artifact", code, message);
        }
        let requested_by = match (&origin, &resend) {
            (Some(_), _) => format!("camunda:{}", self.intake.requested_by),
            (None, Some(_)) => "api:resend".to_string(),
            (None, None) => "api".to_string(),
        };
        let mut provenance = Provenance::new(
            requested_by,
            Provenance::fresh_correlation_id(),
            &self.purpose.rule_ref,
        );
        provenance.origin = origin;
        if let Some((original, reason)) = resend {
            provenance = provenance.resend_of(original);
            admitted
                .decisions
                .insert(0, crate::ledger::Decision::resend(original, reason));
        }
        let new = NewCommunication::new(
            &input.tenant_id,
            idempotency_key,
            self.purpose.class,
            Subject::new(
                "QUOTE_REVISION",
                format!("{}/{}", input.quote_id, input.revision_no),
            )
            .of(Some(input.quote_id.clone()), None),
            admitted,
            Rendering {
                template_family: template.meta.family.clone(),
                template_version: template.meta.version.clone(),
                payload,
            },
            provenance,
        )
        .priority(self.purpose.priority)
        .carrying(
            vec![(input.artifact_id.clone(), "PROPOSAL_DOCUMENT".into())],
            document.attachment.into_iter().collect(),
        );
        self.intake.record(label, &new).await
    }

    /// The idempotency key: the topic's pattern filled with the business key and the inputs,
    /// or the API caller's.
    fn key(
        &self,
        input: &ProposalInput,
        recipient_ref: &str,
        key: ProposalKey,
    ) -> Result<String, IntakeError> {
        let business_key = match key {
            ProposalKey::Given(key) => return Ok(key),
            ProposalKey::FromBusinessKey(business_key) => business_key,
        };
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        values.insert("quoteId", input.quote_id.clone());
        values.insert("revisionNo", input.revision_no.to_string());
        values.insert("artifactId", input.artifact_id.clone());
        values.insert("tenantId", input.tenant_id.clone());
        values.insert("recipientRef", recipient_ref.to_string());
        values.insert("businessKey", business_key);
        derive_key(&self.key_pattern, &values).map_err(|e| {
            IntakeError::permanent(format!("{}: {e}", self.purpose.label), HINT_KEY_PATTERN)
        })
    }

    /// Checks the proposal document and prepares its link or attachment. A document that is
    /// not there yet is asked for again later.
    async fn document(&self, input: &ProposalInput) -> Result<Document, IntakeError> {
        let label = &self.purpose.label;
        let settings = &self.intake.artifacts;
        let expected = self.artifact_type.as_str();
        let subject_id = format!("{}/{}", input.quote_id, input.revision_no);
        let check = self
            .intake
            .registry
            .check_for_delivery(
                &input.tenant_id,
                &input.artifact_id,
                "QUOTE_REVISION",
                &subject_id,
                expected,
            )
            .await
            .map_err(|e| IntakeError::ledger_down(label, e))?;
        let artifact = match check {
            ArtifactCheck::Usable(artifact) => artifact,
            ArtifactCheck::Refused { code, message } => return Ok(Document::refused(code, message)),
            ArtifactCheck::NotYetAvailable => {
                return Err(IntakeError::NotYet {
                    message: format!("{label}: document '{}' is not available yet", input.artifact_id),
                    detail: format!(
                        "The {expected} '{}' of quote revision {subject_id} is not in herald's artifact registry (or not AVAILABLE) yet. herald asks again; when the retries run out, check the document service, then increment the retries.",
                        input.artifact_id
                    ),
                    retry_after: settings.wait_retry,
                })
            }
        };
        match input.delivery_mode {
            DeliveryMode::PortalLink => {
                let secret = settings
                    .link_secret
                    .as_ref()
                    .map(|s| s.expose_secret())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        IntakeError::permanent(
                            format!("{label}: no secret to sign portal links"),
                            HINT_LINK_SECRET,
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
                    return Ok(Document::refused(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_payload_is_the_one_built() {
        let input = |note: Option<&str>| ProposalInput {
            quote_id: "Q-1".into(),
            revision_no: 2,
            artifact_id: "doc-1".into(),
            tenant_id: "acme".into(),
            recipient: RecipientInput::Contact("c-1".into()),
            locale: None,
            market: None,
            delivery_mode: DeliveryMode::PortalLink,
            message_note: note.map(str::to_string),
        };
        let full = Document {
            link: Some("https://portal.example/x".into()),
            link_valid_until: Some("2026-12-31".into()),
            attachment: Some(AttachmentRef {
                artifact_id: "doc-1".into(),
                storage_location: "file:///tmp/doc-1.pdf".into(),
                file_name: "proposal.pdf".into(),
                media_type: "application/pdf".into(),
                max_bytes: 1,
            }),
            refusal: None,
        };
        let sparse = Document::refused("X", "y".into());
        crate::templates::fields::assert_declared(
            PROPOSAL_PAYLOAD,
            &proposal_payload(&input(Some("hi")), Some("Ann".into()), &full),
            &proposal_payload(&input(None), None, &sparse),
        );
    }
}
