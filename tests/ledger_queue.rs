//! The delivery queue on a real PostgreSQL: leases that expire, fencing of a sender that lost
//! its lease, and a job that cannot start not blocking the others.

mod support;

use std::time::Duration;

use herald::ledger::{AttemptResult, Ledger};
use support::*;

fn sent() -> AttemptResult {
    AttemptResult::Sent {
        provider_message_id: Some("p-1".into()),
        response_code: Some(250),
        summary: "ok".into(),
        content_hash: "h".into(),
        attachment_hashes: Vec::new(),
        retained: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_lost_its_lease_cannot_record_and_the_next_one_takes_over() {
    let db = TestDb::create().await;
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let id = ledger
        .request(&order_confirmation("o1"))
        .await
        .unwrap()
        .communication_id;

    let first = ledger
        .claim_jobs("sender-a", 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        ledger
            .claim_jobs("sender-b", 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "a leased job is not claimed twice"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = ledger
        .claim_jobs("sender-b", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        second.len(),
        1,
        "the expired lease lets another sender take the job"
    );
    assert_eq!(second[0].attempt_no, 2);

    assert!(
        !ledger
            .finish_attempt(&first[0], "sender-a", sent())
            .await
            .unwrap(),
        "fenced"
    );
    assert!(ledger
        .finish_attempt(&second[0], "sender-b", sent())
        .await
        .unwrap());
    let view = ledger.get(id).await.unwrap().unwrap();
    assert_eq!(view.status, "SENT");
    let statuses: Vec<&str> = view.attempts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(statuses, vec!["ABANDONED", "ACCEPTED"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_start_leaves_the_queue_without_blocking_the_others() {
    let db = TestDb::create().await;
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let bad = ledger
        .request(&order_confirmation("bad"))
        .await
        .unwrap()
        .communication_id;
    ledger.request(&order_confirmation("good")).await.unwrap();
    // A record that says SENT while its job is still queued (a hand edit, a bug elsewhere).
    sqlx::query("UPDATE communication_record SET status = 'SENT' WHERE communication_id = $1")
        .bind(bad.0)
        .execute(&db.pool)
        .await
        .unwrap();
    let claimed = ledger
        .claim_jobs("sender", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].correlation_id, "good");
    let done: bool =
        sqlx::query_scalar("SELECT done FROM delivery_job WHERE communication_id = $1")
            .bind(bad.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(done, "the bad job left the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_notification_read_before_its_attempt_was_recorded_ends_opened() {
    use herald::ledger::{Channel, RecipientType, ResolvedRecipient};
    let db = TestDb::create().await;
    let ledger = Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let mut request = order_confirmation("inbox");
    request.recipient = ResolvedRecipient {
        recipient_type: RecipientType::User,
        recipient_ref: "user:ines".into(),
        channel: Channel::InApp,
        address: Some("user:ines".into()),
        locale: None,
        timezone: None,
        quiet_hours: None,
    };
    let id = ledger.request(&request).await.unwrap().communication_id;
    let job = ledger
        .claim_jobs("sender", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    // The adapter stored the notification, and the recipient read it at once.
    sqlx::query(
        "INSERT INTO inbox_notification (notification_id, tenant_id, recipient_ref, communication_type, title, body_text, body_html)
         VALUES ($1, 'acme', 'user:ines', 'ORDER_CONFIRMATION', 't', 'b', 'h')",
    )
    .bind(id.0)
    .execute(&db.pool)
    .await
    .unwrap();
    let read = ledger.mark_read("acme", id.0).await.unwrap().unwrap();
    assert!(read.read_at.is_some());
    assert_eq!(ledger.get(id).await.unwrap().unwrap().status, "SENDING");
    assert!(ledger.finish_attempt(&job, "sender", sent()).await.unwrap());
    assert_eq!(
        ledger.get(id).await.unwrap().unwrap().status,
        "OPENED",
        "the read is not lost"
    );
}
