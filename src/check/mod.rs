//! `herald check`: validates topics, templates and BPMN files offline, naming the file and the
//! field of each problem, so that a broken release never reaches the workers.

use std::path::Path;

use chrono::Utc;

use crate::policy::channel_choice::{check_channels, family_for};
use crate::policy::rules::RuleSet;
use crate::templates::{TemplateError, TemplateRegistry};
use crate::workers::load_topics;

mod bpmn;

pub use bpmn::check_bpmn;

/// Every problem found, as `file: message` lines (empty when all is well), and notes that are
/// not problems: the withdrawn template versions, how far the release record's history was
/// checked.
pub fn check(
    topics_dir: &Path,
    templates_dir: &Path,
    bpmn_dir: &Path,
    rules_file: &Path,
) -> (Vec<String>, Vec<String>) {
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
    let (releases, notes) = crate::templates::check_releases(templates_dir);
    problems.extend(releases);
    (problems, notes)
}
