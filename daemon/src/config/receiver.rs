//! The `receiver:` section: limits of the webhook receiver and of the inbox, and who owns the
//! МойСклад webhook registrations (docs/runner.md, "Webhooks").
//!
//! ```yaml
//! receiver:
//!   header_timeout: 5s        # a request's headers must arrive within this (also the keep-alive idle time)
//!   body_timeout: 10s         # reading the body and answering must end within this (408 otherwise)
//!   max_connections: 1024     # open connections; past it the oldest idle one is closed, else the new one
//!   max_requests: 64          # requests handled at once; past it 503 at once (МойСклад retries)
//!   max_body: 1MiB            # larger bodies get 413 before they are read
//!   max_inbox: 100000         # queued items; past it new webhook work gets 503, polls wait
//!   take_over: false          # take over webhook registrations of another runner instance
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::Interval;

/// Limits of the webhook receiver and the inbox.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverConfig {
    /// The request line and headers must arrive within this; also how long an idle
    /// keep-alive connection is kept.
    pub header_timeout: Interval,
    /// Reading the body and answering must end within this, else 408.
    pub body_timeout: Interval,
    /// Open connections at most. A new connection past the cap closes the oldest connection
    /// that has no request in progress (a slow or idle one); when every connection is busy
    /// with a request, the new one is closed at once.
    pub max_connections: usize,
    /// Requests handled at once; more get 503 at once (МойСклад retries).
    pub max_requests: usize,
    /// Largest body accepted (bytes; `1MiB`, `512KiB`, `1000` also read).
    pub max_body: ByteSize,
    /// Inbox items at most. When the inbox is full, webhook work is refused with 503 and the
    /// polls keep their cursors (they find the changes again once there is room).
    pub max_inbox: usize,
    /// Take over the webhook registrations another runner instance made on this account
    /// (otherwise the runner refuses to start when it finds them).
    pub take_over: bool,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            header_timeout: Interval(Duration::from_secs(5)),
            body_timeout: Interval(Duration::from_secs(10)),
            max_connections: 1024,
            max_requests: 64,
            max_body: ByteSize(1024 * 1024),
            max_inbox: 100_000,
            take_over: false,
        }
    }
}

impl ReceiverConfig {
    /// Range checks, with the key's path in the message.
    pub fn check(&self) -> Result<(), String> {
        for (name, i) in [
            ("header_timeout", &self.header_timeout),
            ("body_timeout", &self.body_timeout),
        ] {
            if i.0.is_zero() {
                return Err(format!("receiver.{name} must be more than zero"));
            }
        }
        for (name, n) in [
            ("max_connections", self.max_connections),
            ("max_requests", self.max_requests),
            ("max_body", self.max_body.0),
            ("max_inbox", self.max_inbox),
        ] {
            if n == 0 {
                return Err(format!("receiver.{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// A size in bytes: a number, or a number with `B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub usize);

/// Reads `1048576`, `512KiB`, `1MiB`, `1GiB`, `1MB`.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 1MiB, 512KiB, 65536"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1024,
        "MiB" | "M" => 1024 * 1024,
        "GiB" | "G" => 1 << 30,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        for (unit, n) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= n && b.is_multiple_of(n) {
                return write!(f, "{}{unit}", b / n);
            }
        }
        write!(f, "{b}")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => usize::try_from(n)
                .map(ByteSize)
                .map_err(|_| serde::de::Error::custom(format!("{n} is too large"))),
            Raw::S(s) => parse_bytes(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Whether `s` may be the webhook secret: it becomes one path segment of a URL, so only
/// unreserved characters (`A-Z a-z 0-9 - _ . ~`), not `.` or `..`, at most 64 of them.
pub fn check_webhook_secret(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(
            "webhooks.secret (or SKLADSYNC_WEBHOOK_SECRET) must be 1 to 64 URL-safe characters \
             (letters, digits, `-`, `_`, `.`, `~`): it is one segment of the webhook URL"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_units() {
        assert_eq!(parse_bytes("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        // docs/runner.md names GiB for `limits.max_eval_bytes` (it was refused).
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert!(parse_bytes("1 TiB").is_err());
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn secrets_must_be_one_url_safe_segment() {
        assert!(check_webhook_secret("s3cret-path_1.x~").is_ok());
        for bad in ["a/b?c", "", "..", "with space", "per%cent", "#frag", "ключ"] {
            let e = check_webhook_secret(bad).expect_err(bad);
            assert!(e.contains("webhooks.secret"), "{e}");
        }
        assert!(check_webhook_secret(&"a".repeat(65)).is_err());
    }

    #[test]
    fn zero_limits_are_refused_by_name() {
        let c = ReceiverConfig {
            max_requests: 0,
            ..ReceiverConfig::default()
        };
        assert!(c.check().unwrap_err().contains("receiver.max_requests"));
    }
}
