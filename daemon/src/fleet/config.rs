//! A pair's config: its pair file read over the fleet's base config.
//!
//! The base config is the runner's config file with a `pairs:` section. A pair file
//! `<pairs.dir>/<id>.yaml` holds what is that pair's own (its credentials, rules layers,
//! settings file, intervals, limits, webhook secret, journal limits…) and is merged over the
//! base key by key (mappings merged, anything else replaced). What the runner shares between
//! pairs cannot be set in a pair file: `state`, `http`, `receiver`, `admin`, `pairs`,
//! `webhooks.listen` and `webhooks.public_url`.
//!
//! Relative paths in a pair file are relative to the pairs directory; in the base, to the
//! base file's directory. Credentials from the environment (`SKLADSYNC_CRM_API_KEY`…) are not
//! applied to pairs (they would give every pair the same account); the operator and admin
//! tokens are, as they are shared.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::{Mapping, Value as Yaml};

use crate::config::{AdminConfig, Config, HttpConfig, PairsConfig, ReceiverConfig, Secret};

/// What the fleet takes from the base config for itself (the rest is read per pair).
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The base config as YAML, without `pairs`.
    pub base: Yaml,
    /// The base file's directory (relative paths in the base).
    pub base_dir: PathBuf,
    /// The state (shared by all pairs: one database, a tree per pair).
    pub state: crate::config::StateConfig,
    /// Where the one shared server listens.
    pub listen: std::net::SocketAddr,
    /// The public base URL of the shared server (МойСклад posts there).
    pub public_url: Option<String>,
    /// The shared server's limits.
    pub receiver: ReceiverConfig,
    /// The token of the fleet's own operator routes (`/metrics`, `/pairs`).
    pub operator_token: Secret,
    /// The token of the admin routes (`/admin/pairs/…`).
    pub admin_token: Secret,
    /// The pairs directory.
    pub pairs: PairsConfig,
}

/// The keys of the base a fleet reads for itself.
#[derive(Deserialize)]
struct Shared {
    state: crate::config::StateConfig,
    #[serde(default)]
    webhooks: SharedWebhooks,
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    receiver: ReceiverConfig,
    #[serde(default)]
    admin: AdminConfig,
    pairs: PairsConfig,
}

#[derive(Deserialize)]
struct SharedWebhooks {
    #[serde(default = "default_listen")]
    listen: std::net::SocketAddr,
    #[serde(default)]
    public_url: Option<String>,
}

impl Default for SharedWebhooks {
    fn default() -> Self {
        SharedWebhooks {
            listen: default_listen(),
            public_url: None,
        }
    }
}

fn default_listen() -> std::net::SocketAddr {
    crate::config::WebhookConfig::default().listen
}

/// What can be wrong with the fleet's config or a pair file.
#[derive(Debug, thiserror::Error)]
pub enum FleetConfigError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML, or not what is expected.
    #[error("{path}: {message}")]
    Invalid {
        /// The file (or the pair).
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Whether the config file at `path` declares pairs (a top-level `pairs:` key).
pub fn declares_pairs(path: &Path) -> Result<bool, FleetConfigError> {
    let text = read(path)?;
    let v: Yaml = serde_yaml::from_str(&text).map_err(|e| invalid(path, e.to_string()))?;
    Ok(v.get("pairs").is_some_and(|p| !p.is_null()))
}

fn read(path: &Path) -> Result<String, FleetConfigError> {
    std::fs::read_to_string(path).map_err(|source| FleetConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn invalid(path: &Path, message: String) -> FleetConfigError {
    FleetConfigError::Invalid {
        path: path.display().to_string(),
        message,
    }
}

impl FleetConfig {
    /// Reads the base config at `path` (with its `pairs:` section).
    pub fn load(path: &Path) -> Result<FleetConfig, FleetConfigError> {
        let text = read(path)?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self::from_yaml(&text, &base_dir, &env).map_err(|m| invalid(path, m))
    }

    /// [`FleetConfig::load`] from text.
    pub fn from_yaml(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FleetConfig, String> {
        let mut base: Yaml = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let shared: Shared = serde_yaml::from_value(base.clone()).map_err(|e| e.to_string())?;
        if let Some(m) = base.as_mapping_mut() {
            m.remove("pairs");
        }
        let rebase = |p: &Path| {
            if p.is_relative() {
                base_dir.join(p)
            } else {
                p.to_path_buf()
            }
        };
        let mut state = shared.state;
        state.path = rebase(&state.path);
        let mut pairs = shared.pairs;
        pairs.dir = rebase(&pairs.dir);
        let mut operator_token = shared.http.operator_token;
        if let Some(t) = env("SKLADSYNC_OPERATOR_TOKEN") {
            operator_token = Secret::new(t);
        }
        let mut admin_token = shared.admin.token;
        if let Some(t) = env("SKLADSYNC_ADMIN_TOKEN") {
            admin_token = Secret::new(t);
        }
        for (name, t) in [
            ("http.operator_token", &operator_token),
            ("admin.token", &admin_token),
        ] {
            if !t.is_empty() && t.expose().chars().count() < 16 {
                return Err(format!("{name} must be at least 16 characters"));
            }
        }
        shared.receiver.check()?;
        Ok(FleetConfig {
            base,
            base_dir: base_dir.to_path_buf(),
            state,
            listen: shared.http.listen.unwrap_or(shared.webhooks.listen),
            public_url: shared.webhooks.public_url,
            receiver: shared.receiver,
            operator_token,
            admin_token,
            pairs,
        })
    }

    /// The config of pair `id` from its pair file's text: the file merged over the base.
    pub fn pair_config(&self, id: &str, text: &str) -> Result<Config, String> {
        let mut pair: Yaml = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if pair.is_null() {
            pair = Yaml::Mapping(Mapping::new());
        }
        let Some(m) = pair.as_mapping_mut() else {
            return Err("a pair file is a mapping of config keys".into());
        };
        for key in ["state", "http", "receiver", "admin", "pairs"] {
            if m.contains_key(key) {
                return Err(format!(
                    "`{key}` is shared by all pairs: set it in the base config, not in a pair file"
                ));
            }
        }
        if let Some(w) = m.get("webhooks").and_then(Yaml::as_mapping) {
            for key in ["listen", "public_url"] {
                if w.contains_key(key) {
                    return Err(format!(
                        "`webhooks.{key}` is shared by all pairs (one server): set it in the base config"
                    ));
                }
            }
        }
        let own_icml_path = m
            .get("icml")
            .and_then(Yaml::as_mapping)
            .is_some_and(|i| i.contains_key("path"));
        let own_record_dir = m
            .get("record")
            .and_then(Yaml::as_mapping)
            .is_some_and(|r| r.contains_key("dir"));
        rebase_paths(m, &self.pairs.dir);
        let mut merged = self.base.clone();
        merge(&mut merged, pair);
        // Paths are absolute now (the pair's against the pairs directory, the base's against
        // the base's directory, below); the state path is the fleet's.
        let text = serde_yaml::to_string(&merged).map_err(|e| e.to_string())?;
        let shared_env = |k: &str| match k {
            "SKLADSYNC_OPERATOR_TOKEN" | "SKLADSYNC_ADMIN_TOKEN" => {
                std::env::var(k).ok().filter(|v| !v.is_empty())
            }
            _ => None,
        };
        let mut config = Config::from_yaml(&text, &self.base_dir, &shared_env)
            .map_err(|e| format!("pair {id}: {e}"))?;
        config.state = self.state.clone();
        config.pairs = None;
        // Files a pair writes are its own.
        if config.icml.enabled && !own_icml_path {
            return Err(format!(
                "pair {id}: icml.path must be set in the pair file (each pair writes its own catalogue)"
            ));
        }
        if !own_record_dir {
            let beside = self
                .state
                .path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("recordings")
                .join(id);
            config.record.dir = Some(beside);
        }
        Ok(config)
    }
}

/// Makes the relative paths of a pair file absolute against `dir`.
fn rebase_paths(m: &mut Mapping, dir: &Path) {
    let fix = |v: &mut Yaml| {
        if let Some(s) = v.as_str() {
            let p = Path::new(s);
            if p.is_relative() {
                *v = Yaml::String(dir.join(p).display().to_string());
            }
        }
    };
    if let Some(rules) = m.get_mut("rules").and_then(Yaml::as_mapping_mut) {
        for key in ["dir", "settings"] {
            if let Some(v) = rules.get_mut(key) {
                fix(v);
            }
        }
        if let Some(Yaml::Sequence(layers)) = rules.get_mut("layers") {
            layers.iter_mut().for_each(fix);
        }
    }
    for (section, key) in [("record", "dir"), ("icml", "path")] {
        if let Some(v) = m
            .get_mut(section)
            .and_then(Yaml::as_mapping_mut)
            .and_then(|s| s.get_mut(key))
        {
            fix(v);
        }
    }
}

/// Merges `over` into `base`: mappings key by key, anything else replaced.
fn merge(base: &mut Yaml, over: Yaml) {
    match (base, over) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "crm: {url: 'http://crm.example', api_key: base-key}\n\
        moysklad: {url: 'http://ms.example', login: base, password: base-pass}\n\
        rules: {dir: rules}\n\
        state: {path: state}\n\
        intervals: {crm_poll: 30s}\n\
        webhooks: {listen: '127.0.0.1:0'}\n\
        pairs: {dir: pairs}\n";

    fn fleet() -> FleetConfig {
        FleetConfig::from_yaml(BASE, Path::new("/etc/s"), &|_| None).expect("base")
    }

    #[test]
    fn a_pair_file_is_merged_over_the_base_with_its_own_paths() {
        let f = fleet();
        assert_eq!(f.pairs.dir, Path::new("/etc/s/pairs"));
        assert_eq!(f.state.path, Path::new("/etc/s/state"));
        let c = f
            .pair_config(
                "shop-1",
                "crm: {api_key: pair-key}\nrules: {layers: [mine]}\nintervals: {reconcile: 10s}\n",
            )
            .expect("pair");
        assert_eq!(c.crm.api_key.expose(), "pair-key");
        assert_eq!(c.crm.url, "http://crm.example");
        assert_eq!(c.moysklad.login.expose(), "base");
        assert_eq!(c.rules.dir, Path::new("/etc/s/rules"));
        assert_eq!(c.rules.layers, [PathBuf::from("/etc/s/pairs/mine")]);
        assert_eq!(c.intervals.crm_poll.0, std::time::Duration::from_secs(30));
        assert_eq!(c.intervals.reconcile.0, std::time::Duration::from_secs(10));
        assert_eq!(c.state.path, Path::new("/etc/s/state"));
        assert!(c.pairs.is_none());
    }

    #[test]
    fn what_is_shared_cannot_be_set_per_pair() {
        let f = fleet();
        for text in [
            "state: {path: x}",
            "http: {enabled: false}",
            "webhooks: {listen: '127.0.0.1:1'}",
            "admin: {token: aaaaaaaaaaaaaaaaaaaa}",
        ] {
            let e = f.pair_config("p", text).expect_err(text);
            assert!(e.contains("shared"), "{text}: {e}");
        }
        let e = f.pair_config("p", "- a list").expect_err("list");
        assert!(e.contains("mapping"), "{e}");
        let e = f
            .pair_config("p", "crm: {rate_limit: 0}")
            .expect_err("bad value");
        assert!(e.starts_with("pair p:"), "{e}");
        let e = f
            .pair_config("p", "icml: {enabled: true, secret: aaaaaaaaaaaaaaaaaaaa}")
            .expect_err("shared catalogue file");
        assert!(e.contains("icml.path"), "{e}");
    }

    #[test]
    fn recordings_of_a_pair_go_to_its_own_folder() {
        let c = fleet().pair_config("shop-1", "").expect("pair");
        assert_eq!(
            c.record.dir.as_deref(),
            Some(Path::new("/etc/s/recordings/shop-1"))
        );
        let c = fleet()
            .pair_config("shop-1", "record: {dir: mine}")
            .expect("pair");
        assert_eq!(
            c.record.dir.as_deref(),
            Some(Path::new("/etc/s/pairs/mine"))
        );
    }
}
