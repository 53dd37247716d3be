//! Wiring of `herald run`: the workers, the delivery loop and the outbox relay in one process
//! (or only some of them, to scale each out on its own).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

use tokio_util::sync::CancellationToken;

use crate::camunda::worker::{self, WorkerOptions};
use crate::camunda::{CamundaClient, CamundaError};
use crate::config::{ConfigError, Settings};
use crate::delivery::email::{EmailAdapter, EmailConfigError, EmailSettings};
use crate::delivery::inapp::InAppAdapter;
use crate::delivery::webhook::WebhookAdapter;
use crate::delivery::{DeliveryEngine, DeliveryOptions, RetryPolicy};
use crate::intake::Intake;
use crate::ledger::{self, Ledger, LedgerError};
use crate::policy::rules::RuleSet;
use crate::relay::{self, RelayOptions};
use crate::templates::{RegisterError, ReleaseRegister, TemplateError, TemplateRegistry};
use crate::workers::{self, TopicError};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Camunda(#[from] CamundaError),
    #[error(transparent)]
    Templates(#[from] TemplateError),
    #[error(transparent)]
    Releases(#[from] RegisterError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error(transparent)]
    Email(#[from] EmailConfigError),
    #[error("nothing to run: enable at least one of workers, delivery, relay, api")]
    NothingToRun,
    #[error("rules:\n  {}", .0.join("\n  "))]
    Rules(Vec<String>),
    #[error(transparent)]
    Api(#[from] crate::api::StartError),
    #[error(transparent)]
    Keys(#[from] crate::keyring::KeyError),
    #[error("{0} webhook subscription(s) exist, and no encryption key is configured to open or seal their signing secrets: set HERALD_KEYS__ENCRYPTION (e.g. k1:<64 hex>)")]
    SubscriptionsWithoutKey(i64),
    #[error("sealing the plaintext webhook signing secrets: {0}")]
    Seal(#[from] crate::keyring::rotate::RotateError),
}

/// Which parts run in this process.
#[derive(Debug, Clone, Copy)]
pub struct Components {
    pub workers: bool,
    pub delivery: bool,
    pub relay: bool,
    pub api: bool,
}

impl Components {
    pub fn all() -> Components {
        Components {
            workers: true,
            delivery: true,
            relay: true,
            api: true,
        }
    }
}

pub fn ledger(settings: &Settings) -> Result<Ledger, LedgerError> {
    Ok(Ledger::new(
        pool(settings)?,
        settings.relay.correlation_deadline,
    ))
}

/// Connections to the database for the rooms that keep tables of their own (the API's keys).
pub fn pool(settings: &Settings) -> Result<sqlx::PgPool, LedgerError> {
    ledger::connect_lazy(&settings.database_url, settings.database.max_connections)
}

/// Runs the chosen components until `shutdown` is cancelled, then stops them in order:
/// the workers stop fetching and finish their tasks, the delivery loop finishes its batch.
pub async fn run(
    settings: Settings,
    components: Components,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    if let Some(running) = start(settings, components, shutdown.clone()).await? {
        running.wait().await;
    }
    Ok(())
}

/// A middleware that runs each request under the tracing subscriber current when the API was
/// started (axum's connection tasks do not carry it): the global one in production, a test's
/// own when herald runs inside a test.
fn with_current_logger() -> impl Fn(
    axum::extract::Request,
    axum::middleware::Next,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    let logger = tracing::dispatcher::get_default(|current| current.clone());
    move |request, next| {
        let logger = logger.clone();
        Box::pin(next.run(request).with_subscriber(logger))
    }
}

/// herald's components, started: where the API listens, and the tasks to wait for.
pub struct Running {
    /// The API's address (its port, when the settings asked for port 0).
    pub api_address: Option<std::net::SocketAddr>,
    tasks: tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
}

impl Running {
    /// Waits until every component stopped (after `shutdown`, or a component's panic, which
    /// stops the others).
    pub async fn wait(mut self) {
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(err) = joined {
                if err.is_panic() {
                    tracing::error!(error = %err, "a component panicked; stopping");
                    self.shutdown.cancel();
                }
            }
        }
    }
}

/// Starts the chosen components (after the migrations, when the settings say so); None when
/// `shutdown` came while the database was still out of reach.
pub async fn start(
    settings: Settings,
    components: Components,
    shutdown: CancellationToken,
) -> Result<Option<Running>, RuntimeError> {
    if !(components.workers || components.delivery || components.relay || components.api) {
        return Err(RuntimeError::NothingToRun);
    }
    // The metrics recorder, before anything is counted (what happens before it is lost).
    crate::metrics::handle();
    // One pool for the ledger and the other rooms' tables on its database (directory, artifact
    // registry, webhook endpoints, inboxes), each reached through its own handle.
    let pool = ledger::connect_lazy(&settings.database_url, settings.database.max_connections)?;
    let ledger = Ledger::new(pool.clone(), settings.relay.correlation_deadline);
    if settings.database.migrate_on_start {
        // Waits for the database at start-up rather than failing on the first refusal.
        let mut wait = Duration::from_millis(250);
        loop {
            match ledger.migrate().await {
                Ok(()) => break,
                Err(LedgerError::Database(err)) if !shutdown.is_cancelled() => {
                    tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "database not reachable for migrations");
                    if !crate::pause::sleep_or_shutdown(wait, &shutdown).await {
                        return Ok(None);
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
    let templates = Arc::new(TemplateRegistry::load(&settings.paths.templates)?);
    // The releases loaded, anchored in the database: a lock rewritten since a herald loaded it
    // (however intact its chain) refuses the start.
    let register = ReleaseRegister::new(pool.clone());
    let mut wait = Duration::from_millis(250);
    loop {
        match register.anchor(&templates).await {
            Ok(anchored) => {
                tracing::info!(
                    releases = templates.releases().len(),
                    new_releases = ?anchored.released,
                    new_withdrawals = ?anchored.withdrawn,
                    "template releases anchored"
                );
                break;
            }
            Err(err) if err.is_unreachable() && !shutdown.is_cancelled() => {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "database not reachable to anchor the template releases");
                if !crate::pause::sleep_or_shutdown(wait, &shutdown).await {
                    return Ok(None);
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err.into()),
        }
    }
    let keys = crate::keyring::Keys::from_settings(&settings)?;
    // The delivery's ledger keeps what a resend needs, sealed, as jobs end.
    let ledger = ledger
        .with_keyring(keys.ring.clone())
        .keeping_resend_inputs(settings.delivery.resend_window);
    if components.delivery && keys.ring.is_none() && !settings.delivery.resend_window.is_zero() {
        tracing::warn!(
            "no encryption key (HERALD_KEYS__ENCRYPTION): nothing is kept for resends \
             (delivery.resend_window); a resend of an ended communication is refused"
        );
    }
    if components.api || components.delivery {
        secure_webhook_secrets(&pool, keys.ring.as_ref(), &shutdown).await?;
    }
    let camunda = CamundaClient::new(&settings.camunda_url)?;
    // Read once: the API's proposals, the workers' subscriptions and the relay's waiting topics.
    let topics = if components.api || components.workers || components.relay {
        workers::load_topics(&settings.paths.topics)?
    } else {
        Vec::new()
    };
    let worker_id = settings.worker_id();
    let mut tasks = tokio::task::JoinSet::new();
    let mut api_address = None;

    let intake = Intake::on(
        pool.clone(),
        settings.relay.correlation_deadline,
        camunda.clone(),
        templates.clone(),
        settings.artifacts.clone(),
        worker_id.clone(),
    )
    .with_keys(keys.clone());
    if components.api {
        let rules = RuleSet::load(&settings.paths.rules).map_err(RuntimeError::Rules)?;
        let keys = crate::api::keys::ApiKeys::new(pool.clone());
        let listener = crate::api::bind(&settings.api, &keys).await?;
        let jwt = match settings.api.jwt.clone() {
            Some(jwt) => Some(
                crate::api::jwt::JwtVerifier::new(jwt, reqwest::Client::new())
                    .await
                    .map_err(crate::api::StartError::from)?,
            ),
            None => None,
        };
        api_address = listener.local_addr().ok();
        let address = api_address.map(|a| a.to_string()).unwrap_or_default();
        let proposals = topics
            .iter()
            .find(|t| t.handler == workers::HandlerKind::SendProposal && t.enabled)
            .map(|topic| Arc::new(workers::send_proposal::proposals(topic, intake.clone())));
        let app = crate::api::router(
            crate::api::ApiState {
                intake: intake.clone(),
                rules: Arc::new(rules),
                db: pool.clone(),
                keys,
                jwt,
                limits: crate::api::limit::Limits::new(settings.api.rate_limit),
                proposals,
                webhooks: settings.webhooks.clone(),
                feedback: settings.feedback.clone(),
                idempotency: crate::api::IdempotencyStore::new(
                    pool.clone(),
                    settings.api.idempotency_ttl,
                    crate::api::IdempotencyStore::DEFAULT_LEASE,
                )
                .with_body_limit(settings.api.max_body_bytes)
                .with_keyring(intake.keys.ring.clone()),
            },
            settings.api.max_body_bytes,
        )
        .layer(axum::middleware::from_fn(with_current_logger()));
        let stop = shutdown.clone();
        tasks.spawn(
            async move {
                tracing::info!(listen = %address, "api listening");
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(err) = served {
                    tracing::error!(error = %err, "api stopped");
                }
                tracing::info!("api stopped");
            }
            .with_current_subscriber(),
        );
    }
    if components.workers {
        let subscriptions = workers::subscriptions(&topics, &intake);
        let mut process_variables = BTreeMap::new();
        if let Some(lane) = &settings.camunda.lane {
            process_variables.insert(
                "heraldLane".to_string(),
                serde_json::Value::String(lane.clone()),
            );
        }
        let options = WorkerOptions {
            worker_id: worker_id.clone(),
            max_tasks: settings.camunda.max_tasks,
            max_in_flight: settings.camunda.max_in_flight,
            long_poll: settings.camunda.long_poll,
            long_poll_margin: settings.camunda.long_poll_margin,
            process_variables,
            shutdown_grace: settings.camunda.shutdown_grace,
            fetch_counter: Arc::new(workers::fetch_counts::FetchCounts::new(
                pool.clone(),
                worker_id.clone(),
            )),
        };
        tasks.spawn(
            worker::run(camunda.clone(), options, subscriptions, shutdown.clone())
                .with_current_subscriber(),
        );
    }
    if components.delivery {
        let mut engine = DeliveryEngine::new(
            ledger.clone(),
            templates.clone(),
            DeliveryOptions {
                worker_id: worker_id.clone(),
                batch_size: settings.delivery.batch_size,
                max_in_flight: settings.delivery.max_in_flight,
                lease: settings.delivery.lease,
                poll_interval: settings.delivery.poll_interval,
                retry: RetryPolicy::from_settings(&settings.delivery)?,
                keyring: keys.ring.clone(),
            },
        );
        engine.register(Arc::new(EmailAdapter::new(&EmailSettings {
            url: settings.smtp_url.clone(),
            from: settings.smtp.from.clone(),
            username: settings.smtp.username.clone(),
            password: settings.smtp.password.clone(),
            timeout: settings.smtp.timeout,
            pool_max: settings.smtp.pool_max,
            pool_get_timeout: settings.smtp.pool_get_timeout,
        })?));
        engine.register(Arc::new(
            WebhookAdapter::new(pool.clone(), &settings.webhooks, keys.ring.clone()).map_err(
                |e| RuntimeError::Config(ConfigError::Invalid(format!("webhooks: {e}"))),
            )?,
        ));
        engine.register(Arc::new(InAppAdapter::new(pool.clone())));
        tasks.spawn(
            Arc::new(engine)
                .run(shutdown.clone())
                .with_current_subscriber(),
        );
    }
    if components.relay {
        let options = RelayOptions {
            batch_size: settings.relay.batch_size,
            poll_interval: settings.relay.poll_interval,
            gather: settings.relay.gather,
            min_backoff: settings.relay.min_backoff,
            max_backoff: settings.relay.max_backoff,
        };
        tasks.spawn(
            relay::run_outbox(ledger.clone(), options.clone(), shutdown.clone())
                .with_current_subscriber(),
        );
        tasks.spawn(
            relay::run_correlations(
                ledger.clone(),
                camunda.clone(),
                topics
                    .iter()
                    .filter(|t| t.waits_for_outcome)
                    .map(|t| t.topic.clone())
                    .collect(),
                options.clone(),
                shutdown.clone(),
            )
            .with_current_subscriber(),
        );
        let rules = RuleSet::load(&settings.paths.rules).map_err(RuntimeError::Rules)?;
        tasks.spawn(
            relay::run_fallout(intake.clone(), Arc::new(rules), options, shutdown.clone())
                .with_current_subscriber(),
        );
    }
    tracing::info!(
        worker_id,
        workers = components.workers,
        delivery = components.delivery,
        relay = components.relay,
        api = components.api,
        "herald running"
    );
    Ok(Some(Running {
        api_address,
        tasks,
        shutdown,
    }))
}

/// Webhook signing secrets are never kept in plaintext: with a keyring, the ones rows written
/// before secrets were sealed still hold are sealed now; without one, the API and the delivery
/// do not start while subscriptions exist (they could neither open nor seal a secret).
async fn secure_webhook_secrets(
    pool: &sqlx::PgPool,
    keyring: Option<&crate::keyring::Keyring>,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let mut wait = Duration::from_millis(250);
    loop {
        let attempt = async {
            match keyring {
                Some(keyring) => {
                    let sealed =
                        crate::keyring::rotate::seal_plaintext_secrets(pool, keyring, 500).await?;
                    if sealed > 0 {
                        tracing::info!(
                            sealed,
                            key_id = keyring.current_id(),
                            "plaintext webhook signing secrets sealed"
                        );
                    }
                    Ok(())
                }
                None => {
                    let count: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM webhook_subscription")
                            .fetch_one(pool)
                            .await
                            .map_err(crate::keyring::rotate::RotateError::Database)?;
                    if count > 0 {
                        return Err(RuntimeError::SubscriptionsWithoutKey(count));
                    }
                    Ok(())
                }
            }
        };
        match attempt.await {
            Err(RuntimeError::Seal(crate::keyring::rotate::RotateError::Database(err)))
                if !shutdown.is_cancelled() =>
            {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "database not reachable to check the webhook signing secrets");
                if !crate::pause::sleep_or_shutdown(wait, shutdown).await {
                    return Ok(());
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
