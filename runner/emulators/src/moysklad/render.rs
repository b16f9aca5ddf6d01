//! Turning stored entities into API responses: nested collections as MetaArrays, computed
//! fields (`sum`, `payedSum`, `shippedSum`, `reservedSum`, links between documents), `expand`,
//! and collection listing with `filter`/`search`/`order`/paging.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::errors::MsError;
use super::kinds;
use super::query::{self, id_of, Expand, ListParams, Scalar};
use super::state::State;

/// Links between documents, computed once per response.
#[derive(Debug, Default)]
pub struct Links {
    /// Per customer order: linked demands.
    pub demands: HashMap<String, Vec<Value>>,
    /// Per customer order: linked moves.
    pub moves: HashMap<String, Vec<Value>>,
    /// Per document (order or demand): payments whose `operations` point at it.
    pub payments: HashMap<String, Vec<Value>>,
    /// Per document: sum linked by posted payments.
    pub paid: HashMap<String, f64>,
    /// Per customer order: prepayments.
    pub prepayments: HashMap<String, Vec<Value>>,
    /// Per demand: sales returns based on it.
    pub returns: HashMap<String, Vec<Value>>,
    /// Per customer order: quantity shipped by posted demands, per assortment id.
    pub shipped: HashMap<String, HashMap<String, f64>>,
}

fn ref_id(v: &Value, field: &str) -> Option<String> {
    v[field]["meta"]["href"]
        .as_str()
        .map(|h| id_of(h).to_string())
}

/// The assortment id of a position.
pub fn position_assortment(p: &Value) -> Option<String> {
    p["assortment"]["meta"]["href"]
        .as_str()
        .map(|h| id_of(h).to_string())
}

/// Whether a document is posted.
pub fn applicable(d: &Value) -> bool {
    d["applicable"].as_bool().unwrap_or(true)
}

impl Links {
    /// Scans every document once.
    pub fn compute(state: &State) -> Links {
        let mut l = Links::default();
        for d in state.all("demand") {
            if let Some(o) = ref_id(d, "customerOrder") {
                l.demands
                    .entry(o.clone())
                    .or_default()
                    .push(json!({"meta": d["meta"]}));
                if applicable(d) {
                    let shipped = l.shipped.entry(o).or_default();
                    for p in d["positions"].as_array().into_iter().flatten() {
                        if let Some(a) = position_assortment(p) {
                            *shipped.entry(a).or_default() += p["quantity"].as_f64().unwrap_or(0.0);
                        }
                    }
                }
            }
        }
        for d in state.all("move") {
            if let Some(o) = ref_id(d, "customerOrder") {
                l.moves
                    .entry(o)
                    .or_default()
                    .push(json!({"meta": d["meta"]}));
            }
        }
        for d in state.all("prepayment") {
            if let Some(o) = ref_id(d, "customerOrder") {
                l.prepayments
                    .entry(o)
                    .or_default()
                    .push(json!({"meta": d["meta"]}));
            }
        }
        for d in state.all("salesreturn") {
            if let Some(o) = ref_id(d, "demand") {
                l.returns
                    .entry(o)
                    .or_default()
                    .push(json!({"meta": d["meta"]}));
            }
        }
        for ty in ["paymentin", "cashin"] {
            for pay in state.all(ty) {
                for op in pay["operations"].as_array().into_iter().flatten() {
                    if let Some(h) = op["meta"]["href"].as_str() {
                        let target = id_of(h).to_string();
                        l.payments
                            .entry(target.clone())
                            .or_default()
                            .push(json!({"meta": pay["meta"]}));
                        if applicable(pay) {
                            *l.paid.entry(target).or_default() +=
                                op["linkedSum"].as_f64().unwrap_or(0.0);
                        }
                    }
                }
            }
        }
        l
    }
}

/// Money of one position: (line total after discount incl. VAT, VAT part), in kopecks.
fn line_total(doc: &Value, p: &Value, qty: f64) -> (f64, f64) {
    let price = p["price"].as_f64().unwrap_or(0.0);
    let discount = p["discount"].as_f64().unwrap_or(0.0);
    let line = qty * price * (1.0 - discount / 100.0);
    let vat = p["vat"].as_f64().unwrap_or(0.0);
    let vat_on = doc["vatEnabled"].as_bool().unwrap_or(false)
        && p["vatEnabled"].as_bool().unwrap_or(vat > 0.0);
    if !vat_on || vat == 0.0 {
        return (line, 0.0);
    }
    if doc["vatIncluded"].as_bool().unwrap_or(true) {
        (line, line * vat / (100.0 + vat))
    } else {
        let v = line * vat / 100.0;
        (line + v, v)
    }
}

fn kopecks(x: f64) -> f64 {
    x.round()
}

/// Per-position shipped quantities of an order: the order's shipped total per assortment is
/// allocated to its positions in order.
pub fn allocate_shipped(order: &Value, links: &Links) -> Vec<f64> {
    let id = order["id"].as_str().unwrap_or("");
    let mut left: HashMap<String, f64> = links.shipped.get(id).cloned().unwrap_or_default();
    order["positions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let q = p["quantity"].as_f64().unwrap_or(0.0);
            match position_assortment(p).and_then(|a| left.get_mut(&a)) {
                Some(rest) => {
                    let s = rest.min(q).max(0.0);
                    *rest -= s;
                    s
                }
                None => 0.0,
            }
        })
        .collect()
}

/// Effective reserve of each position of an order: reserve counts only while the order is
/// posted, and shrinks by what posted demands have shipped.
pub fn effective_reserves(order: &Value, links: &Links) -> Vec<f64> {
    let shipped = allocate_shipped(order, links);
    let posted = applicable(order);
    order["positions"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(shipped)
        .map(|(p, s)| {
            if !posted {
                return 0.0;
            }
            let q = p["quantity"].as_f64().unwrap_or(0.0);
            let r = p["reserve"].as_f64().unwrap_or(0.0);
            r.min(q - s).max(0.0)
        })
        .collect()
}

impl State {
    /// Renders a stored entity as the API returns it, with `expand` applied.
    pub fn render(&self, stored: &Value, expand: &Expand, links: &Links) -> Value {
        self.render_depth(stored, expand, links, 0)
    }

    fn render_depth(&self, stored: &Value, expand: &Expand, links: &Links, depth: usize) -> Value {
        let Value::Object(src) = stored else {
            return stored.clone();
        };
        let ty = stored["meta"]["type"].as_str().unwrap_or("").to_string();
        let kind = kinds::find(&ty);
        let mut out: Map<String, Value> = src.clone();
        let id = stored["id"].as_str().unwrap_or("").to_string();

        // Computed document fields.
        if let Some(k) = kind {
            if k.positions.is_some() {
                let positions = stored["positions"].as_array().cloned().unwrap_or_default();
                let (mut sum, mut vat_sum) = (0.0, 0.0);
                for p in &positions {
                    let (l, v) = line_total(stored, p, p["quantity"].as_f64().unwrap_or(0.0));
                    sum += l;
                    vat_sum += v;
                }
                out.insert("sum".into(), json!(kopecks(sum)));
                if ty != "move" {
                    out.insert("vatSum".into(), json!(kopecks(vat_sum)));
                }
            }
            match ty.as_str() {
                "customerorder" => {
                    let shipped = allocate_shipped(stored, links);
                    let reserves = effective_reserves(stored, links);
                    let positions = stored["positions"].as_array().cloned().unwrap_or_default();
                    let (mut shipped_sum, mut reserved_sum) = (0.0, 0.0);
                    let mut rows = Vec::new();
                    for ((p, s), r) in positions.iter().zip(&shipped).zip(&reserves) {
                        shipped_sum += line_total(stored, p, *s).0;
                        reserved_sum += line_total(stored, p, *r).0;
                        let mut p = p.clone();
                        p["shipped"] = json!(s);
                        rows.push(p);
                    }
                    out.insert("positions".into(), Value::Array(rows));
                    out.insert(
                        "payedSum".into(),
                        json!(links.paid.get(&id).copied().unwrap_or(0.0)),
                    );
                    out.insert("shippedSum".into(), json!(kopecks(shipped_sum)));
                    out.insert("invoicedSum".into(), json!(0.0));
                    out.insert("reservedSum".into(), json!(kopecks(reserved_sum)));
                    for (field, map) in [
                        ("demands", &links.demands),
                        ("moves", &links.moves),
                        ("payments", &links.payments),
                        ("prepayments", &links.prepayments),
                    ] {
                        if let Some(v) = map.get(&id) {
                            out.insert(field.into(), Value::Array(v.clone()));
                        }
                    }
                }
                "demand" | "retaildemand" | "salesreturn" => {
                    out.insert(
                        "payedSum".into(),
                        json!(links.paid.get(&id).copied().unwrap_or(0.0)),
                    );
                    if let Some(v) = links.payments.get(&id) {
                        out.insert("payments".into(), Value::Array(v.clone()));
                    }
                    if let Some(v) = links.returns.get(&id) {
                        out.insert("returns".into(), Value::Array(v.clone()));
                    }
                }
                "counterparty" => {
                    // Sales are not emulated; the field is always present in responses.
                    out.entry("salesAmount").or_insert(json!(0.0));
                }
                "product" => {
                    let n = self
                        .all("variant")
                        .filter(|v| ref_id(v, "product").as_deref() == Some(id.as_str()))
                        .count();
                    out.insert("variantsCount".into(), json!(n));
                }
                _ => {}
            }
            // Nested collections become MetaArrays; rows only when expanded.
            for (field, meta_type) in k.nested {
                let rows = out
                    .get(*field)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let href = format!("{}/entity/{ty}/{id}/{field}", self.base_url);
                let mut ma = json!({
                    "meta": {
                        "href": href,
                        "type": meta_type,
                        "mediaType": "application/json",
                        "size": rows.len(),
                        "limit": 1000,
                        "offset": 0
                    }
                });
                if let Some(sub) = expand.get(field) {
                    let rendered: Vec<Value> = rows
                        .iter()
                        .map(|r| self.expand_fields(r, sub, links, depth + 1))
                        .collect();
                    ma["rows"] = Value::Array(rendered);
                }
                out.insert(field.to_string(), ma);
            }
        }
        let out = Value::Object(out);
        let nested: Vec<&str> = kind
            .map(|k| k.nested.iter().map(|(f, _)| *f).collect())
            .unwrap_or_default();
        let mut filtered = Expand::default();
        for (k, v) in &expand.0 {
            if !nested.contains(&k.as_str()) {
                filtered.0.insert(k.clone(), v.clone());
            }
        }
        self.expand_fields(&out, &filtered, links, depth)
    }

    /// Replaces the references named by `expand` with the rendered targets.
    fn expand_fields(&self, v: &Value, expand: &Expand, links: &Links, depth: usize) -> Value {
        if expand.is_empty() || depth >= 3 {
            return v.clone();
        }
        let mut out = v.clone();
        for (field, sub) in &expand.0 {
            let Some(current) = out.get(field).cloned() else {
                continue;
            };
            let replaced = match &current {
                Value::Object(_) => self.expand_ref(&current, sub, links, depth),
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|i| self.expand_ref(i, sub, links, depth))
                        .collect(),
                ),
                _ => continue,
            };
            out[field.as_str()] = replaced;
        }
        out
    }

    fn expand_ref(&self, r: &Value, sub: &Expand, links: &Links, depth: usize) -> Value {
        let Some(href) = r["meta"]["href"].as_str() else {
            return r.clone();
        };
        let Some(target) = self.parse_href(href) else {
            return r.clone();
        };
        match self.resolve(&target) {
            Some(stored) => {
                let mut rendered = self.render_depth(stored, sub, links, depth + 1);
                // Keep fields the reference carried beside its meta (e.g. `linkedSum`).
                if let (Value::Object(extra), Value::Object(o)) = (r, &mut rendered) {
                    for (k, v) in extra {
                        if k != "meta" {
                            o.entry(k.clone()).or_insert(v.clone());
                        }
                    }
                }
                rendered
            }
            None => r.clone(),
        }
    }

    /// The scalars an entity holds for a filter field.
    pub fn lookup(&self, e: &Value, field: &str) -> Vec<Scalar> {
        if field.starts_with("http") && field.contains("/metadata/attributes/") {
            let id = id_of(field);
            return e["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["id"] == json!(id))
                .map(|a| query::scalars(&a["value"]))
                .unwrap_or_default();
        }
        let ty = e["meta"]["type"].as_str().unwrap_or("");
        match field {
            "state.name" => e["state"]["meta"]["href"]
                .as_str()
                .and_then(|h| self.parse_href(h))
                .and_then(|t| self.resolve(&t))
                .and_then(|s| s["name"].as_str())
                .map(|n| vec![Scalar::Str(n.to_string())])
                .unwrap_or_default(),
            "assortment" => e["positions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(position_assortment)
                .map(Scalar::Str)
                .collect(),
            "type" => vec![Scalar::Str(ty.to_string())],
            "isDeleted" => vec![Scalar::Bool(false)],
            "archived" => vec![Scalar::Bool(e["archived"].as_bool().unwrap_or(false))],
            "accounts.accountNumber" | "accounts.accountnumber" => e["accounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["accountNumber"].as_str())
                .map(|s| Scalar::Str(s.to_string()))
                .collect(),
            "store" if ty == "move" => query::scalars(&e["sourceStore"]),
            "agentStore" if ty == "move" => query::scalars(&e["targetStore"]),
            _ if field.contains('.') => {
                let mut cur = e;
                for part in field.split('.') {
                    cur = &cur[part];
                }
                query::scalars(cur)
            }
            _ => query::scalars(&e[field]),
        }
    }

    fn search_hit(&self, e: &Value, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        let hit = |v: &Value| {
            v.as_str()
                .is_some_and(|s| s.to_lowercase().contains(&needle))
        };
        let fields = [
            "name",
            "code",
            "externalCode",
            "description",
            "email",
            "phone",
            "legalTitle",
            "inn",
            "article",
            "discountCardNumber",
        ];
        fields.iter().any(|f| hit(&e[*f]))
            || e["contactpersons"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| hit(&c["name"]) || hit(&c["email"]) || hit(&c["phone"]))
    }

    /// Filters, orders and pages a list of stored entities; returns the page and the total.
    pub fn select<'a>(
        &'a self,
        candidates: Vec<&'a Value>,
        params: &ListParams,
    ) -> Result<(Vec<&'a Value>, usize), MsError> {
        let mut rows = Vec::new();
        for e in candidates {
            let mut lookup = |f: &str| self.lookup(e, f);
            if !query::matches(&params.filter, &mut lookup)? {
                continue;
            }
            if let Some(s) = &params.search {
                if !self.search_hit(e, s) {
                    continue;
                }
            }
            rows.push(e);
        }
        if !params.order.is_empty() {
            rows.sort_by(|a, b| {
                for (f, desc) in &params.order {
                    let o = query::order_cmp(a.get(f), b.get(f));
                    let o = if *desc { o.reverse() } else { o };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        let total = rows.len();
        let page = rows
            .into_iter()
            .skip(params.offset)
            .take(params.limit)
            .collect();
        Ok((page, total))
    }

    /// The `context` block of list responses.
    pub fn context(&self) -> Value {
        json!({"employee": {"meta": {
            "href": format!("{}/context/employee", self.base_url),
            "metadataHref": format!("{}/entity/employee/metadata", self.base_url),
            "type": "employee",
            "mediaType": "application/json"
        }}})
    }
}

/// Builds the collection `meta` with `nextHref`/`previousHref` as the API does.
pub fn collection_meta(
    href_base: &str,
    query: &[(String, String)],
    meta_type: &str,
    size: usize,
    limit: usize,
    offset: usize,
) -> Value {
    let with = |off: usize| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            if k != "limit" && k != "offset" {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("limit", &limit.to_string());
        ser.append_pair("offset", &off.to_string());
        format!("{href_base}?{}", ser.finish())
    };
    let mut m = json!({
        "href": if query.is_empty() { href_base.to_string() } else { with(offset) },
        "type": meta_type,
        "mediaType": "application/json",
        "size": size,
        "limit": limit,
        "offset": offset
    });
    if offset + limit < size {
        m["nextHref"] = json!(with(offset + limit));
    }
    if offset > 0 {
        m["previousHref"] = json!(with(offset.saturating_sub(limit)));
    }
    m
}
