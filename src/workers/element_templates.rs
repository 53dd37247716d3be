//! `herald element-templates`: one Camunda 7 element template per topic file, for Camunda
//! Modeler (`element-templates/herald.json`, schema `@camunda/element-templates-json-schema`
//! 0.22). A designer picks "Send quote proposal" and gets the task wired: `camunda:type` and
//! `camunda:topic` (hidden), one input parameter per variable the handler reads
//! ([`HandlerKind::inputs`](super::HandlerKind::inputs)), the extension properties it reads, the
//! `communicationId` output and the task priority.
//!
//! Every input defaults to a null-safe read of the process variable of the same name
//! (`${execution.getVariable('locale')}`): a variable the process does not have arrives as null,
//! which the handlers read as absent. The output is null-safe too: an expression that names a
//! variable the task never set fails when an instance waiting at the task is deleted.
//!
//! No handler throws a BPMN error (failures are retries and incidents, business refusals are
//! recorded outcomes), so no template has `camunda:errorEventDefinition` entries.
//!
//! A template's `version` comes from the topic's `[modeler]` section and must go up whenever
//! what the template writes into a model changes ([`ElementTemplate::same_inputs`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::inputs::{InputKind, InputSource, TaskInput};
use super::TopicConfig;

/// The file the templates are written to, in the `paths.element_templates` folder.
pub const FILE_NAME: &str = "herald.json";
/// The Camunda 7 element template schema (not the Camunda 8 / Zeebe one).
pub const SCHEMA: &str =
    "https://unpkg.com/@camunda/element-templates-json-schema@0.22.1/resources/schema.json";
/// The README the templates link to; each topic has a section there named after it.
pub const README_URL: &str = "https://github.com/herald-comms/herald/blob/main/README.md";
/// The start of every herald template id (`herald.send-proposal`).
pub const ID_PREFIX: &str = "herald.";

/// The id of a topic's template.
pub fn template_id(topic: &str) -> String {
    format!("{ID_PREFIX}{topic}")
}

/// One element template (the part of the schema herald writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ElementTemplate {
    #[serde(rename = "$schema")]
    pub schema: String,
    pub name: String,
    pub id: String,
    pub description: String,
    pub version: u32,
    pub documentation_ref: String,
    pub applies_to: Vec<String>,
    pub groups: Vec<Group>,
    pub properties: Vec<Property>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub label: String,
}

/// One field of the properties panel and what it writes into the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Property {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editable: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<DropdownChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub binding: Binding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldType {
    String,
    Text,
    Hidden,
    Dropdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropdownChoice {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Constraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_empty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    pub value: String,
    pub message: String,
}

/// Where a field's value goes in the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    #[serde(rename = "type")]
    pub kind: BindingType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindingType {
    /// An attribute of the BPMN element (`camunda:topic`, …).
    #[serde(rename = "property")]
    Attribute,
    #[serde(rename = "camunda:property")]
    ExtensionProperty,
    #[serde(rename = "camunda:inputParameter")]
    InputParameter,
    #[serde(rename = "camunda:outputParameter")]
    OutputParameter,
}

impl Binding {
    fn named(kind: BindingType, name: &str) -> Binding {
        Binding {
            kind,
            name: Some(name.into()),
            source: None,
        }
    }
}

impl ElementTemplate {
    /// The topic the template wires (its hidden `camunda:topic`).
    pub fn topic(&self) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| {
                p.binding.kind == BindingType::Attribute
                    && p.binding.name.as_deref() == Some("camunda:topic")
            })
            .and_then(|p| p.value.as_deref())
    }

    /// What the template writes into a model, field by field, without the words a designer
    /// reads (labels, descriptions, choice names): when this changes, the version goes up.
    pub fn inputs(&self) -> Vec<Property> {
        self.properties
            .iter()
            .map(|p| Property {
                label: None,
                description: None,
                group: None,
                choices: p
                    .choices
                    .iter()
                    .map(|c| DropdownChoice {
                        name: String::new(),
                        value: c.value.clone(),
                    })
                    .collect(),
                constraints: p.constraints.clone().map(|c| Constraints {
                    pattern: c.pattern.map(|p| Pattern {
                        value: p.value,
                        message: String::new(),
                    }),
                    ..c
                }),
                ..p.clone()
            })
            .collect()
    }

    pub fn same_inputs(&self, other: &ElementTemplate) -> bool {
        self.inputs() == other.inputs()
    }

    /// The names of the fields whose inputs differ from `other`'s (added, removed or changed).
    pub fn changed_inputs(&self, other: &ElementTemplate) -> Vec<String> {
        let (mine, theirs) = (self.inputs(), other.inputs());
        let key = |p: &Property| {
            p.binding
                .name
                .clone()
                .or_else(|| p.binding.source.clone())
                .unwrap_or_default()
        };
        let mut changed: Vec<String> = Vec::new();
        for p in mine.iter().chain(&theirs) {
            let name = key(p);
            let a = mine.iter().find(|q| key(q) == name);
            let b = theirs.iter().find(|q| key(q) == name);
            if a != b && !changed.contains(&name) {
                changed.push(name);
            }
        }
        changed
    }
}

/// The template of one topic.
pub fn template(topic: &TopicConfig) -> ElementTemplate {
    let hidden = |name: &str, value: &str| Property {
        label: None,
        description: None,
        kind: FieldType::Hidden,
        value: Some(value.into()),
        editable: None,
        choices: Vec::new(),
        constraints: None,
        group: None,
        binding: Binding::named(BindingType::Attribute, name),
    };
    let mut properties = vec![
        hidden("camunda:type", "external"),
        hidden("camunda:topic", &topic.topic),
    ];
    let inputs = topic.handler.inputs();
    properties.extend(
        inputs
            .iter()
            .filter(|i| i.source == InputSource::Variable)
            .map(input_parameter),
    );
    properties.extend(
        inputs
            .iter()
            .filter(|i| i.source == InputSource::ExtensionProperty)
            .map(extension_property),
    );
    properties.push(output(topic));
    properties.push(task_priority());
    let mut groups = vec![group("inputs", "Inputs")];
    if inputs
        .iter()
        .any(|i| i.source == InputSource::ExtensionProperty)
    {
        groups.push(group("settings", "Task settings"));
    }
    groups.push(group("output", "Output"));
    groups.push(group("engine", "Engine"));
    ElementTemplate {
        schema: SCHEMA.into(),
        name: topic.modeler.name.clone(),
        id: template_id(&topic.topic),
        description: topic.modeler.description.clone(),
        version: topic.modeler.version,
        documentation_ref: format!("{README_URL}#{}", topic.topic),
        applies_to: vec!["bpmn:ServiceTask".into(), "bpmn:SendTask".into()],
        groups,
        properties,
    }
}

fn group(id: &str, label: &str) -> Group {
    Group {
        id: id.into(),
        label: label.into(),
    }
}

/// `${…}`: the engine evaluates it (an input parameter's value).
const EXPRESSION: &str = r"\$\{.+\}";

/// The null-safe read of a process variable: null when the process does not have it.
pub fn variable_expression(name: &str) -> String {
    format!("${{execution.getVariable('{name}')}}")
}

/// The whole value matches `alternatives`; an optional field may also stay empty.
fn anchored(alternatives: &str, required: bool) -> String {
    format!("^({alternatives}){}$", if required { "" } else { "?" })
}

fn constraints(not_empty: bool, pattern: Option<Pattern>) -> Option<Constraints> {
    (not_empty || pattern.is_some()).then_some(Constraints {
        not_empty: not_empty.then_some(true),
        pattern,
    })
}

fn input_parameter(input: &TaskInput) -> Property {
    let default = variable_expression(input.name);
    let mut description = input.description.to_string();
    let mut choices = Vec::new();
    let pattern = match (input.kind, input.pattern) {
        (InputKind::Integer, _) => {
            description.push_str(&format!(
                " An expression such as ${{{}}}: a number typed here would reach herald as a String.",
                input.name
            ));
            Some(Pattern {
                value: format!("^{EXPRESSION}$"),
                message: format!(
                    "An expression such as ${{{}}} (a number typed here is a String).",
                    input.name
                ),
            })
        }
        (_, Some(p)) => Some(Pattern {
            value: anchored(&format!("{EXPRESSION}|{}", p.regex), input.required),
            message: p.message.into(),
        }),
        (_, None) => None,
    };
    let kind = match input.kind {
        InputKind::String | InputKind::Integer => FieldType::String,
        InputKind::Text => FieldType::Text,
        InputKind::Choice(values) => {
            choices.push(DropdownChoice {
                name: format!("The process variable {}", input.name),
                value: default.clone(),
            });
            choices.extend(values().into_iter().map(|c| DropdownChoice {
                name: c.name.into(),
                value: c.value.into(),
            }));
            FieldType::Dropdown
        }
    };
    description.push_str(&format!(
        " Default: the process variable {}{}.",
        input.name,
        if input.required {
            ""
        } else {
            ", when the process has it"
        }
    ));
    Property {
        label: Some(input.label.into()),
        description: Some(description),
        kind,
        value: Some(default),
        editable: None,
        choices,
        constraints: constraints(input.required, pattern),
        group: Some("inputs".into()),
        binding: Binding::named(BindingType::InputParameter, input.name),
    }
}

fn extension_property(input: &TaskInput) -> Property {
    Property {
        label: Some(input.label.into()),
        description: Some(format!(
            "{} A process variable {} wins over this setting.",
            input.description, input.name
        )),
        kind: FieldType::String,
        // Always a value: the engine hands a property without one to herald as null.
        value: Some(String::new()),
        editable: None,
        choices: Vec::new(),
        // An extension property is not evaluated: a literal only.
        constraints: constraints(
            input.required,
            input.pattern.map(|p| Pattern {
                value: anchored(p.regex, input.required),
                message: p.message.into(),
            }),
        ),
        group: Some("settings".into()),
        binding: Binding::named(BindingType::ExtensionProperty, input.name),
    }
}

fn output(topic: &TopicConfig) -> Property {
    let wait = if topic.waits_for_outcome {
        " The CommunicationSent or CommunicationFailed message that follows carries the same id."
    } else {
        ""
    };
    Property {
        label: Some("Result variable".into()),
        description: Some(format!(
            "The variable that receives the communicationId herald completes the task with (its id of the communication; rename it to keep several apart).{wait} herald sets communicationId like a process variable: it lands in the nearest scope that declares it. Inside a multi-instance subprocess, declare communicationId on the subprocess (an input parameter without value) to keep one per instance."
        )),
        kind: FieldType::String,
        value: Some("communicationId".into()),
        editable: None,
        choices: Vec::new(),
        constraints: constraints(
            true,
            Some(Pattern {
                value: "^[A-Za-z_][A-Za-z0-9_]*$".into(),
                message: "A variable name such as communicationId.".into(),
            }),
        ),
        group: Some("output".into()),
        binding: Binding {
            kind: BindingType::OutputParameter,
            name: None,
            source: Some(variable_expression("communicationId")),
        },
    }
}

fn task_priority() -> Property {
    Property {
        label: Some("Task priority".into()),
        description: Some(
            "Optional: tasks with a higher priority are fetched first when the topic fetches by priority. A number or an expression.".into(),
        ),
        kind: FieldType::String,
        value: None,
        editable: None,
        choices: Vec::new(),
        constraints: constraints(
            false,
            Some(Pattern {
                value: anchored(&format!("-?[0-9]+|{EXPRESSION}"), false),
                message: "A whole number such as 50, or an expression.".into(),
            }),
        ),
        group: Some("engine".into()),
        binding: Binding::named(BindingType::Attribute, "camunda:taskPriority"),
    }
}

/// The templates of every topic, in topic order.
pub fn templates(topics: &[TopicConfig]) -> Vec<ElementTemplate> {
    let mut all: Vec<ElementTemplate> = topics.iter().map(template).collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

/// The file's text: a JSON array, two-space indented, with a final newline.
pub fn render(templates: &[ElementTemplate]) -> String {
    let mut text = serde_json::to_string_pretty(templates).expect("templates serialize");
    text.push('\n');
    text
}

#[derive(Debug, thiserror::Error)]
pub enum ElementTemplateError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{0}")]
    Outdated(String),
}

/// The path of the templates file in `dir`.
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Reads a templates file.
pub fn read(path: &Path) -> Result<Vec<ElementTemplate>, ElementTemplateError> {
    let error = |message: String| ElementTemplateError::Read {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| error(format!("not herald's element templates: {e}")))
}

/// Templates whose inputs changed under the version `committed` has: one line each, asking
/// for a higher version.
pub fn unraised_versions(
    generated: &[ElementTemplate],
    committed: &[ElementTemplate],
    topics_dir: &Path,
) -> Vec<String> {
    generated
        .iter()
        .filter_map(|new| {
            let old = committed.iter().find(|old| old.id == new.id)?;
            let topic_file = topics_dir.join(format!("{}.toml", new.topic().unwrap_or("?")));
            if new.version < old.version {
                Some(format!(
                    "{}: version {} is lower than the committed {}: raise the version ([modeler] version in {})",
                    new.id, new.version, old.version, topic_file.display()
                ))
            } else if new.version == old.version && !new.same_inputs(old) {
                Some(format!(
                    "{}: its inputs changed ({}) but its version is still {}: raise the version ([modeler] version in {})",
                    new.id,
                    new.changed_inputs(old).join(", "),
                    new.version,
                    topic_file.display()
                ))
            } else {
                None
            }
        })
        .collect()
}

/// `herald element-templates`: writes the templates of `topics` into `dir`, unless a
/// template's inputs changed under its committed version. Returns the file written.
pub fn write(
    topics: &[TopicConfig],
    topics_dir: &Path,
    dir: &Path,
) -> Result<PathBuf, ElementTemplateError> {
    let path = file_in(dir);
    let generated = templates(topics);
    if path.exists() {
        // A file that is not herald's templates any more is simply replaced.
        if let Ok(committed) = read(&path) {
            let problems = unraised_versions(&generated, &committed, topics_dir);
            if !problems.is_empty() {
                return Err(ElementTemplateError::Outdated(problems.join("\n")));
            }
        }
    }
    let error = |e: std::io::Error| ElementTemplateError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    std::fs::write(&path, render(&generated)).map_err(error)?;
    Ok(path)
}

/// `herald element-templates --check`: the committed file is what `topics` generate.
pub fn check(
    topics: &[TopicConfig],
    topics_dir: &Path,
    dir: &Path,
) -> Result<PathBuf, ElementTemplateError> {
    let path = file_in(dir);
    let generated = templates(topics);
    let text = std::fs::read_to_string(&path).map_err(|e| ElementTemplateError::Read {
        path: path.display().to_string(),
        message: format!("{e}: run herald element-templates"),
    })?;
    if text == render(&generated) {
        return Ok(path);
    }
    let mut problems = match read(&path) {
        Ok(committed) => unraised_versions(&generated, &committed, topics_dir),
        Err(e) => vec![e.to_string()],
    };
    problems.push(format!(
        "{} differs from what {} generates: run herald element-templates and commit the result",
        path.display(),
        topics_dir.display()
    ));
    Err(ElementTemplateError::Outdated(problems.join("\n")))
}

#[cfg(test)]
mod tests;
