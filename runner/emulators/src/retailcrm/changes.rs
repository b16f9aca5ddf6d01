//! Turning a before/after pair of an order into history records, with the field codes,
//! value shapes (`{code}`, `{id}`, plain) and stubs (`order`, `item`, `payment`) retailCRM's
//! history uses.

use serde_json::{json, Map, Value};

use super::model::{next, Actor, HistoryRecord, State};

/// One changed field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Change {
    pub field: String,
    pub old: Value,
    pub new: Value,
    pub extra: Map<String, Value>,
}

impl Change {
    pub fn new(field: impl Into<String>, old: Value, new: Value) -> Self {
        Self {
            field: field.into(),
            old,
            new,
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

/// How a field's value is shown in history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// As is.
    Plain,
    /// `{"code": v}` (reference fields).
    Code,
    /// `{"id": v}` (links to users).
    Id,
}

pub(crate) fn shaped(v: Option<&Value>, shape: Shape) -> Value {
    match (v, shape) {
        (None | Some(Value::Null), _) => Value::Null,
        (Some(v), Shape::Plain) => v.clone(),
        (Some(v), Shape::Code) => json!({ "code": v }),
        (Some(v), Shape::Id) => json!({ "id": v }),
    }
}

/// Fields of an order that are derived or structural and never diffed as scalars.
const ORDER_SKIP: &[&str] = &[
    "id",
    "slug",
    "summ",
    "totalSumm",
    "prepaySum",
    "purchaseSumm",
    "statusUpdatedAt",
    "markDatetime",
    "bonusesCreditTotal",
    "bonusesChargeTotal",
    "items",
    "payments",
    "delivery",
    "customFields",
    "contragent",
    "customer",
    "contact",
    "company",
    "fromApi",
    "currency",
    "privilegeType",
    "call",
    "expired",
    "weight",
    "length",
    "width",
    "height",
    "statusComment",
];

fn order_field(key: &str) -> (String, Shape) {
    match key {
        "status" => ("status".into(), Shape::Code),
        "orderType" => ("order_type".into(), Shape::Code),
        "orderMethod" => ("order_method".into(), Shape::Code),
        "shipmentStore" => ("shipment_store".into(), Shape::Code),
        "site" => ("site".into(), Shape::Code),
        "managerId" => ("manager".into(), Shape::Id),
        "countryIso" => ("country".into(), Shape::Plain),
        other => (super::model::snake(other), Shape::Plain),
    }
}

fn obj(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    }
}

fn keys_of<'a>(a: &'a Map<String, Value>, b: &'a Map<String, Value>) -> Vec<&'a String> {
    let mut keys: Vec<&String> = a.keys().collect();
    for k in b.keys() {
        if !a.contains_key(k) {
            keys.push(k);
        }
    }
    keys
}

fn differs(a: Option<&Value>, b: Option<&Value>) -> bool {
    let norm = |v: Option<&Value>| match v {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.clone()),
    };
    match (norm(a), norm(b)) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() != y.as_f64(),
        (x, y) => x != y,
    }
}

/// `{id, offer: {id, externalId, xmlId}}` of an item.
pub(crate) fn item_stub(item: &Value) -> Value {
    let mut m = Map::new();
    if let Some(id) = item.get("id") {
        m.insert("id".into(), id.clone());
    }
    if let Some(offer) = item.get("offer") {
        let mut o = Map::new();
        for k in ["id", "externalId", "xmlId"] {
            if let Some(v) = offer.get(k).filter(|v| !v.is_null()) {
                o.insert(k.into(), v.clone());
            }
        }
        m.insert("offer".into(), Value::Object(o));
    }
    Value::Object(m)
}

/// `{id, type, externalId}` of a payment (field changes).
pub(crate) fn payment_stub(p: &Value) -> Value {
    let mut m = Map::new();
    for k in ["id", "type", "externalId"] {
        if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
            m.insert(k.into(), v.clone());
        }
    }
    Value::Object(m)
}

/// `{id, status, type, amount}` of a payment (added / removed).
fn payment_full_stub(p: &Value) -> Value {
    let mut m = Map::new();
    for k in ["id", "status", "type", "externalId", "amount"] {
        if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
            m.insert(k.into(), v.clone());
        }
    }
    Value::Object(m)
}

/// `{id, externalId, managerId, site, status}` of an order (non-created records).
pub(crate) fn order_stub(o: &Value) -> Value {
    let mut m = Map::new();
    for k in ["id", "externalId", "managerId", "site", "status"] {
        if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
            m.insert(k.into(), v.clone());
        }
    }
    Value::Object(m)
}

const ITEM_FIELDS: &[(&str, &str, Shape)] = &[
    ("quantity", "quantity", Shape::Plain),
    ("initialPrice", "initial_price", Shape::Plain),
    ("status", "status", Shape::Code),
    (
        "discountManualAmount",
        "discount_manual_amount",
        Shape::Plain,
    ),
    (
        "discountManualPercent",
        "discount_manual_percent",
        Shape::Plain,
    ),
    ("discountTotal", "discount_total", Shape::Plain),
    ("purchasePrice", "purchase_price", Shape::Plain),
    ("vatRate", "vat_rate", Shape::Plain),
    ("comment", "comment", Shape::Plain),
    ("priceType", "price_type", Shape::Plain),
];

const PAYMENT_FIELDS: &[(&str, &str, Shape)] = &[
    ("status", "status", Shape::Code),
    ("type", "type", Shape::Code),
    ("amount", "amount", Shape::Plain),
    ("paidAt", "paid_at", Shape::Plain),
    ("comment", "comment", Shape::Plain),
    ("externalId", "external_id", Shape::Plain),
];

fn by_id(list: Option<&Value>) -> Vec<(i64, Value)> {
    match list {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| Some((v.get("id")?.as_i64()?, v.clone())))
            .collect(),
        _ => Vec::new(),
    }
}

fn link_value(o: &Map<String, Value>, key: &str) -> Option<Value> {
    let link = o.get(key)?;
    let id = link.get("id")?.clone();
    let mut m = Map::new();
    m.insert("id".into(), id);
    if let Some(site) = link.get("site").filter(|v| !v.is_null()) {
        m.insert("site".into(), site.clone());
    }
    Some(Value::Object(m))
}

/// Every change between two internal forms of one order.
pub(crate) fn diff_order(before: &Value, after: &Value) -> Vec<Change> {
    let b = obj(Some(before));
    let a = obj(Some(after));
    let mut out = Vec::new();

    for key in keys_of(&b, &a) {
        if ORDER_SKIP.contains(&key.as_str()) || !differs(b.get(key), a.get(key)) {
            continue;
        }
        let (field, shape) = order_field(key);
        out.push(Change::new(
            field,
            shaped(b.get(key), shape),
            shaped(a.get(key), shape),
        ));
    }

    for key in ["customer", "contact", "company"] {
        let (old, new) = (link_value(&b, key), link_value(&a, key));
        let old_id = old.as_ref().and_then(|v| v.get("id").cloned());
        let new_id = new.as_ref().and_then(|v| v.get("id").cloned());
        if old_id != new_id {
            out.push(Change::new(
                key,
                old.unwrap_or(Value::Null),
                new.unwrap_or(Value::Null),
            ));
        }
    }

    let (bd, ad) = (obj(b.get("delivery")), obj(a.get("delivery")));
    for key in keys_of(&bd, &ad) {
        match key.as_str() {
            "address" | "data" => {
                let prefix = if key == "address" {
                    "delivery_address"
                } else {
                    "integration_delivery_data"
                };
                let (x, y) = (obj(bd.get(key)), obj(ad.get(key)));
                for k in keys_of(&x, &y) {
                    if k != "id" && differs(x.get(k), y.get(k)) {
                        out.push(Change::new(
                            format!("{prefix}.{}", super::model::snake(k)),
                            shaped(x.get(k), Shape::Plain),
                            shaped(y.get(k), Shape::Plain),
                        ));
                    }
                }
            }
            _ if differs(bd.get(key), ad.get(key)) => {
                let (field, shape) = match key.as_str() {
                    "code" => ("delivery_type".to_string(), Shape::Code),
                    "cost" => ("delivery_cost".to_string(), Shape::Plain),
                    "netCost" => ("delivery_net_cost".to_string(), Shape::Plain),
                    "date" => ("delivery_date".to_string(), Shape::Plain),
                    "time" => ("delivery_time".to_string(), Shape::Plain),
                    "service" => ("delivery_service".to_string(), Shape::Plain),
                    other => (
                        format!("delivery_{}", super::model::snake(other)),
                        Shape::Plain,
                    ),
                };
                out.push(Change::new(
                    field,
                    shaped(bd.get(key), shape),
                    shaped(ad.get(key), shape),
                ));
            }
            _ => {}
        }
    }

    for (container, prefix) in [("customFields", "custom_"), ("contragent", "contragent.")] {
        let (x, y) = (obj(b.get(container)), obj(a.get(container)));
        for k in keys_of(&x, &y) {
            if differs(x.get(k), y.get(k)) {
                let name = if container == "customFields" {
                    format!("{prefix}{k}")
                } else {
                    format!("{prefix}{}", super::model::snake(k))
                };
                out.push(Change::new(
                    name,
                    shaped(x.get(k), Shape::Plain),
                    shaped(y.get(k), Shape::Plain),
                ));
            }
        }
    }

    let (bi, ai) = (by_id(b.get("items")), by_id(a.get("items")));
    for (id, item) in &bi {
        if !ai.iter().any(|(x, _)| x == id) {
            let stub = item_stub(item);
            out.push(Change::new("order_product", stub.clone(), Value::Null).with("item", stub));
        }
    }
    for (id, item) in &ai {
        match bi.iter().find(|(x, _)| x == id) {
            None => {
                let stub = item_stub(item);
                out.push(
                    Change::new("order_product", Value::Null, stub.clone()).with("item", stub),
                );
            }
            Some((_, old)) => {
                for (key, code, shape) in ITEM_FIELDS {
                    if differs(old.get(*key), item.get(*key)) {
                        out.push(
                            Change::new(
                                format!("order_product.{code}"),
                                shaped(old.get(*key), *shape),
                                shaped(item.get(*key), *shape),
                            )
                            .with("item", item_stub(item)),
                        );
                    }
                }
            }
        }
    }

    let (bp, ap) = (by_id(b.get("payments")), by_id(a.get("payments")));
    for (id, p) in &bp {
        if !ap.iter().any(|(x, _)| x == id) {
            out.push(
                Change::new(
                    "payments",
                    json!({"id": id, "type": p.get("type")}),
                    Value::Null,
                )
                .with("payment", payment_full_stub(p)),
            );
        }
    }
    for (id, p) in &ap {
        match bp.iter().find(|(x, _)| x == id) {
            None => out.push(
                Change::new(
                    "payments",
                    Value::Null,
                    json!({"id": id, "type": p.get("type")}),
                )
                .with("payment", payment_full_stub(p)),
            ),
            Some((_, old)) => {
                for (key, code, shape) in PAYMENT_FIELDS {
                    if differs(old.get(*key), p.get(*key)) {
                        out.push(
                            Change::new(
                                format!("payments.{code}"),
                                shaped(old.get(*key), *shape),
                                shaped(p.get(*key), *shape),
                            )
                            .with("payment", payment_stub(p)),
                        );
                    }
                }
            }
        }
    }

    for key in ["fullPaidAt"] {
        // Derived, but retailCRM records it (fixture: `full_paid_at` set with a payment).
        if differs(b.get(key), a.get(key)) {
            out.push(Change::new(
                "full_paid_at",
                shaped(b.get(key), Shape::Plain),
                shaped(a.get(key), Shape::Plain),
            ));
        }
    }
    out
}

/// Which history feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feed {
    Orders,
    Customers,
    Corporate,
}

/// Whether records mark a creation or a deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Ordinary change.
    Change,
    /// `created: true`.
    Created,
    /// `deleted: true`.
    Deleted,
}

/// Appends records to a feed. `entity` is the stub (or, for `created`/`deleted`, the
/// snapshot) shown under `order` / `customer`.
pub(crate) fn record(
    st: &mut State,
    feed: Feed,
    actor: &Actor,
    now: &str,
    entity: &Value,
    changes: Vec<Change>,
    mark: Mark,
) {
    let created = mark == Mark::Created;
    let deleted = mark == Mark::Deleted;
    let entity_id = entity.get("id").and_then(Value::as_i64).unwrap_or(0);
    let entity_external_id = entity
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_string);
    for c in changes {
        let seq = match feed {
            Feed::Orders => &mut st.seq.order_history,
            Feed::Customers => &mut st.seq.customer_history,
            Feed::Corporate => &mut st.seq.corporate_history,
        };
        let id = next(seq);
        let rec = HistoryRecord {
            id,
            created_at: now.to_string(),
            created,
            deleted,
            source: actor.source().to_string(),
            user_id: match actor {
                Actor::User(u) => Some(*u),
                _ => None,
            },
            api_key: match actor {
                Actor::Api(k) => Some(k.clone()),
                _ => None,
            },
            field: c.field,
            old_value: c.old,
            new_value: c.new,
            entity_id,
            entity_external_id: entity_external_id.clone(),
            entity: entity.clone(),
            extra: c.extra,
        };
        match feed {
            Feed::Orders => st.order_history.push(rec),
            Feed::Customers => st.customer_history.push(rec),
            Feed::Corporate => st.corporate_history.push(rec),
        }
    }
}

/// A record as the API shows it to the holder of `reader_key`.
pub(crate) fn render_record(
    rec: &HistoryRecord,
    entity_key: &str,
    reader_key: Option<&str>,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(rec.id));
    m.insert("createdAt".into(), json!(rec.created_at));
    if rec.created {
        m.insert("created".into(), json!(true));
    }
    if rec.deleted {
        m.insert("deleted".into(), json!(true));
    }
    m.insert("source".into(), json!(rec.source));
    if let Some(u) = rec.user_id {
        m.insert("user".into(), json!({ "id": u }));
    }
    m.insert("field".into(), json!(rec.field));
    if let Some(k) = &rec.api_key {
        m.insert(
            "apiKey".into(),
            json!({ "current": reader_key == Some(k.as_str()) }),
        );
    }
    m.insert("oldValue".into(), rec.old_value.clone());
    m.insert("newValue".into(), rec.new_value.clone());
    m.insert(entity_key.into(), rec.entity.clone());
    for (k, v) in &rec.extra {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_item_and_payment_changes_use_history_shapes() {
        let before = json!({
            "id": 1, "status": "new", "managerId": 5,
            "items": [{"id": 10, "quantity": 1, "status": "new", "offer": {"id": 3, "xmlId": "p#v"}}],
            "payments": [{"id": 7, "type": "cash", "status": "not-paid", "amount": 100}],
            "delivery": {"code": "courier", "address": {"city": "A"}},
            "customFields": {"ms_id": "x"}
        });
        let after = json!({
            "id": 1, "status": "assembling", "managerId": 6,
            "items": [{"id": 10, "quantity": 2, "status": "new", "offer": {"id": 3, "xmlId": "p#v"}},
                      {"id": 11, "quantity": 1, "offer": {"id": 4}}],
            "payments": [{"id": 7, "type": "cash", "status": "paid", "amount": 100}],
            "delivery": {"code": "pickup", "address": {"city": "B"}},
            "customFields": {}
        });
        let changes = diff_order(&before, &after);
        let find = |f: &str| changes.iter().find(|c| c.field == f).cloned();
        let status = find("status").expect("status change");
        assert_eq!(status.old, json!({"code": "new"}));
        assert_eq!(status.new, json!({"code": "assembling"}));
        assert_eq!(find("manager").map(|c| c.new), Some(json!({"id": 6})));
        let qty = find("order_product.quantity").expect("quantity change");
        assert_eq!(
            qty.extra["item"],
            json!({"id": 10, "offer": {"id": 3, "xmlId": "p#v"}})
        );
        assert_eq!(find("order_product").map(|c| c.old), Some(Value::Null));
        assert_eq!(
            find("payments.status").map(|c| c.new),
            Some(json!({"code": "paid"}))
        );
        assert_eq!(
            find("delivery_type").map(|c| c.new),
            Some(json!({"code": "pickup"}))
        );
        assert_eq!(
            find("delivery_address.city").map(|c| c.new),
            Some(json!("B"))
        );
        assert_eq!(find("custom_ms_id").map(|c| c.new), Some(Value::Null));
        assert_eq!(changes.len(), 8, "{changes:#?}");
    }
}
