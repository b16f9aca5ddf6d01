//! The runner's configuration file (YAML): where the two APIs are, credentials, rules and
//! settings, the state directory, intervals, journal limits, the webhook receiver.
//!
//! Credentials may also come from environment variables, which win over the file:
//!
//! | variable | what |
//! |---|---|
//! | `SKLADSYNC_CRM_API_KEY` | retailCRM API key |
//! | `SKLADSYNC_MS_LOGIN`, `SKLADSYNC_MS_PASSWORD` | МойСклад Basic credentials |
//! | `SKLADSYNC_MS_TOKEN` | МойСклад Bearer token (instead of login/password) |
//! | `SKLADSYNC_WEBHOOK_SECRET` | the secret in the webhook path |
//!
//! Secrets are [`Secret`]s: their `Debug` and `Display` never show them, and they are not
//! serialized back out.

mod duration;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use duration::{parse_duration, Interval};

/// A credential. Shows as `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("config file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Where the history of a CRM feed starts when the runner has no cursor yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HistoryStart {
    /// From the first history record (a new account, the demo, tests).
    Beginning,
    /// Changes of the last 24 hours (the default: an existing account is not replayed).
    #[default]
    Recent,
    /// From this time (`YYYY-MM-DD HH:MM:SS`, account time).
    Since(String),
}

impl<'de> Deserialize<'de> for HistoryStart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "beginning" => HistoryStart::Beginning,
            "recent" => HistoryStart::Recent,
            _ => HistoryStart::Since(s),
        })
    }
}

/// The retailCRM side.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    /// Account URL, e.g. `https://shop.retailcrm.ru`.
    pub url: String,
    /// API key (or `SKLADSYNC_CRM_API_KEY`).
    #[serde(default)]
    pub api_key: Secret,
    /// Requests per second (retailCRM allows 10).
    #[serde(default = "default_crm_rate")]
    pub rate_limit: u32,
    /// Where history starts without a cursor: `beginning`, `recent` or a date.
    #[serde(default)]
    pub history_start: HistoryStart,
}

fn default_crm_rate() -> u32 {
    10
}

/// The МойСклад side.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoyskladConfig {
    /// Base URL (default `https://api.moysklad.ru/api/remap/1.2`).
    #[serde(default = "default_ms_url")]
    pub url: String,
    /// Login (`user@account`) or `SKLADSYNC_MS_LOGIN`.
    #[serde(default)]
    pub login: Secret,
    /// Password or `SKLADSYNC_MS_PASSWORD`.
    #[serde(default)]
    pub password: Secret,
    /// Bearer token or `SKLADSYNC_MS_TOKEN` (used when set).
    #[serde(default)]
    pub token: Secret,
}

fn default_ms_url() -> String {
    crate::clients::moysklad::DEFAULT_BASE_URL.to_string()
}

/// Rules and settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// The rules directory.
    #[serde(default = "default_rules_dir")]
    pub dir: PathBuf,
    /// The settings file (default: `<dir>/settings.yaml`, else `settings.example.yaml`).
    #[serde(default)]
    pub settings: Option<PathBuf>,
    /// Integrators' rules directories laid over `dir`, in order (see docs/tooling.md,
    /// Layers).
    #[serde(default)]
    pub layers: Vec<PathBuf>,
}

fn default_rules_dir() -> PathBuf {
    PathBuf::from("rules")
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: default_rules_dir(),
            settings: None,
            layers: Vec::new(),
        }
    }
}

/// The state directory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Where sled keeps the state (created owner-only).
    pub path: PathBuf,
}

/// How often things run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intervals {
    /// CRM history poll (the module: 10 minutes).
    pub crm_poll: Interval,
    /// Stock pass, changed rows (10 minutes).
    pub stock: Interval,
    /// Full stock pass with purchase prices (60 minutes).
    pub purchase_prices: Interval,
    /// МойСклад `updated>=` reconciliation poll (10 minutes).
    pub reconcile: Interval,
    /// First retry delay of failed work (doubles up to `retry_max`).
    pub retry_min: Interval,
    /// Longest retry delay.
    pub retry_max: Interval,
    /// How long reference data (stores, statuses, …) is cached.
    pub reference_ttl: Interval,
}

impl Default for Intervals {
    fn default() -> Self {
        let m = |n: u64| Interval(Duration::from_secs(60 * n));
        Intervals {
            crm_poll: m(10),
            stock: m(10),
            purchase_prices: m(60),
            reconcile: m(10),
            retry_min: Interval(Duration::from_secs(30)),
            retry_max: m(30),
            reference_ttl: m(10),
        }
    }
}

/// Journal limits (the module: 50 entries, 5 days).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Entries kept.
    pub max_entries: usize,
    /// Days an entry is kept.
    pub max_days: u32,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_entries: 50,
            max_days: 5,
        }
    }
}

impl JournalConfig {
    /// As state limits.
    pub fn limits(&self) -> crate::state::JournalLimits {
        crate::state::JournalLimits {
            max_entries: self.max_entries,
            max_age_ms: i64::from(self.max_days) * 24 * 3600 * 1000,
        }
    }
}

/// The МойСклад webhook receiver.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// How МойСклад reaches the receiver (`https://sync.example.ru`); default
    /// `http://<listen address>`.
    pub public_url: Option<String>,
    /// The secret path segment (or `SKLADSYNC_WEBHOOK_SECRET`; generated and kept in the
    /// state when absent).
    pub secret: Secret,
    /// Register the webhooks the rules need on start.
    pub register: bool,
    /// Run the receiver at all (off: only the reconciliation poll sees МойСклад changes).
    pub enabled: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8088)),
            public_url: None,
            secret: Secret::default(),
            register: true,
            enabled: true,
        }
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// retailCRM.
    pub crm: CrmConfig,
    /// МойСклад.
    pub moysklad: MoyskladConfig,
    /// Rules and settings.
    #[serde(default)]
    pub rules: RulesConfig,
    /// State.
    pub state: StateConfig,
    /// Intervals.
    #[serde(default)]
    pub intervals: Intervals,
    /// Journal limits.
    #[serde(default)]
    pub journal: JournalConfig,
    /// Webhook receiver.
    #[serde(default)]
    pub webhooks: WebhookConfig,
}

impl Config {
    /// Reads a config file; relative paths in it are relative to the file's directory;
    /// credentials from the environment override the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_yaml(&text, base, &|k| std::env::var(k).ok()).map_err(|message| {
            ConfigError::Invalid {
                path: path.display().to_string(),
                message,
            }
        })
    }

    /// Reads a config from YAML text, resolving paths against `base` and reading credentials
    /// through `env`.
    pub fn from_yaml(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let mut cfg: Config = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let set = |slot: &mut Secret, var: &str| {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                *slot = Secret::new(v);
            }
        };
        set(&mut cfg.crm.api_key, "SKLADSYNC_CRM_API_KEY");
        set(&mut cfg.moysklad.login, "SKLADSYNC_MS_LOGIN");
        set(&mut cfg.moysklad.password, "SKLADSYNC_MS_PASSWORD");
        set(&mut cfg.moysklad.token, "SKLADSYNC_MS_TOKEN");
        set(&mut cfg.webhooks.secret, "SKLADSYNC_WEBHOOK_SECRET");
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut cfg.rules.dir);
        if let Some(s) = cfg.rules.settings.as_mut() {
            rebase(s);
        }
        rebase(&mut cfg.state.path);
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        if self.crm.api_key.is_empty() {
            return Err("crm.api_key is missing (or set SKLADSYNC_CRM_API_KEY)".into());
        }
        if self.moysklad.token.is_empty()
            && (self.moysklad.login.is_empty() || self.moysklad.password.is_empty())
        {
            return Err("moysklad needs `token`, or `login` and `password` (or SKLADSYNC_MS_TOKEN / SKLADSYNC_MS_LOGIN + SKLADSYNC_MS_PASSWORD)".into());
        }
        if self.journal.max_entries == 0 {
            return Err("journal.max_entries must be at least 1".into());
        }
        for (name, i) in [
            ("crm_poll", &self.intervals.crm_poll),
            ("stock", &self.intervals.stock),
            ("purchase_prices", &self.intervals.purchase_prices),
            ("reconcile", &self.intervals.reconcile),
        ] {
            if i.0.is_zero() {
                return Err(format!("intervals.{name} must be more than zero"));
            }
        }
        Ok(())
    }

    /// The settings file: the one configured, else `settings.yaml`, else
    /// `settings.example.yaml` in the rules directory.
    pub fn settings_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.rules.settings {
            return Some(p.clone());
        }
        ["settings.yaml", "settings.example.yaml"]
            .iter()
            .map(|n| self.rules.dir.join(n))
            .find(|p| p.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "crm: {url: 'http://127.0.0.1:1'}\nmoysklad: {url: 'http://127.0.0.1:2/api/remap/1.2'}\nstate: {path: st}\n";

    #[test]
    fn env_fills_credentials_and_debug_hides_them() {
        let env = |k: &str| match k {
            "SKLADSYNC_CRM_API_KEY" => Some("crm-secret-1".to_string()),
            "SKLADSYNC_MS_TOKEN" => Some("ms-secret-2".to_string()),
            _ => None,
        };
        let cfg = Config::from_yaml(MIN, Path::new("/etc/x"), &env).unwrap();
        assert_eq!(cfg.crm.api_key.expose(), "crm-secret-1");
        assert_eq!(cfg.state.path, PathBuf::from("/etc/x/st"));
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("crm-secret-1") && !shown.contains("ms-secret-2"),
            "{shown}"
        );
        assert_eq!(cfg.intervals.crm_poll.0, Duration::from_secs(600));
        assert_eq!(cfg.journal.limits().max_entries, 50);
    }

    #[test]
    fn missing_credentials_are_named() {
        let err = Config::from_yaml(MIN, Path::new("."), &|_| None).unwrap_err();
        assert!(err.contains("crm.api_key"), "{err}");
    }
}
