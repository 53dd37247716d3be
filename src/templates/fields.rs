//! `templates/fields.toml`: what may reach a CUSTOMER template, and the reviewed exceptions to
//! the name guard.

use std::path::Path;

use serde::Deserialize;

use super::guard::{AllowedName, NameGuard};
use super::{invalid, TemplateError};

/// The file beside the template families.
pub const FIELDS_FILE: &str = "fields.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsFile {
    #[serde(default)]
    allow: Vec<AllowedName>,
}

/// What `fields.toml` says.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub guard: NameGuard,
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
        Ok(Fields {
            guard: NameGuard::new(file.allow).map_err(|message| invalid(&path, message))?,
        })
    }
}
