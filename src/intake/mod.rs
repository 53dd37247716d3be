//! The intake: the one way a communication enters herald, whatever asked for it: a Camunda
//! topic's handler (`workers/`), a business event (`POST /events`), an API command, a fallout
//! signal or a digest. For each recipient it applies the policy (preferences, consent,
//! suppression), business hours and the noise controls (dedupe, rate limits), resolves the
//! template version and renders it once, and hands the ledger one typed request
//! ([`NewCommunication`]). It writes nothing itself: the ledger does, in one transaction.
//!
//! The flow and the rooms around it: `docs/architecture.md`.

pub mod admission;
pub mod commands;
pub mod events;
pub mod proposal;
pub mod resend;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::artifacts::Registry;
use crate::camunda::CamundaClient;
use crate::config::ArtifactSettings;
use crate::delivery::endpoints::Endpoints;
use crate::keyring::{Keys, RefKey};
use crate::ledger::{
    Channel, Classification, Ledger, LedgerError, NewCommunication, RecipientType, RequestOutcome,
};
use crate::policy::business_hours::BusinessHours;
use crate::policy::channel_choice::{family_for, ChannelMode};
use crate::policy::directory::Directory;
use crate::policy::noise::RateLimit;
use crate::policy::Resolution;
use crate::templates::{Origin, Template, TemplateRegistry};

/// What the intake works with: the ledger it hands requests to, the directory, artifact
/// registry and webhook subscriptions it reads, the engine (its identity service resolves users
/// and groups), the templates, the artifact settings (portal links, attachments) and the name
/// recorded as the requester of what processes ask for.
#[derive(Clone)]
pub struct Intake {
    pub ledger: Ledger,
    /// Contacts and preferences.
    pub directory: Directory,
    /// The documents communications carry.
    pub registry: Registry,
    /// Webhook subscriptions (the recipients of webhook rules).
    pub endpoints: Endpoints,
    pub camunda: CamundaClient,
    pub templates: Arc<TemplateRegistry>,
    pub artifacts: ArtifactSettings,
    /// The worker id: a process's communications are requested by `camunda:<worker id>`.
    pub requested_by: String,
    /// The keyring (webhook secrets, inbox bodies) and the key of explicit addresses' refs.
    pub keys: Keys,
}

/// What a topic file or an event rule says about the communications it asks for; both go
/// through the same admission.
#[derive(Debug, Clone)]
pub struct Purpose {
    /// The topic or the rule as messages name it: `send-proposal`, `rule 'order-confirmation'`.
    pub label: String,
    /// The rule with its version, recorded with every communication:
    /// `topic:send-proposal:v1`, `rule:order-confirmation:v1`.
    pub rule_ref: String,
    pub class: Classification,
    pub template_family: String,
    /// The template family of a channel other than `template_family`'s.
    pub channel_templates: HashMap<Channel, String>,
    /// Channels in order of preference.
    pub channels: Vec<Channel>,
    pub channel_mode: ChannelMode,
    pub priority: i32,
    pub dedupe: Option<Dedupe>,
    pub rate_limit: Option<RateLimit>,
    pub business_hours: Option<BusinessHours>,
}

/// Near-duplicates for the same recipient, type and subject within `window` are DEDUPED.
#[derive(Debug, Clone)]
pub struct Dedupe {
    pub window: Duration,
    /// The window as the file writes it (`PT15M`), for the decision's detail.
    pub written: String,
}

impl Purpose {
    /// The idempotency key of a recipient's communication on `channel`: the recipient's key,
    /// with the channel appended when the purpose sends on every one of several channels.
    pub fn key_on(&self, recipient_key: &str, channel: Channel) -> String {
        if self.channel_mode == ChannelMode::All && self.channels.len() > 1 {
            format!("{recipient_key}:{channel}")
        } else {
            recipient_key.to_string()
        }
    }
}

/// Why the intake could not take a request. A refused recipient is not an error: it is the
/// communication's business status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntakeError {
    /// The ledger's database or the engine is down: the same request may succeed later.
    #[error("{message}")]
    Unavailable { message: String, detail: String },
    /// The request cannot succeed as things are configured or asked (no approved template, a
    /// template that cannot render, a key pattern, a malformed input): someone must fix it.
    #[error("{message}")]
    Permanent { message: String, detail: String },
    /// Something the communication needs is not there yet (its document): ask again later.
    #[error("{message}")]
    NotYet {
        message: String,
        detail: String,
        retry_after: Duration,
    },
}

/// What an operator is told to do about a template that cannot be resolved.
pub const HINT_TEMPLATE_MISSING: &str =
    "Add or approve a template version, then increment the retries.";
/// What an operator is told to do about a template that cannot render its payload.
pub const HINT_TEMPLATE_RENDER: &str =
    "Fix the template or its payload fields, then increment the retries.";
/// What an operator is told to do about a template that may not see a value or go to a
/// recipient.
pub const HINT_TEMPLATE_LEAK: &str =
    "Map only customer-visible fields (templates/fields.toml) into customer templates, and send internal templates to internal recipients only; then increment the retries.";
/// What an operator is told to do about a key pattern that cannot be filled.
pub const HINT_KEY_PATTERN: &str =
    "Fix the key pattern (idempotency_key, parent_key) in the topic file, then increment the retries.";
/// What an operator is told to do when explicit addresses cannot be given a reference.
pub const HINT_RECIPIENT_REF_KEY: &str =
    "Set HERALD_KEYS__RECIPIENT_REF (64 hex characters) in herald's environment, then increment the retries.";
/// What an operator is told to do when portal links cannot be signed.
pub const HINT_LINK_SECRET: &str =
    "Set HERALD_ARTIFACTS__LINK_SECRET in herald's environment, then increment the retries.";

impl IntakeError {
    pub fn permanent(message: impl Into<String>, detail: impl Into<String>) -> IntakeError {
        IntakeError::Permanent {
            message: message.into(),
            detail: detail.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>, detail: impl Into<String>) -> IntakeError {
        IntakeError::Unavailable {
            message: message.into(),
            detail: detail.into(),
        }
    }

    /// The ledger's database failed while `label` was taken in.
    pub fn ledger_down(label: &str, err: impl std::fmt::Display) -> IntakeError {
        IntakeError::unavailable(
            format!("{label}: ledger database unavailable"),
            err.to_string(),
        )
    }

    /// A ledger error: an outage may pass; anything else (a corrupt value, a move the
    /// lifecycle refuses) will not.
    pub fn ledger(label: &str, err: LedgerError) -> IntakeError {
        match err {
            LedgerError::Database(_) => IntakeError::ledger_down(label, err),
            other => IntakeError::permanent(format!("{label}: {other}"), other.to_string()),
        }
    }

    /// The engine (identity, task queries) failed while `label` was taken in.
    pub fn engine_down(label: &str, err: impl std::fmt::Display) -> IntakeError {
        IntakeError::unavailable(
            format!("{label}: engine identity or task query failed"),
            err.to_string(),
        )
    }
}

impl Intake {
    /// The intake on `pool` (the ledger's database, which also holds the directory, the
    /// registry and the subscriptions).
    pub fn on(
        pool: sqlx::PgPool,
        correlation_deadline: std::time::Duration,
        camunda: CamundaClient,
        templates: Arc<TemplateRegistry>,
        artifacts: ArtifactSettings,
        requested_by: String,
    ) -> Intake {
        Intake {
            ledger: Ledger::new(pool.clone(), correlation_deadline),
            directory: Directory::new(pool.clone()),
            registry: Registry::new(pool.clone()),
            endpoints: Endpoints::new(pool, None),
            camunda,
            templates,
            artifacts,
            requested_by,
            keys: Keys::default(),
        }
    }

    /// The intake with the keys of the settings: its ledger opens sealed inbox bodies, its
    /// subscriptions seal their secrets, explicit addresses get keyed references.
    pub fn with_keys(mut self, keys: Keys) -> Intake {
        self.ledger = self.ledger.with_keyring(keys.ring.clone());
        self.endpoints = self.endpoints.with_keyring(keys.ring.clone());
        self.keys = keys;
        self
    }

    /// The key of explicit addresses' references, or the error that names the setting.
    pub fn ref_key(&self, label: &str) -> Result<&RefKey, IntakeError> {
        self.keys.recipient_ref.as_ref().ok_or_else(|| {
            IntakeError::permanent(
                format!("{label}: explicit addresses need HERALD_KEYS__RECIPIENT_REF"),
                HINT_RECIPIENT_REF_KEY,
            )
        })
    }

    /// Upgrade safety of explicit addresses. Before their references were keyed (HMAC), a
    /// record carried `earlier_ref` and its idempotency key was made with it (`earlier_key`).
    /// When the tenant has a record under that key, the request takes that key and reference,
    /// so a re-fetched task or a retried command finds the record instead of making a second
    /// one; otherwise it keeps `key` and `resolution` as they are.
    pub async fn keep_earlier_ref(
        &self,
        label: &str,
        tenant_id: &str,
        key: String,
        resolution: Resolution,
        earlier_key: String,
        earlier_ref: String,
    ) -> Result<(String, Resolution), IntakeError> {
        // A key that does not name the recipient (an API caller's) finds the record anyway.
        if resolution.recipient_ref() == earlier_ref || key == earlier_key {
            return Ok((key, resolution));
        }
        let made_before = self
            .ledger
            .has_key(tenant_id, &earlier_key)
            .await
            .map_err(|e| IntakeError::ledger(label, e))?;
        Ok(if made_before {
            (earlier_key, resolution.with_recipient_ref(earlier_ref))
        } else {
            (key, resolution)
        })
    }

    /// The template version `purpose`'s communication on `channel` uses now, for `locale` and
    /// `market`.
    pub fn template(
        &self,
        purpose: &Purpose,
        channel: Channel,
        locale: Option<&str>,
        market: Option<&str>,
    ) -> Result<&Template, IntakeError> {
        let family = family_for(
            channel,
            &purpose.template_family,
            &purpose.channel_templates,
        );
        self.family_template(purpose, family, locale, market)
    }

    /// The version of template family `family` that `purpose` uses now, for `locale` and
    /// `market`.
    pub fn family_template(
        &self,
        purpose: &Purpose,
        family: &str,
        locale: Option<&str>,
        market: Option<&str>,
    ) -> Result<&Template, IntakeError> {
        self.templates
            .resolve(family, locale, market, Utc::now())
            .map_err(|e| {
                IntakeError::permanent(format!("{}: {e}", purpose.label), HINT_TEMPLATE_MISSING)
            })
    }

    /// The guards, then one render when the communication is requested: the template's
    /// audience against the recipient's (an INTERNAL template never goes to a customer), every
    /// payload field's origin against `fields.toml` (a CUSTOMER template receives only values
    /// that entered customer-visible), and the render itself (a template that cannot render is
    /// a configuration error now, not a delivery failure discovered later). Nothing is recorded
    /// when one refuses.
    pub fn check_render(
        &self,
        purpose: &Purpose,
        template: &Template,
        payload: &serde_json::Value,
        origins: &[(&str, Origin<'_>)],
        recipient: RecipientType,
    ) -> Result<(), IntakeError> {
        self.templates
            .admit_recipient(template, recipient)
            .and_then(|()| self.templates.admit_origins(template, origins))
            .map_err(|e| {
                IntakeError::permanent(format!("{}: {e}", purpose.label), HINT_TEMPLATE_LEAK)
            })?;
        self.templates
            .render(template, payload)
            .map(|_| ())
            .map_err(|e| {
                IntakeError::permanent(format!("{}: {e}", purpose.label), HINT_TEMPLATE_RENDER)
            })
    }

    /// Hands one communication to the ledger (or finds the one its key names).
    pub async fn record(
        &self,
        label: &str,
        new: &NewCommunication,
    ) -> Result<RequestOutcome, IntakeError> {
        let outcome = self.ledger.request(new).await;
        recorded(label, new, outcome, None)
    }

    /// Hands a parent communication and one child per recipient to the ledger.
    pub async fn record_fanout(
        &self,
        label: &str,
        parent: &NewCommunication,
        children: &[NewCommunication],
    ) -> Result<RequestOutcome, IntakeError> {
        let outcome = self.ledger.request_fanout(parent, children).await;
        recorded(label, parent, outcome, Some(children.len()))
    }
}

/// The ledger's answer to a request, logged (with the recipients of a fan-out).
fn recorded(
    label: &str,
    new: &NewCommunication,
    outcome: Result<RequestOutcome, LedgerError>,
    recipients: Option<usize>,
) -> Result<RequestOutcome, IntakeError> {
    let outcome = outcome.map_err(|e| IntakeError::ledger(label, e))?;
    tracing::info!(
        communicationId = %outcome.communication_id,
        correlationId = %new.provenance.correlation_id,
        status = %outcome.status,
        created = outcome.created,
        recipients,
        "communication recorded"
    );
    Ok(outcome)
}
