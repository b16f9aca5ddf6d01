//! Effects on МойСклад: `moysklad.E`, sub-collections `moysklad.E.sub` (parent in the body or
//! the id), dictionary entries `moysklad.customentity` (dictionary in the body or the id).

use reqwest::Method;
use serde_json::Value;

use crate::clients::moysklad::{ListQuery, MoyskladClient};
use crate::world::lookups::{ms_id, ms_safe};

use super::error::ApplyError;

/// Entity types that accept a client-generated `syncId` (re-posting it returns the existing
/// object instead of a duplicate).
const SYNCABLE: &[&str] = &[
    "customerorder",
    "demand",
    "move",
    "paymentin",
    "cashin",
    "paymentout",
    "cashout",
    "salesreturn",
    "retaildemand",
    "supply",
    "purchaseorder",
    "invoiceout",
    "invoicein",
    "counterparty",
    "organization",
    "product",
    "variant",
    "service",
    "bundle",
];

/// Whether creates of `entity` are made idempotent by `syncId`.
pub fn syncable(entity: &str) -> bool {
    SYNCABLE.contains(&entity)
}

/// `counterparty.contactpersons` → (`counterparty`, Some(`contactpersons`)).
fn split(entity: &str) -> (&str, Option<&str>) {
    match entity.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (entity, None),
    }
}

fn take(body: &mut Value, key: &str) -> Option<Value> {
    body.as_object_mut().and_then(|m| m.remove(key))
}

fn need_id(v: Option<&Value>, what: &str, target: &str) -> Result<String, ApplyError> {
    let id = v.and_then(ms_id).ok_or_else(|| {
        ApplyError::Invalid(format!(
            "moysklad.{target} needs `{what}` (an id or a meta)"
        ))
    })?;
    // Ids come from data (API answers, custom fields): never let one reach the path as
    // anything but one segment.
    if ms_safe(&id) {
        Ok(id)
    } else {
        Err(ApplyError::Invalid(format!(
            "moysklad.{target}: `{what}` {id:?} is not a МойСклад id"
        )))
    }
}

/// Checks the entity names of a target (`counterparty`, `counterparty.accounts`).
fn check_target(entity: &str) -> Result<(), ApplyError> {
    let (base, sub) = split(entity);
    if ms_safe(base) && sub.is_none_or(ms_safe) {
        Ok(())
    } else {
        Err(ApplyError::Invalid(format!(
            "moysklad.{entity} is not a МойСклад entity"
        )))
    }
}

/// The path of a collection for a create: `entity/E`, `entity/E/{parent}/sub`,
/// `entity/customentity/{dictionary}`. Takes `parent` / `dictionary` out of the body.
fn create_path(entity: &str, body: &mut Value) -> Result<String, ApplyError> {
    check_target(entity)?;
    let (base, sub) = split(entity);
    if let Some(sub) = sub {
        let parent = take(body, "parent");
        let parent = need_id(parent.as_ref(), "parent", entity)?;
        return Ok(format!("entity/{base}/{parent}/{sub}"));
    }
    if base == "customentity" {
        let dict = take(body, "dictionary");
        let dict = need_id(dict.as_ref(), "dictionary", entity)?;
        return Ok(format!("entity/customentity/{dict}"));
    }
    Ok(format!("entity/{base}"))
}

/// The path of one object for an update or delete.
fn object_path(entity: &str, id: &Value) -> Result<String, ApplyError> {
    check_target(entity)?;
    let (base, sub) = split(entity);
    if let Some(sub) = sub {
        let parent = need_id(id.get("parent"), "id.parent", entity)?;
        let own = need_id(id.get("id"), "id.id", entity)?;
        return Ok(format!("entity/{base}/{parent}/{sub}/{own}"));
    }
    if base == "customentity" {
        let dict = need_id(id.get("dictionary"), "id.dictionary", entity)?;
        let own = need_id(id.get("id"), "id.id", entity)?;
        return Ok(format!("entity/customentity/{dict}/{own}"));
    }
    let own = need_id(Some(id), "id", entity)?;
    Ok(format!("entity/{base}/{own}"))
}

/// A sub-collection POST answers with an array: take its one element.
fn one(v: Option<Value>) -> Result<Value, ApplyError> {
    match v {
        Some(Value::Array(mut a)) if a.len() == 1 => Ok(a.remove(0)),
        Some(v @ Value::Object(_)) => Ok(v),
        other => Err(ApplyError::Answer(format!(
            "МойСклад create answered {}",
            other.map_or_else(
                || "nothing".to_string(),
                |v| v.to_string().chars().take(200).collect::<String>()
            )
        ))),
    }
}

/// The collection a create may share with others in a bulk POST (`entity/<type>`): a base
/// entity that takes a `syncId`, with one in the body (so a repeated element is harmless).
pub fn bulk_path(entity: &str, body: &Value) -> Option<String> {
    let (base, sub) = split(entity);
    let ok = sub.is_none()
        && syncable(base)
        && ms_safe(base)
        && body.get("syncId").is_some_and(Value::is_string);
    ok.then(|| format!("entity/{base}"))
}

/// The collection and id of an update that may share a bulk POST with others: a base entity
/// of the types that take a `syncId` (documents, counterparties, goods), a plain id, an
/// object body.
pub fn bulk_update(entity: &str, id: &Value, body: &Value) -> Option<(String, String)> {
    let (base, sub) = split(entity);
    if sub.is_some() || !syncable(base) || !ms_safe(base) || !body.is_object() {
        return None;
    }
    let own = need_id(Some(id), "id", entity).ok()?;
    Some((format!("entity/{base}"), own))
}

/// Creates an entity. `webhook_url` fills a webhook's missing `url`.
pub async fn create(
    ms: &MoyskladClient,
    entity: &str,
    mut body: Value,
    webhook_url: Option<&str>,
) -> Result<Value, ApplyError> {
    if !body.is_object() {
        return Err(ApplyError::Invalid(format!(
            "moysklad.{entity}: the body must be an object"
        )));
    }
    if entity == "webhook" {
        fill_webhook_url(&mut body, webhook_url)?;
        if let Some(existing) = find_webhook(ms, &body).await? {
            return Ok(existing);
        }
    }
    let path = create_path(entity, &mut body)?;
    let v = ms.request(Method::POST, &path, &[], Some(&body)).await;
    match v {
        Ok(v) => one(v),
        Err(e) if entity == "webhook" && e.has_code(30003) => find_webhook(ms, &body)
            .await?
            .ok_or(ApplyError::Moysklad(e)),
        Err(e) => Err(e.into()),
    }
}

fn fill_webhook_url(body: &mut Value, url: Option<&str>) -> Result<(), ApplyError> {
    let missing = body.get("url").is_none_or(Value::is_null);
    if missing {
        let Some(url) = url else {
            return Err(ApplyError::Invalid(
                "moysklad.webhook without `url`, and the runner has no webhook receiver".into(),
            ));
        };
        if let Some(m) = body.as_object_mut() {
            m.insert("url".into(), Value::String(url.to_string()));
        }
    }
    Ok(())
}

async fn find_webhook(ms: &MoyskladClient, body: &Value) -> Result<Option<Value>, ApplyError> {
    let hooks = ms.webhooks().await?;
    Ok(hooks.into_iter().find(|h| {
        ["url", "entityType", "action"]
            .iter()
            .all(|k| h.get(*k) == body.get(*k))
    }))
}

/// Whether `row` has every scalar field of `body` with the same value.
fn matches_scalars(row: &Value, body: &Value) -> bool {
    let Some(b) = body.as_object() else {
        return false;
    };
    let mut any = false;
    for (k, v) in b {
        let same = match (v, row.get(k)) {
            (Value::String(_) | Value::Bool(_), Some(r)) => r == v,
            (Value::Number(n), Some(Value::Number(r))) => n.as_f64() == r.as_f64(),
            (Value::String(_) | Value::Bool(_) | Value::Number(_), _) => false,
            _ => continue,
        };
        if !same {
            return false;
        }
        any = true;
    }
    any
}

/// Finds what an earlier create with this body (and `syncId`) made, if it exists.
pub async fn lookup_by_key(
    ms: &MoyskladClient,
    entity: &str,
    body: &Value,
    webhook_url: Option<&str>,
) -> Result<Option<Value>, ApplyError> {
    let (base, sub) = split(entity);
    if let Some(sync) = body.get("syncId").and_then(Value::as_str) {
        if sub.is_none() && syncable(base) {
            let rows = ms
                .list_all(base, &ListQuery::new().filter_eq("syncId", sync))
                .await?;
            return Ok(rows.into_iter().next());
        }
    }
    if entity == "webhook" {
        let mut b = body.clone();
        fill_webhook_url(&mut b, webhook_url)?;
        return find_webhook(ms, &b).await;
    }
    let mut b = body.clone();
    let path = create_path(entity, &mut b)?;
    let collection = path.trim_start_matches("entity/").to_string();
    let q = if sub.is_none() && base != "customentity" {
        match (b.get("externalCode"), b.get("name")) {
            (Some(Value::String(x)), _) => ListQuery::new().filter_eq("externalCode", x),
            (_, Some(Value::String(n))) => ListQuery::new().filter_eq("name", n),
            _ => return Ok(None),
        }
    } else {
        ListQuery::new()
    };
    let rows = ms.list_all(&collection, &q).await?;
    Ok(rows.into_iter().find(|r| matches_scalars(r, &b)))
}

/// Updates an entity (`PUT`).
pub async fn update(
    ms: &MoyskladClient,
    entity: &str,
    id: &Value,
    body: Value,
) -> Result<Value, ApplyError> {
    if !body.is_object() {
        return Err(ApplyError::Invalid(format!(
            "moysklad.{entity}: the body must be an object"
        )));
    }
    let path = object_path(entity, id)?;
    let v = ms.request(Method::PUT, &path, &[], Some(&body)).await?;
    one(v)
}

/// Deletes an entity; one that is already gone counts as deleted.
pub async fn delete(ms: &MoyskladClient, entity: &str, id: &Value) -> Result<Value, ApplyError> {
    let path = object_path(entity, id)?;
    match ms.request(Method::DELETE, &path, &[], None).await {
        Ok(_) => Ok(Value::Null),
        Err(e) if e.is_not_found() => Ok(Value::Null),
        Err(e) => Err(e.into()),
    }
}

/// The `(entity, id, updated)` of a base entity in an answer, to recognise our own writes.
pub fn own_write(entity: &str, answer: &Value) -> Option<(String, String, String)> {
    let (base, sub) = split(entity);
    if sub.is_some() || base == "customentity" {
        return None;
    }
    let id = answer.get("id")?.as_str()?;
    let updated = answer.get("updated")?.as_str()?;
    Some((base.to_string(), id.to_string(), updated.to_string()))
}

/// Adds a `syncId` (UUID v5 of the key) unless the body has one.
pub fn add_sync_id(entity: &str, body: &mut Value, key: &str) {
    let (base, sub) = split(entity);
    if sub.is_some() || !syncable(base) {
        return;
    }
    if let Some(m) = body.as_object_mut() {
        m.entry("syncId")
            .or_insert_with(|| Value::String(sync_id(key)));
    }
}

/// The `syncId` of a key.
pub fn sync_id(key: &str) -> String {
    uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()).to_string()
}

/// The UUID namespace of skladsync's keys.
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x6b, 0x1d, 0x2a, 0x51, 0x9c, 0x3e, 0x4f, 0x0a, 0x8d, 0x55, 0x1e, 0x73, 0x0c, 0x9f, 0x41, 0x2b,
]);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_take_only_plain_ids() {
        assert_eq!(
            object_path("customerorder", &json!("a-1")).ok().as_deref(),
            Some("entity/customerorder/a-1")
        );
        assert_eq!(
            object_path(
                "counterparty.accounts",
                &json!({"parent": "c-1", "id": "x"})
            )
            .ok()
            .as_deref(),
            Some("entity/counterparty/c-1/accounts/x")
        );
        // An href counts by its last segment; anything else must be one plain segment.
        assert_eq!(
            object_path("customerorder", &json!("http://h/entity/customerorder/a-2"))
                .ok()
                .as_deref(),
            Some("entity/customerorder/a-2")
        );
        for bad in [
            json!(""),
            json!("a b"),
            json!("%2e%2e"),
            json!({"id": "../x"}),
            json!(7),
        ] {
            assert!(object_path("customerorder", &bad).is_err(), "{bad}");
        }
        assert!(object_path("customerorder/../webhook", &json!("a")).is_err());
        let mut body = json!({"parent": {"id": "c/../x"}});
        assert!(create_path("counterparty.contactpersons", &mut body).is_err());
    }
}
