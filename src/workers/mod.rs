//! Topic handlers, one file per topic, and the topic files of `topics/*.toml` that wire them.

pub mod send_proposal;
pub mod task_notice;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::camunda::worker::{IncidentPolicy, Subscription, TaskHandler, TechnicalFailure};
use chrono::{DateTime, Utc};

use crate::camunda::worker::HandlerOutcome;
use crate::camunda::{CamundaClient, TypedValue, Variables};
use crate::iso8601::parse_duration;
use crate::ledger::{Admission, Channel, ResolvedRecipient};
use crate::ledger::{CommunicationType, Criticality, Ledger, MessageCategory};
use crate::ledger::{Decision, DecisionOutcome};
use crate::policy::channels::{check_channels, on_channel, ChannelMode, CHANNEL_NOT_AVAILABLE};
use crate::policy::keys::placeholders;
use crate::policy::noise::{RateLimit, RateScope};
use crate::policy::preferences::{evaluate, load_facts};
use crate::policy::{hash_address, mask_address, Resolution};
use crate::templates::TemplateRegistry;

/// One `topics/<topic>.toml` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub topic: String,
    /// Which handler serves the topic (a file in `src/workers/`).
    pub handler: HandlerKind,
    pub communication_type: CommunicationType,
    pub category: MessageCategory,
    pub template_family: String,
    pub idempotency_key: String,
    /// Topics that reach several recipients: the key of the parent communication (the id the
    /// process gets); `idempotency_key` is then each recipient's key.
    #[serde(default)]
    pub parent_key: Option<String>,
    /// The artifact type the topic's document must have (send-proposal).
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Fetch the service task's extension properties (e.g. taskDefinitionKey).
    #[serde(default)]
    pub include_extension_properties: bool,
    /// Whether the process waits for CommunicationSent / CommunicationFailed.
    pub waits_for_outcome: bool,
    pub lock_duration_ms: u64,
    pub variables: Vec<String>,
    pub incident: IncidentConfig,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The rule's version, recorded with every communication (`topic:<topic>:v<version>`).
    #[serde(default = "default_version")]
    pub version: u32,
    /// Channels in order of preference (EMAIL, IN_APP).
    #[serde(default = "default_channels")]
    pub channels: Vec<Channel>,
    /// `first` (default): the first channel that reaches the recipient; `all`: every one.
    #[serde(default)]
    pub channel_mode: ChannelMode,
    /// The template family of a channel other than `template_family`'s, e.g.
    /// `{ IN_APP = "approval-reminder-inapp" }`.
    #[serde(default)]
    pub channel_templates: HashMap<Channel, String>,
    /// Delivery priority: higher goes first when the queue is long.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Near-duplicates for the same recipient, type and subject within this ISO 8601 duration
    /// are SUPPRESSED as DEDUPED (e.g. `PT3H`).
    #[serde(default)]
    pub dedupe_window: Option<String>,
    /// Outside these dates the topic is not subscribed.
    #[serde(default, deserialize_with = "crate::iso8601::toml_datetime::optional")]
    pub effective_from: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "crate::iso8601::toml_datetime::optional")]
    pub effective_until: Option<DateTime<Utc>>,
    /// Deliver only within these hours (reminders, escalations); outside them a notice waits
    /// for the next opening.
    #[serde(default)]
    pub business_hours: Option<crate::policy::business_hours::BusinessHours>,
    /// At most so many to a recipient per window, e.g. `{ max = 1, per = "PT4H" }`.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

fn default_version() -> u32 {
    1
}

fn default_channels() -> Vec<Channel> {
    vec![Channel::Email]
}

fn default_priority() -> i32 {
    50
}

impl TopicConfig {
    pub fn rule_ref(&self) -> String {
        format!("topic:{}:v{}", self.topic, self.version)
    }

    pub fn effective_at(&self, at: DateTime<Utc>) -> bool {
        self.effective_from.is_none_or(|from| from <= at)
            && self.effective_until.is_none_or(|until| at < until)
    }

    pub fn dedupe(&self) -> Option<std::time::Duration> {
        self.dedupe_window
            .as_deref()
            .and_then(|w| parse_duration(w).ok())
    }
}

/// The handlers herald has, by the name topic files use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandlerKind {
    SendProposal,
    ApprovalReminder,
    Escalation,
}

impl HandlerKind {
    /// Handlers that reach several recipients under a parent communication.
    pub fn fans_out(self) -> bool {
        matches!(
            self,
            HandlerKind::ApprovalReminder | HandlerKind::Escalation
        )
    }
}

fn default_enabled() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentConfig {
    /// Retries after the first technical failure before Cockpit shows an incident.
    pub retries: i32,
    pub retry_timeouts_ms: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Reads and checks every topic file of `dir`.
pub fn load_topics(dir: &Path) -> Result<Vec<TopicConfig>, TopicError> {
    let invalid = |path: &Path, message: String| TopicError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| invalid(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    paths.sort();
    let mut topics: Vec<TopicConfig> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| invalid(&path, e.to_string()))?;
        let topic: TopicConfig =
            toml::from_str(&text).map_err(|e| invalid(&path, e.to_string()))?;
        if topics.iter().any(|t| t.topic == topic.topic) {
            return Err(invalid(
                &path,
                format!("topic '{}' is defined twice", topic.topic),
            ));
        }
        let mut names = placeholders(&topic.idempotency_key)
            .map_err(|e| invalid(&path, format!("idempotency_key: {e}")))?;
        if let Some(parent_key) = &topic.parent_key {
            names.extend(
                placeholders(parent_key).map_err(|e| invalid(&path, format!("parent_key: {e}")))?,
            );
        }
        if !names
            .iter()
            .any(|n| n == "businessKey" || n == "taskId" || n == "externalTaskId")
        {
            return Err(invalid(
                &path,
                "idempotency_key (or parent_key) must include {businessKey}, {taskId} or {externalTaskId}".into(),
            ));
        }
        if topic.handler.fans_out() && topic.parent_key.is_none() {
            return Err(invalid(
                &path,
                format!(
                    "handler {:?} reaches several recipients: set parent_key",
                    topic.handler
                ),
            ));
        }
        if topic.incident.retries < 0 || topic.incident.retry_timeouts_ms.is_empty() {
            return Err(invalid(
                &path,
                "incident: retries >= 0 and at least one retry timeout".into(),
            ));
        }
        if let Some(window) = &topic.dedupe_window {
            if let Err(e) = parse_duration(window) {
                return Err(invalid(&path, format!("dedupe_window: {e}")));
            }
        }
        let problems = check_channels(
            &topic.channels,
            &topic.template_family,
            &topic.channel_templates,
            None,
        );
        if let Some(problem) = problems.into_iter().next() {
            return Err(invalid(&path, problem));
        }
        if topic.channels.contains(&Channel::Webhook) {
            return Err(invalid(
                &path,
                "channels: WEBHOOK goes to subscriptions, which business event rules reach".into(),
            ));
        }
        if topic.handler == HandlerKind::SendProposal && topic.channels != [Channel::Email] {
            return Err(invalid(
                &path,
                "channels: a proposal goes to the customer by EMAIL".into(),
            ));
        }
        if let (Some(from), Some(until)) = (topic.effective_from, topic.effective_until) {
            if until <= from {
                return Err(invalid(
                    &path,
                    "effective_until must be after effective_from".into(),
                ));
            }
        }
        if topic.lock_duration_ms < 1000 {
            return Err(invalid(
                &path,
                "lock_duration_ms must be at least 1000".into(),
            ));
        }
        topics.push(topic);
    }
    if topics.is_empty() {
        return Err(invalid(dir, "no topic file (*.toml)".into()));
    }
    Ok(topics)
}

/// What handlers need.
#[derive(Clone)]
pub struct HandlerDeps {
    pub artifacts: crate::config::ArtifactSettings,
    pub ledger: Ledger,
    pub camunda: CamundaClient,
    pub templates: Arc<TemplateRegistry>,
    pub requested_by: String,
}

/// Builds the subscriptions of the enabled topics.
pub fn subscriptions(topics: &[TopicConfig], deps: &HandlerDeps) -> Vec<Subscription> {
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
                    deps.clone(),
                )),
                HandlerKind::ApprovalReminder => Arc::new(task_notice::TaskNotice::new(
                    topic.clone(),
                    deps.clone(),
                    task_notice::NoticeKind::Reminder,
                )),
                HandlerKind::Escalation => Arc::new(task_notice::TaskNotice::new(
                    topic.clone(),
                    deps.clone(),
                    task_notice::NoticeKind::Escalation,
                )),
            };
            Subscription {
                topic: topic.topic.clone(),
                lock_duration: Duration::from_millis(topic.lock_duration_ms),
                variables: topic.variables.clone(),
                include_extension_properties: topic.include_extension_properties,
                incident: IncidentPolicy {
                    retries: topic.incident.retries,
                    retry_timeouts: topic
                        .incident
                        .retry_timeouts_ms
                        .iter()
                        .map(|ms| Duration::from_millis(*ms))
                        .collect(),
                },
                handler,
            }
        })
        .collect()
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

/// A failure that may pass (database down): retried by the engine, then an incident.
pub(crate) fn transient(
    message: impl Into<String>,
    details: impl Into<String>,
) -> TechnicalFailure {
    TechnicalFailure {
        message: message.into(),
        details: details.into(),
        permanent: false,
        retry_after: None,
    }
}

/// The ledger's database failed: retried by the engine, then an incident naming the topic.
pub(crate) fn ledger_down(topic: &str, err: impl std::fmt::Display) -> TechnicalFailure {
    transient(
        format!("{topic}: ledger database unavailable"),
        err.to_string(),
    )
}

/// A ledger error of a handler: an outage is retried; anything else (a corrupt value, a move
/// the lifecycle refuses) is an incident at once.
pub(crate) fn ledger_failure(topic: &str, err: crate::ledger::LedgerError) -> TechnicalFailure {
    match err {
        crate::ledger::LedgerError::Database(_) => ledger_down(topic, err),
        other => permanent(format!("{topic}: {other}"), other.to_string()),
    }
}

/// What a communication is, for the policy checks: its type and category, and a label for
/// error messages (the topic or the rule).
pub struct Purpose<'a> {
    pub label: &'a str,
    pub kind: CommunicationType,
    pub category: MessageCategory,
}

impl TopicConfig {
    pub(crate) fn purpose(&self) -> Purpose<'_> {
        Purpose {
            label: &self.topic,
            kind: self.communication_type,
            category: self.category,
        }
    }
}

/// A recipient as the ledger records it, with the policy's verdict.
pub struct Admitted {
    pub recipient: ResolvedRecipient,
    pub address_hash: Option<String>,
    pub address_masked: Option<String>,
    pub admission: Admission,
    pub not_before: Option<DateTime<Utc>>,
    pub decisions: Vec<Decision>,
}

impl Admitted {
    /// A recipient herald cannot send to: no address, no hash; admission and decisions to set.
    fn unreachable(recipient: ResolvedRecipient) -> Admitted {
        Admitted {
            recipient,
            address_hash: None,
            address_masked: None,
            admission: Admission::Queue,
            not_before: None,
            decisions: Vec::new(),
        }
    }
}

/// Applies preferences, consent and suppression to a resolved recipient; an unresolved one
/// becomes its business status. Only a database outage is an error.
pub async fn admit(
    deps: &HandlerDeps,
    purpose: &Purpose<'_>,
    tenant_id: &str,
    resolution: Resolution,
    locale: Option<String>,
) -> Result<Admitted, TechnicalFailure> {
    admit_on(deps, purpose, tenant_id, resolution, locale, Channel::Email).await
}

/// Admits a recipient on the channels of a rule: the first that reaches it (`first`), or each
/// (`all`). Channels it cannot be reached on are skipped; when none reaches it, the result is
/// the first channel's refusal, so that the recipient still gets its business status.
pub async fn admit_on_channels(
    deps: &HandlerDeps,
    purpose: &Purpose<'_>,
    tenant_id: &str,
    resolution: &Resolution,
    locale: Option<String>,
    channels: &[Channel],
    mode: ChannelMode,
) -> Result<Vec<Admitted>, TechnicalFailure> {
    let mut chosen = Vec::new();
    let mut refusal: Option<Admitted> = None;
    let mut trail = Vec::new();
    for &channel in channels {
        let on = on_channel(resolution, channel);
        let unavailable =
            matches!(&on, Resolution::Failed { code, .. } if *code == CHANNEL_NOT_AVAILABLE);
        let mut admitted = admit_on(deps, purpose, tenant_id, on, locale.clone(), channel).await?;
        if unavailable {
            trail.extend(admitted.decisions.iter().cloned());
            refusal.get_or_insert(admitted);
            continue;
        }
        let queued = matches!(admitted.admission, Admission::Queue);
        match mode {
            ChannelMode::All => chosen.push(admitted),
            ChannelMode::First if queued => {
                let mut decisions = std::mem::take(&mut trail);
                decisions.append(&mut admitted.decisions);
                admitted.decisions = decisions;
                return Ok(vec![admitted]);
            }
            ChannelMode::First => {
                trail.extend(admitted.decisions.iter().cloned());
                // A real refusal (opted out, suppressed) says more than "no address here".
                if refusal.as_ref().is_none_or(|r| r.address_hash.is_none()) {
                    refusal = Some(admitted);
                }
            }
        }
    }
    if chosen.is_empty() {
        let mut refused = refusal.expect("a rule has at least one channel");
        refused.decisions = trail;
        chosen.push(refused);
    }
    Ok(chosen)
}

async fn admit_on(
    deps: &HandlerDeps,
    purpose: &Purpose<'_>,
    tenant_id: &str,
    resolution: Resolution,
    locale: Option<String>,
    channel: Channel,
) -> Result<Admitted, TechnicalFailure> {
    let unresolved = |recipient_type, recipient_ref| ResolvedRecipient {
        recipient_type,
        recipient_ref,
        channel,
        address: None,
        locale: locale.clone(),
        timezone: None,
        quiet_hours: None,
    };
    let refused = |outcome, code: &'static str, message: &str| {
        vec![Decision {
            check: "recipient",
            outcome,
            reason_code: code.into(),
            detail: message.into(),
        }]
    };
    match resolution {
        Resolution::Resolved { recipient, .. } => {
            let address = recipient.address.clone().unwrap_or_default();
            let now = Utc::now();
            let facts = load_facts(
                deps.ledger.pool(),
                tenant_id,
                &recipient,
                purpose.category,
                now,
            )
            .await
            .map_err(|e| ledger_down(purpose.label, e))?;
            let verdict = evaluate(
                &facts,
                purpose.kind,
                purpose.category,
                recipient.channel,
                now,
            );
            // Only email addresses are personal data; inbox and subscription ids are not.
            let masked = match recipient.channel {
                Channel::Email => mask_address(&address),
                Channel::InApp | Channel::Webhook => address.clone(),
            };
            Ok(Admitted {
                address_hash: Some(hash_address(&address)),
                address_masked: Some(masked),
                recipient,
                admission: verdict.admission,
                not_before: verdict.not_before,
                decisions: verdict.decisions,
            })
        }
        Resolution::Failed {
            recipient_type,
            recipient_ref,
            code,
            message,
        } => Ok(Admitted {
            decisions: refused(DecisionOutcome::Fail, code, &message),
            admission: Admission::Fail {
                code: code.into(),
                message,
            },
            ..Admitted::unreachable(unresolved(recipient_type, recipient_ref))
        }),
        Resolution::Suppressed {
            recipient_type,
            recipient_ref,
            code,
            message,
        } => Ok(Admitted {
            decisions: refused(DecisionOutcome::Suppress, code, &message),
            admission: Admission::Suppress {
                code: code.into(),
                message,
            },
            ..Admitted::unreachable(unresolved(recipient_type, recipient_ref))
        }),
    }
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

impl Admitted {
    /// Holds a queued recipient until business hours open, when they are closed at `now`.
    pub fn within_business_hours(
        &mut self,
        hours: Option<&crate::policy::business_hours::BusinessHours>,
        now: DateTime<Utc>,
    ) {
        let Some(opening) = hours.and_then(|h| h.next_open(now)) else {
            return;
        };
        if !matches!(self.admission, Admission::Queue) {
            return;
        }
        if self.not_before.is_none_or(|t| t < opening) {
            self.not_before = Some(opening);
        }
        self.decisions.push(Decision {
            check: "business-hours",
            outcome: DecisionOutcome::Delay,
            reason_code: "OUTSIDE_BUSINESS_HOURS".into(),
            detail: format!("held until business hours open at {opening}"),
        });
    }

    /// Applies a rate limit: over it, a critical communication waits for the next free slot,
    /// another one is SUPPRESSED as RATE_LIMITED.
    pub async fn rate_limit(
        &mut self,
        ledger: &Ledger,
        tenant_id: &str,
        kind: CommunicationType,
        idempotency_key: &str,
        limit: Option<&RateLimit>,
    ) -> Result<(), crate::ledger::LedgerError> {
        let Some(limit) = limit else { return Ok(()) };
        if !matches!(self.admission, Admission::Queue) {
            return Ok(());
        }
        let counted = match limit.scope {
            RateScope::Type => Some(kind),
            RateScope::Recipient => None,
        };
        let scheduled = ledger
            .scheduled_for(
                tenant_id,
                &self.recipient,
                counted,
                idempotency_key,
                limit.per,
                limit.max,
            )
            .await?;
        let now = Utc::now();
        let Some(slot) = limit.next_slot(&scheduled, now) else {
            return Ok(());
        };
        let slot = self.not_before.map_or(slot, |t| t.max(slot));
        if kind.criticality() >= Criticality::High {
            self.not_before = Some(slot);
            self.decisions.push(Decision {
                check: "rate-limit",
                outcome: DecisionOutcome::Delay,
                reason_code: "RATE_LIMITED".into(),
                detail: format!(
                    "over {} to this recipient: held until {slot}",
                    limit.written
                ),
            });
        } else {
            let message = format!("over {} to this recipient", limit.written);
            self.decisions.push(Decision {
                check: "rate-limit",
                outcome: DecisionOutcome::Suppress,
                reason_code: "RATE_LIMITED".into(),
                detail: message.clone(),
            });
            self.admission = Admission::Suppress {
                code: "RATE_LIMITED".into(),
                message,
            };
        }
        Ok(())
    }

    /// Marks the recipient DEDUPED when a near-duplicate went out within the window.
    pub fn dedupe(&mut self, message: String) {
        self.decisions.push(Decision {
            check: "dedupe",
            outcome: DecisionOutcome::Suppress,
            reason_code: "DEDUPED".into(),
            detail: message.clone(),
        });
        if matches!(self.admission, Admission::Queue) {
            self.admission = Admission::Suppress {
                code: "DEDUPED".into(),
                message,
            };
        }
    }
}

impl HandlerDeps {
    /// The template version a topic's communication uses now, for `locale`; a missing one is a
    /// configuration error (an incident at once).
    pub(crate) fn template(
        &self,
        topic: &TopicConfig,
        locale: Option<&str>,
    ) -> Result<&crate::templates::Template, TechnicalFailure> {
        self.templates
            .resolve(&topic.template_family, locale, None, Utc::now())
            .map_err(|e| {
                permanent(
                    format!("{}: {e}", topic.topic),
                    "Add or approve a template version, then increment the retries.",
                )
            })
    }

    /// The template version a topic's communication on `channel` uses now.
    pub(crate) fn template_for(
        &self,
        topic: &TopicConfig,
        channel: Channel,
        locale: Option<&str>,
    ) -> Result<&crate::templates::Template, TechnicalFailure> {
        let family = crate::policy::channels::family_for(
            channel,
            &topic.template_family,
            &topic.channel_templates,
        );
        self.templates
            .resolve(family, locale, None, Utc::now())
            .map_err(|e| {
                permanent(
                    format!("{}: {e}", topic.topic),
                    "Add or approve a template version, then increment the retries.",
                )
            })
    }

    /// Renders once when the communication is requested: a template that cannot render is a
    /// configuration error for Cockpit, not a delivery failure discovered later.
    pub(crate) fn check_render(
        &self,
        topic: &TopicConfig,
        template: &crate::templates::Template,
        payload: &serde_json::Value,
    ) -> Result<(), TechnicalFailure> {
        self.templates
            .render(template, payload)
            .map(|_| ())
            .map_err(|e| {
                permanent(
                    format!("{}: {e}", topic.topic),
                    "Fix the template or its payload fields, then increment the retries.",
                )
            })
    }
}
