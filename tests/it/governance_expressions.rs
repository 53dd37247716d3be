//! The leak guard against what an auditor tried: internal names spelt a little differently,
//! indirect references (`this.`, `@root.`, `../`, `lookup`, paths below a field, unknown
//! helpers, partials, decorators), names that are not ASCII; and the block parameter that was
//! refused as a field. Through `herald check` on a copy of the shipped files (the versions
//! added are unapproved: still loaded and checked), and at render time.

use std::path::{Path, PathBuf};

use crate::support::MANIFEST_DIR;
use crate::templates_governance::{add_version, herald_check, workspace};
use herald::templates::{TemplateError, TemplateRegistry};
use serde_json::json;

const FAMILY: &str = "quote-proposal-email";

/// An unapproved CUSTOMER version of the proposal email: `quoteNumber` (its subject's) and
/// `payload` in its schema, `body` its text body (and, in `<p>…</p>`, its HTML body).
fn customer_version(templates: &Path, version: &str, payload: &str, body: &str) -> PathBuf {
    add_version(
        templates,
        FAMILY,
        version,
        &format!(
            "locale = \"en\"\naudience = \"CUSTOMER\"\neffective_from = \"2026-12-01T00:00:00Z\"\n[payload]\nquoteNumber = \"string\"\n{payload}"
        ),
        body,
    )
}

#[track_caller]
fn assert_reports(stderr: &str, expected: &str) {
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
}

/// The spellings the auditor found passing, and the ones next to them.
const VARIANTS: &[&str] = &[
    "grossMargin",
    "marginPct",
    "margin_eur",
    "unitCost2",
    "costUSD",
    "riskScoreV2",
    "approvalReasonText",
    "maxDiscountThreshold",
    "floorPriceNet",
    "internal_comment",
    "myInternalNote",
    "profitEur",
    "markupRate",
    "cogsTotal",
    "Marge",
];

#[test]
fn internal_names_spelt_differently_are_refused_in_the_schema_and_the_body() {
    let (_dir, topics, templates, bpmn) = workspace();
    for (i, name) in VARIANTS.iter().enumerate() {
        customer_version(
            &templates,
            &format!("2026.12.{i}"),
            &format!("{name} = \"number\""),
            &format!("Your quote {{{{quoteNumber}}}}: {{{{{name}}}}}"),
        );
    }
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok, "{stderr}");
    for (i, name) in VARIANTS.iter().enumerate() {
        let version = format!("{FAMILY}/2026.12.{i}");
        assert_reports(
            &stderr,
            &format!(
                "{version}/template.toml: payload.{name}: a CUSTOMER template may not receive internal data"
            ),
        );
        // "Your quote {{quoteNumber}}: " is 28 characters; the HTML body has "<p>" before it.
        assert_reports(
            &stderr,
            &format!(
                "{version}/body.txt.hbs:1:29: uses '{name}': a CUSTOMER template may not see internal data"
            ),
        );
        assert_reports(
            &stderr,
            &format!(
                "{version}/body.html.hbs:1:32: uses '{name}': a CUSTOMER template may not see internal data"
            ),
        );
    }
}

#[test]
fn a_field_name_that_is_not_ascii_is_refused() {
    let (_dir, topics, templates, bpmn) = workspace();
    // A Cyrillic а (U+0430) in place of the Latin a: the fragments would not see "margin".
    let disguised = "m\u{0430}rgin";
    customer_version(
        &templates,
        "2026.12.0",
        &format!("\"{disguised}\" = \"number\""),
        &format!("Your quote {{{{quoteNumber}}}}: {{{{{disguised}}}}}"),
    );
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok, "{stderr}");
    assert_reports(
        &stderr,
        &format!(
            "{FAMILY}/2026.12.0/template.toml: payload.{disguised}: a field name must be an ASCII identifier"
        ),
    );
    assert_reports(
        &stderr,
        &format!(
            "{FAMILY}/2026.12.0/body.txt.hbs:1:29: uses '{disguised}': '{disguised}' is not an ASCII identifier"
        ),
    );
}

#[test]
fn indirect_paths_are_refused_at_check_time_with_their_line_and_column() {
    let (_dir, topics, templates, bpmn) = workspace();
    customer_version(
        &templates,
        "2026.12.0",
        "items = \"list\"",
        "Your quote {{quoteNumber}}\n\
         {{this.margin}}\n\
         {{@root.margin}}\n\
         {{./costBasis}}\n\
         {{#each items}}{{../margin}}{{/each}}\n\
         {{quoteNumber.margin}}\n\
         {{#each items}}{{this.riskScore}}{{/each}}\n\
         {{this}}\n\
         {{#each quoteNumber}}{{this}}{{/each}}",
    );
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok, "{stderr}");
    let file = format!("{FAMILY}/2026.12.0/body.txt.hbs");
    let internal = "is internal data, which a CUSTOMER template may not see";
    for expected in [
        format!("{file}:2:1: uses 'this.margin': 'margin' {internal}"),
        format!("{file}:3:1: uses '@root.margin': 'margin' {internal}"),
        format!("{file}:4:1: uses './costBasis': 'costBasis' {internal}"),
        format!("{file}:5:16: uses '../margin': 'margin' {internal}"),
        format!("{file}:6:1: uses 'quoteNumber.margin': 'margin' {internal}"),
        format!(
            "{file}:6:1: uses 'quoteNumber.margin', which goes below the string field 'quoteNumber'"
        ),
        format!("{file}:7:16: uses 'this.riskScore': 'riskScore' {internal}"),
        format!("{file}:8:1: uses 'this', which is the whole payload: name a field"),
        format!(
            "{file}:9:1: '#each quoteNumber' goes over the string field 'quoteNumber': #each needs a list field"
        ),
    ] {
        assert_reports(&stderr, &expected);
    }
}

#[test]
fn helpers_partials_and_decorators_that_escape_the_check_are_refused_by_name() {
    let (_dir, topics, templates, bpmn) = workspace();
    customer_version(
        &templates,
        "2026.12.0",
        "",
        "Your quote {{quoteNumber}}\n\
         {{lookup this \"margin\"}}\n\
         {{#with quoteNumber}}{{this}}{{/with}}\n\
         {{formatMoney quoteNumber}}\n\
         {{> quoteNumber}}\n\
         {{#*inline \"quoteNumber\"}}x{{/inline}}\n\
         {{*inline \"y\"}}\n\
         {{log quoteNumber}}\n\
         {{#if (lookup @root \"margin\")}}x{{/if}}",
    );
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok, "{stderr}");
    let file = format!("{FAMILY}/2026.12.0/body.txt.hbs");
    for expected in [
        format!("{file}:2:1: uses the helper 'lookup': a dynamic key escapes the check"),
        format!("{file}:3:1: uses the helper 'with'"),
        format!("{file}:4:1: uses the unknown helper 'formatMoney'"),
        format!("{file}:5:1: uses the partial 'quoteNumber': partials are not allowed"),
        format!(
            "{file}:6:1: uses the decorator '*inline': decorators and inline partials are not allowed"
        ),
        format!("{file}:7:1: uses the decorator '*inline'"),
        format!("{file}:8:1: uses the helper 'log'"),
        format!("{file}:9:1: uses the helper 'lookup'"),
    ] {
        assert_reports(&stderr, &expected);
    }
}

#[test]
fn a_block_parameter_is_not_refused_as_a_field() {
    let (_dir, topics, templates, bpmn) = workspace();
    customer_version(
        &templates,
        "2026.12.0",
        "items = \"list\"",
        "Your quote {{quoteNumber}}:{{#each items as |item idx|}} {{idx}}={{item}}{{/each}}",
    );
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(ok, "{stderr}");
    let registry = TemplateRegistry::load(&templates).unwrap();
    let template = registry.get(FAMILY, "2026.12.0").unwrap();
    let rendered = registry
        .render(
            template,
            &json!({"quoteNumber": "Q-7", "items": ["lamp", "desk"]}),
        )
        .unwrap();
    assert_eq!(rendered.text, "Your quote Q-7: 0=lamp 1=desk");
    // A block parameter goes no further than its item.
    customer_version(
        &templates,
        "2026.12.1",
        "items = \"list\"",
        "Your quote {{quoteNumber}}{{#each items as |item|}}{{item.margin}}{{/each}}",
    );
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok);
    assert_reports(
        &stderr,
        &format!(
            "{FAMILY}/2026.12.1/body.txt.hbs:1:52: uses 'item.margin', which goes below the block parameter 'item'"
        ),
    );
}

#[test]
fn a_reviewed_exception_lets_a_customer_facing_name_through_and_needs_a_reviewer() {
    let (_dir, topics, templates, bpmn) = workspace();
    customer_version(
        &templates,
        "2026.12.0",
        "shippingCost = \"number\"",
        "Your quote {{quoteNumber}}, shipping {{shippingCost}}",
    );
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok);
    assert_reports(&stderr, "payload.shippingCost: a CUSTOMER template");
    // Appended to the shipped classification.
    let fields = templates.join("fields.toml");
    let shipped = std::fs::read_to_string(&fields).unwrap();
    let entry = |reviewed_by: &str| {
        format!(
            "{shipped}\n[[allow]]\nname = \"shippingCost\"\nreason = \"what the customer pays for shipping\"\nreviewed_by = \"{reviewed_by}\"\n"
        )
    };
    std::fs::write(&fields, entry("commercial-legal")).unwrap();
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(ok, "{stderr}");
    std::fs::write(&fields, entry(" ")).unwrap();
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok);
    assert_reports(
        &stderr,
        "templates/fields.toml: allow 'shippingCost': reviewed_by is empty",
    );
}

#[test]
fn rendering_refuses_a_payload_field_named_like_internal_data() {
    let registry = TemplateRegistry::load(&Path::new(MANIFEST_DIR).join("templates")).unwrap();
    let template = registry.get(FAMILY, "2026.07.0").unwrap();
    let good = json!({"quoteNumber": "Q-1", "revisionNo": 2, "customerDisplayName": "A", "documentReference": "d"});
    registry.render(template, &good).unwrap();
    for name in VARIANTS {
        let mut leaky = good.clone();
        leaky[*name] = json!(0.31);
        let err = registry.render(template, &leaky).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Leak { field, .. } if field == name),
            "{name}: {err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("{FAMILY}:2026.07.0"))
                && message.contains(&format!("internal field '{name}'")),
            "{message}"
        );
        assert!(registry.validate(template, &leaky).is_err());
    }
    let mut disguised = good;
    disguised["m\u{0430}rgin"] = json!(0.31);
    let err = registry.validate(template, &disguised).unwrap_err();
    assert!(
        matches!(&err, TemplateError::Payload { field, .. } if field == "m\u{0430}rgin")
            && err.to_string().contains("ASCII identifier"),
        "{err}"
    );
}

#[test]
fn an_html_body_may_not_write_a_value_unescaped() {
    let (_dir, topics, templates, bpmn) = workspace();
    let dir = add_version(
        &templates,
        FAMILY,
        "2026.12.9",
        "locale = \"en\"\naudience = \"CUSTOMER\"\neffective_from = \"2027-01-01T00:00:00Z\"\n[payload]\nquoteNumber = \"string\"",
        "Quote {{quoteNumber}}",
    );
    std::fs::write(
        dir.join("body.html.hbs"),
        "<p>Quote</p>\n<p>{{{quoteNumber}}}</p>",
    )
    .unwrap();
    let (ok, stderr) = herald_check(&topics, &templates, &bpmn);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "{FAMILY}/2026.12.9/body.html.hbs:2:4: writes a value unescaped"
        )),
        "{stderr}"
    );
}
