//! Failure classes and the retry schedule: every "should we try again?" is decided here.

use std::time::Duration;

use std::collections::HashMap;

use rand::Rng;

use crate::config::{ConfigError, DeliverySettings};
use crate::ledger::{CommunicationType, Criticality};

pub use crate::ledger::FailureClass;

/// What went wrong on an SMTP exchange, as far as classification cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpFailure {
    /// The server answered with this reply code.
    Reply(u16),
    Timeout,
    /// Connection refused, reset or closed, DNS failure.
    Connection,
    Tls,
    /// The server's answer could not be parsed, or the client refused the message.
    Protocol,
}

/// SMTP failure → class. 4xx is transient, 5xx permanent, with the recipient cases told apart.
pub fn classify_smtp(failure: SmtpFailure) -> FailureClass {
    match failure {
        SmtpFailure::Reply(421) => FailureClass::RateLimited,
        SmtpFailure::Reply(400..=499) => FailureClass::TemporaryRejection,
        SmtpFailure::Reply(550 | 551 | 553 | 501) => FailureClass::InvalidRecipient,
        SmtpFailure::Reply(_) => FailureClass::PermanentRejection,
        SmtpFailure::Timeout => FailureClass::Timeout,
        SmtpFailure::Connection => FailureClass::ProviderUnavailable,
        // A broken TLS set-up or a garbled answer is the provider's or the network's problem
        // as often as ours: retried on the schedule, never a silent final failure.
        SmtpFailure::Tls | SmtpFailure::Protocol => FailureClass::ProviderUnavailable,
    }
}

/// HTTP status of a webhook endpoint → class: 2xx is no failure; 408, 5xx and 429 are worth
/// another try; 410 Gone disables the endpoint; any other answer (3xx, 4xx) is permanent.
pub fn classify_http(status: u16) -> Option<FailureClass> {
    match status {
        200..=299 => None,
        429 => Some(FailureClass::RateLimited),
        408 | 500..=599 => Some(FailureClass::ProviderUnavailable),
        410 => Some(FailureClass::EndpointDisabled),
        _ => Some(FailureClass::PermanentRejection),
    }
}

/// A `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - now).to_std().ok()
}

/// The delays before each attempt: the first is the first attempt's (normally zero), then one per
/// retry. Attempts beyond the schedule are not made: the communication fails for good.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    pub delays: Vec<Duration>,
    /// Spread each delay by ± this fraction so that a burst of failures does not retry in step.
    pub jitter: f64,
    /// The longest a provider's Retry-After is honoured.
    pub max_retry_after: Duration,
}

impl Default for RetrySchedule {
    /// now, +1 min, +5 min, +30 min, +2 h, then final.
    fn default() -> Self {
        RetrySchedule {
            delays: [0, 60, 300, 1800, 7200]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: 0.1,
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl RetrySchedule {
    /// After attempt `attempt_no` (1-based) failed with `class`: the wait before the next
    /// attempt, or None when the communication fails for good.
    pub fn next_delay(
        &self,
        attempt_no: i32,
        class: FailureClass,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if !class.is_retryable() {
            return None;
        }
        let base = *self.delays.get(attempt_no.max(0) as usize)?;
        let spread = if self.jitter > 0.0 && !base.is_zero() {
            let factor = rand::thread_rng().gen_range((1.0 - self.jitter)..=(1.0 + self.jitter));
            base.mul_f64(factor)
        } else {
            base
        };
        let asked = retry_after
            .map(|d| d.min(self.max_retry_after))
            .unwrap_or_default();
        Some(spread.max(asked))
    }

    pub fn max_attempts(&self) -> usize {
        self.delays.len()
    }
}

/// The retry schedules as data: one per communication type or criticality where configured
/// (`delivery.schedules`), else the default. A type's own schedule wins over its criticality's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RetryPolicy {
    pub default: RetrySchedule,
    pub by_type: HashMap<CommunicationType, RetrySchedule>,
    pub by_criticality: HashMap<Criticality, RetrySchedule>,
}

impl RetryPolicy {
    /// The default schedule (`delivery.retry_schedule`) and those of `delivery.schedules`, with
    /// the settings' jitter and Retry-After cap.
    pub fn from_settings(settings: &DeliverySettings) -> Result<RetryPolicy, ConfigError> {
        let schedule = |delays: &[Duration]| RetrySchedule {
            delays: delays.to_vec(),
            jitter: settings.jitter,
            max_retry_after: settings.max_retry_after,
        };
        let mut policy = RetryPolicy {
            default: schedule(&settings.retry_schedule),
            ..RetryPolicy::default()
        };
        for (key, delays) in &settings.schedules {
            if delays.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "delivery.schedules.{key}: at least one delay, none negative"
                )));
            }
            // Keys from the environment arrive in lower case.
            match key
                .to_ascii_uppercase()
                .parse::<ScheduleKey>()
                .map_err(|e| ConfigError::Invalid(format!("delivery.schedules.{key}: {e}")))?
            {
                ScheduleKey::Type(kind) => {
                    policy.by_type.insert(kind, schedule(delays));
                }
                ScheduleKey::Criticality(level) => {
                    policy.by_criticality.insert(level, schedule(delays));
                }
            }
        }
        Ok(policy)
    }

    pub fn for_type(&self, kind: Option<CommunicationType>) -> &RetrySchedule {
        kind.and_then(|k| {
            self.by_type
                .get(&k)
                .or_else(|| self.by_criticality.get(&k.criticality()))
        })
        .unwrap_or(&self.default)
    }
}

/// The key of a schedule in `delivery.schedules`: a communication type (`EXTERNAL_WEBHOOK`) or a
/// criticality (`VERY_HIGH`, `HIGH`, `MEDIUM`, `LOW`).
pub enum ScheduleKey {
    Type(CommunicationType),
    Criticality(Criticality),
}

impl std::str::FromStr for ScheduleKey {
    type Err = String;
    fn from_str(key: &str) -> Result<Self, Self::Err> {
        match key {
            "VERY_HIGH" => Ok(ScheduleKey::Criticality(Criticality::VeryHigh)),
            "HIGH" => Ok(ScheduleKey::Criticality(Criticality::High)),
            "MEDIUM" => Ok(ScheduleKey::Criticality(Criticality::Medium)),
            "LOW" => Ok(ScheduleKey::Criticality(Criticality::Low)),
            other => other.parse().map(ScheduleKey::Type).map_err(|_| {
                format!("'{other}' is neither a communication type nor a criticality (VERY_HIGH, HIGH, MEDIUM, LOW)")
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_replies_are_classified() {
        assert_eq!(
            classify_smtp(SmtpFailure::Reply(451)),
            FailureClass::TemporaryRejection
        );
        assert_eq!(
            classify_smtp(SmtpFailure::Reply(452)),
            FailureClass::TemporaryRejection
        );
        assert_eq!(
            classify_smtp(SmtpFailure::Reply(421)),
            FailureClass::RateLimited
        );
        assert_eq!(
            classify_smtp(SmtpFailure::Reply(550)),
            FailureClass::InvalidRecipient
        );
        assert_eq!(
            classify_smtp(SmtpFailure::Reply(553)),
            FailureClass::InvalidRecipient
        );
        assert_eq!(
            classify_smtp(SmtpFailure::Reply(554)),
            FailureClass::PermanentRejection
        );
        assert_eq!(classify_smtp(SmtpFailure::Timeout), FailureClass::Timeout);
        assert_eq!(
            classify_smtp(SmtpFailure::Connection),
            FailureClass::ProviderUnavailable
        );
        assert_eq!(
            classify_smtp(SmtpFailure::Tls),
            FailureClass::ProviderUnavailable
        );
        assert!(classify_smtp(SmtpFailure::Reply(451)).is_retryable());
        assert!(classify_smtp(SmtpFailure::Connection).is_retryable());
        assert!(!classify_smtp(SmtpFailure::Reply(550)).is_retryable());
    }

    #[test]
    fn http_answers_are_classified_and_retry_after_read() {
        assert_eq!(classify_http(204), None);
        assert_eq!(classify_http(500), Some(FailureClass::ProviderUnavailable));
        assert_eq!(classify_http(503), Some(FailureClass::ProviderUnavailable));
        assert_eq!(classify_http(408), Some(FailureClass::ProviderUnavailable));
        assert_eq!(classify_http(429), Some(FailureClass::RateLimited));
        assert_eq!(classify_http(400), Some(FailureClass::PermanentRejection));
        assert_eq!(classify_http(301), Some(FailureClass::PermanentRejection));
        assert_eq!(classify_http(410), Some(FailureClass::EndpointDisabled));
        assert!(!FailureClass::PermanentRejection.is_retryable());
        assert!(!FailureClass::EndpointDisabled.is_retryable());
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 26 Nov 2026 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn default_schedule_is_now_1m_5m_30m_2h_then_final() {
        let s = RetrySchedule {
            jitter: 0.0,
            ..RetrySchedule::default()
        };
        let c = FailureClass::TemporaryRejection;
        assert_eq!(s.next_delay(1, c, None), Some(Duration::from_secs(60)));
        assert_eq!(s.next_delay(2, c, None), Some(Duration::from_secs(300)));
        assert_eq!(s.next_delay(3, c, None), Some(Duration::from_secs(1800)));
        assert_eq!(s.next_delay(4, c, None), Some(Duration::from_secs(7200)));
        assert_eq!(s.next_delay(5, c, None), None);
        assert_eq!(s.next_delay(1, FailureClass::InvalidRecipient, None), None);
    }

    #[test]
    fn a_type_s_schedule_wins_over_its_criticality_s_and_the_default() {
        let schedule = |secs: &[u64]| RetrySchedule {
            delays: secs.iter().map(|s| Duration::from_secs(*s)).collect(),
            jitter: 0.0,
            ..RetrySchedule::default()
        };
        let policy = RetryPolicy {
            default: schedule(&[0, 60]),
            by_type: HashMap::from([(CommunicationType::ExternalWebhook, schedule(&[0, 1, 2, 3]))]),
            by_criticality: HashMap::from([(Criticality::High, schedule(&[0, 10]))]),
        };
        assert_eq!(
            policy
                .for_type(Some(CommunicationType::ExternalWebhook))
                .max_attempts(),
            4
        );
        assert_eq!(
            policy
                .for_type(Some(CommunicationType::FalloutAlert))
                .delays[1],
            Duration::from_secs(10)
        );
        assert_eq!(
            policy
                .for_type(Some(CommunicationType::InternalDigest))
                .delays[1],
            Duration::from_secs(60)
        );
        assert_eq!(policy.for_type(None).delays[1], Duration::from_secs(60));
        assert!("HIGH".parse::<ScheduleKey>().is_ok());
        assert!("SLA_ESCALATION".parse::<ScheduleKey>().is_ok());
        assert!("URGENT".parse::<ScheduleKey>().is_err());
    }

    #[test]
    fn retry_schedules_per_type_and_criticality_come_from_the_file() {
        use crate::config::Settings;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "[delivery.schedules]\nEXTERNAL_WEBHOOK = [0, 1, 2, 3, 4, 5, 6]\nlow = [\"0s\", \"10m\"]\n",
        )
        .unwrap();
        let settings = Settings::load_from(Some(&file), []).unwrap();
        let policy = RetryPolicy::from_settings(&settings.delivery).unwrap();
        let webhook = policy.for_type(Some(CommunicationType::ExternalWebhook));
        assert_eq!(webhook.max_attempts(), 7);
        let digest = policy.for_type(Some(CommunicationType::InternalDigest));
        assert_eq!(digest.delays, [Duration::ZERO, Duration::from_secs(600)]);
        assert_eq!(
            policy.for_type(Some(CommunicationType::OrderConfirmation)),
            &policy.default
        );
        assert_eq!(policy.default, RetrySchedule::default());

        std::fs::write(&file, "[delivery.schedules]\nURGENT = [0, 1]\n").unwrap();
        let settings = Settings::load_from(Some(&file), []).unwrap();
        let err = RetryPolicy::from_settings(&settings.delivery).unwrap_err();
        assert!(
            err.to_string().contains("delivery.schedules.URGENT"),
            "{err}"
        );

        std::fs::write(&file, "[delivery.schedules]\nLOW = [0, -1]\n").unwrap();
        assert!(Settings::load_from(Some(&file), []).is_err());
    }

    #[test]
    fn jitter_stays_within_bounds_and_retry_after_is_clamped() {
        let s = RetrySchedule::default();
        for _ in 0..200 {
            let d = s.next_delay(1, FailureClass::Timeout, None).unwrap();
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
        let d = s
            .next_delay(
                1,
                FailureClass::RateLimited,
                Some(Duration::from_secs(86_400)),
            )
            .unwrap();
        assert_eq!(d, Duration::from_secs(3600));
    }
}
