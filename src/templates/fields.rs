//! `templates/fields.toml`: the classification of every value that can reach a template, by
//! where it enters herald (a path of a business event, a topic's process variable, a field of
//! the contact directory or of an artifact), and the reviewed exceptions to the name guard.
//!
//! A value is internal unless this file declares it customer-visible where it enters: a
//! CUSTOMER template may receive only customer-visible values. `herald check` follows every
//! path (event or task → rule or topic mapping → payload schema → template expression), and
//! the intake checks the same before it renders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::guard::{AllowedName, NameGuard};
use super::schema::FieldKind;
use super::{invalid, TemplateError};

/// The file beside the template families.
pub const FIELDS_FILE: &str = "fields.toml";

/// The event type whose declarations hold for every event (the envelope: `occurredAt`, …).
pub const EVERY_EVENT: &str = "*";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsFile {
    /// Event type (or `*`) → the event paths a customer may see.
    #[serde(default)]
    events: BTreeMap<String, Declared>,
    /// Topic → the process variables a customer may see.
    #[serde(default)]
    topics: BTreeMap<String, Declared>,
    /// The contact directory's fields a customer may see.
    #[serde(default)]
    contacts: Declared,
    /// The artifact fields a customer may see.
    #[serde(default)]
    artifacts: Declared,
    #[serde(default)]
    allow: Vec<AllowedName>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    #[serde(default)]
    customer: BTreeSet<String>,
}

/// Where a value a template receives comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A path of a business event of a type (`data.orderNumber` of `OrderCreated`).
    Event { event_type: &'a str, path: &'a str },
    /// A process variable a topic's handler reads (or the same field of the API command that
    /// sends through the topic).
    Variable { topic: &'a str, name: &'a str },
    /// A field of herald's contact directory (`displayName`).
    Contact(&'a str),
    /// A field of an artifact (`fileName`).
    Artifact(&'a str),
    /// The engine's data: user and task names, business keys. Internal by nature.
    Engine(&'a str),
    /// Made by herald for the recipient: a portal link, its expiry, a count, a constant.
    Herald(&'a str),
    /// The rendered subject of another template family (a digest's lines).
    Rendered { family: &'a str },
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Event { event_type, path } => write!(f, "event {event_type} '{path}'"),
            Origin::Variable { topic, name } => write!(f, "variable '{name}' of topic {topic}"),
            Origin::Contact(field) => write!(f, "contact field '{field}'"),
            Origin::Artifact(field) => write!(f, "artifact field '{field}'"),
            Origin::Engine(what) => write!(f, "engine data '{what}'"),
            Origin::Herald(what) => write!(f, "herald's {what}"),
            Origin::Rendered { family } => write!(f, "the rendered subject of {family}"),
        }
    }
}

/// Where a handler's payload field comes from, before the topic is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Variable(&'static str),
    Contact(&'static str),
    Artifact(&'static str),
    Engine(&'static str),
    Herald(&'static str),
}

/// One field a handler passes to its template: its type, whether it is always there (not
/// null), and where its value comes from. Each handler declares its payload as a list of these,
/// and a test holds the list to the payload it builds.
#[derive(Debug, Clone, Copy)]
pub struct PassedField {
    pub name: &'static str,
    pub kind: FieldKind,
    pub always: bool,
    pub source: Source,
}

impl PassedField {
    pub fn origin<'a>(&self, topic: &'a str) -> Origin<'a> {
        match self.source {
            Source::Variable(name) => Origin::Variable { topic, name },
            Source::Contact(field) => Origin::Contact(field),
            Source::Artifact(field) => Origin::Artifact(field),
            Source::Engine(what) => Origin::Engine(what),
            Source::Herald(what) => Origin::Herald(what),
        }
    }
}

/// The origin of each field of a handler's payload, for `topic`.
pub fn origins_of<'a>(
    fields: &'static [PassedField],
    topic: &'a str,
) -> Vec<(&'static str, Origin<'a>)> {
    fields.iter().map(|f| (f.name, f.origin(topic))).collect()
}

/// Holds a handler's declared payload to the payloads it builds: `full` with every optional
/// value present, `sparse` with none. Each must have exactly the declared fields, of the
/// declared kinds; `sparse` is null exactly where a field is not always passed.
#[cfg(test)]
pub(crate) fn assert_declared(
    fields: &[PassedField],
    full: &serde_json::Value,
    sparse: &serde_json::Value,
) {
    use super::schema::FieldType;
    for (payload, all_present) in [(full, true), (sparse, false)] {
        let object = payload.as_object().expect("a payload is an object");
        let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut declared: Vec<&str> = fields.iter().map(|f| f.name).collect();
        names.sort_unstable();
        declared.sort_unstable();
        assert_eq!(
            names, declared,
            "the payload's fields are the declared ones"
        );
        for field in fields {
            let value = &object[field.name];
            let kind = FieldType {
                kind: field.kind,
                required: true,
            };
            if all_present || field.always {
                assert!(
                    kind.accepts(value),
                    "{}: {value} is not a {:?}",
                    field.name,
                    field.kind
                );
            } else {
                assert!(
                    value.is_null(),
                    "{}: optional, so null in the sparse payload",
                    field.name
                );
            }
        }
    }
}

/// What `fields.toml` says.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub guard: NameGuard,
    path: PathBuf,
    events: BTreeMap<String, BTreeSet<String>>,
    topics: BTreeMap<String, BTreeSet<String>>,
    contacts: BTreeSet<String>,
    artifacts: BTreeSet<String>,
}

impl Fields {
    /// The fields file of the templates in `dir` (none: nothing is customer-visible, no
    /// exceptions).
    pub fn read(dir: &Path) -> Result<Fields, TemplateError> {
        let path = dir.join(FIELDS_FILE);
        let file: FieldsFile = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| invalid(&path, e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FieldsFile::default(),
            Err(e) => return Err(invalid(&path, e.to_string())),
        };
        let flat = |d: BTreeMap<String, Declared>| {
            d.into_iter()
                .map(|(k, v)| (k, v.customer))
                .collect::<BTreeMap<_, _>>()
        };
        Ok(Fields {
            guard: NameGuard::new(file.allow).map_err(|message| invalid(&path, message))?,
            events: flat(file.events),
            topics: flat(file.topics),
            contacts: file.contacts.customer,
            artifacts: file.artifacts.customer,
            path,
        })
    }

    /// The file these declarations come from, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a value from `origin` may reach a customer template; why not, when not. A value
    /// declared customer-visible whose name the guard calls internal is refused all the same
    /// (the allow-list is the one way past the guard).
    pub fn customer_may_see(&self, origin: &Origin) -> Result<(), String> {
        let declared = match origin {
            Origin::Event { event_type, path } => {
                let of = |t: &str| self.events.get(t).is_some_and(|d| d.contains(*path));
                of(event_type) || of(EVERY_EVENT)
            }
            Origin::Variable { topic, name } => {
                self.topics.get(*topic).is_some_and(|d| d.contains(*name))
            }
            Origin::Contact(field) => self.contacts.contains(*field),
            Origin::Artifact(field) => self.artifacts.contains(*field),
            Origin::Engine(_) => {
                return Err(format!(
                    "{origin} is internal: only internal templates show the engine's data"
                ))
            }
            Origin::Herald(_) => return Ok(()),
            // The family's audience decides; the caller knows it.
            Origin::Rendered { .. } => return Ok(()),
        };
        if !declared {
            return Err(format!(
                "{origin} is internal: it is not declared customer-visible in {}",
                self.path.display()
            ));
        }
        let name = match origin {
            Origin::Event { path, .. } => *path,
            Origin::Variable { name, .. } => name,
            Origin::Contact(field) | Origin::Artifact(field) => field,
            _ => "",
        };
        if let Some(segment) = name.split('.').find(|s| self.guard.is_internal(s)) {
            return Err(format!(
                "{origin} is internal by its name ('{segment}'), although {} declares it customer-visible; a reviewed [[allow]] entry is the only way past the name guard",
                self.path.display()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Fields {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FIELDS_FILE), text).unwrap();
        Fields::read(dir.path()).unwrap()
    }

    #[test]
    fn only_what_is_declared_where_it_enters_is_customer_visible() {
        let f = fields(
            r#"
[events."*"]
customer = ["occurredAt"]
[events.OrderCreated]
customer = ["data.orderNumber", "data.marginPct"]
[topics.send-proposal]
customer = ["quoteId"]
[contacts]
customer = ["displayName"]
"#,
        );
        let event = |event_type, path| Origin::Event { event_type, path };
        assert!(f
            .customer_may_see(&event("OrderCreated", "data.orderNumber"))
            .is_ok());
        assert!(f
            .customer_may_see(&event("OrderCreated", "occurredAt"))
            .is_ok());
        // Declared for another event type, or not at all: internal.
        let other = f
            .customer_may_see(&event("QuoteAccepted", "data.orderNumber"))
            .unwrap_err();
        assert!(other.contains("not declared customer-visible"), "{other}");
        assert!(f
            .customer_may_see(&event("OrderCreated", "data.note"))
            .is_err());
        // A path below a declared one is not declared.
        assert!(f
            .customer_may_see(&event("OrderCreated", "data.orderNumber.cost"))
            .is_err());
        // Declared, but internal by its name: refused all the same.
        let named = f
            .customer_may_see(&event("OrderCreated", "data.marginPct"))
            .unwrap_err();
        assert!(named.contains("internal by its name"), "{named}");
        let var = |name| Origin::Variable {
            topic: "send-proposal",
            name,
        };
        assert!(f.customer_may_see(&var("quoteId")).is_ok());
        assert!(f.customer_may_see(&var("approvalComment")).is_err());
        assert!(f.customer_may_see(&Origin::Contact("displayName")).is_ok());
        assert!(f.customer_may_see(&Origin::Contact("email")).is_err());
        assert!(f.customer_may_see(&Origin::Artifact("fileName")).is_err());
        assert!(f.customer_may_see(&Origin::Engine("taskName")).is_err());
        assert!(f.customer_may_see(&Origin::Herald("portal link")).is_ok());
    }

    #[test]
    fn no_file_declares_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fields::read(dir.path()).unwrap();
        assert!(f.customer_may_see(&Origin::Contact("displayName")).is_err());
    }

    #[test]
    fn unknown_sections_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FIELDS_FILE),
            "[event.OrderCreated]\ncustomer = []\n",
        )
        .unwrap();
        assert!(Fields::read(dir.path()).is_err());
    }
}
