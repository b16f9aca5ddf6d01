//! Reference data by name (contract: `reference(name)`), as the APIs return it.

use serde_json::{json, Map, Value};
use skladsync_engine::WorldError;

use crate::clients::moysklad::{ListQuery, MoyskladClient};
use crate::clients::retailcrm::ReferenceBook;

use super::Systems;

/// Loads one reference book; `None` for a name the runner does not know.
pub async fn load(systems: &Systems, name: &str) -> Result<Option<Value>, WorldError> {
    let ms = &systems.ms;
    let crm = &systems.crm;
    let ms_err = |e: crate::clients::moysklad::MoyskladError| WorldError(e.to_string());
    let crm_err = |e: crate::clients::retailcrm::Error| WorldError(e.to_string());
    let book = |b: ReferenceBook| async move { crm.reference_raw(b).await };
    let v = match name {
        "moysklad.organizations" => organizations(ms).await.map_err(ms_err)?,
        "moysklad.stores" => list(ms, "store").await.map_err(ms_err)?,
        "moysklad.states" => Value::Array(ms.states("customerorder").await.map_err(ms_err)?),
        "moysklad.employees" => list(ms, "employee").await.map_err(ms_err)?,
        "moysklad.services" => list(ms, "service").await.map_err(ms_err)?,
        "crm.statuses" => book(ReferenceBook::Statuses).await.map_err(crm_err)?,
        "crm.stores" => book(ReferenceBook::Stores).await.map_err(crm_err)?,
        "crm.sites" => book(ReferenceBook::Sites).await.map_err(crm_err)?,
        "crm.delivery_types" => book(ReferenceBook::DeliveryTypes).await.map_err(crm_err)?,
        "crm.payment_types" => book(ReferenceBook::PaymentTypes).await.map_err(crm_err)?,
        "crm.payment_statuses" => book(ReferenceBook::PaymentStatuses)
            .await
            .map_err(crm_err)?,
        "crm.product_statuses" => book(ReferenceBook::ProductStatuses)
            .await
            .map_err(crm_err)?,
        "crm.users" => Value::Array(crm.users_all(&json!({})).await.map_err(crm_err)?),
        "crm.custom_fields" => Value::Array(crm.custom_fields(None).await.map_err(crm_err)?),
        "crm.offers" => offers_by_xml_id(crm).await.map_err(crm_err)?,
        other => {
            if let Some(entity) = other.strip_prefix("moysklad.attributes.") {
                Value::Array(ms.attributes(entity).await.map_err(ms_err)?)
            } else if let Some(code) = other.strip_prefix("crm.custom_dictionary.") {
                match crm.custom_dictionary(code).await {
                    Ok(v) => v,
                    Err(e) if e.is_not_found() => return Ok(None),
                    Err(e) => return Err(crm_err(e)),
                }
            } else if let Some(id) = other.strip_prefix("moysklad.customentity.") {
                ms.list_all(&format!("customentity/{id}"), &ListQuery::new())
                    .await
                    .map(Value::Array)
                    .map_err(ms_err)?
            } else {
                return Ok(None);
            }
        }
    };
    Ok(Some(v))
}

/// `crm.offers`: `{xmlId: {id, xmlId, active, externalId}}` of every offer, read a page at a
/// time (only those four fields of a page are kept).
async fn offers_by_xml_id(
    crm: &crate::clients::retailcrm::RetailcrmClient,
) -> Result<Value, crate::clients::retailcrm::Error> {
    let mut by_xml = Map::new();
    super::lookups::each_offer_page(crm, &json!({}), |offers| {
        for o in offers {
            if let Some(x) = o.get("xmlId").and_then(Value::as_str) {
                let mut small = Map::new();
                for k in ["id", "xmlId", "active", "externalId"] {
                    if let Some(v) = o.get(k) {
                        small.insert(k.to_string(), v.clone());
                    }
                }
                by_xml.insert(x.to_string(), Value::Object(small));
            }
        }
    })
    .await?;
    Ok(Value::Object(by_xml))
}

async fn list(
    ms: &MoyskladClient,
    entity: &str,
) -> Result<Value, crate::clients::moysklad::MoyskladError> {
    ms.list_all(entity, &ListQuery::new())
        .await
        .map(Value::Array)
}

/// Organizations with their bank accounts (`accounts` as a list).
async fn organizations(
    ms: &MoyskladClient,
) -> Result<Value, crate::clients::moysklad::MoyskladError> {
    let orgs = ms.list_all("organization", &ListQuery::new()).await?;
    let mut out = Vec::new();
    for mut org in orgs {
        if let Some(id) = org.get("id").and_then(Value::as_str).map(str::to_string) {
            let accounts = ms
                .list_all(&format!("organization/{id}/accounts"), &ListQuery::new())
                .await?;
            org["accounts"] = Value::Array(accounts);
        }
        out.push(org);
    }
    Ok(Value::Array(out))
}
