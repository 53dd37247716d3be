//! Commands that ask for what events otherwise ask for: an order confirmation, and a manual
//! escalation of a fallout case to a group. Each goes through the rule the events use (its
//! template family, payload, channels and policy: preferences, consent, suppression, rate
//! limits), with the command's recipient and an idempotency key of its own. The noise controls
//! meant for streams of events (dedupe windows, digests, aggregation) do not hold an explicit
//! command back: the command's key makes it once.

use chrono::Utc;
use serde_json::{json, Value};

use crate::ledger::{
    Admission, Admitted, Channel, CommunicationType, NewCommunication, Provenance, RecipientType,
    Rendering, RequestOutcome, ResolvedRecipient, Subject,
};
use crate::policy::rules::{EventRule, RuleSet};

use super::events::{prepare, rule_purpose, EventError, Occasion, Prepared};
use super::proposal::RecipientInput;
use super::Intake;

/// `POST /v1/orders/{orderId}/communications/confirmation`, checked.
#[derive(Debug, Clone)]
pub struct OrderConfirmation {
    pub tenant_id: String,
    pub order_id: String,
    /// The order number the customer sees; the order id when not given.
    pub order_number: Option<String>,
    pub recipient: RecipientInput,
    pub locale: Option<String>,
    pub market: Option<String>,
    /// The caller's `Idempotency-Key`.
    pub request_key: String,
}

/// `POST /v1/fallout/{caseId}/escalations`, checked.
#[derive(Debug, Clone)]
pub struct Escalation {
    pub tenant_id: String,
    pub case_id: String,
    /// The Camunda group whose members are told.
    pub group: String,
    pub level: u32,
    /// Why, as the operators read it (sanitized).
    pub reason: String,
    pub order_number: Option<String>,
}

/// The enabled rule that makes `kind` for `trigger`, made fit for a command: `recipient`
/// instead of the rule's own, and without the noise controls of event streams.
fn command_rule(
    rules: &RuleSet,
    trigger: &str,
    kind: CommunicationType,
    recipient: String,
) -> Result<EventRule, EventError> {
    let rule = rules
        .matching(trigger, Utc::now())
        .into_iter()
        .find(|r| r.communication_type == kind)
        .ok_or_else(|| {
            EventError::Rule(format!(
                "no enabled rule makes {kind} for {trigger}: the command needs its template and policy"
            ))
        })?;
    let mut rule = rule.clone();
    rule.recipient = recipient;
    rule.dedupe_window = None;
    rule.digest = None;
    rule.aggregate = None;
    Ok(rule)
}

fn requests(prepared: Vec<Prepared>) -> Result<Vec<NewCommunication>, EventError> {
    prepared
        .into_iter()
        .map(|p| {
            if p.collected() {
                Err(EventError::Rule(
                    "a command is never collected in a digest".into(),
                ))
            } else {
                Ok(p.request)
            }
        })
        .collect()
}

impl Intake {
    /// An order confirmation by command, through the rule that confirms `OrderCreated`, to the
    /// given contact or address. Its key is `order-confirmation:{orderId}:{recipientRef}:v1`
    /// scoped with the caller's `Idempotency-Key`. One communication per channel the rule sends
    /// on; the answer is the first's.
    pub async fn order_confirmation(
        &self,
        rules: &RuleSet,
        command: &OrderConfirmation,
    ) -> Result<RequestOutcome, EventError> {
        let recipient = match &command.recipient {
            RecipientInput::Contact(_) => "contact:data.recipientContactId",
            RecipientInput::Email(_) => "email:data.recipientEmail",
        };
        let rule = command_rule(
            rules,
            "OrderCreated",
            CommunicationType::OrderConfirmation,
            recipient.into(),
        )?;
        let (contact, email) = match &command.recipient {
            RecipientInput::Contact(c) => (Some(c.as_str()), None),
            RecipientInput::Email(e) => (None, Some(e.as_str())),
        };
        let order_number = command.order_number.as_ref().unwrap_or(&command.order_id);
        let event = json!({
            "orderId": command.order_id,
            "data": {
                "orderNumber": order_number,
                "recipientContactId": contact,
                "recipientEmail": email,
            }
        });
        let key = |recipient_ref: &str| {
            format!(
                "order-confirmation:{}:{recipient_ref}:v1:api:{}",
                command.order_id, command.request_key
            )
        };
        let occasion = Occasion {
            key: &key,
            requested_by: "api".into(),
            correlation_id: Provenance::fresh_correlation_id(),
            locale: command.locale.as_deref(),
            market: command.market.as_deref(),
            // An explicit address: the customer is greeted as such ("Dear customer").
            unnamed: matches!(command.recipient, RecipientInput::Email(_)).then_some("customer"),
        };
        let requests =
            requests(prepare(self, &rule, &event, &command.tenant_id, &occasion).await?)?;
        let mut first = None;
        for request in &requests {
            let outcome = self
                .record(&rule_purpose(&rule)?.label, request)
                .await
                .map_err(intake_error)?;
            first.get_or_insert(outcome);
        }
        first.ok_or_else(|| EventError::Rule("the order confirmation rule made nothing".into()))
    }

    /// A manual escalation of a fallout case to the members of a Camunda group (resolved by the
    /// engine's identity service, as the fallout alerts of events are), through the rule that
    /// alerts on `FalloutCaseOpened`: one parent communication with the key
    /// `fallout-alert:{falloutCaseId}:{recipientGroup}:{escalationLevel}:v1` (the same escalation
    /// asked for twice is the same communication) and a child per member and channel.
    pub async fn escalation(
        &self,
        rules: &RuleSet,
        command: &Escalation,
    ) -> Result<RequestOutcome, EventError> {
        // The caller names the group: Camunda's groups span tenants, so only a group the engine
        // makes one of the caller's tenant may be told (another tenant's answers as a missing one).
        let ours = self
            .camunda
            .group_of_tenant(&command.group, &command.tenant_id)
            .await
            .map_err(|e| EventError::Unavailable(format!("escalation: the engine: {e}")))?;
        if !ours {
            return Err(EventError::Rule(format!(
                "'{}' is no group of this tenant in the engine (a tenant-group membership in \
                 Camunda's identity service makes it one)",
                command.group
            )));
        }
        let rule = command_rule(
            rules,
            "FalloutCaseOpened",
            CommunicationType::FalloutAlert,
            format!("camunda-group:{}", command.group),
        )?;
        let purpose = rule_purpose(&rule)?;
        let parent_key = format!(
            "fallout-alert:{}:{}:{}:v1",
            command.case_id, command.group, command.level
        );
        let event = json!({
            "data": {
                "falloutCaseId": command.case_id,
                "orderNumber": command.order_number,
                "reason": format!("Escalation level {}: {}", command.level, command.reason),
            }
        });
        let key = |recipient_ref: &str| format!("{parent_key}:{recipient_ref}");
        let correlation_id = Provenance::fresh_correlation_id();
        let occasion = Occasion {
            key: &key,
            requested_by: "api".into(),
            correlation_id: correlation_id.clone(),
            locale: None,
            market: None,
            unnamed: None,
        };
        let children =
            requests(prepare(self, &rule, &event, &command.tenant_id, &occasion).await?)?;
        let template_version = children
            .first()
            .map(|c| c.rendering.template_version.clone())
            .unwrap_or_default();
        let mut parent_recipient = Admitted::unreachable(ResolvedRecipient {
            recipient_type: RecipientType::Group,
            recipient_ref: format!("group:{}", command.group),
            channel: purpose.channels.first().copied().unwrap_or(Channel::Email),
            address: None,
            locale: None,
            timezone: None,
            quiet_hours: None,
            market: None,
        });
        parent_recipient.admission = Admission::Fail {
            code: "NO_RECIPIENT".into(),
            message: format!("group '{}' has no member to tell", command.group),
        };
        let parent = NewCommunication::new(
            &command.tenant_id,
            parent_key,
            purpose.class,
            Subject::new("FALLOUT_CASE", &command.case_id),
            parent_recipient,
            Rendering {
                template_family: rule.template_family.clone(),
                template_version,
                payload: Value::Null,
            },
            Provenance::new("api", correlation_id, &purpose.rule_ref),
        )
        .priority(purpose.priority);
        self.record_fanout(&purpose.label, &parent, &children)
            .await
            .map_err(intake_error)
    }
}

fn intake_error(err: super::IntakeError) -> EventError {
    match err {
        super::IntakeError::Unavailable { message, .. } => EventError::Unavailable(message),
        other => EventError::Rule(other.to_string()),
    }
}
