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

mod delays;
mod environment;
pub mod jwt;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use delays::{delay_list, delay_lists};
use environment::{env_name, EnvLayer, OLD_NAMES, SECRETS};
#[cfg(test)]
use environment::{SECTIONS, TOP_LEVEL_KEYS};

/// The defaults, and the documentation of every key.
pub const DEFAULTS: &str = include_str!("../../config.default.toml");

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
    #[serde(default)]
    pub keys: KeySettings,
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
    /// Secret: 64 hex characters; the older name of one encryption key (the key `content` of
    /// the keyring, current when `keys.encryption` is unset).
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretString>,
}

/// The keys of secrets at rest (`crate::keyring`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Secret: the encryption keys, `id:<64 hex>` comma-separated, the first one current.
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub encryption: Option<SecretString>,
    /// Secret: 64 hex characters; the HMAC key of explicit addresses' recipient references.
    #[serde(serialize_with = "redacted", skip_serializing_if = "Option::is_none")]
    pub recipient_ref: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Where the HTTP API listens, e.g. `127.0.0.1:8090`. Any address but a loopback one needs
    /// credentials (an API key that can be used): herald refuses to start without.
    pub listen: String,
    /// The environment API keys name after `herald_` (`live`, `test`): 1 to 16 lowercase
    /// letters and digits.
    pub key_environment: String,
    /// Request bodies larger than this are refused (413).
    pub max_body_bytes: usize,
    /// Requests a second per credential.
    pub rate_limit: RateLimitSettings,
    /// How long an Idempotency-Key and its stored answer are kept.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// JWT bearer tokens of an identity provider, beside the API keys (`[api.jwt]`); unset: API
    /// keys only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<jwt::JwtSettings>,
}

/// A token bucket per credential: `per_second` on average, `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
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
    /// How much longer than `long_poll` a fetch waits for its answer before herald takes the
    /// connection for dead (an engine or proxy that stopped answering without closing) and
    /// polls anew.
    #[serde(with = "humantime_serde")]
    pub long_poll_margin: Duration,
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
    /// How long what a resend needs (the render payload and the raw address) is kept, sealed
    /// with the keyring, after a communication's delivery ended; zero keeps nothing (a resend
    /// of an ended communication is then refused).
    #[serde(with = "humantime_serde")]
    pub resend_window: Duration,
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
    /// The Camunda Modeler element templates (`herald element-templates`, `herald check`).
    pub element_templates: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info,herald=debug`.
    pub filter: String,
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
        if self.camunda.long_poll_margin < Duration::from_secs(1) {
            return invalid(
                "camunda.long_poll_margin must be at least 1s (the engine needs time to answer)",
            );
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
