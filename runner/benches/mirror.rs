//! `cargo bench --profile release -p skladsync-runner --bench mirror`: the heap the catalogue
//! mirror and the `crm.offers` index hold at `MIRROR_ITEMS` items (default 100 000; issue 13),
//! counted by the allocator (bytes asked for and blocks live, the system allocator
//! instrumented), so the figures repeat exactly from run to run.
//!
//! The mirror's rows are the МойСклад emulator's assortment row of a product (as the footprint
//! run of the backlog bench seeds its catalogue: a name, codes, an article, a sale price),
//! copied with each item's id, codes, article and name; the offers are shaped as the retailCRM
//! emulator renders `store/offers`. What a structure holds is what dropping it frees (so what
//! the emulator or the rows' making keep aside does not count). A sample of lookups is checked
//! against the rows given. `MIRROR_PRINT_ROW=1` prints the template row.

use std::alloc::System;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, ListQuery, MoyskladClient};
use skladsync_runner::world::catalogue::{Answer, CatalogueMirror};
use skladsync_runner::world::OfferIndex;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const LOGIN: &str = "admin@emulator";
const PASSWORD: &str = "emulator-password";

/// Bytes and blocks live.
fn live() -> (i64, i64) {
    let s = GLOBAL.stats();
    (
        s.bytes_allocated as i64 - s.bytes_deallocated as i64,
        s.allocations as i64 - s.deallocations as i64,
    )
}

/// What dropping `value` frees: (bytes, blocks).
fn held<T>(value: T) -> (i64, i64) {
    let before = live();
    drop(value);
    let after = live();
    (before.0 - after.0, before.1 - after.1)
}

fn code(i: usize) -> String {
    format!("bx{i:06}")
}

fn item_id(i: usize) -> String {
    format!("b0000000-0000-4000-8000-{i:012}")
}

/// The emulator's assortment row of one seeded product, as text, and its id.
async fn template_row() -> (String, String) {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let tpl = ms
        .seed(
            "product",
            json!({"name": "Шаблон", "externalCode": "tpl-code", "code": "tpl-code", "article": "ART-tpl",
                   "salePrices": [{"value": 100_000, "priceType": {"name": "Цена продажи"}}]}),
        )
        .expect("seed product");
    let id = tpl["id"].as_str().expect("id").to_string();
    let client = MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, PASSWORD)).base_url(ms.base_url()),
    )
    .expect("client");
    let mut pages = client
        .pages("assortment", &ListQuery::new())
        .expect("pages");
    while let Some(page) = pages.next().await.expect("page") {
        if let Some(r) = page.rows.into_iter().find(|r| r["id"] == id.as_str()) {
            return (r.to_string(), id);
        }
    }
    panic!("the seeded product is not in the assortment");
}

fn row(tpl: &str, tpl_id: &str, i: usize) -> Value {
    let text = tpl
        .replace(tpl_id, &item_id(i))
        .replace("tpl-code", &code(i))
        .replace("ART-tpl", &format!("ART-{i}"))
        .replace("Шаблон", &format!("Товар {i}"));
    serde_json::from_str(&text).expect("row")
}

fn stripped(mut r: Value) -> Value {
    if let Some(o) = r.as_object_mut() {
        for f in ["stock", "reserve", "inTransit", "quantity"] {
            o.remove(f);
        }
    }
    r
}

fn offer(i: usize) -> Value {
    let c = code(i);
    json!({"name": format!("Товар {i}"), "id": 1 + i, "externalId": c, "xmlId": c,
           "article": format!("ART-{i}"), "prices": [{"priceType": "base", "price": 1000 + i, "ordering": 991}],
           "vatRate": "none", "properties": [], "quantity": 0, "active": true,
           "product": {"id": 1 + i, "externalId": c, "name": format!("Товар {i}"), "type": "product"}})
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("MIRROR_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (tpl, tpl_id) = template_row().await;
    if std::env::var_os("MIRROR_PRINT_ROW").is_some() {
        println!("template row ({} bytes): {tpl}", tpl.len());
    }

    let mirror = CatalogueMirror::new(Duration::from_secs(600));
    let t = Instant::now();
    mirror.load_rows((0..n).map(|i| row(&tpl, &tpl_id, i)));
    let load = t.elapsed();
    assert_eq!(mirror.len(), n);
    let sample: Vec<usize> = (0..n).step_by((n / 997).max(1)).chain([n - 1]).collect();
    for &i in &sample {
        let expected = stripped(row(&tpl, &tpl_id, i));
        assert_eq!(
            mirror.find(&code(i)),
            Answer::Rows(vec![expected]),
            "item {i}"
        );
    }
    let t = Instant::now();
    for &i in &sample {
        std::hint::black_box(mirror.find(&code(i)));
    }
    let per_find = t.elapsed() / sample.len() as u32;
    let text = mirror.bytes() as i64;
    let (bytes, blocks) = held(mirror);
    println!(
        "catalogue mirror, {n} items: {:.2} MB held in {blocks} blocks ({:.0} bytes an item), of it {:.2} MB deflated row text ({:.0} an item); loaded in {:.1} s, a lookup {:.0} µs (timings vary with the load)",
        mb(bytes),
        bytes as f64 / n as f64,
        mb(text),
        text as f64 / n as f64,
        load.as_secs_f64(),
        per_find.as_secs_f64() * 1e6,
    );

    let offers: Vec<Value> = (0..n).map(offer).collect();
    let index = OfferIndex::from_offers(&offers);
    assert_eq!(index.len(), n);
    for &i in &sample {
        let e = index.entry(&code(i)).to_serde_json();
        assert_eq!(
            e,
            json!({"id": 1 + i, "xmlId": code(i), "active": true, "externalId": code(i)})
        );
    }
    let (bytes, blocks) = held(index);
    println!(
        "crm.offers index, {n} offers: {:.2} MB held in {blocks} blocks ({:.0} bytes an offer)",
        mb(bytes),
        bytes as f64 / n as f64
    );
}
