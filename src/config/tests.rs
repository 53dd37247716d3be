//! Tests of the settings: defaults, layers, old names, secrets.
use secrecy::ExposeSecret;

use super::*;

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn the_defaults_are_the_documented_values() {
    let s = Settings::load_from(None, []).unwrap();
    let secs = Duration::from_secs;
    let ms = Duration::from_millis;
    assert_eq!(
        s.database_url,
        "postgres://herald:herald@127.0.0.1:55432/herald"
    );
    assert_eq!(s.camunda_url, "http://127.0.0.1:8080/engine-rest");
    assert_eq!(s.smtp_url, "smtp://127.0.0.1:2525");
    assert_eq!(s.database.max_connections, 10);
    assert!(s.database.migrate_on_start);
    assert_eq!(s.camunda.worker_id, None);
    assert_eq!(s.camunda.max_tasks, 10);
    assert_eq!(s.camunda.max_in_flight, 32);
    assert_eq!(s.camunda.long_poll, ms(20_000));
    assert_eq!(s.camunda.long_poll_margin, ms(15_000));
    assert_eq!(s.camunda.lane, None);
    assert_eq!(s.camunda.shutdown_grace, ms(10_000));
    assert_eq!(s.smtp.from, "herald <noreply@herald.local>");
    assert_eq!(s.smtp.timeout, ms(10_000));
    assert_eq!(s.smtp.pool_max, 4);
    assert_eq!(s.smtp.pool_get_timeout, ms(30_000));
    assert_eq!(s.smtp.username, None);
    assert!(s.smtp.password.is_none());
    assert_eq!(s.delivery.batch_size, 64);
    assert_eq!(s.delivery.max_in_flight, 128);
    assert_eq!(s.delivery.lease, ms(60_000));
    assert_eq!(s.delivery.poll_interval, ms(10_000));
    assert_eq!(
        s.delivery.retry_schedule,
        [secs(0), secs(60), secs(300), secs(1800), secs(7200)]
    );
    assert_eq!(s.delivery.jitter, 0.1);
    assert_eq!(s.delivery.max_retry_after, secs(3600));
    assert_eq!(s.delivery.resend_window, secs(30 * 24 * 3600));
    assert!(s.delivery.schedules.is_empty());
    assert_eq!(s.relay.batch_size, 100);
    assert_eq!(s.relay.poll_interval, ms(10_000));
    assert_eq!(s.relay.gather, ms(20));
    assert_eq!(s.relay.correlation_deadline, secs(3600));
    assert_eq!(s.relay.min_backoff, ms(200));
    assert_eq!(s.relay.max_backoff, ms(30_000));
    assert_eq!(s.paths.topics, Path::new("topics"));
    assert_eq!(s.paths.templates, Path::new("templates"));
    assert_eq!(s.paths.bpmn, Path::new("bpmn"));
    assert_eq!(s.paths.rules, Path::new("rules/events.toml"));
    assert_eq!(s.paths.element_templates, Path::new("element-templates"));
    assert_eq!(s.api.listen, "127.0.0.1:8090");
    assert_eq!(s.api.key_environment, "live");
    assert_eq!(s.api.max_body_bytes, 1_048_576);
    assert_eq!(s.api.rate_limit.per_second.get(), 50);
    assert_eq!(s.api.rate_limit.burst.get(), 100);
    assert_eq!(
        s.artifacts.portal_base_url,
        "https://portal.herald.local/documents"
    );
    assert_eq!(s.artifacts.link_ttl, secs(14 * 24 * 3600));
    assert_eq!(s.artifacts.max_attachment_bytes, 10 * 1024 * 1024);
    assert_eq!(s.artifacts.wait_retry, ms(60_000));
    assert!(s.artifacts.link_secret.is_none());
    assert!(s.content.key.is_none());
    assert!(!s.webhooks.allow_http);
    assert!(s.webhooks.allowed_hosts.is_empty());
    assert_eq!(s.webhooks.timeout, ms(10_000));
    assert_eq!(s.webhooks.breaker_threshold, 5);
    assert_eq!(s.webhooks.breaker_cooldown, secs(30));
    assert_eq!(s.webhooks.disable_after, 50);
    assert_eq!(s.webhooks.endpoint_cache, ms(5000));
    assert_eq!(s.webhooks.rate_limit_max_wait, ms(20_000));
    assert_eq!(s.webhooks.rotation_grace, secs(24 * 3600));
    assert!(s.feedback.postmark_credentials.is_none());
    assert_eq!(s.log.format, "text");
    assert_eq!(s.log.filter, "info");
}

#[test]
fn every_key_of_the_default_file_has_a_comment_and_the_tables_are_known() {
    let mut previous = "";
    for line in DEFAULTS.lines() {
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') && !line.starts_with('[') {
            assert!(previous.starts_with('#'), "no comment above `{line}`");
        }
        previous = line;
    }
    let table: toml::Table = DEFAULTS.parse().unwrap();
    for (key, value) in &table {
        if value.is_table() {
            assert!(SECTIONS.contains(&key.as_str()), "section {key}");
        } else {
            assert!(TOP_LEVEL_KEYS.contains(&key.as_str()), "key {key}");
        }
    }
    assert_eq!(table.len(), TOP_LEVEL_KEYS.len() + SECTIONS.len());
    // Each old name is documented next to the key it sets, and that key has a default.
    for (old, new, _) in OLD_NAMES {
        assert!(DEFAULTS.contains(&env_name(old)), "{old} is not documented");
        let (section, key) = new.split_once('.').unwrap();
        assert!(table[section].get(key).is_some(), "{new} has no default");
    }
}

#[test]
fn old_integer_names_in_the_environment_are_read_in_their_unit_and_override_the_file() {
    let (_dir, path) = file("[delivery]\nlease = \"30s\"\n");
    let s = Settings::load_from(
        Some(&path),
        env(&[
            ("HERALD_DELIVERY__LEASE_MS", "2000"),
            ("HERALD_DELIVERY__RETRY_SCHEDULE_S", "0,0.4,0.4"),
            ("HERALD_CAMUNDA__LONG_POLL_MS", "5000"),
            ("HERALD_RELAY__CORRELATION_DEADLINE_S", "2"),
            ("HERALD_WEBHOOKS__BREAKER_COOLDOWN_S", "2"),
            ("HERALD_WEBHOOKS__ENDPOINT_CACHE_MS", "0"),
            ("HERALD_ARTIFACTS__LINK_TTL_S", "3600"),
            ("HERALD_ARTIFACTS__WAIT_RETRY_MS", "500"),
        ]),
    )
    .unwrap();
    assert_eq!(s.delivery.lease, Duration::from_millis(2000));
    assert_eq!(
        s.delivery.retry_schedule,
        [
            Duration::ZERO,
            Duration::from_millis(400),
            Duration::from_millis(400)
        ]
    );
    assert_eq!(s.camunda.long_poll, Duration::from_secs(5));
    assert_eq!(s.relay.correlation_deadline, Duration::from_secs(2));
    assert_eq!(s.webhooks.breaker_cooldown, Duration::from_secs(2));
    assert_eq!(s.webhooks.endpoint_cache, Duration::ZERO);
    assert_eq!(s.artifacts.link_ttl, Duration::from_secs(3600));
    assert_eq!(s.artifacts.wait_retry, Duration::from_millis(500));

    let err = Settings::load_from(None, env(&[("HERALD_DELIVERY__LEASE_MS", "2s")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("HERALD_DELIVERY__LEASE_MS"), "{err}");
    let err = Settings::load_from(None, env(&[("HERALD_DELIVERY__RETRY_SCHEDULE_S", "0,-1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("zero or more seconds"), "{err}");
}

#[test]
fn new_names_in_the_environment_take_durations_and_lists() {
    let s = Settings::load_from(
        None,
        env(&[
            ("HERALD_DELIVERY__LEASE", "90s"),
            ("HERALD_DELIVERY__RETRY_SCHEDULE", "0, 1m, 1h 30m"),
            ("HERALD_WEBHOOKS__ALLOWED_HOSTS", "127.0.0.1,localhost"),
            ("HERALD_DELIVERY__BATCH_SIZE", "50"),
            ("HERALD_WEBHOOKS__ALLOW_HTTP", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(s.delivery.lease, Duration::from_secs(90));
    assert_eq!(
        s.delivery.retry_schedule,
        [
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(5400)
        ]
    );
    assert_eq!(s.webhooks.allowed_hosts, ["127.0.0.1", "localhost"]);
    assert_eq!(s.delivery.batch_size, 50);
    assert!(s.webhooks.allow_http);
}

#[test]
fn a_setting_set_under_its_old_and_its_new_name_is_refused() {
    let err = Settings::load_from(
        None,
        env(&[
            ("HERALD_DELIVERY__LEASE", "1s"),
            ("HERALD_DELIVERY__LEASE_MS", "2000"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("HERALD_DELIVERY__LEASE ") && err.contains("HERALD_DELIVERY__LEASE_MS"),
        "{err}"
    );
}

#[test]
fn a_duration_string_in_the_file_parses_and_a_bare_number_is_refused() {
    let (_dir, path) = file(
        "[camunda]\nlong_poll = \"1m 30s\"\n[artifacts]\nlink_ttl = \"2d\"\n\
         [relay]\ngather = \"500ms\"\n[delivery]\nretry_schedule = [\"0s\", \"2m\"]\n",
    );
    let s = Settings::load_from(Some(&path), []).unwrap();
    assert_eq!(s.camunda.long_poll, Duration::from_secs(90));
    assert_eq!(s.artifacts.link_ttl, Duration::from_secs(2 * 24 * 3600));
    assert_eq!(s.relay.gather, Duration::from_millis(500));
    assert_eq!(
        s.delivery.retry_schedule,
        [Duration::ZERO, Duration::from_secs(120)]
    );

    let (_dir, path) = file("[delivery]\nlease = 60000\n");
    let err = Settings::load_from(Some(&path), [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("delivery.lease"), "{err}");

    let (_dir, path) = file("[camunda]\nlong_poll = \"31m\"\n");
    let err = Settings::load_from(Some(&path), [])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("camunda.long_poll must be at most 30m"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_in_the_file_is_refused() {
    for text in [
        "[delivery]\nleese = \"1s\"\n",
        "[delivry]\nlease = \"1s\"\n",
        "databse_url = \"postgres://x\"\n",
    ] {
        let (_dir, path) = file(text);
        let err = Settings::load_from(Some(&path), [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{text}: {err}");
    }
    let (_dir, path) = file("[delivery]\nlease_ms = 2000\n");
    let err = Settings::load_from(Some(&path), []).unwrap_err();
    assert!(matches!(err, ConfigError::OldNameInFile { .. }), "{err}");
    assert!(err.to_string().contains("delivery.lease,"), "{err}");
}

#[test]
fn a_secret_in_the_file_is_refused() {
    for (key, env) in SECRETS {
        let (section, name) = key.split_once('.').unwrap();
        let (_dir, path) = file(&format!("[{section}]\n{name} = \"s3cret\"\n"));
        let err = Settings::load_from(Some(&path), []).unwrap_err();
        assert!(matches!(err, ConfigError::SecretInFile { .. }), "{err}");
        assert!(err.to_string().contains(env), "{err}");
    }
}

#[test]
fn other_herald_variables_are_left_alone_but_a_typo_in_a_section_is_refused() {
    let (_dir, path) = file("[log]\nfilter = \"debug\"\n");
    let s = Settings::load_from(
        None,
        env(&[
            ("HERALD_BIN", "/opt/herald"),
            ("HERALD_CONFIG", path.to_str().unwrap()),
            ("HERALD_STACK_PG_PORT", "55432"),
            ("HERALD_BENCH_N", "20000"),
            ("HERALD_PID", ".stack/herald.pid"),
            ("HERALD_TEST_PYTHON", "python3"),
            ("HERALDRY", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(s.log.filter, "debug", "HERALD_CONFIG names the file");

    let err = Settings::load_from(None, env(&[("HERALD_DELIVERY__LEESE", "1s")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("leese"), "{err}");
}

#[test]
fn environment_strings_are_kept_as_written() {
    let s = Settings::load_from(
        None,
        env(&[
            ("HERALD_CAMUNDA__LANE", "007"),
            ("HERALD_SMTP__PASSWORD", "0012"),
            ("HERALD_DATABASE__MIGRATE_ON_START", "false"),
        ]),
    )
    .unwrap();
    assert_eq!(s.camunda.lane.as_deref(), Some("007"));
    assert_eq!(s.smtp.password.unwrap().expose_secret(), "0012");
    assert!(!s.database.migrate_on_start);
}

fn with_secrets() -> Settings {
    Settings::load_from(
        None,
        env(&[
            ("HERALD_SMTP__PASSWORD", "smtp-pass-1"),
            ("HERALD_ARTIFACTS__LINK_SECRET", "link-secret-2"),
            ("HERALD_CONTENT__KEY", "content-key-4"),
            ("HERALD_KEYS__ENCRYPTION", "k1:encryption-key-6"),
            ("HERALD_KEYS__RECIPIENT_REF", "recipient-ref-key-7"),
            ("HERALD_FEEDBACK__POSTMARK_CREDENTIALS", "user:postmark-5"),
            ("HERALD_DELIVERY__LEASE_MS", "2000"),
            ("HERALD_CAMUNDA__LANE", "lane-x"),
        ]),
    )
    .unwrap()
}

const SECRET_VALUES: &[&str] = &[
    "smtp-pass-1",
    "link-secret-2",
    "content-key-4",
    "postmark-5",
    "encryption-key-6",
    "recipient-ref-key-7",
];

#[test]
fn debug_shows_no_secret() {
    let s = with_secrets();
    let debug = format!("{s:?} {s:#?}");
    for secret in SECRET_VALUES {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("lane-x"));
    assert_eq!(s.smtp.password.unwrap().expose_secret(), "smtp-pass-1");
}

#[test]
fn the_api_rate_is_set_by_nested_variables_and_the_old_token_is_refused() {
    let s = Settings::load_from(
        None,
        env(&[
            ("HERALD_API__RATE_LIMIT__PER_SECOND", "7"),
            ("HERALD_API__KEY_ENVIRONMENT", "test"),
        ]),
    )
    .unwrap();
    assert_eq!(s.api.rate_limit.per_second.get(), 7);
    assert_eq!(s.api.rate_limit.burst.get(), 100);
    assert_eq!(s.api.key_environment, "test");
    let refused = Settings::load_from(None, env(&[("HERALD_API__TOKEN", "x")])).unwrap_err();
    assert!(refused.to_string().contains("token"), "{refused}");
    assert!(Settings::load_from(None, env(&[("HERALD_API__RATE_LIMIT__BURST", "0")])).is_err());
}

#[test]
fn config_show_redacts_secrets_and_shows_overrides() {
    let shown = with_secrets().to_toml();
    for secret in SECRET_VALUES {
        assert!(!shown.contains(secret), "{secret} in\n{shown}");
    }
    let table: toml::Table = shown.parse().unwrap();
    assert_eq!(table["smtp"]["password"].as_str(), Some("[redacted]"));
    assert_eq!(table["keys"]["encryption"].as_str(), Some("[redacted]"));
    assert_eq!(table["delivery"]["lease"].as_str(), Some("2s"));
    assert_eq!(table["camunda"]["lane"].as_str(), Some("lane-x"));
    assert_eq!(table["artifacts"]["link_ttl"].as_str(), Some("14days"));

    // Unset secrets are left out, and what is shown loads again as a file, to the same.
    let plain = Settings::load_from(None, env(&[("HERALD_DELIVERY__LEASE_MS", "2000")]))
        .unwrap()
        .to_toml();
    assert!(!plain.contains("redacted"), "{plain}");
    let (_dir, path) = file(&plain);
    assert_eq!(
        Settings::load_from(Some(&path), []).unwrap().to_toml(),
        plain
    );
}

#[test]
fn a_resend_window_of_zero_keeps_nothing_and_one_without_its_unit_is_refused() {
    let s = Settings::load_from(None, env(&[("HERALD_DELIVERY__RESEND_WINDOW", "0s")])).unwrap();
    assert_eq!(s.delivery.resend_window, Duration::ZERO);
    let s = Settings::load_from(None, env(&[("HERALD_DELIVERY__RESEND_WINDOW", "2h")])).unwrap();
    assert_eq!(s.delivery.resend_window, Duration::from_secs(7200));
    let err = Settings::load_from(None, env(&[("HERALD_DELIVERY__RESEND_WINDOW", "30")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("resend_window"), "{err}");
}
