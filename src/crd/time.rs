//! Timestamps and durations as they appear in the API.
//!
//! Status times carry milliseconds (Kubernetes' own `Time` rounds to seconds, too coarse to
//! measure the operator's overhead between phases); spec durations are Go-style strings
//! (`90s`, `5m`, `1h30m`) like every other Kubernetes duration a platform engineer writes.

use std::{borrow::Cow, fmt, str::FromStr};

use jiff::SignedDuration;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `JsonSchema` for a type serialized as one string: its schema inline, named `$name`.
macro_rules! string_schema {
    ($ty:ty, $name:literal, $schema:tt) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

/// An instant, serialized as RFC 3339 in UTC with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub jiff::Timestamp);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(jiff::Timestamp::from_millisecond(ms).expect("timestamp in range"))
    }

    pub fn as_millis(&self) -> i64 {
        self.0.as_millisecond()
    }

    /// `self - earlier`, saturating at zero so a clock step never yields a negative wait.
    pub fn since(&self, earlier: Timestamp) -> std::time::Duration {
        let ms = self.as_millis() - earlier.as_millis();
        std::time::Duration::from_millis(ms.max(0) as u64)
    }

    pub fn plus(&self, d: std::time::Duration) -> Timestamp {
        let sd = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
        Timestamp(
            self.0
                .saturating_add(sd)
                .expect("saturating add of a duration"),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<jiff::Timestamp>()
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

string_schema!(Timestamp, "Timestamp", { "type": "string", "format": "date-time" });

/// The pattern the CRD schema enforces on every duration field: one to four parts, each at
/// most 999h, 99999m, 999999s or 999999999ms (plus a fraction), so that the largest value it
/// admits (4 x 99999.9m, about 278 days) stays within what `GoDuration::from_str` accepts
/// (366 days). The API server refuses anything longer at apply time instead of storing a plan
/// the operator cannot read.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,3}(\.[0-9]+)?h|[0-9]{1,5}(\.[0-9]+)?m|[0-9]{1,6}(\.[0-9]+)?s|[0-9]{1,9}(\.[0-9]+)?ms){1,4}$";

/// A Go-style duration (`500ms`, `90s`, `5m`, `1h30m`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    text: String,
    value: std::time::Duration,
}

impl GoDuration {
    pub fn as_std(&self) -> std::time::Duration {
        self.value
    }

    pub fn is_zero(&self) -> bool {
        self.value.is_zero()
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration: write it like 90s, 5m or 1h30m (units ms, s, m, h)")]
pub struct DurationError(pub String);

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(s.to_string());
        if s.is_empty() {
            return Err(err());
        }
        let mut total_ms: f64 = 0.0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(err)?;
            if num_len == 0 {
                return Err(err());
            }
            let number: f64 = rest[..num_len].parse().map_err(|_| err())?;
            rest = &rest[num_len..];
            let (unit_ms, unit_len) = if rest.starts_with("ms") {
                (1.0, 2)
            } else if rest.starts_with('s') {
                (1_000.0, 1)
            } else if rest.starts_with('m') {
                (60_000.0, 1)
            } else if rest.starts_with('h') {
                (3_600_000.0, 1)
            } else {
                return Err(err());
            };
            rest = &rest[unit_len..];
            total_ms += number * unit_ms;
        }
        // A year is far beyond any upgrade step; larger values are typos, not intent.
        if !total_ms.is_finite() || total_ms > 366.0 * 24.0 * 3_600_000.0 {
            return Err(err());
        }
        Ok(GoDuration {
            text: s.to_string(),
            value: std::time::Duration::from_millis(total_ms.round() as u64),
        })
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

string_schema!(GoDuration, "Duration", { "type": "string", "pattern": DURATION_PATTERN });

/// A duration literal for defaults and tests; panics on a malformed literal.
pub fn dur(s: &str) -> GoDuration {
    s.parse().expect("valid duration literal")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("90s", Duration::from_secs(90)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(dur(text).as_std(), want, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in ["", "5", "m", "5d", "-5s", "5 m", "1h30", "9999999h"] {
            assert!(
                text.parse::<GoDuration>().is_err(),
                "{text} should be rejected"
            );
        }
    }

    /// What the schema's pattern admits at its largest parses (else the API server would
    /// store a plan the operator cannot decode).
    #[test]
    fn the_largest_durations_the_schema_admits_parse() {
        for text in [
            "999.999999h999.999999h999.999999h999.999999h",
            "99999.9999m99999.9999m99999.9999m99999.9999m",
            "999999.999s999999.999s999999.999s999999.999s",
            "999999999.9ms999999999.9ms999999999.9ms999999999.9ms",
            "999.9h99999.9m999999.9s999999999.9ms",
        ] {
            assert!(text.parse::<GoDuration>().is_ok(), "{text} should parse");
        }
        assert!(DURATION_PATTERN.ends_with("){1,4}$"), "at most four parts");
    }

    #[test]
    fn timestamp_roundtrips_with_millis() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, "\"2023-11-14T22:13:20.123Z\"");
        let back: Timestamp = serde_json::from_str(&s).unwrap();
        assert_eq!(back, t);
        assert_eq!(
            t.plus(Duration::from_secs(2)).since(t),
            Duration::from_secs(2)
        );
        assert_eq!(t.since(t.plus(Duration::from_secs(2))), Duration::ZERO);
    }
}
