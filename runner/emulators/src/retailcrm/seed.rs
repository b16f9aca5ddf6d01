//! Seeding: reference books, users, custom fields, catalog, customers and orders, from a
//! serializable [`Seed`]. Customers and orders are created through the same code as the API
//! (as a CRM user), so they carry history from the start; an order's `statusPath` walks it
//! through several statuses, leaving a status history behind.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::customers;
use super::model::{as_f64, as_i64, as_string, next, Actor, Failure, Offer, State, StoreStock};
use super::orders;

/// A sample account: references, catalog, customers, orders.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Seed {
    /// Sites (shops), each with a `code`.
    pub sites: Vec<Value>,
    /// Stores, each with a `code`.
    pub stores: Vec<Value>,
    /// Status groups, each with a `code`.
    pub status_groups: Vec<Value>,
    /// Order statuses, each with a `code` and a `group`.
    pub statuses: Vec<Value>,
    /// Item statuses.
    pub product_statuses: Vec<Value>,
    /// Payment types.
    pub payment_types: Vec<Value>,
    /// Payment statuses (`paymentComplete` marks "paid").
    pub payment_statuses: Vec<Value>,
    /// Delivery types.
    pub delivery_types: Vec<Value>,
    /// Order types.
    pub order_types: Vec<Value>,
    /// Order methods.
    pub order_methods: Vec<Value>,
    /// Price types.
    pub price_types: Vec<Value>,
    /// Users (with `id`).
    pub users: Vec<Value>,
    /// Custom field definitions.
    pub custom_fields: Vec<Value>,
    /// Custom dictionaries.
    pub custom_dictionaries: Vec<Value>,
    /// Offers: `{externalId, xmlId, name, article, site, price, purchasePrice, vatRate,
    /// product: {externalId, name, type}, stores: {code: quantity}}`.
    pub offers: Vec<Value>,
    /// Individual customers (API `customer` shape, with `site`).
    pub customers: Vec<Value>,
    /// Corporate customers (API `customerCorporate` shape, with nested contacts/companies).
    pub corporate_customers: Vec<Value>,
    /// Orders (API `order` shape, with `site`); `statusPath: [..]` (seed only) creates the
    /// order in the first status and moves it through the others.
    pub orders: Vec<Value>,
    /// The user who "works" the seeded entities (default: the first user).
    pub acting_user: Option<i64>,
}

/// Ids of what a seed created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedReport {
    /// Customer ids, in seed order.
    pub customers: Vec<i64>,
    /// Corporate customer ids.
    pub corporate_customers: Vec<i64>,
    /// Order ids.
    pub orders: Vec<i64>,
    /// Offer ids.
    pub offers: Vec<i64>,
}

/// The sample shop used by `skladsync demo` and the integration tests: two sites, two stores,
/// the default status groups and statuses, item statuses with cancel flags, payment and
/// delivery types, users, custom fields, a catalog with variants (`product#variant` xmlIds),
/// individual and corporate customers, and orders in several statuses with items and payments.
pub fn sample_shop() -> Result<Seed, serde_json::Error> {
    serde_json::from_str(include_str!("sample_shop.json"))
}

fn keyed(list: &[Value], what: &str) -> Result<IndexMap<String, Value>, Failure> {
    let mut out = IndexMap::new();
    for v in list {
        let Some(code) = as_string(v.get("code")) else {
            return Err(Failure::new(
                400,
                format!("seed: every {what} needs a `code`: {v}"),
            ));
        };
        out.insert(code, v.clone());
    }
    Ok(out)
}

fn extend(target: &mut IndexMap<String, Value>, list: &[Value], what: &str) -> Result<(), Failure> {
    target.extend(keyed(list, what)?);
    Ok(())
}

fn offer_from(
    st: &mut State,
    v: &Value,
    products: &mut IndexMap<String, i64>,
) -> Result<Offer, Failure> {
    let Some(name) = as_string(v.get("name")) else {
        return Err(Failure::new(
            400,
            format!("seed: offer without `name`: {v}"),
        ));
    };
    let Some(site) =
        as_string(v.get("site")).or_else(|| st.references.sites.keys().next().cloned())
    else {
        return Err(Failure::new(400, "seed: offers need a site"));
    };
    let mut product = v
        .get("product")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(Map::new);
    let pkey = as_string(product.get("externalId")).unwrap_or_else(|| name.clone());
    let pid = match products.get(&pkey) {
        Some(id) => *id,
        None => {
            let id = next(&mut st.seq.product);
            products.insert(pkey, id);
            id
        }
    };
    product.insert("id".into(), Value::from(pid));
    product
        .entry("name")
        .or_insert_with(|| Value::String(name.clone()));
    product
        .entry("type")
        .or_insert_with(|| Value::String("product".into()));
    product.entry("active").or_insert(Value::Bool(true));
    let mut stores = IndexMap::new();
    match v.get("stores") {
        Some(Value::Object(m)) => {
            for (code, q) in m {
                let stock = match q {
                    Value::Object(_) => StoreStock {
                        quantity: as_f64(q.get("quantity")).unwrap_or(0.0),
                        purchase_price: as_f64(q.get("purchasePrice")),
                    },
                    other => StoreStock {
                        quantity: as_f64(Some(other)).unwrap_or(0.0),
                        purchase_price: None,
                    },
                };
                stores.insert(code.clone(), stock);
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => {
            return Err(Failure::new(
                400,
                format!("seed: offer `stores` must be an object: {other}"),
            ))
        }
    }
    let id = match as_i64(v.get("id")) {
        Some(id) => id,
        None => next(&mut st.seq.offer),
    };
    Ok(Offer {
        id,
        external_id: as_string(v.get("externalId")),
        xml_id: as_string(v.get("xmlId")),
        name,
        article: as_string(v.get("article")),
        site,
        price: as_f64(v.get("price")).unwrap_or(0.0),
        purchase_price: as_f64(v.get("purchasePrice")),
        vat_rate: as_string(v.get("vatRate")),
        active: v.get("active").and_then(Value::as_bool).unwrap_or(true),
        product: Value::Object(product),
        unit: v.get("unit").cloned(),
        stores,
    })
}

/// Applies a seed to the state.
pub(crate) fn apply(st: &mut State, seed: &Seed) -> Result<SeedReport, Failure> {
    let r = &mut st.references;
    extend(&mut r.sites, &seed.sites, "site")?;
    extend(&mut r.stores, &seed.stores, "store")?;
    extend(&mut r.status_groups, &seed.status_groups, "status group")?;
    extend(&mut r.statuses, &seed.statuses, "status")?;
    extend(
        &mut r.product_statuses,
        &seed.product_statuses,
        "product status",
    )?;
    extend(&mut r.payment_types, &seed.payment_types, "payment type")?;
    extend(
        &mut r.payment_statuses,
        &seed.payment_statuses,
        "payment status",
    )?;
    extend(&mut r.delivery_types, &seed.delivery_types, "delivery type")?;
    extend(&mut r.order_types, &seed.order_types, "order type")?;
    extend(&mut r.order_methods, &seed.order_methods, "order method")?;
    extend(&mut r.price_types, &seed.price_types, "price type")?;
    for u in &seed.users {
        if as_i64(u.get("id")).is_none() {
            return Err(Failure::new(
                400,
                format!("seed: every user needs an `id`: {u}"),
            ));
        }
        st.users.push(u.clone());
    }
    st.custom_fields.extend(seed.custom_fields.iter().cloned());
    st.custom_dictionaries
        .extend(seed.custom_dictionaries.iter().cloned());
    let mut report = SeedReport::default();
    let mut products: IndexMap<String, i64> = IndexMap::new();
    for o in &st.offers {
        if let (Some(x), Some(id)) = (
            as_string(o.product.get("externalId")),
            as_i64(o.product.get("id")),
        ) {
            products.insert(x, id);
        }
    }
    for v in &seed.offers {
        let offer = offer_from(st, v, &mut products)?;
        report.offers.push(offer.id);
        st.offers.push(offer);
    }
    let actor = match seed
        .acting_user
        .or_else(|| st.users.first().and_then(|u| as_i64(u.get("id"))))
    {
        Some(u) => Actor::User(u),
        None => Actor::Code,
    };
    for c in &seed.customers {
        report
            .customers
            .push(customers::create_customer(st, &actor, c, None)?);
    }
    for c in &seed.corporate_customers {
        report
            .corporate_customers
            .push(customers::create_corporate(st, &actor, c, None)?);
    }
    for o in &seed.orders {
        let mut order = o.as_object().cloned().unwrap_or_default();
        let path: Vec<String> = match order.remove("statusPath") {
            Some(Value::Array(p)) => p.iter().filter_map(|s| as_string(Some(s))).collect(),
            _ => Vec::new(),
        };
        if let Some(first) = path.first() {
            order.insert("status".into(), Value::String(first.clone()));
        }
        let who = match as_i64(order.get("managerId")) {
            Some(m) if matches!(actor, Actor::User(_)) => Actor::User(m),
            _ => actor.clone(),
        };
        let id = orders::create_order(st, &who, &Value::Object(order), None)?;
        for status in path.iter().skip(1) {
            let idx = orders::find_order(st, &id.to_string(), true, None)
                .ok_or_else(Failure::not_found)?;
            let patch = serde_json::json!({ "status": status });
            orders::edit_order(st, &who, idx, &patch)?;
        }
        report.orders.push(id);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_shop_parses_and_applies() {
        let seed = sample_shop().expect("sample_shop.json is valid");
        let mut st = State::default();
        let report = apply(&mut st, &seed).expect("sample shop applies");
        assert_eq!(report.orders.len(), seed.orders.len());
        assert!(st
            .offers
            .iter()
            .any(|o| o.xml_id.as_deref().is_some_and(|x| x.contains('#'))));
        // Every seeded order has a `created` history record.
        for id in &report.orders {
            assert!(st
                .order_history
                .iter()
                .any(|r| r.created && r.entity_id == *id));
        }
    }
}
