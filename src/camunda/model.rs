//! A deployed BPMN model as the correlation relay reads it: which waits for herald's outcome
//! messages follow a task, and which elements lie between the task and those waits.
//!
//! A process may run the same task many times at once (a multi-instance subprocess) or several
//! herald tasks side by side (parallel branches), each followed by its own wait for
//! `CommunicationSent` or `CommunicationFailed`. The relay tells them apart with this plan: the
//! waits that follow *this* task (see [`ProcessModel::plan_after`]), in the scope the model
//! puts them, matched against the engine's activity-instance tree (`super::waits`).

use std::collections::{HashMap, HashSet};

use roxmltree::{Document, Node};

const BPMN_NS: &str = "http://www.omg.org/spec/BPMN/20100524/MODEL";
const CAMUNDA_NS: &str = "http://camunda.org/schema/1.0/bpmn";

/// The messages herald correlates to the process of a topic that waits for its outcome.
pub const OUTCOME_MESSAGES: [&str; 2] = ["CommunicationSent", "CommunicationFailed"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Start,
    End,
    /// Any activity that is not a subprocess (tasks of every kind, call activities).
    Activity,
    SubProcess,
    EventSubProcess,
    EventGateway,
    Gateway,
    Catch,
    Throw,
    Boundary,
}

#[derive(Debug, Clone)]
struct Element {
    kind: Kind,
    /// The enclosing scope: a subprocess id, or the process id.
    scope: String,
    outgoing: Vec<String>,
    /// The outcome message this element waits for (catch, boundary, start event, receive task).
    waits_for: Option<&'static str>,
    /// Any other event definition (timer, signal, …): such a start or boundary is no plain one.
    other_trigger: bool,
    topic: Option<String>,
    attached_to: Option<String>,
    link: Option<String>,
}

/// One wait for an outcome message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitPoint {
    /// The element whose event subscription waits (catch event, boundary event, receive
    /// task, start event of an event subprocess).
    pub activity_id: String,
    pub message: &'static str,
    /// The scope whose instance the wait belongs to: a subprocess id, or the process id.
    pub scope: String,
}

/// What follows a task up to herald's waits.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub waits: Vec<WaitPoint>,
    /// Elements a token passes from the task (included) to the waits (included): a token on
    /// one of them may still reach a wait.
    pub path: HashSet<String>,
    /// A gateway on the way joins several flows: a token waiting there is no activity instance.
    pub joins: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the process model is not well-formed XML: {0}")]
    Xml(String),
}

/// A BPMN document's processes, indexed.
#[derive(Debug, Clone)]
pub struct ProcessModel {
    elements: HashMap<String, Element>,
    processes: HashSet<String>,
}

fn is_bpmn(node: Node) -> bool {
    node.is_element() && node.tag_name().namespace() == Some(BPMN_NS)
}

fn kind_of(node: Node) -> Option<Kind> {
    let name = node.tag_name().name();
    Some(match name {
        "startEvent" => Kind::Start,
        "endEvent" => Kind::End,
        "intermediateCatchEvent" => Kind::Catch,
        "intermediateThrowEvent" => Kind::Throw,
        "boundaryEvent" => Kind::Boundary,
        "eventBasedGateway" => Kind::EventGateway,
        "exclusiveGateway" | "parallelGateway" | "inclusiveGateway" | "complexGateway" => {
            Kind::Gateway
        }
        "subProcess" | "transaction" | "adHocSubProcess"
            if node.attribute("triggeredByEvent") == Some("true") =>
        {
            Kind::EventSubProcess
        }
        "subProcess" | "transaction" | "adHocSubProcess" => Kind::SubProcess,
        "task" | "serviceTask" | "sendTask" | "receiveTask" | "userTask" | "manualTask"
        | "scriptTask" | "businessRuleTask" | "callActivity" => Kind::Activity,
        _ => return None,
    })
}

impl ProcessModel {
    pub fn parse(xml: &str) -> Result<ProcessModel, ModelError> {
        let doc = Document::parse(xml).map_err(|e| ModelError::Xml(e.to_string()))?;
        let messages: HashMap<&str, &str> = doc
            .descendants()
            .filter(|n| is_bpmn(*n) && n.tag_name().name() == "message")
            .filter_map(|n| Some((n.attribute("id")?, n.attribute("name")?)))
            .collect();
        let outcome = |reference: Option<&str>| -> Option<&'static str> {
            let name = messages.get(reference?)?;
            OUTCOME_MESSAGES.iter().copied().find(|m| m == name)
        };
        let mut elements = HashMap::new();
        let mut processes = HashSet::new();
        let mut flows = Vec::new();
        for node in doc.descendants().filter(|n| is_bpmn(*n)) {
            let name = node.tag_name().name();
            if name == "process" {
                processes.extend(node.attribute("id").map(str::to_string));
                continue;
            }
            if name == "sequenceFlow" {
                if let (Some(source), Some(target)) =
                    (node.attribute("sourceRef"), node.attribute("targetRef"))
                {
                    flows.push((source.to_string(), target.to_string()));
                }
                continue;
            }
            let (Some(kind), Some(id)) = (kind_of(node), node.attribute("id")) else {
                continue;
            };
            let Some(scope) = node
                .ancestors()
                .skip(1)
                .find(|a| {
                    is_bpmn(*a)
                        && matches!(
                            a.tag_name().name(),
                            "process" | "subProcess" | "transaction" | "adHocSubProcess"
                        )
                })
                .and_then(|a| a.attribute("id"))
            else {
                continue;
            };
            let definitions: Vec<Node> = node
                .children()
                .filter(|c| is_bpmn(*c) && c.tag_name().name().ends_with("EventDefinition"))
                .collect();
            let waits_for = if name == "receiveTask" {
                outcome(node.attribute("messageRef"))
            } else {
                definitions
                    .iter()
                    .find(|d| d.tag_name().name() == "messageEventDefinition")
                    .and_then(|d| outcome(d.attribute("messageRef")))
            };
            let link = definitions
                .iter()
                .find(|d| d.tag_name().name() == "linkEventDefinition")
                .and_then(|d| d.attribute("name"))
                .map(str::to_string);
            elements.insert(
                id.to_string(),
                Element {
                    kind,
                    scope: scope.to_string(),
                    outgoing: Vec::new(),
                    waits_for,
                    other_trigger: !definitions.is_empty() && waits_for.is_none(),
                    topic: (node.attribute((CAMUNDA_NS, "type")) == Some("external"))
                        .then(|| node.attribute((CAMUNDA_NS, "topic")).map(str::to_string))
                        .flatten(),
                    attached_to: node.attribute("attachedToRef").map(str::to_string),
                    link,
                },
            );
        }
        for (source, target) in flows {
            if let Some(element) = elements.get_mut(&source) {
                element.outgoing.push(target);
            }
        }
        Ok(ProcessModel {
            elements,
            processes,
        })
    }

    /// Whether `id` is a process of this model (the root scope).
    pub fn is_process(&self, id: &str) -> bool {
        self.processes.contains(id)
    }

    /// The scope of an element (a subprocess id, or the process id).
    pub fn scope_of(&self, id: &str) -> Option<&str> {
        self.elements.get(id).map(|e| e.scope.as_str())
    }

    /// The waits for herald's outcome that follow the task `task_id`, and the elements between.
    /// The walk follows sequence flows (into embedded subprocesses and out of them at their
    /// end, through link events), takes message boundary events of the activities it passes and
    /// message starts of the event subprocesses around the task, and stops at each wait and at
    /// another task of a topic that waits for its outcome (`waiting_topic`): what follows such a
    /// task waits for that task's communication, not this one's.
    pub fn plan_after(&self, task_id: &str, waiting_topic: &dyn Fn(&str) -> bool) -> Plan {
        let mut plan = Plan::default();
        let Some(task) = self.elements.get(task_id) else {
            return plan;
        };
        plan.path.insert(task_id.to_string());
        self.event_subprocess_waits(&task.scope, &mut plan);
        let mut stack: Vec<String> = self.next_of(task_id);
        self.boundary_waits(task_id, &mut plan);
        let mut seen = HashSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let Some(element) = self.elements.get(&id) else {
                continue;
            };
            if let Some(message) = element.waits_for {
                if element.kind != Kind::Start && element.kind != Kind::Boundary {
                    plan.path.insert(id.clone());
                    push_wait(&mut plan, &id, message, &element.scope);
                    // A receive task may also wait for the other message on its boundary.
                    self.boundary_waits(&id, &mut plan);
                }
                continue;
            }
            let holds_a_send = |id: &str| {
                self.elements.iter().any(|(other, e)| {
                    e.topic.as_deref().is_some_and(waiting_topic)
                        && (other == id || self.within(other, id))
                })
            };
            if holds_a_send(&id) {
                continue;
            }
            plan.path.insert(id.clone());
            if element.kind == Kind::Gateway && self.incoming(&id) > 1 {
                plan.joins = true;
            }
            match element.kind {
                Kind::SubProcess => {
                    stack.extend(self.starts_of(&id));
                    self.boundary_waits(&id, &mut plan);
                    self.event_subprocess_waits(&id, &mut plan);
                }
                Kind::End if !self.is_process(&element.scope) => {
                    stack.extend(self.next_of(&element.scope));
                }
                Kind::EventGateway => {
                    // The alternatives of an event gateway wait at the gateway: only its waits
                    // for herald's messages keep the token on the path.
                    stack.extend(
                        element
                            .outgoing
                            .iter()
                            .filter(|t| {
                                self.elements
                                    .get(*t)
                                    .is_some_and(|target| target.waits_for.is_some())
                            })
                            .cloned(),
                    );
                    continue;
                }
                Kind::Activity => self.boundary_waits(&id, &mut plan),
                Kind::Throw => {
                    if let Some(link) = &element.link {
                        stack.extend(
                            self.elements
                                .iter()
                                .filter(|(_, e)| {
                                    e.kind == Kind::Catch
                                        && e.scope == element.scope
                                        && e.link.as_deref() == Some(link)
                                })
                                .map(|(other, _)| other.clone()),
                        );
                    }
                }
                _ => {}
            }
            stack.extend(self.next_of(&id));
        }
        plan
    }

    fn incoming(&self, id: &str) -> usize {
        self.elements
            .values()
            .map(|e| e.outgoing.iter().filter(|t| *t == id).count())
            .sum()
    }

    fn next_of(&self, id: &str) -> Vec<String> {
        self.elements
            .get(id)
            .map(|e| e.outgoing.clone())
            .unwrap_or_default()
    }

    /// The plain start events of an embedded subprocess.
    fn starts_of(&self, scope: &str) -> Vec<String> {
        self.elements
            .iter()
            .filter(|(_, e)| e.kind == Kind::Start && e.scope == scope && !e.other_trigger)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether `id` lies (at any depth) inside the subprocess `scope`.
    fn within(&self, id: &str, scope: &str) -> bool {
        let mut current = self.elements.get(id).map(|e| e.scope.as_str());
        while let Some(s) = current {
            if s == scope {
                return true;
            }
            current = self.elements.get(s).map(|e| e.scope.as_str());
        }
        false
    }

    /// Message boundary events on `activity` that wait for an outcome. Other boundary events
    /// are not followed: a timer that fires takes the token off the path.
    fn boundary_waits(&self, activity: &str, plan: &mut Plan) {
        for (id, e) in &self.elements {
            if e.kind == Kind::Boundary && e.attached_to.as_deref() == Some(activity) {
                if let Some(message) = e.waits_for {
                    push_wait(plan, id, message, &e.scope);
                }
            }
        }
    }

    /// Message starts of the event subprocesses of `scope` and the scopes around it.
    fn event_subprocess_waits(&self, scope: &str, plan: &mut Plan) {
        let mut current = Some(scope.to_string());
        while let Some(s) = current {
            for (id, e) in &self.elements {
                let in_event_subprocess_of_s = self
                    .elements
                    .get(&e.scope)
                    .is_some_and(|sub| sub.kind == Kind::EventSubProcess && sub.scope == s);
                if e.kind == Kind::Start && in_event_subprocess_of_s {
                    if let Some(message) = e.waits_for {
                        push_wait(plan, id, message, &s);
                    }
                }
            }
            current = self.elements.get(&s).map(|e| e.scope.clone());
        }
    }
}

fn push_wait(plan: &mut Plan, id: &str, message: &'static str, scope: &str) {
    if !plan.waits.iter().any(|w| w.activity_id == id) {
        plan.waits.push(WaitPoint {
            activity_id: id.to_string(),
            message,
            scope: scope.to_string(),
        });
    }
}

#[cfg(test)]
pub(crate) mod tests;
