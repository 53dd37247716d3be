//! Resends of communications whose delivery ended: an order confirmation that went out and one
//! that failed for good are resent from the inputs herald keeps sealed (`resend_input`) once
//! the delivery job erased them, to the same recipient or another; no plaintext of the address
//! is kept; an expired input is swept and the resend refused; `delivery.resend_window = "0s"`
//! keeps nothing; an engine user is resolved again from the engine.

use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

/// The records but fallout alerts (a failure's alerts to the operations group, whose members
/// other tests of the shared engine set, are made in the background).
async fn records(db: &TestDb) -> i64 {
    db.scalar_i64(
        "SELECT count(*) FROM communication_record WHERE communication_type <> 'FALLOUT_ALERT'",
    )
    .await
}

/// The order confirmation command, answered 201; the new communication's id.
async fn confirm(api: &Api, order: &str, recipient: Value) -> String {
    let mut body = json!({"orderNumber": format!("N-{order}")});
    body.as_object_mut()
        .unwrap()
        .extend(recipient.as_object().unwrap().clone());
    let (status, made) = api
        .post(
            &format!("/v1/orders/{order}/communications/confirmation"),
            body,
        )
        .await;
    assert_eq!(status, 201, "{made}");
    made["communicationId"].as_str().unwrap().to_string()
}

/// Waits until communication `id` has `status`; its detail.
async fn settled(api: &Api, id: &str, status: &str) -> Value {
    wait_for(
        &format!("{id} to be {status}"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            let path = format!("/v1/communications/{id}");
            async move {
                let (_, detail) = api.get(&path).await;
                (detail["status"] == status).then_some(detail)
            }
        },
    )
    .await
}

/// The mail of communication `id` the sink received.
async fn mail_of(sink: &smtp_sink::SmtpSink, id: &str) -> smtp_sink::ReceivedMail {
    wait_for(
        &format!("the mail of {id}"),
        Duration::from_secs(30),
        || {
            let mails = sink.received();
            let id = id.to_string();
            async move {
                mails
                    .into_iter()
                    .find(|m| m.header("Message-ID").is_some_and(|h| h.contains(&id)))
            }
        },
    )
    .await
}

/// A mail's text and HTML parts, without the MIME boundaries (fresh in every message).
fn content(mail: &smtp_sink::ReceivedMail) -> String {
    let text = mail.body_text();
    text.lines()
        .filter(|line| !line.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn resend(api: &Api, id: &str, body: Value) -> (u16, Value) {
    api.post(&format!("/v1/communications/{id}/resend"), body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_and_a_failed_confirmation_are_resent_from_their_sealed_inputs() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-kept", "Kim Kept", "kim@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    // The address refuses the first mail for good (550), then takes mail again.
    sink.script_recipient("gone@customer.example", &[550]);
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;

    let sent = confirm(&api, "O-K1", json!({"recipientContactId": "c-kept"})).await;
    let failed = confirm(
        &api,
        "O-K2",
        json!({"recipientEmail": "gone@customer.example"}),
    )
    .await;
    settled(&api, &sent, "SENT").await;
    let detail = settled(&api, &failed, "FAILED_FINAL").await;
    assert_eq!(detail["failureCode"], "INVALID_RECIPIENT", "{detail}");
    let first = mail_of(&sink, &sent).await;

    // The jobs erased payload and address; the kept inputs hold them sealed, not in plaintext.
    let ours = format!("('{sent}', '{failed}')");
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM delivery_job WHERE communication_id IN {ours}
               AND (render_payload IS NOT NULL OR recipient_address IS NOT NULL)"
        ))
        .await,
        0
    );
    let kept: Vec<(uuid::Uuid, String, Vec<u8>, bool)> = sqlx::query_as(&format!(
        "SELECT communication_id, key_id, ciphertext, kept_until > now() + interval '29 days'
         FROM resend_input WHERE communication_id IN {ours}"
    ))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for (id, key_id, ciphertext, for_the_window) in &kept {
        assert_eq!(key_id, "t1");
        assert!(for_the_window, "{id}: kept for the default 30 days");
        for plain in [
            "gone@customer.example",
            "kim@customer.example",
            "N-O-K1",
            "N-O-K2",
        ] {
            assert!(
                !ciphertext
                    .windows(plain.len())
                    .any(|w| w == plain.as_bytes()),
                "{id}: {plain} in the ciphertext"
            );
        }
    }

    // The sent one, to the same contact: a new record linked both ways, the same mail again.
    let (status, again) = resend(&api, &sent, json!({"reason": "never arrived"})).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["communicationType"], "ORDER_CONFIRMATION");
    let again = again["communicationId"].as_str().unwrap().to_string();
    assert_ne!(again, sent);
    let second = mail_of(&sink, &again).await;
    assert_eq!(second.rcpt_to, ["kim@customer.example"]);
    assert_eq!(second.header("Subject"), first.header("Subject"));
    assert_eq!(
        second.header("Subject").as_deref(),
        Some("Your order N-O-K1 is confirmed")
    );
    assert_eq!(content(&second), content(&first));
    assert!(content(&first).contains("Dear Kim Kept,"));
    let view = settled(&api, &again, "SENT").await;
    assert_eq!(view["resendOf"], sent.as_str());
    assert_eq!(view["recipientRef"], "c-kept");
    assert_eq!(view["decisions"][0]["reasonCode"], "RESEND");

    // The failed one, to the same (explicit) address, opened from the sealed inputs.
    let (status, retried) = resend(&api, &failed, json!({})).await;
    assert_eq!(status, 201, "{retried}");
    let retried = retried["communicationId"].as_str().unwrap().to_string();
    let to_gone = mail_of(&sink, &retried).await;
    assert_eq!(to_gone.rcpt_to, ["gone@customer.example"]);
    assert_eq!(
        to_gone.header("Subject").as_deref(),
        Some("Your order N-O-K2 is confirmed")
    );
    assert!(
        to_gone.body_text().contains("Dear customer,"),
        "{}",
        to_gone.body_text()
    );
    let view = settled(&api, &retried, "SENT").await;
    assert_eq!(view["resendOf"], failed.as_str());
    let (_, original) = api.get(&format!("/v1/communications/{failed}")).await;
    assert_eq!(original["resends"], json!([retried]));

    // The sent one once more, to another address.
    let (status, other) = resend(
        &api,
        &sent,
        json!({"recipientEmail": "other@customer.example"}),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    let other = other["communicationId"].as_str().unwrap().to_string();
    let to_other = mail_of(&sink, &other).await;
    assert_eq!(to_other.rcpt_to, ["other@customer.example"]);
    assert_eq!(content(&to_other), content(&first));
    let (_, original) = api.get(&format!("/v1/communications/{sent}")).await;
    assert_eq!(original["resends"], json!([again, other]));
    let text = original.to_string();
    assert!(!text.contains("kim@customer.example"), "{text}");

    // Once its window has passed, the failed one's inputs are swept: its resend is refused.
    sqlx::query(
        "UPDATE resend_input SET kept_until = now() - interval '1 second'
         WHERE communication_id = $1::uuid",
    )
    .bind(&failed)
    .execute(&db.pool)
    .await
    .unwrap();
    let ledger = herald::ledger::Ledger::new(db.pool.clone(), Duration::from_secs(60));
    assert_eq!(ledger.purge_expired_resend_inputs(100).await.unwrap(), 1);
    assert_eq!(
        db.scalar_i64(&format!(
            "SELECT count(*) FROM resend_input WHERE communication_id = '{failed}'"
        ))
        .await,
        0
    );
    let before = records(&db).await;
    let (status, refused) = resend(&api, &failed, json!({})).await;
    assert_eq!(status, 409, "{refused}");
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("delivery.resend_window"), "{detail}");
    assert!(!detail.contains("gone@"), "{detail}");
    assert_eq!(records(&db).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_window_of_zero_keeps_nothing_and_the_resend_is_refused() {
    let db = TestDb::create().await;
    db.add_contact("acme", "c-none", "Nia None", "nia@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(
        &db,
        &sink.url(),
        &[("HERALD_DELIVERY__RESEND_WINDOW", "0s")],
    )
    .await;
    let sent = confirm(&api, "O-Z1", json!({"recipientContactId": "c-none"})).await;
    settled(&api, &sent, "SENT").await;
    mail_of(&sink, &sent).await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM resend_input").await, 0);

    let before = records(&db).await;
    let (status, refused) = resend(&api, &sent, json!({})).await;
    assert_eq!(status, 409, "{refused}");
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("delivery.resend_window"), "{detail}");
    assert!(detail.contains("erased when it became SENT"), "{detail}");
    // Nothing is written: no record, no input, no mail.
    assert_eq!(records(&db).await, before);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM resend_input").await, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_reminder_to_an_engine_user_is_resent_to_the_user_the_engine_knows_now() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(&db, &sink.url(), &[]).await;
    // A fresh user per run (the engine is shared); the reminder went to the address the user
    // had then.
    let user = format!("rita{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    create_user(&user, "Rita", "Now", Some(&format!("{user}@corp.example"))).await;
    let mut reminder = order_confirmation(&format!("rem-{user}"));
    reminder.class = herald::ledger::Classification {
        communication_type: herald::ledger::CommunicationType::ApprovalReminder,
        category: herald::ledger::MessageCategory::Operational,
    };
    reminder.admitted.recipient.recipient_type = herald::ledger::RecipientType::User;
    reminder.admitted.recipient.recipient_ref = format!("user:{user}");
    reminder.admitted.recipient.address = Some("rita.then@corp.example".into());
    reminder.rendering = herald::ledger::Rendering {
        template_family: "approval-reminder-email".into(),
        template_version: "2026.11.0".into(),
        payload: json!({
            "recipientName": "Rita Then",
            "taskName": "Approve quote",
            "businessKey": "Q-U1-r1",
            "waitedFor": "2 hours",
            "assigneeName": "Rita Then",
            "reminderNo": 1
        }),
    };
    let ledger = herald::ledger::Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let original = ledger
        .request(&reminder)
        .await
        .unwrap()
        .communication_id
        .to_string();
    settled(&api, &original, "SENT").await;
    let first = mail_of(&sink, &original).await;
    assert_eq!(first.rcpt_to, ["rita.then@corp.example"]);

    let (status, again) = resend(&api, &original, json!({})).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["communicationType"], "APPROVAL_REMINDER");
    let again = again["communicationId"].as_str().unwrap().to_string();
    let second = mail_of(&sink, &again).await;
    assert_eq!(second.rcpt_to, [format!("{user}@corp.example")]);
    assert_eq!(second.header("Subject"), first.header("Subject"));
    let text = content(&second);
    assert!(text.contains("Hello Rita Now,"), "{text}");
    assert!(text.contains("waiting for 2 hours"), "{text}");
    let view = settled(&api, &again, "SENT").await;
    assert_eq!(view["resendOf"], original.as_str());
    assert_eq!(view["recipientRef"], format!("user:{user}"));
}
