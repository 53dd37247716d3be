use super::*;

/// The statements of every migration, in the order they run.
fn migration_statements() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.starts_with("ALTER TABLE"))
        .collect()
}

#[test]
fn the_migrations_check_exactly_the_values_of_the_enums() {
    let statements = migration_statements();
    let columns = checked_columns();
    for (table, column, check) in &columns {
        let name = format!("{table}_{column}_check");
        let added = format!("ADD CONSTRAINT {name} ");
        let last = statements
            .iter()
            .rposition(|s| s.contains(&added))
            .unwrap_or_else(|| panic!("no migration adds {name}"));
        let expected = format!("ALTER TABLE {table} ADD CONSTRAINT {name} {check} NOT VALID;");
        assert_eq!(statements[last], expected, "the last definition of {name}");
        let validate = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name};");
        assert!(
            statements[last..].contains(&validate),
            "no migration validates {name} after it is added"
        );
    }
    let named: std::collections::HashSet<String> = statements
        .iter()
        .filter_map(|s| s.split("ADD CONSTRAINT ").nth(1))
        .filter_map(|s| s.split(' ').next())
        .filter(|n| n.ends_with("_check"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        named.len(),
        columns.len(),
        "no CHECK constraint beyond the enums'"
    );
}

#[test]
fn statuses_round_trip_as_text() {
    for status in CommunicationStatus::ALL {
        assert_eq!(
            status.as_str().parse::<CommunicationStatus>().unwrap(),
            *status
        );
    }
    assert!("SENTX".parse::<CommunicationStatus>().is_err());
}

#[test]
fn final_states_are_final() {
    use CommunicationStatus::*;
    for to in CommunicationStatus::ALL {
        assert!(!FailedFinal.can_become(*to));
        assert!(!Suppressed.can_become(*to));
    }
    assert!(Queued.can_become(Sending));
    assert!(Sending.can_become(Sent));
    assert!(!Sent.can_become(FailedFinal));
    assert!(
        !Queued.can_become(Sent),
        "nothing is sent without an attempt"
    );
}

#[test]
fn outcomes_map_to_message_names() {
    assert_eq!(
        CommunicationStatus::Sent.outcome().unwrap().message_name(),
        "CommunicationSent"
    );
    assert_eq!(
        CommunicationStatus::FailedFinal
            .outcome()
            .unwrap()
            .message_name(),
        "CommunicationFailed"
    );
    assert_eq!(CommunicationStatus::FailedRetryable.outcome(), None);
}
