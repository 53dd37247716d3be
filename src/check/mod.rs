//! `herald check`: validates topics, templates, BPMN files and element templates offline,
//! naming the file and the field of each problem, so that a broken release never reaches the
//! workers.

use std::path::Path;

use chrono::Utc;

use crate::policy::rules::RuleSet;
use crate::templates::{TemplateError, TemplateRegistry};
use crate::workers::load_topics;

mod bpmn;
mod modeler;
mod reach;

pub use bpmn::check_bpmn;
pub use modeler::check_element_templates;

/// Every problem found, as `file: message` lines (empty when all is well), and notes that are
/// not problems: the withdrawn template versions, how far the release record's history was
/// checked.
pub fn check(
    topics_dir: &Path,
    templates_dir: &Path,
    bpmn_dir: &Path,
    rules_file: &Path,
    element_templates_dir: &Path,
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
            let now = Utc::now();
            problems.extend(reach::check_rules(&rules, rules_file, &registry, now));
            problems.extend(reach::check_topics(&topics, topics_dir, &registry, now));
        }
        Err(TemplateError::Many(list)) => problems.extend(list.iter().map(ToString::to_string)),
        Err(e) => problems.push(e.to_string()),
    }
    problems.extend(check_bpmn(bpmn_dir, &topics));
    // Against topics that did not load, every template would look orphaned.
    if !topics.is_empty() {
        problems.extend(check_element_templates(
            element_templates_dir,
            &topics,
            topics_dir,
            bpmn_dir,
        ));
    }
    let (releases, notes) = crate::templates::check_releases(templates_dir);
    problems.extend(releases);
    (problems, notes)
}
