//! Reference data by name (contract: `reference(name)`), as the APIs return it.

use std::hash::BuildHasher;

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

/// How a field of an offer is held (what [`Offer`]'s payload for it means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not in the offer.
    Absent,
    Null,
    False,
    True,
    /// An integer (`serde_json`'s `as_i64`): the payload's 8 bytes.
    Int,
    /// A text: the payload is where it starts in [`OfferIndex::text`] and its length.
    Text,
    /// The same text as the offer's `xmlId`.
    Key,
    /// Anything else, as read: the payload is its place in [`OfferIndex::others`].
    Other,
}

/// What `crm.offers` holds of one offer, in 32 bytes: its `xmlId` (the key, in the index's
/// text), and its `id` and `externalId` as a kind and 8 bytes each (an integer, a place in the
/// index's text, or in its list of other values); `active`, almost always a boolean, as its
/// kind alone (another value is kept in that list too, its place in `active_at`).
#[derive(Debug, Clone, Copy)]
struct Offer {
    key: [u32; 2],
    id: [u32; 2],
    external: [u32; 2],
    active_at: u32,
    kinds: [Kind; 3],
}

/// The 8-byte payload of an integer.
fn int_payload(i: i64) -> [u32; 2] {
    let u = i as u64;
    [(u >> 32) as u32, u as u32]
}

fn payload_int(p: [u32; 2]) -> i64 {
    ((u64::from(p[0]) << 32) | u64::from(p[1])) as i64
}

/// `crm.offers` as the runner holds it: `{xmlId: {id, xmlId, active, externalId}}` of every
/// offer, answered one entry at a time (`reference("crm.offers", xmlId)`) without building
/// the book as one engine object (100 000 offers took about 45 MB that way). Each offer is
/// 32 bytes ([`Offer`]) in one vector, in the order read, its texts in one string, found by a
/// table of their places (about 45 bytes an offer in all, where an `IndexMap` of engine values
/// took about 150). The whole book is built only when a rule asks for it whole.
#[derive(Debug, Default)]
pub struct OfferIndex {
    offers: Vec<Offer>,
    /// The `xmlId`s, and `externalId`s that are another text, one after another.
    text: String,
    /// Field values that are neither absent, null, a boolean, an integer nor a text (and
    /// texts too long to place), as read.
    others: Vec<EngineValue>,
    /// Places in `offers`, by `xmlId`.
    table: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    /// An empty object of each combination of fields present (by the mask of
    /// [`OfferIndex::present`]): the answers share their key tables.
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
            shapes,
            ..OfferIndex::default()
        }
    }

    /// The index of `offers` as `store/offers` gives them, in that order (what
    /// [`load_offers`] builds from the pages it reads; for benches and tests).
    pub fn from_offers<'a>(offers: impl IntoIterator<Item = &'a Value>) -> OfferIndex {
        let mut index = OfferIndex::new();
        for o in offers {
            index.add(o);
        }
        index.shrink();
        index
    }

    /// How many offers the index holds.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether the index holds no offer.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// Gives back what the vectors hold beyond their length (once every offer is read).
    fn shrink(&mut self) {
        self.offers.shrink_to_fit();
        self.text.shrink_to_fit();
        self.others.shrink_to_fit();
    }

    fn slice(&self, [at, len]: [u32; 2]) -> &str {
        let (at, len) = (at as usize, len as usize);
        self.text.get(at..at + len).unwrap_or_default()
    }

    /// Places `t` in the text: its payload, or `None` when the text is too long to place.
    fn place(&mut self, t: &str) -> Option<[u32; 2]> {
        let at = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(t.len()).ok()?;
        at.checked_add(len)?;
        self.text.push_str(t);
        Some([at, len])
    }

    fn other(&mut self, v: &Value) -> [u32; 2] {
        self.others.push(EngineValue::from_json(v));
        [0, (self.others.len() - 1) as u32]
    }

    /// A field as a kind and payload (`key`: the offer's `xmlId`).
    fn field(&mut self, v: Option<&Value>, key: &str) -> (Kind, [u32; 2]) {
        match v {
            None => (Kind::Absent, [0; 2]),
            Some(Value::Null) => (Kind::Null, [0; 2]),
            Some(Value::Bool(false)) => (Kind::False, [0; 2]),
            Some(Value::Bool(true)) => (Kind::True, [0; 2]),
            Some(Value::String(s)) if s == key => (Kind::Key, [0; 2]),
            Some(Value::String(s)) => match self.place(s) {
                Some(p) => (Kind::Text, p),
                None => (Kind::Other, self.other(&Value::String(s.clone()))),
            },
            Some(Value::Number(n)) if n.as_i64().is_some() => {
                (Kind::Int, int_payload(n.as_i64().unwrap_or_default()))
            }
            Some(v) => (Kind::Other, self.other(v)),
        }
    }

    /// Takes in one offer as `store/offers` gives it (one without a text `xmlId` is not
    /// kept; a later offer with the same `xmlId` replaces an earlier one, in its place).
    fn add(&mut self, o: &Value) {
        let Some(x) = o.get("xmlId").and_then(Value::as_str) else {
            return;
        };
        let hash = self.hasher.hash_one(x);
        let found = {
            let (offers, text) = (&self.offers, &self.text);
            self.table
                .find(hash, |&i| {
                    offers.get(i as usize).is_some_and(|of| {
                        let [at, len] = of.key;
                        text.get(at as usize..(at + len) as usize) == Some(x)
                    })
                })
                .copied()
        };
        let (id_kind, id) = self.field(o.get(OFFER_FIELDS[0]), x);
        let (active_kind, active_at) = match o.get(OFFER_FIELDS[2]) {
            None => (Kind::Absent, 0),
            Some(Value::Null) => (Kind::Null, 0),
            Some(Value::Bool(false)) => (Kind::False, 0),
            Some(Value::Bool(true)) => (Kind::True, 0),
            // Rare: whatever it is, kept as read.
            Some(v) => (Kind::Other, self.other(v)[1]),
        };
        let (external_kind, external) = self.field(o.get(OFFER_FIELDS[3]), x);
        let key = match found.and_then(|i| self.offers.get(i as usize)) {
            // The same `xmlId`: its text is already placed.
            Some(old) => old.key,
            None => match self.place(x) {
                Some(p) => p,
                // Not reached below 4 GiB of text; such an offer is not kept.
                None => return,
            },
        };
        let offer = Offer {
            key,
            id,
            external,
            active_at,
            kinds: [id_kind, active_kind, external_kind],
        };
        match found {
            Some(i) => {
                if let Some(slot) = self.offers.get_mut(i as usize) {
                    *slot = offer;
                }
            }
            None => {
                let Ok(place) = u32::try_from(self.offers.len()) else {
                    return;
                };
                self.offers.push(offer);
                let (offers, text, hasher) = (&self.offers, &self.text, &self.hasher);
                self.table.insert_unique(hash, place, |&i| {
                    let [at, len] = offers.get(i as usize).map_or([0; 2], |o| o.key);
                    hasher.hash_one(
                        text.get(at as usize..(at + len) as usize)
                            .unwrap_or_default(),
                    )
                });
            }
        }
    }

    /// A field's value (`key`: the offer's `xmlId`, shared).
    fn value(&self, kind: Kind, payload: [u32; 2], key: &Str) -> EngineValue {
        match kind {
            Kind::Absent | Kind::Null => EngineValue::Null,
            Kind::False => EngineValue::bool(false),
            Kind::True => EngineValue::bool(true),
            Kind::Int => EngineValue::Int(payload_int(payload)),
            Kind::Text => EngineValue::str(self.slice(payload)),
            Kind::Key => EngineValue::Str(key.clone()),
            Kind::Other => self
                .others
                .get(payload[1] as usize)
                .cloned()
                .unwrap_or(EngineValue::Null),
        }
    }

    /// Which of [`OFFER_FIELDS`] the offer has (bit `i` for field `i`; `xmlId` always).
    fn present(o: &Offer) -> u8 {
        let [id, active, external] = o.kinds.map(|k| u8::from(k != Kind::Absent));
        id | 2 | (active << 2) | (external << 3)
    }

    fn object(&self, key: &Str, o: &Offer) -> EngineValue {
        let present = Self::present(o);
        let mut values = Vec::with_capacity(4);
        if o.kinds[0] != Kind::Absent {
            values.push(self.value(o.kinds[0], o.id, key));
        }
        values.push(EngineValue::Str(key.clone()));
        if o.kinds[1] != Kind::Absent {
            values.push(self.value(o.kinds[1], [0, o.active_at], key));
        }
        if o.kinds[2] != Kind::Absent {
            values.push(self.value(o.kinds[2], o.external, key));
        }
        let shape = self.shapes.get(usize::from(present));
        match shape.map(|s| EngineMap::like(s, values)) {
            Some(Ok(map)) => EngineValue::object(map),
            // Not reached: every combination has its shape.
            _ => EngineValue::Null,
        }
    }

    /// The entry of `xml_id` (`{id, xmlId, active, externalId}`), or null.
    pub fn entry(&self, xml_id: &str) -> EngineValue {
        let hash = self.hasher.hash_one(xml_id);
        let found = self.table.find(hash, |&i| {
            self.offers
                .get(i as usize)
                .is_some_and(|o| self.slice(o.key) == xml_id)
        });
        match found.and_then(|&i| self.offers.get(i as usize)) {
            Some(o) => self.object(&Str::from(xml_id), o),
            None => EngineValue::Null,
        }
    }

    /// The whole book as one object, in the order the offers were read.
    pub fn book(&self) -> EngineValue {
        let mut by_xml = EngineMap::with_capacity_and_hasher(self.offers.len(), Hasher::default());
        for o in &self.offers {
            let key = Str::from(self.slice(o.key));
            let entry = self.object(&key, o);
            by_xml.insert(key, entry);
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
    index.shrink();
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
                Some(EngineValue::Str(s)) => assert!(skladsync_engine::value::Str::ptr_eq(s, key)),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
    /// What the index answered when it held engine values: each offer's four fields
    /// converted whole, by `xmlId` (a later offer replacing an earlier one in its place).
    fn as_before(offers: &[Value]) -> EngineValue {
        let mut book = serde_json::Map::new();
        for o in offers {
            let Some(x) = o.get("xmlId").and_then(Value::as_str) else {
                continue;
            };
            let mut e = serde_json::Map::new();
            for f in OFFER_FIELDS {
                if let Some(v) = o.get(f) {
                    e.insert(f.to_string(), v.clone());
                }
            }
            book.insert(x.to_string(), Value::Object(e));
        }
        EngineValue::from_json(&Value::Object(book))
    }

    /// The compact index answers every entry, and the whole book, as the index of engine
    /// values did: ids of every kind (integers small, negative and past `i64`, decimals,
    /// texts, the `xmlId` itself, null, absent), `active` and `externalId` of every kind,
    /// non-ASCII keys, offers replaced by a later one, offers without a text `xmlId`.
    #[test]
    fn the_compact_index_answers_what_the_engine_values_did() {
        let offers = vec![
            json!({"id": 1, "xmlId": "c1", "active": true, "externalId": "c1", "name": "n"}),
            json!({"id": -7, "xmlId": "товар-№2 «ёлка»", "active": false, "externalId": "other"}),
            json!({"id": 18446744073709551615u64, "xmlId": "big", "active": null}),
            json!({"id": 2.5, "xmlId": "decimal", "externalId": null}),
            json!({"id": "text-id", "xmlId": "t", "active": "yes", "externalId": 5}),
            json!({"id": "same", "xmlId": "same", "externalId": {"nested": [1, 2]}}),
            json!({"xmlId": "bare"}),
            json!({"id": 9, "xmlId": "", "externalId": ""}),
            json!({"id": 10, "xmlId": 12, "externalId": "x"}),
            json!({"id": 11, "active": true}),
            json!({"id": 12, "xmlId": "c1", "active": false, "externalId": "changed"}),
            json!({"id": i64::MIN, "xmlId": "min", "active": [true], "externalId": "quote\"d"}),
            json!({"id": 0, "xmlId": "t", "externalId": "t"}),
        ];
        let index = OfferIndex::from_offers(&offers);
        let before = as_before(&offers);
        assert_eq!(index.book(), before);
        assert_eq!(
            index.book().to_serde_json().as_object().map(|o| o.len()),
            Some(9)
        );
        // Order: as first read, a replacement in the place of the offer it replaces.
        let keys: Vec<String> = index
            .book()
            .to_serde_json()
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "c1",
                "товар-№2 «ёлка»",
                "big",
                "decimal",
                "t",
                "same",
                "bare",
                "",
                "min"
            ]
        );
        for x in &keys {
            assert_eq!(index.entry(x), before.get(x), "{x}");
        }
        for missing in ["c2", "C1", "12", "товар"] {
            assert!(index.entry(missing).is_null(), "{missing}");
        }
        assert_eq!(index.len(), 9);
        // 32 bytes an offer.
        assert_eq!(std::mem::size_of::<Offer>(), 32);
    }
}
