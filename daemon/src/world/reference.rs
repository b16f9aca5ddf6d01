//! Reference data by name (contract: `reference(name)`), as the APIs return it.

use serde_json::{json, Value};
use skladsync_engine::value::{intern, Hasher, Map as EngineMap, Str, Value as EngineValue};
use skladsync_engine::WorldError;

use crate::clients::moysklad::{ListQuery, MoyskladClient};
use crate::clients::retailcrm::ReferenceBook;

use super::Systems;

/// The book the runner holds as an [`OfferIndex`] and answers entry by entry.
pub const OFFERS: &str = "crm.offers";

/// Loads one reference book as an engine value; `None` for a name the runner does not know.
/// (`crm.offers` is loaded with [`load_offers`].)
pub async fn load(systems: &Systems, name: &str) -> Result<Option<EngineValue>, WorldError> {
    if name == OFFERS {
        return load_offers(systems).await.map(|i| Some(i.book()));
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

/// The fields of an offer `crm.offers` keeps, in the order of its objects.
const OFFER_FIELDS: [&str; 4] = ["id", "xmlId", "active", "externalId"];

/// What `crm.offers` holds of one offer, compactly (about 100 bytes, where the offer as an
/// engine object took about 400): the fields other than `xmlId` (its key), `Null` when
/// absent, and which were present.
#[derive(Debug)]
struct Offer {
    id: EngineValue,
    active: EngineValue,
    /// `Null` when absent, or when it is the same text as the key.
    external_id: EngineValue,
    /// Bit `i` set when field `OFFER_FIELDS[i]` is present; bit 4: `externalId` is the key.
    present: u8,
}

const EXTERNAL_IS_KEY: u8 = 1 << 4;

/// `crm.offers` as the runner holds it: `{xmlId: {id, xmlId, active, externalId}}` of every
/// offer, answered one entry at a time (`reference("crm.offers", xmlId)`) without building
/// the book as one engine object (100 000 offers took about 45 MB that way; this takes
/// about 12). The whole book is built only when a rule asks for it whole.
#[derive(Debug, Default)]
pub struct OfferIndex {
    offers: indexmap::IndexMap<Str, Offer, Hasher>,
    /// An empty object of each combination of fields present (by `present & 15`): the
    /// answers share their key tables.
    shapes: Vec<EngineMap>,
}

impl OfferIndex {
    fn new() -> OfferIndex {
        let keys = OFFER_FIELDS.map(intern::key);
        let shapes = (0u8..16)
            .map(|mask| {
                let mut m = EngineMap::with_capacity_and_hasher(4, Hasher::default());
                for (i, k) in keys.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        m.insert(k.clone(), EngineValue::Null);
                    }
                }
                m
            })
            .collect();
        OfferIndex {
            offers: indexmap::IndexMap::default(),
            shapes,
        }
    }

    /// Takes in one offer as `store/offers` gives it (one without a text `xmlId` is not
    /// kept; a later offer with the same `xmlId` replaces an earlier one).
    fn add(&mut self, o: &Value) {
        let Some(x) = o.get("xmlId").and_then(Value::as_str) else {
            return;
        };
        let mut present = 0u8;
        let mut field = |i: usize| match o.get(OFFER_FIELDS[i]) {
            Some(v) => {
                present |= 1 << i;
                EngineValue::from_json(v)
            }
            None => EngineValue::Null,
        };
        let id = field(0);
        let _ = field(1);
        let active = field(2);
        let mut external_id = field(3);
        if matches!(&external_id, EngineValue::Str(e) if &**e == x) {
            present |= EXTERNAL_IS_KEY;
            external_id = EngineValue::Null;
        }
        let offer = Offer {
            id,
            active,
            external_id,
            present,
        };
        match self.offers.get_mut(x) {
            Some(slot) => *slot = offer,
            None => {
                self.offers.insert(Str::from(x), offer);
            }
        }
    }

    fn object(&self, key: &Str, o: &Offer) -> EngineValue {
        let mut values = Vec::with_capacity(4);
        for i in 0..4 {
            if o.present & (1 << i) == 0 {
                continue;
            }
            values.push(match i {
                0 => o.id.clone(),
                1 => EngineValue::Str(key.clone()),
                2 => o.active.clone(),
                _ if o.present & EXTERNAL_IS_KEY != 0 => EngineValue::Str(key.clone()),
                _ => o.external_id.clone(),
            });
        }
        let shape = self.shapes.get(usize::from(o.present & 15));
        match shape.map(|s| EngineMap::like(s, values)) {
            Some(Ok(map)) => EngineValue::object(map),
            // Not reached: every combination has its shape.
            _ => EngineValue::Null,
        }
    }

    /// The entry of `xml_id` (`{id, xmlId, active, externalId}`), or null.
    pub fn entry(&self, xml_id: &str) -> EngineValue {
        match self.offers.get_key_value(xml_id) {
            Some((k, o)) => self.object(k, o),
            None => EngineValue::Null,
        }
    }

    /// The whole book as one object, in the order the offers were read.
    pub fn book(&self) -> EngineValue {
        let mut by_xml = EngineMap::with_capacity_and_hasher(self.offers.len(), Hasher::default());
        for (k, o) in &self.offers {
            by_xml.insert(k.clone(), self.object(k, o));
        }
        EngineValue::object(by_xml)
    }
}

/// Reads `crm.offers` (every offer, a page of `store/offers` at a time) into an
/// [`OfferIndex`]: only four fields of an offer are kept, the key's text shared with an
/// equal `xmlId` and `externalId`; offer codes are not interned as keys (they would fill the
/// table of the keys rules name).
pub async fn load_offers(systems: &Systems) -> Result<OfferIndex, WorldError> {
    offer_index(&systems.crm)
        .await
        .map_err(|e| WorldError(e.to_string()))
}

async fn offer_index(
    crm: &crate::clients::retailcrm::RetailcrmClient,
) -> Result<OfferIndex, crate::clients::retailcrm::Error> {
    let mut index = OfferIndex::new();
    super::lookups::each_offer_page(crm, &json!({}), |offers| {
        for o in &offers {
            index.add(o);
        }
    })
    .await?;
    tracing::info!(offers = index.offers.len(), "crm.offers read");
    Ok(index)
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
        let index = offer_index(&crm).await.expect("offers");
        let book = index.book();
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
        // Each entry answered alone is the book's.
        for x in ["c1", "c2"] {
            assert_eq!(index.entry(x), book.get(x));
        }
        assert!(index.entry("c3").is_null());
        assert_eq!(index.offers.len(), 2);
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
