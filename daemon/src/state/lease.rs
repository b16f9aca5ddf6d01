//! A runner's lease on one pair (PostgreSQL): taken before the runner works on the pair,
//! renewed every third of the lease time, let go at a clean stop; lost when another runner
//! took the pair over after the lease expired (this runner stalled or could not reach the
//! database for a whole lease time). See [`super::PgStore`] for the fencing that makes a lost
//! lease harmless: a store whose lease was taken over cannot commit.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;

use super::{LeaseAttempt, PgStore, StateError, SyncState};

/// This machine's name in lease holders: `SKLADSYNC_RUNNER_HOST` when set (containers of
/// several machines that share one host name, whose process ids mean nothing to each other),
/// else the host name.
fn host() -> String {
    if let Some(h) = std::env::var("SKLADSYNC_RUNNER_HOST")
        .ok()
        .map(|h| h.trim().replace('/', "_"))
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

/// This process's name as a lease holder: `<host>/<pid>/<random>` (a runner restarted on
/// the same host is another holder).
pub fn runner_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{}/{}/{}", host(), std::process::id(), &random[..8])
    })
}

/// Whether `holder` names a runner of this machine whose process is gone (killed, crashed):
/// its lease need not be waited out. A process id in use by this very process (a container
/// restarted with the same pid) is gone too, the random part telling them apart; on systems
/// without `/proc` nothing is known to be gone.
pub fn holder_is_gone(holder: &str) -> bool {
    let mut parts = holder.splitn(3, '/');
    let (Some(h), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if h != host() || holder == runner_id() || !std::path::Path::new("/proc/self").exists() {
        return false;
    }
    pid == std::process::id() || !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A lease held on a pair.
#[derive(Debug)]
pub struct PairLease {
    store: PgStore,
    ttl: Duration,
    /// `true` once the lease is lost.
    lost: watch::Receiver<bool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl PairLease {
    /// Takes the lease of the state's pair for this process ([`runner_id`]), waiting while
    /// another runner holds it; `Ok(None)` when `stop` turned true first, or when the state
    /// is not a PostgreSQL one (sled: one runner per directory, no lease needed).
    pub async fn take(
        state: &SyncState,
        ttl: Duration,
        stop: watch::Receiver<bool>,
    ) -> Result<Option<PairLease>, StateError> {
        Self::take_as(state, runner_id(), ttl, stop).await
    }

    /// Like [`PairLease::take`], for a holder of another name (tests of two runners in one
    /// process).
    pub async fn take_as(
        state: &SyncState,
        holder: &str,
        ttl: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Option<PairLease>, StateError> {
        let Some(store) = state.pg().cloned() else {
            return Ok(None);
        };
        let mut told = false;
        let mut unreachable = false;
        let mut gone: Option<String> = None;
        loop {
            // One query a try, on the blocking pool (a standby runner waits on many pairs at
            // once; none of them holds a runtime thread for its round trip).
            let attempt = {
                let (s, h, g) = (store.clone(), holder.to_string(), gone.clone());
                tokio::task::spawn_blocking(move || s.acquire_from(&h, ttl, g.as_deref()))
                    .await
                    .unwrap_or_else(|e| Err(StateError::Db(format!("lease query failed: {e}"))))
            };
            let attempt = match attempt {
                Ok(a) => a,
                Err(e) => {
                    // The database out of reach (restarting, a network cut): the pair is
                    // not ours either way; tried again every third of the lease time.
                    if !unreachable {
                        tracing::warn!(pair = store.pair(), error = %e, "cannot ask for the lease of the pair: trying again");
                        unreachable = true;
                    }
                    if wait_or_stop(&mut stop, ttl / 3).await {
                        return Ok(None);
                    }
                    continue;
                }
            };
            unreachable = false;
            match attempt {
                LeaseAttempt::Taken(fence) => {
                    tracing::info!(
                        pair = store.pair(),
                        epoch = fence.epoch,
                        holder,
                        "lease taken"
                    );
                    let (tx, lost) = watch::channel(false);
                    let renewal = tokio::spawn(renew(store.clone(), ttl, tx));
                    return Ok(Some(PairLease {
                        store,
                        ttl,
                        lost,
                        renewal,
                    }));
                }
                LeaseAttempt::Held {
                    holder: other,
                    expires_in_ms,
                } => {
                    if holder_is_gone(&other) && gone.as_deref() != Some(other.as_str()) {
                        tracing::info!(pair = store.pair(), holder = %other, "the runner holding the lease is gone: taking the pair over");
                        gone = Some(other);
                        continue;
                    }
                    if !told {
                        tracing::info!(
                            pair = store.pair(),
                            holder = %other,
                            expires_in_ms,
                            "another runner holds the lease of the pair: waiting for it"
                        );
                        told = true;
                    }
                    let wait = Duration::from_millis(u64::try_from(expires_in_ms).unwrap_or(0))
                        .clamp(Duration::from_millis(200), ttl / 3);
                    if wait_or_stop(&mut stop, wait).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Turns `true` when the lease is lost (taken over, or not renewed for a whole lease
    /// time); the store refuses writes from then on.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// The lease time.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Stops renewing and lets go of the lease: another runner may take the pair at once.
    pub fn release(self) {
        self.renewal.abort();
        if let Err(e) = self.store.release() {
            tracing::warn!(pair = self.store.pair(), error = %e, "the lease could not be let go (it expires by itself)");
        }
    }
}

impl Drop for PairLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// Sleeps `wait`; `true` when `stop` turned true first (a stop whose sender is gone never
/// fires).
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    let stopped = async {
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        () = stopped => true,
    }
}

/// Renews the lease every third of `ttl` until it is lost.
async fn renew(store: PgStore, ttl: Duration, lost: watch::Sender<bool>) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        let s = store.clone();
        let outcome = tokio::task::spawn_blocking(move || s.renew(ttl))
            .await
            .unwrap_or_else(|e| Err(StateError::Db(format!("lease renewal failed: {e}"))));
        match outcome {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(
                    pair = store.pair(),
                    "the lease of the pair was taken over by another runner: stopping work on it"
                );
                let _ = lost.send(true);
                return;
            }
            Err(e) => {
                tracing::warn!(pair = store.pair(), error = %e, "the lease could not be renewed");
                if last_ok.elapsed() >= ttl {
                    tracing::error!(
                        pair = store.pair(),
                        "the lease was not renewed for a whole lease time: stopping work on the pair"
                    );
                    let _ = lost.send(true);
                    return;
                }
            }
        }
    }
}
