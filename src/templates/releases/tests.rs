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
        messages[1].starts_with("z:9 was released") && messages[1].contains("no longer released"),
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
