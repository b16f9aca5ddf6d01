//! Reference data by name (contract: `reference(name)`), as the APIs return it.

use serde_json::{json, Value};
use skladsync_engine::value::{intern, Hasher, Map as EngineMap, Str, Value as EngineValue};
use skladsync_engine::WorldError;

use crate::clients::moysklad::{ListQuery, MoyskladClient};
use crate::clients::retailcrm::ReferenceBook;

use super::Systems;

/// Loads one reference book as an engine value; `None` for a name the runner does not know.
pub async fn load(systems: &Systems, name: &str) -> Result<Option<EngineValue>, WorldError> {
    if name == "crm.offers" {
        let crm_err = |e: crate::clients::retailcrm::Error| WorldError(e.to_string());
        return offers_by_xml_id(&systems.crm)
            .await
            .map(Some)
            .map_err(crm_err);
    }
    Ok(load_json(systems, name)
        .await?
        .map(|v| EngineValue::from_json(&v)))
}

/// Loads one reference book as JSON; `None` for a name the runner does not know.
async fn load_json(systems: &Systems, name: &str) -> Result<Option<Value>, WorldError> {
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
/// time and turned into engine values page by page (only those four fields of an offer are
/// kept). A big catalogue makes a big book (100 000 offers), so it is built compactly: the
/// four keys are shared, the `xmlId` of the key and of the offer is one string, and so is an
/// `externalId` equal to it; offer codes are not interned as keys (they would fill the table
/// of the keys rules name).
async fn offers_by_xml_id(
    crm: &crate::clients::retailcrm::RetailcrmClient,
) -> Result<EngineValue, crate::clients::retailcrm::Error> {
    let keys: [Str; 4] = ["id", "xmlId", "active", "externalId"].map(intern::key);
    let mut by_xml = EngineMap::default();
    super::lookups::each_offer_page(crm, &json!({}), |offers| {
        for o in offers {
            let Some(x) = o.get("xmlId").and_then(Value::as_str) else {
                continue;
            };
            let xml: Str = Str::from(x);
            let mut small = EngineMap::with_capacity_and_hasher(4, Hasher::default());
            for k in &keys {
                let Some(v) = o.get(&**k) else {
                    continue;
                };
                let v = match v.as_str() {
                    Some(t) if t == x => EngineValue::Str(xml.clone()),
                    _ => EngineValue::from_json(v),
                };
                small.insert(k.clone(), v);
            }
            by_xml.insert(xml, EngineValue::object(small));
        }
    })
    .await?;
    Ok(EngineValue::object(by_xml))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::retailcrm::{ClientConfig, RetailcrmClient};
    use skladsync_emulators::retailcrm::{EmulatorConfig, RetailcrmEmulator, Seed};

    #[tokio::test]
    async fn crm_offers_keeps_four_fields_and_shares_the_xml_id() {
        let emu = RetailcrmEmulator::start(EmulatorConfig::with_keys(["k"]))
            .await
            .expect("emulator");
        let offer = |xml: &str, ext: &str, active: bool| {
            json!({"externalId": ext, "xmlId": xml, "name": xml, "article": "A", "site": "s",
                   "price": 10, "active": active,
                   "product": {"externalId": ext, "name": xml, "type": "product"}})
        };
        emu.seed(&Seed {
            offers: vec![offer("c1", "c1", true), offer("c2", "other", false)],
            ..Seed::default()
        })
        .expect("seed");
        let crm = RetailcrmClient::new(
            ClientConfig::new(&emu.base_url(), "k")
                .expect("url")
                .with_rate_limit(None),
        )
        .expect("client");
        let book = offers_by_xml_id(&crm).await.expect("offers");
        let offers = book.to_serde_json();
        // The same book as the four fields of each offer converted whole.
        let id = |x: &str| offers[x]["id"].clone();
        assert_eq!(
            book,
            EngineValue::from_json(&json!({
                "c1": {"id": id("c1"), "xmlId": "c1", "active": true, "externalId": "c1"},
                "c2": {"id": id("c2"), "xmlId": "c2", "active": false, "externalId": "other"}
            }))
        );
        // One string for the key, the offer's `xmlId` and an equal `externalId`.
        let EngineValue::Object(map) = &book else {
            panic!("not an object");
        };
        let (key, c1) = map.get_key_value("c1").expect("c1");
        for field in ["xmlId", "externalId"] {
            match c1.get_ref(field) {
                Some(EngineValue::Str(s)) => assert!(std::sync::Arc::ptr_eq(s, key)),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
