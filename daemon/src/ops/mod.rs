//! What the operator commands (`skladsync journal`, `status`, `relink`) read.
//!
//! # Where the journal and the status come from
//!
//! sled lets one process open a state directory. So:
//!
//! 1. `--status-url URL` given: the running daemon's `GET /status/<secret>` at that URL;
//! 2. else the state directory (`state.path` of the config, or `--state`) is opened
//!    read-only in spirit (nothing is written) and closed again at once;
//! 3. when it is in use (a daemon runs), the daemon's own address: `skladsync run` writes
//!    `<state>.daemon.json` (owner-only, beside the state directory) with the URL of its
//!    `/status/<secret>` while it runs, and removes it at a clean stop. A daemon that runs
//!    without an HTTP listener (webhooks off) cannot be read while it runs.
//!
//! Either way the result is the same JSON shape as `/status` (`journal`, `waiting`,
//! `rules_version`, `rules_since`, `cursors`, …; counters only from a running daemon), with
//! `source` saying where it came from.

pub mod relink;

use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::config::JournalConfig;
use crate::state::{JournalLimits, StateError, SyncState};

/// What can go wrong reading the journal or the status.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The config cannot be read.
    #[error("{0}")]
    Config(String),
    /// The state cannot be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// The daemon cannot be reached.
    #[error("the running daemon at {url}: {why}")]
    Http {
        /// Where (the secret path segment hidden).
        url: String,
        /// Why.
        why: String,
    },
    /// The daemon holds the state and says nowhere how to reach it.
    #[error("the state directory {0} is in use by a running daemon, and it has no status address (it runs without an HTTP listener, or an older version): pass --status-url, or stop the daemon")]
    NoAddress(String),
}

/// Where the operator commands read from.
#[derive(Clone, Debug)]
pub struct Target {
    /// The state directory.
    pub state: PathBuf,
    /// The running daemon's `/status/<secret>` URL, when given.
    pub status_url: Option<String>,
    /// How much journal is kept (the config's `journal:`).
    pub limits: JournalLimits,
    /// The account pair (`default`: a single-pair runner's).
    pub pair: String,
    /// The config keeps the state in PostgreSQL (`state.backend: postgres`): the status is
    /// read from the running daemon (its status file beside `state.path`, or `--status-url`).
    pub postgres: bool,
}

impl Target {
    /// Reads only what is needed from a runner config (no credentials are needed): the state
    /// directory and the journal limits. `state` overrides the config's state directory.
    pub fn from_config(
        config: Option<&Path>,
        state: Option<&Path>,
        status_url: Option<String>,
    ) -> Result<Target, OpsError> {
        let mut limits = JournalConfig::default().limits();
        let mut state_dir = state.map(Path::to_path_buf);
        let mut postgres = false;
        if let Some(path) = config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| OpsError::Config(format!("cannot read {}: {e}", path.display())))?;
            let doc: serde_yaml::Value = serde_yaml::from_str(&text)
                .map_err(|e| OpsError::Config(format!("{}: {e}", path.display())))?;
            if let Some(j) = doc.get("journal") {
                let j: JournalConfig = serde_yaml::from_value(j.clone())
                    .map_err(|e| OpsError::Config(format!("{}: journal: {e}", path.display())))?;
                limits = j.limits();
            }
            postgres = doc
                .get("state")
                .and_then(|s| s.get("backend"))
                .and_then(serde_yaml::Value::as_str)
                == Some("postgres");
            if state_dir.is_none() {
                let p = doc
                    .get("state")
                    .and_then(|s| s.get("path"))
                    .and_then(serde_yaml::Value::as_str)
                    .ok_or_else(|| {
                        OpsError::Config(format!("{}: no state.path", path.display()))
                    })?;
                let p = PathBuf::from(p);
                let base = path.parent().unwrap_or_else(|| Path::new("."));
                state_dir = Some(if p.is_relative() { base.join(p) } else { p });
            }
        }
        let state = state_dir
            .ok_or_else(|| OpsError::Config("give --config FILE or --state DIR".to_string()))?;
        Ok(Target {
            state,
            status_url,
            limits,
            pair: crate::state::DEFAULT_PAIR.to_string(),
            postgres,
        })
    }

    /// The status as `/status` shows it, from the daemon or the state directory.
    pub async fn snapshot(&self) -> Result<Json, OpsError> {
        if let Some(url) = &self.status_url {
            return fetch(url).await;
        }
        let read = if self.postgres {
            // The daemon holding the pair answers (no credentials are read here).
            Err(StateError::Damaged {
                path: self.state.display().to_string(),
                problem: "is in use by another process (the state is in PostgreSQL)".into(),
                remedy: String::new(),
            })
        } else {
            read_pair_state(&self.state, &self.pair, self.limits)
        };
        match read {
            Ok(v) => Ok(v),
            Err(e) if e.is_in_use() => {
                let file = crate::daemon::status_file(&self.state);
                let written = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Json>(&t).ok())
                    .unwrap_or(Json::Null);
                // A fleet lists its pairs (`pairs`); a single-pair daemon is `default`.
                let url = written
                    .get("pairs")
                    .and_then(|p| p.get(&self.pair))
                    .or_else(|| {
                        (self.pair == crate::state::DEFAULT_PAIR)
                            .then(|| written.get("status_url"))
                            .flatten()
                    })
                    .and_then(Json::as_str)
                    .map(String::from)
                    .ok_or_else(|| OpsError::NoAddress(self.state.display().to_string()))?;
                fetch(&url).await
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The URL with its secret path segment hidden (for messages).
fn shown(url: &str) -> String {
    match url.rfind("/status/") {
        Some(i) => format!("{}/status/<secret>", &url[..i]),
        None => url.to_string(),
    }
}

async fn fetch(url: &str) -> Result<Json, OpsError> {
    let err = |why: String| OpsError::Http {
        url: shown(url),
        why,
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("answered {}", resp.status())));
    }
    let mut v: Json = resp
        .json()
        .await
        .map_err(|e| err(e.without_url().to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.insert("source".into(), json!("daemon"));
    }
    Ok(v)
}

/// The status built from the state directory (opened, read, closed).
pub fn read_state(path: &Path, limits: JournalLimits) -> Result<Json, StateError> {
    read_pair_state(path, crate::state::DEFAULT_PAIR, limits)
}

/// [`read_state`] of one pair of a multi-pair runner's state.
pub fn read_pair_state(path: &Path, pair: &str, limits: JournalLimits) -> Result<Json, StateError> {
    if !path.join("db").is_file() {
        return Err(StateError::Damaged {
            path: path.display().to_string(),
            problem: "holds no state (no `db` file)".into(),
            remedy: "Check state.path of the config, or --state.".into(),
        });
    }
    let state = if pair == crate::state::DEFAULT_PAIR {
        SyncState::open(path)?
    } else {
        crate::state::open_pair_state_blocking(path, pair)?
    };
    let journal = state.journal_entries(limits, crate::daemon::now_ms())?;
    let inbox = state.inbox()?;
    let cursors = state.cursors()?;
    let mut links: std::collections::BTreeMap<String, u64> = Default::default();
    for l in state.links()? {
        *links.entry(l.kind).or_default() += 1;
    }
    let rules = state.misc("rules_version")?.unwrap_or(Json::Null);
    Ok(json!({
        "source": "state",
        "journal": journal,
        "waiting": inbox.iter().map(|(seq, i)| json!({
            "seq": seq, "subject": i.work.subject(), "attempts": i.attempts,
            "not_before": i.not_before, "last_error": i.last_error,
            "plan": i.plan, "parked": i.parked,
        })).collect::<Vec<_>>(),
        "waiting_count": inbox.len(),
        "rules_version": rules.get("version"),
        "rules_since": rules.get("since"),
        "cursors": cursors,
        "links_by_kind": links,
    }))
}
