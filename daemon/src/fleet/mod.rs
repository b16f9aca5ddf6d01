//! Many account pairs in one runner: a **fleet** of per-pair daemons behind one HTTP server.
//!
//! A pair is a retailCRM account and a МойСклад account synced with each other. Each pair is
//! one [`Daemon`] with its own config (its pair file over the base config, see
//! [`config`]): credentials and API clients (so its own rate-limit budgets), rules layers and
//! settings, webhook secret, intervals, journal, links, inbox and plans (its own tree of the
//! state), its own worker and schedules (timers: an idle pair costs no thread). One pair's
//! slow API, failures or runaway rule hold only its own tasks: every pair has its own worker,
//! evaluations run on the blocking pool, and no lock is shared between pairs.
//!
//! What is shared: the one HTTP server (webhooks of every pair under `/pairs/<id>/…`), the
//! state database (a tree per pair), compiled rule sets (pairs whose rules, layers, settings
//! file and limits have the same content hash share one), the process.
//!
//! Pairs come from `<pairs.dir>/<id>.yaml` files; the directory is watched (and read again on
//! SIGHUP and `POST /admin/pairs/rescan`): a file added starts its pair, a file changed
//! restarts it with the new config, a file removed stops it. `PUT /admin/pairs/<id>` and
//! `DELETE /admin/pairs/<id>` (admin token) write and remove those files.
//!
//! Stopping a pair is what stopping a daemon is: the item in progress finishes between two
//! effects, queued work stays in its state for the next start. Before a pair starts, the
//! runner asks the store whether it may serve it ([`crate::state::acquire_pair`]); a lease
//! lost later stops the pair the same way.
//!
//! **Several runners, one database** (state in PostgreSQL): every runner starts every pair
//! of the directory; the daemon of a pair first takes the pair's lease
//! ([`Daemon::hosted_until`]), so a pair another runner serves waits in the background (one
//! lease query every third of the lease time at most; the wait is given up when its file
//! changes or goes away, or the fleet stops). A pair whose lease is lost (taken over after
//! this runner stalled or lost the database for a lease time) stops and at once waits for
//! the lease again, with a new state handle (the old one stays fenced). A МойСклад webhook for
//! a pair this runner waits for is checked and relayed through the shared state
//! (`Fleet::relay_webhook`); the serving runner queues relayed webhooks of all its pairs
//! with one query a second.

pub mod config;
mod http;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::daemon::{Daemon, DaemonError, Hosting};
use crate::state::{acquire_pair, open_pair_state, pair_id_ok};

pub use config::{declares_pairs, FleetConfig, FleetConfigError};

/// How long the pairs directory must be quiet before it is read again after a change.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// How often a runner on PostgreSQL looks for webhooks other runners relayed for the pairs it
/// serves (one query for all of them): the latency a relayed webhook adds at most.
const RELAY_POLL: Duration = Duration::from_secs(1);

/// How often a pair that failed to start is tried again (its file unchanged).
const RETRY_FAILED: Duration = Duration::from_secs(60);

/// What can stop the fleet from starting.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The base config or the pairs directory is not usable.
    #[error(transparent)]
    Config(#[from] FleetConfigError),
    /// The shared server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A pair that runs.
struct Running {
    daemon: Daemon,
    /// Its routes (under `/pairs/<id>` on the shared server).
    router: axum::Router,
    /// The digest of the pair file it was started from.
    digest: String,
    /// Stops it.
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<Result<(), DaemonError>>>>,
}

impl Running {
    /// Whether its daemon ended (stopped, or failed after starting).
    fn finished(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|t| t.is_finished())
    }
}

/// A pair that could not start (or stopped on an error), shown on `/pairs` and `/readyz`.
#[derive(Clone, Debug)]
struct Failed {
    digest: String,
    error: String,
    at: std::time::Instant,
}

pub(crate) struct Inner {
    config: FleetConfig,
    /// Where the shared server listens.
    addr: std::net::SocketAddr,
    public_url: String,
    running: std::sync::RwLock<BTreeMap<String, Arc<Running>>>,
    failed: Mutex<BTreeMap<String, Failed>>,
    /// Pairs being started (id → digest of their file, and what stops the start: it waits
    /// for the pair's lease while another runner holds the pair).
    starting: Mutex<BTreeMap<String, (String, watch::Sender<bool>)>>,
    /// Wakes the rescans: a pair ended on a lost lease, or gave up waiting for one.
    kick: tokio::sync::Notify,
    /// The configs of pairs waiting for their lease (another runner serves them): webhooks
    /// for them are relayed ([`Fleet::relay_webhook`]).
    waiting: Mutex<BTreeMap<String, crate::config::Config>>,
    /// The open state of every pair with a file: a pair restarted (its file changed) goes on
    /// with the same state handle, so nothing from before the restart (a request still in
    /// flight) writes through a second one.
    states: Mutex<BTreeMap<String, crate::state::SyncState>>,
    /// One rescan at a time.
    rescanning: tokio::sync::Mutex<()>,
    listener: Mutex<Option<tokio::net::TcpListener>>,
    stats: Arc<crate::daemon::ReceiverStats>,
}

/// The fleet. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

/// What one pair is doing, for `/pairs` and tests.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PairStatus {
    /// The pair id.
    pub id: String,
    /// Running.
    pub running: bool,
    /// Being started.
    pub starting: bool,
    /// Why it is not running.
    pub error: Option<String>,
    /// The version of its rules.
    pub rules_version: Option<String>,
}

impl Fleet {
    /// Reads the base config and binds the shared server; no pair runs yet.
    pub async fn new(config: FleetConfig) -> Result<Fleet, FleetError> {
        let addr = config.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| FleetError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| FleetError::Listen { addr, source })?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        if let Err(e) = std::fs::create_dir_all(&config.pairs.dir) {
            return Err(FleetConfigError::Read {
                path: config.pairs.dir.display().to_string(),
                source: e,
            }
            .into());
        }
        Ok(Fleet {
            inner: Arc::new(Inner {
                config,
                addr: local,
                public_url,
                running: Default::default(),
                failed: Default::default(),
                starting: Default::default(),
                kick: tokio::sync::Notify::new(),
                waiting: Default::default(),
                states: Default::default(),
                rescanning: tokio::sync::Mutex::new(()),
                listener: Mutex::new(Some(listener)),
                stats: Arc::default(),
            }),
        })
    }

    /// Where the shared server listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.inner.addr
    }

    /// The daemon of a running pair.
    pub fn pair(&self, id: &str) -> Option<Daemon> {
        self.running_pair(id).map(|r| r.daemon.clone())
    }

    fn running_pair(&self, id: &str) -> Option<Arc<Running>> {
        self.inner
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every pair known (running or failed), by id.
    pub fn pairs(&self) -> Vec<PairStatus> {
        let mut out: BTreeMap<String, PairStatus> = BTreeMap::new();
        for (id, r) in self
            .inner
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let finished = r.finished();
            out.insert(
                id.clone(),
                PairStatus {
                    id: id.clone(),
                    running: !finished,
                    starting: false,
                    error: finished.then(|| "stopped".to_string()),
                    rules_version: Some(r.daemon.rules_version()),
                },
            );
        }
        for (id, f) in self
            .inner
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.entry(id.clone()).or_insert_with(|| PairStatus {
                id: id.clone(),
                running: false,
                starting: false,
                error: Some(f.error.clone()),
                rules_version: None,
            });
        }
        for id in self
            .inner
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
        {
            let p = out.entry(id.clone()).or_insert_with(|| PairStatus {
                id: id.clone(),
                running: false,
                starting: true,
                error: None,
                rules_version: None,
            });
            p.starting = true;
        }
        out.into_values().collect()
    }

    /// The pair files in the directory: id → text. Files that are not `<id>.yaml` with a
    /// valid id are skipped (logged).
    fn read_dir(&self) -> BTreeMap<String, String> {
        let dir = &self.inner.config.pairs.dir;
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot read the pairs directory");
                return out;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            if !(ext == "yaml" || ext == "yml") || stem.starts_with('.') {
                continue;
            }
            if !pair_id_ok(stem) {
                tracing::warn!(file = %path.display(), "not a pair file name (<id>.yaml, id of a-z, 0-9, - and _): skipped");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    out.insert(stem.to_string(), text);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read a pair file: skipped")
                }
            }
        }
        out
    }

    /// Reads the pairs directory and makes the running pairs match it: new files start their
    /// pair (in the background: see [`Fleet::pairs`]), changed files restart it, removed
    /// files stop it. Returns the pairs' status.
    pub async fn rescan(&self) -> Vec<PairStatus> {
        let _one = self.inner.rescanning.lock().await;
        let files = self.read_dir();
        let running: Vec<(String, String, bool)> = self
            .inner
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, r)| (id.clone(), r.digest.clone(), r.finished()))
            .collect();
        // Stopped: removed, changed, or ended on their own.
        for (id, digest, finished) in &running {
            let wanted = files.get(id).map(|t| digest_of(t));
            if wanted.as_deref() != Some(digest.as_str()) || *finished {
                self.stop_pair(id).await;
            }
        }
        // Waiting for the lease of a pair whose file changed or went away: given up (the
        // changed file starts again, in this rescan or the next).
        for (id, (digest, stop)) in self
            .inner
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if files.get(id).map(|t| digest_of(t)).as_deref() != Some(digest.as_str()) {
                let _ = stop.send(true);
            }
        }
        self.inner
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| files.contains_key(id));
        // A pair whose file is gone lets go of its state (kept in the database).
        self.inner
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| files.contains_key(id));
        for (id, text) in files {
            let digest = digest_of(&text);
            if self.running_pair(&id).is_some() {
                continue;
            }
            let retry = self
                .inner
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .is_none_or(|f| f.digest != digest || f.at.elapsed() >= RETRY_FAILED);
            if !retry {
                continue;
            }
            // Started in the background, each on its own: a pair whose API is slow to answer
            // at start (the CRM time zone, webhook registration) holds no other pair.
            let (stop, stop_rx) = watch::channel(false);
            {
                let mut starting = self
                    .inner
                    .starting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if starting.contains_key(&id) {
                    continue;
                }
                starting.insert(id.clone(), (digest.clone(), stop));
            }
            let fleet = self.clone();
            tokio::spawn(async move {
                let started = fleet.start_pair(&id, &text, digest.clone(), stop_rx).await;
                fleet
                    .inner
                    .starting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if matches!(started, Ok(true)) {
                    fleet.write_status_file();
                }
                let mut failed = fleet.inner.failed.lock().unwrap_or_else(|p| p.into_inner());
                match started {
                    Ok(true) => {
                        failed.remove(&id);
                    }
                    Ok(false) => {
                        // Gave up waiting for the lease (file changed or removed, or the
                        // fleet stops): whatever the file says now is started by a rescan.
                        drop(failed);
                        fleet.inner.kick.notify_one();
                    }
                    Err(error) => {
                        tracing::error!(pair = %id, %error, "the pair cannot start");
                        failed.insert(
                            id,
                            Failed {
                                digest,
                                error,
                                at: std::time::Instant::now(),
                            },
                        );
                    }
                }
            });
        }
        self.write_status_file();
        self.pairs()
    }

    /// Writes `<state>.daemon.json` (owner-only): how `skladsync journal --pair ID` and
    /// `status --pair ID` reach each running pair while the fleet holds the state.
    fn write_status_file(&self) {
        let addr = self.inner.addr;
        let host = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let pairs: serde_json::Map<String, serde_json::Value> = self
            .inner
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(id, r)| {
                let path = r.daemon.status_path()?;
                Some((
                    id.clone(),
                    serde_json::Value::String(format!(
                        "http://{host}:{}/pairs/{id}{path}",
                        addr.port()
                    )),
                ))
            })
            .collect();
        let body = serde_json::json!({
            "pid": std::process::id(),
            "status_url": pairs.get(crate::state::DEFAULT_PAIR),
            "pairs": pairs,
        });
        let file = crate::daemon::status_file(&self.inner.config.state.path);
        if let Err(e) = crate::config::write_private(&file, body.to_string().as_bytes()) {
            tracing::warn!(path = %file.display(), error = %e, "cannot write the status file: `skladsync journal` needs --status-url while the fleet runs");
        }
    }

    /// Starts pair `id` from its file's text: `Ok(false)` when `stop` turned true while it
    /// waited for the pair's lease (PostgreSQL: another runner holds the pair; the wait costs
    /// one lease query every third of the lease time at most, see [`PairLease::take`]).
    ///
    /// [`PairLease::take`]: crate::state::lease::PairLease::take
    async fn start_pair(
        &self,
        id: &str,
        text: &str,
        digest: String,
        stop_wait: watch::Receiver<bool>,
    ) -> Result<bool, String> {
        let config = self.inner.config.pair_config(id, text)?;
        let Some(mut lease) = acquire_pair(&config.state, id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("another runner serves this pair".into());
        };
        let known = self
            .inner
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let state = match known {
            Some(s) => s,
            None => {
                let s = open_pair_state(&config.state, id)
                    .await
                    .map_err(|e| e.to_string())?;
                self.inner
                    .states
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_string(), s.clone());
                s
            }
        };
        let hosting = Hosting::Shared {
            pair: id.to_string(),
            addr: self.inner.addr,
            public_url: self.inner.public_url.clone(),
        };
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), config.clone());
        let hosted = Daemon::hosted_until(config, state, hosting, stop_wait).await;
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let daemon = match hosted {
            Ok(d) => d,
            Err(DaemonError::NotStarted) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        let router = daemon.pair_router();
        let (stop, mut stop_rx) = watch::channel(false);
        let pair = id.to_string();
        let d = daemon.clone();
        let fleet = self.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                tokio::select! {
                    _ = lease.lost() => {
                        tracing::warn!(%pair, "the lease on the pair is lost: stopping it");
                    }
                    _ = stop_rx.wait_for(|s| *s) => {}
                }
            };
            let r = d.run(shutdown).await;
            match &r {
                // Another runner took the pair over (this one stalled or lost the database
                // for a lease time): back to waiting for the lease at once.
                Err(DaemonError::LeaseLost) => fleet.inner.kick.notify_one(),
                Err(e) => tracing::error!(error = %e, "a pair stopped on an error"),
                Ok(()) => {}
            }
            r
        });
        tracing::info!(pair = %id, "pair started");
        self.inner
            .running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.to_string(),
                Arc::new(Running {
                    daemon,
                    router,
                    digest,
                    stop,
                    task: Mutex::new(Some(task)),
                }),
            );
        Ok(true)
    }

    /// Stops pair `id` (the item in progress finishes; queued work stays queued).
    async fn stop_pair(&self, id: &str) {
        let Some(r) = self
            .inner
            .running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        else {
            return;
        };
        let _ = r.stop.send(true);
        let task = r.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(task) = task else {
            return;
        };
        match task.await {
            Ok(Ok(())) => tracing::info!(pair = %id, "pair stopped"),
            Ok(Err(DaemonError::LeaseLost)) => {
                // Not a failure: the pair goes back to waiting for its lease (the next
                // rescan, woken at once). Its state handle is fenced by the lost lease for
                // good; a new one is opened for the next lease.
                tracing::info!(pair = %id, "pair stopped: its lease went to another runner");
                self.inner
                    .states
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
            }
            Ok(Err(e)) => {
                // A pair that ended on an error: kept as failed until its file changes (or
                // the next retry).
                self.inner
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        id.to_string(),
                        Failed {
                            digest: r.digest.clone(),
                            error: e.to_string(),
                            at: std::time::Instant::now(),
                        },
                    );
            }
            Err(e) => tracing::error!(pair = %id, error = %e, "pair task failed"),
        }
    }

    /// Writes the pair file of `id` (owner-only) after checking that it makes a valid config.
    pub fn put_pair_file(&self, id: &str, text: &str) -> Result<(), String> {
        if !pair_id_ok(id) {
            return Err(format!(
                "{id:?} is not a pair id (1 to 64 of a-z, 0-9, - and _)"
            ));
        }
        self.inner.config.pair_config(id, text)?;
        let path = self.inner.config.pairs.dir.join(format!("{id}.yaml"));
        // Written beside and renamed: the watcher never reads half a file.
        let tmp = self.inner.config.pairs.dir.join(format!(".{id}.yaml.new"));
        crate::config::write_private(&tmp, text.as_bytes()).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
    }

    /// Removes the pair file of `id`; `false` when there was none.
    pub fn remove_pair_file(&self, id: &str) -> Result<bool, String> {
        if !pair_id_ok(id) {
            return Ok(false);
        }
        let mut removed = false;
        for ext in ["yaml", "yml"] {
            let path = self.inner.config.pairs.dir.join(format!("{id}.{ext}"));
            match std::fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(removed)
    }

    /// Runs until `shutdown` completes: the shared server, the pairs, the directory watcher.
    /// At the end every pair stops the way a daemon does (queued work stays queued).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), FleetError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(listener) = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let app = http::router(self.clone());
            tasks.push(tokio::spawn(crate::daemon::serve_http(
                listener,
                app,
                self.inner.config.receiver.clone(),
                self.inner.stats.clone(),
                stop_rx.clone(),
            )));
        }
        tasks.push(self.spawn_rescans(stop_rx.clone()));
        if self.inner.config.state.backend == crate::config::StateBackend::Postgres {
            tasks.push(tokio::spawn(self.clone().drain_relayed(stop_rx.clone())));
        }
        let pairs = self.rescan().await;
        tracing::info!(
            addr = %self.inner.addr,
            pairs = pairs.len(),
            running = pairs.iter().filter(|p| p.running).count(),
            "skladsync fleet is running"
        );
        shutdown.await;
        tracing::info!("stopping every pair: items in progress finish; queued work stays queued");
        let _ = stop_tx.send(true);
        for (_, stop) in self
            .inner
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = stop.send(true);
        }
        let ids: Vec<String> = self
            .inner
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        // Stopped together: each finishes its item in progress.
        let mut stops = tokio::task::JoinSet::new();
        for id in ids {
            let f = self.clone();
            stops.spawn(async move { f.stop_pair(&id).await });
        }
        while stops.join_next().await.is_some() {}
        for t in tasks {
            let _ = t.await;
        }
        // Every pair stopped: the state database closes with the last handle.
        for (_, state) in
            std::mem::take(&mut *self.inner.states.lock().unwrap_or_else(|p| p.into_inner()))
        {
            if let Err(e) = state.flush() {
                tracing::error!(error = %e, "cannot flush a pair's state");
            }
        }
        let _ = std::fs::remove_file(crate::daemon::status_file(&self.inner.config.state.path));
        tracing::info!("stopped");
        Ok(())
    }

    /// Reads the pairs directory again when it changes (with `pairs.watch`), on SIGHUP (which
    /// also reloads every pair's rules), and every [`RETRY_FAILED`] (pairs that failed).
    fn spawn_rescans(&self, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watcher = if self.inner.config.pairs.watch {
            let handler = move |ev: notify::Result<notify::Event>| {
                if let Ok(ev) = ev {
                    if !ev.kind.is_access() {
                        let _ = tx.send(());
                    }
                }
            };
            match notify::recommended_watcher(handler) {
                Ok(mut w) => {
                    if let Err(e) =
                        w.watch(&self.inner.config.pairs.dir, RecursiveMode::NonRecursive)
                    {
                        tracing::error!(error = %e, "cannot watch the pairs directory: rescan by SIGHUP or POST /admin/pairs/rescan");
                    }
                    Some(w)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch the pairs directory: rescan by SIGHUP or POST /admin/pairs/rescan");
                    None
                }
            }
        } else {
            None
        };
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let fleet = self.clone();
        tokio::spawn(async move {
            let _watcher = watcher;
            loop {
                #[cfg(unix)]
                let hup_recv = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hup_recv = std::future::pending::<()>();
                let mut reload = false;
                tokio::select! {
                    got = rx.recv() => {
                        if got.is_none() { return }
                        // Debounce: until the directory is quiet.
                        loop {
                            tokio::select! {
                                got = rx.recv() => if got.is_none() { return },
                                _ = tokio::time::sleep(DEBOUNCE) => break,
                                _ = stop.changed() => return,
                            }
                        }
                    }
                    _ = hup_recv => reload = true,
                    _ = fleet.inner.kick.notified() => {}
                    _ = tokio::time::sleep(RETRY_FAILED) => {}
                    _ = stop.changed() => return,
                }
                if reload {
                    let daemons: Vec<Daemon> = fleet
                        .inner
                        .running
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .values()
                        .map(|r| r.daemon.clone())
                        .collect();
                    for d in daemons {
                        if let Err(e) = d.reload("SIGHUP").await {
                            tracing::error!(pair = ?d.pair(), error = %e, "reload failed");
                        }
                    }
                }
                fleet.rescan().await;
            }
        })
    }
}

impl Fleet {
    /// A МойСклад webhook for pair `id`, which this runner does not serve (another runner
    /// holds its lease; PostgreSQL): checked as the serving runner checks it (the pair's
    /// secret, from its config or the shared state, and instance id) and kept in the shared
    /// state ([`SyncState::relay`](crate::state::SyncState::relay)) for the serving runner to
    /// queue. `None`: this runner knows no such waiting pair (the caller answers 404).
    pub(crate) async fn relay_webhook(
        &self,
        id: &str,
        secret: &str,
        instance: Option<&str>,
        body: &[u8],
        request_id: Option<String>,
    ) -> Option<axum::http::StatusCode> {
        use axum::http::StatusCode;
        let config = self
            .inner
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()?;
        if config.state.backend != crate::config::StateBackend::Postgres {
            // sled: the pair is starting in this very runner; nothing is shared to relay to.
            return Some(StatusCode::SERVICE_UNAVAILABLE);
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Some(StatusCode::BAD_REQUEST);
        };
        let pair = id.to_string();
        let secret = secret.to_string();
        let instance = instance.map(str::to_string);
        let relayed =
            tokio::task::spawn_blocking(move || -> Result<bool, crate::state::StateError> {
                let db =
                    crate::state::PgDatabase::open(config.state.url.expose(), config.state.pool)?;
                // A store bound to no lease: the relay key is written by no other runner.
                let state = crate::state::SyncState::new(Arc::new(db.store(&pair)));
                let expected = if config.webhooks.secret.is_empty() {
                    match state.misc("webhook_secret")? {
                        Some(serde_json::Value::String(s)) => s,
                        _ => return Ok(false),
                    }
                } else {
                    config.webhooks.secret.expose().to_string()
                };
                if secret.is_empty() || !same(&secret, &expected) {
                    return Ok(false);
                }
                if let Some(i) = &instance {
                    if state.misc("instance_id")? != Some(serde_json::Value::String(i.clone())) {
                        return Ok(false);
                    }
                }
                state.relay(&crate::state::Relayed {
                    body,
                    request_id,
                    at: crate::daemon::now_ms(),
                })?;
                Ok(true)
            })
            .await;
        Some(match relayed {
            Ok(Ok(true)) => {
                tracing::debug!(pair = %id, "webhook for a pair another runner serves: relayed");
                StatusCode::OK
            }
            Ok(Ok(false)) => StatusCode::NOT_FOUND,
            Ok(Err(e)) => {
                tracing::error!(pair = %id, error = %e, "cannot relay a webhook; МойСклад will retry");
                StatusCode::SERVICE_UNAVAILABLE
            }
            Err(e) => {
                tracing::error!(pair = %id, error = %e, "relaying a webhook failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        })
    }

    /// Queues the webhooks other runners relayed for the pairs this one serves: one query for
    /// all of them every [`RELAY_POLL`]; each queued, then removed under the pair's lease.
    async fn drain_relayed(self, mut stop: watch::Receiver<bool>) {
        let state = &self.inner.config.state;
        let (url, pool) = (state.url.expose().to_string(), state.pool);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RELAY_POLL) => {}
                _ = stop.changed() => return,
            }
            let serving: BTreeMap<String, Daemon> = self
                .inner
                .running
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, r)| !r.finished())
                .map(|(id, r)| (id.clone(), r.daemon.clone()))
                .collect();
            if serving.is_empty() {
                continue;
            }
            let drained = tokio::task::spawn_blocking({
                let (url, ids) = (url.clone(), serving.keys().cloned().collect::<Vec<_>>());
                move || -> Result<usize, crate::state::StateError> {
                    let db = crate::state::PgDatabase::open(&url, pool)?;
                    let rows = db.scan_pairs(&ids, crate::state::RELAY_PREFIX)?;
                    let mut n = 0;
                    for (pair, key, value) in rows {
                        let Some(d) = serving.get(&pair) else { continue };
                        match serde_json::from_slice::<crate::state::Relayed>(&value) {
                            Ok(r) => match d.queue_notification(&r.body, r.request_id.as_deref()) {
                                Ok(Some(_)) => {}
                                // The inbox full: left for a later round.
                                Ok(None) => continue,
                                Err(e) => {
                                    tracing::warn!(%pair, error = %e, "cannot queue a relayed webhook: kept for the next round");
                                    continue;
                                }
                            },
                            Err(e) => {
                                tracing::warn!(%pair, error = %e, "a relayed webhook is unreadable: dropped (the reconciliation poll finds its change)");
                            }
                        }
                        // Queued (or unreadable): removed; a crash before this queues it
                        // again, which the requestId dedupe or the subject merge absorbs.
                        if let Err(e) = d.state().unrelay(&key) {
                            tracing::warn!(%pair, error = %e, "cannot remove a relayed webhook");
                        }
                        n += 1;
                    }
                    Ok(n)
                }
            })
            .await;
            match drained {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(webhooks = n, "relayed webhooks queued"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the relayed webhooks"),
                Err(e) => tracing::warn!(error = %e, "reading the relayed webhooks failed"),
            }
        }
    }
}

/// Constant-time comparison of two secrets.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A digest of a pair file's text (a changed file restarts its pair).
fn digest_of(text: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, text.as_bytes())
        .simple()
        .to_string()
}
