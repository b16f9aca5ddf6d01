//! The rows of a `stock.pass`: `report/stock/bystore` (zeros included), each enriched with
//! its `assortment` (`externalCode`, `archived`, and for a variant `product.externalCode`)
//! and `cost` (the unit cost price in kopecks from `report/stock/all`).
//!
//! A full pass carries every row. Between full passes only rows that changed since the last
//! pass that was applied are carried: the runner keeps a digest per assortment item.
//!
//! Memory: the reports and the assortment are read a page at a time and only what the rows
//! need is kept of them (per item its external code, name, archived flag and product; per
//! item its cost); every `meta` of a row keeps `href` and `type` only. Each row is then held
//! as its JSON text, deflated [`CHUNK_ROWS`] rows at a time ([`PassRows`]): a few bytes a
//! row where its engine values took about 0.7 KB. A pass is evaluated in parts of at most
//! `limits.stock_part_rows` rows (docs/contract.md, `stock.pass`): the engine values of a
//! part's rows are built when that part is evaluated (the `meta` of a store shared by every
//! row of the part that names it) and dropped with its evaluation.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::ops::Range;

use serde_json::{json, Map, Value as Json};
use skladsync_engine::value::{Hasher, Map as EngineMap, Str, Value};

use crate::apply::ApplyError;
use crate::clients::moysklad::{id_from_href, ListQuery, Pages};
use crate::state::{InboxItem, Work};

use super::{events, ms_changes, ms_creates, plan_links, Daemon, DaemonError, Prepared};

/// The rows of each part of a pass of `len` rows in parts of at most `part_rows` rows (`0`:
/// the whole pass in one part). A pass has at least one part, empty or not.
pub(super) fn part_ranges(len: usize, part_rows: usize) -> Vec<Range<usize>> {
    if part_rows == 0 || len <= part_rows {
        return std::iter::once(0..len).collect();
    }
    (0..len)
        .step_by(part_rows)
        .map(|a| a..a.saturating_add(part_rows).min(len))
        .collect()
}

fn href_id(v: &Json) -> Option<&str> {
    v.pointer("/meta/href")
        .and_then(Json::as_str)
        .and_then(id_from_href)
}

/// The digest of a row: of its JSON text (`serde_json::to_vec` of the row), the UUID's 16
/// bytes (recorded as its hex digits).
fn digest(text: &[u8]) -> u128 {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, text).as_u128()
}

/// The digests of the rows of a pass that changed, by assortment id: 32 bytes and the id's
/// text a row (a map of `String`s took about 200 bytes a row, held from the reads to the end
/// of the pass).
pub type Digests = Vec<(Box<str>, u128)>;

/// An assortment id as a key of the pass's maps: a UUID's 16 bytes when the text is one in
/// its canonical form (as МойСклад writes its ids), else the text. No allocation per item
/// for a UUID: the maps are a few large blocks, returned whole when they are dropped, not
/// hundreds of thousands of small ones left between the rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Id {
    Uuid(u128),
    Text(Box<str>),
}

impl Id {
    fn of(s: &str) -> Id {
        if s.len() == 36 {
            if let Ok(u) = uuid::Uuid::parse_str(s) {
                let mut buf = [0u8; 36];
                if u.hyphenated().encode_lower(&mut buf) == s {
                    return Id::Uuid(u.as_u128());
                }
            }
        }
        Id::Text(s.into())
    }

    /// The id's text, exactly as it was read.
    fn text(&self) -> String {
        match self {
            Id::Uuid(u) => uuid::Uuid::from_u128(*u).hyphenated().to_string(),
            Id::Text(t) => t.to_string(),
        }
    }
}

/// A JSON value of the pass's maps without an allocation of its own when it is a scalar or
/// a string (the string's text in the pass's [`Texts`]).
#[derive(Debug)]
enum Field {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    /// A string: its span in [`Texts`].
    Text(u32, u32),
    Other(Box<Json>),
}

/// The text of every string field of the pass's maps, one after the other in one buffer.
#[derive(Default)]
struct Texts(String);

impl Texts {
    fn field(&mut self, v: Json) -> Field {
        match v {
            Json::Null => Field::Null,
            Json::Bool(b) => Field::Bool(b),
            Json::Number(n) => Field::Num(n),
            Json::String(t) => {
                let start = self.0.len();
                match (u32::try_from(start), u32::try_from(start + t.len())) {
                    (Ok(a), Ok(b)) => {
                        self.0.push_str(&t);
                        Field::Text(a, b)
                    }
                    _ => Field::Other(Box::new(Json::String(t))),
                }
            }
            other => Field::Other(Box::new(other)),
        }
    }

    fn json(&self, f: &Field) -> Json {
        match f {
            Field::Null => Json::Null,
            Field::Bool(b) => Json::Bool(*b),
            Field::Num(n) => Json::Number(n.clone()),
            Field::Text(a, b) => Json::String(
                self.0
                    .get(*a as usize..*b as usize)
                    .unwrap_or_default()
                    .to_string(),
            ),
            Field::Other(v) => (**v).clone(),
        }
    }
}

/// What a stock row needs of an assortment item.
#[derive(Debug)]
struct Item {
    external_code: Field,
    archived: Field,
    name: Field,
    /// A variant's product id.
    product: Option<Id>,
}

/// `meta` with `href` and `type` only (what rules read of it: the id and the kind).
fn compact_meta(meta: Option<&Json>) -> Json {
    let mut m = Map::new();
    for k in ["href", "type"] {
        if let Some(v) = meta.and_then(|m| m.get(k)) {
            m.insert(k.to_string(), v.clone());
        }
    }
    Json::Object(m)
}

/// A by-store report row with compact `meta`s (the row's and each store's).
fn compact_row(row: &Json) -> Map<String, Json> {
    let mut out = Map::new();
    if let Some(fields) = row.as_object() {
        for (k, v) in fields {
            let v = match (k.as_str(), v) {
                ("meta", m) => compact_meta(Some(m)),
                ("stockByStore", Json::Array(stores)) => Json::Array(
                    stores
                        .iter()
                        .map(|s| match s.as_object() {
                            Some(fields) => Json::Object(
                                fields
                                    .iter()
                                    .map(|(k, v)| {
                                        let v = if k == "meta" {
                                            compact_meta(Some(v))
                                        } else {
                                            v.clone()
                                        };
                                        (k.clone(), v)
                                    })
                                    .collect(),
                            ),
                            None => s.clone(),
                        })
                        .collect(),
                ),
                _ => v.clone(),
            };
            out.insert(k.clone(), v);
        }
    }
    out
}

/// The most distinct `stockByStore` lists, and store entries, a pass remembers to share (by
/// their text): enough for every combination a catalogue repeats (zeros, small counts), and
/// a bound on what a catalogue of all-different figures costs.
const SHARED_MAX: usize = 20_000;

/// Turns compact rows into engine values, sharing what repeats from row to row: keys, the
/// `meta` and name of each store, `type` strings, and whole store entries and `stockByStore`
/// lists with the same figures (values are immutable: a shared one reads exactly as a copy).
/// At 100 000 rows most of a row's memory was its store entries, most of them alike.
#[derive(Default)]
struct Builder {
    keys: HashMap<String, Str>,
    texts: HashMap<String, Value>,
    shared: HashMap<String, Value>,
    stores: HashMap<String, Value>,
    lists: HashMap<String, Value>,
    /// An empty object of each shape met (by its keys in order, each as `length:key`).
    shapes: HashMap<String, EngineMap>,
}

impl Builder {
    fn key(&mut self, k: &str) -> Str {
        self.keys
            .entry(k.to_string())
            .or_insert_with(|| Str::from(k))
            .clone()
    }

    fn object(
        &mut self,
        fields: &Map<String, Json>,
        f: impl Fn(&mut Self, &str, &Json) -> Value,
    ) -> Value {
        let values: Vec<Value> = fields.iter().map(|(k, v)| f(self, k, v)).collect();
        // Objects of one shape (every row, every `meta`) share one key table.
        let mut shape = String::new();
        for k in fields.keys() {
            shape.push_str(&k.len().to_string());
            shape.push(':');
            shape.push_str(k);
        }
        let values = match self.shapes.get(&shape) {
            Some(model) => match EngineMap::like(model, values) {
                Ok(map) => return Value::object(map),
                Err(values) => values,
            },
            None => values,
        };
        let mut map = EngineMap::with_capacity_and_hasher(fields.len(), Hasher::default());
        for ((k, _), v) in fields.iter().zip(values) {
            let key = self.key(k);
            map.insert(key, v);
        }
        if self.shapes.len() < SHARED_MAX {
            let nulls = vec![Value::Null; map.len()];
            if let Ok(model) = EngineMap::like(&map, nulls) {
                self.shapes.insert(shape, model);
            }
        }
        Value::object(map)
    }

    /// A value shared by every row where it repeats (by its text).
    fn shared(&mut self, v: &Json) -> Value {
        let text = v.to_string();
        if let Some(x) = self.shared.get(&text) {
            return x.clone();
        }
        let x = Value::from_json(v);
        self.shared.insert(text, x.clone());
        x
    }

    /// A value with its keys shared and its `type` strings (`product`, `variant`, `store`)
    /// shared; otherwise as [`Value::from_json`] makes it.
    fn value(&mut self, k: &str, v: &Json) -> Value {
        match v {
            // `{"$ref": …}` has a meaning of its own for the engine.
            Json::Object(fields) if !fields.contains_key("$ref") => {
                self.object(fields, |b, k, v| b.value(k, v))
            }
            Json::String(t) if k == "type" => match self.texts.get(t) {
                Some(x) => x.clone(),
                None => {
                    let x = Value::str(t);
                    if self.texts.len() < SHARED_MAX {
                        self.texts.insert(t.clone(), x.clone());
                    }
                    x
                }
            },
            _ => Value::from_json(v),
        }
    }

    /// One entry of `stockByStore`: shared with every earlier entry of the same text.
    fn store(&mut self, s: &Json) -> Value {
        let text = s.to_string();
        if let Some(x) = self.stores.get(&text) {
            return x.clone();
        }
        let x = match s.as_object() {
            Some(fields) => self.object(fields, |b, k, v| match k {
                "meta" | "name" => b.shared(v),
                _ => b.value(k, v),
            }),
            None => Value::from_json(s),
        };
        if self.stores.len() < SHARED_MAX {
            self.stores.insert(text, x.clone());
        }
        x
    }

    /// `stockByStore`: shared with every earlier row whose list has the same text.
    fn stock_by_store(&mut self, list: &Json) -> Value {
        let Json::Array(stores) = list else {
            return self.value("stockByStore", list);
        };
        let text = list.to_string();
        if let Some(x) = self.lists.get(&text) {
            return x.clone();
        }
        let x = Value::array(stores.iter().map(|s| self.store(s)).collect());
        if self.lists.len() < SHARED_MAX {
            self.lists.insert(text, x.clone());
        }
        x
    }

    fn row(&mut self, row: &Map<String, Json>) -> Value {
        self.object(row, |b, k, v| match k {
            "stockByStore" => b.stock_by_store(v),
            _ => b.value(k, v),
        })
    }
}

/// Rows of a pass a chunk holds, deflated together (their texts are alike: a chunk of 1 000
/// rows deflates to a small fraction of its text).
const CHUNK_ROWS: usize = 1_000;

/// The rows a stock pass carries, held between its parts: each row's JSON text on a line of
/// its own, deflated [`CHUNK_ROWS`] rows at a time; with the digests of the rows that changed
/// (by row), so that each part records the digests of its own rows once it is applied.
#[derive(Default)]
pub struct PassRows {
    /// Full chunks, deflated.
    chunks: Vec<Box<[u8]>>,
    /// The chunk being filled: JSON lines.
    open: Vec<u8>,
    /// Rows held.
    len: usize,
    /// The digests of the rows that changed, in the order of the rows …
    digests: Digests,
    /// … and the row each belongs to.
    digest_rows: Vec<usize>,
    /// Legacy digest keys to remove (with the first part).
    pub legacy: Vec<Vec<u8>>,
    /// The rows before this one are not sent by this read of the pass: they end with the row
    /// of a part given up before ([`InboxItem::resume_after`]); 0 when nothing is skipped.
    pub start: usize,
}

fn held_error(e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Answer(format!("a stock row held between the parts of a pass: {e}"))
}

impl PassRows {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Holds a row (its JSON text), with its digest when it changed.
    fn push(&mut self, text: &[u8], changed: Option<(Box<str>, u128)>) -> Result<(), ApplyError> {
        if let Some(d) = changed {
            self.digests.push(d);
            self.digest_rows.push(self.len);
        }
        self.open.extend_from_slice(text);
        self.open.push(b'\n');
        self.len += 1;
        if self.len.is_multiple_of(CHUNK_ROWS) {
            self.seal()?;
        }
        Ok(())
    }

    /// Deflates the chunk being filled.
    fn seal(&mut self) -> Result<(), ApplyError> {
        if self.open.is_empty() {
            return Ok(());
        }
        let mut enc = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(self.open.len() / 8),
            flate2::Compression::fast(),
        );
        enc.write_all(&self.open).map_err(held_error)?;
        let bytes = enc.finish().map_err(held_error)?;
        self.chunks.push(bytes.into_boxed_slice());
        self.open.clear();
        Ok(())
    }

    /// Ends the reading: every chunk deflated.
    fn finish(&mut self) -> Result<(), ApplyError> {
        self.seal()?;
        self.open = Vec::new();
        self.chunks.shrink_to_fit();
        self.digests.shrink_to_fit();
        self.digest_rows.shrink_to_fit();
        Ok(())
    }

    /// Deflated bytes held (for the log).
    pub fn held_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum::<usize>() + self.open.len()
    }

    /// The rows of `range`, as engine values (built now; see [`Builder`]).
    pub fn rows(&self, range: Range<usize>) -> Result<Vec<Value>, ApplyError> {
        let mut out = Vec::with_capacity(range.len());
        let mut builder = Builder::default();
        let mut text = Vec::new();
        let first = range.start / CHUNK_ROWS;
        for c in first..range.end.div_ceil(CHUNK_ROWS) {
            text.clear();
            let lines: &[u8] = match self.chunks.get(c) {
                Some(bytes) => {
                    flate2::read::DeflateDecoder::new(&bytes[..])
                        .read_to_end(&mut text)
                        .map_err(held_error)?;
                    &text
                }
                None => &self.open,
            };
            for (i, line) in lines
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .enumerate()
            {
                let n = c * CHUNK_ROWS + i;
                if n < range.start {
                    continue;
                }
                if n >= range.end {
                    break;
                }
                let row: Map<String, Json> = serde_json::from_slice(line).map_err(held_error)?;
                out.push(builder.row(&row));
            }
        }
        if out.len() != range.len() {
            return Err(held_error(format!(
                "{} rows read back where {} were held",
                out.len(),
                range.len()
            )));
        }
        Ok(out)
    }

    /// The digests of the rows of `range` that changed.
    pub fn digests(&self, range: Range<usize>) -> Digests {
        let a = self.digest_rows.partition_point(|r| *r < range.start);
        let b = self.digest_rows.partition_point(|r| *r < range.end);
        self.digests
            .get(a..b)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }
}

/// The assortment id of the last row of a `stock.pass` event (from its `meta.href`).
fn last_row_id(event: &skladsync_engine::Event) -> Option<String> {
    let Some(Value::Array(rows)) = event.payload.get_ref("rows") else {
        return None;
    };
    match rows.last()?.get_ref("meta")?.get_ref("href")? {
        Value::Str(href) => id_from_href(href).map(str::to_string),
        _ => None,
    }
}

/// Every row of `pages`, one page at a time.
async fn each_row(mut pages: Pages, mut f: impl FnMut(Json)) -> Result<(), ApplyError> {
    while let Some(page) = pages.next().await? {
        for r in page.rows {
            f(r);
        }
    }
    Ok(())
}

impl Daemon {
    /// The rows of a stock pass (held compactly, see [`PassRows`]) and the digests of the rows
    /// that changed since they were last recorded. `resume_after`: the assortment id of the
    /// last row of a part given up; the rows up to and including it, in the order of the
    /// report, are skipped ([`PassRows::start`]; nothing is skipped when no row has that id).
    pub(super) async fn stock_rows(
        &self,
        full: bool,
        resume_after: Option<&str>,
    ) -> Result<PassRows, ApplyError> {
        let ms = &self.inner.systems.ms;
        // Costs and the assortment are held by id without an allocation per item (see
        // [`Id`], [`Field`]): the rows are built while they are held, and what they free
        // afterwards then leaves no small holes between the rows.
        let mut texts = Texts::default();
        let mut cost: HashMap<Id, Field> = HashMap::new();
        each_row(
            ms.stock_all_pages(
                &ListQuery::new()
                    .filter_eq("stockMode", "all")
                    .filter_eq("quantityMode", "all"),
            ),
            |mut r| {
                if let Some(id) = href_id(&r).map(Id::of) {
                    let price = r.get_mut("price").map(Json::take).unwrap_or(json!(0));
                    cost.insert(id, texts.field(price));
                }
            },
        )
        .await?;
        tracing::info!(items = cost.len(), "stock pass: costs read");
        let mut assortment: HashMap<Id, Item> = HashMap::new();
        each_row(ms.pages("assortment", &ListQuery::new())?, |mut r| {
            let Some(id) = r.get("id").and_then(Json::as_str).map(Id::of) else {
                return;
            };
            let product = r.get("product").and_then(href_id).map(Id::of);
            let mut take = |k: &str| {
                let v = r.get_mut(k).map(Json::take).unwrap_or(Json::Null);
                texts.field(v)
            };
            let item = Item {
                external_code: take("externalCode"),
                archived: take("archived"),
                name: take("name"),
                product,
            };
            assortment.insert(id, item);
        })
        .await?;
        tracing::info!(items = assortment.len(), "stock pass: assortment read");
        let recorded = self.inner.state.stock_digests()?;
        let previous = recorded.by_id;
        let mut rows = PassRows {
            legacy: recorded.legacy,
            ..PassRows::default()
        };
        let mut held: Result<(), ApplyError> = Ok(());
        each_row(
            ms.stock_by_store_pages(&ListQuery::new().filter_eq("stockMode", "all")),
            |raw| {
                let Some(id) = href_id(&raw).map(str::to_string) else {
                    return;
                };
                let key = Id::of(&id);
                let mut row = compact_row(&raw);
                drop(raw);
                let kind = row
                    .get("meta")
                    .and_then(|m| m.get("type"))
                    .and_then(Json::as_str)
                    .unwrap_or("product")
                    .to_string();
                let a = assortment.get(&key);
                let archived = match a.map(|a| &a.archived) {
                    None | Some(Field::Null) => json!(false),
                    Some(v) => texts.json(v),
                };
                let mut asrt = json!({
                    "id": id,
                    "type": kind,
                    "externalCode": a.map(|a| texts.json(&a.external_code)).unwrap_or(Json::Null),
                    "archived": archived,
                    "name": a.map(|a| texts.json(&a.name)).unwrap_or(Json::Null),
                });
                if kind == "variant" {
                    let product_id = a.and_then(|a| a.product.as_ref());
                    let product_code = product_id
                        .and_then(|p| assortment.get(p))
                        .map(|p| texts.json(&p.external_code))
                        .unwrap_or(Json::Null);
                    asrt["product"] =
                        json!({"id": product_id.map(Id::text), "externalCode": product_code});
                }
                row.insert("assortment".into(), asrt);
                row.insert(
                    "cost".into(),
                    cost.get(&key).map(|c| texts.json(c)).unwrap_or(json!(0)),
                );
                let text = serde_json::to_vec(&row).unwrap_or_default();
                let d = digest(&text);
                let changed = previous.get(&id) != Some(&d);
                let last_given_up = resume_after == Some(id.as_str());
                if (full || changed) && held.is_ok() {
                    // Only what changed is recorded again (the rest is recorded already).
                    let changed = changed.then(|| (id.into_boxed_str(), d));
                    held = rows.push(&text, changed);
                }
                if last_given_up {
                    // Held or not (unchanged since), the rows read so far are skipped.
                    rows.start = rows.len();
                }
            },
        )
        .await?;
        held?;
        drop((cost, assortment, texts));
        rows.finish()?;
        if let Some(id) = resume_after {
            if rows.start == 0 {
                tracing::info!(
                    row = id,
                    "stock pass: the row a given-up part ended with is not in the report; nothing is skipped"
                );
            }
        }
        tracing::info!(
            rows = rows.len(),
            skipped = rows.start,
            changed = rows.digests.len(),
            held_bytes = rows.held_bytes(),
            "stock pass: rows read"
        );
        Ok(rows)
    }
}

impl Daemon {
    /// A stock pass (a claimed item that holds no plan): its reports read once and its rows
    /// held compactly ([`PassRows`]), then evaluated and applied in parts of at most
    /// `limits.stock_part_rows` rows, one after the other: the engine values, the evaluation
    /// and the plan of one part are gone before the next part's rows are built. Each part's
    /// plan is recorded (`plan/<seq>`) as any plan, and the digests of its rows are recorded
    /// once it is applied. A part that cannot be finished now (a failed effect put back, a
    /// failed lookup, a stop) ends the pass here: its item keeps the plan (resumed later, and
    /// then the whole pass is read and sent again, see `finish_plan`) or is put back to be
    /// read again, so no part after it is lost. A pass read again after a part was given up
    /// (refused for good) starts after that part ([`InboxItem::resume_after`]), so the parts
    /// after it are not held behind a refusal that lasts.
    pub(super) async fn stock_pass(
        &self,
        seq: u64,
        item: InboxItem,
        in_lane: bool,
    ) -> Result<(), DaemonError> {
        let Work::StockPass { full } = item.work else {
            return Ok(());
        };
        let state = &self.inner.state;
        let subject = item.work.subject().unwrap_or_else(|| format!("seq/{seq}"));
        let rows = match self.stock_rows(full, item.resume_after.as_deref()).await {
            Ok(rows) => rows,
            Err(e) => return self.build_failed(seq, item, &subject, e).map(|_| ()),
        };
        // The rows after a given-up part (see `finish_plan`): skipped by this read only.
        // It stays with the item until a plan of this read is recorded (which clears it): a
        // read put back before that skips the same rows again.
        let mut item = item;
        let start = rows.start.min(rows.len());
        if item.resume_after.is_some() && start > 0 {
            tracing::info!(%subject, skipped = start, "stock pass: going on after the part given up");
        }
        if rows.len() == start && (!full || start > 0) {
            tracing::debug!(%subject, "nothing to evaluate");
            state.finish_item(seq)?;
            return Ok(());
        }
        let parts: Vec<Range<usize>> =
            part_ranges(rows.len() - start, self.inner.config.limits.stock_part_rows)
                .into_iter()
                .map(|r| r.start + start..r.end + start)
                .collect();
        let count = parts.len();
        for (i, range) in parts.into_iter().enumerate() {
            let index = i + 1;
            if count > 1 {
                tracing::info!(
                    part = index,
                    parts = count,
                    rows = range.len(),
                    "stock pass: a part"
                );
            }
            let built = match events::stock_part(&rows, full, range, index, count) {
                Ok(b) => b,
                Err(e) => return self.build_failed(seq, item, &subject, e).map(|_| ()),
            };
            let more = index < count;
            // The part's last row: where the pass read again goes on if this part is given up.
            let more_parts = more.then(|| last_row_id(&built.event).unwrap_or_default());
            let ready = match self
                .evaluate_built(seq, item, subject.clone(), built, None, more_parts)
                .await?
            {
                Prepared::Ready(r) => r,
                // Parked, or put back to be tried again: the pass is read again then.
                Prepared::Finished | Prepared::Conflict(..) => return Ok(()),
            };
            // As `process_claimed`: a plan that writes to МойСклад or links waits for the
            // worker's turn.
            let exclusive = in_lane
                && (!ms_creates(&ready.outbox).is_empty()
                    || !ms_changes(&ready.outbox).is_empty()
                    || !plan_links(&ready.outbox).is_empty());
            let turn = match exclusive {
                true => Some(self.inner.processing.lock().await),
                false => None,
            };
            self.apply_plan(ready.seq, ready.item, ready.outbox, ready.after)
                .await?;
            drop(turn);
            if !more {
                break;
            }
            // The part's plan is finished (applied or given up) when its item is due again
            // holding no plan; otherwise it was put back, or the runner stops.
            match state.inbox_item(seq)? {
                Some(next) if !next.plan => item = next,
                _ => return Ok(()),
            }
            if self
                .inner
                .stopping
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                tracing::info!(%subject, "stopping between two parts of a stock pass: it is read again at the next start");
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_row(item: &str, store_stock: f64) -> Json {
        let base = "https://api.moysklad.ru/api/remap/1.2/entity";
        let meta = |ty: &str, id: &str| {
            json!({"href": format!("{base}/{ty}/{id}"), "metadataHref": format!("{base}/{ty}/metadata"),
                   "type": ty, "mediaType": "application/json"})
        };
        json!({
            "meta": meta("product", item),
            "stockByStore": [
                {"meta": meta("store", "s1"), "name": "Основной склад", "stock": store_stock, "reserve": 1.0, "inTransit": 0.0},
                {"meta": meta("store", "s2"), "name": "Второй склад", "stock": 0.0, "reserve": 0.0, "inTransit": 2.0}
            ]
        })
    }

    #[test]
    fn a_pass_is_cut_into_parts_of_at_most_the_rows_asked() {
        let parts = |len, rows| -> Vec<(usize, usize)> {
            part_ranges(len, rows)
                .into_iter()
                .map(|r| (r.start, r.end))
                .collect()
        };
        assert_eq!(parts(0, 10), [(0, 0)]);
        assert_eq!(parts(10, 10), [(0, 10)]);
        assert_eq!(parts(25, 10), [(0, 10), (10, 20), (20, 25)]);
        assert_eq!(parts(25, 0), [(0, 25)]);
        assert_eq!(parts(3, 1), [(0, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn rows_held_between_parts_come_back_as_the_engine_values_they_were() {
        let mut held = PassRows::default();
        let mut rows = Vec::new();
        let n = 2 * CHUNK_ROWS + 37;
        for i in 0..n {
            let mut row = compact_row(&report_row(&format!("p{i}"), (i % 7) as f64));
            row.insert("cost".into(), json!(i * 100));
            let text = serde_json::to_vec(&row).expect("row");
            // Every third row changed (a changes pass holds only changed rows; a full one
            // every row, with digests of the changed ones).
            let changed = (i % 3 == 0).then(|| (format!("p{i}").into_boxed_str(), i as u128));
            held.push(&text, changed).expect("held");
            rows.push(row);
        }
        held.finish().expect("finished");
        assert_eq!(held.len(), n);
        // Far less than the rows' text.
        let text: usize = rows
            .iter()
            .map(|r| Json::Object(r.clone()).to_string().len())
            .sum();
        assert!(
            held.held_bytes() * 10 < text,
            "{} of {text}",
            held.held_bytes()
        );
        for range in [0..n, 0..1, CHUNK_ROWS - 1..CHUNK_ROWS + 1, n - 5..n, 0..0] {
            let values = held.rows(range.clone()).expect("read back");
            let want: Vec<Value> = rows[range.clone()]
                .iter()
                .map(|r| Value::from_json(&Json::Object(r.clone())))
                .collect();
            assert_eq!(values, want, "{range:?}");
            let digests = held.digests(range.clone());
            let want: Vec<String> = range
                .clone()
                .filter(|i| i % 3 == 0)
                .map(|i| format!("p{i}"))
                .collect();
            let got: Vec<String> = digests.iter().map(|(id, _)| id.to_string()).collect();
            assert_eq!(got, want, "{range:?}");
        }
    }

    #[test]
    fn ids_are_held_as_uuids_only_when_their_text_comes_back_exactly() {
        let canonical = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
        let id = Id::of(canonical);
        assert!(matches!(id, Id::Uuid(_)));
        assert_eq!(id.text(), canonical);
        // Not МойСклад's canonical form: kept as text, so two spellings stay two ids.
        for other in [
            "0A1B2C3D-4E5F-6789-ABCD-EF0123456789",
            "0a1b2c3d4e5f6789abcdef0123456789",
            "p1",
        ] {
            let id = Id::of(other);
            assert!(matches!(id, Id::Text(_)), "{other}");
            assert_eq!(id.text(), other);
            assert_ne!(id, Id::of(canonical));
        }
    }

    #[test]
    fn fields_come_back_as_the_json_they_were() {
        let mut texts = Texts::default();
        let values = [
            json!(null),
            json!(true),
            json!(12345),
            json!(-1.5),
            json!("Товар «один»"),
            json!(""),
            json!({"a": [1, "x"]}),
            json!("второй"),
        ];
        let fields: Vec<Field> = values.iter().map(|v| texts.field(v.clone())).collect();
        for (v, f) in values.iter().zip(&fields) {
            assert_eq!(&texts.json(f), v);
        }
        // Strings take no allocation of their own: their text is in the shared buffer.
        assert!(matches!(fields[4], Field::Text(..)));
        assert_eq!(texts.0, "Товар «один»второй");
    }

    #[test]
    fn rows_keep_href_and_type_of_every_meta_and_all_figures() {
        let raw = report_row("p1", 5.0);
        let row = compact_row(&raw);
        let base = "https://api.moysklad.ru/api/remap/1.2/entity";
        assert_eq!(
            Json::Object(row),
            json!({
                "meta": {"href": format!("{base}/product/p1"), "type": "product"},
                "stockByStore": [
                    {"meta": {"href": format!("{base}/store/s1"), "type": "store"}, "name": "Основной склад",
                     "stock": 5.0, "reserve": 1.0, "inTransit": 0.0},
                    {"meta": {"href": format!("{base}/store/s2"), "type": "store"}, "name": "Второй склад",
                     "stock": 0.0, "reserve": 0.0, "inTransit": 2.0}
                ]
            })
        );
    }

    #[test]
    fn rows_become_engine_values_sharing_each_stores_meta() {
        let mut b = Builder::default();
        let a = compact_row(&report_row("p1", 5.0));
        let c = compact_row(&report_row("p2", 7.0));
        let (va, vc) = (b.row(&a), b.row(&c));
        // The same values as a plain conversion…
        assert_eq!(va, Value::from_json(&Json::Object(a)));
        assert_eq!(vc, Value::from_json(&Json::Object(c)));
        // …with the store's meta held once for both rows.
        let store_meta = |v: &Value| match v.get_ref("stockByStore") {
            Some(Value::Array(stores)) => match stores[0].get_ref("meta") {
                Some(Value::Object(m)) => m.clone(),
                other => panic!("no store meta: {other:?}"),
            },
            other => panic!("no stockByStore: {other:?}"),
        };
        assert!(std::sync::Arc::ptr_eq(&store_meta(&va), &store_meta(&vc)));
        // The rows, and the metas of their products, hold one key table between them.
        let row = |v: &Value| object(v);
        assert!(row(&va).same_keys(&row(&vc)));
        assert!(object(&va.get("meta")).same_keys(&object(&vc.get("meta"))));
        assert!(!row(&va).same_keys(&object(&va.get("meta"))));
    }

    fn stock_by_store(v: &Value) -> std::sync::Arc<Vec<Value>> {
        match v.get_ref("stockByStore") {
            Some(Value::Array(stores)) => stores.clone(),
            other => panic!("no stockByStore: {other:?}"),
        }
    }

    fn object(v: &Value) -> std::sync::Arc<EngineMap> {
        match v {
            Value::Object(m) => m.clone(),
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn rows_with_the_same_figures_share_their_store_lists_and_entries() {
        let mut b = Builder::default();
        let same_a = compact_row(&report_row("p1", 5.0));
        let same_b = compact_row(&report_row("p2", 5.0));
        let other = compact_row(&report_row("p3", 6.0));
        let (va, vb, vo) = (b.row(&same_a), b.row(&same_b), b.row(&other));
        // Still exactly what a plain conversion gives…
        assert_eq!(vb, Value::from_json(&Json::Object(same_b)));
        assert_eq!(vo, Value::from_json(&Json::Object(other)));
        // …the whole list held once for the rows with the same figures…
        assert!(std::sync::Arc::ptr_eq(
            &stock_by_store(&va),
            &stock_by_store(&vb)
        ));
        assert!(!std::sync::Arc::ptr_eq(
            &stock_by_store(&va),
            &stock_by_store(&vo)
        ));
        // …and a store entry with the same figures held once across different lists.
        let (la, lo) = (stock_by_store(&va), stock_by_store(&vo));
        assert!(std::sync::Arc::ptr_eq(&object(&la[1]), &object(&lo[1])));
        assert!(!std::sync::Arc::ptr_eq(&object(&la[0]), &object(&lo[0])));
        // The `type` of every meta is one string.
        let ty = |v: &Value| match v.get_ref("meta").and_then(|m| m.get_ref("type")) {
            Some(Value::Str(s)) => s.clone(),
            other => panic!("no type: {other:?}"),
        };
        assert!(skladsync_engine::value::Str::ptr_eq(&ty(&va), &ty(&vo)));
    }
}
