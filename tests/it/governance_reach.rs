//! What reaches a template: the classification of fields by origin (`templates/fields.toml`)
//! along the whole path (event or task → rule or topic mapping → payload schema), a family's
//! audience as a whole and the recipient's, the rule's category against the template's, and
//! every version that is or will become effective judged, not only today's; at `herald check`
//! and again when herald takes a request in. Also: the market flows from the contact and the
//! command to the version herald picks.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::support::*;
use crate::templates_governance::{copy_tree, herald_check, workspace};

/// `herald check --record-templates` on a workspace: the release step, then the check.
fn release_and_check(topics: &Path, templates: &Path, bpmn: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check", "--record-templates"])
        .env(
            "HERALD_PATHS__RULES",
            topics.with_file_name("rules").join("events.toml"),
        )
        .env("HERALD_PATHS__TOPICS", topics)
        .env("HERALD_PATHS__TEMPLATES", templates)
        .env("HERALD_PATHS__BPMN", bpmn)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `herald check` on the shipped files with one edit of the rules: what it refused them with.
fn refused_after_rules_edit(from: &str, to: &str) -> String {
    let (dir, topics, templates, bpmn) = workspace();
    edit(&dir.path().join("rules/events.toml"), from, to);
    let (ok, out) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok, "refused: {out}");
    out
}

/// Rewrites a file of the workspace.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no '{from}'", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A copy of a shipped version under a new version name, with its metadata edited.
fn copy_version(templates: &Path, family: &str, from: &str, to: &str, edits: &[(&str, &str)]) {
    let target = templates.join(family).join(to);
    copy_tree(&templates.join(family).join(from), &target);
    let meta = target.join("template.toml");
    edit(
        &meta,
        &format!("version = \"{from}\""),
        &format!("version = \"{to}\""),
    );
    for (a, b) in edits {
        edit(&meta, a, b);
    }
}

fn next_month() -> String {
    (Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string()
}

#[test]
fn a_rule_that_maps_internal_event_data_into_a_customer_field_is_refused() {
    let (dir, topics, templates, bpmn) = workspace();
    let rules = dir.path().join("rules/events.toml");
    // A harmless-looking field, fed from a path no one declared customer-visible.
    edit(
        &rules,
        "orderNumber = \"data.orderNumber\"",
        "orderNumber = \"data.pricing.note\"",
    );
    let (ok, out) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok, "{out}");
    assert!(
        out.contains("rule[0] 'order-confirmation'")
            && out.contains("payload.orderNumber")
            && out.contains("event OrderCreated 'data.pricing.note' is internal")
            && out.contains("fields.toml"),
        "{out}"
    );

    // The near variants: declared for another event type only, and a path below a declared one.
    edit(
        &rules,
        "orderNumber = \"data.pricing.note\"",
        "orderNumber = \"data.status\"",
    );
    let (ok, out) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok && out.contains("'data.status' is internal"), "{out}");
    edit(
        &rules,
        "orderNumber = \"data.status\"",
        "orderNumber = \"data.orderNumber.cost\"",
    );
    let (ok, out) = herald_check(&topics, &templates, &bpmn);
    assert!(
        !ok && out.contains("'data.orderNumber.cost' is internal"),
        "{out}"
    );

    // Declared customer-visible, but internal by its name: refused all the same.
    edit(
        &rules,
        "orderNumber = \"data.orderNumber.cost\"",
        "orderNumber = \"data.costBasis\"",
    );
    edit(
        &templates.join("fields.toml"),
        "customer = [\"data.orderNumber\"]",
        "customer = [\"data.orderNumber\", \"data.costBasis\"]",
    );
    let (ok, out) = herald_check(&topics, &templates, &bpmn);
    assert!(
        !ok && out.contains("'data.costBasis' is internal by its name"),
        "{out}"
    );
}

#[test]
fn a_topic_variable_not_declared_customer_visible_is_refused() {
    let (_dir, topics, templates, bpmn) = workspace();
    edit(
        &templates.join("fields.toml"),
        "customer = [\"quoteId\", \"revisionNo\", \"artifactId\", \"messageNote\"]",
        "customer = [\"quoteId\", \"revisionNo\", \"artifactId\"]",
    );
    let (ok, out) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok, "{out}");
    assert!(
        out.contains("topics/send-proposal.toml")
            && out.contains("payload.messageNote")
            && out.contains("variable 'messageNote' of topic send-proposal is internal"),
        "{out}"
    );
}

#[test]
fn a_family_is_customer_or_internal_as_a_whole() {
    let (_dir, topics, templates, bpmn) = workspace();
    copy_version(
        &templates,
        "order-confirmation-email",
        "2026.11.0",
        "2026.11.5",
        &[
            ("audience = \"CUSTOMER\"", "audience = \"INTERNAL\""),
            (
                "effective_from = \"2026-11-01T00:00:00Z\"",
                "effective_from = \"2026-11-25T00:00:00Z\"",
            ),
        ],
    );
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(!ok, "{out}");
    assert!(
        out.contains("order-confirmation-email/2026.11.5/template.toml")
            && out.contains("a family is CUSTOMER or INTERNAL as a whole"),
        "{out}"
    );
}

#[test]
fn a_rule_that_reaches_customers_may_name_customer_families_only() {
    // The fulfillment digest goes to the customer's contact: an internal summary family is
    // refused, and so would its category be.
    let out = refused_after_rules_edit(
        "digest = { every = \"PT1H\", template_family = \"fulfillment-digest-email\" }",
        "digest = { every = \"PT1H\", template_family = \"fallout-summary-email\" }",
    );
    assert!(
        out.contains(
            "rule[4] 'fulfillment-update': digest.template_family: fallout-summary-email:2026.11.0"
        ) && out.contains("audience INTERNAL: this reaches customers"),
        "{out}"
    );
}

#[test]
fn the_rules_category_and_the_templates_must_agree() {
    let out = refused_after_rules_edit(
        "communication_type = \"ORDER_CONFIRMATION\"\ncategory = \"TRANSACTIONAL\"",
        "communication_type = \"ORDER_CONFIRMATION\"\ncategory = \"MARKETING\"",
    );
    assert!(
        out.contains("rule[0] 'order-confirmation'")
            && out.contains("order-confirmation-email:2026.11.0")
            && out.contains("category TRANSACTIONAL: this asks for MARKETING"),
        "{out}"
    );
}

#[test]
fn a_version_effective_next_month_is_judged_against_what_the_handler_passes() {
    let (_dir, topics, templates, bpmn) = workspace();
    // Approved, effective next month, and without the note the handler passes.
    let future = next_month();
    copy_version(
        &templates,
        "quote-proposal-email",
        "2026.11.1",
        "2027.01.0",
        &[
            (
                "effective_from = \"2026-11-20T00:00:00Z\"",
                &format!("effective_from = \"{future}\""),
            ),
            ("messageNote = \"string?\"\n", ""),
        ],
    );
    for part in ["body.txt.hbs", "body.html.hbs"] {
        let path = templates.join("quote-proposal-email/2027.01.0").join(part);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("{{#if messageNote}}").unwrap();
        let end = text
            .find("{{/if}}\nWe look")
            .or_else(|| text.find("{{/if}}\n<p>We look"))
            .unwrap();
        std::fs::write(&path, format!("{}{}", &text[..start], &text[end + 8..])).unwrap();
    }
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "topics/send-proposal.toml: template_family (EMAIL): quote-proposal-email:2027.01.0"
        ) && out.contains(
            "payload.messageNote: the handler passes it, but it is not in the payload schema"
        ),
        "{out}"
    );

    // A version that requires what the handler does not always pass, or never passes.
    let (_dir, topics, templates, bpmn) = workspace();
    copy_version(
        &templates,
        "quote-proposal-email",
        "2026.11.1",
        "2027.01.0",
        &[
            (
                "effective_from = \"2026-11-20T00:00:00Z\"",
                &format!("effective_from = \"{future}\""),
            ),
            ("proposalLink = \"string?\"", "proposalLink = \"string\""),
            (
                "messageNote = \"string?\"",
                "messageNote = \"string?\"\nsalesRegion = \"string\"",
            ),
        ],
    );
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(!ok, "{out}");
    assert!(
        out.contains("payload.proposalLink: required, but the handler does not always pass it")
            && out.contains(
                "payload.salesRegion: the version requires it, but the handler never passes it"
            ),
        "{out}"
    );
}

#[test]
fn a_version_effective_next_month_that_renames_a_field_is_refused_today() {
    let (_dir, topics, templates, bpmn) = workspace();
    let future = next_month();
    copy_version(
        &templates,
        "order-confirmation-email",
        "2026.11.0",
        "2027.01.0",
        &[
            (
                "effective_from = \"2026-11-01T00:00:00Z\"",
                &format!("effective_from = \"{future}\""),
            ),
            ("orderNumber = \"string\"", "orderNo = \"string\""),
        ],
    );
    for part in ["subject.hbs", "body.txt.hbs", "body.html.hbs"] {
        let path = templates
            .join("order-confirmation-email/2027.01.0")
            .join(part);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("orderNumber", "orderNo")).unwrap();
    }
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(!ok, "{out}");
    assert!(
        out.contains("rule[0] 'order-confirmation': template_family (EMAIL): order-confirmation-email:2027.01.0")
            && out.contains("payload.orderNumber: not in the payload schema")
            && out.contains("payload.orderNo: the version requires it"),
        "{out}"
    );
}

#[test]
fn two_versions_resolution_cannot_tell_apart_are_refused() {
    let (_dir, topics, templates, bpmn) = workspace();
    copy_version(
        &templates,
        "order-confirmation-email",
        "2026.11.0",
        "2026.11.0-b",
        &[],
    );
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(!ok, "{out}");
    assert!(
        out.contains("order-confirmation-email:2026.11.0 and order-confirmation-email:2026.11.0-b are both effective from")
            && out.contains("resolution could not tell them apart"),
        "{out}"
    );
    // Another market is another place: no ambiguity.
    edit(
        &templates.join("order-confirmation-email/2026.11.0-b/template.toml"),
        "locale = \"en\"",
        "locale = \"en\"\nmarket = \"CH\"",
    );
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(ok, "{out}");
}

/// The events API tests' OrderCreated, with more `data` fields.
fn order_created(
    event_id: &str,
    order: &str,
    contact: &str,
    data: serde_json::Value,
) -> serde_json::Value {
    let mut event = crate::events_api::order_created(event_id, order, contact);
    if let (Some(fields), Some(more)) = (event["data"].as_object_mut(), data.as_object()) {
        fields.extend(more.clone());
    }
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_event_data_mapped_into_a_customer_field_is_refused_before_anything_is_sent() {
    // A rules file that `herald check` would refuse, deployed anyway: the intake refuses too.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("events.toml");
    let shipped =
        std::fs::read_to_string(Path::new(MANIFEST_DIR).join("rules/events.toml")).unwrap();
    std::fs::write(
        &rules,
        shipped.replacen(
            "orderNumber = \"data.orderNumber\"",
            "orderNumber = \"data.dealNotes\"",
            1,
        ),
    )
    .unwrap();
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(
        &db,
        &sink.url(),
        &[("HERALD_PATHS__RULES", rules.to_str().unwrap())],
    )
    .await;
    api.put(
        "/v1/contacts/contact-leak",
        json!({"displayName": "Lee Buyer", "email": "lee@customer.example"}),
    )
    .await;
    let (status, body) = api
        .post(
            "/v1/events",
            order_created(
                "evt-leak",
                "O-LEAK",
                "contact-leak",
                json!({"dealNotes": "margin 38 %, floor price 910 EUR"}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("orderNumber")
            && text.contains("event OrderCreated 'data.dealNotes' is internal")
            && text.contains("fields.toml"),
        "{text}"
    );
    assert!(
        !text.contains("floor price 910"),
        "the value is never echoed: {text}"
    );
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM communication_record")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(records, 0, "nothing is recorded");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.received().is_empty(), "nothing is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contacts_market_and_the_events_choose_the_market_version() {
    // The shipped templates plus an approved order confirmation for the Swiss market.
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    copy_tree(&Path::new(MANIFEST_DIR).join("templates"), &templates);
    copy_version(
        &templates,
        "order-confirmation-email",
        "2026.11.0",
        "2026.11.0-ch",
        &[("locale = \"en\"", "locale = \"en\"\nmarket = \"CH\"")],
    );
    let subject = templates.join("order-confirmation-email/2026.11.0-ch/subject.hbs");
    edit(&subject, "Your order", "Gruezi: your order");
    herald::templates::TemplateRegistry::record_approved(&templates).unwrap();

    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(
        &db,
        &sink.url(),
        &[("HERALD_PATHS__TEMPLATES", templates.to_str().unwrap())],
    )
    .await;
    for (id, market) in [("contact-ch", Some("CH")), ("contact-any", None)] {
        let (status, body) = api
            .put(
                &format!("/v1/contacts/{id}"),
                json!({"displayName": "Mia", "email": format!("{id}@customer.example"), "market": market}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let version_of = |order: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT template_version FROM communication_record WHERE subject_id = $1",
            )
            .bind(order)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    for (event, order, contact, data) in [
        ("evt-ch", "O-CH", "contact-ch", json!({})),
        ("evt-any", "O-ANY", "contact-any", json!({})),
    ] {
        let (status, body) = api
            .post("/v1/events", order_created(event, order, contact, data))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // The event names the market when the contact has none.
    let mut by_event = order_created("evt-by-event", "O-EVT", "contact-any", json!({}));
    by_event["market"] = json!("CH");
    let (status, body) = api.post("/v1/events", by_event).await;
    assert_eq!(status, 202, "{body}");

    assert_eq!(version_of("O-CH").await, "2026.11.0-ch");
    assert_eq!(version_of("O-ANY").await, "2026.11.0");
    assert_eq!(version_of("O-EVT").await, "2026.11.0-ch");
    let mails = sink.wait_for(3, Duration::from_secs(30)).await;
    let swiss = mails
        .iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.starts_with("Gruezi")))
        .count();
    assert_eq!(
        swiss, 2,
        "the two Swiss-market confirmations use the CH version"
    );
}

/// `herald <args>` on a workspace's templates; (succeeded, stdout, stderr).
fn herald_templates(templates: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("HERALD_PATHS__TEMPLATES", templates)
        .env("USER", "auditor")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn templates_resolve_prints_the_version_and_the_steps_that_led_to_it() {
    let (_dir, topics, templates, bpmn) = workspace();
    copy_version(
        &templates,
        "order-confirmation-email",
        "2026.11.0",
        "2026.11.0-ch",
        &[("locale = \"en\"", "locale = \"en\"\nmarket = \"CH\"")],
    );
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(ok, "{out}");
    let resolve = |market: &str| {
        herald_templates(
            &templates,
            &[
                "templates",
                "resolve",
                "order-confirmation-email",
                "--locale",
                "de-AT",
                "--market",
                market,
                "--at",
                "2026-12-01T00:00:00Z",
            ],
        )
    };
    let (ok, out, err) = resolve("CH");
    assert!(ok, "{err}");
    assert!(
        out.contains("1. locale 'de-AT', market 'CH': no version")
            && out.contains("5. locale 'en', market 'CH': order-confirmation-email:2026.11.0-ch")
            && out
                .trim_end()
                .ends_with("order-confirmation-email:2026.11.0-ch"),
        "{out}"
    );
    let (ok, out, _) = resolve("DE");
    assert!(ok);
    assert!(
        out.contains("locale 'en', market 'DE': no version")
            && out
                .trim_end()
                .ends_with("order-confirmation-email:2026.11.0"),
        "{out}"
    );
    // Withdrawn: never picked, and the steps say why.
    let (ok, _, err) = herald_templates(
        &templates,
        &[
            "templates",
            "withdraw",
            "order-confirmation-email:2026.11.0-ch",
            "--reason",
            "wrong legal entity in the footer",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = resolve("CH");
    assert!(ok);
    assert!(
        out.contains("order-confirmation-email:2026.11.0-ch is withdrawn")
            && out
                .trim_end()
                .ends_with("order-confirmation-email:2026.11.0"),
        "{out}"
    );
    // Nothing to pick: a clear error, exit 1.
    let (ok, _, err) = herald_templates(
        &templates,
        &["templates", "resolve", "no-such-family", "--locale", "en"],
    );
    assert!(
        !ok && err.contains("no template of family 'no-such-family'"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_with_a_version_withdrawn_since_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    copy_tree(&Path::new(MANIFEST_DIR).join("templates"), &templates);
    let db = TestDb::create().await;
    db.add_contact("acme", "contact-w", "Wes", "wes@customer.example")
        .await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let settings = || {
        test_settings(
            &db,
            &sink.url(),
            &new_lane(),
            &[("HERALD_PATHS__TEMPLATES", templates.to_str().unwrap())],
        )
    };
    // Requested while the version is in force (the API only: nothing is delivered yet).
    let intake = spawn_herald(
        settings(),
        herald::runtime::Components {
            workers: false,
            delivery: false,
            relay: false,
            api: true,
        },
    )
    .await;
    let base = format!("http://{}", intake.api_address.unwrap());
    let key = api_key(
        &db.pool,
        Some(API_TENANT),
        &[herald::api::keys::Scope::Send],
    )
    .await;
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "k-w")
        .json(&order_created("evt-w", "O-W", "contact-w", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    intake.stop().await;

    // Withdrawn before delivery: the message fails for good, naming the withdrawal.
    let (ok, out, err) = herald_templates(
        &templates,
        &[
            "templates",
            "withdraw",
            "order-confirmation-email:2026.11.0",
            "--reason",
            "wrong legal entity",
        ],
    );
    assert!(ok, "{out}{err}");
    let delivery = spawn_herald(settings(), herald::runtime::Components::all()).await;
    let (status, code) = wait_for("the delivery to end", Duration::from_secs(30), || async {
        let outcome = db.outcome_where("subject_id = 'O-W'").await;
        (outcome.0 == "FAILED_FINAL").then_some(outcome)
    })
    .await;
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("FAILED_FINAL", Some("TEMPLATE_WITHDRAWN"))
    );
    let summary: String = sqlx::query_scalar(
        "SELECT a.response_summary FROM communication_delivery_attempt a JOIN communication_record r USING (communication_id) WHERE r.subject_id = 'O-W'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        summary.contains("withdrawn") && summary.contains("wrong legal entity"),
        "{summary}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_customer: Vec<_> = sink
        .received()
        .into_iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r.contains("wes@customer.example")))
        .collect();
    assert!(to_customer.is_empty(), "nothing was sent to the customer");
    delivery.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proposal_commands_market_or_the_contacts_chooses_the_market_version() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    copy_tree(&Path::new(MANIFEST_DIR).join("templates"), &templates);
    copy_version(
        &templates,
        "quote-proposal-email",
        "2026.11.1",
        "2026.11.1-ch",
        &[("locale = \"en\"", "locale = \"en\"\nmarket = \"CH\"")],
    );
    edit(
        &templates.join("quote-proposal-email/2026.11.1-ch/subject.hbs"),
        "Your proposal",
        "Gruezi: your proposal",
    );
    herald::templates::TemplateRegistry::record_approved(&templates).unwrap();
    let db = TestDb::create().await;
    db.add_proposal_document("acme", "Q-MKT").await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(
        &db,
        &sink.url(),
        &[("HERALD_PATHS__TEMPLATES", templates.to_str().unwrap())],
    )
    .await;
    let (status, _) = api
        .put(
            "/v1/contacts/contact-mkt",
            json!({"displayName": "Urs", "email": "urs@customer.example", "market": "CH"}),
        )
        .await;
    assert_eq!(status, 200);
    let send = |key: &'static str, body: serde_json::Value| {
        let request = api
            .http
            .post(api.url("/v1/quotes/Q-MKT/revisions/4/communications/proposal"))
            .bearer_auth(&api.key)
            .header("Idempotency-Key", key)
            .json(&body)
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(status, 201, "{body}");
            body["communicationId"].as_str().unwrap().to_string()
        }
    };
    let by_command = send(
        "mkt-1",
        json!({"artifactId": "doc-Q-MKT", "recipientEmail": "anna@customer.example", "market": "CH"}),
    )
    .await;
    let by_contact = send(
        "mkt-2",
        json!({"artifactId": "doc-Q-MKT", "recipientContactId": "contact-mkt"}),
    )
    .await;
    let neither = send(
        "mkt-3",
        json!({"artifactId": "doc-Q-MKT", "recipientEmail": "bert@customer.example"}),
    )
    .await;
    let version = |id: String| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT template_version FROM communication_record WHERE communication_id = $1::uuid",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(version(by_command).await, "2026.11.1-ch");
    assert_eq!(version(by_contact).await, "2026.11.1-ch");
    assert_eq!(version(neither).await, "2026.11.1");
    let mails = sink.wait_for(3, Duration::from_secs(30)).await;
    let swiss = mails
        .iter()
        .filter(|m| m.header("Subject").is_some_and(|s| s.starts_with("Gruezi")))
        .count();
    assert_eq!(
        swiss,
        2,
        "{:?}",
        mails
            .iter()
            .map(|m| m.header("Subject"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn the_check_and_the_intake_agree_on_who_fills_in_the_recipients_name() {
    // An engine group's members get a CUSTOMER template that shows the recipient's name: the
    // name is the engine's data, refused at check as it is at send.
    let out = refused_after_rules_edit(
        "recipient = \"contact:data.customerContactId\"\nchannels = [\"EMAIL\"]\ntemplate_family = \"order-confirmation-email\"",
        "recipient = \"camunda-group:sales\"\nchannels = [\"EMAIL\"]\ntemplate_family = \"order-confirmation-email\"",
    );
    assert!(
        out.contains("rule[0] 'order-confirmation'")
            && out.contains("payload.recipientName: engine data 'the user's name' is internal"),
        "{out}"
    );

    // An address has no name herald could fill in: a version that requires one is refused.
    let out = refused_after_rules_edit(
        "recipient = \"contact:data.customerContactId\"\nchannels = [\"EMAIL\"]\ntemplate_family = \"order-confirmation-email\"",
        "recipient = \"email:data.customerEmail\"\nchannels = [\"EMAIL\"]\ntemplate_family = \"order-confirmation-email\"",
    );
    assert!(
        out.contains("rule[0] 'order-confirmation'")
            && out.contains("payload.recipientName: the version requires it"),
        "{out}"
    );
}

#[test]
fn a_withdrawn_version_leaves_its_place_to_a_replacement_of_the_same_date() {
    let (_dir, topics, templates, bpmn) = workspace();
    let (ok, out, err) = herald_templates(
        &templates,
        &[
            "templates",
            "withdraw",
            "order-confirmation-email:2026.11.0",
            "--reason",
            "typo in the greeting",
        ],
    );
    assert!(ok, "{out}{err}");
    copy_version(
        &templates,
        "order-confirmation-email",
        "2026.11.0",
        "2026.11.0-fix",
        &[],
    );
    edit(
        &templates.join("order-confirmation-email/2026.11.0-fix/body.txt.hbs"),
        "Dear",
        "Dear customer",
    );
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(ok, "{out}");
    let registry = herald::templates::TemplateRegistry::load(&templates).unwrap();
    let picked = registry
        .resolve("order-confirmation-email", Some("en"), None, Utc::now())
        .unwrap();
    assert_eq!(picked.meta.version, "2026.11.0-fix");
}

#[test]
fn markets_match_whatever_their_case_and_errors_never_show_a_value() {
    let (_dir, topics, templates, bpmn) = workspace();
    copy_version(
        &templates,
        "order-confirmation-email",
        "2026.11.0",
        "2026.11.0-ch",
        &[("locale = \"en\"", "locale = \"en\"\nmarket = \"CH\"")],
    );
    let (ok, out) = release_and_check(&topics, &templates, &bpmn);
    assert!(ok, "{out}");
    let registry = herald::templates::TemplateRegistry::load(&templates).unwrap();
    let picked = registry
        .resolve(
            "order-confirmation-email",
            Some("en"),
            Some("ch"),
            Utc::now(),
        )
        .unwrap();
    assert_eq!(picked.meta.version, "2026.11.0-ch");
    // A payload of the wrong type: the error names the field and the types, never the value.
    let err = registry
        .render(
            picked,
            &json!({"orderNumber": {"marginPct": 38}, "recipientName": "Ann"}),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("orderNumber") && err.contains("an object"),
        "{err}"
    );
    assert!(!err.contains("38") && !err.contains("marginPct"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_user_without_an_address_gets_the_inbox_notice_with_a_name_filled_in() {
    // The check counts on herald filling in the name of an engine user: so must the send, when
    // the user has no email address and is reached in the inbox only.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("events.toml");
    std::fs::write(
        &rules,
        r#"
[[rule]]
id = "fallout-alert"
version = 1
trigger = "FalloutCaseOpened"
communication_type = "FALLOUT_ALERT"
category = "OPERATIONAL"
recipient = "camunda-user:data.notify"
channels = ["IN_APP"]
template_family = "fallout-alert-inapp"
effective_from = 2026-01-01T00:00:00Z
subject = "FALLOUT_CASE:data.falloutCaseId"
[rule.payload]
falloutCaseId = "data.falloutCaseId"
orderNumber = "data.orderNumber"
reason = "data.reason"
"#,
    )
    .unwrap();
    let operator = format!("noaddr{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    create_user(&operator, "Nora", "Noaddress", None).await;
    let db = TestDb::create().await;
    let sink = smtp_sink::SmtpSink::start().await.unwrap();
    let (_herald, api) = Api::start(
        &db,
        &sink.url(),
        &[("HERALD_PATHS__RULES", rules.to_str().unwrap())],
    )
    .await;
    let (status, body) = api
        .post(
            "/v1/events",
            json!({
                "eventId": "evt-noaddr", "eventType": "FalloutCaseOpened",
                "occurredAt": "2026-11-26T10:00:00Z",
                "data": {"falloutCaseId": "FC-N", "orderNumber": "O-N", "reason": "billing down", "notify": operator}
            }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, code) = wait_for("the notice", Duration::from_secs(20), || async {
        let outcome = db.outcome_where("subject_id = 'FC-N'").await;
        (!matches!(outcome.0.as_str(), "QUEUED" | "SENDING")).then_some(outcome)
    })
    .await;
    assert_eq!(status, "SENT", "{code:?}");
    // (Before, the event was refused: "recipientName: required, but missing".)
}
