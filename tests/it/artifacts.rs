//! Proposal documents on the real engine and database: signed portal links, attachments with
//! the hash of the bytes sent, superseded and foreign documents as business failures, and a
//! document that is not there yet making the task wait instead of failing.

use std::time::Duration;

use crate::support::*;
use herald::artifacts::{verify_link, Artifact, Registry};
use herald::camunda::TypedValue;
use sha2::Digest;

/// The proposal delivery's status and failure code (not those of the fallout alerts a failed
/// proposal raises, which may name the same quote).
async fn failure_code(db: &TestDb, quote_id: &str) -> (String, Option<String>) {
    sqlx::query_as(
        "SELECT status, failure_code FROM communication_record
         WHERE quote_id = $1 AND communication_type = 'QUOTE_PROPOSAL_DELIVERY'",
    )
    .bind(quote_id)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_link_is_signed_expires_and_is_never_published() {
    let ProposalScene {
        camunda,
        db,
        sink,
        lane,
        herald,
    } = ProposalScene::start("Q-L1", &[]).await;
    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-L1",
        ("recipientEmail", "buyer@customer.example"),
    )
    .await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    let mail = &sink.received()[0];
    let text = mail.body_text();
    let link = text
        .lines()
        .find(|l| l.starts_with("https://portal.herald.local/documents/acme/doc-Q-L1?expires="))
        .unwrap_or_else(|| panic!("no portal link in {text}"));
    let expires: i64 = link
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let signature = link.split("signature=").nth(1).unwrap();
    let now = chrono::Utc::now();
    assert!(verify_link(
        TEST_LINK_SECRET.as_bytes(),
        "acme",
        "doc-Q-L1",
        expires,
        signature,
        now
    ));
    assert!(!verify_link(
        TEST_LINK_SECRET.as_bytes(),
        "acme",
        "doc-Q-L2",
        expires,
        signature,
        now
    ));
    assert!(expires > now.timestamp() && expires <= now.timestamp() + 3600 * 24 * 14 + 60);

    // The signed URL lives only in the message: not in events, not in the log, not in the
    // delivery job once the communication is sent.
    let events: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM communication_outbox")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(events.iter().all(|e| !e.to_string().contains("signature=")));
    assert!(!herald.log_text().contains("signature="));
    let payload_left = db
        .scalar_i64("SELECT count(*) FROM delivery_job WHERE render_payload IS NOT NULL")
        .await;
    assert_eq!(
        payload_left, 0,
        "render data is erased once the communication is final"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_goes_out_with_the_hash_of_its_bytes_recorded() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let file = db.add_proposal_document("acme", "Q-A1").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    let mut vars = proposal_vars(&lane, "Q-A1", ("recipientEmail", "buyer@customer.example"));
    vars.insert("deliveryMode".into(), TypedValue::string("ATTACHMENT"));
    let instance = camunda
        .start_process(
            "quote-proposal",
            &format!("Q-A1-r4-{}", &lane[5..13]),
            &vars,
        )
        .await
        .unwrap();
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    let mail = &sink.received()[0];
    assert!(
        mail.data
            .contains("Content-Disposition: attachment; filename=\"proposal-Q-A1-r4.pdf\""),
        "{}",
        mail.data
    );
    assert!(mail
        .body_text()
        .contains("It is attached to this email (proposal-Q-A1-r4.pdf)"));
    let expected = hex::encode(sha2::Sha256::digest(std::fs::read(&file).unwrap()));
    let recorded: Option<String> = sqlx::query_scalar(
        "SELECT sent_bytes_hash FROM communication_artifact_link WHERE artifact_id = 'doc-Q-A1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(recorded.as_deref(), Some(expected.as_str()));
}

/// The external task of `instance_id` once the worker reported a failure whose message fits.
async fn failure_report(
    camunda: &herald::camunda::CamundaClient,
    instance_id: &str,
    fits: impl Fn(&str) -> bool,
) -> serde_json::Value {
    let path = format!("/external-task?processInstanceId={instance_id}");
    wait_for("a failure report", Duration::from_secs(30), || {
        let camunda = camunda.clone();
        let path = path.clone();
        let task = async move { camunda.get_json(&path).await.unwrap() };
        let fits = &fits;
        async move {
            task.await
                .as_array()
                .and_then(|a| a.first().cloned())
                .filter(|t| t["errorMessage"].as_str().is_some_and(fits))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_documents_fail_the_proposal_for_good_and_foreign_ones_look_missing() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    // Q-S1: its document was superseded by a newer one of the same revision.
    db.add_proposal_document("acme", "Q-S1").await;
    Registry::new(db.pool.clone())
        .register(&Artifact {
            tenant_id: "acme".into(),
            artifact_id: "doc-Q-S1-v2".into(),
            subject_type: "QUOTE_REVISION".into(),
            subject_id: "Q-S1/4".into(),
            artifact_type: "PROPOSAL_DOCUMENT".into(),
            status: "AVAILABLE".into(),
            content_hash: None,
            storage_location: "file:///nonexistent".into(),
            size_bytes: Some(1),
            media_type: "application/pdf".into(),
            file_name: "v2.pdf".into(),
        })
        .await
        .unwrap();
    // Q-F1: the document id is another tenant's.
    db.add_proposal_document("globex", "Q-F1").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    for (quote, code) in [("Q-S1", "ARTIFACT_SUPERSEDED")] {
        let instance = camunda
            .start_process(
                "quote-proposal",
                &format!("{quote}-r4-{}", &lane[5..13]),
                &proposal_vars(&lane, quote, ("recipientEmail", "buyer@customer.example")),
            )
            .await
            .unwrap();
        wait_for_user_task(&camunda, &instance.id, "handle_failed_delivery").await;
        assert_eq!(
            failure_code(&db, quote).await,
            ("FAILED_FINAL".into(), Some(code.into()))
        );
    }
    // Another tenant's document is one this tenant does not have: the task waits for it, as
    // for any document not yet available, and nothing tells that it exists elsewhere.
    let instance = camunda
        .start_process(
            "quote-proposal",
            &format!("Q-F1-r4-{}", &lane[5..13]),
            &proposal_vars(&lane, "Q-F1", ("recipientEmail", "buyer@customer.example")),
        )
        .await
        .unwrap();
    let task = failure_report(&camunda, &instance.id, |_| true).await;
    let message = task["errorMessage"].as_str().unwrap();
    assert!(message.contains("not available yet"), "{task}");
    assert!(
        !message.contains("tenant") && !message.contains("globex"),
        "{task}"
    );
    assert!(task["retries"].as_i64().unwrap() > 0, "{task}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record WHERE quote_id = 'Q-F1'")
            .await,
        0
    );
    assert!(sink.received_except_alerts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_not_yet_available_makes_the_task_wait_then_it_goes_out() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-W1",
        ("recipientEmail", "buyer@customer.example"),
    )
    .await;
    // The worker reports a failure with retries left and a retry timeout: no incident.
    let task = failure_report(&camunda, &instance.id, |m| m.contains("not available yet")).await;
    assert!(task["retries"].as_i64().unwrap() > 0, "{task}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_record")
            .await,
        0
    );

    db.add_proposal_document("acme", "Q-W1").await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    assert_eq!(sink.received().len(), 1);
    let incidents = camunda
        .get_json(&format!("/incident?processInstanceId={}", instance.id))
        .await
        .unwrap();
    assert_eq!(incidents.as_array().unwrap().len(), 0);
}
