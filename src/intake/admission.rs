//! Admission of one recipient: preferences, consent and suppression on each of the purpose's
//! channels, then business hours and the noise controls (dedupe, rate limits). Every check
//! leaves a decision; a refusal is the recipient's business status, never an error. Only an
//! outage of the ledger's database is an error.

use chrono::{DateTime, Utc};

use crate::ledger::{
    Admission, Admitted, Channel, Criticality, Decision, DecisionOutcome, ResolvedRecipient,
};
use crate::policy::channel_choice::{on_channel, ChannelMode, CHANNEL_NOT_AVAILABLE};
use crate::policy::noise::RateScope;
use crate::policy::preferences::evaluate;
use crate::policy::{hash_address, mask_address, Resolution};

use super::{Intake, IntakeError, Purpose};

impl Intake {
    /// Admits a recipient on the purpose's channels: the first that reaches it (`first`), or
    /// each (`all`). Channels it cannot be reached on are skipped; when none reaches it, the
    /// result is the first channel's refusal, so that the recipient still gets its business
    /// status. `locale` is recorded for a recipient that could not be resolved.
    pub async fn admit(
        &self,
        purpose: &Purpose,
        tenant_id: &str,
        resolution: &Resolution,
        locale: Option<String>,
    ) -> Result<Vec<Admitted>, IntakeError> {
        let mut chosen = Vec::new();
        let mut refusal: Option<Admitted> = None;
        let mut trail = Vec::new();
        for &channel in &purpose.channels {
            let on = on_channel(resolution, channel);
            let unavailable =
                matches!(&on, Resolution::Failed { code, .. } if *code == CHANNEL_NOT_AVAILABLE);
            let mut admitted = self
                .admit_on(purpose, tenant_id, on, locale.clone(), channel)
                .await?;
            if unavailable {
                trail.extend(admitted.decisions.iter().cloned());
                refusal.get_or_insert(admitted);
                continue;
            }
            let queued = matches!(admitted.admission, Admission::Queue);
            match purpose.channel_mode {
                ChannelMode::All => chosen.push(admitted),
                ChannelMode::First if queued => {
                    let mut decisions = std::mem::take(&mut trail);
                    decisions.append(&mut admitted.decisions);
                    admitted.decisions = decisions;
                    return Ok(vec![admitted]);
                }
                ChannelMode::First => {
                    trail.extend(admitted.decisions.iter().cloned());
                    // A real refusal (opted out, suppressed) says more than "no address here".
                    if refusal.as_ref().is_none_or(|r| r.address_hash.is_none()) {
                        refusal = Some(admitted);
                    }
                }
            }
        }
        if chosen.is_empty() {
            let mut refused = refusal.expect("a purpose has at least one channel");
            refused.decisions = trail;
            chosen.push(refused);
        }
        Ok(chosen)
    }

    /// Applies preferences, consent and suppression to a recipient on `channel`; an
    /// unresolved one becomes its business status.
    pub async fn admit_on(
        &self,
        purpose: &Purpose,
        tenant_id: &str,
        resolution: Resolution,
        locale: Option<String>,
        channel: Channel,
    ) -> Result<Admitted, IntakeError> {
        let unresolved = |recipient_type, recipient_ref| ResolvedRecipient {
            recipient_type,
            recipient_ref,
            channel,
            address: None,
            locale: locale.clone(),
            timezone: None,
            quiet_hours: None,
            market: None,
        };
        // A recipient that cannot be reached (Fail) or may not be (Suppress): its status.
        let refused =
            |recipient_type, recipient_ref, outcome, code: &'static str, message: String| {
                let admission = if outcome == DecisionOutcome::Suppress {
                    Admission::Suppress {
                        code: code.into(),
                        message: message.clone(),
                    }
                } else {
                    Admission::Fail {
                        code: code.into(),
                        message: message.clone(),
                    }
                };
                Admitted {
                    decisions: vec![Decision {
                        check: "recipient",
                        outcome,
                        reason_code: code.into(),
                        detail: message,
                    }],
                    admission,
                    ..Admitted::unreachable(unresolved(recipient_type, recipient_ref))
                }
            };
        let outcome = if matches!(resolution, Resolution::Suppressed { .. }) {
            DecisionOutcome::Suppress
        } else {
            DecisionOutcome::Fail
        };
        match resolution {
            Resolution::Resolved { recipient, .. } => {
                let address = recipient.address.clone().unwrap_or_default();
                let now = Utc::now();
                let facts = self
                    .directory
                    .facts(tenant_id, &recipient, purpose.class.category, now)
                    .await
                    .map_err(|e| IntakeError::ledger_down(&purpose.label, e))?;
                let verdict = evaluate(
                    &facts,
                    purpose.class.communication_type,
                    purpose.class.category,
                    recipient.channel,
                    now,
                );
                // Only email addresses are personal data; inbox and subscription ids are not.
                let masked = match recipient.channel {
                    Channel::Email => mask_address(&address),
                    Channel::InApp | Channel::Webhook => address.clone(),
                };
                Ok(Admitted {
                    address_hash: Some(hash_address(&address)),
                    address_masked: Some(masked),
                    recipient,
                    admission: verdict.admission,
                    not_before: verdict.not_before,
                    decisions: verdict.decisions,
                })
            }
            Resolution::Failed {
                recipient_type,
                recipient_ref,
                code,
                message,
            }
            | Resolution::Suppressed {
                recipient_type,
                recipient_ref,
                code,
                message,
            } => Ok(refused(
                recipient_type,
                recipient_ref,
                outcome,
                code,
                message,
            )),
        }
    }

    /// Holds an admitted recipient back as the purpose says: until business hours open, as
    /// DEDUPED when a near-duplicate about `subject_id` went out within the dedupe window, and
    /// under the rate limit (critical excess waits for the next free slot, the rest is
    /// RATE_LIMITED). `idempotency_key` is the communication's own (it does not count).
    pub async fn hold_back(
        &self,
        purpose: &Purpose,
        admitted: &mut Admitted,
        tenant_id: &str,
        subject_id: &str,
        idempotency_key: &str,
    ) -> Result<(), IntakeError> {
        let now = Utc::now();
        within_business_hours(admitted, purpose, now);
        if let Some(dedupe) = &purpose.dedupe {
            let recent = self
                .ledger
                .recent_duplicate(
                    tenant_id,
                    &admitted.recipient.recipient_ref,
                    purpose.class.communication_type,
                    subject_id,
                    idempotency_key,
                    dedupe.window,
                )
                .await
                .map_err(|e| IntakeError::ledger_down(&purpose.label, e))?;
            if recent {
                mark_deduped(
                    admitted,
                    format!(
                        "a {} about {subject_id} went to this recipient within {}",
                        purpose.class.communication_type, dedupe.written
                    ),
                );
            }
        }
        self.rate_limit(purpose, admitted, tenant_id, idempotency_key, now)
            .await
    }

    async fn rate_limit(
        &self,
        purpose: &Purpose,
        admitted: &mut Admitted,
        tenant_id: &str,
        idempotency_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), IntakeError> {
        let Some(limit) = &purpose.rate_limit else {
            return Ok(());
        };
        if !matches!(admitted.admission, Admission::Queue) {
            return Ok(());
        }
        let kind = purpose.class.communication_type;
        let counted = match limit.scope {
            RateScope::Type => Some(kind),
            RateScope::Recipient => None,
        };
        let scheduled = self
            .ledger
            .scheduled_for(
                tenant_id,
                &admitted.recipient,
                counted,
                idempotency_key,
                limit.per,
                limit.max,
            )
            .await
            .map_err(|e| IntakeError::ledger_down(&purpose.label, e))?;
        let Some(slot) = limit.next_slot(&scheduled, now) else {
            return Ok(());
        };
        let slot = admitted.not_before.map_or(slot, |t| t.max(slot));
        if kind.criticality() >= Criticality::High {
            admitted.not_before = Some(slot);
            decide(
                admitted,
                "rate-limit",
                DecisionOutcome::Delay,
                "RATE_LIMITED",
                format!(
                    "over {} to this recipient: held until {slot}",
                    limit.written
                ),
            );
        } else {
            refuse(
                admitted,
                "rate-limit",
                DecisionOutcome::Suppress,
                "RATE_LIMITED",
                format!("over {} to this recipient", limit.written),
            );
        }
        Ok(())
    }
}

/// Holds a queued recipient until business hours open, when they are closed at `now`.
fn within_business_hours(admitted: &mut Admitted, purpose: &Purpose, now: DateTime<Utc>) {
    let Some(opening) = purpose
        .business_hours
        .as_ref()
        .and_then(|h| h.next_open(now))
    else {
        return;
    };
    if !matches!(admitted.admission, Admission::Queue) {
        return;
    }
    if admitted.not_before.is_none_or(|t| t < opening) {
        admitted.not_before = Some(opening);
    }
    decide(
        admitted,
        "business-hours",
        DecisionOutcome::Delay,
        "OUTSIDE_BUSINESS_HOURS",
        format!("held until business hours open at {opening}"),
    );
}

/// Notes a decision of the intake's about the recipient.
fn decide(
    admitted: &mut Admitted,
    check: &'static str,
    outcome: DecisionOutcome,
    code: &str,
    detail: String,
) {
    admitted.decisions.push(Decision {
        check,
        outcome,
        reason_code: code.into(),
        detail,
    });
}

/// Refuses a queued recipient with a business status, its reason noted as a decision: SUPPRESSED
/// (`Suppress`, `Digest`) or FAILED_FINAL (`Fail`). A recipient refused already keeps its first
/// refusal; the decision is noted all the same.
fn refuse(
    admitted: &mut Admitted,
    check: &'static str,
    outcome: DecisionOutcome,
    code: &str,
    message: String,
) {
    decide(admitted, check, outcome, code, message.clone());
    if !matches!(admitted.admission, Admission::Queue) {
        return;
    }
    admitted.admission = match outcome {
        DecisionOutcome::Fail => Admission::Fail {
            code: code.into(),
            message,
        },
        _ => Admission::Suppress {
            code: code.into(),
            message,
        },
    };
}

/// Marks the recipient DEDUPED: a near-duplicate went out within the window.
fn mark_deduped(admitted: &mut Admitted, message: String) {
    refuse(
        admitted,
        "dedupe",
        DecisionOutcome::Suppress,
        "DEDUPED",
        message,
    );
}

/// Marks the recipient as one that goes out in a digest, not on its own.
pub fn mark_digested(admitted: &mut Admitted, message: String) {
    refuse(
        admitted,
        "digest",
        DecisionOutcome::Digest,
        "DIGESTED",
        message,
    );
}

/// Fails a recipient for good for a reason found on the way (a document that may not go
/// out): a business outcome, like a recipient that cannot be reached.
pub fn mark_failed(admitted: &mut Admitted, check: &'static str, code: &str, message: String) {
    refuse(admitted, check, DecisionOutcome::Fail, code, message);
}
