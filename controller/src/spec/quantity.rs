//! Quantities written as strings in specs: durations (`500ms`, `1h30m`) and memory sizes (`128Mi`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The forms a duration may take, for error messages and the schema description.
pub const DURATION_FORMS: &str = "a duration like `500ms`, `3s`, `1m`, `1h30m` (an integer followed by a unit: ns, us, ms, s, m, h; units may be chained as in `1h30m`; or `0`)";

/// The forms a memory size may take, for error messages and the schema description.
pub const MEMORY_FORMS: &str = "a memory size like `1024`, `512M`, `1G`, `128Mi`, `1Gi` (a non-negative integer of bytes, optionally followed by one of k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024))";

/// Regex (JSON Schema `pattern`) accepted by [`DurationStr`].
const DURATION_PATTERN: &str = r"^(0|([0-9]+(h|m|s|ms|us|µs|ns))+)$";

/// Regex (JSON Schema `pattern`) accepted by [`MemoryQuantity`] when written as a string.
const MEMORY_PATTERN: &str = r"^[0-9]+(k|Ki|M|Mi|G|Gi|T|Ti)?$";

/// Why a duration or memory string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is not a duration in the accepted grammar.
    #[error("invalid duration `{input}`: expected {DURATION_FORMS}")]
    Duration { input: String },
    /// The duration is syntactically fine but does not fit in 64-bit nanoseconds.
    #[error("duration `{input}` is too large (at most about 292 years)")]
    DurationOverflow { input: String },
    /// The text is not a memory size in the accepted grammar.
    #[error("invalid memory size `{input}`: expected {MEMORY_FORMS}")]
    Memory { input: String },
    /// The memory size does not fit in 64 bits of bytes.
    #[error("memory size `{input}` is too large (at most 2^64-1 bytes)")]
    MemoryOverflow { input: String },
}

/// A duration written as a string such as `500ms`, `3s`, `1m` or `1h30m` (Go/Docker style).
///
/// Serializes back to the same compact form (`1h30m`, not `1h 30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationStr(pub Duration);

impl DurationStr {
    pub fn as_duration(&self) -> Duration {
        self.0
    }

    /// Nanoseconds as Docker's API wants them, saturating at `i64::MAX`.
    pub fn as_nanos_i64(&self) -> i64 {
        i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX)
    }
}

impl From<Duration> for DurationStr {
    fn from(d: Duration) -> Self {
        DurationStr(d)
    }
}

impl FromStr for DurationStr {
    type Err = QuantityError;

    /// A spec's duration: [`parse_duration`]'s grammar with whole numbers only, so that what
    /// a spec says is exactly what it means (no rounding of `0.1ns`).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.contains('.') {
            return Err(QuantityError::Duration {
                input: input.to_owned(),
            });
        }
        parse_duration(input).map(DurationStr)
    }
}

/// The crate's one duration parser: Go's `time.ParseDuration`, which Docker, compose files and
/// swarm-cronjob read: a sequence of numbers, each with an optional fraction and a unit (`ns`,
/// `us`/`µs`, `ms`, `s`, `m`, `h`), as in `1h30m`, `1.5s`, `300ms`; or `0`. No sign, no spaces,
/// no days. Fractions are truncated to the nanosecond, as Go does; the total must fit in Go's
/// 64-bit nanoseconds.
pub fn parse_duration(input: &str) -> Result<Duration, QuantityError> {
    let bad = || QuantityError::Duration {
        input: input.to_owned(),
    };
    let overflow = || QuantityError::DurationOverflow {
        input: input.to_owned(),
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(bad());
    }
    let mut rest = input;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole = &rest[..whole_len];
        rest = &rest[whole_len..];
        let fraction = match rest.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                rest = &after[len..];
                &after[..len]
            }
            None => "",
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let nanos_per_unit: u128 = match &rest[..unit_len] {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        // Digits beyond the nanosecond change nothing: 19 keep the arithmetic in range.
        let fraction = &fraction[..fraction.len().min(19)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| bad())?;
            digits * nanos_per_unit / 10u128.pow(fraction.len() as u32)
        };
        total = whole
            .checked_mul(nanos_per_unit)
            .and_then(|n| n.checked_add(fraction_nanos))
            .and_then(|n| total.checked_add(n))
            .ok_or_else(overflow)?;
    }
    if total > i64::MAX as u128 {
        return Err(overflow());
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

impl fmt::Display for DurationStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("h", 3_600_000_000_000u128),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ] {
            if nanos >= size {
                write!(f, "{}{unit}", nanos / size)?;
                nanos %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for DurationStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = DurationStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_FORMS)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationStr, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationStr, E> {
                // A bare number is ambiguous (seconds? nanoseconds?); only 0 is unambiguous.
                if v == 0 {
                    Ok(DurationStr(Duration::ZERO))
                } else {
                    Err(E::custom(format!(
                        "invalid duration `{v}`: a unit is required; expected {DURATION_FORMS}"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationStr, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: expected {DURATION_FORMS}"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationStr, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: expected {DURATION_FORMS}"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for DurationStr {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": format!("Duration: {DURATION_FORMS}."),
            "examples": ["500ms", "3s", "1m", "1h30m"],
        })
    }
}

/// A memory size in bytes, written as `1024`, `512M`, `1G`, `128Mi` or `1Gi`
/// (Kubernetes semantics: `M` = 10^6, `Mi` = 2^20).
///
/// Serializes to a canonical string: the largest unit that divides it exactly, else plain bytes
/// (`134217728` becomes `128Mi`, `512000000` stays `512M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MemoryQuantity(pub u64);

impl MemoryQuantity {
    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        self.0
    }
}

const MEMORY_UNITS: [(&str, u64); 8] = [
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("k", 1_000),
];

impl FromStr for MemoryQuantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let digits = input.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(QuantityError::Memory {
                input: input.to_owned(),
            });
        }
        let overflow = || QuantityError::MemoryOverflow {
            input: input.to_owned(),
        };
        let number: u64 = input[..digits].parse().map_err(|_| overflow())?;
        let suffix = &input[digits..];
        let factor = if suffix.is_empty() {
            1
        } else {
            MEMORY_UNITS
                .iter()
                .find(|(unit, _)| *unit == suffix)
                .map(|(_, f)| *f)
                .ok_or_else(|| QuantityError::Memory {
                    input: input.to_owned(),
                })?
        };
        number
            .checked_mul(factor)
            .map(MemoryQuantity)
            .ok_or_else(overflow)
    }
}

impl fmt::Display for MemoryQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The largest unit that divides exactly: `512M`, not `500000Ki`.
        let unit = MEMORY_UNITS
            .iter()
            .filter(|(_, factor)| self.0 != 0 && self.0.is_multiple_of(*factor))
            .max_by_key(|(_, factor)| *factor);
        match unit {
            Some((unit, factor)) => write!(f, "{}{unit}", self.0 / factor),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for MemoryQuantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MemoryQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = MemoryQuantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(MEMORY_FORMS)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MemoryQuantity, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MemoryQuantity, E> {
                Ok(MemoryQuantity(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MemoryQuantity, E> {
                u64::try_from(v).map(MemoryQuantity).map_err(|_| {
                    E::custom(format!(
                        "invalid memory size `{v}`: must not be negative; expected {MEMORY_FORMS}"
                    ))
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MemoryQuantity, E> {
                Err(E::custom(format!(
                    "invalid memory size `{v}`: expected {MEMORY_FORMS}"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for MemoryQuantity {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "MemoryQuantity".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                {"type": "string", "pattern": MEMORY_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": format!("Memory size: {MEMORY_FORMS}."),
            "examples": ["128Mi", "1Gi", "512M"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<DurationStr>().unwrap().as_duration()
    }

    #[test]
    fn durations_parse() {
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("3s"), Duration::from_secs(3));
        assert_eq!(d("1m"), Duration::from_secs(60));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1m30s500ms"), Duration::from_millis(90_500));
        assert_eq!(d("10us"), Duration::from_micros(10));
        assert_eq!(d("10µs"), Duration::from_micros(10));
        assert_eq!(d("7ns"), Duration::from_nanos(7));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(
            DurationStr(Duration::from_secs(3)).as_nanos_i64(),
            3_000_000_000
        );
    }

    #[test]
    fn bad_durations_name_the_allowed_forms() {
        for bad in [
            "", "3", "s", "3x", "1.5s", "-1s", "3 s", "1h 30m", "3S", "1d",
        ] {
            let err = bad.parse::<DurationStr>().unwrap_err();
            assert!(
                err.to_string().contains("expected a duration like `500ms`"),
                "{bad}: {err}"
            );
        }
        assert!(matches!(
            "99999999999h".parse::<DurationStr>(),
            Err(QuantityError::DurationOverflow { .. })
        ));
    }

    #[test]
    fn go_durations_take_fractions_and_refuse_what_go_refuses() {
        let go = |s: &str| parse_duration(s).ok();
        assert_eq!(go("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(go("1.5h30m"), Some(Duration::from_secs(7200)));
        assert_eq!(go("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(
            go("0.0000000019s"),
            Some(Duration::from_nanos(1)),
            "truncated"
        );
        assert_eq!(go("0"), Some(Duration::ZERO));
        for bad in ["10", "1d", "", ".s", "1 s", "-1s", "1..5s", "5min"] {
            assert_eq!(go(bad), None, "{bad}");
        }
        assert!(matches!(
            parse_duration("3000000h"),
            Err(QuantityError::DurationOverflow { .. })
        ));
    }

    #[test]
    fn durations_round_trip_compactly() {
        for s in ["500ms", "3s", "1m", "1h30m", "1h1m1s1ms1us1ns", "0s"] {
            let parsed: DurationStr = s.parse().unwrap();
            assert_eq!(parsed.to_string(), s);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            let back: DurationStr = serde_json::from_str(&json).unwrap();
            assert_eq!(back, parsed);
        }
        assert_eq!(DurationStr(Duration::from_secs(90)).to_string(), "1m30s");
    }

    #[test]
    fn memory_units_follow_kubernetes() {
        let m = |s: &str| s.parse::<MemoryQuantity>().unwrap().bytes();
        assert_eq!(m("1024"), 1024);
        assert_eq!(m("1k"), 1_000);
        assert_eq!(m("1Ki"), 1_024);
        assert_eq!(m("512M"), 512_000_000);
        assert_eq!(m("128Mi"), 128 << 20);
        assert_eq!(m("1G"), 1_000_000_000);
        assert_eq!(m("1Gi"), 1 << 30);
        assert_eq!(m("2T"), 2_000_000_000_000);
        assert_eq!(m("2Ti"), 2 << 40);
        assert_eq!(m("0"), 0);
    }

    #[test]
    fn bad_memory_names_the_allowed_forms() {
        for bad in ["", "Mi", "128MB", "1.5Gi", "-1", "128 Mi", "1K", "1mi"] {
            let err = bad.parse::<MemoryQuantity>().unwrap_err();
            assert!(
                err.to_string().contains("expected a memory size like"),
                "{bad}: {err}"
            );
        }
        assert!(matches!(
            "99999999999Ti".parse::<MemoryQuantity>(),
            Err(QuantityError::MemoryOverflow { .. })
        ));
    }

    #[test]
    fn memory_round_trips_canonically() {
        for (input, canonical) in [
            ("128Mi", "128Mi"),
            ("134217728", "128Mi"),
            ("512M", "512M"),
            ("1024", "1Ki"),
            ("1000", "1k"),
            ("1001", "1001"),
            ("0", "0"),
        ] {
            let q: MemoryQuantity = input.parse().unwrap();
            assert_eq!(q.to_string(), canonical, "{input}");
            let back: MemoryQuantity = canonical.parse().unwrap();
            assert_eq!(back, q);
            let json = serde_json::to_string(&q).unwrap();
            assert_eq!(serde_json::from_str::<MemoryQuantity>(&json).unwrap(), q);
        }
        // Plain integers are accepted as bytes.
        assert_eq!(
            serde_json::from_str::<MemoryQuantity>("2048").unwrap(),
            MemoryQuantity(2048)
        );
    }
}
