//! Catalog and stock (`store/*`), reference books, users, custom fields and tasks.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::model::{as_f64, as_i64, as_string, next, num, Failure, Offer, State};
use super::orders::{check_filters, find_order, user_exists};
use super::params::strings;

/// A reference book as the API returns it, or `None` for an unknown book.
pub(crate) fn reference(st: &State, book: &str) -> Option<(&'static str, Value)> {
    let r = &st.references;
    let map = |m: &indexmap::IndexMap<String, Value>| {
        Value::Object(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    };
    let arr = |m: &indexmap::IndexMap<String, Value>| Value::Array(m.values().cloned().collect());
    Some(match book {
        "statuses" => ("statuses", map(&r.statuses)),
        "status-groups" => {
            let mut groups = Map::new();
            for (code, g) in &r.status_groups {
                let mut g = g.as_object().cloned().unwrap_or_default();
                let mut members: Vec<(&String, i64)> = r
                    .statuses
                    .iter()
                    .filter(|(_, s)| s.get("group").and_then(Value::as_str) == Some(code.as_str()))
                    .map(|(c, s)| (c, as_i64(s.get("ordering")).unwrap_or(0)))
                    .collect();
                members.sort_by_key(|(_, o)| *o);
                g.insert(
                    "statuses".into(),
                    Value::Array(members.into_iter().map(|(c, _)| json!(c)).collect()),
                );
                groups.insert(code.clone(), Value::Object(g));
            }
            ("statusGroups", Value::Object(groups))
        }
        "product-statuses" => ("productStatuses", map(&r.product_statuses)),
        "stores" => ("stores", arr(&r.stores)),
        "sites" => ("sites", map(&r.sites)),
        "delivery-types" => ("deliveryTypes", map(&r.delivery_types)),
        "payment-types" => ("paymentTypes", map(&r.payment_types)),
        "payment-statuses" => ("paymentStatuses", map(&r.payment_statuses)),
        "order-types" => ("orderTypes", map(&r.order_types)),
        "order-methods" => ("orderMethods", map(&r.order_methods)),
        "price-types" => ("priceTypes", arr(&r.price_types)),
        _ => return None,
    })
}

fn offer_ids(o: &super::model::Offer) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(o.id));
    if let Some(x) = &o.external_id {
        m.insert("externalId".into(), json!(x));
    }
    if let Some(x) = &o.xml_id {
        m.insert("xmlId".into(), json!(x));
    }
    Value::Object(m)
}

/// One store row of an upload: store code, quantity, purchase price.
type StoreRow = (String, Option<f64>, Option<f64>);

/// `store/inventories/upload`: validates the whole batch, then applies it.
pub(crate) fn upload_inventories(
    st: &mut State,
    offers: &Value,
    max_batch: usize,
) -> Result<Value, Failure> {
    let Value::Array(list) = offers else {
        return Err(Failure::input(
            "offers",
            "This value should be of type array.",
        ));
    };
    if list.is_empty() {
        return Err(Failure::input(
            "offers",
            "This collection should contain 1 element or more.",
        ));
    }
    if list.len() > max_batch {
        return Err(Failure::input(
            "offers",
            format!("This collection should contain {max_batch} elements or less."),
        ));
    }
    // Offers by id, externalId and xmlId (the first offer of each), built once per batch.
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    let mut by_external: HashMap<&str, usize> = HashMap::new();
    let mut by_xml: HashMap<&str, usize> = HashMap::new();
    for (i, x) in st.offers.iter().enumerate() {
        by_id.entry(x.id).or_insert(i);
        if let Some(e) = x.external_id.as_deref() {
            by_external.entry(e).or_insert(i);
        }
        if let Some(e) = x.xml_id.as_deref() {
            by_xml.entry(e).or_insert(i);
        }
    }
    let mut plan: Vec<(usize, Vec<StoreRow>)> = Vec::new();
    let mut not_found = Vec::new();
    for (i, o) in list.iter().enumerate() {
        let Some(stores) = o.get("stores").and_then(Value::as_array) else {
            return Err(Failure::entity(
                &format!("offers[{i}].stores"),
                "This value should not be blank.",
            ));
        };
        let mut rows = Vec::new();
        for (j, s) in stores.iter().enumerate() {
            let Some(code) = as_string(s.get("code")) else {
                return Err(Failure::entity(
                    &format!("offers[{i}].stores[{j}].code"),
                    "This value should not be blank.",
                ));
            };
            if !st.references.stores.contains_key(&code) {
                return Err(Failure::entity(
                    &format!("offers[{i}].stores[{j}].code"),
                    format!("Store with code \"{code}\" not found."),
                ));
            }
            rows.push((
                code,
                as_f64(s.get("available")),
                as_f64(s.get("purchasePrice")),
            ));
        }
        let pos = if let Some(id) = as_i64(o.get("id")) {
            by_id.get(&id).copied()
        } else if let Some(x) = as_string(o.get("externalId")) {
            by_external.get(x.as_str()).copied()
        } else if let Some(x) = as_string(o.get("xmlId")) {
            by_xml.get(x.as_str()).copied()
        } else {
            return Err(Failure::entity(
                &format!("offers[{i}]"),
                "Set one of the following fields: id, externalId, xmlId",
            ));
        };
        match pos {
            Some(p) => plan.push((p, rows)),
            None => {
                let mut nf = Map::new();
                for k in ["id", "externalId", "xmlId"] {
                    if let Some(v) = o.get(k) {
                        nf.insert(k.into(), v.clone());
                    }
                }
                not_found.push(Value::Object(nf));
            }
        }
    }
    let processed = plan.len();
    for (p, rows) in plan {
        let offer = &mut st.offers[p];
        for (code, available, price) in rows {
            let slot = offer.stores.entry(code).or_default();
            if let Some(a) = available {
                slot.quantity = a;
            }
            if let Some(pp) = price {
                slot.purchase_price = Some(pp);
                offer.purchase_price = Some(pp);
            }
        }
    }
    let mut body = json!({"success": true, "processedOffersCount": processed});
    if !not_found.is_empty() {
        body["notFoundOffers"] = Value::Array(not_found);
    }
    Ok(body)
}

const INVENTORY_FILTERS: &[&str] = &[
    "ids",
    "sites",
    "productExternalId",
    "offerExternalId",
    "offerXmlId",
    "offerActive",
    "details",
];

/// `GET store/inventories` rows.
pub(crate) fn inventories(st: &State, f: &Map<String, Value>) -> Result<Vec<Value>, Failure> {
    check_filters(f, INVENTORY_FILTERS)?;
    let details = f
        .get("details")
        .map(strings)
        .is_some_and(|v| v.iter().any(|x| x == "1" || x == "true"));
    let has = |key: &str, val: Option<&str>| match f.get(key) {
        None => true,
        Some(v) => val.is_some_and(|x| strings(v).iter().any(|w| w == x)),
    };
    let mut out = Vec::new();
    for o in st.offers.iter().rev() {
        let pext = o.product.get("externalId").and_then(Value::as_str);
        let active = if o.active { "1" } else { "0" };
        if !(has("ids", Some(&o.id.to_string()))
            && has("sites", Some(&o.site))
            && has("productExternalId", pext)
            && has("offerExternalId", o.external_id.as_deref())
            && has("offerXmlId", o.xml_id.as_deref())
            && has("offerActive", Some(active)))
        {
            continue;
        }
        let mut m = offer_ids(o).as_object().cloned().unwrap_or_default();
        m.insert("site".into(), json!(o.site));
        if let Some(pp) = o.purchase_price {
            m.insert("purchasePrice".into(), num(pp));
        }
        m.insert("quantity".into(), num(o.quantity()));
        if details {
            let rows: Vec<Value> = o
                .stores
                .iter()
                .map(|(code, s)| {
                    let mut r = Map::new();
                    r.insert("store".into(), json!(code));
                    r.insert("quantity".into(), num(s.quantity));
                    if let Some(pp) = s.purchase_price {
                        r.insert("purchasePrice".into(), num(pp));
                    }
                    Value::Object(r)
                })
                .collect();
            m.insert("stores".into(), Value::Array(rows));
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

fn render_offer(o: &super::model::Offer, with_product: bool) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(o.name));
    m.insert("id".into(), json!(o.id));
    if let Some(x) = &o.external_id {
        m.insert("externalId".into(), json!(x));
    }
    if let Some(x) = &o.xml_id {
        m.insert("xmlId".into(), json!(x));
    }
    if let Some(a) = &o.article {
        m.insert("article".into(), json!(a));
    }
    m.insert(
        "prices".into(),
        json!([{"priceType": "base", "price": num(o.price), "ordering": 991}]),
    );
    if let Some(pp) = o.purchase_price {
        m.insert("purchasePrice".into(), num(pp));
    }
    m.insert(
        "vatRate".into(),
        json!(o.vat_rate.clone().unwrap_or_else(|| "none".into())),
    );
    m.insert("properties".into(), json!([]));
    m.insert("quantity".into(), num(o.quantity()));
    m.insert("active".into(), json!(o.active));
    if let Some(u) = &o.unit {
        m.insert("unit".into(), u.clone());
    }
    if with_product {
        m.insert("product".into(), o.product.clone());
    }
    Value::Object(m)
}

const OFFER_FILTERS: &[&str] = &[
    "ids",
    "externalIds",
    "xmlIds",
    "name",
    "sites",
    "active",
    "sinceId",
];

/// `GET store/offers` rows of one page, and how many rows the filter keeps: only the page is
/// rendered (a catalogue of 100 000 offers read page by page stays linear).
pub(crate) fn offers_page(
    st: &State,
    f: &Map<String, Value>,
    skip: usize,
    take: usize,
) -> Result<(Vec<Value>, usize), Failure> {
    let all = offers_matching(st, f)?;
    let total = all.len();
    let rows = all
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|o| render_offer(o, true))
        .collect();
    Ok((rows, total))
}

fn offers_matching<'a>(st: &'a State, f: &Map<String, Value>) -> Result<Vec<&'a Offer>, Failure> {
    check_filters(f, OFFER_FILTERS)?;
    let has = |key: &str, val: Option<&str>| match f.get(key) {
        None => true,
        Some(v) => val.is_some_and(|x| strings(v).iter().any(|w| w == x)),
    };
    let since = as_i64(f.get("sinceId"));
    Ok(st
        .offers
        .iter()
        .filter(|o| {
            has("ids", Some(&o.id.to_string()))
                && has("externalIds", o.external_id.as_deref())
                && has("xmlIds", o.xml_id.as_deref())
                && has("sites", Some(&o.site))
                && has("active", Some(if o.active { "1" } else { "0" }))
                && since.is_none_or(|s| o.id > s)
                && f.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(|n| o.name.to_lowercase().contains(&n.to_lowercase()))
        })
        .collect())
}

const PRODUCT_FILTERS: &[&str] = &[
    "ids",
    "externalId",
    "xmlId",
    "offerExternalId",
    "offerXmlId",
    "sites",
    "active",
    "sinceId",
];

/// `GET store/products`: offers grouped by product.
pub(crate) fn products(st: &State, f: &Map<String, Value>) -> Result<Vec<Value>, Failure> {
    check_filters(f, PRODUCT_FILTERS)?;
    let mut groups: indexmap::IndexMap<i64, (Value, Vec<Value>, f64)> = indexmap::IndexMap::new();
    for o in &st.offers {
        let pid = as_i64(o.product.get("id")).unwrap_or(0);
        let entry = groups
            .entry(pid)
            .or_insert_with(|| (o.product.clone(), Vec::new(), 0.0));
        entry.1.push(render_offer(o, false));
        entry.2 += o.quantity();
    }
    let has = |key: &str, val: Option<String>| match f.get(key) {
        None => true,
        Some(v) => val.is_some_and(|x| strings(v).contains(&x)),
    };
    let since = as_i64(f.get("sinceId"));
    let mut out = Vec::new();
    for (pid, (product, offers, qty)) in groups {
        let offer_has = |key: &str, field: &str| match f.get(key) {
            None => true,
            Some(v) => {
                let want = strings(v);
                offers
                    .iter()
                    .any(|o| as_string(o.get(field)).is_some_and(|x| want.contains(&x)))
            }
        };
        let site = st
            .offers
            .iter()
            .find(|o| as_i64(o.product.get("id")) == Some(pid))
            .map(|o| o.site.clone());
        if !(has("ids", Some(pid.to_string()))
            && has("externalId", as_string(product.get("externalId")))
            && has("xmlId", as_string(product.get("xmlId")))
            && has("sites", site)
            && offer_has("offerExternalId", "externalId")
            && offer_has("offerXmlId", "xmlId")
            && since.is_none_or(|s| pid > s))
        {
            continue;
        }
        let mut m = product.as_object().cloned().unwrap_or_default();
        m.insert("offers".into(), Value::Array(offers));
        m.insert("quantity".into(), num(qty));
        out.push(Value::Object(m));
    }
    Ok(out)
}

const USER_FILTERS: &[&str] = &[
    "email",
    "status",
    "active",
    "isManager",
    "isAdmin",
    "groups",
];

/// `GET users`.
pub(crate) fn users(st: &State, f: &Map<String, Value>) -> Result<Vec<Value>, Failure> {
    check_filters(f, USER_FILTERS)?;
    let flag = |u: &Value, key: &str| match f.get(key) {
        None => true,
        Some(v) => {
            let want = strings(v).first().map(|s| s == "1" || s == "true");
            want == u.get(key).and_then(Value::as_bool)
        }
    };
    Ok(st
        .users
        .iter()
        .filter(|u| {
            f.get("email")
                .and_then(Value::as_str)
                .is_none_or(|e| u.get("email").and_then(Value::as_str) == Some(e))
                && f.get("status")
                    .and_then(Value::as_str)
                    .is_none_or(|s| u.get("status").and_then(Value::as_str) == Some(s))
                && flag(u, "active")
                && flag(u, "isManager")
                && flag(u, "isAdmin")
                && f.get("groups").is_none_or(|g| {
                    let want = strings(g);
                    u.get("groups").and_then(Value::as_array).is_some_and(|gs| {
                        gs.iter()
                            .any(|x| as_string(x.get("code")).is_some_and(|c| want.contains(&c)))
                    })
                })
        })
        .cloned()
        .collect())
}

/// `GET custom-fields`.
pub(crate) fn custom_fields(st: &State, f: &Map<String, Value>) -> Result<Vec<Value>, Failure> {
    check_filters(f, &["entity", "name", "code", "type", "displayArea"])?;
    Ok(st
        .custom_fields
        .iter()
        .filter(|c| {
            ["entity", "code", "type", "displayArea"].iter().all(|k| {
                f.get(*k)
                    .and_then(Value::as_str)
                    .is_none_or(|v| c.get(*k).and_then(Value::as_str) == Some(v))
            }) && f.get("name").and_then(Value::as_str).is_none_or(|n| {
                c.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|x| x.to_lowercase().contains(&n.to_lowercase()))
            })
        })
        .cloned()
        .collect())
}

/// `tasks/create`.
pub(crate) fn create_task(
    st: &mut State,
    task: &Value,
    site: Option<&str>,
) -> Result<i64, Failure> {
    let Value::Object(t) = task else {
        return Err(Failure::entity(
            "task",
            "This value should be of type object.",
        ));
    };
    if as_string(t.get("text")).is_none_or(|s| s.trim().is_empty()) {
        return Err(Failure::entity("text", "This value should not be blank."));
    }
    let performer = match t.get("performerId").filter(|v| !v.is_null()) {
        Some(p) => match as_i64(Some(p)) {
            Some(id) if user_exists(st, id) => Some(id),
            _ => {
                return Err(Failure::entity(
                    "performerId",
                    format!("User with id {p} not found."),
                ))
            }
        },
        None => None,
    };
    let order = match t.get("order").filter(|v| !v.is_null()) {
        Some(r) => {
            let idx = if let Some(id) = as_string(r.get("id")) {
                find_order(st, &id, true, None)
            } else if let Some(ext) = as_string(r.get("externalId")) {
                let s = r.get("site").and_then(Value::as_str).or(site);
                find_order(st, &ext, false, s)
            } else if let Some(n) = as_string(r.get("number")) {
                st.orders
                    .iter()
                    .position(|o| as_string(o.get("number")).as_deref() == Some(n.as_str()))
            } else {
                None
            };
            let Some(idx) = idx else {
                return Err(Failure::entity("order", "Order not found."));
            };
            let o = &st.orders[idx];
            let mut m = Map::new();
            for k in ["id", "number", "externalId", "site"] {
                if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
                    m.insert(k.into(), v.clone());
                }
            }
            Some(Value::Object(m))
        }
        None => None,
    };
    let now = st.tick();
    let id = next(&mut st.seq.task);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("text".into(), t.get("text").cloned().unwrap_or(Value::Null));
    if let Some(c) = t.get("commentary").filter(|v| !v.is_null()) {
        m.insert("commentary".into(), c.clone());
    }
    if let Some(d) = t.get("datetime").filter(|v| !v.is_null()) {
        m.insert("datetime".into(), d.clone());
    }
    m.insert("createdAt".into(), json!(now));
    m.insert("complete".into(), json!(false));
    if let Some(p) = performer {
        m.insert("performer".into(), json!(p));
        m.insert("performerType".into(), json!("user"));
    }
    if let Some(o) = order {
        m.insert("order".into(), o);
    }
    if let Some(c) = t.get("customer").filter(|v| !v.is_null()) {
        m.insert("customer".into(), c.clone());
    }
    st.tasks.push(Value::Object(m));
    Ok(id)
}

/// `tasks/{id}/edit`: text, commentary, datetime, completion, performer.
pub(crate) fn edit_task(st: &mut State, id: &str, task: &Value) -> Result<i64, Failure> {
    let Value::Object(t) = task else {
        return Err(Failure::entity(
            "task",
            "This value should be of type object.",
        ));
    };
    if let Some(p) = t.get("performerId").filter(|v| !v.is_null()) {
        if !as_i64(Some(p)).is_some_and(|u| user_exists(st, u)) {
            return Err(Failure::entity(
                "performerId",
                format!("User with id {p} not found."),
            ));
        }
    }
    let now = st.tick();
    let Some(Value::Object(m)) = st
        .tasks
        .iter_mut()
        .find(|x| as_string(x.get("id")).as_deref() == Some(id))
    else {
        return Err(Failure::not_found());
    };
    for k in ["text", "commentary", "datetime"] {
        if let Some(v) = t.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    if let Some(p) = t.get("performerId").filter(|v| !v.is_null()) {
        m.insert("performer".into(), p.clone());
        m.insert("performerType".into(), json!("user"));
    }
    if let Some(done) = t.get("complete").and_then(Value::as_bool) {
        m.insert("complete".into(), json!(done));
        if done {
            m.insert("completedAt".into(), json!(now));
        } else {
            m.remove("completedAt");
        }
    }
    Ok(as_i64(m.get("id")).unwrap_or(0))
}

/// `GET tasks`.
pub(crate) fn tasks(st: &State, f: &Map<String, Value>) -> Result<Vec<Value>, Failure> {
    check_filters(f, &["performers", "status", "text", "orderNumber"])?;
    Ok(st
        .tasks
        .iter()
        .rev()
        .filter(|t| {
            f.get("performers").is_none_or(|p| {
                as_string(t.get("performer")).is_some_and(|x| strings(p).contains(&x))
            }) && f.get("status").and_then(Value::as_str).is_none_or(|s| {
                let done = t.get("complete").and_then(Value::as_bool) == Some(true);
                (s == "completed") == done
            }) && f.get("text").and_then(Value::as_str).is_none_or(|x| {
                t.get("text")
                    .and_then(Value::as_str)
                    .is_some_and(|y| y.contains(x))
            }) && f
                .get("orderNumber")
                .and_then(Value::as_str)
                .is_none_or(|n| {
                    t.get("order")
                        .and_then(|o| as_string(o.get("number")))
                        .as_deref()
                        == Some(n)
                })
        })
        .cloned()
        .collect())
}
