//! Acting on the emulated account from Rust: what a CRM manager (or another integration, or
//! the CRM's own automation) does between two sync runs. Every action goes through the same
//! code as the API and leaves the same history, with `source: user` (or `api` with another
//! key, or `code`).

use serde_json::{json, Value};

use super::customers::{self, Sub};
use super::model::{as_i64, Actor, State};
use super::orders;
use super::{EmulatorError, RetailcrmEmulator};

/// A handle that performs changes as one [`Actor`].
#[derive(Debug)]
pub struct Manager<'a> {
    emu: &'a RetailcrmEmulator,
    actor: Actor,
}

fn order_idx(st: &State, id: i64) -> Result<usize, EmulatorError> {
    orders::find_order(st, &id.to_string(), true, None)
        .ok_or_else(|| EmulatorError::NotFound(format!("order {id}")))
}

fn items_of(st: &State, idx: usize) -> Vec<Value> {
    st.orders[idx]
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

impl<'a> Manager<'a> {
    pub(crate) fn new(emu: &'a RetailcrmEmulator, actor: Actor) -> Self {
        Self { emu, actor }
    }

    /// The actor.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State, &Actor) -> Result<T, EmulatorError>,
    ) -> Result<T, EmulatorError> {
        let mut inner = self.emu.shared.lock();
        f(&mut inner.state, &self.actor)
    }

    /// Creates an order (API `order` shape with `site`). Returns its id.
    pub fn create_order(&self, order: Value) -> Result<i64, EmulatorError> {
        self.with_state(|st, a| Ok(orders::create_order(st, a, &order, None)?))
    }

    /// Edits an order as the API's `orders/{id}/edit` would (only the sent fields change;
    /// `items` replaces the list).
    pub fn edit_order(&self, order_id: i64, patch: Value) -> Result<(), EmulatorError> {
        self.with_state(|st, a| {
            let idx = order_idx(st, order_id)?;
            Ok(orders::edit_order(st, a, idx, &patch)?)
        })
    }

    /// Moves an order to another status.
    pub fn set_order_status(&self, order_id: i64, status: &str) -> Result<(), EmulatorError> {
        self.edit_order(order_id, json!({ "status": status }))
    }

    fn edit_items(
        &self,
        order_id: i64,
        f: impl FnOnce(Vec<Value>) -> Result<Vec<Value>, EmulatorError>,
    ) -> Result<(), EmulatorError> {
        self.with_state(|st, a| {
            let idx = order_idx(st, order_id)?;
            let current: Vec<Value> = items_of(st, idx)
                .iter()
                .map(|it| json!({ "id": it.get("id") }))
                .collect();
            let items = f(current)?;
            Ok(orders::edit_order(st, a, idx, &json!({ "items": items }))?)
        })
    }

    fn edit_item(&self, order_id: i64, item_id: i64, patch: Value) -> Result<(), EmulatorError> {
        self.edit_items(order_id, |mut items| {
            let Some(slot) = items
                .iter_mut()
                .find(|it| as_i64(it.get("id")) == Some(item_id))
            else {
                return Err(EmulatorError::NotFound(format!(
                    "item {item_id} of order {order_id}"
                )));
            };
            if let (Some(s), Some(p)) = (slot.as_object_mut(), patch.as_object()) {
                for (k, v) in p {
                    s.insert(k.clone(), v.clone());
                }
            }
            Ok(items)
        })
    }

    /// Sets an item's status.
    pub fn set_item_status(
        &self,
        order_id: i64,
        item_id: i64,
        status: &str,
    ) -> Result<(), EmulatorError> {
        self.edit_item(order_id, item_id, json!({ "status": status }))
    }

    /// Sets an item's quantity.
    pub fn set_item_quantity(
        &self,
        order_id: i64,
        item_id: i64,
        quantity: f64,
    ) -> Result<(), EmulatorError> {
        self.edit_item(order_id, item_id, json!({ "quantity": quantity }))
    }

    /// Cancels an item: gives it the first item status marked `cancelStatus`.
    pub fn cancel_item(&self, order_id: i64, item_id: i64) -> Result<(), EmulatorError> {
        let status = {
            let inner = self.emu.shared.lock();
            inner
                .state
                .references
                .product_statuses
                .iter()
                .find(|(_, s)| s.get("cancelStatus").and_then(Value::as_bool) == Some(true))
                .map(|(code, _)| code.clone())
        };
        let status = status
            .ok_or_else(|| EmulatorError::NotFound("an item status with cancelStatus".into()))?;
        self.set_item_status(order_id, item_id, &status)
    }

    /// Adds an item (`{offer: {xmlId|externalId|id}, quantity, ...}`). Returns the item id.
    pub fn add_item(&self, order_id: i64, item: Value) -> Result<i64, EmulatorError> {
        self.edit_items(order_id, |mut items| {
            items.push(item);
            Ok(items)
        })?;
        let inner = self.emu.shared.lock();
        let idx = order_idx(&inner.state, order_id)?;
        items_of(&inner.state, idx)
            .last()
            .and_then(|it| as_i64(it.get("id")))
            .ok_or_else(|| EmulatorError::NotFound("the new item".into()))
    }

    /// Removes an item from the order.
    pub fn remove_item(&self, order_id: i64, item_id: i64) -> Result<(), EmulatorError> {
        self.edit_items(order_id, |items| {
            let before = items.len();
            let kept: Vec<Value> = items
                .into_iter()
                .filter(|it| as_i64(it.get("id")) != Some(item_id))
                .collect();
            if kept.len() == before {
                return Err(EmulatorError::NotFound(format!(
                    "item {item_id} of order {order_id}"
                )));
            }
            Ok(kept)
        })
    }

    /// Adds a payment to an order (`{type, status, amount, ...}`). Returns the payment id.
    pub fn add_payment(&self, order_id: i64, payment: Value) -> Result<i64, EmulatorError> {
        let mut payment = payment;
        if let Some(p) = payment.as_object_mut() {
            p.insert("order".into(), json!({ "id": order_id }));
        }
        self.with_state(|st, a| Ok(orders::create_payment(st, a, &payment, None)?))
    }

    /// Edits a payment.
    pub fn edit_payment(&self, payment_id: i64, patch: Value) -> Result<(), EmulatorError> {
        self.with_state(|st, a| {
            orders::edit_payment(st, a, &payment_id.to_string(), true, &patch)?;
            Ok(())
        })
    }

    /// Sets a payment's status (e.g. `paid`).
    pub fn set_payment_status(&self, payment_id: i64, status: &str) -> Result<(), EmulatorError> {
        self.edit_payment(payment_id, json!({ "status": status }))
    }

    /// Deletes a payment.
    pub fn delete_payment(&self, payment_id: i64) -> Result<(), EmulatorError> {
        self.with_state(|st, a| Ok(orders::delete_payment(st, a, payment_id)?))
    }

    /// Creates an individual customer (API shape with `site`).
    pub fn create_customer(&self, customer: Value) -> Result<i64, EmulatorError> {
        self.with_state(|st, a| Ok(customers::create_customer(st, a, &customer, None)?))
    }

    /// Edits an individual customer.
    pub fn edit_customer(&self, id: i64, patch: Value) -> Result<(), EmulatorError> {
        self.with_state(|st, a| {
            let idx = customers::find_customer(st, &id.to_string(), true, None)
                .ok_or_else(|| EmulatorError::NotFound(format!("customer {id}")))?;
            Ok(customers::edit_customer(st, a, idx, &patch)?)
        })
    }

    /// Deletes an individual customer, as a manager can in the interface (the API cannot):
    /// it is gone from lists, and `customers/history` gets a record with `deleted: true`
    /// and the customer's last snapshot.
    pub fn delete_customer(&self, id: i64) -> Result<(), EmulatorError> {
        self.with_state(|st, a| {
            let idx = customers::find_customer(st, &id.to_string(), true, None)
                .ok_or_else(|| EmulatorError::NotFound(format!("customer {id}")))?;
            customers::delete_customer(st, a, idx);
            Ok(())
        })
    }

    /// Creates a corporate customer (API shape, nested contacts/companies/addresses allowed).
    pub fn create_corporate(&self, customer: Value) -> Result<i64, EmulatorError> {
        self.with_state(|st, a| Ok(customers::create_corporate(st, a, &customer, None)?))
    }

    /// Edits a corporate customer's own fields.
    pub fn edit_corporate(&self, id: i64, patch: Value) -> Result<(), EmulatorError> {
        self.with_state(|st, a| {
            let idx = customers::find_corporate(st, &id.to_string(), true, None)
                .ok_or_else(|| EmulatorError::NotFound(format!("corporate customer {id}")))?;
            Ok(customers::edit_corporate(st, a, idx, &patch)?)
        })
    }

    fn add_sub(&self, corporate_id: i64, sub: Sub, body: Value) -> Result<i64, EmulatorError> {
        self.with_state(|st, a| {
            let idx = customers::find_corporate(st, &corporate_id.to_string(), true, None)
                .ok_or_else(|| {
                    EmulatorError::NotFound(format!("corporate customer {corporate_id}"))
                })?;
            Ok(customers::create_sub(st, a, idx, sub, &body)?)
        })
    }

    /// Adds a contact person (`{customer: {id|externalId}, companies: [...]}`).
    pub fn add_corporate_contact(
        &self,
        corporate_id: i64,
        contact: Value,
    ) -> Result<i64, EmulatorError> {
        self.add_sub(corporate_id, Sub::Contacts, contact)
    }

    /// Adds a company (`{name, contragent: {...}}`).
    pub fn add_corporate_company(
        &self,
        corporate_id: i64,
        company: Value,
    ) -> Result<i64, EmulatorError> {
        self.add_sub(corporate_id, Sub::Companies, company)
    }

    /// Adds an address.
    pub fn add_corporate_address(
        &self,
        corporate_id: i64,
        address: Value,
    ) -> Result<i64, EmulatorError> {
        self.add_sub(corporate_id, Sub::Addresses, address)
    }
}
