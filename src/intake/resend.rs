//! Resends: a new record linked to the original (`resendOf`), to the same recipient unless
//! another is given, admitted afresh (preferences, consent and suppression apply; a refusal is
//! the resend's business status). A proposal is made again as a new one is (the document
//! checked, a fresh portal link); any other communication is resent with its content: the
//! delivery job's while it holds it, then the inputs the ledger keeps sealed for
//! `delivery.resend_window` once the job ended (`crate::ledger::resend`). After that herald
//! keeps only the content hash, and the communication is asked for again with its command.

use crate::artifacts::DeliveryMode;
use crate::ledger::resend::ResendSource;
use crate::ledger::{
    Channel, CommunicationId, CommunicationType, Decision, NewCommunication, Provenance,
    RecipientType, Rendering, RequestOutcome, DEFAULT_PRIORITY,
};
use crate::policy::channel_choice::{on_channel, ChannelMode};
use crate::policy::identity::engine_user;
use crate::policy::recipients::explicit_email;
use crate::policy::Resolution;

use super::proposal::{ProposalInput, Proposals, RecipientInput};
use super::{Intake, IntakeError, Purpose};

/// A resend as asked for, checked.
#[derive(Debug, Clone)]
pub struct ResendInput {
    pub tenant_id: String,
    pub original: CommunicationId,
    /// Another recipient; the original's when `None`.
    pub recipient: Option<RecipientInput>,
    /// Why, as history shows it (sanitized).
    pub reason: Option<String>,
    /// The ledger's idempotency key of the resend.
    pub key: String,
}

/// Why a resend is not made.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// No such communication of the tenant (404).
    #[error("no such communication")]
    NotFound,
    /// This communication cannot be resent (409), with the reason.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl Intake {
    /// Resends a communication of the tenant (see the module's notes).
    pub async fn resend(
        &self,
        proposals: Option<&Proposals>,
        input: &ResendInput,
    ) -> Result<RequestOutcome, ResendError> {
        let label = "resend";
        let source = self
            .ledger
            .resend_source(&input.tenant_id, input.original)
            .await
            .map_err(|e| IntakeError::ledger(label, e))?
            .ok_or(ResendError::NotFound)?;
        if source.is_parent {
            return Err(ResendError::Refused(
                "this communication stands for several recipients: resend one of its children"
                    .into(),
            ));
        }
        if source.channel == Channel::Webhook {
            return Err(ResendError::Refused(
                "a webhook is replayed, not resent (POST /v1/communications/{id}/replay)".into(),
            ));
        }
        let recipient = match &input.recipient {
            Some(given) => given.clone(),
            None => same_recipient(&source)?,
        };
        if source.class.communication_type == CommunicationType::QuoteProposalDelivery {
            let proposals = proposals.ok_or_else(|| {
                ResendError::Refused("no send-proposal topic is configured".into())
            })?;
            let proposal = proposal_of(&source, &input.tenant_id, recipient)?;
            return Ok(proposals
                .resend(
                    &proposal,
                    input.key.clone(),
                    source.id,
                    input.reason.clone(),
                )
                .await?);
        }
        self.resend_content(&source, recipient, input).await
    }

    /// A resend of the content the delivery job or the kept inputs still hold.
    async fn resend_content(
        &self,
        source: &ResendSource,
        recipient: RecipientInput,
        input: &ResendInput,
    ) -> Result<RequestOutcome, ResendError> {
        let label = "resend";
        let Some(mut payload) = source.payload.clone() else {
            return Err(ResendError::Refused(format!(
                "the content of this communication was erased when it became {}: herald keeps \
                 it for resends for {NOT_KEPT}; ask for it again with its command",
                source.status
            )));
        };
        let locale = source.locale.as_deref();
        let resolution = match (&input.recipient, source.recipient_type) {
            // An engine user is resolved again from the engine's identity service.
            (None, RecipientType::User) => {
                let user = source.recipient_ref.trim_start_matches("user:");
                let profile = self
                    .camunda
                    .user_profile(user)
                    .await
                    .map_err(|e| IntakeError::engine_down(label, e))?;
                engine_user(user, profile.as_ref(), locale)
            }
            _ => match &recipient {
                RecipientInput::Contact(contact) => self
                    .directory
                    .contact_email(&input.tenant_id, contact, locale)
                    .await
                    .map_err(|e| IntakeError::ledger_down(label, e))?,
                RecipientInput::Email(address) => {
                    explicit_email(self.ref_key(label)?, address, locale)
                }
            },
        };
        let template = self
            .templates
            .get(&source.template_family, &source.template_version)
            .map_err(|e| {
                IntakeError::permanent(format!("{label}: {e}"), super::HINT_TEMPLATE_MISSING)
            })?;
        if let (Resolution::Resolved { display_name, .. }, Some(fields)) =
            (&resolution, payload.as_object_mut())
        {
            if fields.contains_key("recipientName") {
                if let Some(name) = display_name {
                    fields.insert("recipientName".into(), name.clone().into());
                }
            }
        }
        let purpose = Purpose {
            label: label.into(),
            rule_ref: source
                .rule_ref
                .clone()
                .unwrap_or_else(|| "api:resend".into()),
            class: source.class,
            template_family: source.template_family.clone(),
            channel_templates: Default::default(),
            channels: vec![source.channel],
            channel_mode: ChannelMode::First,
            priority: source.priority.unwrap_or(DEFAULT_PRIORITY),
            dedupe: None,
            rate_limit: None,
            business_hours: None,
        };
        self.check_render(
            &purpose,
            template,
            &payload,
            &[],
            resolution.recipient_type(),
        )?;
        let mut admitted = self
            .admit_on(
                &purpose,
                &input.tenant_id,
                on_channel(&resolution, source.channel),
                source.locale.clone(),
                source.channel,
            )
            .await?;
        admitted
            .decisions
            .insert(0, Decision::resend(source.id, input.reason.clone()));
        let new = NewCommunication::new(
            &input.tenant_id,
            input.key.clone(),
            source.class,
            source.subject.clone(),
            admitted,
            Rendering {
                template_family: source.template_family.clone(),
                template_version: source.template_version.clone(),
                payload,
            },
            Provenance::new("api:resend", &source.correlation_id, &purpose.rule_ref)
                .resend_of(source.id),
        )
        .priority(purpose.priority)
        .carrying(source.artifacts.clone(), source.attachments.clone());
        Ok(self.record(label, &new).await?)
    }
}

/// How long the inputs of a resend are kept, as a refusal names it.
const NOT_KEPT: &str = "delivery.resend_window after its delivery ended, with \
    HERALD_KEYS__ENCRYPTION set (\"0s\" keeps nothing), and only its hash after that";

/// The original's recipient, as a resend asks for it again.
fn same_recipient(source: &ResendSource) -> Result<RecipientInput, ResendError> {
    match source.recipient_type {
        RecipientType::Contact => Ok(RecipientInput::Contact(source.recipient_ref.clone())),
        // Resolved again from the engine by resend_content (the reference names the user).
        RecipientType::User => Ok(RecipientInput::Contact(source.recipient_ref.clone())),
        RecipientType::Address => source
            .address
            .clone()
            .map(RecipientInput::Email)
            .ok_or_else(|| {
                ResendError::Refused(format!(
                    "herald no longer holds this communication's address (it keeps it for \
                     resends for {NOT_KEPT}): give recipientEmail or recipientContactId"
                ))
            }),
        other => Err(ResendError::Refused(format!(
            "a communication to a {other} recipient is not resent"
        ))),
    }
}

/// The proposal a resend of `source` makes.
fn proposal_of(
    source: &ResendSource,
    tenant_id: &str,
    recipient: RecipientInput,
) -> Result<ProposalInput, ResendError> {
    let refused = || {
        ResendError::Refused("this proposal's quote revision or document is not recorded".into())
    };
    let (quote_id, revision) = source
        .subject
        .subject_id
        .rsplit_once('/')
        .ok_or_else(refused)?;
    let revision_no = revision.parse().map_err(|_| refused())?;
    let artifact_id = source
        .artifacts
        .iter()
        .find(|(_, role)| role == "PROPOSAL_DOCUMENT")
        .map(|(id, _)| id.clone())
        .ok_or_else(refused)?;
    Ok(ProposalInput {
        quote_id: quote_id.to_string(),
        revision_no,
        artifact_id,
        tenant_id: tenant_id.to_string(),
        recipient,
        locale: source.locale.clone(),
        market: None,
        delivery_mode: if source.attachments.is_empty() {
            DeliveryMode::PortalLink
        } else {
            DeliveryMode::Attachment
        },
        message_note: source
            .payload
            .as_ref()
            .and_then(|p| p.get("messageNote"))
            .and_then(|n| n.as_str())
            .map(str::to_string),
    })
}
