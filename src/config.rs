//! Settings: defaults, then an optional TOML file, then `HERALD_*` environment variables
//! (`HERALD_DATABASE_URL`, `HERALD_CAMUNDA_URL`, `HERALD_SMTP_URL`; nested keys with a double
//! underscore, e.g. `HERALD_DELIVERY__BATCH_SIZE`). Secrets come only from the environment.

use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

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
    #[error("configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FeedbackSettings {
    /// Only from the environment: `HERALD_FEEDBACK__POSTMARK_CREDENTIALS`, `user:password` of the
    /// HTTP basic authentication Postmark's webhooks are configured with. Unset: Postmark's
    /// format is refused.
    pub postmark_credentials: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// Plain `http://` endpoints are refused unless this is set (test rigs, in-cluster).
    pub allow_http: bool,
    /// Hosts (names or IP addresses) that may be private or loopback: the SSRF guard refuses
    /// every other endpoint that resolves to a private, loopback or link-local address.
    pub allowed_hosts: Vec<String>,
    pub timeout_ms: u64,
    /// Failures in a row that open an endpoint's circuit, and for how long.
    pub breaker_threshold: i32,
    pub breaker_cooldown_s: u64,
    /// Failures in a row after which the endpoint is disabled (its messages are dead-lettered).
    pub disable_after: i32,
    /// How long the previous secret stays valid after a rotation.
    pub rotation_grace_s: u64,
    /// How long a sender uses an endpoint it read (URL, secrets, status) before reading it
    /// again; a change to the subscription reaches the senders at once (LISTEN/NOTIFY), this is
    /// the safety net. 0 reads it for every message.
    pub endpoint_cache_ms: u64,
    /// Under an endpoint's rate limit, a message waits at most this long for its slot (well
    /// inside the delivery lease); a later slot makes it a RATE_LIMITED retry.
    pub rate_limit_max_wait_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContentSettings {
    /// Only from the environment: `HERALD_CONTENT__KEY`, 64 hex characters; encrypts the
    /// bodies of templates with retention ENCRYPTED_BODY.
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// Where the HTTP API listens, e.g. `127.0.0.1:8090`.
    pub listen: String,
    /// Only from the environment: `HERALD_API__TOKEN`; when set, requests need it as a bearer token.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactSettings {
    /// Where customers open documents: links are `<base>/<tenant>/<artifact>?expires=…&signature=…`.
    pub portal_base_url: String,
    /// How long a portal link stays valid.
    pub link_ttl_s: u64,
    /// Attachments larger than this are refused (the portal link is the way for them).
    pub max_attachment_bytes: u64,
    /// How long a task waits before it asks again for a document that is not available yet.
    pub wait_retry_ms: u64,
    /// Only from the environment: `HERALD_ARTIFACTS__LINK_SECRET`.
    pub link_secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    /// Apply migrations when `herald run` starts.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CamundaSettings {
    /// Defaults to `herald-<host>-<pid>`.
    pub worker_id: Option<String>,
    pub max_tasks: u32,
    pub max_in_flight: usize,
    pub long_poll_ms: u64,
    /// When set, workers fetch only tasks whose process has the variable `heraldLane` with this
    /// value: a fleet can be split into lanes (e.g. per tenant, or per test run).
    pub lane: Option<String>,
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SmtpSettings {
    pub from: String,
    pub timeout_ms: u64,
    pub pool_max: u32,
    /// How long a send waits for a free SMTP connection.
    pub pool_get_timeout_ms: u64,
    pub username: Option<String>,
    /// Only from the environment: `HERALD_SMTP__PASSWORD`.
    pub password: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeliverySettings {
    pub batch_size: i64,
    /// Attempts in flight at once per process: jobs are claimed only as slots come free, so
    /// that no claimed job waits inside herald while its lease runs.
    pub max_in_flight: usize,
    pub lease_ms: u64,
    pub poll_interval_ms: u64,
    /// Delay before each attempt in seconds (fractions allowed): first attempt, then each retry.
    pub retry_schedule_s: Vec<f64>,
    pub jitter: f64,
    pub max_retry_after_s: u64,
    /// Schedules per communication type or criticality, e.g.
    /// `[delivery.schedules] EXTERNAL_WEBHOOK = [0, 60, 300, 1800, 7200, 21600]`, `LOW = [0, 600]`.
    #[serde(default)]
    pub schedules: std::collections::HashMap<String, Vec<f64>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RelaySettings {
    pub batch_size: i64,
    pub poll_interval_ms: u64,
    /// After a wake-up, how long the outbox relay lets more events gather before it reads
    /// them: one round for many commits (correlations are not that urgent).
    pub gather_ms: u64,
    /// How long a correlation is retried while the process is not (yet) waiting for it.
    pub correlation_deadline_s: u64,
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PathSettings {
    pub topics: PathBuf,
    pub templates: PathBuf,
    pub bpmn: PathBuf,
    pub rules: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info,herald=debug`.
    pub filter: String,
}

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

impl Settings {
    /// Loads the settings; `file` (or `HERALD_CONFIG`) is optional unless named explicitly.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let named = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("HERALD_CONFIG").map(PathBuf::from));
        let mut builder = Config::builder()
            .set_default(
                "database_url",
                "postgres://herald:herald@127.0.0.1:55432/herald",
            )?
            .set_default("camunda_url", "http://127.0.0.1:8080/engine-rest")?
            .set_default("smtp_url", "smtp://127.0.0.1:2525")?
            .set_default("database.max_connections", 10)?
            .set_default("database.migrate_on_start", true)?
            .set_default("camunda.max_tasks", 10)?
            .set_default("camunda.max_in_flight", 32)?
            .set_default("camunda.long_poll_ms", 20_000)?
            .set_default("camunda.shutdown_grace_ms", 10_000)?
            .set_default("smtp.from", "herald <noreply@herald.local>")?
            .set_default("smtp.timeout_ms", 10_000)?
            .set_default("smtp.pool_max", 4)?
            .set_default("smtp.pool_get_timeout_ms", 30_000)?
            .set_default("delivery.batch_size", 64)?
            .set_default("delivery.max_in_flight", 128)?
            .set_default("delivery.lease_ms", 60_000)?
            .set_default("delivery.poll_interval_ms", 10_000)?
            .set_default(
                "delivery.retry_schedule_s",
                vec![0.0, 60.0, 300.0, 1800.0, 7200.0],
            )?
            .set_default("delivery.jitter", 0.1)?
            .set_default("delivery.max_retry_after_s", 3600)?
            .set_default("relay.batch_size", 100)?
            .set_default("relay.poll_interval_ms", 10_000)?
            .set_default("relay.gather_ms", 20)?
            .set_default("relay.correlation_deadline_s", 3600)?
            .set_default("relay.min_backoff_ms", 200)?
            .set_default("relay.max_backoff_ms", 30_000)?
            .set_default("paths.topics", "topics")?
            .set_default("paths.templates", "templates")?
            .set_default("paths.bpmn", "bpmn")?
            .set_default("paths.rules", "rules/events.toml")?
            .set_default("api.listen", "127.0.0.1:8090")?
            .set_default(
                "artifacts.portal_base_url",
                "https://portal.herald.local/documents",
            )?
            .set_default("artifacts.link_ttl_s", 14 * 24 * 3600)?
            .set_default("artifacts.max_attachment_bytes", 10 * 1024 * 1024)?
            .set_default("artifacts.wait_retry_ms", 60_000)?
            .set_default("webhooks.allow_http", false)?
            .set_default("webhooks.allowed_hosts", Vec::<String>::new())?
            .set_default("webhooks.timeout_ms", 10_000)?
            .set_default("webhooks.breaker_threshold", 5)?
            .set_default("webhooks.breaker_cooldown_s", 30)?
            .set_default("webhooks.disable_after", 50)?
            .set_default("webhooks.endpoint_cache_ms", 5000)?
            .set_default("webhooks.rate_limit_max_wait_ms", 20000)?
            .set_default("webhooks.rotation_grace_s", 24 * 3600)?
            .set_default("log.format", "text")?
            .set_default("log.filter", "info")?;
        if let Some(path) = &named {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            let only_file = Config::builder()
                .add_source(File::from(path.as_path()).format(FileFormat::Toml))
                .build()?;
            for (key, env) in SECRETS {
                if only_file.get_string(key).is_ok() {
                    return Err(ConfigError::SecretInFile {
                        key: key.to_string(),
                        env: env.to_string(),
                        file: path.display().to_string(),
                    });
                }
            }
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix("HERALD")
                    .prefix_separator("_")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("delivery.retry_schedule_s")
                    .with_list_parse_key("webhooks.allowed_hosts")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.delivery.retry_schedule_s.is_empty() {
            return invalid(
                "delivery.retry_schedule_s needs at least one entry (the first attempt)",
            );
        }
        if self
            .delivery
            .retry_schedule_s
            .iter()
            .any(|s| !s.is_finite() || *s < 0.0)
        {
            return invalid("delivery.retry_schedule_s entries must be zero or more seconds");
        }
        if !(0.0..1.0).contains(&self.delivery.jitter) {
            return invalid("delivery.jitter must be in [0, 1)");
        }
        if self.camunda.long_poll_ms > 1_800_000 {
            return invalid("camunda.long_poll_ms must be at most 1800000 (the engine's limit)");
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
