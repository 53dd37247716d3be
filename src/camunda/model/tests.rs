use super::*;

fn model(body: &str) -> ProcessModel {
    ProcessModel::parse(&format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="x">
  <bpmn:message id="sent" name="CommunicationSent"/>
  <bpmn:message id="failed" name="CommunicationFailed"/>
  <bpmn:message id="other" name="SomethingElse"/>
  <bpmn:process id="p" isExecutable="true">{body}</bpmn:process>
</bpmn:definitions>"#
    ))
    .unwrap()
}

/// An event-based gateway `gw` waiting for both outcomes, with a timer `too_late` that leads
/// to the user task `handle`.
pub(crate) const GATEWAY: &str = r#"
  <bpmn:eventBasedGateway id="gw"/>
  <bpmn:sequenceFlow id="g1" sourceRef="gw" targetRef="on_sent"/>
  <bpmn:sequenceFlow id="g2" sourceRef="gw" targetRef="on_failed"/>
  <bpmn:sequenceFlow id="g3" sourceRef="gw" targetRef="too_late"/>
  <bpmn:intermediateCatchEvent id="on_sent"><bpmn:messageEventDefinition messageRef="sent"/></bpmn:intermediateCatchEvent>
  <bpmn:intermediateCatchEvent id="on_failed"><bpmn:messageEventDefinition messageRef="failed"/></bpmn:intermediateCatchEvent>
  <bpmn:intermediateCatchEvent id="too_late"><bpmn:timerEventDefinition><bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
  <bpmn:sequenceFlow id="g4" sourceRef="too_late" targetRef="handle"/>
  <bpmn:userTask id="handle"/>"#;

fn waits(plan: &Plan) -> Vec<(String, &'static str, String)> {
    let mut waits: Vec<_> = plan
        .waits
        .iter()
        .map(|w| (w.activity_id.clone(), w.message, w.scope.clone()))
        .collect();
    waits.sort();
    waits
}

fn sends(topic: &str) -> bool {
    topic == "send-proposal"
}

#[test]
fn an_event_gateway_after_the_task_waits_for_both_messages() {
    let m = model(&format!(
        r#"<bpmn:serviceTask id="send" camunda:type="external" camunda:topic="send-proposal"/>
           <bpmn:sequenceFlow id="f" sourceRef="send" targetRef="gw"/>{GATEWAY}"#
    ));
    let plan = m.plan_after("send", &sends);
    assert_eq!(
        waits(&plan),
        vec![
            ("on_failed".into(), "CommunicationFailed", "p".into()),
            ("on_sent".into(), "CommunicationSent", "p".into()),
        ]
    );
    for id in ["send", "gw", "on_sent", "on_failed"] {
        assert!(plan.path.contains(id), "{id} is on the path");
    }
    // The timer's branch takes the token off the path.
    assert!(!plan.path.contains("too_late") && !plan.path.contains("handle"));
}

#[test]
fn waits_inside_a_multi_instance_subprocess_belong_to_the_subprocess() {
    let m = model(&format!(
        r#"<bpmn:subProcess id="each">
             <bpmn:multiInstanceLoopCharacteristics camunda:collection="${{S(contacts).elements()}}" camunda:elementVariable="contact"/>
             <bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f0" sourceRef="s" targetRef="send"/>
             <bpmn:serviceTask id="send" camunda:type="external" camunda:topic="send-proposal"/>
             <bpmn:sequenceFlow id="f" sourceRef="send" targetRef="gw"/>{GATEWAY}
           </bpmn:subProcess>"#
    ));
    let plan = m.plan_after("send", &sends);
    assert!(plan.waits.iter().all(|w| w.scope == "each"));
    assert_eq!(plan.waits.len(), 2);
    assert_eq!(m.scope_of("send"), Some("each"));
    assert!(m.is_process("p") && !m.is_process("each"));
}

#[test]
fn each_of_two_parallel_sends_has_its_own_wait() {
    let m = model(
        r#"<bpmn:parallelGateway id="fork"/>
           <bpmn:sequenceFlow id="a" sourceRef="fork" targetRef="proposal"/>
           <bpmn:sequenceFlow id="b" sourceRef="fork" targetRef="copy"/>
           <bpmn:serviceTask id="proposal" camunda:type="external" camunda:topic="send-proposal"/>
           <bpmn:sequenceFlow id="a1" sourceRef="proposal" targetRef="proposal_sent"/>
           <bpmn:intermediateCatchEvent id="proposal_sent"><bpmn:messageEventDefinition messageRef="sent"/></bpmn:intermediateCatchEvent>
           <bpmn:sendTask id="copy" camunda:type="external" camunda:topic="send-proposal"/>
           <bpmn:sequenceFlow id="b1" sourceRef="copy" targetRef="copy_sent"/>
           <bpmn:receiveTask id="copy_sent" messageRef="sent"/>
           <bpmn:boundaryEvent id="copy_failed" attachedToRef="copy_sent"><bpmn:messageEventDefinition messageRef="failed"/></bpmn:boundaryEvent>
           <bpmn:sequenceFlow id="a2" sourceRef="proposal_sent" targetRef="join"/>
           <bpmn:sequenceFlow id="b2" sourceRef="copy_sent" targetRef="join"/>
           <bpmn:parallelGateway id="join"/>"#,
    );
    let proposal = m.plan_after("proposal", &sends);
    assert_eq!(
        waits(&proposal),
        vec![("proposal_sent".into(), "CommunicationSent", "p".into())]
    );
    let copy = m.plan_after("copy", &sends);
    assert_eq!(
        waits(&copy),
        vec![
            ("copy_failed".into(), "CommunicationFailed", "p".into()),
            ("copy_sent".into(), "CommunicationSent", "p".into()),
        ]
    );
}

#[test]
fn a_wait_after_a_second_send_is_the_second_sends() {
    let m = model(
        r#"<bpmn:serviceTask id="first" camunda:type="external" camunda:topic="send-proposal"/>
           <bpmn:sequenceFlow id="a" sourceRef="first" targetRef="second"/>
           <bpmn:serviceTask id="second" camunda:type="external" camunda:topic="send-proposal"/>
           <bpmn:sequenceFlow id="b" sourceRef="second" targetRef="w"/>
           <bpmn:intermediateCatchEvent id="w"><bpmn:messageEventDefinition messageRef="sent"/></bpmn:intermediateCatchEvent>"#,
    );
    assert!(m.plan_after("first", &sends).waits.is_empty());
    assert_eq!(m.plan_after("second", &sends).waits.len(), 1);
    // A task of a topic that does not wait (a reminder) does not stop the walk.
    assert_eq!(m.plan_after("first", &|_: &str| false).waits.len(), 1);
}

#[test]
fn the_walk_passes_timers_subprocess_ends_links_and_takes_boundary_and_event_subprocess_waits() {
    let m = model(
        r#"<bpmn:subProcess id="inner">
             <bpmn:startEvent id="s"/><bpmn:sequenceFlow id="f0" sourceRef="s" targetRef="send"/>
             <bpmn:serviceTask id="send" camunda:type="external" camunda:topic="send-proposal"/>
             <bpmn:sequenceFlow id="f1" sourceRef="send" targetRef="pause"/>
             <bpmn:intermediateCatchEvent id="pause"><bpmn:timerEventDefinition><bpmn:timeDuration>PT3S</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
             <bpmn:sequenceFlow id="f2" sourceRef="pause" targetRef="jump"/>
             <bpmn:intermediateThrowEvent id="jump"><bpmn:linkEventDefinition name="on"/></bpmn:intermediateThrowEvent>
             <bpmn:intermediateCatchEvent id="land"><bpmn:linkEventDefinition name="on"/></bpmn:intermediateCatchEvent>
             <bpmn:sequenceFlow id="f3" sourceRef="land" targetRef="e"/>
             <bpmn:endEvent id="e"/>
             <bpmn:subProcess id="on_failure" triggeredByEvent="true">
               <bpmn:startEvent id="failed_start"><bpmn:messageEventDefinition messageRef="failed"/></bpmn:startEvent>
             </bpmn:subProcess>
           </bpmn:subProcess>
           <bpmn:sequenceFlow id="f4" sourceRef="inner" targetRef="prepare"/>
           <bpmn:userTask id="prepare"/>
           <bpmn:boundaryEvent id="prepared_sent" attachedToRef="prepare"><bpmn:messageEventDefinition messageRef="sent"/></bpmn:boundaryEvent>
           <bpmn:boundaryEvent id="prepare_timeout" attachedToRef="prepare"><bpmn:timerEventDefinition><bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:boundaryEvent>
           <bpmn:sequenceFlow id="f5" sourceRef="prepare_timeout" targetRef="late"/>
           <bpmn:userTask id="late"/>"#,
    );
    let plan = m.plan_after("send", &sends);
    assert_eq!(
        waits(&plan),
        vec![
            ("failed_start".into(), "CommunicationFailed", "inner".into()),
            ("prepared_sent".into(), "CommunicationSent", "p".into()),
        ]
    );
    for id in ["pause", "jump", "land", "e", "prepare"] {
        assert!(plan.path.contains(id), "{id} is on the path");
    }
    // The scope around the task is no step on the way: a token elsewhere in it may be off it.
    assert!(!plan.path.contains("late") && !plan.path.contains("inner"));
}

#[test]
fn other_messages_are_no_waits_and_an_unknown_task_has_no_plan() {
    let m = model(
        r#"<bpmn:serviceTask id="send" camunda:type="external" camunda:topic="send-proposal"/>
           <bpmn:sequenceFlow id="a" sourceRef="send" targetRef="w"/>
           <bpmn:intermediateCatchEvent id="w"><bpmn:messageEventDefinition messageRef="other"/></bpmn:intermediateCatchEvent>"#,
    );
    assert!(m.plan_after("send", &sends).waits.is_empty());
    assert!(m.plan_after("nowhere", &sends).path.is_empty());
    assert!(ProcessModel::parse("<not xml").is_err());
}

#[test]
fn a_join_on_the_way_is_marked() {
    let m = model(
        r#"<bpmn:parallelGateway id="fork"/>
           <bpmn:sequenceFlow id="a" sourceRef="fork" targetRef="send"/>
           <bpmn:sequenceFlow id="b" sourceRef="fork" targetRef="other"/>
           <bpmn:serviceTask id="send" camunda:type="external" camunda:topic="send-proposal"/>
           <bpmn:userTask id="other"/>
           <bpmn:sequenceFlow id="a1" sourceRef="send" targetRef="join"/>
           <bpmn:sequenceFlow id="b1" sourceRef="other" targetRef="join"/>
           <bpmn:parallelGateway id="join"/>
           <bpmn:sequenceFlow id="c" sourceRef="join" targetRef="w"/>
           <bpmn:intermediateCatchEvent id="w"><bpmn:messageEventDefinition messageRef="sent"/></bpmn:intermediateCatchEvent>"#,
    );
    let plan = m.plan_after("send", &sends);
    assert!(plan.joins && plan.path.contains("join"));
    assert!(!m.plan_after("other", &sends).joins || m.plan_after("other", &sends).waits.len() == 1);
}
