use std::path::Path;

use super::*;
use crate::workers::element_templates::{templates, BindingType};

fn topics_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topics")
}

fn topics() -> Vec<TopicConfig> {
    crate::workers::load_topics(&topics_dir()).expect("the shipped topics")
}

/// The templates of the shipped topics, as `herald element-templates` writes them.
fn current() -> Vec<ElementTemplate> {
    templates(&topics())
}

fn proposal(templates: &mut [ElementTemplate]) -> &mut ElementTemplate {
    templates
        .iter_mut()
        .find(|t| t.id == "herald.send-proposal")
        .unwrap()
}

/// The problems of a diagram whose one service task has these attributes.
fn diagram(committed: &[ElementTemplate], attributes: &str) -> Vec<String> {
    let text = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
              xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs">
  <bpmn:process id="p" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:serviceTask id="send" camunda:type="external" {attributes} />
  </bpmn:process>
</bpmn:definitions>"#
    );
    check_diagram("t.bpmn", &text, committed, Path::new("et/herald.json"))
}

#[test]
fn current_templates_and_a_diagram_on_them_pass() {
    assert_eq!(
        check_templates("et/herald.json", &current(), &topics(), &topics_dir()),
        Vec::<String>::new()
    );
    let ok = diagram(
        &current(),
        r#"camunda:topic="send-proposal" camunda:modelerTemplate="herald.send-proposal" camunda:modelerTemplateVersion="1""#,
    );
    assert_eq!(ok, Vec::<String>::new());
    // Another vendor's template is not herald's to judge.
    let other = diagram(
        &current(),
        r#"camunda:topic="send-proposal" camunda:modelerTemplate="acme.mail" camunda:modelerTemplateVersion="7""#,
    );
    assert_eq!(other, Vec::<String>::new());
}

#[test]
fn a_task_on_an_older_template_version_is_reported() {
    let mut committed = current();
    proposal(&mut committed).version = 3;
    let problems = diagram(
        &committed,
        r#"camunda:topic="send-proposal" camunda:modelerTemplate="herald.send-proposal" camunda:modelerTemplateVersion="2""#,
    );
    assert_eq!(
        problems,
        ["t.bpmn: send: uses template 'herald.send-proposal' version 2, older than the current 3: update the task in Camunda Modeler (its inputs changed)"]
    );
    let unversioned = diagram(
        &committed,
        r#"camunda:topic="send-proposal" camunda:modelerTemplate="herald.send-proposal""#,
    );
    assert!(
        unversioned[0].contains("without a camunda:modelerTemplateVersion"),
        "{unversioned:?}"
    );
}

#[test]
fn a_task_naming_an_unknown_herald_template_is_reported() {
    let problems = diagram(
        &current(),
        r#"camunda:topic="send-brochure" camunda:modelerTemplate="herald.send-brochure" camunda:modelerTemplateVersion="1""#,
    );
    assert_eq!(
        problems,
        ["t.bpmn: send: camunda:modelerTemplate 'herald.send-brochure' names no template in et/herald.json"]
    );
}

#[test]
fn a_task_whose_topic_is_not_its_templates_is_reported() {
    let problems = diagram(
        &current(),
        r#"camunda:topic="escalation" camunda:modelerTemplate="herald.send-proposal" camunda:modelerTemplateVersion="1""#,
    );
    assert_eq!(
        problems,
        ["t.bpmn: send: camunda:topic 'escalation' is not the topic of template 'herald.send-proposal' ('send-proposal')"]
    );
}

#[test]
fn a_template_whose_topic_has_no_topic_file_is_reported() {
    let mut committed = current();
    let mut orphan = committed[0].clone();
    orphan.id = "herald.send-brochure".into();
    for p in &mut orphan.properties {
        if p.binding.name.as_deref() == Some("camunda:topic") {
            p.value = Some("send-brochure".into());
        }
    }
    committed.push(orphan);
    let problems = check_templates("et/herald.json", &committed, &topics(), &topics_dir());
    assert_eq!(
        problems,
        [format!(
            "et/herald.json: template 'herald.send-brochure': topic 'send-brochure' has no topic file in {}",
            topics_dir().display()
        )]
    );
}

#[test]
fn a_template_whose_inputs_differ_from_the_handlers_is_reported() {
    let mut committed = current();
    let template = proposal(&mut committed);
    template
        .properties
        .retain(|p| p.binding.name.as_deref() != Some("market"));
    let locale = template
        .properties
        .iter_mut()
        .find(|p| {
            p.binding.kind == BindingType::InputParameter
                && p.binding.name.as_deref() == Some("locale")
        })
        .unwrap();
    locale.constraints = None;
    let problems = check_templates("et/herald.json", &committed, &topics(), &topics_dir());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("et/herald.json: template 'herald.send-proposal': its inputs differ from what handler SendProposal reads (locale, market): run herald element-templates"),
        "{problems:?}"
    );
}

#[test]
fn a_topic_without_a_template_and_a_stale_version_are_reported() {
    let mut committed = current();
    committed.retain(|t| t.id != "herald.escalation");
    proposal(&mut committed).version = 7;
    let problems = check_templates("et/herald.json", &committed, &topics(), &topics_dir());
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("'herald.send-proposal': version 7, but"));
    assert_eq!(
        problems[1],
        "et/herald.json: no template for topic 'escalation': run herald element-templates"
    );
}

#[test]
fn the_shipped_templates_and_diagrams_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        check_element_templates(
            &root.join("element-templates"),
            &topics(),
            &topics_dir(),
            &root.join("bpmn")
        ),
        Vec::<String>::new()
    );
}
