//! Durable state of the runner: links, cursors, the inbox of work, the outbox of the plan
//! being applied, idempotency keys, webhook dedupe keys, the journal, open tasks.
//!
//! Two layers:
//!
//! * [`Store`], a deliberately small key-value trait (get, prefix scan, atomic batch, flush).
//!   [`SledStore`] implements it on one sled tree; [`MemoryStore`] in memory, for tests.
//!   Another database can replace sled by implementing five methods.
//! * [`SyncState`], the typed facade the daemon uses. Every value is JSON; every write is
//!   flushed before the call returns, so what a method has written survives a crash at any
//!   later moment (the daemon relies on that: a cursor moves only after the work it caused
//!   is durable).
//!
//! # Key layout
//!
//! | prefix | value |
//! |---|---|
//! | `link/<kind>/<side>/<id>` | a [`Link`]: one copy per side, so a lookup by any side is one get |
//! | `cursor/<name>` | a cursor (CRM history `sinceId`, МойСклад `updated` watermark …) |
//! | `statuses/<order id>` | every status a CRM order has held |
//! | `inbox/<seq>` , `inboxsubj/<subject>` | queued [`InboxItem`]s (big-endian `seq`: FIFO scans); one waiting item per subject (a CRM order, a МойСклад entity, …) |
//! | `plan/<seq>` | the plan of inbox item `seq` that started applying ([`Outbox`] less its progress), written once |
//! | `done/<seq>/<index>` | the confirmed answer of one effect of that plan (one small write per effect) |
//! | `key/<key>` | a [`KeyRecord`]: the state of an idempotent create |
//! | `dedupe/<id>` | a webhook `requestId` seen, with its expiry |
//! | `journal/<digest>` | a [`JournalEntry`], one per (subject, code) |
//! | `task/<kind>` | the open CRM task of a problem kind |
//! | `msseen/…`, `msown/…`, `msread/…` | the last `updated` of a МойСклад entity evaluated / written by us / read by a rule |
//! | `written/<system>.<entity>/<id>` | the fields skladsync last wrote to an entity, with the time of each (`fetch("runner", "written", …)`) |
//! | `msgone/<entity>/<id>` | a МойСклад deletion already queued (from a webhook, the audit poll or a 404) or made by us, with its expiry: the same deletion is never queued twice |
//! | `stock/~<bucket>` | digests of the last stock rows sent, `{assortment id: digest}`, in 256 buckets by id ([`stock_bucket`]); `stock/<assortment id>`, one key a row, as earlier versions kept them (removed when digests are next recorded) |
//! | `relay/<ms><uuid>` | a МойСклад webhook received by a runner that does not serve the pair (PostgreSQL), for the one that does to queue ([`Relayed`]): a key of its own (receive time, big-endian, and a random UUID), so writing it never touches a key the serving runner writes |
//! | `misc/<name>` | previous settings, the webhook secret (and digests of the secrets used before), the runner's instance id, the inbox sequence, the format marker (`misc/format`), the CRM account's time zone |
//!
//! # Rebuilding lost state
//!
//! Links are mirrored into the systems by the rules (МойСклад `externalCode`/`syncId`, the CRM
//! custom field «Идентификатор в системе МойСклад»), and every create carries a deterministic
//! key (МойСклад `syncId` = UUID v5 of the key, CRM `externalId`). With an empty state the
//! runner still finds what it created before (lookups by key), so nothing is duplicated; links
//! come back as rules find the entities again. See `docs/runner.md`.

mod journal;
pub mod lease;
mod memory;
mod pg_store;
mod sled_store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use journal::{JournalEntry, JournalLimits};
pub use memory::MemoryStore;
pub use pg_store::{Fence, LeaseAttempt, PgDatabase, PgStore, SCHEMA_VERSION};
pub use sled_store::SledStore;

/// How long a МойСклад deletion is remembered (`msgone/…`): far longer than a webhook
/// takes to arrive or the audit poll to look back, so neither reports it a second time.
pub const GONE_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// Stock digests written in one batch (see [`SyncState::set_stock_digests`]): values of
/// `stock/~<bucket>`, or legacy `stock/<id>` keys removed.
pub const STOCK_DIGESTS_BATCH: usize = 1_000;

/// The values stock digests are kept in (`stock/~<bucket>`, see [`stock_bucket`]).
pub const STOCK_BUCKETS: u32 = 256;

/// The bucket of an assortment id's stock digest: FNV-1a of its text modulo
/// [`STOCK_BUCKETS`]. Fixed for good: an id must always land in the same bucket.
pub fn stock_bucket(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % STOCK_BUCKETS
}

fn stock_bucket_key(bucket: u32) -> Vec<u8> {
    format!("stock/~{bucket:02x}").into_bytes()
}

/// The stock digests recorded ([`SyncState::stock_digests`]).
#[derive(Debug, Default)]
pub struct StockDigests {
    /// The digest of the row last sent, by assortment id (16 bytes: a UUID v5).
    pub by_id: HashMap<String, u128>,
    /// Keys of digests recorded one key per row by earlier versions (`stock/<id>`): read
    /// as well, and removed the next time digests are recorded.
    pub legacy: Vec<Vec<u8>>,
}

/// The `msgone/…` key of a deletion work item.
fn gone_key(work: &Work) -> Option<String> {
    match work {
        Work::Moysklad {
            entity, action, id, ..
        } if action == "deleted" => Some(format!("msgone/{entity}/{id}")),
        _ => None,
    }
}

/// The pair a single-pair config serves (and the pair whose state is a single-pair state
/// directory as it is).
pub const DEFAULT_PAIR: &str = "default";

/// Whether `id` may name a pair: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or
/// a digit (it appears in URLs, file names, tree names and metric labels).
pub fn pair_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// **The seam between the runner and its store, per pair.** Opens the state of account pair
/// `pair` as the state config describes it (`DEFAULT_PAIR` for a single-pair config).
///
/// sled: every pair of the process lives in the one database at `state.path` (one file lock,
/// one flusher thread, one page cache), pair `default` in the default tree (so a single-pair
/// state directory opens as the `default` pair unchanged), any other pair in the tree
/// `pair/<id>`. PostgreSQL: see [`open_pair_state_sync`].
pub async fn open_pair_state(
    config: &crate::config::StateConfig,
    pair: &str,
) -> Result<SyncState, StateError> {
    let config = config.clone();
    let pair = pair.to_string();
    tokio::task::spawn_blocking(move || open_pair_state_sync(&config, &pair))
        .await
        .map_err(|e| StateError::Db(format!("opening the state stopped: {e}")))?
}

/// The sled arm of [`open_pair_state`], for the operator commands (no runtime needed).
pub fn open_pair_state_blocking(
    path: &std::path::Path,
    pair: &str,
) -> Result<SyncState, StateError> {
    if !pair_id_ok(pair) {
        return Err(StateError::Db(format!(
            "{pair:?} is not a pair id (1 to 64 of a-z, 0-9, - and _)"
        )));
    }
    let state = SyncState::new(Arc::new(SledStore::open_pair(path, pair)?));
    state.migrate()?;
    Ok(state)
}

/// **Where a runner decides whether it may serve a pair.** With sled the process owns the
/// state directory, so it may serve every pair in it, for as long as it runs: the lease is
/// granted at once and never lost. A store shared by several runners (PostgreSQL) makes this
/// a lease with a lease time and renewal; when it is lost, [`PairLease::lost`] completes and
/// the runner stops the pair the way a shutdown does (the item in progress finishes between
/// two effects, queued work stays in the store for the runner that takes the pair over).
/// `Ok(None)`: another runner holds the pair now.
pub async fn acquire_pair(
    config: &crate::config::StateConfig,
    pair: &str,
) -> Result<Option<PairLease>, StateError> {
    let _ = (config, pair);
    Ok(Some(PairLease::held()))
}

/// A runner's right to serve one pair (see [`acquire_pair`]).
#[derive(Debug)]
pub struct PairLease {
    lost: tokio::sync::watch::Receiver<bool>,
    /// Keeps the lease held (a store with real leases drops or flips it when the lease goes).
    _holder: Arc<tokio::sync::watch::Sender<bool>>,
}

impl PairLease {
    /// A lease that is never lost (sled).
    pub fn held() -> PairLease {
        let (tx, rx) = tokio::sync::watch::channel(false);
        PairLease {
            lost: rx,
            _holder: Arc::new(tx),
        }
    }

    /// Completes when the lease is lost (never, for a lease that is always held).
    pub async fn lost(&mut self) {
        loop {
            if *self.lost.borrow() {
                return;
            }
            if self.lost.changed().await.is_err() {
                // The holder is gone without saying the lease was lost: held for good.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What the state layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database failed.
    #[error("state database: {0}")]
    Db(String),
    /// A stored value could not be read back.
    #[error("state value under {key:?} is unreadable: {source}")]
    Corrupt {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be written.
    #[error("state value cannot be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The state directory cannot be used as it is: damaged, missing files, someone else's,
    /// inaccessible or in use. `problem` says what happened, `remedy` what to do.
    #[error("state directory {path}: {problem}. {remedy}")]
    Damaged {
        /// The directory.
        path: String,
        /// What is wrong.
        problem: String,
        /// What to do about it.
        remedy: String,
    },
    /// The state backend is configured wrongly (a bad PostgreSQL URL).
    #[error("state: {0}")]
    Config(String),
    /// The PostgreSQL schema was written by a newer skladsync.
    #[error(
        "the state database has schema version {found}, newer than this skladsync knows \
         ({known}): run the skladsync version that migrated it (or a newer one); an older \
         runner never writes to a newer schema"
    )]
    NewerSchema {
        /// The version found in `skladsync_migrations`.
        found: i32,
        /// The newest version this runner knows.
        known: i32,
    },
    /// The pair's lease was taken over by another runner: nothing was written.
    #[error(
        "the lease of pair {pair:?} was lost (held under epoch {epoch}, now {holder:?} holds \
         it under epoch {now_epoch}): nothing was written; another runner works on the pair"
    )]
    LeaseLost {
        /// The pair.
        pair: String,
        /// The epoch this store held.
        epoch: i64,
        /// Who holds it now (empty: nobody).
        holder: String,
        /// The epoch now.
        now_epoch: i64,
    },
    /// The state directory could not be prepared.
    #[error("state directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl StateError {
    /// Whether the state directory is held by another process (a running daemon: sled
    /// allows one process at a time).
    pub fn is_in_use(&self) -> bool {
        matches!(self, StateError::Damaged { problem, .. } if problem.contains("in use by another process"))
    }
}

/// One write of an atomic batch: a put (`Some`) or a remove (`None`).
pub type BatchOp = (Vec<u8>, Option<Vec<u8>>);

/// Key-value pairs of a prefix scan, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A small ordered key-value store. Implementations must apply a batch atomically.
pub trait Store: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Every (key, value) whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StateError>;
    /// Applies puts and removes atomically.
    fn apply(&self, ops: Vec<BatchOp>) -> Result<(), StateError>;
    /// Makes everything applied so far durable.
    fn flush(&self) -> Result<(), StateError>;
    /// The PostgreSQL store behind this one, if it is one (its lease).
    fn pg(&self) -> Option<&PgStore> {
        None
    }
}

/// The synchronous body of [`open_pair_state`] (operator commands, tests, a blocking task):
/// sled as [`open_pair_state_blocking`] opens it, or PostgreSQL (`state.url`, every pair in one
/// database, keys scoped by the pair id; the connections are shared by every pair of one URL
/// in this process).
///
/// A PostgreSQL state is not bound to a lease yet: take one with [`PgStore::acquire`]
/// (through [`SyncState::pg`]) before working on the pair, or use [`lease::PairLease`] (the
/// daemon does, in `Daemon::hosted`).
pub fn open_pair_state_sync(
    config: &crate::config::StateConfig,
    pair: &str,
) -> Result<SyncState, StateError> {
    if !pair_id_ok(pair) {
        return Err(StateError::Config(format!(
            "{pair:?} cannot name a pair: use 1 to 64 of a-z, 0-9, `-` and `_`"
        )));
    }
    match config.backend {
        crate::config::StateBackend::Sled => open_pair_state_blocking(&config.path, pair),
        crate::config::StateBackend::Postgres => {
            let db = PgDatabase::open(config.url.expose(), config.pool)?;
            SyncState::open_pg(&db, pair)
        }
    }
}

/// A link: the same thing in several systems (`{kind, crm: 7, moysklad: "…"}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The kind (`order`, `customer`, …).
    pub kind: String,
    /// One id per side, as the plan gave them (numbers stay numbers).
    pub ids: BTreeMap<String, Value>,
}

impl Link {
    /// The link as rules see it: `{kind, <side>: id, …}`.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), Value::String(self.kind.clone()));
        for (k, v) in &self.ids {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// The text by which ids are compared: `1` and `"1"` are the same id.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Where a МойСклад event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A webhook notification.
    Webhook,
    /// The `updated>=` reconciliation poll.
    Poll,
}

/// A unit of work waiting in the inbox. Events are built from it when it is processed, so
/// they carry the entities as they are then, not as they were when the work was queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "snake_case")]
pub enum Work {
    /// A CRM order changed (history entries of this order, oldest first).
    CrmOrder {
        /// The order id.
        id: i64,
        /// The history entries (`orders/history` shape).
        changes: Vec<Value>,
        /// Whether one of them created the order.
        created: bool,
        /// Whether one of them deleted it; `stub` then holds `{id, externalId, number, site}`.
        deleted: bool,
        /// The order stub from the history (for deletions).
        stub: Value,
    },
    /// A CRM customer or corporate customer changed.
    CrmCustomer {
        /// The customer id.
        id: i64,
        /// Corporate customer?
        corporate: bool,
        /// The history entries.
        changes: Vec<Value>,
    },
    /// A МойСклад entity was created, updated or deleted.
    Moysklad {
        /// The entity type (`customerorder`).
        entity: String,
        /// `created`, `updated` or `deleted`.
        action: String,
        /// The entity id.
        id: String,
        /// The entity href (from the webhook).
        href: String,
        /// The webhook's `updatedFields`.
        updated_fields: Vec<String>,
        /// The webhook `requestId`.
        request_id: Option<String>,
        /// Webhook or poll.
        source: Source,
    },
    /// A pass of the stock schedule.
    StockPass {
        /// A full pass (every row) or changed rows only.
        full: bool,
    },
    /// The settings were loaded or changed.
    SettingsSaved,
    /// An effect failed for good; rules decide whom to tell.
    Problem {
        /// `{code, kind, system, text, raw, rule, subject}`.
        problem: Value,
    },
}

impl Work {
    /// Work with the same subject is merged while it waits (`None`: never merged).
    pub fn subject(&self) -> Option<String> {
        match self {
            Work::CrmOrder { id, .. } => Some(format!("crm.order/{id}")),
            Work::CrmCustomer { id, corporate, .. } => Some(if *corporate {
                format!("crm.customer_corporate/{id}")
            } else {
                format!("crm.customer/{id}")
            }),
            // One item per entity: created, updated and deleted of one entity coalesce (the
            // strongest action wins, see `merge`).
            Work::Moysklad { entity, id, .. } => Some(format!("moysklad/{entity}/{id}")),
            Work::StockPass { .. } => Some("stock".into()),
            Work::SettingsSaved => Some("settings".into()),
            Work::Problem { .. } => None,
        }
    }

    /// Folds newer work of the same subject into this one.
    fn merge(&mut self, newer: Work) {
        match (self, newer) {
            (
                Work::CrmOrder {
                    changes,
                    created,
                    deleted,
                    stub,
                    ..
                },
                Work::CrmOrder {
                    changes: more,
                    created: c2,
                    deleted: d2,
                    stub: s2,
                    ..
                },
            ) => {
                append_changes(changes, more);
                *created |= c2;
                *deleted |= d2;
                if !s2.is_null() {
                    *stub = s2;
                }
            }
            (Work::CrmCustomer { changes, .. }, Work::CrmCustomer { changes: more, .. }) => {
                append_changes(changes, more);
            }
            (
                Work::Moysklad {
                    action,
                    updated_fields,
                    request_id,
                    source,
                    ..
                },
                Work::Moysklad {
                    action: a2,
                    updated_fields: f2,
                    request_id: r2,
                    source: s2,
                    ..
                },
            ) => {
                // A deletion is never lost behind an update; a creation stays a creation
                // when updates follow it (the event reads the entity as it is then).
                if ms_action_rank(&a2) > ms_action_rank(action) {
                    *action = a2;
                }
                // No fields (a poll, a creation) means «anything may have changed»: it
                // absorbs a list, or a webhook's list would hide what the poll found.
                if updated_fields.is_empty() || f2.is_empty() {
                    updated_fields.clear();
                } else {
                    for f in f2 {
                        if !updated_fields.contains(&f) {
                            updated_fields.push(f);
                        }
                    }
                }
                if r2.is_some() {
                    *request_id = r2;
                }
                if s2 == Source::Webhook {
                    *source = s2;
                }
            }
            (Work::StockPass { full }, Work::StockPass { full: f2 }) => *full |= f2,
            (me, other) => *me = other,
        }
    }
}

/// How strong a МойСклад action is when waiting work of one entity coalesces.
fn ms_action_rank(action: &str) -> u8 {
    match action {
        "deleted" => 3,
        "created" => 2,
        _ => 1,
    }
}

/// Appends history entries, skipping ids already present (a history page read twice).
fn append_changes(changes: &mut Vec<Value>, more: Vec<Value>) {
    for c in more {
        let id = c.get("id").cloned();
        if id.is_some() && changes.iter().any(|x| x.get("id") == id.as_ref()) {
            continue;
        }
        changes.push(c);
    }
}

/// An inbox entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    /// What to do.
    pub work: Work,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this time (unix ms): the retry backoff.
    pub not_before: i64,
    /// When it was first queued (unix ms).
    pub queued_at: i64,
    /// The last failure, for `skladsync` logs and the demo summary.
    pub last_error: Option<String>,
    /// A plan of this item started applying (`plan/<seq>`): the item takes no new work (newer
    /// work of its subject waits in an item of its own, behind it) until the plan is finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan: bool,
    /// Evaluating this item failed in a way that repeats (a rule error, a runaway rule): it
    /// waits until the rules change or new work of its subject arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<Parked>,
    /// The plan of this item is one part of a stock pass evaluated in parts, and more parts
    /// follow it: once the plan is finished (applied, or given up), the item is not removed
    /// but made new work again ([`SyncState::end_part`]), so a pass stopped by a crash or a
    /// failure is read and sent again instead of losing the parts after this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more_parts: bool,
    /// With [`InboxItem::more_parts`]: the assortment id of the last row of the part whose
    /// plan this item holds (rows are in the order of the by-store report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_end: Option<String>,
    /// The plan of a part of this stock pass was given up (refused for good) and more parts
    /// followed it: the next read of the pass skips the rows of the report up to and including
    /// the row with this assortment id (the given-up part's [`InboxItem::part_end`]), so the
    /// parts after the given-up one are sent while the refusal lasts. Used by one read: cleared
    /// with the next plan recorded for the item ([`SyncState::start_plan_parts`]), and when
    /// a full pass is merged into a changes pass waiting with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<String>,
}

/// Why and under which rules an item was parked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// The evaluation error.
    pub reason: String,
    /// The version of the rule set (and settings) it failed under.
    pub rules: String,
    /// When (unix ms).
    pub at: i64,
}

impl InboxItem {
    /// New work, due now.
    pub fn new(work: Work, now: i64) -> Self {
        InboxItem {
            work,
            attempts: 0,
            not_before: now,
            queued_at: now,
            last_error: None,
            plan: false,
            parked: None,
            more_parts: false,
            part_end: None,
            resume_after: None,
        }
    }
}

/// A plan that started applying, with what of it is confirmed. The plan is written once,
/// before its first effect ([`SyncState::start_plan`]); each confirmed effect adds one record
/// ([`SyncState::effect_done`]); the whole is removed with its inbox item. Whatever stops it
/// (a crash, a failed effect, a shutdown), the runner resumes it later from the first effect
/// not confirmed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    /// The inbox item the plan came from.
    pub seq: u64,
    /// The plan (pending references kept as `{"$ref": …}`).
    pub plan: skladsync_engine::Plan,
    /// When this plan was made (unix ms): with `seq`, it names the plan's keyless creates.
    pub started: i64,
    /// The confirmed result of each effect applied so far (by index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub done: BTreeMap<usize, Value>,
    /// The version (content hash) of the rule set that made the plan; empty for plans
    /// recorded before versions were kept. A plan keeps applying as recorded whatever rules
    /// are loaded since.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rules: String,
}

/// `value` as JSON in a buffer of exactly its size: measured first, then written. A stock
/// pass's plan is about 13 MB of JSON at 100 000 offers; written into a growing buffer it
/// took up to twice that, and a copy at each doubling, at the moment the pass's memory peaks.
fn to_vec_exact<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let mut out = Vec::with_capacity(count.0);
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// What `plan/<seq>` holds: the [`Outbox`] without its progress.
#[derive(Serialize)]
struct PlanHead<'a> {
    seq: u64,
    plan: &'a skladsync_engine::Plan,
    started: i64,
    #[serde(skip_serializing_if = "str::is_empty")]
    rules: &'a str,
}

/// The state of an idempotent create, by its key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KeyRecord {
    /// Sent, outcome unknown: look it up before repeating.
    InFlight {
        /// `system.entity`.
        target: String,
        /// When (unix ms).
        at: i64,
    },
    /// Confirmed, with the created entity (as the API returned it).
    Done {
        /// `system.entity`.
        target: String,
        /// The entity.
        result: Value,
        /// When (unix ms).
        at: i64,
    },
}

/// The open CRM task of a problem kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The CRM task id, once confirmed.
    pub id: Option<i64>,
    /// When it was set (unix ms).
    pub at: i64,
}

/// The typed, durable state of the runner over any [`Store`].
#[derive(Clone)]
pub struct SyncState {
    store: Arc<dyn Store>,
    /// Serializes read-modify-write sequences (inbox merges, links, journal).
    lock: Arc<Mutex<()>>,
    /// The inbox item being processed: new work is never merged into it.
    busy: Arc<Mutex<std::collections::BTreeSet<u64>>>,
    /// How many items the inbox holds (counted once, then kept up to date under `lock`), and
    /// when it was last counted from the store.
    inbox_len: Arc<Mutex<InboxCount>>,
}

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncState")
    }
}

/// The number of inbox items, as kept in memory.
#[derive(Debug, Default)]
struct InboxCount {
    /// The count (`None`: not counted yet).
    len: Option<usize>,
    /// When it was last counted from the store.
    counted: Option<std::time::Instant>,
}

/// A refusal by the inbox bound recounts from the store at most this often (so a count gone
/// wrong cannot keep the inbox shut).
const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn seq_key(seq: u64) -> Vec<u8> {
    let mut k = b"inbox/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let tail = key.strip_prefix(b"inbox/")?;
    let bytes: [u8; 8] = tail.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn plan_key(seq: u64) -> Vec<u8> {
    let mut k = b"plan/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn done_prefix(seq: u64) -> Vec<u8> {
    let mut k = b"done/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k.push(b'/');
    k
}

fn done_key(seq: u64, index: usize) -> Vec<u8> {
    let mut k = done_prefix(seq);
    k.extend_from_slice(&(index as u64).to_be_bytes());
    k
}

fn link_key(kind: &str, side: &str, id: &str) -> Vec<u8> {
    format!("link/{kind}/{side}/{id}").into_bytes()
}

impl SyncState {
    /// A state over this store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        SyncState {
            store,
            lock: Arc::new(Mutex::new(())),
            busy: Arc::new(Mutex::new(Default::default())),
            inbox_len: Arc::default(),
        }
    }

    /// Opens (or creates) the sled state at `path`, owner-only.
    pub fn open(path: &std::path::Path) -> Result<Self, StateError> {
        let state = Self::new(Arc::new(SledStore::open(path)?));
        state.migrate()?;
        Ok(state)
    }

    /// Converts what an earlier version wrote: the one `outbox` record (the whole plan,
    /// rewritten after every effect) becomes a plan record and one record per effect.
    fn migrate(&self) -> Result<(), StateError> {
        let Some(bytes) = self.store.get(b"outbox")? else {
            return Ok(());
        };
        let ob = match serde_json::from_slice::<Option<Outbox>>(&bytes) {
            Ok(Some(ob)) => ob,
            Ok(None) => return self.remove(b"outbox"),
            Err(e) => {
                // Left where it is: nothing reads it any more, and its item is evaluated
                // again (creates are found by their keys).
                tracing::warn!(error = %e, "the plan an earlier version was applying is unreadable");
                return Ok(());
            }
        };
        let mut ops = vec![(b"outbox".to_vec(), None)];
        if let Some(mut item) = self.read::<InboxItem>(&seq_key(ob.seq))? {
            item.plan = true;
            ops.push((seq_key(ob.seq), Some(serde_json::to_vec(&item)?)));
            for (i, v) in &ob.done {
                ops.push((done_key(ob.seq, *i), Some(serde_json::to_vec(v)?)));
            }
            let head = Outbox {
                done: BTreeMap::new(),
                ..ob
            };
            ops.push((plan_key(head.seq), Some(serde_json::to_vec(&head)?)));
        }
        self.commit(ops)
    }

    /// A state in memory (tests).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(MemoryStore::default()))
    }

    /// The PostgreSQL store behind this state, if it is one (its lease).
    pub fn pg(&self) -> Option<&PgStore> {
        self.store.pg()
    }

    /// Opens the state of one pair in a PostgreSQL database (schema migrated).
    pub fn open_pg(db: &PgDatabase, pair: &str) -> Result<Self, StateError> {
        let state = Self::new(Arc::new(db.store(pair)));
        state.migrate()?;
        Ok(state)
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StateError> {
        match self.store.get(key)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StateError::Corrupt {
                        key: String::from_utf8_lossy(key).into_owned(),
                        source,
                    })
            }
        }
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>, StateError> {
        self.store
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(k, v)| match serde_json::from_slice(&v) {
                Ok(t) => Ok((k, t)),
                Err(source) => Err(StateError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source,
                }),
            })
            .collect()
    }

    /// Applies a batch and flushes it.
    fn commit(&self, ops: Vec<BatchOp>) -> Result<(), StateError> {
        self.store.apply(ops)?;
        self.store.flush()
    }

    fn put<T: Serialize + ?Sized>(&self, key: &[u8], value: &T) -> Result<(), StateError> {
        self.commit(vec![(key.to_vec(), Some(serde_json::to_vec(value)?))])
    }

    fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        self.commit(vec![(key.to_vec(), None)])
    }

    /// Makes everything durable.
    pub fn flush(&self) -> Result<(), StateError> {
        self.store.flush()
    }

    // --- links ----------------------------------------------------------------------------

    /// Writes a link, replacing any link of the same kind that shares one of its ids.
    pub fn put_link(&self, link: &Link) -> Result<(), StateError> {
        let _g = self.guard();
        let ops = self.link_ops(link)?;
        self.commit(ops)
    }

    /// The writes of [`SyncState::put_link`] (the caller holds the guard).
    fn link_ops(&self, link: &Link) -> Result<Vec<BatchOp>, StateError> {
        let mut ops = Vec::new();
        for (side, id) in &link.ids {
            let Some(text) = id_text(id) else { continue };
            if let Some(old) = self.read::<Link>(&link_key(&link.kind, side, &text))? {
                for (s, i) in &old.ids {
                    if let Some(t) = id_text(i) {
                        ops.push((link_key(&old.kind, s, &t), None));
                    }
                }
            }
        }
        let bytes = serde_json::to_vec(link)?;
        for (side, id) in &link.ids {
            if let Some(text) = id_text(id) {
                ops.push((link_key(&link.kind, side, &text), Some(bytes.clone())));
            }
        }
        Ok(ops)
    }

    /// The link of `kind` with `id` on `side`.
    pub fn linked(&self, kind: &str, side: &str, id: &Value) -> Result<Option<Link>, StateError> {
        match id_text(id) {
            Some(text) => self.read(&link_key(kind, side, &text)),
            None => Ok(None),
        }
    }

    /// Removes a link (under every one of its ids).
    pub fn remove_link(&self, link: &Link) -> Result<(), StateError> {
        let _g = self.guard();
        let ops = link
            .ids
            .iter()
            .filter_map(|(side, id)| id_text(id).map(|t| (link_key(&link.kind, side, &t), None)))
            .collect();
        self.commit(ops)
    }

    /// Every cursor, by name.
    pub fn cursors(&self) -> Result<BTreeMap<String, Value>, StateError> {
        Ok(self
            .scan::<Value>(b"cursor/")?
            .into_iter()
            .map(|(k, v)| {
                let name = String::from_utf8_lossy(&k["cursor/".len()..]).into_owned();
                (name, v)
            })
            .collect())
    }

    /// Every link (each once).
    pub fn links(&self) -> Result<Vec<Link>, StateError> {
        let mut out: Vec<Link> = Vec::new();
        for (_, l) in self.scan::<Link>(b"link/")? {
            if !out.contains(&l) {
                out.push(l);
            }
        }
        Ok(out)
    }

    // --- cursors --------------------------------------------------------------------------

    /// A cursor.
    pub fn cursor(&self, name: &str) -> Result<Option<Value>, StateError> {
        self.read(format!("cursor/{name}").as_bytes())
    }

    /// Moves a cursor (flushed before returning).
    pub fn set_cursor(&self, name: &str, value: &Value) -> Result<(), StateError> {
        self.put(format!("cursor/{name}").as_bytes(), value)
    }

    // --- order statuses -------------------------------------------------------------------

    /// Every status the CRM order has held, if the runner has seen the order before.
    pub fn order_statuses(&self, order_id: i64) -> Result<Option<Vec<String>>, StateError> {
        self.read(format!("statuses/{order_id}").as_bytes())
    }

    /// Records the statuses of a CRM order.
    pub fn set_order_statuses(&self, order_id: i64, statuses: &[String]) -> Result<(), StateError> {
        self.put(format!("statuses/{order_id}").as_bytes(), statuses)
    }

    // --- inbox ----------------------------------------------------------------------------

    /// Queues work; work with the same subject that is waiting (not the item being
    /// processed) absorbs it. Returns the sequence number holding it.
    pub fn enqueue(&self, work: Work, now: i64) -> Result<u64, StateError> {
        self.enqueue_all(vec![work], now)
            .map(|v| v.first().copied().unwrap_or_default())
    }

    fn busy(&self) -> std::collections::BTreeSet<u64> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Marks an item as being processed and reads it as it is now: from this moment new work
    /// of its subject goes to a new item (so nothing merged into it can be lost when it is
    /// finished). Several items (of different subjects) may be claimed at once.
    pub fn claim(&self, seq: u64) -> Result<Option<InboxItem>, StateError> {
        let _g = self.guard();
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq);
        self.read(&seq_key(seq))
    }

    /// Ends the processing of every claimed item.
    pub fn release(&self) {
        let _g = self.guard();
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Ends the processing of one claimed item.
    pub fn release_one(&self, seq: u64) {
        let _g = self.guard();
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
    }

    /// Queues several pieces of work in one durable batch.
    pub fn enqueue_all(&self, works: Vec<Work>, now: i64) -> Result<Vec<u64>, StateError> {
        let _g = self.guard();
        self.enqueue_locked(works, now, None)
            .map(|queued| queued.unwrap_or_default())
    }

    /// Like [`SyncState::enqueue_all`], but refuses the whole batch (`Ok(None)`, nothing
    /// written) when the new items it would add take a non-empty inbox past `max` items.
    /// Work merged into waiting items always fits.
    pub fn enqueue_bounded(
        &self,
        works: Vec<Work>,
        now: i64,
        max: usize,
    ) -> Result<Option<Vec<u64>>, StateError> {
        let _g = self.guard();
        self.enqueue_locked(works, now, Some(max))
    }

    /// How many items are queued.
    pub fn inbox_len(&self) -> Result<usize, StateError> {
        let _g = self.guard();
        self.inbox_len_locked()
    }

    fn inbox_len_locked(&self) -> Result<usize, StateError> {
        let count = self.inbox_len.lock().unwrap_or_else(|p| p.into_inner()).len;
        match count {
            Some(n) => Ok(n),
            None => self.recount_inbox(),
        }
    }

    /// Counts the inbox items in the store.
    fn recount_inbox(&self) -> Result<usize, StateError> {
        let n = self
            .store
            .scan_prefix(b"inbox/")?
            .iter()
            .filter(|(k, _)| seq_of(k).is_some())
            .count();
        let mut c = self.inbox_len.lock().unwrap_or_else(|p| p.into_inner());
        c.len = Some(n);
        c.counted = Some(std::time::Instant::now());
        Ok(n)
    }

    fn adjust_inbox_len(&self, added: usize, removed: usize) {
        let mut c = self.inbox_len.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.len.as_mut() {
            *n = (*n + added).saturating_sub(removed);
        }
    }

    fn enqueue_locked(
        &self,
        works: Vec<Work>,
        now: i64,
        max: Option<usize>,
    ) -> Result<Option<Vec<u64>>, StateError> {
        let busy = self.busy();
        let first_new: u64 = self.read(b"misc/seq")?.unwrap_or(1);
        let mut next = first_new;
        let mut pending: BTreeMap<u64, InboxItem> = BTreeMap::new();
        let mut subjects: BTreeMap<String, u64> = BTreeMap::new();
        let mut out = Vec::new();
        let mut gone: BTreeMap<String, ()> = BTreeMap::new();
        for work in works {
            // A deletion is queued once, whoever reports it (webhook, audit poll, a 404):
            // its marker is written in the same batch as the work.
            if let Some(key) = gone_key(&work) {
                let known = gone.contains_key(&key)
                    || self
                        .read::<i64>(key.as_bytes())?
                        .is_some_and(|exp| exp > now);
                if known {
                    tracing::debug!(key = %key, "a deletion already queued: not queued again");
                    continue;
                }
                gone.insert(key, ());
            }
            let subject = work.subject();
            let existing = match &subject {
                None => None,
                Some(s) => match subjects.get(s) {
                    Some(seq) => Some(*seq),
                    None => self.read::<u64>(format!("inboxsubj/{s}").as_bytes())?,
                },
            }
            .filter(|seq| !busy.contains(seq));
            let merged = match existing {
                Some(seq) => {
                    let item = match pending.remove(&seq) {
                        Some(i) => Some(i),
                        None => self.read::<InboxItem>(&seq_key(seq))?,
                    };
                    match item {
                        // A plan of it is being applied: the new work waits behind it.
                        Some(item) if item.plan => {
                            pending.insert(seq, item);
                            None
                        }
                        Some(mut item) => {
                            let before = item.work.clone();
                            item.work.merge(work.clone());
                            // A full pass asked for: every row is sent, none skipped.
                            if matches!(
                                (&before, &item.work),
                                (
                                    Work::StockPass { full: false },
                                    Work::StockPass { full: true }
                                )
                            ) {
                                item.resume_after = None;
                            }
                            // New work may evaluate differently: a parked item is tried
                            // again — unless the work is the same as before.
                            if item.parked.is_none() || item.work != before {
                                item.not_before = item.not_before.min(now);
                                item.attempts = 0;
                                item.parked = None;
                            }
                            Some((seq, item))
                        }
                        None => None,
                    }
                }
                None => None,
            };
            let (seq, item) = match merged {
                Some(x) => x,
                None => {
                    let seq = next;
                    next += 1;
                    (seq, InboxItem::new(work, now))
                }
            };
            if let Some(s) = subject {
                subjects.insert(s, seq);
            }
            pending.insert(seq, item);
            out.push(seq);
        }
        let added = usize::try_from(next - first_new).unwrap_or(usize::MAX);
        if let Some(max) = max {
            let over = |len: usize| added > 0 && len > 0 && len.saturating_add(added) > max;
            if over(self.inbox_len_locked()?) {
                // Before refusing, trust the store over the running count (now and then).
                let stale = self
                    .inbox_len
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .counted
                    .is_none_or(|t| t.elapsed() >= RECOUNT_EVERY);
                if !stale || over(self.recount_inbox()?) {
                    return Ok(None);
                }
            }
        }
        let mut ops = Vec::new();
        for (seq, item) in &pending {
            ops.push((seq_key(*seq), Some(serde_json::to_vec(item)?)));
        }
        for (s, seq) in &subjects {
            ops.push((
                format!("inboxsubj/{s}").into_bytes(),
                Some(serde_json::to_vec(seq)?),
            ));
        }
        ops.push((b"misc/seq".to_vec(), Some(serde_json::to_vec(&next)?)));
        for key in gone.keys() {
            ops.push((
                key.clone().into_bytes(),
                Some(serde_json::to_vec(&(now + GONE_TTL_MS))?),
            ));
        }
        self.commit(ops)?;
        self.adjust_inbox_len(added, 0);
        Ok(Some(out))
    }

    /// Every queued item, in order.
    pub fn inbox(&self) -> Result<Vec<(u64, InboxItem)>, StateError> {
        Ok(self
            .scan::<InboxItem>(b"inbox/")?
            .into_iter()
            .filter_map(|(k, v)| seq_of(&k).map(|s| (s, v)))
            .collect())
    }

    /// The first item due at `now`.
    pub fn next_due(&self, now: i64) -> Result<Option<(u64, InboxItem)>, StateError> {
        Ok(self
            .inbox()?
            .into_iter()
            .find(|(_, item)| item.not_before <= now))
    }

    /// One queued item.
    pub fn inbox_item(&self, seq: u64) -> Result<Option<InboxItem>, StateError> {
        self.read(&seq_key(seq))
    }

    /// Rewrites a queued item (after a failed attempt).
    pub fn update_item(&self, seq: u64, item: &InboxItem) -> Result<(), StateError> {
        let _g = self.guard();
        self.put(&seq_key(seq), item)
    }

    /// Removes a finished item (and the outbox, if it belongs to it) in one batch.
    pub fn finish_item(&self, seq: u64) -> Result<(), StateError> {
        let _g = self.guard();
        let mut ops = vec![(seq_key(seq), None)];
        let existed = self.read::<InboxItem>(&seq_key(seq))?;
        if let Some(item) = &existed {
            if let Some(s) = item.work.subject() {
                let k = format!("inboxsubj/{s}").into_bytes();
                if self.read::<u64>(&k)? == Some(seq) {
                    ops.push((k, None));
                }
            }
        }
        ops.push((plan_key(seq), None));
        for (k, _) in self.store.scan_prefix(&done_prefix(seq))? {
            ops.push((k, None));
        }
        self.commit(ops)?;
        self.adjust_inbox_len(0, usize::from(existed.is_some()));
        Ok(())
    }

    /// Ends the plan of one part of a stock pass without ending its item: the plan and what
    /// of it is confirmed are removed, and the item is written as `item` (due again, holding
    /// no plan), in one batch.
    pub fn end_part(&self, seq: u64, item: &InboxItem) -> Result<(), StateError> {
        let _g = self.guard();
        let mut ops = vec![(seq_key(seq), Some(serde_json::to_vec(item)?))];
        ops.push((plan_key(seq), None));
        for (k, _) in self.store.scan_prefix(&done_prefix(seq))? {
            ops.push((k, None));
        }
        self.commit(ops)
    }

    /// Removes waiting items that are still exactly as given (nothing merged into them since
    /// they were read), in one batch; never the item being processed or the one whose plan is
    /// in the outbox. Returns the sequence numbers removed.
    pub fn drop_unchanged(&self, items: &[(u64, InboxItem)]) -> Result<Vec<u64>, StateError> {
        let _g = self.guard();
        let busy = self.busy();
        let outbox = self.read::<Outbox>(b"outbox")?.map(|o| o.seq);
        let mut ops = Vec::new();
        let mut dropped = Vec::new();
        for (seq, expected) in items {
            if busy.contains(seq) || Some(*seq) == outbox {
                continue;
            }
            if self.read::<InboxItem>(&seq_key(*seq))?.as_ref() != Some(expected) {
                continue;
            }
            ops.push((seq_key(*seq), None));
            if let Some(s) = expected.work.subject() {
                let k = format!("inboxsubj/{s}").into_bytes();
                if self.read::<u64>(&k)? == Some(*seq) {
                    ops.push((k, None));
                }
            }
            dropped.push(*seq);
        }
        if !ops.is_empty() {
            self.commit(ops)?;
            self.adjust_inbox_len(0, dropped.len());
        }
        Ok(dropped)
    }

    /// Items parked under another version of the rules become due again. Returns how many.
    pub fn unpark_changed(&self, rules: &str, now: i64) -> Result<usize, StateError> {
        let _g = self.guard();
        let mut ops = Vec::new();
        for (k, mut item) in self.scan::<InboxItem>(b"inbox/")? {
            if item.parked.as_ref().is_some_and(|p| p.rules != rules) {
                item.parked = None;
                item.attempts = 0;
                item.not_before = now;
                ops.push((k, Some(serde_json::to_vec(&item)?)));
            }
        }
        let n = ops.len();
        if n > 0 {
            self.commit(ops)?;
        }
        Ok(n)
    }

    // --- plans ----------------------------------------------------------------------------

    /// Records that a plan of inbox item `seq` starts applying: the plan (once), and the
    /// item marked as holding it (it takes no new work from now on), in one batch.
    pub fn start_plan(&self, outbox: &Outbox) -> Result<(), StateError> {
        self.start_plan_parts(outbox, None)
    }

    /// [`SyncState::start_plan`] for a plan that is one part of a stock pass: `more_parts`,
    /// more parts follow it, and its value is the assortment id of the part's last row
    /// ([`InboxItem::more_parts`], [`InboxItem::part_end`], recorded in the same batch; an
    /// empty id is not recorded). The item's [`InboxItem::resume_after`] has been used by the
    /// read of the pass that made this plan: it is cleared.
    pub fn start_plan_parts(
        &self,
        outbox: &Outbox,
        more_parts: Option<&str>,
    ) -> Result<(), StateError> {
        let _g = self.guard();
        let mut ops = Vec::new();
        if let Some(mut item) = self.read::<InboxItem>(&seq_key(outbox.seq))? {
            item.plan = true;
            item.more_parts = more_parts.is_some();
            item.part_end = more_parts.filter(|id| !id.is_empty()).map(str::to_string);
            item.resume_after = None;
            ops.push((seq_key(outbox.seq), Some(serde_json::to_vec(&item)?)));
        }
        for (i, v) in &outbox.done {
            ops.push((done_key(outbox.seq, *i), Some(serde_json::to_vec(v)?)));
        }
        let head = PlanHead {
            seq: outbox.seq,
            plan: &outbox.plan,
            started: outbox.started,
            rules: &outbox.rules,
        };
        ops.push((plan_key(outbox.seq), Some(to_vec_exact(&head)?)));
        self.commit(ops)
    }

    /// The plan of inbox item `seq` that started applying, with what of it is confirmed.
    pub fn plan(&self, seq: u64) -> Result<Option<Outbox>, StateError> {
        let Some(mut ob) = self.read::<Outbox>(&plan_key(seq))? else {
            return Ok(None);
        };
        let prefix = done_prefix(seq);
        for (k, v) in self.scan::<Value>(&prefix)? {
            let Ok(bytes) = <[u8; 8]>::try_from(&k[prefix.len()..]) else {
                continue;
            };
            if let Ok(i) = usize::try_from(u64::from_be_bytes(bytes)) {
                ob.done.insert(i, v);
            }
        }
        Ok(Some(ob))
    }

    /// Records one confirmed effect of the plan of `seq`: one small write, flushed.
    pub fn effect_done(&self, seq: u64, index: usize, answer: &Value) -> Result<(), StateError> {
        self.put(&done_key(seq, index), answer)
    }

    /// Writes a link and records the effect that wrote it as confirmed, in one batch.
    pub fn link_done(
        &self,
        seq: u64,
        index: usize,
        link: &Link,
        answer: &Value,
    ) -> Result<(), StateError> {
        let _g = self.guard();
        let mut ops = self.link_ops(link)?;
        ops.push((done_key(seq, index), Some(serde_json::to_vec(answer)?)));
        self.commit(ops)
    }

    // --- idempotency keys -----------------------------------------------------------------

    /// The state of an idempotent create.
    pub fn key(&self, key: &str) -> Result<Option<KeyRecord>, StateError> {
        self.read(format!("key/{key}").as_bytes())
    }

    /// Records the state of an idempotent create.
    pub fn set_key(&self, key: &str, rec: &KeyRecord) -> Result<(), StateError> {
        self.put(format!("key/{key}").as_bytes(), rec)
    }

    /// Forgets a key (the create is known not to have happened).
    pub fn clear_key(&self, key: &str) -> Result<(), StateError> {
        self.remove(format!("key/{key}").as_bytes())
    }

    // --- webhook dedupe -------------------------------------------------------------------

    /// Whether a webhook `requestId` was seen before (and has not expired).
    pub fn request_seen(&self, request_id: &str, now: i64) -> Result<bool, StateError> {
        let key = format!("dedupe/{request_id}").into_bytes();
        Ok(self.read::<i64>(&key)?.is_some_and(|exp| exp > now))
    }

    /// Remembers a webhook `requestId` until `expires` (unix ms).
    pub fn mark_request(&self, request_id: &str, expires: i64) -> Result<(), StateError> {
        self.put(format!("dedupe/{request_id}").as_bytes(), &expires)
    }

    /// Drops expired dedupe keys and idempotency keys older than `key_ttl_ms`.
    pub fn prune(&self, now: i64, key_ttl_ms: i64) -> Result<usize, StateError> {
        let _g = self.guard();
        let mut ops = Vec::new();
        for prefix in [&b"dedupe/"[..], &b"msgone/"[..]] {
            for (k, exp) in self.scan::<i64>(prefix)? {
                if exp <= now {
                    ops.push((k, None));
                }
            }
        }
        for (k, rec) in self.scan::<KeyRecord>(b"key/")? {
            if let KeyRecord::Done { at, .. } = rec {
                if now - at > key_ttl_ms {
                    ops.push((k, None));
                }
            }
        }
        let n = ops.len();
        if n > 0 {
            self.commit(ops)?;
        }
        Ok(n)
    }

    // --- journal --------------------------------------------------------------------------

    /// Writes a journal entry: a repeat of (subject, code) refreshes the existing one; then
    /// the journal is cut to its limits (oldest first).
    pub fn journal(&self, entry: JournalEntry, limits: JournalLimits) -> Result<(), StateError> {
        let _g = self.guard();
        let key = format!("journal/{}", entry.digest()).into_bytes();
        let entry = match self.read::<JournalEntry>(&key)? {
            Some(old) => entry.refreshing(&old),
            None => entry,
        };
        let mut all: Vec<(Vec<u8>, JournalEntry)> = self
            .scan::<JournalEntry>(b"journal/")?
            .into_iter()
            .filter(|(k, _)| *k != key)
            .collect();
        all.push((key, entry.clone()));
        let keep = limits.select(all.iter().map(|(_, e)| e).collect(), entry.time);
        let mut ops = Vec::new();
        for (i, (k, e)) in all.into_iter().enumerate() {
            if keep.contains(&i) {
                ops.push((k, Some(serde_json::to_vec(&e)?)));
            } else {
                ops.push((k, None));
            }
        }
        self.commit(ops)
    }

    /// The journal, newest first, after dropping entries past the limits.
    pub fn journal_entries(
        &self,
        limits: JournalLimits,
        now: i64,
    ) -> Result<Vec<JournalEntry>, StateError> {
        let all = self.scan::<JournalEntry>(b"journal/")?;
        let keep = limits.select(all.iter().map(|(_, e)| e).collect(), now);
        let mut out: Vec<JournalEntry> = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, (_, e))| e)
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.time));
        Ok(out)
    }

    // --- tasks ----------------------------------------------------------------------------

    /// The open task of a problem kind.
    pub fn task(&self, kind: &str) -> Result<Option<TaskRecord>, StateError> {
        self.read(format!("task/{kind}").as_bytes())
    }

    /// Records the open task of a problem kind.
    pub fn set_task(&self, kind: &str, rec: &TaskRecord) -> Result<(), StateError> {
        self.put(format!("task/{kind}").as_bytes(), rec)
    }

    /// Forgets the task of a kind (it was closed).
    pub fn clear_task(&self, kind: &str) -> Result<(), StateError> {
        self.remove(format!("task/{kind}").as_bytes())
    }

    // --- МойСклад echo and poll bookkeeping -------------------------------------------------

    /// The `updated` of a МойСклад entity the last time we evaluated it.
    pub fn ms_seen(&self, entity: &str, id: &str) -> Result<Option<String>, StateError> {
        self.read(format!("msseen/{entity}/{id}").as_bytes())
    }

    /// Records that a МойСклад entity was evaluated at this `updated`.
    pub fn set_ms_seen(&self, entity: &str, id: &str, updated: &str) -> Result<(), StateError> {
        self.put(format!("msseen/{entity}/{id}").as_bytes(), updated)
    }

    /// The `updated` of our own last write to a МойСклад entity.
    pub fn ms_own(&self, entity: &str, id: &str) -> Result<Option<String>, StateError> {
        self.read(format!("msown/{entity}/{id}").as_bytes())
    }

    /// Whether a deletion of this МойСклад entity was queued or made by us (and its marker
    /// has not expired).
    pub fn ms_gone(&self, entity: &str, id: &str, now: i64) -> Result<bool, StateError> {
        let key = format!("msgone/{entity}/{id}");
        Ok(self
            .read::<i64>(key.as_bytes())?
            .is_some_and(|exp| exp > now))
    }

    /// Records that we deleted a МойСклад entity ourselves: the audit poll does not report
    /// it (as МойСклад sends no webhook for our own changes).
    pub fn set_ms_gone(&self, entity: &str, id: &str, now: i64) -> Result<(), StateError> {
        let _g = self.guard();
        self.put(
            format!("msgone/{entity}/{id}").as_bytes(),
            &(now + GONE_TTL_MS),
        )
    }

    /// Records our own write to a МойСклад entity (the poll ignores that version).
    pub fn set_ms_own(&self, entity: &str, id: &str, updated: &str) -> Result<(), StateError> {
        self.put(format!("msown/{entity}/{id}").as_bytes(), updated)
    }

    /// Forgets our own write to a МойСклад entity: the poll takes its next version as news.
    pub fn clear_ms_own(&self, entity: &str, id: &str) -> Result<(), StateError> {
        self.remove(format!("msown/{entity}/{id}").as_bytes())
    }

    /// The `updated` of a МойСклад entity the last time a rule fetched it.
    pub fn ms_read(&self, entity: &str, id: &str) -> Result<Option<String>, StateError> {
        self.read(format!("msread/{entity}/{id}").as_bytes())
    }

    /// Records the version of a МойСклад entity a rule fetched.
    pub fn set_ms_read(&self, entity: &str, id: &str, updated: &str) -> Result<(), StateError> {
        self.put(format!("msread/{entity}/{id}").as_bytes(), updated)
    }

    // --- what we last wrote -----------------------------------------------------------------

    /// The fields skladsync last wrote to an entity (`<system>.<entity>/<id>`):
    /// `{id, fields: {<field>: value}, at: {<field>: unix ms}}`.
    pub fn written(&self, key: &str) -> Result<Option<Value>, StateError> {
        self.read(format!("written/{key}").as_bytes())
    }

    /// Merges the top-level fields of a body written to an entity into its record: each field
    /// keeps the value and the time of its last write.
    pub fn note_written(&self, key: &str, body: &Value, at: i64) -> Result<(), StateError> {
        let Some(body) = body.as_object() else {
            return Ok(());
        };
        let mut rec = self
            .written(key)?
            .filter(Value::is_object)
            .unwrap_or_else(|| serde_json::json!({"id": key, "fields": {}, "at": {}}));
        for (field, v) in body {
            if let Some(fields) = rec.get_mut("fields").and_then(Value::as_object_mut) {
                fields.insert(field.clone(), v.clone());
            }
            if let Some(times) = rec.get_mut("at").and_then(Value::as_object_mut) {
                times.insert(field.clone(), Value::from(at));
            }
        }
        self.put(format!("written/{key}").as_bytes(), &rec)
    }

    // --- stock snapshot -------------------------------------------------------------------

    /// The digests of the stock rows last sent, by assortment id. A digest is 16 bytes (a
    /// UUID's, recorded as its 32 hex digits); one that does not read as such is left out (its
    /// row counts as changed).
    pub fn stock_digests(&self) -> Result<StockDigests, StateError> {
        let mut out = StockDigests::default();
        let mut legacy = Vec::new();
        for (k, v) in self.store.scan_prefix(b"stock/")? {
            let corrupt = |source| StateError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                source,
            };
            if k.get(6) == Some(&b'~') {
                let bucket: HashMap<String, String> =
                    serde_json::from_slice(&v).map_err(corrupt)?;
                for (id, d) in bucket {
                    if let Ok(u) = uuid::Uuid::try_parse(&d) {
                        out.by_id.insert(id, u.as_u128());
                    }
                }
            } else {
                let d: String = serde_json::from_slice(&v).map_err(corrupt)?;
                if let Ok(u) = uuid::Uuid::try_parse(&d) {
                    legacy.push((String::from_utf8_lossy(&k[6..]).into_owned(), u.as_u128()));
                }
                out.legacy.push(k);
            }
        }
        for (id, d) in legacy {
            out.by_id.entry(id).or_insert(d);
        }
        Ok(out)
    }

    /// Records stock digests, merged into the [`STOCK_BUCKETS`] values they are kept in
    /// (`stock/~<bucket>`, a JSON object `{id: digest}`), several buckets to a batch, and
    /// removes the `legacy` keys. Kept one key per row (as before), a 100 000-row pass made
    /// sled split and copy its nodes 100 000 times, which took 7–8 times the digests' size
    /// while they were written (the peak of the whole pass, after its last upload). Batches
    /// are enough: a digest says a row was sent, and they are recorded after the pass's plan
    /// is applied, so a crash between two batches only leaves some rows to be sent again by
    /// the next pass (an inventory upload of the same figures changes nothing).
    pub fn set_stock_digests(
        &self,
        digests: &[(Box<str>, u128)],
        legacy: &[Vec<u8>],
    ) -> Result<(), StateError> {
        let mut by_bucket: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, (id, _)) in digests.iter().enumerate() {
            by_bucket.entry(stock_bucket(id)).or_default().push(i);
        }
        let mut ops = Vec::new();
        let mut rows = 0;
        for (bucket, changed) in by_bucket {
            let key = stock_bucket_key(bucket);
            let mut values: BTreeMap<String, String> = self.read(&key)?.unwrap_or_default();
            for i in changed {
                let (id, d) = &digests[i];
                values.insert(
                    id.to_string(),
                    uuid::Uuid::from_u128(*d).simple().to_string(),
                );
            }
            rows += values.len();
            ops.push((key, Some(serde_json::to_vec(&values)?)));
            if rows >= STOCK_DIGESTS_BATCH {
                self.store.apply(std::mem::take(&mut ops))?;
                rows = 0;
            }
        }
        for k in legacy {
            ops.push((k.clone(), None));
            if ops.len() >= STOCK_DIGESTS_BATCH {
                self.store.apply(std::mem::take(&mut ops))?;
            }
        }
        self.commit(ops)
    }

    // --- misc -----------------------------------------------------------------------------

    /// A small named value (previous settings, the webhook secret).
    pub fn misc(&self, name: &str) -> Result<Option<Value>, StateError> {
        self.read(format!("misc/{name}").as_bytes())
    }

    /// Sets a small named value.
    pub fn set_misc(&self, name: &str, value: &Value) -> Result<(), StateError> {
        self.put(format!("misc/{name}").as_bytes(), value)
    }

    // --- relayed webhooks -------------------------------------------------------------------

    /// Keeps a webhook this runner received for a pair another runner serves (`relay/…`):
    /// one insert under a key of its own, so it needs no lease and never meets a write of
    /// the serving runner (which queues it and removes it, see [`SyncState::unrelay`]).
    pub fn relay(&self, relayed: &Relayed) -> Result<(), StateError> {
        let mut key = RELAY_PREFIX.to_vec();
        key.extend_from_slice(&relayed.at.to_be_bytes());
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        self.store
            .apply(vec![(key, Some(serde_json::to_vec(relayed)?))])
    }

    /// Removes a relayed webhook once it is queued (under this store's lease).
    pub fn unrelay(&self, key: &[u8]) -> Result<(), StateError> {
        if !key.starts_with(RELAY_PREFIX) {
            return Ok(());
        }
        self.remove(key)
    }
}

/// The key prefix of relayed webhooks.
pub const RELAY_PREFIX: &[u8] = b"relay/";

/// A МойСклад webhook received by a runner that does not serve its pair: kept in the shared
/// state until the serving runner queues it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relayed {
    /// The notification's body.
    pub body: Value,
    /// Its `requestId` (the dedupe key), when МойСклад sent one.
    pub request_id: Option<String>,
    /// When it was received (unix ms).
    pub at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    #[test]
    fn a_plan_is_recorded_in_a_buffer_of_exactly_its_size() {
        let value: Value = serde_json::json!({
            "effects": (0..2_000)
                .map(|i| serde_json::json!({"xmlId": format!("x{i}"), "stores": [{"code": "main", "available": i}]}))
                .collect::<Vec<_>>()
        });
        let exact = to_vec_exact(&value).expect("json");
        assert_eq!(exact, serde_json::to_vec(&value).expect("json"));
        assert_eq!(exact.capacity(), exact.len());
    }

    fn order(id: i64, change: i64) -> Work {
        Work::CrmOrder {
            id,
            changes: vec![json!({"id": change})],
            created: false,
            deleted: false,
            stub: Value::Null,
        }
    }

    /// Digests are kept in at most [`STOCK_BUCKETS`] values however many rows there are; a
    /// changes-only pass merges into them; digests kept one key a row by earlier versions are
    /// read and removed when digests are next recorded.
    #[test]
    fn stock_digests_live_in_buckets_merge_and_replace_the_legacy_keys() {
        let s = SyncState::in_memory();
        let id = |n: u32| format!("0e3a0000-5a1e-11f0-0a80-{n:012}");
        let digests: Vec<(Box<str>, u128)> = (0..3_000)
            .map(|n| (id(n).into_boxed_str(), u128::from(n) + 1))
            .collect();
        // A row recorded by an earlier version, one key a row.
        let old = uuid::Uuid::from_u128(77).simple().to_string();
        s.put(format!("stock/{}", id(5_000)).as_bytes(), &old)
            .unwrap();
        let before = s.stock_digests().unwrap();
        assert_eq!(before.by_id.get(&id(5_000)), Some(&77));
        assert_eq!(before.legacy.len(), 1);
        s.set_stock_digests(&digests, &before.legacy).unwrap();
        let keys = s.store.scan_prefix(b"stock/").unwrap();
        assert!(keys.len() <= STOCK_BUCKETS as usize, "{} keys", keys.len());
        assert!(keys.iter().all(|(k, _)| k.get(6) == Some(&b'~')));
        let after = s.stock_digests().unwrap();
        assert!(after.legacy.is_empty());
        assert_eq!(after.by_id.len(), 3_000);
        assert_eq!(after.by_id.get(&id(2_999)), Some(&3_000));
        // A changes-only pass: one row changed, the others kept.
        s.set_stock_digests(&[(id(7).into_boxed_str(), 9_999)], &[])
            .unwrap();
        let merged = s.stock_digests().unwrap();
        assert_eq!(merged.by_id.len(), 3_000);
        assert_eq!(merged.by_id.get(&id(7)), Some(&9_999));
        assert_eq!(merged.by_id.get(&id(8)), Some(&9));
    }

    #[test]
    fn links_answer_from_both_sides_and_replace() {
        let s = SyncState::in_memory();
        let l = Link {
            kind: "order".into(),
            ids: [
                ("crm".to_string(), json!(7)),
                ("moysklad".to_string(), json!("a")),
            ]
            .into_iter()
            .collect(),
        };
        s.put_link(&l).unwrap();
        assert_eq!(
            s.linked("order", "crm", &json!("7")).unwrap(),
            Some(l.clone())
        );
        assert_eq!(s.linked("order", "moysklad", &json!("a")).unwrap(), Some(l));
        let l2 = Link {
            kind: "order".into(),
            ids: [
                ("crm".to_string(), json!(7)),
                ("moysklad".to_string(), json!("b")),
            ]
            .into_iter()
            .collect(),
        };
        s.put_link(&l2).unwrap();
        assert_eq!(s.linked("order", "moysklad", &json!("a")).unwrap(), None);
        assert_eq!(s.links().unwrap(), vec![l2]);
    }

    #[test]
    fn inbox_merges_waiting_work_of_one_subject() {
        let s = SyncState::in_memory();
        let a = s.enqueue(order(1, 10), 0).unwrap();
        let b = s.enqueue(order(2, 11), 0).unwrap();
        let c = s.enqueue(order(1, 12), 0).unwrap();
        assert_eq!(a, c);
        assert_ne!(a, b);
        // The same history entry twice is kept once.
        s.enqueue(order(1, 12), 0).unwrap();
        let items = s.inbox().unwrap();
        assert_eq!(items.len(), 2);
        match &items[0].1.work {
            Work::CrmOrder { changes, .. } => assert_eq!(changes.len(), 2),
            other => panic!("{other:?}"),
        }
        // The item being processed is not merged into.
        assert!(s.claim(a).unwrap().is_some());
        let d = s.enqueue(order(1, 13), 0).unwrap();
        assert_ne!(d, a);
        s.finish_item(a).unwrap();
        s.release();
        assert_eq!(s.inbox().unwrap().len(), 2);
        let e = s.enqueue(order(1, 14), 0).unwrap();
        assert_eq!(e, d);
    }

    /// A store that counts the bytes written to it.
    #[derive(Default)]
    struct Counting {
        inner: MemoryStore,
        written: std::sync::atomic::AtomicUsize,
    }

    impl Store for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            self.inner.get(key)
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StateError> {
            self.inner.scan_prefix(prefix)
        }
        fn apply(&self, ops: Vec<BatchOp>) -> Result<(), StateError> {
            let n: usize = ops
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum();
            self.written
                .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            self.inner.apply(ops)
        }
        fn flush(&self) -> Result<(), StateError> {
            Ok(())
        }
    }

    fn deletion(id: &str, source: Source) -> Work {
        Work::Moysklad {
            entity: "paymentin".into(),
            action: "deleted".into(),
            id: id.into(),
            href: format!("https://h/api/remap/1.2/entity/paymentin/{id}"),
            updated_fields: vec![],
            request_id: None,
            source,
        }
    }

    #[test]
    fn a_deletion_is_queued_once_whoever_reports_it() {
        let s = SyncState::in_memory();
        // The webhook first, then the poll (after the first was done): queued once.
        let seq = s.enqueue(deletion("a", Source::Webhook), 10).unwrap();
        s.finish_item(seq).unwrap();
        assert!(s
            .enqueue_all(vec![deletion("a", Source::Poll)], 20)
            .unwrap()
            .is_empty());
        assert_eq!(s.inbox_len().unwrap(), 0);
        // The poll first, then the webhook (while the first waits): queued once.
        s.enqueue(deletion("b", Source::Poll), 30).unwrap();
        s.enqueue_all(vec![deletion("b", Source::Webhook)], 40)
            .unwrap();
        let inbox = s.inbox().unwrap();
        assert_eq!(inbox.len(), 1);
        assert!(matches!(
            &inbox[0].1.work,
            Work::Moysklad {
                source: Source::Poll,
                ..
            }
        ));
        // Twice in one batch: once.
        let seqs = s
            .enqueue_all(
                vec![deletion("c", Source::Poll), deletion("c", Source::Poll)],
                50,
            )
            .unwrap();
        assert_eq!(seqs.len(), 1);
        // Our own deletion is not reported back.
        s.set_ms_gone("paymentin", "d", 60).unwrap();
        assert!(s.ms_gone("paymentin", "d", 61).unwrap());
        assert!(s
            .enqueue_all(vec![deletion("d", Source::Poll)], 70)
            .unwrap()
            .is_empty());
        // Other work of a deleted entity is not affected; markers expire and are pruned.
        assert!(!s.ms_gone("paymentin", "a", 10 + GONE_TTL_MS).unwrap());
        assert!(s.prune(100 + GONE_TTL_MS, i64::MAX).unwrap() >= 4);
        assert!(!s.ms_gone("paymentin", "d", 0).unwrap());
    }

    #[test]
    fn plan_progress_is_one_small_write_per_effect() {
        let store = Arc::new(Counting::default());
        let s = SyncState::new(store.clone());
        let seq = s.enqueue(Work::SettingsSaved, 0).unwrap();
        let effects: Vec<Value> = (0..2000)
            .map(|i| {
                json!({"rule": "r", "op": "journal", "code": "X", "level": "info",
                       "text": format!("entry {i} with some text to make the plan large"), "subject": {}})
            })
            .collect();
        let plan: skladsync_engine::Plan =
            serde_json::from_value(json!({"event": "settings.saved", "effects": effects})).unwrap();
        let ob = Outbox {
            seq,
            plan,
            started: 1,
            done: BTreeMap::new(),
            rules: String::new(),
        };
        s.start_plan(&ob).unwrap();
        let before = store.written.load(std::sync::atomic::Ordering::SeqCst);
        assert!(before > 100_000, "the plan itself is large: {before} bytes");
        for i in 0..2000 {
            s.effect_done(seq, i, &Value::Null).unwrap();
        }
        let progress = store.written.load(std::sync::atomic::Ordering::SeqCst) - before;
        // Rewriting the plan after every effect would write 2000 × the plan (> 200 MB).
        assert!(progress < 2000 * 64, "{progress} bytes for 2000 effects");
        let back = s.plan(seq).unwrap().unwrap();
        assert_eq!(back.done.len(), 2000);
        assert_eq!(back.plan, ob.plan);
        // The item holds its plan: new work of its subject waits in an item of its own.
        let other = s.enqueue(Work::SettingsSaved, 5).unwrap();
        assert_ne!(other, seq);
        s.finish_item(seq).unwrap();
        assert!(s.plan(seq).unwrap().is_none());
        assert!(store.inner.scan_prefix(b"done/").unwrap().is_empty());
    }

    #[test]
    fn a_recorded_plan_keeps_the_version_of_the_rules_that_made_it() {
        let s = SyncState::in_memory();
        let seq = s.enqueue(Work::SettingsSaved, 0).unwrap();
        let plan: skladsync_engine::Plan =
            serde_json::from_value(json!({"event": "settings.saved", "effects": []})).unwrap();
        let ob = Outbox {
            seq,
            plan: plan.clone(),
            started: 1,
            done: BTreeMap::new(),
            rules: "0123456789abcdef".into(),
        };
        s.start_plan(&ob).unwrap();
        assert_eq!(s.plan(seq).unwrap().unwrap().rules, "0123456789abcdef");
        // A plan recorded before versions were kept reads back with none.
        let old = json!({"seq": seq, "plan": plan, "started": 1});
        s.put(&plan_key(seq), &old).unwrap();
        assert_eq!(s.plan(seq).unwrap().unwrap().rules, "");
    }

    #[test]
    fn where_a_given_up_part_ended_is_kept_for_one_read_of_its_pass() {
        let s = SyncState::in_memory();
        let seq = s.enqueue(Work::StockPass { full: false }, 0).unwrap();
        let plan: skladsync_engine::Plan =
            serde_json::from_value(json!({"event": "stock.pass", "effects": []})).unwrap();
        let ob = Outbox {
            seq,
            plan,
            started: 1,
            done: BTreeMap::new(),
            rules: String::new(),
        };
        // A part that more parts follow: its last row is recorded with its plan.
        s.start_plan_parts(&ob, Some("row-7")).unwrap();
        let item = s.inbox_item(seq).unwrap().unwrap();
        assert!(item.plan && item.more_parts);
        assert_eq!(item.part_end.as_deref(), Some("row-7"));
        // Given up: the item is due again, holding where the part ended (kept in the state,
        // so a restart keeps it too).
        let again = InboxItem {
            plan: false,
            more_parts: false,
            part_end: None,
            resume_after: item.part_end.clone(),
            ..item
        };
        s.end_part(seq, &again).unwrap();
        assert!(s.plan(seq).unwrap().is_none());
        let waiting = s.inbox_item(seq).unwrap().unwrap();
        assert_eq!(waiting.resume_after.as_deref(), Some("row-7"));
        // A changes pass merged into it keeps it; the next plan of the pass (its read used
        // it) clears it.
        assert_eq!(s.enqueue(Work::StockPass { full: false }, 5).unwrap(), seq);
        let waiting = s.inbox_item(seq).unwrap().unwrap();
        assert_eq!(waiting.resume_after.as_deref(), Some("row-7"));
        s.start_plan_parts(&ob, None).unwrap();
        let item = s.inbox_item(seq).unwrap().unwrap();
        assert_eq!(
            (item.more_parts, item.part_end, item.resume_after),
            (false, None, None)
        );
        // A full pass merged into a changes pass waiting with it: every row is sent.
        s.end_part(seq, &again).unwrap();
        assert_eq!(s.enqueue(Work::StockPass { full: true }, 6).unwrap(), seq);
        let waiting = s.inbox_item(seq).unwrap().unwrap();
        assert_eq!(waiting.work, Work::StockPass { full: true });
        assert_eq!(waiting.resume_after, None);
        // Unset, they are not written (an item reads as it did before they existed), and
        // an item without them reads back without them.
        let text =
            serde_json::to_value(InboxItem::new(Work::StockPass { full: false }, 0)).unwrap();
        assert!(text.get("part_end").is_none() && text.get("resume_after").is_none());
        let old: InboxItem = serde_json::from_value(text).unwrap();
        assert_eq!((old.part_end, old.resume_after), (None, None));
    }

    #[test]
    fn a_parked_item_waits_for_new_work_or_other_rules() {
        let s = SyncState::in_memory();
        let seq = s.enqueue(order(1, 10), 0).unwrap();
        let mut item = s.inbox_item(seq).unwrap().unwrap();
        item.parked = Some(Parked {
            reason: "boom".into(),
            rules: "v1".into(),
            at: 0,
        });
        s.update_item(seq, &item).unwrap();
        // The same history entry again changes nothing: still parked.
        s.enqueue(order(1, 10), 1).unwrap();
        assert!(s.inbox_item(seq).unwrap().unwrap().parked.is_some());
        assert_eq!(s.unpark_changed("v1", 2).unwrap(), 0);
        // Other rules: tried again.
        assert_eq!(s.unpark_changed("v2", 2).unwrap(), 1);
        assert!(s.inbox_item(seq).unwrap().unwrap().parked.is_none());
        // New work of its subject: tried again.
        s.update_item(seq, &item).unwrap();
        s.enqueue(order(1, 11), 3).unwrap();
        assert!(s.inbox_item(seq).unwrap().unwrap().parked.is_none());
    }

    fn ms(id: &str, action: &str) -> Work {
        Work::Moysklad {
            entity: "customerorder".into(),
            action: action.into(),
            id: id.into(),
            href: format!("http://ms/entity/customerorder/{id}"),
            updated_fields: vec![],
            request_id: None,
            source: Source::Webhook,
        }
    }

    fn actions(s: &SyncState) -> Vec<(String, String)> {
        s.inbox()
            .unwrap()
            .into_iter()
            .filter_map(|(_, i)| match i.work {
                Work::Moysklad { id, action, .. } => Some((id, action)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn moysklad_work_coalesces_per_entity_and_keeps_deletions() {
        let s = SyncState::in_memory();
        // Created then updated: one item, still a creation.
        let a = s.enqueue(ms("a", "created"), 0).unwrap();
        assert_eq!(s.enqueue(ms("a", "updated"), 0).unwrap(), a);
        // Updated then deleted, and an update arriving late: one item, a deletion.
        let b = s.enqueue(ms("b", "updated"), 0).unwrap();
        assert_eq!(s.enqueue(ms("b", "deleted"), 0).unwrap(), b);
        assert_eq!(s.enqueue(ms("b", "updated"), 0).unwrap(), b);
        assert_eq!(
            actions(&s),
            [
                ("a".into(), "created".into()),
                ("b".into(), "deleted".into())
            ]
        );
        // The item in progress is not merged into: a deletion arriving then gets its own.
        assert!(s.claim(a).unwrap().is_some());
        let c = s.enqueue(ms("a", "deleted"), 0).unwrap();
        assert_ne!(c, a);
        s.finish_item(a).unwrap();
        s.release();
        assert_eq!(
            actions(&s),
            [
                ("b".into(), "deleted".into()),
                ("a".into(), "deleted".into())
            ]
        );
        assert_eq!(s.inbox_len().unwrap(), 2);
    }

    fn fields(s: &SyncState) -> Vec<Vec<String>> {
        s.inbox()
            .unwrap()
            .into_iter()
            .filter_map(|(_, i)| match i.work {
                Work::Moysklad { updated_fields, .. } => Some(updated_fields),
                _ => None,
            })
            .collect()
    }

    fn ms_fields(id: &str, fields: &[&str], source: Source) -> Work {
        let mut w = ms(id, "updated");
        if let Work::Moysklad {
            updated_fields,
            source: src,
            ..
        } = &mut w
        {
            *updated_fields = fields.iter().map(|f| f.to_string()).collect();
            *src = source;
        }
        w
    }

    #[test]
    fn waiting_updated_fields_merge_and_an_empty_list_means_every_field() {
        let s = SyncState::in_memory();
        // Two webhooks: the union of what they name.
        s.enqueue(ms_fields("a", &["state"], Source::Webhook), 0)
            .unwrap();
        s.enqueue(ms_fields("a", &["description"], Source::Webhook), 0)
            .unwrap();
        // The poll (no fields: anything may have changed) first, a webhook after it, and the
        // other way round: every field counts, the webhook's list does not narrow the poll.
        s.enqueue(ms_fields("b", &[], Source::Poll), 0).unwrap();
        s.enqueue(ms_fields("b", &["description"], Source::Webhook), 0)
            .unwrap();
        s.enqueue(ms_fields("c", &["description"], Source::Webhook), 0)
            .unwrap();
        s.enqueue(ms_fields("c", &[], Source::Poll), 0).unwrap();
        assert_eq!(
            fields(&s),
            vec![
                vec!["state".to_string(), "description".to_string()],
                vec![],
                vec![]
            ]
        );
    }

    #[test]
    fn the_bounded_inbox_refuses_new_items_but_takes_merges() {
        let s = SyncState::in_memory();
        for i in 0..3 {
            assert!(s
                .enqueue_bounded(vec![ms(&format!("e{i}"), "updated")], 0, 3)
                .unwrap()
                .is_some());
        }
        assert_eq!(s.inbox_len().unwrap(), 3);
        // A new entity does not fit; nothing of the refused batch is written.
        let refused = s
            .enqueue_bounded(vec![ms("e0", "deleted"), ms("new", "updated")], 0, 3)
            .unwrap();
        assert!(refused.is_none());
        assert_eq!(actions(&s)[0], ("e0".into(), "updated".into()));
        // Work that merges into waiting items fits.
        assert!(s
            .enqueue_bounded(vec![ms("e0", "deleted")], 0, 3)
            .unwrap()
            .is_some());
        assert_eq!(actions(&s)[0], ("e0".into(), "deleted".into()));
        // Room again once an item is done; the count follows.
        let (seq, _) = s.inbox().unwrap()[0].clone();
        s.finish_item(seq).unwrap();
        assert_eq!(s.inbox_len().unwrap(), 2);
        assert!(s
            .enqueue_bounded(vec![ms("new", "updated")], 0, 3)
            .unwrap()
            .is_some());
        assert_eq!(s.inbox_len().unwrap(), 3);
        // An empty inbox takes any batch (a poll batch larger than the bound still moves).
        let t = SyncState::in_memory();
        let big: Vec<Work> = (0..5).map(|i| ms(&format!("x{i}"), "updated")).collect();
        assert!(t.enqueue_bounded(big, 0, 3).unwrap().is_some());
    }

    #[test]
    fn a_bad_pair_id_is_refused_before_anything_opens() {
        let dir = std::env::temp_dir().join(format!("skladsync-pairid-{}", std::process::id()));
        let c = crate::config::StateConfig::sled(dir.clone());
        assert!(matches!(
            open_pair_state_sync(&c, "../escape"),
            Err(StateError::Config(_))
        ));
        assert!(!dir.exists(), "nothing created for a refused pair id");
    }

    #[test]
    fn dedupe_keys_expire() {
        let s = SyncState::in_memory();
        assert!(!s.request_seen("r1", 0).unwrap());
        s.mark_request("r1", 100).unwrap();
        assert!(s.request_seen("r1", 50).unwrap());
        assert!(!s.request_seen("r1", 150).unwrap());
        assert_eq!(s.prune(1000, 10).unwrap(), 1);
    }
}
