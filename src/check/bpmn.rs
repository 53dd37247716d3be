//! The BPMN side of `herald check`: how models wire herald's topics and wait for its outcome.
//!
//! herald reports the outcome of a topic that waits for it (`waits_for_outcome`) by correlating
//! `CommunicationSent` or `CommunicationFailed` to the process instance of the task. A model
//! must therefore wait for those messages after such a task, and only there: a wait that no
//! herald task comes before never ends, and a task whose process never waits loses its outcome.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use roxmltree::{Document, Node};

use crate::workers::TopicConfig;

const BPMN_NS: &str = "http://www.omg.org/spec/BPMN/20100524/MODEL";
pub(super) const CAMUNDA_NS: &str = "http://camunda.org/schema/1.0/bpmn";

/// The messages herald correlates to the process of a topic that waits for its outcome.
const OUTCOME_MESSAGES: [&str; 2] = ["CommunicationSent", "CommunicationFailed"];

/// External service tasks must name a topic herald has; processes that wait for herald's
/// outcome must wait for its messages, after a task of such a topic; every declared message is
/// used and every used one declared; every process needs a history time to live.
pub fn check_bpmn(dir: &Path, topics: &[TopicConfig]) -> Vec<String> {
    let by_name: BTreeMap<&str, &TopicConfig> =
        topics.iter().map(|t| (t.topic.as_str(), t)).collect();
    let mut problems = Vec::new();
    for read in bpmn_files(dir) {
        match read {
            Ok((file, text)) => problems.extend(check_file(&file, &text, &by_name)),
            Err(problem) => problems.push(problem),
        }
    }
    problems
}

/// The BPMN files of `dir` in name order, each as (its name as shown, its text), or the
/// problem of reading it.
pub(super) fn bpmn_files(dir: &Path) -> Vec<Result<(String, String), String>> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("bpmn"))
            .collect(),
        Err(e) => return vec![Err(format!("{}: {e}", dir.display()))],
    };
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let file = path.display().to_string();
            std::fs::read_to_string(&path)
                .map(|text| (file.clone(), text))
                .map_err(|e| format!("{file}: {e}"))
        })
        .collect()
}

/// The problems of one BPMN document, each `file: element id: message`.
fn check_file(file: &str, text: &str, topics: &BTreeMap<&str, &TopicConfig>) -> Vec<String> {
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => return vec![format!("{file}: not well-formed XML: {e}")],
    };
    let model = Model::new(&doc, topics);
    let mut problems = Vec::new();
    for process in doc.descendants().filter(|n| is(*n, "process")) {
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
    problems.extend(model.message_problems(file));
    let waits = model.waits();
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
        let Some(topic) = topics.get(topic_name) else {
            problems.push(format!(
                "{file}: {id}: camunda:topic '{topic_name}' has no topic file in topics/"
            ));
            continue;
        };
        if topic.waits_for_outcome {
            // The outcome goes to the task's process instance: a wait elsewhere never gets it.
            let process = process_of(task);
            for needed in OUTCOME_MESSAGES {
                let caught = waits
                    .iter()
                    .any(|w| w.message == needed && process_of(w.node) == process);
                if !caught {
                    problems.push(format!(
                        "{file}: {id}: topic '{topic_name}' reports its outcome with the message '{needed}', which process '{}' never catches (no catch event, boundary event, receive task or event subprocess start waits for it)",
                        process.and_then(|p| p.attribute("id")).unwrap_or("?")
                    ));
                }
            }
        }
        if topic.waits_for_outcome {
            problems.extend(undeclared_in_multi_instance(file, id, topic_name, task));
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
    for wait in &waits {
        if !model.preceded_by_outcome_task(wait.node) {
            problems.push(format!(
                "{file}: {}: waits for the message '{}', but no task of a topic that waits for its outcome (waits_for_outcome) comes before it on any path: herald sends '{}' only after such a task",
                wait.node.attribute("id").unwrap_or("?"),
                wait.message,
                wait.message
            ));
        }
    }
    problems
}

/// herald sets `communicationId` like a process variable: it lands in the nearest scope that
/// declares it. Inside a multi-instance subprocess that does not declare it, every instance
/// writes the one process variable (at once, in a parallel one: the engine's optimistic locking
/// refuses all but one) and sees another instance's id.
fn undeclared_in_multi_instance(file: &str, id: &str, topic: &str, task: Node) -> Option<String> {
    let declares = |scope: Node| {
        scope
            .children()
            .filter(|c| is(*c, "extensionElements"))
            .any(|e| {
                e.descendants().any(|n| {
                    n.tag_name().name() == "inputParameter"
                        && n.attribute("name") == Some("communicationId")
                })
            })
    };
    for scope in task.ancestors().skip(1).filter(|n| is_subprocess(*n)) {
        if declares(scope) {
            return None;
        }
        if scope
            .children()
            .any(|c| is(c, "multiInstanceLoopCharacteristics"))
        {
            return Some(format!(
                "{file}: {id}: topic '{topic}' runs inside the multi-instance subprocess '{}', which does not declare communicationId: add <camunda:inputParameter name=\"communicationId\" /> (no value) to the subprocess so that each instance keeps its own",
                scope.attribute("id").unwrap_or("?")
            ));
        }
    }
    None
}

/// A BPMN element of that local name.
fn is(node: Node, name: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(BPMN_NS)
        && node.tag_name().name() == name
}

fn is_subprocess(node: Node) -> bool {
    ["subProcess", "transaction", "adHocSubProcess"]
        .iter()
        .any(|name| is(node, name))
}

fn process_of<'a, 'input>(node: Node<'a, 'input>) -> Option<Node<'a, 'input>> {
    node.ancestors().find(|n| is(*n, "process"))
}

/// The element a `messageRef` stands on, as a modeller sees it: the event of a message event
/// definition, else the element itself.
fn referring_element<'a, 'input>(node: Node<'a, 'input>) -> Node<'a, 'input> {
    match node.parent_element() {
        Some(parent) if is(node, "messageEventDefinition") => parent,
        _ => node,
    }
}

/// A wait for one of herald's outcome messages.
struct Wait<'a, 'input> {
    /// The catch event, boundary event, receive task or (event subprocess) start event.
    node: Node<'a, 'input>,
    message: &'a str,
}

/// A BPMN document indexed for the checks: elements by id, messages by id, and the sources of
/// the sequence flows into each element.
struct Model<'a, 'input> {
    by_id: HashMap<&'a str, Node<'a, 'input>>,
    /// `bpmn:message` id → the element.
    messages: HashMap<&'a str, Node<'a, 'input>>,
    /// Target id → the sources of its incoming sequence flows.
    sources: HashMap<&'a str, Vec<&'a str>>,
    topics: &'a BTreeMap<&'a str, &'a TopicConfig>,
    doc: &'a Document<'input>,
}

impl<'a, 'input> Model<'a, 'input> {
    fn new(doc: &'a Document<'input>, topics: &'a BTreeMap<&'a str, &'a TopicConfig>) -> Self {
        let mut by_id = HashMap::new();
        let mut messages = HashMap::new();
        let mut sources: HashMap<&str, Vec<&str>> = HashMap::new();
        for node in doc
            .descendants()
            .filter(|n| n.tag_name().namespace() == Some(BPMN_NS))
        {
            if let Some(id) = node.attribute("id") {
                by_id.insert(id, node);
                if is(node, "message") {
                    messages.insert(id, node);
                }
            }
            if is(node, "sequenceFlow") {
                if let (Some(source), Some(target)) =
                    (node.attribute("sourceRef"), node.attribute("targetRef"))
                {
                    sources.entry(target).or_default().push(source);
                }
            }
        }
        Model {
            by_id,
            messages,
            sources,
            topics,
            doc,
        }
    }

    /// Every `messageRef` names a declared message, and every declared message is named by one.
    fn message_problems(&self, file: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut used = HashSet::new();
        for node in self.doc.descendants().filter(|n| n.is_element()) {
            let Some(reference) = node.attribute("messageRef") else {
                continue;
            };
            if self.messages.contains_key(reference) {
                used.insert(reference);
            } else {
                problems.push(format!(
                    "{file}: {}: messageRef '{reference}' names no bpmn:message declared in this file",
                    referring_element(node).attribute("id").unwrap_or("?")
                ));
            }
        }
        let mut unused: Vec<_> = self
            .messages
            .iter()
            .filter(|(id, _)| !used.contains(*id))
            .collect();
        unused.sort_by_key(|(_, node)| node.range().start);
        for (id, node) in unused {
            problems.push(format!(
                "{file}: {id}: the message '{}' is declared but nothing catches or throws it (no messageRef names it)",
                node.attribute("name").unwrap_or("")
            ));
        }
        problems
    }

    /// The waits for herald's outcome messages: catch events, boundary events and start events
    /// (of event subprocesses, and any other) with a message event definition, and receive
    /// tasks, whose message is named `CommunicationSent` or `CommunicationFailed`.
    fn waits(&self) -> Vec<Wait<'a, 'input>> {
        let mut waits = Vec::new();
        for node in self.doc.descendants().filter(|n| n.is_element()) {
            let Some(message) = node
                .attribute("messageRef")
                .and_then(|r| self.messages.get(r))
                .and_then(|m| m.attribute("name"))
                .filter(|name| OUTCOME_MESSAGES.contains(name))
            else {
                continue;
            };
            let wait = if is(node, "receiveTask") {
                node
            } else if is(node, "messageEventDefinition") {
                match node.parent_element() {
                    Some(event)
                        if ["intermediateCatchEvent", "boundaryEvent", "startEvent"]
                            .iter()
                            .any(|name| is(event, name)) =>
                    {
                        event
                    }
                    // Throw and end events send the message; they do not wait for it.
                    _ => continue,
                }
            } else {
                continue;
            };
            waits.push(Wait {
                node: wait,
                message,
            });
        }
        waits
    }

    /// An external task of a topic that waits for its outcome, or an activity (subprocess)
    /// that holds one.
    fn holds_outcome_task(&self, node: Node) -> bool {
        node.descendants().any(|n| {
            n.attribute((CAMUNDA_NS, "type")) == Some("external")
                && n.attribute((CAMUNDA_NS, "topic"))
                    .and_then(|t| self.topics.get(t))
                    .is_some_and(|t| t.waits_for_outcome)
        })
    }

    /// Whether a task of a topic that waits for its outcome comes before `wait` on some path,
    /// walking the sequence flows backwards from it.
    fn preceded_by_outcome_task(&self, wait: Node<'a, 'input>) -> bool {
        let mut seen = HashSet::new();
        let mut stack = self.predecessors(wait);
        while let Some(node) = stack.pop() {
            if !seen.insert(node.id()) {
                continue;
            }
            if self.holds_outcome_task(node) {
                return true;
            }
            stack.extend(self.predecessors(node));
        }
        false
    }

    /// What runs before `node`: the activity a boundary event is attached to; the sources of
    /// its incoming sequence flows (and the throw events of a link it catches); at the start of
    /// a scope, what comes before the scope (see [`Model::scope_entry`]).
    fn predecessors(&self, node: Node<'a, 'input>) -> Vec<Node<'a, 'input>> {
        if is(node, "boundaryEvent") {
            return node
                .attribute("attachedToRef")
                .and_then(|id| self.by_id.get(id))
                .copied()
                .into_iter()
                .collect();
        }
        let mut before: Vec<Node> = node
            .attribute("id")
            .and_then(|id| self.sources.get(id))
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id).copied())
            .collect();
        let link = link_name(node).filter(|_| is(node, "intermediateCatchEvent"));
        if let (Some(link), Some(scope)) = (link, node.parent_element()) {
            before.extend(
                scope
                    .children()
                    .filter(|n| is(*n, "intermediateThrowEvent") && link_name(*n) == Some(link)),
            );
        }
        if before.is_empty() {
            before = self.scope_entry(node.parent_element());
        }
        before
    }

    /// What comes before the start of `scope`: nothing for a process; for an embedded
    /// subprocess, what comes before the subprocess; for an event subprocess, anything in its
    /// enclosing scope (it may start at any time the scope is active), and what comes before
    /// that scope.
    fn scope_entry(&self, scope: Option<Node<'a, 'input>>) -> Vec<Node<'a, 'input>> {
        let Some(scope) = scope.filter(|s| is_subprocess(*s)) else {
            return Vec::new();
        };
        if scope.attribute("triggeredByEvent") != Some("true") {
            return self.predecessors(scope);
        }
        let enclosing = scope.parent_element();
        let mut before: Vec<Node> = enclosing
            .into_iter()
            .flat_map(|e| e.children())
            .filter(|n| n.is_element() && *n != scope && !is(*n, "sequenceFlow"))
            .collect();
        before.extend(self.scope_entry(enclosing));
        before
    }
}

/// The name of the link of a link event.
fn link_name<'a>(event: Node<'a, '_>) -> Option<&'a str> {
    event
        .children()
        .find(|n| is(*n, "linkEventDefinition"))
        .and_then(|n| n.attribute("name"))
}

#[cfg(test)]
mod tests;
