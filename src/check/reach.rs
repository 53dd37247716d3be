//! What reaches a template, judged across time: every rule and topic against every version of
//! every family it names that is or will become effective (not only today's), along the whole
//! path: the event's paths or the handler's values → the mapping → the version's payload
//! schema, its audience (a customer recipient gets CUSTOMER families only) and its category;
//! and the classification by origin (`templates/fields.toml`): a CUSTOMER version receives
//! only values that enter herald customer-visible.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::ledger::MessageCategory;
use crate::policy::channel_choice::{check_channels, family_for};
use crate::policy::rules::{EventRule, RuleSet};
use crate::templates::{origins_of, Audience, Origin, PassedField, Template, TemplateRegistry};
use crate::workers::TopicConfig;

/// What a rule or topic passes to a template.
enum Passes<'a> {
    /// A rule's mapping: template field → event path (herald adds `recipientName`).
    Rule(&'a EventRule),
    /// A handler's payload.
    Handler(&'static [PassedField]),
    /// A digest: `count`, `items` (and `recipientName`).
    Digest,
}

/// Who asks: what messages name it, who it reaches, its category, when it applies.
struct Asker<'a> {
    at: String,
    reaches: Option<Audience>,
    category: MessageCategory,
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    origins: Vec<(&'a str, Origin<'a>)>,
}

pub(super) fn check_rules(
    rules: &RuleSet,
    rules_file: &Path,
    registry: &TemplateRegistry,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, rule) in rules.rules.iter().enumerate() {
        let at = format!("{}: rule[{n}] '{}'", rules_file.display(), rule.id);
        for problem in check_channels(
            &rule.channels,
            &rule.template_family,
            &rule.channel_templates,
            Some(registry),
        ) {
            problems.push(format!("{at}: {problem}"));
        }
        let asker = Asker {
            at: at.clone(),
            reaches: rule.reaches(),
            category: rule.category,
            from: rule.effective_from,
            until: rule.effective_until,
            origins: rule.origins(),
        };
        for &channel in &rule.channels {
            let family = family_for(channel, &rule.template_family, &rule.channel_templates);
            problems.extend(judge_family(
                &asker,
                &format!("template_family ({channel})"),
                family,
                Passes::Rule(rule),
                registry,
                now,
            ));
        }
        problems.extend(check_digest(rule, &asker, registry, now));
    }
    problems
}

/// A rule's digest or summary family: `count` and `items`, the items' family's audience, and
/// the recipient's.
fn check_digest(
    rule: &EventRule,
    asker: &Asker<'_>,
    registry: &TemplateRegistry,
    now: DateTime<Utc>,
) -> Vec<String> {
    let collected = rule
        .digest
        .clone()
        .or_else(|| rule.aggregate.as_ref().map(|a| a.as_digest()));
    let Some(digest) = collected else {
        return Vec::new();
    };
    let digest_asker = Asker {
        at: asker.at.clone(),
        origins: rule.digest_origins(),
        ..*asker
    };
    judge_family(
        &digest_asker,
        "digest.template_family",
        &digest.template_family,
        Passes::Digest,
        registry,
        now,
    )
}

pub(super) fn check_topics(
    topics: &[TopicConfig],
    topics_dir: &Path,
    registry: &TemplateRegistry,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for topic in topics {
        let at = topics_dir
            .join(format!("{}.toml", topic.topic))
            .display()
            .to_string();
        for problem in check_channels(
            &topic.channels,
            &topic.template_family,
            &topic.channel_templates,
            Some(registry),
        ) {
            problems.push(format!("{at}: {problem}"));
        }
        let payload = topic.handler.payload();
        let asker = Asker {
            at: at.clone(),
            reaches: Some(topic.handler.reaches()),
            category: topic.category,
            from: topic.effective_from.unwrap_or(now),
            until: topic.effective_until,
            origins: origins_of(payload, &topic.topic),
        };
        for &channel in &topic.channels {
            let family = family_for(channel, &topic.template_family, &topic.channel_templates);
            problems.extend(judge_family(
                &asker,
                &format!("template_family ({channel})"),
                family,
                Passes::Handler(payload),
                registry,
                now,
            ));
        }
    }
    problems
}

/// Every version of `family` the asker can select, from the later of now and its start until
/// its end: one must be effective when it starts, and each must take what it passes.
fn judge_family(
    asker: &Asker<'_>,
    field: &str,
    family: &str,
    passes: Passes<'_>,
    registry: &TemplateRegistry,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let start = asker.from.max(now);
    if asker.until.is_some_and(|until| until <= now) {
        return problems;
    }
    if let Err(e) = registry.resolve(family, None, None, start) {
        problems.push(format!("{}: {field}: {e}", asker.at));
    }
    let versions = registry.selectable(family, start).into_iter().filter(|t| {
        asker
            .until
            .is_none_or(|until| t.meta.effective_from < until)
    });
    for template in versions {
        let about = format!(
            "{}: {field}: {} (effective from {}, {})",
            asker.at,
            template.id(),
            template.meta.effective_from.to_rfc3339(),
            template.dir.join("template.toml").display()
        );
        for problem in judge_version(asker, template, &passes, registry) {
            problems.push(format!("{about}: {problem}"));
        }
    }
    problems
}

/// What is wrong with one version for one asker.
fn judge_version(
    asker: &Asker<'_>,
    template: &Template,
    passes: &Passes<'_>,
    registry: &TemplateRegistry,
) -> Vec<String> {
    let mut problems = Vec::new();
    let meta = &template.meta;
    if asker.reaches == Some(Audience::Customer) && meta.audience != Audience::Customer {
        problems.push(format!(
            "audience {}: this reaches customers, who get CUSTOMER families only",
            meta.audience
        ));
    }
    if meta.category != asker.category {
        problems.push(format!(
            "category {}: this asks for {} (consent and opt-outs follow the category, so the two must agree)",
            meta.category, asker.category
        ));
    }
    match passes {
        Passes::Rule(rule) => {
            let mapping = &rule.payload;
            for field in mapping.keys() {
                if !meta.payload.contains_key(field) {
                    problems.push(format!("payload.{field}: not in the payload schema"));
                }
            }
            // herald fills in recipientName from a contact or an engine user, not from an address.
            let named = rule.recipient_name().is_some();
            for (field, kind) in &meta.payload {
                if kind.required
                    && !(field == "recipientName" && named)
                    && !mapping.contains_key(field)
                {
                    problems.push(format!("payload.{field}: the version requires it"));
                }
            }
        }
        Passes::Handler(fields) => {
            for passed in fields.iter() {
                match meta.payload.get(passed.name) {
                    None => problems.push(format!(
                        "payload.{}: the handler passes it, but it is not in the payload schema",
                        passed.name
                    )),
                    Some(kind) if kind.kind != passed.kind => problems.push(format!(
                        "payload.{}: the handler passes a {:?}, the schema says {:?}",
                        passed.name, passed.kind, kind.kind
                    )),
                    Some(kind) if kind.required && !passed.always => problems.push(format!(
                        "payload.{}: required, but the handler does not always pass it (make it optional: '?')",
                        passed.name
                    )),
                    Some(_) => {}
                }
            }
            for (field, kind) in &meta.payload {
                if kind.required && !fields.iter().any(|p| p.name == field) {
                    problems.push(format!(
                        "payload.{field}: the version requires it, but the handler never passes it"
                    ));
                }
            }
        }
        Passes::Digest => {
            for field in ["count", "items"] {
                if !meta.payload.contains_key(field) {
                    problems.push(format!("payload.{field}: a digest's schema needs it"));
                }
            }
        }
    }
    for (field, reason) in registry.origin_problems(template, &asker.origins) {
        problems.push(format!("payload.{field}: {reason}"));
    }
    problems
}
