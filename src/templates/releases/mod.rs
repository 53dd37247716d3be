//! Releases of template versions: `templates/approved.lock` is an append-only record of every
//! release (a version's content hash, its approver and the time) and every withdrawal, each
//! entry chained to the one before it. An approved version never changes; a release is taken
//! back only by a withdrawal, and a withdrawn version is never released again.
//!
//! The format (the header of every lock says the same):
//!
//! ```toml
//! [[entry]]
//! action = "RELEASE"
//! id = "quote-proposal-email:2026.07.0"
//! content = "<sha256 of the version, as the registry computes it>"
//! approved_by = "<the version's approved_by>"
//! at = "2026-12-01T19:00:00Z"
//! link = "<sha256, see below>"
//!
//! [[entry]]
//! action = "WITHDRAW"
//! id = "quote-proposal-email:2026.07.0"
//! content = "<the content hash of the release it withdraws>"
//! by = "<who withdrew it>"
//! reason = "<why>"
//! at = "2026-12-02T08:00:00Z"
//! link = "<sha256>"
//! ```
//!
//! `link` is the sha256 (hex) over the previous entry's link (the empty string for the first
//! entry) and this entry's fields in the order action, id, content, approved_by, by, reason, at
//! (the fields it does not have left out), the link and each field name and value preceded by
//! its length in bytes as a big-endian u64. An edited, removed, inserted or reordered entry
//! breaks the chain. A removed tail keeps it intact: [`check_history`] finds it in the
//! repository's history of the file. The chain has no key: a lock rewritten with every link
//! recomputed passes it, and passes the history where there is none (a shallow clone, an
//! archive); `herald run` refuses it against the releases its database anchored
//! (`super::register`). A release names its version's approver.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};

use super::{invalid, Template, TemplateError, LOCK_FILE};

mod chain;
mod history;

use chain::*;
use history::*;

pub(super) use chain::short;
pub use chain::{Release, Withdrawal};

/// What the file says it is; written at the top of every new (or converted) lock.
const HEADER: &str = "\
# The release record of herald's template versions. APPEND-ONLY: never edit, remove or
# reorder an entry; entries are added by `herald check --record-templates` (a RELEASE of each
# newly approved version) and `herald templates withdraw FAMILY:VERSION --reason TEXT` (a
# WITHDRAW; a withdrawn version is never resolved, nor released again: add a new version).
#
# RELEASE: id (family:version), content (the sha256 herald computes over the version's
# template.toml and bodies: an approved version never changes), approved_by (the version's
# approver), at (RFC 3339). WITHDRAW: id, content (of the release it withdraws), by, reason, at.
# link: the sha256 over the previous entry's link (the empty string for the first entry) and
# this entry's fields in the order action, id, content, approved_by, by, reason, at (the fields
# it does not have left out), the link and each field name and value preceded by its length in
# bytes as a big-endian u64. An edited, removed, inserted or reordered entry breaks the chain;
# `herald check` compares the file with every committed version of it for a removed tail.
";

/// The lock of a templates folder: its text as read, and the record it holds.
pub(super) struct Lock {
    path: PathBuf,
    /// The file's text (empty when there is no file yet); new entries go after it.
    text: String,
    form: Form,
    entries: Vec<Entry>,
    state: State,
    /// What is wrong with the record itself.
    problems: Vec<String>,
}

/// What a lock file turned out to be.
enum Form {
    /// The record (its entries in [`Lock::entries`]).
    Record,
    /// The earlier map of content hashes by id.
    Legacy(BTreeMap<String, String>),
    /// A file that does not read or parse.
    Unreadable(String),
}

/// What the lock says of the loaded versions.
pub(super) struct Findings<'a> {
    /// Everything wrong but what recording fixes.
    pub problems: Vec<TemplateError>,
    /// Approved versions with no release yet (recording adds them).
    pub unrecorded: Vec<&'a Template>,
    /// The lock is in the earlier format (recording converts it).
    pub legacy: Option<TemplateError>,
}

impl Lock {
    /// The lock of the templates in `dir` (none yet: an empty record).
    pub(super) fn read(dir: &Path) -> Lock {
        let path = dir.join(LOCK_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Lock::from_text(path, text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Lock::from_text(path, String::new())
            }
            Err(e) => Lock {
                path,
                text: String::new(),
                form: Form::Unreadable(e.to_string()),
                entries: Vec::new(),
                state: State::default(),
                problems: Vec::new(),
            },
        }
    }

    fn from_text(path: PathBuf, text: String) -> Lock {
        let (form, entries) = match parse(&text) {
            Ok(Parsed::Record(entries)) => (Form::Record, entries),
            Ok(Parsed::Legacy(map)) => (Form::Legacy(map), Vec::new()),
            Err(e) => (Form::Unreadable(e), Vec::new()),
        };
        let (state, problems) = replay(&entries);
        Lock {
            path,
            text,
            form,
            entries,
            state,
            problems,
        }
    }

    /// The withdrawals the record holds, in its order.
    pub(super) fn withdrawals(&self) -> Vec<Withdrawal> {
        let mut list: Vec<Withdrawal> = self
            .state
            .withdrawals
            .values()
            .map(|&w| {
                let entry = &self.entries[w];
                let release = &self.entries[self.state.releases[&entry.id]];
                Withdrawal {
                    id: entry.id.clone(),
                    content: entry.content.clone(),
                    released_by: release.approved_by.clone().unwrap_or_default(),
                    released_at: release.at.clone(),
                    by: entry.by.clone().unwrap_or_default(),
                    reason: entry.reason.clone().unwrap_or_default(),
                    at: entry.at.clone(),
                    entry: w + 1,
                }
            })
            .collect();
        list.sort_by_key(|w| w.entry);
        list
    }

    /// The releases the record holds (withdrawn ones too), in its order.
    pub(super) fn releases(&self) -> Vec<Release> {
        let mut list: Vec<Release> = self
            .state
            .releases
            .values()
            .map(|&r| {
                let entry = &self.entries[r];
                Release {
                    id: entry.id.clone(),
                    content: entry.content.clone(),
                    approved_by: entry.approved_by.clone().unwrap_or_default(),
                    at: entry.at.clone(),
                    entry: r + 1,
                }
            })
            .collect();
        list.sort_by_key(|r| r.entry);
        list
    }

    fn withdrawal(&self, id: &str) -> Option<Withdrawal> {
        self.withdrawals().into_iter().find(|w| w.id == id)
    }

    /// The record against the loaded versions (`templates`, from the folders of `dir`): every
    /// released version not withdrawn exists, still approved and unchanged; every approved
    /// version is released (or withdrawn, and unchanged).
    pub(super) fn verify<'a>(&self, dir: &Path, templates: &'a [Template]) -> Findings<'a> {
        let mut findings = Findings {
            problems: Vec::new(),
            unrecorded: Vec::new(),
            legacy: None,
        };
        match &self.form {
            Form::Unreadable(e) => {
                findings.problems.push(invalid(&self.path, e.clone()));
                return findings;
            }
            Form::Legacy(_) => {
                findings.legacy = Some(invalid(
                    &self.path,
                    "in the earlier format (an [approved] map): herald check --record-templates converts it to the release record".into(),
                ));
                return findings;
            }
            Form::Record => {}
        }
        findings
            .problems
            .extend(self.problems.iter().map(|p| invalid(&self.path, p.clone())));
        let lock = LOCK_FILE;
        let withdrawals = self.withdrawals();
        for template in templates {
            let id = template.id();
            let released = self.state.releases.get(&id).map(|&r| &self.entries[r]);
            // A release names the approver of the version it releases (the approver is in the
            // content, so a changed version is reported below, not here).
            if let Some(release) =
                released.filter(|r| template.is_approved() && r.content == template.source_hash)
            {
                let approver = template
                    .meta
                    .approved_by
                    .as_deref()
                    .unwrap_or_default()
                    .trim();
                let named = release.approved_by.as_deref().unwrap_or_default();
                if named != approver {
                    findings.problems.push(invalid(
                        &template.dir,
                        format!(
                            "{} of {lock} releases {id} approved by {named}, but the version is approved by {approver} (approved_by in template.toml): a release names the version's own approver",
                            release.named(self.state.releases[&id])
                        ),
                    ));
                }
            }
            if let Some(withdrawal) = withdrawals.iter().find(|w| w.id == id) {
                if template.is_approved() && template.source_hash != withdrawal.content {
                    findings.problems.push(invalid(
                        &template.dir,
                        format!(
                            "withdrawn version {id} changed (content hash {}, released {}): it is never released again: withdrawn on {} ({}): add a new version",
                            short(&template.source_hash),
                            short(&withdrawal.content),
                            withdrawal.at,
                            withdrawal.reason
                        ),
                    ));
                }
                continue;
            }
            match released {
                Some(release) if !template.is_approved() => findings.problems.push(invalid(
                    &template.dir,
                    format!(
                        "released version {id} lost its approval without a withdrawal (approved_by is gone from template.toml; {} of {lock} records it approved by {}): restore it, or withdraw it with herald templates withdraw {id} --reason TEXT",
                        release.named(self.state.releases[&id]),
                        release.approved_by.as_deref().unwrap_or_default()
                    ),
                )),
                Some(release) if release.content != template.source_hash => {
                    findings.problems.push(invalid(
                        &template.dir,
                        format!(
                            "approved version {id} changed (content hash {}, released {} in {} of {lock}): approved versions are immutable, add a new version instead",
                            short(&template.source_hash),
                            short(&release.content),
                            release.named(self.state.releases[&id])
                        ),
                    ))
                }
                Some(_) => {}
                None if template.is_approved() => findings.unrecorded.push(template),
                None => {}
            }
        }
        let loaded: BTreeSet<String> = templates.iter().map(Template::id).collect();
        for (id, &r) in &self.state.releases {
            if loaded.contains(id) || self.state.withdrawals.contains_key(id) {
                continue;
            }
            let Some((family, version)) = split_id(id) else {
                continue;
            };
            let folder = dir.join(family).join(version);
            // A folder that exists but did not load is reported by the load.
            if !folder.is_dir() {
                findings.problems.push(invalid(
                    &folder,
                    format!(
                        "released version {id} was deleted without a withdrawal (the folder is gone; {} of {lock} releases it): restore it, or withdraw it with herald templates withdraw {id} --reason TEXT",
                        self.entries[r].named(r)
                    ),
                ));
            }
        }
        findings
    }
}

/// The problem of an approved version that has no release yet.
pub(super) fn unrecorded(template: &Template) -> TemplateError {
    invalid(
        &template.dir,
        format!(
            "approved version {} is not recorded in {LOCK_FILE}: run herald check --record-templates when it is released",
            template.id(),
        ),
    )
}

/// Appends a RELEASE of every approved version of `templates` (loaded from `dir`, with the
/// load's `problems`) not yet released; returns the ids it released. An earlier-format lock is
/// converted first (its ids and hashes kept, `at` the time of the conversion). Anything wrong
/// but an unrecorded version refuses the record: a load problem, a problem of the record, a
/// changed, deleted or unapproved release, a gap in the record's history. The history is
/// compared with the record as it would be written, so that recording restores a release lost
/// in a merge (with its content of then) and refuses one whose version changed since.
pub(super) fn record(
    dir: &Path,
    templates: &[Template],
    mut problems: Vec<TemplateError>,
) -> Result<Vec<String>, TemplateError> {
    let mut lock = Lock::read(dir);
    let mut converted = false;
    if let Form::Legacy(map) = &lock.form {
        match convert(dir, &lock.path, map, templates) {
            Ok(text) => {
                lock = Lock::from_text(lock.path.clone(), text);
                converted = true;
            }
            Err(mut list) => problems.append(&mut list),
        }
    }
    let findings = lock.verify(dir, templates);
    problems.extend(findings.problems);
    problems.extend(findings.legacy);
    let mut text = lock.text.clone();
    let mut previous = lock
        .entries
        .last()
        .map(|e| e.link.clone())
        .unwrap_or_default();
    let mut added = Vec::new();
    if matches!(lock.form, Form::Record) {
        // Read once: the committed versions a release lost in a merge comes from.
        let versions = if findings.unrecorded.is_empty() {
            Vec::new()
        } else {
            committed(dir)
                .map(|(versions, _)| versions)
                .unwrap_or_default()
        };
        for template in findings.unrecorded {
            if text.is_empty() {
                text.push_str(HEADER);
            } else if !text.ends_with('\n') {
                text.push('\n');
            }
            let approver = template.meta.approved_by.as_deref().unwrap_or_default();
            let mut entry = Entry::new(
                Action::Release,
                &template.id(),
                &template.source_hash,
                Who::Approver(approver.trim()),
                &previous,
            );
            // A release lost in a merge is recorded again as it was (its approver and time).
            if let Some(then) = committed_release(&versions, &template.id(), &template.source_hash)
            {
                if then.approved_by == entry.approved_by {
                    entry.at = then.at.clone();
                    entry.link = entry.link_after(&previous);
                }
            }
            text.push_str(&entry.to_toml());
            previous = entry.link;
            added.push(template.id());
        }
    }
    if !matches!(lock.form, Form::Unreadable(_)) {
        if let Ok(working) = parse(&text) {
            let (history, _) = history(dir, &working);
            problems.extend(history.into_iter().map(|m| invalid(&lock.path, m)));
        }
    }
    if !problems.is_empty() {
        return Err(TemplateError::Many(problems));
    }
    if converted || !added.is_empty() {
        write(&lock, &text, lock.entries.len() + added.len())?;
    }
    Ok(added)
}

/// The earlier map as a record: a RELEASE of each id (in id order) with its hash, approved by
/// the version's `approved_by`; refused when a version is gone, unapproved or changed.
fn convert(
    dir: &Path,
    lock: &Path,
    map: &BTreeMap<String, String>,
    templates: &[Template],
) -> Result<String, Vec<TemplateError>> {
    let mut problems = Vec::new();
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut text = format!(
        "{HEADER}#\n# Entries 1 to {} were converted from the earlier format of this file (an [approved] map\n# of content hashes by id, in its history) on {now}: their `at` is the time of\n# the conversion, not of the release; their approved_by is the version's approved_by.\n",
        map.len()
    );
    let mut previous = String::new();
    for (id, hash) in map {
        let Some(template) = templates.iter().find(|t| t.id() == *id) else {
            let folder = split_id(id).map_or(dir.to_path_buf(), |(f, v)| dir.join(f).join(v));
            problems.push(invalid(
                lock,
                format!(
                    "cannot convert: {id} is not in the templates folder ({} did not load)",
                    folder.display()
                ),
            ));
            continue;
        };
        if !template.is_approved() || template.source_hash != *hash {
            problems.push(invalid(
                &template.dir,
                format!(
                    "cannot convert {LOCK_FILE}: {id} is no longer approved with content {}",
                    short(hash)
                ),
            ));
            continue;
        }
        let mut entry = Entry::new(
            Action::Release,
            id,
            hash,
            Who::Approver(
                template
                    .meta
                    .approved_by
                    .as_deref()
                    .unwrap_or_default()
                    .trim(),
            ),
            &previous,
        );
        entry.at = now.clone();
        entry.link = entry.link_after(&previous);
        text.push_str(&entry.to_toml());
        previous = entry.link;
    }
    if problems.is_empty() {
        Ok(text)
    } else {
        Err(problems)
    }
}

/// Writes `text` as the lock after checking that it reads back as an intact record of
/// `entries` entries.
fn write(lock: &Lock, text: &str, entries: usize) -> Result<(), TemplateError> {
    let written = Lock::from_text(lock.path.clone(), text.to_string());
    if written.entries.len() != entries || !written.problems.is_empty() {
        return Err(invalid(
            &lock.path,
            format!(
                "the new record does not read back intact: {}",
                written.problems.join("; ")
            ),
        ));
    }
    std::fs::write(&lock.path, text).map_err(|e| invalid(&lock.path, e.to_string()))
}

/// Appends a WITHDRAW of `id` (released, not yet withdrawn) to the lock of `dir`, by `by`
/// because of `reason`; returns what it recorded. The record must be intact.
pub fn withdraw(dir: &Path, id: &str, reason: &str, by: &str) -> Result<Withdrawal, TemplateError> {
    let lock = Lock::read(dir);
    let path = &lock.path;
    match &lock.form {
        Form::Unreadable(e) => return Err(invalid(path, e.clone())),
        Form::Legacy(_) => {
            return Err(invalid(
                path,
                "in the earlier format: convert it first with herald check --record-templates"
                    .into(),
            ))
        }
        Form::Record => {}
    }
    if !lock.problems.is_empty() {
        return Err(TemplateError::Many(
            lock.problems
                .iter()
                .map(|p| invalid(path, p.clone()))
                .collect(),
        ));
    }
    let (reason, by) = (reason.trim(), by.trim());
    if reason.is_empty() {
        return Err(invalid(path, format!("withdrawing {id}: give a --reason")));
    }
    if by.is_empty() {
        return Err(invalid(
            path,
            format!("withdrawing {id}: say who withdraws it (--by, or USER)"),
        ));
    }
    if let Some(withdrawal) = lock.withdrawal(id) {
        return Err(invalid(
            path,
            format!(
                "{id} is already withdrawn (entry {}): {withdrawal}",
                withdrawal.entry
            ),
        ));
    }
    let Some(&r) = lock.state.releases.get(id) else {
        return Err(invalid(
            path,
            format!("{id} was never released (no RELEASE entry): there is nothing to withdraw"),
        ));
    };
    let entry = Entry::new(
        Action::Withdraw,
        id,
        &lock.entries[r].content,
        Who::Withdrawer { by, reason },
        &lock
            .entries
            .last()
            .map(|e| e.link.clone())
            .unwrap_or_default(),
    );
    let mut text = lock.text.clone();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry.to_toml());
    write(&lock, &text, lock.entries.len() + 1)?;
    let written = Lock::from_text(lock.path.clone(), text);
    written
        .withdrawal(id)
        .ok_or_else(|| invalid(path, format!("{id}: the withdrawal did not read back")))
}

/// What the lock of `dir` says beside its problems, for `herald check`: its withdrawals (one
/// note each), then [`check_history`].
pub fn check_releases(dir: &Path) -> (Vec<String>, Vec<String>) {
    let lock = Lock::read(dir);
    let mut notes: Vec<String> = lock
        .withdrawals()
        .iter()
        .map(|w| {
            format!(
                "{}: entry {}: {w}: never resolved",
                lock.path.display(),
                w.entry
            )
        })
        .collect();
    let (problems, mut history) = check_history(dir);
    notes.append(&mut history);
    (problems, notes)
}

/// The lock of `dir` against every committed version of it in the git repository `dir` is in,
/// on every branch merged into the checked-out commit (`git log --full-history`: a merge that
/// kept one side's lock does not hide the other side's commits): every entry ever committed
/// (its action, id and content) must still be in the working copy with the same content; the
/// order is the working copy's own chain's concern (a merge appends one side's releases after
/// the other's). A committed version in the earlier format must still be released with the
/// same hashes. Returns the problems (`file: message`) and notes: how far the history was
/// checked, or why it was not (not in a git work tree, git missing, a shallow clone).
pub fn check_history(dir: &Path) -> (Vec<String>, Vec<String>) {
    let path = dir.join(LOCK_FILE);
    let shown = path.display().to_string();
    let working = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Parsed::Record(Vec::new())),
        Err(e) => Err(e.to_string()),
    };
    let Ok(working) = working else {
        return (
            Vec::new(),
            vec![format!(
                "{shown}: history not checked: the working copy does not read (see its problem)"
            )],
        );
    };
    let (problems, notes) = history(dir, &working);
    let problems = problems.iter().map(|p| format!("{shown}: {p}")).collect();
    (problems, notes)
}

#[cfg(test)]
mod tests;
