//! A fleet of senders on one queue, against real PostgreSQL and a real SMTP server: two herald
//! processes share 1,000 communications and send each exactly once; a sender killed mid-batch
//! (SIGKILL, in the middle of SMTP sessions) loses nothing, and the one that takes over sends
//! what it left.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::*;

/// Recipients received, with the Message-IDs each got.
fn by_recipient(sink: &smtp_sink::SmtpSink) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for mail in sink.received() {
        seen.entry(mail.rcpt_to.join(","))
            .or_default()
            .push(mail.header("Message-ID").unwrap_or_default());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_share_a_queue_of_1000_and_send_each_exactly_once() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    queue_many(&db, "fleet", 1000, 4, order_confirmation).await;
    let started = Instant::now();
    let _a = sender(&db, &sink.url(), "sender-a", &[]);
    let _b = sender(&db, &sink.url(), "sender-b", &[]);
    let sent = "SELECT count(*) FROM communication_record WHERE status = 'SENT'";
    wait_for("1,000 SENT", Duration::from_secs(180), || async {
        (db.scalar_i64(sent).await == 1000).then_some(())
    })
    .await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let seen = by_recipient(&sink);
    let received = sink.received().len();
    println!(
        "fleet: sent {received}, expected 1000, duplicates {}, lost {} ({:.0} messages/s with two senders)",
        received.saturating_sub(seen.len()),
        1000 - seen.len(),
        1000.0 / took.as_secs_f64()
    );
    assert_eq!(seen.len(), 1000, "every recipient got its message");
    assert_eq!(received, 1000, "and only one");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_delivery_attempt")
            .await,
        1000,
        "one attempt each"
    );
    assert!(
        sink.connections() <= 8,
        "SMTP connections are reused: {} for 1,000 messages (two senders, at most 4 each)",
        sink.connections()
    );
    assert_eq!(
        db.scalar_i64("SELECT count(DISTINCT claimed_by) FROM communication_delivery_attempt")
            .await,
        2,
        "both senders took part"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_mid_batch_loses_nothing() {
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    // A slow provider: every RCPT TO takes 100 ms, so a batch is still in flight when the
    // sender dies.
    sink.set_rcpt_delay(Duration::from_millis(100));
    queue_many(&db, "kill", 200, 4, order_confirmation).await;
    let lease = [
        ("HERALD_DELIVERY__LEASE_MS", "2000"),
        ("HERALD_DELIVERY__BATCH_SIZE", "50"),
        ("HERALD_DELIVERY__MAX_IN_FLIGHT", "8"),
    ];
    let mut doomed = sender(&db, &sink.url(), "sender-doomed", &lease);
    sink.wait_for(20, Duration::from_secs(60)).await;
    doomed.kill();
    let in_flight = db
        .scalar_i64(
            "SELECT count(*) FROM communication_delivery_attempt WHERE status = 'IN_PROGRESS'",
        )
        .await;
    assert!(in_flight > 0, "the sender died with a batch in flight");

    let _heir = sender(&db, &sink.url(), "sender-heir", &lease);
    let sent = "SELECT count(*) FROM communication_record WHERE status = 'SENT'";
    wait_for("200 SENT", Duration::from_secs(120), || async {
        (db.scalar_i64(sent).await == 200).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let seen = by_recipient(&sink);
    let received = sink.received().len();
    let duplicates: Vec<(&String, &Vec<String>)> =
        seen.iter().filter(|(_, ids)| ids.len() > 1).collect();
    println!(
        "kill mid-batch: sent {received}, expected 200, duplicates {}, lost {}, abandoned attempts {in_flight}",
        duplicates.len(),
        200 - seen.len()
    );
    assert_eq!(seen.len(), 200, "nothing lost");
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM (SELECT communication_id FROM communication_delivery_attempt
             WHERE status = 'ACCEPTED' GROUP BY communication_id HAVING count(*) = 1) once"
        )
        .await,
        200,
        "the ledger has one accepted attempt per communication"
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM communication_delivery_attempt WHERE status = 'IN_PROGRESS'"
        )
        .await,
        0
    );
    // A message the provider had accepted when the sender died (its outcome unknown to herald)
    // may go out again; it then carries the same Message-ID, so receivers can tell.
    for (recipient, ids) in &duplicates {
        let distinct: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 1, "{recipient}: {ids:?}");
    }
    assert!(
        duplicates.len() as i64 <= in_flight,
        "duplicates only where the outcome was unknown"
    );
}
