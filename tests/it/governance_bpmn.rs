//! `herald check` on the BPMN wiring of herald's outcome: the shipped proposal model, broken on
//! purpose in each way a model can lose or invent an outcome, is refused with a finding that
//! names the file and the element.

use crate::templates_governance::{herald_check, workspace};

/// `herald check` on a copy of the shipped files whose `quote-proposal.bpmn` went through
/// `edit` (which must change it): (passed, what it printed).
fn check_broken_proposal(edit: impl Fn(&str) -> String) -> (bool, String) {
    let (_dir, topics, templates, bpmn) = workspace();
    let path = bpmn.join("quote-proposal.bpmn");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = edit(&text);
    assert_ne!(broken, text, "the edit changed nothing");
    std::fs::write(&path, broken).unwrap();
    herald_check(&topics, &templates, &bpmn)
}

/// `text` with each `(from, to)` replaced, each `from` present exactly once.
fn replaced(text: &str, edits: &[(&str, &str)]) -> String {
    edits.iter().fold(text.to_string(), |text, (from, to)| {
        assert_eq!(text.matches(from).count(), 1, "{from}");
        text.replace(from, to)
    })
}

fn no_task_before(stderr: &str, id: &str, message: &str) -> bool {
    stderr.contains(&format!(
        "quote-proposal.bpmn: {id}: waits for the message '{message}', but no task of a topic that waits for its outcome"
    ))
}

#[test]
fn a_wait_before_the_herald_task_is_refused_naming_the_wait() {
    // start → await outcome → sent → send proposal → delivered: the task comes after the wait.
    let (ok, stderr) = check_broken_proposal(|text| {
        replaced(
            text,
            &[
                (
                    r#"id="flow_to_send" sourceRef="proposal_requested""#,
                    r#"id="flow_to_send" sourceRef="communication_sent""#,
                ),
                (
                    r#"id="flow_to_wait" sourceRef="send_proposal""#,
                    r#"id="flow_to_wait" sourceRef="proposal_requested""#,
                ),
                (
                    r#"id="flow_to_delivered" sourceRef="communication_sent""#,
                    r#"id="flow_to_delivered" sourceRef="send_proposal""#,
                ),
            ],
        )
    });
    assert!(!ok, "{stderr}");
    assert!(
        no_task_before(&stderr, "communication_sent", "CommunicationSent"),
        "{stderr}"
    );
    assert!(
        no_task_before(&stderr, "communication_failed", "CommunicationFailed"),
        "{stderr}"
    );
}

#[test]
fn a_wait_behind_a_fire_and_observe_topic_is_refused() {
    // approval-reminder never reports an outcome; its task is otherwise well wired.
    let (ok, stderr) = check_broken_proposal(|text| {
        replaced(
            text,
            &[(
                r#"camunda:topic="send-proposal" camunda:taskPriority="50">"#,
                r#"camunda:topic="approval-reminder" camunda:taskPriority="50">
      <bpmn:extensionElements><camunda:properties><camunda:property name="taskDefinitionKey" value="handle_failed_delivery" /></camunda:properties></bpmn:extensionElements>"#,
            )],
        )
    });
    assert!(!ok, "{stderr}");
    assert!(
        no_task_before(&stderr, "communication_sent", "CommunicationSent"),
        "{stderr}"
    );
    assert!(
        no_task_before(&stderr, "communication_failed", "CommunicationFailed"),
        "{stderr}"
    );
}

#[test]
fn a_boundary_wait_on_an_activity_before_the_herald_task_is_refused() {
    // A review before the send, with a boundary event waiting for the failure: nothing herald
    // sends can have failed yet.
    let (ok, stderr) = check_broken_proposal(|text| {
        replaced(
            text,
            &[
                (
                    r#"<bpmn:serviceTask id="send_proposal""#,
                    r#"<bpmn:userTask id="review_proposal" name="Review proposal" />
    <bpmn:boundaryEvent id="review_failed" attachedToRef="review_proposal">
      <bpmn:outgoing>flow_review_failed</bpmn:outgoing>
      <bpmn:messageEventDefinition id="med_review_failed" messageRef="Message_CommunicationFailed" />
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="review_abandoned" />
    <bpmn:sequenceFlow id="flow_review_failed" sourceRef="review_failed" targetRef="review_abandoned" />
    <bpmn:sequenceFlow id="flow_reviewed" sourceRef="review_proposal" targetRef="send_proposal" />
    <bpmn:serviceTask id="send_proposal""#,
                ),
                (
                    r#"sourceRef="proposal_requested" targetRef="send_proposal""#,
                    r#"sourceRef="proposal_requested" targetRef="review_proposal""#,
                ),
            ],
        )
    });
    assert!(!ok, "{stderr}");
    assert!(
        no_task_before(&stderr, "review_failed", "CommunicationFailed"),
        "{stderr}"
    );
    // The waits after the send still pass.
    assert!(
        !stderr.contains("quote-proposal.bpmn: communication_"),
        "{stderr}"
    );
}

#[test]
fn a_wait_inside_a_subprocess_before_the_herald_task_is_refused() {
    // A subprocess before the send that waits for CommunicationSent inside.
    let (ok, stderr) = check_broken_proposal(|text| {
        replaced(
            text,
            &[
                (
                    r#"<bpmn:serviceTask id="send_proposal""#,
                    r#"<bpmn:subProcess id="confirm_first" name="Confirm first">
      <bpmn:startEvent id="confirm_start" />
      <bpmn:intermediateCatchEvent id="confirm_sent">
        <bpmn:messageEventDefinition id="med_confirm_sent" messageRef="Message_CommunicationSent" />
      </bpmn:intermediateCatchEvent>
      <bpmn:endEvent id="confirm_end" />
      <bpmn:sequenceFlow id="flow_confirm_1" sourceRef="confirm_start" targetRef="confirm_sent" />
      <bpmn:sequenceFlow id="flow_confirm_2" sourceRef="confirm_sent" targetRef="confirm_end" />
    </bpmn:subProcess>
    <bpmn:sequenceFlow id="flow_confirmed" sourceRef="confirm_first" targetRef="send_proposal" />
    <bpmn:serviceTask id="send_proposal""#,
                ),
                (
                    r#"sourceRef="proposal_requested" targetRef="send_proposal""#,
                    r#"sourceRef="proposal_requested" targetRef="confirm_first""#,
                ),
            ],
        )
    });
    assert!(!ok, "{stderr}");
    assert!(
        no_task_before(&stderr, "confirm_sent", "CommunicationSent"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("quote-proposal.bpmn: communication_"),
        "{stderr}"
    );
}

#[test]
fn a_declared_message_that_nothing_catches_is_refused() {
    // The failure path waits for a timer instead: CommunicationFailed is declared, never caught.
    let (ok, stderr) = check_broken_proposal(|text| {
        replaced(
            text,
            &[(
                r#"<bpmn:messageEventDefinition id="med_failed" messageRef="Message_CommunicationFailed" />"#,
                r#"<bpmn:timerEventDefinition id="timer_failed"><bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition>"#,
            )],
        )
    });
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("quote-proposal.bpmn: Message_CommunicationFailed: the message 'CommunicationFailed' is declared but nothing catches or throws it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("quote-proposal.bpmn: send_proposal: topic 'send-proposal' reports its outcome with the message 'CommunicationFailed', which process 'quote-proposal' never catches"),
        "{stderr}"
    );
}

#[test]
fn a_message_ref_to_an_undeclared_message_is_refused() {
    let (ok, stderr) = check_broken_proposal(|text| {
        replaced(
            text,
            &[(
                r#"messageRef="Message_CommunicationSent""#,
                r#"messageRef="Message_Sent""#,
            )],
        )
    });
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("quote-proposal.bpmn: communication_sent: messageRef 'Message_Sent' names no bpmn:message declared in this file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("quote-proposal.bpmn: Message_CommunicationSent: the message 'CommunicationSent' is declared but nothing catches or throws it"),
        "{stderr}"
    );
}
