//! The engine's [`World`] for the live systems: lookups and fetches through the two clients,
//! links from the state, reference data with a time-to-live cache.
//!
//! # Sync engine, async clients
//!
//! The engine is synchronous; the clients are async. The daemon evaluates every event inside
//! `tokio::task::spawn_blocking`, and [`LiveWorld`] bridges each lookup with
//! [`tokio::runtime::Handle::block_on`] on the runtime's handle. A lookup therefore blocks only
//! a blocking-pool thread, never a runtime worker. Never call [`RuleSet::evaluate`] with a
//! `LiveWorld` from async code directly.
//!
//! Answers are cached for the length of one evaluation (rules often ask the same question
//! twice); reference data (stores, statuses, organizations …) is cached across evaluations
//! for the configured TTL. A lookup that fails becomes a [`WorldError`]: the engine turns it
//! into an evaluation error and the daemon journals it and retries the event later.
//!
//! [`RuleSet::evaluate`]: skladsync_engine::RuleSet::evaluate

pub mod catalogue;
pub mod lookups;
pub mod prefetch;
mod reference;

pub use reference::OfferIndex;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skladsync_engine::value::Map;
use skladsync_engine::{Value, World, WorldError};

use crate::clients::moysklad::MoyskladClient;
use crate::clients::retailcrm::RetailcrmClient;
use crate::state::SyncState;
use catalogue::{Answer, CatalogueMirror};
use prefetch::LookupPrefetch;

/// The two API clients.
#[derive(Clone, Debug)]
pub struct Systems {
    /// retailCRM.
    pub crm: RetailcrmClient,
    /// МойСклад.
    pub ms: MoyskladClient,
}

/// Reference data cached across evaluations.
#[derive(Debug)]
pub struct ReferenceCache {
    ttl: Duration,
    /// The books as engine values: an evaluation gets the book itself (shared, not copied).
    entries: Mutex<HashMap<String, (Instant, Value)>>,
    /// `crm.offers`, answered entry by entry (see [`reference::OfferIndex`]).
    offers: Mutex<Option<(Instant, Arc<reference::OfferIndex>)>>,
}

impl ReferenceCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        ReferenceCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            offers: Mutex::new(None),
        }
    }

    fn offers(&self) -> Option<Arc<reference::OfferIndex>> {
        let m = self.offers.lock().unwrap_or_else(|p| p.into_inner());
        m.as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put_offers(&self, index: Arc<reference::OfferIndex>) {
        *self.offers.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), index));
    }

    fn get(&self, name: &str) -> Option<Value> {
        let m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        m.get(name)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, name: &str, v: Value) {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(name.to_string(), (Instant::now(), v));
    }

    /// Forgets everything (e.g. after the runner created reference data).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.offers.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The world of one evaluation.
pub struct LiveWorld {
    systems: Systems,
    state: SyncState,
    refs: Arc<ReferenceCache>,
    catalogue: Arc<CatalogueMirror>,
    prefetch: Option<(Arc<LookupPrefetch>, Recorded)>,
    fetch_log: Option<FetchRecorded>,
    handle: tokio::runtime::Handle,
    cache: Mutex<HashMap<String, Value>>,
    /// `crm.offers` as this evaluation first got it: every entry it asks is answered from
    /// the same read, as the whole book was (even when the cache's entry expires meanwhile).
    offers: std::sync::OnceLock<Arc<reference::OfferIndex>>,
}

/// The single-field МойСклад lookups an evaluation made: (entity, field, value).
pub type Recorded = Arc<Mutex<Vec<(String, String, String)>>>;

/// What an evaluation read by id (for [`LookupPrefetch::learn_fetches`]).
pub type FetchRecorded = Arc<Mutex<prefetch::FetchLog>>;

impl std::fmt::Debug for LiveWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveWorld")
    }
}

/// Converts an engine value to JSON (pending references become `{"$ref"}`).
pub fn to_json(v: &Value) -> serde_json::Value {
    v.to_serde_json()
}

/// Converts JSON to an engine value.
pub fn from_json(v: &serde_json::Value) -> Value {
    Value::from_json(v)
}

impl LiveWorld {
    /// A world over the clients and the state, blocking on `handle` for each lookup; item
    /// matching by `externalCode` is answered from `catalogue` when it holds the item.
    pub fn new(
        systems: Systems,
        state: SyncState,
        refs: Arc<ReferenceCache>,
        catalogue: Arc<CatalogueMirror>,
        handle: tokio::runtime::Handle,
    ) -> Self {
        LiveWorld {
            systems,
            state,
            refs,
            catalogue,
            prefetch: None,
            fetch_log: None,
            handle,
            cache: Mutex::new(HashMap::new()),
            offers: std::sync::OnceLock::new(),
        }
    }

    /// Answers single-field МойСклад lookups from `prefetch` when it holds them, and records
    /// every such lookup in `recorded` (for [`LookupPrefetch::learn`]).
    #[must_use]
    pub fn with_prefetch(mut self, prefetch: Arc<LookupPrefetch>, recorded: Recorded) -> Self {
        self.prefetch = Some((prefetch, recorded));
        self
    }

    /// Answers МойСклад fetches by id from the prefetch given to [`LiveWorld::with_prefetch`]
    /// when it holds them, and records every such fetch and every link read in `log`.
    #[must_use]
    pub fn with_fetch_log(mut self, log: FetchRecorded) -> Self {
        self.fetch_log = Some(log);
        self
    }

    fn log(&self) -> Option<std::sync::MutexGuard<'_, prefetch::FetchLog>> {
        self.fetch_log
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `fetch("moysklad", entity, id)`: from a gathered answer when one is held.
    fn ms_get(&self, entity: &str, id: &serde_json::Value) -> Result<Option<Value>, WorldError> {
        if let (Some(id), Some((p, _))) = (lookups::ms_id(id), &self.prefetch) {
            if let Some(mut log) = self.log() {
                log.fetches.push((entity.to_string(), id.clone()));
            }
            if self.fetch_log.is_some() {
                if let Some(row) = p.fetched(entity, &id) {
                    return Ok(Some(from_json(&row)));
                }
            }
        }
        self.block_on(lookups::ms_fetch(&self.systems.ms, entity, id))
    }

    fn cached(
        &self,
        key: String,
        fetch: impl FnOnce() -> Result<Value, WorldError>,
    ) -> Result<Value, WorldError> {
        if let Some(v) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(v.clone());
        }
        let v = fetch()?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, v.clone());
        Ok(v)
    }

    /// `fetch("runner", "written", "<system>.<entity>/<id>")`: what skladsync last wrote to
    /// that entity (see docs/contract.md).
    fn runner_fetch(
        &self,
        entity: &str,
        id: &serde_json::Value,
    ) -> Result<Option<Value>, WorldError> {
        match entity {
            "written" => {
                let Some(key) = id.as_str() else {
                    return Err(WorldError(format!(
                        "fetch(\"runner\", \"written\", id): the id is {id}, not a text like \"moysklad.customerorder/<id>\""
                    )));
                };
                self.state
                    .written(key)
                    .map(|w| w.as_ref().map(from_json))
                    .map_err(|e| WorldError(format!("state: {e}")))
            }
            other => Err(WorldError(format!(
                "fetch(\"runner\", …): unknown entity `{other}` (known: written)"
            ))),
        }
    }

    /// Remembers which version of a МойСклад entity a rule read (see
    /// `crate::apply::Applier` (`note_own_write`)). Best effort: bookkeeping never fails a lookup.
    fn note_ms_read(&self, entity: &str, got: Option<&Value>) {
        let Some(doc) = got else { return };
        if let (Some(id), Some(updated)) = (
            doc.get_ref("id").and_then(Value::as_str),
            doc.get_ref("updated").and_then(Value::as_str),
        ) {
            if let Err(e) = self.state.set_ms_read(entity, id, updated) {
                tracing::debug!(error = %e, "could not note a МойСклад read");
            }
        }
    }

    /// `crm.offers` as the runner holds it: from the cache, or read (and cached).
    fn offer_index(&self) -> Result<Arc<reference::OfferIndex>, WorldError> {
        if let Some(i) = self.offers.get() {
            return Ok(i.clone());
        }
        let index = match self.refs.offers() {
            Some(i) => i,
            None => {
                let index = Arc::new(self.block_on(reference::load_offers(&self.systems))?);
                self.refs.put_offers(index.clone());
                index
            }
        };
        Ok(self.offers.get_or_init(|| index).clone())
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    /// A МойСклад lookup; the assortment by `externalCode` from the catalogue mirror when it
    /// holds the item (loading it first if need be), else from МойСклад.
    fn ms_find(
        &self,
        entity: &str,
        filter: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<serde_json::Value>, WorldError> {
        let Some(code) = catalogue::mirrored_code(entity, filter) else {
            let single = prefetch::single(filter);
            if let (Some((_, recorded)), None) = (&self.prefetch, &single) {
                // Not one field: recorded as a lookup of the type (see `prefetch::may_find`).
                recorded.lock().unwrap_or_else(|e| e.into_inner()).push((
                    entity.to_string(),
                    String::new(),
                    String::new(),
                ));
            }
            if let (Some((p, recorded)), Some((field, value))) = (&self.prefetch, single) {
                recorded.lock().unwrap_or_else(|e| e.into_inner()).push((
                    entity.to_string(),
                    field.to_string(),
                    value.clone(),
                ));
                if let Some(rows) = p.answer(entity, field, &value) {
                    return Ok(rows);
                }
            }
            return self.block_on(lookups::ms_find(&self.systems.ms, entity, filter));
        };
        if let Err(e) = self.block_on(self.catalogue.ensure_loaded(&self.systems.ms)) {
            tracing::warn!(error = %e, "cannot load the catalogue mirror; asking МойСклад");
        }
        if let Answer::Rows(rows) = self.catalogue.find(code) {
            return Ok(rows);
        }
        let rows = self.block_on(lookups::ms_find(&self.systems.ms, entity, filter))?;
        self.catalogue.learn(&rows);
        Ok(rows)
    }
}

impl World for LiveWorld {
    fn find(&self, system: &str, entity: &str, filter: &Map) -> Result<Vec<Value>, WorldError> {
        let json_filter: serde_json::Map<String, serde_json::Value> = filter
            .iter()
            .map(|(k, v)| (k.to_string(), to_json(v)))
            .collect();
        let key = format!(
            "find|{system}|{entity}|{}",
            serde_json::Value::Object(json_filter.clone())
        );
        let found = self.cached(key, || {
            let rows = match system {
                "moysklad" => self.ms_find(entity, &json_filter)?,
                "crm" => {
                    self.block_on(lookups::crm_find(&self.systems.crm, entity, &json_filter))?
                }
                other => return Err(WorldError(format!("unknown system `{other}`"))),
            };
            // Converted as one list: rows of one shape share their key table.
            Ok(from_json(&serde_json::Value::Array(rows)))
        })?;
        Ok(found.as_array().map(<[Value]>::to_vec).unwrap_or_default())
    }

    fn get(&self, system: &str, entity: &str, id: &Value) -> Result<Value, WorldError> {
        let id_json = to_json(id);
        let key = format!("get|{system}|{entity}|{id_json}");
        self.cached(key, || {
            let got = match system {
                "moysklad" => {
                    let got = self.ms_get(entity, &id_json)?;
                    self.note_ms_read(entity, got.as_ref());
                    got
                }
                "crm" => self.block_on(lookups::crm_fetch(&self.systems.crm, entity, &id_json))?,
                "runner" => self.runner_fetch(entity, &id_json)?,
                other => return Err(WorldError(format!("unknown system `{other}`"))),
            };
            Ok(got.unwrap_or_default())
        })
    }

    fn linked(&self, kind: &str, system: &str, id: &Value) -> Result<Value, WorldError> {
        let link = self
            .state
            .linked(kind, system, &to_json(id))
            .map_err(|e| WorldError(format!("link store: {e}")))?;
        if let Some(mut log) = self.log() {
            log.links.push((
                kind.to_string(),
                system.to_string(),
                to_json(id),
                link.as_ref().map(|l| l.to_json()).unwrap_or_default(),
            ));
        }
        Ok(link.map(|l| from_json(&l.to_json())).unwrap_or_default())
    }

    fn reference(&self, name: &str) -> Result<Value, WorldError> {
        if let Some(v) = self.refs.get(name) {
            return Ok(v);
        }
        let v = if name == reference::OFFERS {
            // Built whole from the index (loaded once for both ways of asking).
            Some(self.offer_index()?.book())
        } else {
            self.block_on(reference::load(&self.systems, name))?
        };
        if let Some(v) = &v {
            self.refs.put(name, v.clone());
        }
        Ok(v.unwrap_or_default())
    }

    fn reference_entry(&self, name: &str, key: &str) -> Result<Value, WorldError> {
        if name == reference::OFFERS {
            return Ok(self.offer_index()?.entry(key));
        }
        Ok(match self.reference(name)? {
            Value::Object(book) => book.get(key).cloned().unwrap_or_default(),
            _ => Value::Null,
        })
    }
}
