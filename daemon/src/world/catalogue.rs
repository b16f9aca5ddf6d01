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
//! - What a row says apart from its id and code is what deflate keeps: the id and the code
//!   (as they are written in the row's text) are replaced by one control character each
//!   before deflating, and put back after inflating (JSON text never holds such a character,
//!   so this is exact). Deflate runs at level 6 with fixed Huffman codes (a dynamic block's
//!   tables would take more than a row's few dozen bytes).
//! - The mirror's own bookkeeping is small too (issue 13): 32 bytes an item (the id as 16
//!   bytes when it is a UUID in canonical form, places of its text), the texts (ids that
//!   are not UUIDs, codes, deflated rows) one after another in one buffer, and two tables of
//!   4-byte places, by id and by code (the items of a code chained in the API's order).
//!   At 100 000 items as the emulator renders them this is about 8 MB, where a `String` id
//!   and code in two hash maps and a box per row took 50 MB (runner/benches/mirror.rs).

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::io::Read;

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

/// The compressor rows are deflated with: deflate at level 6 with fixed Huffman codes (a row
/// deflated after the dictionary is a few dozen bytes, where the tables of a dynamic block
/// would take more than the row). One is made for a batch of rows (a load, a page of a
/// refresh, a lookup's answer), reset for each row, and dropped after the batch (it is
/// about 0.25 MB: not kept by an idle mirror).
type Compressor = miniz_oxide::deflate::core::CompressorOxide;

fn compressor() -> Box<Compressor> {
    use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressionStrategy};
    Box::new(Compressor::new(create_comp_flags_from_zip_params(
        6,
        // Raw deflate (no zlib header).
        -15,
        CompressionStrategy::Fixed as i32,
    )))
}

/// `text` deflated by `c` after what it was given before, flushed with `flush`.
fn compress(
    c: &mut Compressor,
    text: &[u8],
    flush: miniz_oxide::deflate::core::TDEFLFlush,
    out: &mut Vec<u8>,
) -> Option<()> {
    use miniz_oxide::deflate::core::{compress_to_output, TDEFLStatus};
    let (status, read) = compress_to_output(c, text, flush, |bytes| {
        out.extend_from_slice(bytes);
        true
    });
    let done = match flush {
        miniz_oxide::deflate::core::TDEFLFlush::Finish => status == TDEFLStatus::Done,
        _ => status == TDEFLStatus::Okay,
    };
    (done && read == text.len()).then_some(())
}

impl Dictionary {
    fn new(c: &mut Compressor, text: &[u8]) -> Option<Self> {
        use miniz_oxide::deflate::core::TDEFLFlush;
        c.reset();
        let mut prefix = Vec::new();
        compress(c, text, TDEFLFlush::Sync, &mut prefix)?;
        Some(Dictionary {
            text: text.into(),
            prefix: prefix.into_boxed_slice(),
        })
    }

    /// `text` deflated after the dictionary, without the prefix.
    fn deflate(&self, c: &mut Compressor, text: &[u8]) -> Option<Vec<u8>> {
        use miniz_oxide::deflate::core::TDEFLFlush;
        c.reset();
        let mut out = Vec::with_capacity(self.prefix.len() + text.len() / 4 + 64);
        compress(c, &self.text, TDEFLFlush::Sync, &mut out)?;
        if out[..] != self.prefix[..] {
            return None;
        }
        compress(c, text, TDEFLFlush::Finish, &mut out)?;
        out.drain(..self.prefix.len());
        Some(out)
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

/// An item's id as the mirror keys it: a UUID's 16 bytes when its text is one in canonical
/// form (as МойСклад writes its ids), else the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id<'a> {
    Uuid(u128),
    Text(&'a str),
}

impl<'a> Id<'a> {
    fn of(s: &'a str) -> Id<'a> {
        if s.len() == 36 {
            if let Ok(u) = uuid::Uuid::parse_str(s) {
                let mut buf = [0u8; 36];
                if u.hyphenated().encode_lower(&mut buf) == s {
                    return Id::Uuid(u.as_u128());
                }
            }
        }
        Id::Text(s)
    }
}

/// A slot of [`Mirror::items`] that holds no item.
const FREE: u16 = u16::MAX;
/// The end of a chain of items with one code.
const NONE: u32 = u32::MAX;

/// One item of the mirror, in 32 bytes: its id (a UUID's bytes, or a text in the arena), and
/// where its code and its deflated row are in the arena (one after the other, after the id's
/// text when it has one).
#[derive(Debug, Clone, Copy)]
struct Item {
    /// The id, when `id_len` is 0.
    uuid: [u8; 16],
    /// Where the item's bytes begin in [`Mirror::arena`].
    start: u32,
    /// Bytes of the deflated row.
    row_len: u32,
    /// The next item with the same code (in the API's order), or [`NONE`].
    next: u32,
    /// The id's text length plus one, 0 for a UUID, [`FREE`] for a free slot.
    id_len: u16,
    code_len: u16,
}

impl Item {
    fn id_text_len(&self) -> usize {
        usize::from(self.id_len.saturating_sub(1))
    }

    /// Bytes the item takes in the arena.
    fn arena_len(&self) -> usize {
        self.id_text_len() + usize::from(self.code_len) + self.row_len as usize
    }
}

/// The items, their bytes and their indexes. Ids, codes and deflated rows are in one arena
/// (no allocation of their own); the two tables hold places in `items` (4 bytes each).
#[derive(Default)]
struct Mirror {
    /// The dictionary rows are deflated with: the first row's text.
    dictionary: Option<Dictionary>,
    compressor: Option<Box<Compressor>>,
    /// When the whole assortment was last read.
    loaded: Option<Instant>,
    /// The newest `updated` seen (`YYYY-MM-DD HH:MM:SS`), where the next refresh starts.
    watermark: Option<String>,
    items: Vec<Item>,
    /// Free slots of `items`.
    free: Vec<u32>,
    /// Each item's id text (when not a UUID), code and deflated row, one after another.
    arena: Vec<u8>,
    /// Bytes of the arena no item uses any more (removed or replaced items).
    garbage: usize,
    /// The first item (in the API's order) of each code; the others follow by `next`.
    by_code: hashbrown::HashTable<u32>,
    /// Every item, by id.
    by_id: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    /// How many items are held.
    len: usize,
    /// Bytes of (deflated) row text held.
    bytes: usize,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("loaded", &self.loaded)
            .field("watermark", &self.watermark)
            .field("len", &self.len)
            .field("bytes", &self.bytes)
            .field("arena", &self.arena.len())
            .finish_non_exhaustive()
    }
}

fn hash_id(h: &std::hash::RandomState, id: Id<'_>) -> u64 {
    match id {
        Id::Uuid(u) => h.hash_one((0u8, u)),
        Id::Text(t) => h.hash_one((1u8, t)),
    }
}

fn hash_code(h: &std::hash::RandomState, code: &[u8]) -> u64 {
    h.hash_one(code)
}

/// The bytes of an item's id text, code and row in `arena`.
fn parts<'a>(arena: &'a [u8], it: &Item) -> (&'a [u8], &'a [u8], &'a [u8]) {
    let start = it.start as usize;
    let code = start + it.id_text_len();
    let row = code + usize::from(it.code_len);
    let end = row + it.row_len as usize;
    (
        arena.get(start..code).unwrap_or_default(),
        arena.get(code..row).unwrap_or_default(),
        arena.get(row..end).unwrap_or_default(),
    )
}

fn id_of<'a>(arena: &'a [u8], it: &Item) -> Id<'a> {
    if it.id_len == 0 {
        Id::Uuid(u128::from_be_bytes(it.uuid))
    } else {
        Id::Text(std::str::from_utf8(parts(arena, it).0).unwrap_or_default())
    }
}

fn code_of<'a>(arena: &'a [u8], it: &Item) -> &'a [u8] {
    parts(arena, it).1
}

/// Markers that stand for an item's id and code in its row text, which JSON text never
/// holds (`serde_json` writes control characters escaped): the row is held without them
/// (the mirror keeps both apart), and they are put back when it is inflated.
const ID_MARK: &str = "\u{1}";
const CODE_MARK: &str = "\u{2}";

/// `s` as it appears inside a JSON string written by `serde_json`.
fn escaped(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

/// A row's text with its id and code (as written in it) replaced by their markers.
fn masked(text: &str, id: &str, code: &str) -> String {
    let (id, code) = (escaped(id), escaped(code));
    let mut t = if id.is_empty() {
        text.to_string()
    } else {
        text.replace(&id, ID_MARK)
    };
    if !code.is_empty() {
        t = t.replace(&code, CODE_MARK);
    }
    t
}

/// What [`masked`] made, with the id and code put back.
fn unmasked(text: &str, id: &str, code: &str) -> String {
    let (id, code) = (escaped(id), escaped(code));
    let mut t = if code.is_empty() {
        text.to_string()
    } else {
        text.replace(CODE_MARK, &code)
    };
    if !id.is_empty() {
        t = t.replace(ID_MARK, &id);
    }
    t
}

impl Mirror {
    /// The place in `items` of the item with this id.
    #[cfg(test)]
    fn place_of(&self, id: Id<'_>) -> Option<u32> {
        let (items, arena) = (&self.items, &self.arena);
        self.by_id
            .find(hash_id(&self.hasher, id), |&i| {
                items
                    .get(i as usize)
                    .is_some_and(|it| id_of(arena, it) == id)
            })
            .copied()
    }

    /// The first item with this code.
    fn head_of(&self, code: &[u8]) -> Option<u32> {
        let (items, arena) = (&self.items, &self.arena);
        self.by_code
            .find(hash_code(&self.hasher, code), |&i| {
                items
                    .get(i as usize)
                    .is_some_and(|it| code_of(arena, it) == code)
            })
            .copied()
    }

    fn remove_id(&mut self, id: &str) {
        let id = Id::of(id);
        let hash = hash_id(&self.hasher, id);
        let Mirror {
            items,
            arena,
            by_id,
            by_code,
            hasher,
            ..
        } = self;
        let Ok(entry) = by_id.find_entry(hash, |&i| {
            items
                .get(i as usize)
                .is_some_and(|it| id_of(arena, it) == id)
        }) else {
            return;
        };
        let (place, _) = entry.remove();
        let Some(item) = items.get(place as usize).copied() else {
            return;
        };
        // Out of its code's chain.
        let code = code_of(arena, &item);
        if let Ok(mut head) = by_code.find_entry(hash_code(hasher, code), |&i| {
            items
                .get(i as usize)
                .is_some_and(|it| code_of(arena, it) == code)
        }) {
            if *head.get() == place {
                if item.next == NONE {
                    head.remove();
                } else {
                    *head.get_mut() = item.next;
                }
            } else {
                let mut at = *head.get();
                while let Some(it) = items.get_mut(at as usize) {
                    if it.next == place {
                        it.next = item.next;
                        break;
                    }
                    at = it.next;
                }
            }
        }
        if let Some(slot) = items.get_mut(place as usize) {
            slot.id_len = FREE;
            slot.next = NONE;
        }
        self.free.push(place);
        self.len -= 1;
        self.bytes = self.bytes.saturating_sub(item.row_len as usize);
        self.garbage += item.arena_len();
        if self.garbage > 1 << 16 && self.garbage > self.arena.len() / 4 {
            self.compact();
        }
    }

    /// Copies the items' bytes into an arena without garbage.
    fn compact(&mut self) {
        let live = self.arena.len() - self.garbage;
        let mut arena = Vec::with_capacity(live + live / 8);
        for it in self.items.iter_mut().filter(|it| it.id_len != FREE) {
            let start = it.start as usize;
            let bytes = self.arena.get(start..start + it.arena_len());
            it.start = arena.len() as u32;
            arena.extend_from_slice(bytes.unwrap_or_default());
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Gives back what the vectors hold beyond their length (after a whole read).
    fn shrink(&mut self) {
        self.items.shrink_to_fit();
        self.free.shrink_to_fit();
        self.arena.shrink_to_fit();
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
        let text = masked(&row.to_string(), &id, &code);
        drop(row);
        let c = self.compressor.get_or_insert_with(compressor);
        if self.dictionary.is_none() {
            self.dictionary = Dictionary::new(c, text.as_bytes());
        }
        let Some(deflated) = self
            .dictionary
            .as_ref()
            .and_then(|d| d.deflate(c, text.as_bytes()))
        else {
            return;
        };
        self.push(Id::of(&id), &code, &deflated);
    }

    /// Holds an item (its id not held). One whose id or code is longer than 65 533 bytes, or
    /// that would take the arena past 4 GiB, is not held (its lookups ask МойСклад).
    fn push(&mut self, id: Id<'_>, code: &str, deflated: &[u8]) {
        let (uuid, id_text) = match id {
            Id::Uuid(u) => (u.to_be_bytes(), ""),
            Id::Text(t) => ([0; 16], t),
        };
        let (Ok(id_len), Ok(code_len), Ok(row_len)) = (
            u16::try_from(id_text.len() + usize::from(matches!(id, Id::Text(_)))),
            u16::try_from(code.len()),
            u32::try_from(deflated.len()),
        ) else {
            return;
        };
        if id_len == FREE || code_len == u16::MAX {
            return;
        }
        let size = id_text.len() + code.len() + deflated.len();
        let Ok(start) = u32::try_from(self.arena.len()) else {
            return;
        };
        let full = self.free.is_empty() && self.items.len() >= NONE as usize;
        if full || u32::try_from(self.arena.len() + size).is_err() {
            return;
        }
        // Grown by an eighth at a time: a doubled arena could hold twice what it needs.
        if self.arena.capacity() - self.arena.len() < size {
            self.arena
                .reserve_exact(size.max(self.arena.len() / 8).max(4096));
        }
        self.arena.extend_from_slice(id_text.as_bytes());
        self.arena.extend_from_slice(code.as_bytes());
        self.arena.extend_from_slice(deflated);
        let item = Item {
            uuid,
            start,
            row_len,
            next: NONE,
            id_len,
            code_len,
        };
        let place = match self.free.pop() {
            Some(p) => {
                if let Some(slot) = self.items.get_mut(p as usize) {
                    *slot = item;
                }
                p
            }
            None => {
                // Below `NONE` (checked above).
                let p = self.items.len() as u32;
                self.items.push(item);
                p
            }
        };
        self.len += 1;
        self.bytes += deflated.len();
        let Mirror {
            items,
            arena,
            by_id,
            by_code,
            hasher,
            ..
        } = self;
        by_id.insert_unique(hash_id(hasher, id), place, |&i| {
            items
                .get(i as usize)
                .map_or(0, |it| hash_id(hasher, id_of(arena, it)))
        });
        // Last of its code's chain (the API's order).
        let code = code.as_bytes();
        let head = by_code
            .find(hash_code(hasher, code), |&i| {
                items
                    .get(i as usize)
                    .is_some_and(|it| code_of(arena, it) == code)
            })
            .copied();
        match head {
            Some(mut at) => {
                while let Some(it) = items.get_mut(at as usize) {
                    if it.next == NONE {
                        it.next = place;
                        break;
                    }
                    at = it.next;
                }
            }
            None => {
                by_code.insert_unique(hash_code(hasher, code), place, |&i| {
                    items
                        .get(i as usize)
                        .map_or(0, |it| hash_code(hasher, code_of(arena, it)))
                });
            }
        }
    }

    /// The rows with this code, in the API's order; `None` when one does not inflate.
    fn rows(&self, code: &str) -> Option<Vec<Value>> {
        let mut at = self.head_of(code.as_bytes())?;
        let mut rows = Vec::new();
        while let Some(it) = self.items.get(at as usize) {
            let (_, _, deflated) = parts(&self.arena, it);
            let text = self.dictionary.as_ref()?.inflate(deflated)?;
            let text = String::from_utf8(text).ok()?;
            let id = match id_of(&self.arena, it) {
                Id::Uuid(u) => uuid::Uuid::from_u128(u).hyphenated().to_string(),
                Id::Text(t) => t.to_string(),
            };
            rows.push(serde_json::from_str(&unmasked(&text, &id, code)).ok()?);
            at = it.next;
        }
        Some(rows)
    }
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
        self.lock().len
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
        self.loaded_with(m, began);
        Ok(())
    }

    /// Takes in a whole read of the assortment, `rows` in the API's order, in place of what
    /// the mirror held: what [`CatalogueMirror::ensure_loaded`] does with the rows it reads
    /// (for benches and tests that make their rows without a МойСклад).
    pub fn load_rows(&self, rows: impl IntoIterator<Item = Value>) {
        let began = chrono::Utc::now();
        let mut m = Mirror::default();
        for r in rows {
            m.insert(r);
        }
        self.loaded_with(m, began);
    }

    /// Makes `m`, a whole read of the assortment begun at `began`, the mirror.
    fn loaded_with(&self, mut m: Mirror, began: chrono::DateTime<chrono::Utc>) {
        m.loaded = Some(Instant::now());
        m.compressor = None;
        if let Some(next) = m
            .watermark
            .as_deref()
            .and_then(|w| settled_watermark(w, began))
        {
            m.watermark = Some(next);
        }
        m.shrink();
        tracing::info!(items = m.len, bytes = m.bytes, "catalogue mirror loaded");
        *self.lock() = m;
    }

    /// The rows with `externalCode` `code`, as `GET /entity/assortment?filter=externalCode=…`
    /// answers (stock fields aside), when the mirror holds it.
    pub fn find(&self, code: &str) -> Answer {
        let m = self.lock();
        if m.loaded.is_none() {
            return Answer::Unknown;
        }
        match m.rows(code) {
            Some(rows) if !rows.is_empty() => Answer::Rows(rows),
            // Not held; or text this mirror wrote did not come back (not reached): ask МойСклад.
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
        m.compressor = None;
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
            m.compressor = None;
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
        // What it holds of row text is the one item's.
        assert_eq!(c.bytes(), {
            let m = c.lock();
            m.items
                .iter()
                .filter(|it| it.id_len != FREE)
                .map(|it| it.row_len as usize)
                .sum::<usize>()
        });
        assert!(c.bytes() > 0);
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
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut e, r.to_string().as_bytes()).expect("deflate");
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

    /// What the mirror held before it was made compact: the rows of each code as JSON, in
    /// the API's order, and the code of each id (the same rules: stock fields dropped, an
    /// item's earlier row replaced, archived items left out).
    #[derive(Default)]
    struct Maps {
        by_code: std::collections::HashMap<String, Vec<(String, Value)>>,
        code_of: std::collections::HashMap<String, String>,
    }

    impl Maps {
        fn remove_id(&mut self, id: &str) {
            if let Some(code) = self.code_of.remove(id) {
                if let Some(rows) = self.by_code.get_mut(&code) {
                    rows.retain(|(rid, _)| rid != id);
                    if rows.is_empty() {
                        self.by_code.remove(&code);
                    }
                }
            }
        }

        fn insert(&mut self, mut row: Value) {
            let (Some(id), Some(code)) = (
                row["id"].as_str().map(str::to_string),
                row["externalCode"].as_str().map(str::to_string),
            ) else {
                return;
            };
            if let Some(o) = row.as_object_mut() {
                for f in STOCK_FIELDS {
                    o.remove(*f);
                }
            }
            self.remove_id(&id);
            if row["archived"] == json!(true) {
                return;
            }
            self.code_of.insert(id.clone(), code.clone());
            self.by_code.entry(code).or_default().push((id, row));
        }

        fn find(&self, code: &str) -> Answer {
            match self.by_code.get(code) {
                Some(rows) => Answer::Rows(rows.iter().map(|(_, r)| r.clone()).collect()),
                None => Answer::Unknown,
            }
        }
    }

    /// A small deterministic generator (the same sequence every run).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    /// Ids of every kind: canonical UUIDs, the same UUIDs in capitals (other ids: the text
    /// differs), braces, short and empty texts, texts JSON escapes, non-ASCII.
    const IDS: &[&str] = &[
        "0e3a0000-5a1e-11f0-0a80-000000000001",
        "0e3a0000-5a1e-11f0-0a80-000000000002",
        "0E3A0000-5A1E-11F0-0A80-000000000001",
        "{0e3a0000-5a1e-11f0-0a80-000000000002}",
        "0e3a00005a1e11f00a80000000000003",
        "1",
        "",
        "id \"quoted\" \\ slash",
        "идентификатор-№5",
        "tab\there\u{1}\u{2}",
    ];

    /// Codes of every kind: ASCII, Cyrillic, an emoji, JSON escapes, a code that is an id, a
    /// code inside another field's text, an empty one.
    const CODES: &[&str] = &[
        "c-1",
        "Код-товара-1",
        "артикул «Ёлка» 🎄",
        "quote\"and\\back",
        "0e3a0000-5a1e-11f0-0a80-000000000001",
        "product",
        "1",
        "",
        "line\nbreak",
    ];

    fn any_row(g: &mut Lcg, n: usize) -> Value {
        let id = IDS[g.next(IDS.len())];
        let code = CODES[g.next(CODES.len())];
        let base = "https://api.moysklad.ru/api/remap/1.2/entity";
        let mut row = json!({
            "meta": {"href": format!("{base}/product/{id}"), "type": "product",
                     "uuidHref": format!("https://online.moysklad.ru/app/#good/edit?id={id}")},
            "id": id, "externalCode": code, "code": code, "name": format!("{code} {n}"),
            "updated": format!("2026-12-01 10:00:{:02}.000", n % 60),
            "archived": g.next(6) == 0, "stock": n, "salePrices": [{"value": n * 100}],
            "description": "x".repeat(g.next(3) * 50),
        });
        match g.next(4) {
            0 => {
                row.as_object_mut().map(|o| o.remove("code"));
            }
            1 => row["attributes"] = json!([{"name": id, "value": [code, n]}]),
            _ => {}
        }
        row
    }

    /// The tables hold one entry an item, one a code.
    fn check_tables(c: &CatalogueMirror, codes: usize) {
        let m = c.lock();
        assert_eq!(m.len, m.by_id.len(), "one id entry an item");
        assert_eq!(m.by_code.len(), codes, "one code entry a code");
        assert_eq!(m.free.len() + m.len, m.items.len());
        assert!(m.compressor.is_none(), "no compressor kept between batches");
        assert_eq!(std::mem::size_of::<Item>(), 32);
    }

    /// The compact mirror answers every code exactly as the two maps did, through inserts of
    /// new and changed items (their code changed too), archived ones, forgotten ones, ids
    /// that are not UUIDs and codes in any text.
    #[test]
    fn the_compact_mirror_answers_what_the_maps_did() {
        let c = CatalogueMirror::new(Duration::from_secs(600));
        c.lock().loaded = Some(Instant::now());
        let mut maps = Maps::default();
        let mut g = Lcg(13);
        for n in 0..1500 {
            if g.next(8) == 0 {
                let id = IDS[g.next(IDS.len())];
                c.forget(id);
                maps.remove_id(id);
            } else {
                let row = any_row(&mut g, n);
                c.learn(std::slice::from_ref(&row));
                maps.insert(row);
            }
            if n % 50 == 0 || n > 1450 {
                for code in CODES {
                    assert_eq!(c.find(code), maps.find(code), "code {code:?} after {n}");
                }
                assert_eq!(c.len(), maps.code_of.len(), "after {n}");
            }
        }
        check_tables(&c, maps.by_code.len());
        assert!(
            maps.by_code.len() > 3,
            "the case holds several codes at the end"
        );
        // Codes never held are unknown.
        assert_eq!(c.find("c-2"), Answer::Unknown);
    }

    /// Rows with one code come back in the order they were taken in, whichever of them is
    /// removed or replaced; a replaced row goes last, as in the maps.
    #[test]
    fn rows_of_one_code_keep_the_api_order() {
        let c = CatalogueMirror::new(Duration::from_secs(600));
        c.lock().loaded = Some(Instant::now());
        let mut maps = Maps::default();
        let row = |id: &str, v: u32| json!({"id": id, "externalCode": "same", "v": v});
        let mut step = |r: Option<Value>, forget: Option<&str>| {
            if let Some(r) = r {
                c.learn(std::slice::from_ref(&r));
                maps.insert(r);
            }
            if let Some(id) = forget {
                c.forget(id);
                maps.remove_id(id);
            }
            assert_eq!(c.find("same"), maps.find("same"));
        };
        for (i, id) in IDS.iter().enumerate() {
            step(Some(row(id, i as u32)), None);
        }
        step(None, Some(IDS[0]));
        step(None, Some(IDS[4]));
        step(Some(row(IDS[2], 100)), None);
        step(Some(row(IDS[0], 101)), None);
        step(None, Some(IDS[9]));
        let Answer::Rows(rows) = c.find("same") else {
            panic!("held")
        };
        let order: Vec<u64> = rows.iter().filter_map(|r| r["v"].as_u64()).collect();
        assert_eq!(order, [1, 3, 5, 6, 7, 8, 100, 101]);
    }

    /// An id that is a UUID in capitals is another id than the same UUID in small letters
    /// (as the text differs), and comes back in capitals.
    #[test]
    fn ids_are_kept_as_their_text() {
        let c = CatalogueMirror::new(Duration::from_secs(600));
        c.lock().loaded = Some(Instant::now());
        let lower = "0e3a0000-5a1e-11f0-0a80-00000000000a";
        let upper = "0E3A0000-5A1E-11F0-0A80-00000000000A";
        c.learn(&[
            json!({"id": lower, "externalCode": "a", "meta": {"href": format!("x/{lower}")}}),
            json!({"id": upper, "externalCode": "b", "meta": {"href": format!("x/{upper}")}}),
        ]);
        {
            let m = c.lock();
            assert!(m
                .place_of(Id::Uuid(0x0e3a00005a1e11f00a8000000000000a))
                .is_some());
            assert!(m.place_of(Id::Text(upper)).is_some());
        }
        c.forget(lower);
        assert_eq!(c.find("a"), Answer::Unknown);
        assert_eq!(
            c.find("b"),
            Answer::Rows(vec![
                json!({"id": upper, "externalCode": "b", "meta": {"href": format!("x/{upper}")}})
            ])
        );
    }

    /// The arena is compacted as items are replaced: a catalogue changed over and over
    /// holds about what it holds once, and answers the same.
    #[test]
    fn replaced_rows_do_not_pile_up() {
        let c = CatalogueMirror::new(Duration::from_secs(600));
        c.lock().loaded = Some(Instant::now());
        let mut maps = Maps::default();
        // Rows that hardly deflate (a different text each time), 2 KB each.
        let mut g = Lcg(7);
        let noise = |g: &mut Lcg| -> String {
            (0..2000)
                .map(|_| char::from(b'a' + g.next(26) as u8))
                .collect()
        };
        for round in 0..20 {
            for i in 0..40 {
                let row = json!({"id": format!("item-{i}"), "externalCode": format!("c{}", i % 7),
                                 "round": round, "noise": noise(&mut g)});
                c.learn(std::slice::from_ref(&row));
                maps.insert(row);
            }
        }
        for i in 0..7 {
            let code = format!("c{i}");
            assert_eq!(c.find(&code), maps.find(&code));
        }
        let m = c.lock();
        assert_eq!(m.len, 40);
        // 40 rows of about 1.3 KB deflated; 800 were taken in.
        assert!(
            m.arena.len() < 2 * m.bytes + (1 << 16) + m.bytes / 4,
            "arena {} for {} bytes of rows",
            m.arena.len(),
            m.bytes
        );
        assert!(m.garbage <= m.arena.len());
    }

    /// An item whose code is too long to place is not held: its code is unknown (asked of
    /// МойСклад), and the item's earlier row, under another code, is gone.
    #[test]
    fn an_item_too_long_to_place_is_asked_for() {
        let c = CatalogueMirror::new(Duration::from_secs(600));
        c.lock().loaded = Some(Instant::now());
        c.learn(&[json!({"id": "i", "externalCode": "short"})]);
        assert!(matches!(c.find("short"), Answer::Rows(_)));
        let long = "к".repeat(40_000);
        c.learn(&[json!({"id": "i", "externalCode": long})]);
        assert_eq!(c.find(&long), Answer::Unknown);
        assert_eq!(c.find("short"), Answer::Unknown);
        assert_eq!(c.len(), 0);
        check_tables(&c, 0);
    }

    /// Masking the id and code out of a row's text and back gives the text, whatever they are.
    #[test]
    fn masks_come_back_exactly() {
        for id in IDS {
            for code in CODES {
                let row = json!({"id": id, "externalCode": code, "t": format!("{id}{code}{id}"),
                                 "k": {*code: *id}});
                let text = row.to_string();
                let m = masked(&text, id, code);
                assert!(m.len() <= text.len());
                assert_eq!(unmasked(&m, id, code), text, "{id:?} {code:?}");
            }
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
