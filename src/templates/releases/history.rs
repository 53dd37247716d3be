//! The record against the repository's history: every committed version of the lock must still
//! be in the working record (`git log --full-history`, by set inclusion).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::chain::*;
use super::*;

/// A committed version of the lock: its commit, and the record it held (or why it does not read).
pub(super) type Committed = (String, Result<Parsed, String>);

/// Every committed version of the lock of `dir` (`git log --full-history`), newest first, each
/// parsed (or why it does not read), and whether the clone is shallow; Err: why the history
/// cannot be read (no git, not a work tree, git failed).
pub(super) fn committed(dir: &Path) -> Result<(Vec<Committed>, bool), String> {
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
pub(super) fn committed_release<'c>(
    versions: &'c [Committed],
    id: &str,
    content: &str,
) -> Option<&'c Entry> {
    versions.iter().find_map(|(_, parsed)| match parsed {
        Ok(Parsed::Record(entries)) => entries
            .iter()
            .find(|e| e.action == Action::Release && e.id == id && e.content == content),
        _ => None,
    })
}

/// [`check_history`] of `working` (the lock of `dir`, or the record about to be written), its
/// problems without the file's name.
pub(super) fn history(dir: &Path, working: &Parsed) -> (Vec<String>, Vec<String>) {
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

pub(super) fn git(dir: &Path, args: &[&str]) -> std::io::Result<Output> {
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
pub(super) fn compare(committed: &Parsed, working: &Parsed, commit: &str) -> Vec<(String, String)> {
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
