//! How long `skladsync icml` takes for a 50 000-offer catalogue, and whether its memory stays
//! bounded. A loopback server in this process answers as МойСклад does (folders, the
//! assortment in pages of 100 with `expand=product`, the current stock report per page), making
//! each page's rows on the fly so the server holds no catalogue either. The catalogue is
//! generated for 5 000 offers, then for 50 000: the process's peak resident memory (`VmHWM`
//! from /proc/self/status) after each shows whether memory grows with the catalogue.
//!
//! Run: `cargo bench -p skladsync-runner --bench icml`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, LimitConfig, MoyskladClient};
use skladsync_runner::icml::{generate, IcmlOptions};

const FOLDERS: usize = 50;
/// Of every 10 rows: 7 plain products, 1 product with 5 variants (its variants follow).
const VARIANTS: usize = 5;

#[derive(Clone)]
struct Shop {
    base: String,
    /// Offers wanted.
    offers: usize,
}

impl Shop {
    /// Rows in the assortment for `offers` offers: per block, 7 products + 1 product with 5
    /// variants = 13 rows, 12 offers.
    fn rows(&self) -> usize {
        self.offers / 12 * 13 + self.offers % 12
    }

    fn meta(&self, ty: &str, id: &str) -> Value {
        json!({"href": format!("{}/entity/{ty}/{id}", self.base), "type": ty,
               "mediaType": "application/json",
               "uuidHref": format!("https://online.moysklad.ru/app/#good/edit?id={id}")})
    }

    fn product(&self, n: usize, variants: usize) -> Value {
        let id = format!("00000000-0000-0000-0000-{n:012}");
        json!({
            "meta": self.meta("product", &id), "id": id, "name": format!("Товар №{n} «Пример» & Co"),
            "externalCode": format!("p{n}"), "code": format!("{n}"), "article": format!("ART-{n}"),
            "archived": false, "variantsCount": variants,
            "productFolder": {"meta": self.meta("productfolder", &format!("f{}", n % FOLDERS))},
            "salePrices": [{"value": 129_900.0 + n as f64, "priceType": {"name": "Цена продажи"}},
                           {"value": 99_900.0, "priceType": {"name": "Опт"}}],
            "buyPrice": {"value": 50_000.0}, "vat": 20, "vatEnabled": true,
            "barcodes": [{"ean13": format!("46{n:011}")}], "weight": 1.25,
            "attributes": [{"name": "Габариты", "value": "50x40x30"}]
        })
    }

    fn row(&self, i: usize) -> Value {
        if i >= self.offers / 12 * 13 {
            return self.product(i, 0); // the rest: plain products
        }
        let (block, k) = (i / 13, i % 13);
        let n = block * 13 + k;
        match k {
            0..=6 => self.product(n, 0),
            7 => self.product(n, VARIANTS),
            _ => {
                let parent = block * 13 + 7;
                let id = format!("00000000-0000-0000-0001-{n:012}");
                json!({
                    "meta": self.meta("variant", &id), "id": id,
                    "name": format!("Товар №{parent} (размер {k})"), "externalCode": format!("v{n}"),
                    "archived": false,
                    "characteristics": [{"id": "c1", "name": "Размер", "value": format!("{k}")}],
                    "salePrices": [{"value": 0.0, "priceType": {"name": "Цена продажи"}}],
                    "product": self.product(parent, VARIANTS)
                })
            }
        }
    }
}

fn page_meta(size: usize, limit: usize, offset: usize) -> Value {
    let mut m = json!({"size": size, "limit": limit, "offset": offset});
    if offset + limit < size {
        m["nextHref"] = json!(format!("next?offset={}", offset + limit));
    }
    m
}

async fn folders(State(shop): State<Shop>) -> Json<Value> {
    let rows: Vec<Value> = (0..FOLDERS)
        .map(|f| {
            json!({"meta": shop.meta("productfolder", &format!("f{f}")), "id": format!("f{f}"),
                   "name": format!("Группа {f}"), "externalCode": format!("folder-{f}"), "archived": false})
        })
        .collect();
    Json(json!({"meta": page_meta(FOLDERS, 1000, 0), "rows": rows}))
}

async fn assortment(
    State(shop): State<Shop>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let offset: usize = q.get("offset").and_then(|l| l.parse().ok()).unwrap_or(0);
    let size = shop.rows();
    let rows: Vec<Value> = (offset..(offset + limit).min(size))
        .map(|i| shop.row(i))
        .collect();
    Json(json!({"meta": page_meta(size, limit, offset), "rows": rows}))
}

async fn stock(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let ids = q
        .get("filter")
        .and_then(|f| f.strip_prefix("assortmentId="))
        .unwrap_or("");
    let rows: Vec<Value> = ids
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|id| json!({"assortmentId": id, "quantity": 7}))
        .collect();
    Json(Value::Array(rows))
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

async fn serve(offers: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!(
        "http://{}/api/remap/1.2",
        listener.local_addr().expect("addr")
    );
    let shop = Shop {
        base: base.clone(),
        offers,
    };
    let app = Router::new()
        .route("/api/remap/1.2/entity/productfolder", get(folders))
        .route("/api/remap/1.2/entity/assortment", get(assortment))
        .route("/api/remap/1.2/report/stock/all/current", get(stock))
        .with_state(shop);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("baseline peak RSS: {} KiB", peak_kib());
    for offers in [5_000, 50_000] {
        let base = rt.block_on(serve(offers));
        let ms = MoyskladClient::new(
            ClientConfig::new(Auth::bearer("bench"))
                .base_url(base)
                .limits(LimitConfig {
                    units: 1_000_000,
                    window: Duration::from_secs(1),
                    adapt: false,
                    ..LimitConfig::default()
                }),
        )
        .expect("client");
        let opts = IcmlOptions {
            purchase_price: true,
            dimension_attributes: vec!["Габариты".into()],
            ..IcmlOptions::default()
        };
        let path = dir.path().join(format!("catalog-{offers}.xml"));
        let t = Instant::now();
        let stats = rt.block_on(generate(&ms, &opts, &path)).expect("generate");
        let took = t.elapsed();
        assert_eq!(stats.offers as usize, offers, "offers written");
        println!(
            "{offers:>6} offers: {:>6.2} s, {:>5.1} MiB file, peak RSS so far {} KiB",
            took.as_secs_f64(),
            stats.bytes as f64 / 1_048_576.0,
            peak_kib()
        );
    }
}
