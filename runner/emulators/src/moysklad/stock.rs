//! Stock reports computed from the account's state (`md/reports/_report_stock.md`).
//!
//! * `stock` = seeded opening stock + posted receipts − posted issues: posted `demand` and
//!   `retaildemand` take from their `store`, posted `salesreturn` adds to its `store`, a posted
//!   `move` takes from `sourceStore` and adds to `targetStore`.
//! * `reserve` = per posted `customerorder` position, `min(reserve, quantity − shipped)` on the
//!   order's `store`, where `shipped` is what posted demands linked to the order (`customerOrder`)
//!   shipped of that assortment. Orders without a store reserve "unassigned" (`storeId: null`).
//! * `inTransit` is always 0 (purchase orders are not emulated).
//! * `quantity` (available) = `stock − reserve + inTransit`; `freeStock` = `stock − reserve`.
//! * Cost price (`price`, kopecks per unit) = the seeded unit cost, averaged over stores by
//!   seeded quantity; without a seed, the item's `buyPrice.value` (a variant falls back to its
//!   product's).
//!
//! Only products and variants hold stock; services and bundles never appear.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::errors::{self, MsError};
use super::kinds;
use super::query::{self, id_of, Op};
use super::render::{applicable, collection_meta, effective_reserves, position_assortment, Links};
use super::state::State;

/// Stock figures of one cell.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cell {
    /// On hand.
    pub stock: f64,
    /// Reserved.
    pub reserve: f64,
    /// In transit (always 0 here).
    pub in_transit: f64,
}

impl Cell {
    /// `stock − reserve + inTransit`.
    pub fn quantity(&self) -> f64 {
        self.stock - self.reserve + self.in_transit
    }

    fn value(&self, stock_type: &str) -> f64 {
        match stock_type {
            "freeStock" => self.stock - self.reserve,
            "quantity" => self.quantity(),
            "reserve" => self.reserve,
            "inTransit" => self.in_transit,
            _ => self.stock,
        }
    }

    fn add(&mut self, o: &Cell) {
        self.stock += o.stock;
        self.reserve += o.reserve;
        self.in_transit += o.in_transit;
    }
}

/// Stock per (store id, assortment id); store id `""` holds reserves of orders without a store.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// The cells.
    pub cells: BTreeMap<(String, String), Cell>,
}

/// What the stock reports and the assortment list computed over the whole account (the rows
/// their filters keep, before paging), kept for one version of the state: the pages of one
/// report cost one computation, not one each (a report over 100 000 items is read in 100
/// pages). Any change to the state (any request but a GET, any helper that locks it) makes a
/// new version, so an answer is always what the state is now.
#[derive(Default)]
pub(crate) struct ReportCache {
    kept: Mutex<Option<(u64, Computed)>>,
}

/// What was computed for one version, by cache key.
type Computed = HashMap<String, Arc<dyn Any + Send + Sync>>;

impl Clone for ReportCache {
    /// A copy of the state computes its own.
    fn clone(&self) -> Self {
        ReportCache::default()
    }
}

impl std::fmt::Debug for ReportCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReportCache")
    }
}

impl ReportCache {
    /// What `compute` gives for `key` at `version`, computed once per version.
    pub(crate) fn get<T: Any + Send + Sync>(
        &self,
        version: u64,
        key: &str,
        compute: impl FnOnce() -> T,
    ) -> Arc<T> {
        let kept: Result<Arc<T>, std::convert::Infallible> =
            self.get_result(version, key, || Ok(compute()));
        match kept {
            Ok(t) => t,
            Err(never) => match never {},
        }
    }

    /// [`ReportCache::get`] for a computation that may fail (a failure is not kept).
    pub(crate) fn get_result<T: Any + Send + Sync, E>(
        &self,
        version: u64,
        key: &str,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, map)) = kept.as_ref() {
            if *v == version {
                if let Some(t) = map.get(key).and_then(|x| x.clone().downcast::<T>().ok()) {
                    return Ok(t);
                }
            }
        }
        let t = Arc::new(compute()?);
        match kept.as_mut() {
            Some((v, map)) if *v == version => {
                map.insert(key.to_string(), t.clone());
            }
            _ => {
                let mut map = Computed::new();
                map.insert(key.to_string(), t.clone());
                *kept = Some((version, map));
            }
        }
        Ok(t)
    }
}

/// The cache key of a request: its route and its query without the paging.
pub(crate) fn cache_key(route: &str, q: &[(String, String)]) -> String {
    let mut key = route.to_string();
    for (k, v) in q.iter().filter(|(k, _)| k != "limit" && k != "offset") {
        key.push('&');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}

/// Totals per assortment item over all stores (unassigned reserve included), for the stock
/// fields of `entity/assortment` rows; computed once per version of the state.
pub(crate) fn totals(state: &State) -> Arc<HashMap<String, Cell>> {
    state.reports.get(state.version, "totals", || {
        let table = compute(state, &Links::compute(state));
        let mut totals: HashMap<String, Cell> = HashMap::new();
        for ((_, a), c) in &table.cells {
            totals.entry(a.clone()).or_default().add(c);
        }
        totals
    })
}

/// The cells of a [`Table`] grouped by assortment item, so that one item's totals cost its own
/// cells only (a report over a big catalogue is then linear in the catalogue, not quadratic).
struct ByItem<'a> {
    cells: HashMap<&'a str, Vec<(&'a str, Cell)>>,
}

impl<'a> ByItem<'a> {
    fn new(t: &'a Table) -> Self {
        let mut cells: HashMap<&str, Vec<(&str, Cell)>> = HashMap::new();
        for ((s, a), c) in &t.cells {
            cells.entry(a.as_str()).or_default().push((s.as_str(), *c));
        }
        ByItem { cells }
    }

    fn total(&self, assortment: &str, stores: Option<&BTreeSet<String>>) -> Cell {
        let mut c = Cell::default();
        for (s, cell) in self.cells.get(assortment).into_iter().flatten() {
            if stores.is_none_or(|set| set.contains(*s)) {
                c.add(cell);
            }
        }
        c
    }
}

/// Unit costs of every seeded item: `(quantity, value)` over its seeds with stock.
struct Costs<'a> {
    seeded: HashMap<&'a str, (f64, f64)>,
}

impl<'a> Costs<'a> {
    fn new(state: &'a State) -> Self {
        let mut seeded: HashMap<&str, (f64, f64)> = HashMap::new();
        for s in state.stock.iter().filter(|s| s.quantity > 0.0) {
            let e = seeded.entry(s.assortment.as_str()).or_default();
            e.0 += s.quantity;
            e.1 += s.quantity * s.cost;
        }
        Costs { seeded }
    }

    /// The same as [`cost_price`].
    fn price(&self, state: &State, assortment: &str) -> f64 {
        match self.seeded.get(assortment) {
            Some((qty, value)) if *qty > 0.0 => (value / qty).round(),
            _ => unseeded_cost(state, assortment),
        }
    }
}

impl Table {
    /// Totals of one assortment item over all stores (unassigned reserve included).
    pub fn total(&self, assortment: &str) -> Cell {
        let mut c = Cell::default();
        for ((_, a), cell) in &self.cells {
            if a == assortment {
                c.add(cell);
            }
        }
        c
    }
}

fn is_stocked(state: &State, assortment: &str) -> bool {
    state.get("product", assortment).is_some() || state.get("variant", assortment).is_some()
}

/// Computes the stock table from seeds and documents.
pub fn compute(state: &State, links: &Links) -> Table {
    let mut t = Table::default();
    for s in &state.stock {
        t.cells
            .entry((s.store.clone(), s.assortment.clone()))
            .or_default()
            .stock += s.quantity;
    }
    for (ty, field, sign) in kinds::STOCK_MOVES {
        for d in state.all(ty).filter(|d| applicable(d)) {
            let Some(store) = d[*field]["meta"]["href"]
                .as_str()
                .map(|h| id_of(h).to_string())
            else {
                continue;
            };
            for p in d["positions"].as_array().into_iter().flatten() {
                let Some(a) = position_assortment(p) else {
                    continue;
                };
                if !is_stocked(state, &a) {
                    continue;
                }
                t.cells.entry((store.clone(), a)).or_default().stock +=
                    sign * p["quantity"].as_f64().unwrap_or(0.0);
            }
        }
    }
    for o in state.all("customerorder") {
        let store = o["store"]["meta"]["href"]
            .as_str()
            .map(|h| id_of(h).to_string())
            .unwrap_or_default();
        let reserves = effective_reserves(o, links);
        for (p, r) in o["positions"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(reserves)
        {
            if r <= 0.0 {
                continue;
            }
            let Some(a) = position_assortment(p) else {
                continue;
            };
            if !is_stocked(state, &a) {
                continue;
            }
            t.cells.entry((store.clone(), a)).or_default().reserve += r;
        }
    }
    t
}

/// `fields=stock` on a document: each rendered position gets
/// `stock: {cost, quantity, reserve, intransit, available}` for the document's store (all
/// stores when it has none), as of now, `cost` being the unit cost price in kopecks. (The
/// real API computes it at the document's moment for shipments; the emulator keeps no
/// history.)
pub fn add_position_stock(state: &State, doc: &mut Value, links: &Links) {
    let table = compute(state, links);
    let store = doc["store"]["meta"]["href"]
        .as_str()
        .map(|h| id_of(h).to_string());
    let Some(rows) = doc
        .pointer_mut("/positions/rows")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for p in rows {
        let Some(a) = position_assortment(p) else {
            continue;
        };
        let cell = match &store {
            Some(s) => table
                .cells
                .get(&(s.clone(), a.clone()))
                .copied()
                .unwrap_or_default(),
            None => table.total(&a),
        };
        p["stock"] = json!({
            "cost": cost_price(state, &a),
            "quantity": cell.stock,
            "reserve": cell.reserve,
            "intransit": cell.in_transit,
            "available": cell.quantity(),
        });
    }
}

/// Unit cost in kopecks of an assortment item.
pub fn cost_price(state: &State, assortment: &str) -> f64 {
    let (mut qty, mut value) = (0.0, 0.0);
    for s in state.stock.iter().filter(|s| s.assortment == assortment) {
        if s.quantity > 0.0 {
            qty += s.quantity;
            value += s.quantity * s.cost;
        }
    }
    if qty > 0.0 {
        return (value / qty).round();
    }
    unseeded_cost(state, assortment)
}

/// The cost of an item without seeded stock: its `buyPrice` (a variant's falls back to its
/// product's).
fn unseeded_cost(state: &State, assortment: &str) -> f64 {
    let buy = |v: &Value| v["buyPrice"]["value"].as_f64();
    if let Some(p) = state.get("product", assortment) {
        return buy(p).unwrap_or(0.0);
    }
    if let Some(v) = state.get("variant", assortment) {
        if let Some(b) = buy(v) {
            return b;
        }
        let product = v["product"]["meta"]["href"]
            .as_str()
            .map(id_of)
            .unwrap_or("");
        return state.get("product", product).and_then(buy).unwrap_or(0.0);
    }
    0.0
}

/// Items with stock, in a stable order: products, then variants, each in creation order.
fn stocked_items(state: &State) -> Vec<&Value> {
    state.all("product").chain(state.all("variant")).collect()
}

fn mode_ok(mode: &str, v: f64) -> bool {
    match mode {
        "positiveOnly" => v > 0.0,
        "negativeOnly" => v < 0.0,
        "empty" => v == 0.0,
        "nonEmpty" => v != 0.0,
        _ => true,
    }
}

/// The special filters of stock reports.
struct StockFilter {
    stores: Option<BTreeSet<String>>,
    items: Option<BTreeSet<String>>,
    stock_mode: String,
    quantity_mode: String,
}

fn parse_stock_filter(
    q: &[(String, String)],
    default_stock_mode: &str,
) -> Result<StockFilter, MsError> {
    let mut f = StockFilter {
        stores: None,
        items: None,
        stock_mode: default_stock_mode.to_string(),
        quantity_mode: "nonEmpty".to_string(),
    };
    for (k, v) in q {
        if k != "filter" {
            continue;
        }
        for c in query::parse_filter(v)? {
            match (c.field.as_str(), c.op) {
                ("store", Op::Eq) => {
                    f.stores
                        .get_or_insert_with(BTreeSet::new)
                        .insert(id_of(&c.value).to_string());
                }
                ("product" | "variant", Op::Eq) => {
                    f.items
                        .get_or_insert_with(BTreeSet::new)
                        .insert(id_of(&c.value).to_string());
                }
                ("stockMode", Op::Eq) => f.stock_mode = c.value.clone(),
                ("quantityMode", Op::Eq) => f.quantity_mode = c.value.clone(),
                ("moment" | "archived" | "productFolder" | "withSubFolders" | "search", _) => {}
                (other, _) => {
                    return Err(errors::filter_error(&format!(
                        "неизвестный параметр фильтрации '{other}'"
                    )))
                }
            }
        }
    }
    for (mode, name) in [
        (&f.stock_mode, "stockMode"),
        (&f.quantity_mode, "quantityMode"),
    ] {
        if ![
            "all",
            "positiveOnly",
            "negativeOnly",
            "empty",
            "nonEmpty",
            "underMinimum",
        ]
        .contains(&mode.as_str())
        {
            return Err(errors::bad_param(
                name,
                mode,
                "all, positiveOnly, negativeOnly, empty, nonEmpty, underMinimum",
            ));
        }
    }
    Ok(f)
}

fn paging(q: &[(String, String)]) -> Result<(usize, usize), MsError> {
    let params = query::ListParams::from_query(
        &q.iter()
            .filter(|(k, _)| k == "limit" || k == "offset")
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    Ok((params.limit, params.offset))
}

fn row_meta(state: &State, item: &Value, with_supplier: bool) -> Value {
    let ty = item["meta"]["type"].as_str().unwrap_or("product");
    let id = item["id"].as_str().unwrap_or("");
    let mut m = state.entity_meta(ty, id);
    if with_supplier {
        if let Some(h) = m["href"].as_str() {
            m["href"] = json!(format!("{h}?expand=supplier"));
        }
    }
    m
}

/// A row a report keeps: the item's type and id, its cells (one total for `report/stock/all`,
/// one per store for `bystore`) and its unit cost.
struct Kept {
    ty: String,
    id: String,
    cells: Vec<Cell>,
    price: f64,
}

/// `GET report/stock/all`. The rows the filter keeps are computed once per version of the
/// state (see [`ReportCache`]); only the rows of the page asked for are rendered (`meta.size`
/// counts every row the filter keeps).
pub fn report_all(state: &State, url: &str, q: &[(String, String)]) -> Result<Value, MsError> {
    let f = parse_stock_filter(q, "all")?;
    let (limit, offset) = paging(q)?;
    let group_by_product = q.iter().any(|(k, v)| k == "groupBy" && v == "product");
    let kept = state.reports.get(state.version, &cache_key("all", q), || {
        report_all_rows(state, &f, group_by_product)
    });
    let mut page = Vec::new();
    for k in kept.iter().skip(offset).take(limit) {
        let Some(item) = state.get(&k.ty, &k.id) else {
            continue;
        };
        let cell = k.cells.first().copied().unwrap_or_default();
        let sale_price = item["salePrices"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|p| p["value"].as_f64())
            .unwrap_or(0.0);
        let mut row = json!({
            "meta": row_meta(state, item, true),
            "stock": cell.stock,
            "inTransit": cell.in_transit,
            "reserve": cell.reserve,
            "quantity": cell.quantity(),
            "name": item["name"],
            "code": item.get("code").cloned().unwrap_or(json!("")),
            "price": k.price,
            "salePrice": sale_price,
            "externalCode": item["externalCode"],
            "stockDays": 0
        });
        if let Some(a) = item.get("article") {
            row["article"] = a.clone();
        }
        page.push(row);
    }
    Ok(json!({
        "context": state.context(),
        "meta": collection_meta(url, q, "stock", kept.len(), limit, offset),
        "rows": page
    }))
}

/// Every row `report/stock/all` keeps with filter `f`, in order.
fn report_all_rows(state: &State, f: &StockFilter, group_by_product: bool) -> Vec<Kept> {
    let links = Links::compute(state);
    let table = compute(state, &links);
    let by_item = ByItem::new(&table);
    let costs = Costs::new(state);
    let stores = f.stores.as_ref();
    let mut variants: HashMap<&str, Vec<&str>> = HashMap::new();
    if group_by_product {
        for v in state.all("variant") {
            if let (Some(p), Some(vid)) = (v["product"]["meta"]["href"].as_str(), v["id"].as_str())
            {
                variants.entry(id_of(p)).or_default().push(vid);
            }
        }
    }
    let mut kept = Vec::new();
    for item in stocked_items(state) {
        let ty = item["meta"]["type"].as_str().unwrap_or("");
        let id = item["id"].as_str().unwrap_or("");
        if group_by_product && ty == "variant" {
            continue;
        }
        if let Some(items) = &f.items {
            if !items.contains(id) {
                continue;
            }
        }
        let mut cell = by_item.total(id, stores);
        for vid in variants.get(id).into_iter().flatten() {
            cell.add(&by_item.total(vid, stores));
        }
        if !mode_ok(&f.stock_mode, cell.stock) || !mode_ok(&f.quantity_mode, cell.quantity()) {
            continue;
        }
        kept.push(Kept {
            ty: stored_type(state, item, id),
            id: id.to_string(),
            cells: vec![cell],
            price: costs.price(state, id),
        });
    }
    kept
}

/// The type an item is stored under (`product` or `variant`).
fn stored_type(state: &State, item: &Value, id: &str) -> String {
    ["product", "variant"]
        .into_iter()
        .find(|t| state.get(t, id).is_some_and(|x| std::ptr::eq(x, item)))
        .unwrap_or("product")
        .to_string()
}

/// `GET report/stock/bystore`. The rows the filter keeps are computed once per version of the
/// state (see [`ReportCache`]); only the rows of the page asked for are rendered.
pub fn report_by_store(state: &State, url: &str, q: &[(String, String)]) -> Result<Value, MsError> {
    let f = parse_stock_filter(q, "nonEmpty")?;
    let (limit, offset) = paging(q)?;
    let stores: Vec<(&str, &Value)> = state
        .all("store")
        .map(|s| (s["id"].as_str().unwrap_or(""), s))
        .filter(|(id, _)| f.stores.as_ref().is_none_or(|set| set.contains(*id)))
        .collect();
    let kept = state
        .reports
        .get(state.version, &cache_key("bystore", q), || {
            report_by_store_rows(state, &f, &stores)
        });
    let mut page = Vec::new();
    for k in kept.iter().skip(offset).take(limit) {
        let Some(item) = state.get(&k.ty, &k.id) else {
            continue;
        };
        let per_store: Vec<Value> = stores
            .iter()
            .zip(&k.cells)
            .map(|((sid, s), cell)| {
                json!({
                    "meta": state.entity_meta("store", sid),
                    "name": s["name"],
                    "stock": cell.stock,
                    "reserve": cell.reserve,
                    "inTransit": cell.in_transit
                })
            })
            .collect();
        page.push(json!({
            "meta": row_meta(state, item, false),
            "stockByStore": per_store
        }));
    }
    Ok(json!({
        "context": state.context(),
        "meta": collection_meta(url, q, "stockbystore", kept.len(), limit, offset),
        "rows": page
    }))
}

/// Every row `report/stock/bystore` keeps with filter `f` over `stores`, in order.
fn report_by_store_rows(state: &State, f: &StockFilter, stores: &[(&str, &Value)]) -> Vec<Kept> {
    let links = Links::compute(state);
    let table = compute(state, &links);
    let by_item = ByItem::new(&table);
    let mut kept = Vec::new();
    for item in stocked_items(state) {
        let id = item["id"].as_str().unwrap_or("");
        if let Some(items) = &f.items {
            if !items.contains(id) {
                continue;
            }
        }
        let mine = by_item.cells.get(id);
        let mut cells = Vec::with_capacity(stores.len());
        let mut any_stock = false;
        let mut total = Cell::default();
        for (sid, _) in stores {
            let cell = mine
                .and_then(|c| c.iter().find(|(s, _)| s == sid))
                .map(|(_, c)| *c)
                .unwrap_or_default();
            any_stock |= cell.stock != 0.0;
            total.add(&cell);
            cells.push(cell);
        }
        let keep = match f.stock_mode.as_str() {
            "nonEmpty" => any_stock,
            other => mode_ok(other, total.stock),
        };
        if !keep {
            continue;
        }
        kept.push(Kept {
            ty: stored_type(state, item, id),
            id: id.to_string(),
            cells,
            price: 0.0,
        });
    }
    kept
}

/// `GET report/stock/all/current` (`by_store` false) and `report/stock/bystore/current`.
pub fn report_current(
    state: &State,
    by_store: bool,
    q: &[(String, String)],
) -> Result<Value, MsError> {
    let get = |k: &str| {
        q.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let stock_type = get("stockType").unwrap_or("stock");
    if !["stock", "freeStock", "quantity", "reserve", "inTransit"].contains(&stock_type) {
        return Err(errors::bad_param(
            "stockType",
            stock_type,
            "stock, freeStock, quantity, reserve, inTransit",
        ));
    }
    let zero_lines = get("include") == Some("zeroLines");
    let changed_since = match get("changedSince") {
        Some(v) => Some(
            query::parse_datetime(v).ok_or_else(|| errors::filter_date_error("changedSince"))?,
        ),
        None => None,
    };
    let (mut ids, mut store_ids): (Option<BTreeSet<String>>, Option<BTreeSet<String>>) =
        (None, None);
    for (k, v) in q {
        if k != "filter" {
            continue;
        }
        for c in query::parse_filter(v)? {
            let set: BTreeSet<String> = c.value.split(',').map(|s| s.trim().to_string()).collect();
            match c.field.as_str() {
                "assortmentId" => ids = Some(set),
                "storeId" => store_ids = Some(set),
                other => {
                    return Err(errors::filter_error(&format!(
                        "неизвестный параметр фильтрации '{other}'"
                    )))
                }
            }
        }
    }
    let changed = |store: &str, a: &str| -> bool {
        match changed_since {
            None => true,
            Some(since) => {
                let keys: Vec<String> = if by_store {
                    vec![format!("{store}|{a}")]
                } else {
                    state
                        .stock_changes
                        .keys()
                        .filter(|k| k.ends_with(&format!("|{a}")))
                        .cloned()
                        .collect()
                };
                keys.iter().any(|k| {
                    state
                        .stock_changes
                        .get(k)
                        .and_then(|t| query::parse_datetime(t))
                        .is_some_and(|t| t >= since)
                })
            }
        }
    };
    let links = Links::compute(state);
    let table = compute(state, &links);
    let mut out = Vec::new();
    if by_store {
        for ((store, a), cell) in &table.cells {
            if ids.as_ref().is_some_and(|s| !s.contains(a)) {
                continue;
            }
            if store_ids.as_ref().is_some_and(|s| !s.contains(store)) {
                continue;
            }
            if !changed(store, a) {
                continue;
            }
            let v = cell.value(stock_type);
            if v == 0.0 && !zero_lines && changed_since.is_none() {
                continue;
            }
            let store_v = if store.is_empty() {
                Value::Null
            } else {
                json!(store)
            };
            out.push(json!({"assortmentId": a, "storeId": store_v, stock_type: v}));
        }
    } else {
        let by_item = ByItem::new(&table);
        let assortments: BTreeSet<&String> = table.cells.keys().map(|(_, a)| a).collect();
        for a in assortments {
            if ids.as_ref().is_some_and(|s| !s.contains(a)) {
                continue;
            }
            if !changed("", a) {
                continue;
            }
            let v = by_item.total(a, None).value(stock_type);
            if v == 0.0 && !zero_lines && changed_since.is_none() {
                continue;
            }
            out.push(json!({"assortmentId": a, stock_type: v}));
        }
    }
    Ok(Value::Array(out))
}

/// Stock fields of the legacy `entity/assortment` rows (`totals` from [`totals`]).
pub fn assortment_stock(totals: &HashMap<String, Cell>, id: &str) -> Value {
    let c = totals.get(id).copied().unwrap_or_default();
    json!({"stock": c.stock, "reserve": c.reserve, "inTransit": c.in_transit, "quantity": c.quantity()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moysklad::state::{Ctx, Options, StockSeed};

    fn state_with_items(n: usize) -> State {
        let mut st = State::new(
            "http://127.0.0.1/api/remap/1.2".into(),
            "acc".into(),
            Options::default(),
        );
        let ctx = Ctx {
            now: chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .expect("time"),
            employee: None,
            seed: true,
        };
        let (store, _) = st
            .create("store", &json!({"name": "Склад"}), &ctx)
            .expect("store");
        let store = store["id"].as_str().expect("id").to_string();
        for i in 0..n {
            let (p, _) = st
                .create(
                    "product",
                    &json!({"name": format!("Товар {i}"), "externalCode": format!("c{i}")}),
                    &ctx,
                )
                .expect("product");
            st.seed_stock(
                StockSeed {
                    store: store.clone(),
                    assortment: p["id"].as_str().expect("id").to_string(),
                    quantity: i as f64 + 1.0,
                    cost: 100.0,
                },
                ctx.now,
            );
        }
        st
    }

    fn page(offset: usize) -> Vec<(String, String)> {
        vec![
            ("filter".into(), "stockMode=all".into()),
            ("limit".into(), "2".into()),
            ("offset".into(), offset.to_string()),
        ]
    }

    #[test]
    fn the_rows_of_a_report_are_computed_once_per_version_of_the_state() {
        let mut st = state_with_items(5);
        let url = "http://127.0.0.1/api/remap/1.2/report/stock/all";
        let first = report_all(&st, url, &page(0)).expect("page 1");
        let kept = |st: &State| {
            st.reports.get(st.version, &cache_key("all", &page(0)), || {
                panic!("computed again")
            })
        };
        // Every page of this version reads the rows computed for the first.
        let rows: Arc<Vec<Kept>> = kept(&st);
        let second = report_all(&st, url, &page(2)).expect("page 2");
        assert!(Arc::ptr_eq(&rows, &kept(&st)));
        assert_eq!(first["meta"]["size"], json!(5));
        assert_eq!(second["rows"][0]["stock"], json!(3.0));
        // A change makes a new version: the report is computed again and shows the change.
        st.stock[2].quantity = 30.0;
        st.changed();
        let again = report_all(&st, url, &page(2)).expect("page 2 after the change");
        assert_eq!(again["rows"][0]["stock"], json!(30.0));
        assert!(!Arc::ptr_eq(&rows, &kept(&st)));
    }
}
