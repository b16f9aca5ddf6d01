//! The CRM history poll: `orders/history`, `customers/history`, `customers-corporate/history`,
//! each walked from its `sinceId` cursor. Each batch is grouped per entity and queued; the
//! cursor moves only after the queued work is durable.

use indexmap::IndexMap;
use serde_json::{json, Value as Json};

use crate::clients::retailcrm::{HistoryEntry, HistoryFilter, HistoryKind};
use crate::config::HistoryStart;
use crate::state::Work;

use super::events::push_status;
use super::{Daemon, DaemonError};

/// The feeds, their cursor names and the events they feed.
const FEEDS: &[(HistoryKind, &str, &[&str])] = &[
    (
        HistoryKind::Orders,
        "crm.history.orders",
        &["crm.order.changed", "crm.order.deleted"],
    ),
    (
        HistoryKind::Customers,
        "crm.history.customers",
        &["crm.customer.changed"],
    ),
    (
        HistoryKind::CustomersCorporate,
        "crm.history.customers_corporate",
        &["crm.customer_corporate.changed"],
    ),
];

/// `{id, externalId, number, site}` of an order from a history entry.
fn order_stub(e: &HistoryEntry) -> Json {
    let o = e.entity().cloned().unwrap_or(Json::Null);
    let mut m = serde_json::Map::new();
    for k in ["id", "externalId", "number", "site"] {
        if let Some(v) = o.get(k) {
            m.insert(k.to_string(), v.clone());
        }
    }
    Json::Object(m)
}

impl Daemon {
    /// Reads every history feed some rule needs, queueing work; returns how many entries
    /// were read.
    pub async fn poll_crm(&self) -> Result<usize, DaemonError> {
        let mut read = 0;
        for (kind, cursor_name, events) in FEEDS {
            if !events.iter().any(|e| self.listens(e)) {
                continue;
            }
            read += self.poll_feed(*kind, cursor_name).await?;
        }
        Ok(read)
    }

    async fn poll_feed(&self, kind: HistoryKind, cursor_name: &str) -> Result<usize, DaemonError> {
        let crm = &self.inner.systems.crm;
        let state = &self.inner.state;
        let since = state.cursor(cursor_name)?.and_then(|v| v.as_i64());
        let mut cursor = crm.history_cursor(kind, since);
        if since.is_none() {
            let start = match &self.inner.config.crm.history_start {
                HistoryStart::Beginning => None,
                // The account's wall time (history dates are in its zone).
                HistoryStart::Recent => Some(
                    (chrono::Utc::now() - chrono::Duration::hours(24))
                        .with_timezone(&self.crm_tz())
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string(),
                ),
                HistoryStart::Since(d) => Some(d.clone()),
            };
            cursor = cursor.with_filter(HistoryFilter {
                start_date: start,
                ..HistoryFilter::default()
            });
        }
        let mut read = 0;
        while let Some(batch) = cursor.next_batch(crm).await? {
            read += batch.entries.len();
            let works = self.group(kind, batch.entries)?;
            let n = works.len();
            if !self.enqueue_bounded(works)? {
                // The inbox is full: nothing of this batch is lost, the cursor stays and the
                // next poll reads it again.
                tracing::warn!(
                    feed = cursor_name,
                    "the inbox is full: the CRM poll keeps its cursor"
                );
                // Not caught up: the cursor's lag keeps growing on `/metrics`.
                return Ok(read);
            }
            // Only now that the work is durable does the cursor move.
            state.set_cursor(cursor_name, &json!(batch.last_id))?;
            tracing::debug!(
                feed = cursor_name,
                last_id = batch.last_id,
                items = n,
                "history batch queued"
            );
        }
        self.inner.observed.caught_up(cursor_name);
        Ok(read)
    }

    /// Groups history entries per entity, oldest first, dropping our own changes.
    fn group(
        &self,
        kind: HistoryKind,
        entries: Vec<HistoryEntry>,
    ) -> Result<Vec<Work>, DaemonError> {
        let state = &self.inner.state;
        let mut works: IndexMap<i64, Work> = IndexMap::new();
        for e in entries {
            let Some(id) = e.entity_id() else { continue };
            if kind == HistoryKind::Orders && e.field.as_deref() == Some("status") {
                // Every status the order held, ours included, as soon as we see it.
                if let (Some(code), Some(mut list)) = (e.new_code(), state.order_statuses(id)?) {
                    if !list.iter().any(|s| s == code) {
                        push_status(&mut list, code);
                        state.set_order_statuses(id, &list)?;
                    }
                }
            }
            if e.is_own_change() {
                continue;
            }
            let json = serde_json::to_value(&e).map_err(crate::state::StateError::from)?;
            match kind {
                HistoryKind::Orders => {
                    let stub = if e.deleted {
                        order_stub(&e)
                    } else {
                        Json::Null
                    };
                    let w = works.entry(id).or_insert_with(|| Work::CrmOrder {
                        id,
                        changes: Vec::new(),
                        created: false,
                        deleted: false,
                        stub: Json::Null,
                    });
                    if let Work::CrmOrder {
                        changes,
                        created,
                        deleted,
                        stub: s,
                        ..
                    } = w
                    {
                        changes.push(json);
                        *created |= e.created;
                        *deleted |= e.deleted;
                        if !stub.is_null() {
                            *s = stub;
                        }
                    }
                }
                HistoryKind::Customers | HistoryKind::CustomersCorporate => {
                    let corporate = kind == HistoryKind::CustomersCorporate;
                    let w = works.entry(id).or_insert_with(|| Work::CrmCustomer {
                        id,
                        corporate,
                        changes: Vec::new(),
                    });
                    if let Work::CrmCustomer { changes, .. } = w {
                        changes.push(json);
                    }
                }
            }
        }
        Ok(works.into_values().collect())
    }
}
