//! The models designers draw, on the real engine: a proposal to each contact of a collection in
//! a parallel and a sequential multi-instance subprocess, each instance waiting for its own
//! outcome (also when the outcome comes before the wait); two sends in parallel branches (a
//! service task and a send task); a send in a called process; a wait with a deadline that
//! passes before herald's message, which is then recorded as nobody waiting.

use std::path::Path;
use std::time::Duration;

use herald::camunda::{CamundaClient, TypedValue, Variables};
use serde_json::Value;

use crate::support::*;

const TENANT: &str = "acme";

async fn deploy_patterns(camunda: &CamundaClient) {
    deploy(camunda).await;
    camunda
        .deploy_dir(
            "herald-test-patterns",
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/bpmn/patterns"),
        )
        .await
        .expect("deploy the pattern models");
}

/// The quote's inputs, with `contacts` as a JSON list for the multi-instance models.
fn inputs(lane: &str, quote_id: &str, contacts: &[&str]) -> Variables {
    let mut vars = proposal_vars(lane, quote_id, ("recipient", contacts[0]));
    let list = serde_json::to_string(contacts).unwrap();
    vars.insert(
        "contacts".into(),
        serde_json::from_value::<TypedValue>(serde_json::json!({"type": "Json", "value": list}))
            .unwrap(),
    );
    vars
}

struct Scene {
    camunda: CamundaClient,
    db: TestDb,
    sink: smtp_sink::SmtpSink,
    lane: String,
}

async fn scene(quote_id: &str, contacts: &[&str]) -> Scene {
    let camunda = camunda();
    deploy_patterns(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document(TENANT, quote_id).await;
    for contact in contacts {
        db.add_contact(
            TENANT,
            contact,
            contact,
            &format!("{contact}@customer.example"),
        )
        .await;
    }
    let sink = smtp_sink::SmtpSink::start().await.expect("an SMTP sink");
    Scene {
        camunda,
        db,
        sink,
        lane: new_lane(),
    }
}

impl Scene {
    async fn start(&self, key: &str, quote_id: &str, vars: &Variables) -> String {
        self.camunda
            .start_process(key, &format!("{quote_id}-r4-{}", &self.lane[5..13]), vars)
            .await
            .expect("the process starts")
            .id
    }

    async fn list(&self, path: &str) -> Vec<Value> {
        self.camunda
            .get_json(path)
            .await
            .expect("the engine answers")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The communication herald recorded for a contact: (id, status).
    async fn communication_of(&self, contact: &str) -> Option<(String, String)> {
        sqlx::query_as(
            "SELECT communication_id::text, status FROM communication_record WHERE recipient_ref LIKE '%' || $1",
        )
        .bind(contact)
        .fetch_optional(&self.db.pool)
        .await
        .unwrap()
    }

    async fn correlations(&self) -> Vec<(String, i32)> {
        sqlx::query_as("SELECT status, tries FROM camunda_correlation ORDER BY created_at")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
    }
}

/// One instance of the `each_contact` subprocess, as the history shows it.
#[derive(Debug)]
struct Branch {
    contact: String,
    communication_id: String,
    caught: String,
}

/// What each instance of `each_contact` held and which message it caught.
async fn branches(scene: &Scene, process_instance_id: &str) -> Vec<Branch> {
    let vars = scene
        .list(&format!(
            "/history/variable-instance?processInstanceId={process_instance_id}&deserializeValues=false"
        ))
        .await;
    let caught = scene
        .list(&format!(
            "/history/activity-instance?processInstanceId={process_instance_id}"
        ))
        .await;
    let var = |field: &str, id: &str, name: &str| -> Option<String> {
        vars.iter()
            .find(|v| v[field] == id && v["name"] == name)
            .and_then(|v| v["value"].as_str())
            .map(str::to_string)
    };
    caught
        .iter()
        .filter(|a| a["activityId"] == "each_contact")
        .map(|instance| {
            let scope = instance["id"].as_str().unwrap();
            let inside = |activity: &str| {
                caught
                    .iter()
                    .filter(|a| {
                        a["parentActivityInstanceId"] == scope && a["activityId"] == activity
                    })
                    .map(|a| a["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            };
            let send = inside("send").pop().expect("the instance's send task");
            let mut caught = inside("sent").iter().map(|_| "sent").collect::<Vec<_>>();
            caught.extend(inside("failed").iter().map(|_| "failed"));
            Branch {
                // The task's input, and the subprocess instance's own communicationId.
                contact: var("activityInstanceId", &send, "recipientContactId")
                    .expect("the instance's contact"),
                communication_id: var(
                    "executionId",
                    instance["executionId"].as_str().unwrap(),
                    "communicationId",
                )
                .expect("the instance's communicationId"),
                caught: caught.join(","),
            }
        })
        .collect()
}

/// Every instance caught exactly the message of its own communication, and kept its id.
async fn assert_each_branch_got_its_own(scene: &Scene, pi: &str, contacts: &[&str]) {
    let branches = branches(scene, pi).await;
    assert_eq!(branches.len(), contacts.len(), "{branches:?}");
    for branch in &branches {
        let (id, status) = scene
            .communication_of(&branch.contact)
            .await
            .unwrap_or_else(|| panic!("a communication for {}", branch.contact));
        assert_eq!(branch.communication_id, id, "{branch:?}");
        let expected = if status == "SENT" { "sent" } else { "failed" };
        assert_eq!(branch.caught, expected, "{branch:?} ({status})");
    }
}

async fn run_each_contact(key: &str, quote_id: &str) -> (Scene, String) {
    let contacts = ["ada-each", "bob-each", "cyd-each"];
    let scene = scene(quote_id, &contacts).await;
    let _herald = start_herald(&scene.db, &scene.sink.url(), &scene.lane, &[]).await;
    // A fourth contact herald does not know: its communication fails, its branch alone hears it.
    let all = ["ada-each", "bob-each", "cyd-each", "unknown-each"];
    let pi = scene
        .start(key, quote_id, &inputs(&scene.lane, quote_id, &all))
        .await;
    wait_until_completed(&scene.camunda, &pi, Duration::from_secs(90)).await;
    assert_each_branch_got_its_own(&scene, &pi, &all).await;
    // To the customers (the failed proposal also raises a fallout alert to operations, whose
    // members depend on the engine's users).
    let mails: Vec<Vec<String>> = scene
        .sink
        .received()
        .iter()
        .map(|m| m.rcpt_to.clone())
        .filter(|to| to.iter().any(|a| a.ends_with("@customer.example")))
        .collect();
    assert_eq!(mails.len(), 3, "one email to each known contact: {mails:?}");
    let correlations = scene.correlations().await;
    assert_eq!(correlations.len(), 4);
    assert!(
        correlations.iter().all(|(s, _)| s == "CORRELATED"),
        "{correlations:?}"
    );
    (scene, pi)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_multi_instance_gives_each_branch_its_own_outcome() {
    run_each_contact("pattern-each-contact", "Q-7101").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_multi_instance_gives_each_instance_its_own_outcome() {
    run_each_contact("pattern-each-contact-in-turn", "Q-7102").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_before_the_wait_reaches_its_own_branch_once_it_waits() {
    let (scene, _) = run_each_contact("pattern-each-contact-after-pause", "Q-7103").await;
    // The branches paused 3 s after the send: their outcomes came first and were tried again.
    let early = scene.correlations().await;
    assert!(early.iter().any(|(_, tries)| *tries >= 2), "{early:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sends_in_parallel_branches_each_get_their_own_message() {
    let scene = scene("Q-7104", &["buyer-both", "procurement-both"]).await;
    let _herald = start_herald(&scene.db, &scene.sink.url(), &scene.lane, &[]).await;
    let mut vars = inputs(&scene.lane, "Q-7104", &["buyer-both"]);
    vars.insert("buyerContactId".into(), string_var("buyer-both"));
    vars.insert(
        "procurementContactId".into(),
        string_var("procurement-both"),
    );
    let pi = scene
        .start("pattern-proposal-and-copy", "Q-7104", &vars)
        .await;
    wait_until_completed(&scene.camunda, &pi, Duration::from_secs(90)).await;
    let passed: Vec<String> = scene
        .list(&format!(
            "/history/activity-instance?processInstanceId={pi}"
        ))
        .await
        .iter()
        .filter_map(|a| a["activityId"].as_str().map(str::to_string))
        .collect();
    for step in [
        "send_proposal",
        "proposal_sent",
        "send_copy",
        "copy_sent",
        "end",
    ] {
        assert!(passed.iter().any(|p| p == step), "{step} in {passed:?}");
    }
    for contact in ["buyer-both", "procurement-both"] {
        let (_, status) = scene.communication_of(contact).await.unwrap();
        assert_eq!(status, "SENT");
    }
    assert_eq!(scene.sink.received().len(), 2);
    let correlations = scene.correlations().await;
    assert_eq!(correlations.len(), 2);
    assert!(
        correlations.iter().all(|(s, _)| s == "CORRELATED"),
        "{correlations:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_in_a_called_process_keys_on_the_business_key_passed_down() {
    let scene = scene("Q-7105", &[]).await;
    let _herald = start_herald(&scene.db, &scene.sink.url(), &scene.lane, &[]).await;
    let vars = proposal_vars(
        &scene.lane,
        "Q-7105",
        ("recipientEmail", "called@customer.example"),
    );
    let pi = scene
        .start("pattern-proposal-via-call", "Q-7105", &vars)
        .await;
    wait_until_completed(&scene.camunda, &pi, Duration::from_secs(90)).await;
    let called = scene
        .list(&format!(
            "/history/process-instance?superProcessInstanceId={pi}"
        ))
        .await;
    assert_eq!(called.len(), 1);
    let business_key = format!("Q-7105-r4-{}", &scene.lane[5..13]);
    assert_eq!(called[0]["businessKey"], business_key.as_str());
    assert_eq!(called[0]["state"], "COMPLETED");
    let (key, process): (String, String) =
        sqlx::query_as("SELECT idempotency_key, process_instance_id FROM communication_record")
            .fetch_one(&scene.db.pool)
            .await
            .unwrap();
    assert!(
        key.starts_with(&format!("quote-proposal-delivery:{business_key}:")),
        "{key}"
    );
    assert_eq!(
        process,
        called[0]["id"].as_str().unwrap(),
        "the called instance waits"
    );
    assert_eq!(scene.sink.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_after_the_waits_deadline_is_recorded_as_nobody_waiting() {
    let scene = scene("Q-7106", &["late-deadline"]).await;
    // Workers and relay only: the email waits in the queue while the deadline passes.
    let settings = test_settings(&scene.db, &scene.sink.url(), &scene.lane, &[]);
    let no_delivery = herald::runtime::Components {
        delivery: false,
        api: false,
        ..herald::runtime::Components::all()
    };
    let first = spawn_herald(settings, no_delivery).await;
    let mut vars = inputs(&scene.lane, "Q-7106", &["late-deadline"]);
    vars.insert("recipient".into(), string_var("late-deadline"));
    let pi = scene
        .start("pattern-proposal-with-deadline", "Q-7106", &vars)
        .await;
    wait_for_user_task(&scene.camunda, &pi, "follow_up").await;
    first.stop().await;

    let _herald = start_herald(&scene.db, &scene.sink.url(), &scene.lane, &[]).await;
    let (status, tries, reason) = wait_for(
        "the late outcome to be recorded",
        Duration::from_secs(60),
        || async {
            sqlx::query_as::<_, (String, i32, Option<String>)>(
                "SELECT status, tries, last_error FROM camunda_correlation",
            )
            .fetch_optional(&scene.db.pool)
            .await
            .unwrap()
            .filter(|(status, _, _)| status != "PENDING")
        },
    )
    .await;
    assert_eq!(status, "UNWAITED");
    assert_eq!(tries, 1, "not retried");
    assert!(reason
        .unwrap_or_default()
        .contains("nobody waits for 'CommunicationSent'"));
    let (_, sent) = scene.communication_of("late-deadline").await.unwrap();
    assert_eq!(
        sent, "SENT",
        "a late outcome is no failure of the communication"
    );
    // The process is untouched: still with the sales rep.
    let active = scene
        .list(&format!(
            "/task?processInstanceId={pi}&taskDefinitionKey=follow_up"
        ))
        .await;
    assert_eq!(active.len(), 1);
}
