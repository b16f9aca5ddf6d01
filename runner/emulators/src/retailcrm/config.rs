//! Emulator configuration.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::model::Clock;

/// An API key the emulator accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyConfig {
    /// The key.
    pub key: String,
    /// Scopes reported by `/api/credentials`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Sites reported as available (`None`: full access). Reported by `/api/credentials`
    /// only; the emulator does not restrict data by site.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
}

fn default_scopes() -> Vec<String> {
    [
        "order_read",
        "order_write",
        "customer_read",
        "customer_write",
        "reference_read",
        "store_read",
        "store_write",
        "task_write",
        "user_read",
        "custom_fields_read",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl ApiKeyConfig {
    /// A key with the default (full) scopes.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            scopes: default_scopes(),
            sites: None,
        }
    }
}

/// The emulated per-key rate limit: at most `per_second` requests are accepted in any one
/// second (a sliding window, so no burst above it either).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitConfig {
    /// Requests per second per key (retailCRM: 10).
    pub per_second: u32,
    /// Status of a refused request: 503 (what retailCRM sends) or 429.
    pub status: u16,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 10,
            status: 503,
        }
    }
}

/// How to run an emulator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmulatorConfig {
    /// Where to listen; the default `127.0.0.1:0` picks a free loopback port.
    pub bind: SocketAddr,
    /// Accepted keys (the first is the "integration's own" key in the helpers).
    pub api_keys: Vec<ApiKeyConfig>,
    /// Per-key rate limit; `None` disables it.
    pub rate_limit: Option<RateLimitConfig>,
    /// Largest accepted `store/inventories/upload` batch (retailCRM documents 250).
    pub inventory_batch_limit: usize,
    /// The account's time zone (IANA name), reported by `/settings` as `timezone.value`;
    /// every date-time the emulator writes (`createdAt`, history) is its wall-clock time.
    pub timezone: String,
    /// Clock used for `createdAt` and history times.
    pub clock: Clock,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: vec![ApiKeyConfig::new("emulator-key")],
            rate_limit: Some(RateLimitConfig::default()),
            inventory_batch_limit: 250,
            timezone: super::model::DEFAULT_TIMEZONE.into(),
            clock: Clock::System,
        }
    }
}

impl EmulatorConfig {
    /// Defaults with these keys.
    pub fn with_keys<I: IntoIterator<Item = S>, S: Into<String>>(keys: I) -> Self {
        Self {
            api_keys: keys.into_iter().map(ApiKeyConfig::new).collect(),
            ..Self::default()
        }
    }

    /// Sets the rate limit.
    pub fn rate_limit(mut self, limit: Option<RateLimitConfig>) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Sets the account's time zone (an IANA name such as `Asia/Yekaterinburg`).
    pub fn timezone(mut self, zone: impl Into<String>) -> Self {
        self.timezone = zone.into();
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}
