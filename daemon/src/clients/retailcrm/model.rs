//! The small typed layer over retailCRM's JSON: identifiers, pages, write results, history
//! entries, stock rows. Entities themselves stay `serde_json::Value`: the engine reads them as
//! documents, and the API adds fields often.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::Error;

/// How a path identifier is read: retailCRM's `by=id` or `by=externalId`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EntityRef {
    /// The CRM's own numeric id.
    Id(i64),
    /// Our (or another integration's) `externalId`.
    ExternalId(String),
}

impl EntityRef {
    /// The path segment (unencoded; the client percent-encodes it).
    pub fn segment(&self) -> String {
        match self {
            EntityRef::Id(id) => id.to_string(),
            EntityRef::ExternalId(x) => x.clone(),
        }
    }

    /// The value of the `by` parameter.
    pub fn by(&self) -> &'static str {
        match self {
            EntityRef::Id(_) => "id",
            EntityRef::ExternalId(_) => "externalId",
        }
    }

    /// Reads an identifier from a plan effect: a JSON number is an `id`, a string is an
    /// `externalId`, and an object `{"id": …}` / `{"externalId": …}` says which explicitly.
    pub fn from_json(v: &Value) -> Result<Self, Error> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .map(EntityRef::Id)
                .ok_or_else(|| Error::InvalidInput(format!("id {n} is not an integer"))),
            Value::String(s) if !s.is_empty() => Ok(EntityRef::ExternalId(s.clone())),
            Value::Object(map) => {
                if let Some(id) = map.get("id").filter(|v| !v.is_null()) {
                    match id {
                        Value::Number(_) => Self::from_json(id),
                        Value::String(s) => s.parse().map(EntityRef::Id).map_err(|_| {
                            Error::InvalidInput(format!("id {s:?} is not an integer"))
                        }),
                        other => Err(Error::InvalidInput(format!("bad id {other}"))),
                    }
                } else if let Some(Value::String(x)) = map.get("externalId") {
                    Ok(EntityRef::ExternalId(x.clone()))
                } else {
                    Err(Error::InvalidInput(format!(
                        "identifier object needs `id` or `externalId`: {v}"
                    )))
                }
            }
            other => Err(Error::InvalidInput(format!(
                "cannot read an entity identifier from {other}"
            ))),
        }
    }
}

impl From<i64> for EntityRef {
    fn from(id: i64) -> Self {
        EntityRef::Id(id)
    }
}

impl From<&str> for EntityRef {
    fn from(x: &str) -> Self {
        EntityRef::ExternalId(x.to_string())
    }
}

/// retailCRM's `pagination` block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Page size.
    pub limit: u32,
    /// Total matching entries.
    pub total_count: u64,
    /// This page (1-based).
    pub current_page: u32,
    /// Number of pages.
    pub total_page_count: u32,
}

impl Pagination {
    /// True when pages after this one exist.
    pub fn has_more(&self) -> bool {
        self.current_page < self.total_page_count
    }
}

/// Which page to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page.
    pub page: u32,
    /// 20, 50 or 100.
    pub limit: u32,
}

impl PageRequest {
    /// Page `page` of size `limit`.
    pub fn new(page: u32, limit: u32) -> Self {
        Self { page, limit }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            limit: 100,
        }
    }
}

/// One page of a list (its entities as JSON, or as engine values for lists the rules
/// evaluate).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page<T = Value> {
    /// The entities of this page.
    pub items: Vec<T>,
    /// The `pagination` block (absent on some endpoints: then a single page is assumed).
    pub pagination: Pagination,
}

/// The answer to a create or edit: `{"success":true,"id":N, ...}`.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteResult {
    /// The entity's CRM id, when the answer carried one.
    pub id: Option<i64>,
    /// The whole answer (orders/create and edit also return the `order`).
    pub raw: Value,
}

impl WriteResult {
    pub(crate) fn from_body(raw: Value) -> Self {
        Self {
            id: raw.get("id").and_then(Value::as_i64),
            raw,
        }
    }
}

/// `apiKey` of a history entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryApiKey {
    /// True when the change was made with the key that is reading the history.
    #[serde(default)]
    pub current: bool,
}

/// One record of `orders/history`, `customers/history` or `customers-corporate/history`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The record id: the cursor.
    pub id: i64,
    /// When the change happened (`Y-m-d H:i:s`, account time).
    #[serde(default)]
    pub created_at: Option<String>,
    /// True on the record that created the entity (the entity is then a full snapshot).
    #[serde(default, skip_serializing_if = "is_false")]
    pub created: bool,
    /// True when the entity was deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// Who changed it: `user`, `api`, `code`, ...
    #[serde(default)]
    pub source: Option<String>,
    /// `{"id": N}` for `source: user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Value>,
    /// The changed field code (`status`, `order_product.status`, `payments.amount`, ...).
    #[serde(default)]
    pub field: Option<String>,
    /// For `source: api`: whether the change was made with our key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<HistoryApiKey>,
    /// Value before the change.
    #[serde(default)]
    pub old_value: Value,
    /// Value after the change.
    #[serde(default)]
    pub new_value: Value,
    /// Everything else: `order` / `customer` (stub or snapshot), `item`, `payment`,
    /// `address`, `company`, `customerContact`, ...
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl HistoryEntry {
    /// True when the change was made through the API with the reading key: our own echo.
    pub fn is_own_change(&self) -> bool {
        self.source.as_deref() == Some("api") && self.api_key.as_ref().is_some_and(|k| k.current)
    }

    /// The entity stub or snapshot (`order` or `customer`).
    pub fn entity(&self) -> Option<&Value> {
        self.rest.get("order").or_else(|| self.rest.get("customer"))
    }

    /// The id of the changed entity.
    pub fn entity_id(&self) -> Option<i64> {
        self.entity()?.get("id")?.as_i64()
    }

    /// The code inside a `{"code": …}` new value (statuses and other reference fields).
    pub fn new_code(&self) -> Option<&str> {
        self.new_value.get("code")?.as_str()
    }
}

/// A history page.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryPage {
    /// Records, ascending by id.
    pub history: Vec<HistoryEntry>,
    /// Paging of this request.
    pub pagination: Pagination,
    /// Server time of the snapshot.
    pub generated_at: Option<String>,
}

/// One status an order has held, read from its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    /// History record id.
    pub history_id: i64,
    /// When.
    pub at: Option<String>,
    /// The status code the order entered.
    pub status: String,
    /// The status it left (`None` on creation).
    pub previous: Option<String>,
    /// `user`, `api`, `code`, ...
    pub source: Option<String>,
}

/// A store row of a stock upload: `available` is the quantity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryStore {
    /// Store code (`/reference/stores`).
    pub code: String,
    /// Quantity available in this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<f64>,
    /// Purchase price in this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_price: Option<f64>,
}

/// One offer of `store/inventories/upload`, identified by `id`, `externalId` or `xmlId`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryOffer {
    /// CRM offer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Offer `externalId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Offer `xmlId` (МойСклад: `product#variant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml_id: Option<String>,
    /// Per-store stock and purchase price.
    pub stores: Vec<InventoryStore>,
}

/// What a (batched) stock upload did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InventoryUploadReport {
    /// HTTP requests sent.
    pub requests: usize,
    /// Sum of `processedOffersCount`.
    pub processed_offers: u64,
    /// Every `notFoundOffers` entry.
    pub not_found: Vec<Value>,
}

/// `GET /api/credentials`: what our key may do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Scopes such as `order_read`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Allowed method paths (older keys).
    #[serde(default)]
    pub credentials: Vec<String>,
    /// `access_full` or `access_selective`.
    #[serde(default)]
    pub site_access: Option<String>,
    /// Sites the key sees when access is selective.
    #[serde(default)]
    pub sites_available: Vec<String>,
}

impl Credentials {
    /// True when the key has `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entity_refs_read_from_effect_ids() {
        assert_eq!(EntityRef::from_json(&json!(7)).ok(), Some(EntityRef::Id(7)));
        assert_eq!(
            EntityRef::from_json(&json!("A-1")).ok(),
            Some(EntityRef::ExternalId("A-1".into()))
        );
        assert_eq!(
            EntityRef::from_json(&json!({"id": "12"})).ok(),
            Some(EntityRef::Id(12))
        );
        assert_eq!(
            EntityRef::from_json(&json!({"externalId": "x"})).ok(),
            Some(EntityRef::ExternalId("x".into()))
        );
        assert!(EntityRef::from_json(&json!(1.5)).is_err());
        assert!(EntityRef::from_json(&json!({})).is_err());
        assert!(EntityRef::from_json(&json!("")).is_err());
    }
}
