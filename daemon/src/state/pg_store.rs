//! The PostgreSQL implementation of [`Store`], and the leases that let several runners share
//! one database without two of them ever working on one account pair.
//!
//! # Tables
//!
//! | table | what |
//! |---|---|
//! | `skladsync_migrations (version, applied_at, applied_by)` | the schema versions applied |
//! | `skladsync_state (pair, key, value)` | the key-value state of every pair; primary key `(pair, key)` |
//! | `skladsync_leases (pair, holder, epoch, expires_at)` | who works on a pair, under which fencing token, until when |
//!
//! Every pair's keys are the ones sled holds (see the key layout in [`super`]), scoped by the
//! pair id, so many pairs share one database. `bytea` compares byte by byte, as sled does:
//! prefix scans come back in the same order.
//!
//! # Why a connection thread
//!
//! [`Store`] is synchronous and is called from async code on tokio's worker threads, and
//! some tests run on the current-thread runtime. Blocking on a future there is impossible:
//! the sync `postgres` crate and `Handle::block_on` panic inside a runtime, and
//! `block_in_place` panics on the current-thread runtime. So the connections live on threads
//! of their own ([`PgDatabase`]: a few, `state.pool`), each with its own current-thread
//! runtime and one `tokio_postgres` client; a call sends its job over a channel and waits
//! for the answer on a channel of its own. The calling thread blocks for the length of one
//! round trip, as it blocks on sled's disk writes today; no runtime is entered twice. A
//! lost connection is opened again by the next job.
//!
//! # Atomicity and durability
//!
//! One [`Store::apply`] is one transaction: a plan's progress and the links it writes commit
//! together, as in one sled batch. A commit returns once PostgreSQL has made it durable
//! (`synchronous_commit` as the server has it), so [`Store::flush`] has nothing left to do.
//!
//! # Leases and fencing
//!
//! A runner works on a pair only while it holds the pair's lease: a row of
//! `skladsync_leases` naming it as the holder, with an expiry and an epoch (the fencing
//! token) that grows by one each time the lease changes hands. [`PgStore::acquire`] takes a
//! free or expired lease (its row locked with `FOR UPDATE SKIP LOCKED`, so two runners
//! racing for it never wait on each other and exactly one gets it); [`PgStore::renew`]
//! extends it while the holder and epoch are still the same. A store bound to a lease checks
//! in every `apply`, inside the same transaction and under a share lock of the lease row,
//! that the lease is still its own with the same epoch; if not, nothing is written and the
//! call fails with [`StateError::LeaseLost`]. A runner that stalled past its lease and was
//! taken over therefore cannot commit anything afterwards, whatever it was doing.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::{BatchOp, Entries, StateError, Store};

/// The schema versions, oldest first. A version, once released, is never edited: changes
/// come as a new version.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "create table skladsync_state (
         pair text not null,
         key bytea not null,
         value bytea not null,
         primary key (pair, key)
     );
     create table skladsync_leases (
         pair text primary key,
         holder text not null,
         epoch bigint not null,
         expires_at timestamptz not null
     );",
)];

/// The newest schema version this runner knows.
pub const SCHEMA_VERSION: i32 = 1;

/// The advisory lock that serializes migrations of runners starting at once.
const MIGRATION_LOCK: i64 = 0x736b_6c61_6473_796e; // "skladsyn"

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One request to a connection thread.
#[derive(Clone)]
enum Op {
    Get {
        pair: String,
        key: Vec<u8>,
    },
    Scan {
        pair: String,
        prefix: Vec<u8>,
    },
    Apply {
        pair: String,
        ops: Vec<BatchOp>,
        fence: Option<Fence>,
    },
    Acquire {
        pair: String,
        holder: String,
        ttl_ms: i64,
        dead: Option<String>,
    },
    Renew {
        pair: String,
        fence: Fence,
        ttl_ms: i64,
    },
    Release {
        pair: String,
        fence: Fence,
    },
    /// The rows of a key prefix of many pairs at once.
    ScanPairs {
        pairs: Vec<String>,
        prefix: Vec<u8>,
    },
    Migrate,
}

impl Op {
    /// Whether repeating it changes nothing.
    fn is_read(&self) -> bool {
        matches!(
            self,
            Op::Get { .. } | Op::Scan { .. } | Op::ScanPairs { .. } | Op::Migrate
        )
    }
}

/// Rows of many pairs: (pair, key, value).
pub type PairEntries = Vec<(String, Vec<u8>, Vec<u8>)>;

/// What a connection thread answers.
enum Answer {
    Value(Option<Vec<u8>>),
    Entries(Entries),
    PairEntries(PairEntries),
    Done,
    Lease(LeaseAttempt),
    Renewed(bool),
}

struct Job {
    op: Op,
    reply: SyncSender<Result<Answer, StateError>>,
}

/// The fencing token of a lease held: who and which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The holder (a runner instance).
    pub holder: String,
    /// The epoch: grows by one each time the lease changes hands.
    pub epoch: i64,
}

/// The outcome of [`PgStore::acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// Taken (or taken again): the store's writes are fenced by it from now on.
    Taken(Fence),
    /// Someone else holds it (for `expires_in_ms` more), or is touching it right now.
    Held {
        /// The current holder (empty when its row was locked by someone else).
        holder: String,
        /// How long it still runs (ms).
        expires_in_ms: i64,
    },
}

/// A PostgreSQL database holding the state of any number of pairs: a few connection
/// threads fed by one channel. Cheap to clone.
#[derive(Clone)]
pub struct PgDatabase {
    jobs: Sender<Job>,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.write_str("PgDatabase")
    }
}

fn pg_err(e: tokio_postgres::Error) -> StateError {
    match e.as_db_error() {
        Some(db) => StateError::Db(format!(
            "postgresql: {}: {}",
            db.code().code(),
            db.message()
        )),
        None => StateError::Db(format!("postgresql: {e}")),
    }
}

/// Whether `e` is PostgreSQL ending the session: SQLSTATE class 57P (`admin_shutdown`,
/// `crash_shutdown`, `cannot_connect_now`) or class 08 (connection exception). The server
/// closes the connection after sending it.
fn ends_session(e: &StateError) -> bool {
    match e {
        StateError::Db(m) => ["postgresql: 57P0", "postgresql: 08"]
            .iter()
            .any(|code| m.starts_with(code)),
        _ => false,
    }
}

/// The databases opened in this process, by URL: every pair of one database shares its
/// connections.
fn opened() -> &'static Mutex<HashMap<String, PgDatabase>> {
    static OPENED: OnceLock<Mutex<HashMap<String, PgDatabase>>> = OnceLock::new();
    OPENED.get_or_init(Mutex::default)
}

impl PgDatabase {
    /// Connects to `url` with `pool` connections and brings the schema up to date; a database
    /// already opened in this process with this URL is shared.
    pub fn open(url: &str, pool: usize) -> Result<PgDatabase, StateError> {
        let mut all = opened().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = all.get(url) {
            return Ok(db.clone());
        }
        let db = Self::connect(url, pool)?;
        all.insert(url.to_string(), db.clone());
        Ok(db)
    }

    /// Connects without sharing (tests that want two independent runners in one process).
    pub fn connect(url: &str, pool: usize) -> Result<PgDatabase, StateError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StateError::Config(format!(
                "state.url is not a PostgreSQL connection string ({e})"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("skladsync");
        }
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..pool.max(1) {
            let rx = rx.clone();
            let config = config.clone();
            std::thread::Builder::new()
                .name(format!("skladsync-pg-{i}"))
                .spawn(move || worker(config, rx))
                .map_err(|e| StateError::Db(format!("cannot start a connection thread: {e}")))?;
        }
        let db = PgDatabase { jobs: tx };
        db.call(Op::Migrate)?;
        Ok(db)
    }

    fn call(&self, op: Op) -> Result<Answer, StateError> {
        let (reply, answer) = sync_channel(1);
        self.jobs
            .send(Job { op, reply })
            .map_err(|_| StateError::Db("the PostgreSQL connection threads stopped".into()))?;
        answer
            .recv()
            .map_err(|_| StateError::Db("the PostgreSQL connection thread stopped".into()))?
    }

    /// The rows under `prefix` of every pair of `pairs`, in one query: (pair, key, value),
    /// by pair and key. (The webhooks relayed by runners that do not serve a pair: one query
    /// a round for all the pairs a runner serves.)
    pub fn scan_pairs(&self, pairs: &[String], prefix: &[u8]) -> Result<PairEntries, StateError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        match self.call(Op::ScanPairs {
            pairs: pairs.to_vec(),
            prefix: prefix.to_vec(),
        })? {
            Answer::PairEntries(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    /// The store of one pair in this database (not bound to a lease yet).
    pub fn store(&self, pair: &str) -> PgStore {
        PgStore {
            db: self.clone(),
            pair: pair.to_string(),
            fence: Arc::new(RwLock::new(None)),
        }
    }
}

/// A connection thread: its own runtime, one client, jobs from the shared channel.
fn worker(config: tokio_postgres::Config, jobs: Arc<Mutex<Receiver<Job>>>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a PostgreSQL connection thread");
            return;
        }
    };
    let mut client: Option<Client> = None;
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                // Every handle is gone.
                Err(_) => return,
            }
        };
        let answer = rt.block_on(async {
            // The connection task runs only while a job does: let it notice a connection
            // the server closed in between (a restart, an idle timeout).
            tokio::task::yield_now().await;
            // A read is tried once more on a new connection when the old one turns out dead;
            // a write is not (its outcome may be unknown): it fails, and the runner retries
            // its work as after any state error.
            let tries = if job.op.is_read() { 2 } else { 1 };
            let mut last = Err(StateError::Db("no PostgreSQL connection".into()));
            let mut op = Some(job.op);
            for attempt in 0..tries {
                // The last try takes the job itself (a write is never copied).
                let this = if attempt + 1 < tries {
                    op.clone()
                } else {
                    op.take()
                };
                let Some(this) = this else {
                    break;
                };
                if client.as_ref().is_none_or(Client::is_closed) {
                    client = None;
                    let (c, conn) = config.connect(NoTls).await.map_err(|e| {
                        StateError::Db(format!("cannot connect to PostgreSQL: {}", pg_err(e)))
                    })?;
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::warn!(error = %pg_err(e), "PostgreSQL connection ended");
                        }
                    });
                    client = Some(c);
                }
                let Some(c) = client.as_mut() else {
                    break;
                };
                last = run(c, this).await;
                // The server may answer with the error that ends the session (an administrator
                // or a restart terminated it) before the connection task has seen the socket
                // close: that connection is dead too.
                let dead = c.is_closed() || last.as_ref().err().is_some_and(ends_session);
                if dead {
                    client = None;
                }
                if last.is_ok() || !dead {
                    break;
                }
            }
            last
        });
        let _ = job.reply.send(answer);
    }
}

/// The smallest byte string greater than every string starting with `prefix` (`None`: there
/// is none, every string from `prefix` on matches).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

async fn run(c: &mut Client, op: Op) -> Result<Answer, StateError> {
    match op {
        Op::Get { pair, key } => {
            let row = c
                .query_opt(
                    "select value from skladsync_state where pair = $1 and key = $2",
                    &[&pair, &key],
                )
                .await
                .map_err(pg_err)?;
            Ok(Answer::Value(row.map(|r| r.get(0))))
        }
        Op::Scan { pair, prefix } => {
            let rows = match prefix_end(&prefix) {
                Some(end) => {
                    c.query(
                        "select key, value from skladsync_state where pair = $1 and key >= $2 \
                         and key < $3 order by key",
                        &[&pair, &prefix, &end],
                    )
                    .await
                }
                None => {
                    c.query(
                        "select key, value from skladsync_state where pair = $1 and key >= $2 \
                         order by key",
                        &[&pair, &prefix],
                    )
                    .await
                }
            }
            .map_err(pg_err)?;
            Ok(Answer::Entries(
                rows.into_iter().map(|r| (r.get(0), r.get(1))).collect(),
            ))
        }
        Op::Apply { pair, ops, fence } => {
            // The last write of each key wins, as in a sled batch (a link moved: its old key
            // removed, then written again).
            let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            for (k, v) in ops {
                last.insert(k, v);
            }
            let mut put_keys = Vec::new();
            let mut put_values = Vec::new();
            let mut removed = Vec::new();
            for (k, v) in last {
                match v {
                    Some(v) => {
                        put_keys.push(k);
                        put_values.push(v);
                    }
                    None => removed.push(k),
                }
            }
            let tx = c.transaction().await.map_err(pg_err)?;
            if let Some(f) = &fence {
                let row = tx
                    .query_opt(
                        "select holder, epoch from skladsync_leases where pair = $1 for share",
                        &[&pair],
                    )
                    .await
                    .map_err(pg_err)?;
                let now: Option<(String, i64)> = row.map(|r| (r.get(0), r.get(1)));
                if now.as_ref() != Some(&(f.holder.clone(), f.epoch)) {
                    let _ = tx.rollback().await;
                    let (holder, epoch) = now.unwrap_or_default();
                    return Err(StateError::LeaseLost {
                        pair,
                        epoch: f.epoch,
                        holder,
                        now_epoch: epoch,
                    });
                }
            }
            if !removed.is_empty() {
                tx.execute(
                    "delete from skladsync_state where pair = $1 and key = any($2)",
                    &[&pair, &removed],
                )
                .await
                .map_err(pg_err)?;
            }
            if !put_keys.is_empty() {
                tx.execute(
                    "insert into skladsync_state (pair, key, value) \
                     select $1, k, v from unnest($2::bytea[], $3::bytea[]) as t(k, v) \
                     on conflict (pair, key) do update set value = excluded.value",
                    &[&pair, &put_keys, &put_values],
                )
                .await
                .map_err(pg_err)?;
            }
            tx.commit().await.map_err(pg_err)?;
            Ok(Answer::Done)
        }
        Op::Acquire {
            pair,
            holder,
            ttl_ms,
            dead,
        } => {
            let tx = c.transaction().await.map_err(pg_err)?;
            tx.execute(
                "insert into skladsync_leases (pair, holder, epoch, expires_at) \
                 values ($1, '', 0, 'epoch') on conflict (pair) do nothing",
                &[&pair],
            )
            .await
            .map_err(pg_err)?;
            let row = tx
                .query_opt(
                    "select holder, epoch, \
                     greatest(0, (extract(epoch from (expires_at - now())) * 1000))::bigint \
                     from skladsync_leases where pair = $1 for update skip locked",
                    &[&pair],
                )
                .await
                .map_err(pg_err)?;
            let Some(row) = row else {
                // Another runner is taking or renewing it at this moment.
                tx.rollback().await.map_err(pg_err)?;
                return Ok(Answer::Lease(LeaseAttempt::Held {
                    holder: String::new(),
                    expires_in_ms: 0,
                }));
            };
            let (current, epoch, left): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
            if left > 0
                && !current.is_empty()
                && current != holder
                && dead.as_ref() != Some(&current)
            {
                tx.rollback().await.map_err(pg_err)?;
                return Ok(Answer::Lease(LeaseAttempt::Held {
                    holder: current,
                    expires_in_ms: left,
                }));
            }
            // Taken, or taken again: a new epoch either way, so whatever an earlier holder
            // (even this one before a restart) still has in flight is fenced off.
            let row = tx
                .query_one(
                    "update skladsync_leases set holder = $2, epoch = epoch + 1, \
                     expires_at = now() + $3::bigint * interval '1 millisecond' \
                     where pair = $1 returning epoch",
                    &[&pair, &holder, &ttl_ms],
                )
                .await
                .map_err(pg_err)?;
            tx.commit().await.map_err(pg_err)?;
            let new_epoch: i64 = row.get(0);
            debug_assert!(new_epoch == epoch + 1);
            Ok(Answer::Lease(LeaseAttempt::Taken(Fence {
                holder,
                epoch: new_epoch,
            })))
        }
        Op::Renew {
            pair,
            fence,
            ttl_ms,
        } => {
            let n = c
                .execute(
                    "update skladsync_leases set \
                     expires_at = now() + $4::bigint * interval '1 millisecond' \
                     where pair = $1 and holder = $2 and epoch = $3",
                    &[&pair, &fence.holder, &fence.epoch, &ttl_ms],
                )
                .await
                .map_err(pg_err)?;
            Ok(Answer::Renewed(n == 1))
        }
        Op::Release { pair, fence } => {
            c.execute(
                "update skladsync_leases set expires_at = 'epoch' \
                 where pair = $1 and holder = $2 and epoch = $3",
                &[&pair, &fence.holder, &fence.epoch],
            )
            .await
            .map_err(pg_err)?;
            Ok(Answer::Done)
        }
        Op::ScanPairs { pairs, prefix } => {
            let end = prefix_end(&prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
            let rows = c
                .query(
                    "select pair, key, value from skladsync_state where pair = any($1) \
                     and key >= $2 and key < $3 order by pair, key",
                    &[&pairs, &prefix, &end],
                )
                .await
                .map_err(pg_err)?;
            Ok(Answer::PairEntries(
                rows.into_iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect(),
            ))
        }
        Op::Migrate => migrate(c).await.map(|()| Answer::Done),
    }
}

/// Brings the schema up to date, in one transaction under an advisory lock (runners starting
/// at once migrate one after the other); refuses a database whose schema is newer than this
/// runner knows.
async fn migrate(c: &mut Client) -> Result<(), StateError> {
    let tx = c.transaction().await.map_err(pg_err)?;
    tx.execute("select pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute(
        "create table if not exists skladsync_migrations (
             version integer primary key,
             applied_at timestamptz not null default now(),
             applied_by text not null
         )",
    )
    .await
    .map_err(pg_err)?;
    let row = tx
        .query_one(
            "select coalesce(max(version), 0) from skladsync_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?;
    let found: i32 = row.get(0);
    if found > SCHEMA_VERSION {
        let _ = tx.rollback().await;
        return Err(StateError::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    let by = format!("skladsync {}", env!("CARGO_PKG_VERSION"));
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute(
            "insert into skladsync_migrations (version, applied_by) values ($1, $2)",
            &[version, &by],
        )
        .await
        .map_err(pg_err)?;
        tracing::info!(version, "state database migrated");
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(())
}

/// The state of one pair in a [`PgDatabase`]. Cheap to clone (clones share the lease).
#[derive(Clone)]
pub struct PgStore {
    db: PgDatabase,
    pair: String,
    /// The lease this store's writes are fenced by (none: not bound, writes unchecked).
    fence: Arc<RwLock<Option<Fence>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pair", &self.pair)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// The pair.
    pub fn pair(&self) -> &str {
        &self.pair
    }

    /// The lease this store is fenced by, if any.
    pub fn fence(&self) -> Option<Fence> {
        self.fence.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_fence(&self, f: Option<Fence>) {
        *self.fence.write().unwrap_or_else(|p| p.into_inner()) = f;
    }

    /// Tries to take the pair's lease for `holder` for `ttl`: free, expired or already this
    /// holder's. Taken, the store's writes are fenced by it.
    pub fn acquire(&self, holder: &str, ttl: Duration) -> Result<LeaseAttempt, StateError> {
        self.acquire_from(holder, ttl, None)
    }

    /// Like [`PgStore::acquire`], and also takes the lease from `dead` before it expires:
    /// a holder known to be gone (a runner of this machine whose process is no more).
    pub fn acquire_from(
        &self,
        holder: &str,
        ttl: Duration,
        dead: Option<&str>,
    ) -> Result<LeaseAttempt, StateError> {
        match self.db.call(Op::Acquire {
            pair: self.pair.clone(),
            holder: holder.to_string(),
            ttl_ms: ms(ttl),
            dead: dead.map(str::to_string),
        })? {
            Answer::Lease(a) => {
                if let LeaseAttempt::Taken(f) = &a {
                    self.set_fence(Some(f.clone()));
                }
                Ok(a)
            }
            _ => Err(unexpected()),
        }
    }

    /// Extends the lease held by `ttl` from now; `false`: it is no longer this store's (taken
    /// over after it expired), and writes are refused from now on.
    pub fn renew(&self, ttl: Duration) -> Result<bool, StateError> {
        let Some(fence) = self.fence() else {
            return Ok(false);
        };
        match self.db.call(Op::Renew {
            pair: self.pair.clone(),
            fence,
            ttl_ms: ms(ttl),
        })? {
            Answer::Renewed(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    /// Lets go of the lease (a clean stop): another runner may take the pair at once. The
    /// store stays fenced by the old epoch, so it cannot write any more.
    pub fn release(&self) -> Result<(), StateError> {
        let Some(fence) = self.fence() else {
            return Ok(());
        };
        self.db
            .call(Op::Release {
                pair: self.pair.clone(),
                fence,
            })
            .map(|_| ())
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn unexpected() -> StateError {
    StateError::Db("the PostgreSQL connection thread answered another question".into())
}

impl Store for PgStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.db.call(Op::Get {
            pair: self.pair.clone(),
            key: key.to_vec(),
        })? {
            Answer::Value(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StateError> {
        match self.db.call(Op::Scan {
            pair: self.pair.clone(),
            prefix: prefix.to_vec(),
        })? {
            Answer::Entries(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    fn apply(&self, ops: Vec<BatchOp>) -> Result<(), StateError> {
        if ops.is_empty() {
            return Ok(());
        }
        match self.db.call(Op::Apply {
            pair: self.pair.clone(),
            ops,
            fence: self.fence(),
        })? {
            Answer::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    fn flush(&self) -> Result<(), StateError> {
        // Every apply was a committed transaction.
        Ok(())
    }

    fn pg(&self) -> Option<&PgStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_follow_byte_order() {
        assert_eq!(prefix_end(b"link/"), Some(b"link0".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn the_server_ending_the_session_is_a_dead_connection() {
        let db = |m: &str| StateError::Db(m.to_string());
        assert!(ends_session(&db(
            "postgresql: 57P01: terminating connection due to administrator command"
        )));
        assert!(ends_session(&db("postgresql: 57P02: crash shutdown")));
        assert!(ends_session(&db("postgresql: 08006: connection failure")));
        assert!(!ends_session(&db(
            "postgresql: 23505: duplicate key value violates unique constraint"
        )));
        assert!(!ends_session(&db(
            "postgresql: 40001: could not serialize access"
        )));
    }
}
