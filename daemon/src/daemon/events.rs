//! Building events from inbox work: the entity is read as it is now, in the shape the
//! contract gives (docs/contract.md, "Events").

use std::collections::HashMap;

use serde_json::{json, Value as Json};
use skladsync_engine::{Event, Value};

use crate::apply::ApplyError;
use crate::clients::moysklad::ListQuery;
use crate::clients::retailcrm::{EntityKind, EntityRef, WriteOptions};
use crate::state::{InboxItem, Source, StateError, SyncState, Work};
use crate::world::from_json;
use crate::world::lookups::{ms_event_entity, ms_safe};

use super::{event_now_ms, Daemon};

/// What to record once the event's plan is applied.
#[derive(Debug)]
pub enum AfterCommit {
    /// Nothing.
    Nothing,
    /// This version of a МойСклад entity was evaluated.
    MsSeen {
        /// Entity type.
        entity: String,
        /// Id.
        id: String,
        /// Its `updated`.
        updated: String,
    },
    /// The stock rows sent (digests by assortment id), and the legacy digest keys to remove.
    Stock(Vec<(Box<str>, u128)>, Vec<Vec<u8>>),
    /// The settings the `settings.saved` event was about.
    Settings(Json),
}

impl AfterCommit {
    /// Records it.
    pub fn commit(self, state: &SyncState) -> Result<(), StateError> {
        match self {
            AfterCommit::Nothing => Ok(()),
            AfterCommit::MsSeen {
                entity,
                id,
                updated,
            } => state.set_ms_seen(&entity, &id, &updated),
            AfterCommit::Stock(d, legacy) => state.set_stock_digests(&d, &legacy),
            AfterCommit::Settings(s) => state.set_misc("settings", &s),
        }
    }
}

/// An event and what to record after its plan.
pub struct Built {
    /// The event.
    pub event: Event,
    /// To record after.
    pub after: AfterCommit,
}

/// Why an event could not be built (the work is retried).
pub type BuildError = ApplyError;

impl ApplyError {
    /// Whether waiting may fix it.
    pub fn transient(&self) -> bool {
        self.class() == crate::apply::FailureClass::Transient
    }
}

fn event(name: &str, payload: Json) -> Event {
    event_of(name, from_json(&payload))
}

/// An event of a payload built as engine values: the entity an API answer gave, read
/// straight into engine values (no `serde_json::Value` in between), beside small parts
/// converted from JSON.
fn event_of(name: &str, payload: Value) -> Event {
    Event {
        name: name.to_string(),
        payload,
        now: Some(event_now_ms()),
    }
}

/// An event payload of these keys and values (keys interned, as `from_json` makes them: the
/// rules' keys find them by pointer).
fn payload<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut map = skladsync_engine::value::Map::with_capacity(N);
    for (k, v) in entries {
        map.insert(skladsync_engine::value::intern::key(k), v);
    }
    Value::object(map)
}

/// History entries (kept in the state as JSON) as engine values.
fn changes_value(changes: &[Json]) -> Value {
    Value::array(changes.iter().map(from_json).collect())
}

/// The `id` of an entity read from retailCRM, if a whole number.
fn crm_id(row: &Value) -> Option<i64> {
    match row.get_ref("id") {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// Moves `status` to the end of the list (every status held, the current one last).
pub(super) fn push_status(list: &mut Vec<String>, status: &str) {
    list.retain(|s| s != status);
    list.push(status.to_string());
}

impl Daemon {
    /// Reads order `id` together with the next orders waiting in the inbox (one page of
    /// `orders?filter[ids][]=…`) and keeps them for their turn. Nothing happens when no other
    /// order waits (the single read is as cheap) or the read fails (each is read alone then).
    async fn prefetch_orders(&self, id: i64) {
        let crm = &self.inner.systems.crm;
        let page = usize::try_from(crm.config().page_limit)
            .unwrap_or(100)
            .max(1);
        let Ok(inbox) = self.inner.state.inbox() else {
            return;
        };
        let mut wanted: Vec<(i64, Option<i64>)> = Vec::new();
        for (_, item) in inbox {
            if wanted.len() >= page {
                break;
            }
            // A parked item waits; an item holding a plan was evaluated already (its plan is
            // being applied) and is not built again: neither needs its order read.
            if item.parked.is_some() || item.plan {
                continue;
            }
            if let Work::CrmOrder {
                id: other,
                changes,
                deleted: false,
                ..
            } = &item.work
            {
                if *other == id || !self.inner.applier.orders.holds(*other) {
                    wanted.push((*other, super::prefetch::newest_history(changes)));
                }
            }
        }
        if !wanted.iter().any(|(o, _)| *o == id) {
            return;
        }
        if wanted.len() < 2 {
            return;
        }
        let ids: Vec<i64> = wanted.iter().map(|(o, _)| *o).collect();
        let rows = match crm
            .list_all_values(
                EntityKind::Order,
                &json!({ "ids": ids }),
                &WriteOptions::default(),
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the waiting orders in a page; one by one");
                return;
            }
        };
        let history: HashMap<i64, Option<i64>> = wanted.into_iter().collect();
        for row in rows {
            if let Some(rid) = crm_id(&row) {
                if let Some(h) = history.get(&rid) {
                    self.inner.applier.orders.put(rid, *h, row);
                }
            }
        }
    }

    /// Reads customer `id` together with the next customers waiting in the inbox (one page of
    /// `customers?filter[ids][]=…`) and keeps them for their turn, as [`Self::prefetch_orders`]
    /// does for orders.
    async fn prefetch_customers(&self, id: i64) {
        let crm = &self.inner.systems.crm;
        let page = usize::try_from(crm.config().page_limit)
            .unwrap_or(100)
            .max(1);
        let Ok(inbox) = self.inner.state.inbox() else {
            return;
        };
        let mut wanted: Vec<(i64, Option<i64>)> = Vec::new();
        for (_, item) in inbox {
            if wanted.len() >= page {
                break;
            }
            if item.parked.is_some() || item.plan {
                continue;
            }
            if let Work::CrmCustomer {
                id: other,
                corporate: false,
                changes,
            } = &item.work
            {
                if *other == id || !self.inner.applier.customers.holds(*other) {
                    wanted.push((*other, super::prefetch::newest_history(changes)));
                }
            }
        }
        if !wanted.iter().any(|(c, _)| *c == id) || wanted.len() < 2 {
            return;
        }
        let ids: Vec<i64> = wanted.iter().map(|(c, _)| *c).collect();
        let rows = match crm
            .list_all_values(
                EntityKind::Customer,
                &json!({ "ids": ids }),
                &WriteOptions::default(),
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the waiting customers in a page; one by one");
                return;
            }
        };
        let history: HashMap<i64, Option<i64>> = wanted.into_iter().collect();
        for row in rows {
            if let Some(rid) = crm_id(&row) {
                if let Some(h) = history.get(&rid) {
                    self.inner.applier.customers.put(rid, *h, row);
                }
            }
        }
    }

    /// Builds the event of a piece of work; `None` when there is nothing to evaluate.
    pub(super) async fn build(&self, work: &Work) -> Result<Option<Built>, BuildError> {
        let crm = &self.inner.systems.crm;
        let ms = &self.inner.systems.ms;
        let state = &self.inner.state;
        match work {
            Work::CrmOrder {
                id,
                changes,
                created,
                deleted,
                stub,
            } => {
                if *deleted {
                    if !self.listens("crm.order.deleted") {
                        return Ok(None);
                    }
                    return Ok(Some(Built {
                        event: event(
                            "crm.order.deleted",
                            json!({"order": stub, "changes": changes}),
                        ),
                        after: AfterCommit::Nothing,
                    }));
                }
                if !self.listens("crm.order.changed") {
                    return Ok(None);
                }
                let history = super::prefetch::newest_history(changes);
                let ahead = match self.inner.applier.orders.take(*id, history) {
                    Some(o) => Some(o),
                    None => {
                        self.prefetch_orders(*id).await;
                        self.inner.applier.orders.take(*id, history)
                    }
                };
                let order = match ahead {
                    Some(o) => o,
                    None => match crm
                        .fetch_value(
                            EntityKind::Order,
                            &EntityRef::Id(*id),
                            &WriteOptions::default(),
                        )
                        .await
                    {
                        Ok(o) => o,
                        Err(e) if e.is_not_found() => return Ok(None),
                        Err(e) => return Err(e.into()),
                    },
                };
                let mut statuses = match state.order_statuses(*id)? {
                    Some(s) => s,
                    // The order's creation is in this item (a `created` record carries the
                    // order as created): every status it has held since is in `changes`
                    // (added below), so its history need not be read (one request per new
                    // order less).
                    None if *created => {
                        let mut s = Vec::new();
                        let first = changes
                            .iter()
                            .filter(|c| c.get("created").and_then(Json::as_bool) == Some(true))
                            .find_map(|c| c.pointer("/order/status").and_then(Json::as_str));
                        if let Some(code) = first {
                            push_status(&mut s, code);
                        }
                        s
                    }
                    None => {
                        let mut s = Vec::new();
                        for c in crm.order_status_history(&EntityRef::Id(*id)).await? {
                            push_status(&mut s, &c.status);
                        }
                        s
                    }
                };
                for c in changes {
                    if c.get("field").and_then(Json::as_str) == Some("status") {
                        if let Some(code) = c.pointer("/newValue/code").and_then(Json::as_str) {
                            if !statuses.iter().any(|s| s == code) {
                                push_status(&mut statuses, code);
                            }
                        }
                    }
                }
                if let Some(cur) = order.get_ref("status").and_then(Value::as_str) {
                    push_status(&mut statuses, cur);
                }
                state.set_order_statuses(*id, &statuses)?;
                Ok(Some(Built {
                    event: event_of(
                        "crm.order.changed",
                        payload([
                            ("order", order),
                            ("changes", changes_value(changes)),
                            (
                                "statuses",
                                Value::array(statuses.iter().map(|s| Value::str(s)).collect()),
                            ),
                            ("created", Value::bool(*created)),
                        ]),
                    ),
                    after: AfterCommit::Nothing,
                }))
            }
            Work::CrmCustomer {
                id,
                corporate,
                changes,
            } => {
                let (name, kind) = if *corporate {
                    (
                        "crm.customer_corporate.changed",
                        EntityKind::CustomerCorporate,
                    )
                } else {
                    ("crm.customer.changed", EntityKind::Customer)
                };
                if !self.listens(name) {
                    return Ok(None);
                }
                let history = super::prefetch::newest_history(changes);
                let ahead = if *corporate {
                    None
                } else {
                    match self.inner.applier.customers.take(*id, history) {
                        Some(c) => Some(c),
                        None => {
                            self.prefetch_customers(*id).await;
                            self.inner.applier.customers.take(*id, history)
                        }
                    }
                };
                let customer = match ahead {
                    Some(c) => c,
                    None => match crm
                        .fetch_value(kind, &EntityRef::Id(*id), &WriteOptions::default())
                        .await
                    {
                        Ok(c) => c,
                        Err(e) if e.is_not_found() => return Ok(None),
                        Err(e) => return Err(e.into()),
                    },
                };
                Ok(Some(Built {
                    event: event_of(
                        name,
                        payload([("customer", customer), ("changes", changes_value(changes))]),
                    ),
                    after: AfterCommit::Nothing,
                }))
            }
            Work::Moysklad {
                entity,
                action,
                id,
                href,
                updated_fields,
                request_id,
                source,
            } => {
                let name = format!("moysklad.{entity}.{action}");
                if !self.listens(&name) {
                    return Ok(None);
                }
                let (doc, after) = if action == "deleted" {
                    (
                        from_json(
                            &json!({"id": id, "meta": {"href": href, "type": entity, "mediaType": "application/json"}}),
                        ),
                        AfterCommit::Nothing,
                    )
                } else {
                    let Some(doc) = ms_event_entity(ms, entity, id).await? else {
                        self.entity_gone(entity, action, id, *source)?;
                        self.deleted_when_gone(entity, id, href, *source)?;
                        self.sweep_gone(entity).await?;
                        return Ok(None);
                    };
                    let updated = doc
                        .get_ref("updated")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    if !updated.is_empty() {
                        let seen = state.ms_seen(entity, id)?;
                        let own = state.ms_own(entity, id)?;
                        let echo = seen.as_deref() == Some(updated.as_str())
                            || (*source == Source::Poll
                                && own.as_deref() == Some(updated.as_str()));
                        if echo {
                            self.inner.stats.echo();
                            return Ok(None);
                        }
                    }
                    (
                        doc,
                        AfterCommit::MsSeen {
                            entity: entity.clone(),
                            id: id.clone(),
                            updated,
                        },
                    )
                };
                let src = match source {
                    Source::Webhook => "webhook",
                    Source::Poll => "poll",
                };
                Ok(Some(Built {
                    event: event_of(
                        &name,
                        payload([
                            ("entity", doc),
                            ("updatedFields", from_json(&json!(updated_fields))),
                            ("requestId", from_json(&json!(request_id))),
                            ("source", Value::str(src)),
                        ]),
                    ),
                    after,
                }))
            }
            Work::StockPass { full } => {
                // A stock pass is processed in its lane, part by part (`Daemon::stock_pass`);
                // built here, it is one part with every row.
                let rows = self.stock_rows(*full, None).await?;
                if rows.is_empty() && !*full {
                    return Ok(None);
                }
                stock_part(&rows, *full, 0..rows.len(), 1, 1).map(Some)
            }
            Work::SettingsSaved => {
                let previous = state.misc("settings")?.unwrap_or(Json::Null);
                let current = self.live().settings.to_serde_json();
                Ok(Some(Built {
                    event: event("settings.saved", json!({"previous": previous})),
                    after: AfterCommit::Settings(current),
                }))
            }
            Work::Problem { problem } => Ok(Some(Built {
                event: event("sync.problem", json!({"problem": problem})),
                after: AfterCommit::Nothing,
            })),
        }
    }
}

/// The event of part `index` (1-based) of `count` of a stock pass: the rows of `range`, built
/// as engine values now; after its plan the digests of those rows that changed are recorded
/// (with the legacy digest keys removed, by the first part).
pub(super) fn stock_part(
    rows: &super::stock::PassRows,
    full: bool,
    range: std::ops::Range<usize>,
    index: usize,
    count: usize,
) -> Result<Built, BuildError> {
    let digests = rows.digests(range.clone());
    let values = rows.rows(range)?;
    let legacy = if index == 1 {
        rows.legacy.clone()
    } else {
        Vec::new()
    };
    let number = |n: usize| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(Built {
        event: event_of(
            "stock.pass",
            payload([
                ("rows", Value::array(values)),
                ("full", Value::bool(full)),
                (
                    "part",
                    payload([("index", number(index)), ("count", number(count))]),
                ),
            ]),
        ),
        after: AfterCommit::Stock(digests, legacy),
    })
}

impl Daemon {
    /// A МойСклад entity named by a webhook or the poll cannot be fetched (404, error 1021):
    /// deleted since, or it never existed. Counted (`/status` → `receiver.entities_gone`)
    /// and journalled as `MS_ENTITY_GONE` (one entry per entity type, its count growing).
    fn entity_gone(
        &self,
        entity: &str,
        action: &str,
        id: &str,
        source: Source,
    ) -> Result<(), StateError> {
        self.inner.receiver_stats.entity_gone();
        let src = match source {
            Source::Webhook => "webhook",
            Source::Poll => "poll",
        };
        tracing::warn!(
            entity,
            id,
            action,
            source = src,
            "МойСклад entity not found; nothing to evaluate"
        );
        self.runner_journal(
            "MS_ENTITY_GONE",
            "warning",
            &format!(
                "МойСклад {entity} {id} ({action}, from the {src}) was not found when its event \
                 was built: deleted since, or it never existed. Nothing was evaluated"
            ),
            json!({"entity": entity}),
            json!({"id": id, "action": action, "source": src}),
        )
    }
}

impl Daemon {
    /// An entity that work named turned out to be gone (404, 1021) was deleted, as far as
    /// the rules can tell: when some rule listens to its deletions, its deletion is queued
    /// (once: a webhook or the audit poll reporting it too is not queued again).
    fn deleted_when_gone(
        &self,
        entity: &str,
        id: &str,
        href: &str,
        source: Source,
    ) -> Result<(), StateError> {
        if !self.listens(&format!("moysklad.{entity}.deleted")) {
            return Ok(());
        }
        let href = if href.is_empty() {
            format!("{}/entity/{entity}/{id}", self.inner.systems.ms.base_url())
        } else {
            href.split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let queued = self.enqueue_bounded(vec![Work::Moysklad {
            entity: entity.to_string(),
            action: "deleted".to_string(),
            id: id.to_string(),
            href,
            updated_fields: Vec::new(),
            request_id: None,
            source,
        }])?;
        if queued {
            tracing::info!(entity, id, "the entity is gone: its deletion is queued");
        }
        Ok(())
    }
}

/// МойСклад document types: lists of them have no default filter (no `archived`), so an id
/// a filtered list does not return does not exist.
const SWEEPABLE: &[&str] = &[
    "customerorder",
    "demand",
    "retaildemand",
    "salesreturn",
    "retailsalesreturn",
    "supply",
    "purchaseorder",
    "purchasereturn",
    "invoiceout",
    "invoicein",
    "move",
    "enter",
    "loss",
    "inventory",
    "prepayment",
    "prepaymentreturn",
    "paymentin",
    "paymentout",
    "cashin",
    "cashout",
];

/// Waiting items one sweep checks at most.
const SWEEP_MAX: usize = 1000;

/// Ids per list request of a sweep (`filter=id=…;id=…`, well under the 8 KB URL limit).
const SWEEP_CHUNK: usize = 100;

impl Daemon {
    /// After an entity named by waiting work turned out not to exist: checks the other
    /// waiting work on entities of that (document) type in bulk, one list request per
    /// [`SWEEP_CHUNK`] ids, and drops the items whose entity does not exist either
    /// (counted, journalled once per sweep). So a flood of notifications about entities that
    /// do not exist costs one request per hundred of them, not one each, and real work
    /// queued behind them is not held up. Deletions are never dropped; items that changed
    /// since they were read are kept.
    async fn sweep_gone(&self, entity: &str) -> Result<usize, BuildError> {
        if !SWEEPABLE.contains(&entity) {
            return Ok(0);
        }
        let state = &self.inner.state;
        let mut waiting: Vec<(u64, InboxItem, String)> = Vec::new();
        for (seq, item) in state.inbox()? {
            if let Work::Moysklad {
                entity: e,
                action,
                id,
                ..
            } = &item.work
            {
                if e == entity && action != "deleted" && ms_safe(id) {
                    let id = id.clone();
                    waiting.push((seq, item, id));
                    if waiting.len() >= SWEEP_MAX {
                        break;
                    }
                }
            }
        }
        let ms = &self.inner.systems.ms;
        let mut gone: Vec<(u64, InboxItem)> = Vec::new();
        for chunk in waiting.chunks(SWEEP_CHUNK) {
            let mut q = ListQuery::new().limit(SWEEP_CHUNK as u32);
            for (_, _, id) in chunk {
                q = q.filter_eq("id", id);
            }
            let page = ms.list(entity, &q).await?;
            let found: std::collections::HashSet<&str> = page
                .rows
                .iter()
                .filter_map(|r| r.get("id").and_then(Json::as_str))
                .collect();
            gone.extend(
                chunk
                    .iter()
                    .filter(|(_, _, id)| !found.contains(id.as_str()))
                    .map(|(seq, item, _)| (*seq, item.clone())),
            );
        }
        let dropped = state.drop_unchanged(&gone)?;
        if dropped.is_empty() {
            return Ok(0);
        }
        let n = dropped.len();
        self.inner.receiver_stats.entities_gone_n(n as u64);
        tracing::warn!(
            entity,
            count = n,
            "waiting work on МойСклад entities that do not exist dropped"
        );
        self.runner_journal(
            "MS_ENTITY_GONE",
            "warning",
            &format!(
                "{n} more waiting МойСклад {entity} notification(s) name entities that do not \
                 exist (checked in bulk): dropped, nothing was evaluated"
            ),
            json!({"entity": entity}),
            json!({"dropped": n}),
        )?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skladsync_engine::value::intern;

    #[test]
    fn payload_keys_are_the_interned_keys_rules_name() {
        let order: Value = serde_json::from_str(r#"{"id": 7, "status": "new"}"#).expect("order");
        let p = payload([("order", order), ("created", Value::bool(true))]);
        let keys: Vec<_> = p.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys.len(), 2);
        // The same allocation as the key a rule's `event.order` looks for: found by pointer.
        assert!(skladsync_engine::value::Str::ptr_eq(
            &keys[0],
            &intern::key("order")
        ));
        assert!(skladsync_engine::value::Str::ptr_eq(
            &keys[1],
            &intern::key("created")
        ));
        assert_eq!(p.get("order").get("status"), Value::str("new"));
        // As the JSON way built it.
        let json = from_json(&json!({"order": {"id": 7, "status": "new"}, "created": true}));
        assert_eq!(p.to_json(), json.to_json());
    }
}
