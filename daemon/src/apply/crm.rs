//! Effects on retailCRM: `crm.order`, `crm.payment`, `crm.customer`, `crm.customer_corporate`
//! (and its `.contact` / `.company` / `.address`), `crm.task`, `crm.inventories`.

use serde_json::{json, Value};

use crate::clients::retailcrm::{EntityKind, EntityRef, RetailcrmClient, WriteOptions};
use crate::world::lookups::crm_ref;

use super::error::ApplyError;

fn kind_of(entity: &str) -> Result<EntityKind, ApplyError> {
    Ok(match entity {
        "order" => EntityKind::Order,
        "payment" => EntityKind::Payment,
        "customer" => EntityKind::Customer,
        "customer_corporate" => EntityKind::CustomerCorporate,
        "customer_corporate.contact" => EntityKind::CorporateContact,
        "customer_corporate.company" => EntityKind::CorporateCompany,
        "customer_corporate.address" => EntityKind::CorporateAddress,
        "task" => EntityKind::Task,
        other => {
            return Err(ApplyError::Invalid(format!(
                "crm.{other} is not a retailCRM target (order, payment, customer, customer_corporate[.contact|.company|.address], task, inventories)"
            )))
        }
    })
}

fn take(body: &mut Value, key: &str) -> Option<Value> {
    body.as_object_mut().and_then(|m| m.remove(key))
}

fn id_ref(v: &Value, what: &str) -> Result<EntityRef, ApplyError> {
    crm_ref(v).ok_or_else(|| ApplyError::Invalid(format!("crm: `{what}` is not an id: {v}")))
}

/// `site` (taken out of the body: it is a form field) and the corporate parent.
fn options(
    kind: EntityKind,
    body: &mut Value,
    parent: Option<&Value>,
) -> Result<WriteOptions, ApplyError> {
    let site = match kind {
        EntityKind::Order
        | EntityKind::Customer
        | EntityKind::CustomerCorporate
        | EntityKind::Payment
        | EntityKind::Task => take(body, "site"),
        _ => None,
    };
    let mut opts = WriteOptions {
        site: site.and_then(|s| s.as_str().map(str::to_string)),
        parent: None,
    };
    if matches!(
        kind,
        EntityKind::CorporateContact | EntityKind::CorporateCompany | EntityKind::CorporateAddress
    ) {
        let p = match parent {
            Some(p) => p.clone(),
            None => take(body, "parent").unwrap_or(Value::Null),
        };
        opts.parent = Some(id_ref(&p, "parent")?);
    }
    Ok(opts)
}

/// The entity an answer describes: the answer's own copy when it has one, else the body
/// with the new id.
fn result_of(kind: EntityKind, body: &Value, raw: &Value, id: Option<i64>) -> Value {
    if let Some(v @ Value::Object(_)) = raw.get(kind.form_field()) {
        return v.clone();
    }
    let mut out = body.clone();
    if let (Some(m), Some(id)) = (out.as_object_mut(), id) {
        m.insert("id".into(), json!(id));
    }
    out
}

/// Sets `externalId` from the key unless the body has one (orders, customers, payments).
pub fn add_external_id(entity: &str, body: &mut Value, key: &str) {
    if !matches!(
        entity,
        "order" | "customer" | "customer_corporate" | "payment"
    ) {
        return;
    }
    if let Some(m) = body.as_object_mut() {
        if m.get("externalId").is_none_or(Value::is_null) {
            m.insert("externalId".into(), Value::String(key.to_string()));
        }
    }
}

/// Whether a refused create means "it exists already" (same `externalId`).
pub fn is_duplicate(e: &ApplyError) -> bool {
    matches!(e, ApplyError::Crm(c) if c.is_duplicate_external_id())
}

/// Creates an entity.
pub async fn create(
    crm: &RetailcrmClient,
    entity: &str,
    mut body: Value,
) -> Result<Value, ApplyError> {
    if !body.is_object() {
        return Err(ApplyError::Invalid(format!(
            "crm.{entity}: the body must be an object"
        )));
    }
    let kind = kind_of(entity)?;
    let opts = options(kind, &mut body, None)?;
    let r = crm.create(kind, &body, &opts).await?;
    Ok(result_of(kind, &body, &r.raw, r.id))
}

/// Updates an entity; `crm.inventories` uploads stock (`{offers: [...], site?}`).
pub async fn update(
    crm: &RetailcrmClient,
    entity: &str,
    id: &Value,
    mut body: Value,
) -> Result<Value, ApplyError> {
    if entity == "inventories" {
        let site = take(&mut body, "site").and_then(|s| s.as_str().map(str::to_string));
        let offers = match take(&mut body, "offers") {
            Some(Value::Array(o)) => o,
            _ => {
                return Err(ApplyError::Invalid(
                    "crm.inventories: the body needs `offers`, a list".into(),
                ))
            }
        };
        let report = crm.inventories_upload(&offers, site.as_deref()).await?;
        return Ok(json!({
            "processedOffersCount": report.processed_offers,
            "notFoundOffers": report.not_found,
            "requests": report.requests,
        }));
    }
    if !body.is_object() {
        return Err(ApplyError::Invalid(format!(
            "crm.{entity}: the body must be an object"
        )));
    }
    let kind = kind_of(entity)?;
    let (own, parent) = match kind {
        EntityKind::CorporateContact
        | EntityKind::CorporateCompany
        | EntityKind::CorporateAddress => (
            id.get("id").cloned().unwrap_or(Value::Null),
            id.get("parent").cloned(),
        ),
        _ => (id.clone(), None),
    };
    let opts = options(kind, &mut body, parent.as_ref())?;
    let r = crm.edit(kind, &id_ref(&own, "id")?, &body, &opts).await?;
    Ok(result_of(kind, &body, &r.raw, r.id))
}

/// Deletes an entity (retailCRM API v5 deletes payments only); already gone counts as done.
pub async fn delete(crm: &RetailcrmClient, entity: &str, id: &Value) -> Result<Value, ApplyError> {
    let kind = kind_of(entity)?;
    match crm.delete(kind, &id_ref(id, "id")?).await {
        Ok(()) => Ok(Value::Null),
        Err(e) if e.is_not_found() => Ok(Value::Null),
        Err(e) => Err(e.into()),
    }
}

/// Finds what an earlier create with this body made, if it exists.
pub async fn lookup_by_key(
    crm: &RetailcrmClient,
    entity: &str,
    body: &Value,
) -> Result<Option<Value>, ApplyError> {
    let kind = kind_of(entity)?;
    let site = body.get("site").and_then(Value::as_str).map(str::to_string);
    match kind {
        EntityKind::Order | EntityKind::Customer | EntityKind::CustomerCorporate => {
            let Some(ext) = body.get("externalId").and_then(Value::as_str) else {
                return Ok(None);
            };
            let opts = WriteOptions { site, parent: None };
            match crm
                .fetch(kind, &EntityRef::ExternalId(ext.to_string()), &opts)
                .await
            {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
        EntityKind::Payment => {
            let (Some(ext), Some(order)) = (body.get("externalId"), body.get("order")) else {
                return Ok(None);
            };
            let order_ref = match (order.get("id"), order.get("externalId")) {
                (Some(id), _) if !id.is_null() => id_ref(id, "order.id")?,
                (_, Some(Value::String(x))) => EntityRef::ExternalId(x.clone()),
                _ => return Ok(None),
            };
            let opts = WriteOptions { site, parent: None };
            let o = match crm.fetch(EntityKind::Order, &order_ref, &opts).await {
                Ok(o) => o,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let payments: Vec<Value> = match o.get("payments") {
                Some(Value::Object(m)) => m.values().cloned().collect(),
                Some(Value::Array(a)) => a.clone(),
                _ => Vec::new(),
            };
            Ok(payments
                .into_iter()
                .find(|p| p.get("externalId") == Some(ext)))
        }
        EntityKind::Task => {
            let mut filter = serde_json::Map::new();
            if let Some(p) = body.get("performerId") {
                filter.insert("performers".into(), json!([p]));
            }
            if let Some(t) = body.get("text") {
                filter.insert("text".into(), t.clone());
            }
            filter.insert("status".into(), json!("performing"));
            let rows = crm
                .list_all(
                    EntityKind::Task,
                    &Value::Object(filter),
                    &WriteOptions::default(),
                )
                .await?;
            Ok(rows.into_iter().find(|t| t.get("text") == body.get("text")))
        }
        EntityKind::CorporateContact => {
            let Some(parent) = body.get("parent") else {
                return Ok(None);
            };
            let opts = WriteOptions {
                site: None,
                parent: Some(id_ref(parent, "parent")?),
            };
            let rows = crm.list_all(kind, &json!({}), &opts).await?;
            let want = body.get("customer");
            Ok(rows.into_iter().find(|c| {
                let have = c.get("customer");
                ["id", "externalId"].iter().any(|k| {
                    want.and_then(|w| w.get(*k)).is_some_and(|w| !w.is_null())
                        && want.and_then(|w| w.get(*k)) == have.and_then(|h| h.get(*k))
                })
            }))
        }
        EntityKind::CorporateAddress | EntityKind::CorporateCompany => {
            // Found by the externalId the create carried, else by the same name.
            let Some(parent) = body.get("parent") else {
                return Ok(None);
            };
            let opts = WriteOptions {
                site: None,
                parent: Some(id_ref(parent, "parent")?),
            };
            let rows = crm.list_all(kind, &json!({}), &opts).await?;
            let same = |r: &Value, k: &str| {
                body.get(k)
                    .is_some_and(|want| !want.is_null() && r.get(k) == Some(want))
            };
            Ok(rows.into_iter().find(|r| {
                if body.get("externalId").is_some_and(|x| !x.is_null()) {
                    same(r, "externalId")
                } else {
                    same(r, "name")
                }
            }))
        }
    }
}

/// Whether a CRM task is still open (`false` when done or gone).
pub async fn task_open(crm: &RetailcrmClient, id: i64) -> Result<bool, ApplyError> {
    match crm
        .fetch(
            EntityKind::Task,
            &EntityRef::Id(id),
            &WriteOptions::default(),
        )
        .await
    {
        Ok(t) => Ok(t.get("complete").and_then(Value::as_bool) != Some(true)),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}
