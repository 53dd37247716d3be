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
const CAMUNDA_NS: &str = "http://camunda.org/schema/1.0/bpmn";

/// The messages herald correlates to the process of a topic that waits for its outcome.
const OUTCOME_MESSAGES: [&str; 2] = ["CommunicationSent", "CommunicationFailed"];

/// External service tasks must name a topic herald has; processes that wait for herald's
/// outcome must wait for its messages, after a task of such a topic; every declared message is
/// used and every used one declared; every process needs a history time to live.
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
        match std::fs::read_to_string(&path) {
            Ok(text) => problems.extend(check_file(&file, &text, &by_name)),
            Err(e) => problems.push(format!("{file}: {e}")),
        }
    }
    problems
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
mod tests {
    use super::*;

    fn topics() -> Vec<TopicConfig> {
        crate::workers::load_topics(&Path::new(env!("CARGO_MANIFEST_DIR")).join("topics"))
            .expect("the shipped topics")
    }

    /// The problems of a document with `messages` declared and `body` as its process.
    fn check(messages: &str, body: &str) -> Vec<String> {
        let topics = topics();
        let by_name = topics.iter().map(|t| (t.topic.as_str(), t)).collect();
        let text = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs">
  {messages}
  <bpmn:process id="p" isExecutable="true" camunda:historyTimeToLive="P1D">
    {body}
  </bpmn:process>
</bpmn:definitions>"#
        );
        check_file("t.bpmn", &text, &by_name)
    }

    const OUTCOMES: &str = r#"<bpmn:message id="m_sent" name="CommunicationSent" />
        <bpmn:message id="m_failed" name="CommunicationFailed" />"#;

    const SEND: &str =
        r#"<bpmn:serviceTask id="send" camunda:type="external" camunda:topic="send-proposal" />"#;

    /// An event-based gateway `gw` and its two catch events, `sent` and `failed`.
    const AWAIT: &str = r#"<bpmn:eventBasedGateway id="gw" />
        <bpmn:intermediateCatchEvent id="sent"><bpmn:messageEventDefinition messageRef="m_sent" /></bpmn:intermediateCatchEvent>
        <bpmn:intermediateCatchEvent id="failed"><bpmn:messageEventDefinition messageRef="m_failed" /></bpmn:intermediateCatchEvent>
        <bpmn:sequenceFlow id="f_sent" sourceRef="gw" targetRef="sent" />
        <bpmn:sequenceFlow id="f_failed" sourceRef="gw" targetRef="failed" />"#;

    fn flow(id: &str, from: &str, to: &str) -> String {
        format!(r#"<bpmn:sequenceFlow id="{id}" sourceRef="{from}" targetRef="{to}" />"#)
    }

    fn waits_without_task(problems: &[String], id: &str, message: &str) -> bool {
        problems.iter().any(|p| {
            p.starts_with(&format!("t.bpmn: {id}: waits for the message '{message}'"))
                && p.contains("no task of a topic that waits for its outcome")
        })
    }

    #[test]
    fn a_wait_after_a_task_of_a_waiting_topic_passes() {
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}{AWAIT}{}{}"#,
            flow("f1", "start", "send"),
            flow("f2", "send", "gw")
        );
        assert_eq!(check(OUTCOMES, &body), Vec::<String>::new());
    }

    #[test]
    fn a_wait_with_no_task_before_it_fails() {
        // The task runs after the wait: the walk goes backwards only.
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}{AWAIT}<bpmn:endEvent id="end" />{}{}{}{}"#,
            flow("f1", "start", "gw"),
            flow("f2", "sent", "send"),
            flow("f3", "send", "end"),
            flow("f4", "failed", "end"),
        );
        let problems = check(OUTCOMES, &body);
        assert!(
            waits_without_task(&problems, "sent", "CommunicationSent"),
            "{problems:?}"
        );
        assert!(
            waits_without_task(&problems, "failed", "CommunicationFailed"),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_path_through_gateways_passes() {
        // One branch of an exclusive gateway sends; the other does not: some path is enough.
        let body = format!(
            r#"<bpmn:startEvent id="start" /><bpmn:exclusiveGateway id="x" />{SEND}
               <bpmn:userTask id="other" /><bpmn:parallelGateway id="join" />{AWAIT}{}{}{}{}{}{}"#,
            flow("f1", "start", "x"),
            flow("f2", "x", "send"),
            flow("f3", "x", "other"),
            flow("f4", "send", "join"),
            flow("f5", "other", "join"),
            flow("f6", "join", "gw"),
        );
        assert_eq!(check(OUTCOMES, &body), Vec::<String>::new());
    }

    #[test]
    fn a_loop_without_a_task_ends_and_fails() {
        let body = format!(
            r#"<bpmn:startEvent id="start" /><bpmn:exclusiveGateway id="x" />
               <bpmn:userTask id="retry" />{SEND}{AWAIT}{}{}{}{}"#,
            flow("f1", "start", "x"),
            flow("f2", "x", "gw"),
            flow("f3", "failed", "retry"),
            flow("f4", "retry", "x"),
        );
        let problems = check(OUTCOMES, &body);
        assert!(
            waits_without_task(&problems, "sent", "CommunicationSent"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_wait_behind_a_fire_and_observe_topic_fails() {
        let body = format!(
            r#"<bpmn:startEvent id="start" />
               <bpmn:serviceTask id="escalate" camunda:type="external" camunda:topic="escalation">
                 <bpmn:extensionElements><camunda:properties>
                   <camunda:property name="taskDefinitionKey" value="approve" />
                 </camunda:properties></bpmn:extensionElements>
               </bpmn:serviceTask>{AWAIT}{}{}"#,
            flow("f1", "start", "escalate"),
            flow("f2", "escalate", "gw"),
        );
        let problems = check(OUTCOMES, &body);
        assert!(
            waits_without_task(&problems, "sent", "CommunicationSent"),
            "{problems:?}"
        );
        assert!(
            waits_without_task(&problems, "failed", "CommunicationFailed"),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_wait_inside_a_subprocess_sees_what_comes_before_the_subprocess() {
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}
               <bpmn:subProcess id="sub">
                 <bpmn:startEvent id="sub_start" />{AWAIT}{}
               </bpmn:subProcess>{}{}"#,
            flow("s1", "sub_start", "gw"),
            flow("f1", "start", "send"),
            flow("f2", "send", "sub"),
        );
        assert_eq!(check(OUTCOMES, &body), Vec::<String>::new());
        // Without the task before the subprocess, nothing inside it comes before the wait.
        let body = format!(
            r#"<bpmn:startEvent id="start" />
               <bpmn:subProcess id="sub">
                 <bpmn:startEvent id="sub_start" />{AWAIT}{}
               </bpmn:subProcess>{SEND}{}{}"#,
            flow("s1", "sub_start", "gw"),
            flow("f1", "start", "sub"),
            flow("f2", "sub", "send"),
        );
        let problems = check(OUTCOMES, &body);
        assert!(
            waits_without_task(&problems, "sent", "CommunicationSent"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_task_inside_a_subprocess_comes_before_a_wait_after_it() {
        let body = format!(
            r#"<bpmn:startEvent id="start" />
               <bpmn:subProcess id="sub"><bpmn:startEvent id="sub_start" />{SEND}{}</bpmn:subProcess>
               {AWAIT}{}{}"#,
            flow("s1", "sub_start", "send"),
            flow("f1", "start", "sub"),
            flow("f2", "sub", "gw"),
        );
        assert_eq!(check(OUTCOMES, &body), Vec::<String>::new());
    }

    #[test]
    fn a_boundary_event_is_preceded_by_its_activity_and_what_comes_before_it() {
        // On a subprocess that sends: the task runs while the boundary event listens.
        let body = format!(
            r#"<bpmn:startEvent id="start" />
               <bpmn:subProcess id="sub"><bpmn:startEvent id="sub_start" />{SEND}{}</bpmn:subProcess>
               <bpmn:boundaryEvent id="failed_on_sub" attachedToRef="sub"><bpmn:messageEventDefinition messageRef="m_failed" /></bpmn:boundaryEvent>
               <bpmn:intermediateCatchEvent id="sent"><bpmn:messageEventDefinition messageRef="m_sent" /></bpmn:intermediateCatchEvent>
               {}{}"#,
            flow("s1", "sub_start", "send"),
            flow("f1", "start", "sub"),
            flow("f2", "sub", "sent"),
        );
        assert_eq!(check(OUTCOMES, &body), Vec::<String>::new());
        // On a user task that comes after the task: passes too.
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}<bpmn:userTask id="review" />
               <bpmn:boundaryEvent id="failed_on_review" attachedToRef="review"><bpmn:messageEventDefinition messageRef="m_failed" /></bpmn:boundaryEvent>
               <bpmn:intermediateCatchEvent id="sent"><bpmn:messageEventDefinition messageRef="m_sent" /></bpmn:intermediateCatchEvent>
               {}{}{}"#,
            flow("f1", "start", "send"),
            flow("f2", "send", "review"),
            flow("f3", "review", "sent"),
        );
        assert_eq!(check(OUTCOMES, &body), Vec::<String>::new());
        // On a user task with no herald task before it: fails, naming the boundary event.
        let body = format!(
            r#"<bpmn:startEvent id="start" /><bpmn:userTask id="review" />{SEND}
               <bpmn:boundaryEvent id="failed_on_review" attachedToRef="review"><bpmn:messageEventDefinition messageRef="m_failed" /></bpmn:boundaryEvent>
               <bpmn:intermediateCatchEvent id="sent"><bpmn:messageEventDefinition messageRef="m_sent" /></bpmn:intermediateCatchEvent>
               {}{}{}"#,
            flow("f1", "start", "review"),
            flow("f2", "review", "send"),
            flow("f3", "send", "sent"),
        );
        let problems = check(OUTCOMES, &body);
        assert!(
            waits_without_task(&problems, "failed_on_review", "CommunicationFailed"),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn an_event_subprocess_is_preceded_by_anything_in_its_scope() {
        let event_subprocess = r#"<bpmn:subProcess id="on_failure" triggeredByEvent="true">
                 <bpmn:startEvent id="failure_start"><bpmn:messageEventDefinition messageRef="m_failed" /></bpmn:startEvent>
                 <bpmn:endEvent id="failure_end" />
                 <bpmn:sequenceFlow id="e1" sourceRef="failure_start" targetRef="failure_end" />
               </bpmn:subProcess>"#;
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}
               <bpmn:intermediateCatchEvent id="sent"><bpmn:messageEventDefinition messageRef="m_sent" /></bpmn:intermediateCatchEvent>
               {event_subprocess}{}{}"#,
            flow("f1", "start", "send"),
            flow("f2", "send", "sent"),
        );
        assert_eq!(check(OUTCOMES, &body), Vec::<String>::new());
        // A process with no herald task: the event subprocess's start waits for nothing.
        let body = format!(
            r#"<bpmn:startEvent id="start" /><bpmn:userTask id="work" />
               <bpmn:intermediateCatchEvent id="sent"><bpmn:messageEventDefinition messageRef="m_sent" /></bpmn:intermediateCatchEvent>
               {event_subprocess}{}{}"#,
            flow("f1", "start", "work"),
            flow("f2", "work", "sent"),
        );
        let problems = check(OUTCOMES, &body);
        assert!(
            waits_without_task(&problems, "failure_start", "CommunicationFailed"),
            "{problems:?}"
        );
        assert!(
            waits_without_task(&problems, "sent", "CommunicationSent"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_receive_task_is_a_wait() {
        let body = format!(
            r#"<bpmn:startEvent id="start" />
               <bpmn:receiveTask id="receive_sent" messageRef="m_sent" />
               <bpmn:receiveTask id="receive_failed" messageRef="m_failed" />{}{}"#,
            flow("f1", "start", "receive_sent"),
            flow("f2", "receive_sent", "receive_failed"),
        );
        let problems = check(OUTCOMES, &body);
        assert!(
            waits_without_task(&problems, "receive_sent", "CommunicationSent"),
            "{problems:?}"
        );
        assert!(
            waits_without_task(&problems, "receive_failed", "CommunicationFailed"),
            "{problems:?}"
        );
    }

    #[test]
    fn declared_but_never_caught_is_a_finding_and_the_task_misses_its_outcome() {
        // The messages are declared, the failure is never waited for.
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}
               <bpmn:intermediateCatchEvent id="sent"><bpmn:messageEventDefinition messageRef="m_sent" /></bpmn:intermediateCatchEvent>
               {}{}"#,
            flow("f1", "start", "send"),
            flow("f2", "send", "sent"),
        );
        let problems = check(OUTCOMES, &body);
        assert_eq!(
            problems,
            vec![
                "t.bpmn: m_failed: the message 'CommunicationFailed' is declared but nothing catches or throws it (no messageRef names it)".to_string(),
                "t.bpmn: send: topic 'send-proposal' reports its outcome with the message 'CommunicationFailed', which process 'p' never catches (no catch event, boundary event, receive task or event subprocess start waits for it)".to_string(),
            ]
        );
    }

    #[test]
    fn a_thrown_message_counts_as_used_but_not_as_a_wait() {
        // The failure message is thrown (an end event), not caught: used, yet never waited for.
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}
               <bpmn:intermediateCatchEvent id="sent"><bpmn:messageEventDefinition messageRef="m_sent" /></bpmn:intermediateCatchEvent>
               <bpmn:endEvent id="end"><bpmn:messageEventDefinition messageRef="m_failed" /></bpmn:endEvent>
               {}{}{}"#,
            flow("f1", "start", "send"),
            flow("f2", "send", "sent"),
            flow("f3", "sent", "end"),
        );
        let problems = check(OUTCOMES, &body);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("t.bpmn: send: topic 'send-proposal' reports its outcome with the message 'CommunicationFailed'"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_wait_in_another_process_does_not_catch_the_outcome() {
        // herald correlates to the task's process instance: the other process never hears.
        let topics = topics();
        let by_name = topics.iter().map(|t| (t.topic.as_str(), t)).collect();
        let text = format!(
            r#"<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs">
  {OUTCOMES}
  <bpmn:process id="sender" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start" />{SEND}{}
  </bpmn:process>
  <bpmn:process id="waiter" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="w_start" />{AWAIT}{}
  </bpmn:process>
</bpmn:definitions>"#,
            flow("f1", "start", "send"),
            flow("w1", "w_start", "gw"),
        );
        let problems = check_file("t.bpmn", &text, &by_name);
        for message in OUTCOME_MESSAGES {
            assert!(
                problems.iter().any(|p| p.starts_with(&format!(
                    "t.bpmn: send: topic 'send-proposal' reports its outcome with the message '{message}', which process 'sender' never catches"
                ))),
                "{problems:?}"
            );
        }
        assert!(
            waits_without_task(&problems, "sent", "CommunicationSent"),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn a_message_ref_to_an_undeclared_message_is_a_finding() {
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}{AWAIT}
               <bpmn:intermediateCatchEvent id="other"><bpmn:messageEventDefinition messageRef="m_nowhere" /></bpmn:intermediateCatchEvent>
               {}{}{}"#,
            flow("f1", "start", "send"),
            flow("f2", "send", "gw"),
            flow("f3", "gw", "other"),
        );
        assert_eq!(
            check(OUTCOMES, &body),
            vec![
                "t.bpmn: other: messageRef 'm_nowhere' names no bpmn:message declared in this file"
                    .to_string()
            ]
        );
    }

    #[test]
    fn other_messages_need_no_herald_task() {
        let messages = format!(r#"{OUTCOMES}<bpmn:message id="m_paid" name="QuotePaid" />"#);
        let body = format!(
            r#"<bpmn:startEvent id="start" />
               <bpmn:intermediateCatchEvent id="paid"><bpmn:messageEventDefinition messageRef="m_paid" /></bpmn:intermediateCatchEvent>
               {SEND}{AWAIT}{}{}{}"#,
            flow("f1", "start", "paid"),
            flow("f2", "paid", "send"),
            flow("f3", "send", "gw"),
        );
        assert_eq!(check(&messages, &body), Vec::<String>::new());
    }

    #[test]
    fn a_link_carries_the_walk_to_its_throw_event() {
        let body = format!(
            r#"<bpmn:startEvent id="start" />{SEND}
               <bpmn:intermediateThrowEvent id="go"><bpmn:linkEventDefinition name="wait" /></bpmn:intermediateThrowEvent>
               <bpmn:intermediateCatchEvent id="arrive"><bpmn:linkEventDefinition name="wait" /></bpmn:intermediateCatchEvent>
               {AWAIT}{}{}{}"#,
            flow("f1", "start", "send"),
            flow("f2", "send", "go"),
            flow("f3", "arrive", "gw"),
        );
        assert_eq!(check(OUTCOMES, &body), Vec::<String>::new());
    }

    #[test]
    fn the_shipped_models_pass() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(
            check_bpmn(&root.join("bpmn"), &topics()),
            Vec::<String>::new()
        );
    }
}
