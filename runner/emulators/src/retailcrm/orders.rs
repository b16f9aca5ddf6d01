//! Orders: create, edit, read, list with filters, derived sums, and the history every change
//! leaves behind.

use serde_json::{json, Map, Value};

use super::changes::{diff_order, record, Change, Feed, Mark};
use super::customers;
use super::model::{as_f64, as_i64, as_string, merge, next, num, ordered, Actor, Failure, State};
use super::params::strings;

/// Key order of a rendered order (as in the API's answers).
const ORDER_KEYS: &[&str] = &[
    "slug",
    "bonusesCreditTotal",
    "bonusesChargeTotal",
    "id",
    "number",
    "externalId",
    "orderType",
    "orderMethod",
    "privilegeType",
    "countryIso",
    "createdAt",
    "statusUpdatedAt",
    "summ",
    "currency",
    "totalSumm",
    "prepaySum",
    "purchaseSumm",
    "markDatetime",
    "lastName",
    "firstName",
    "patronymic",
    "phone",
    "additionalPhone",
    "email",
    "call",
    "expired",
    "customerComment",
    "managerComment",
    "managerId",
    "customer",
    "contact",
    "company",
    "contragent",
    "delivery",
    "site",
    "status",
    "statusComment",
    "items",
    "fullPaidAt",
    "payments",
    "fromApi",
    "shipmentStore",
    "shipmentDate",
    "shipped",
    "customFields",
];

const ITEM_KEYS: &[&str] = &[
    "markingCodes",
    "id",
    "externalIds",
    "priceType",
    "initialPrice",
    "discountManualAmount",
    "discountManualPercent",
    "discountTotal",
    "discounts",
    "prices",
    "vatRate",
    "createdAt",
    "quantity",
    "status",
    "isCanceled",
    "comment",
    "offer",
    "productName",
    "properties",
    "purchasePrice",
];

/// Input keys that are read-only or handled separately on create/edit.
const NOT_COPIED: &[&str] = &[
    "id",
    "slug",
    "summ",
    "totalSumm",
    "prepaySum",
    "purchaseSumm",
    "statusUpdatedAt",
    "markDatetime",
    "fullPaidAt",
    "bonusesCreditTotal",
    "bonusesChargeTotal",
    "items",
    "payments",
    "customer",
    "contact",
    "company",
    "fromApi",
    "site",
];

const ITEM_EDITABLE: &[&str] = &[
    "quantity",
    "initialPrice",
    "discountManualAmount",
    "discountManualPercent",
    "purchasePrice",
    "status",
    "comment",
    "vatRate",
    "externalIds",
    "properties",
    "priceType",
    "productName",
];

/// How `payments` is shown: an object keyed by id (reads) or an array (create answers and
/// history snapshots), as the fixtures show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PaymentsShape {
    Map,
    Array,
}

/// Picks the site of a write: the `site` parameter, the entity's `site`, or the only site.
pub(crate) fn resolve_site(
    st: &State,
    param: Option<&str>,
    body: Option<&str>,
) -> Result<String, Failure> {
    let chosen = param.or(body).map(str::to_string);
    match chosen {
        Some(code) if st.references.sites.contains_key(&code) => Ok(code),
        Some(code) => Err(Failure::entity(
            "site",
            format!("Site with code \"{code}\" not found."),
        )),
        None if st.references.sites.len() == 1 => Ok(st
            .references
            .sites
            .keys()
            .next()
            .cloned()
            .unwrap_or_default()),
        None => Err(Failure::missing("site")),
    }
}

fn str_of<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

/// Finds an order by id, or by externalId (within `site` when given).
pub(crate) fn find_order(st: &State, key: &str, by_id: bool, site: Option<&str>) -> Option<usize> {
    st.orders.iter().position(|o| {
        if by_id {
            as_i64(o.get("id")).is_some_and(|id| id.to_string() == key)
        } else {
            as_string(o.get("externalId")).as_deref() == Some(key)
                && site.is_none_or(|s| str_of(o, "site") == Some(s))
        }
    })
}

fn check_code(
    book: &indexmap::IndexMap<String, Value>,
    value: Option<&Value>,
    field: &str,
    what: &str,
) -> Result<(), Failure> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(v) => {
            let code = as_string(Some(v)).unwrap_or_default();
            if book.contains_key(&code) {
                Ok(())
            } else {
                Err(Failure::entity(
                    field,
                    format!("{what} with code \"{code}\" does not exist."),
                ))
            }
        }
    }
}

pub(crate) fn user_exists(st: &State, id: i64) -> bool {
    st.users.iter().any(|u| as_i64(u.get("id")) == Some(id))
}

fn validate_refs(st: &State, inp: &Map<String, Value>) -> Result<(), Failure> {
    let r = &st.references;
    check_code(&r.statuses, inp.get("status"), "status", "Status")?;
    check_code(
        &r.order_types,
        inp.get("orderType"),
        "orderType",
        "Order type",
    )?;
    check_code(
        &r.order_methods,
        inp.get("orderMethod"),
        "orderMethod",
        "Order method",
    )?;
    check_code(
        &r.stores,
        inp.get("shipmentStore"),
        "shipmentStore",
        "Store",
    )?;
    if let Some(d) = inp.get("delivery") {
        check_code(
            &r.delivery_types,
            d.get("code"),
            "delivery.code",
            "Delivery type",
        )?;
    }
    if let Some(m) = inp.get("managerId").filter(|v| !v.is_null()) {
        match as_i64(Some(m)) {
            Some(id) if user_exists(st, id) => {}
            _ => {
                return Err(Failure::entity(
                    "managerId",
                    format!("User with id {m} not found."),
                ))
            }
        }
    }
    Ok(())
}

fn default_code(book: &indexmap::IndexMap<String, Value>, actor: &Actor) -> Option<String> {
    let flag = if matches!(actor, Actor::Api(_)) {
        "defaultForApi"
    } else {
        "defaultForCrm"
    };
    book.iter()
        .find(|(_, v)| v.get(flag).and_then(Value::as_bool) == Some(true))
        .map(|(k, _)| k.clone())
}

fn default_status(st: &State) -> Option<String> {
    if st.references.statuses.contains_key("new") {
        return Some("new".into());
    }
    st.references
        .statuses
        .iter()
        .min_by_key(|(_, v)| as_i64(v.get("ordering")).unwrap_or(i64::MAX))
        .map(|(k, _)| k.clone())
}

fn default_item_status(st: &State) -> Option<String> {
    if st.references.product_statuses.contains_key("new") {
        return Some("new".into());
    }
    st.references
        .product_statuses
        .iter()
        .min_by_key(|(_, v)| as_i64(v.get("ordering")).unwrap_or(i64::MAX))
        .map(|(k, _)| k.clone())
}

/// Finds a catalog offer from `{id|externalId|xmlId}`. `Ok(None)` when the reference names
/// no key at all.
fn find_offer(st: &State, r: &Map<String, Value>, i: usize) -> Result<Option<usize>, Failure> {
    let not_found = |key: &str, val: String| {
        Failure::new(400, "Order is not loaded").with_errors(json!({
            format!("items[{i}].offer.{key}"): format!("Offer with {key} {val} not found.")
        }))
    };
    if let Some(id) = as_i64(r.get("id")) {
        return st
            .offers
            .iter()
            .position(|o| o.id == id)
            .map(Some)
            .ok_or_else(|| not_found("id", id.to_string()));
    }
    if let Some(x) = as_string(r.get("externalId")) {
        return st
            .offers
            .iter()
            .position(|o| o.external_id.as_deref() == Some(x.as_str()))
            .map(Some)
            .ok_or_else(|| not_found("externalId", x));
    }
    if let Some(x) = as_string(r.get("xmlId")) {
        return st
            .offers
            .iter()
            .position(|o| o.xml_id.as_deref() == Some(x.as_str()))
            .map(Some)
            .ok_or_else(|| not_found("xmlId", x));
    }
    Ok(None)
}

fn offer_embed(st: &State, idx: usize) -> Value {
    let o = &st.offers[idx];
    let mut m = Map::new();
    m.insert("displayName".into(), json!(o.name));
    m.insert("id".into(), json!(o.id));
    if let Some(x) = &o.external_id {
        m.insert("externalId".into(), json!(x));
    }
    if let Some(x) = &o.xml_id {
        m.insert("xmlId".into(), json!(x));
    }
    m.insert("name".into(), json!(o.name));
    if let Some(a) = &o.article {
        m.insert("article".into(), json!(a));
    }
    if let Some(v) = &o.vat_rate {
        m.insert("vatRate".into(), json!(v));
    }
    if let Some(u) = &o.unit {
        m.insert("unit".into(), u.clone());
    }
    Value::Object(m)
}

/// Builds the item list of a create (no `existing`) or an edit (`items` replaces the list;
/// rows named by `id` are kept and updated, rows without `id` are added).
fn build_items(
    st: &mut State,
    existing: &[Value],
    input: &Value,
    now: &str,
) -> Result<Vec<Value>, Failure> {
    let Value::Array(list) = input else {
        return Err(Failure::entity(
            "items",
            "This value should be of type array.",
        ));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let Value::Object(it) = v else {
            return Err(Failure::entity(
                &format!("items[{i}]"),
                "This value should be of type object.",
            ));
        };
        if let Some(status) = it.get("status").filter(|v| !v.is_null()) {
            let code = as_string(Some(status)).unwrap_or_default();
            if !st.references.product_statuses.contains_key(&code) {
                return Err(Failure::entity(
                    &format!("items[{i}].status"),
                    format!("Product status with code \"{code}\" does not exist."),
                ));
            }
        }
        if let Some(q) = it.get("quantity") {
            if !as_f64(Some(q)).is_some_and(|q| q > 0.0) {
                return Err(Failure::entity(
                    &format!("items[{i}].quantity"),
                    "This value should be greater than 0.",
                ));
            }
        }
        if let Some(id) = as_i64(it.get("id")) {
            let Some(old) = existing.iter().find(|x| as_i64(x.get("id")) == Some(id)) else {
                return Err(Failure::entity(
                    &format!("items[{i}].id"),
                    format!("Order product with id {id} not found."),
                ));
            };
            let mut item = old.as_object().cloned().unwrap_or_default();
            for k in ITEM_EDITABLE {
                match it.get(*k) {
                    Some(Value::Null) => {
                        item.remove(*k);
                    }
                    Some(v) => {
                        item.insert((*k).to_string(), v.clone());
                    }
                    None => {}
                }
            }
            out.push(Value::Object(item));
            continue;
        }
        let offer_idx = match it.get("offer") {
            Some(Value::Object(r)) => find_offer(st, r, i)?,
            _ => None,
        };
        if offer_idx.is_none() && it.get("productName").is_none() {
            return Err(Failure::entity(
                &format!("items[{i}].offer"),
                "Set one of the following fields: offer.id, offer.externalId, offer.xmlId, productName",
            ));
        }
        let offer = offer_idx.map(|x| st.offers[x].clone());
        let id = next(&mut st.seq.item);
        let mut item = Map::new();
        item.insert("markingCodes".into(), json!([]));
        item.insert("id".into(), json!(id));
        if let Some(x) = it.get("externalIds") {
            item.insert("externalIds".into(), x.clone());
        }
        item.insert(
            "priceType".into(),
            it.get("priceType")
                .cloned()
                .unwrap_or(json!({"code": "base"})),
        );
        let price = as_f64(it.get("initialPrice"))
            .or(offer.as_ref().map(|o| o.price))
            .unwrap_or(0.0);
        item.insert("initialPrice".into(), num(price));
        for k in ["discountManualAmount", "discountManualPercent", "comment"] {
            if let Some(v) = it.get(k).filter(|v| !v.is_null()) {
                item.insert(k.into(), v.clone());
            }
        }
        let vat = it
            .get("vatRate")
            .cloned()
            .or(offer
                .as_ref()
                .and_then(|o| o.vat_rate.clone())
                .map(Value::String))
            .unwrap_or(json!("none"));
        item.insert("vatRate".into(), vat);
        item.insert("createdAt".into(), json!(now));
        item.insert(
            "quantity".into(),
            num(as_f64(it.get("quantity")).unwrap_or(1.0)),
        );
        let status = as_string(it.get("status")).or_else(|| default_item_status(st));
        if let Some(s) = status {
            item.insert("status".into(), json!(s));
        }
        if let Some(x) = offer_idx {
            item.insert("offer".into(), offer_embed(st, x));
        }
        if let Some(n) = it.get("productName") {
            item.insert("productName".into(), n.clone());
        }
        item.insert(
            "properties".into(),
            it.get("properties").cloned().unwrap_or(json!([])),
        );
        let purchase = as_f64(it.get("purchasePrice"))
            .or(offer.as_ref().and_then(|o| o.purchase_price))
            .unwrap_or(0.0);
        item.insert("purchasePrice".into(), num(purchase));
        out.push(Value::Object(item));
    }
    Ok(out)
}

fn payment_complete(st: &State, status: Option<&Value>) -> bool {
    let Some(code) = status.and_then(Value::as_str) else {
        return false;
    };
    st.references
        .payment_statuses
        .get(code)
        .and_then(|s| s.get("paymentComplete"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn product_canceled(st: &State, status: Option<&Value>) -> bool {
    let Some(code) = status.and_then(Value::as_str) else {
        return false;
    };
    st.references
        .product_statuses
        .get(code)
        .and_then(|s| s.get("cancelStatus"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Recomputes the derived fields of order `idx`: per-item `discountTotal`, `prices`,
/// `isCanceled`; order `summ`, `totalSumm`, `purchaseSumm`, `prepaySum`, `fullPaidAt`.
pub(crate) fn recompute(st: &mut State, idx: usize, now: &str) {
    let Some(order) = st.orders.get(idx).cloned() else {
        return;
    };
    let pct = as_f64(order.get("discountManualPercent")).unwrap_or(0.0);
    let amount = as_f64(order.get("discountManualAmount")).unwrap_or(0.0);
    let items: Vec<Value> = match order.get("items") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    // Unit price after item and order percent discounts, and cancel flags.
    let mut rows: Vec<(f64, f64, f64, bool)> = Vec::new(); // (initial, unit, qty, canceled)
    let mut product_units = Vec::new(); // unit price after the item's own discounts
    for it in &items {
        let ip = as_f64(it.get("initialPrice")).unwrap_or(0.0);
        let dma = as_f64(it.get("discountManualAmount")).unwrap_or(0.0);
        let dmp = as_f64(it.get("discountManualPercent")).unwrap_or(0.0);
        let qty = as_f64(it.get("quantity")).unwrap_or(0.0);
        let product_unit = ip - dma - ip * dmp / 100.0;
        let unit = product_unit * (1.0 - pct / 100.0);
        product_units.push(product_unit);
        rows.push((ip, unit, qty, product_canceled(st, it.get("status"))));
    }
    let base: f64 = rows.iter().filter(|r| !r.3).map(|r| r.1 * r.2).sum();
    let mut summ = 0.0;
    let mut purchase = 0.0;
    let mut new_items = Vec::with_capacity(items.len());
    for ((it, (ip, unit, qty, canceled)), product_unit) in items.iter().zip(rows).zip(product_units)
    {
        let share = if !canceled && base > 0.0 && qty > 0.0 {
            amount * (unit * qty / base) / qty
        } else {
            0.0
        };
        let fin = (unit - share).max(0.0);
        let mut m = it.as_object().cloned().unwrap_or_default();
        m.insert("discountTotal".into(), num(ip - fin));
        // The breakdown, as line totals: the item's own discount, then its share of the
        // order's (percent and amount).
        let mut discounts = Vec::new();
        for (kind, per_unit) in [
            ("manual_product", ip - product_unit),
            ("manual_order", product_unit - fin),
        ] {
            let line = per_unit * qty;
            if line.abs() >= 0.005 {
                discounts.push(json!({"type": kind, "amount": num(line)}));
            }
        }
        m.insert("discounts".into(), Value::Array(discounts));
        m.insert(
            "prices".into(),
            json!([{"price": num(fin), "quantity": num(qty)}]),
        );
        m.insert("isCanceled".into(), json!(canceled));
        if !canceled {
            summ += fin * qty;
            purchase += as_f64(it.get("purchasePrice")).unwrap_or(0.0) * qty;
        }
        new_items.push(Value::Object(ordered(m, ITEM_KEYS)));
    }
    let delivery_cost = order
        .get("delivery")
        .and_then(|d| as_f64(d.get("cost")))
        .unwrap_or(0.0);
    let total = summ + delivery_cost;
    let paid: f64 = match order.get("payments") {
        Some(Value::Array(ps)) => ps
            .iter()
            .filter(|p| payment_complete(st, p.get("status")))
            .filter_map(|p| as_f64(p.get("amount")))
            .sum(),
        _ => 0.0,
    };
    let Some(Value::Object(o)) = st.orders.get_mut(idx) else {
        return;
    };
    o.insert("items".into(), Value::Array(new_items));
    o.insert("summ".into(), num(summ));
    o.insert("totalSumm".into(), num(total));
    o.insert("prepaySum".into(), num(paid));
    o.insert("purchaseSumm".into(), num(purchase));
    let fully_paid = total > 0.0 && paid + 0.005 >= total;
    if fully_paid && !o.contains_key("fullPaidAt") {
        o.insert("fullPaidAt".into(), json!(now));
    } else if !fully_paid {
        o.remove("fullPaidAt");
    }
}

/// Recomputes order `idx`, writes history for the difference from `before` (or the
/// `created` record), and applies the item-status automation of the new status.
pub(crate) fn commit(st: &mut State, actor: &Actor, idx: usize, before: Option<Value>, now: &str) {
    recompute(st, idx, now);
    let Some(after) = st.orders.get(idx).cloned() else {
        return;
    };
    let Some(before) = before else {
        let snapshot = render_order(st, &after, PaymentsShape::Array);
        let status = after.get("status").cloned().unwrap_or(Value::Null);
        record(
            st,
            Feed::Orders,
            actor,
            now,
            &snapshot,
            vec![Change::new(
                "status",
                Value::Null,
                json!({ "code": status }),
            )],
            Mark::Created,
        );
        return;
    };
    let status_changed = before.get("status") != after.get("status");
    if status_changed {
        if let Some(Value::Object(o)) = st.orders.get_mut(idx) {
            o.insert("statusUpdatedAt".into(), json!(now));
            o.insert("markDatetime".into(), json!(now));
        }
    }
    let after = st.orders.get(idx).cloned().unwrap_or(after);
    let changes = diff_order(&before, &after);
    if !changes.is_empty() {
        let stub = super::changes::order_stub(&after);
        record(st, Feed::Orders, actor, now, &stub, changes, Mark::Change);
    }
    if status_changed && *actor != Actor::Code {
        link_item_statuses(st, idx, now);
    }
}

/// retailCRM's automation: a product status whose `orderStatusForProductStatus` is the
/// order's new status is applied to the order's items (recorded as `source: code`).
fn link_item_statuses(st: &mut State, idx: usize, now: &str) {
    let Some(status) = st
        .orders
        .get(idx)
        .and_then(|o| str_of(o, "status"))
        .map(str::to_string)
    else {
        return;
    };
    let target = st
        .references
        .product_statuses
        .iter()
        .find(|(_, ps)| str_of(ps, "orderStatusForProductStatus") == Some(status.as_str()))
        .map(|(code, _)| code.clone());
    let Some(target) = target else {
        return;
    };
    let Some(before) = st.orders.get(idx).cloned() else {
        return;
    };
    let mut changed = false;
    let canceled: Vec<bool> = match before.get("items") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|it| product_canceled(st, it.get("status")))
            .collect(),
        _ => Vec::new(),
    };
    if let Some(Value::Array(items)) = st.orders.get_mut(idx).and_then(|o| o.get_mut("items")) {
        for (it, is_canceled) in items.iter_mut().zip(canceled) {
            if !is_canceled && str_of(it, "status") != Some(target.as_str()) {
                if let Some(m) = it.as_object_mut() {
                    m.insert("status".into(), json!(target));
                    changed = true;
                }
            }
        }
    }
    if changed {
        commit(st, &Actor::Code, idx, Some(before), now);
    }
}

/// Creates an order from the API's `order` JSON. Returns its id.
pub(crate) fn create_order(
    st: &mut State,
    actor: &Actor,
    input: &Value,
    site: Option<&str>,
) -> Result<i64, Failure> {
    let Value::Object(inp) = input else {
        return Err(Failure::entity(
            "order",
            "This value should be of type object.",
        ));
    };
    let site = resolve_site(st, site, str_of(input, "site"))?;
    if let Some(ext) = as_string(inp.get("externalId")) {
        if find_order(st, &ext, false, Some(&site)).is_some() {
            return Err(Failure::new(400, "Order with externalId already exists."));
        }
    }
    validate_refs(st, inp)?;
    let now = st.tick();
    let items = match inp.get("items") {
        Some(v) if !v.is_null() => build_items(st, &[], v, &now)?,
        _ => Vec::new(),
    };
    let payments = match inp.get("payments") {
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for (i, p) in list.iter().enumerate() {
                out.push(new_payment(st, p, None, &now).map_err(|f| prefix_errors(f, i))?);
            }
            out
        }
        _ => Vec::new(),
    };
    let (customer, contact, company) = match inp.get("customer").filter(|v| !v.is_null()) {
        Some(c) => {
            customers::resolve_order_links(st, c, inp.get("contact"), inp.get("company"), &site)?
        }
        None => {
            let id = customers::auto_create(st, actor, inp, &site, &now);
            (json!({"id": id, "type": "customer"}), None, None)
        }
    };
    let id = next(&mut st.seq.order);
    let mut o = Map::new();
    o.insert("slug".into(), json!(id));
    o.insert("bonusesCreditTotal".into(), json!(0));
    o.insert("bonusesChargeTotal".into(), json!(0));
    o.insert("id".into(), json!(id));
    o.insert(
        "number".into(),
        json!(as_string(inp.get("number")).unwrap_or_else(|| format!("{id}A"))),
    );
    o.insert("privilegeType".into(), json!("none"));
    o.insert("createdAt".into(), json!(now));
    o.insert("statusUpdatedAt".into(), json!(now));
    o.insert("markDatetime".into(), json!(now));
    let currency = st
        .references
        .sites
        .get(&site)
        .and_then(|s| str_of(s, "currency"))
        .unwrap_or("RUB")
        .to_string();
    o.insert("currency".into(), json!(currency));
    o.insert("call".into(), json!(false));
    o.insert("expired".into(), json!(false));
    if let Some(t) = default_code(&st.references.order_types, actor) {
        o.insert("orderType".into(), json!(t));
    }
    if let Some(m) = default_code(&st.references.order_methods, actor) {
        o.insert("orderMethod".into(), json!(m));
    }
    o.insert("customer".into(), customer);
    if let Some(c) = contact {
        o.insert("contact".into(), c);
    }
    if let Some(c) = company {
        o.insert("company".into(), c);
    }
    o.insert("contragent".into(), json!({"contragentType": "individual"}));
    o.insert("delivery".into(), json!({"cost": 0, "netCost": 0}));
    o.insert("site".into(), json!(site));
    if let Some(s) = default_status(st) {
        o.insert("status".into(), json!(s));
    }
    o.insert("fromApi".into(), json!(matches!(actor, Actor::Api(_))));
    o.insert("shipped".into(), json!(false));
    o.insert("customFields".into(), json!({}));
    for (k, v) in inp {
        if NOT_COPIED.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        match (o.get_mut(k), v) {
            (Some(Value::Object(t)), Value::Object(p)) => merge(t, p),
            (_, Value::Array(a)) if a.is_empty() && k == "customFields" => {}
            _ => {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    o.insert("items".into(), Value::Array(items));
    o.insert("payments".into(), Value::Array(payments));
    st.orders.push(Value::Object(ordered(o, ORDER_KEYS)));
    let idx = st.orders.len() - 1;
    commit(st, actor, idx, None, &now);
    Ok(id)
}

fn prefix_errors(f: Failure, i: usize) -> Failure {
    match f.errors {
        Some(Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(format!("payments[{i}].{k}"), v);
            }
            Failure {
                errors: Some(Value::Object(out)),
                ..f
            }
        }
        _ => f,
    }
}

/// Edits order `idx` with the API's `order` JSON (only the fields sent change).
pub(crate) fn edit_order(
    st: &mut State,
    actor: &Actor,
    idx: usize,
    input: &Value,
) -> Result<(), Failure> {
    let Value::Object(inp) = input else {
        return Err(Failure::entity(
            "order",
            "This value should be of type object.",
        ));
    };
    validate_refs(st, inp)?;
    let Some(before) = st.orders.get(idx).cloned() else {
        return Err(Failure::not_found());
    };
    let site = str_of(&before, "site").unwrap_or_default().to_string();
    if let Some(ext) = as_string(inp.get("externalId")) {
        if let Some(other) = find_order(st, &ext, false, Some(&site)) {
            if other != idx {
                return Err(Failure::new(400, "Order with externalId already exists."));
            }
        }
    }
    let now = st.tick();
    let items = match inp.get("items") {
        Some(v) if !v.is_null() => {
            let existing = match before.get("items") {
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            Some(build_items(st, &existing, v, &now)?)
        }
        _ => None,
    };
    let links = match inp.get("customer").filter(|v| !v.is_null()) {
        Some(c) => Some(customers::resolve_order_links(
            st,
            c,
            inp.get("contact"),
            inp.get("company"),
            &site,
        )?),
        None => None,
    };
    let Some(Value::Object(o)) = st.orders.get_mut(idx) else {
        return Err(Failure::not_found());
    };
    for (k, v) in inp {
        if NOT_COPIED.contains(&k.as_str()) {
            continue;
        }
        match (o.get_mut(k), v) {
            (_, Value::Null) => {
                o.remove(k);
            }
            (Some(Value::Object(t)), Value::Object(p)) => merge(t, p),
            (_, Value::Array(a)) if a.is_empty() && k == "customFields" => {}
            _ => {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(items) = items {
        o.insert("items".into(), Value::Array(items));
    }
    if let Some((customer, contact, company)) = links {
        o.insert("customer".into(), customer);
        match contact {
            Some(c) => o.insert("contact".into(), c),
            None => o.remove("contact"),
        };
        match company {
            Some(c) => o.insert("company".into(), c),
            None => o.remove("company"),
        };
    }
    commit(st, actor, idx, Some(before), &now);
    Ok(())
}

/// The order as the API shows it.
pub(crate) fn render_order(st: &State, o: &Value, shape: PaymentsShape) -> Value {
    let mut m = o.as_object().cloned().unwrap_or_default();
    customers::expand_order_links(st, &mut m);
    let payments = match m.remove("payments") {
        Some(Value::Array(ps)) => ps,
        _ => Vec::new(),
    };
    let payments = match shape {
        PaymentsShape::Array => Value::Array(payments),
        PaymentsShape::Map => {
            let mut pm = Map::new();
            for p in payments {
                let key = as_i64(p.get("id"))
                    .map(|i| i.to_string())
                    .unwrap_or_default();
                pm.insert(key, p);
            }
            Value::Object(pm)
        }
    };
    m.insert("payments".into(), payments);
    // Links to other orders (`/orders/links/create`); none are made here.
    m.entry("links").or_insert_with(|| json!([]));
    if m.get("customFields")
        .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
    {
        m.insert("customFields".into(), json!([]));
    }
    if let Some(Value::Array(items)) = m.get_mut("items") {
        for it in items.iter_mut() {
            if let Some(im) = it.as_object_mut() {
                if im
                    .get("properties")
                    .is_some_and(|p| p.as_object().is_some_and(Map::is_empty))
                {
                    im.insert("properties".into(), json!([]));
                }
            }
        }
    }
    Value::Object(ordered(m, ORDER_KEYS))
}

const ORDER_FILTERS: &[&str] = &[
    "ids",
    "externalIds",
    "numbers",
    "sites",
    "extendedStatus",
    "orderTypes",
    "orderMethods",
    "managers",
    "customerId",
    "customerExternalId",
    "shipmentStores",
    "deliveryTypes",
    "paymentStatuses",
    "paymentTypes",
    "createdAtFrom",
    "createdAtTo",
    "statusUpdatedAtFrom",
    "statusUpdatedAtTo",
    "shipped",
    "customFields",
];

/// Rejects filter names the endpoint does not know, as retailCRM's forms do.
pub(crate) fn check_filters(filter: &Map<String, Value>, known: &[&str]) -> Result<(), Failure> {
    for k in filter.keys() {
        if !known.contains(&k.as_str()) {
            return Err(Failure::input(
                &format!("filter[{k}]"),
                "This form should not contain extra fields.",
            ));
        }
    }
    Ok(())
}

/// `from`/`to` date filters: a `Y-m-d` bound covers the whole day.
pub(crate) fn in_range(value: Option<&str>, from: Option<&Value>, to: Option<&Value>) -> bool {
    let v = value.unwrap_or("");
    if let Some(f) = from.and_then(Value::as_str) {
        if v.is_empty() || v < f {
            return false;
        }
    }
    if let Some(t) = to.and_then(Value::as_str) {
        let bound = if t.len() == 10 {
            format!("{t} 23:59:59")
        } else {
            t.to_string()
        };
        if v.is_empty() || v > bound.as_str() {
            return false;
        }
    }
    true
}

pub(crate) fn custom_fields_match(entity: &Value, filter: Option<&Value>) -> bool {
    let Some(Value::Object(cf)) = filter else {
        return true;
    };
    cf.iter().all(|(code, want)| {
        let have = entity.get("customFields").and_then(|c| c.get(code));
        match want {
            Value::Object(range) => {
                let h = as_f64(have);
                let min_ok = as_f64(range.get("min")).is_none_or(|m| h.is_some_and(|h| h >= m));
                let max_ok = as_f64(range.get("max")).is_none_or(|m| h.is_some_and(|h| h <= m));
                min_ok && max_ok
            }
            _ => {
                let wanted = strings(want);
                let have = have.map(strings).unwrap_or_default();
                wanted.iter().all(|w| {
                    have.contains(w)
                        || (w == "1" && have.iter().any(|h| h == "true"))
                        || (w == "0" && have.iter().any(|h| h == "false"))
                })
            }
        }
    })
}

fn order_matches(st: &State, o: &Value, f: &Map<String, Value>) -> bool {
    let one_of = |key: &str, val: Option<String>| match f.get(key) {
        None => true,
        Some(v) => val.is_some_and(|x| strings(v).contains(&x)),
    };
    let payments: Vec<&Value> = match o.get("payments") {
        Some(Value::Array(ps)) => ps.iter().collect(),
        _ => Vec::new(),
    };
    let customer = o.get("customer");
    let customer_ext = customer
        .and_then(|c| as_i64(c.get("id")))
        .and_then(|id| customers::external_id_of(st, id));
    one_of("ids", as_string(o.get("id")))
        && one_of("externalIds", as_string(o.get("externalId")))
        && one_of("numbers", as_string(o.get("number")))
        && one_of("sites", as_string(o.get("site")))
        && one_of("orderTypes", as_string(o.get("orderType")))
        && one_of("orderMethods", as_string(o.get("orderMethod")))
        && one_of("managers", as_string(o.get("managerId")))
        && one_of("shipmentStores", as_string(o.get("shipmentStore")))
        && one_of(
            "deliveryTypes",
            o.get("delivery").and_then(|d| as_string(d.get("code"))),
        )
        && one_of("customerId", customer.and_then(|c| as_string(c.get("id"))))
        && one_of("customerExternalId", customer_ext)
        && f.get("extendedStatus").is_none_or(|v| {
            let want = strings(v);
            let status = str_of(o, "status").unwrap_or_default();
            let group = st
                .references
                .statuses
                .get(status)
                .and_then(|s| str_of(s, "group"))
                .unwrap_or_default();
            want.iter().any(|w| w == status || w == group)
        })
        && f.get("paymentStatuses").is_none_or(|v| {
            let want = strings(v);
            payments
                .iter()
                .any(|p| as_string(p.get("status")).is_some_and(|s| want.contains(&s)))
        })
        && f.get("paymentTypes").is_none_or(|v| {
            let want = strings(v);
            payments
                .iter()
                .any(|p| as_string(p.get("type")).is_some_and(|s| want.contains(&s)))
        })
        && in_range(
            str_of(o, "createdAt"),
            f.get("createdAtFrom"),
            f.get("createdAtTo"),
        )
        && in_range(
            str_of(o, "statusUpdatedAt"),
            f.get("statusUpdatedAtFrom"),
            f.get("statusUpdatedAtTo"),
        )
        && f.get("shipped").is_none_or(|v| {
            let want = strings(v).first().map(|s| s == "1" || s == "true");
            want == o.get("shipped").and_then(Value::as_bool)
        })
        && custom_fields_match(o, f.get("customFields"))
}

/// Orders matching `filter`, newest first.
pub(crate) fn list_orders<'a>(
    st: &'a State,
    filter: &Map<String, Value>,
) -> Result<Vec<&'a Value>, Failure> {
    check_filters(filter, ORDER_FILTERS)?;
    let mut out: Vec<&Value> = st
        .orders
        .iter()
        .filter(|o| order_matches(st, o, filter))
        .collect();
    out.sort_by_key(|o| std::cmp::Reverse(as_i64(o.get("id")).unwrap_or(0)));
    Ok(out)
}

/// A new payment from the API's `payment` JSON (validated; not yet attached).
fn new_payment(
    st: &mut State,
    p: &Value,
    default_amount: Option<f64>,
    now: &str,
) -> Result<Value, Failure> {
    let Value::Object(inp) = p else {
        return Err(Failure::entity(
            "payment",
            "This value should be of type object.",
        ));
    };
    let Some(kind) = as_string(inp.get("type")) else {
        return Err(Failure::entity("type", "This value should not be blank."));
    };
    check_code(
        &st.references.payment_types,
        inp.get("type"),
        "type",
        "Payment type",
    )?;
    check_code(
        &st.references.payment_statuses,
        inp.get("status"),
        "status",
        "Payment status",
    )?;
    if let Some(ext) = as_string(inp.get("externalId")) {
        if find_payment(st, &ext, false).is_some() {
            return Err(Failure::new(400, "Payment with externalId already exists."));
        }
    }
    let id = next(&mut st.seq.payment);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    if let Some(s) = inp.get("status").filter(|v| !v.is_null()) {
        m.insert("status".into(), s.clone());
    }
    m.insert("type".into(), json!(kind));
    if let Some(x) = inp.get("externalId").filter(|v| !v.is_null()) {
        m.insert("externalId".into(), x.clone());
    }
    let amount = as_f64(inp.get("amount")).or(default_amount).unwrap_or(0.0);
    m.insert("amount".into(), num(amount));
    match inp.get("paidAt").filter(|v| !v.is_null()) {
        Some(t) => {
            m.insert("paidAt".into(), t.clone());
        }
        None if payment_complete(st, inp.get("status")) => {
            m.insert("paidAt".into(), json!(now));
        }
        None => {}
    }
    if let Some(c) = inp.get("comment").filter(|v| !v.is_null()) {
        m.insert("comment".into(), c.clone());
    }
    Ok(Value::Object(m))
}

/// Finds a payment: `(order index, payment index)`.
pub(crate) fn find_payment(st: &State, key: &str, by_id: bool) -> Option<(usize, usize)> {
    for (oi, o) in st.orders.iter().enumerate() {
        if let Some(Value::Array(ps)) = o.get("payments") {
            for (pi, p) in ps.iter().enumerate() {
                let hit = if by_id {
                    as_string(p.get("id")).as_deref() == Some(key)
                } else {
                    as_string(p.get("externalId")).as_deref() == Some(key)
                };
                if hit {
                    return Some((oi, pi));
                }
            }
        }
    }
    None
}

/// `orders/payments/create`: attaches a payment to the order it names.
pub(crate) fn create_payment(
    st: &mut State,
    actor: &Actor,
    input: &Value,
    site: Option<&str>,
) -> Result<i64, Failure> {
    let order_ref = input.get("order").and_then(Value::as_object);
    let idx = match order_ref {
        Some(r) if r.get("id").is_some() => {
            let id = as_string(r.get("id")).unwrap_or_default();
            find_order(st, &id, true, None)
        }
        Some(r) if r.get("externalId").is_some() => {
            let ext = as_string(r.get("externalId")).unwrap_or_default();
            let site = r.get("site").and_then(Value::as_str).or(site);
            find_order(st, &ext, false, site)
        }
        Some(r) if r.get("number").is_some() => {
            let number = as_string(r.get("number"));
            st.orders
                .iter()
                .position(|o| as_string(o.get("number")) == number)
        }
        _ => {
            return Err(Failure::entity(
                "order",
                "Set one of the following fields: id, externalId, number",
            ))
        }
    };
    let Some(idx) = idx else {
        return Err(Failure::entity("order", "Order not found."));
    };
    let (total, already) = {
        let o = &st.orders[idx];
        let total = as_f64(o.get("totalSumm")).unwrap_or(0.0);
        let already: f64 = match o.get("payments") {
            Some(Value::Array(ps)) => ps.iter().filter_map(|p| as_f64(p.get("amount"))).sum(),
            _ => 0.0,
        };
        (total, already)
    };
    let now = st.tick();
    let payment = new_payment(st, input, Some((total - already).max(0.0)), &now)?;
    let id = as_i64(payment.get("id")).unwrap_or(0);
    let before = st.orders[idx].clone();
    if let Some(Value::Array(ps)) = st.orders[idx].get_mut("payments") {
        ps.push(payment);
    }
    commit(st, actor, idx, Some(before), &now);
    Ok(id)
}

/// `orders/payments/{id}/edit`.
pub(crate) fn edit_payment(
    st: &mut State,
    actor: &Actor,
    key: &str,
    by_id: bool,
    input: &Value,
) -> Result<i64, Failure> {
    let Value::Object(inp) = input else {
        return Err(Failure::entity(
            "payment",
            "This value should be of type object.",
        ));
    };
    let Some((oi, pi)) = find_payment(st, key, by_id) else {
        return Err(Failure::not_found());
    };
    check_code(
        &st.references.payment_types,
        inp.get("type"),
        "type",
        "Payment type",
    )?;
    check_code(
        &st.references.payment_statuses,
        inp.get("status"),
        "status",
        "Payment status",
    )?;
    if let Some(ext) = as_string(inp.get("externalId")) {
        if find_payment(st, &ext, false).is_some_and(|x| x != (oi, pi)) {
            return Err(Failure::new(400, "Payment with externalId already exists."));
        }
    }
    let becomes_paid = payment_complete(st, inp.get("status"));
    let now = st.tick();
    let before = st.orders[oi].clone();
    let mut id = 0;
    if let Some(Value::Array(ps)) = st.orders[oi].get_mut("payments") {
        if let Some(Value::Object(p)) = ps.get_mut(pi) {
            for k in [
                "status",
                "type",
                "amount",
                "paidAt",
                "comment",
                "externalId",
            ] {
                match inp.get(k) {
                    Some(Value::Null) => {
                        p.remove(k);
                    }
                    Some(v) => {
                        p.insert(k.into(), v.clone());
                    }
                    None => {}
                }
            }
            if becomes_paid && !p.contains_key("paidAt") {
                p.insert("paidAt".into(), json!(now));
            }
            id = as_i64(p.get("id")).unwrap_or(0);
        }
    }
    commit(st, actor, oi, Some(before), &now);
    Ok(id)
}

/// `orders/payments/{id}/delete`.
pub(crate) fn delete_payment(st: &mut State, actor: &Actor, id: i64) -> Result<(), Failure> {
    let Some((oi, pi)) = find_payment(st, &id.to_string(), true) else {
        return Err(Failure::not_found());
    };
    let now = st.tick();
    let before = st.orders[oi].clone();
    if let Some(Value::Array(ps)) = st.orders[oi].get_mut("payments") {
        ps.remove(pi);
    }
    commit(st, actor, oi, Some(before), &now);
    Ok(())
}
