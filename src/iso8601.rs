//! Dates, times and durations as rule, topic and template files write them: ISO 8601
//! durations (`PT15M`) and TOML or RFC 3339 date-times.

use std::time::Duration;

/// `PT15M`, `PT1H30M`, `PT45S`, `P1D`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("'{text}' is not an ISO 8601 duration like PT15M");
    let rest = text.strip_prefix('P').ok_or_else(err)?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut seconds = 0u64;
    if !days.is_empty() {
        seconds += days
            .strip_suffix('D')
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(err)?
            * 86_400;
    }
    let mut number = String::new();
    for c in time.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| err())?;
        number.clear();
        seconds += match c {
            'H' => n * 3600,
            'M' => n * 60,
            'S' => n,
            _ => return Err(err()),
        };
    }
    if !number.is_empty() || (days.is_empty() && time.is_empty()) {
        return Err(err());
    }
    Ok(Duration::from_secs(seconds))
}

/// A date and time in a rule, topic or template file: a TOML date-time (`2026-11-01T00:00:00Z`)
/// or a string holding one in RFC 3339.
pub mod toml_datetime {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Toml(toml::value::Datetime),
        Text(String),
    }

    fn parse<E: serde::de::Error>(written: Written) -> Result<DateTime<Utc>, E> {
        let text = match written {
            Written::Toml(datetime) => datetime.to_string(),
            Written::Text(text) => text,
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| {
                E::custom(format!(
                    "'{text}' is not an RFC 3339 date and time with an offset: {e}"
                ))
            })
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        parse(Written::deserialize(d)?)
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<Written>::deserialize(d)?.map(parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("PT15M").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("PT1H30M").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("P1DT2S").unwrap(),
            Duration::from_secs(86_402)
        );
        for bad in ["15M", "PT", "PT5", "PTXM", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
