//! send-proposal end to end: the real engine, PostgreSQL, an SMTP server and herald's binary.

use std::time::{Duration, Instant};

use crate::support::*;
use herald::ledger::{CommunicationId, Ledger};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_process_ends_after_the_email_arrives() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-1001").await;
    db.add_contact(
        "acme",
        "contact-551",
        "Jane Doe",
        "jane.doe@customer.example",
    )
    .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let herald = start_herald(&db, &sink.url(), &lane, &[]).await;

    let business_key = format!("Q-1001-r4-{}", &lane[5..13]);
    let started = Instant::now();
    let instance = camunda
        .start_process(
            "quote-proposal",
            &business_key,
            &proposal_vars(&lane, "Q-1001", ("recipientContactId", "contact-551")),
        )
        .await
        .expect("start process");
    let mails = sink.wait_for(1, Duration::from_secs(60)).await;
    let to_email = started.elapsed();
    assert_eq!(
        mails.len(),
        1,
        "one email expected; herald log: {}",
        herald.log_text()
    );
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    let to_end = started.elapsed();
    eprintln!(
        "e2e figures: process start -> email {to_email:?}, process start -> process end {to_end:?}"
    );

    // The email: envelope, headers and content from the template.
    let mail = &mails[0];
    assert_eq!(mail.rcpt_to, vec!["jane.doe@customer.example".to_string()]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Your proposal Q-1001 (revision 4)")
    );
    let body = mail.body_text();
    assert!(body.contains("Dear Jane Doe,"), "{body}");
    assert!(body.contains("document doc-Q-1001"), "{body}");
    assert!(
        body.contains("<strong>Q-1001</strong>"),
        "the html part is there: {body}"
    );
    assert!(mail
        .header("X-Correlation-Id")
        .is_some_and(|v| !v.is_empty()));

    // The process holds only ids: communicationId, never a body or an address.
    let vars = history_variables(&camunda, &instance.id).await;
    let communication_id = vars["communicationId"]
        .as_str()
        .expect("communicationId is a String")
        .to_string();
    for (name, value) in &vars {
        assert!(
            !value.to_string().contains('@'),
            "variable {name} holds an address: {value}"
        );
        assert!(
            !name.to_lowercase().contains("body") && !name.to_lowercase().contains("subject"),
            "{name}"
        );
    }
    // The process's own variables (the task's input parameters are the task's, local to it).
    let own = camunda
        .get_json(&format!(
            "/history/variable-instance?processInstanceId={0}&activityInstanceIdIn={0}",
            instance.id
        ))
        .await
        .expect("variables");
    let mut names: Vec<&str> = own
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "artifactId",
            "communicationId",
            "heraldLane",
            "quoteId",
            "recipientContactId",
            "revisionNo",
            "tenantId"
        ]
    );
    assert!(mail
        .header("Message-ID")
        .unwrap()
        .contains(&communication_id));

    // The ledger: one record, SENT, with one accepted attempt carrying the provider's id.
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let record = ledger
        .get("acme", communication_id.parse::<CommunicationId>().unwrap())
        .await
        .unwrap()
        .expect("record exists");
    assert_eq!(record.status, "SENT");
    assert_eq!(record.business_key.as_deref(), Some(business_key.as_str()));
    assert_eq!(
        record.address_masked.as_deref(),
        Some("j***@customer.example")
    );
    assert_eq!(
        record.idempotency_key,
        format!("quote-proposal-delivery:{business_key}:doc-Q-1001:contact-551:v1")
    );
    assert_eq!(record.template_version, "2026.11.1");
    assert!(record
        .rendered_content_hash
        .as_ref()
        .is_some_and(|h| h.len() == 64));
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].status, "ACCEPTED");
    assert_eq!(record.attempts[0].response_code, Some(250));
    assert_eq!(
        record.attempts[0].provider_message_id.as_deref(),
        Some(mail.queue_id.as_str())
    );

    // The outbox has the lifecycle's events, none with an address.
    let events: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT event_type, payload FROM communication_outbox ORDER BY created_at")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "CommunicationRequested",
            "CommunicationQueued",
            "CommunicationSent"
        ]
    );
    for (_, payload) in &events {
        assert!(
            !payload.to_string().contains('@'),
            "an event carries an address: {payload}"
        );
    }
    let correlated = db
        .scalar_i64("SELECT count(*) FROM camunda_correlation WHERE status = 'CORRELATED' AND message_name = 'CommunicationSent'")
        .await;
    assert_eq!(correlated, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_stops_gracefully_on_sigterm() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let mut herald = Herald::start(&db, &sink.url(), &new_lane(), &[]);
    wait_for(
        "herald to start its worker",
        Duration::from_secs(30),
        || async { herald.log_text().contains("worker started").then_some(()) },
    )
    .await;
    let status = herald.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log: {}",
        herald.log_text()
    );
    let log = herald.log_text();
    assert!(
        log.contains("worker stopped") && log.contains("delivery loop stopped"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_speaking_austrian_german_gets_the_german_version() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-1002").await;
    db.add_contact("acme", "contact-at", "Frau Huber", "huber@kunde.example")
        .await;
    sqlx::query("UPDATE contact SET locale = 'de-AT' WHERE contact_id = 'contact-at'")
        .execute(&db.pool)
        .await
        .unwrap();
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    let instance = start_proposal(
        &camunda,
        &lane,
        "Q-1002",
        ("recipientContactId", "contact-at"),
    )
    .await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    let mails = sink.received();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Ihr Angebot Q-1002 (Revision 4)")
    );
    assert!(mails[0].body_text().contains("Guten Tag Frau Huber"));
    let version: String = sqlx::query_scalar("SELECT template_version FROM communication_record")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(version, "2026.11.1-de", "de-AT falls back to de");
}
