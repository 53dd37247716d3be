//! The BPMN side of `herald check`: how models wire herald's topics and wait for its outcome.

use std::collections::BTreeMap;
use std::path::Path;

use crate::workers::TopicConfig;

const CAMUNDA_NS: &str = "http://camunda.org/schema/1.0/bpmn";

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
