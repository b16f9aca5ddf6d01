//! The ICML catalogue (CAT-02): retailCRM's YML-based catalogue format, generated from the
//! МойСклад assortment for shops whose catalogue reaches the CRM no other way.
//!
//! * **Categories** are the МойСклад product folders (`category@id` = the folder's
//!   `externalCode`, `parentId` = its parent's), plus `warehouseRoot` for goods outside any
//!   folder unless [`IcmlOptions::skip_without_category`] is set.
//! * **Offers** are products without variants, the variants of products that have them,
//!   services (`type="service"`) and bundles. The offer `id` and `<xmlId>` follow CAT-01 and
//!   the order rules (`rules/crm_to_ms/catalog.yaml`): the `externalCode`, or
//!   `productExternalCode#variantExternalCode` for a variant, so an order item whose offer has
//!   this `xmlId` is matched back to exactly this assortment item. Items whose codes the rules
//!   could not match back (no code, a `#` where the rules split, or a code another offer
//!   already has) are left out and counted.
//! * Price by the chosen price type (else the first sale price; a variant without its own
//!   price takes the product's), quantity from `report/stock/all/current` (stock − reserve +
//!   in transit by default, 0…999 999 as STOCK-03 caps it), barcodes, VAT (`effectiveVat`,
//!   else `vat`), weight, dimensions from attributes, a URL and a picture (see
//!   [`IcmlOptions`]).
//!
//! Streaming: the folders are read first (they are few, and categories come before offers in
//! the file); the assortment is then read one page (100 rows) at a time with the page's stock,
//! and each page is written before the next is asked for. Memory is bounded by a page and the
//! folder list, never by the number of offers. The file is written next to its destination
//! and renamed over it when complete, so readers see the old catalogue or the new one, never
//! half of one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::clients::moysklad::{
    id_from_href, CurrentReport, ListQuery, MoyskladClient, MoyskladError,
};

/// The category of goods outside any folder (the official generator's id).
pub const ROOT_CATEGORY: &str = "warehouseRoot";

/// The highest quantity written (STOCK-03).
pub const MAX_QUANTITY: f64 = 999_999.0;

/// Rows per assortment page (the most the API returns with `expand`).
pub const PAGE_SIZE: u32 = 100;

/// Which МойСклад quantity becomes the offer's `quantity`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockKind {
    /// `quantity`: stock − reserve + in transit (what the stock sync sends by default).
    #[default]
    Quantity,
    /// `freeStock`: stock − reserve.
    FreeStock,
    /// `stock`: on hand.
    Stock,
    /// No `quantity` attribute (the stock sync keeps quantities).
    None,
}

impl StockKind {
    /// The `stockType` of the current stock report.
    pub fn report_type(self) -> Option<&'static str> {
        match self {
            StockKind::Quantity => Some("quantity"),
            StockKind::FreeStock => Some("freeStock"),
            StockKind::Stock => Some("stock"),
            StockKind::None => None,
        }
    }

    /// Reads `quantity`, `free_stock`, `stock` or `none`.
    pub fn parse(text: &str) -> Option<StockKind> {
        match text {
            "quantity" => Some(StockKind::Quantity),
            "free_stock" | "freeStock" => Some(StockKind::FreeStock),
            "stock" => Some(StockKind::Stock),
            "none" => Some(StockKind::None),
            _ => None,
        }
    }
}

/// What goes into the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct IcmlOptions {
    /// `<shop><name>`.
    pub shop_name: String,
    /// `<shop><company>` (omitted when empty).
    pub company: String,
    /// The sale price type (its name, `externalCode` or id); `None` takes the first sale price.
    pub price_type: Option<String>,
    /// Write `<purchasePrice>` from `buyPrice`.
    pub purchase_price: bool,
    /// Include archived goods and folders (their offers get `<productActivity>N`).
    pub include_archived: bool,
    /// Folders (id or `externalCode`) left out with everything under them.
    pub ignore_categories: Vec<String>,
    /// Leave out goods outside any folder (else they go to `warehouseRoot`).
    pub skip_without_category: bool,
    /// Include services (`type="service"`).
    pub services: bool,
    /// Include bundles.
    pub bundles: bool,
    /// Which quantity to write.
    pub stock: StockKind,
    /// The offer `<url>`: a template with `{externalCode}`, `{productExternalCode}`, `{code}`,
    /// `{article}`, `{id}`; without one, the item's МойСклад card (`meta.uuidHref`), as the
    /// official generator does.
    pub url_template: Option<String>,
    /// A product attribute (by name) holding the picture's public URL. МойСклад's own image
    /// downloads need the account's credentials, so they cannot be pictures in the CRM.
    pub picture_attribute: Option<String>,
    /// Product attributes (by name) giving the dimensions in cm: three (length, width,
    /// height), or one holding all three (`50/50/90`, `50x50x90`).
    pub dimension_attributes: Vec<String>,
}

impl Default for IcmlOptions {
    fn default() -> Self {
        IcmlOptions {
            shop_name: "Shop".into(),
            company: String::new(),
            price_type: None,
            purchase_price: false,
            include_archived: false,
            ignore_categories: Vec::new(),
            skip_without_category: false,
            services: true,
            bundles: true,
            stock: StockKind::Quantity,
            url_template: None,
            picture_attribute: None,
            dimension_attributes: Vec::new(),
        }
    }
}

/// Generating the catalogue failed; the previous file, if any, is untouched.
#[derive(Debug, thiserror::Error)]
pub enum IcmlError {
    /// Reading МойСклад failed.
    #[error("reading МойСклад: {0}")]
    Moysklad(#[from] MoyskladError),
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The options are not usable.
    #[error("{0}")]
    Options(String),
}

/// What a generation wrote and left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IcmlStats {
    /// Categories written.
    pub categories: u64,
    /// Offers written.
    pub offers: u64,
    /// Of them, services.
    pub services: u64,
    /// Assortment rows read.
    pub rows: u64,
    /// Rows left out, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// A few xmlIds left out because the rules could not match them back (a `#` where the
    /// rules split, or a code already used by another offer).
    pub unmatchable: Vec<String>,
    /// Bytes written.
    pub bytes: u64,
}

/// Generates the catalogue into `path`, atomically (a temporary file beside it, renamed).
pub async fn generate(
    ms: &MoyskladClient,
    opts: &IcmlOptions,
    path: &Path,
) -> Result<IcmlStats, IcmlError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| IcmlError::Io { path: p, source }
    };
    let tmp = temp_path(path);
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let out = CountingWriter {
        inner: std::io::BufWriter::with_capacity(64 * 1024, file),
        bytes: 0,
    };
    let written = write_catalog(ms, opts, out, &tmp).await;
    let finished = written.and_then(|(stats, out)| {
        let file = out.inner.into_inner().map_err(|e| IcmlError::Io {
            path: tmp.display().to_string(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(stats)
    });
    if finished.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    finished
}

/// The temporary file of `path`: hidden, beside it (so the rename stays on one file system).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "catalog.xml".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One product folder.
#[derive(Clone, Debug)]
struct Folder {
    code: String,
    name: String,
    parent: Option<String>,
    archived: bool,
}

fn s<'a>(v: &'a Json, key: &str) -> &'a str {
    v.get(key).and_then(Json::as_str).unwrap_or("")
}

fn href_id(v: &Json) -> Option<String> {
    v.pointer("/meta/href")
        .and_then(Json::as_str)
        .and_then(id_from_href)
        .map(str::to_string)
}

/// Every product folder, by id.
async fn folders(ms: &MoyskladClient) -> Result<HashMap<String, Folder>, IcmlError> {
    let mut out = HashMap::new();
    let q = ListQuery::new().filter_raw("archived=true;archived=false");
    let mut pages = ms.pages("productfolder", &q)?;
    while let Some(page) = pages.next().await? {
        for f in page.rows {
            let Some(id) = f.get("id").and_then(Json::as_str) else {
                continue;
            };
            let code = match s(&f, "externalCode") {
                "" => id.to_string(),
                c => c.to_string(),
            };
            out.insert(
                id.to_string(),
                Folder {
                    code,
                    name: s(&f, "name").to_string(),
                    parent: f.get("productFolder").and_then(href_id),
                    archived: f.get("archived").and_then(Json::as_bool).unwrap_or(false),
                },
            );
        }
    }
    Ok(out)
}

/// The folders left out: ignored or archived ones, and everything under them.
fn excluded(folders: &HashMap<String, Folder>, opts: &IcmlOptions) -> HashSet<String> {
    let own = |id: &str, f: &Folder| {
        (f.archived && !opts.include_archived)
            || opts
                .ignore_categories
                .iter()
                .any(|c| c == id || *c == f.code)
    };
    let mut out = HashSet::new();
    for id in folders.keys() {
        let mut at = Some(id.as_str());
        let mut steps = 0;
        while let Some(cur) = at {
            let Some(f) = folders.get(cur) else {
                break;
            };
            if own(cur, f) {
                out.insert(id.clone());
                break;
            }
            steps += 1;
            if steps > folders.len() {
                break; // a cycle in what the API sent: stop climbing
            }
            at = f.parent.as_deref();
        }
    }
    out
}

/// Drops characters XML 1.0 cannot carry.
fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    if text.chars().any(bad) {
        std::borrow::Cow::Owned(text.chars().filter(|c| !bad(*c)).collect())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A number as ICML wants it: no exponent, at most `places` decimals, no trailing zeros.
fn number(v: f64, places: usize) -> String {
    let t = format!("{v:.places$}");
    if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    }
}

fn money(kopecks: f64) -> String {
    format!("{:.2}", kopecks / 100.0)
}

/// One offer, ready to write.
#[derive(Debug, Default)]
struct Offer {
    xml_id: String,
    product_id: String,
    service: bool,
    stocked: bool,
    ms_id: String,
    name: String,
    product_name: String,
    price: f64,
    purchase_price: Option<f64>,
    category: String,
    url: Option<String>,
    picture: Option<String>,
    vat: Option<String>,
    barcodes: Vec<String>,
    params: Vec<(String, String, String)>,
    weight: Option<f64>,
    dimensions: Option<String>,
    active: bool,
}

/// Why a row is not an offer (`None` = not meant to be one and not worth counting).
enum Skip {
    Quiet,
    Counted(&'static str),
    Unmatchable(String),
}

/// The sale price of `item` of the chosen type (id, name or externalCode), else the first.
fn sale_price(item: &Json, price_type: Option<&str>) -> Option<f64> {
    let prices = item.get("salePrices")?.as_array()?;
    let pick = match price_type {
        Some(t) => prices.iter().find(|p| {
            let pt = p.get("priceType").unwrap_or(&Json::Null);
            [s(pt, "name"), s(pt, "externalCode"), s(pt, "id")].contains(&t)
                || href_id(pt).as_deref() == Some(t)
        }),
        None => prices.first(),
    }?;
    pick.get("value").and_then(Json::as_f64)
}

fn attribute<'a>(item: &'a Json, name: &str) -> Option<&'a Json> {
    item.get("attributes")?
        .as_array()?
        .iter()
        .find(|a| s(a, "name") == name)
        .and_then(|a| a.get("value"))
}

fn attribute_text(item: &Json, name: &str) -> Option<String> {
    match attribute(item, name)? {
        Json::String(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
        Json::Number(n) => Some(n.to_string()),
        Json::Object(o) => o.get("name").and_then(Json::as_str).map(str::to_string),
        _ => None,
    }
}

/// `L/W/H` from the dimension attributes, when all are numbers.
fn dimensions(item: &Json, names: &[String]) -> Option<String> {
    let parts: Vec<String> = match names {
        [one] => attribute_text(item, one)?
            .split(['/', 'x', 'X', '×', '*'])
            .map(|p| p.trim().replace(',', "."))
            .collect(),
        [l, w, h] => [l, w, h]
            .iter()
            .map(|n| attribute_text(item, n).map(|t| t.replace(',', ".")))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    let nums: Vec<f64> = parts
        .iter()
        .map(|p| p.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0))
        .collect::<Option<_>>()?;
    (nums.len() == 3).then(|| {
        nums.iter()
            .map(|v| number(*v, 3))
            .collect::<Vec<_>>()
            .join("/")
    })
}

/// The VAT of an item: `none`, or the rate.
fn vat(item: &Json) -> Option<String> {
    let enabled = |k: &str| item.get(k).and_then(Json::as_bool);
    let rate = |k: &str| item.get(k).and_then(Json::as_f64);
    if let Some(e) = enabled("effectiveVatEnabled") {
        return Some(if e {
            number(rate("effectiveVat").unwrap_or(0.0), 0)
        } else {
            "none".into()
        });
    }
    if let Some(r) = rate("effectiveVat") {
        return Some(number(r, 0));
    }
    match (enabled("vatEnabled"), rate("vat")) {
        (Some(false), _) => Some("none".into()),
        (_, Some(r)) => Some(number(r, 0)),
        _ => None,
    }
}

/// A barcode object's value (`{"ean13": "…"}`).
fn barcodes(item: &Json) -> Vec<String> {
    item.get("barcodes")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| match b {
            Json::Object(o) => o.values().find_map(Json::as_str).map(str::to_string),
            Json::String(t) => Some(t.clone()),
            _ => None,
        })
        .filter(|b| !b.is_empty())
        .collect()
}

fn weight(item: &Json) -> Option<f64> {
    item.get("weight")
        .and_then(Json::as_f64)
        .filter(|w| w.is_finite() && *w > 0.0)
}

fn render_url(template: &str, row: &Json, product: &Json, xml_product: &str) -> String {
    template
        .replace("{externalCode}", s(row, "externalCode"))
        .replace("{productExternalCode}", xml_product)
        .replace("{code}", s(row, "code"))
        .replace(
            "{article}",
            match s(row, "article") {
                "" => s(product, "article"),
                a => a,
            },
        )
        .replace("{id}", s(row, "id"))
}

/// Turns one assortment row into an offer.
fn offer(
    row: &Json,
    opts: &IcmlOptions,
    folders: &HashMap<String, Folder>,
    excluded: &HashSet<String>,
) -> Result<Offer, Skip> {
    let ty = row
        .pointer("/meta/type")
        .and_then(Json::as_str)
        .unwrap_or("");
    let variant = ty == "variant";
    match ty {
        "product" | "variant" => {}
        "service" if opts.services => {}
        "bundle" if opts.bundles => {}
        "service" | "bundle" => return Err(Skip::Counted("excluded by type")),
        "" => return Err(Skip::Counted("malformed row")),
        _ => return Err(Skip::Quiet), // consignments are not offers
    }
    if ty == "product"
        && row
            .get("variantsCount")
            .or_else(|| row.get("modificationsCount"))
            .and_then(Json::as_u64)
            .unwrap_or(0)
            > 0
    {
        // Its variants are the offers.
        return Err(Skip::Quiet);
    }
    let product = if variant {
        match row.get("product") {
            Some(p) if p.get("externalCode").is_some() => p,
            _ => return Err(Skip::Counted("variant without its product")),
        }
    } else {
        row
    };
    let archived = row.get("archived").and_then(Json::as_bool).unwrap_or(false)
        || product
            .get("archived")
            .and_then(Json::as_bool)
            .unwrap_or(false);
    if archived && !opts.include_archived {
        return Err(Skip::Counted("archived"));
    }
    let own_code = s(row, "externalCode");
    let product_code = s(product, "externalCode");
    let (xml_id, matchable) = if variant {
        (
            format!("{product_code}#{own_code}"),
            !product_code.is_empty() && !product_code.contains('#') && !own_code.is_empty(),
        )
    } else {
        (
            own_code.to_string(),
            !own_code.is_empty() && !own_code.contains('#'),
        )
    };
    if !matchable {
        return Err(Skip::Unmatchable(xml_id));
    }
    let category = match product.get("productFolder").and_then(href_id) {
        Some(fid) => match folders.get(&fid) {
            Some(f) if !excluded.contains(&fid) => f.code.clone(),
            _ => return Err(Skip::Counted("ignored category")),
        },
        None if opts.skip_without_category => return Err(Skip::Counted("no category")),
        None => ROOT_CATEGORY.to_string(),
    };
    let own_or_product = |f: &dyn Fn(&Json) -> Option<f64>| f(row).or_else(|| f(product));
    let price = sale_price(row, opts.price_type.as_deref())
        .filter(|p| *p != 0.0)
        .or_else(|| sale_price(product, opts.price_type.as_deref()))
        .unwrap_or(0.0);
    let purchase_price = opts.purchase_price.then(|| {
        own_or_product(&|i| i.pointer("/buyPrice/value").and_then(Json::as_f64)).unwrap_or(0.0)
    });
    let mut params = Vec::new();
    let article = match s(row, "article") {
        "" => s(product, "article"),
        a => a,
    };
    if !article.is_empty() {
        params.push(("article".into(), "Артикул".into(), article.to_string()));
    }
    if !s(row, "code").is_empty() {
        params.push(("code".into(), "Код".into(), s(row, "code").to_string()));
    }
    for c in row
        .get("characteristics")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let (name, value) = (
            s(c, "name"),
            c.get("value").and_then(Json::as_str).unwrap_or(""),
        );
        if name.is_empty() || value.is_empty() {
            continue;
        }
        let code = match s(c, "id") {
            "" => format!("characteristic-{}", params.len()),
            id => format!("characteristic-{}", id.replace('-', "")),
        };
        params.push((code, name.to_string(), value.to_string()));
    }
    let mut own_barcodes = barcodes(row);
    if own_barcodes.is_empty() && variant {
        own_barcodes = barcodes(product);
    }
    let url = match &opts.url_template {
        Some(t) => Some(render_url(t, row, product, product_code)),
        None => product
            .pointer("/meta/uuidHref")
            .and_then(Json::as_str)
            .map(str::to_string),
    };
    let from_attrs = |f: &dyn Fn(&Json) -> Option<String>| f(row).or_else(|| f(product));
    Ok(Offer {
        product_id: if variant { product_code } else { own_code }.to_string(),
        xml_id,
        service: ty == "service",
        stocked: matches!(ty, "product" | "variant"),
        ms_id: s(row, "id").to_string(),
        name: s(row, "name").to_string(),
        product_name: match s(product, "name") {
            "" => s(row, "name"),
            n => n,
        }
        .to_string(),
        price,
        purchase_price,
        category,
        url: url.filter(|u| !u.is_empty()),
        picture: opts
            .picture_attribute
            .as_deref()
            .and_then(|a| from_attrs(&|i| attribute_text(i, a))),
        vat: vat(row).or_else(|| if variant { vat(product) } else { None }),
        barcodes: own_barcodes,
        params,
        weight: own_or_product(&weight),
        dimensions: if opts.dimension_attributes.is_empty() {
            None
        } else {
            from_attrs(&|i| dimensions(i, &opts.dimension_attributes))
        },
        active: !archived,
    })
}

type Xml<W> = Writer<W>;

fn text_element<W: Write>(w: &mut Xml<W>, name: &str, text: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(&clean(text)))?;
    Ok(())
}

fn write_offer<W: Write>(w: &mut Xml<W>, o: &Offer, quantity: Option<f64>) -> std::io::Result<()> {
    let mut start = BytesStart::new("offer");
    start.push_attribute(("id", clean(&o.xml_id).as_ref()));
    start.push_attribute(("productId", clean(&o.product_id).as_ref()));
    if let Some(q) = quantity {
        start.push_attribute(("quantity", number(q.clamp(0.0, MAX_QUANTITY), 3).as_str()));
    }
    start.push_attribute(("type", if o.service { "service" } else { "product" }));
    w.write_event(Event::Start(start))?;
    text_element(w, "xmlId", &o.xml_id)?;
    text_element(w, "name", &o.name)?;
    text_element(w, "productName", &o.product_name)?;
    text_element(w, "price", &money(o.price))?;
    if let Some(p) = o.purchase_price {
        text_element(w, "purchasePrice", &money(p))?;
    }
    text_element(w, "categoryId", &o.category)?;
    if let Some(u) = &o.url {
        text_element(w, "url", u)?;
    }
    if let Some(p) = &o.picture {
        text_element(w, "picture", p)?;
    }
    if let Some(v) = &o.vat {
        text_element(w, "vatRate", v)?;
    }
    for b in &o.barcodes {
        text_element(w, "barcode", b)?;
    }
    for (code, name, value) in &o.params {
        w.create_element("param")
            .with_attribute(("code", clean(code).as_ref()))
            .with_attribute(("name", clean(name).as_ref()))
            .write_text_content(BytesText::new(&clean(value)))?;
    }
    if let Some(wt) = o.weight {
        text_element(w, "weight", &format!("{wt:.3}"))?;
    }
    if let Some(d) = &o.dimensions {
        text_element(w, "dimensions", d)?;
    }
    text_element(w, "productActivity", if o.active { "Y" } else { "N" })?;
    w.write_event(Event::End(BytesEnd::new("offer")))?;
    Ok(())
}

/// The quantities of the stocked items of one page.
async fn page_stock(
    ms: &MoyskladClient,
    kind: StockKind,
    offers: &[Offer],
) -> Result<HashMap<String, f64>, IcmlError> {
    let Some(stock_type) = kind.report_type() else {
        return Ok(HashMap::new());
    };
    let ids: Vec<&str> = offers
        .iter()
        .filter(|o| o.stocked && !o.ms_id.is_empty())
        .map(|o| o.ms_id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let q = ListQuery::new()
        .param("stockType", stock_type)
        .filter_raw(&format!("assortmentId={}", ids.join(",")));
    let rows = ms.stock_current(CurrentReport::All, &q).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let id = r.get("assortmentId")?.as_str()?.to_string();
            let v = r.get(stock_type).and_then(Json::as_f64).unwrap_or(0.0);
            Some((id, v))
        })
        .collect())
}

async fn write_catalog<W: Write>(
    ms: &MoyskladClient,
    opts: &IcmlOptions,
    out: CountingWriter<W>,
    file: &Path,
) -> Result<(IcmlStats, CountingWriter<W>), IcmlError> {
    let io = |source| IcmlError::Io {
        path: file.display().to_string(),
        source,
    };
    let mut stats = IcmlStats::default();
    let folders = folders(ms).await?;
    let excluded = excluded(&folders, opts);
    let mut w = Writer::new_with_indent(out, b' ', 2);
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(io)?;
    w.write_event(Event::Start(
        BytesStart::new("yml_catalog").with_attributes([("date", date.as_str())]),
    ))
    .map_err(io)?;
    w.write_event(Event::Start(BytesStart::new("shop")))
        .map_err(io)?;
    text_element(&mut w, "name", &opts.shop_name).map_err(io)?;
    if !opts.company.is_empty() {
        text_element(&mut w, "company", &opts.company).map_err(io)?;
    }
    w.write_event(Event::Start(BytesStart::new("categories")))
        .map_err(io)?;
    if !opts.skip_without_category {
        w.create_element("category")
            .with_attribute(("id", ROOT_CATEGORY))
            .write_text_content(BytesText::new("Без группы"))
            .map_err(io)?;
        stats.categories += 1;
    }
    // Parents before their children, then by code.
    let depth = |id: &str| {
        let mut n = 0usize;
        let mut at = folders.get(id).and_then(|f| f.parent.as_deref());
        while let Some(p) = at {
            n += 1;
            if n > folders.len() {
                break;
            }
            at = folders.get(p).and_then(|f| f.parent.as_deref());
        }
        n
    };
    let mut sorted: Vec<(usize, &Folder)> = folders
        .iter()
        .filter(|(id, _)| !excluded.contains(*id))
        .map(|(id, f)| (depth(id), f))
        .collect();
    sorted.sort_by(|a, b| (a.0, &a.1.code).cmp(&(b.0, &b.1.code)));
    for (_, f) in sorted {
        let mut c = BytesStart::new("category");
        c.push_attribute(("id", clean(&f.code).as_ref()));
        if let Some(p) = f.parent.as_ref().and_then(|p| folders.get(p)) {
            c.push_attribute(("parentId", clean(&p.code).as_ref()));
        }
        w.write_event(Event::Start(c)).map_err(io)?;
        w.write_event(Event::Text(BytesText::new(&clean(&f.name))))
            .map_err(io)?;
        w.write_event(Event::End(BytesEnd::new("category")))
            .map_err(io)?;
        stats.categories += 1;
    }
    w.write_event(Event::End(BytesEnd::new("categories")))
        .map_err(io)?;
    w.write_event(Event::Start(BytesStart::new("offers")))
        .map_err(io)?;
    let mut q = ListQuery::new().expand("product").limit(PAGE_SIZE);
    if opts.include_archived {
        q = q.filter_raw("archived=true;archived=false");
    }
    let mut pages = ms.pages("assortment", &q)?;
    let mut seen_unmatchable = 0usize;
    // Offer ids written so far, as 64-bit hashes (8 bytes an offer, not the catalogue): two
    // items with the same code would be one offer to the CRM, and the rules would match
    // only one of them, so the second is left out and named.
    let mut written: HashSet<u64> = HashSet::new();
    let key = |x: &str| {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        x.hash(&mut h);
        h.finish()
    };
    while let Some(page) = pages.next().await? {
        let mut offers = Vec::with_capacity(page.rows.len());
        for row in &page.rows {
            stats.rows += 1;
            match offer(row, opts, &folders, &excluded) {
                Ok(o) if written.insert(key(&o.xml_id)) => offers.push(o),
                Ok(o) => {
                    *stats.skipped.entry("duplicate code").or_default() += 1;
                    seen_unmatchable += 1;
                    if seen_unmatchable <= 10 {
                        stats.unmatchable.push(o.xml_id);
                    }
                }
                Err(Skip::Quiet) => {}
                Err(Skip::Counted(why)) => *stats.skipped.entry(why).or_default() += 1,
                Err(Skip::Unmatchable(x)) => {
                    *stats
                        .skipped
                        .entry("code the rules cannot match")
                        .or_default() += 1;
                    seen_unmatchable += 1;
                    if seen_unmatchable <= 10 {
                        stats.unmatchable.push(x);
                    }
                }
            }
        }
        drop(page);
        let stock = page_stock(ms, opts.stock, &offers).await?;
        for o in &offers {
            let quantity = (o.stocked && opts.stock != StockKind::None)
                .then(|| stock.get(&o.ms_id).copied().unwrap_or(0.0));
            write_offer(&mut w, o, quantity).map_err(io)?;
            stats.offers += 1;
            if o.service {
                stats.services += 1;
            }
        }
    }
    w.write_event(Event::End(BytesEnd::new("offers")))
        .map_err(io)?;
    w.write_event(Event::End(BytesEnd::new("shop")))
        .map_err(io)?;
    w.write_event(Event::End(BytesEnd::new("yml_catalog")))
        .map_err(io)?;
    let mut out = w.into_inner();
    out.write_all(b"\n").map_err(io)?;
    out.flush().map_err(io)?;
    stats.bytes = out.bytes;
    Ok((stats, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn folder(code: &str, parent: Option<&str>, archived: bool) -> Folder {
        Folder {
            code: code.into(),
            name: code.into(),
            parent: parent.map(str::to_string),
            archived,
        }
    }

    #[test]
    fn ignoring_a_folder_leaves_out_its_subtree() {
        let folders: HashMap<String, Folder> = [
            ("a".to_string(), folder("A", None, false)),
            ("b".to_string(), folder("B", Some("a"), false)),
            ("c".to_string(), folder("C", Some("b"), false)),
            ("d".to_string(), folder("D", None, true)),
            ("e".to_string(), folder("E", Some("d"), false)),
        ]
        .into();
        let opts = IcmlOptions {
            ignore_categories: vec!["B".into()],
            ..IcmlOptions::default()
        };
        let mut got: Vec<String> = excluded(&folders, &opts).into_iter().collect();
        got.sort();
        assert_eq!(got, ["b", "c", "d", "e"]);
        let opts = IcmlOptions {
            include_archived: true,
            ..IcmlOptions::default()
        };
        assert!(excluded(&folders, &opts).is_empty());
    }

    #[test]
    fn codes_the_rules_cannot_match_are_left_out() {
        let none = HashMap::new();
        let skip = HashSet::new();
        let opts = IcmlOptions::default();
        for row in [
            json!({"meta": {"type": "product"}, "externalCode": "a#b", "name": "x"}),
            json!({"meta": {"type": "product"}, "externalCode": "", "name": "x"}),
            json!({"meta": {"type": "variant"}, "externalCode": "v",
                   "product": {"externalCode": "p#q"}}),
        ] {
            assert!(matches!(
                offer(&row, &opts, &none, &skip),
                Err(Skip::Unmatchable(_))
            ));
        }
        // A `#` inside the variant's own code is fine: the rules join the rest back.
        let row = json!({"meta": {"type": "variant"}, "externalCode": "v#1",
                         "product": {"externalCode": "p"}});
        assert_eq!(
            offer(&row, &opts, &none, &skip).map(|o| o.xml_id).ok(),
            Some("p#v#1".to_string())
        );
    }

    #[test]
    fn prices_vat_and_dimensions() {
        let item = json!({
            "salePrices": [
                {"value": 100.0, "priceType": {"name": "Цена продажи"}},
                {"value": 250050.0, "priceType": {"name": "Опт", "externalCode": "wholesale"}}
            ],
            "vat": 20, "vatEnabled": true,
            "attributes": [{"name": "Габариты", "value": "50x40,5x90"}]
        });
        assert_eq!(sale_price(&item, Some("wholesale")), Some(250050.0));
        assert_eq!(sale_price(&item, None), Some(100.0));
        assert_eq!(sale_price(&item, Some("nope")), None);
        assert_eq!(vat(&item).as_deref(), Some("20"));
        assert_eq!(
            vat(&json!({"effectiveVat": 0, "effectiveVatEnabled": true})).as_deref(),
            Some("0")
        );
        assert_eq!(vat(&json!({"vatEnabled": false})).as_deref(), Some("none"));
        assert_eq!(vat(&json!({})), None);
        assert_eq!(
            dimensions(&item, &["Габариты".to_string()]).as_deref(),
            Some("50/40.5/90")
        );
        assert_eq!(money(250050.0), "2500.50");
        assert_eq!(number(12.0, 3), "12");
        assert_eq!(clean("a\u{1}b"), "ab");
    }
}
