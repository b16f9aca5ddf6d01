//! The daemon: turns what happens in the two systems into events, evaluates them, applies
//! the plans, and keeps doing it.
//!
//! # Sources, one durable inbox
//!
//! Every source first writes **work** to the state's inbox (flushed), and only then moves its
//! own cursor; a single worker takes work in order, builds the event (fetching the entity as
//! it is *now*), evaluates it, and applies the plan. A crash at any moment therefore loses
//! nothing: work that was acknowledged is in the inbox, and a plan half applied is recorded
//! with its item and is resumed (see [`crate::apply`]). A stock pass runs in its own lane,
//! beside the worker (one pass at a time; its item is finished only when it is done).
//!
//! | source | work | event |
//! |---|---|---|
//! | CRM history (`orders/history`, `customers/history`, `customers-corporate/history`), every `crm_poll`; cursor `sinceId` per feed | one item per order / customer, with its history entries; our own entries (`apiKey.current`) dropped | `crm.order.changed` / `crm.order.deleted` / `crm.customer.changed` / `crm.customer_corporate.changed` |
//! | МойСклад webhooks (HTTP, `POST <public_url>/moysklad/webhook/<secret>/<instance>`), answered after the work is durable, deduplicated by `requestId`; refused with 503 when the inbox is full | one item per entity | `moysklad.<entity>.<action>` |
//! | МойСклад `updated>=` poll, every `reconcile` and at start; watermark per entity type | entities changed since, except versions already evaluated or written by us | the same |
//! | МойСклад audit (`GET audit?filter=eventType=delete;entityType=…`, one request for every type whose deletions some rule handles), every `reconcile` and at start; one watermark | entities deleted since, except deletions already queued or made by us | `moysklad.<entity>.deleted` |
//! | stock schedule, every `stock`; a full pass every `purchase_prices` and at start | a stock pass | `stock.pass` |
//! | start-up | settings | `settings.saved` |
//! | an effect failing for good | the problem | `sync.problem` |
//!
//! Work of the same subject (one order, one МойСклад entity) that is still waiting
//! is merged, so a busy order is evaluated once per pass.
//!
//! # Failures
//!
//! A plan that started applying is finished: a failed effect is journalled with the API's raw
//! error and the **same plan** is resumed from that effect with backoff (`retry_min` doubling
//! to `retry_max`) — the event is not evaluated again. Newer work of the same subject waits
//! behind it. Failures that will not go away by waiting (authorisation, refusals, impossible
//! plans) also queue a `sync.problem` event, which rules turn into journal entries and tasks;
//! a refused effect is given up after [`MAX_ATTEMPTS`] tries, an impossible one at once, with
//! a `GAVE_UP` journal entry that lists every effect that never ran.
//!
//! A lookup that fails while evaluating is retried with the same backoff. An evaluation that
//! fails in a way that repeats (a rule error, a runaway rule refused by its limits) **parks**
//! the item: journalled (`PARKED`), shown on `/status`, and tried again only when the rules
//! or settings change (their version is a content hash) or new work of its subject arrives.
//! The daemon never panics on what an API sends.

mod crm;
mod events;
mod icml;
mod moysklad;
mod ops;
pub mod prefetch;
mod reload;
mod stock;
mod version;
mod webhook;

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value as Json};
use skladsync_engine::{EvalOptions, Value};
use tokio::sync::{watch, Notify};

use crate::apply::{Applier, ApplyError, FailureClass, Outcome, PlanRun, Stats, StatsSnapshot};
use crate::clients::moysklad::{self as ms_client, Auth, MoyskladClient, MoyskladError};
use crate::clients::retailcrm::{self as crm_client, RetailcrmClient};
use crate::config::Config;
use crate::state::{InboxItem, JournalEntry, Outbox, Parked, StateError, SyncState, Work};
use crate::world::catalogue::CatalogueMirror;
use crate::world::prefetch::IdSource;
use crate::world::{from_json, LiveWorld, ReferenceCache, Systems};

pub use events::AfterCommit;
pub use ops::{MetricsError, Observed};
pub use reload::ReloadOutcome;
pub(crate) use webhook::serve as serve_http;
pub use webhook::ReceiverStats;

/// Work that fails for a reason retrying will not fix is given up after this many tries.
pub const MAX_ATTEMPTS: u32 = 10;

/// The most CRM order items whose plans are applied side by side.
const WAVE: usize = 100;

/// Past this many inbox items the CRM history is polled [`BACKLOG_POLL_FACTOR`] times less
/// often.
const BACKLOG_ITEMS: usize = 50;

/// How much longer the CRM poll waits while a backlog drains.
const BACKLOG_POLL_FACTOR: u32 = 4;

/// While a backlog drains, the CRM poll waits at least the time retailCRM's budget (10
/// requests/s) needs for one request per waiting item: what a poll finds is done after the
/// round in progress anyway.
const BACKLOG_POLL_PER_ITEM: Duration = Duration::from_millis(100);

/// The longest the CRM poll waits while a backlog drains.
const BACKLOG_POLL_MAX: Duration = Duration::from_secs(30);

/// How long the CRM poll waits when `waiting` items are in the inbox (`every`: `crm_poll`).
fn crm_poll_wait(every: Duration, waiting: usize) -> Duration {
    if waiting <= BACKLOG_ITEMS {
        return every;
    }
    let per_item = BACKLOG_POLL_PER_ITEM
        .saturating_mul(u32::try_from(waiting).unwrap_or(u32::MAX))
        .min(BACKLOG_POLL_MAX);
    every.saturating_mul(BACKLOG_POLL_FACTOR).max(per_item)
}

/// How long a queued stock pass waits, at most, while CRM orders are due (they go first: a
/// pass is heavy on both budgets and comes again anyway).
const STOCK_DEFER_MAX_MS: i64 = 5 * 60 * 1000;

/// How long the first stock pass waits, at most, for the first CRM history poll (a backlog it
/// finds goes first).
const FIRST_STOCK_WAIT: Duration = Duration::from_secs(60);

/// An item due in a round of [`Daemon::drain`], as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Due {
    seq: u64,
    kind: DueKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DueKind {
    /// A CRM order (its subject): processed in a wave.
    Order(String),
    /// A stock pass, queued at (unix ms).
    Stock { queued_at: i64 },
    /// The settings were saved: before anything evaluated under them.
    Settings,
    /// Anything else (customers, МойСклад changes, problems).
    Other,
}

/// What a round does, in which order: the settings first; a stock pass that has waited
/// [`STOCK_DEFER_MAX_MS`] next (the bound on how long orders can hold it back); then the CRM
/// orders (one wave, their plans applied side by side, so that retailCRM's budget stays busy
/// with their writes); then the rest in the order queued; a stock pass last, and not at all
/// while CRM orders are due (it waits for a round without them, or for its bound). Returns
/// the round and, when a stock pass was held back, when it stops waiting.
fn schedule_round(due: Vec<Due>, now: i64) -> (Vec<Due>, Option<i64>) {
    let orders = due.iter().any(|d| matches!(d.kind, DueKind::Order(_)));
    let mut held_until: Option<i64> = None;
    let mut round: Vec<(u8, Due)> = Vec::with_capacity(due.len());
    for d in due {
        let turn = match d.kind {
            DueKind::Settings => 0,
            DueKind::Stock { queued_at } if now - queued_at >= STOCK_DEFER_MAX_MS => 1,
            DueKind::Order(_) => 2,
            DueKind::Other => 3,
            DueKind::Stock { queued_at } => {
                if orders {
                    let until = queued_at + STOCK_DEFER_MAX_MS;
                    held_until = Some(held_until.map_or(until, |t| t.min(until)));
                    continue;
                }
                4
            }
        };
        round.push((turn, d));
    }
    round.sort_by_key(|(turn, _)| *turn);
    (round.into_iter().map(|(_, d)| d).collect(), held_until)
}

/// The МойСклад creates of a plan still to apply: `(entity, body)`.
fn ms_creates(outbox: &Outbox) -> Vec<(String, Json)> {
    outbox
        .plan
        .effects
        .iter()
        .enumerate()
        .filter(|(i, _)| !outbox.done.contains_key(i))
        .filter_map(|(_, e)| match &e.action {
            skladsync_engine::Action::Create {
                system,
                entity,
                body,
                ..
            } if &**system == "moysklad" => Some((entity.to_string(), body.to_serde_json())),
            _ => None,
        })
        .collect()
}

/// The links a plan still to apply will write: `(kind, system, id as text)` for every system
/// of every `link` effect whose id is known before the plan runs.
fn plan_links(outbox: &Outbox) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (i, e) in outbox.plan.effects.iter().enumerate() {
        if outbox.done.contains_key(&i) {
            continue;
        }
        if let skladsync_engine::Action::Link { kind, ids } = &e.action {
            for (system, id) in ids {
                if let Some(id) = crate::state::id_text(&id.to_serde_json()) {
                    out.push((kind.to_string(), system.to_string(), id));
                }
            }
        }
    }
    out
}

/// The МойСклад updates and deletes of a plan still to apply: `(entity type, id)`, the id
/// `None` when not known before the plan runs (a result of an earlier effect); a write to a
/// collection of an entity (`counterparty.accounts`) counts as a change of its parent.
fn ms_changes(outbox: &Outbox) -> Vec<(String, Option<String>)> {
    outbox
        .plan
        .effects
        .iter()
        .enumerate()
        .filter(|(i, _)| !outbox.done.contains_key(i))
        .filter_map(|(_, e)| match &e.action {
            skladsync_engine::Action::Update {
                system, entity, id, ..
            }
            | skladsync_engine::Action::Delete {
                system, entity, id, ..
            } if &**system == "moysklad" => Some((entity, id.to_serde_json())),
            skladsync_engine::Action::Create {
                system,
                entity,
                body,
                ..
            } if &**system == "moysklad" && entity.contains('.') => Some((
                entity,
                json!({"parent": body.to_serde_json().get("parent")}),
            )),
            _ => None,
        })
        .map(|(entity, id)| match entity.split_once('.') {
            Some((base, _)) => (
                base.to_string(),
                id.get("parent").and_then(crate::world::lookups::ms_id),
            ),
            None => (entity.to_string(), crate::world::lookups::ms_id(&id)),
        })
        .collect()
}

/// What the plans being applied beside an evaluation will write to МойСклад: creates
/// `(entity, body)` and changes `(entity type, id)` (see [`ms_creates`], [`ms_changes`]).
#[derive(Clone, Copy)]
struct Beside<'a> {
    creates: &'a [(String, Json)],
    changes: &'a [(String, Option<String>)],
    /// The links they will write: `(kind, system, id as text)`, one per system of a link.
    links: &'a [(String, String, String)],
}

/// How preparing an item ended.
enum Prepared {
    /// Its plan is recorded: apply it.
    Ready(Ready),
    /// Finished, parked or put back for later.
    Finished,
    /// Evaluated while plans that may change its lookups were applied: nothing recorded,
    /// evaluate it again once they are done.
    Conflict(InboxItem, Reads),
}

/// What an evaluation read that plans applied beside it may change.
#[derive(Debug, Default)]
struct Reads {
    /// МойСклад lookups `(entity, field, value)`.
    looked_up: Vec<(String, String, String)>,
    /// МойСклад fetches by id `(entity, id)`.
    fetched: Vec<(String, String)>,
    /// Links read `(kind, system, id, answer)`.
    links: Vec<(String, String, Json, Json)>,
}

impl Reads {
    /// Why plans with these creates, changes and links may change what was read, if they may.
    fn clash(
        &self,
        creates: &[(String, Json)],
        changes: &[(String, Option<String>)],
        links: &[(String, String, String)],
    ) -> Option<&'static str> {
        if crate::world::prefetch::may_find(&self.looked_up, creates) {
            return Some("a plan beside may create what the rules looked up");
        }
        if crate::world::prefetch::may_change(&self.fetched, changes) {
            return Some("a plan beside may change what the rules fetched");
        }
        // A link the rules read (found or not) that a plan beside writes: one at a time
        // would have seen it written (two orders of one customer: the second must use the
        // counterparty the first links, not create another).
        let relinked = self.links.iter().any(|(kind, system, id, _)| {
            crate::state::id_text(id).is_some_and(|id| {
                links
                    .iter()
                    .any(|(k, s, i)| k == kind && s == system && *i == id)
            })
        });
        relinked.then_some("a plan beside writes a link the rules read")
    }
}

/// An item evaluated and its plan recorded, to apply.
struct Ready {
    seq: u64,
    item: InboxItem,
    outbox: Outbox,
    after: AfterCommit,
}

/// How long webhook `requestId`s are remembered.
const DEDUPE_TTL_MS: i64 = 48 * 3600 * 1000;

/// At most one authorisation `sync.problem` per system this often.
const AUTH_PROBLEM_EVERY: Duration = Duration::from_secs(600);

/// Whether work that failed this way is eventually given up (retrying will not help).
fn gives_up(class: FailureClass) -> bool {
    matches!(class, FailureClass::Refused | FailureClass::Invalid)
}

/// How long confirmed idempotency keys are kept.
const KEY_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// Milliseconds since the epoch (UTC): inbox times, journal times.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the engine's `now()` returns: UTC wall time in milliseconds since 1970 (rules convert
/// it to a system's zone with `convert_tz`).
pub fn event_now_ms() -> i64 {
    now_ms()
}

/// The zone МойСклад writes its date-times in.
pub const MOYSKLAD_TIMEZONE: chrono_tz::Tz = chrono_tz::Europe::Moscow;

/// What can stop the daemon from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The rules or settings do not load.
    #[error("the rules do not load:\n{0}")]
    Rules(String),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The retailCRM client could not be built.
    #[error("retailCRM: {0}")]
    Crm(#[from] crm_client::Error),
    /// The МойСклад client could not be built.
    #[error("МойСклад: {0}")]
    Moysklad(#[from] MoyskladError),
    /// The МойСклад webhooks cannot be registered as configured (another runner owns them,
    /// or МойСклад could not reach the address).
    #[error("МойСклад webhooks: {0}")]
    Webhooks(String),
    /// The recordings folder cannot be written.
    #[error("record.dir {dir}: {source}")]
    Recordings {
        /// The folder.
        dir: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lease on the pair was lost (PostgreSQL state): another runner took it over.
    #[error(
        "the lease on the pair was lost to another runner (this one stalled or lost the \
         database for a whole state.lease): stopped; queued work stays in the state"
    )]
    LeaseLost,
    /// A plan applied alongside others stopped without an outcome (a panic).
    #[error("{0}")]
    Internal(String),
    /// The webhook receiver or the operator server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Told to stop while it waited for the pair's lease (another runner holds the pair).
    #[error("stopped while waiting for the lease on the pair (another runner holds it)")]
    NotStarted,
}

pub(crate) struct Inner {
    config: Config,
    /// The rule set in use; replaced whole by a reload, between two items.
    live: std::sync::RwLock<Arc<reload::Live>>,
    /// The `connection` settings the runner fills in (merged over every loaded set).
    connection: Json,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// The last refused reload (shown on `/status`), cleared by a clean one.
    refused: Mutex<Option<reload::Refusal>>,
    systems: Systems,
    state: SyncState,
    refs: Arc<ReferenceCache>,
    /// The assortment by externalCode (item matching without requests).
    catalogue: Arc<CatalogueMirror>,
    applier: Applier,
    stats: Arc<Stats>,
    webhook_url: Option<String>,
    // --- receiver (issue 9, items 5 and 7) ---
    /// The secret path segment of the receiver.
    webhook_secret: Option<String>,
    /// This runner's instance id (made once, kept in the state): in its webhook URLs.
    instance_id: String,
    /// Receiver and inbox-bound counters.
    receiver_stats: Arc<webhook::ReceiverStats>,
    // --- end receiver ---
    listener: Mutex<Option<tokio::net::TcpListener>>,
    receiver_addr: Option<std::net::SocketAddr>,
    // --- operator server (issue 14, item 2) ---
    /// The operator listener, when it is not the webhook listener.
    ops_listener: Mutex<Option<tokio::net::TcpListener>>,
    /// Where `/healthz`, `/readyz`, `/metrics` and the status page are served.
    operator_addr: Option<std::net::SocketAddr>,
    /// The token of the operator pages (`http.operator_token`, else the webhook secret).
    operator_token: Option<String>,
    /// API attempts, when each API last answered, poll cursors.
    observed: Arc<ops::Observed>,
    // --- end operator server ---
    /// New work was queued.
    wake: Notify,
    /// One item is processed at a time (apart from a stock pass, in its lane).
    processing: tokio::sync::Mutex<()>,
    /// The stock lane: held by the stock pass in flight (at most one) from its start until
    /// its item is done, on its own task, while the worker goes on with the rest; a reload
    /// and a shutdown wait for it.
    stock_lane: Arc<tokio::sync::Mutex<()>>,
    /// How the last stock pass in its lane failed, if it did: reported by the next
    /// [`Daemon::drain`] (or logged by the worker).
    lane_failed: Mutex<Option<DaemonError>>,
    /// The CRM history has been polled once since the start (the first stock pass waits for
    /// it: a backlog it finds goes first).
    crm_polled: watch::Sender<bool>,
    /// A reload waits for the item in progress: a wave takes no new order meanwhile.
    reload_waiting: AtomicBool,
    stopping: AtomicBool,
    /// When an authorisation problem was last queued, per system.
    auth_problems: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The retailCRM account's time zone.
    crm_tz: chrono_tz::Tz,
    /// Shared with the applier: plans stop between two effects.
    stop: Arc<AtomicBool>,
    /// Where evaluated events are recorded (`record:`), when on.
    recordings: Option<Arc<crate::recording::Recordings>>,
    /// The pair served, when a fleet hosts this daemon (no listener, status file or SIGHUP
    /// handler of its own: the fleet has them).
    pair: Option<String>,
    /// The lease on the pair (PostgreSQL state): let go at a clean stop.
    lease: Mutex<Option<crate::state::lease::PairLease>>,
}

/// How a daemon is reached over HTTP.
#[derive(Clone, Debug)]
pub enum Hosting {
    /// Listeners of its own (`webhooks.listen`, `http.listen`): the single-pair daemon.
    Own,
    /// Served under `/pairs/<pair>` by a fleet's one shared server at `addr` (public base
    /// URL `public_url`): no listener of its own.
    Shared {
        /// The pair id.
        pair: String,
        /// Where the shared server listens.
        addr: std::net::SocketAddr,
        /// The shared server's public base URL (what МойСклад is given).
        public_url: String,
    },
}

impl Hosting {
    fn shared_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Hosting::Own => None,
            Hosting::Shared { addr, .. } => Some(*addr),
        }
    }
}

/// A dry run of one event: the event document and the plan (or why there is none).
#[derive(Debug)]
pub struct DryRun {
    /// The event as `plan --event` takes it.
    pub event: Json,
    /// The plan, or the evaluation error.
    pub outcome: Result<skladsync_engine::Plan, String>,
}

impl DryRun {
    /// `{event, plan}` or `{event, error}`.
    pub fn to_json(&self) -> Json {
        match &self.outcome {
            Ok(plan) => json!({"event": self.event, "plan": plan}),
            Err(e) => json!({"event": self.event, "error": e}),
        }
    }
}

/// The sync daemon. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("receiver", &self.inner.receiver_addr)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Loads the rules, opens the state, binds the webhook receiver and builds the clients.
    pub async fn new(config: Config) -> Result<Daemon, DaemonError> {
        let state = open_state(&config.state).await?;
        Daemon::hosted(config, state, Hosting::Own).await
    }

    /// Loads the rules and builds the clients over an open state; binds listeners of its own
    /// with [`Hosting::Own`], none when a fleet's shared server serves it. With the state in
    /// PostgreSQL it first takes the pair's lease (waiting while another runner holds it).
    pub async fn hosted(
        config: Config,
        state: SyncState,
        hosting: Hosting,
    ) -> Result<Daemon, DaemonError> {
        // Never stopped: the sender is gone at once, so the wait for the lease never ends
        // on it.
        Daemon::hosted_until(config, state, hosting, watch::channel(false).1).await
    }

    /// Like [`Daemon::hosted`], and gives up waiting for the pair's lease when `stop` turns
    /// true ([`DaemonError::NotStarted`]): a fleet whose pair file changed or went away, or
    /// that stops, while another runner holds the pair.
    pub async fn hosted_until(
        config: Config,
        state: SyncState,
        hosting: Hosting,
        stop: watch::Receiver<bool>,
    ) -> Result<Daemon, DaemonError> {
        // --- PostgreSQL lease (issue 15, item 3): taken before anything is written, and
        // before the rules are compiled, so that a pair waiting for its lease on a standby
        // runner costs no compiled rule set ---
        let lease =
            match crate::state::lease::PairLease::take(&state, config.state.lease.0, stop).await? {
                Some(l) => Some(l),
                None if state.pg().is_some() => return Err(DaemonError::NotStarted),
                None => None,
            };
        // --- end lease ---
        let rules_version = reload::version_of(&config);
        let rules = reload::load_shared(&config, &rules_version)
            .map_err(|d| DaemonError::Rules(d.render(false)))?;

        let instance_id = instance_id(&state)?;
        let bind = |addr: std::net::SocketAddr| async move {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Listen { addr, source })?;
            let local = l
                .local_addr()
                .map_err(|source| DaemonError::Listen { addr, source })?;
            Ok::<_, DaemonError>((l, local))
        };
        let (listener, receiver_addr, webhook_url, secret) = if let Hosting::Shared {
            pair,
            addr,
            public_url,
        } = &hosting
        {
            // --- tenants (issue 15, item 1): the fleet's server routes `/pairs/<id>/…` here ---
            if config.webhooks.enabled {
                let secret = webhook_secret(&config, &state)?;
                let url = format!(
                    "{}/pairs/{pair}/moysklad/webhook/{secret}/{instance_id}",
                    public_url.trim_end_matches('/')
                );
                (None, Some(*addr), Some(url), Some(secret))
            } else {
                (None, None, None, None)
            }
        } else if config.webhooks.enabled {
            let (l, local) = bind(config.webhooks.listen).await?;
            let public = config
                .webhooks
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{local}"));
            let secret = webhook_secret(&config, &state)?;
            let url = format!(
                "{}/moysklad/webhook/{secret}/{instance_id}",
                public.trim_end_matches('/')
            );
            (Some(l), Some(local), Some(url), Some(secret))
        } else {
            (None, None, None, None)
        };
        // --- operator server (issue 14, item 2): always on unless `http.enabled: false`; the
        // webhook listener carries it when both have the same address ---
        let (ops_listener, operator_addr) = match config.operator_listen() {
            None => (None, None),
            Some(_) if matches!(hosting, Hosting::Shared { .. }) => (None, hosting.shared_addr()),
            // The same address (port 0 set in `http.listen` asks for a port of its own).
            Some(addr)
                if config.webhooks.enabled
                    && addr == config.webhooks.listen
                    && (config.http.listen.is_none() || addr.port() != 0) =>
            {
                (None, receiver_addr)
            }
            Some(addr) => {
                let (l, local) = bind(addr).await?;
                (Some(l), Some(local))
            }
        };
        let operator_token = if !config.http.operator_token.is_empty() {
            Some(config.http.operator_token.expose().to_string())
        } else if operator_addr.is_some() {
            Some(match &secret {
                Some(s) => s.clone(),
                None => webhook_secret(&config, &state)?,
            })
        } else {
            None
        };
        let observed = Arc::new(ops::Observed::default());
        let observer = |system: &'static str| {
            let o = observed.clone();
            crate::clients::ApiObserver::new(move |endpoint, status| {
                o.api(system, endpoint, status)
            })
        };
        // --- end operator server ---

        let systems = systems_of(
            &config,
            webhook_url.as_deref(),
            Some((observer(ops::CRM), observer(ops::MOYSKLAD))),
        )?;

        // The one settings key the runner writes: where the two APIs really are, and the
        // zones they write date-times in.
        let configured = rules
            .settings()
            .get("connection")
            .get("crm_timezone")
            .as_str()
            .map(str::to_string);
        let crm_tz = crm_timezone(&systems, &state, &config, configured.as_deref()).await?;
        let crm_url = config.crm.url.trim_end_matches('/').to_string();
        let connection = json!({"connection": {
            "moysklad_url": systems.ms.base_url(),
            "crm_url": crm_url,
            "crm_timezone": crm_tz.name(),
            "moysklad_timezone": MOYSKLAD_TIMEZONE.name(),
        }});
        // When this version became live: kept in the state, so a restart on the same rules
        // does not reset it.
        let since = state
            .misc("rules_version")?
            .filter(|v| v.get("version").and_then(Json::as_str) == Some(rules_version.as_str()))
            .and_then(|v| v.get("since").and_then(Json::as_i64))
            .unwrap_or_else(now_ms);
        let live = reload::Live::shared(rules, &connection, rules_version, since);
        let recordings = recordings(&config, &state)?;
        let refs = Arc::new(ReferenceCache::new(config.intervals.reference_ttl.0));
        let catalogue = Arc::new(CatalogueMirror::new(config.intervals.reference_ttl.0));
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let applier = Applier {
            systems: systems.clone(),
            state: state.clone(),
            refs: refs.clone(),
            webhook_url: webhook_url.clone(),
            journal: config.journal.limits(),
            stats: stats.clone(),
            stop: stop.clone(),
            orders: Arc::default(),
            customers: Arc::default(),
            lookups: Arc::default(),
            batch: Arc::default(),
        };
        Ok(Daemon {
            inner: Arc::new(Inner {
                config,
                live: std::sync::RwLock::new(Arc::new(live)),
                connection,
                reloading: tokio::sync::Mutex::new(()),
                refused: Mutex::new(None),
                systems,
                state,
                refs,
                catalogue,
                applier,
                stats,
                webhook_url,
                webhook_secret: secret,
                instance_id,
                receiver_stats: Arc::default(),
                listener: Mutex::new(listener),
                receiver_addr,
                ops_listener: Mutex::new(ops_listener),
                operator_addr,
                operator_token,
                observed,
                wake: Notify::new(),
                processing: tokio::sync::Mutex::new(()),
                crm_polled: watch::channel(false).0,
                reload_waiting: AtomicBool::new(false),
                stock_lane: Arc::new(tokio::sync::Mutex::new(())),
                lane_failed: Mutex::new(None),
                stopping: AtomicBool::new(false),
                lease: Mutex::new(lease),
                auth_problems: Mutex::new(Default::default()),
                crm_tz,
                stop,
                recordings,
                pair: match hosting {
                    Hosting::Own => None,
                    Hosting::Shared { pair, .. } => Some(pair),
                },
            }),
        })
    }

    /// The pair this daemon serves in a fleet (`None`: a single-pair daemon).
    pub fn pair(&self) -> Option<&str> {
        self.inner.pair.as_deref()
    }

    /// The webhook URL this daemon registers in МойСклад (with its secret: never log it).
    pub fn webhook_url(&self) -> Option<&str> {
        self.inner.webhook_url.as_deref()
    }

    /// The path of this daemon's `/status/<secret>` (with its secret: never log it).
    pub(crate) fn status_path(&self) -> Option<String> {
        self.inner
            .webhook_secret
            .as_ref()
            .map(|s| format!("/status/{s}"))
    }

    /// The routes a fleet's shared server serves for this pair under `/pairs/<id>`: the
    /// webhooks, `/status/<secret>`, the operator routes and the admin routes.
    pub(crate) fn pair_router(&self) -> axum::Router {
        webhook::router(
            self.clone(),
            webhook::Role {
                webhooks: true,
                operator: true,
            },
        )
    }

    /// The state.
    pub fn state(&self) -> &SyncState {
        &self.inner.state
    }

    /// What the daemon did so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// The address the webhook receiver listens on.
    pub fn receiver_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.receiver_addr
    }

    /// The address the operator server (`/healthz`, `/readyz`, `/metrics`, the status page)
    /// listens on: its own, or the webhook receiver's.
    pub fn operator_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.operator_addr
    }

    /// Whether some rule listens to `event`.
    pub fn listens(&self, event: &str) -> bool {
        self.live().listened.contains(event)
    }

    /// The settings the rules see now (with `connection` filled in by the runner).
    pub fn settings(&self) -> Value {
        self.live().settings.clone()
    }

    /// The journal limits from the config.
    pub fn journal_limits(&self) -> crate::state::JournalLimits {
        self.inner.config.journal.limits()
    }

    /// Queues work (durably) and wakes the worker.
    pub fn enqueue(&self, works: Vec<Work>) -> Result<(), StateError> {
        if works.is_empty() {
            return Ok(());
        }
        self.inner.state.enqueue_all(works, now_ms())?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Runs once at start: queues `settings.saved`, registers webhooks, bootstraps the
    /// МойСклад watermarks.
    pub async fn start_up(&self) -> Result<(), DaemonError> {
        let version = self.live().version.clone();
        let before = self
            .inner
            .state
            .misc("rules_version")?
            .and_then(|v| v.get("version").and_then(Json::as_str).map(str::to_string));
        if before.as_deref() != Some(version.as_str()) {
            // A new version since the last run (or the first run): journalled, and parked
            // work tried again.
            self.rules_changed(before.as_deref().unwrap_or_default(), "start")?;
        } else {
            let unparked = self.inner.state.unpark_changed(&version, now_ms())?;
            if unparked > 0 {
                tracing::info!(unparked, "the rules changed: parked work is tried again");
            }
        }
        self.enqueue(vec![Work::SettingsSaved])?;
        if self.inner.config.webhooks.register && self.inner.webhook_url.is_some() {
            // --- receiver (issue 9, item 7): refusals stop the start ---
            let registered = match self.register_webhooks().await {
                Err(moysklad::RegisterError::Refused(text)) => {
                    tracing::error!("{text}");
                    return Err(DaemonError::Webhooks(text));
                }
                Err(moysklad::RegisterError::Api(e)) => Err(e),
                Ok(n) => Ok(n),
            };
            // --- end receiver ---
            if let Err(e) = registered {
                tracing::warn!(error = %e, "could not register the МойСклад webhooks");
                self.runner_journal(
                    "MS_WEBHOOK_FAILED",
                    "error",
                    &e.to_string(),
                    json!({"webhooks": "register"}),
                    e.raw(),
                )?;
            }
        }
        Ok(())
    }

    /// Queues a stock pass.
    pub fn queue_stock_pass(&self, full: bool) -> Result<(), StateError> {
        if self.listens("stock.pass") {
            self.enqueue(vec![Work::StockPass { full }])?;
        }
        Ok(())
    }

    /// One pass: CRM history, the МойСклад poll, then every due item.
    pub async fn cycle(&self) -> Result<usize, DaemonError> {
        if let Err(e) = self.poll_crm().await {
            self.poll_failed("the CRM history poll", e);
        }
        if let Err(e) = self.reconcile().await {
            self.poll_failed("the МойСклад reconciliation poll", e);
        }
        self.drain().await
    }

    /// The retailCRM account's time zone (read at start).
    pub fn crm_tz(&self) -> chrono_tz::Tz {
        self.inner.crm_tz
    }

    /// The version (content hash) of the rules and settings in use.
    pub fn rules_version(&self) -> String {
        self.live().version.clone()
    }

    /// Processes every item that is due (each at most once), in order. Parked items wait; an
    /// item waits while an older item of its subject holds a plan that is not finished.
    /// A stock pass runs in its own lane (see [`Daemon::drain_due`]); `drain` returns once
    /// the pass in flight is done too (and reports how it failed, if it did), so everything
    /// due when it was called has been processed. Returns how many items were processed.
    pub async fn drain(&self) -> Result<usize, DaemonError> {
        let mut seen = HashSet::new();
        loop {
            let started = self.drain_due(&mut seen).await?;
            // The pass in flight, if any, is done once its lane is free.
            drop(self.inner.stock_lane.lock().await);
            if let Some(e) = self.lane_failure() {
                return Err(e);
            }
            if !started || self.inner.stopping.load(Ordering::SeqCst) {
                return Ok(seen.len());
            }
            // What came due while the pass ran (and a pass that waited for the lane) is done
            // too.
        }
    }

    /// How the last stock pass in its lane failed, if it did (once).
    fn lane_failure(&self) -> Option<DaemonError> {
        self.inner
            .lane_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Processes the items due (each at most once: `seen`), in order, as [`Daemon::drain`]
    /// says, except that a stock pass is only *started* here: on its own task (the stock
    /// lane, at most one pass at a time), while the worker goes on with orders and the rest.
    /// Its item is finished only when the pass is done, as any item, so a crash mid-pass
    /// finds it again at the next start. A pass due while one is in flight (or while a reload
    /// waits) waits for a later round. Returns whether a pass was started, or waits for the
    /// one in flight (not one of `seen`).
    async fn drain_due(&self, seen: &mut HashSet<u64>) -> Result<bool, DaemonError> {
        let mut started = false;
        // Scan the inbox once per round (not once per item): new work found by a round is
        // done in the next one.
        'rounds: loop {
            let now = now_ms();
            let mut held: HashSet<String> = HashSet::new();
            let mut due = Vec::new();
            // No stock pass starts while one is in flight, a reload waits, or on a stop.
            let lane_busy = self.inner.stock_lane.try_lock().is_err();
            let lane_closed = lane_busy
                || self.inner.reload_waiting.load(Ordering::SeqCst)
                || self.inner.stopping.load(Ordering::SeqCst);
            for (seq, item) in self.inner.state.inbox()? {
                if lane_closed && matches!(item.work, Work::StockPass { .. }) {
                    // Due, it waits for the pass in flight (`drain` waits for it too).
                    started |= lane_busy
                        && !seen.contains(&seq)
                        && item.parked.is_none()
                        && item.not_before <= now;
                    continue;
                }
                let subject = item.work.subject();
                let behind = subject.as_ref().is_some_and(|s| held.contains(s));
                if item.plan && !seen.contains(&seq) {
                    if let Some(s) = &subject {
                        held.insert(s.clone());
                    }
                }
                if behind || item.parked.is_some() || seen.contains(&seq) {
                    continue;
                }
                if item.not_before <= now {
                    let kind = match (&item.work, subject) {
                        (Work::CrmOrder { .. }, Some(subject)) => DueKind::Order(subject),
                        (Work::StockPass { .. }, _) => DueKind::Stock {
                            queued_at: item.queued_at,
                        },
                        (Work::SettingsSaved, _) => DueKind::Settings,
                        _ => DueKind::Other,
                    };
                    due.push(Due { seq, kind });
                } else if let Some(s) = subject {
                    // Not due yet: what comes after it for the same subject waits too.
                    held.insert(s);
                }
            }
            let (due, stock_held_until) = schedule_round(due, now);
            if due.is_empty() {
                break;
            }
            // CRM orders (one item per subject) are processed in one wave: evaluated in turn,
            // their plans applied side by side (see `process_wave`); the rest one by one.
            let mut wave: Vec<u64> = Vec::new();
            let mut wave_subjects: HashSet<String> = HashSet::new();
            for d in due {
                if self.inner.stopping.load(Ordering::SeqCst) {
                    break 'rounds;
                }
                if let DueKind::Stock { .. } = d.kind {
                    // In its lane: the worker does not wait for it.
                    if self.start_stock_pass(d.seq) {
                        seen.insert(d.seq);
                        started = true;
                    }
                    continue;
                }
                if let DueKind::Order(subject) = d.kind {
                    if !wave_subjects.insert(subject) {
                        // A second item of a subject: the next round.
                        continue;
                    }
                    wave.push(d.seq);
                    continue;
                }
                if !wave.is_empty() {
                    let wave = std::mem::take(&mut wave);
                    let done = self.process_wave(&wave, stock_held_until).await?;
                    seen.extend(wave[..done].iter().copied());
                    if done < wave.len() {
                        // A stock pass held back waited long enough, or a reload waits:
                        // a new round.
                        continue 'rounds;
                    }
                }
                seen.insert(d.seq);
                self.process(d.seq).await?;
            }
            if !wave.is_empty() {
                let done = self.process_wave(&wave, stock_held_until).await?;
                seen.extend(wave[..done].iter().copied());
            }
        }
        Ok(started)
    }

    /// Starts the stock pass of item `seq` in the stock lane, unless a pass is in flight
    /// there or a reload waits (it then waits for a later round). Returns whether it started.
    fn start_stock_pass(&self, seq: u64) -> bool {
        if self.inner.reload_waiting.load(Ordering::SeqCst)
            || self.inner.stopping.load(Ordering::SeqCst)
        {
            return false;
        }
        let Ok(lane) = self.inner.stock_lane.clone().try_lock_owned() else {
            return false;
        };
        let d = self.clone();
        tokio::spawn(async move {
            // Background work: its retailCRM requests leave part of the limit to orders.
            let r = crate::clients::background(d.process_claimed(seq, true)).await;
            if let Err(e) = r {
                d.inner
                    .lane_failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
            }
            // Its item is done (finished, put back or parked): the lane is free.
            drop(lane);
            d.inner.wake.notify_one();
        });
        true
    }

    /// Before an order event: the lookups learned for it, asked for every order read ahead
    /// in one request per lookup kind (see `world::prefetch`).
    async fn gather_lookups(&self, name: &str, event: &skladsync_engine::Event) {
        let templates = self.inner.applier.lookups.templates(name);
        if templates.is_empty() {
            return;
        }
        let mut orders = self.inner.applier.orders.held();
        if let Some(o) = event.payload.get_ref("order") {
            orders.push(o.clone());
        }
        if orders.len() < 2 {
            return;
        }
        let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for t in templates {
            let Some(("order", rest)) = t.path.split_first().map(|(h, r)| (h.as_str(), r)) else {
                continue;
            };
            let values = groups
                .entry((t.entity.clone(), t.field.clone()))
                .or_default();
            for o in &orders {
                if let Some(v) =
                    value_at(o, rest).and_then(|v| crate::world::prefetch::scalar_text(&v))
                {
                    values.push(v);
                }
            }
        }
        for ((entity, field), values) in groups {
            if let Err(e) = self
                .inner
                .applier
                .lookups
                .gather(&self.inner.systems.ms, &entity, &field, &values)
                .await
            {
                tracing::debug!(error = %e, %entity, %field, "cannot gather lookups; one by one");
            }
        }
    }

    /// Before an order event: the fetches by id learned for it, asked for every order read
    /// ahead in one request per entity type, `filter=id=…;id=…` (see `world::prefetch`). The
    /// ids come from the orders or from the links read by values of the orders, as the
    /// evaluations that taught them did.
    async fn gather_fetches(&self, name: &str, event: &skladsync_engine::Event) {
        let templates = self.inner.applier.lookups.fetch_templates(name);
        if templates.is_empty() {
            return;
        }
        let mut orders = self.inner.applier.orders.held();
        if let Some(o) = event.payload.get_ref("order") {
            orders.push(o.clone());
        }
        if orders.len() < 2 {
            return;
        }
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in templates {
            let values = groups.entry(t.entity.clone()).or_default();
            let (path, link) = match &t.source {
                IdSource::Event(path) => (path, None),
                IdSource::Link {
                    kind,
                    system,
                    path,
                    field,
                } => (path, Some((kind, system, field))),
            };
            let Some(("order", rest)) = path.split_first().map(|(h, r)| (h.as_str(), r)) else {
                continue;
            };
            for o in &orders {
                let Some(v) = value_at(o, rest) else {
                    continue;
                };
                let v = &v;
                let id = match link {
                    None => crate::world::prefetch::scalar_text(v),
                    Some((kind, system, field)) => match self.inner.state.linked(kind, system, v) {
                        Ok(Some(l)) => l
                            .to_json()
                            .get(field.as_str())
                            .and_then(crate::world::prefetch::scalar_text),
                        _ => None,
                    },
                };
                values.extend(id);
            }
        }
        for (entity, ids) in groups {
            if let Err(e) = self
                .inner
                .applier
                .lookups
                .gather_fetches(&self.inner.systems.ms, &entity, &ids)
                .await
            {
                tracing::debug!(error = %e, %entity, "cannot gather fetches; one by one");
            }
        }
    }

    /// Processes one inbox item: build the event, evaluate, apply.
    async fn process(&self, seq: u64) -> Result<(), DaemonError> {
        let _one = self.inner.processing.lock().await;
        self.process_claimed(seq, false).await
    }

    /// [`Daemon::process`] without taking the worker's turn: `in_lane`, a stock pass in its
    /// lane, beside the worker. Its plan is applied beside the worker's items too, unless it
    /// writes to МойСклад or writes links (the default rules' pass writes retailCRM's
    /// inventories only): the orders' waves check their evaluations against the plans of
    /// their own wave only, so such a plan is applied in the worker's turn, between two items.
    async fn process_claimed(&self, seq: u64, in_lane: bool) -> Result<(), DaemonError> {
        // Claimed, then read as it is now: nothing merges into it from here on.
        let Some(item) = self.inner.state.claim(seq)? else {
            self.inner.state.release_one(seq);
            return Ok(());
        };
        if matches!(item.work, Work::StockPass { .. }) && !item.plan {
            // Read once, then evaluated and applied part by part (its plan, if one was
            // recorded, is resumed below as any plan).
            let r = self.stock_pass(seq, item, in_lane).await;
            self.inner.state.release_one(seq);
            return r;
        }
        let r = match self.prepare(seq, item).await {
            Ok(Some(ready)) => {
                let exclusive = in_lane
                    && (!ms_creates(&ready.outbox).is_empty()
                        || !ms_changes(&ready.outbox).is_empty()
                        || !plan_links(&ready.outbox).is_empty());
                let _turn = match exclusive {
                    true => Some(self.inner.processing.lock().await),
                    false => None,
                };
                self.apply_plan(ready.seq, ready.item, ready.outbox, ready.after)
                    .await
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        self.inner.state.release_one(seq);
        r
    }

    /// Processes several inbox items of different subjects: each is evaluated in turn (its
    /// plan recorded, as [`Daemon::process`] does) while the plans before it are applied, at
    /// most [`WAVE`] side by side, so that their МойСклад creates of one type go in one bulk
    /// POST (see `apply::batch`). Plans stay per event; each item ends as it would alone.
    ///
    /// When `until` (unix ms) is reached, no further item is taken: returns how many of
    /// `seqs` were taken (the rest wait for the next round).
    async fn process_wave(&self, seqs: &[u64], until: Option<i64>) -> Result<usize, DaemonError> {
        type Applied = (u64, Result<(), DaemonError>);
        let _one = self.inner.processing.lock().await;
        let state = &self.inner.state;
        let mut applying: tokio::task::JoinSet<Applied> = tokio::task::JoinSet::new();
        // The МойСклад creates and changes of the plans being applied, by item.
        type Writes = (
            Vec<(String, Json)>,
            Vec<(String, Option<String>)>,
            Vec<(String, String, String)>,
        );
        let mut creates: std::collections::HashMap<u64, Writes> = std::collections::HashMap::new();
        let mut failed: Option<DaemonError> = None;
        fn note(
            r: Result<Applied, tokio::task::JoinError>,
            creates: &mut std::collections::HashMap<u64, Writes>,
            failed: &mut Option<DaemonError>,
        ) {
            let e = match r {
                Ok((seq, done)) => {
                    creates.remove(&seq);
                    match done {
                        Ok(()) => return,
                        Err(e) => e,
                    }
                }
                Err(join) => DaemonError::Internal(format!("applying a plan stopped: {join}")),
            };
            failed.get_or_insert(e);
        }
        let mut taken = 0;
        for &seq in seqs {
            if self.inner.stopping.load(Ordering::SeqCst) {
                break;
            }
            // A stock pass held back long enough, or a reload waiting: no new order (the
            // rest wait for the next round).
            // (At least one is taken: every call makes progress.)
            if taken > 0
                && (until.is_some_and(|t| now_ms() >= t)
                    || self.inner.reload_waiting.load(Ordering::SeqCst))
            {
                break;
            }
            taken += 1;
            while applying.len() >= WAVE {
                if let Some(r) = applying.join_next().await {
                    note(r, &mut creates, &mut failed);
                }
            }
            while let Some(r) = applying.try_join_next() {
                note(r, &mut creates, &mut failed);
            }
            let mut item = match state.claim(seq) {
                Ok(Some(item)) => item,
                Ok(None) => {
                    state.release_one(seq);
                    continue;
                }
                Err(e) => {
                    state.release_one(seq);
                    failed.get_or_insert(e.into());
                    break;
                }
            };
            let ready = loop {
                let made: Vec<(String, Json)> =
                    creates.values().flat_map(|w| w.0.iter().cloned()).collect();
                let changed: Vec<(String, Option<String>)> =
                    creates.values().flat_map(|w| w.1.iter().cloned()).collect();
                let linking: Vec<(String, String, String)> =
                    creates.values().flat_map(|w| w.2.iter().cloned()).collect();
                let beside = (!made.is_empty() || !changed.is_empty() || !linking.is_empty())
                    .then_some(Beside {
                        creates: &made,
                        changes: &changed,
                        links: &linking,
                    });
                match self.prepare_beside(seq, item, beside).await {
                    Ok(Prepared::Ready(r)) => break Ok(Some(r)),
                    Ok(Prepared::Finished) => break Ok(None),
                    Ok(Prepared::Conflict(back, reads)) => {
                        // As one at a time: after the plans beside it that may change what
                        // it read (the others go on being applied).
                        item = back;
                        while creates
                            .values()
                            .any(|w| reads.clash(&w.0, &w.1, &w.2).is_some())
                        {
                            match applying.join_next().await {
                                Some(r) => note(r, &mut creates, &mut failed),
                                None => {
                                    creates.clear();
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            match ready {
                Ok(Some(r)) => {
                    creates.insert(
                        seq,
                        (
                            ms_creates(&r.outbox),
                            ms_changes(&r.outbox),
                            plan_links(&r.outbox),
                        ),
                    );
                    let d = self.clone();
                    applying.spawn(async move {
                        let done = d.apply_plan(r.seq, r.item, r.outbox, r.after).await;
                        d.inner.state.release_one(r.seq);
                        (r.seq, done)
                    });
                }
                Ok(None) => state.release_one(seq),
                Err(e) => {
                    state.release_one(seq);
                    failed.get_or_insert(e);
                    break;
                }
            }
        }
        // Plans already recorded are applied even if a later item could not be prepared.
        while let Some(r) = applying.join_next().await {
            note(r, &mut creates, &mut failed);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Builds and evaluates a claimed item, and records its plan: the plan to apply, or
    /// `None` when the item is finished (nothing to do) or put back (parked, retried later).
    /// An item with a recorded plan is resumed.
    async fn prepare(&self, seq: u64, item: InboxItem) -> Result<Option<Ready>, DaemonError> {
        match self.prepare_beside(seq, item, None).await? {
            Prepared::Ready(r) => Ok(Some(r)),
            Prepared::Finished => Ok(None),
            // Without plans beside it nothing conflicts.
            Prepared::Conflict(..) => Ok(None),
        }
    }

    /// [`Daemon::prepare`] while the plans whose МойСклад creates are `beside` are being
    /// applied: if the rules looked up something one of those creates may make (a lookup of
    /// its type and field with the value the created body has), the evaluation may have missed
    /// it, so its plan is not recorded and the item comes back as a conflict, to be evaluated
    /// again once those plans are done (as one at a time would have seen it).
    async fn prepare_beside(
        &self,
        seq: u64,
        item: InboxItem,
        beside: Option<Beside<'_>>,
    ) -> Result<Prepared, DaemonError> {
        let state = &self.inner.state;
        let subject = item.work.subject().unwrap_or_else(|| format!("seq/{seq}"));
        if let Some(ob) = state.plan(seq)? {
            tracing::info!(%subject, event = %ob.plan.event, done = ob.done.len(), "resuming a plan");
            return Ok(Prepared::Ready(Ready {
                seq,
                item,
                outbox: ob,
                after: AfterCommit::Nothing,
            }));
        }
        let built = match self.build(&item.work).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                tracing::debug!(%subject, "nothing to evaluate");
                state.finish_item(seq)?;
                return Ok(Prepared::Finished);
            }
            Err(e) => return self.build_failed(seq, item, &subject, e),
        };
        self.evaluate_built(seq, item, subject, built, beside, None)
            .await
    }

    /// The event of a claimed item could not be built (what changed could not be read):
    /// journalled, and the item put back to be tried again later.
    fn build_failed(
        &self,
        seq: u64,
        item: InboxItem,
        subject: &str,
        e: events::BuildError,
    ) -> Result<Prepared, DaemonError> {
        let give_up = gives_up(e.class());
        let text = e.to_string();
        tracing::warn!(%subject, error = %text, "could not read what changed");
        self.runner_journal(
            e.code(),
            "warning",
            &text,
            json!({"work": subject}),
            e.raw(),
        )?;
        if e.class() == FailureClass::Auth {
            self.auth_problem(&e)?;
        }
        self.retry_later(seq, item, give_up, text)
            .map(|()| Prepared::Finished)
    }

    /// Evaluates the event built for a claimed item and records its plan, as
    /// [`Daemon::prepare_beside`] says; `more_parts`: the event is a part of a stock pass
    /// that more parts follow, with the assortment id of the part's last row (recorded with
    /// the plan, see [`InboxItem::more_parts`], [`InboxItem::part_end`]).
    async fn evaluate_built(
        &self,
        seq: u64,
        item: InboxItem,
        subject: String,
        built: events::Built,
        beside: Option<Beside<'_>>,
        more_parts: Option<String>,
    ) -> Result<Prepared, DaemonError> {
        let state = &self.inner.state;
        let name = built.event.name.clone();
        self.inner.stats.event(&name);
        // The set in use now; a reload waits for this item to finish.
        let live = self.live();
        let rules = live.rules.clone();
        let settings = live.settings.clone();
        let rules_version = live.version.clone();
        let order_event = name == "crm.order.changed";
        if order_event {
            self.gather_lookups(&name, &built.event).await;
            self.gather_fetches(&name, &built.event).await;
        }
        let recorded: crate::world::Recorded = Arc::default();
        let fetch_log: crate::world::FetchRecorded = Arc::default();
        let world = LiveWorld::new(
            self.inner.systems.clone(),
            state.clone(),
            self.inner.refs.clone(),
            self.inner.catalogue.clone(),
            tokio::runtime::Handle::current(),
        )
        .with_prefetch(self.inner.applier.lookups.clone(), recorded.clone())
        .with_fetch_log(fetch_log.clone());
        let event = built.event;
        // The payload as read (engine values share it; no conversion back to JSON).
        let payload = order_event.then(|| event.payload.clone());
        let limits = self.inner.config.limits.clone();
        let record = self.inner.recordings.is_some();
        let background = crate::clients::is_background();
        let evaluated = tokio::task::spawn_blocking(move || {
            crate::clients::background_blocking(background, || {
                let recorder = record.then(|| skladsync_engine::Recorder::new(&world));
                let w: &dyn skladsync_engine::World = match &recorder {
                    Some(r) => r,
                    None => &world,
                };
                let r = rules.evaluate_with(
                    &event,
                    w,
                    EvalOptions {
                        settings: Some(&settings),
                        max_effects: limits.max_effects,
                        max_bytes: u64::try_from(limits.max_eval_bytes.0).unwrap_or(u64::MAX),
                        ..EvalOptions::default()
                    },
                );
                let recording = recorder.map(|rec| (rec.recording(), event));
                (r, recording)
            })
        })
        .await;
        let evaluated = evaluated.map(|(r, recording)| {
            if let Some((rec, event)) = recording {
                self.record(&subject, &event, &rec, &r);
            }
            r
        });
        let made = std::mem::take(&mut *recorded.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(payload) = payload {
            self.inner.applier.lookups.learn(&name, &payload, &made);
            let read = fetch_log.lock().unwrap_or_else(|p| p.into_inner());
            self.inner
                .applier
                .lookups
                .learn_fetches(&name, &payload, &read);
        }
        let (fetched, links_read) = {
            let mut log = fetch_log.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut log.fetches),
                std::mem::take(&mut log.links),
            )
        };
        let plan = match evaluated {
            Ok(Ok(plan)) => plan,
            Ok(Err(e)) => {
                let text = e.to_string();
                if !e.is_deterministic() {
                    self.inner.stats.event_outcome(&name, "lookup_failed");
                    tracing::warn!(%subject, event = %name, error = %text, "a lookup failed");
                    self.runner_journal(
                        "LOOKUP_FAILED",
                        "warning",
                        &text,
                        json!({"work": subject, "event": name}),
                        Json::Null,
                    )?;
                    return self
                        .retry_later(seq, item, false, text)
                        .map(|()| Prepared::Finished);
                }
                return self
                    .park(seq, item, &name, text)
                    .map(|()| Prepared::Finished);
            }
            Err(join) => {
                let text = format!("evaluation stopped: {join}");
                return self
                    .park(seq, item, &name, text)
                    .map(|()| Prepared::Finished);
            }
        };
        if let Some(beside) = beside {
            let reads = Reads {
                looked_up: made,
                fetched,
                links: links_read,
            };
            if let Some(why) = reads.clash(beside.creates, beside.changes, beside.links) {
                tracing::debug!(%subject, event = %name, "{why}: evaluated again after it");
                return Ok(Prepared::Conflict(item, reads));
            }
        }
        tracing::info!(%subject, event = %name, effects = plan.effects.len(), "evaluated");
        let outbox = Outbox {
            seq,
            plan,
            started: now_ms(),
            done: Default::default(),
            rules: rules_version,
        };
        // From here on the plan is finished, whatever happens: it is recorded with its item.
        state.start_plan_parts(&outbox, more_parts.as_deref())?;
        let mut item = item;
        item.plan = true;
        item.more_parts = more_parts.is_some();
        item.part_end = more_parts.filter(|id| !id.is_empty());
        item.resume_after = None;
        Ok(Prepared::Ready(Ready {
            seq,
            item,
            outbox,
            after: built.after,
        }))
    }

    /// What the rules would do with CRM order `id` as it is now: the `crm.order.changed` event
    /// built from the live order as if it had changed with no field named, evaluated with the
    /// live rule set, its lookups answered by the two APIs and the state. Nothing is applied
    /// and nothing is written (`skladsync plan --live --order N`).
    pub async fn dry_run_order(&self, id: i64) -> Result<DryRun, DaemonError> {
        let work = Work::CrmOrder {
            id,
            changes: Vec::new(),
            created: false,
            deleted: false,
            stub: Json::Null,
        };
        let built = match self.build(&work).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Ok(DryRun {
                    event: Json::Null,
                    outcome: Err("no rule listens to crm.order.changed".into()),
                })
            }
            Err(e) => {
                return Ok(DryRun {
                    event: Json::Null,
                    outcome: Err(format!("the order could not be read: {e}")),
                })
            }
        };
        let live = self.live();
        let (rules, settings) = (live.rules.clone(), live.settings.clone());
        let world = LiveWorld::new(
            self.inner.systems.clone(),
            self.inner.state.clone(),
            self.inner.refs.clone(),
            self.inner.catalogue.clone(),
            tokio::runtime::Handle::current(),
        );
        let limits = self.inner.config.limits.clone();
        let event = built.event;
        let doc = crate::recording::case_line(
            String::new(),
            &event,
            &Value::Null,
            Json::Null,
            Err(String::new()),
        )["event"]
            .clone();
        let background = crate::clients::is_background();
        let evaluated = tokio::task::spawn_blocking(move || {
            crate::clients::background_blocking(background, || {
                rules.evaluate_with(
                    &event,
                    &world,
                    EvalOptions {
                        settings: Some(&settings),
                        max_effects: limits.max_effects,
                        max_bytes: u64::try_from(limits.max_eval_bytes.0).unwrap_or(u64::MAX),
                        ..EvalOptions::default()
                    },
                )
            })
        })
        .await;
        let outcome = match evaluated {
            Ok(Ok(plan)) => Ok(plan),
            Ok(Err(e)) => Err(e.to_string()),
            Err(join) => Err(format!("evaluation stopped: {join}")),
        };
        Ok(DryRun {
            event: doc,
            outcome,
        })
    }

    /// Records one evaluation (`record:`): a plan, or an error that repeats (a failed lookup
    /// is not replayable and is left out). A recording that cannot be written is logged and
    /// never stops the work.
    fn record(
        &self,
        subject: &str,
        event: &skladsync_engine::Event,
        rec: &skladsync_engine::Recording,
        outcome: &Result<skladsync_engine::Plan, skladsync_engine::EvalError>,
    ) {
        let Some(recordings) = &self.inner.recordings else {
            return;
        };
        let outcome = match outcome {
            Ok(plan) => Ok(plan),
            Err(e) if e.is_deterministic() => Err(e.to_string()),
            Err(_) => return,
        };
        // The set that evaluated it (a reload waits for the item in progress).
        let live = self.live();
        let mut doc = format!(
            "Recorded {} UTC: {subject}, {} ({} lookups), rules {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"),
            event.name,
            rec.questions,
            live.version.get(..12).unwrap_or(&live.version),
        );
        if !rec.inexact.is_empty() {
            doc.push_str(&format!(
                ". A replay answers differently: {}",
                rec.inexact.join("; ")
            ));
        }
        let connection =
            serde_json::to_value(live.settings.get("connection")).unwrap_or(Json::Null);
        let line = crate::recording::case_line(
            doc,
            event,
            &rec.world,
            json!({ "connection": connection }),
            outcome,
        );
        if let Err(e) = recordings.write(&line) {
            tracing::warn!(error = %e, dir = %recordings.dir().display(), "could not record the evaluation");
        }
    }

    /// Parks an item whose evaluation fails in a way that repeats: journalled, visible on
    /// `/status`, tried again when the rules change or new work of its subject arrives.
    fn park(
        &self,
        seq: u64,
        mut item: InboxItem,
        event: &str,
        text: String,
    ) -> Result<(), DaemonError> {
        let subject = item.work.subject().unwrap_or_else(|| format!("seq/{seq}"));
        tracing::error!(%subject, %event, error = %text, "evaluation failed: parked until the rules change");
        self.inner.stats.event_outcome(event, "parked");
        self.runner_journal(
            "PARKED",
            "error",
            &format!("{text} — parked until the rules change or {subject} changes again"),
            json!({"work": subject, "event": event}),
            Json::Null,
        )?;
        self.inner.stats.parked();
        item.attempts = item.attempts.saturating_add(1);
        item.last_error = Some(text.clone());
        item.parked = Some(Parked {
            reason: text,
            rules: self.live().version.clone(),
            at: now_ms(),
        });
        self.inner.state.update_item(seq, &item)?;
        Ok(())
    }

    async fn apply_plan(
        &self,
        seq: u64,
        item: InboxItem,
        outbox: Outbox,
        after: AfterCommit,
    ) -> Result<(), DaemonError> {
        let state = &self.inner.state;
        let event = outbox.plan.event.clone();
        let run = PlanRun {
            event: event.clone(),
            work: item.work.subject().unwrap_or_else(|| format!("seq/{seq}")),
            now: now_ms(),
        };
        // What each effect is, for a `GAVE_UP` entry: the effects themselves are let go as
        // they are applied (a stock pass's bodies are most of its memory then).
        let effects: Vec<String> = outbox
            .plan
            .effects
            .iter()
            .map(crate::apply::describe)
            .collect();
        match self.inner.applier.apply(&run, outbox).await? {
            Outcome::Applied { optional_failures } => {
                self.inner.stats.event_outcome(&event, "applied");
                if !optional_failures.is_empty() {
                    tracing::info!(event = %event, failed = optional_failures.len(), "optional effects failed");
                }
                after.commit(state)?;
                self.finish_plan(seq, item, false)
            }
            Outcome::Interrupted { next } => {
                self.inner.stats.event_outcome(&event, "interrupted");
                tracing::info!(event = %event, next, "stopping: the plan is resumed at the next start");
                Ok(())
            }
            Outcome::Failed(f) => {
                self.inner.stats.event_outcome(&event, "failed");
                // Effects from the failed one on, for a `GAVE_UP` entry.
                let left: Vec<String> = effects.into_iter().skip(f.index).collect();
                let transient = f.class == FailureClass::Transient;
                if !transient
                    && event != "sync.problem"
                    && self.listens("sync.problem")
                    && (f.class != FailureClass::Auth || self.auth_problem_due(&f.system))
                {
                    self.enqueue(vec![Work::Problem {
                        problem: f.problem(),
                    }])?;
                }
                if f.class == FailureClass::Invalid {
                    // The plan itself is impossible: resuming it cannot succeed.
                    return self.give_up(seq, item, &f.text, &left);
                }
                self.retry_later_with(seq, item, gives_up(f.class), f.text, &left)
            }
        }
    }

    /// Puts failed work back with a backoff; work that failed for a reason waiting will not
    /// fix (`give_up`) is dropped, journalled, after [`MAX_ATTEMPTS`].
    fn retry_later(
        &self,
        seq: u64,
        item: InboxItem,
        give_up: bool,
        text: String,
    ) -> Result<(), DaemonError> {
        self.retry_later_with(seq, item, give_up, text, &[])
    }

    /// [`Daemon::retry_later`] for a plan: `left` are the effects that have not run.
    fn retry_later_with(
        &self,
        seq: u64,
        mut item: InboxItem,
        give_up: bool,
        text: String,
        left: &[String],
    ) -> Result<(), DaemonError> {
        let state = &self.inner.state;
        item.attempts = item.attempts.saturating_add(1);
        item.last_error = Some(text.clone());
        if give_up && item.attempts >= MAX_ATTEMPTS {
            let text = format!("after {} attempts: {text}", item.attempts);
            return self.give_up(seq, item, &text, left);
        }
        let iv = &self.inner.config.intervals;
        let exp = item.attempts.saturating_sub(1).min(20);
        let delay = iv
            .retry_min
            .0
            .saturating_mul(1u32 << exp)
            .min(iv.retry_max.0)
            .max(Duration::from_millis(1));
        item.not_before = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        state.update_item(seq, &item)?;
        Ok(())
    }

    /// Ends work that cannot succeed: a `GAVE_UP` journal entry naming the effects that never
    /// ran (its `raw` lists them all), and the item (with its plan) removed.
    fn give_up(
        &self,
        seq: u64,
        item: InboxItem,
        why: &str,
        left: &[String],
    ) -> Result<(), DaemonError> {
        let subject = item.work.subject().unwrap_or_else(|| format!("seq/{seq}"));
        tracing::error!(%subject, attempts = item.attempts, left = left.len(), "giving up");
        let mut text = format!("gave up: {why}");
        if !left.is_empty() {
            let shown: Vec<&str> = left.iter().take(5).map(String::as_str).collect();
            text.push_str(&format!(
                "; {} effect(s) never ran: {}{}",
                left.len(),
                shown.join("; "),
                if left.len() > shown.len() {
                    "; …"
                } else {
                    ""
                }
            ));
        }
        self.runner_journal(
            "GAVE_UP",
            "error",
            &text,
            json!({"work": subject}),
            json!({"not_applied": left}),
        )?;
        self.inner.stats.gave_up();
        self.finish_plan(seq, item, true)
    }

    /// The plan of an item is finished (applied, or given up): the item is finished with it —
    /// unless the plan is one part of a stock pass and more parts follow it. The item is then
    /// made new work, due now and holding no plan: the pass in flight goes on with its next
    /// part (see `stock_pass`), and a plan that was resumed (after a crash or a failure, the
    /// rows of the parts after it are gone) is followed by the whole pass again, read anew,
    /// rather than by nothing. A plan `given_up` (refused for good) leaves the item the end
    /// of its part ([`InboxItem::resume_after`]): the pass read again starts after it, so the
    /// parts after the given-up one are sent even while the refusal lasts; the given-up
    /// part's rows are not recorded as sent, and the next changes pass tries them again.
    fn finish_plan(&self, seq: u64, item: InboxItem, given_up: bool) -> Result<(), DaemonError> {
        if !item.more_parts {
            self.inner.state.finish_item(seq)?;
            return Ok(());
        }
        let resume_after = match given_up {
            true => item.part_end.clone(),
            false => None,
        };
        let again = InboxItem {
            attempts: 0,
            not_before: now_ms(),
            last_error: None,
            plan: false,
            parked: None,
            more_parts: false,
            part_end: None,
            resume_after,
            ..item
        };
        self.inner.state.end_part(seq, &again)?;
        Ok(())
    }

    /// A journal entry of the runner itself.
    fn runner_journal(
        &self,
        code: &str,
        level: &str,
        text: &str,
        subject: Json,
        raw: Json,
    ) -> Result<(), StateError> {
        let now = now_ms();
        self.inner.stats.journal();
        self.inner.state.journal(
            JournalEntry {
                time: now,
                first: now,
                count: 1,
                direction: "runner".into(),
                rule: "runner".into(),
                code: code.into(),
                level: level.into(),
                text: text.into(),
                subject,
                raw,
            },
            self.inner.config.journal.limits(),
        )
    }

    /// Whether an authorisation `sync.problem` of `system` may be queued now (at most one per
    /// system every [`AUTH_PROBLEM_EVERY`], so a refused password does not flood the rules).
    fn auth_problem_due(&self, system: &str) -> bool {
        let mut last = self
            .inner
            .auth_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match last.get(system) {
            Some(t) if now.duration_since(*t) < AUTH_PROBLEM_EVERY => false,
            _ => {
                last.insert(system.to_string(), now);
                true
            }
        }
    }

    /// Queues a `sync.problem` of kind `auth` for an error that is one (throttled).
    fn auth_problem(&self, e: &ApplyError) -> Result<(), StateError> {
        if e.class() != FailureClass::Auth
            || !self.listens("sync.problem")
            || !self.auth_problem_due(e.system())
        {
            return Ok(());
        }
        self.enqueue(vec![Work::Problem {
            problem: json!({
                "code": e.code(), "kind": "auth", "system": e.system(), "text": e.to_string(),
                "raw": e.raw(), "rule": "runner", "subject": {"system": e.system()},
            }),
        }])
    }

    /// Logs a failed poll; an authorisation failure also becomes a `sync.problem`.
    fn poll_failed(&self, what: &str, e: DaemonError) {
        tracing::warn!(error = %e, "{what} failed; next try in one interval");
        let as_apply = match e {
            DaemonError::Crm(c) => ApplyError::Crm(c),
            DaemonError::Moysklad(m) => ApplyError::Moysklad(m),
            DaemonError::State(s) => ApplyError::State(s),
            other => ApplyError::Invalid(other.to_string()),
        };
        // What an API sent that could not be used is journalled, like any failure.
        let journalled = self.runner_journal(
            as_apply.code(),
            "warning",
            &format!("{what}: {as_apply}"),
            json!({"poll": what}),
            as_apply.raw(),
        );
        if let Err(e) = journalled.and_then(|()| self.auth_problem(&as_apply)) {
            tracing::error!(error = %e, "cannot record the failed poll");
        }
    }

    /// Serves webhooks until `stop` turns true (and the operator routes, when they share the
    /// webhook listener).
    pub fn spawn_receiver(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        let operator = self.inner.operator_addr.is_some()
            && self.inner.operator_addr == self.inner.receiver_addr;
        let role = webhook::Role {
            webhooks: true,
            operator,
        };
        Some(webhook::spawn(self.clone(), listener, stop, role))
    }

    /// Serves the operator routes on their own listener until `stop` turns true (`None` when
    /// they share the webhook listener, or `http.enabled` is off).
    pub fn spawn_operator(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let listener = self
            .inner
            .ops_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        let role = webhook::Role {
            webhooks: false,
            operator: true,
        };
        Some(webhook::spawn(self.clone(), listener, stop, role))
    }

    /// Runs until `shutdown` completes: the webhook receiver, the worker and the schedules.
    /// Queued work stays in the state for the next start; the item in progress is finished.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Reloads are heard from the start on (start-up may take a while).
        if self.inner.pair.is_none() {
            tasks.extend(self.spawn_sighup(stop_rx.clone()));
        }
        tasks.extend(self.spawn_watcher(stop_rx.clone()));
        if let Err(e) = self.start_up().await {
            let _ = stop_tx.send(true);
            for t in tasks {
                let _ = t.await;
            }
            return Err(e);
        }
        if let Some(t) = self.spawn_receiver(stop_rx.clone()) {
            tasks.push(t);
        }
        if let Some(t) = self.spawn_operator(stop_rx.clone()) {
            tasks.push(t);
        }
        tasks.push(tokio::spawn(self.clone().worker(stop_rx.clone())));
        tasks.push(tokio::spawn(self.clone().crm_schedule(stop_rx.clone())));
        tasks.push(tokio::spawn(self.clone().ms_schedule(stop_rx.clone())));
        tasks.push(tokio::spawn(self.clone().stock_schedule(stop_rx.clone())));
        tasks.push(tokio::spawn(self.clone().icml_schedule(stop_rx.clone())));
        let sidecar = self.write_status_file();
        tracing::info!(receiver = ?self.inner.receiver_addr, operator = ?self.inner.operator_addr, "skladsync is running");
        // A lost lease (PostgreSQL: another runner took the pair over) stops the work on the
        // pair like a shutdown; what is queued stays in the shared state for the new holder.
        let mut lost = self
            .inner
            .lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(crate::state::lease::PairLease::lost);
        let lease_lost = async {
            match lost.as_mut() {
                Some(l) => {
                    let _ = l.wait_for(|lost| *lost).await;
                }
                None => std::future::pending().await,
            }
        };
        let lost_lease = tokio::select! {
            () = shutdown => false,
            () = lease_lost => true,
        };
        tracing::info!("stopping: finishing the item in progress; queued work stays queued");
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.stop.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        self.inner.wake.notify_waiters();
        for t in tasks {
            let _ = t.await;
        }
        if let Some(f) = sidecar {
            let _ = std::fs::remove_file(f);
        }
        let lease = self
            .inner
            .lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if lost_lease {
            return Err(DaemonError::LeaseLost);
        }
        self.inner.state.flush()?;
        if let Some(l) = lease {
            l.release();
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// Writes [`status_file`] (owner-only): how `skladsync journal` and `status` reach this
    /// daemon while it holds the state (sled allows one process).
    fn write_status_file(&self) -> Option<std::path::PathBuf> {
        if self.inner.pair.is_some() {
            // The fleet writes one for all its pairs.
            return None;
        }
        let (addr, secret) = (
            self.inner.receiver_addr?,
            self.inner.webhook_secret.as_ref()?,
        );
        let host = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let file = status_file(&self.inner.config.state.path);
        let body = json!({
            "pid": std::process::id(),
            "status_url": format!("http://{host}:{}/status/{secret}", addr.port()),
        });
        match crate::config::write_private(&file, body.to_string().as_bytes()) {
            Ok(()) => Some(file),
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "cannot write the status file: `skladsync journal` needs --status-url while the daemon runs");
                None
            }
        }
    }

    async fn worker(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            // A stock pass runs in its lane: the worker goes on with orders meanwhile.
            if let Err(e) = self.drain_due(&mut HashSet::new()).await {
                tracing::error!(error = %e, "worker");
            }
            if let Some(e) = self.lane_failure() {
                tracing::error!(error = %e, "stock pass");
            }
            // While a pass is in flight, a stock pass item waits for it (the lane wakes the
            // worker when it is free), not for its `not_before`.
            let lane_busy = self.inner.stock_lane.try_lock().is_err();
            let next = self.inner.state.inbox().ok().and_then(|items| {
                items
                    .iter()
                    .filter(|(_, i)| !(lane_busy && matches!(i.work, Work::StockPass { .. })))
                    .map(|(_, i)| i.not_before)
                    .min()
            });
            let wait = match next {
                Some(t) => {
                    Duration::from_millis(u64::try_from((t - now_ms()).max(10)).unwrap_or(10))
                }
                None => Duration::from_secs(5),
            }
            .min(Duration::from_secs(5));
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        // A stop waits for the stock pass in flight (its plan stops between two effects, as
        // any plan, and is resumed at the next start; its item stays in the inbox until done).
        drop(self.inner.stock_lane.lock().await);
        if let Some(e) = self.lane_failure() {
            tracing::error!(error = %e, "stock pass");
        }
    }

    async fn crm_schedule(self, mut stop: watch::Receiver<bool>) {
        let every = self.inner.config.intervals.crm_poll.0;
        loop {
            if *stop.borrow() {
                return;
            }
            // `crm_poll` is the time from one poll's start to the next one's (not from its end:
            // a poll takes a request per feed at retailCRM's pace, more while a stock pass
            // shares it, and the wait of a change for the next poll is what its latency is);
            // but a slow poll is still followed by a pause of half of it, at least.
            let started = tokio::time::Instant::now();
            tokio::select! {
                r = self.poll_crm() => {
                    if let Err(e) = r {
                        self.poll_failed("the CRM history poll", e);
                    }
                }
                _ = stop.changed() => return,
            }
            self.inner.crm_polled.send_replace(true);
            // While a backlog drains, what the poll brings waits behind it anyway: poll less
            // often and leave retailCRM's budget (10 requests/s) to the backlog's writes.
            let waiting = self.inner.state.inbox_len().unwrap_or(0);
            let wait = crm_poll_wait(every, waiting);
            let polled = tokio::time::Instant::now();
            // A long wait ends early once the backlog is worked off (then `crm_poll` applies).
            loop {
                let left = wait
                    .saturating_sub(started.elapsed())
                    .max((every / 2).saturating_sub(polled.elapsed()));
                if left.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(left.min(Duration::from_secs(1))) => {}
                    _ = stop.changed() => return,
                }
                if started.elapsed() >= every
                    && self
                        .inner
                        .state
                        .inbox_len()
                        .is_ok_and(|n| n <= BACKLOG_ITEMS)
                {
                    break;
                }
            }
        }
    }

    async fn ms_schedule(self, mut stop: watch::Receiver<bool>) {
        let every = self.inner.config.intervals.reconcile.0;
        loop {
            if *stop.borrow() {
                return;
            }
            // The poll finds work; it must not take the units the worker needs to do it.
            tokio::select! {
                r = crate::clients::moysklad::background(self.reconcile()) => {
                    if let Err(e) = r {
                        self.poll_failed("the МойСклад reconciliation poll", e);
                    }
                }
                _ = stop.changed() => return,
            }
            if let Err(e) = self.inner.state.prune(now_ms(), KEY_TTL_MS) {
                tracing::warn!(error = %e, "pruning the state failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn stock_schedule(self, mut stop: watch::Receiver<bool>) {
        let every = self.inner.config.intervals.stock.0;
        let full_every = self.inner.config.intervals.purchase_prices.0;
        let mut last_full: Option<tokio::time::Instant> = None;
        // The first pass waits for the first CRM history poll (at most FIRST_STOCK_WAIT): the
        // orders it finds go before the pass (see `schedule_round`), not behind it.
        let mut polled = self.inner.crm_polled.subscribe();
        tokio::select! {
            _ = tokio::time::timeout(FIRST_STOCK_WAIT, polled.wait_for(|p| *p)) => {}
            _ = stop.changed() => return,
        }
        loop {
            if *stop.borrow() {
                return;
            }
            let full = last_full.is_none_or(|t| t.elapsed() >= full_every);
            if full {
                last_full = Some(tokio::time::Instant::now());
            }
            if let Err(e) = self.queue_stock_pass(full) {
                tracing::warn!(error = %e, "could not queue the stock pass");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// The recordings of `record:` when it is on: the folder (default `recordings` beside the
/// state) and the redaction key (made once, kept in the state).
fn recordings(
    config: &Config,
    state: &SyncState,
) -> Result<Option<Arc<crate::recording::Recordings>>, DaemonError> {
    if !config.record.enabled {
        return Ok(None);
    }
    let dir = config.record.dir.clone().unwrap_or_else(|| {
        config
            .state
            .path
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("recordings")
    });
    let key = match state
        .misc("record.key")?
        .and_then(|v| v.as_str().map(str::to_string))
    {
        Some(k) => k,
        None => {
            let k = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            state.set_misc("record.key", &json!(k))?;
            k
        }
    };
    let r = crate::recording::Recordings::new(&config.record, dir.clone(), key.into_bytes())
        .map_err(|e| DaemonError::Recordings {
            dir: dir.display().to_string(),
            source: e,
        })?;
    tracing::info!(dir = %dir.display(), "recording evaluated events");
    Ok(Some(Arc::new(r)))
}

/// The two API clients as the config describes them (`webhook_url`: our own registrations,
/// which the МойСклад client recognises).
///
/// `observers` (retailCRM's, МойСклад's) count the requests for `/metrics`.
pub fn systems_of(
    config: &Config,
    webhook_url: Option<&str>,
    observers: Option<(crate::clients::ApiObserver, crate::clients::ApiObserver)>,
) -> Result<Systems, DaemonError> {
    let (crm_observer, ms_observer) = match observers {
        Some((c, m)) => (Some(c), Some(m)),
        None => (None, None),
    };
    let mut crm_cfg = crm_client::ClientConfig::new(&config.crm.url, config.crm.api_key.expose())?
        .with_rate_limit(NonZeroU32::new(config.crm.rate_limit))
        .with_timeout(config.crm.timeout.0)
        .with_connect_timeout(config.crm.connect_timeout.0);
    if let Some(o) = crm_observer {
        crm_cfg = crm_cfg.with_observer(o);
    }
    let crm = RetailcrmClient::new(crm_cfg)?;
    let auth = if config.moysklad.token.is_empty() {
        Auth::basic(
            config.moysklad.login.expose(),
            config.moysklad.password.expose(),
        )
    } else {
        Auth::bearer(config.moysklad.token.expose())
    };
    let mut ms_cfg = ms_client::ClientConfig::new(auth)
        .base_url(config.moysklad.url.clone())
        .timeout(config.moysklad.timeout.0)
        .connect_timeout(config.moysklad.connect_timeout.0);
    if let Some(o) = ms_observer {
        ms_cfg = ms_cfg.observer(o);
    }
    if config.moysklad.solution {
        ms_cfg = ms_cfg.limits(crate::clients::moysklad::LimitConfig::solution());
    }
    if let Some(url) = webhook_url {
        ms_cfg = ms_cfg.webhook_disable_prefix(url.to_string());
    }
    let ms = MoyskladClient::new(ms_cfg)?;
    let systems = Systems { crm, ms };
    Ok(systems)
}

/// How long the daemon waits for a state directory another process has open: `skladsync
/// journal` and `status` open it for a moment when no daemon runs.
const STATE_BUSY_WAIT: Duration = Duration::from_secs(5);

/// Opens the state (sled or PostgreSQL, as the config says); while another process has a
/// sled state open, tries again for [`STATE_BUSY_WAIT`] (an operator command reading it
/// briefly), then fails.
async fn open_state(config: &crate::config::StateConfig) -> Result<SyncState, StateError> {
    let deadline = tokio::time::Instant::now() + STATE_BUSY_WAIT;
    loop {
        match crate::state::open_pair_state(config, crate::state::DEFAULT_PAIR).await {
            Err(e) if e.is_in_use() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Where a running daemon says how to reach its `/status` (`<state>.daemon.json`, beside the
/// state directory, owner-only; removed at a clean stop).
pub fn status_file(state: &std::path::Path) -> std::path::PathBuf {
    let mut name = state.file_name().unwrap_or_default().to_os_string();
    name.push(".daemon.json");
    state.with_file_name(name)
}

/// The retailCRM account's time zone (`GET /api/v5/settings`), kept in the state so that a
/// start while retailCRM cannot be reached uses the last one read; with none, the settings
/// file's `connection.crm_timezone` (loudly: dates may be shifted until the account answers).
async fn crm_timezone(
    systems: &Systems,
    state: &SyncState,
    config: &Config,
    configured: Option<&str>,
) -> Result<chrono_tz::Tz, DaemonError> {
    let attempt = tokio::time::timeout(config.crm.timeout.0, systems.crm.timezone()).await;
    match attempt {
        Ok(Ok(tz)) => {
            state.set_misc("crm_timezone", &Json::String(tz.name().to_string()))?;
            tracing::info!(timezone = tz.name(), "the retailCRM account's time zone");
            Ok(tz)
        }
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer in time".to_string(),
            };
            let known = state
                .misc("crm_timezone")?
                .and_then(|v| v.as_str().and_then(|s| s.parse::<chrono_tz::Tz>().ok()));
            match known {
                Some(tz) => {
                    tracing::warn!(error = %why, timezone = tz.name(), "could not read the retailCRM account's time zone; using the last one read");
                    Ok(tz)
                }
                None => match configured.and_then(|s| s.parse::<chrono_tz::Tz>().ok()) {
                    Some(tz) => {
                        tracing::error!(error = %why, timezone = tz.name(), "could not read the retailCRM account's time zone; using settings.connection.crm_timezone until the next start");
                        Ok(tz)
                    }
                    None => Err(DaemonError::Crm(crm_client::Error::Config(format!(
                        "could not read the account's time zone from /api/v5/settings \
                         ({why}), and the settings name none (connection.crm_timezone); it is \
                         needed to convert dates between the systems"
                    )))),
                },
            }
        }
    }
}

// --- receiver (issue 9, items 5 and 7) ---

/// The webhook secret: configured (checked URL-safe when the config was read), else kept in
/// the state (made once, 32 hex digits). A digest of every secret used is remembered, so
/// registrations made with an earlier one are recognised as this runner's and removed.
fn webhook_secret(config: &Config, state: &SyncState) -> Result<String, DaemonError> {
    let s = if !config.webhooks.secret.is_empty() {
        let s = config.webhooks.secret.expose().to_string();
        crate::config::check_webhook_secret(&s).map_err(DaemonError::Webhooks)?;
        s
    } else if let Some(Json::String(s)) = state.misc("webhook_secret")? {
        s
    } else {
        let s = uuid::Uuid::new_v4().simple().to_string();
        state.set_misc("webhook_secret", &Json::String(s.clone()))?;
        s
    };
    let mut used: Vec<String> = state
        .misc("webhook_secrets_used")?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let digest = secret_digest(&s);
    if !used.contains(&digest) {
        used.push(digest);
        state.set_misc("webhook_secrets_used", &json!(used))?;
    }
    Ok(s)
}

/// What the state keeps of a secret used before: a one-way digest (UUID v5, SHA-1 based),
/// enough to recognise registrations made with it.
fn secret_digest(secret: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, secret.as_bytes())
        .simple()
        .to_string()
}

/// This runner's instance id: made once (32 hex digits) and kept in the state.
fn instance_id(state: &SyncState) -> Result<String, StateError> {
    if let Some(Json::String(s)) = state.misc("instance_id")? {
        return Ok(s);
    }
    let s = uuid::Uuid::new_v4().simple().to_string();
    state.set_misc("instance_id", &Json::String(s.clone()))?;
    Ok(s)
}
// --- end receiver ---

/// The value at `path` (object keys) in an order read as engine values, as JSON (see
/// `world::prefetch::at`): a part of the order, mostly a scalar, for the gathered lookups.
fn value_at(order: &skladsync_engine::Value, path: &[String]) -> Option<serde_json::Value> {
    path.iter()
        .try_fold(order, |cur, k| cur.get_ref(k))
        .map(skladsync_engine::Value::to_serde_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(seq: u64) -> Due {
        Due {
            seq,
            kind: DueKind::Order(format!("crm.order/{seq}")),
        }
    }

    fn stock(seq: u64, queued_at: i64) -> Due {
        Due {
            seq,
            kind: DueKind::Stock { queued_at },
        }
    }

    fn other(seq: u64) -> Due {
        Due {
            seq,
            kind: DueKind::Other,
        }
    }

    #[test]
    fn the_crm_poll_waits_longer_the_bigger_the_backlog() {
        let every = Duration::from_secs(2);
        assert_eq!(crm_poll_wait(every, 0), every);
        assert_eq!(crm_poll_wait(every, BACKLOG_ITEMS), every);
        assert_eq!(crm_poll_wait(every, 60), Duration::from_secs(8));
        assert_eq!(crm_poll_wait(every, 200), Duration::from_secs(20));
        assert_eq!(crm_poll_wait(every, 1_000), BACKLOG_POLL_MAX);
        // Never shorter than the interval configured.
        assert_eq!(
            crm_poll_wait(Duration::from_secs(60), 1_000),
            Duration::from_secs(240)
        );
    }

    fn seqs(round: &[Due]) -> Vec<u64> {
        round.iter().map(|d| d.seq).collect()
    }

    #[test]
    fn orders_go_first_and_hold_a_stock_pass_back_for_a_bounded_time() {
        let now = 1_000_000_000;
        // A stock pass queued before a backlog of orders: it waits while orders are due.
        let due = vec![
            stock(1, now - 1_000),
            other(2),
            order(3),
            order(4),
            Due {
                seq: 5,
                kind: DueKind::Settings,
            },
        ];
        let (round, held) = schedule_round(due, now);
        assert_eq!(seqs(&round), [5, 3, 4, 2]);
        assert_eq!(held, Some(now - 1_000 + STOCK_DEFER_MAX_MS));
        // Without orders due, the pass runs (last).
        let (round, held) = schedule_round(vec![stock(1, now - 1_000), other(2)], now);
        assert_eq!(seqs(&round), [2, 1]);
        assert_eq!(held, None);
        // Held back long enough, it goes before the orders: no starvation.
        let due = vec![order(3), stock(1, now - STOCK_DEFER_MAX_MS), order(4)];
        let (round, held) = schedule_round(due, now);
        assert_eq!(seqs(&round), [1, 3, 4]);
        assert_eq!(held, None);
    }
}
