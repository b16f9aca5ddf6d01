//! Full CRM orders read in pages (issue 13, lever b): when the worker needs an order that is
//! not at hand, it reads it together with the other orders waiting in the inbox, one
//! `GET /orders?filter[ids][]=…` for up to a page of them, instead of one `GET /orders/{id}`
//! each.
//!
//! A prefetched order stands for "the order as it is now" only while nothing can have changed
//! it: it is used once, within [`MAX_AGE`], and only if its inbox item has gained no history
//! entry since the read; our own writes to retailCRM drop what they may touch (the order
//! written, the orders of the customer written, everything on any other write).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use skladsync_engine::Value;

/// How long a prefetched order may wait for its turn.
pub const MAX_AGE: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct Entry {
    at: Instant,
    /// The newest history entry id of the order's inbox item when it was read.
    history: Option<i64>,
    /// Read straight into engine values: the order's event takes it as it is.
    order: Value,
}

/// Orders read ahead of their turn.
#[derive(Debug, Default)]
pub struct OrderPrefetch {
    entries: Mutex<HashMap<i64, Entry>>,
}

/// The newest history entry id among `changes`.
pub fn newest_history(changes: &[Json]) -> Option<i64> {
    changes
        .iter()
        .filter_map(|c| c.get("id").and_then(Json::as_i64))
        .max()
}

impl OrderPrefetch {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps an order read ahead (`history`: the newest history entry id of its inbox item).
    pub fn put(&self, id: i64, history: Option<i64>, order: Value) {
        self.lock().insert(
            id,
            Entry {
                at: Instant::now(),
                history,
                order,
            },
        );
    }

    /// Takes the order read ahead, if it may still stand for the order now.
    pub fn take(&self, id: i64, history: Option<i64>) -> Option<Value> {
        let e = self.lock().remove(&id)?;
        (e.at.elapsed() < MAX_AGE && e.history >= history).then_some(e.order)
    }

    /// The orders held (fresh ones), for the lookups gathered ahead.
    pub fn held(&self) -> Vec<Value> {
        self.lock()
            .values()
            .filter(|e| e.at.elapsed() < MAX_AGE)
            .map(|e| e.order.clone())
            .collect()
    }

    /// Whether an order is held.
    pub fn holds(&self, id: i64) -> bool {
        self.lock().contains_key(&id)
    }

    /// How many orders are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// We are about to write `entity` `id` in retailCRM (`create`: a new one): drops what the
    /// write may change.
    pub fn crm_write(&self, entity: &str, id: Option<&Json>, create: bool) {
        let numeric = id.and_then(|v| match v {
            Json::Number(n) => n.as_i64(),
            Json::String(s) => s.parse().ok(),
            _ => None,
        });
        let mut m = self.lock();
        match (entity, numeric, create) {
            // A new order or customer changes no other order.
            ("order" | "customer" | "customer_corporate", _, true) => {}
            ("order", Some(id), false) => {
                m.remove(&id);
            }
            ("customer" | "customer_corporate", Some(cid), false) => {
                m.retain(|_, e| customer_id(&e.order) != Some(cid))
            }
            _ => m.clear(),
        }
    }
}

/// The `customer.id` of an order, if a whole number.
fn customer_id(order: &Value) -> Option<i64> {
    match order.get_ref("customer").and_then(|c| c.get_ref("id")) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// CRM customers read ahead of their turn (`GET /customers?filter[ids][]=…`, a page for the
/// customers waiting in the inbox), on the terms orders are: used once, within [`MAX_AGE`],
/// only if the customer's inbox item has gained no history entry since the read, and dropped
/// by our own retailCRM writes that may change them (the customer written; every customer on
/// any write of something else, a new order among them).
#[derive(Debug, Default)]
pub struct CustomerPrefetch {
    held: OrderPrefetch,
}

impl CustomerPrefetch {
    /// Keeps a customer read ahead (`history`: the newest history entry id of its inbox item).
    pub fn put(&self, id: i64, history: Option<i64>, customer: Value) {
        self.held.put(id, history, customer);
    }

    /// Takes the customer read ahead, if it may still stand for the customer now.
    pub fn take(&self, id: i64, history: Option<i64>) -> Option<Value> {
        self.held.take(id, history)
    }

    /// Whether a customer is held.
    pub fn holds(&self, id: i64) -> bool {
        self.held.holds(id)
    }

    /// We are about to write `entity` `id` in retailCRM (`create`: a new one): drops what the
    /// write may change.
    pub fn crm_write(&self, entity: &str, id: Option<&Json>, create: bool) {
        let numeric = id.and_then(|v| match v {
            Json::Number(n) => n.as_i64(),
            Json::String(s) => s.parse().ok(),
            _ => None,
        });
        let mut m = self.held.lock();
        match (entity, numeric, create) {
            // A new customer changes no other customer.
            ("customer", _, true) => {}
            ("customer", Some(id), false) => {
                m.remove(&id);
            }
            _ => m.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(j: Json) -> Value {
        Value::from_json(&j)
    }

    #[test]
    fn a_customer_read_ahead_is_dropped_by_our_writes_that_may_change_it() {
        let p = CustomerPrefetch::default();
        p.put(1, Some(10), v(json!({"id": 1})));
        p.put(2, Some(20), v(json!({"id": 2})));
        p.put(3, Some(30), v(json!({"id": 3})));
        // A newer history entry: the read no longer stands for the customer.
        assert_eq!(p.take(1, Some(11)), None);
        // Writing customer 2 drops it only; a new customer drops nothing.
        p.crm_write("customer", Some(&json!(2)), false);
        p.crm_write("customer", None, true);
        assert!(!p.holds(2));
        assert!(p.holds(3));
        // Any other write (an order, which may touch its customer) drops every customer.
        p.crm_write("order", Some(&json!(7)), false);
        assert!(!p.holds(3));
        p.put(4, None, v(json!({"id": 4})));
        assert_eq!(p.take(4, None), Some(v(json!({"id": 4}))));
        assert_eq!(p.take(4, None), None, "used once");
    }

    #[test]
    fn an_order_read_ahead_is_used_once_and_only_while_unchanged() {
        let p = OrderPrefetch::default();
        p.put(1, Some(10), v(json!({"id": 1, "customer": {"id": 7}})));
        p.put(2, Some(20), v(json!({"id": 2, "customer": {"id": 8}})));
        p.put(3, Some(30), v(json!({"id": 3, "customer": {"id": 7}})));
        p.put(4, None, v(json!({"id": 4})));
        assert_eq!(
            p.take(1, Some(10)),
            Some(v(json!({"id": 1, "customer": {"id": 7}})))
        );
        assert_eq!(p.take(1, Some(10)), None, "used once");
        // Its item gained a history entry since the read: read again.
        assert_eq!(p.take(2, Some(21)), None);
        // Our write to a customer drops that customer's orders; to an order, that order.
        p.crm_write("customer", Some(&json!(7)), false);
        assert!(!p.holds(3));
        p.put(5, None, v(json!({"id": 5})));
        p.crm_write("order", Some(&json!("5")), false);
        assert!(!p.holds(5) && p.holds(4));
        p.crm_write("order", None, true);
        assert!(p.holds(4), "a new order changes no other");
        p.crm_write("payment", Some(&json!(1)), true);
        assert!(p.is_empty(), "any other write drops everything");
    }
}
