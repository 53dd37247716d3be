//! The environment's part of the settings: which `HERALD_*` variables are settings, the secrets
//! that may come only from there, and the older integer names of durations, still read in their
//! unit.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConfigError;

/// Keys read only from the environment, and their variables.
pub(super) const SECRETS: &[(&str, &str)] = &[
    ("smtp.password", "HERALD_SMTP__PASSWORD"),
    ("artifacts.link_secret", "HERALD_ARTIFACTS__LINK_SECRET"),
    ("content.key", "HERALD_CONTENT__KEY"),
    ("keys.encryption", "HERALD_KEYS__ENCRYPTION"),
    ("keys.recipient_ref", "HERALD_KEYS__RECIPIENT_REF"),
    (
        "feedback.postmark_credentials",
        "HERALD_FEEDBACK__POSTMARK_CREDENTIALS",
    ),
];

/// The top-level keys and the sections: a `HERALD_` variable is a setting when it names one of
/// the keys, or starts with a section and `__`. Others (HERALD_BIN, HERALD_STACK_PG_PORT, …)
/// belong to scripts and tests, and are left alone.
pub(super) const TOP_LEVEL_KEYS: &[&str] = &["database_url", "camunda_url", "smtp_url"];
pub(super) const SECTIONS: &[&str] = &[
    "database",
    "camunda",
    "smtp",
    "delivery",
    "relay",
    "paths",
    "log",
    "artifacts",
    "api",
    "content",
    "keys",
    "webhooks",
    "feedback",
];

/// Lists: comma-separated in the environment.
const LIST_KEYS: &[&str] = &["delivery.retry_schedule", "webhooks.allowed_hosts"];

#[derive(Clone, Copy)]
pub(super) enum OldUnit {
    /// A whole number of milliseconds.
    Millis,
    /// A whole number of seconds.
    Seconds,
    /// Comma-separated seconds, fractions allowed.
    SecondsList,
}

/// The integer names the durations had, still read from the environment in their unit: the old
/// key, the key it sets, its unit.
pub(super) const OLD_NAMES: &[(&str, &str, OldUnit)] = &[
    ("camunda.long_poll_ms", "camunda.long_poll", OldUnit::Millis),
    (
        "camunda.shutdown_grace_ms",
        "camunda.shutdown_grace",
        OldUnit::Millis,
    ),
    ("smtp.timeout_ms", "smtp.timeout", OldUnit::Millis),
    (
        "smtp.pool_get_timeout_ms",
        "smtp.pool_get_timeout",
        OldUnit::Millis,
    ),
    ("delivery.lease_ms", "delivery.lease", OldUnit::Millis),
    (
        "delivery.poll_interval_ms",
        "delivery.poll_interval",
        OldUnit::Millis,
    ),
    (
        "delivery.retry_schedule_s",
        "delivery.retry_schedule",
        OldUnit::SecondsList,
    ),
    (
        "delivery.max_retry_after_s",
        "delivery.max_retry_after",
        OldUnit::Seconds,
    ),
    (
        "relay.poll_interval_ms",
        "relay.poll_interval",
        OldUnit::Millis,
    ),
    ("relay.gather_ms", "relay.gather", OldUnit::Millis),
    (
        "relay.correlation_deadline_s",
        "relay.correlation_deadline",
        OldUnit::Seconds,
    ),
    ("relay.min_backoff_ms", "relay.min_backoff", OldUnit::Millis),
    ("relay.max_backoff_ms", "relay.max_backoff", OldUnit::Millis),
    (
        "artifacts.link_ttl_s",
        "artifacts.link_ttl",
        OldUnit::Seconds,
    ),
    (
        "artifacts.wait_retry_ms",
        "artifacts.wait_retry",
        OldUnit::Millis,
    ),
    ("webhooks.timeout_ms", "webhooks.timeout", OldUnit::Millis),
    (
        "webhooks.breaker_cooldown_s",
        "webhooks.breaker_cooldown",
        OldUnit::Seconds,
    ),
    (
        "webhooks.rotation_grace_s",
        "webhooks.rotation_grace",
        OldUnit::Seconds,
    ),
    (
        "webhooks.endpoint_cache_ms",
        "webhooks.endpoint_cache",
        OldUnit::Millis,
    ),
    (
        "webhooks.rate_limit_max_wait_ms",
        "webhooks.rate_limit_max_wait",
        OldUnit::Millis,
    ),
];

/// `delivery.lease` → `HERALD_DELIVERY__LEASE`.
pub(super) fn env_name(key: &str) -> String {
    format!("HERALD_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// The environment's part: plain variables for `config`'s `Environment` source (read as
/// strings; `config` converts them to the field's type), and the values this module converts
/// itself (lists, old names), which go in as overrides.
pub(super) struct EnvLayer {
    pub(super) plain: BTreeMap<String, String>,
    pub(super) converted: Vec<(String, config::Value)>,
}

impl EnvLayer {
    pub(super) fn read(vars: BTreeMap<String, String>) -> Result<EnvLayer, ConfigError> {
        let mut layer = EnvLayer {
            plain: BTreeMap::new(),
            converted: Vec::new(),
        };
        // The setting's key → the variable that set it, to refuse one set twice.
        let mut set_by: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("HERALD_") else {
                continue;
            };
            let key = rest.to_lowercase().replace("__", ".");
            let is_setting = TOP_LEVEL_KEYS.contains(&key.as_str())
                || key
                    .split_once('.')
                    .is_some_and(|(section, _)| SECTIONS.contains(&section));
            if !is_setting {
                continue;
            }
            let target =
                if let Some((_, new, unit)) = OLD_NAMES.iter().find(|(old, ..)| *old == key) {
                    let value = old_value(&name, &value, *unit)?;
                    layer.converted.push((new.to_string(), value));
                    new.to_string()
                } else if LIST_KEYS.contains(&key.as_str()) {
                    let items: Vec<String> = value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    layer.converted.push((key.clone(), items.into()));
                    key
                } else {
                    layer.plain.insert(name.clone(), value);
                    key
                };
            if let Some(other) = set_by.insert(target.clone(), name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "{other} and {name} both set {target}: set only one"
                )));
            }
        }
        Ok(layer)
    }
}

/// An old integer name's value as a duration (or a list of them), in humantime form.
fn old_value(name: &str, value: &str, unit: OldUnit) -> Result<config::Value, ConfigError> {
    let whole = |unit: &str| {
        value.trim().parse::<u64>().map_err(|_| {
            ConfigError::Invalid(format!(
                "{name}: expected a whole number of {unit}, got {value:?}"
            ))
        })
    };
    let text = |d: Duration| humantime::format_duration(d).to_string();
    Ok(match unit {
        OldUnit::Millis => text(Duration::from_millis(whole("milliseconds")?)).into(),
        OldUnit::Seconds => text(Duration::from_secs(whole("seconds")?)).into(),
        OldUnit::SecondsList => {
            let mut delays = Vec::new();
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item.parse::<f64>() {
                    Ok(s) if s.is_finite() && s >= 0.0 => {
                        delays.push(text(Duration::from_secs_f64(s)))
                    }
                    _ => {
                        return Err(ConfigError::Invalid(format!(
                            "{name}: entries must be zero or more seconds, got {item:?}"
                        )))
                    }
                }
            }
            delays.into()
        }
    })
}
