//! The release record (`templates/approved.lock`): an append-only, chained record of every
//! release and withdrawal, checked at every load and against the repository's history, through
//! `herald check` and `herald templates withdraw` on a copy of the shipped files; and anchored
//! in the database by every `herald run` (table `template_release`).

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use herald::runtime::Components;
use herald::templates::TemplateRegistry;
use sha2::{Digest, Sha256};

use crate::support::{new_lane, spawn_herald, test_settings, TestDb};
use crate::templates_governance::{add_version, workspace};

/// A copy of the shipped files: its folder (kept alive) and the paths herald is given.
struct Workspace {
    _dir: tempfile::TempDir,
    root: PathBuf,
    topics: PathBuf,
    templates: PathBuf,
    bpmn: PathBuf,
}

impl Workspace {
    fn new() -> Workspace {
        let (dir, topics, templates, bpmn) = workspace();
        Workspace {
            root: dir.path().to_path_buf(),
            _dir: dir,
            topics,
            templates,
            bpmn,
        }
    }

    fn lock(&self) -> PathBuf {
        self.templates.join("approved.lock")
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(self.lock()).unwrap()
    }

    /// The lock's path as herald names it in its messages.
    fn lock_shown(&self) -> String {
        self.lock().display().to_string()
    }

    fn folder(&self, family: &str, version: &str) -> PathBuf {
        self.templates.join(family).join(version)
    }

    /// Rewrites the lock's entries (the header kept).
    fn edit_entries(&self, edit: impl FnOnce(&mut Vec<String>)) {
        let (header, mut entries) = split_entries(&self.lock_text());
        edit(&mut entries);
        std::fs::write(self.lock(), format!("{header}{}", entries.concat())).unwrap();
    }

    fn edit(&self, file: &Path, from: &str, to: &str) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains(from), "{} has no {from:?}", file.display());
        std::fs::write(file, text.replacen(from, to, 1)).unwrap();
    }

    /// `herald ARGS` on the workspace, `USER` set to `user` (or unset).
    fn herald_as(&self, user: Option<&str>, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        command
            .args(args)
            .env(
                "HERALD_PATHS__RULES",
                self.topics.with_file_name("rules").join("events.toml"),
            )
            .env("HERALD_PATHS__TOPICS", &self.topics)
            .env("HERALD_PATHS__TEMPLATES", &self.templates)
            .env("HERALD_PATHS__BPMN", &self.bpmn);
        match user {
            Some(user) => command.env("USER", user),
            None => command.env_remove("USER"),
        };
        let out = command.output().unwrap();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn herald(&self, args: &[&str]) -> Run {
        self.herald_as(Some("tester"), args)
    }

    /// `git ARGS` in the workspace (a repository of its own once `git init` ran).
    fn git(&self, args: &[&str]) -> String {
        git(&self.root, args)
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[derive(Debug)]
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// (the header, each `[[entry]]` block with the blank line before it).
fn split_entries(text: &str) -> (String, Vec<String>) {
    let mut parts = text.split("\n[[entry]]");
    let header = parts.next().unwrap().to_string();
    let entries = parts.map(|p| format!("\n[[entry]]{p}")).collect();
    (header, entries)
}

/// Sets `field` of an entry's block to `value`.
fn set_field(block: &str, field: &str, value: &str) -> String {
    let prefix = format!("{field} = ");
    let line = block
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {field} in {block}"));
    block.replacen(line, &format!("{prefix}\"{value}\""), 1)
}

fn field(block: &str, name: &str) -> String {
    let entry: toml::Table = toml::from_str(&block.replace("[[entry]]", "")).unwrap();
    entry[name].as_str().unwrap().to_string()
}

/// An entry's link after `previous`, computed as the header of every lock says (written here
/// again, as whoever rewrites a lock would): sha256 over the previous link and the fields in
/// order, each preceded by its length in bytes (big-endian u64).
fn link_after(previous: &str, block: &str) -> String {
    let entry: toml::Table = toml::from_str(&block.replace("[[entry]]", "")).unwrap();
    let mut hasher = Sha256::new();
    let mut put = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    put(previous.as_bytes());
    for name in [
        "action",
        "id",
        "content",
        "approved_by",
        "by",
        "reason",
        "at",
    ] {
        if let Some(value) = entry.get(name).and_then(|v| v.as_str()) {
            put(name.as_bytes());
            put(value.as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}

/// Recomputes every link of the entries: the chain is intact again, whatever was edited.
fn relink(entries: &mut [String]) {
    let mut previous = String::new();
    for block in entries.iter_mut() {
        let link = link_after(&previous, block);
        *block = set_field(block, "link", &link);
        previous = link;
    }
}

/// The content hash herald computes for an EMAIL or IN_APP version (written here again): sha256
/// over template.toml, then each body preceded by its length in bytes (big-endian u64).
fn source_hash(folder: &Path) -> String {
    let mut hasher = Sha256::new();
    hasher.update(std::fs::read(folder.join("template.toml")).unwrap());
    for part in ["subject", "body.txt", "body.html"] {
        let source = std::fs::read(folder.join(format!("{part}.hbs"))).unwrap();
        hasher.update((source.len() as u64).to_be_bytes());
        hasher.update(&source);
    }
    hex::encode(hasher.finalize())
}

/// A new approved version of quote-proposal-email (its payload the family's), effective from
/// `from`; its folder.
fn new_version(ws: &Workspace, version: &str, from: &str) -> PathBuf {
    add_version(
        &ws.templates,
        "quote-proposal-email",
        version,
        &format!("locale = \"en\"\naudience = \"CUSTOMER\"\napproved_by = \"legal\"\neffective_from = \"{from}\"\n[payload]\nquoteNumber = \"string\"\nrevisionNo = \"integer\"\ncustomerDisplayName = \"string\"\ndocumentReference = \"string\"\nproposalLink = \"string?\"\nlinkValidUntil = \"string?\"\nattachmentName = \"string?\"\nmessageNote = \"string?\""),
        "New wording for {{quoteNumber}}",
    )
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn a_removed_lock_entry_breaks_the_chain_and_changed_content_is_not_re_recorded() {
    let ws = Workspace::new();
    let folder = ws.folder("quote-proposal-email", "2026.07.0");
    ws.edit(
        &folder.join("body.txt.hbs"),
        "We look forward",
        "We no longer look forward",
    );
    // Entry 10 releases quote-proposal-email:2026.07.0; without it, the version looks new.
    ws.edit_entries(|entries| {
        assert!(entries[9].contains("\"quote-proposal-email:2026.07.0\""));
        entries.remove(9);
    });
    let before = ws.lock_text();
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "{}: entry 10 (RELEASE quote-proposal-email:2026.07.0-de): its link does not follow from the entry before it",
            ws.lock_shown()
        )),
        "{}",
        run.stderr
    );
    assert!(
        !run.stdout.contains("recorded approved template"),
        "{}",
        run.stdout
    );
    assert_eq!(ws.lock_text(), before, "a refused record writes nothing");
    assert!(TemplateRegistry::record_approved(&ws.templates).is_err());
    assert!(TemplateRegistry::load(&ws.templates).is_err());
    assert_eq!(ws.lock_text(), before);
}

#[test]
fn an_edited_hash_in_the_lock_is_named() {
    let ws = Workspace::new();
    let folder = ws.folder("quote-proposal-email", "2026.11.1");
    ws.edit(&folder.join("body.txt.hbs"), "please find", "kindly find");
    ws.edit_entries(|entries| {
        assert!(entries[13].contains("\"quote-proposal-email:2026.11.1\""));
        let content = entries[13]
            .lines()
            .find(|l| l.starts_with("content = "))
            .unwrap()
            .to_string();
        entries[13] = entries[13].replace(&content, &format!("content = \"{}\"", "0".repeat(64)));
    });
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: entry 14 (RELEASE quote-proposal-email:2026.11.1): its link does not follow",
            ws.lock_shown()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "{}: approved version quote-proposal-email:2026.11.1 changed",
            folder.display()
        )),
        "{}",
        run.stderr
    );
    assert!(TemplateRegistry::record_approved(&ws.templates).is_err());
}

#[test]
fn two_reordered_entries_break_the_chain() {
    let ws = Workspace::new();
    ws.edit_entries(|entries| entries.swap(1, 2));
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    let lock = ws.lock_shown();
    for named in [
        "entry 2 (RELEASE fallout-alert-email:2026.11.0)",
        "entry 3 (RELEASE approval-reminder-inapp:2026.11.0)",
    ] {
        assert!(
            run.stderr
                .contains(&format!("{lock}: {named}: its link does not follow")),
            "{named}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_deleted_approved_version_is_reported_until_it_is_withdrawn() {
    let ws = Workspace::new();
    let folder = ws.folder("quote-proposal-email", "2026.07.0-de");
    std::fs::remove_dir_all(&folder).unwrap();
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: released version quote-proposal-email:2026.07.0-de was deleted without a withdrawal",
            folder.display()
        )) && run.stderr.contains("entry 11 (RELEASE quote-proposal-email:2026.07.0-de) of approved.lock"),
        "{}",
        run.stderr
    );
    assert!(TemplateRegistry::load(&ws.templates).is_err());
    // Withdrawn, its folder may stay gone.
    let run = ws.herald(&[
        "templates",
        "withdraw",
        "quote-proposal-email:2026.07.0-de",
        "--reason",
        "retired",
    ]);
    assert!(run.ok, "{run:?}");
    let run = ws.herald(&["check"]);
    assert!(run.ok, "{}", run.stderr);
}

#[test]
fn an_approved_version_that_loses_approved_by_is_reported() {
    let ws = Workspace::new();
    let folder = ws.folder("quote-proposal-email", "2026.11.1");
    ws.edit(
        &folder.join("template.toml"),
        "approved_by = \"commercial-legal\"\n",
        "",
    );
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: released version quote-proposal-email:2026.11.1 lost its approval without a withdrawal",
            folder.display()
        )) && run.stderr.contains("entry 14 (RELEASE quote-proposal-email:2026.11.1) of approved.lock records it approved by commercial-legal"),
        "{}",
        run.stderr
    );
    let before = ws.lock_text();
    assert!(!ws.herald(&["check", "--record-templates"]).ok);
    assert_eq!(ws.lock_text(), before);
    // Runtime refuses to start on it too.
    assert!(TemplateRegistry::load(&ws.templates).is_err());
}

#[test]
fn a_changed_approved_body_is_refused_and_never_re_recorded() {
    let ws = Workspace::new();
    let folder = ws.folder("quote-proposal-email", "2026.11.1-de");
    ws.edit(&folder.join("body.txt.hbs"), "Guten Tag", "Hallo");
    let before = ws.lock_text();
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: approved version quote-proposal-email:2026.11.1-de changed",
            folder.display()
        )) && run
            .stderr
            .contains("in entry 15 (RELEASE quote-proposal-email:2026.11.1-de) of approved.lock"),
        "{}",
        run.stderr
    );
    assert_eq!(ws.lock_text(), before);
}

#[test]
fn a_withdrawn_version_is_shown_never_resolved_and_never_re_approved() {
    let ws = Workspace::new();
    let family = "quote-proposal-email";
    let when = at("2026-11-26T12:00:00Z");
    let registry = TemplateRegistry::load(&ws.templates).unwrap();
    let resolved = registry.resolve(family, Some("en"), None, when).unwrap();
    assert_eq!(resolved.meta.version, "2026.11.1");

    let before = ws.lock_text();
    let run = ws.herald(&[
        "templates",
        "withdraw",
        "quote-proposal-email:2026.11.1",
        "--reason",
        "wrong discount wording",
        "--by",
        "alice",
    ]);
    assert!(run.ok, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "recorded in {}, entry 17: quote-proposal-email:2026.11.1 withdrawn on ",
            ws.lock_shown()
        )) && run.stdout.contains("by alice (wrong discount wording)"),
        "{}",
        run.stdout
    );
    let after = ws.lock_text();
    assert!(after.starts_with(&before), "a withdrawal only appends");
    let (_, entries) = split_entries(&after);
    assert_eq!(entries.len(), 17);
    assert!(
        entries[16].contains("action = \"WITHDRAW\"")
            && entries[16].contains("by = \"alice\"")
            && entries[16].contains("reason = \"wrong discount wording\""),
        "{}",
        entries[16]
    );

    // The version in force before it is selected again, and the check judges it: it lacks
    // the note the handler passes (the one finding), and the withdrawal is shown.
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("quote-proposal-email:2026.11.0 (effective from")
            && run.stderr.contains(
                "payload.messageNote: the handler passes it, but it is not in the payload schema"
            )
            && run.stderr.contains("1 problem(s)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains(&format!(
            "{}: entry 17: quote-proposal-email:2026.11.1 withdrawn on ",
            ws.lock_shown()
        )) && run.stdout.contains("never resolved"),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("withdrawn"), "{}", run.stderr);

    // The previous version is resolved instead; the other locale keeps its own.
    let registry = TemplateRegistry::load(&ws.templates).unwrap();
    let resolved = registry.resolve(family, Some("en"), None, when).unwrap();
    assert_eq!(resolved.meta.version, "2026.11.0");
    let german = registry.resolve(family, Some("de"), None, when).unwrap();
    assert_eq!(german.meta.version, "2026.11.1-de");
    let withdrawn = registry.withdrawals();
    assert_eq!(withdrawn.len(), 1);
    assert_eq!(withdrawn[0].id, "quote-proposal-email:2026.11.1");
    assert_eq!(withdrawn[0].released_by, "commercial-legal");

    // Recording again does not re-approve it.
    assert_eq!(
        TemplateRegistry::record_approved(&ws.templates).unwrap(),
        Vec::<String>::new()
    );
    // (The check after the record still finds the fallback's missing field, as above.)
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(
        !run.ok
            && run.stderr.contains("1 problem(s)")
            && !run.stdout.contains("recorded approved template"),
        "{run:?}"
    );
    assert_eq!(ws.lock_text(), after);

    // Nor does changing it: a withdrawn version is never released again.
    let folder = ws.folder(family, "2026.11.1");
    ws.edit(&folder.join("body.txt.hbs"), "please find", "kindly find");
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: withdrawn version quote-proposal-email:2026.11.1 changed",
            folder.display()
        )) && run
            .stderr
            .contains("(wrong discount wording): add a new version"),
        "{}",
        run.stderr
    );
    assert_eq!(ws.lock_text(), after);
}

#[test]
fn withdrawing_twice_an_unknown_or_an_unreleased_version_is_refused() {
    let ws = Workspace::new();
    let lock = ws.lock_shown();
    let withdraw = |user: Option<&str>, id: &str, extra: &[&str]| {
        let mut args = vec!["templates", "withdraw", id, "--reason", "obsolete"];
        args.extend_from_slice(extra);
        ws.herald_as(user, &args)
    };
    // --by defaults to USER; neither: refused.
    let before = ws.lock_text();
    let run = withdraw(None, "quote-proposal-email:2026.07.0", &[]);
    assert!(!run.ok && run.stderr.contains("--by NAME"), "{run:?}");
    assert_eq!(ws.lock_text(), before);
    let run = withdraw(Some("bob"), "quote-proposal-email:2026.07.0", &[]);
    assert!(run.ok, "{run:?}");
    assert!(ws.lock_text().contains("by = \"bob\""));

    let after = ws.lock_text();
    let run = withdraw(Some("bob"), "quote-proposal-email:2026.07.0", &[]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{lock}: quote-proposal-email:2026.07.0 is already withdrawn (entry 17)"
        )),
        "{}",
        run.stderr
    );
    let run = withdraw(Some("bob"), "no-such-family:1.0", &[]);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains(&format!("{lock}: no-such-family:1.0 was never released")),
        "{}",
        run.stderr
    );
    add_version(
        &ws.templates,
        "quote-proposal-email",
        "2026.12.0",
        "locale = \"en\"\naudience = \"CUSTOMER\"\neffective_from = \"2026-12-01T00:00:00Z\"\n[payload]\nquoteNumber = \"string\"",
        "Draft for {{quoteNumber}}",
    );
    let run = withdraw(Some("bob"), "quote-proposal-email:2026.12.0", &[]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{lock}: quote-proposal-email:2026.12.0 was never released"
        )),
        "{}",
        run.stderr
    );
    let run = ws.herald(&[
        "templates",
        "withdraw",
        "quote-proposal-email:2026.11.0",
        "--reason",
        " ",
    ]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{lock}: withdrawing quote-proposal-email:2026.11.0: give a --reason"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(ws.lock_text(), after, "refusals write nothing");
}

#[test]
fn a_release_appends_an_entry_with_its_approver_and_time() {
    let ws = Workspace::new();
    add_version(
        &ws.templates,
        "quote-proposal-email",
        "2026.12.0",
        "locale = \"en\"\naudience = \"CUSTOMER\"\napproved_by = \"legal\"\neffective_from = \"2026-12-01T00:00:00Z\"\n[payload]\nquoteNumber = \"string\"\nrevisionNo = \"integer\"\ncustomerDisplayName = \"string\"\ndocumentReference = \"string\"\nproposalLink = \"string?\"\nlinkValidUntil = \"string?\"\nattachmentName = \"string?\"\nmessageNote = \"string?\"",
        "New wording for {{quoteNumber}}",
    );
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: approved version quote-proposal-email:2026.12.0 is not recorded in approved.lock",
            ws.folder("quote-proposal-email", "2026.12.0").display()
        )),
        "{}",
        run.stderr
    );
    let before = ws.lock_text();
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(run.ok, "{run:?}");
    assert!(run
        .stdout
        .contains("recorded approved template quote-proposal-email:2026.12.0"));
    let after = ws.lock_text();
    assert!(after.starts_with(&before), "a release only appends");
    let (_, entries) = split_entries(&after);
    assert_eq!(entries.len(), 17);
    let entry: toml::Table = toml::from_str(&entries[16].replace("[[entry]]", "")).unwrap();
    assert_eq!(entry["action"].as_str(), Some("RELEASE"));
    assert_eq!(entry["id"].as_str(), Some("quote-proposal-email:2026.12.0"));
    assert_eq!(entry["approved_by"].as_str(), Some("legal"));
    let recorded = at(entry["at"].as_str().unwrap());
    assert!(
        (Utc::now() - recorded).num_seconds().abs() < 60,
        "{recorded}"
    );
    assert_eq!(entry["link"].as_str().unwrap().len(), 64);
    assert!(ws.herald(&["check"]).ok);
}

#[test]
fn outside_git_the_history_is_not_checked_and_says_so() {
    let ws = Workspace::new();
    let run = ws.herald(&["check"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "{}: history not checked: {} is not in a git work tree",
            ws.lock_shown(),
            ws.templates.display()
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn a_removed_tail_is_found_in_the_git_history() {
    let ws = Workspace::new();
    ws.git(&["init", "-q"]);
    ws.git(&["add", "."]);
    ws.git(&["commit", "-q", "-m", "release"]);
    let commit = ws.git(&["rev-parse", "HEAD"]);
    let run = ws.herald(&["check"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "{}: history checked against 1 committed version(s)",
            ws.lock_shown()
        )),
        "{}",
        run.stdout
    );

    // The last entry removed and its version changed: the chain is intact, the history not.
    ws.edit_entries(|entries| {
        assert!(entries[15].contains("\"sla-escalation-email:2026.11.0\""));
        entries.pop();
    });
    let folder = ws.folder("sla-escalation-email", "2026.11.0");
    let body = folder.join("body.txt.hbs");
    let text = std::fs::read_to_string(&body).unwrap();
    std::fs::write(&body, format!("{text}\nA new sentence.")).unwrap();
    let truncated = ws.lock_text();
    let gone = format!(
        "{}: entry 16 (RELEASE sla-escalation-email:2026.11.0), committed in {}, is gone",
        ws.lock_shown(),
        &commit[..12]
    );
    // The record would release the changed version again: it compares what it would write.
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: entry 16 (RELEASE sla-escalation-email:2026.11.0) changed since commit {} (content ",
            ws.lock_shown(),
            &commit[..12]
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        ws.lock_text(),
        truncated,
        "the changed version is not re-recorded"
    );
    assert!(TemplateRegistry::record_approved(&ws.templates).is_err());
    let run = ws.herald(&["check"]);
    assert!(!run.ok && run.stderr.contains(&gone), "{}", run.stderr);

    // Without the lock at all, every committed entry is gone.
    std::fs::remove_file(ws.lock()).unwrap();
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: entry 1 (RELEASE approval-reminder-email:2026.11.0), committed in {}, is gone",
            ws.lock_shown(),
            &commit[..12]
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn the_earlier_format_converts_and_its_releases_stay_bound_by_the_history() {
    let ws = Workspace::new();
    let (_, entries) = split_entries(&ws.lock_text());
    let mut legacy = String::from("[approved]\n");
    for block in &entries {
        let entry: toml::Table = toml::from_str(&block.replace("[[entry]]", "")).unwrap();
        legacy.push_str(&format!(
            "\"{}\" = \"{}\"\n",
            entry["id"].as_str().unwrap(),
            entry["content"].as_str().unwrap()
        ));
    }
    let retired = format!("\"retired-email:2025.01.0\" = \"{}\"\n", "1".repeat(64));
    std::fs::write(ws.lock(), format!("{legacy}{retired}")).unwrap();
    ws.git(&["init", "-q"]);
    ws.git(&["add", "."]);
    ws.git(&["commit", "-q", "-m", "the earlier format"]);
    let first = ws.git(&["rev-parse", "HEAD"]);
    // The retired release dropped from the map, in a later commit.
    std::fs::write(ws.lock(), &legacy).unwrap();
    ws.git(&["commit", "-q", "-am", "retired"]);

    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: in the earlier format (an [approved] map)",
            ws.lock_shown()
        )),
        "{}",
        run.stderr
    );
    let lost = format!(
        "{}: retired-email:2025.01.0 was released with content 111111111111 in commit {} (the earlier format) and is no longer released",
        ws.lock_shown(),
        &first[..12]
    );
    assert!(run.stderr.contains(&lost), "{}", run.stderr);
    // Conversion is refused while the history says a release is gone.
    assert!(!ws.herald(&["check", "--record-templates"]).ok);
    assert_eq!(ws.lock_text(), legacy);

    // Without that commit's loss (a fresh history), the map converts: same ids, same hashes.
    std::fs::remove_dir_all(ws.root.join(".git")).unwrap();
    ws.git(&["init", "-q"]);
    ws.git(&["add", "."]);
    ws.git(&["commit", "-q", "-m", "the earlier format"]);
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(run.ok, "{run:?}");
    let converted = ws.lock_text();
    assert!(
        converted.contains("Entries 1 to 16 were converted from the earlier format"),
        "{converted}"
    );
    let (_, again) = split_entries(&converted);
    assert_eq!(again.len(), 16);
    for (old, new) in entries.iter().zip(&again) {
        let old: toml::Table = toml::from_str(&old.replace("[[entry]]", "")).unwrap();
        let new: toml::Table = toml::from_str(&new.replace("[[entry]]", "")).unwrap();
        for field in ["action", "id", "content", "approved_by"] {
            assert_eq!(old[field], new[field], "{field}");
        }
    }
    ws.git(&["commit", "-q", "-am", "converted"]);
    let run = ws.herald(&["check"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("history checked against 2 committed version(s)"),
        "{}",
        run.stdout
    );
}

/// A shallow clone has one commit of the lock's history: `herald check` compares the lock with
/// that one, passes, and says that the clone is shallow. This shows the note, no protection:
/// a lock rewritten with every link recomputed before the clone was made passes here as well
/// (the database anchor of `herald run` refuses it, see
/// `the_database_anchors_every_release_and_refuses_a_lock_rewritten_with_its_links`).
#[test]
fn a_shallow_clone_passes_with_a_note_that_only_its_commits_were_compared() {
    let ws = Workspace::new();
    ws.git(&["init", "-q"]);
    ws.git(&["add", "."]);
    ws.git(&["commit", "-q", "-m", "first"]);
    let run = ws.herald(&[
        "templates",
        "withdraw",
        "quote-proposal-email:2026.07.0",
        "--reason",
        "old",
    ]);
    assert!(run.ok, "{run:?}");
    ws.git(&["commit", "-q", "-am", "withdrawn"]);
    let clones = tempfile::tempdir().unwrap();
    let clone = clones.path().join("clone");
    git(
        clones.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &format!("file://{}", ws.root.display()),
            clone.to_str().unwrap(),
        ],
    );
    let templates = clone.join("templates");
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("check")
        .env("HERALD_PATHS__RULES", clone.join("rules/events.toml"))
        .env("HERALD_PATHS__TOPICS", clone.join("topics"))
        .env("HERALD_PATHS__TEMPLATES", &templates)
        .env("HERALD_PATHS__BPMN", clone.join("bpmn"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "{}: history checked against 1 committed version(s); the clone is shallow",
            templates.join("approved.lock").display()
        )),
        "{stdout}"
    );
}

fn only_the_api() -> Components {
    Components {
        workers: false,
        delivery: false,
        relay: false,
        api: true,
    }
}

/// `herald run`'s start with `settings`, which must refuse: its error.
async fn refused_start(settings: herald::config::Settings) -> String {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let started = herald::runtime::start(settings, only_the_api(), shutdown.clone()).await;
    shutdown.cancel();
    match started {
        Ok(_) => panic!("herald started"),
        Err(e) => e.to_string(),
    }
}

/// The anchored releases: (id, content hash, approver, withdrawn by, withdrawn reason).
async fn anchored(db: &TestDb) -> Vec<(String, String, String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT id, content_hash, approved_by, withdrawn_by, withdrawn_reason FROM template_release ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_anchors_every_release_and_refuses_a_lock_rewritten_with_its_links() {
    let ws = Workspace::new();
    let db = TestDb::create().await;
    let templates = ws.templates.to_str().unwrap().to_string();
    let settings = || {
        test_settings(
            &db,
            "smtp://127.0.0.1:2525",
            &new_lane(),
            &[("HERALD_PATHS__TEMPLATES", &templates)],
        )
    };
    let herald = spawn_herald(settings(), only_the_api()).await;
    herald.stop().await;
    let (_, entries) = split_entries(&ws.lock_text());
    let rows = anchored(&db).await;
    assert_eq!(rows.len(), entries.len());
    for block in &entries {
        let row = rows
            .iter()
            .find(|r| r.0 == field(block, "id"))
            .unwrap_or_else(|| panic!("{block} not anchored: {rows:?}"));
        assert_eq!(
            (&row.1, &row.2, &row.3),
            (
                &field(block, "content"),
                &field(block, "approved_by"),
                &None
            )
        );
    }

    // Whoever can commit changes an approved body, puts its hash in the entry and recomputes
    // every link (the test's own link and hash functions must agree with herald's first).
    let id = "quote-proposal-email:2026.11.1";
    let folder = ws.folder("quote-proposal-email", "2026.11.1");
    let mut again = entries.clone();
    relink(&mut again);
    assert_eq!(again, entries, "the test computes links as herald does");
    assert!(entries[13].contains(&format!("\"{id}\"")));
    let released = field(&entries[13], "content");
    assert_eq!(
        source_hash(&folder),
        released,
        "the test hashes as herald does"
    );
    let (lock, body) = (ws.lock_text(), folder.join("body.txt.hbs"));
    let original = std::fs::read_to_string(&body).unwrap();
    ws.edit(&body, "please find", "kindly find");
    let forged = source_hash(&folder);
    ws.edit_entries(|entries| {
        entries[13] = set_field(&entries[13], "content", &forged);
        relink(entries);
    });
    // The lock alone accepts it: its chain is intact and the hash is the version's.
    TemplateRegistry::load(&ws.templates).expect("the rewritten lock passes on its own");
    // The database does not.
    let refused = refused_start(settings()).await;
    assert!(
        refused.starts_with("1 release(s) in approved.lock disagree with the releases this deployment's database anchored"),
        "{refused}"
    );
    assert!(
        refused.contains(&format!(
            "{id}: its content changed: released with content {} approved by commercial-legal, first loaded "
            , &released[..12]
        )) && refused.contains(&format!(
            "entry 14 of approved.lock now releases content {}: an approved version never changes",
            &forged[..12]
        )),
        "{refused}"
    );
    assert!(
        !refused.contains("kindly find") && !refused.contains("please find"),
        "{refused}"
    );
    assert_eq!(anchored(&db).await, rows, "a refused start writes nothing");

    // Restored, it starts; a genuine release and a withdrawal are anchored.
    std::fs::write(&body, original).unwrap();
    std::fs::write(ws.lock(), lock).unwrap();
    spawn_herald(settings(), only_the_api()).await.stop().await;
    let new = new_version(&ws, "2026.12.0", "2026-12-01T00:00:00Z");
    assert_eq!(
        TemplateRegistry::record_approved(&ws.templates).unwrap(),
        ["quote-proposal-email:2026.12.0"]
    );
    let run = ws.herald(&[
        "templates",
        "withdraw",
        "quote-proposal-email:2026.07.0",
        "--reason",
        "retired",
    ]);
    assert!(run.ok, "{run:?}");
    let herald = spawn_herald(settings(), only_the_api()).await;
    let log = herald.log_text();
    herald.stop().await;
    assert!(
        log.contains("new_releases=[\"quote-proposal-email:2026.12.0\"] new_withdrawals=[\"quote-proposal-email:2026.07.0\"]"),
        "{log}"
    );
    let rows = anchored(&db).await;
    assert_eq!(rows.len(), entries.len() + 1);
    assert!(
        rows.contains(&(
            "quote-proposal-email:2026.12.0".into(),
            source_hash(&new),
            "legal".into(),
            None,
            None
        )),
        "{rows:?}"
    );
    let withdrawn = rows
        .iter()
        .find(|r| r.0 == "quote-proposal-email:2026.07.0")
        .unwrap();
    assert_eq!(
        (withdrawn.3.as_deref(), withdrawn.4.as_deref()),
        (Some("tester"), Some("retired"))
    );
    let (_, now) = split_entries(&ws.lock_text());
    let withdrawn_at: DateTime<Utc> =
        sqlx::query_scalar("SELECT withdrawn_at FROM template_release WHERE id = $1")
            .bind("quote-proposal-email:2026.07.0")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(withdrawn_at, at(&field(&now[17], "at")));

    // The withdrawal dropped (the tail: the chain stays intact): refused.
    ws.edit_entries(|entries| {
        assert!(entries.pop().unwrap().contains("WITHDRAW"));
    });
    TemplateRegistry::load(&ws.templates).expect("the chain is intact");
    let refused = refused_start(settings()).await;
    assert!(
        refused.contains(&format!(
            "quote-proposal-email:2026.07.0: its withdrawal is gone from approved.lock (withdrawn on {} by tester (retired)): a withdrawn version is never released again",
            field(&now[17], "at")
        )),
        "{refused}"
    );
    // The new release dropped as well, with its folder (the record before both, as a rollback
    // would have it): that release is nothing it could send, no disagreement; the withdrawal
    // still is one (the version it withdrew would be in force again).
    ws.edit_entries(|entries| {
        assert!(entries.pop().unwrap().contains("2026.12.0"));
    });
    std::fs::remove_dir_all(&new).unwrap();
    TemplateRegistry::load(&ws.templates).expect("the chain is intact");
    let refused = refused_start(settings()).await;
    assert!(
        refused.starts_with("1 release(s)")
            && refused.contains("quote-proposal-email:2026.07.0: its withdrawal is gone")
            && !refused.contains("2026.12.0"),
        "{refused}"
    );
    let anchored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM template_release WHERE id = 'quote-proposal-email:2026.12.0'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(anchored, 1, "the anchor keeps what it saw");
}

#[test]
fn a_release_dropped_by_a_merge_is_found_on_the_side_it_came_from() {
    let ws = Workspace::new();
    ws.git(&["init", "-q"]);
    ws.git(&["add", "."]);
    ws.git(&["commit", "-q", "-m", "base"]);
    // A side branch releases one version, main another.
    ws.git(&["checkout", "-q", "-b", "side"]);
    let x = new_version(&ws, "2026.12.0", "2026-12-01T00:00:00Z");
    let released = source_hash(&x);
    assert!(ws.herald(&["check", "--record-templates"]).ok);
    ws.git(&["add", "-A"]);
    ws.git(&["commit", "-q", "-m", "side: release 2026.12.0"]);
    let side = ws.git(&["rev-parse", "HEAD"]);
    ws.git(&["checkout", "-q", "main"]);
    new_version(&ws, "2026.12.1", "2026-12-15T00:00:00Z");
    assert!(ws.herald(&["check", "--record-templates"]).ok);
    ws.git(&["add", "-A"]);
    ws.git(&["commit", "-q", "-m", "main: release 2026.12.1"]);
    // The merge keeps main's lock: the side's release is dropped, its folder kept.
    ws.git(&["merge", "-q", "-X", "ours", "--no-edit", "side"]);
    assert!(x.is_dir() && !ws.lock_text().contains("2026.12.0"));
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: entry 17 (RELEASE quote-proposal-email:2026.12.0), committed in {}, is gone",
            ws.lock_shown(),
            &side[..12]
        )),
        "{}",
        run.stderr
    );
    // Changed since, the version is not released again with its new content.
    ws.edit(&x.join("body.txt.hbs"), "New wording", "Other wording");
    let changed = source_hash(&x);
    let before = ws.lock_text();
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: entry 17 (RELEASE quote-proposal-email:2026.12.0) changed since commit {} (content {} then, {} now)",
            ws.lock_shown(),
            &side[..12],
            &released[..12],
            &changed[..12]
        )),
        "{}",
        run.stderr
    );
    assert_eq!(ws.lock_text(), before);
    // As the side released it, recording restores the release, after main's: both branches'
    // releases are kept, each in another place of the merged chain than on its branch.
    ws.edit(&x.join("body.txt.hbs"), "Other wording", "New wording");
    let run = ws.herald(&["check", "--record-templates"]);
    assert!(
        run.ok
            && run
                .stdout
                .contains("recorded approved template quote-proposal-email:2026.12.0"),
        "{run:?}"
    );
    let (_, entries) = split_entries(&ws.lock_text());
    assert_eq!(field(&entries[16], "id"), "quote-proposal-email:2026.12.1");
    assert_eq!(field(&entries[17], "content"), released);
    ws.git(&["commit", "-q", "-am", "the side's release, restored"]);
    // Every version of the lock on both branches: the base, the side's, main's, the merge's and
    // the restored one.
    let run = ws.herald(&["check"]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("history checked against 5 committed version(s)"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_release_naming_another_approver_than_its_version_is_refused() {
    let ws = Workspace::new();
    let folder = ws.folder("quote-proposal-email", "2026.11.1");
    ws.edit_entries(|entries| {
        assert!(entries[13].contains("\"quote-proposal-email:2026.11.1\""));
        entries[13] = set_field(&entries[13], "approved_by", "someone-else");
        relink(entries);
    });
    let run = ws.herald(&["check"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(&format!(
            "{}: entry 14 (RELEASE quote-proposal-email:2026.11.1) of approved.lock releases quote-proposal-email:2026.11.1 approved by someone-else, but the version is approved by commercial-legal (approved_by in template.toml)",
            folder.display()
        )) && !run.stderr.contains("its link does not follow"),
        "{}",
        run.stderr
    );
    assert!(TemplateRegistry::load(&ws.templates).is_err());
    assert!(TemplateRegistry::record_approved(&ws.templates).is_err());
}
