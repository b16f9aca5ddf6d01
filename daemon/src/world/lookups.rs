//! `lookup` and `fetch` against the two APIs (contract: docs/contract.md, "Lookups").

use serde_json::{Map, Value};
use skladsync_engine::WorldError;

use crate::clients::moysklad::{id_from_href, ListQuery, MoyskladClient, MoyskladError};
use crate::clients::retailcrm::{self, EntityKind, EntityRef, RetailcrmClient, WriteOptions};
use crate::state::id_text;

/// МойСклад documents with positions.
const POSITION_DOCS: &[&str] = &[
    "customerorder",
    "demand",
    "retaildemand",
    "move",
    "salesreturn",
    "prepayment",
    "supply",
    "purchaseorder",
    "invoiceout",
    "retailsalesreturn",
];

/// МойСклад documents without positions (payments).
const PAYMENT_DOCS: &[&str] = &["paymentin", "cashin", "paymentout", "cashout"];

/// The `expand` a МойСклад entity is read with (events and `fetch`).
pub fn ms_expand(entity: &str) -> Vec<&'static str> {
    let mut e = Vec::new();
    if POSITION_DOCS.contains(&entity) {
        e.extend(["positions", "positions.assortment", "agent", "state"]);
        if matches!(
            entity,
            "demand" | "retaildemand" | "salesreturn" | "prepayment"
        ) {
            e.push("customerOrder");
        }
    } else if PAYMENT_DOCS.contains(&entity) {
        e.extend(["agent", "state", "operations"]);
    } else if entity == "counterparty" {
        e.extend(["accounts", "contactpersons"]);
    }
    e
}

fn ms_err(e: MoyskladError) -> WorldError {
    WorldError(e.to_string())
}

fn crm_err(e: retailcrm::Error) -> WorldError {
    WorldError(e.to_string())
}

/// The text of a filter value: strings as they are, numbers, booleans, `meta` references as
/// their href, null as empty.
fn filter_text(v: &Value) -> Result<Vec<String>, WorldError> {
    Ok(match v {
        Value::Null => vec![String::new()],
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Object(o) => {
            let href = o
                .get("meta")
                .and_then(|m| m.get("href"))
                .or_else(|| o.get("href"))
                .and_then(Value::as_str);
            match href {
                Some(h) => vec![h.to_string()],
                None => {
                    return Err(WorldError(format!(
                        "a МойСклад filter value must be a scalar or a meta reference, got {v}"
                    )))
                }
            }
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(filter_text(i)?);
            }
            out
        }
    })
}

/// `GET /entity/E?filter=f=v;…`, every page.
pub async fn ms_find(
    ms: &MoyskladClient,
    entity: &str,
    filter: &Map<String, Value>,
) -> Result<Vec<Value>, WorldError> {
    let mut q = ListQuery::new();
    let mut dictionary = None;
    for (field, v) in filter {
        if entity == "customentity" && field == "dictionary" {
            dictionary = ms_id(v);
            continue;
        }
        for text in filter_text(v)? {
            q = q.filter_eq(field, &text);
        }
    }
    if entity == "customentity" {
        // Elements of one dictionary: `{dictionary: <id>, name: …}`.
        let Some(dict) = dictionary else {
            return Err(WorldError(
                "lookup(\"moysklad\", \"customentity\", …) needs `dictionary` (the customentity id) in the filter".into(),
            ));
        };
        let rows = ms
            .list_all(&format!("customentity/{dict}"), &q)
            .await
            .map_err(ms_err)?;
        return Ok(rows
            .into_iter()
            .map(|mut r| {
                if let Some(m) = r.as_object_mut() {
                    m.insert("dictionary".into(), Value::String(dict.clone()));
                }
                r
            })
            .collect());
    }
    ms.list_all(entity, &q).await.map_err(ms_err)
}

/// The id in a МойСклад reference: a plain id, `{id}`, or a `meta` whose href ends in it.
pub fn ms_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(id_from_href(s).unwrap_or(s).to_string()),
        Value::Object(o) => {
            if let Some(Value::String(id)) = o.get("id") {
                return Some(id.clone());
            }
            o.get("meta")
                .and_then(|m| m.get("href"))
                .or_else(|| o.get("href"))
                .and_then(Value::as_str)
                .and_then(id_from_href)
                .map(str::to_string)
        }
        _ => None,
    }
}

/// Whether a МойСклад id or type name is safe in a path (letters, digits, `-`, `_`).
pub fn ms_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An entity as events carry it: expanded, and for a `demand` with `fields=stock` (the
/// stock and unit cost of each position). `None` when it does not exist.
pub async fn ms_event_entity(
    ms: &MoyskladClient,
    entity: &str,
    id: &str,
) -> Result<Option<skladsync_engine::Value>, MoyskladError> {
    if !ms_safe(entity) || !ms_safe(id) {
        return Err(MoyskladError::InvalidRequest(format!(
            "not a МойСклад entity: {entity}/{id}"
        )));
    }
    let mut q = vec![("expand".to_string(), ms_expand(entity).join(","))];
    if entity == "demand" {
        q.push(("fields".to_string(), "stock".to_string()));
    }
    // Read straight into engine values: the event takes the entity as it is.
    match ms.get_value(&format!("entity/{entity}/{id}"), &q).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `GET /entity/E/{id}` (documents expanded); `None` when it does not exist. Read straight
/// into engine values (a rule reads it).
pub async fn ms_fetch(
    ms: &MoyskladClient,
    entity: &str,
    id: &Value,
) -> Result<Option<skladsync_engine::Value>, WorldError> {
    let Some(id) = ms_id(id) else {
        return Ok(None);
    };
    match ms.get_opt_value(entity, &id, &ms_expand(entity)).await {
        Ok(v) => Ok(v),
        Err(MoyskladError::InvalidRequest(_)) => Ok(None),
        Err(e) => Err(ms_err(e)),
    }
}

/// A CRM id for `fetch`: numbers (and digit strings) are ids, other strings external ids.
pub fn crm_ref(v: &Value) -> Option<EntityRef> {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok().map(EntityRef::Id)
        }
        other => EntityRef::from_json(other).ok(),
    }
}

/// `GET /orders/{id}?by=id`, customers, corporate customers; `None` when not found. Read
/// straight into engine values (a rule reads it).
pub async fn crm_fetch(
    crm: &RetailcrmClient,
    entity: &str,
    id: &Value,
) -> Result<Option<skladsync_engine::Value>, WorldError> {
    let kind = match entity {
        "order" => EntityKind::Order,
        "customer" => EntityKind::Customer,
        "customer_corporate" => EntityKind::CustomerCorporate,
        other => {
            return Err(WorldError(format!(
                "fetch(\"crm\", \"{other}\", …): only order, customer and customer_corporate can be read by id"
            )))
        }
    };
    let Some(r) = crm_ref(id) else {
        return Ok(None);
    };
    match crm.fetch_value(kind, &r, &WriteOptions::default()).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(crm_err(e)),
    }
}

/// Singular field names rules use, and the list filters retailCRM takes for them.
fn crm_filter_name(entity: &str, field: &str) -> Option<&'static str> {
    Some(match (entity, field) {
        (_, "id") => "ids",
        (_, "externalId") => "externalIds",
        ("order", "number") => "numbers",
        ("offer", "xmlId") => "xmlIds",
        (_, "site") => "sites",
        _ => return None,
    })
}

/// `/orders`, `/customers`, `/customers-corporate`, `/store/offers`, `/users`, and payments
/// from their order. Singular fields (`id`, `externalId`, `number`, `xmlId`, `site`) become
/// retailCRM's list filters and are then matched exactly; other fields are passed as
/// retailCRM filters.
pub async fn crm_find(
    crm: &RetailcrmClient,
    entity: &str,
    filter: &Map<String, Value>,
) -> Result<Vec<Value>, WorldError> {
    if entity == "payment" {
        return crm_payments(crm, filter).await;
    }
    if entity == "pack" {
        return crm_packs(crm, filter).await;
    }
    let mut api_filter = Map::new();
    let mut exact: Vec<(String, Value)> = Vec::new();
    for (k, v) in filter {
        match crm_filter_name(entity, k) {
            Some(list) => {
                api_filter.insert(list.to_string(), Value::Array(vec![v.clone()]));
                exact.push((k.clone(), v.clone()));
            }
            None => {
                api_filter.insert(k.clone(), v.clone());
            }
        }
    }
    let api_filter = Value::Object(api_filter);
    let rows = match entity {
        "order" => crm.list_all(EntityKind::Order, &api_filter, &WriteOptions::default()).await,
        "customer" => {
            crm.list_all(EntityKind::Customer, &api_filter, &WriteOptions::default())
                .await
        }
        "customer_corporate" => {
            crm.list_all(
                EntityKind::CustomerCorporate,
                &api_filter,
                &WriteOptions::default(),
            )
            .await
        }
        "offer" => all_offers(crm, &api_filter).await,
        "user" => crm.users_all(&api_filter).await,
        other => {
            return Err(WorldError(format!(
                "lookup(\"crm\", \"{other}\", …): the CRM lookups are order, customer, customer_corporate, offer, payment, pack and user"
            )))
        }
    }
    .map_err(crm_err)?;
    Ok(rows
        .into_iter()
        .filter(|row| {
            exact
                .iter()
                .all(|(k, v)| id_text(row.get(k).unwrap_or(&Value::Null)) == id_text(v))
        })
        .collect())
}

/// Every page of `/store/offers`.
pub async fn all_offers(
    crm: &RetailcrmClient,
    filter: &Value,
) -> Result<Vec<Value>, retailcrm::Error> {
    let mut out = Vec::new();
    each_offer_page(crm, filter, |items| out.extend(items)).await?;
    Ok(out)
}

/// Every page of `store/offers` matching `filter`, handed to `f` one at a time.
pub async fn each_offer_page(
    crm: &RetailcrmClient,
    filter: &Value,
    mut f: impl FnMut(Vec<Value>),
) -> Result<(), retailcrm::Error> {
    let limit = crm.config().page_limit;
    let mut page = 1;
    loop {
        let p = crm
            .store_offers(filter, retailcrm::PageRequest::new(page, limit))
            .await?;
        let empty = p.items.is_empty();
        let more = p.pagination.has_more();
        f(p.items);
        if empty || !more {
            return Ok(());
        }
        page += 1;
    }
}

/// Payments of an order (`order` in the filter: its id), matching the other fields.
async fn crm_payments(
    crm: &RetailcrmClient,
    filter: &Map<String, Value>,
) -> Result<Vec<Value>, WorldError> {
    let order_id = filter.get("order").or_else(|| filter.get("orderId"));
    let Some(r) = order_id.and_then(crm_ref) else {
        return Err(WorldError(
            "lookup(\"crm\", \"payment\", …) needs `order` (the order id) in the filter".into(),
        ));
    };
    let order = match crm
        .fetch(EntityKind::Order, &r, &WriteOptions::default())
        .await
    {
        Ok(o) => o,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(crm_err(e)),
    };
    let payments: Vec<Value> = match order.get("payments") {
        Some(Value::Object(m)) => m.values().cloned().collect(),
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    Ok(payments
        .into_iter()
        .filter(|p| {
            filter
                .iter()
                .filter(|(k, _)| k.as_str() != "order" && k.as_str() != "orderId")
                .all(|(k, v)| id_text(p.get(k).unwrap_or(&Value::Null)) == id_text(v))
        })
        .collect())
}

/// `/orders/packs?filter[orderId]=…`: the packs of an order, each with `orderId` added.
async fn crm_packs(
    crm: &RetailcrmClient,
    filter: &Map<String, Value>,
) -> Result<Vec<Value>, WorldError> {
    let mut query = Vec::new();
    retailcrm::flatten_query("filter", &Value::Object(filter.clone()), &mut query);
    let order_id = filter.get("orderId").cloned();
    let limit = crm.config().page_limit;
    let mut out = Vec::new();
    let mut page = 1u32;
    loop {
        let mut q = query.clone();
        q.push(("limit".into(), limit.to_string()));
        q.push(("page".into(), page.to_string()));
        let body = crm.get_raw("orders/packs", &q).await.map_err(crm_err)?;
        let packs = match body.get("packs") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let more = body
            .pointer("/pagination/totalPageCount")
            .and_then(Value::as_u64)
            .is_some_and(|total| u64::from(page) < total);
        let empty = packs.is_empty();
        for mut p in packs {
            if let (Some(m), Some(id)) = (p.as_object_mut(), order_id.as_ref()) {
                m.entry("orderId").or_insert_with(|| id.clone());
            }
            out.push(p);
        }
        if empty || !more {
            return Ok(out);
        }
        page += 1;
    }
}
