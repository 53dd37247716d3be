//! Noise control: rate limits per recipient (all of its communications) or per recipient and
//! type. Excess of a critical type is delayed to the next free slot, never dropped; excess of
//! another type is SUPPRESSED as RATE_LIMITED.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::iso8601::parse_duration;

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateScope {
    /// Communications of the rule's type to the recipient.
    #[default]
    Type,
    /// Every communication to the recipient.
    Recipient,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub max: u32,
    /// An ISO 8601 duration, e.g. `PT4H`.
    pub per: String,
    #[serde(default)]
    pub scope: RateScope,
}

/// At most `max` communications per `per` (a sliding window).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RateLimitConfig")]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
    pub scope: RateScope,
    pub written: String,
}

impl TryFrom<RateLimitConfig> for RateLimit {
    type Error = String;
    fn try_from(config: RateLimitConfig) -> Result<Self, Self::Error> {
        if config.max == 0 {
            return Err("rate_limit.max: at least 1".into());
        }
        let per = parse_duration(&config.per).map_err(|e| format!("rate_limit.per: {e}"))?;
        if per.is_zero() {
            return Err("rate_limit.per: longer than zero".into());
        }
        Ok(RateLimit {
            max: config.max,
            per,
            scope: config.scope,
            written: format!("{} per {}", config.max, config.per),
        })
    }
}

impl RateLimit {
    /// When the next communication may go, given the times at which the recipient's recent and
    /// pending communications went or will go (newest first); None: now is fine.
    pub fn next_slot(
        &self,
        scheduled_newest_first: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let per = chrono::Duration::from_std(self.per).ok()?;
        let in_window: Vec<&DateTime<Utc>> = scheduled_newest_first
            .iter()
            .filter(|at| **at > now - per)
            .collect();
        let nth = in_window.get(self.max as usize - 1)?;
        Some(**nth + per).filter(|slot| *slot > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u32, per: &str) -> RateLimit {
        RateLimitConfig {
            max,
            per: per.into(),
            scope: RateScope::Type,
        }
        .try_into()
        .unwrap()
    }

    #[test]
    fn the_next_slot_keeps_a_sliding_window() {
        let now: DateTime<Utc> = "2026-11-26T12:00:00Z".parse().unwrap();
        let at = |m: i64| now - chrono::Duration::minutes(m);
        let two_an_hour = limit(2, "PT1H");
        assert_eq!(two_an_hour.next_slot(&[], now), None);
        assert_eq!(two_an_hour.next_slot(&[at(10)], now), None);
        // Two within the hour: the next goes when the older of them leaves the window.
        assert_eq!(
            two_an_hour.next_slot(&[at(10), at(40)], now),
            Some(at(40) + chrono::Duration::hours(1))
        );
        // Old ones do not count.
        assert_eq!(two_an_hour.next_slot(&[at(10), at(70)], now), None);
        // Already delayed ones (in the future) count: the slots space out.
        let future = now + chrono::Duration::minutes(20);
        assert_eq!(
            two_an_hour.next_slot(&[future, at(5)], now),
            Some(at(5) + chrono::Duration::hours(1))
        );
    }

    #[test]
    fn bad_limits_are_refused() {
        let bad = |max, per: &str| {
            RateLimit::try_from(RateLimitConfig {
                max,
                per: per.into(),
                scope: RateScope::Recipient,
            })
            .unwrap_err()
        };
        assert!(bad(0, "PT1H").contains("max"));
        assert!(bad(1, "soon").contains("per"));
    }
}

/// A digest: the rule's messages to a recipient within a window (aligned to multiples of
/// `every` since the Unix epoch, so hourly digests go at the full hour) go out as one, at the
/// window's end, rendered with `template_family` from `{recipientName, count, items}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    pub every: String,
    pub template_family: String,
}

impl DigestConfig {
    pub fn period(&self) -> Result<Duration, String> {
        let period = parse_duration(&self.every).map_err(|e| format!("digest.every: {e}"))?;
        if period < Duration::from_secs(1) {
            return Err("digest.every: at least a second".into());
        }
        Ok(period)
    }
}

/// The window containing `at`: (start, end).
pub fn digest_window(period: Duration, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let step = period.as_millis().max(1) as i64;
    let start_ms = at.timestamp_millis().div_euclid(step) * step;
    let start = DateTime::from_timestamp_millis(start_ms).unwrap_or(at);
    (start, start + chrono::Duration::milliseconds(step))
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn windows_align_to_the_period() {
        let at: DateTime<Utc> = "2026-11-26T12:34:56Z".parse().unwrap();
        let (start, end) = digest_window(Duration::from_secs(3600), at);
        assert_eq!(
            start,
            "2026-11-26T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            end,
            "2026-11-26T13:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let (start, _) = digest_window(Duration::from_secs(86_400), at);
        assert_eq!(
            start,
            "2026-11-26T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}

/// Group aggregation of alerts: alerts of a rule with the same root cause (the event field
/// `by`) to a recipient: the first of each window goes out at once, the others are summed up in
/// one message at the window's end (rendered like a digest, from `{recipientName, count,
/// items}`). Email only; inbox notifications stay one per alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The event field that names the root cause, e.g. `data.failureCode`.
    pub by: String,
    pub every: String,
    pub template_family: String,
}

impl AggregateConfig {
    pub fn as_digest(&self) -> DigestConfig {
        DigestConfig {
            every: self.every.clone(),
            template_family: self.template_family.clone(),
        }
    }
}
