//! Trees in the shape the engine (7.24) answers for the models of `bpmn_patterns` tests.

use serde_json::json;

use super::*;
use crate::camunda::executions::{ActivityInstance, EventSubscription};
use crate::camunda::model::tests::GATEWAY;

fn model_xml() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="x">
  <bpmn:message id="sent" name="CommunicationSent"/>
  <bpmn:message id="failed" name="CommunicationFailed"/>
  <bpmn:process id="p" isExecutable="true">
    <bpmn:subProcess id="each">
      <bpmn:multiInstanceLoopCharacteristics camunda:collection="${{S(contacts).elements()}}" camunda:elementVariable="contact"/>
      <bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f0" sourceRef="s" targetRef="send"/>
      <bpmn:serviceTask id="send" camunda:type="external" camunda:topic="send-proposal"/>
      <bpmn:sequenceFlow id="f1" sourceRef="send" targetRef="gw"/>
{GATEWAY}
    </bpmn:subProcess>
  </bpmn:process>
</bpmn:definitions>"#
    )
}

fn node(
    id: &str,
    activity: &str,
    executions: &[&str],
    children: Vec<serde_json::Value>,
) -> serde_json::Value {
    json!({"id": id, "activityId": activity, "executionIds": executions, "childActivityInstances": children, "childTransitionInstances": []})
}

/// Three instances of `each`: the first and second wait at the gateway, the third is still
/// at its task.
fn tree() -> ActivityInstance {
    serde_json::from_value(node(
        "pi",
        "p:1:def",
        &["pi"],
        vec![node(
            "body",
            "each#multiInstanceBody",
            &["b", "c1", "c2", "c3"],
            vec![
                node(
                    "each:1",
                    "each",
                    &["e1"],
                    vec![node("gw:1", "gw", &["g1"], vec![])],
                ),
                node(
                    "each:2",
                    "each",
                    &["e2"],
                    vec![node("gw:2", "gw", &["g2"], vec![])],
                ),
                node(
                    "each:3",
                    "each",
                    &["e3"],
                    vec![node("send:3", "send", &["t3"], vec![])],
                ),
            ],
        )],
    ))
    .unwrap()
}

fn subs(list: &[(&str, &str)]) -> Vec<EventSubscription> {
    list.iter()
        .map(|(execution, activity)| {
            serde_json::from_value(json!({"executionId": execution, "activityId": activity}))
                .unwrap()
        })
        .collect()
}

fn chain(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn verdict(
    tree: &ActivityInstance,
    subscriptions: &[EventSubscription],
    message: &str,
    task: &[&str],
) -> Verdict {
    let model = ProcessModel::parse(&model_xml()).unwrap();
    let plan = model.plan_after("send", &|t: &str| t == "send-proposal");
    let chain = chain(task);
    locate(
        &model,
        &plan,
        &Tree::new(tree),
        subscriptions,
        message,
        &TaskPlace {
            activity_id: "send",
            chain: &chain,
        },
    )
}

#[test]
fn each_branch_gets_its_own_wait() {
    let waiting = subs(&[
        ("g1", "on_sent"),
        ("g1", "on_failed"),
        ("g2", "on_sent"),
        ("g2", "on_failed"),
    ]);
    let tree = tree();
    assert_eq!(
        verdict(
            &tree,
            &waiting,
            "CommunicationSent",
            &["send:1", "each:1", "body", "pi"]
        ),
        Verdict::Trigger("g1".into())
    );
    assert_eq!(
        verdict(
            &tree,
            &waiting,
            "CommunicationFailed",
            &["send:2", "each:2", "body", "pi"]
        ),
        Verdict::Trigger("g2".into())
    );
    // The third branch's task still runs: its message waits, it never goes to another branch.
    assert_eq!(
        verdict(
            &tree,
            &waiting,
            "CommunicationSent",
            &["send:3", "each:3", "body", "pi"]
        ),
        Verdict::NotYet
    );
}

#[test]
fn a_branch_whose_timer_fired_is_unwaited_even_while_others_wait() {
    let mut tree = tree();
    // The first branch gave up: its token is at the user task after the timer.
    tree.child_activity_instances[0].child_activity_instances[0].child_activity_instances[0] =
        serde_json::from_value(node("handle:1", "handle", &["e1"], vec![])).unwrap();
    let waiting = subs(&[("g2", "on_sent"), ("g2", "on_failed")]);
    match verdict(
        &tree,
        &waiting,
        "CommunicationSent",
        &["send:1", "each:1", "body", "pi"],
    ) {
        Verdict::Unwaited(reason) => assert!(reason.contains("nobody waits"), "{reason}"),
        other => panic!("expected Unwaited, got {other:?}"),
    }
    // Its scope instance has ended altogether: still never the second branch's wait.
    tree.child_activity_instances[0]
        .child_activity_instances
        .remove(0);
    assert!(matches!(
        verdict(
            &tree,
            &waiting,
            "CommunicationSent",
            &["send:1", "each:1", "body", "pi"]
        ),
        Verdict::Unwaited(_)
    ));
}

#[test]
fn a_message_the_model_never_waits_for_is_unwaited_at_once() {
    let model = ProcessModel::parse(&model_xml().replace(
        r#"<bpmn:messageEventDefinition messageRef="failed"/>"#,
        "<bpmn:timerEventDefinition/>",
    ))
    .unwrap();
    let plan = model.plan_after("send", &|_: &str| true);
    let tree = tree();
    let chain = chain(&["send:1", "each:1", "body", "pi"]);
    let verdict = locate(
        &model,
        &plan,
        &Tree::new(&tree),
        &[],
        "CommunicationFailed",
        &TaskPlace {
            activity_id: "send",
            chain: &chain,
        },
    );
    assert!(matches!(verdict, Verdict::Unwaited(reason) if reason.contains("does not wait")));
}

#[test]
fn the_tree_gives_chains_and_membership() {
    let tree = tree();
    let indexed = Tree::new(&tree);
    assert_eq!(indexed.chain("gw:2"), vec!["gw:2", "each:2", "body", "pi"]);
    assert!(indexed.contains("send:3") && !indexed.contains("send:1"));
    assert!(indexed.chain("nowhere").is_empty());
}

#[test]
fn a_transition_instance_with_the_process_instances_id_keeps_the_tree_whole() {
    // The process instance's own execution at an asynchronous continuation: the transition
    // instance takes its id, which is the root's too.
    let tree: ActivityInstance = serde_json::from_value(json!({
        "id": "pi", "activityId": "p:1:def", "executionIds": ["pi"],
        "childActivityInstances": [],
        "childTransitionInstances": [{"id": "pi", "activityId": "send", "executionId": "pi"}]
    }))
    .unwrap();
    let indexed = Tree::new(&tree);
    assert_eq!(indexed.chain("pi"), vec!["pi"]);
}

#[test]
fn two_waits_of_the_tasks_scope_get_nothing_rather_than_the_wrong_one() {
    let tree = tree();
    // Both subscriptions claim the first branch's gateway execution's scope.
    let waiting = subs(&[("g1", "on_sent"), ("e1", "on_sent")]);
    let mut doubled = tree.clone();
    doubled.child_activity_instances[0].child_activity_instances[0]
        .execution_ids
        .push("e1".into());
    assert!(matches!(
        verdict(
            &doubled,
            &waiting,
            "CommunicationSent",
            &["send:1", "each:1", "body", "pi"]
        ),
        Verdict::Ambiguous(_)
    ));
}

#[test]
fn an_asynchronous_continuation_on_a_multi_instance_body_is_on_the_way() {
    // The third branch's task done, its next step asynchronous on the gateway's body.
    let mut tree = tree();
    tree.child_activity_instances[0].child_activity_instances[2]
        .child_activity_instances
        .clear();
    tree.child_activity_instances[0].child_activity_instances[2].child_transition_instances =
        vec![serde_json::from_value(
            json!({"id": "t3", "activityId": "gw#multiInstanceBody", "executionId": "t3"}),
        )
        .unwrap()];
    assert_eq!(
        verdict(
            &tree,
            &[],
            "CommunicationSent",
            &["send:3", "each:3", "body", "pi"]
        ),
        Verdict::NotYet
    );
}
