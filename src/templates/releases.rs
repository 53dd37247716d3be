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
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{invalid, Template, TemplateError, LOCK_FILE};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum Action {
    Release,
    Withdraw,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Release => "RELEASE",
            Action::Withdraw => "WITHDRAW",
        })
    }
}

/// One entry of the record, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    action: Action,
    id: String,
    content: String,
    #[serde(default)]
    approved_by: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    at: String,
    link: String,
}

impl Entry {
    /// The first field other than the link in which `self` and `other` differ.
    fn differs_from(&self, other: &Entry) -> Option<&'static str> {
        if self.approved_by != other.approved_by {
            Some("approved_by")
        } else if self.by != other.by {
            Some("by")
        } else if self.reason != other.reason {
            Some("reason")
        } else if self.at != other.at {
            Some("at")
        } else {
            None
        }
    }

    /// A new entry after the one whose link is `previous`, its link computed.
    fn new(action: Action, id: &str, content: &str, who: Who, previous: &str) -> Entry {
        let (approved_by, by, reason) = match who {
            Who::Approver(approver) => (Some(approver.to_string()), None, None),
            Who::Withdrawer { by, reason } => (None, Some(by.to_string()), Some(reason.into())),
        };
        let mut entry = Entry {
            action,
            id: id.into(),
            content: content.into(),
            approved_by,
            by,
            reason,
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            link: String::new(),
        };
        entry.link = entry.link_after(previous);
        entry
    }

    /// The link this entry must carry after an entry whose link is `previous`.
    fn link_after(&self, previous: &str) -> String {
        let mut hasher = Sha256::new();
        let mut put = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        put(previous.as_bytes());
        let action = self.action.to_string();
        let fields = [
            ("action", Some(action.as_str())),
            ("id", Some(self.id.as_str())),
            ("content", Some(self.content.as_str())),
            ("approved_by", self.approved_by.as_deref()),
            ("by", self.by.as_deref()),
            ("reason", self.reason.as_deref()),
            ("at", Some(self.at.as_str())),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                put(name.as_bytes());
                put(value.as_bytes());
            }
        }
        hex::encode(hasher.finalize())
    }

    /// The entry as a `[[entry]]` block of TOML (strings quoted by the TOML writer).
    fn to_toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.into()).to_string();
        let mut block = format!(
            "\n[[entry]]\naction = {}\nid = {}\ncontent = {}\n",
            quote(&self.action.to_string()),
            quote(&self.id),
            quote(&self.content)
        );
        for (name, value) in [
            ("approved_by", &self.approved_by),
            ("by", &self.by),
            ("reason", &self.reason),
        ] {
            if let Some(value) = value {
                block.push_str(&format!("{name} = {}\n", quote(value)));
            }
        }
        block.push_str(&format!(
            "at = {}\nlink = {}\n",
            quote(&self.at),
            quote(&self.link)
        ));
        block
    }

    /// How messages name the entry: `entry 3 (RELEASE family:version)`, numbered from 1.
    fn named(&self, index: usize) -> String {
        format!("entry {} ({} {})", index + 1, self.action, self.id)
    }
}

enum Who<'a> {
    Approver(&'a str),
    Withdrawer { by: &'a str, reason: &'a str },
}

/// A withdrawn release, as the record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// `family:version`.
    pub id: String,
    /// The content hash of the release it withdraws.
    pub content: String,
    /// Who approved the release, and when it was recorded.
    pub released_by: String,
    pub released_at: String,
    pub by: String,
    pub reason: String,
    pub at: String,
    /// The number of its entry in the record, from 1.
    pub entry: usize,
}

impl fmt::Display for Withdrawal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} withdrawn on {} by {} ({}); released on {} (approved by {}, content {})",
            self.id,
            self.at,
            self.by,
            self.reason,
            self.released_at,
            self.released_by,
            short(&self.content)
        )
    }
}

/// A release, as the record holds it (withdrawn or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `family:version`.
    pub id: String,
    /// The content hash of the version released.
    pub content: String,
    pub approved_by: String,
    pub at: String,
    /// The number of its entry in the record, from 1.
    pub entry: usize,
}

/// What a lock file holds: the record, or the earlier map of content hashes by id.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Record(Vec<Entry>),
    Legacy(BTreeMap<String, String>),
}

fn parse(text: &str) -> Result<Parsed, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        entry: Vec<Entry>,
        approved: Option<BTreeMap<String, String>>,
    }
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    match file.approved {
        None => Ok(Parsed::Record(file.entry)),
        Some(map) if file.entry.is_empty() => Ok(Parsed::Legacy(map)),
        Some(_) => Err("holds both [[entry]] and the earlier [approved] map".into()),
    }
}

/// The releases and withdrawals a record makes, by id (indexes of their entries).
#[derive(Debug, Default)]
struct State {
    releases: BTreeMap<String, usize>,
    withdrawals: BTreeMap<String, usize>,
}

/// Replays the record: its state and, for each entry that is broken, out of the chain or out
/// of sequence, a message naming it.
fn replay(entries: &[Entry]) -> (State, Vec<String>) {
    let mut state = State::default();
    let mut problems = Vec::new();
    let mut previous = "";
    for (n, entry) in entries.iter().enumerate() {
        let named = entry.named(n);
        if entry.link != entry.link_after(previous) {
            problems.push(format!(
                "{named}: its link does not follow from the entry before it: the entry was edited, or an entry before it was removed, inserted or reordered (the record is append-only)"
            ));
        }
        previous = &entry.link;
        if let Some(problem) = malformed(entry) {
            problems.push(format!("{named}: {problem}"));
            continue;
        }
        match entry.action {
            Action::Release => {
                if let Some(&w) = state.withdrawals.get(&entry.id) {
                    let withdrawal = &entries[w];
                    problems.push(format!(
                        "{named}: {} was withdrawn on {} ({}): add a new version",
                        entry.id,
                        withdrawal.at,
                        withdrawal.reason.as_deref().unwrap_or_default()
                    ));
                } else if let Some(&r) = state.releases.get(&entry.id) {
                    problems.push(format!(
                        "{named}: {} is already released by entry {}",
                        entry.id,
                        r + 1
                    ));
                } else {
                    state.releases.insert(entry.id.clone(), n);
                }
            }
            Action::Withdraw => {
                if let Some(&w) = state.withdrawals.get(&entry.id) {
                    problems.push(format!(
                        "{named}: {} is already withdrawn by entry {}",
                        entry.id,
                        w + 1
                    ));
                } else if let Some(&r) = state.releases.get(&entry.id) {
                    if entries[r].content == entry.content {
                        state.withdrawals.insert(entry.id.clone(), n);
                    } else {
                        problems.push(format!(
                            "{named}: withdraws content {} of {}, but entry {} released {}",
                            short(&entry.content),
                            entry.id,
                            r + 1,
                            short(&entries[r].content)
                        ));
                    }
                } else {
                    problems.push(format!(
                        "{named}: {} was never released before it",
                        entry.id
                    ));
                }
            }
        }
    }
    (state, problems)
}

/// What is wrong with an entry's fields, if anything.
fn malformed(entry: &Entry) -> Option<String> {
    let given = |field: &Option<String>| field.as_deref().is_some_and(|v| !v.trim().is_empty());
    if split_id(&entry.id).is_none() {
        return Some(format!(
            "id '{}' is not family:version (letters, digits, '.', '-', '_')",
            entry.id
        ));
    }
    if !is_sha256(&entry.content) {
        return Some(format!(
            "content '{}' is not a sha256 in hex",
            entry.content
        ));
    }
    if chrono::DateTime::parse_from_rfc3339(&entry.at).is_err() {
        return Some(format!("at '{}' is not an RFC 3339 time", entry.at));
    }
    match entry.action {
        Action::Release if !given(&entry.approved_by) => {
            Some("a RELEASE names its approver (approved_by)".into())
        }
        Action::Release if entry.by.is_some() || entry.reason.is_some() => {
            Some("a RELEASE has no by or reason".into())
        }
        Action::Withdraw if !given(&entry.by) || !given(&entry.reason) => {
            Some("a WITHDRAW names who withdrew it (by) and why (reason)".into())
        }
        Action::Withdraw if entry.approved_by.is_some() => {
            Some("a WITHDRAW has no approved_by".into())
        }
        _ => None,
    }
}

/// `family:version` → (family, version), each a plain folder name.
fn split_id(id: &str) -> Option<(&str, &str)> {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    id.split_once(':')
        .filter(|(family, version)| plain(family) && plain(version))
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// The first 12 characters of a hash, as messages show it (by characters: a committed version
/// of the lock is never validated, and may hold anything).
pub(super) fn short(hash: &str) -> &str {
    match hash.char_indices().nth(12) {
        Some((end, _)) => &hash[..end],
        None => hash,
    }
}

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
            if let Some(then) = committed_release(dir, &template.id(), &template.source_hash) {
                if then.approved_by == entry.approved_by {
                    entry.at = then.at;
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

/// [`check_history`] of `working` (the lock of `dir`, or the record about to be written), its
/// problems without the file's name.
/// A committed version of the lock: its commit, and the record it held (or why it does not read).
type Committed = (String, Result<Parsed, String>);

/// Every committed version of the lock of `dir` (`git log --full-history`), newest first, each
/// parsed (or why it does not read), and whether the clone is shallow; Err: why the history
/// cannot be read (no git, not a work tree, git failed).
fn committed(dir: &Path) -> Result<(Vec<Committed>, bool), String> {
    match git(dir, &["rev-parse", "--is-inside-work-tree"]) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("git is not installed".into())
        }
        Err(e) => return Err(format!("git did not run: {e}")),
        Ok(out)
            if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "true" =>
        {
            return Err(format!("{} is not in a git work tree", dir.display()))
        }
        Ok(_) => {}
    }
    let commits = match git(
        dir,
        &["log", "--full-history", "--format=%H", "--", LOCK_FILE],
    ) {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            return Err(format!(
                "git log failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Err(e) => return Err(format!("git log did not run: {e}")),
    };
    let shallow = git(dir, &["rev-parse", "--is-shallow-repository"])
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "true");
    let mut versions = Vec::new();
    for commit in commits.lines().map(str::trim).filter(|c| !c.is_empty()) {
        let at = format!("{commit}:./{LOCK_FILE}");
        let Ok(out) = git(dir, &["show", &at]) else {
            continue;
        };
        if !out.status.success() {
            // The commit deleted the file: the versions before it are compared.
            continue;
        }
        let parsed = parse(&String::from_utf8_lossy(&out.stdout)).map_err(|e| e.to_string());
        versions.push((commit.to_string(), parsed));
    }
    Ok((versions, shallow))
}

/// The RELEASE of `id` with `content` as a committed version of the lock recorded it (a
/// release lost in a merge keeps its approver and time when it is recorded again).
fn committed_release(dir: &Path, id: &str, content: &str) -> Option<Entry> {
    let (versions, _) = committed(dir).ok()?;
    versions.into_iter().find_map(|(_, parsed)| match parsed {
        Ok(Parsed::Record(entries)) => entries
            .into_iter()
            .find(|e| e.action == Action::Release && e.id == id && e.content == content),
        _ => None,
    })
}

fn history(dir: &Path, working: &Parsed) -> (Vec<String>, Vec<String>) {
    let path = dir.join(LOCK_FILE);
    let shown = path.display();
    let (versions, shallow) = match committed(dir) {
        Ok(found) => found,
        Err(why) => {
            return (
                Vec::new(),
                vec![format!("{shown}: history not checked: {why}")],
            )
        }
    };
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut seen = BTreeSet::new();
    let checked = versions.len();
    for (commit, parsed) in versions {
        match parsed {
            Ok(committed) => {
                for (key, message) in compare(&committed, working, short(&commit)) {
                    if seen.insert(key) {
                        problems.push(message);
                    }
                }
            }
            Err(e) => notes.push(format!(
                "{shown}: the version committed in {} does not read, not compared: {e}",
                short(&commit)
            )),
        }
    }
    let scope = if shallow {
        "; the clone is shallow: only the commits present were compared"
    } else {
        ""
    };
    notes.push(format!(
        "{shown}: history checked against {checked} committed version(s){scope}"
    ));
    (problems, notes)
}

fn git(dir: &Path, args: &[&str]) -> std::io::Result<Output> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .output()
}

/// What a committed version (`committed`, of commit `commit`) has that the working copy lost:
/// (a key, to report each loss once however many commits hold it, and the message). Each
/// committed entry must be in the working copy (the same action and id) with the same content,
/// wherever it stands. Entries after a lost one that kept their content but not their link
/// are reported once, as the consequence of that loss (not as edits of their own).
fn compare(committed: &Parsed, working: &Parsed, commit: &str) -> Vec<(String, String)> {
    let mut lost = Vec::new();
    match (committed, working) {
        (Parsed::Record(old), Parsed::Record(new)) => {
            let mut first_lost = None;
            let mut relinked = Vec::new();
            for (n, entry) in old.iter().enumerate() {
                let named = entry.named(n);
                let key = format!("{} {}", entry.action, entry.id);
                let mut same = new
                    .iter()
                    .filter(|e| e.action == entry.action && e.id == entry.id)
                    .peekable();
                let Some(&first) = same.peek() else {
                    lost.push((
                        key,
                        format!("{named}, committed in {commit}, is gone: entries are never removed (the record is append-only)"),
                    ));
                    first_lost.get_or_insert(named);
                    continue;
                };
                match same.find(|e| e.content == entry.content) {
                    None => {
                        lost.push((
                            key,
                            format!(
                                "{named} changed since commit {commit} (content {} then, {} now): entries are never edited",
                                short(&entry.content),
                                short(&first.content)
                            ),
                        ));
                        first_lost.get_or_insert(named);
                    }
                    Some(now) if now.differs_from(entry).is_some() => {
                        let field = now.differs_from(entry).unwrap_or_default();
                        lost.push((
                            key,
                            format!(
                                "{named}: its {field} changed since commit {commit}: entries are never edited"
                            ),
                        ));
                        first_lost.get_or_insert(named);
                    }
                    Some(now) if now.link != entry.link && first_lost.is_some() => {
                        relinked.push(named)
                    }
                    Some(_) => {}
                }
            }
            if let (Some(first), Some(cause)) = (relinked.first(), first_lost) {
                let message = match relinked.len() {
                    1 => format!("{first} keeps its content, but its link changed since commit {commit}: an earlier entry was edited or removed ({cause})"),
                    n => format!("{first} and {} later entries keep their content, but their links changed since commit {commit}: an earlier entry was edited or removed ({cause})", n - 1),
                };
                lost.push(("relinked".into(), message));
            }
        }
        (Parsed::Record(old), Parsed::Legacy(_)) if !old.is_empty() => lost.push((
            "format".into(),
            format!("the record committed in {commit} was replaced by the earlier format"),
        )),
        (Parsed::Record(_), Parsed::Legacy(_)) => {}
        (Parsed::Legacy(map), working) => {
            for (id, hash) in map {
                let now = match working {
                    Parsed::Legacy(now) => now.get(id).cloned(),
                    Parsed::Record(entries) => entries
                        .iter()
                        .find(|e| e.action == Action::Release && e.id == *id)
                        .map(|e| e.content.clone()),
                };
                match now {
                    Some(now) if now == *hash => {}
                    Some(now) => lost.push((
                        format!("legacy {id}"),
                        format!(
                            "{id} was released with content {} in commit {commit} (the earlier format), the record now releases {}: an approved version never changes",
                            short(hash),
                            short(&now)
                        ),
                    )),
                    None => lost.push((
                        format!("legacy {id}"),
                        format!(
                            "{id} was released with content {} in commit {commit} (the earlier format) and is no longer released: releases are never removed",
                            short(hash)
                        ),
                    )),
                }
            }
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// A record of the given (action, id, content), each linked to the one before.
    fn chain(steps: &[(Action, &str, &str)]) -> Vec<Entry> {
        let mut entries: Vec<Entry> = Vec::new();
        for &(action, id, content) in steps {
            let previous = entries.last().map(|e| e.link.clone()).unwrap_or_default();
            let who = match action {
                Action::Release => Who::Approver("legal"),
                Action::Withdraw => Who::Withdrawer {
                    by: "alice",
                    reason: "wrong price",
                },
            };
            entries.push(Entry::new(action, id, content, who, &previous));
        }
        entries
    }

    fn three() -> Vec<Entry> {
        chain(&[
            (Action::Release, "f:1", A),
            (Action::Release, "f:2", B),
            (Action::Release, "g:1", A),
        ])
    }

    fn text_of(entries: &[Entry]) -> String {
        let mut text = HEADER.to_string();
        for entry in entries {
            text.push_str(&entry.to_toml());
        }
        text
    }

    #[test]
    fn an_intact_chain_replays_and_reads_back() {
        let entries = three();
        let (state, problems) = replay(&entries);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(state.releases.len(), 3);
        assert_eq!(parse(&text_of(&entries)), Ok(Parsed::Record(entries)));
    }

    #[test]
    fn the_link_covers_every_field_and_the_previous_link() {
        let entry = &three()[1];
        let base = entry.link_after("x");
        assert_ne!(base, entry.link_after("y"));
        let edits: [fn(&mut Entry); 5] = [
            |e| e.id = "f:3".into(),
            |e| e.content = A.into(),
            |e| e.approved_by = Some("sales".into()),
            |e| e.at = "2030-01-01T00:00:00Z".into(),
            |e| e.action = Action::Withdraw,
        ];
        for edit in edits {
            let mut edited = entry.clone();
            edit(&mut edited);
            assert_ne!(edited.link_after("x"), base, "{edited:?}");
        }
        // Field boundaries count: moving text from one field to the next changes the link.
        let mut a = entry.clone();
        a.approved_by = Some("le".into());
        a.at = "gal".into();
        let mut b = entry.clone();
        b.approved_by = Some("leg".into());
        b.at = "al".into();
        assert_ne!(a.link_after("x"), b.link_after("x"));
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut entries = three();
        entries[1].content = A.into();
        let (_, problems) = replay(&entries);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("entry 2 (RELEASE f:2): its link does not follow"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_removed_inserted_or_reordered_entry_breaks_the_chain_where_it_happened() {
        let mut removed = three();
        removed.remove(1);
        let (_, problems) = replay(&removed);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("entry 2 (RELEASE g:1)"),
            "{problems:?}"
        );

        let mut reordered = three();
        reordered.swap(1, 2);
        let (_, problems) = replay(&reordered);
        assert!(
            problems[0].starts_with("entry 2 (RELEASE g:1)"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("entry 3 (RELEASE f:2)"),
            "{problems:?}"
        );

        let mut inserted = three();
        let extra = chain(&[(Action::Release, "h:1", B)]).remove(0);
        inserted.insert(1, extra);
        let (_, problems) = replay(&inserted);
        assert!(
            problems[0].starts_with("entry 2 (RELEASE h:1)"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("entry 3 (RELEASE f:2)"),
            "{problems:?}"
        );

        // A removed tail leaves the chain intact: only the history can tell.
        let mut tail = three();
        tail.pop();
        assert!(replay(&tail).1.is_empty());
    }

    #[test]
    fn a_withdrawn_id_is_never_released_again_nor_withdrawn_twice() {
        let entries = chain(&[
            (Action::Release, "f:1", A),
            (Action::Withdraw, "f:1", A),
            (Action::Release, "f:1", B),
            (Action::Withdraw, "f:1", A),
            (Action::Withdraw, "g:1", A),
            (Action::Release, "h:1", A),
            (Action::Release, "h:1", A),
            (Action::Withdraw, "h:1", B),
        ]);
        let (state, problems) = replay(&entries);
        assert!(
            problems[0].starts_with("entry 3 (RELEASE f:1): f:1 was withdrawn on ")
                && problems[0].ends_with("(wrong price): add a new version"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("already withdrawn by entry 2"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("g:1 was never released"),
            "{problems:?}"
        );
        assert!(
            problems[3].contains("already released by entry 6"),
            "{problems:?}"
        );
        assert!(
            problems[4].contains("withdraws content bbbbbbbbbbbb of h:1"),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert_eq!(state.withdrawals.keys().collect::<Vec<_>>(), vec!["f:1"]);
    }

    #[test]
    fn malformed_entries_are_named() {
        let mut entries = three();
        entries[0].approved_by = None;
        entries[1].id = "../etc:passwd".into();
        entries[2].at = "yesterday".into();
        for n in 0..3 {
            let previous = if n == 0 {
                String::new()
            } else {
                entries[n - 1].link.clone()
            };
            entries[n].link = entries[n].link_after(&previous);
        }
        let (_, problems) = replay(&entries);
        assert!(problems[0].contains("approved_by"), "{problems:?}");
        assert!(
            problems[1].contains("is not family:version"),
            "{problems:?}"
        );
        assert!(problems[2].contains("not an RFC 3339 time"), "{problems:?}");
    }

    #[test]
    fn an_entry_whose_approver_time_or_reason_was_rewritten_is_named() {
        let mut old = three();
        old.extend(chain(&[(Action::Withdraw, "f:1", A)]));
        for (n, field) in [(1, "approved_by"), (3, "reason"), (3, "by"), (2, "at")] {
            let mut new = old.clone();
            match field {
                "approved_by" => new[n].approved_by = Some("mallory".into()),
                "reason" => new[n].reason = Some("a kinder reason".into()),
                "by" => new[n].by = Some("mallory".into()),
                _ => new[n].at = "2020-01-01T00:00:00Z".into(),
            }
            let lost = compare(&Parsed::Record(old.clone()), &Parsed::Record(new), "c0ffee");
            assert!(
                lost.iter()
                    .any(|(_, m)| m.contains(&format!("its {field} changed since commit c0ffee"))),
                "{field}: {lost:?}"
            );
        }
    }

    #[test]
    fn the_history_finds_a_removed_tail_an_edit_and_a_lost_legacy_release() {
        let old = Parsed::Record(three());
        let mut tail = three();
        tail.pop();
        let lost = compare(&old, &Parsed::Record(tail), "c0ffee");
        assert_eq!(lost.len(), 1);
        assert!(
            lost[0]
                .1
                .starts_with("entry 3 (RELEASE g:1), committed in c0ffee, is gone"),
            "{lost:?}"
        );
        let mut longer = three();
        longer.extend(chain(&[(Action::Withdraw, "f:1", A)]));
        assert!(compare(&old, &Parsed::Record(longer), "c0ffee").is_empty());
        // A re-chained edit passes the chain, not the history.
        let rechained = chain(&[
            (Action::Release, "f:1", A),
            (Action::Release, "f:2", A),
            (Action::Release, "g:1", A),
        ]);
        let lost = compare(&old, &Parsed::Record(rechained), "c0ffee");
        let messages: Vec<_> = lost.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(
            messages,
            [
                "entry 2 (RELEASE f:2) changed since commit c0ffee (content bbbbbbbbbbbb then, aaaaaaaaaaaa now): entries are never edited",
                "entry 3 (RELEASE g:1) keeps its content, but its link changed since commit c0ffee: an earlier entry was edited or removed (entry 2 (RELEASE f:2))",
            ]
        );

        let legacy = Parsed::Legacy(BTreeMap::from([
            ("f:1".to_string(), A.to_string()),
            ("f:2".to_string(), A.to_string()),
            ("z:9".to_string(), A.to_string()),
        ]));
        let lost = compare(&legacy, &Parsed::Record(three()), "beef");
        let messages: Vec<_> = lost.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].starts_with("f:2 was released with content aaaaaaaaaaaa in commit beef"),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with("z:9 was released")
                && messages[1].contains("no longer released"),
            "{messages:?}"
        );
    }

    #[test]
    fn one_edit_is_reported_once_however_many_entries_follow_it() {
        let steps: Vec<(Action, String, &str)> = (0..6)
            .map(|n| (Action::Release, format!("f:{n}"), A))
            .collect();
        let as_refs = |steps: &[(Action, String, &str)]| -> Vec<Entry> {
            chain(
                &steps
                    .iter()
                    .map(|(a, id, c)| (*a, id.as_str(), *c))
                    .collect::<Vec<_>>(),
            )
        };
        let old = as_refs(&steps);
        let mut edited = steps.clone();
        edited[1].2 = B;
        let lost = compare(
            &Parsed::Record(old),
            &Parsed::Record(as_refs(&edited)),
            "c0ffee",
        );
        let messages: Vec<_> = lost.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("entry 2 (RELEASE f:1) changed since commit c0ffee (content aaaaaaaaaaaa then, bbbbbbbbbbbb now)"), "{messages:?}");
        assert_eq!(
            messages[1],
            "entry 3 (RELEASE f:2) and 3 later entries keep their content, but their links changed since commit c0ffee: an earlier entry was edited or removed (entry 2 (RELEASE f:1))"
        );
    }

    #[test]
    fn a_merge_that_appends_one_side_after_the_other_keeps_every_committed_entry() {
        // Both sides released a version after the same base; the merge keeps main's entries and
        // records the side's release again after them (another position, time and link).
        let base = chain(&[(Action::Release, "f:1", A)]);
        let mut side = base.clone();
        side.push(Entry::new(
            Action::Release,
            "x:1",
            B,
            Who::Approver("legal"),
            &base[0].link,
        ));
        let mut merged = base.clone();
        merged.push(Entry::new(
            Action::Release,
            "y:1",
            A,
            Who::Approver("legal"),
            &base[0].link,
        ));
        merged.push(Entry::new(
            Action::Release,
            "x:1",
            B,
            Who::Approver("legal"),
            &merged[1].link,
        ));
        assert!(replay(&merged).1.is_empty());
        assert_ne!(merged[2].link, side[1].link);
        assert!(compare(
            &Parsed::Record(side.clone()),
            &Parsed::Record(merged.clone()),
            "5ide"
        )
        .is_empty());
        // Dropped, or recorded with other content: the side's release is lost.
        let lost = compare(
            &Parsed::Record(side.clone()),
            &Parsed::Record(merged[..2].to_vec()),
            "5ide",
        );
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(
            lost[0]
                .1
                .starts_with("entry 2 (RELEASE x:1), committed in 5ide, is gone"),
            "{lost:?}"
        );
        merged[2] = Entry::new(
            Action::Release,
            "x:1",
            A,
            Who::Approver("legal"),
            &merged[1].link,
        );
        let lost = compare(&Parsed::Record(side), &Parsed::Record(merged), "5ide");
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(lost[0].1.starts_with("entry 2 (RELEASE x:1) changed since commit 5ide (content bbbbbbbbbbbb then, aaaaaaaaaaaa now)"), "{lost:?}");
    }

    #[test]
    fn a_committed_content_that_is_no_hash_is_shown_without_a_panic() {
        assert_eq!(short(A), "aaaaaaaaaaaa");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("aéééééééééééééé"), "aééééééééééé");
        // A committed version is never validated: its content may be anything.
        let mut odd = three();
        odd[1].content = "aéééééééééééééééé".into();
        let lost = compare(&Parsed::Record(odd), &Parsed::Record(three()), "c0ffee");
        assert!(
            lost[0].1.starts_with("entry 2 (RELEASE f:2) changed since commit c0ffee (content aééééééééééé then, bbbbbbbbbbbb now)"),
            "{lost:?}"
        );
        let legacy = Parsed::Legacy(BTreeMap::from([("f:1".to_string(), "€".repeat(9))]));
        let lost = compare(&legacy, &Parsed::Record(three()), "c0ffee");
        assert!(lost[0].1.contains("€€€€€€€€€"), "{lost:?}");
    }

    #[test]
    fn the_earlier_format_reads_as_a_legacy_map() {
        let text = format!("[approved]\n\"f:1\" = \"{A}\"\n");
        assert_eq!(
            parse(&text),
            Ok(Parsed::Legacy(BTreeMap::from([("f:1".into(), A.into())])))
        );
        let both = format!("{text}{}", three()[0].to_toml());
        assert!(parse(&both).is_err());
    }
}
