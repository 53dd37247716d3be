//! Releases of template versions: `templates/approved.lock` records the content hash of every
//! approved version, and an approved version never changes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{invalid, Template, TemplateError, LOCK_FILE};

/// `approved.lock`: the content hash of each approved version, by id (`family:version`).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
pub(super) struct Lock {
    #[serde(default)]
    approved: BTreeMap<String, String>,
}

impl Lock {
    /// The lock of the templates in `dir` (none yet: empty).
    pub(super) fn read(dir: &Path) -> Result<Lock, TemplateError> {
        let path = dir.join(LOCK_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| invalid(&path, e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
            Err(e) => Err(invalid(&path, e.to_string())),
        }
    }

    /// What is wrong with a loaded version as the lock sees it: an approved version that
    /// changed since it was recorded, or that was never recorded.
    pub(super) fn verify(&self, template: &Template) -> Option<TemplateError> {
        if !template.is_approved() {
            return None;
        }
        match self.approved.get(&template.id()) {
            Some(recorded) if *recorded != template.source_hash => Some(invalid(
                &template.dir,
                format!(
                    "approved version {} changed (content hash {}, recorded {}): approved versions are immutable, add a new version instead",
                    template.id(),
                    &template.source_hash[..12],
                    &recorded[..recorded.len().min(12)]
                ),
            )),
            Some(_) => None,
            None => Some(invalid(
                &template.dir,
                format!(
                    "approved version {} is not recorded in {LOCK_FILE}: run herald check --record-templates when it is released",
                    template.id(),
                ),
            )),
        }
    }
}

/// Records the content hash of every approved version of `templates` not yet in the lock of
/// `dir`; returns the ids it added. Any problem but an unrecorded version refuses the record.
pub(super) fn record(
    dir: &Path,
    templates: &[Template],
    problems: Vec<TemplateError>,
) -> Result<Vec<String>, TemplateError> {
    let blocking: Vec<TemplateError> = problems
        .into_iter()
        .filter(|p| !matches!(p, TemplateError::Invalid { message, .. } if message.contains("not recorded")))
        .collect();
    if !blocking.is_empty() {
        return Err(TemplateError::Many(blocking));
    }
    let lock_path = dir.join(LOCK_FILE);
    let mut lock = Lock::read(dir)?;
    let mut added = Vec::new();
    for template in templates.iter().filter(|t| t.is_approved()) {
        if let std::collections::btree_map::Entry::Vacant(entry) =
            lock.approved.entry(template.id())
        {
            entry.insert(template.source_hash.clone());
            added.push(template.id());
        }
    }
    if !added.is_empty() {
        let text = format!(
            "# Content hashes of approved template versions (herald check --record-templates).\n# An approved version is immutable: change the wording in a new version.\n{}",
            toml::to_string(&lock).map_err(|e| invalid(&lock_path, e.to_string()))?
        );
        std::fs::write(&lock_path, text).map_err(|e| invalid(&lock_path, e.to_string()))?;
    }
    Ok(added)
}
