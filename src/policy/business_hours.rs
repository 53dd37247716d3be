//! Business hours: a topic may deliver only within them (e.g. reminders to approvers, Monday to
//! Friday 08:00–18:00 Europe/Berlin). A notice due outside them is delayed to the next opening,
//! never dropped.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use super::preferences::local_instant;

/// As written in a topic file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// `HH:MM`, local time.
    pub start: String,
    pub end: String,
    /// `MON`, `TUE`, … (default Monday to Friday).
    #[serde(default = "weekdays")]
    pub days: Vec<String>,
    /// An IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
}

fn weekdays() -> Vec<String> {
    ["MON", "TUE", "WED", "THU", "FRI"]
        .map(String::from)
        .to_vec()
}

/// Checked business hours.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "BusinessHoursConfig")]
pub struct BusinessHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub days: BTreeSet<u32>,
    pub timezone: Tz,
}

impl TryFrom<BusinessHoursConfig> for BusinessHours {
    type Error = String;
    fn try_from(config: BusinessHoursConfig) -> Result<Self, Self::Error> {
        let time = |field: &str, value: &str| {
            NaiveTime::parse_from_str(value, "%H:%M")
                .map_err(|_| format!("business_hours.{field}: '{value}' is not HH:MM"))
        };
        let (start, end) = (time("start", &config.start)?, time("end", &config.end)?);
        if start >= end {
            return Err("business_hours: start must be before end (same day)".into());
        }
        let mut days = BTreeSet::new();
        for day in &config.days {
            let weekday: Weekday = day
                .parse()
                .map_err(|_| format!("business_hours.days: '{day}' is not a day (MON … SUN)"))?;
            days.insert(weekday.num_days_from_monday());
        }
        if days.is_empty() {
            return Err("business_hours.days: at least one day".into());
        }
        let timezone = config.timezone.parse::<Tz>().map_err(|_| {
            format!(
                "business_hours.timezone: '{}' is not an IANA time zone",
                config.timezone
            )
        })?;
        Ok(BusinessHours {
            start,
            end,
            days,
            timezone,
        })
    }
}

impl BusinessHours {
    /// The next opening after `at`, or None when `at` is within business hours.
    pub fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.timezone);
        let open_day = |weekday: Weekday| self.days.contains(&weekday.num_days_from_monday());
        if open_day(local.weekday()) && local.time() >= self.start && local.time() < self.end {
            return None;
        }
        let mut date = local.date_naive();
        for _ in 0..8 {
            if open_day(date.weekday()) {
                let opening = local_instant(self.timezone, date.and_time(self.start));
                if let Some(opening) = opening.filter(|o| *o > at) {
                    return Some(opening);
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin_office() -> BusinessHours {
        BusinessHoursConfig {
            start: "08:00".into(),
            end: "18:00".into(),
            days: weekdays(),
            timezone: "Europe/Berlin".into(),
        }
        .try_into()
        .unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn within_hours_nothing_waits_outside_the_next_opening_is_found() {
        let hours = berlin_office();
        // Thursday 2026-11-26, 10:00 Berlin (09:00 UTC): open.
        assert_eq!(hours.next_open(utc("2026-11-26T09:00:00Z")), None);
        // Thursday 19:30 Berlin: Friday 08:00 Berlin = 07:00 UTC.
        assert_eq!(
            hours.next_open(utc("2026-11-26T18:30:00Z")),
            Some(utc("2026-11-27T07:00:00Z"))
        );
        // Friday 18:00 Berlin is closed: Monday 08:00.
        assert_eq!(
            hours.next_open(utc("2026-11-27T17:00:00Z")),
            Some(utc("2026-11-30T07:00:00Z"))
        );
        // Early Monday: the same day.
        assert_eq!(
            hours.next_open(utc("2026-11-30T05:00:00Z")),
            Some(utc("2026-11-30T07:00:00Z"))
        );
        // Across the switch to summer time (Sunday 2027-03-28): Monday 08:00 CEST = 06:00 UTC.
        assert_eq!(
            hours.next_open(utc("2027-03-27T12:00:00Z")),
            Some(utc("2027-03-29T06:00:00Z"))
        );
    }

    #[test]
    fn bad_business_hours_are_refused_with_the_field() {
        let config = |start: &str, end: &str, days: &[&str], tz: &str| BusinessHoursConfig {
            start: start.into(),
            end: end.into(),
            days: days.iter().map(|d| d.to_string()).collect(),
            timezone: tz.into(),
        };
        let err = |c| BusinessHours::try_from(c).unwrap_err();
        assert!(err(config("8am", "18:00", &["MON"], "UTC")).contains("business_hours.start"));
        assert!(err(config("18:00", "08:00", &["MON"], "UTC")).contains("before end"));
        assert!(err(config("08:00", "18:00", &["MONDAYISH"], "UTC")).contains("days"));
        assert!(err(config("08:00", "18:00", &[], "UTC")).contains("days"));
        assert!(err(config("08:00", "18:00", &["MON"], "Mars/Base")).contains("timezone"));
    }
}
