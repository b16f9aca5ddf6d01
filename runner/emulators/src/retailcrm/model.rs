//! The emulator's state: reference books, catalog, customers, orders, tasks, the three history
//! feeds and the id sequences. All of it serializes to JSON, so a standalone emulator can be
//! saved and loaded.

use chrono::{Duration as ChronoDuration, NaiveDateTime, Utc};
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Date-time format of the API (`Y-m-d H:i:s`).
pub const DATETIME: &str = "%Y-%m-%d %H:%M:%S";

/// Reference books, each keyed by code (stores and price types are arrays on the wire).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct References {
    /// `/reference/sites`.
    pub sites: IndexMap<String, Value>,
    /// `/reference/stores`.
    pub stores: IndexMap<String, Value>,
    /// `/reference/status-groups` (their `statuses` lists are derived from `statuses`).
    pub status_groups: IndexMap<String, Value>,
    /// `/reference/statuses` (each has a `group`).
    pub statuses: IndexMap<String, Value>,
    /// `/reference/product-statuses`.
    pub product_statuses: IndexMap<String, Value>,
    /// `/reference/payment-types`.
    pub payment_types: IndexMap<String, Value>,
    /// `/reference/payment-statuses`.
    pub payment_statuses: IndexMap<String, Value>,
    /// `/reference/delivery-types`.
    pub delivery_types: IndexMap<String, Value>,
    /// `/reference/order-types`.
    pub order_types: IndexMap<String, Value>,
    /// `/reference/order-methods`.
    pub order_methods: IndexMap<String, Value>,
    /// `/reference/price-types`.
    pub price_types: IndexMap<String, Value>,
}

/// Stock of an offer in one store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStock {
    /// Quantity available.
    pub quantity: f64,
    /// Purchase price in this store, when uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_price: Option<f64>,
}

/// A catalog offer (a product or one of its variants).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Offer {
    /// CRM offer id.
    pub id: i64,
    /// Offer `externalId` (ICML `offer@id`).
    pub external_id: Option<String>,
    /// Offer `xmlId` (МойСклад: `product#variant` for variants).
    pub xml_id: Option<String>,
    /// Offer name.
    pub name: String,
    /// Article.
    pub article: Option<String>,
    /// Site (catalog) code.
    pub site: String,
    /// Base price.
    pub price: f64,
    /// Offer-level purchase price (the last one uploaded).
    pub purchase_price: Option<f64>,
    /// VAT rate (`"none"` or a number as a string).
    pub vat_rate: Option<String>,
    /// Active flag.
    pub active: bool,
    /// Product: `{id, externalId, name, article, type}`.
    pub product: Value,
    /// Unit `{code, name, sym}`.
    pub unit: Option<Value>,
    /// Per-store stock.
    pub stores: IndexMap<String, StoreStock>,
}

impl Offer {
    /// Total quantity over all stores.
    pub fn quantity(&self) -> f64 {
        self.stores.values().map(|s| s.quantity).sum()
    }
}

/// One history record as the emulator keeps it; rendered per request (`apiKey.current`
/// depends on who reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRecord {
    /// Monotonic record id.
    pub id: i64,
    /// When (`Y-m-d H:i:s`).
    pub created_at: String,
    /// `created` flag.
    #[serde(default)]
    pub created: bool,
    /// `deleted` flag.
    #[serde(default)]
    pub deleted: bool,
    /// `api`, `user`, `code`.
    pub source: String,
    /// The user for `source: user`.
    #[serde(default)]
    pub user_id: Option<i64>,
    /// The key that made an API change (compared with the reading key).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Field code.
    pub field: String,
    /// Old value.
    pub old_value: Value,
    /// New value.
    pub new_value: Value,
    /// Id of the order / customer.
    pub entity_id: i64,
    /// Its externalId at the time.
    #[serde(default)]
    pub entity_external_id: Option<String>,
    /// Stub or snapshot under `order` / `customer`.
    pub entity: Value,
    /// `item`, `payment`, `address`, `company`, `customerContact`.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

/// Id sequences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Sequences {
    /// Orders.
    pub order: i64,
    /// Order items.
    pub item: i64,
    /// Payments.
    pub payment: i64,
    /// Customers and corporate customers (one id space, as in retailCRM).
    pub customer: i64,
    /// Customer addresses.
    pub address: i64,
    /// Companies.
    pub company: i64,
    /// Corporate contacts.
    pub contact: i64,
    /// Contact-company links.
    pub contact_company: i64,
    /// Tasks.
    pub task: i64,
    /// Offers.
    pub offer: i64,
    /// Products.
    pub product: i64,
    /// Order history.
    pub order_history: i64,
    /// Customer history.
    pub customer_history: i64,
    /// Corporate customer history.
    pub corporate_history: i64,
}

impl Default for Sequences {
    fn default() -> Self {
        Self {
            order: 1000,
            item: 5000,
            payment: 3000,
            customer: 4000,
            address: 2000,
            company: 700,
            contact: 900,
            contact_company: 100,
            task: 0,
            offer: 20000,
            product: 10000,
            order_history: 7000,
            customer_history: 2600,
            corporate_history: 4200,
        }
    }
}

/// Takes the next id of a sequence.
pub(crate) fn next(seq: &mut i64) -> i64 {
    *seq += 1;
    *seq
}

/// The emulator's clock: the system's local time, or a fixed start that moves one step per
/// change (deterministic demos and snapshots).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Clock {
    /// The system clock, told in the account's time zone.
    #[default]
    System,
    /// Starts at `now` and advances by `stepSeconds` on every tick.
    Fixed {
        /// The current time (`Y-m-d H:i:s`).
        now: String,
        /// Seconds added per tick.
        step_seconds: i64,
    },
}

impl Clock {
    /// A fixed clock starting at `start` (`Y-m-d H:i:s`), one second per tick.
    pub fn fixed(start: &str) -> Self {
        Clock::Fixed {
            now: start.to_string(),
            step_seconds: 1,
        }
    }

    /// The time of a new change, in `zone` (the account's time zone).
    pub(crate) fn tick_in(&mut self, zone: Tz) -> String {
        match self {
            Clock::System => Utc::now()
                .with_timezone(&zone)
                .naive_local()
                .format(DATETIME)
                .to_string(),
            Clock::Fixed { now, step_seconds } => {
                let current = now.clone();
                if let Ok(t) = NaiveDateTime::parse_from_str(now, DATETIME) {
                    *now = (t + ChronoDuration::seconds(*step_seconds))
                        .format(DATETIME)
                        .to_string();
                }
                current
            }
        }
    }
}

/// Everything the emulated account holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct State {
    /// Reference books.
    pub references: References,
    /// Users (`/users`).
    pub users: Vec<Value>,
    /// Custom field definitions (`/custom-fields`).
    pub custom_fields: Vec<Value>,
    /// Custom dictionaries.
    pub custom_dictionaries: Vec<Value>,
    /// Catalog.
    pub offers: Vec<Offer>,
    /// Individual customers (internal form).
    pub customers: Vec<Value>,
    /// Corporate customers (internal form, with `customerContacts`, `companies`, `addresses`).
    pub corporate: Vec<Value>,
    /// Orders (internal form: `customer` is a link, `payments` an array).
    pub orders: Vec<Value>,
    /// Tasks.
    pub tasks: Vec<Value>,
    /// `orders/history`.
    pub order_history: Vec<HistoryRecord>,
    /// `customers/history`.
    pub customer_history: Vec<HistoryRecord>,
    /// `customers-corporate/history`.
    pub corporate_history: Vec<HistoryRecord>,
    /// Id sequences.
    pub seq: Sequences,
    /// Clock.
    pub clock: Clock,
    /// The account's time zone (`/settings` → `timezone`); set by the emulator from its
    /// configuration, not part of a state dump.
    #[serde(skip)]
    pub timezone: Option<Tz>,
}

/// The zone retailCRM accounts in the sample shop's region keep their times in.
pub const DEFAULT_TIMEZONE: &str = "Asia/Yekaterinburg";

impl State {
    /// The time of a new change: the account's wall-clock time (no zone in the text).
    pub(crate) fn tick(&mut self) -> String {
        let zone = self.zone();
        self.clock.tick_in(zone)
    }

    /// The current time without advancing a fixed clock.
    pub(crate) fn peek_now(&self) -> String {
        self.clock.clone().tick_in(self.zone())
    }

    fn zone(&self) -> Tz {
        self.timezone.unwrap_or(chrono_tz::Asia::Yekaterinburg)
    }
}

/// Who makes a change: decides the history's `source`, `user` and `apiKey.current`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// An API call made with this key (`source: api`).
    Api(String),
    /// A CRM user working in the interface (`source: user`, `user: {id}`).
    User(i64),
    /// The CRM's own automation (`source: code`).
    Code,
}

impl Actor {
    pub(crate) fn source(&self) -> &'static str {
        match self {
            Actor::Api(_) => "api",
            Actor::User(_) => "user",
            Actor::Code => "code",
        }
    }
}

/// A refusal in retailCRM's shape: HTTP status, `errorMsg`, optional `errors`.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// HTTP status.
    pub status: u16,
    /// `errorMsg`.
    pub message: String,
    /// `errors` (object or array), if any.
    pub errors: Option<Value>,
}

impl Failure {
    /// Any status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: None,
        }
    }

    /// 404 `Not found`.
    pub fn not_found() -> Self {
        Self::new(404, "Not found")
    }

    /// 400 `Errors in the entity format` with `errors: {field: message}`.
    pub fn entity(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Map::new();
        errors.insert(field.to_string(), Value::String(message.into()));
        Self {
            status: 400,
            message: "Errors in the entity format".into(),
            errors: Some(Value::Object(errors)),
        }
    }

    /// 400 `Errors in the input parameters` with `errors: {field: message}`.
    pub fn input(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Map::new();
        errors.insert(field.to_string(), Value::String(message.into()));
        Self {
            status: 400,
            message: "Errors in the input parameters".into(),
            errors: Some(Value::Object(errors)),
        }
    }

    /// 400 `Parameter 'name' is missing`.
    pub fn missing(name: &str) -> Self {
        Self::new(400, format!("Parameter '{name}' is missing"))
    }

    /// Adds `errors`.
    pub fn with_errors(mut self, errors: Value) -> Self {
        self.errors = Some(errors);
        self
    }

    /// The response body.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("success".into(), Value::Bool(false));
        m.insert("errorMsg".into(), Value::String(self.message.clone()));
        if let Some(e) = &self.errors {
            m.insert("errors".into(), e.clone());
        }
        Value::Object(m)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.message)?;
        if let Some(e) = &self.errors {
            write!(f, " {e}")?;
        }
        Ok(())
    }
}

/// A JSON number from a float: integral values print without `.0`, as retailCRM does.
pub(crate) fn num(x: f64) -> Value {
    let r = (x * 100.0).round() / 100.0;
    if r.fract() == 0.0 && r.abs() < 9.0e15 {
        // Integral and well inside i64: the cast is exact.
        Value::from(r as i64)
    } else {
        serde_json::Number::from_f64(r)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// A float out of a JSON number or numeric string.
pub(crate) fn as_f64(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An integer out of a JSON number or numeric string.
pub(crate) fn as_i64(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A string out of a JSON string or number.
pub(crate) fn as_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `shipmentStore` -> `shipment_store`, `INN` -> `i_n_n` (the API's own quirk).
pub(crate) fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Rebuilds `map` with the keys of `order` first (in that order), then the rest.
pub(crate) fn ordered(map: Map<String, Value>, order: &[&str]) -> Map<String, Value> {
    let mut rest = map;
    let mut out = Map::new();
    for k in order {
        if let Some(v) = rest.remove(*k) {
            out.insert((*k).to_string(), v);
        }
    }
    for (k, v) in rest {
        out.insert(k, v);
    }
    out
}

/// Merges `patch` into `target` recursively for objects; `null` removes a key.
pub(crate) fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match (target.get_mut(k), v) {
            (_, Value::Null) => {
                target.remove(k);
            }
            (Some(Value::Object(t)), Value::Object(p)) => merge(t, p),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_render_like_the_api() {
        assert_eq!(num(1000.0), json!(1000));
        assert_eq!(num(30470.4), json!(30470.4));
        assert_eq!(num(0.1 + 0.2), json!(0.3));
    }

    #[test]
    fn snake_case_matches_history_codes() {
        assert_eq!(snake("shipmentStore"), "shipment_store");
        assert_eq!(snake("INN"), "i_n_n");
        assert_eq!(snake("status"), "status");
    }

    #[test]
    fn fixed_clock_advances() {
        let mut c = Clock::fixed("2025-03-01 10:00:00");
        assert_eq!(c.tick_in(chrono_tz::UTC), "2025-03-01 10:00:00");
        assert_eq!(c.tick_in(chrono_tz::UTC), "2025-03-01 10:00:01");
    }
}
