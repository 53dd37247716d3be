use std::path::Path;

use super::*;
use crate::artifacts::DeliveryMode;
use crate::workers::load_topics;

fn topics_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topics")
}

fn topics() -> Vec<TopicConfig> {
    load_topics(&topics_dir()).expect("the shipped topics")
}

fn shipped(topic: &str) -> ElementTemplate {
    let topics = topics();
    template(topics.iter().find(|t| t.topic == topic).unwrap())
}

fn field<'a>(t: &'a ElementTemplate, kind: BindingType, name: &str) -> &'a Property {
    t.properties
        .iter()
        .find(|p| p.binding.kind == kind && p.binding.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{}: no {kind:?} {name}", t.id))
}

#[test]
fn a_template_wires_the_topic_and_every_input_its_handler_reads() {
    for topic in topics() {
        let t = template(&topic);
        assert_eq!(t.id, format!("herald.{}", topic.topic));
        assert_eq!(t.name, topic.modeler.name);
        assert_eq!(t.version, topic.modeler.version);
        assert_eq!(t.topic(), Some(topic.topic.as_str()));
        assert_eq!(t.applies_to, ["bpmn:ServiceTask", "bpmn:SendTask"]);
        let ty = field(&t, BindingType::Attribute, "camunda:type");
        assert_eq!(
            (ty.kind, ty.value.as_deref()),
            (FieldType::Hidden, Some("external"))
        );
        for input in topic.handler.inputs() {
            let kind = match input.source {
                InputSource::Variable => BindingType::InputParameter,
                InputSource::ExtensionProperty => BindingType::ExtensionProperty,
            };
            let p = field(&t, kind, input.name);
            assert_eq!(p.label.as_deref(), Some(input.label));
            let not_empty = p.constraints.as_ref().and_then(|c| c.not_empty);
            assert_eq!(not_empty, input.required.then_some(true), "{}", input.name);
            if kind == BindingType::InputParameter {
                // Null-safe: a process without the variable hands herald a null.
                assert_eq!(
                    p.value.as_deref(),
                    Some(format!("${{execution.getVariable('{}')}}", input.name).as_str())
                );
            }
        }
        let written = t
            .properties
            .iter()
            .filter(|p| {
                matches!(
                    p.binding.kind,
                    BindingType::InputParameter | BindingType::ExtensionProperty
                )
            })
            .count();
        assert_eq!(written, topic.handler.inputs().len(), "{}", t.id);
        let output = t
            .properties
            .iter()
            .find(|p| p.binding.kind == BindingType::OutputParameter)
            .unwrap();
        assert_eq!(output.value.as_deref(), Some("communicationId"));
        assert!(output
            .description
            .as_deref()
            .unwrap()
            .contains("multi-instance"));
    }
}

#[test]
fn the_delivery_mode_is_a_dropdown_of_the_enum_and_the_process_variable() {
    let t = shipped("send-proposal");
    let mode = field(&t, BindingType::InputParameter, "deliveryMode");
    assert_eq!(mode.kind, FieldType::Dropdown);
    let values: Vec<&str> = mode.choices.iter().map(|c| c.value.as_str()).collect();
    let mut expected = vec!["${execution.getVariable('deliveryMode')}"];
    expected.extend(DeliveryMode::ALL.map(DeliveryMode::as_str));
    assert_eq!(values, expected);
    assert_eq!(mode.value.as_deref(), Some(expected[0]));
    // An Integer must be an expression: a typed number would be a String.
    let revision = field(&t, BindingType::InputParameter, "revisionNo");
    let pattern = revision.constraints.as_ref().unwrap().pattern.as_ref();
    assert_eq!(pattern.unwrap().value, r"^\$\{.+\}$");
    // The escalation's settings are extension properties, never without a value.
    let t = shipped("escalation");
    for name in ["taskDefinitionKey", "escalationGroup", "escalationUser"] {
        let p = field(&t, BindingType::ExtensionProperty, name);
        assert_eq!(p.value.as_deref(), Some(""), "{name}");
    }
}

#[test]
fn the_committed_file_is_the_generated_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("element-templates");
    let committed = std::fs::read_to_string(file_in(&dir)).unwrap();
    assert_eq!(
        committed,
        render(&templates(&topics())),
        "run herald element-templates"
    );
    assert_eq!(read(&file_in(&dir)).unwrap(), templates(&topics()));
}

#[test]
fn changed_inputs_need_a_higher_version_but_new_words_do_not() {
    let committed = templates(&topics());
    let mut generated = committed.clone();
    assert!(unraised_versions(&generated, &committed, &topics_dir()).is_empty());

    // Words a designer reads: no new version needed.
    generated[0].description = "Reworded".into();
    generated[0].properties[2].label = Some("Reworded".into());
    assert!(unraised_versions(&generated, &committed, &topics_dir()).is_empty());

    // A new default value: the version must go up.
    generated[0].properties[2].value = Some("${other}".into());
    let problems = unraised_versions(&generated, &committed, &topics_dir());
    assert_eq!(problems.len(), 1, "{problems:?}");
    let name = generated[0].properties[2].binding.name.clone().unwrap();
    assert!(
        problems[0].contains("raise the version") && problems[0].contains(&name),
        "{problems:?}"
    );
    generated[0].version += 1;
    assert!(unraised_versions(&generated, &committed, &topics_dir()).is_empty());

    // A lower version than the committed one is refused too.
    generated[0].version = 0;
    assert!(unraised_versions(&generated, &committed, &topics_dir())[0].contains("lower"));
}

#[test]
fn writing_refuses_changed_inputs_under_the_same_version_and_check_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let topics = topics();
    let written = write(&topics, &topics_dir(), dir.path()).unwrap();
    assert!(check(&topics, &topics_dir(), dir.path()).is_ok());

    // The committed file still has an older input than the handler's.
    let mut old = templates(&topics);
    let proposal = old.iter_mut().find(|t| t.topic() == Some("send-proposal"));
    let proposal = proposal.unwrap();
    proposal
        .properties
        .retain(|p| p.binding.name.as_deref() != Some("market"));
    std::fs::write(&written, render(&old)).unwrap();
    let err = check(&topics, &topics_dir(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("herald.send-proposal: its inputs changed (market) but its version is still 1: raise the version"),
        "{err}"
    );
    assert!(err.contains("run herald element-templates"), "{err}");
    let err = write(&topics, &topics_dir(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("raise the version"), "{err}");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), render(&old));

    // Another file than herald's templates, or none: check fails, writing replaces it.
    std::fs::write(&written, "[{\"id\": 1}]").unwrap();
    assert!(check(&topics, &topics_dir(), dir.path()).is_err());
    write(&topics, &topics_dir(), dir.path()).unwrap();
    assert!(check(&topics, &topics_dir(), dir.path()).is_ok());
    std::fs::remove_file(&written).unwrap();
    let err = check(&topics, &topics_dir(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("run herald element-templates"), "{err}");
}

#[test]
fn every_handler_has_a_readme_section_the_templates_link_to() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for topic in topics() {
        // GitHub's anchor of a heading "### `send-proposal`" is #send-proposal.
        assert!(
            readme.contains(&format!("\n### `{}`", topic.topic)),
            "README.md has no section for {}",
            topic.topic
        );
        assert!(template(&topic)
            .documentation_ref
            .ends_with(&format!("README.md#{}", topic.topic)));
    }
}
