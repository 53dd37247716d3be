//! The topic files (`topics/<topic>.toml`): which handler serves a topic, what it asks for
//! (type, category, template family, channels, noise controls, business hours), its
//! idempotency key pattern, how Cockpit sees its failures, and what Camunda Modeler shows a
//! designer (`[modeler]`). Read and checked once at start.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::camunda::fetch::{FetchOrder, SortOrder};

use crate::intake::{Dedupe, Purpose};
use crate::iso8601::parse_duration;
use crate::ledger::{Channel, Classification, CommunicationType, MessageCategory};
use crate::policy::channel_choice::{check_channels, ChannelMode};
use crate::policy::keys::placeholders;
use crate::policy::noise::RateLimit;
use crate::templates::{Audience, PassedField};

use super::inputs::{InputSource, TaskInput};
use super::send_proposal::PROPOSAL_INPUTS;
use super::task_notice::{ESCALATION_INPUTS, NOTICE_PAYLOAD, REMINDER_INPUTS};
use crate::intake::proposal::PROPOSAL_PAYLOAD;

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
    /// The order in which fetches hand out the topic's tasks (`[fetch]`).
    #[serde(default)]
    pub fetch: FetchConfig,
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
    /// What Camunda Modeler shows a designer: the topic's element template.
    pub modeler: ModelerConfig,
}

/// The `[modeler]` section: the designer-facing words of the topic's element template
/// (`herald element-templates`) and its version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelerConfig {
    /// The template's name in the Modeler's template chooser, e.g. "Send quote proposal".
    pub name: String,
    /// What the task does, in a designer's words.
    pub description: String,
    /// Goes up whenever the template's inputs change (`herald element-templates` refuses to
    /// write changed inputs under the committed version).
    pub version: u32,
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

    /// What the topic asks for, as the intake admits it.
    pub fn purpose(&self) -> Purpose {
        Purpose {
            label: self.topic.clone(),
            rule_ref: self.rule_ref(),
            class: Classification {
                communication_type: self.communication_type,
                category: self.category,
            },
            template_family: self.template_family.clone(),
            channel_templates: self.channel_templates.clone(),
            channels: self.channels.clone(),
            channel_mode: self.channel_mode,
            priority: self.priority,
            // Checked when the topic file was read.
            dedupe: self.dedupe_window.as_ref().and_then(|written| {
                parse_duration(written).ok().map(|window| Dedupe {
                    window,
                    written: written.clone(),
                })
            }),
            rate_limit: self.rate_limit.clone(),
            business_hours: self.business_hours.clone(),
        }
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
    /// What the handler passes to its template, field by field.
    pub fn payload(self) -> &'static [PassedField] {
        match self {
            HandlerKind::SendProposal => PROPOSAL_PAYLOAD,
            HandlerKind::ApprovalReminder | HandlerKind::Escalation => NOTICE_PAYLOAD,
        }
    }

    /// What the handler reads from its task, declared beside it.
    pub fn inputs(self) -> &'static [TaskInput] {
        match self {
            HandlerKind::SendProposal => PROPOSAL_INPUTS,
            HandlerKind::ApprovalReminder => REMINDER_INPUTS,
            HandlerKind::Escalation => ESCALATION_INPUTS,
        }
    }

    /// Who the handler's recipients are: the customer's contact, or the company's own
    /// approvers and escalation groups.
    pub fn reaches(self) -> Audience {
        match self {
            HandlerKind::SendProposal => Audience::Customer,
            HandlerKind::ApprovalReminder | HandlerKind::Escalation => Audience::Internal,
        }
    }

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
    /// Locks a task may lose (fetched again, by any herald node, before herald reported it:
    /// the handler outlived its lock) before herald raises an incident instead of running the
    /// handler again. At least 1.
    #[serde(default = "default_lock_losses")]
    pub lock_losses: u32,
}

fn default_lock_losses() -> u32 {
    3
}

/// `[fetch]`: the order in which the engine hands out the topic's tasks. Topics with the same
/// settings share one fetch request; each other setting is a request (a long poll) of its own.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchConfig {
    /// Higher `camunda:taskPriority` first (default true, as the official client).
    #[serde(default = "default_use_priority")]
    pub use_priority: bool,
    /// Then by creation time, `"asc"` (oldest first) or `"desc"`; absent: no sorting. Needs
    /// engine 7.21 or later.
    #[serde(default)]
    pub sort_by_create_time: Option<SortOrder>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            use_priority: default_use_priority(),
            sort_by_create_time: None,
        }
    }
}

fn default_use_priority() -> bool {
    true
}

impl FetchConfig {
    pub fn order(&self) -> FetchOrder {
        FetchOrder {
            use_priority: self.use_priority,
            create_time: self.sort_by_create_time,
        }
    }
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
        if topic.incident.lock_losses == 0 {
            return Err(invalid(
                &path,
                "incident: lock_losses must be at least 1 (a herald stopped mid-task loses a lock)"
                    .into(),
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
        if let Err(message) = check_inputs(&topic) {
            return Err(invalid(&path, message));
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

/// The topic's `variables` are what its handler reads (no more, no less), extension
/// properties are fetched when the handler reads one, and `[modeler]` is filled in.
fn check_inputs(topic: &TopicConfig) -> Result<(), String> {
    let inputs = topic.handler.inputs();
    let declared: Vec<&str> = inputs.iter().map(|i| i.name).collect();
    if let Some(extra) = topic
        .variables
        .iter()
        .find(|v| !declared.contains(&v.as_str()))
    {
        return Err(format!(
            "variables: handler {:?} does not read '{extra}' (it reads {})",
            topic.handler,
            declared.join(", ")
        ));
    }
    if let Some(missing) = declared
        .iter()
        .find(|d| !topic.variables.iter().any(|v| v == *d))
    {
        return Err(format!(
            "variables: handler {:?} reads '{missing}': add it to variables",
            topic.handler
        ));
    }
    if inputs
        .iter()
        .any(|i| i.source == InputSource::ExtensionProperty)
        && !topic.include_extension_properties
    {
        return Err(format!(
            "include_extension_properties: handler {:?} reads extension properties of the task: set it to true",
            topic.handler
        ));
    }
    let modeler = &topic.modeler;
    if modeler.name.trim().is_empty() || modeler.description.trim().is_empty() {
        return Err("modeler: name and description must not be empty".into());
    }
    if modeler.version == 0 {
        return Err("modeler: version starts at 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `load_topics` on the shipped topics with `send-proposal.toml` edited: its error.
    fn load_edited(from: &str, to: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("topics");
        for entry in std::fs::read_dir(&shipped).unwrap() {
            let path = entry.unwrap().path();
            let mut text = std::fs::read_to_string(&path).unwrap();
            if path.file_name().unwrap() == "send-proposal.toml" {
                assert!(text.contains(from), "{from}");
                text = text.replacen(from, to, 1);
            }
            std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
        }
        load_topics(dir.path()).unwrap_err().to_string()
    }

    #[test]
    fn a_topic_asks_for_what_its_handler_reads_no_more_no_less() {
        let err = load_edited(
            r#"variables = ["quoteId", "#,
            r#"variables = ["color", "quoteId", "#,
        );
        assert!(
            err.contains(
                "send-proposal.toml: variables: handler SendProposal does not read 'color'"
            ),
            "{err}"
        );
        let err = load_edited(r#", "messageNote"]"#, "]");
        assert!(
            err.contains(
                "variables: handler SendProposal reads 'messageNote': add it to variables"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_modeler_section_is_filled_in() {
        let err = load_edited("name = \"Send quote proposal\"", "name = \" \"");
        assert!(err.contains("modeler: name and description"), "{err}");
        let err = load_edited("\nversion = 1\n", "\nversion = 0\n");
        assert!(err.contains("modeler: version starts at 1"), "{err}");
        let err = load_edited("[modeler]", "[designer]");
        assert!(err.contains("send-proposal.toml"), "{err}");
    }

    #[test]
    fn fetch_defaults_to_priority_without_sorting() {
        let fetch: FetchConfig = toml::from_str("").unwrap();
        assert_eq!(fetch.order(), FetchOrder::default());
        let fetch: FetchConfig =
            toml::from_str("use_priority = false\nsort_by_create_time = \"desc\"").unwrap();
        assert_eq!(
            fetch.order(),
            FetchOrder {
                use_priority: false,
                create_time: Some(SortOrder::Desc),
            }
        );
    }

    #[test]
    fn an_unknown_sort_order_or_key_is_an_error() {
        assert!(toml::from_str::<FetchConfig>("sort_by_create_time = \"newest\"").is_err());
        assert!(toml::from_str::<FetchConfig>("sort_by = \"createTime\"").is_err());
    }

    #[test]
    fn lock_losses_default_to_three() {
        let incident: IncidentConfig =
            toml::from_str("retries = 3\nretry_timeouts_ms = [1000]").unwrap();
        assert_eq!(incident.lock_losses, 3);
    }
}
