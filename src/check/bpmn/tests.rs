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

#[test]
fn a_send_in_a_multi_instance_subprocess_needs_its_own_communication_id() {
    let body = |declaration: &str| {
        format!(
            r#"<bpmn:subProcess id="each">{declaration}
                 <bpmn:multiInstanceLoopCharacteristics camunda:collection="${{S(contacts).elements()}}" camunda:elementVariable="contact" />
                 <bpmn:startEvent id="s" />{}{SEND}{}{AWAIT}
               </bpmn:subProcess>"#,
            flow("f0", "s", "send"),
            flow("f1", "send", "gw"),
        )
    };
    let problems = check(OUTCOMES, &body(""));
    assert!(
        problems.iter().any(|p| p.contains("send: topic 'send-proposal' runs inside the multi-instance subprocess 'each', which does not declare communicationId")),
        "{problems:?}"
    );
    let declared = r#"<bpmn:extensionElements><camunda:inputOutput><camunda:inputParameter name="communicationId" /></camunda:inputOutput></bpmn:extensionElements>"#;
    assert_eq!(check(OUTCOMES, &body(declared)), Vec::<String>::new());
}

#[test]
fn the_pattern_models_of_the_tests_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/bpmn/patterns");
    let topics = topics();
    assert_eq!(check_bpmn(&dir, &topics), Vec::<String>::new());
}
