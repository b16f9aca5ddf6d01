//! The catalogue mirror: МойСклад's assortment by `externalCode`, kept in memory so that item
//! matching (`lookup("moysklad", "assortment", {externalCode: …})`) costs no request.
//!
//! - It is loaded on the first such lookup (the whole `GET /entity/assortment`, pages of 1 000:
//!   5 requests for a 5 000-offer catalogue), and loaded again when older than its maximum age
//!   (the runner's `intervals.reference_ttl`), which is how archived and deleted items leave it.
//! - The reconciliation poll brings in what changed since the last load or refresh
//!   (`updated>=`), one request per poll; a webhook about a product, variant, service or bundle
//!   drops that item, so the next lookup of its code asks МойСклад again. `updated>=` takes
//!   the watermark's own second (another item may be stamped later in that second); once
//!   that second is [`SETTLED`] in the past when a read begins, the watermark moves one second
//!   on, so that items sharing it (an import stamps them all with one `updated`) are not read
//!   again by every poll.
//! - A code the mirror does not hold is never answered "not found" from memory: the lookup
//!   asks МойСклад as before (and what it finds joins the mirror). The mirror only saves the
//!   requests whose answer it already holds.
//! - Rows are kept without the deprecated stock fields of the assortment list (`stock`,
//!   `reserve`, `inTransit`, `quantity`: stock comes from the stock reports), as compact JSON
//!   text (a parsed row takes several times its text in memory) compressed with deflate (the
//!   `meta` blocks repeat the API's base URL many times a row: about a third of the text's
//!   size), inflated and parsed again when used. Rows are alike (the same keys, `meta` URLs,
//!   price types), so each is deflated after the mirror's first row as a preset dictionary:
//!   what a row shares with that one costs a few bytes instead of being compressed again in
//!   every row. Nothing else of a row is dropped: an answer from the mirror is the answer
//!   МойСклад gives.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use serde_json::Value;

use crate::clients::moysklad::{ListQuery, MoyskladClient, MoyskladError};

/// How long after a second МойСклад can no longer stamp an item with it, as far as this
/// runner's clock tells (the clocks may differ by this much).
pub const SETTLED: Duration = Duration::from_secs(120);

/// The watermark to use after a read that began at `began`: one second after `watermark`
/// (`YYYY-MM-DD HH:MM:SS`, Moscow time, as МойСклад stamps `updated`) when that second ended
/// [`SETTLED`] or more before, else `None` (keep it).
fn settled_watermark(watermark: &str, began: chrono::DateTime<chrono::Utc>) -> Option<String> {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S";
    let w = chrono::NaiveDateTime::parse_from_str(watermark, FORMAT).ok()?;
    let msk = began.naive_utc() + chrono::Duration::hours(3);
    let settled = chrono::Duration::from_std(SETTLED).ok()?;
    let next = w + chrono::Duration::seconds(1);
    (msk >= next + settled).then(|| next.format(FORMAT).to_string())
}

/// Fields of assortment rows that are not kept (stock figures, stale as soon as read).
const STOCK_FIELDS: &[&str] = &["stock", "reserve", "inTransit", "quantity"];

/// A row's JSON text, deflated.
type Deflated = Box<[u8]>;

/// A preset dictionary for deflate: a row's text, and that text deflated up to a sync flush.
/// A row is deflated after the dictionary and held without that prefix (the stream from
/// there on, which refers back into the dictionary); it is inflated after the prefix again.
/// (The deflate backend has no preset-dictionary call; a sync flush ends the prefix on a
/// byte boundary and the compressor is deterministic, so the prefix is the same every time.)
#[derive(Debug, Default)]
struct Dictionary {
    text: Box<[u8]>,
    prefix: Box<[u8]>,
}

impl Dictionary {
    fn new(text: &[u8]) -> Option<Self> {
        let mut e = encoder(text.len());
        e.write_all(text).ok()?;
        e.flush().ok()?;
        Some(Dictionary {
            text: text.into(),
            prefix: e.get_ref().clone().into_boxed_slice(),
        })
    }

    /// `text` deflated after the dictionary, without the prefix.
    fn deflate(&self, text: &[u8]) -> Option<Box<[u8]>> {
        let mut e = encoder(self.text.len() + text.len());
        e.write_all(&self.text).ok()?;
        e.flush().ok()?;
        if e.get_ref()[..] != self.prefix[..] {
            return None;
        }
        e.write_all(text).ok()?;
        let mut out = e.finish().ok()?;
        out.drain(..self.prefix.len());
        Some(out.into_boxed_slice())
    }

    /// What [`Dictionary::deflate`] made, inflated.
    fn inflate(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut text = Vec::with_capacity(self.text.len() + bytes.len() * 4);
        flate2::read::DeflateDecoder::new(Read::chain(&self.prefix[..], bytes))
            .read_to_end(&mut text)
            .ok()?;
        if !text.starts_with(&self.text) {
            return None;
        }
        text.drain(..self.text.len());
        Some(text)
    }
}

fn encoder(capacity: usize) -> flate2::write::DeflateEncoder<Vec<u8>> {
    flate2::write::DeflateEncoder::new(
        Vec::with_capacity(capacity / 3),
        flate2::Compression::fast(),
    )
}

#[derive(Debug, Default)]
struct Mirror {
    /// The dictionary rows are deflated with: the first row's text.
    dictionary: Option<Dictionary>,
    /// When the whole assortment was last read.
    loaded: Option<Instant>,
    /// The newest `updated` seen (`YYYY-MM-DD HH:MM:SS`), where the next refresh starts.
    watermark: Option<String>,
    /// Rows by `externalCode`, in the API's order: (id, the row as deflated JSON text).
    by_code: HashMap<String, Vec<(String, Deflated)>>,
    /// Bytes of (deflated) row text held.
    bytes: usize,
    /// `externalCode` by id (to replace or drop an item).
    code_of: HashMap<String, String>,
}

impl Mirror {
    fn remove_id(&mut self, id: &str) {
        if let Some(code) = self.code_of.remove(id) {
            if let Some(rows) = self.by_code.get_mut(&code) {
                let before: usize = rows.iter().map(|(_, t)| t.len()).sum();
                rows.retain(|(rid, _)| rid != id);
                let after: usize = rows.iter().map(|(_, t)| t.len()).sum();
                self.bytes = self.bytes.saturating_sub(before - after);
                if rows.is_empty() {
                    self.by_code.remove(&code);
                }
            }
        }
    }

    fn insert(&mut self, mut row: Value) {
        let (Some(id), Some(code)) = (
            row.get("id").and_then(Value::as_str).map(str::to_string),
            row.get("externalCode")
                .and_then(Value::as_str)
                .map(str::to_string),
        ) else {
            return;
        };
        if let Some(updated) = row.get("updated").and_then(Value::as_str) {
            let u: String = updated.chars().take(19).collect();
            if self.watermark.as_ref().is_none_or(|w| u > *w) {
                self.watermark = Some(u);
            }
        }
        if let Some(o) = row.as_object_mut() {
            for f in STOCK_FIELDS {
                o.remove(*f);
            }
        }
        self.remove_id(&id);
        let archived = row.get("archived").and_then(Value::as_bool) == Some(true);
        if archived {
            // The assortment list leaves archived items out; so does the mirror.
            return;
        }
        let text = row.to_string();
        if self.dictionary.is_none() {
            self.dictionary = Dictionary::new(text.as_bytes());
        }
        let Some(text) = self
            .dictionary
            .as_ref()
            .and_then(|d| d.deflate(text.as_bytes()))
        else {
            return;
        };
        self.bytes += text.len();
        self.code_of.insert(id.clone(), code.clone());
        self.by_code.entry(code).or_default().push((id, text));
    }
}

/// A row deflated by the mirror's dictionary, parsed.
fn inflate(dictionary: Option<&Dictionary>, bytes: &[u8]) -> Option<Value> {
    let text = dictionary?.inflate(bytes)?;
    serde_json::from_slice(&text).ok()
}

/// The mirror; shared by every evaluation of a daemon.
#[derive(Debug)]
pub struct CatalogueMirror {
    max_age: Duration,
    mirror: Mutex<Mirror>,
    /// Held while the whole assortment is being read (one load at a time).
    loading: tokio::sync::Mutex<()>,
}

/// What the mirror says about a code.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The rows with this `externalCode` (never empty).
    Rows(Vec<Value>),
    /// The mirror does not hold it: ask МойСклад.
    Unknown,
}

impl CatalogueMirror {
    /// An empty mirror, loaded again when older than `max_age`.
    pub fn new(max_age: Duration) -> Self {
        CatalogueMirror {
            max_age,
            mirror: Mutex::new(Mirror::default()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self) -> bool {
        self.lock()
            .loaded
            .is_some_and(|t| t.elapsed() < self.max_age)
    }

    /// Whether the whole assortment has been read at least once.
    pub fn loaded(&self) -> bool {
        self.lock().loaded.is_some()
    }

    /// How many items the mirror holds.
    pub fn len(&self) -> usize {
        self.lock().code_of.len()
    }

    /// Bytes of (deflated) row text the mirror holds.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether the mirror holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the whole assortment when the mirror is empty or too old.
    pub async fn ensure_loaded(&self, ms: &MoyskladClient) -> Result<(), MoyskladError> {
        if self.fresh() {
            return Ok(());
        }
        let _one = self.loading.lock().await;
        if self.fresh() {
            return Ok(());
        }
        // Page by page, so that only one page is ever held parsed.
        let began = chrono::Utc::now();
        let mut pages = ms.pages("assortment", &ListQuery::new())?;
        let mut m = Mirror::default();
        while let Some(page) = pages.next().await? {
            for r in page.rows {
                m.insert(r);
            }
        }
        m.loaded = Some(Instant::now());
        if let Some(next) = m
            .watermark
            .as_deref()
            .and_then(|w| settled_watermark(w, began))
        {
            m.watermark = Some(next);
        }
        tracing::info!(
            items = m.code_of.len(),
            bytes = m.bytes,
            "catalogue mirror loaded"
        );
        *self.lock() = m;
        Ok(())
    }

    /// The rows with `externalCode` `code`, as `GET /entity/assortment?filter=externalCode=…`
    /// answers (stock fields aside), when the mirror holds it.
    pub fn find(&self, code: &str) -> Answer {
        let m = self.lock();
        if m.loaded.is_none() {
            return Answer::Unknown;
        }
        match m.by_code.get(code) {
            Some(rows) if !rows.is_empty() => {
                let parsed: Option<Vec<Value>> = rows
                    .iter()
                    .map(|(_, t)| inflate(m.dictionary.as_ref(), t))
                    .collect();
                // Text this mirror wrote always parses; if not, ask МойСклад.
                parsed.map_or(Answer::Unknown, Answer::Rows)
            }
            _ => Answer::Unknown,
        }
    }

    /// Rows read from МойСклад outside the mirror (a lookup's answer): kept.
    pub fn learn(&self, rows: &[Value]) {
        let mut m = self.lock();
        if m.loaded.is_none() {
            return;
        }
        for r in rows {
            m.insert(r.clone());
        }
    }

    /// Drops an item (a webhook said it changed or is gone).
    pub fn forget(&self, id: &str) {
        self.lock().remove_id(id);
    }

    /// Brings in what changed since the last load or refresh (one request per page, each
    /// page taken in as it is read; nothing when the mirror was never loaded).
    pub async fn refresh(&self, ms: &MoyskladClient) -> Result<usize, MoyskladError> {
        let since = {
            let m = self.lock();
            if m.loaded.is_none() {
                return Ok(0);
            }
            m.watermark.clone()
        };
        let Some(since) = since else {
            return Ok(0);
        };
        // `updated>=` and archived ones too, so that an archived item leaves the mirror.
        let q = ListQuery::new()
            .updated_since(&since)
            .filter_raw("archived=true;archived=false");
        // Page by page, so that only one page is ever held parsed: every item of the account
        // can have changed (an import stamps them all with one `updated`), and holding them
        // all parsed took a 100 000-item mirror over 1 GB. The watermark moves only once
        // every page is read: a read that fails half-way is asked again whole by the next poll.
        let began = chrono::Utc::now();
        let mut pages = ms.pages("assortment", &q)?;
        let mut n = 0;
        let mut newest: Option<String> = None;
        while let Some(page) = pages.next().await? {
            let mut m = self.lock();
            let before = m.watermark.clone();
            for r in page.rows {
                m.insert(r);
                n += 1;
            }
            if m.watermark > newest {
                newest = m.watermark.clone();
            }
            m.watermark = before;
        }
        let mut m = self.lock();
        if newest > m.watermark {
            m.watermark = newest;
        }
        if let Some(next) = m
            .watermark
            .as_deref()
            .and_then(|w| settled_watermark(w, began))
        {
            m.watermark = Some(next);
        }
        Ok(n)
    }
}

/// The `externalCode` of a lookup filter that the mirror can answer: exactly
/// `{externalCode: "<text>"}`.
pub fn mirrored_code<'a>(
    entity: &str,
    filter: &'a serde_json::Map<String, Value>,
) -> Option<&'a str> {
    if entity != "assortment" || filter.len() != 1 {
        return None;
    }
    filter
        .get("externalCode")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, code: &str, ty: &str, updated: &str) -> Value {
        json!({"id": id, "externalCode": code, "updated": updated, "archived": false,
               "meta": {"type": ty}, "stock": 5.0, "quantity": 5.0})
    }

    #[test]
    fn answers_only_what_it_holds_and_tracks_changes() {
        let c = CatalogueMirror::new(Duration::from_secs(600));
        // Not loaded: nothing is answered from memory.
        assert_eq!(c.find("a"), Answer::Unknown);
        {
            let mut m = c.lock();
            m.insert(row("1", "a", "product", "2026-12-01 10:00:00.000"));
            m.insert(row("2", "red", "variant", "2026-12-01 11:00:00.000"));
            m.insert(row("3", "red", "product", "2026-12-01 09:00:00.000"));
            m.loaded = Some(Instant::now());
        }
        let Answer::Rows(a) = c.find("a") else {
            panic!("a is mirrored")
        };
        assert_eq!(a[0]["id"], "1");
        assert!(a[0].get("stock").is_none(), "stock figures are not kept");
        let Answer::Rows(red) = c.find("red") else {
            panic!("red is mirrored")
        };
        assert_eq!(red.len(), 2);
        // A code it does not hold is unknown, never "not found".
        assert_eq!(c.find("b"), Answer::Unknown);
        assert_eq!(c.lock().watermark.as_deref(), Some("2026-12-01 11:00:00"));
        // An item whose code changed moves; an archived one leaves; a forgotten one too.
        c.learn(&[row("1", "a2", "product", "2026-12-02 10:00:00")]);
        assert_eq!(c.find("a"), Answer::Unknown);
        assert!(matches!(c.find("a2"), Answer::Rows(_)));
        let mut archived = row("3", "red", "product", "2026-12-02 11:00:00");
        archived["archived"] = json!(true);
        c.learn(&[archived]);
        let Answer::Rows(red) = c.find("red") else {
            panic!("the variant is still there")
        };
        assert_eq!(red.len(), 1);
        c.forget("2");
        assert_eq!(c.find("red"), Answer::Unknown);
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), {
            let Answer::Rows(rows) = c.find("a2") else {
                panic!("a2")
            };
            let m = c.lock();
            m.dictionary
                .as_ref()
                .and_then(|d| d.deflate(rows[0].to_string().as_bytes()))
                .map_or(0, |d| d.len())
        });
    }

    /// A row as the API renders it (`meta` blocks with the base URL, prices, owner, …).
    fn api_row(n: u32) -> Value {
        let base = "https://api.moysklad.ru/api/remap/1.2/entity";
        let meta = |ty: &str, id: &str| {
            json!({"href": format!("{base}/{ty}/{id}"), "metadataHref": format!("{base}/{ty}/metadata"),
                   "type": ty, "mediaType": "application/json",
                   "uuidHref": format!("https://online.moysklad.ru/app/#good/edit?id={id}")})
        };
        let id = format!("0e3a0000-5a1e-11f0-0a80-{n:012}");
        let id = id.as_str();
        json!({
            "meta": meta("product", id), "id": id, "accountId": "0e3a0000-5a1e-11f0-0a80-00000000000a",
            "owner": {"meta": meta("employee", "0e3a0000-5a1e-11f0-0a80-00000000000b")},
            "group": {"meta": meta("group", "0e3a0000-5a1e-11f0-0a80-00000000000c")},
            "updated": "2026-12-01 10:00:00.000", "name": format!("Товар {n}"), "code": format!("c-{n}"),
            "externalCode": format!("c-{n}"), "archived": false, "pathName": "", "article": format!("ART-{n}"),
            "uom": {"meta": meta("uom", "0e3a0000-5a1e-11f0-0a80-00000000000d")},
            "salePrices": [{"value": 100000.0, "currency": {"meta": meta("currency", "0e3a0000-5a1e-11f0-0a80-00000000000e")},
                            "priceType": {"meta": meta("pricetype", "0e3a0000-5a1e-11f0-0a80-00000000000f"), "name": "Цена продажи"}}],
            "buyPrice": {"value": 50000.0, "currency": {"meta": meta("currency", "0e3a0000-5a1e-11f0-0a80-00000000000e")}},
            "barcodes": [], "attributes": [], "stock": 3.0, "quantity": 3.0
        })
    }

    /// A row is held in well under half its text, and comes back unchanged.
    #[test]
    fn rows_are_held_deflated_and_come_back_whole() {
        let r = api_row(1);
        let c = CatalogueMirror::new(Duration::from_secs(600));
        {
            let mut m = c.lock();
            m.insert(r.clone());
            m.loaded = Some(Instant::now());
        }
        let mut expected = r.clone();
        for f in STOCK_FIELDS {
            expected.as_object_mut().map(|o| o.remove(*f));
        }
        let text = expected.to_string().len();
        assert!(
            c.bytes() * 2 < text,
            "{} bytes held for {text} bytes of text",
            c.bytes()
        );
        assert_eq!(c.find("c-1"), Answer::Rows(vec![expected]));
    }

    /// Rows after the first are deflated with it as a dictionary: what they share with it
    /// (keys, `meta` URLs, prices) costs almost nothing, and each comes back unchanged.
    #[test]
    fn rows_alike_are_held_in_a_fraction_of_their_text_deflated_alone() {
        let c = CatalogueMirror::new(Duration::from_secs(600));
        let rows: Vec<Value> = (1..=50).map(api_row).collect();
        {
            let mut m = c.lock();
            for r in &rows {
                m.insert(r.clone());
            }
            m.loaded = Some(Instant::now());
        }
        let alone: usize = rows
            .iter()
            .map(|r| {
                let mut e = encoder(0);
                e.write_all(r.to_string().as_bytes()).expect("deflate");
                e.finish().expect("deflate").len()
            })
            .sum();
        assert!(
            c.bytes() * 3 < alone,
            "{} bytes held, {alone} deflated one by one",
            c.bytes()
        );
        for (n, r) in rows.iter().enumerate() {
            let mut expected = r.clone();
            for f in STOCK_FIELDS {
                expected.as_object_mut().map(|o| o.remove(*f));
            }
            assert_eq!(
                c.find(&format!("c-{}", n + 1)),
                Answer::Rows(vec![expected])
            );
        }
    }

    #[test]
    fn the_watermark_moves_past_a_second_only_once_it_is_settled() {
        let at = |utc: &str| {
            chrono::NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S")
                .expect("time")
                .and_utc()
        };
        // 10:00:00 Moscow time is 07:00:00 UTC; the second ends at 07:00:01.
        let w = "2026-12-01 10:00:00";
        assert_eq!(settled_watermark(w, at("2026-12-01 07:00:30")), None);
        assert_eq!(settled_watermark(w, at("2026-12-01 07:02:00")), None);
        assert_eq!(
            settled_watermark(w, at("2026-12-01 07:02:01")).as_deref(),
            Some("2026-12-01 10:00:01")
        );
        assert_eq!(
            settled_watermark("not a time", at("2026-12-01 07:30:00")),
            None
        );
    }

    #[test]
    fn only_a_lone_external_code_of_the_assortment_is_mirrored() {
        let f = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            mirrored_code("assortment", &f(json!({"externalCode": "x"}))),
            Some("x")
        );
        assert_eq!(
            mirrored_code("product", &f(json!({"externalCode": "x"}))),
            None
        );
        assert_eq!(
            mirrored_code(
                "assortment",
                &f(json!({"externalCode": "x", "type": "variant"}))
            ),
            None
        );
        assert_eq!(
            mirrored_code("assortment", &f(json!({"externalCode": 5}))),
            None
        );
    }
}
