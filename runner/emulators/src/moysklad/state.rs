//! The emulator's account: every entity as stored JSON, and the operations the API offers on
//! them (create, update, delete, bulk, nested collections, metadata). Pure data: no HTTP, no
//! clock of its own (the caller passes the time), so it is easy to test and to serialize.
//!
//! Stored form: each entity is the JSON МойСклад would return without `expand`, except that
//! nested collections (`positions`, `accounts`, `contactpersons`) are kept as plain arrays of
//! their rows and computed fields (`sum`, `payedSum`, links to other documents…) are added
//! when rendering (see `render.rs`).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::errors::{self, MsError};
use super::kinds::{self, Kind};

/// The МойСклад datetime format with milliseconds.
pub const DATETIME: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// Formats a datetime as МойСклад writes `updated`/`created`.
pub fn fmt_time(t: NaiveDateTime) -> String {
    t.format(DATETIME).to_string()
}

/// Formats a datetime truncated to the minute, as `moment` is stored.
pub fn fmt_minute(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:00.000").to_string()
}

/// Fields that name another entity through `{"meta": …}`, with the types they accept.
const REFERENCE_FIELDS: &[(&str, &[&str])] = &[
    ("agent", &["counterparty", "organization", "employee"]),
    ("organization", &["organization"]),
    ("store", &["store"]),
    ("sourceStore", &["store"]),
    ("targetStore", &["store"]),
    ("state", &["state"]),
    ("owner", &["employee"]),
    ("project", &["project"]),
    ("salesChannel", &["saleschannel"]),
    ("customerOrder", &["customerorder"]),
    ("demand", &["demand", "retaildemand"]),
    ("product", &["product"]),
    ("currency", &["currency"]),
    ("organizationAccount", &["account"]),
    ("agentAccount", &["account"]),
];

/// Fields clients may send but the server computes or owns; silently ignored on write.
const READ_ONLY: &[&str] = &[
    "id",
    "meta",
    "accountId",
    "updated",
    "created",
    "deleted",
    "sum",
    "vatSum",
    "payedSum",
    "shippedSum",
    "reservedSum",
    "invoicedSum",
    "demands",
    "payments",
    "moves",
    "returns",
    "prepayments",
    "invoicesOut",
    "purchaseOrders",
    "variantsCount",
    "salesAmount",
    "fullName",
    "shortFio",
];

/// A change the API reports through webhooks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Entity type (`customerorder`).
    pub entity_type: String,
    /// Entity id.
    pub id: String,
    /// Entity href.
    pub href: String,
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub action: String,
    /// Top-level fields that changed (UPDATE only).
    pub updated_fields: Vec<String>,
    /// The entity's `name` when it is gone (DELETE), for the audit event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Seeded opening stock of one assortment item on one store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockSeed {
    /// Store id.
    pub store: String,
    /// Product or variant id.
    pub assortment: String,
    /// Quantity on hand.
    pub quantity: f64,
    /// Unit cost in kopecks.
    pub cost: f64,
}

/// Account-level behaviour switches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Document numbers (`name`) must be unique per document type (the account setting
    /// "check uniqueness of numbers"; error 3006).
    pub unique_document_names: bool,
    /// Product/service/variant/bundle `code` must be unique (`checkUniqueCode`; error 3006).
    pub unique_product_codes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            unique_document_names: true,
            unique_product_codes: true,
        }
    }
}

/// Who performs an operation, and when.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The current time (Moscow, naive).
    pub now: NaiveDateTime,
    /// The acting employee's id (becomes `owner` of new entities), if any.
    pub employee: Option<String>,
    /// Seeding from Rust: read-only fields (`id`) may be given and non-creatable types
    /// (prepayment) may be created.
    pub seed: bool,
}

/// What a parsed href points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `entity/<type>/<id>`
    Entity(String, String),
    /// `entity/customentity/<dict>`
    Dictionary(String),
    /// `entity/customentity/<dict>/<id>`
    Element(String, String),
    /// `entity/<type>/metadata/states/<id>`
    State(String, String),
    /// `entity/<type>/metadata/attributes/<id>`
    Attribute(String, String),
    /// `entity/<type>/<parent>/<field>/<id>` (accounts, contactpersons, positions)
    Nested(String, String, String, String),
}

impl Target {
    /// The `meta.type` of the target.
    pub fn meta_type(&self) -> String {
        match self {
            Target::Entity(t, _) => t.clone(),
            Target::Dictionary(_) | Target::Element(..) => "customentity".into(),
            Target::State(..) => "state".into(),
            Target::Attribute(..) => "attributemetadata".into(),
            Target::Nested(t, _, f, _) => nested_meta_type(t, f).to_string(),
        }
    }
}

fn nested_meta_type<'a>(ty: &str, field: &'a str) -> &'a str {
    kinds::find(ty)
        .and_then(|k| k.nested.iter().find(|(f, _)| *f == field))
        .map_or(field, |(_, t)| t)
}

/// Whether `s` is a UUID in the canonical textual form.
pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && s.len() == 36
}

/// The whole emulated account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// Base URL the hrefs are built on (`…/api/remap/1.2`).
    pub base_url: String,
    /// `accountId` of every entity.
    pub account_id: String,
    /// Behaviour switches.
    pub options: Options,
    next_id: u64,
    /// Entities by type, then id, in creation order. Custom dictionary elements live under
    /// `customentity:<dictionaryId>`.
    pub entities: BTreeMap<String, IndexMap<String, Value>>,
    /// Custom field definitions by owner type (product's also serve service/bundle/variant).
    pub attributes: BTreeMap<String, Vec<Value>>,
    /// Document states by type.
    pub states: BTreeMap<String, Vec<Value>>,
    /// Variant characteristics (`entity/variant/metadata/characteristics`).
    pub characteristics: Vec<Value>,
    /// Seeded opening stock.
    pub stock: Vec<StockSeed>,
    /// When the stock of `store|assortment` last changed (for `changedSince`).
    pub stock_changes: BTreeMap<String, String>,
    counters: BTreeMap<String, u64>,
    /// The account's price types (`context/companysettings/pricetype`): `id`, `name`,
    /// `externalCode`; the first is the default.
    #[serde(default = "default_price_types")]
    pub price_types: Vec<Value>,
    /// The audit: one context per change (request or UI action), oldest first.
    #[serde(default)]
    pub audit: Vec<super::audit::AuditContext>,
    /// Injected refusals of creates (fault injection, see [`Refusal`]); not part of a dump.
    #[serde(skip)]
    pub refusals: Vec<Refusal>,
    /// Bumped whenever the state may have changed (see [`State::changed`]): what the stock
    /// reports and the assortment computed is kept for one version (not part of a dump).
    #[serde(skip)]
    pub(crate) version: u64,
    /// What the reports computed at `version` (see `stock::ReportCache`).
    #[serde(skip)]
    pub(crate) reports: super::stock::ReportCache,
}

/// An injected refusal: the next `times` creates of `entity` whose `field` is `value` are
/// refused with МойСклад error 1999 (HTTP 500, "an unexpected error"), nothing stored. In a
/// bulk POST the refusal takes that element's place in the answer, as the real service
/// reports a failed element; the other elements are created.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The entity type (`customerorder`).
    pub entity: String,
    /// The field compared (`name`).
    pub field: String,
    /// The value that is refused.
    pub value: Value,
    /// How many more creates to refuse.
    pub times: u32,
}

impl State {
    /// Whether a create of `ty` with `body` is refused (and counts it).
    pub fn refused(&mut self, ty: &str, body: &Value) -> Option<MsError> {
        let r = self
            .refusals
            .iter_mut()
            .find(|r| r.times > 0 && r.entity == ty && body.get(&r.field) == Some(&r.value))?;
        r.times -= 1;
        Some(errors::unknown_error(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        ))
    }
}

/// Id of the account's main group (отдел «Основной»), which owns every entity.
pub const MAIN_GROUP_ID: &str = "0e3a0000-5a1e-11f0-0a80-900000000001";

/// The price type every new account has: «Цена продажи» (its `externalCode` is the one
/// МойСклад gives the default price type).
fn default_price_types() -> Vec<Value> {
    vec![json!({
        "id": "0e3a0000-5a1e-11f0-0a80-900000000002",
        "name": "Цена продажи",
        "externalCode": "cbcf493b-55bc-11d9-848a-00112f43529a"
    })]
}

type Res<T> = Result<T, MsError>;

impl State {
    /// An empty account whose hrefs start with `base_url`.
    pub fn new(base_url: String, account_id: String, options: Options) -> State {
        State {
            base_url,
            account_id,
            options,
            next_id: 0,
            entities: BTreeMap::new(),
            attributes: BTreeMap::new(),
            states: BTreeMap::new(),
            characteristics: Vec::new(),
            stock: Vec::new(),
            stock_changes: BTreeMap::new(),
            counters: BTreeMap::new(),
            price_types: default_price_types(),
            audit: Vec::new(),
            refusals: Vec::new(),
            version: 0,
            reports: Default::default(),
        }
    }

    /// Marks the state as changed: computed reports are not reused.
    pub(crate) fn changed(&mut self) {
        self.version = self.version.wrapping_add(1);
    }

    /// Re-points every href of a loaded state to `base_url` (a dump from another port).
    pub fn rebase(self, base_url: &str) -> Result<State, serde_json::Error> {
        if self.base_url == base_url {
            return Ok(self);
        }
        let old = self.base_url.clone();
        let text = serde_json::to_string(&self)?;
        // Hrefs appear as JSON strings; the old base is specific enough to replace textually.
        let text = text.replace(&old, base_url);
        let mut state: State = serde_json::from_str(&text)?;
        state.base_url = base_url.to_string();
        Ok(state)
    }

    /// A fresh id. Deterministic: the same sequence of operations gives the same ids.
    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!(
            "{:08x}-5a1e-11f0-0a80-{:012x}",
            0x0e3a_0000u32, self.next_id
        )
    }

    fn app_root(&self) -> String {
        match self.base_url.find("/api/remap/1.2") {
            Some(i) => format!("{}/app/", &self.base_url[..i]),
            None => format!("{}/app/", self.base_url),
        }
    }

    /// The meta of an entity, as the API writes it in the entity and in references.
    pub fn entity_meta(&self, ty: &str, id: &str) -> Value {
        let mut m = Map::new();
        m.insert(
            "href".into(),
            json!(format!("{}/entity/{ty}/{id}", self.base_url)),
        );
        m.insert(
            "metadataHref".into(),
            json!(format!("{}/entity/{ty}/metadata", self.base_url)),
        );
        m.insert("type".into(), json!(ty));
        m.insert("mediaType".into(), json!("application/json"));
        if let Some(ui) = kinds::find(ty).and_then(|k| k.ui) {
            m.insert(
                "uuidHref".into(),
                json!(format!("{}#{ui}/edit?id={id}", self.app_root())),
            );
        }
        Value::Object(m)
    }

    /// The canonical meta of any target.
    pub fn target_meta(&self, t: &Target) -> Value {
        let b = &self.base_url;
        match t {
            Target::Entity(ty, id) => self.entity_meta(ty, id),
            Target::Dictionary(d) => json!({
                "href": format!("{b}/entity/customentity/{d}"),
                "type": "customentity",
                "mediaType": "application/json"
            }),
            Target::Element(d, id) => json!({
                "href": format!("{b}/entity/customentity/{d}/{id}"),
                "metadataHref": format!("{b}/entity/customentity/{d}/metadata"),
                "type": "customentity",
                "mediaType": "application/json"
            }),
            Target::State(ty, id) => json!({
                "href": format!("{b}/entity/{ty}/metadata/states/{id}"),
                "metadataHref": format!("{b}/entity/{ty}/metadata"),
                "type": "state",
                "mediaType": "application/json"
            }),
            Target::Attribute(ty, id) => json!({
                "href": format!("{b}/entity/{ty}/metadata/attributes/{id}"),
                "type": "attributemetadata",
                "mediaType": "application/json"
            }),
            Target::Nested(ty, p, f, id) => {
                let mut m = json!({
                    "href": format!("{b}/entity/{ty}/{p}/{f}/{id}"),
                    "type": nested_meta_type(ty, f),
                    "mediaType": "application/json"
                });
                if f == "accounts" {
                    m["metadataHref"] = json!(format!("{b}/entity/{ty}/metadata"));
                }
                m
            }
        }
    }

    /// Parses an href of this API (any host: only the path after `/api/remap/1.2/` counts).
    pub fn parse_href(&self, href: &str) -> Option<Target> {
        let path = href.split('?').next()?;
        let rest = path.split_once("/api/remap/1.2/")?.1;
        let seg: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let s = |i: usize| seg.get(i).map(|x| x.to_string());
        match seg.as_slice() {
            ["entity", "customentity", d] => Some(Target::Dictionary(d.to_string())),
            ["entity", "customentity", d, id] if *id != "metadata" => {
                Some(Target::Element(d.to_string(), id.to_string()))
            }
            ["entity", ty, "metadata", "states", id] => {
                Some(Target::State(ty.to_string(), id.to_string()))
            }
            ["entity", ty, "metadata", "attributes", id] => {
                Some(Target::Attribute(ty.to_string(), id.to_string()))
            }
            ["entity", _, _, "accounts" | "contactpersons" | "positions", _] => {
                Some(Target::Nested(s(1)?, s(2)?, s(3)?, s(4)?))
            }
            ["entity", ty, id] => Some(Target::Entity(ty.to_string(), id.to_string())),
            _ => None,
        }
    }

    /// The stored value a target points to.
    pub fn resolve(&self, t: &Target) -> Option<&Value> {
        match t {
            Target::Entity(ty, id) => self.entities.get(ty.as_str())?.get(id.as_str()),
            Target::Dictionary(d) => self.entities.get("customentity")?.get(d.as_str()),
            Target::Element(d, id) => self
                .entities
                .get(&format!("customentity:{d}"))?
                .get(id.as_str()),
            Target::State(ty, id) => self
                .states
                .get(ty.as_str())?
                .iter()
                .find(|s| s["id"] == json!(id)),
            Target::Attribute(ty, id) => self
                .attributes
                .get(kinds::attribute_owner(ty))?
                .iter()
                .find(|s| s["id"] == json!(id)),
            Target::Nested(ty, p, f, id) => self
                .entities
                .get(ty.as_str())?
                .get(p.as_str())?
                .get(f.as_str())?
                .as_array()?
                .iter()
                .find(|r| r["id"] == json!(id)),
        }
    }

    /// All stored entities of a type, in creation order.
    pub fn all(&self, ty: &str) -> impl Iterator<Item = &Value> {
        self.entities.get(ty).into_iter().flat_map(|m| m.values())
    }

    /// One stored entity.
    pub fn get(&self, ty: &str, id: &str) -> Option<&Value> {
        self.entities.get(ty)?.get(id)
    }

    fn kind(ty: &str) -> Res<&'static Kind> {
        kinds::find(ty).ok_or_else(|| errors::unknown_type(ty))
    }

    /// The employee whose `uid` is `login`, if any.
    pub fn employee_by_uid(&self, login: &str) -> Option<String> {
        self.all("employee")
            .find(|e| e["uid"] == json!(login))
            .and_then(|e| e["id"].as_str().map(str::to_string))
    }

    fn random_code(&mut self) -> String {
        // 22 characters like the server's generated externalCode; derived from the id counter
        // so that runs are reproducible.
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        self.next_id += 1;
        let mut x = self
            .next_id
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17);
        let mut out = String::with_capacity(22);
        for i in 0..22u64 {
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9).wrapping_add(i);
            out.push(ALPHABET[(x % ALPHABET.len() as u64) as usize] as char);
        }
        out
    }

    fn next_document_name(&mut self, ty: &str) -> String {
        loop {
            let n = self.counters.entry(ty.to_string()).or_insert(0);
            *n += 1;
            let name = format!("{:05}", *n);
            if !self.all(ty).any(|d| d["name"] == json!(name)) {
                return name;
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // References and validation
    // ----------------------------------------------------------------------------------

    /// Checks `{"meta": …}` in `field` and returns the canonical reference and its target.
    pub fn normalize_ref(&self, field: &str, v: &Value) -> Res<(Value, Target)> {
        let meta = v
            .get("meta")
            .filter(|m| m.is_object())
            .ok_or_else(|| errors::field_without_meta(field))?;
        let href = meta
            .get("href")
            .and_then(Value::as_str)
            .ok_or_else(|| errors::meta_without_href(field))?;
        let ty = meta
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| errors::meta_without_type(field))?;
        let target = self
            .parse_href(href)
            .ok_or_else(|| errors::bad_href(field))?;
        let actual = target.meta_type();
        if actual != ty {
            if kinds::find(ty).is_none()
                && !matches!(
                    ty,
                    "state"
                        | "attributemetadata"
                        | "account"
                        | "contactperson"
                        | "customentity"
                        | "customerorderposition"
                        | "demandposition"
                        | "moveposition"
                        | "enterposition"
                        | "salesreturnposition"
                        | "prepaymentposition"
                )
            {
                return Err(errors::meta_unknown_type(field));
            }
            return Err(errors::wrong_ref_type(field, ty, &actual));
        }
        if self.resolve(&target).is_none() {
            return Err(errors::bad_href(field));
        }
        Ok((json!({ "meta": self.target_meta(&target) }), target))
    }

    fn check_ref_type(field: &str, target: &Target, allowed: &[&str]) -> Res<()> {
        let t = target.meta_type();
        if allowed.contains(&t.as_str()) {
            Ok(())
        } else {
            Err(errors::wrong_ref_type(
                field,
                &t,
                allowed.first().copied().unwrap_or(""),
            ))
        }
    }

    /// Normalizes and validates an entity body: the new body on create, the old entity with
    /// the patch applied on update (nested rows keep their ids when `id` already exists).
    /// Returns the stored form.
    /// A price type as the API shows it: `meta` (type `pricetype`), `id`, `name`,
    /// `externalCode`.
    pub fn render_price_type(&self, pt: &Value) -> Value {
        let id = pt["id"].as_str().unwrap_or("");
        json!({
            "meta": {
                "href": format!("{}/context/companysettings/pricetype/{id}", self.base_url),
                "type": "pricetype",
                "mediaType": "application/json"
            },
            "id": id,
            "name": pt["name"],
            "externalCode": pt["externalCode"]
        })
    }

    /// `salePrices[].priceType` refers to a price type of the account by `meta` (or, in seeds,
    /// by `name`); it is stored as the API shows it. An unknown one is refused.
    fn normalize_sale_prices(&self, body: &mut Map<String, Value>) -> Res<()> {
        let Some(Value::Array(prices)) = body.get_mut("salePrices") else {
            return Ok(());
        };
        for p in prices.iter_mut() {
            let given = &p["priceType"];
            let found = if let Some(href) = given["meta"]["href"].as_str() {
                let id = href.rsplit('/').next().unwrap_or("");
                self.price_types.iter().find(|t| t["id"] == json!(id))
            } else if let Some(id) = given["id"].as_str() {
                self.price_types.iter().find(|t| t["id"] == json!(id))
            } else if let Some(name) = given["name"].as_str() {
                self.price_types.iter().find(|t| t["name"] == json!(name))
            } else if given.is_null() {
                self.price_types.first()
            } else {
                None
            };
            let Some(pt) = found else {
                return Err(errors::not_found("pricetype", given.to_string().as_str()));
            };
            p["priceType"] = self.render_price_type(pt);
        }
        Ok(())
    }

    fn validate(&mut self, kind: &Kind, mut body: Map<String, Value>, id: &str) -> Res<Value> {
        self.normalize_sale_prices(&mut body)?;
        // Plain reference fields.
        for (field, allowed) in REFERENCE_FIELDS {
            let Some(v) = body.get(*field) else { continue };
            if v.is_null() {
                body.remove(*field);
                continue;
            }
            let (norm, target) = self.normalize_ref(field, v)?;
            Self::check_ref_type(field, &target, allowed)?;
            if *field == "state" {
                if let Target::State(owner, _) = &target {
                    if owner != kind.name {
                        return Err(errors::foreign_state());
                    }
                }
            }
            body.insert(field.to_string(), norm);
        }
        // Accounts of the organization and the agent must belong to them (17000/17001).
        for (acc, owner_field, code) in [
            ("organizationAccount", "organization", 17000u32),
            ("agentAccount", "agent", 17001),
        ] {
            if let Some(acc_v) = body.get(acc) {
                let acc_target = acc_v["meta"]["href"]
                    .as_str()
                    .and_then(|h| self.parse_href(h));
                let owner_id = body
                    .get(owner_field)
                    .and_then(|o| o["meta"]["href"].as_str())
                    .map(|h| crate::moysklad::query::id_of(h).to_string());
                let ok = matches!(
                    (&acc_target, &owner_id),
                    (Some(Target::Nested(_, p, f, _)), Some(o)) if f == "accounts" && p == o
                );
                if !ok {
                    return Err(MsError::new(
                        axum::http::StatusCode::PRECONDITION_FAILED,
                        code,
                        format!(
                            "Ошибка сохранения объекта: счет '{acc}' не принадлежит '{owner_field}'"
                        ),
                    )
                    .parameter(acc));
                }
            }
        }
        // rate.currency
        if let Some(rate) = body.get_mut("rate").and_then(Value::as_object_mut) {
            if let Some(c) = rate.get("currency").cloned() {
                let (norm, target) = self.normalize_ref("rate.currency", &c)?;
                Self::check_ref_type("rate.currency", &target, &["currency"])?;
                rate.insert("currency".into(), norm);
            }
        }
        // Required fields.
        for f in kind.required {
            let missing = match body.get(*f) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.trim().is_empty(),
                Some(Value::Array(a)) => a.is_empty() && *f == "characteristics",
                _ => false,
            };
            if missing {
                return Err(errors::required(f));
            }
        }
        // Strings that must be strings.
        for f in [
            "name",
            "externalCode",
            "code",
            "description",
            "email",
            "phone",
        ] {
            if let Some(v) = body.get(f) {
                if !v.is_string() && !v.is_null() {
                    return Err(errors::wrong_type(f, "String"));
                }
            }
        }
        // Document dates are stored to the minute (md/_general.md, "Формат даты и времени").
        for f in [
            "moment",
            "deliveryPlannedMoment",
            "paymentPlannedMoment",
            "incomingDate",
        ] {
            match body.get(f) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    let t = super::query::parse_datetime(s)
                        .ok_or_else(|| errors::wrong_type(f, "DateTime"))?;
                    body.insert(f.to_string(), json!(fmt_minute(t)));
                }
                Some(_) => return Err(errors::wrong_type(f, "DateTime")),
            }
        }
        if let Some(b) = body.get("applicable") {
            if !b.is_boolean() {
                return Err(errors::wrong_type("applicable", "Boolean"));
            }
        }
        // Kind-specific rules.
        match kind.name {
            "move" if body.get("sourceStore") == body.get("targetStore") => {
                return Err(errors::same_stores());
            }
            "counterparty" | "organization" => {
                if let Some(email) = body.get("email").and_then(Value::as_str) {
                    if !email.is_empty() && !valid_email(email) {
                        return Err(errors::bad_email(email));
                    }
                }
                if let Some(ct) = body.get("companyType").and_then(Value::as_str) {
                    if !["legal", "entrepreneur", "individual"].contains(&ct) {
                        return Err(errors::bad_enum(
                            "companyType",
                            ct,
                            "legal, entrepreneur, individual",
                        ));
                    }
                }
            }
            "paymentin" | "cashin" => self.validate_operations(&mut body)?,
            "variant" => self.normalize_characteristics(&mut body)?,
            "webhook" => self.validate_webhook(&body, id)?,
            _ => {}
        }
        // Nested collections.
        for (field, _) in kind.nested {
            let rows = match body.get(*field) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(Value::Object(o)) if o.contains_key("rows") => o
                    .get("rows")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                Some(Value::Object(_)) => {
                    // A MetaArray without rows (as GET returns it): keep what is stored.
                    let kept = self
                        .get(kind.name, id)
                        .and_then(|e| e.get(*field))
                        .cloned()
                        .unwrap_or_else(|| json!([]));
                    body.insert(field.to_string(), kept);
                    continue;
                }
                Some(_) => return Err(errors::wrong_type(field, "Array")),
            };
            if rows.len() > 1000 {
                return Err(errors::too_many_nested(field));
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(self.normalize_nested_row(kind, id, field, row)?);
            }
            body.insert(field.to_string(), Value::Array(out));
        }
        // Attributes.
        if let Some(attrs) = body.get("attributes").cloned() {
            let normalized = self.normalize_attributes(kind.name, &attrs)?;
            body.insert("attributes".into(), Value::Array(normalized));
        }
        Ok(Value::Object(body))
    }

    fn validate_operations(&self, body: &mut Map<String, Value>) -> Res<()> {
        let Some(ops) = body.get("operations").cloned() else {
            return Ok(());
        };
        let ops = ops
            .as_array()
            .ok_or_else(|| errors::wrong_type("operations", "Array"))?;
        let mut seen = Vec::new();
        let mut total = 0.0;
        let mut out = Vec::new();
        for op in ops {
            let (norm, target) = self.normalize_ref("operations", op)?;
            Self::check_ref_type(
                "operations",
                &target,
                &["customerorder", "demand", "retaildemand", "salesreturn"],
            )?;
            if seen.contains(&target) {
                return Err(errors::linked_twice());
            }
            seen.push(target);
            let linked = match op.get("linkedSum") {
                None | Some(Value::Null) => 0.0,
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| errors::wrong_type("linkedSum", "Float"))?,
            };
            total += linked;
            let mut o = norm;
            o["linkedSum"] = json!(linked);
            out.push(o);
        }
        let sum = body.get("sum").and_then(Value::as_f64).unwrap_or(0.0);
        if total > sum + 1e-6 {
            return Err(errors::linked_sum_exceeds());
        }
        body.insert("operations".into(), Value::Array(out));
        Ok(())
    }

    fn normalize_characteristics(&mut self, body: &mut Map<String, Value>) -> Res<()> {
        let Some(chars) = body
            .get("characteristics")
            .and_then(Value::as_array)
            .cloned()
        else {
            return Ok(());
        };
        let mut out = Vec::new();
        for c in chars {
            let value = c
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(|| errors::required("characteristics.value"))?
                .to_string();
            let by_id = c
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    c["meta"]["href"]
                        .as_str()
                        .map(|h| super::query::id_of(h).to_string())
                });
            let name = c.get("name").and_then(Value::as_str).map(str::to_string);
            let existing = self
                .characteristics
                .iter()
                .find(|x| {
                    by_id.as_deref().is_some_and(|i| x["id"] == json!(i))
                        || name.as_deref().is_some_and(|n| x["name"] == json!(n))
                })
                .cloned();
            let def = match (existing, name) {
                (Some(d), _) => d,
                (None, Some(n)) => {
                    let cid = self.new_id();
                    let d = json!({
                        "meta": {
                            "href": format!("{}/entity/variant/metadata/characteristics/{cid}", self.base_url),
                            "type": "attributemetadata",
                            "mediaType": "application/json"
                        },
                        "id": cid,
                        "name": n,
                        "type": "string",
                        "required": false
                    });
                    self.characteristics.push(d.clone());
                    d
                }
                (None, None) => return Err(errors::required("characteristics.name")),
            };
            out.push(json!({
                "meta": def["meta"],
                "id": def["id"],
                "name": def["name"],
                "value": value
            }));
        }
        body.insert("characteristics".into(), Value::Array(out));
        Ok(())
    }

    fn validate_webhook(&self, body: &Map<String, Value>, id: &str) -> Res<()> {
        let url = body.get("url").and_then(Value::as_str).unwrap_or("");
        if url.chars().count() > 255 {
            return Err(errors::webhook_url_too_long());
        }
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(errors::webhook_bad_url()),
        }
        let entity_type = body.get("entityType").and_then(Value::as_str).unwrap_or("");
        if !kinds::webhook_subscribable(entity_type) {
            return Err(errors::bad_enum(
                "entityType",
                entity_type,
                "customerorder, demand, counterparty, …",
            ));
        }
        let action = body.get("action").and_then(Value::as_str).unwrap_or("");
        if !["CREATE", "UPDATE", "DELETE"].contains(&action) {
            return Err(errors::bad_enum("action", action, "CREATE, UPDATE, DELETE"));
        }
        match body.get("diffType").and_then(Value::as_str) {
            None | Some("NONE") => {}
            Some("FIELDS") if action == "UPDATE" => {}
            Some("FIELDS") => return Err(errors::webhook_diff_type()),
            Some(other) => return Err(errors::bad_enum("diffType", other, "NONE, FIELDS")),
        }
        let others: Vec<&Value> = self
            .all("webhook")
            .filter(|w| w["id"] != json!(id))
            .filter(|w| w["entityType"] == json!(entity_type) && w["action"] == json!(action))
            .collect();
        if others.iter().any(|w| w["url"] == json!(url)) {
            return Err(errors::webhook_exists());
        }
        if others.len() >= 5 {
            return Err(errors::webhook_too_many());
        }
        Ok(())
    }

    /// Normalizes one row of a nested collection (position, account, contact person).
    fn normalize_nested_row(
        &mut self,
        kind: &Kind,
        parent_id: &str,
        field: &str,
        row: Value,
    ) -> Res<Value> {
        let Value::Object(mut row) = row else {
            return Err(errors::wrong_type(field, "Object"));
        };
        // Keep the id of an existing row (by `id` or by `meta.href`).
        let existing_id = row
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                row.get("meta")
                    .and_then(|m| m["href"].as_str())
                    .map(|h| super::query::id_of(h).to_string())
            });
        let old_rows = self
            .get(kind.name, parent_id)
            .and_then(|p| p.get(field))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let old = existing_id
            .as_deref()
            .and_then(|i| old_rows.iter().find(|r| r["id"] == json!(i)).cloned());
        let row_id = match old {
            Some(ref o) => o["id"].as_str().unwrap_or_default().to_string(),
            None => self.new_id(),
        };
        // Start from the old row so that a row sent back with only some fields keeps the rest.
        let mut out = match old {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        for k in ["meta", "id", "accountId", "shipped", "stock"] {
            row.remove(k);
        }
        let target = Target::Nested(
            kind.name.into(),
            parent_id.into(),
            field.into(),
            row_id.clone(),
        );
        out.insert("meta".into(), self.target_meta(&target));
        out.insert("id".into(), json!(row_id));
        out.insert("accountId".into(), json!(self.account_id));
        match field {
            "positions" => {
                let assortment = row
                    .remove("assortment")
                    .or_else(|| out.get("assortment").cloned())
                    .ok_or_else(|| errors::required("assortment"))?;
                let (norm, t) = self.normalize_ref("assortment", &assortment)?;
                Self::check_ref_type(
                    "assortment",
                    &t,
                    &["product", "variant", "service", "bundle"],
                )?;
                if kind.name == "move" && !matches!(t.meta_type().as_str(), "product" | "variant") {
                    return Err(errors::wrong_ref_type(
                        "assortment",
                        &t.meta_type(),
                        "product",
                    ));
                }
                let num =
                    |row: &Map<String, Value>, out: &Map<String, Value>, k: &str, d: f64| match row
                        .get(k)
                        .or_else(|| out.get(k))
                    {
                        None | Some(Value::Null) => Ok(d),
                        Some(v) => v.as_f64().ok_or_else(|| errors::wrong_type(k, "Float")),
                    };
                let quantity = match row.get("quantity").or_else(|| out.get("quantity")) {
                    None | Some(Value::Null) => return Err(errors::required("quantity")),
                    Some(v) => v
                        .as_f64()
                        .ok_or_else(|| errors::wrong_type("quantity", "Float"))?,
                };
                if quantity < 0.0 {
                    return Err(errors::negative("quantity"));
                }
                let price = num(&row, &out, "price", 0.0)?;
                if price < 0.0 {
                    return Err(errors::negative("price"));
                }
                let discount = num(&row, &out, "discount", 0.0)?;
                if discount > 100.0 {
                    return Err(errors::discount_too_big());
                }
                let vat = num(&row, &out, "vat", 0.0)?;
                if !(0.0..=100.0).contains(&vat) {
                    return Err(errors::vat_too_big());
                }
                let vat_enabled = match row.get("vatEnabled").or_else(|| out.get("vatEnabled")) {
                    Some(Value::Bool(b)) => *b,
                    _ => vat > 0.0,
                };
                out.insert("quantity".into(), json!(quantity));
                out.insert("price".into(), json!(price));
                out.insert("discount".into(), json!(discount));
                out.insert("vat".into(), json!(vat.round() as i64));
                out.insert("vatEnabled".into(), json!(vat_enabled));
                out.insert("assortment".into(), norm);
                if kind.name == "customerorder" {
                    let reserve = num(&row, &out, "reserve", 0.0)?;
                    if reserve < 0.0 {
                        return Err(errors::negative("reserve"));
                    }
                    if reserve > quantity + 1e-9 {
                        return Err(errors::reserve_exceeds_quantity());
                    }
                    out.insert("reserve".into(), json!(reserve));
                }
                // Other position fields (pack, things, taxSystem…) are kept as sent.
                for (k, v) in row {
                    if ![
                        "quantity",
                        "price",
                        "discount",
                        "vat",
                        "vatEnabled",
                        "reserve",
                    ]
                    .contains(&k.as_str())
                    {
                        out.insert(k, v);
                    }
                }
            }
            "accounts" => {
                for (k, v) in row {
                    out.insert(k, v);
                }
                let number = out
                    .get("accountNumber")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if number.trim().is_empty() {
                    return Err(errors::required("accountNumber"));
                }
                out.entry("isDefault").or_insert(json!(false));
                if let Some(c) = out.get("currency").cloned() {
                    let (norm, t) = self.normalize_ref("currency", &c)?;
                    Self::check_ref_type("currency", &t, &["currency"])?;
                    out.insert("currency".into(), norm);
                }
            }
            "contactpersons" => {
                for (k, v) in row {
                    out.insert(k, v);
                }
                let name = out.get("name").and_then(Value::as_str).unwrap_or("");
                if name.trim().is_empty() {
                    return Err(errors::required("name"));
                }
                if let Some(email) = out.get("email").and_then(Value::as_str) {
                    if !email.is_empty() && !valid_email(email) {
                        return Err(errors::bad_email(email));
                    }
                }
                if !out.contains_key("externalCode") {
                    let code = self.random_code();
                    out.insert("externalCode".into(), json!(code));
                }
                out.insert(
                    "agent".into(),
                    json!({"meta": self.entity_meta(kind.name, parent_id)}),
                );
            }
            _ => {
                for (k, v) in row {
                    out.insert(k, v);
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn normalize_attributes(&self, ty: &str, attrs: &Value) -> Res<Vec<Value>> {
        let list = attrs
            .as_array()
            .ok_or_else(|| errors::wrong_type("attributes", "Array"))?;
        let owner = kinds::attribute_owner(ty);
        let mut out = Vec::new();
        for a in list {
            let id = a
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    a["meta"]["href"]
                        .as_str()
                        .map(|h| super::query::id_of(h).to_string())
                })
                .ok_or_else(|| errors::field_without_meta("attributes"))?;
            let def = self
                .attributes
                .get(owner)
                .and_then(|defs| defs.iter().find(|d| d["id"] == json!(id)))
                .ok_or_else(|| errors::bad_href("attributes"))?;
            let value = a.get("value").cloned().unwrap_or(Value::Null);
            let value = if value.is_object() {
                let (mut norm, t) = self.normalize_ref("attributes.value", &value)?;
                if let Some(name) = self.resolve(&t).and_then(|v| v.get("name")) {
                    norm["name"] = name.clone();
                }
                norm
            } else {
                value
            };
            out.push(json!({
                "meta": def["meta"],
                "id": def["id"],
                "name": def["name"],
                "type": def["type"],
                "value": value
            }));
        }
        Ok(out)
    }

    fn check_required_attributes(&self, ty: &str, body: &Value) -> Res<()> {
        let owner = kinds::attribute_owner(ty);
        for def in self.attributes.get(owner).into_iter().flatten() {
            if def["required"] == json!(true) {
                let present = body["attributes"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["id"] == def["id"] && !x["value"].is_null())
                });
                if !present {
                    return Err(errors::required(
                        def["name"].as_str().unwrap_or("attributes"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_unique(&self, kind: &Kind, body: &Value, id: &str) -> Res<()> {
        if kind.document && self.options.unique_document_names {
            if let Some(name) = body.get("name") {
                if self
                    .all(kind.name)
                    .any(|d| d["id"] != json!(id) && d.get("name") == Some(name))
                {
                    return Err(errors::not_unique("name"));
                }
            }
        }
        if kind.assortment && self.options.unique_product_codes {
            if let Some(code) = body.get("code").filter(|c| c.as_str() != Some("")) {
                for ty in ["product", "service", "variant", "bundle"] {
                    if self
                        .all(ty)
                        .any(|d| d["id"] != json!(id) && d.get("code") == Some(code))
                    {
                        return Err(errors::not_unique("code"));
                    }
                }
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------
    // Create / update / delete
    // ----------------------------------------------------------------------------------

    /// Creates an entity of type `ty` from `body`. Returns the stored entity and the event.
    /// A `syncId` that already exists returns the existing entity and no event (§5.3).
    pub fn create(&mut self, ty: &str, body: &Value, ctx: &Ctx) -> Res<(Value, Option<Event>)> {
        let kind = Self::kind(ty)?;
        if !kind.creatable && !ctx.seed {
            return Err(errors::create_not_supported(ty));
        }
        let Value::Object(body) = body else {
            return Err(if body.is_array() {
                errors::array_not_allowed()
            } else {
                errors::not_object_or_array()
            });
        };
        let mut body = body.clone();
        if let Some(sync) = body.get("syncId").cloned() {
            if !kind.sync_id {
                body.remove("syncId");
            } else {
                let s = sync
                    .as_str()
                    .filter(|s| is_uuid(s))
                    .ok_or_else(|| errors::bad_uuid("syncId"))?;
                if let Some(existing) = self.all(ty).find(|e| e["syncId"] == json!(s)) {
                    return Ok((existing.clone(), None));
                }
            }
        }
        let id = match body.get("id").and_then(Value::as_str) {
            Some(given) if ctx.seed => {
                if !is_uuid(given) {
                    return Err(errors::bad_uuid("id"));
                }
                if self.get(ty, given).is_some() {
                    return Err(errors::not_unique("id"));
                }
                given.to_string()
            }
            _ => self.new_id(),
        };
        if !ctx.seed {
            check_known_fields(ty, &body)?;
        }
        let keep_uid = ctx.seed && ty == "employee";
        strip_read_only(kind, &mut body);
        if !keep_uid {
            body.remove("uid");
        }
        self.apply_defaults(kind, &mut body, ctx);
        let stored = self.validate(kind, body, &id)?;
        self.check_required_attributes(ty, &stored)?;
        self.check_unique(kind, &stored, &id)?;
        let stored = self.finish(kind, stored, &id, ctx, true);
        self.mark_stock(None, Some(&stored), ctx);
        self.entities
            .entry(ty.to_string())
            .or_default()
            .insert(id.clone(), stored.clone());
        let event = Event {
            entity_type: ty.to_string(),
            href: format!("{}/entity/{ty}/{id}", self.base_url),
            id,
            action: "CREATE".into(),
            updated_fields: vec![],
            name: None,
        };
        Ok((stored, Some(event)))
    }

    fn apply_defaults(&mut self, kind: &Kind, body: &mut Map<String, Value>, ctx: &Ctx) {
        if kind.name != "webhook" && kind.name != "currency" && !body.contains_key("externalCode") {
            let code = self.random_code();
            body.insert("externalCode".into(), json!(code));
        }
        let owned = kind.document
            || matches!(
                kind.name,
                "counterparty"
                    | "organization"
                    | "store"
                    | "product"
                    | "service"
                    | "bundle"
                    | "employee"
                    | "saleschannel"
                    | "project"
            );
        if owned {
            if !body.contains_key("owner") {
                if let Some(e) = &ctx.employee {
                    body.insert(
                        "owner".into(),
                        json!({"meta": self.entity_meta("employee", e)}),
                    );
                }
            }
            body.entry("shared").or_insert(json!(false));
            if !body.contains_key("group") {
                let mut meta = self.entity_meta("group", MAIN_GROUP_ID);
                if let Some(m) = meta.as_object_mut() {
                    m.remove("uuidHref");
                }
                body.insert("group".into(), json!({"meta": meta}));
            }
        }
        if kind.document {
            if !body.contains_key("name") {
                let n = self.next_document_name(kind.name);
                body.insert("name".into(), json!(n));
            }
            if !body.contains_key("moment") {
                body.insert("moment".into(), json!(fmt_minute(ctx.now)));
            }
            body.entry("applicable").or_insert(json!(true));
            body.entry("printed").or_insert(json!(false));
            body.entry("published").or_insert(json!(false));
            if !body.contains_key("rate") {
                if let Some(cur) = self.default_currency() {
                    body.insert(
                        "rate".into(),
                        json!({"currency": {"meta": self.entity_meta("currency", &cur)}}),
                    );
                }
            }
            if kind.positions.is_some() {
                body.entry("vatEnabled").or_insert(json!(true));
                body.entry("vatIncluded").or_insert(json!(true));
            }
            if matches!(kind.name, "paymentin" | "cashin") {
                body.entry("sum").or_insert(json!(0.0));
            }
        }
        match kind.name {
            "counterparty" | "organization" => {
                body.entry("companyType").or_insert(json!("legal"));
                body.entry("archived").or_insert(json!(false));
            }
            "store" | "productfolder" => {
                body.entry("archived").or_insert(json!(false));
                body.entry("pathName").or_insert(json!(""));
            }
            "product" | "service" | "bundle" => {
                body.entry("archived").or_insert(json!(false));
                body.entry("pathName").or_insert(json!(""));
                body.entry("salePrices").or_insert(json!([]));
                body.entry("paymentItemType")
                    .or_insert(json!(if kind.name == "service" {
                        "SERVICE"
                    } else {
                        "GOOD"
                    }));
            }
            "variant" => {
                body.entry("archived").or_insert(json!(false));
                body.entry("salePrices").or_insert(json!([]));
            }
            "employee" => {
                body.entry("archived").or_insert(json!(false));
            }
            "webhook" => {
                body.insert("method".into(), json!("POST"));
                body.entry("enabled").or_insert(json!(true));
            }
            _ => {}
        }
    }

    /// Id of the default currency (the first one marked `default`, else the first one).
    pub fn default_currency(&self) -> Option<String> {
        let all: Vec<&Value> = self.all("currency").collect();
        all.iter()
            .find(|c| c["default"] == json!(true))
            .or(all.first())
            .and_then(|c| c["id"].as_str().map(str::to_string))
    }

    /// Adds server-owned fields (meta, id, timestamps, computed names) to a validated body.
    fn finish(&self, kind: &Kind, stored: Value, id: &str, ctx: &Ctx, created: bool) -> Value {
        let Value::Object(body) = stored else {
            return stored;
        };
        let mut out = Map::new();
        out.insert("meta".into(), self.entity_meta(kind.name, id));
        out.insert("id".into(), json!(id));
        out.insert("accountId".into(), json!(self.account_id));
        out.insert("updated".into(), json!(fmt_time(ctx.now)));
        if kind.created && created {
            out.insert("created".into(), json!(fmt_time(ctx.now)));
        }
        for (k, v) in body {
            // On update the stored `created` comes back through the body and is kept.
            if (k == "created" && !created) || !out.contains_key(&k) {
                out.insert(k, v);
            }
        }
        match kind.name {
            "employee" => {
                let part = |k: &str| out.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let (last, first, middle) =
                    (part("lastName"), part("firstName"), part("middleName"));
                let full: Vec<&str> = [last.as_str(), first.as_str(), middle.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect();
                let full = full.join(" ");
                let mut short = last.clone();
                for n in [&first, &middle] {
                    if let Some(c) = n.chars().next() {
                        short.push_str(&format!(" {c}."));
                    }
                }
                out.insert("name".into(), json!(full));
                out.insert("fullName".into(), json!(full));
                out.insert("shortFio".into(), json!(short));
            }
            "variant" => {
                let product_name = out["product"]["meta"]["href"]
                    .as_str()
                    .and_then(|h| self.parse_href(h))
                    .and_then(|t| self.resolve(&t))
                    .and_then(|p| p["name"].as_str())
                    .unwrap_or("")
                    .to_string();
                let values: Vec<String> = out["characteristics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["value"].as_str().map(str::to_string))
                    .collect();
                out.insert(
                    "name".into(),
                    json!(format!("{product_name} ({})", values.join(", "))),
                );
            }
            _ => {}
        }
        Value::Object(out)
    }

    /// Applies a partial update (PUT semantics): fields sent replace, `null` clears, nested
    /// collections are replaced as a whole, attributes are merged by id.
    pub fn update(
        &mut self,
        ty: &str,
        id: &str,
        patch: &Value,
        ctx: &Ctx,
    ) -> Res<(Value, Option<Event>)> {
        let kind = Self::kind(ty)?;
        if !kind.creatable && !ctx.seed {
            return Err(errors::edit_not_supported(ty));
        }
        let old = self
            .get(ty, id)
            .cloned()
            .ok_or_else(|| errors::not_found(ty, id))?;
        let Value::Object(patch) = patch else {
            return Err(if patch.is_array() {
                errors::array_not_allowed()
            } else {
                errors::not_object_or_array()
            });
        };
        let mut patch = patch.clone();
        if !ctx.seed {
            check_known_fields(ty, &patch)?;
        }
        if let Some(sync) = patch.remove("syncId") {
            if kind.sync_id && old.get("syncId") != Some(&sync) && !sync.is_null() {
                return Err(errors::sync_id_changed());
            }
        }
        strip_read_only(kind, &mut patch);
        patch.remove("uid");
        let Value::Object(mut merged) = old.clone() else {
            return Err(errors::not_found(ty, id));
        };
        for k in ["meta", "id", "accountId", "updated"] {
            merged.remove(k);
        }
        for (k, v) in patch {
            if k == "attributes" {
                let mut current = merged
                    .get("attributes")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let incoming = self.normalize_attributes(ty, &v)?;
                for a in incoming {
                    current.retain(|c| c["id"] != a["id"]);
                    if !a["value"].is_null() {
                        current.push(a);
                    }
                }
                merged.insert(k, Value::Array(current));
            } else if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        let stored = self.validate(kind, merged, id)?;
        self.check_unique(kind, &stored, id)?;
        let stored = self.finish(kind, stored, id, ctx, false);
        let changed = changed_fields(&old, &stored);
        if changed.is_empty() {
            return Ok((old, None));
        }
        self.mark_stock(Some(&old), Some(&stored), ctx);
        if let Some(m) = self.entities.get_mut(ty) {
            m.insert(id.to_string(), stored.clone());
        }
        let event = Event {
            entity_type: ty.to_string(),
            id: id.to_string(),
            href: format!("{}/entity/{ty}/{id}", self.base_url),
            action: "UPDATE".into(),
            updated_fields: changed,
            name: None,
        };
        Ok((stored, Some(event)))
    }

    /// Entities and documents that refer to `ty/id` (what blocks its deletion).
    pub fn dependents(&self, ty: &str, id: &str) -> Vec<Value> {
        let mut deps = Vec::new();
        for (other_ty, map) in &self.entities {
            if other_ty == "webhook" {
                continue;
            }
            for (other_id, v) in map {
                if other_ty == ty && other_id == id {
                    continue;
                }
                if refers_to(v, ty, id, "owner") {
                    deps.push(v["meta"].clone());
                }
            }
        }
        deps
    }

    /// Deletes an entity. Refuses (409, 1028) when other entities refer to it.
    pub fn delete(&mut self, ty: &str, id: &str, ctx: &Ctx) -> Res<Event> {
        Self::kind(ty)?;
        let old = self
            .get(ty, id)
            .cloned()
            .ok_or_else(|| errors::not_found(ty, id))?;
        let deps = self.dependents(ty, id);
        if !deps.is_empty() {
            return Err(errors::in_use(deps));
        }
        self.mark_stock(Some(&old), None, ctx);
        if let Some(m) = self.entities.get_mut(ty) {
            m.shift_remove(id);
        }
        Ok(Event {
            entity_type: ty.to_string(),
            id: id.to_string(),
            href: format!("{}/entity/{ty}/{id}", self.base_url),
            action: "DELETE".into(),
            updated_fields: vec![],
            name: old["name"].as_str().map(str::to_string),
        })
    }

    /// The id of the entity of type `ty` with this `syncId`.
    pub fn find_by_sync_id(&self, ty: &str, sync_id: &str) -> Option<String> {
        self.all(ty)
            .find(|e| e["syncId"] == json!(sync_id))
            .and_then(|e| e["id"].as_str().map(str::to_string))
    }

    /// Records that stock cells touched by a document (before and/or after a change)
    /// changed now, for `changedSince` of the current reports.
    fn mark_stock(&mut self, old: Option<&Value>, new: Option<&Value>, ctx: &Ctx) {
        let now = fmt_time(ctx.now);
        let mut cells = Vec::new();
        for doc in [old, new].into_iter().flatten() {
            let ty = doc["meta"]["type"].as_str().unwrap_or("");
            if !matches!(
                ty,
                "customerorder" | "demand" | "move" | "salesreturn" | "retaildemand" | "enter"
            ) {
                continue;
            }
            let stores: Vec<String> = ["store", "sourceStore", "targetStore"]
                .iter()
                .filter_map(|f| doc[*f]["meta"]["href"].as_str())
                .map(|h| super::query::id_of(h).to_string())
                .collect();
            let stores = if stores.is_empty() {
                vec![String::new()]
            } else {
                stores
            };
            for p in doc["positions"].as_array().into_iter().flatten() {
                if let Some(h) = p["assortment"]["meta"]["href"].as_str() {
                    for s in &stores {
                        cells.push(format!("{s}|{}", super::query::id_of(h)));
                    }
                }
            }
        }
        for c in cells {
            self.stock_changes.insert(c, now.clone());
        }
    }

    /// Seeds opening stock and marks the cell changed.
    pub fn seed_stock(&mut self, seed: StockSeed, now: NaiveDateTime) {
        self.stock_changes
            .insert(format!("{}|{}", seed.store, seed.assortment), fmt_time(now));
        match self
            .stock
            .iter_mut()
            .find(|s| s.store == seed.store && s.assortment == seed.assortment)
        {
            Some(s) => *s = seed,
            None => self.stock.push(seed),
        }
    }

    // ----------------------------------------------------------------------------------
    // Nested collections as their own resources
    // ----------------------------------------------------------------------------------

    /// Adds rows to a nested collection (`POST …/positions` with an object or an array).
    pub fn add_nested(
        &mut self,
        ty: &str,
        id: &str,
        field: &str,
        rows: &Value,
        ctx: &Ctx,
    ) -> Res<(Vec<Value>, Option<Event>)> {
        let old = self
            .get(ty, id)
            .cloned()
            .ok_or_else(|| errors::not_found(ty, id))?;
        let mut current = old[field].as_array().cloned().unwrap_or_default();
        let before: Vec<Value> = current.iter().map(|r| r["id"].clone()).collect();
        let new_rows = match rows {
            Value::Array(a) => a.clone(),
            Value::Object(_) => vec![rows.clone()],
            _ => return Err(errors::not_object_or_array()),
        };
        if new_rows.len() > 1000 {
            return Err(errors::too_many_objects());
        }
        for mut r in new_rows {
            if let Some(o) = r.as_object_mut() {
                o.remove("id");
                o.remove("meta");
            }
            current.push(r);
        }
        let (stored, event) = self.update(ty, id, &json!({ field: Value::Array(current) }), ctx)?;
        let added: Vec<Value> = stored[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| !before.contains(&r["id"]))
            .cloned()
            .collect();
        Ok((added, event))
    }

    /// Updates one row of a nested collection.
    pub fn update_nested(
        &mut self,
        ty: &str,
        id: &str,
        field: &str,
        row_id: &str,
        patch: &Value,
        ctx: &Ctx,
    ) -> Res<(Value, Option<Event>)> {
        let old = self
            .get(ty, id)
            .cloned()
            .ok_or_else(|| errors::not_found(ty, id))?;
        let mut rows = old[field].as_array().cloned().unwrap_or_default();
        let Some(row) = rows.iter_mut().find(|r| r["id"] == json!(row_id)) else {
            return Err(errors::not_found(nested_meta_type(ty, field), row_id));
        };
        let Value::Object(p) = patch else {
            return Err(errors::not_object_or_array());
        };
        if let Some(r) = row.as_object_mut() {
            for (k, v) in p {
                if k != "id" && k != "meta" {
                    r.insert(k.clone(), v.clone());
                }
            }
        }
        let (stored, event) = self.update(ty, id, &json!({ field: rows }), ctx)?;
        let row = stored[field]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["id"] == json!(row_id))
            .cloned()
            .ok_or_else(|| errors::not_found(field, row_id))?;
        Ok((row, event))
    }

    /// Deletes one row of a nested collection.
    pub fn delete_nested(
        &mut self,
        ty: &str,
        id: &str,
        field: &str,
        row_id: &str,
        ctx: &Ctx,
    ) -> Res<Option<Event>> {
        let old = self
            .get(ty, id)
            .cloned()
            .ok_or_else(|| errors::not_found(ty, id))?;
        let mut rows = old[field].as_array().cloned().unwrap_or_default();
        let before = rows.len();
        rows.retain(|r| r["id"] != json!(row_id));
        if rows.len() == before {
            return Err(errors::not_found(nested_meta_type(ty, field), row_id));
        }
        let (_, event) = self.update(ty, id, &json!({ field: rows }), ctx)?;
        Ok(event)
    }

    // ----------------------------------------------------------------------------------
    // Metadata: attributes, states, custom dictionaries
    // ----------------------------------------------------------------------------------

    /// Creates a custom field definition on `ty` (`POST entity/<ty>/metadata/attributes`).
    pub fn create_attribute(&mut self, ty: &str, body: &Value) -> Res<Value> {
        let owner = kinds::attribute_owner(ty).to_string();
        Self::kind(&owner)?;
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| errors::required("name"))?;
        const TYPES: &[&str] = &[
            "string",
            "text",
            "link",
            "long",
            "double",
            "boolean",
            "time",
            "file",
            "customentity",
            "counterparty",
            "product",
            "store",
            "project",
            "employee",
            "contract",
        ];
        let at = body
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| errors::required("type"))?;
        if !TYPES.contains(&at) {
            return Err(errors::bad_enum("type", at, &TYPES.join(", ")));
        }
        let id = self.new_id();
        let mut def = json!({
            "meta": self.target_meta(&Target::Attribute(owner.clone(), id.clone())),
            "id": id,
            "name": name,
            "type": at,
            "required": body.get("required").and_then(Value::as_bool).unwrap_or(false),
            "show": body.get("show").and_then(Value::as_bool).unwrap_or(true),
        });
        if let Some(d) = body.get("description") {
            def["description"] = d.clone();
        }
        if at == "customentity" {
            // Accepted as the dictionary's own href or as its company-settings metadata href;
            // written back as the latter, as the API does.
            let href = body["customEntityMeta"]["href"]
                .as_str()
                .ok_or_else(|| errors::meta_without_href("customEntityMeta"))?;
            let path = href.split('?').next().unwrap_or(href);
            let dict = path
                .rsplit_once("/entity/customentity/")
                .or_else(|| path.rsplit_once("/context/companysettings/metadata/customEntities/"))
                .map(|(_, id)| id.to_string())
                .filter(|id| !id.contains('/'))
                .ok_or_else(|| errors::bad_href("customEntityMeta"))?;
            if self.get("customentity", &dict).is_none() {
                return Err(errors::bad_href("customEntityMeta"));
            }
            def["customEntityMeta"] = json!({
                "href": format!("{}/context/companysettings/metadata/customEntities/{dict}", self.base_url),
                "type": "customentitymetadata",
                "mediaType": "application/json"
            });
        }
        self.attributes.entry(owner).or_default().push(def.clone());
        Ok(def)
    }

    /// Creates a document state (`POST entity/<ty>/metadata/states`).
    pub fn create_state(&mut self, ty: &str, body: &Value) -> Res<Value> {
        let kind = Self::kind(ty)?;
        if !kind.states {
            return Err(errors::unknown_path(&format!(
                "entity/{ty}/metadata/states"
            )));
        }
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| errors::required("name"))?;
        let state_type = body
            .get("stateType")
            .and_then(Value::as_str)
            .unwrap_or("Regular");
        if !["Regular", "Successful", "Unsuccessful"].contains(&state_type) {
            return Err(errors::bad_enum(
                "stateType",
                state_type,
                "Regular, Successful, Unsuccessful",
            ));
        }
        let id = self.new_id();
        let s = json!({
            "meta": self.target_meta(&Target::State(ty.to_string(), id.clone())),
            "id": id,
            "accountId": self.account_id,
            "name": name,
            "color": body.get("color").and_then(Value::as_i64).unwrap_or(15_280_409),
            "stateType": state_type,
            "entityType": ty
        });
        self.states
            .entry(ty.to_string())
            .or_default()
            .push(s.clone());
        Ok(s)
    }

    /// Updates a document state's name, color or type.
    pub fn update_state(&mut self, ty: &str, id: &str, body: &Value) -> Res<Value> {
        let s = self
            .states
            .get_mut(ty)
            .and_then(|l| l.iter_mut().find(|s| s["id"] == json!(id)))
            .ok_or_else(|| errors::not_found("state", id))?;
        for k in ["name", "color", "stateType"] {
            if let Some(v) = body.get(k) {
                s[k] = v.clone();
            }
        }
        Ok(s.clone())
    }

    /// Deletes a document state; refused while a document uses it.
    pub fn delete_state(&mut self, ty: &str, id: &str) -> Res<()> {
        let href = format!("{}/entity/{ty}/metadata/states/{id}", self.base_url);
        let users: Vec<Value> = self
            .all(ty)
            .filter(|d| d["state"]["meta"]["href"] == json!(href))
            .map(|d| d["meta"].clone())
            .collect();
        if !users.is_empty() {
            return Err(errors::in_use(users));
        }
        let list = self
            .states
            .get_mut(ty)
            .ok_or_else(|| errors::not_found("state", id))?;
        let before = list.len();
        list.retain(|s| s["id"] != json!(id));
        if list.len() == before {
            return Err(errors::not_found("state", id));
        }
        Ok(())
    }

    /// Creates a custom dictionary (`POST entity/customentity {"name"}`).
    pub fn create_dictionary(&mut self, body: &Value) -> Res<Value> {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| errors::required("name"))?;
        let id = self.new_id();
        let d = json!({
            "meta": self.target_meta(&Target::Dictionary(id.clone())),
            "id": id,
            "name": name
        });
        self.entities
            .entry("customentity".into())
            .or_default()
            .insert(id.clone(), d.clone());
        self.entities
            .entry(format!("customentity:{id}"))
            .or_default();
        Ok(d)
    }

    /// Adds an element to a custom dictionary.
    pub fn create_element(&mut self, dict: &str, body: &Value, ctx: &Ctx) -> Res<(Value, Event)> {
        if self.get("customentity", dict).is_none() {
            return Err(errors::not_found("customentity", dict));
        }
        let Value::Object(b) = body else {
            return Err(errors::not_object_or_array());
        };
        let name = b
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| errors::required("name"))?;
        let id = self.new_id();
        let code = match b.get("externalCode") {
            Some(c) => c.clone(),
            None => json!(self.random_code()),
        };
        let mut e = json!({
            "meta": self.target_meta(&Target::Element(dict.to_string(), id.clone())),
            "id": id,
            "accountId": self.account_id,
            "updated": fmt_time(ctx.now),
            "name": name,
            "externalCode": code,
            "shared": true
        });
        for k in ["code", "description"] {
            if let Some(v) = b.get(k) {
                e[k] = v.clone();
            }
        }
        if let Some(emp) = &ctx.employee {
            e["owner"] = json!({"meta": self.entity_meta("employee", emp)});
        }
        self.entities
            .entry(format!("customentity:{dict}"))
            .or_default()
            .insert(id.clone(), e.clone());
        let href = format!("{}/entity/customentity/{dict}/{id}", self.base_url);
        Ok((
            e,
            Event {
                entity_type: "customentity".into(),
                id,
                href,
                action: "CREATE".into(),
                updated_fields: vec![],
                name: None,
            },
        ))
    }

    /// Updates an element of a custom dictionary.
    pub fn update_element(
        &mut self,
        dict: &str,
        id: &str,
        body: &Value,
        ctx: &Ctx,
    ) -> Res<(Value, Option<Event>)> {
        let key = format!("customentity:{dict}");
        let base = self.base_url.clone();
        let e = self
            .entities
            .get_mut(&key)
            .and_then(|m| m.get_mut(id))
            .ok_or_else(|| errors::not_found("customentity", id))?;
        let old = e.clone();
        for k in ["name", "code", "description", "externalCode"] {
            if let Some(v) = body.get(k) {
                e[k] = v.clone();
            }
        }
        let changed = changed_fields(&old, e);
        if changed.is_empty() {
            return Ok((old, None));
        }
        e["updated"] = json!(fmt_time(ctx.now));
        Ok((
            e.clone(),
            Some(Event {
                entity_type: "customentity".into(),
                id: id.to_string(),
                href: format!("{base}/entity/customentity/{dict}/{id}"),
                action: "UPDATE".into(),
                updated_fields: changed,
                name: None,
            }),
        ))
    }

    /// Deletes an element of a custom dictionary.
    pub fn delete_element(&mut self, dict: &str, id: &str) -> Res<Event> {
        let href = format!("{}/entity/customentity/{dict}/{id}", self.base_url);
        let used: Vec<Value> = self
            .entities
            .values()
            .flat_map(|m| m.values())
            .filter(|v| {
                v["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["value"]["meta"]["href"] == json!(href))
            })
            .map(|v| v["meta"].clone())
            .collect();
        if !used.is_empty() {
            return Err(errors::in_use(used));
        }
        self.entities
            .get_mut(&format!("customentity:{dict}"))
            .and_then(|m| m.shift_remove(id))
            .ok_or_else(|| errors::not_found("customentity", id))?;
        Ok(Event {
            entity_type: "customentity".into(),
            id: id.to_string(),
            href,
            action: "DELETE".into(),
            updated_fields: vec![],
            name: None,
        })
    }
}

/// Refuses a body naming a field the type does not have (1007), as the API does, instead of
/// storing it (a misspelt field would otherwise look written).
fn check_known_fields(ty: &str, body: &Map<String, Value>) -> Res<()> {
    let Some(known) = super::fields::fields(ty) else {
        return Ok(());
    };
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(errors::unknown_field(k)),
        None => Ok(()),
    }
}

/// Drops fields the server owns. A payment's `sum` is the client's; a document with
/// positions computes its own.
fn strip_read_only(kind: &Kind, body: &mut Map<String, Value>) {
    for k in READ_ONLY {
        let owned_elsewhere = (*k == "sum" && kind.positions.is_none())
            || (matches!(*k, "fullName" | "shortFio") && kind.name != "employee");
        if !owned_elsewhere {
            body.remove(*k);
        }
    }
}

/// Whether `v` (anywhere inside, except under `skip_field`) refers to `ty/id`.
fn refers_to(v: &Value, ty: &str, id: &str, skip_field: &str) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, x)| {
            if k == skip_field {
                return false;
            }
            if k == "meta" {
                let href = x["href"].as_str().unwrap_or("");
                let path = href.split('?').next().unwrap_or("");
                return x["type"] == json!(ty) && path.ends_with(&format!("/entity/{ty}/{id}"));
            }
            refers_to(x, ty, id, skip_field)
        }),
        Value::Array(a) => a.iter().any(|x| refers_to(x, ty, id, skip_field)),
        _ => false,
    }
}

/// Top-level fields whose values differ (server-owned fields excluded).
pub fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let skip = ["updated", "meta", "id", "accountId"];
    let mut keys: Vec<&String> = Vec::new();
    for o in [old, new] {
        if let Value::Object(m) = o {
            for k in m.keys() {
                if !skip.contains(&k.as_str()) && !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
    }
    keys.into_iter()
        .filter(|k| old.get(k.as_str()) != new.get(k.as_str()))
        .cloned()
        .collect()
}

fn valid_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}
