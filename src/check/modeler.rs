//! The element-template side of `herald check`: the committed Camunda Modeler templates
//! (`element-templates/herald.json`) against the topic files and the handlers, and the
//! diagrams against the templates. A template is what a designer applies; a template that
//! lags behind its handler, or a diagram that lags behind its template, fills in inputs the
//! handler no longer reads (or misses new ones).

use std::path::Path;

use roxmltree::Document;

use crate::workers::element_templates::{self, ElementTemplate, ID_PREFIX};
use crate::workers::TopicConfig;

use super::bpmn::{bpmn_files, CAMUNDA_NS};

/// Every committed template names a topic that has a topic file and writes what its handler
/// reads, every topic has its template, and every diagram task that uses a herald template
/// uses one that exists, at its current version, for its own topic.
pub fn check_element_templates(
    dir: &Path,
    topics: &[TopicConfig],
    topics_dir: &Path,
    bpmn_dir: &Path,
) -> Vec<String> {
    let path = element_templates::file_in(dir);
    let committed = match element_templates::read(&path) {
        Ok(committed) => committed,
        Err(e) => return vec![format!("{e}: run herald element-templates")],
    };
    let mut problems = check_templates(&path.display().to_string(), &committed, topics, topics_dir);
    // Reading problems are the BPMN check's to report.
    for (file, text) in bpmn_files(bpmn_dir).into_iter().flatten() {
        problems.extend(check_diagram(&file, &text, &committed, &path));
    }
    problems
}

/// The committed templates (of the file `file`) against the topics and their handlers.
fn check_templates(
    file: &str,
    committed: &[ElementTemplate],
    topics: &[TopicConfig],
    topics_dir: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    for template in committed {
        let id = &template.id;
        let Some(name) = template.topic() else {
            problems.push(format!(
                "{file}: template '{id}': no hidden camunda:topic binding names its topic"
            ));
            continue;
        };
        let Some(topic) = topics.iter().find(|t| t.topic == name) else {
            problems.push(format!(
                "{file}: template '{id}': topic '{name}' has no topic file in {}",
                topics_dir.display()
            ));
            continue;
        };
        let current = element_templates::template(topic);
        let topic_file = topics_dir.join(format!("{name}.toml"));
        if !template.same_inputs(&current) {
            problems.push(format!(
                "{file}: template '{id}': its inputs differ from what handler {:?} reads ({}): run herald element-templates (raising [modeler] version in {})",
                topic.handler,
                template.changed_inputs(&current).join(", "),
                topic_file.display()
            ));
        } else if template.version != current.version {
            problems.push(format!(
                "{file}: template '{id}': version {}, but {} says {}: run herald element-templates",
                template.version,
                topic_file.display(),
                current.version
            ));
        }
    }
    for topic in topics {
        if !committed.iter().any(|t| t.topic() == Some(&topic.topic)) {
            problems.push(format!(
                "{file}: no template for topic '{}': run herald element-templates",
                topic.topic
            ));
        }
    }
    problems
}

/// The tasks of one diagram that use a herald template.
fn check_diagram(
    file: &str,
    text: &str,
    committed: &[ElementTemplate],
    templates_file: &Path,
) -> Vec<String> {
    let Ok(doc) = Document::parse(text) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for task in doc.descendants().filter(|n| n.is_element()) {
        let Some(id) = task.attribute((CAMUNDA_NS, "modelerTemplate")) else {
            continue;
        };
        if !id.starts_with(ID_PREFIX) {
            continue;
        }
        let element = task.attribute("id").unwrap_or("?");
        let Some(template) = committed.iter().find(|t| t.id == id) else {
            problems.push(format!(
                "{file}: {element}: camunda:modelerTemplate '{id}' names no template in {}",
                templates_file.display()
            ));
            continue;
        };
        let current = template.version;
        match task
            .attribute((CAMUNDA_NS, "modelerTemplateVersion"))
            .map(str::parse::<u32>)
        {
            None => problems.push(format!(
                "{file}: {element}: uses template '{id}' without a camunda:modelerTemplateVersion: apply the template again in Camunda Modeler"
            )),
            Some(Err(_)) => problems.push(format!(
                "{file}: {element}: camunda:modelerTemplateVersion of template '{id}' is not a number"
            )),
            Some(Ok(version)) if version < current => problems.push(format!(
                "{file}: {element}: uses template '{id}' version {version}, older than the current {current}: update the task in Camunda Modeler (its inputs changed)"
            )),
            Some(Ok(version)) if version > current => problems.push(format!(
                "{file}: {element}: uses template '{id}' version {version}, newer than the current {current}"
            )),
            Some(Ok(_)) => {}
        }
        let topic = task.attribute((CAMUNDA_NS, "topic"));
        if topic != template.topic() {
            problems.push(format!(
                "{file}: {element}: camunda:topic '{}' is not the topic of template '{id}' ('{}')",
                topic.unwrap_or(""),
                template.topic().unwrap_or("")
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests;
