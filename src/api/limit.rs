//! The per-credential request rate: a token bucket per API key or JWT subject (governor's GCRA),
//! so that one integrator cannot starve the others. Over the rate: 429 with `Retry-After`.

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub use crate::config::RateLimitSettings;

use super::auth::Credential;
use super::problem::{ApiError, ProblemKind};

#[derive(Clone)]
pub struct Limits {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl Limits {
    pub fn new(settings: RateLimitSettings) -> Limits {
        let quota = Quota::per_second(settings.per_second).allow_burst(settings.burst);
        Limits {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of the credential; 429 when it is over its rate.
    pub fn check(&self, credential: &Credential) -> Result<(), ApiError> {
        let key = credential.limit_key();
        match self.limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let seconds = seconds.max(1);
                Err(ApiError::new(
                    ProblemKind::RateLimited,
                    format!("this credential is over its request rate; retry in {seconds} s"),
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(seconds)))
            }
        }
    }

    /// Forgets credentials that are back to a full bucket (called now and then).
    pub fn tidy(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn a_credential_over_its_burst_is_told_when_to_retry_and_others_go_on() {
        let limits = Limits::new(RateLimitSettings {
            per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
        });
        let busy = Credential::ApiKey(uuid::Uuid::now_v7());
        let other = Credential::Jwt {
            subject: "crm".into(),
        };
        for _ in 0..3 {
            limits.check(&busy).unwrap();
        }
        let refused = limits.check(&busy).unwrap_err();
        assert_eq!(refused.kind, ProblemKind::RateLimited);
        let retry = refused
            .headers
            .iter()
            .find(|(name, _)| name == header::RETRY_AFTER)
            .map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(retry.as_deref(), Some("1"));
        limits.check(&other).unwrap();
    }
}
