//! Preferences, consent and suppression on the real engine and database: every refusal is a
//! recorded business status with its reason, never an incident; delays hold, never drop.

use std::time::Duration;

use crate::support::*;
use chrono::{Timelike, Utc};
use herald::camunda::{TypedValue, Variables};

async fn decisions(db: &TestDb, recipient_ref: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT d.outcome, d.reason_code FROM communication_decision d
         JOIN communication_record r USING (communication_id)
         WHERE r.recipient_ref = $1 ORDER BY d.decided_at, d.decision_id",
    )
    .bind(recipient_ref)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

async fn status_of(db: &TestDb, recipient_ref: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, failure_code FROM communication_record WHERE recipient_ref = $1")
        .bind(recipient_ref)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn no_incident(process_instance_id: &str) {
    let incidents = camunda()
        .get_json(&format!(
            "/incident?processInstanceId={process_instance_id}"
        ))
        .await
        .unwrap();
    assert_eq!(incidents.as_array().unwrap().len(), 0, "{incidents}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_does_not_stop_a_transactional_proposal() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-P1").await;
    db.add_contact("acme", "contact-7", "Olga Optout", "olga@customer.example")
        .await;
    for category in ["TRANSACTIONAL", "MARKETING"] {
        sqlx::query(
            "INSERT INTO recipient_preference (tenant_id, recipient_ref, category, channel, opted_in) VALUES ('acme', 'contact-7', $1, 'EMAIL', false)",
        )
        .bind(category)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    let instance =
        start_proposal(&camunda, &lane, "Q-P1", ("recipientContactId", "contact-7")).await;
    wait_until_completed(&camunda, &instance.id, Duration::from_secs(60)).await;
    assert_eq!(sink.received().len(), 1);
    let taken = decisions(&db, "contact-7").await;
    assert!(
        taken.contains(&("ALLOW".into(), "TRANSACTIONAL_NOT_OPTABLE".into())),
        "{taken:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressed_addresses_blocked_domains_and_disabled_tenants_are_business_outcomes() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-P2-0").await;
    db.add_proposal_document("acme", "Q-P2-1").await;
    db.add_proposal_document("offline", "Q-P2-2").await;
    sqlx::query("INSERT INTO suppression_entry (tenant_id, address_hash, reason) VALUES ('acme', $1, 'HARD_BOUNCE')")
        .bind(herald::policy::hash_address("bounced@customer.example"))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO blocked_domain (tenant_id, domain, reason) VALUES ('*', 'blocked.example', 'abuse')")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO tenant_policy (tenant_id, communications_enabled) VALUES ('offline', false)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;

    let cases = [
        ("acme", "bounced@customer.example", "ADDRESS_SUPPRESSED"),
        ("acme", "someone@blocked.example", "DOMAIN_BLOCKED"),
        ("offline", "buyer@customer.example", "TENANT_DISABLED"),
    ];
    for (n, (tenant, address, code)) in cases.iter().enumerate() {
        let mut vars = proposal_vars(&lane, &format!("Q-P2-{n}"), ("recipientEmail", address));
        vars.insert("tenantId".into(), TypedValue::string(*tenant));
        let instance = camunda
            .start_process(
                "quote-proposal",
                &format!("Q-P2-{n}-{}", &lane[5..13]),
                &vars,
            )
            .await
            .unwrap();
        wait_for_user_task(&camunda, &instance.id, "handle_failed_delivery").await;
        no_incident(&instance.id).await;
        let (status, failure): (String, Option<String>) = sqlx::query_as(
            "SELECT status, failure_code FROM communication_record WHERE quote_id = $1",
        )
        .bind(format!("Q-P2-{n}"))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            (status.as_str(), failure.as_deref()),
            ("SUPPRESSED", Some(*code))
        );
    }
    assert!(sink.received().is_empty());
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM communication_delivery_attempt")
            .await,
        0
    );
}

fn reminder_vars(lane: &str, approver: &str) -> Variables {
    let mut v = Variables::new();
    v.insert("heraldLane".into(), TypedValue::string(lane));
    v.insert("tenantId".into(), TypedValue::string("acme"));
    v.insert("approver".into(), TypedValue::string(approver));
    v.insert("reminderCycle".into(), TypedValue::string("R1/PT1S"));
    v.insert("escalationAfter".into(), TypedValue::string("PT1H"));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operational_opt_out_suppresses_a_reminder_and_quiet_hours_delay_one() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    let lane = new_lane();
    let s = &lane[5..13];
    let (quiet_user, opted_out_user) = (format!("quinn{s}"), format!("otto{s}"));
    create_user(
        &quiet_user,
        "Quinn",
        "Quiet",
        Some(&format!("{quiet_user}@corp.example")),
    )
    .await;
    create_user(
        &opted_out_user,
        "Otto",
        "Optout",
        Some(&format!("{opted_out_user}@corp.example")),
    )
    .await;
    // Opted out of operational messages on both channels the reminder topic may use.
    sqlx::query(
        "INSERT INTO recipient_preference (tenant_id, recipient_ref, category, channel, opted_in)
         VALUES ('acme', $1, 'OPERATIONAL', 'EMAIL', false), ('acme', $1, 'OPERATIONAL', 'IN_APP', false)",
    )
    .bind(format!("user:{opted_out_user}"))
    .execute(&db.pool)
    .await
    .unwrap();
    // The tenant's quiet hours, in a time zone fourteen hours ahead of UTC (often another date
    // than UTC's): the current local hour and the next one are quiet.
    let zone: chrono_tz::Tz = "Pacific/Kiritimati".parse().unwrap();
    let local = Utc::now().with_timezone(&zone);
    let start = chrono::NaiveTime::from_hms_opt(local.hour(), 0, 0).unwrap();
    let end = chrono::NaiveTime::from_hms_opt((local.hour() + 2) % 24, 0, 0).unwrap();
    sqlx::query("INSERT INTO tenant_policy (tenant_id, quiet_start, quiet_end, timezone) VALUES ('acme', $1, $2, 'Pacific/Kiritimati')")
        .bind(start)
        .bind(end)
        .execute(&db.pool)
        .await
        .unwrap();
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;

    let approval = |quote: String, user: &str| {
        let vars = reminder_vars(&lane, user);
        let camunda = camunda.clone();
        async move {
            camunda
                .start_process("quote-approval", &quote, &vars)
                .await
                .unwrap()
        }
    };
    let quiet = approval(format!("Q-P3-{s}"), &quiet_user).await;
    let opted = approval(format!("Q-P4-{s}"), &opted_out_user).await;
    let quiet_ref = format!("user:{quiet_user}");
    let opted_ref = format!("user:{opted_out_user}");
    wait_for("both reminders to be recorded", Duration::from_secs(60), || async {
        let n = db
            .scalar_i64(&format!(
                "SELECT count(*) FROM communication_record WHERE recipient_ref IN ('{quiet_ref}', '{opted_ref}')"
            ))
            .await;
        (n == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        sink.received().is_empty(),
        "nothing goes out: one is opted out, one is in quiet hours"
    );

    assert_eq!(
        status_of(&db, &opted_ref).await,
        ("SUPPRESSED".into(), Some("OPTED_OUT".into()))
    );
    let (status, _) = status_of(&db, &quiet_ref).await;
    assert_eq!(status, "QUEUED", "delayed, not dropped");
    let due_in: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM j.due_at - now())::float8 FROM delivery_job j JOIN communication_record r USING (communication_id) WHERE r.recipient_ref = $1",
    )
    .bind(&quiet_ref)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        due_in > 3000.0 && due_in <= 7200.0,
        "held until the local quiet hours end: {due_in} s"
    );
    assert!(decisions(&db, &quiet_ref)
        .await
        .contains(&("DELAY".into(), "QUIET_HOURS".into())));
    no_incident(&quiet.id).await;
    no_incident(&opted.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_inactive_and_addressless_contacts_are_business_failures() {
    let camunda = camunda();
    deploy(&camunda).await;
    let db = TestDb::create().await;
    db.add_contact("acme", "contact-gone", "Gone Away", "gone@customer.example")
        .await;
    db.add_contact("acme", "contact-nomail", "No Mail", "x@customer.example")
        .await;
    sqlx::query("UPDATE contact SET active = false WHERE contact_id = 'contact-gone'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE contact SET email = NULL WHERE contact_id = 'contact-nomail'")
        .execute(&db.pool)
        .await
        .unwrap();
    let cases = [
        (
            "Q-R1",
            "contact-unknown",
            "FAILED_FINAL",
            "RECIPIENT_NOT_FOUND",
        ),
        ("Q-R2", "contact-gone", "SUPPRESSED", "RECIPIENT_INACTIVE"),
        ("Q-R3", "contact-nomail", "FAILED_FINAL", "NO_VALID_ADDRESS"),
    ];
    for (quote, _, _, _) in &cases {
        db.add_proposal_document("acme", quote).await;
    }
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let lane = new_lane();
    let _herald = start_herald(&db, &sink.url(), &lane, &[]).await;
    for (quote, contact, status, code) in cases {
        let instance = camunda
            .start_process(
                "quote-proposal",
                &format!("{quote}-{}", &lane[5..13]),
                &proposal_vars(&lane, quote, ("recipientContactId", contact)),
            )
            .await
            .unwrap();
        wait_for_user_task(&camunda, &instance.id, "handle_failed_delivery").await;
        no_incident(&instance.id).await;
        assert_eq!(
            status_of(&db, contact).await,
            (status.to_string(), Some(code.to_string()))
        );
        let taken = decisions(&db, contact).await;
        assert!(
            taken.iter().any(|(_, reason)| reason == code),
            "the refusal is a stored decision: {taken:?}"
        );
    }
    assert!(sink.received_except_alerts().is_empty());
}
