//! Templates with governance: a registry of versioned template families loaded from
//! `templates/`, version resolution by effective date, locale and market, payload schemas,
//! strict rendering, the leak guard for customer templates, and immutable approved versions.
//!
//! Layout: `templates/<family>/<version>/template.toml` (metadata and payload schema),
//! `subject.hbs`, `body.html.hbs`, `body.txt.hbs`; `templates/approved.lock` is the append-only
//! record of releases (the content hash of every approved version, its approver and time:
//! `herald check --record-templates`) and withdrawals (`herald templates withdraw`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use handlebars::Handlebars;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ledger::{Channel, MessageCategory, RecipientType};

mod audience;
mod expr;
pub(crate) mod fields;
mod guard;
mod register;
mod releases;
mod resolve;
mod schema;

use audience::audience_problems;
use resolve::same_market;

pub use expr::{analyse, Analysis, Finding};
pub use fields::{origins_of, Fields, Origin, PassedField, Source, EVERY_EVENT, FIELDS_FILE};
pub use guard::{
    is_identifier, is_internal_field, sanitize_note, AllowedName, NameGuard, INTERNAL_PATTERNS,
};
pub use register::{Anchored, RegisterError, ReleaseRegister};
pub use releases::{check_history, check_releases, withdraw, Release, Withdrawal};
pub use schema::{FieldKind, FieldType};

/// The release record: the content hash of each approved version, and the withdrawals.
pub const LOCK_FILE: &str = "approved.lock";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{} problem(s) in the templates:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Many(Vec<TemplateError>),
    #[error("no template of family '{family}' is effective at {at} for locale '{locale}'")]
    NotFound {
        family: String,
        locale: String,
        at: DateTime<Utc>,
    },
    #[error("template {family}:{version} not found")]
    UnknownVersion { family: String, version: String },
    #[error("template {name} was withdrawn on {at} by {by} ({reason}): it is never sent again")]
    Withdrawn {
        name: String,
        at: String,
        by: String,
        reason: String,
    },
    #[error("template {name}: {message}")]
    Render { name: String, message: String },
    #[error("template {name}: payload field '{field}': {message}")]
    Payload {
        name: String,
        field: String,
        message: String,
    },
    #[error("template {name} is for customers and may not see the internal field '{field}'")]
    Leak { name: String, field: String },
    #[error("template {name} is for customers and may not receive '{field}': {reason}")]
    Origin {
        name: String,
        field: String,
        reason: String,
    },
    #[error("template {name} is {audience}, and may not go to {recipient}")]
    Audience {
        name: String,
        audience: Audience,
        recipient: RecipientType,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Audience {
    Internal,
    Customer,
}

impl Audience {
    /// Who a recipient is: a contact, an address and a webhook subscriber are outside the
    /// company (customers, partners); engine users and groups are inside.
    pub fn of_recipient(recipient: RecipientType) -> Audience {
        match recipient {
            RecipientType::Contact
            | RecipientType::Address
            | RecipientType::WebhookSubscription => Audience::Customer,
            RecipientType::User | RecipientType::Group => Audience::Internal,
        }
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Audience::Internal => "INTERNAL",
            Audience::Customer => "CUSTOMER",
        })
    }
}

/// Governance metadata of one template version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateMeta {
    pub family: String,
    pub version: String,
    pub channel: Channel,
    pub locale: String,
    #[serde(default)]
    pub market: Option<String>,
    pub category: MessageCategory,
    pub audience: Audience,
    pub owner: String,
    #[serde(deserialize_with = "crate::iso8601::toml_datetime::required")]
    pub effective_from: DateTime<Utc>,
    /// Who approved the version; unapproved versions are never used.
    pub approved_by: Option<String>,
    /// The payload schema: the only fields the template may use and receive.
    pub payload: BTreeMap<String, FieldType>,
    #[serde(default = "default_retention")]
    pub retention: String,
    /// WEBHOOK templates: the event type receivers see (`quote.accepted`). Their payload schema
    /// is the contract of the `data` object; they have no bodies.
    #[serde(default)]
    pub event_type: Option<String>,
}

impl TemplateMeta {
    /// The body files a template of this channel has.
    fn parts(&self) -> &'static [&'static str] {
        match self.channel {
            Channel::Webhook => &[],
            Channel::Email | Channel::InApp => &PARTS,
        }
    }
}

fn default_retention() -> String {
    "HASH_ONLY".into()
}

#[derive(Debug, Clone)]
pub struct Template {
    pub meta: TemplateMeta,
    pub dir: PathBuf,
    /// sha256 over the metadata and the three bodies: an approved version must never change.
    pub source_hash: String,
}

impl Template {
    pub fn id(&self) -> String {
        format!("{}:{}", self.meta.family, self.meta.version)
    }

    pub fn is_approved(&self) -> bool {
        self.meta
            .approved_by
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty())
    }
}

/// A message rendered from a template.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
    /// sha256 of subject, text and html: the evidence of what was said.
    pub content_hash: String,
}

pub struct TemplateRegistry {
    templates: Vec<Template>,
    /// `fields.toml`: what may reach a customer template.
    fields: Fields,
    /// HTML bodies: variables escaped.
    html: Handlebars<'static>,
    /// Subjects and text bodies: no HTML escaping.
    plain: Handlebars<'static>,
    /// Withdrawn releases, by id: never resolved.
    withdrawn: BTreeMap<String, Withdrawal>,
    /// Every release of the record (withdrawn ones too), in its order.
    released: Vec<Release>,
}

const PARTS: [&str; 3] = ["subject", "body.txt", "body.html"];

impl TemplateRegistry {
    /// Loads, checks and compiles every template under `dir`. All problems are reported at
    /// once, each naming its file: schema, leak guard, and the release record (`approved.lock`):
    /// its chain, released versions that changed, were deleted or lost their approval without a
    /// withdrawal, approved versions never recorded.
    pub fn load(dir: &Path) -> Result<TemplateRegistry, TemplateError> {
        let (registry, problems) = Self::load_all(dir);
        if problems.is_empty() {
            Ok(registry)
        } else {
            Err(TemplateError::Many(problems))
        }
    }

    /// Appends a release of every approved version not yet in `approved.lock` (its content
    /// hash, approver and time); returns the ids it added. Anything else wrong refuses the
    /// record: a changed approved version is never re-recorded, a withdrawn one never released
    /// again, and a lock that lost entries of its git history is refused.
    pub fn record_approved(dir: &Path) -> Result<Vec<String>, TemplateError> {
        let (registry, mut problems) = Self::load_templates(dir);
        let withdrawn: Vec<String> = releases::Lock::read(dir)
            .withdrawals()
            .into_iter()
            .map(|w| w.id)
            .collect();
        problems.extend(ambiguity_problems(&registry.templates, |id| {
            withdrawn.iter().any(|w| w == id)
        }));
        releases::record(dir, &registry.templates, problems)
    }

    fn load_all(dir: &Path) -> (TemplateRegistry, Vec<TemplateError>) {
        let (mut registry, mut problems) = Self::load_templates(dir);
        let lock = releases::Lock::read(dir);
        let findings = lock.verify(dir, &registry.templates);
        problems.extend(findings.problems);
        problems.extend(findings.legacy);
        problems.extend(findings.unrecorded.into_iter().map(releases::unrecorded));
        registry.released = lock.releases();
        registry.withdrawn = lock
            .withdrawals()
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        problems.extend(ambiguity_problems(&registry.templates, |id| {
            registry.withdrawn.contains_key(id)
        }));
        (registry, problems)
    }

    /// The versions under `dir` and their problems, without the release record.
    fn load_templates(dir: &Path) -> (TemplateRegistry, Vec<TemplateError>) {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        let mut problems = Vec::new();
        let fields = Fields::read(dir).unwrap_or_else(|e| {
            problems.push(e);
            Fields::default()
        });
        let mut registry = TemplateRegistry {
            templates: Vec::new(),
            fields,
            html,
            plain,
            withdrawn: BTreeMap::new(),
            released: Vec::new(),
        };
        let version_dirs = match version_dirs(dir) {
            Ok(dirs) => dirs,
            Err(e) => {
                problems.push(e);
                return (registry, problems);
            }
        };
        for vdir in version_dirs {
            match registry.load_version(&vdir) {
                Ok(template) => registry.templates.push(template),
                Err(mut errors) => problems.append(&mut errors),
            }
        }
        problems.extend(audience_problems(&registry.templates));
        (registry, problems)
    }

    fn load_version(&mut self, vdir: &Path) -> Result<Template, Vec<TemplateError>> {
        let meta_path = vdir.join("template.toml");
        let text = std::fs::read_to_string(&meta_path)
            .map_err(|e| vec![invalid(&meta_path, e.to_string())])?;
        let meta: TemplateMeta =
            toml::from_str(&text).map_err(|e| vec![invalid(&meta_path, e.to_string())])?;
        let mut problems = Vec::new();
        let family_dir = vdir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str());
        let version_dir = vdir.file_name().and_then(|n| n.to_str());
        if family_dir != Some(meta.family.as_str()) || version_dir != Some(meta.version.as_str()) {
            problems.push(invalid(
                &meta_path,
                format!(
                    "family/version '{}:{}' do not match the folder",
                    meta.family, meta.version
                ),
            ));
        }
        if !matches!(
            meta.retention.as_str(),
            crate::content::HASH_ONLY | crate::content::ENCRYPTED_BODY
        ) {
            problems.push(invalid(
                &meta_path,
                format!(
                    "retention '{}': use HASH_ONLY or ENCRYPTED_BODY",
                    meta.retention
                ),
            ));
        }
        for field in meta.payload.keys() {
            if !is_identifier(field) {
                problems.push(invalid(
                    &meta_path,
                    format!(
                        "payload.{field}: a field name must be an ASCII identifier ([A-Za-z_][A-Za-z0-9_]*)"
                    ),
                ));
            } else if meta.audience == Audience::Customer && self.fields.guard.is_internal(field) {
                problems.push(invalid(
                    &meta_path,
                    format!("payload.{field}: a CUSTOMER template may not receive internal data"),
                ));
            }
        }
        match (meta.channel, meta.event_type.as_deref()) {
            (Channel::Webhook, None) => problems.push(invalid(
                &meta_path,
                "event_type: a WEBHOOK template names the event type receivers see".into(),
            )),
            (Channel::Webhook, Some(t))
                if t.trim().is_empty() || t.contains(char::is_whitespace) =>
            {
                problems.push(invalid(
                    &meta_path,
                    format!("event_type '{t}': no spaces, not empty"),
                ))
            }
            (Channel::Email | Channel::InApp, Some(_)) => problems.push(invalid(
                &meta_path,
                "event_type: only WEBHOOK templates have one".into(),
            )),
            _ => {}
        }
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        for &part in meta.parts() {
            let path = vdir.join(format!("{part}.hbs"));
            let source = match std::fs::read_to_string(&path) {
                Ok(source) => source,
                Err(e) => {
                    problems.push(invalid(&path, e.to_string()));
                    continue;
                }
            };
            // Every expression, against the payload schema (and the name guard for customers).
            let guard = (meta.audience == Audience::Customer).then_some(&self.fields.guard);
            let parsed = match expr::analyse(&source, &meta.payload, guard) {
                Ok(analysis) => {
                    problems.extend(analysis.findings.iter().map(|f| found(&path, f)));
                    // An HTML body escapes every value: a note or a name can never become markup.
                    if part == "body.html" {
                        problems.extend(analysis.unescaped.iter().map(|&(line, column)| {
                            found(
                                &path,
                                &expr::Finding {
                                    line,
                                    column,
                                    message: "writes a value unescaped ({{{…}}}): HTML bodies escape every value, write {{…}}".into(),
                                },
                            )
                        }));
                    }
                    true
                }
                Err(finding) => {
                    problems.push(found(&path, &finding));
                    false
                }
            };
            hasher.update((source.len() as u64).to_be_bytes());
            hasher.update(source.as_bytes());
            if !parsed {
                continue;
            }
            let registry = if part == "body.html" {
                &mut self.html
            } else {
                &mut self.plain
            };
            if let Err(e) = registry
                .register_template_string(&part_name(&meta.family, &meta.version, part), source)
            {
                problems.push(invalid(&path, e.to_string()));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Template {
            meta,
            dir: vdir.to_path_buf(),
            source_hash: hex::encode(hasher.finalize()),
        })
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The withdrawn releases (`herald templates withdraw`), in the record's order.
    pub fn withdrawals(&self) -> Vec<&Withdrawal> {
        let mut list: Vec<&Withdrawal> = self.withdrawn.values().collect();
        list.sort_by_key(|w| w.entry);
        list
    }

    /// Every release of the record (`herald check --record-templates`), withdrawn ones too, in
    /// the record's order.
    pub fn releases(&self) -> &[Release] {
        &self.released
    }

    /// Whether a version may be selected at all: approved and not withdrawn.
    fn in_force(&self, template: &Template) -> bool {
        template.is_approved() && !self.withdrawn.contains_key(&template.id())
    }

    /// What `fields.toml` says may reach a customer template.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The version a queued message names, as delivery renders it: a version withdrawn since
    /// the message was requested is never sent.
    pub fn for_delivery(&self, family: &str, version: &str) -> Result<&Template, TemplateError> {
        let template = self.get(family, version)?;
        match self.withdrawn.get(&template.id()) {
            Some(w) => Err(TemplateError::Withdrawn {
                name: template.id(),
                at: w.at.clone(),
                by: w.by.clone(),
                reason: w.reason.clone(),
            }),
            None => Ok(template),
        }
    }

    pub fn get(&self, family: &str, version: &str) -> Result<&Template, TemplateError> {
        self.templates
            .iter()
            .find(|t| t.meta.family == family && t.meta.version == version)
            .ok_or_else(|| TemplateError::UnknownVersion {
                family: family.into(),
                version: version.into(),
            })
    }

    /// Checks a payload against the template's schema and the leak guard.
    pub fn validate(&self, template: &Template, payload: &Value) -> Result<(), TemplateError> {
        let name = template.id();
        let Some(fields) = payload.as_object() else {
            return Err(TemplateError::Payload {
                name,
                field: String::new(),
                message: "the payload must be an object".into(),
            });
        };
        for (field, value) in fields {
            if !is_identifier(field) {
                return Err(TemplateError::Payload {
                    name,
                    field: field.clone(),
                    message: "a field name must be an ASCII identifier ([A-Za-z_][A-Za-z0-9_]*)"
                        .into(),
                });
            }
            if template.meta.audience == Audience::Customer && self.fields.guard.is_internal(field)
            {
                return Err(TemplateError::Leak {
                    name,
                    field: field.clone(),
                });
            }
            let Some(kind) = template.meta.payload.get(field) else {
                return Err(TemplateError::Payload {
                    name,
                    field: field.clone(),
                    message: "not in the template's payload schema (purpose-built payloads only)"
                        .into(),
                });
            };
            if !kind.accepts(value) {
                return Err(TemplateError::Payload {
                    name,
                    field: field.clone(),
                    message: format!("expected {:?}, got {}", kind.kind, json_type(value)),
                });
            }
        }
        for (field, kind) in &template.meta.payload {
            if kind.required && fields.get(field).is_none_or(Value::is_null) {
                return Err(TemplateError::Payload {
                    name,
                    field: field.clone(),
                    message: "required, but missing".into(),
                });
            }
        }
        Ok(())
    }

    /// Validates the payload, then renders in strict mode: a variable missing from the payload
    /// is an error, never "".
    pub fn render(&self, template: &Template, payload: &Value) -> Result<Rendered, TemplateError> {
        self.validate(template, payload)?;
        if template.meta.channel == Channel::Webhook {
            // The payload, checked against the schema, is the message: the adapter wraps it in
            // the envelope receivers see ({type, timestamp, data}).
            let text = payload.to_string();
            return Ok(Rendered {
                subject: template.meta.event_type.clone().unwrap_or_default(),
                content_hash: hex::encode(Sha256::digest(text.as_bytes())),
                html: String::new(),
                text,
            });
        }
        let (family, version) = (&template.meta.family, &template.meta.version);
        let render = |registry: &Handlebars<'static>, part: &str| {
            let name = part_name(family, version, part);
            registry
                .render(&name, payload)
                .map_err(|e| TemplateError::Render {
                    name: name.clone(),
                    message: e.to_string(),
                })
        };
        let subject = render(&self.plain, "subject")?
            .trim()
            .replace(['\r', '\n'], " ");
        let text = render(&self.plain, "body.txt")?;
        let html = render(&self.html, "body.html")?;
        let mut hasher = Sha256::new();
        for part in [&subject, &text, &html] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        Ok(Rendered {
            subject,
            html,
            text,
            content_hash: hex::encode(hasher.finalize()),
        })
    }
}

/// Two versions in force (approved, not `withdrawn`) that resolution could not tell apart: the
/// same family, locale, market and effective time (the folder order would decide).
fn ambiguity_problems(
    templates: &[Template],
    withdrawn: impl Fn(&str) -> bool,
) -> Vec<TemplateError> {
    let in_force = |t: &Template| t.is_approved() && !withdrawn(&t.id());
    let mut problems = Vec::new();
    for (i, t) in templates.iter().enumerate().filter(|(_, t)| in_force(t)) {
        if let Some(twin) = templates[..i].iter().find(|o| {
            in_force(o)
                && o.meta.family == t.meta.family
                && o.meta.locale.eq_ignore_ascii_case(&t.meta.locale)
                && same_market(o.meta.market.as_deref(), t.meta.market.as_deref())
                && o.meta.effective_from == t.meta.effective_from
        }) {
            problems.push(invalid(
                &t.dir.join("template.toml"),
                format!(
                    "effective_from: {} and {} are both effective from {} for locale '{}' and {}: resolution could not tell them apart",
                    twin.id(),
                    t.id(),
                    t.meta.effective_from.to_rfc3339(),
                    t.meta.locale,
                    t.meta.market.as_deref().map(|m| format!("market '{m}'")).unwrap_or_else(|| "all markets".into()),
                ),
            ));
        }
    }
    problems
}

/// A JSON value's type, for messages that must not show the value itself (it may be internal
/// or personal data).
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(items) if items.iter().all(Value::is_string) => "a list",
        Value::Array(_) => "a list with items other than strings",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn invalid(path: &Path, message: String) -> TemplateError {
    TemplateError::Invalid {
        path: path.display().to_string(),
        message,
    }
}

/// A finding in a template's source, named by its file, line and column.
fn found(path: &Path, finding: &Finding) -> TemplateError {
    TemplateError::Invalid {
        path: format!("{}:{}:{}", path.display(), finding.line, finding.column),
        message: finding.message.clone(),
    }
}

fn version_dirs(dir: &Path) -> Result<Vec<PathBuf>, TemplateError> {
    let mut dirs = Vec::new();
    for family in std::fs::read_dir(dir).map_err(|e| invalid(dir, e.to_string()))? {
        let family = family.map_err(|e| invalid(dir, e.to_string()))?.path();
        if !family.is_dir() {
            continue;
        }
        for version in std::fs::read_dir(&family).map_err(|e| invalid(&family, e.to_string()))? {
            let version = version.map_err(|e| invalid(&family, e.to_string()))?.path();
            if version.is_dir() {
                dirs.push(version);
            }
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn part_name(family: &str, version: &str, part: &str) -> String {
    format!("{family}/{version}/{part}")
}
