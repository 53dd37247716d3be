//! The record's entries and their chain: what an entry holds, how it is linked to the one before
//! it, how a record reads and replays.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

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
    pub(super) action: Action,
    pub(super) id: String,
    pub(super) content: String,
    #[serde(default)]
    pub(super) approved_by: Option<String>,
    #[serde(default)]
    pub(super) by: Option<String>,
    #[serde(default)]
    pub(super) reason: Option<String>,
    pub(super) at: String,
    pub(super) link: String,
}

impl Entry {
    /// The first field other than the link in which `self` and `other` differ.
    pub(super) fn differs_from(&self, other: &Entry) -> Option<&'static str> {
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
    pub(super) fn new(action: Action, id: &str, content: &str, who: Who, previous: &str) -> Entry {
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
    pub(super) fn link_after(&self, previous: &str) -> String {
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
    pub(super) fn to_toml(&self) -> String {
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
    pub(super) fn named(&self, index: usize) -> String {
        format!("entry {} ({} {})", index + 1, self.action, self.id)
    }
}

pub(super) enum Who<'a> {
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
pub(super) enum Parsed {
    Record(Vec<Entry>),
    Legacy(BTreeMap<String, String>),
}

pub(super) fn parse(text: &str) -> Result<Parsed, String> {
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
pub(super) struct State {
    pub(super) releases: BTreeMap<String, usize>,
    pub(super) withdrawals: BTreeMap<String, usize>,
}

/// Replays the record: its state and, for each entry that is broken, out of the chain or out
/// of sequence, a message naming it.
pub(super) fn replay(entries: &[Entry]) -> (State, Vec<String>) {
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
pub(super) fn malformed(entry: &Entry) -> Option<String> {
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
pub(super) fn split_id(id: &str) -> Option<(&str, &str)> {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    id.split_once(':')
        .filter(|(family, version)| plain(family) && plain(version))
}

pub(super) fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// The first 12 characters of a hash, as messages show it (by characters: a committed version
/// of the lock is never validated, and may hold anything).
pub(in crate::templates) fn short(hash: &str) -> &str {
    match hash.char_indices().nth(12) {
        Some((end, _)) => &hash[..end],
        None => hash,
    }
}
