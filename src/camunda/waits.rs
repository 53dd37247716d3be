//! Which execution waits for a communication's outcome.
//!
//! Correlating by process instance alone cannot tell the branches of a multi-instance
//! subprocess apart, nor two herald tasks in parallel branches. herald remembers where its task
//! ran (the task's activity instance) and reads, at correlation time, the engine's
//! activity-instance tree and the executions subscribed to the message. A subscription is the
//! task's when its element is one of the waits that follow the task in the model
//! ([`super::model::Plan`]) and it lies in the task's own scope instance (or in one of the
//! scopes around it); a token still between the task and those waits means "not yet"; no such
//! token means nobody will wait any more (a timer took the process elsewhere, or it ended).

use std::collections::HashMap;

use super::executions::{ActivityInstance, EventSubscription};
use super::model::{Plan, ProcessModel};

/// What the relay does with one correlation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver the message to this execution.
    Trigger(String),
    /// More than one execution of the task's scope waits: deliver to none, try again until
    /// the deadline.
    Ambiguous(String),
    /// The process has not reached the wait yet: try again later.
    NotYet,
    /// Nobody waits for the message and nobody will: record it, do not retry.
    Unwaited(String),
}

/// The activity-instance tree, indexed by instance id and by execution.
pub struct Tree<'a> {
    /// Instance id → (element id, parent instance id).
    nodes: HashMap<&'a str, (&'a str, Option<&'a str>)>,
    /// Execution id → the instances it runs, outermost first.
    executions: HashMap<&'a str, Vec<&'a str>>,
    root: &'a str,
}

/// The element id of an instance: the body of a multi-instance activity counts as no element
/// of its own (its instances are the element's).
fn element(activity_id: &str) -> Option<&str> {
    (!activity_id.ends_with("#multiInstanceBody")).then_some(activity_id)
}

impl<'a> Tree<'a> {
    pub fn new(root: &'a ActivityInstance) -> Tree<'a> {
        let mut tree = Tree {
            nodes: HashMap::new(),
            executions: HashMap::new(),
            root: &root.id,
        };
        tree.add(root, None);
        tree
    }

    fn add(&mut self, node: &'a ActivityInstance, parent: Option<&'a str>) {
        self.nodes.insert(&node.id, (&node.activity_id, parent));
        for execution in &node.execution_ids {
            self.executions.entry(execution).or_default().push(&node.id);
        }
        for transition in &node.child_transition_instances {
            // A transition instance takes its execution's id, which may be an activity
            // instance's too (the process instance's): the activity instance keeps its place.
            if self.nodes.contains_key(transition.id.as_str()) {
                continue;
            }
            self.nodes
                .insert(&transition.id, (&transition.activity_id, Some(&node.id)));
            if let Some(execution) = &transition.execution_id {
                self.executions
                    .entry(execution)
                    .or_default()
                    .push(&transition.id);
            }
        }
        for child in &node.child_activity_instances {
            self.add(child, Some(&node.id));
        }
    }

    pub fn contains(&self, instance_id: &str) -> bool {
        self.nodes.contains_key(instance_id)
    }

    /// The instance and the instances around it, innermost first, up to the process instance.
    pub fn chain(&self, instance_id: &str) -> Vec<&'a str> {
        let mut chain = Vec::new();
        let mut current = self.nodes.get_key_value(instance_id).map(|(id, _)| *id);
        while let Some(id) = current {
            if chain.contains(&id) {
                break;
            }
            chain.push(id);
            current = self.nodes.get(id).and_then(|(_, parent)| *parent);
        }
        chain
    }

    /// The instance a subscription waits in: the one of its element run by its execution, else
    /// the innermost instance of that execution (an event gateway holds its events' waits).
    fn instance_of(&self, subscription: &EventSubscription) -> Option<&'a str> {
        let instances = self.executions.get(subscription.execution_id.as_deref()?)?;
        instances
            .iter()
            .rev()
            .find(|id| {
                self.nodes.get(**id).map(|(activity, _)| *activity)
                    == subscription.activity_id.as_deref()
            })
            .or(instances.last())
            .copied()
    }
}

/// Where herald's task ran: its activity instance and the instances around it, innermost
/// first (read from the tree while the task runs, from the history after).
pub struct TaskPlace<'t> {
    pub activity_id: &'t str,
    pub chain: &'t [String],
}

impl TaskPlace<'_> {
    fn holds(&self, instance_id: &str) -> bool {
        self.chain.iter().any(|id| id == instance_id)
    }

    /// The instance of the task's own scope (the subprocess instance it ran in, or the
    /// process instance).
    fn scope_instance(&self) -> Option<&str> {
        self.chain.get(1).map(String::as_str)
    }
}

/// Whether the tree node `instance_id` (of an element in `scope`) belongs to the task's run:
/// it lies inside the task's scope instance, or its scope's instance is one around the task.
fn belongs(
    tree: &Tree,
    model: &ProcessModel,
    task: &TaskPlace,
    instance_id: &str,
    scope: &str,
) -> bool {
    let chain = tree.chain(instance_id);
    if task.scope_instance().is_some_and(|s| chain.contains(&s)) {
        return true;
    }
    let scope_instance = if model.is_process(scope) {
        Some(tree.root)
    } else {
        chain.iter().copied().find(|id| {
            tree.nodes
                .get(id)
                .and_then(|(activity, _)| element(activity))
                == Some(scope)
        })
    };
    scope_instance.is_some_and(|id| task.holds(id))
}

/// Decides where the outcome `message` of the task at `task` goes.
pub fn locate(
    model: &ProcessModel,
    plan: &Plan,
    tree: &Tree,
    subscriptions: &[EventSubscription],
    message: &str,
    task: &TaskPlace,
) -> Verdict {
    let waits: Vec<_> = plan.waits.iter().filter(|w| w.message == message).collect();
    if waits.is_empty() {
        return Verdict::Unwaited(format!(
            "the model does not wait for '{message}' after the task '{}'",
            task.activity_id
        ));
    }
    let mut targets: Vec<String> = Vec::new();
    for subscription in subscriptions {
        let (Some(execution), Some(activity)) = (
            subscription.execution_id.as_deref(),
            subscription.activity_id.as_deref(),
        ) else {
            continue;
        };
        let Some(wait) = waits.iter().find(|w| w.activity_id == activity) else {
            continue;
        };
        let Some(instance) = tree.instance_of(subscription) else {
            continue;
        };
        if belongs(tree, model, task, instance, &wait.scope)
            && !targets.iter().any(|t| t == execution)
        {
            targets.push(execution.to_string());
        }
    }
    match targets.len() {
        0 => {}
        1 => return Verdict::Trigger(targets.remove(0)),
        n => {
            return Verdict::Ambiguous(format!(
                "{n} executions wait for '{message}' after the task '{}' in its scope: herald delivers to none of them rather than to the wrong one",
                task.activity_id
            ))
        }
    }
    // A token waiting at a join is no activity instance: while the task's scope instance
    // lives, a join on the way may still let it through.
    if plan.joins && task.scope_instance().is_some_and(|s| tree.contains(s)) {
        return Verdict::NotYet;
    }
    let on_the_way = tree.nodes.iter().any(|(id, (activity, _))| {
        // The body of a multi-instance activity holds its asynchronous continuations.
        let element = activity
            .strip_suffix("#multiInstanceBody")
            .unwrap_or(activity);
        if !plan.path.contains(element) {
            return false;
        }
        model
            .scope_of(element)
            .is_some_and(|scope| belongs(tree, model, task, id, scope))
    });
    if on_the_way {
        Verdict::NotYet
    } else {
        Verdict::Unwaited(format!(
            "nobody waits for '{message}' after the task '{}' any more: the process went on without it (a timer, another branch) or its scope ended",
            task.activity_id
        ))
    }
}

#[cfg(test)]
mod tests;
