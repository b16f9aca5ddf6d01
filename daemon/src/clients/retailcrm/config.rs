//! Client configuration: where the account is, the key, and how hard to push it.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use url::Url;

use super::error::Error;

/// A retailCRM API key. Its `Debug` and `Display` never show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `X-API-KEY` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How failed requests are retried.
///
/// * `429`/`503` (rate limit: the request was not processed) are retried for every request,
///   up to `rate_limit_attempts` tries.
/// * Other `5xx` and transport errors are retried up to `max_attempts` tries for idempotent
///   requests (reads, edits, stock uploads). A connection that could not be opened is retried
///   for every request, since nothing was sent.
/// * A non-idempotent write (create, delete, task) that was sent but got no answer is never
///   repeated: it fails with [`Error::NoResponse`].
/// * Other `4xx` are never retried.
///
/// The delay before try `n + 1` is `base_delay * 2^(n-1)`, capped at `max_delay`, with jitter
/// (between half and all of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries for 5xx and transport errors (at least 1).
    pub max_attempts: u32,
    /// Tries for 429/503 rate-limit answers (at least 1).
    pub rate_limit_attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            rate_limit_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before the retry that follows failed try number `attempt` (1-based), before
    /// jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay)
    }
}

/// Configuration of a [`RetailcrmClient`](super::RetailcrmClient).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Account root, e.g. `https://shop.retailcrm.ru` (a trailing `/api/v5` is accepted too).
    pub base_url: Url,
    /// The API key (sent as `X-API-KEY`).
    pub api_key: ApiKey,
    /// Client-side pacing shared by every clone of the client; `None` disables it.
    /// retailCRM allows 10 requests per second per key.
    pub requests_per_second: Option<NonZeroU32>,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// The longest one call may take from its first paced slot, retries included: each try
    /// gets the time left and no retry starts that could not finish in time (default 30 s).
    /// A write that runs out of time is [`Error::NoResponse`]: its outcome is unknown.
    pub timeout: Duration,
    /// Connect timeout of one try (default 10 s).
    pub connect_timeout: Duration,
    /// Page size used by the "fetch all pages" helpers (20, 50 or 100).
    pub page_limit: u32,
    /// Offers per `store/inventories/upload` request (retailCRM documents at most 250).
    pub inventory_batch: usize,
    /// Told about every attempt (endpoint class, status), for metrics and readiness.
    pub observer: crate::clients::ApiObserver,
}

/// The documented batch limit of `store/inventories/upload`.
pub const INVENTORY_BATCH_LIMIT: usize = 250;

/// The default time limit of one call, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default connect timeout of one try.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl ClientConfig {
    /// A configuration with the defaults: 10 requests/s, [`RetryPolicy::default`], 30 s
    /// timeout, pages of 100, stock batches of 250.
    pub fn new(base_url: &str, api_key: impl Into<String>) -> Result<Self, Error> {
        Ok(Self {
            base_url: normalize_base(base_url)?,
            api_key: ApiKey::new(api_key),
            requests_per_second: NonZeroU32::new(10),
            retry: RetryPolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            page_limit: 100,
            inventory_batch: INVENTORY_BATCH_LIMIT,
            observer: crate::clients::ApiObserver::default(),
        })
    }

    /// Sets the observer told about every attempt.
    #[must_use]
    pub fn with_observer(mut self, observer: crate::clients::ApiObserver) -> Self {
        self.observer = observer;
        self
    }

    /// Sets the client-side rate limit (`None`: unlimited).
    pub fn with_rate_limit(mut self, requests_per_second: Option<NonZeroU32>) -> Self {
        self.requests_per_second = requests_per_second;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the time limit of one call, retries included (see [`ClientConfig::timeout`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout of one try.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the stock upload batch size (clamped to 1..=250).
    pub fn with_inventory_batch(mut self, size: usize) -> Self {
        self.inventory_batch = size.clamp(1, INVENTORY_BATCH_LIMIT);
        self
    }

    /// Sets the page size of the "fetch all" helpers (20, 50 or 100).
    pub fn with_page_limit(mut self, limit: u32) -> Result<Self, Error> {
        check_limit(limit)?;
        self.page_limit = limit;
        Ok(self)
    }
}

/// retailCRM accepts only these page sizes.
pub(crate) fn check_limit(limit: u32) -> Result<(), Error> {
    if matches!(limit, 20 | 50 | 100) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "page limit {limit} is not one of 20, 50, 100"
        )))
    }
}

fn normalize_base(raw: &str) -> Result<Url, Error> {
    let mut url = Url::parse(raw).map_err(|e| Error::Config(format!("base URL {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "base URL {raw:?} must be http or https"
        )));
    }
    if url.cannot_be_a_base() {
        return Err(Error::Config(format!("base URL {raw:?} cannot be a base")));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/').to_string();
    let path = path
        .strip_suffix("/api/v5")
        .or_else(|| path.strip_suffix("/api"))
        .unwrap_or(&path)
        .to_string();
    url.set_path(&format!("{path}/"));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_normalized_to_the_account_root() {
        for raw in [
            "https://shop.retailcrm.ru",
            "https://shop.retailcrm.ru/",
            "https://shop.retailcrm.ru/api/v5",
            "https://shop.retailcrm.ru/api/v5/",
        ] {
            let cfg = ClientConfig::new(raw, "k").expect("valid url");
            assert_eq!(cfg.base_url.as_str(), "https://shop.retailcrm.ru/", "{raw}");
        }
        assert!(ClientConfig::new("ftp://x", "k").is_err());
        assert!(ClientConfig::new("not a url", "k").is_err());
    }

    #[test]
    fn key_is_redacted() {
        let cfg = ClientConfig::new("http://127.0.0.1:1", "secret-key-123").expect("url");
        let shown = format!("{cfg:?} {}", cfg.api_key);
        assert!(!shown.contains("secret-key-123"), "{shown}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(350));
        assert_eq!(p.delay(60), Duration::from_millis(350));
    }
}
