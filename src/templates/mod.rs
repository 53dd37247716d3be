//! Templates: a registry of versioned template families loaded from `templates/`, version
//! resolution by effective date and locale, and strict rendering.
//!
//! Layout: `templates/<family>/<version>/template.toml` (metadata), `subject.hbs`,
//! `body.html.hbs`, `body.txt.hbs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use handlebars::Handlebars;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ledger::{Channel, MessageCategory};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("no template of family '{family}' is effective at {at} for locale '{locale}'")]
    NotFound {
        family: String,
        locale: String,
        at: DateTime<Utc>,
    },
    #[error("template {family}:{version} not found")]
    UnknownVersion { family: String, version: String },
    #[error("template {name}: {message}")]
    Render { name: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Audience {
    Internal,
    Customer,
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
    pub effective_from: DateTime<Utc>,
    pub approved_by: Option<String>,
    /// The payload fields the template may use.
    pub payload_fields: Vec<String>,
    #[serde(default = "default_retention")]
    pub retention: String,
}

fn default_retention() -> String {
    "HASH_ONLY".into()
}

#[derive(Debug, Clone)]
pub struct Template {
    pub meta: TemplateMeta,
    pub dir: PathBuf,
    /// sha256 over the three bodies: an approved version must never change.
    pub source_hash: String,
}

impl Template {
    pub fn id(&self) -> String {
        format!("{}:{}", self.meta.family, self.meta.version)
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
    /// HTML bodies: variables escaped.
    html: Handlebars<'static>,
    /// Subjects and text bodies: no HTML escaping.
    plain: Handlebars<'static>,
}

impl TemplateRegistry {
    /// Loads and compiles every template under `dir`; any error names its file.
    pub fn load(dir: &Path) -> Result<TemplateRegistry, TemplateError> {
        let invalid = |path: &Path, message: String| TemplateError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        let mut templates = Vec::new();
        let families = std::fs::read_dir(dir).map_err(|e| invalid(dir, e.to_string()))?;
        let mut version_dirs = Vec::new();
        for family in families {
            let family = family.map_err(|e| invalid(dir, e.to_string()))?.path();
            if !family.is_dir() {
                continue;
            }
            for version in
                std::fs::read_dir(&family).map_err(|e| invalid(&family, e.to_string()))?
            {
                let version = version.map_err(|e| invalid(&family, e.to_string()))?.path();
                if version.is_dir() {
                    version_dirs.push(version);
                }
            }
        }
        version_dirs.sort();
        for vdir in version_dirs {
            let meta_path = vdir.join("template.toml");
            let text = std::fs::read_to_string(&meta_path)
                .map_err(|e| invalid(&meta_path, e.to_string()))?;
            let meta: TemplateMeta =
                toml::from_str(&text).map_err(|e| invalid(&meta_path, e.to_string()))?;
            let family_dir = vdir
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str());
            let version_dir = vdir.file_name().and_then(|n| n.to_str());
            if family_dir != Some(meta.family.as_str())
                || version_dir != Some(meta.version.as_str())
            {
                return Err(invalid(
                    &meta_path,
                    format!(
                        "family/version '{}:{}' do not match the folder",
                        meta.family, meta.version
                    ),
                ));
            }
            let mut hasher = Sha256::new();
            for part in ["subject", "body.txt", "body.html"] {
                let registry = if part == "body.html" {
                    &mut html
                } else {
                    &mut plain
                };
                let path = vdir.join(format!("{part}.hbs"));
                let source =
                    std::fs::read_to_string(&path).map_err(|e| invalid(&path, e.to_string()))?;
                check_fields(&source, &meta.payload_fields).map_err(|m| invalid(&path, m))?;
                hasher.update(source.as_bytes());
                registry
                    .register_template_string(&part_name(&meta.family, &meta.version, part), source)
                    .map_err(|e| invalid(&path, e.to_string()))?;
            }
            templates.push(Template {
                meta,
                dir: vdir,
                source_hash: hex::encode(hasher.finalize()),
            });
        }
        Ok(TemplateRegistry {
            templates,
            html,
            plain,
        })
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The version of `family` effective at `at` for `locale`, falling back from the most
    /// specific locale to the language, then to English (`de-AT` → `de` → `en`).
    pub fn resolve(
        &self,
        family: &str,
        locale: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<&Template, TemplateError> {
        let requested = locale.unwrap_or("en");
        for candidate in locale_chain(requested) {
            let best = self
                .templates
                .iter()
                .filter(|t| {
                    t.meta.family == family && t.meta.locale.eq_ignore_ascii_case(&candidate)
                })
                .filter(|t| t.meta.approved_by.is_some() && t.meta.effective_from <= at)
                .max_by_key(|t| t.meta.effective_from);
            if let Some(t) = best {
                return Ok(t);
            }
        }
        Err(TemplateError::NotFound {
            family: family.into(),
            locale: requested.into(),
            at,
        })
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

    /// Renders in strict mode: a variable missing from the payload is an error, never "".
    pub fn render(&self, template: &Template, payload: &Value) -> Result<Rendered, TemplateError> {
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

fn part_name(family: &str, version: &str, part: &str) -> String {
    format!("{family}/{version}/{part}")
}

fn locale_chain(locale: &str) -> Vec<String> {
    let mut chain = vec![locale.to_string()];
    if let Some((language, _)) = locale.split_once(['-', '_']) {
        chain.push(language.to_string());
    }
    if !chain.iter().any(|l| l.eq_ignore_ascii_case("en")) {
        chain.push("en".into());
    }
    chain
}

/// Every `{{name}}` a template uses must be a declared payload field.
fn check_fields(source: &str, allowed: &[String]) -> Result<(), String> {
    let allowed: BTreeSet<&str> = allowed.iter().map(String::as_str).collect();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("unclosed '{{'".into());
        };
        let expr = after[..end].trim_matches(|c| c == '{' || c == '}' || c == '~' || c == ' ');
        rest = &after[end + 2..];
        if expr.starts_with('!')
            || expr.starts_with('#')
            || expr.starts_with('/')
            || expr.starts_with("else")
        {
            continue;
        }
        let root = expr.split(['.', ' ']).next().unwrap_or("");
        if !root.is_empty() && !allowed.contains(root) {
            return Err(format!("uses '{root}', which is not in payload_fields"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_falls_back_to_language_then_english() {
        assert_eq!(locale_chain("de-AT"), vec!["de-AT", "de", "en"]);
        assert_eq!(locale_chain("en"), vec!["en"]);
        assert_eq!(locale_chain("fr"), vec!["fr", "en"]);
    }

    #[test]
    fn fields_outside_the_payload_are_refused() {
        let allowed = vec!["quoteNumber".to_string()];
        assert!(check_fields("Quote {{quoteNumber}}", &allowed).is_ok());
        assert!(check_fields("{{#if quoteNumber}}x{{/if}}", &allowed).is_ok());
        let err = check_fields("Margin {{margin}}", &allowed).unwrap_err();
        assert!(err.contains("'margin'"), "{err}");
    }
}
