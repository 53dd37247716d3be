//! Rules for business events (`rules/events.toml`): which event leads to which communication,
//! for whom, through which channels, with which template, and how noisy it may be.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::iso8601::parse_duration;
use crate::ledger::{Channel, CommunicationType, MessageCategory};
use crate::policy::channel_choice::{check_channels, family_for, ChannelMode};
use crate::templates::{Audience, Origin};

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    pub id: String,
    pub version: u32,
    /// The event type that triggers it, e.g. `OrderCreated`.
    pub trigger: String,
    pub communication_type: CommunicationType,
    pub category: MessageCategory,
    /// Whom to tell: `contact:<path>`, `email:<path>`, `camunda-user:<path>` (a field of the
    /// event), `camunda-group:<group id>` or `webhook-subscriptions:<event type>` (the tenant's
    /// active subscriptions to that event type).
    pub recipient: String,
    /// Channels in order of preference (EMAIL, IN_APP, WEBHOOK).
    pub channels: Vec<Channel>,
    /// `first` (default): the first channel that reaches the recipient; `all`: every one.
    #[serde(default)]
    pub channel_mode: ChannelMode,
    pub template_family: String,
    /// The template family of a channel other than `template_family`'s.
    #[serde(default)]
    pub channel_templates: HashMap<Channel, String>,
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// Near-duplicates (same recipient, type and subject) within this ISO 8601 duration are
    /// suppressed as DEDUPED, e.g. `PT15M`.
    #[serde(default)]
    pub dedupe_window: Option<String>,
    /// At most so many to a recipient per window (`scope`: this type, or every communication).
    #[serde(default)]
    pub rate_limit: Option<crate::policy::noise::RateLimit>,
    /// Low-priority rules only: collect the messages to a recipient and send one digest per
    /// window, e.g. `{ every = "PT1H", template_family = "fulfillment-digest-email" }`.
    #[serde(default)]
    pub digest: Option<crate::policy::noise::DigestConfig>,
    /// Alerts: the first of a root cause per window at once, the rest in one summary, e.g.
    /// `{ by = "data.failureCode", every = "PT15M", template_family = "fallout-summary-email" }`.
    #[serde(default)]
    pub aggregate: Option<crate::policy::noise::AggregateConfig>,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    #[serde(deserialize_with = "crate::iso8601::toml_datetime::required")]
    pub effective_from: DateTime<Utc>,
    #[serde(default, deserialize_with = "crate::iso8601::toml_datetime::optional")]
    pub effective_until: Option<DateTime<Utc>>,
    /// The subject of the communication: `<type>:<path>`, e.g. `ORDER:subject.id`.
    pub subject: String,
    /// Template payload field → path in the event (`data.orderNumber`); purpose-built only.
    pub payload: BTreeMap<String, String>,
}

fn default_priority() -> i32 {
    50
}

fn default_enabled() -> bool {
    true
}

/// How a rule finds its recipients.
#[derive(Debug, Clone, PartialEq)]
pub enum RecipientSpec {
    Contact(String),
    Email(String),
    CamundaUser(String),
    CamundaGroup(String),
    WebhookSubscriptions(String),
}

impl EventRule {
    pub fn recipient_spec(&self) -> Result<RecipientSpec, String> {
        let (kind, arg) = self
            .recipient
            .split_once(':')
            .ok_or_else(|| format!("recipient '{}' is not <kind>:<argument>", self.recipient))?;
        if arg.is_empty() {
            return Err(format!("recipient '{}' has no argument", self.recipient));
        }
        Ok(match kind {
            "contact" => RecipientSpec::Contact(arg.into()),
            "email" => RecipientSpec::Email(arg.into()),
            "camunda-user" => RecipientSpec::CamundaUser(arg.into()),
            "camunda-group" => RecipientSpec::CamundaGroup(arg.into()),
            "webhook-subscriptions" => RecipientSpec::WebhookSubscriptions(arg.into()),
            other => {
                return Err(format!(
                "recipient kind '{other}' is unknown (contact, email, camunda-user, camunda-group, webhook-subscriptions)"
            ))
            }
        })
    }

    pub fn dedupe(&self) -> Result<Option<Duration>, String> {
        self.dedupe_window
            .as_deref()
            .map(parse_duration)
            .transpose()
    }

    /// (subject type, path of the subject id)
    pub fn subject_spec(&self) -> Result<(&str, &str), String> {
        self.subject
            .split_once(':')
            .filter(|(t, p)| !t.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("subject '{}' is not <TYPE>:<path>", self.subject))
    }

    /// Where each field of the rule's payload comes from: the event's paths, and the
    /// recipient's name herald adds (`recipientName`) as the recipient kind has it.
    pub fn origins(&self) -> Vec<(&str, Origin<'_>)> {
        let mut origins: Vec<(&str, Origin<'_>)> = self
            .payload
            .iter()
            .map(|(field, path)| {
                (
                    field.as_str(),
                    Origin::Event {
                        event_type: &self.trigger,
                        path,
                    },
                )
            })
            .collect();
        origins.extend(
            self.recipient_name()
                .map(|origin| ("recipientName", origin)),
        );
        origins
    }

    /// Where the `recipientName` herald fills in comes from: a contact's name, an engine
    /// user's; none for an address or a webhook subscriber.
    pub fn recipient_name(&self) -> Option<Origin<'static>> {
        match self.recipient_spec() {
            Ok(RecipientSpec::Contact(_)) => Some(Origin::Contact("displayName")),
            Ok(RecipientSpec::CamundaUser(_) | RecipientSpec::CamundaGroup(_)) => {
                Some(Origin::Engine("the user's name"))
            }
            _ => None,
        }
    }

    /// Where each field of the rule's digest or summary comes from: the recipient's name, the
    /// items (the rendered subjects of the rule's email family) and their count.
    pub fn digest_origins(&self) -> Vec<(&str, Origin<'_>)> {
        let mut origins: Vec<(&str, Origin<'_>)> = self
            .origins()
            .into_iter()
            .filter(|(field, _)| *field == "recipientName")
            .collect();
        let family = family_for(
            Channel::Email,
            &self.template_family,
            &self.channel_templates,
        );
        origins.push(("items", Origin::Rendered { family }));
        origins.push(("count", Origin::Herald("number of items")));
        origins
    }

    /// Who the rule's recipients are: customers (contacts, addresses, webhook subscribers) or
    /// the company's own people (engine users and groups).
    pub fn reaches(&self) -> Option<Audience> {
        Some(match self.recipient_spec().ok()? {
            RecipientSpec::Contact(_)
            | RecipientSpec::Email(_)
            | RecipientSpec::WebhookSubscriptions(_) => Audience::Customer,
            RecipientSpec::CamundaUser(_) | RecipientSpec::CamundaGroup(_) => Audience::Internal,
        })
    }

    pub fn applies(&self, event_type: &str, at: DateTime<Utc>) -> bool {
        self.enabled
            && self.trigger == event_type
            && self.effective_from <= at
            && self.effective_until.is_none_or(|until| at < until)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<EventRule>,
}

/// The rules of `rules/events.toml`.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<EventRule>,
}

impl RuleSet {
    /// Reads and checks the rules; every problem names the file and the rule's field.
    pub fn load(path: &Path) -> Result<RuleSet, Vec<String>> {
        let file = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{file}: {e}")])?;
        let parsed: RulesFile = toml::from_str(&text).map_err(|e| vec![format!("{file}: {e}")])?;
        let mut problems = Vec::new();
        for (n, rule) in parsed.rule.iter().enumerate() {
            let at = format!("{file}: rule[{n}] '{}'", rule.id);
            if parsed
                .rule
                .iter()
                .filter(|r| r.id == rule.id && r.version == rule.version)
                .count()
                > 1
            {
                problems.push(format!("{at}: id and version are used twice"));
            }
            if let Err(e) = rule.recipient_spec() {
                problems.push(format!("{at}: recipient: {e}"));
            }
            if let Err(e) = rule.dedupe() {
                problems.push(format!("{at}: dedupe_window: {e}"));
            }
            if let Err(e) = rule.subject_spec() {
                problems.push(format!("{at}: subject: {e}"));
            }
            for problem in check_channels(
                &rule.channels,
                &rule.template_family,
                &rule.channel_templates,
                None,
            ) {
                problems.push(format!("{at}: {problem}"));
            }
            if let Some(digest) = &rule.digest {
                if let Err(e) = digest.period() {
                    problems.push(format!("{at}: {e}"));
                }
                if rule.communication_type.criticality() >= crate::ledger::Criticality::High {
                    problems.push(format!(
                        "{at}: digest: {} is critical; only low-priority types are collected in digests",
                        rule.communication_type
                    ));
                }
                if rule.channels != [Channel::Email] {
                    problems.push(format!("{at}: digest: digests go by EMAIL"));
                }
            }
            if let Some(aggregate) = &rule.aggregate {
                if let Err(e) = aggregate.as_digest().period() {
                    problems.push(format!(
                        "{at}: aggregate.{}",
                        e.trim_start_matches("digest.")
                    ));
                }
                if rule.digest.is_some() {
                    problems.push(format!("{at}: aggregate and digest exclude each other"));
                }
                if !rule.channels.contains(&Channel::Email) {
                    problems.push(format!("{at}: aggregate: summaries go by EMAIL"));
                }
            }
            let to_subscriptions = matches!(
                rule.recipient_spec(),
                Ok(RecipientSpec::WebhookSubscriptions(_))
            );
            if to_subscriptions != (rule.channels == [Channel::Webhook]) {
                problems.push(format!(
                    "{at}: channels: webhook-subscriptions recipients go by [\"WEBHOOK\"], and WEBHOOK only to them"
                ));
            }
        }
        if problems.is_empty() {
            Ok(RuleSet { rules: parsed.rule })
        } else {
            Err(problems)
        }
    }

    /// The rules an event triggers, highest priority first.
    pub fn matching(&self, event_type: &str, at: DateTime<Utc>) -> Vec<&EventRule> {
        let mut rules: Vec<&EventRule> = self
            .rules
            .iter()
            .filter(|r| r.applies(event_type, at))
            .collect();
        rules.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        rules
    }
}

/// A value in a JSON document by dotted path (`data.customer.contactId`).
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(doc, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_into_events() {
        let event = json!({"data": {"customer": {"contactId": "c-1"}, "empty": null}});
        assert_eq!(
            lookup(&event, "data.customer.contactId"),
            Some(&json!("c-1"))
        );
        assert_eq!(lookup(&event, "data.missing"), None);
        assert_eq!(lookup(&event, "data.empty"), None);
    }
}
