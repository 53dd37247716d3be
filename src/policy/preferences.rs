//! Preferences, consent and suppression: whether (and when) a resolved recipient may be sent
//! to. Every check leaves a decision with its reason, stored with the communication.
//!
//! Order: tenant switch, suppression list, blocked domain, opt-out / consent, maintenance
//! freeze, quiet hours. The first refusal wins; delays add up to the latest allowed time.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;

use crate::ledger::{
    Admission, Channel, CommunicationType, Criticality, Decision, DecisionOutcome, MessageCategory,
    ResolvedRecipient,
};

/// Quiet hours in a time zone, e.g. 20:00–07:00 Europe/Vienna (may wrap midnight).
#[derive(Debug, Clone, PartialEq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub timezone: Tz,
}

impl QuietHours {
    /// When the quiet period that contains `at` ends, or None when `at` is not quiet.
    pub fn ends_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start == self.end {
            return None;
        }
        let local = at.with_timezone(&self.timezone);
        let time = local.time();
        let date = local.date_naive();
        let wraps = self.start > self.end;
        let quiet = if wraps {
            time >= self.start || time < self.end
        } else {
            time >= self.start && time < self.end
        };
        if !quiet {
            return None;
        }
        // The end is today when we are before it, else tomorrow (a period that wraps midnight).
        let end_date = if time < self.end {
            date
        } else {
            next_day(date)
        };
        local_instant(self.timezone, end_date.and_time(self.end))
    }
}

/// A wall-clock time in a time zone as an instant: a time that does not exist (a DST gap) moves
/// on by an hour; an ambiguous one takes the earlier instant.
pub(crate) fn local_instant(zone: Tz, naive: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

fn next_day(date: NaiveDate) -> NaiveDate {
    date.succ_opt().unwrap_or(date.with_day(1).unwrap_or(date))
}

/// Everything the checks look at, loaded once per recipient.
#[derive(Debug, Clone, Default)]
pub struct PolicyFacts {
    pub tenant_enabled: bool,
    pub address_suppressed: Option<String>,
    pub domain_blocked: Option<String>,
    /// The recipient's explicit choice for this category and channel, if any.
    pub opted_in: Option<bool>,
    pub freeze_until: Option<DateTime<Utc>>,
    pub quiet_hours: Option<QuietHours>,
}

/// What the checks decided together.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOutcome {
    pub admission: Admission,
    pub not_before: Option<DateTime<Utc>>,
    pub decisions: Vec<Decision>,
}

fn decision(
    check: &'static str,
    outcome: DecisionOutcome,
    code: &str,
    detail: impl Into<String>,
) -> Decision {
    Decision {
        check,
        outcome,
        reason_code: code.into(),
        detail: detail.into(),
    }
}

/// Applies the checks to one recipient of a communication of `kind` in `category`.
pub fn evaluate(
    facts: &PolicyFacts,
    kind: CommunicationType,
    category: MessageCategory,
    channel: Channel,
    now: DateTime<Utc>,
) -> PolicyOutcome {
    use DecisionOutcome::*;
    let mut decisions = Vec::new();
    let refuse = |mut decisions: Vec<Decision>, d: Decision| {
        let admission = Admission::Suppress {
            code: d.reason_code.clone(),
            message: d.detail.clone(),
        };
        decisions.push(d);
        PolicyOutcome {
            admission,
            not_before: None,
            decisions,
        }
    };
    if !facts.tenant_enabled {
        return refuse(
            decisions,
            decision(
                "tenant",
                Suppress,
                "TENANT_DISABLED",
                "communications are switched off for the tenant",
            ),
        );
    }
    decisions.push(decision(
        "tenant",
        Allow,
        "TENANT_ENABLED",
        "tenant sends communications",
    ));
    if let Some(reason) = &facts.address_suppressed {
        return refuse(
            decisions,
            decision(
                "suppression",
                Suppress,
                "ADDRESS_SUPPRESSED",
                format!("the address is on the suppression list ({reason})"),
            ),
        );
    }
    if let Some(domain) = &facts.domain_blocked {
        return refuse(
            decisions,
            decision(
                "domain",
                Suppress,
                "DOMAIN_BLOCKED",
                format!("the domain {domain} is blocked"),
            ),
        );
    }
    match (category, facts.opted_in) {
        // Contractual and transactional messages are not subject to opt-outs.
        (MessageCategory::Transactional, Some(false)) => decisions.push(decision(
            "preference",
            Allow,
            "TRANSACTIONAL_NOT_OPTABLE",
            format!("opted out of {channel}, but transactional messages are always sent"),
        )),
        (_, Some(false)) => {
            return refuse(
                decisions,
                decision(
                    "preference",
                    Suppress,
                    "OPTED_OUT",
                    format!("opted out of {category} messages by {channel}"),
                ),
            )
        }
        // Marketing needs consent: no explicit opt-in, no message.
        (MessageCategory::Marketing, None) => {
            return refuse(
                decisions,
                decision(
                    "preference",
                    Suppress,
                    "NO_CONSENT",
                    "no opt-in for marketing messages",
                ),
            )
        }
        (_, Some(true)) => decisions.push(decision(
            "preference",
            Allow,
            "OPTED_IN",
            format!("opted in to {category} by {channel}"),
        )),
        (_, None) => decisions.push(decision(
            "preference",
            Allow,
            "NO_PREFERENCE",
            "no preference recorded: default allow",
        )),
    }
    let mut not_before: Option<DateTime<Utc>> = None;
    if let Some(until) = facts.freeze_until.filter(|u| *u > now) {
        decisions.push(decision(
            "freeze",
            Delay,
            "MAINTENANCE_FREEZE",
            format!("held until the freeze ends at {until}"),
        ));
        not_before = Some(until);
    }
    if let Some(quiet) = &facts.quiet_hours {
        let at = not_before.unwrap_or(now);
        match quiet.ends_after(at) {
            Some(end) if kind.criticality() <= Criticality::Medium => {
                decisions.push(decision(
                    "quiet_hours",
                    Delay,
                    "QUIET_HOURS",
                    format!(
                        "recipient's quiet hours ({}): held until {end}",
                        quiet.timezone
                    ),
                ));
                not_before = Some(end);
            }
            Some(_) => decisions.push(decision(
                "quiet_hours",
                Allow,
                "CRITICAL_IN_QUIET_HOURS",
                "quiet hours, but the communication is critical",
            )),
            None => decisions.push(decision(
                "quiet_hours",
                Allow,
                "OUTSIDE_QUIET_HOURS",
                "not in the recipient's quiet hours",
            )),
        }
    }
    PolicyOutcome {
        admission: Admission::Queue,
        not_before,
        decisions,
    }
}

/// Loads the facts for one recipient from the ledger database.
pub async fn load_facts(
    pool: &PgPool,
    tenant_id: &str,
    recipient: &ResolvedRecipient,
    category: MessageCategory,
    now: DateTime<Utc>,
) -> Result<PolicyFacts, sqlx::Error> {
    let tenant: Option<(bool, Option<NaiveTime>, Option<NaiveTime>, String)> = sqlx::query_as(
        "SELECT communications_enabled, quiet_start, quiet_end, timezone FROM tenant_policy WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    let (recipient_ref, channel) = (&recipient.recipient_ref, recipient.channel);
    let contact_quiet = recipient
        .quiet_hours
        .map(|(start, end)| (start, end, recipient.timezone.clone()));
    let (address_suppressed, domain_blocked) = match recipient.address.as_deref() {
        Some(address) => {
            let hash = super::hash_address(address);
            let suppressed: Option<String> = sqlx::query_scalar(
                "SELECT reason FROM suppression_entry WHERE address_hash = $1 AND tenant_id IN ($2, '*') LIMIT 1",
            )
            .bind(&hash)
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?;
            let domain = address
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default();
            let blocked: Option<String> = sqlx::query_scalar(
                "SELECT domain FROM blocked_domain WHERE domain = $1 AND tenant_id IN ($2, '*') LIMIT 1",
            )
            .bind(&domain)
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?;
            (suppressed, blocked)
        }
        None => (None, None),
    };
    let opted_in: Option<bool> = sqlx::query_scalar(
        "SELECT opted_in FROM recipient_preference WHERE tenant_id = $1 AND recipient_ref = $2 AND category = $3 AND channel = $4",
    )
    .bind(tenant_id)
    .bind(recipient_ref)
    .bind(category.as_str())
    .bind(channel.as_str())
    .fetch_optional(pool)
    .await?;
    let freeze_until: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(ends_at) FROM maintenance_window WHERE tenant_id IN ($1, '*') AND starts_at <= $2 AND ends_at > $2",
    )
    .bind(tenant_id)
    .bind(now)
    .fetch_one(pool)
    .await?;
    let tenant_zone = tenant.as_ref().map(|t| t.3.clone());
    let quiet = match contact_quiet {
        Some((start, end, zone)) => Some((start, end, zone.or(tenant_zone))),
        None => tenant.as_ref().and_then(|t| match (t.1, t.2) {
            (Some(start), Some(end)) => Some((start, end, Some(t.3.clone()))),
            _ => None,
        }),
    };
    let quiet_hours = quiet.map(|(start, end, zone)| QuietHours {
        start,
        end,
        timezone: zone.and_then(|z| z.parse::<Tz>().ok()).unwrap_or(Tz::UTC),
    });
    Ok(PolicyFacts {
        tenant_enabled: tenant.as_ref().map(|t| t.0).unwrap_or(true),
        address_suppressed,
        domain_blocked,
        opted_in,
        freeze_until,
        quiet_hours,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn quiet(zone: &str) -> QuietHours {
        QuietHours {
            start: NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
            timezone: zone.parse().unwrap(),
        }
    }

    fn open() -> PolicyFacts {
        PolicyFacts {
            tenant_enabled: true,
            ..PolicyFacts::default()
        }
    }

    #[test]
    fn quiet_hours_are_read_in_the_recipients_time_zone() {
        // 19:30 UTC is 20:30 in Vienna (quiet until 07:00 local = 06:00 UTC) but 14:30 in New York.
        let now = at("2026-11-26T19:30:00Z");
        assert_eq!(
            quiet("Europe/Vienna").ends_after(now),
            Some(at("2026-11-27T06:00:00Z"))
        );
        assert_eq!(quiet("America/New_York").ends_after(now), None);
        // Just after midnight local time the period ends the same morning.
        assert_eq!(
            quiet("Europe/Vienna").ends_after(at("2026-11-26T23:30:00Z")),
            Some(at("2026-11-27T06:00:00Z"))
        );
        assert_eq!(
            quiet("Europe/Vienna").ends_after(at("2026-11-27T06:00:00Z")),
            None,
            "07:00 local is no longer quiet"
        );
    }

    #[test]
    fn quiet_hours_across_a_daylight_saving_change() {
        // The night of 2026-03-28/29: Vienna moves from UTC+1 to UTC+2; 07:00 local is 05:00 UTC.
        assert_eq!(
            quiet("Europe/Vienna").ends_after(at("2026-03-28T21:00:00Z")),
            Some(at("2026-03-29T05:00:00Z"))
        );
    }

    #[test]
    fn non_critical_messages_are_delayed_critical_ones_are_not() {
        let facts = PolicyFacts {
            quiet_hours: Some(quiet("Europe/Vienna")),
            ..open()
        };
        let now = at("2026-11-26T21:00:00Z");
        let reminder = evaluate(
            &facts,
            CommunicationType::ApprovalReminder,
            MessageCategory::Operational,
            Channel::Email,
            now,
        );
        assert_eq!(reminder.admission, Admission::Queue, "delayed, not dropped");
        assert_eq!(reminder.not_before, Some(at("2026-11-27T06:00:00Z")));
        assert_eq!(
            reminder.decisions.last().unwrap().reason_code,
            "QUIET_HOURS"
        );
        let proposal = evaluate(
            &facts,
            CommunicationType::QuoteProposalDelivery,
            MessageCategory::Transactional,
            Channel::Email,
            now,
        );
        assert_eq!(proposal.not_before, None);
    }

    #[test]
    fn marketing_opt_out_does_not_block_transactional_messages() {
        let opted_out = PolicyFacts {
            opted_in: Some(false),
            ..open()
        };
        let now = at("2026-11-26T10:00:00Z");
        let marketing = evaluate(
            &opted_out,
            CommunicationType::QuoteExpiryWarning,
            MessageCategory::Marketing,
            Channel::Email,
            now,
        );
        assert!(
            matches!(marketing.admission, Admission::Suppress { ref code, .. } if code == "OPTED_OUT")
        );
        let transactional = evaluate(
            &opted_out,
            CommunicationType::QuoteProposalDelivery,
            MessageCategory::Transactional,
            Channel::Email,
            now,
        );
        assert_eq!(transactional.admission, Admission::Queue);
        let no_consent = evaluate(
            &open(),
            CommunicationType::QuoteExpiryWarning,
            MessageCategory::Marketing,
            Channel::Email,
            now,
        );
        assert!(
            matches!(no_consent.admission, Admission::Suppress { ref code, .. } if code == "NO_CONSENT")
        );
    }

    #[test]
    fn refusals_come_in_order_and_say_why() {
        let now = at("2026-11-26T10:00:00Z");
        let kind = CommunicationType::ApprovalReminder;
        let disabled = PolicyFacts::default();
        let out = evaluate(
            &disabled,
            kind,
            MessageCategory::Operational,
            Channel::Email,
            now,
        );
        assert!(
            matches!(out.admission, Admission::Suppress { ref code, .. } if code == "TENANT_DISABLED")
        );
        let bounced = PolicyFacts {
            address_suppressed: Some("HARD_BOUNCE".into()),
            domain_blocked: Some("spam.example".into()),
            ..open()
        };
        let out = evaluate(
            &bounced,
            kind,
            MessageCategory::Operational,
            Channel::Email,
            now,
        );
        assert!(
            matches!(out.admission, Admission::Suppress { ref code, .. } if code == "ADDRESS_SUPPRESSED")
        );
        let frozen = PolicyFacts {
            freeze_until: Some(at("2026-11-26T12:00:00Z")),
            ..open()
        };
        let out = evaluate(
            &frozen,
            kind,
            MessageCategory::Operational,
            Channel::Email,
            now,
        );
        assert_eq!(out.not_before, Some(at("2026-11-26T12:00:00Z")));
        assert!(out
            .decisions
            .iter()
            .any(|d| d.reason_code == "MAINTENANCE_FREEZE"));
    }
}
