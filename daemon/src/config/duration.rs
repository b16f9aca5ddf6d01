//! Durations in the config file: `500ms`, `30s`, `10m`, `1h`, `2d`, or a number of seconds.

use std::time::Duration;

use serde::Deserialize;

/// A duration read from the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval(pub Duration);

/// Reads `500ms`, `30s`, `10m`, `1h`, `2d` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 10m, 1h"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{text:?} is not a duration"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is too long a duration"))
}

impl std::fmt::Display for Interval {
    /// The largest unit that shows it exactly: `2d`, `1h`, `30m`, `45s`, `500ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms / size * size == ms {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        if Duration::from_millis(self.0.as_millis() as u64) == self.0 {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", self.0.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, so that the error is raised while the YAML reader is at the value and
        // carries its key (`intervals.stock: …`).
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Interval;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like 500ms, 30s, 10m, 1h, or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Interval, E> {
                parse_duration(s).map(Interval).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Interval, E> {
                Ok(Interval(Duration::from_secs(n)))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Interval, E> {
                u64::try_from(n)
                    .map(|n| Interval(Duration::from_secs(n)))
                    .map_err(|_| E::custom(format!("{n} is not a duration (negative)")))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Interval, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        // Too large for a Duration: an error, not a panic.
        assert!(parse_duration("99999999999999999999999d").is_err());
    }

    #[test]
    fn shown_in_the_largest_exact_unit() {
        let show = |d: Duration| Interval(d).to_string();
        assert_eq!(show(Duration::from_secs(3600)), "1h");
        assert_eq!(show(Duration::from_secs(1800)), "30m");
        assert_eq!(show(Duration::from_secs(90)), "90s");
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show(Duration::from_secs(2 * 86400)), "2d");
        assert_eq!(show(Duration::ZERO), "0s");
    }
}
