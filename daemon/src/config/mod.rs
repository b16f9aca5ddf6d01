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
//! | `SKLADSYNC_OPERATOR_TOKEN` | the token of the operator pages and `/metrics` |
//! | `SKLADSYNC_ADMIN_TOKEN` | the operator token of `POST /admin/reload` |
//! | `SKLADSYNC_STATE_URL` | the PostgreSQL connection string of `state.backend: postgres` |
//!
//! Each variable may instead name a file holding the value: `SKLADSYNC_CRM_API_KEY_FILE=
//! /run/secrets/crm_api_key` (Docker secrets, systemd `LoadCredential=`); surrounding
//! whitespace is dropped, the variable itself wins over its file.
//!
//! Secrets are [`Secret`]s: their `Debug` and `Display` never show them, and they are not
//! serialized back out.

mod duration;
mod files;
mod http;
mod icml;
mod receiver;
mod record;
mod validate;

pub use receiver::{check_webhook_secret, parse_bytes, ByteSize, ReceiverConfig};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use duration::{parse_duration, Interval};
pub use files::{credential_exposure, write_private};
pub use http::HttpConfig;
pub use icml::IcmlConfig;
pub use record::RecordConfig;
pub use validate::{
    MAX_CRM_RATE, MAX_INTERVAL, MAX_JOURNAL_DAYS, MAX_JOURNAL_ENTRIES, MAX_TIMEOUT,
};

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

impl HistoryStart {
    /// Reads `beginning`, `recent` or a date-time `YYYY-MM-DD HH:MM:SS`.
    pub fn parse(s: &str) -> Result<HistoryStart, String> {
        match s {
            "beginning" => Ok(HistoryStart::Beginning),
            "recent" => Ok(HistoryStart::Recent),
            _ => chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .map(|_| HistoryStart::Since(s.to_string()))
                .map_err(|_| {
                    format!(
                        "{s:?} is not a history start: use `recent`, `beginning` or a date-time \
                         like \"2025-03-01 00:00:00\" (YYYY-MM-DD HH:MM:SS, account time)"
                    )
                }),
        }
    }
}

impl<'de> Deserialize<'de> for HistoryStart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, so that the error is raised while the YAML reader is at the value and
        // carries its key (`crm.history_start: …`).
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HistoryStart;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`recent`, `beginning` or a date-time YYYY-MM-DD HH:MM:SS")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HistoryStart, E> {
                HistoryStart::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
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
    /// The longest one API call may take, retries included (default 30 s).
    #[serde(default = "default_crm_timeout")]
    pub timeout: Interval,
    /// Connect timeout of one try (default 10 s).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Interval,
}

fn default_crm_rate() -> u32 {
    10
}

fn default_crm_timeout() -> Interval {
    Interval(crate::clients::retailcrm::DEFAULT_TIMEOUT)
}

fn default_ms_timeout() -> Interval {
    Interval(crate::clients::moysklad::DEFAULT_TIMEOUT)
}

fn default_connect_timeout() -> Interval {
    Interval(crate::clients::moysklad::DEFAULT_CONNECT_TIMEOUT)
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
    /// The token is a published solution's (a vendor app's): МойСклад weighs its requests
    /// 1 unit instead of 4, and the client budgets them so. Only with `token`.
    #[serde(default)]
    pub solution: bool,
    /// The longest one API call may take, retries and rate-limit waits included (default
    /// 60 s, at most [`MAX_TIMEOUT`]).
    #[serde(default = "default_ms_timeout")]
    pub timeout: Interval,
    /// Connect timeout of one attempt (default 10 s).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Interval,
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
    /// Reload the rules and settings when one of their files changes (the rules directory,
    /// the layers, the settings file), after `watch_debounce` without further change. Off by
    /// default: SIGHUP and `POST /admin/reload` reload too.
    #[serde(default)]
    pub watch: bool,
    /// How long the files must stay unchanged before a watched change is reloaded.
    #[serde(default = "default_watch_debounce")]
    pub watch_debounce: Interval,
}

fn default_watch_debounce() -> Interval {
    Interval(Duration::from_secs(1))
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
            watch: false,
            watch_debounce: default_watch_debounce(),
        }
    }
}

/// Where the state is kept: sled (the default, one machine) or PostgreSQL (several runners
/// sharing pairs).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Where sled keeps the state (created owner-only). With PostgreSQL only the daemon's
    /// status file is written beside it (`<path>.daemon.json`).
    pub path: PathBuf,
    /// `sled` (default) or `postgres`.
    #[serde(default)]
    pub backend: StateBackend,
    /// The PostgreSQL connection string (`postgres://user:password@host:5432/db` or
    /// `host=… user=… dbname=…`), or `SKLADSYNC_STATE_URL` / `SKLADSYNC_STATE_URL_FILE`.
    /// Never logged.
    #[serde(default)]
    pub url: Secret,
    /// PostgreSQL connections (each on a thread of its own).
    #[serde(default = "default_pool")]
    pub pool: usize,
    /// How long a runner's lease on a pair lasts without renewal (PostgreSQL): another runner
    /// takes the pair over this long after the holder died. Renewed every third of it.
    #[serde(default = "default_lease")]
    pub lease: Interval,
}

/// The state backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// An embedded sled database in `state.path` (one runner).
    #[default]
    Sled,
    /// A PostgreSQL database (`state.url`), shared by any number of runners and pairs.
    Postgres,
}

fn default_pool() -> usize {
    4
}

fn default_lease() -> Interval {
    Interval(Duration::from_secs(30))
}

impl StateConfig {
    /// The sled state at `path` (what a config with only `state.path` means).
    pub fn sled(path: PathBuf) -> Self {
        StateConfig {
            path,
            backend: StateBackend::Sled,
            url: Secret::default(),
            pool: default_pool(),
            lease: default_lease(),
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.backend {
            StateBackend::Sled => {
                if !self.url.is_empty() {
                    out.push(
                        "state.url is set but state.backend is sled: add `backend: postgres` \
                         or drop the url"
                            .to_string(),
                    );
                }
            }
            StateBackend::Postgres => {
                if self.url.is_empty() {
                    out.push(
                        "state.backend: postgres needs state.url (or SKLADSYNC_STATE_URL, \
                         SKLADSYNC_STATE_URL_FILE)"
                            .to_string(),
                    );
                }
            }
        }
        if !(1..=64).contains(&self.pool) {
            out.push(format!("state.pool must be 1 to 64 (is {})", self.pool));
        }
        let lease = self.lease.0;
        if lease < Duration::from_secs(3) || lease > Duration::from_secs(3600) {
            out.push(format!("state.lease must be 3s to 1h (is {})", self.lease));
        }
        out
    }
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

/// The default of `limits.stock_part_rows`.
pub const DEFAULT_STOCK_PART_ROWS: usize = 10_000;

/// Limits of one evaluation: a rule that would go past them is refused with an error naming
/// it, and its work is parked (see `docs/runner.md`, "Parked work").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Effects in one plan.
    pub max_effects: usize,
    /// Bytes of texts, lists and objects one evaluation may build (a number, or `64MiB`,
    /// `1GiB`, `512KiB`).
    pub max_eval_bytes: ByteSize,
    /// The most rows one `stock.pass` event carries: a bigger pass is evaluated and applied
    /// in parts of at most this many rows, one after the other; `0`: the whole pass in one
    /// event.
    pub stock_part_rows: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_effects: skladsync_engine::eval::DEFAULT_MAX_EFFECTS,
            max_eval_bytes: ByteSize(
                usize::try_from(skladsync_engine::eval::DEFAULT_MAX_BYTES).unwrap_or(usize::MAX),
            ),
            stock_part_rows: DEFAULT_STOCK_PART_ROWS,
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
    /// Limits of one evaluation.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Webhook receiver.
    #[serde(default)]
    pub webhooks: WebhookConfig,
    // --- receiver limits and webhook ownership (issue 9, items 5 and 7) ---
    /// Limits of the receiver and the inbox; webhook ownership.
    #[serde(default)]
    pub receiver: ReceiverConfig,
    // --- end receiver ---
    /// The ICML catalogue (CAT-02).
    #[serde(default)]
    pub icml: IcmlConfig,
    /// Recording evaluated events as replayable cases.
    #[serde(default)]
    pub record: RecordConfig,
    /// The operator HTTP server (health, metrics, status pages).
    #[serde(default)]
    pub http: HttpConfig,
    /// Operator access to the daemon's HTTP endpoints (`POST /admin/reload`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Many account pairs in one runner (a fleet): the directory of pair files. Without it
    /// the config is one pair (`default`), as before.
    #[serde(default)]
    pub pairs: Option<PairsConfig>,
}

/// The pairs of a multi-pair runner (see `docs/runner.md`, "Many pairs in one runner").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairsConfig {
    /// The directory of pair files, `<id>.yaml` each, read over this config.
    pub dir: PathBuf,
    /// Pick up pair files added, changed or removed while running (default on).
    #[serde(default = "default_true")]
    pub watch: bool,
}

fn default_true() -> bool {
    true
}

/// Operator access.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// A bearer token for `POST /admin/reload` (or `SKLADSYNC_ADMIN_TOKEN`); the webhook
    /// secret is accepted too. At least 16 characters.
    pub token: Secret,
}

impl Config {
    /// Reads a config file; relative paths in it are relative to the file's directory;
    /// credentials from the environment override the file. Every value is checked (see
    /// `docs/runner.md`); all problems found are reported together, each with its key.
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
        let mut cfg: Config =
            serde_yaml::from_str(text).map_err(|e| validate::explain_yaml_error(&e.to_string()))?;
        let mut unreadable = Vec::new();
        // `VAR`, else the file named by `VAR_FILE` (Docker secrets, systemd credentials).
        let mut set = |slot: &mut Secret, var: &str| {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                *slot = Secret::new(v);
            } else if let Some(file) = env(&format!("{var}_FILE")).filter(|v| !v.is_empty()) {
                match std::fs::read_to_string(&file) {
                    Ok(t) if !t.trim().is_empty() => *slot = Secret::new(t.trim()),
                    Ok(_) => unreadable.push(format!("{var}_FILE: {file} is empty")),
                    Err(e) => unreadable.push(format!("{var}_FILE: cannot read {file}: {e}")),
                }
            }
        };
        set(&mut cfg.crm.api_key, "SKLADSYNC_CRM_API_KEY");
        set(&mut cfg.moysklad.login, "SKLADSYNC_MS_LOGIN");
        set(&mut cfg.moysklad.password, "SKLADSYNC_MS_PASSWORD");
        set(&mut cfg.moysklad.token, "SKLADSYNC_MS_TOKEN");
        set(&mut cfg.webhooks.secret, "SKLADSYNC_WEBHOOK_SECRET");
        set(&mut cfg.icml.secret, "SKLADSYNC_ICML_SECRET");
        set(&mut cfg.http.operator_token, "SKLADSYNC_OPERATOR_TOKEN");
        set(&mut cfg.admin.token, "SKLADSYNC_ADMIN_TOKEN");
        set(&mut cfg.state.url, "SKLADSYNC_STATE_URL");
        if !unreadable.is_empty() {
            return Err(unreadable.join("\n"));
        }
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
        if let Some(p) = cfg.icml.path.as_mut() {
            rebase(p);
        }
        if let Some(p) = cfg.record.dir.as_mut() {
            rebase(p);
        }
        if let Some(p) = cfg.pairs.as_mut() {
            rebase(&mut p.dir);
        }
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        let mut problems = validate::problems(self);
        if let Err(e) = self.receiver.check() {
            problems.push(e);
        }
        if !self.webhooks.secret.is_empty() {
            if let Err(e) = check_webhook_secret(self.webhooks.secret.expose()) {
                problems.push(e);
            }
        }
        problems.extend(self.icml.problems());
        problems.extend(self.state.problems());
        problems.extend(self.record.problems());
        problems.extend(self.http.problems());
        if !self.admin.token.is_empty() && self.admin.token.expose().chars().count() < 16 {
            problems.push("admin.token must be at least 16 characters".to_string());
        }
        if self.moysklad.solution && self.moysklad.token.is_empty() {
            problems.push(
                "moysklad.solution: true needs moysklad.token (or SKLADSYNC_MS_TOKEN): only a \
                 published solution's token weighs 1 unit a request"
                    .to_string(),
            );
        }
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.concat()),
            n => Err(format!("{n} problems:\n  - {}", problems.join("\n  - "))),
        }
    }

    /// Where the operator server listens (`http.listen`, else `webhooks.listen`); `None`
    /// when `http.enabled` is off.
    pub fn operator_listen(&self) -> Option<SocketAddr> {
        self.http
            .enabled
            .then(|| self.http.listen.unwrap_or(self.webhooks.listen))
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
    fn the_example_production_config_loads_and_holds_no_credentials() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/skladsync.example.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let env = |k: &str| match k {
            "SKLADSYNC_CRM_API_KEY" => Some("k".to_string()),
            "SKLADSYNC_MS_TOKEN" => Some("t".to_string()),
            _ => None,
        };
        let cfg = Config::from_yaml(&text, Path::new("/etc/skladsync"), &env).unwrap();
        assert_eq!(cfg.state.path, Path::new("/var/lib/skladsync/state"));
        assert!(!cfg.rules.watch);
        for key in ["api_key:", "password:", "token:", "login:", "secret:"] {
            assert!(
                !text.lines().any(|l| l.trim_start().starts_with(key)),
                "{key} in the example config"
            );
        }
    }

    #[test]
    fn the_state_backend_is_sled_by_default_and_postgres_takes_its_url_from_the_environment() {
        let none = |_: &str| None;
        let base = |k: &str| match k {
            "SKLADSYNC_CRM_API_KEY" => Some("k".to_string()),
            "SKLADSYNC_MS_TOKEN" => Some("t".to_string()),
            _ => None,
        };
        let cfg = Config::from_yaml(MIN, Path::new("/etc/x"), &base).unwrap();
        assert_eq!(cfg.state.backend, StateBackend::Sled);
        assert_eq!(cfg.state.lease.0, Duration::from_secs(30));
        let pg = MIN.replace(
            "state: {path: st}",
            "state: {path: st, backend: postgres, lease: 10s, pool: 2}",
        );
        // No URL: refused, naming the variables.
        let err = Config::from_yaml(&pg, Path::new("/etc/x"), &base).unwrap_err();
        assert!(
            err.contains("state.backend: postgres needs state.url"),
            "{err}"
        );
        let env = |k: &str| match k {
            "SKLADSYNC_STATE_URL" => Some("postgres://u:pw-secret@db/x".to_string()),
            other => base(other),
        };
        let cfg = Config::from_yaml(&pg, Path::new("/etc/x"), &env).unwrap();
        assert_eq!(cfg.state.backend, StateBackend::Postgres);
        assert_eq!(cfg.state.url.expose(), "postgres://u:pw-secret@db/x");
        assert_eq!(cfg.state.lease.0, Duration::from_secs(10));
        assert_eq!(cfg.state.pool, 2);
        assert!(!format!("{cfg:?}").contains("pw-secret"));
        // Out of range, a url without the backend, an unknown backend.
        let bad = MIN.replace(
            "state: {path: st}",
            "state: {path: st, url: 'postgres://db/x', lease: 1s, pool: 0}",
        );
        let err = Config::from_yaml(&bad, Path::new("/etc/x"), &base).unwrap_err();
        for want in [
            "state.url is set but state.backend is sled",
            "state.pool",
            "state.lease",
        ] {
            assert!(err.contains(want), "{want} in {err}");
        }
        let unknown = MIN.replace("state: {path: st}", "state: {path: st, backend: mysql}");
        assert!(Config::from_yaml(&unknown, Path::new("/etc/x"), &none).is_err());
    }

    #[test]
    fn secrets_come_from_files_named_by_file_variables() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("crm_api_key");
        std::fs::write(&key, "crm-from-file\n").unwrap();
        let key_s = key.display().to_string();
        let env = |k: &str| match k {
            "SKLADSYNC_CRM_API_KEY_FILE" => Some(key_s.clone()),
            "SKLADSYNC_MS_TOKEN" => Some("ms-secret-2".to_string()),
            "SKLADSYNC_MS_TOKEN_FILE" => Some("/nonexistent/ignored".to_string()),
            _ => None,
        };
        let cfg = Config::from_yaml(MIN, Path::new("/etc/x"), &env).unwrap();
        assert_eq!(cfg.crm.api_key.expose(), "crm-from-file");
        // The variable wins over its file (which is then not read at all).
        assert_eq!(cfg.moysklad.token.expose(), "ms-secret-2");
        let missing = dir.path().join("missing").display().to_string();
        let env = |k: &str| match k {
            "SKLADSYNC_CRM_API_KEY_FILE" => Some(missing.clone()),
            "SKLADSYNC_MS_TOKEN" => Some("ms-secret-2".to_string()),
            _ => None,
        };
        let err = Config::from_yaml(MIN, Path::new("/etc/x"), &env).unwrap_err();
        assert!(
            err.contains("SKLADSYNC_CRM_API_KEY_FILE: cannot read"),
            "{err}"
        );
    }

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
    fn a_solution_token_is_a_choice_off_by_default() {
        let no_env = |_: &str| None;
        let cfg = Config::from_yaml(&with("", "", ""), Path::new("/etc/x"), &no_env).unwrap();
        assert!(!cfg.moysklad.solution);
        let cfg = Config::from_yaml(
            &with("", ", solution: true", ""),
            Path::new("/etc/x"),
            &no_env,
        )
        .unwrap();
        assert!(cfg.moysklad.solution);
        // Login and password are a user's, never a solution's.
        let err = Config::from_yaml(
            "crm: {url: 'http://127.0.0.1:1', api_key: k}\nmoysklad: {url: 'http://127.0.0.1:2/api/remap/1.2', login: a@b, password: p, solution: true}\nstate: {path: st}\n",
            Path::new("/etc/x"),
            &no_env,
        )
        .unwrap_err();
        assert!(err.contains("moysklad.solution"), "{err}");
    }

    /// A config with credentials, the given extra keys in `crm` and `moysklad`, and more
    /// sections after.
    fn with(crm: &str, ms: &str, rest: &str) -> String {
        let url = |extra: &str, default: &str| {
            if extra.contains("url:") {
                String::new()
            } else {
                format!("url: '{default}', ")
            }
        };
        format!(
            "crm: {{{}api_key: k{crm}}}\n\
             moysklad: {{{}token: t{ms}}}\n\
             state: {{path: st}}\n{rest}",
            url(crm, "http://127.0.0.1:1"),
            url(ms, "http://127.0.0.1:2/api/remap/1.2"),
        )
    }

    #[test]
    fn good_values_are_accepted_and_defaults_hold() {
        let cfg = Config::from_yaml(&with("", "", ""), Path::new("."), &|_| None).unwrap();
        assert_eq!(cfg.moysklad.timeout.0, Duration::from_secs(60));
        assert_eq!(cfg.moysklad.connect_timeout.0, Duration::from_secs(10));
        assert_eq!(cfg.crm.timeout.0, Duration::from_secs(30));
        assert_eq!(cfg.crm.history_start, HistoryStart::Recent);
        for (crm, want) in [
            (", history_start: beginning", HistoryStart::Beginning),
            (", history_start: recent", HistoryStart::Recent),
            (
                ", history_start: '2025-03-01 10:00:00'",
                HistoryStart::Since("2025-03-01 10:00:00".into()),
            ),
        ] {
            let cfg = Config::from_yaml(&with(crm, "", ""), Path::new("."), &|_| None).unwrap();
            assert_eq!(cfg.crm.history_start, want, "{crm}");
        }
        let cfg = Config::from_yaml(
            &with(
                ", timeout: 5s, connect_timeout: 2s",
                ", timeout: 5m, connect_timeout: 1s",
                "intervals: {retry_min: 1m, retry_max: 1m, stock: 90, reconcile: 1.5}\nwebhooks: {public_url: 'https://sync.example.ru/'}\n",
            ),
            Path::new("."),
            &|_| None,
        )
        .unwrap();
        assert_eq!(cfg.crm.timeout.0, Duration::from_secs(5));
        assert_eq!(cfg.moysklad.timeout.0, Duration::from_secs(300));
        assert_eq!(cfg.intervals.stock.0, Duration::from_secs(90));
        assert_eq!(cfg.intervals.reconcile.0, Duration::from_millis(1500));
    }

    #[test]
    fn every_bad_value_is_refused_with_its_key() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                ", history_start: yesterday",
                "",
                "",
                &["crm.history_start", "\"yesterday\" is not a history start"],
            ),
            (
                ", history_start: '2025-13-01 00:00:00'",
                "",
                "",
                &["crm.history_start"],
            ),
            (
                ", history_start: '2025-03-01'",
                "",
                "",
                &["crm.history_start"],
            ),
            (
                ", rate_limit: 0",
                "",
                "",
                &["crm.rate_limit (0) must be between 1 and 1000 requests per second"],
            ),
            (
                ", rate_limit: 5000",
                "",
                "",
                &["crm.rate_limit (5000) must be between 1 and 1000"],
            ),
            (
                ", rate_limit: -1",
                "",
                "",
                &["crm.rate_limit: invalid type"],
            ),
            (
                ", timeout: 0s",
                "",
                "",
                &["crm.timeout must be more than zero"],
            ),
            (
                ", connect_timeout: 0",
                "",
                "",
                &["crm.connect_timeout must be more than zero"],
            ),
            (
                ", timeout: 10s, connect_timeout: 20s",
                "",
                "",
                &["crm.connect_timeout (20s) is longer than crm.timeout (10s)"],
            ),
            (
                ", timeout: 1h",
                "",
                "",
                &["crm.timeout (1h) is longer than the most accepted, 5m"],
            ),
            (
                "",
                ", timeout: 10m",
                "",
                &["moysklad.timeout (10m) is longer than the most accepted, 5m"],
            ),
            (
                "",
                ", timeout: 0",
                "",
                &["moysklad.timeout must be more than zero"],
            ),
            (
                "",
                ", connect_timeout: 0ms",
                "",
                &["moysklad.connect_timeout must be more than zero"],
            ),
            (
                "",
                ", timeout: forever",
                "",
                &["moysklad.timeout", "forever"],
            ),
            (
                ", url: 'ftp://crm.example.ru'",
                "",
                "",
                &["crm.url (\"ftp://crm.example.ru\") must be an http:// or https:// URL"],
            ),
            (
                ", url: 'not a url'",
                "",
                "",
                &["crm.url (\"not a url\") is not a URL"],
            ),
            (
                "",
                ", url: 'api.moysklad.ru/api/remap/1.2'",
                "",
                &["moysklad.url"],
            ),
            (
                "",
                "",
                "webhooks: {public_url: 'sync.example.ru'}\n",
                &["webhooks.public_url"],
            ),
            (
                "",
                "",
                "webhooks: {listen: 'everywhere'}\n",
                &["webhooks.listen", "invalid socket address"],
            ),
            (
                "",
                "",
                "intervals: {retry_min: 1h, retry_max: 30m}\n",
                &["intervals.retry_min (1h) is greater than intervals.retry_max (30m)"],
            ),
            (
                "",
                "",
                "intervals: {retry_min: 1h}\n",
                &["intervals.retry_min (1h) is greater than intervals.retry_max (30m)"],
            ),
            (
                "",
                "",
                "intervals: {stock: 0s}\n",
                &["intervals.stock must be more than zero"],
            ),
            (
                "",
                "",
                "intervals: {retry_min: 0}\n",
                &["intervals.retry_min must be more than zero"],
            ),
            (
                "",
                "",
                "intervals: {reference_ttl: 0}\n",
                &["intervals.reference_ttl must be more than zero"],
            ),
            (
                "",
                "",
                "intervals: {crm_poll: 400d}\n",
                &["intervals.crm_poll (400d) is longer than the most accepted, 30d"],
            ),
            (
                "",
                "",
                "intervals: {crm_poll: ten}\n",
                &["intervals.crm_poll", "ten"],
            ),
            (
                "",
                "",
                "intervals: {stock: 99999999999999999999999d}\n",
                &["intervals.stock: \"99999999999999999999999d\" is too long"],
            ),
            (
                "",
                "",
                "journal: {max_entries: 0}\n",
                &["journal.max_entries (0) must be between 1 and"],
            ),
            (
                "",
                "",
                "journal: {max_days: 0}\n",
                &["journal.max_days (0) must be between 1 and"],
            ),
            (
                ", rate_limt: 5",
                "",
                "",
                &["crm: unknown field `rate_limt` (did you mean `rate_limit`?)"],
            ),
            (
                "",
                ", tiemout: 5s",
                "",
                &["moysklad: unknown field `tiemout` (did you mean `timeout`?)"],
            ),
            (
                "",
                "",
                "intervls: {stock: 1m}\n",
                &["unknown field `intervls` (did you mean `intervals`?)"],
            ),
            (
                "",
                "",
                "intervals: {retry_mx: 1m}\n",
                &["intervals: unknown field `retry_mx` (did you mean `retry_max`?)"],
            ),
            (
                "",
                "",
                "intervals: {stock: -5}\n",
                &["intervals.stock: -5 is not a duration"],
            ),
        ];
        for (crm, ms, rest, wants) in cases {
            let yaml = with(crm, ms, rest);
            let err = match Config::from_yaml(&yaml, Path::new("."), &|_| None) {
                Ok(_) => panic!("accepted:\n{yaml}"),
                Err(e) => e,
            };
            for want in *wants {
                assert!(err.contains(want), "{yaml}\n→ {err}\nwanted {want:?}");
            }
        }
    }

    #[test]
    fn all_problems_are_reported_together() {
        let yaml = with(
            ", rate_limit: 0",
            ", timeout: 0",
            "intervals: {retry_min: 2h, retry_max: 1h}\njournal: {max_days: 0}\n",
        );
        let err = Config::from_yaml(&yaml, Path::new("."), &|_| None).unwrap_err();
        assert!(err.starts_with("4 problems:"), "{err}");
        for want in [
            "crm.rate_limit",
            "moysklad.timeout",
            "intervals.retry_min (2h)",
            "journal.max_days",
        ] {
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.yaml");
        std::fs::write(
            &p,
            with("", "", "intervals: {retry_min: 1h, retry_max: 30m}\n"),
        )
        .unwrap();
        let err = Config::load(&p).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "config file {}: intervals.retry_min (1h) is greater than intervals.retry_max (30m)",
                p.display()
            )
        );
    }

    #[test]
    fn the_icml_section_has_defaults_and_is_checked() {
        let cfg = Config::from_yaml(&with("", "", ""), Path::new("/etc/x"), &|_| None).unwrap();
        assert!(!cfg.icml.enabled);
        assert_eq!(cfg.icml.every.0, Duration::from_secs(4 * 3600));
        assert!(cfg.icml.services && cfg.icml.bundles);
        let cfg = Config::from_yaml(
            &with("", "", "icml: {enabled: true, path: c.xml, every: 2h, price_type: Опт, ignore_categories: [hidden]}\n"),
            Path::new("/etc/x"),
            &|k| (k == "SKLADSYNC_ICML_SECRET").then(|| "s".repeat(20)),
        )
        .unwrap();
        assert_eq!(cfg.icml.path, Some(PathBuf::from("/etc/x/c.xml")));
        assert_eq!(cfg.icml.secret.expose(), "s".repeat(20));
        assert_eq!(cfg.icml.options().price_type.as_deref(), Some("Опт"));
        assert_eq!(cfg.icml.options().ignore_categories, ["hidden"]);
        let err = Config::from_yaml(
            &with(
                "",
                "",
                "icml: {enabled: true, secret: short, dimension_attributes: [a, b]}\n",
            ),
            Path::new("."),
            &|_| None,
        )
        .unwrap_err();
        assert!(err.contains("icml.path is required"), "{err}");
        assert!(err.contains("icml.secret must be at least 16"), "{err}");
        assert!(err.contains("icml.dimension_attributes"), "{err}");
        let err = Config::from_yaml(
            &with("", "", "icml: {colour: red}\n"),
            Path::new("."),
            &|_| None,
        )
        .unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn the_operator_server_listens_where_the_http_section_says_else_on_the_webhook_address() {
        let load = |rest: &str, env: &dyn Fn(&str) -> Option<String>| {
            Config::from_yaml(&with("", "", rest), Path::new("."), env)
        };
        let cfg = load("", &|_| None).unwrap();
        assert_eq!(cfg.operator_listen(), Some(cfg.webhooks.listen));
        assert!(cfg.http.operator_token.is_empty());
        let cfg = load(
            "webhooks: {enabled: false, listen: '127.0.0.1:9000'}
",
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            cfg.operator_listen(),
            Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
            "webhooks off: the operator server stays, on webhooks.listen"
        );
        let cfg = load(
            "http: {listen: '0.0.0.0:9100', operator_token: from-the-file-0123}
",
            &|k| (k == "SKLADSYNC_OPERATOR_TOKEN").then(|| "from-the-environment-1".into()),
        )
        .unwrap();
        assert_eq!(
            cfg.operator_listen(),
            Some(SocketAddr::from(([0, 0, 0, 0], 9100)))
        );
        assert_eq!(cfg.http.operator_token.expose(), "from-the-environment-1");
        assert!(
            !format!("{cfg:?}").contains("from-the-"),
            "the token is hidden"
        );
        let cfg = load(
            "http: {enabled: false}
",
            &|_| None,
        )
        .unwrap();
        assert_eq!(cfg.operator_listen(), None);
        let err = load(
            "http: {operator_token: short}
",
            &|_| None,
        )
        .unwrap_err();
        assert!(err.contains("http.operator_token"), "{err}");
        let err = load(
            "http: {operator_token: 'has a space in it here'}
",
            &|_| None,
        )
        .unwrap_err();
        assert!(err.contains("http.operator_token"), "{err}");
        let err = load(
            "http: {listen: nowhere}
",
            &|_| None,
        )
        .unwrap_err();
        assert!(
            err.contains("http.listen") || err.contains("listen"),
            "{err}"
        );
    }

    #[test]
    fn missing_credentials_are_named() {
        let err = Config::from_yaml(MIN, Path::new("."), &|_| None).unwrap_err();
        assert!(err.contains("crm.api_key"), "{err}");
    }
}
