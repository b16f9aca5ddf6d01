//! Hot reload of the rules and settings: on SIGHUP, on `POST /admin/reload`, and (opt-in,
//! `rules.watch`) when one of their files changes.
//!
//! A reload loads and checks the rules and settings exactly as `skladsync check` does. A
//! clean set replaces the live one **between two items**: the swap waits for the item in
//! progress, and an item evaluated from then on sees the new set. A plan already recorded
//! keeps applying as recorded (it carries the version of the set that made it). A set with
//! errors is refused: the diagnostics (`file:line:col`) are logged and journalled
//! (`RULES_REFUSED`) and the old set keeps running. A new version is journalled
//! (`RULES_LOADED`), and work parked under the old version is tried again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use skladsync_engine::{Diagnostics, RuleSet, Value};
use tokio::sync::watch;

use crate::config::Config;
use crate::state::Work;

use super::{now_ms, version, Daemon, DaemonError};

/// The rule set in use, with what is derived from it.
pub(crate) struct Live {
    /// The rules.
    pub rules: Arc<RuleSet>,
    /// The settings the rules see (with `connection` filled in by the runner).
    pub settings: Value,
    /// The events some rule listens to.
    pub listened: BTreeSet<String>,
    /// Content hash of the rule files, the settings file, the layers and the limits.
    pub version: String,
    /// When this version became live (unix ms).
    pub since: i64,
}

impl Live {
    /// The live set made of loaded rules (shared with the other pairs that use the same
    /// version: see [`load_shared`]), with the runner's `connection` settings.
    pub fn shared(rules: Arc<RuleSet>, connection: &Json, version: String, since: i64) -> Live {
        let settings = rules.settings_with(&super::from_json(connection));
        let listened = rules
            .rules()
            .into_iter()
            .flat_map(|r| r.on.into_iter())
            .collect();
        Live {
            rules,
            settings,
            listened,
            version,
            since,
        }
    }
}

/// The version (content hash) of the rules and settings the config names.
pub(crate) fn version_of(config: &Config) -> String {
    let settings_path = config.settings_path();
    let limits = &config.limits;
    let limits = format!("{} {}", limits.max_effects, limits.max_eval_bytes.0);
    let mut v = version::rules_version(&config.rules.dir, settings_path.as_deref(), &limits);
    // A changed layer is a change of the rules too (parked work is evaluated again).
    for layer in &config.rules.layers {
        v.push('+');
        v.push_str(&version::rules_version(layer, None, ""));
    }
    v
}

/// Loads and checks the rules and settings the config names (as `skladsync check` does).
pub(crate) fn load(config: &Config) -> Result<(RuleSet, Diagnostics), Diagnostics> {
    let settings_path = config.settings_path();
    RuleSet::load_layers(
        &config.rules.dir,
        &config.rules.layers,
        settings_path.as_deref(),
    )
}

/// The compiled rule sets in use in this process, by version: the pairs of a fleet that use
/// the same rules, layers, settings file and limits share one.
static COMPILED: std::sync::Mutex<
    Option<std::collections::HashMap<String, std::sync::Weak<RuleSet>>>,
> = std::sync::Mutex::new(None);

/// [`load`], shared by version `version` (see [`version_of`]): a set another pair already
/// compiled from the same files is reused (its warnings were logged when it was loaded).
pub(crate) fn load_shared(config: &Config, version: &str) -> Result<Arc<RuleSet>, Diagnostics> {
    let cached = |version: &str| {
        let mut map = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
        let map = map.get_or_insert_with(Default::default);
        map.retain(|_, w| w.strong_count() > 0);
        map.get(version).and_then(std::sync::Weak::upgrade)
    };
    if let Some(rules) = cached(version) {
        return Ok(rules);
    }
    let (rules, warnings) = load(config)?;
    if !warnings.is_empty() {
        tracing::warn!("rule warnings:\n{}", warnings.render(false));
    }
    let rules = Arc::new(rules);
    let mut map = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
    let map = map.get_or_insert_with(Default::default);
    // Another pair may have compiled the same version meanwhile: keep the first.
    if let Some(first) = map.get(version).and_then(std::sync::Weak::upgrade) {
        return Ok(first);
    }
    map.insert(version.to_string(), Arc::downgrade(&rules));
    Ok(rules)
}

/// One line per diagnostic: `file:line:col error[CODE]: message`.
pub(crate) fn diagnostic_lines(d: &Diagnostics) -> Vec<String> {
    d.items
        .iter()
        .map(|x| {
            let sev = if x.is_error() { "error" } else { "warning" };
            format!("{} {sev}[{}]: {}", x.position(), x.code, x.message)
        })
        .collect()
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new version is live.
    Loaded {
        /// The version before.
        from: String,
        /// The version now live.
        to: String,
    },
    /// The files load to the version already live: nothing changed.
    Unchanged {
        /// The live version.
        version: String,
    },
    /// The set has errors: refused, the old set keeps running.
    Refused {
        /// The live version (unchanged).
        version: String,
        /// `file:line:col error[CODE]: message`, one per diagnostic.
        diagnostics: Vec<String>,
    },
}

impl ReloadOutcome {
    /// As JSON (the answer of `POST /admin/reload`).
    pub fn to_json(&self) -> Json {
        match self {
            ReloadOutcome::Loaded { from, to } => {
                json!({"outcome": "loaded", "from": from, "version": to})
            }
            ReloadOutcome::Unchanged { version } => {
                json!({"outcome": "unchanged", "version": version})
            }
            ReloadOutcome::Refused {
                version,
                diagnostics,
            } => json!({"outcome": "refused", "version": version, "diagnostics": diagnostics}),
        }
    }
}

/// The last refused reload, for `/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Refusal {
    /// When (unix ms).
    pub at: i64,
    /// What asked for the reload.
    pub trigger: String,
    /// The diagnostics.
    pub diagnostics: Vec<String>,
}

impl Daemon {
    /// The rule set in use now (a snapshot: a reload does not change it under the caller).
    pub(crate) fn live(&self) -> Arc<Live> {
        self.inner
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether this daemon evaluates with the very rule set `other` uses (pairs of a fleet
    /// whose rules have the same version share one compiled set).
    pub fn shares_rules_with(&self, other: &Daemon) -> bool {
        Arc::ptr_eq(&self.live().rules, &other.live().rules)
    }

    /// When the live version became live (unix ms).
    pub fn rules_since(&self) -> i64 {
        self.live().since
    }

    /// The last refused reload, if any since the start.
    pub(crate) fn last_refusal(&self) -> Option<Refusal> {
        self.inner
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads and checks the rules and settings again; a clean set with a new version
    /// replaces the live one between two items, a set with errors is refused (journalled,
    /// the old set keeps running). `trigger` says what asked (`SIGHUP`, `http`, `watch`).
    pub async fn reload(&self, trigger: &str) -> Result<ReloadOutcome, DaemonError> {
        // One reload at a time.
        let _one = self.inner.reloading.lock().await;
        let config = self.inner.config.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let version = version_of(&config);
            (load_shared(&config, &version), version)
        })
        .await;
        let (loaded, version) = match loaded {
            Ok(x) => x,
            Err(e) => {
                return Err(DaemonError::Rules(format!(
                    "loading the rules stopped: {e}"
                )));
            }
        };
        let current = self.live();
        let rules = match loaded {
            Ok(x) => x,
            Err(diags) => {
                let lines = diagnostic_lines(&diags);
                tracing::error!(
                    %trigger,
                    version = %current.version,
                    "the changed rules do not load; the old rules keep running:\n{}",
                    diags.render(false)
                );
                let (errors, _) = diags.counts();
                let text = format!(
                    "rules refused ({trigger}): {errors} error(s); version {} keeps running\n{}",
                    current.version,
                    lines.join("\n")
                );
                self.runner_journal(
                    "RULES_REFUSED",
                    "error",
                    &text,
                    json!({"rules": "refused"}),
                    json!({"trigger": trigger, "diagnostics": lines, "live": current.version}),
                )?;
                *self.inner.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(Refusal {
                    at: now_ms(),
                    trigger: trigger.to_string(),
                    diagnostics: lines.clone(),
                });
                return Ok(ReloadOutcome::Refused {
                    version: current.version.clone(),
                    diagnostics: lines,
                });
            }
        };
        *self.inner.refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if version == current.version {
            tracing::info!(%trigger, %version, "rules reloaded: no change");
            return Ok(ReloadOutcome::Unchanged { version });
        }
        let live = Live::shared(rules, &self.inner.connection, version.clone(), now_ms());
        {
            // Between two items: the item in progress (and its plan) finishes first, and the
            // stock pass in flight in its lane (no new one starts while a reload waits); a
            // wave of orders takes no new one meanwhile.
            struct Waiting<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Waiting<'_> {
                fn drop(&mut self) {
                    self.0.store(false, std::sync::atomic::Ordering::SeqCst);
                }
            }
            self.inner
                .reload_waiting
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let waiting = Waiting(&self.inner.reload_waiting);
            // The lane first (the worker goes on meanwhile), then the worker's turn; nothing
            // that holds the worker's turn waits for the lane, so no deadlock.
            let _lane = self.inner.stock_lane.lock().await;
            let _between = self.inner.processing.lock().await;
            drop(waiting);
            *self.inner.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        }
        tracing::info!(%trigger, from = %current.version, to = %version, "new rules loaded");
        self.rules_changed(&current.version, trigger)?;
        // The settings may have changed: rules listening to `settings.saved` see it.
        if self.listens("settings.saved") {
            self.enqueue(vec![Work::SettingsSaved])?;
        }
        Ok(ReloadOutcome::Loaded {
            from: current.version.clone(),
            to: version,
        })
    }

    /// Records a new live version: the `RULES_LOADED` journal entry, the version and its time
    /// in the state, parked work unparked.
    pub(super) fn rules_changed(&self, from: &str, trigger: &str) -> Result<(), DaemonError> {
        let live = self.live();
        let state = &self.inner.state;
        state.set_misc(
            "rules_version",
            &json!({"version": live.version, "since": live.since}),
        )?;
        let text = if from.is_empty() {
            format!("rules version {} loaded ({trigger})", live.version)
        } else {
            format!(
                "rules version {} loaded ({trigger}); it replaces {from}",
                live.version
            )
        };
        self.runner_journal(
            "RULES_LOADED",
            "info",
            &text,
            json!({"rules_version": live.version}),
            json!({"trigger": trigger, "previous": from}),
        )?;
        let unparked = state.unpark_changed(&live.version, now_ms())?;
        if unparked > 0 {
            tracing::info!(unparked, "the rules changed: parked work is tried again");
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// Reloads on every SIGHUP until `stop`. The handler is installed before this returns
    /// (a SIGHUP sent once the daemon said it runs never kills it).
    pub(super) fn spawn_sighup(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut stop = stop;
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to SIGHUP: reload by HTTP or file watching only");
                    return None;
                }
            };
            let d = self.clone();
            Some(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        got = hup.recv() => {
                            if got.is_none() {
                                return;
                            }
                            if let Err(e) = d.reload("SIGHUP").await {
                                tracing::error!(error = %e, "reload failed");
                            }
                        }
                        _ = stop.changed() => return,
                    }
                }
            }))
        }
        #[cfg(not(unix))]
        {
            let _ = stop;
            None
        }
    }

    /// With `rules.watch`, reloads when a rule or settings file changes, once the files
    /// have been quiet for `rules.watch_debounce`.
    pub(super) fn spawn_watcher(
        &self,
        mut stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        use notify::{RecursiveMode, Watcher};
        let cfg = &self.inner.config.rules;
        if !cfg.watch {
            return None;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let handler = move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if !ev.kind.is_access() && ev.paths.iter().any(|p| watched_file(p)) {
                    let _ = tx.send(());
                }
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the rule files: reload by SIGHUP or HTTP");
                return None;
            }
        };
        let mut paths: Vec<PathBuf> = vec![cfg.dir.clone()];
        paths.extend(cfg.layers.iter().cloned());
        if let Some(s) = self.inner.config.settings_path() {
            // The directory of the settings file (editors replace files by renaming).
            if let Some(parent) = s.parent() {
                paths.push(parent.to_path_buf());
            }
        }
        paths.sort();
        paths.dedup();
        for p in &paths {
            if let Err(e) = watcher.watch(p, RecursiveMode::Recursive) {
                tracing::error!(path = %p.display(), error = %e, "cannot watch");
            }
        }
        let debounce = cfg.watch_debounce.0.max(Duration::from_millis(10));
        let d = self.clone();
        Some(tokio::spawn(async move {
            let _watcher = watcher;
            loop {
                tokio::select! {
                    got = rx.recv() => if got.is_none() { return },
                    _ = stop.changed() => return,
                }
                // Debounce: wait until no change came for `debounce`.
                loop {
                    tokio::select! {
                        got = rx.recv() => if got.is_none() { return },
                        _ = tokio::time::sleep(debounce) => break,
                        _ = stop.changed() => return,
                    }
                }
                if let Err(e) = d.reload("watch").await {
                    tracing::error!(error = %e, "reload failed");
                }
            }
        }))
    }
}

/// Whether a changed path is a rule or settings file (YAML), not an editor's swap file.
fn watched_file(p: &std::path::Path) -> bool {
    p.extension().is_some_and(|x| x == "yaml" || x == "yml")
}
