//! `herald check`: validates topics, templates and BPMN files offline, naming the file and the
//! field of each problem, so that a broken release never reaches the workers.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;

use crate::policy::channel_choice::{check_channels, family_for};
use crate::policy::rules::RuleSet;
use crate::templates::{TemplateError, TemplateRegistry};
use crate::workers::{load_topics, TopicConfig};

const CAMUNDA_NS: &str = "http://camunda.org/schema/1.0/bpmn";

/// Every problem found, as `file: message` lines; empty when all is well.
pub fn check(
    topics_dir: &Path,
    templates_dir: &Path,
    bpmn_dir: &Path,
    rules_file: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let topics = match load_topics(topics_dir) {
        Ok(topics) => topics,
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    };
    let rules = match RuleSet::load(rules_file) {
        Ok(rules) => rules,
        Err(list) => {
            problems.extend(list);
            RuleSet::default()
        }
    };
    match TemplateRegistry::load(templates_dir) {
        Ok(registry) => {
            for (n, rule) in rules.rules.iter().enumerate() {
                let at = format!("{}: rule[{n}] '{}'", rules_file.display(), rule.id);
                for problem in check_channels(
                    &rule.channels,
                    &rule.template_family,
                    &rule.channel_templates,
                    Some(&registry),
                ) {
                    problems.push(format!("{at}: {problem}"));
                }
                let collected = rule
                    .digest
                    .clone()
                    .or_else(|| rule.aggregate.as_ref().map(|a| a.as_digest()));
                if let Some(digest) = &collected {
                    match registry.resolve(&digest.template_family, None, None, Utc::now()) {
                        Err(e) => problems.push(format!("{at}: digest.template_family: {e}")),
                        Ok(template) => {
                            for field in ["count", "items"] {
                                if !template.meta.payload.contains_key(field) {
                                    problems.push(format!(
                                        "{at}: digest.template_family: {} has no '{field}' in its payload schema",
                                        template.id()
                                    ));
                                }
                            }
                        }
                    }
                }
                for &channel in &rule.channels {
                    let family =
                        family_for(channel, &rule.template_family, &rule.channel_templates);
                    match registry.resolve(family, None, None, Utc::now()) {
                        Err(e) => problems.push(format!("{at}: template_family ({channel}): {e}")),
                        Ok(template) => {
                            for field in rule.payload.keys() {
                                if !template.meta.payload.contains_key(field) {
                                    problems.push(format!(
                                        "{at}: payload.{field}: not in the payload schema of {}",
                                        template.id()
                                    ));
                                }
                            }
                            for (field, kind) in &template.meta.payload {
                                // recipientName is filled in by herald from the resolved recipient.
                                if kind.required
                                    && field != "recipientName"
                                    && !rule.payload.contains_key(field)
                                {
                                    problems.push(format!(
                                        "{at}: payload.{field}: {} requires it",
                                        template.id()
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            for topic in &topics {
                let at = topics_dir.join(format!("{}.toml", topic.topic));
                for problem in check_channels(
                    &topic.channels,
                    &topic.template_family,
                    &topic.channel_templates,
                    Some(&registry),
                ) {
                    problems.push(format!("{}: {problem}", at.display()));
                }
                for &channel in &topic.channels {
                    let family =
                        family_for(channel, &topic.template_family, &topic.channel_templates);
                    if let Err(e) = registry.resolve(family, None, None, Utc::now()) {
                        problems.push(format!(
                            "{}: template_family ({channel}): {e}",
                            at.display()
                        ));
                    }
                }
            }
        }
        Err(TemplateError::Many(list)) => problems.extend(list.iter().map(ToString::to_string)),
        Err(e) => problems.push(e.to_string()),
    }
    problems.extend(check_bpmn(bpmn_dir, &topics));
    problems
}

/// External service tasks must name a topic herald has; processes that wait for herald's
/// outcome must know its message names; every process needs a history time to live.
pub fn check_bpmn(dir: &Path, topics: &[TopicConfig]) -> Vec<String> {
    let by_name: BTreeMap<&str, &TopicConfig> =
        topics.iter().map(|t| (t.topic.as_str(), t)).collect();
    let mut problems = Vec::new();
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("bpmn"))
            .collect(),
        Err(e) => return vec![format!("{}: {e}", dir.display())],
    };
    files.sort();
    for path in files {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{file}: {e}"));
                continue;
            }
        };
        let doc = match roxmltree::Document::parse(&text) {
            Ok(doc) => doc,
            Err(e) => {
                problems.push(format!("{file}: not well-formed XML: {e}"));
                continue;
            }
        };
        let message_names: Vec<&str> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "message")
            .filter_map(|n| n.attribute("name"))
            .collect();
        for process in doc
            .descendants()
            .filter(|n| n.tag_name().name() == "process")
        {
            let id = process.attribute("id").unwrap_or("?");
            if process.attribute("isExecutable") == Some("true")
                && process
                    .attribute((CAMUNDA_NS, "historyTimeToLive"))
                    .is_none()
            {
                problems.push(format!(
                    "{file}: process '{id}': camunda:historyTimeToLive is missing"
                ));
            }
        }
        for task in doc
            .descendants()
            .filter(|n| n.attribute((CAMUNDA_NS, "type")) == Some("external"))
        {
            let id = task.attribute("id").unwrap_or("?");
            let Some(topic_name) = task.attribute((CAMUNDA_NS, "topic")) else {
                problems.push(format!(
                    "{file}: {id}: camunda:topic is missing on an external task"
                ));
                continue;
            };
            let Some(topic) = by_name.get(topic_name) else {
                problems.push(format!(
                    "{file}: {id}: camunda:topic '{topic_name}' has no topic file in topics/"
                ));
                continue;
            };
            if topic.waits_for_outcome {
                for needed in ["CommunicationSent", "CommunicationFailed"] {
                    if !message_names.contains(&needed) {
                        problems.push(format!(
                            "{file}: {id}: topic '{topic_name}' reports its outcome with the message '{needed}', which this file never catches"
                        ));
                    }
                }
            }
            if topic.handler.fans_out() {
                let has_key = task.descendants().any(|n| {
                    n.tag_name().name() == "property"
                        && n.attribute("name") == Some("taskDefinitionKey")
                }) || task.descendants().any(|n| {
                    n.tag_name().name() == "inputParameter"
                        && n.attribute("name") == Some("taskDefinitionKey")
                });
                if !has_key {
                    problems.push(format!(
                        "{file}: {id}: topic '{topic_name}' needs the extension property (or input) taskDefinitionKey naming the user task"
                    ));
                }
            }
        }
    }
    problems
}
