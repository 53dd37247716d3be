//! Lists of delays as the settings write them: durations with their unit (`"90s"`), or numbers
//! of seconds (the older form, fractions allowed).

use std::time::Duration;

use serde::Deserialize;

/// One delay of a list: a duration with its unit (`"90s"`), or a number of seconds (the older
/// form of the lists, fractions allowed).
struct Delay(Duration);

impl<'de> Deserialize<'de> for Delay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Delay, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Delay;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"5m\", or zero or more seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Delay, E> {
                humantime::parse_duration(v.trim())
                    .map(Delay)
                    .map_err(|e| E::custom(format!("{v:?}: {e}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Delay, E> {
                Ok(Delay(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Delay, E> {
                u64::try_from(v)
                    .map(|v| Delay(Duration::from_secs(v)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Delay, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(Delay(Duration::from_secs_f64(v)))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A list of delays (`delivery.retry_schedule`).
pub(super) mod delay_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Delay;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<Delay>::deserialize(d)?
            .into_iter()
            .map(|d| d.0)
            .collect())
    }

    pub fn serialize<S: Serializer>(delays: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            delays
                .iter()
                .map(|d| humantime::format_duration(*d).to_string()),
        )
    }
}

/// Named lists of delays (`delivery.schedules`).
pub(super) mod delay_lists {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Delay;

    type Lists = BTreeMap<String, Vec<Duration>>;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Lists, D::Error> {
        Ok(BTreeMap::<String, Vec<Delay>>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|d| d.0).collect()))
            .collect())
    }

    pub fn serialize<S: Serializer>(lists: &Lists, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(lists.iter().map(|(k, v)| {
            let texts: Vec<String> = v
                .iter()
                .map(|d| humantime::format_duration(*d).to_string())
                .collect();
            (k, texts)
        }))
    }
}
