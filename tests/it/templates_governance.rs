//! Template governance: `herald check` as a release gate (immutable approved versions, the
//! leak guard, BPMN wiring), version resolution by date and locale, and the leak guard and
//! payload schema at render time.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::MANIFEST_DIR;
use chrono::{DateTime, Utc};
use herald::templates::{TemplateError, TemplateRegistry};
use serde_json::json;

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the shipped topics, templates, BPMN and rules to break on purpose (the rules in
/// `rules/` beside the others).
pub(crate) fn workspace() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (topics, templates, bpmn) = (
        dir.path().join("topics"),
        dir.path().join("templates"),
        dir.path().join("bpmn"),
    );
    for (name, target) in [
        ("topics", &topics),
        ("templates", &templates),
        ("bpmn", &bpmn),
        ("rules", &dir.path().join("rules")),
    ] {
        copy_tree(&Path::new(MANIFEST_DIR).join(name), target);
    }
    (dir, topics, templates, bpmn)
}

/// `herald check` on a workspace (its rules beside its topics); (passed, what it printed on
/// standard error).
pub(crate) fn herald_check(topics: &Path, templates: &Path, bpmn: &Path) -> (bool, String) {
    let rules = topics.with_file_name("rules").join("events.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("check")
        .env("HERALD_PATHS__RULES", rules)
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

pub(crate) fn add_version(
    templates: &Path,
    family: &str,
    version: &str,
    meta_extra: &str,
    body: &str,
) -> PathBuf {
    let dir = templates.join(family).join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("template.toml"),
        format!(
            "family = \"{family}\"\nversion = \"{version}\"\nchannel = \"EMAIL\"\ncategory = \"TRANSACTIONAL\"\nowner = \"test\"\n{meta_extra}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("subject.hbs"), "Subject {{quoteNumber}}").unwrap();
    std::fs::write(dir.join("body.txt.hbs"), body).unwrap();
    std::fs::write(dir.join("body.html.hbs"), format!("<p>{body}</p>")).unwrap();
    dir
}

#[test]
fn the_shipped_files_pass_herald_check() {
    let root = Path::new(MANIFEST_DIR);
    let (ok, stderr) = herald_check(
        &root.join("topics"),
        &root.join("templates"),
        &root.join("bpmn"),
    );
    assert!(ok, "{stderr}");
}

#[test]
fn a_changed_approved_version_is_refused_and_never_re_recorded() {
    let (_dir, topics, templates, bpmn) = workspace();
    let body = templates.join("quote-proposal-email/2026.07.0/body.txt.hbs");
    let text = std::fs::read_to_string(&body).unwrap();
    std::fs::write(
        &body,
        text.replace("We look forward", "We no longer look forward"),
    )
    .unwrap();
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok);
    assert!(
        stderr.contains("quote-proposal-email/2026.07.0") && stderr.contains("immutable"),
        "{stderr}"
    );
    let err = TemplateRegistry::record_approved(&templates).unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    // And the runtime refuses it too.
    assert!(TemplateRegistry::load(&templates).is_err());
}

#[test]
fn a_customer_template_that_reaches_for_internal_data_is_refused() {
    let (_dir, topics, templates, bpmn) = workspace();
    add_version(
        &templates,
        "quote-proposal-email",
        "2026.12.0",
        "locale = \"en\"\naudience = \"CUSTOMER\"\neffective_from = \"2026-12-01T00:00:00Z\"\n[payload]\nquoteNumber = \"string\"",
        "Your quote {{quoteNumber}} has a margin of {{margin}}",
    );
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok);
    assert!(
        stderr.contains("2026.12.0/body.txt.hbs")
            && stderr.contains("'margin'")
            && stderr.contains("internal data"),
        "{stderr}"
    );
    add_version(
        &templates,
        "quote-proposal-email",
        "2026.12.1",
        "locale = \"en\"\naudience = \"CUSTOMER\"\neffective_from = \"2026-12-01T00:00:00Z\"\n[payload]\nquoteNumber = \"string\"\ncostBasis = \"number\"",
        "Your quote {{quoteNumber}}",
    );
    let (_, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(stderr.contains("payload.costBasis"), "{stderr}");
}

#[test]
fn bpmn_wiring_problems_name_the_file_and_the_task() {
    let (_dir, topics, templates, bpmn) = workspace();
    let path = bpmn.join("quote-proposal.bpmn");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "camunda:topic=\"send-proposal\"",
            "camunda:topic=\"send-brochure\"",
        ),
    )
    .unwrap();
    let approval = bpmn.join("quote-approval.bpmn");
    let text = std::fs::read_to_string(&approval).unwrap();
    std::fs::write(
        &approval,
        text.replace(" camunda:historyTimeToLive=\"P30D\"", ""),
    )
    .unwrap();
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok);
    assert!(
        stderr.contains("quote-proposal.bpmn: send_proposal: camunda:topic 'send-brochure'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("quote-approval.bpmn: process 'quote-approval': camunda:historyTimeToLive"),
        "{stderr}"
    );
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn the_request_time_and_the_locale_decide_the_version() {
    let (_dir, _topics, templates, _bpmn) = workspace();
    add_version(
        &templates,
        "quote-proposal-email",
        "2026.12.0",
        "locale = \"en\"\naudience = \"CUSTOMER\"\napproved_by = \"legal\"\neffective_from = \"2026-12-01T00:00:00Z\"\n[payload]\nquoteNumber = \"string\"",
        "New wording for {{quoteNumber}}",
    );
    TemplateRegistry::record_approved(&templates).unwrap();
    let registry = TemplateRegistry::load(&templates).unwrap();
    let family = "quote-proposal-email";
    assert_eq!(
        registry
            .resolve(family, Some("en"), None, at("2026-10-15T12:00:00Z"))
            .unwrap()
            .meta
            .version,
        "2026.07.0"
    );
    assert_eq!(
        registry
            .resolve(family, Some("en"), None, at("2026-11-26T12:00:00Z"))
            .unwrap()
            .meta
            .version,
        "2026.11.1"
    );
    assert_eq!(
        registry
            .resolve(family, Some("en"), None, at("2026-12-01T00:00:01Z"))
            .unwrap()
            .meta
            .version,
        "2026.12.0"
    );
    // de-AT falls back to de; fr falls back to en.
    assert_eq!(
        registry
            .resolve(family, Some("de-AT"), None, at("2026-10-15T12:00:00Z"))
            .unwrap()
            .meta
            .version,
        "2026.07.0-de"
    );
    assert_eq!(
        registry
            .resolve(family, Some("fr"), None, at("2026-10-15T12:00:00Z"))
            .unwrap()
            .meta
            .version,
        "2026.07.0"
    );
    // Before any version is effective there is none.
    assert!(matches!(
        registry.resolve(family, Some("en"), None, at("2026-01-01T00:00:00Z")),
        Err(TemplateError::NotFound { .. })
    ));
}

#[test]
fn rendering_refuses_internal_fields_and_fields_outside_the_schema() {
    let registry = TemplateRegistry::load(&Path::new(MANIFEST_DIR).join("templates")).unwrap();
    let template = registry.get("quote-proposal-email", "2026.07.0").unwrap();
    let good = json!({"quoteNumber": "Q-1", "revisionNo": 2, "customerDisplayName": "A <b>B</b>", "documentReference": "d"});
    let rendered = registry.render(template, &good).unwrap();
    assert!(
        rendered.html.contains("A &lt;b&gt;B&lt;/b&gt;"),
        "html variables are escaped: {}",
        rendered.html
    );
    let mut leaky = good.clone();
    leaky["marginPercent"] = json!(31.5);
    assert!(matches!(
        registry.render(template, &leaky),
        Err(TemplateError::Leak { .. })
    ));
    let mut extra = good.clone();
    extra["salesRegion"] = json!("north");
    assert!(matches!(
        registry.render(template, &extra),
        Err(TemplateError::Payload { .. })
    ));
    let mut wrong = good;
    wrong["revisionNo"] = json!("2");
    assert!(matches!(
        registry.render(template, &wrong),
        Err(TemplateError::Payload { .. })
    ));
}

#[test]
fn a_version_for_the_market_wins_over_the_one_for_all_markets() {
    let (_dir, _topics, templates, _bpmn) = workspace();
    add_version(
        &templates,
        "quote-proposal-email",
        "2026.11.5-ch",
        "locale = \"de\"\nmarket = \"CH\"\naudience = \"CUSTOMER\"\napproved_by = \"legal\"\neffective_from = \"2026-11-21T00:00:00Z\"\n[payload]\nquoteNumber = \"string\"",
        "Grüezi, Offerte {{quoteNumber}}",
    );
    TemplateRegistry::record_approved(&templates).unwrap();
    let registry = TemplateRegistry::load(&templates).unwrap();
    let now = at("2026-11-26T12:00:00Z");
    let family = "quote-proposal-email";
    let swiss = registry
        .resolve(family, Some("de-CH"), Some("CH"), now)
        .unwrap();
    assert_eq!(swiss.meta.version, "2026.11.5-ch");
    let german = registry
        .resolve(family, Some("de-DE"), Some("DE"), now)
        .unwrap();
    assert_eq!(
        german.meta.version, "2026.11.1-de",
        "no DE version: the one for all markets"
    );
    let unspecified = registry.resolve(family, Some("de"), None, now).unwrap();
    assert_eq!(
        unspecified.meta.version, "2026.11.1-de",
        "a market version needs its market"
    );
}
