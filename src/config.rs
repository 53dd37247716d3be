//! Settings as data: the commented defaults of `config.default.toml` (compiled in), then an
//! optional TOML file of the same shape, then `HERALD_*` environment variables
//! (`HERALD_DATABASE_URL`; nested keys with a double underscore, e.g.
//! `HERALD_DELIVERY__BATCH_SIZE`). Every key is explained in `config.default.toml`.
//!
//! Durations are `Duration`s, written with their unit (`"20s"`); the older integer names
//! (`HERALD_DELIVERY__LEASE_MS`, …) are still read from the environment in their unit. Secrets
//! are `SecretString`s, read only from the environment, and never printed (`Debug`,
//! `herald config show`).
//!
//! The ground floor: this module uses nothing else of the crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The defaults, and the documentation of every key.
pub const DEFAULTS: &str = include_str!("../config.default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("{key} is a secret: set it in the environment ({env}), not in {file}")]
    SecretInFile {
        key: String,
        env: String,
        file: String,
    },
    #[error("{file}: {key} is now {new}, a duration with its unit (e.g. \"30s\"); the old name is read only from the environment ({env})")]
    OldNameInFile {
        key: String,
        new: String,
        env: String,
        file: String,
    },
    #[error("configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database_url: String,
    pub camunda_url: String,
    pub smtp_url: String,
    pub database: DatabaseSettings,
    pub camunda: CamundaSettings,
    pub smtp: SmtpSettings,
    pub delivery: DeliverySettings,
    pub relay: RelaySettings,
    pub paths: PathSettings,
    pub log: LogSettings,
    pub artifacts: ArtifactSettings,
    pub api: ApiSettings,
    #[serde(default)]
    pub content: ContentSettings,
    pub webhooks: WebhookSettings,
    #[serde(default)]
    pub feedback: FeedbackSettings,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackSettings {
    /// Secret: `user:password` of the HTTP basic authentication Postmark's webhooks are
    /// configured with. Unset: Postmark's format is refused.
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub postmark_credentials: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Plain `http://` endpoints are refused unless this is set (test rigs, in-cluster).
    pub allow_http: bool,
    /// Hosts (names or IP addresses) that may be private or loopback: the SSRF guard refuses
    /// every other endpoint that resolves to a private, loopback or link-local address.
    pub allowed_hosts: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Failures in a row that open an endpoint's circuit, and for how long.
    pub breaker_threshold: i32,
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// Failures in a row after which the endpoint is disabled (its messages are dead-lettered).
    pub disable_after: i32,
    /// How long the previous secret stays valid after a rotation.
    #[serde(with = "humantime_serde")]
    pub rotation_grace: Duration,
    /// How long a sender uses an endpoint it read (URL, secrets, status) before reading it
    /// again; a change to the subscription reaches the senders at once (LISTEN/NOTIFY), this is
    /// the safety net. Zero reads it for every message.
    #[serde(with = "humantime_serde")]
    pub endpoint_cache: Duration,
    /// Under an endpoint's rate limit, a message waits at most this long for its slot (well
    /// inside the delivery lease); a later slot makes it a RATE_LIMITED retry.
    #[serde(with = "humantime_serde")]
    pub rate_limit_max_wait: Duration,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContentSettings {
    /// Secret: 64 hex characters; encrypts the bodies of templates with retention
    /// ENCRYPTED_BODY.
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Where the HTTP API listens, e.g. `127.0.0.1:8090`.
    pub listen: String,
    /// Secret: when set, requests need it as a bearer token.
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSettings {
    /// Where customers open documents: links are `<base>/<tenant>/<artifact>?expires=…&signature=…`.
    pub portal_base_url: String,
    /// How long a portal link stays valid.
    #[serde(with = "humantime_serde")]
    pub link_ttl: Duration,
    /// Attachments larger than this are refused (the portal link is the way for them).
    pub max_attachment_bytes: u64,
    /// How long a task waits before it asks again for a document that is not available yet.
    #[serde(with = "humantime_serde")]
    pub wait_retry: Duration,
    /// Secret: the key that signs portal links.
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub link_secret: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    /// Apply migrations when `herald run` starts.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CamundaSettings {
    /// Defaults to `herald-<host>-<pid>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    pub max_tasks: u32,
    pub max_in_flight: usize,
    #[serde(with = "humantime_serde")]
    pub long_poll: Duration,
    /// When set, workers fetch only tasks whose process has the variable `heraldLane` with this
    /// value: a fleet can be split into lanes (e.g. per tenant, or per test run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub from: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub pool_max: u32,
    /// How long a send waits for a free SMTP connection.
    #[serde(with = "humantime_serde")]
    pub pool_get_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret.
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub batch_size: i64,
    /// Attempts in flight at once per process: jobs are claimed only as slots come free, so
    /// that no claimed job waits inside herald while its lease runs.
    pub max_in_flight: usize,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Delay before each attempt: first attempt, then each retry.
    #[serde(with = "delay_list")]
    pub retry_schedule: Vec<Duration>,
    pub jitter: f64,
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Schedules per communication type or criticality, e.g.
    /// `[delivery.schedules] EXTERNAL_WEBHOOK = ["0s", "1m", "5m"]`, `LOW = ["0s", "10m"]`
    /// (keys from the environment arrive in lower case).
    #[serde(default, with = "delay_lists")]
    pub schedules: BTreeMap<String, Vec<Duration>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    pub batch_size: i64,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// After a wake-up, how long the outbox relay lets more events gather before it reads
    /// them: one round for many commits (correlations are not that urgent).
    #[serde(with = "humantime_serde")]
    pub gather: Duration,
    /// How long a correlation is retried while the process is not (yet) waiting for it.
    #[serde(with = "humantime_serde")]
    pub correlation_deadline: Duration,
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PathSettings {
    pub topics: PathBuf,
    pub templates: PathBuf,
    pub bpmn: PathBuf,
    pub rules: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info,herald=debug`.
    pub filter: String,
}

/// Keys read only from the environment, and their variables.
const SECRETS: &[(&str, &str)] = &[
    ("smtp.password", "HERALD_SMTP__PASSWORD"),
    ("artifacts.link_secret", "HERALD_ARTIFACTS__LINK_SECRET"),
    ("api.token", "HERALD_API__TOKEN"),
    ("content.key", "HERALD_CONTENT__KEY"),
    (
        "feedback.postmark_credentials",
        "HERALD_FEEDBACK__POSTMARK_CREDENTIALS",
    ),
];

/// The top-level keys and the sections: a `HERALD_` variable is a setting when it names one of
/// the keys, or starts with a section and `__`. Others (HERALD_BIN, HERALD_STACK_PG_PORT, …)
/// belong to scripts and tests, and are left alone.
const TOP_LEVEL_KEYS: &[&str] = &["database_url", "camunda_url", "smtp_url"];
const SECTIONS: &[&str] = &[
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
    "webhooks",
    "feedback",
];

/// Lists: comma-separated in the environment.
const LIST_KEYS: &[&str] = &["delivery.retry_schedule", "webhooks.allowed_hosts"];

#[derive(Clone, Copy)]
enum OldUnit {
    /// A whole number of milliseconds.
    Millis,
    /// A whole number of seconds.
    Seconds,
    /// Comma-separated seconds, fractions allowed.
    SecondsList,
}

/// The integer names the durations had, still read from the environment in their unit: the old
/// key, the key it sets, its unit.
const OLD_NAMES: &[(&str, &str, OldUnit)] = &[
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
fn env_name(key: &str) -> String {
    format!("HERALD_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// The environment's part: plain variables for `config`'s `Environment` source (read as
/// strings; `config` converts them to the field's type), and the values this module converts
/// itself (lists, old names), which go in as overrides.
struct EnvLayer {
    plain: BTreeMap<String, String>,
    converted: Vec<(String, config::Value)>,
}

impl EnvLayer {
    fn read(vars: BTreeMap<String, String>) -> Result<EnvLayer, ConfigError> {
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

impl Settings {
    /// Loads the settings from this process's environment; `file` (or `HERALD_CONFIG`) is
    /// optional unless named explicitly.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with("HERALD_")) else {
                continue;
            };
            let value = value.into_string().map_err(|_| {
                ConfigError::Invalid(format!("environment variable {name} is not UTF-8"))
            })?;
            vars.push((name.to_string(), value));
        }
        Settings::load_from(file, vars)
    }

    /// Loads the settings with `env` as the environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let named = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("HERALD_CONFIG").map(PathBuf::from));
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = &named {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            let only_file = Config::builder()
                .add_source(File::from(path.as_path()).format(FileFormat::Toml))
                .build()?;
            for (key, env) in SECRETS {
                if only_file.get::<config::Value>(key).is_ok() {
                    return Err(ConfigError::SecretInFile {
                        key: key.to_string(),
                        env: env.to_string(),
                        file: path.display().to_string(),
                    });
                }
            }
            for (old, new, _) in OLD_NAMES {
                if only_file.get::<config::Value>(old).is_ok() {
                    return Err(ConfigError::OldNameInFile {
                        key: old.to_string(),
                        new: new.to_string(),
                        env: env_name(old),
                        file: path.display().to_string(),
                    });
                }
            }
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
        }
        let env = EnvLayer::read(env)?;
        builder = builder.add_source(
            Environment::with_prefix("HERALD")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env.plain.into_iter().collect())),
        );
        for (key, value) in env.converted {
            builder = builder.set_override(key, value)?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.delivery.retry_schedule.is_empty() {
            return invalid("delivery.retry_schedule needs at least one entry (the first attempt)");
        }
        if !(0.0..1.0).contains(&self.delivery.jitter) {
            return invalid("delivery.jitter must be in [0, 1)");
        }
        if self.camunda.long_poll > Duration::from_secs(30 * 60) {
            return invalid("camunda.long_poll must be at most 30m (the engine's limit)");
        }
        if self.delivery.max_in_flight == 0 || self.delivery.batch_size < 1 {
            return invalid("delivery.max_in_flight and delivery.batch_size must be at least 1");
        }
        if self.camunda.max_tasks == 0 || self.camunda.max_in_flight == 0 {
            return invalid("camunda.max_tasks and camunda.max_in_flight must be at least 1");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format must be text or json");
        }
        Ok(())
    }

    pub fn worker_id(&self) -> String {
        self.camunda
            .worker_id
            .clone()
            .unwrap_or_else(default_worker_id)
    }

    /// The effective settings as TOML (`herald config show`): durations in humantime form,
    /// each secret that is set as `"[redacted]"`, unset ones left out.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("settings serialize as TOML")
    }
}

/// `herald-<host>-<pid>`: unique per process, readable in Cockpit.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("herald-{host}-{}", std::process::id())
}

/// A secret, when set, is shown only as set.
fn redacted<S: serde::Serializer>(
    _secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("[redacted]")
}

/// One delay of a list: a duration with its unit (`"90s"`), or a number of seconds (the older
/// form of the lists, fractions allowed).
struct Delay(Duration);

impl<'de> Deserialize<'de> for Delay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Delay, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Delay;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"5m\", or zero or more seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Delay, E> {
                humantime::parse_duration(v.trim())
                    .map(Delay)
                    .map_err(|e| E::custom(format!("{v:?}: {e}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Delay, E> {
                Ok(Delay(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Delay, E> {
                u64::try_from(v)
                    .map(|v| Delay(Duration::from_secs(v)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Delay, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(Delay(Duration::from_secs_f64(v)))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A list of delays (`delivery.retry_schedule`).
mod delay_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Delay;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<Delay>::deserialize(d)?
            .into_iter()
            .map(|d| d.0)
            .collect())
    }

    pub fn serialize<S: Serializer>(delays: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            delays
                .iter()
                .map(|d| humantime::format_duration(*d).to_string()),
        )
    }
}

/// Named lists of delays (`delivery.schedules`).
mod delay_lists {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Delay;

    type Lists = BTreeMap<String, Vec<Duration>>;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Lists, D::Error> {
        Ok(BTreeMap::<String, Vec<Delay>>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|d| d.0).collect()))
            .collect())
    }

    pub fn serialize<S: Serializer>(lists: &Lists, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(lists.iter().map(|(k, v)| {
            let texts: Vec<String> = v
                .iter()
                .map(|d| humantime::format_duration(*d).to_string())
                .collect();
            (k, texts)
        }))
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(s.api.listen, "127.0.0.1:8090");
        assert!(s.api.token.is_none());
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
                ("HERALD_API__TOKEN", "api-token-3"),
                ("HERALD_CONTENT__KEY", "content-key-4"),
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
        "api-token-3",
        "content-key-4",
        "postmark-5",
    ];

    #[test]
    fn debug_shows_no_secret() {
        let s = with_secrets();
        let debug = format!("{s:?} {s:#?}");
        for secret in SECRET_VALUES {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("lane-x"));
        assert_eq!(s.api.token.unwrap().expose_secret(), "api-token-3");
    }

    #[test]
    fn config_show_redacts_secrets_and_shows_overrides() {
        let shown = with_secrets().to_toml();
        for secret in SECRET_VALUES {
            assert!(!shown.contains(secret), "{secret} in\n{shown}");
        }
        let table: toml::Table = shown.parse().unwrap();
        assert_eq!(table["api"]["token"].as_str(), Some("[redacted]"));
        assert_eq!(table["smtp"]["password"].as_str(), Some("[redacted]"));
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
}
