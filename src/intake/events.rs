//! Business events in (`POST /events`, and the fallout relay's `CommunicationFallout`): each
//! event is applied once (by eventId), its matching rules become communications through the
//! intake's admission, and a DocumentArtifactAvailable registers its document.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::artifacts::Artifact;
use crate::iso8601::parse_duration;
use crate::ledger::{
    Admission, Admitted, Channel, Classification, CommunicationId, Decision, DecisionOutcome,
    NewCommunication, Provenance, Rendering, Subject,
};
use crate::policy::identity::engine_user;
use crate::policy::noise::{digest_window, DigestConfig};
use crate::policy::recipients::explicit_email;
use crate::policy::rules::{lookup, EventRule, RecipientSpec, RuleSet};
use crate::policy::Resolution;

use super::admission::mark_digested;
use super::{Dedupe, Intake, IntakeError, Purpose};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The event itself is malformed or lacks a field a rule needs (400).
    #[error("{0}")]
    Invalid(String),
    /// A rule cannot be applied: its template or payload mapping is wrong (422).
    #[error("{0}")]
    Rule(String),
    /// The database or the engine is down: try again (503).
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    pub event_id: String,
    pub duplicate: bool,
    pub communication_ids: Vec<CommunicationId>,
}

fn text<'a>(event: &'a Value, path: &str) -> Option<&'a str> {
    lookup(event, path)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

pub(super) fn field_text(event: &Value, path: &str) -> Option<String> {
    match lookup(event, path)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Applies an event. Every rule is prepared (recipients, template, payload) before anything
/// is written, so a broken rule writes nothing and the producer can send the event again.
pub async fn ingest(
    intake: &Intake,
    rules: &RuleSet,
    event: &Value,
) -> Result<IngestOutcome, EventError> {
    let required = |name: &str| {
        text(event, name).map(str::to_string).ok_or_else(|| {
            EventError::Invalid(format!("the event needs a non-empty string '{name}'"))
        })
    };
    let event_id = required("eventId")?;
    let event_type = required("eventType")?;
    let tenant_id = required("tenantId")?;
    let occurred_at: DateTime<Utc> = text(event, "occurredAt")
        .ok_or_else(|| EventError::Invalid("the event needs 'occurredAt' (RFC 3339)".into()))?
        .parse()
        .map_err(|e| EventError::Invalid(format!("occurredAt: {e}")))?;
    let unavailable = |e: &dyn std::fmt::Display| {
        EventError::Unavailable(format!("ledger database unavailable: {e}"))
    };
    let seen = intake
        .ledger
        .applied_event(&tenant_id, &event_id)
        .await
        .map_err(|e| unavailable(&e))?;
    if let Some(communication_ids) = seen {
        return Ok(IngestOutcome {
            event_id,
            duplicate: true,
            communication_ids,
        });
    }

    if event_type == "DocumentArtifactAvailable" {
        intake
            .registry
            .register(&artifact_of(event, &tenant_id)?)
            .await
            .map_err(|e| unavailable(&e))?;
    }

    let mut requests = Vec::new();
    for rule in rules.matching(&event_type, Utc::now()) {
        let key = |recipient_ref: &str| {
            format!("{}:v{}:{}:{recipient_ref}", rule.id, rule.version, event_id)
        };
        let occasion = Occasion {
            key: &key,
            requested_by: format!("event:{}", rule.trigger),
            correlation_id: field_text(event, "correlationId").unwrap_or_else(|| event_id.clone()),
            locale: None,
            market: None,
            unnamed: None,
        };
        requests.extend(prepare(intake, rule, event, tenant_id.as_str(), &occasion).await?);
    }
    let mut ids = Vec::with_capacity(requests.len());
    for Prepared {
        mut request,
        digest,
    } in requests
    {
        if let Some(plan) = digest {
            let digest_id = plan.add(&intake.ledger, &request).await?;
            mark_digested(
                &mut request.admitted,
                format!("goes out in digest {digest_id}"),
            );
        }
        let outcome = intake
            .ledger
            .request(&request)
            .await
            .map_err(|e| EventError::Unavailable(e.to_string()))?;
        ids.push(outcome.communication_id);
    }
    intake
        .ledger
        .record_event(&tenant_id, &event_id, &event_type, occurred_at, &ids)
        .await
        .map_err(|e| unavailable(&e))?;
    tracing::info!(eventId = %event_id, eventType = %event_type, communications = ids.len(), "event applied");
    Ok(IngestOutcome {
        event_id,
        duplicate: false,
        communication_ids: ids,
    })
}

fn artifact_of(event: &Value, tenant_id: &str) -> Result<Artifact, EventError> {
    let need = |path: &str| {
        field_text(event, path)
            .ok_or_else(|| EventError::Invalid(format!("DocumentArtifactAvailable needs '{path}'")))
    };
    let quote_id = need("data.quoteId")?;
    let revision = need("data.revisionNo")?;
    Ok(Artifact {
        tenant_id: tenant_id.to_string(),
        artifact_id: need("data.artifactId")?,
        subject_type: "QUOTE_REVISION".into(),
        subject_id: format!("{quote_id}/{revision}"),
        artifact_type: need("data.artifactType")?,
        status: "AVAILABLE".into(),
        content_hash: field_text(event, "data.contentHash"),
        storage_location: need("data.storageLocation")?,
        size_bytes: lookup(event, "data.sizeBytes").and_then(Value::as_i64),
        media_type: field_text(event, "data.mediaType").unwrap_or_else(|| "application/pdf".into()),
        file_name: need("data.fileName")?,
    })
}

/// How the communications of a rule are keyed and attributed: an event's, or a command's
/// (`intake::commands`).
pub(super) struct Occasion<'a> {
    /// The idempotency key of a recipient's communication, from its reference (the channel is
    /// appended when the rule sends on every one of several channels).
    pub key: &'a (dyn Fn(&str) -> String + Sync),
    pub requested_by: String,
    pub correlation_id: String,
    /// The locale asked for (a contact's own wins).
    pub locale: Option<&'a str>,
    /// The market whose template version wins over the recipient's.
    pub market: Option<&'a str>,
    /// The `recipientName` of a recipient whose name herald does not know, where the rule names
    /// none (an explicit address of a command: "customer"), for a template that greets.
    pub unnamed: Option<&'static str>,
}

/// The communications one rule asks for, one per recipient, ready for the ledger.
pub(super) async fn prepare(
    intake: &Intake,
    rule: &EventRule,
    event: &Value,
    tenant_id: &str,
    occasion: &Occasion<'_>,
) -> Result<Vec<Prepared>, EventError> {
    let missing = |path: &str| {
        EventError::Invalid(format!("rule '{}' needs the event field '{path}'", rule.id))
    };
    let engine = |e: crate::camunda::CamundaError| {
        EventError::Unavailable(format!("engine identity unavailable: {e}"))
    };
    let db = |e: sqlx::Error| EventError::Unavailable(format!("ledger database unavailable: {e}"));
    let spec = rule.recipient_spec().map_err(EventError::Rule)?;
    let resolutions: Vec<Resolution> = match &spec {
        RecipientSpec::Contact(path) => {
            let id = text(event, path).ok_or_else(|| missing(path))?;
            vec![intake
                .directory
                .contact_email(tenant_id, id, occasion.locale)
                .await
                .map_err(db)?]
        }
        RecipientSpec::Email(path) => {
            let key = intake
                .ref_key(&format!("rule '{}'", rule.id))
                .map_err(|e| EventError::Rule(e.to_string()))?;
            vec![explicit_email(
                key,
                text(event, path).ok_or_else(|| missing(path))?,
                occasion.locale,
            )]
        }
        RecipientSpec::CamundaUser(path) => {
            let user = text(event, path).ok_or_else(|| missing(path))?;
            let profile = intake.camunda.user_profile(user).await.map_err(engine)?;
            vec![engine_user(user, profile.as_ref(), None)]
        }
        RecipientSpec::CamundaGroup(group) => intake
            .camunda
            .group_members(group)
            .await
            .map_err(engine)?
            .iter()
            .map(|member| engine_user(&member.id, Some(member), None))
            .collect(),
        RecipientSpec::WebhookSubscriptions(event_type) => {
            // No subscriber is no one to tell, not an error.
            intake
                .endpoints
                .subscribers(tenant_id, event_type)
                .await
                .map_err(db)?
        }
    };
    if resolutions.is_empty() && matches!(spec, RecipientSpec::WebhookSubscriptions(_)) {
        return Ok(Vec::new());
    }
    if resolutions.is_empty() {
        return Err(EventError::Rule(format!(
            "rule '{}': nobody to notify ({})",
            rule.id, rule.recipient
        )));
    }
    let (subject_type, subject_path) = rule.subject_spec().map_err(EventError::Rule)?;
    let subject_id = field_text(event, subject_path).ok_or_else(|| missing(subject_path))?;
    let mut payload = serde_json::Map::new();
    for (field, path) in &rule.payload {
        payload.insert(
            field.clone(),
            lookup(event, path).cloned().unwrap_or(Value::Null),
        );
    }
    let purpose = rule_purpose(rule)?;
    let origins = rule.origins();
    let rule_error = |e: IntakeError| match e {
        IntakeError::Unavailable { message, .. } => EventError::Unavailable(message),
        other => EventError::Rule(other.to_string()),
    };
    let mut requests = Vec::with_capacity(resolutions.len());
    for resolution in resolutions {
        let (locale, market, display_name) = match &resolution {
            Resolution::Resolved {
                recipient,
                display_name,
            } => (
                recipient.locale.clone(),
                occasion
                    .market
                    .map(str::to_string)
                    .or_else(|| recipient.market.clone())
                    .or_else(|| field_text(event, "market")),
                display_name.clone(),
            ),
            _ => (
                occasion.locale.map(str::to_string),
                occasion
                    .market
                    .map(str::to_string)
                    .or_else(|| field_text(event, "market")),
                None,
            ),
        };
        let base_key = occasion.key;
        // An event applied in part before explicit addresses' references were keyed: its
        // records keep their key and reference (one channel: explicit addresses are email's).
        let (base_key, resolution) = match &spec {
            RecipientSpec::Email(path) => {
                let earlier_ref = crate::policy::earlier_address_ref(
                    text(event, path).ok_or_else(|| missing(path))?,
                );
                let first = purpose.channels.first().copied().unwrap_or(Channel::Email);
                let (_, resolution) = intake
                    .keep_earlier_ref(
                        &purpose.label,
                        tenant_id,
                        purpose.key_on(&base_key(resolution.recipient_ref()), first),
                        resolution,
                        purpose.key_on(&base_key(&earlier_ref), first),
                        earlier_ref,
                    )
                    .await
                    .map_err(rule_error)?;
                (base_key(resolution.recipient_ref()), resolution)
            }
            _ => (base_key(resolution.recipient_ref()), resolution),
        };
        let admitted_on_channels = intake
            .admit(&purpose, tenant_id, &resolution, locale.clone())
            .await
            .map_err(rule_error)?;
        for mut admitted in admitted_on_channels {
            let channel = admitted.recipient.channel;
            let template = intake
                .template(&purpose, channel, locale.as_deref(), market.as_deref())
                .map_err(rule_error)?;
            // herald fills in the name of a contact or an engine user (`EventRule::recipient_name`),
            // reached by email or, without an address, in the inbox (where the name was not
            // looked up: a neutral greeting, as digests have).
            let mut data = Value::Object(payload.clone());
            let fills_name = rule.recipient_name().is_some() || occasion.unnamed.is_some();
            if let Some(fields) = data.as_object_mut() {
                if fills_name && template.meta.payload.contains_key("recipientName") {
                    let name = display_name
                        .as_deref()
                        .or(occasion.unnamed)
                        .unwrap_or(NO_NAME);
                    fields.insert("recipientName".into(), json!(name));
                }
            }
            intake
                .check_render(
                    &purpose,
                    template,
                    &data,
                    &origins,
                    admitted.recipient.recipient_type,
                )
                .map_err(rule_error)?;
            let idempotency_key = purpose.key_on(&base_key, channel);
            intake
                .hold_back(
                    &purpose,
                    &mut admitted,
                    tenant_id,
                    &subject_id,
                    &idempotency_key,
                )
                .await
                .map_err(rule_error)?;
            // Aggregated alerts: the group is the root cause; the first of a window goes out
            // at once, the others into the window's summary.
            let group_key = rule
                .aggregate
                .as_ref()
                .map(|a| field_text(event, &a.by).unwrap_or_else(|| "-".into()));
            let collect = match (&rule.digest, &rule.aggregate, &group_key) {
                (Some(digest), _, _) => Some((digest.clone(), None)),
                (None, Some(aggregate), Some(group)) if channel == Channel::Email => {
                    let config = aggregate.as_digest();
                    let period = config.period().map_err(EventError::Rule)?;
                    let (start, _) = digest_window(period, Utc::now());
                    let seen = intake
                        .ledger
                        .group_seen_since(
                            tenant_id,
                            &admitted.recipient.recipient_ref,
                            &purpose.rule_ref,
                            group,
                            start,
                            &idempotency_key,
                        )
                        .await
                        .map_err(|e| EventError::Unavailable(e.to_string()))?;
                    seen.then_some((config, Some(group.clone())))
                }
                _ => None,
            };
            let digest = match (collect, &admitted.admission) {
                (Some((config, group)), Admission::Queue) => Some(DigestPlan::new(
                    intake,
                    rule,
                    &purpose,
                    &config,
                    group.as_deref(),
                    &admitted,
                    (locale.as_deref(), market.as_deref()),
                    display_name.as_deref(),
                    intake
                        .templates
                        .render(template, &data)
                        .map_err(|e| EventError::Rule(format!("rule '{}': {e}", rule.id)))?
                        .subject,
                )?),
                _ => None,
            };
            let provenance = Provenance::new(
                occasion.requested_by.clone(),
                occasion.correlation_id.clone(),
                &purpose.rule_ref,
            )
            .in_group(group_key);
            let request = NewCommunication::new(
                tenant_id,
                idempotency_key,
                purpose.class,
                Subject::new(subject_type, subject_id.clone())
                    .of(field_text(event, "quoteId"), field_text(event, "orderId")),
                admitted,
                Rendering {
                    template_family: template.meta.family.clone(),
                    template_version: template.meta.version.clone(),
                    payload: data,
                },
                provenance,
            )
            .priority(purpose.priority);
            requests.push(Prepared { request, digest });
        }
    }
    Ok(requests)
}

/// The greeting herald fills in for a recipient whose name it did not look up (`Hello there`).
const NO_NAME: &str = "there";

/// What a rule asks for, as the intake admits it.
pub(super) fn rule_purpose(rule: &EventRule) -> Result<Purpose, EventError> {
    let dedupe = match &rule.dedupe_window {
        Some(written) => Some(Dedupe {
            window: parse_duration(written).map_err(EventError::Rule)?,
            written: written.clone(),
        }),
        None => None,
    };
    Ok(Purpose {
        label: format!("rule '{}'", rule.id),
        rule_ref: format!("rule:{}:v{}", rule.id, rule.version),
        class: Classification {
            communication_type: rule.communication_type,
            category: rule.category,
        },
        template_family: rule.template_family.clone(),
        channel_templates: rule.channel_templates.clone(),
        channels: rule.channels.clone(),
        channel_mode: rule.channel_mode,
        priority: rule.priority,
        dedupe,
        rate_limit: rule.rate_limit.clone(),
        business_hours: None,
    })
}

/// A communication ready for the ledger, and the digest it goes out in, if its rule collects.
pub(super) struct Prepared {
    pub request: NewCommunication,
    digest: Option<DigestPlan>,
}

impl Prepared {
    /// Whether the communication goes out in a digest (commands never do).
    pub fn collected(&self) -> bool {
        self.digest.is_some()
    }
}

/// The digest an item goes into: the record for the item's window, and the item's line.
pub(super) struct DigestPlan {
    digest: NewCommunication,
    key_prefix: String,
    period: std::time::Duration,
    line: String,
}

impl DigestPlan {
    #[allow(clippy::too_many_arguments)]
    fn new(
        intake: &Intake,
        rule: &EventRule,
        purpose: &Purpose,
        config: &DigestConfig,
        group: Option<&str>,
        admitted: &Admitted,
        (locale, market): (Option<&str>, Option<&str>),
        display_name: Option<&str>,
        line: String,
    ) -> Result<DigestPlan, EventError> {
        let invalid = |e: String| EventError::Rule(format!("rule '{}': {e}", rule.id));
        let period = config.period().map_err(invalid)?;
        let template = intake
            .templates
            .resolve(&config.template_family, locale, market, Utc::now())
            .map_err(|e| invalid(e.to_string()))?;
        // The digest shows the items' subjects: their family's audience must allow it, and the
        // digest's the recipient.
        intake
            .templates
            .admit_recipient(template, admitted.recipient.recipient_type)
            .and_then(|()| {
                intake
                    .templates
                    .admit_origins(template, &rule.digest_origins())
            })
            .map_err(|e| invalid(e.to_string()))?;
        let mut payload = serde_json::Map::new();
        if template.meta.payload.contains_key("recipientName") {
            payload.insert(
                "recipientName".into(),
                json!(display_name.unwrap_or(NO_NAME)),
            );
        }
        payload.insert("count".into(), json!(0));
        payload.insert("items".into(), json!([]));
        let mut sample = Value::Object(payload.clone());
        sample["count"] = json!(1);
        sample["items"] = json!([line]);
        intake
            .templates
            .render(template, &sample)
            .map_err(|e| invalid(e.to_string()))?;
        let recipient_ref = admitted.recipient.recipient_ref.clone();
        let mut digest_recipient = admitted.clone();
        digest_recipient.admission = Admission::Queue;
        digest_recipient.not_before = None;
        digest_recipient.decisions = vec![Decision {
            check: "digest",
            outcome: DecisionOutcome::Allow,
            reason_code: "DIGEST".into(),
            detail: format!("collects '{}' every {}", rule.id, config.every),
        }];
        Ok(DigestPlan {
            key_prefix: match group {
                Some(group) => format!(
                    "summary:{}:v{}:{group}:{recipient_ref}",
                    rule.id, rule.version
                ),
                None => format!("digest:{}:v{}:{recipient_ref}", rule.id, rule.version),
            },
            // Tenant, key, subject, correlation id and due time are the window's (see add).
            digest: NewCommunication::new(
                String::new(),
                String::new(),
                purpose.class,
                Subject::new("DIGEST", String::new()),
                digest_recipient,
                Rendering {
                    template_family: template.meta.family.clone(),
                    template_version: template.meta.version.clone(),
                    payload: Value::Object(payload),
                },
                Provenance::new(
                    format!("digest:{}", rule.id),
                    String::new(),
                    &purpose.rule_ref,
                ),
            )
            .priority(purpose.priority),
            period,
            line,
        })
    }

    /// Adds the item to the digest of the current window (or the next one, when the current
    /// one is already on its way); returns the digest's id.
    async fn add(
        mut self,
        ledger: &crate::ledger::Ledger,
        item: &NewCommunication,
    ) -> Result<CommunicationId, EventError> {
        let mut at = Utc::now();
        for _ in 0..3 {
            let (start, end) = digest_window(self.period, at);
            self.digest.tenant_id = item.tenant_id.clone();
            self.digest.idempotency_key = format!("{}:{}", self.key_prefix, start.timestamp());
            self.digest.subject.subject_id = format!("{}:{}", self.key_prefix, start.to_rfc3339());
            self.digest.provenance.correlation_id = self.digest.idempotency_key.clone();
            self.digest.admitted.not_before = Some(end);
            match ledger
                .add_to_digest(&self.digest, &item.idempotency_key, &self.line)
                .await
                .map_err(|e| EventError::Unavailable(e.to_string()))?
            {
                Some(id) => return Ok(id),
                None => at = end,
            }
        }
        Err(EventError::Unavailable(
            "the digest windows kept closing; try again".into(),
        ))
    }
}
