//! Individual customers, corporate customers with their contacts, companies and addresses,
//! and how orders link to them.

use serde_json::{json, Map, Value};

use super::changes::{record, shaped, Change, Feed, Mark, Shape};
use super::model::{
    as_f64, as_i64, as_string, merge, next, num, ordered, snake, Actor, Failure, State,
};
use super::orders::{check_filters, custom_fields_match, in_range, resolve_site, user_exists};
use super::params::strings;

const CUSTOMER_KEYS: &[&str] = &[
    "type",
    "id",
    "externalId",
    "isContact",
    "createdAt",
    "managerId",
    "vip",
    "bad",
    "site",
    "contragent",
    "tags",
    "marginSumm",
    "totalSumm",
    "averageSumm",
    "ordersCount",
    "costSumm",
    "customFields",
    "personalDiscount",
    "cumulativeDiscount",
    "address",
    "segments",
    "firstName",
    "lastName",
    "patronymic",
    "sex",
    "email",
    "phones",
    "birthday",
];

const CORPORATE_KEYS: &[&str] = &[
    "type",
    "id",
    "externalId",
    "nickName",
    "customerContacts",
    "addresses",
    "mainAddress",
    "createdAt",
    "managerId",
    "vip",
    "bad",
    "site",
    "tags",
    "marginSumm",
    "totalSumm",
    "averageSumm",
    "ordersCount",
    "costSumm",
    "customFields",
    "personalDiscount",
    "cumulativeDiscount",
    "companies",
    "mainCustomerContact",
    "mainCompany",
];

/// Read-only or structural input keys of customers.
const CUSTOMER_NOT_COPIED: &[&str] = &[
    "type",
    "id",
    "createdAt",
    "site",
    "marginSumm",
    "totalSumm",
    "averageSumm",
    "ordersCount",
    "costSumm",
    "segments",
    "customerContacts",
    "companies",
    "addresses",
    "mainAddress",
    "mainCustomerContact",
    "mainCompany",
];

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn id_of(v: &Value) -> Option<i64> {
    as_i64(v.get("id"))
}

/// Index of an individual customer by id, or by externalId within `site`.
pub(crate) fn find_customer(
    st: &State,
    key: &str,
    by_id: bool,
    site: Option<&str>,
) -> Option<usize> {
    find_in(&st.customers, key, by_id, site)
}

/// Index of a corporate customer.
pub(crate) fn find_corporate(
    st: &State,
    key: &str,
    by_id: bool,
    site: Option<&str>,
) -> Option<usize> {
    find_in(&st.corporate, key, by_id, site)
}

fn find_in(list: &[Value], key: &str, by_id: bool, site: Option<&str>) -> Option<usize> {
    list.iter().position(|c| {
        if by_id {
            as_string(c.get("id")).as_deref() == Some(key)
        } else {
            as_string(c.get("externalId")).as_deref() == Some(key)
                && site.is_none_or(|s| str_of(c, "site") == Some(s))
        }
    })
}

/// The externalId of a customer or corporate customer.
pub(crate) fn external_id_of(st: &State, id: i64) -> Option<String> {
    st.customers
        .iter()
        .chain(st.corporate.iter())
        .find(|c| id_of(c) == Some(id))
        .and_then(|c| as_string(c.get("externalId")))
}

fn stats(st: &State, id: i64) -> (usize, f64, f64) {
    let mut count = 0;
    let mut total = 0.0;
    let mut cost = 0.0;
    for o in &st.orders {
        if o.get("customer").and_then(id_of) == Some(id) {
            count += 1;
            total += as_f64(o.get("totalSumm")).unwrap_or(0.0);
            cost += as_f64(o.get("purchaseSumm")).unwrap_or(0.0);
        }
    }
    (count, total, cost)
}

fn with_stats(st: &State, m: &mut Map<String, Value>) {
    let id = as_i64(m.get("id")).unwrap_or(0);
    let (count, total, cost) = stats(st, id);
    m.insert("marginSumm".into(), num(total - cost));
    m.insert("totalSumm".into(), num(total));
    let avg = if count > 0 { total / count as f64 } else { 0.0 };
    m.insert("averageSumm".into(), num(avg));
    m.insert("ordersCount".into(), json!(count));
    m.insert("costSumm".into(), num(cost));
    if m.get("customFields")
        .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
    {
        m.insert("customFields".into(), json!([]));
    }
}

/// An individual customer as the API shows it.
pub(crate) fn render_customer(st: &State, c: &Value) -> Value {
    let mut m = c.as_object().cloned().unwrap_or_default();
    with_stats(st, &mut m);
    Value::Object(ordered(m, CUSTOMER_KEYS))
}

fn main_of(list: Option<&Value>) -> Option<&Value> {
    let Some(Value::Array(items)) = list else {
        return None;
    };
    items
        .iter()
        .find(|x| x.get("isMain").and_then(Value::as_bool) == Some(true))
        .or_else(|| items.first())
}

fn company_ref(c: &Value) -> Value {
    json!({"id": c.get("id"), "name": c.get("name")})
}

/// A corporate customer as `GET /customers-corporate/{id}` and the list show it (sub-lists
/// replaced by their `main*` entries).
pub(crate) fn render_corporate(st: &State, c: &Value) -> Value {
    let mut m = c.as_object().cloned().unwrap_or_default();
    let contacts = m.remove("customerContacts");
    let companies = m.remove("companies");
    let addresses = m.remove("addresses");
    if let Some(a) = main_of(addresses.as_ref()) {
        m.insert(
            "mainAddress".into(),
            json!({"id": a.get("id"), "name": a.get("name")}),
        );
    }
    if let Some(k) = main_of(contacts.as_ref()) {
        m.insert(
            "mainCustomerContact".into(),
            render_contact_link(companies.as_ref(), k, false),
        );
    }
    if let Some(co) = main_of(companies.as_ref()) {
        m.insert("mainCompany".into(), company_ref(co));
    }
    with_stats(st, &mut m);
    Value::Object(ordered(m, CORPORATE_KEYS))
}

fn render_contact_link(companies: Option<&Value>, k: &Value, with_site: bool) -> Value {
    let mut customer = Map::new();
    if let Some(c) = k.get("customer") {
        for key in ["id", "externalId", "site"] {
            if key == "site" && !with_site {
                continue;
            }
            if let Some(v) = c.get(key).filter(|v| !v.is_null()) {
                customer.insert(key.into(), v.clone());
            }
        }
    }
    let links: Vec<Value> = match k.get("companies") {
        Some(Value::Array(ls)) => ls
            .iter()
            .map(|l| {
                let cid = l.get("company").and_then(id_of);
                let name = match companies {
                    Some(Value::Array(cs)) => cs
                        .iter()
                        .find(|c| id_of(c) == cid)
                        .and_then(|c| c.get("name").cloned()),
                    _ => None,
                };
                json!({"id": l.get("id"), "company": {"id": cid, "name": name}})
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut m = Map::new();
    if with_site {
        m.insert(
            "isMain".into(),
            k.get("isMain").cloned().unwrap_or(json!(false)),
        );
    }
    m.insert("id".into(), k.get("id").cloned().unwrap_or(Value::Null));
    m.insert("customer".into(), Value::Object(customer));
    m.insert("companies".into(), Value::Array(links));
    Value::Object(m)
}

fn customer_stub(c: &Value) -> Value {
    let mut m = Map::new();
    for k in ["id", "externalId", "site"] {
        if let Some(v) = c.get(k).filter(|v| !v.is_null()) {
            m.insert(k.into(), v.clone());
        }
    }
    Value::Object(m)
}

fn check_manager(st: &State, inp: &Map<String, Value>) -> Result<(), Failure> {
    match inp.get("managerId").filter(|v| !v.is_null()) {
        None => Ok(()),
        Some(m) => match as_i64(Some(m)) {
            Some(id) if user_exists(st, id) => Ok(()),
            _ => Err(Failure::entity(
                "managerId",
                format!("User with id {m} not found."),
            )),
        },
    }
}

fn copy_fields(target: &mut Map<String, Value>, inp: &Map<String, Value>, skip: &[&str]) {
    for (k, v) in inp {
        if skip.contains(&k.as_str()) {
            continue;
        }
        match (target.get_mut(k), v) {
            (_, Value::Null) => {
                target.remove(k);
            }
            (Some(Value::Object(t)), Value::Object(p)) if k != "phones" => merge(t, p),
            (_, Value::Array(a)) if a.is_empty() && k == "customFields" => {}
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `customers/create`.
pub(crate) fn create_customer(
    st: &mut State,
    actor: &Actor,
    input: &Value,
    site: Option<&str>,
) -> Result<i64, Failure> {
    let Value::Object(inp) = input else {
        return Err(Failure::entity(
            "customer",
            "This value should be of type object.",
        ));
    };
    let site = resolve_site(st, site, str_of(input, "site"))?;
    if let Some(ext) = as_string(inp.get("externalId")) {
        if find_customer(st, &ext, false, Some(&site)).is_some() {
            return Err(Failure::new(
                400,
                "Customer with externalId already exists.",
            ));
        }
    }
    check_manager(st, inp)?;
    let now = st.tick();
    Ok(insert_customer(st, actor, inp, &site, &now))
}

fn insert_customer(
    st: &mut State,
    actor: &Actor,
    inp: &Map<String, Value>,
    site: &str,
    now: &str,
) -> i64 {
    let id = next(&mut st.seq.customer);
    let mut m = Map::new();
    m.insert("type".into(), json!("customer"));
    m.insert("id".into(), json!(id));
    m.insert("isContact".into(), json!(false));
    m.insert("createdAt".into(), json!(now));
    m.insert("vip".into(), json!(false));
    m.insert("bad".into(), json!(false));
    m.insert("site".into(), json!(site));
    m.insert("contragent".into(), json!({"contragentType": "individual"}));
    m.insert("tags".into(), json!([]));
    m.insert("customFields".into(), json!({}));
    m.insert("personalDiscount".into(), json!(0));
    m.insert("cumulativeDiscount".into(), json!(0));
    m.insert("segments".into(), json!([]));
    copy_fields(&mut m, inp, CUSTOMER_NOT_COPIED);
    if let Some(Value::Object(a)) = m.get_mut("address") {
        a.insert("id".into(), json!(next(&mut st.seq.address)));
    }
    let c = Value::Object(ordered(m, CUSTOMER_KEYS));
    st.customers.push(c.clone());
    let snapshot = render_customer(st, &c);
    record(
        st,
        Feed::Customers,
        actor,
        now,
        &snapshot,
        vec![Change::new("id", Value::Null, json!(id))],
        Mark::Created,
    );
    id
}

/// The customer retailCRM creates for an order that names none, from the order's contact
/// fields.
pub(crate) fn auto_create(
    st: &mut State,
    actor: &Actor,
    order: &Map<String, Value>,
    site: &str,
    now: &str,
) -> i64 {
    let mut inp = Map::new();
    for k in ["firstName", "lastName", "patronymic", "email"] {
        if let Some(v) = order.get(k).filter(|v| !v.is_null()) {
            inp.insert(k.into(), v.clone());
        }
    }
    if let Some(p) = order.get("phone").filter(|v| !v.is_null()) {
        inp.insert("phones".into(), json!([{ "number": p }]));
    }
    insert_customer(st, actor, &inp, site, now)
}

fn phones(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(ps)) => ps
            .iter()
            .filter_map(|p| as_string(p.get("number")).or_else(|| as_string(Some(p))))
            .collect(),
        _ => Vec::new(),
    }
}

fn obj(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    }
}

fn union<'a>(a: &'a Map<String, Value>, b: &'a Map<String, Value>) -> Vec<&'a String> {
    let mut keys: Vec<&String> = a.keys().collect();
    keys.extend(b.keys().filter(|k| !a.contains_key(*k)));
    keys
}

fn differs(a: Option<&Value>, b: Option<&Value>) -> bool {
    let n = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    n(a) != n(b)
}

const CUSTOMER_SKIP: &[&str] = &[
    "type",
    "id",
    "createdAt",
    "tags",
    "segments",
    "marginSumm",
    "totalSumm",
    "averageSumm",
    "ordersCount",
    "costSumm",
    "address",
    "contragent",
    "customFields",
    "phones",
    "customerContacts",
    "companies",
    "addresses",
];

/// Changes between two forms of a customer or corporate customer.
fn diff_customer(before: &Value, after: &Value) -> Vec<Change> {
    let (b, a) = (obj(Some(before)), obj(Some(after)));
    let mut out = Vec::new();
    for k in union(&b, &a) {
        if CUSTOMER_SKIP.contains(&k.as_str()) || !differs(b.get(k), a.get(k)) {
            continue;
        }
        let (field, shape) = match k.as_str() {
            "managerId" => ("manager".to_string(), Shape::Id),
            other => (snake(other), Shape::Plain),
        };
        out.push(Change::new(
            field,
            shaped(b.get(k), shape),
            shaped(a.get(k), shape),
        ));
    }
    let (bp, ap) = (phones(b.get("phones")), phones(a.get("phones")));
    for p in bp.iter().filter(|p| !ap.contains(p)) {
        out.push(Change::new("phones", json!(p), Value::Null));
    }
    for p in ap.iter().filter(|p| !bp.contains(p)) {
        out.push(Change::new("phones", Value::Null, json!(p)));
    }
    let (ba, aa) = (obj(b.get("address")), obj(a.get("address")));
    let address_stub = json!({"id": aa.get("id").or(ba.get("id")), "isMain": true});
    for k in union(&ba, &aa) {
        if k != "id" && differs(ba.get(k), aa.get(k)) {
            out.push(
                Change::new(
                    format!("address.{}", snake(k)),
                    shaped(ba.get(k), Shape::Plain),
                    shaped(aa.get(k), Shape::Plain),
                )
                .with("address", address_stub.clone()),
            );
        }
    }
    for (container, prefix) in [("contragent", "contragent."), ("customFields", "custom_")] {
        let (x, y) = (obj(b.get(container)), obj(a.get(container)));
        for k in union(&x, &y) {
            if differs(x.get(k), y.get(k)) {
                let name = if container == "customFields" {
                    format!("{prefix}{k}")
                } else {
                    format!("{prefix}{}", snake(k))
                };
                out.push(Change::new(
                    name,
                    shaped(x.get(k), Shape::Plain),
                    shaped(y.get(k), Shape::Plain),
                ));
            }
        }
    }
    out
}

/// `customers/{id}/edit`.
pub(crate) fn edit_customer(
    st: &mut State,
    actor: &Actor,
    idx: usize,
    input: &Value,
) -> Result<(), Failure> {
    let Value::Object(inp) = input else {
        return Err(Failure::entity(
            "customer",
            "This value should be of type object.",
        ));
    };
    check_manager(st, inp)?;
    let Some(before) = st.customers.get(idx).cloned() else {
        return Err(Failure::not_found());
    };
    if let Some(ext) = as_string(inp.get("externalId")) {
        let site = str_of(&before, "site").map(str::to_string);
        if find_customer(st, &ext, false, site.as_deref()).is_some_and(|i| i != idx) {
            return Err(Failure::new(
                400,
                "Customer with externalId already exists.",
            ));
        }
    }
    let now = st.tick();
    let new_address_id = if before.get("address").is_none() && inp.get("address").is_some() {
        Some(next(&mut st.seq.address))
    } else {
        None
    };
    let Some(Value::Object(m)) = st.customers.get_mut(idx) else {
        return Err(Failure::not_found());
    };
    copy_fields(m, inp, CUSTOMER_NOT_COPIED);
    if let (Some(id), Some(Value::Object(a))) = (new_address_id, m.get_mut("address")) {
        a.insert("id".into(), json!(id));
    }
    let after = Value::Object(m.clone());
    let changes = diff_customer(&before, &after);
    if !changes.is_empty() {
        record(
            st,
            Feed::Customers,
            actor,
            &now,
            &customer_stub(&after),
            changes,
            Mark::Change,
        );
    }
    Ok(())
}

const CUSTOMER_FILTERS: &[&str] = &[
    "ids",
    "externalIds",
    "email",
    "name",
    "sites",
    "managers",
    "dateFrom",
    "dateTo",
    "customFields",
    "contragentInn",
    "isContact",
];

const CORPORATE_FILTERS: &[&str] = &[
    "ids",
    "externalIds",
    "nickName",
    "sites",
    "managers",
    "contragentInn",
    "companyName",
    "contactIds",
    "customFields",
];

fn customer_matches(c: &Value, f: &Map<String, Value>) -> bool {
    let one_of = |key: &str, val: Option<String>| match f.get(key) {
        None => true,
        Some(v) => val.is_some_and(|x| strings(v).contains(&x)),
    };
    let contains = |key: &str, hay: String| match f.get(key).and_then(Value::as_str) {
        None => true,
        Some(n) => hay.to_lowercase().contains(&n.to_lowercase()),
    };
    let name = ["lastName", "firstName", "patronymic"]
        .iter()
        .filter_map(|k| str_of(c, k))
        .collect::<Vec<_>>()
        .join(" ");
    let phone_hit = f
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| phones(c.get("phones")).iter().any(|p| p.contains(n)));
    one_of("ids", as_string(c.get("id")))
        && one_of("externalIds", as_string(c.get("externalId")))
        && one_of("sites", as_string(c.get("site")))
        && one_of("managers", as_string(c.get("managerId")))
        && f.get("email")
            .and_then(Value::as_str)
            .is_none_or(|e| str_of(c, "email").is_some_and(|x| x.eq_ignore_ascii_case(e)))
        && (contains("name", name) || phone_hit)
        && in_range(str_of(c, "createdAt"), f.get("dateFrom"), f.get("dateTo"))
        && f.get("contragentInn")
            .and_then(Value::as_str)
            .is_none_or(|inn| c.get("contragent").and_then(|x| str_of(x, "INN")) == Some(inn))
        && f.get("isContact").is_none_or(|v| {
            let want = strings(v).first().map(|s| s == "1" || s == "true");
            want == c.get("isContact").and_then(Value::as_bool)
        })
        && custom_fields_match(c, f.get("customFields"))
}

fn corporate_matches(c: &Value, f: &Map<String, Value>) -> bool {
    let one_of = |key: &str, val: Option<String>| match f.get(key) {
        None => true,
        Some(v) => val.is_some_and(|x| strings(v).contains(&x)),
    };
    let companies: Vec<&Value> = match c.get("companies") {
        Some(Value::Array(cs)) => cs.iter().collect(),
        _ => Vec::new(),
    };
    one_of("ids", as_string(c.get("id")))
        && one_of("externalIds", as_string(c.get("externalId")))
        && one_of("nickName", as_string(c.get("nickName")))
        && one_of("sites", as_string(c.get("site")))
        && one_of("managers", as_string(c.get("managerId")))
        && f.get("contragentInn")
            .and_then(Value::as_str)
            .is_none_or(|inn| {
                companies
                    .iter()
                    .any(|co| co.get("contragent").and_then(|x| str_of(x, "INN")) == Some(inn))
            })
        && f.get("companyName")
            .and_then(Value::as_str)
            .is_none_or(|n| {
                companies.iter().any(|co| {
                    str_of(co, "name").is_some_and(|x| x.to_lowercase().contains(&n.to_lowercase()))
                })
            })
        && f.get("contactIds").is_none_or(|v| {
            let want = strings(v);
            match c.get("customerContacts") {
                Some(Value::Array(ks)) => ks.iter().any(|k| {
                    k.get("customer")
                        .and_then(|x| as_string(x.get("id")))
                        .is_some_and(|id| want.contains(&id))
                }),
                _ => false,
            }
        })
        && custom_fields_match(c, f.get("customFields"))
}

/// Customers matching `filter`, newest first.
pub(crate) fn list_customers<'a>(
    st: &'a State,
    f: &Map<String, Value>,
) -> Result<Vec<&'a Value>, Failure> {
    check_filters(f, CUSTOMER_FILTERS)?;
    let mut out: Vec<&Value> = st
        .customers
        .iter()
        .filter(|c| customer_matches(c, f))
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(id_of(c).unwrap_or(0)));
    Ok(out)
}

/// Corporate customers matching `filter`, newest first.
pub(crate) fn list_corporate<'a>(
    st: &'a State,
    f: &Map<String, Value>,
) -> Result<Vec<&'a Value>, Failure> {
    check_filters(f, CORPORATE_FILTERS)?;
    let mut out: Vec<&Value> = st
        .corporate
        .iter()
        .filter(|c| corporate_matches(c, f))
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(id_of(c).unwrap_or(0)));
    Ok(out)
}

/// Resolves an individual customer reference `{id}` / `{externalId, site}`.
fn individual_ref(st: &State, r: &Value, site: &str, field: &str) -> Result<i64, Failure> {
    let found = if let Some(id) = as_string(r.get("id")) {
        find_customer(st, &id, true, None).ok_or_else(|| {
            (
                format!("{field}.id"),
                format!("Customer with id={id} not found."),
            )
        })
    } else if let Some(ext) = as_string(r.get("externalId")) {
        let s = str_of(r, "site").unwrap_or(site);
        find_customer(st, &ext, false, Some(s)).ok_or_else(|| {
            (
                format!("{field}.externalId"),
                format!("Customer with externalId={ext} not found."),
            )
        })
    } else {
        Err((
            field.to_string(),
            "Set one of the following fields: id, externalId".to_string(),
        ))
    };
    match found {
        Ok(i) => Ok(id_of(&st.customers[i]).unwrap_or(0)),
        Err((k, msg)) => Err(Failure::entity(&k, msg)),
    }
}

/// Resolves an order's `customer` (and for corporate customers `contact`, `company`) into
/// internal links.
pub(crate) fn resolve_order_links(
    st: &State,
    customer: &Value,
    contact: Option<&Value>,
    company: Option<&Value>,
    site: &str,
) -> Result<(Value, Option<Value>, Option<Value>), Failure> {
    let corporate_hint = str_of(customer, "type") == Some("customer_corporate");
    let not_loaded = |key: &str, val: String| {
        Failure::new(400, "Order is not loaded").with_errors(json!({
            format!("customer.{key}"): format!("Customer with {key}={val} not found.")
        }))
    };
    let (key, by_id, value) = if let Some(id) = as_string(customer.get("id")) {
        ("id", true, id)
    } else if let Some(ext) = as_string(customer.get("externalId")) {
        ("externalId", false, ext)
    } else {
        return Err(Failure::entity(
            "customer",
            "Set one of the following fields: id, externalId",
        ));
    };
    let s = str_of(customer, "site").or(Some(site));
    let s = if by_id { None } else { s };
    if !corporate_hint {
        if let Some(i) = find_customer(st, &value, by_id, s) {
            return Ok((
                json!({"id": id_of(&st.customers[i]), "type": "customer"}),
                None,
                None,
            ));
        }
    }
    let Some(ci) = find_corporate(st, &value, by_id, s) else {
        return Err(not_loaded(key, value));
    };
    let corp = &st.corporate[ci];
    let contact_id = match contact.filter(|v| !v.is_null()) {
        Some(r) => Some(individual_ref(st, r, site, "contact")?),
        None => main_of(corp.get("customerContacts"))
            .and_then(|k| k.get("customer"))
            .and_then(id_of),
    };
    let company_id = match company.filter(|v| !v.is_null()) {
        Some(r) => {
            let companies: Vec<&Value> = match corp.get("companies") {
                Some(Value::Array(cs)) => cs.iter().collect(),
                _ => Vec::new(),
            };
            let hit = companies.iter().find(|c| {
                (r.get("id").is_some() && as_i64(r.get("id")) == id_of(c))
                    || (r.get("externalId").is_some()
                        && as_string(r.get("externalId")) == as_string(c.get("externalId")))
            });
            match hit {
                Some(c) => id_of(c),
                None => return Err(Failure::entity("company", "Company not found.")),
            }
        }
        None => main_of(corp.get("companies")).and_then(id_of),
    };
    Ok((
        json!({"id": id_of(corp), "type": "customer_corporate"}),
        contact_id.map(|id| json!({ "id": id })),
        company_id.map(|id| json!({ "id": id })),
    ))
}

fn render_company(corp: &Value, c: &Value) -> Value {
    let mut m = c.as_object().cloned().unwrap_or_default();
    m.insert(
        "customer".into(),
        json!({"site": corp.get("site"), "id": corp.get("id"), "externalId": corp.get("externalId"), "type": "customer_corporate"}),
    );
    if m.get("customFields")
        .is_none_or(|v| v.as_object().is_some_and(Map::is_empty))
    {
        m.insert("customFields".into(), json!([]));
    }
    Value::Object(ordered(
        m,
        &[
            "isMain",
            "id",
            "externalId",
            "customer",
            "active",
            "name",
            "brand",
            "site",
            "createdAt",
            "contragent",
            "address",
        ],
    ))
}

/// Replaces an order's internal links with the customer, contact and company as the API
/// embeds them.
pub(crate) fn expand_order_links(st: &State, m: &mut Map<String, Value>) {
    let Some(link) = m.get("customer").cloned() else {
        return;
    };
    let id = id_of(&link);
    if str_of(&link, "type") == Some("customer_corporate") {
        let Some(corp) = st.corporate.iter().find(|c| id_of(c) == id) else {
            return;
        };
        m.insert("customer".into(), render_corporate(st, corp));
        if let Some(cid) = m.get("contact").and_then(id_of) {
            if let Some(c) = st.customers.iter().find(|c| id_of(c) == Some(cid)) {
                m.insert("contact".into(), render_customer(st, c));
            }
        }
        if let Some(coid) = m.get("company").and_then(id_of) {
            if let Some(Value::Array(cs)) = corp.get("companies") {
                if let Some(co) = cs.iter().find(|c| id_of(c) == Some(coid)) {
                    m.insert("company".into(), render_company(corp, co));
                }
            }
        }
    } else if let Some(c) = st.customers.iter().find(|c| id_of(c) == id) {
        let rendered = render_customer(st, c);
        m.insert("customer".into(), rendered.clone());
        m.insert("contact".into(), rendered);
    }
}

// ----- corporate customers -----

fn company_from(
    st: &mut State,
    inp: &Value,
    addresses: &[Value],
    now: &str,
    main_default: bool,
) -> Result<Value, Failure> {
    let Value::Object(c) = inp else {
        return Err(Failure::entity(
            "company",
            "This value should be of type object.",
        ));
    };
    let Some(name) = as_string(c.get("name")) else {
        return Err(Failure::entity(
            "company.name",
            "This value should not be blank.",
        ));
    };
    let mut m = Map::new();
    m.insert(
        "isMain".into(),
        c.get("isMain").cloned().unwrap_or(json!(main_default)),
    );
    m.insert("id".into(), json!(next(&mut st.seq.company)));
    if let Some(x) = c.get("externalId").filter(|v| !v.is_null()) {
        m.insert("externalId".into(), x.clone());
    }
    m.insert(
        "active".into(),
        c.get("active").cloned().unwrap_or(json!(true)),
    );
    m.insert("name".into(), json!(name));
    for k in ["brand", "site"] {
        if let Some(v) = c.get(k).filter(|v| !v.is_null()) {
            m.insert(k.into(), v.clone());
        }
    }
    m.insert("createdAt".into(), json!(now));
    m.insert(
        "contragent".into(),
        c.get("contragent")
            .cloned()
            .unwrap_or(json!({"contragentType": "legal-entity"})),
    );
    if let Some(a) = c.get("address") {
        let hit = addresses.iter().find(|x| {
            (a.get("id").is_some() && as_i64(a.get("id")) == id_of(x))
                || (a.get("externalId").is_some()
                    && as_string(a.get("externalId")) == as_string(x.get("externalId")))
        });
        match hit {
            Some(x) => {
                m.insert(
                    "address".into(),
                    json!({"id": x.get("id"), "name": x.get("name")}),
                );
            }
            None => return Err(Failure::entity("company.address", "Address not found.")),
        }
    }
    m.insert(
        "customFields".into(),
        c.get("customFields").cloned().unwrap_or(json!({})),
    );
    Ok(Value::Object(m))
}

fn address_from(st: &mut State, inp: &Value, main_default: bool) -> Result<Value, Failure> {
    let Value::Object(a) = inp else {
        return Err(Failure::entity(
            "address",
            "This value should be of type object.",
        ));
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(next(&mut st.seq.address)));
    m.insert(
        "isMain".into(),
        a.get("isMain").cloned().unwrap_or(json!(main_default)),
    );
    for (k, v) in a {
        if k != "id" && k != "isMain" && !v.is_null() {
            m.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(m))
}

fn contact_from(
    st: &mut State,
    inp: &Value,
    companies: &[Value],
    site: &str,
    main_default: bool,
) -> Result<Value, Failure> {
    let Some(r) = inp.get("customer") else {
        return Err(Failure::entity(
            "contact.customer",
            "This value should not be blank.",
        ));
    };
    let cid = individual_ref(st, r, site, "customer")?;
    let (ext, csite) = st
        .customers
        .iter()
        .find(|c| id_of(c) == Some(cid))
        .map(|c| (c.get("externalId").cloned(), c.get("site").cloned()))
        .unwrap_or((None, None));
    let mut links = Vec::new();
    if let Some(Value::Array(cs)) = inp.get("companies") {
        for l in cs {
            let r = l.get("company").unwrap_or(l);
            let hit = companies.iter().find(|c| {
                (r.get("id").is_some() && as_i64(r.get("id")) == id_of(c))
                    || (r.get("externalId").is_some()
                        && as_string(r.get("externalId")) == as_string(c.get("externalId")))
            });
            match hit {
                Some(c) => links.push(json!({"id": next(&mut st.seq.contact_company), "company": {"id": c.get("id")}})),
                None => return Err(Failure::entity("contact.companies", "Company not found.")),
            }
        }
    }
    let mut customer = Map::new();
    customer.insert("id".into(), json!(cid));
    if let Some(x) = ext.filter(|v| !v.is_null()) {
        customer.insert("externalId".into(), x);
    }
    if let Some(s) = csite {
        customer.insert("site".into(), s);
    }
    Ok(json!({
        "isMain": inp.get("isMain").cloned().unwrap_or(json!(main_default)),
        "id": next(&mut st.seq.contact),
        "customer": customer,
        "companies": links,
    }))
}

/// `customers-corporate/create`, with nested `addresses`, `companies`, `customerContacts`.
pub(crate) fn create_corporate(
    st: &mut State,
    actor: &Actor,
    input: &Value,
    site: Option<&str>,
) -> Result<i64, Failure> {
    let Value::Object(inp) = input else {
        return Err(Failure::entity(
            "customerCorporate",
            "This value should be of type object.",
        ));
    };
    let site = resolve_site(st, site, str_of(input, "site"))?;
    if let Some(ext) = as_string(inp.get("externalId")) {
        if find_corporate(st, &ext, false, Some(&site)).is_some() {
            return Err(Failure::new(
                400,
                "Corporate customer with externalId already exists.",
            ));
        }
    }
    if as_string(inp.get("nickName")).is_none() {
        return Err(Failure::entity(
            "nickName",
            "This value should not be blank.",
        ));
    }
    check_manager(st, inp)?;
    let now = st.tick();
    let mut addresses = Vec::new();
    if let Some(Value::Array(list)) = inp.get("addresses") {
        for (i, a) in list.iter().enumerate() {
            addresses.push(address_from(st, a, i == 0)?);
        }
    }
    let mut companies = Vec::new();
    if let Some(Value::Array(list)) = inp.get("companies") {
        for (i, c) in list.iter().enumerate() {
            companies.push(company_from(st, c, &addresses, &now, i == 0)?);
        }
    }
    let mut contacts = Vec::new();
    if let Some(Value::Array(list)) = inp.get("customerContacts") {
        for (i, k) in list.iter().enumerate() {
            contacts.push(contact_from(st, k, &companies, &site, i == 0)?);
        }
    }
    let id = next(&mut st.seq.customer);
    let mut m = Map::new();
    m.insert("type".into(), json!("customer_corporate"));
    m.insert("id".into(), json!(id));
    m.insert("createdAt".into(), json!(now));
    m.insert("vip".into(), json!(false));
    m.insert("bad".into(), json!(false));
    m.insert("site".into(), json!(site));
    m.insert("tags".into(), json!([]));
    m.insert("customFields".into(), json!({}));
    m.insert("personalDiscount".into(), json!(0));
    m.insert("cumulativeDiscount".into(), json!(0));
    copy_fields(&mut m, inp, CUSTOMER_NOT_COPIED);
    m.insert("customerContacts".into(), Value::Array(contacts));
    m.insert("addresses".into(), Value::Array(addresses));
    m.insert("companies".into(), Value::Array(companies));
    let c = Value::Object(ordered(m, CORPORATE_KEYS));
    st.corporate.push(c.clone());
    let mut snapshot = c.as_object().cloned().unwrap_or_default();
    with_stats(st, &mut snapshot);
    record(
        st,
        Feed::Corporate,
        actor,
        &now,
        &Value::Object(snapshot),
        vec![Change::new("id", Value::Null, json!(id))],
        Mark::Created,
    );
    Ok(id)
}

/// `customers-corporate/{id}/edit` (top-level fields; sub-entities have their own calls).
pub(crate) fn edit_corporate(
    st: &mut State,
    actor: &Actor,
    idx: usize,
    input: &Value,
) -> Result<(), Failure> {
    let Value::Object(inp) = input else {
        return Err(Failure::entity(
            "customerCorporate",
            "This value should be of type object.",
        ));
    };
    check_manager(st, inp)?;
    let Some(before) = st.corporate.get(idx).cloned() else {
        return Err(Failure::not_found());
    };
    if let Some(ext) = as_string(inp.get("externalId")) {
        let site = str_of(&before, "site").map(str::to_string);
        if find_corporate(st, &ext, false, site.as_deref()).is_some_and(|i| i != idx) {
            return Err(Failure::new(
                400,
                "Corporate customer with externalId already exists.",
            ));
        }
    }
    let now = st.tick();
    let Some(Value::Object(m)) = st.corporate.get_mut(idx) else {
        return Err(Failure::not_found());
    };
    copy_fields(m, inp, CUSTOMER_NOT_COPIED);
    let after = Value::Object(m.clone());
    let changes = diff_customer(&before, &after);
    if !changes.is_empty() {
        record(
            st,
            Feed::Corporate,
            actor,
            &now,
            &customer_stub(&after),
            changes,
            Mark::Change,
        );
    }
    Ok(())
}

/// Which sub-collection of a corporate customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sub {
    Contacts,
    Companies,
    Addresses,
}

impl Sub {
    fn key(self) -> &'static str {
        match self {
            Sub::Contacts => "customerContacts",
            Sub::Companies => "companies",
            Sub::Addresses => "addresses",
        }
    }
}

/// The rows of a sub-collection as `GET /customers-corporate/{id}/{sub}` shows them.
pub(crate) fn list_sub(corp: &Value, sub: Sub) -> Vec<Value> {
    let rows: Vec<Value> = match corp.get(sub.key()) {
        Some(Value::Array(r)) => r.clone(),
        _ => Vec::new(),
    };
    match sub {
        Sub::Contacts => rows
            .iter()
            .map(|k| render_contact_link(corp.get("companies"), k, true))
            .collect(),
        Sub::Companies => rows.iter().map(|c| render_company(corp, c)).collect(),
        Sub::Addresses => rows,
    }
}

/// Creates a contact / company / address under corporate customer `idx`.
pub(crate) fn create_sub(
    st: &mut State,
    actor: &Actor,
    idx: usize,
    sub: Sub,
    input: &Value,
) -> Result<i64, Failure> {
    let Some(corp) = st.corporate.get(idx).cloned() else {
        return Err(Failure::not_found());
    };
    let now = st.tick();
    let site = str_of(&corp, "site").unwrap_or_default().to_string();
    let existing: Vec<Value> = match corp.get(sub.key()) {
        Some(Value::Array(r)) => r.clone(),
        _ => Vec::new(),
    };
    let first = existing.is_empty();
    let row = match sub {
        Sub::Contacts => {
            let companies = match corp.get("companies") {
                Some(Value::Array(r)) => r.clone(),
                _ => Vec::new(),
            };
            contact_from(st, input, &companies, &site, first)?
        }
        Sub::Companies => {
            let addresses = match corp.get("addresses") {
                Some(Value::Array(r)) => r.clone(),
                _ => Vec::new(),
            };
            company_from(st, input, &addresses, &now, first)?
        }
        Sub::Addresses => address_from(st, input, first)?,
    };
    let id = id_of(&row).unwrap_or(0);
    let is_main = row.get("isMain").and_then(Value::as_bool) == Some(true);
    if let Some(Value::Array(r)) = st.corporate[idx].get_mut(sub.key()) {
        if is_main {
            for x in r.iter_mut() {
                if let Some(m) = x.as_object_mut() {
                    m.insert("isMain".into(), json!(false));
                }
            }
        }
        r.push(row.clone());
    }
    let mut changes = Vec::new();
    match sub {
        Sub::Contacts => {
            let stub = json!({"id": id, "customer": {"id": row.get("customer").and_then(id_of)}});
            changes.push(
                Change::new("contact", Value::Null, json!({ "id": id }))
                    .with("customerContact", stub),
            );
            if is_main {
                changes.push(Change::new(
                    "main_contact",
                    Value::Null,
                    json!({ "id": id }),
                ));
            }
        }
        Sub::Companies => {
            changes.push(
                Change::new("company", Value::Null, company_ref(&row)).with("company", row.clone()),
            );
            if is_main {
                changes.push(Change::new("main_company", Value::Null, company_ref(&row)));
            }
        }
        Sub::Addresses => {
            changes.push(
                Change::new(
                    "address",
                    Value::Null,
                    json!({"id": id, "name": row.get("name")}),
                )
                .with("address", row.clone()),
            );
        }
    }
    let stub = customer_stub(&st.corporate[idx]);
    record(
        st,
        Feed::Corporate,
        actor,
        &now,
        &stub,
        changes,
        Mark::Change,
    );
    Ok(id)
}

/// Deletes individual customer `idx`: a `deleted` record with its last snapshot.
pub(crate) fn delete_customer(st: &mut State, actor: &Actor, idx: usize) {
    let now = st.tick();
    let c = st.customers.remove(idx);
    let snapshot = render_customer(st, &c);
    let id = c.get("id").cloned().unwrap_or(Value::Null);
    record(
        st,
        Feed::Customers,
        actor,
        &now,
        &snapshot,
        vec![Change::new("id", id, Value::Null)],
        Mark::Deleted,
    );
}

/// Edits a contact / company / address of corporate customer `idx`. Contacts are found by
/// their id (`entityBy=id`) or their person's externalId; companies and addresses by id or
/// externalId.
pub(crate) fn edit_sub(
    st: &mut State,
    actor: &Actor,
    idx: usize,
    sub: Sub,
    key: &str,
    by_id: bool,
    input: &Value,
) -> Result<i64, Failure> {
    let Value::Object(inp) = input else {
        return Err(Failure::entity(
            "entity",
            "This value should be of type object.",
        ));
    };
    let Some(corp) = st.corporate.get(idx).cloned() else {
        return Err(Failure::not_found());
    };
    let rows: Vec<Value> = match corp.get(sub.key()) {
        Some(Value::Array(r)) => r.clone(),
        _ => Vec::new(),
    };
    let pos = rows.iter().position(|r| {
        if by_id {
            as_string(r.get("id")).as_deref() == Some(key)
        } else if sub == Sub::Contacts {
            r.get("customer")
                .and_then(|c| as_string(c.get("externalId")))
                .as_deref()
                == Some(key)
        } else {
            as_string(r.get("externalId")).as_deref() == Some(key)
        }
    });
    let Some(pos) = pos else {
        return Err(Failure::not_found());
    };
    let now = st.tick();
    let before = rows[pos].clone();
    let mut after = before.as_object().cloned().unwrap_or_default();
    let mut new_links = Vec::new();
    match sub {
        Sub::Contacts => {
            if let Some(v) = inp.get("isMain") {
                after.insert("isMain".into(), v.clone());
            }
            if let Some(Value::Array(cs)) = inp.get("companies") {
                let companies = match corp.get("companies") {
                    Some(Value::Array(r)) => r.clone(),
                    _ => Vec::new(),
                };
                let mut links = Vec::new();
                for l in cs {
                    let r = l.get("company").unwrap_or(l);
                    let Some(c) = companies.iter().find(|c| {
                        (r.get("id").is_some() && as_i64(r.get("id")) == id_of(c))
                            || (r.get("externalId").is_some()
                                && as_string(r.get("externalId")) == as_string(c.get("externalId")))
                    }) else {
                        return Err(Failure::entity("contact.companies", "Company not found."));
                    };
                    let existing =
                        before
                            .get("companies")
                            .and_then(Value::as_array)
                            .and_then(|ls| {
                                ls.iter()
                                    .find(|x| x.get("company").and_then(id_of) == id_of(c))
                                    .cloned()
                            });
                    match existing {
                        Some(x) => links.push(x),
                        None => {
                            let link_id = next(&mut st.seq.contact_company);
                            new_links.push((link_id, company_ref(c)));
                            links.push(json!({"id": link_id, "company": {"id": c.get("id")}}));
                        }
                    }
                }
                after.insert("companies".into(), Value::Array(links));
            }
        }
        Sub::Companies | Sub::Addresses => {
            copy_fields(&mut after, inp, &["id", "createdAt", "customer"]);
        }
    }
    let after = Value::Object(after);
    if let Some(Value::Array(r)) = st.corporate[idx].get_mut(sub.key()) {
        if after.get("isMain").and_then(Value::as_bool) == Some(true) {
            for x in r.iter_mut() {
                if let Some(m) = x.as_object_mut() {
                    m.insert("isMain".into(), json!(false));
                }
            }
        }
        if let Some(slot) = r.get_mut(pos) {
            *slot = after.clone();
        }
    }
    let id = id_of(&after).unwrap_or(0);
    let mut changes = Vec::new();
    let became_main = before.get("isMain").and_then(Value::as_bool) != Some(true)
        && after.get("isMain").and_then(Value::as_bool) == Some(true);
    match sub {
        Sub::Contacts => {
            for (link_id, company) in new_links {
                changes.push(
                    Change::new(
                        "contact.contact_company",
                        Value::Null,
                        json!({"id": link_id, "customer_contact": {"id": id}}),
                    )
                    .with("company", company)
                    .with("customerContact", json!({ "id": id })),
                );
            }
            if became_main {
                changes.push(Change::new(
                    "main_contact",
                    Value::Null,
                    json!({ "id": id }),
                ));
            }
        }
        Sub::Companies => {
            let (b, a) = (obj(Some(&before)), obj(Some(&after)));
            for k in union(&b, &a) {
                if matches!(k.as_str(), "id" | "isMain" | "createdAt") {
                    continue;
                }
                if k == "contragent" || k == "customFields" {
                    let (x, y) = (obj(b.get(k)), obj(a.get(k)));
                    for kk in union(&x, &y) {
                        if differs(x.get(kk), y.get(kk)) {
                            let name = if k == "contragent" {
                                format!("company.contragent.{}", snake(kk))
                            } else {
                                format!("company.custom_{kk}")
                            };
                            changes.push(
                                Change::new(
                                    name,
                                    shaped(x.get(kk), Shape::Plain),
                                    shaped(y.get(kk), Shape::Plain),
                                )
                                .with("company", company_ref(&after)),
                            );
                        }
                    }
                } else if differs(b.get(k), a.get(k)) {
                    changes.push(
                        Change::new(
                            format!("company.{}", snake(k)),
                            shaped(b.get(k), Shape::Plain),
                            shaped(a.get(k), Shape::Plain),
                        )
                        .with("company", company_ref(&after)),
                    );
                }
            }
            if became_main {
                changes.push(Change::new(
                    "main_company",
                    Value::Null,
                    company_ref(&after),
                ));
            }
        }
        Sub::Addresses => {
            let (b, a) = (obj(Some(&before)), obj(Some(&after)));
            for k in union(&b, &a) {
                if k != "id" && differs(b.get(k), a.get(k)) {
                    changes.push(
                        Change::new(
                            format!("address.{}", snake(k)),
                            shaped(b.get(k), Shape::Plain),
                            shaped(a.get(k), Shape::Plain),
                        )
                        .with("address", json!({"id": id, "name": after.get("name")})),
                    );
                }
            }
        }
    }
    if !changes.is_empty() {
        let stub = customer_stub(&st.corporate[idx]);
        record(
            st,
            Feed::Corporate,
            actor,
            &now,
            &stub,
            changes,
            Mark::Change,
        );
    }
    Ok(id)
}
