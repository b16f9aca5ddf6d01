//! The backlog benchmark (issue 13): how long the daemon takes to work off a backlog at the real
//! 2026 request budgets, how many requests it spends, and how far that is from the floor the two
//! APIs allow.
//!
//! Both emulators run in this process at the real limits (МойСклад 45 units / 3 s, 4 units per
//! request, 5 per stock report, at most 5 requests in flight; retailCRM 10 requests/s) with the
//! demo shop plus a generated catalogue (`BACKLOG_OFFERS`, 5 000), customers (`BACKLOG_CUSTOMERS`,
//! 300; every other one already a МойСклад counterparty with the same phone and e-mail) and new
//! orders in an upload status (`BACKLOG_ORDERS`, 1 000; 3 items each). The daemon runs in-process
//! with the default rules (`rules/`) and the demo settings, as `skladsync run` would.
//!
//! Runs (`BACKLOG_RUNS`, comma-separated, default all):
//! - `upload`: the backlog of new orders, until every order is in МойСклад and linked (its
//!   МойСклад id written back to the CRM order, ORD-UPLOAD-05);
//! - `status`: then a status change of every uploaded order, until МойСклад has every new state;
//! - `steady`: then one new order every `BACKLOG_STEADY_EVERY` seconds (3) for
//!   `BACKLOG_STEADY` orders (10): latency from the CRM change to the МойСклад document;
//! - `footprint`: the `skladsync` binary in its own process against a catalogue of
//!   `BACKLOG_STOCK_OFFERS` offers (100 000): its resident memory idle and during a stock pass.
//!
//! `BACKLOG_VERBOSE=1` lists every МойСклад GET with its query; `BACKLOG_LOG=<filter>` writes
//! the daemon's log (a `RUST_LOG` filter) to stderr. `BACKLOG_DAEMON_LOG` is the
//! footprint daemon's `RUST_LOG` (`warn`); `BACKLOG_DAEMON_LOG_COPY=<file>` keeps its log;
//! `BACKLOG_EVAL_BYTES` its `limits.max_eval_bytes` and `BACKLOG_STOCK_PART_ROWS` its
//! `limits.stock_part_rows` (the runner's defaults when not set: 128 MiB, parts of 10 000
//! rows; a pass in one part, `0`, over 100 000 rows needs `1024MiB`).
//! `BACKLOG_DAEMON_BIN` runs another `skladsync` build and
//! `BACKLOG_DAEMON_WRAP` runs it under a profiler (see `daemon_command`).
//!
//! Each run stops after `BACKLOG_TIMEOUT` seconds (600) and says how far it got.
//!
//! Run: `cargo bench -p skladsync-runner --bench backlog`; small:
//! `BACKLOG_ORDERS=100 BACKLOG_STOCK_OFFERS=10000 cargo bench -p skladsync-runner --bench backlog`.
//! The footprint of the shipped binary (the release profile: optimised and stripped):
//! `BACKLOG_RUNS=footprint cargo bench --profile release -p skladsync-runner --bench backlog`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skladsync_emulators::retailcrm::Seed;
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions, CRM_MANAGER_KEY, MS_LOGIN, MS_PASSWORD};
use skladsync_runner::demo::{rules_dir, write_settings};
use skladsync_runner::world::catalogue::CatalogueMirror;

/// retailCRM's limit, requests per second.
const CRM_RPS: f64 = 10.0;
/// МойСклад's bucket and refill.
const MS_UNITS: f64 = 45.0;
const MS_UNITS_PER_S: f64 = 15.0;
const MS_WEIGHT: f64 = 4.0;
/// The most entities one МойСклад POST takes, and values one filter reasonably carries.
const MS_BULK: usize = 1000;
const MS_FILTER_VALUES: usize = 100;
/// Page sizes: retailCRM history and orders by `filter[ids][]`, МойСклад lists.
const CRM_HISTORY_PAGE: usize = 100;
const CRM_ORDERS_PAGE: usize = 100;
const MS_PAGE: usize = 1000;

/// The daemon's intervals in the bench: a CRM poll every 2 s (the steady-state latency bound is
/// this + 1 s), the rest as an operator would set them.
const POLL_SECS: u64 = 2;
const INTERVALS: &str = "{crm_poll: 2s, reconcile: 60s, stock: 10m, purchase_prices: 60m, retry_min: 1s, retry_max: 30s}";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Debug)]
struct Size {
    orders: usize,
    offers: usize,
    customers: usize,
    steady: usize,
    steady_every: u64,
    stock_offers: usize,
    timeout: Duration,
    runs: Vec<String>,
}

impl Size {
    fn from_env() -> Size {
        let runs = std::env::var("BACKLOG_RUNS")
            .unwrap_or_else(|_| "upload,status,steady,footprint".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Size {
            orders: env_usize("BACKLOG_ORDERS", 1000),
            offers: env_usize("BACKLOG_OFFERS", 5000).max(3),
            customers: env_usize("BACKLOG_CUSTOMERS", 300).max(1),
            steady: env_usize("BACKLOG_STEADY", 10),
            steady_every: env_usize("BACKLOG_STEADY_EVERY", 3) as u64,
            stock_offers: env_usize("BACKLOG_STOCK_OFFERS", 100_000),
            timeout: Duration::from_secs(env_usize("BACKLOG_TIMEOUT", 600) as u64),
            runs,
        }
    }
    fn wants(&self, run: &str) -> bool {
        self.runs.iter().any(|r| r == run)
    }
}

fn offer_code(i: usize) -> String {
    format!("bx{i:06}")
}

fn phone(i: usize) -> String {
    format!("+7950{i:07}")
}

/// Seeds the generated catalogue in both systems.
fn seed_catalogue(lab: &Lab, offers: usize) {
    let mut crm_offers = Vec::with_capacity(offers);
    for i in 0..offers {
        let code = offer_code(i);
        lab.ms
            .seed(
                "product",
                json!({"name": format!("Товар {i}"), "externalCode": code, "code": code,
                       "article": format!("ART-{i}"),
                       "salePrices": [{"value": 100_000 + i as i64, "priceType": {"name": "Цена продажи"}}]}),
            )
            .expect("seed product");
        crm_offers.push(
            json!({"externalId": code, "xmlId": code, "name": format!("Товар {i}"),
            "article": format!("ART-{i}"), "site": "shop-main", "price": 1000 + i,
            "product": {"externalId": code, "name": format!("Товар {i}"), "type": "product"},
            "stores": {"main": 0}}),
        );
    }
    lab.crm
        .seed(&Seed {
            offers: crm_offers,
            ..Seed::default()
        })
        .expect("seed CRM offers");
}

/// Seeds the customers (every other one also in МойСклад) and the new orders; returns the
/// CRM ids of the orders.
fn seed_orders(lab: &Lab, size: &Size, first: usize, count: usize, status_new: bool) -> Vec<i64> {
    let mut customers = Vec::new();
    if first == 0 {
        for c in 0..size.customers {
            customers.push(json!({"externalId": format!("bc{c}"), "site": "shop-main",
                "firstName": format!("Клиент{c}"), "lastName": "Тестов",
                "email": format!("client{c}@backlog.example.ru"),
                "phones": [{"number": phone(c)}]}));
            if c % 2 == 0 {
                lab.ms
                    .seed(
                        "counterparty",
                        json!({"name": format!("Тестов Клиент{c}"), "companyType": "individual",
                               "phone": phone(c), "email": format!("client{c}@backlog.example.ru")}),
                    )
                    .expect("seed counterparty");
            }
        }
    }
    let orders: Vec<Value> = (first..first + count)
        .map(|n| {
            let c = n % size.customers;
            let items: Vec<Value> = (0..3)
                .map(|k| {
                    json!({"offer": {"xmlId": offer_code((n * 7 + k * 1613) % size.offers)},
                           "quantity": 1 + k})
                })
                .collect();
            json!({"externalId": format!("B-{n}"), "number": format!("B-{n}"), "site": "shop-main",
                   "orderMethod": "shopping-cart",
                   "statusPath": [if status_new { "new" } else { "client-confirmed" }],
                   "customer": {"externalId": format!("bc{c}")},
                   "firstName": format!("Клиент{c}"), "lastName": "Тестов", "phone": phone(c),
                   "email": format!("client{c}@backlog.example.ru"),
                   "shipmentStore": "main", "items": items})
        })
        .collect();
    lab.crm
        .seed(&Seed {
            customers,
            orders,
            ..Seed::default()
        })
        .expect("seed CRM orders")
        .orders
}

/// The CRM order's МойСклад id (ORD-UPLOAD-05), when written back.
fn linked(order: &Value) -> bool {
    order["customFields"].as_object().is_some_and(|m| {
        m.iter()
            .any(|(k, v)| k.starts_with("moysklad") && v.as_str().is_some_and(|s| !s.is_empty()))
    })
}

#[derive(Default, Debug)]
struct Counts {
    ms: usize,
    ms_429: usize,
    ms_by: BTreeMap<String, usize>,
    crm: usize,
    crm_by: BTreeMap<String, usize>,
    crm_refused: u64,
}

/// "GET entity/customerorder" and the like: ids and the API prefix cut off.
fn ms_kind(method: &str, path: &str) -> String {
    let p = path.trim_start_matches("/api/remap/1.2/");
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    let kept: Vec<&str> = parts
        .iter()
        .take_while(|s| !(s.len() >= 32 && s.contains('-')))
        .copied()
        .collect();
    format!("{method} {}", kept.join("/"))
}

fn crm_kind(method: &str, path: &str) -> String {
    let p = path.trim_start_matches("/api/v5/");
    let parts: Vec<String> = p
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.chars().all(|c| c.is_ascii_digit()) {
                "{id}".to_string()
            } else {
                s.to_string()
            }
        })
        .collect();
    format!("{method} {}", parts.join("/"))
}

fn counts(lab: &Lab) -> Counts {
    let mut c = Counts::default();
    let verbose = std::env::var("BACKLOG_VERBOSE").is_ok_and(|v| v == "1");
    for r in lab.ms.requests() {
        if verbose && r.method == "GET" {
            println!(
                "    МойСклад GET {}?{}",
                r.path,
                r.query.as_deref().unwrap_or("")
            );
        }
        c.ms += 1;
        if r.status == 429 {
            c.ms_429 += 1;
        }
        *c.ms_by.entry(ms_kind(&r.method, &r.path)).or_insert(0) += 1;
    }
    for r in lab.crm.requests() {
        c.crm += 1;
        *c.crm_by.entry(crm_kind(&r.method, &r.path)).or_insert(0) += 1;
    }
    c.crm_refused = lab.crm.rate_limited();
    c
}

fn print_counts(c: &Counts, per: usize) {
    let per = per.max(1) as f64;
    println!(
        "  МойСклад: {} requests ({:.2} per order), {} × 429",
        c.ms,
        c.ms as f64 / per,
        c.ms_429
    );
    for (k, n) in &c.ms_by {
        println!("    {n:>6}  {k}");
    }
    println!(
        "  retailCRM: {} requests ({:.2} per order), {} refused by the rate limit",
        c.crm,
        c.crm as f64 / per,
        c.crm_refused
    );
    for (k, n) in &c.crm_by {
        println!("    {n:>6}  {k}");
    }
}

/// What the upload run's wait loop saw once a second.
struct Sample {
    at: f64,
    linked: usize,
    /// МойСклад requests so far.
    ms: usize,
    /// Process CPU so far.
    cpu_ms: u64,
}

/// retailCRM's requests per 10 s of the run, by kind, with the orders linked by then, and
/// МойСклад's requests and the process CPU in each step: where the budgets went.
fn print_timeline(lab: &Lab, started: Instant, progress: &[Sample]) {
    const STEP: f64 = 10.0;
    let kinds = [
        ("order edits", "POST orders/{id}/edit"),
        ("customer edits", "POST customers/{id}/edit"),
        ("order pages", "GET orders"),
        ("order history", "GET orders/history"),
        ("customer history", "GET customers/history"),
    ];
    let mut rows: BTreeMap<usize, BTreeMap<&str, usize>> = BTreeMap::new();
    for (at, r) in lab.crm.requests_timed() {
        let t = at.saturating_duration_since(started).as_secs_f64();
        let k = crm_kind(&r.method, &r.path);
        let name = if r.status == 503 || r.status == 429 {
            "refused"
        } else if k.contains("store/") {
            "stock"
        } else {
            kinds
                .iter()
                .find(|(_, kind)| *kind == k)
                .map_or("other", |(n, _)| *n)
        };
        *rows
            .entry((t / STEP) as usize)
            .or_default()
            .entry(name)
            .or_insert(0) += 1;
    }
    println!("  retailCRM per {STEP:.0} s (requests by kind; orders linked at the end of the step; МойСклад requests and process CPU in the step):");
    let at = |t: f64| {
        progress
            .iter()
            .take_while(|s| s.at <= t)
            .last()
            .map_or((0, 0, 0), |s| (s.linked, s.ms, s.cpu_ms))
    };
    for (step, by) in &rows {
        let end = (*step + 1) as f64 * STEP;
        let (linked, ms, cpu) = at(end);
        let (_, ms0, cpu0) = at(end - STEP);
        let total: usize = by.values().sum();
        let parts: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "    {:>4.0}–{:<4.0} s: {total:>4}  linked {linked:>5}  МойСклад {:>3}  CPU {:>4.1} s  ({})",
            end - STEP,
            end,
            ms.saturating_sub(ms0),
            cpu.saturating_sub(cpu0) as f64 / 1000.0,
            parts.join(", ")
        );
    }
}

/// Seconds the unavoidable requests take at the two limits (the systems run in parallel).
fn floor(crm_requests: usize, ms_requests: usize, ms_units_weight: f64) -> (f64, f64) {
    let crm = crm_requests as f64 / CRM_RPS;
    let ms = ((ms_requests as f64 * ms_units_weight) - MS_UNITS).max(0.0) / MS_UNITS_PER_S;
    (crm, ms)
}

fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b.max(1))
}

/// Duplicates among the documents the daemon creates.
fn duplicates(lab: &Lab) -> usize {
    let mut dups = 0;
    for (ty, keys) in [
        ("customerorder", &["name", "externalCode", "syncId"][..]),
        ("counterparty", &["phone", "syncId"][..]),
    ] {
        for key in keys {
            let mut seen = HashSet::new();
            for d in lab.ms.list(ty) {
                if let Some(v) = d[*key].as_str() {
                    if !seen.insert(v.to_string()) {
                        dups += 1;
                    }
                }
            }
        }
    }
    dups
}

fn vm(pid: Option<u32>, field: &str) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// What the resident memory of a process is: heap and other anonymous memory, mapped files
/// (the binary's own pages among them), threads.
fn rss_parts(pid: u32) -> String {
    let mb = |f: &str| vm(Some(pid), f) as f64 / 1024.0;
    format!(
        "anonymous {:.1} MB, files {:.1} MB, {} threads",
        mb("RssAnon:"),
        mb("RssFile:"),
        vm(Some(pid), "Threads:")
    )
}

struct Rig {
    lab: Lab,
    daemon: Daemon,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn lab() -> Lab {
    Lab::start(LabOptions {
        crm_rate: Some(10),
        ms_limits: true,
        seed: true,
    })
    .await
    .expect("lab")
}

fn write_config(lab: &Lab, dir: &Path) -> std::path::PathBuf {
    let rules = rules_dir(Path::new("rules"));
    let settings = dir.join("settings.yaml");
    write_settings(&rules, None, lab, &settings).expect("settings");
    let config = dir.join("skladsync.yaml");
    std::fs::write(
        &config,
        lab.config_yaml(&rules, &settings, &dir.join("state"), INTERVALS, 10),
    )
    .expect("config");
    config
}

async fn start_daemon(lab: Lab) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&lab, dir.path());
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let d = daemon.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = d
            .run(async {
                let _ = rx.await;
            })
            .await
        {
            eprintln!("the daemon stopped: {e}");
        }
    });
    Rig {
        lab,
        daemon,
        _dir: dir,
        stop: Some(tx),
        task: Some(task),
    }
}

impl Rig {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// Waits until `done` says so (checked every 250 ms) or the timeout; returns whether it did.
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done()
}

async fn run_upload(size: &Size) -> Rig {
    println!(
        "== upload: {} new orders (3 items each) from {} customers, {}-offer catalogue",
        size.orders, size.customers, size.offers
    );
    let lab = lab().await;
    seed_catalogue(&lab, size.offers);
    let ids: HashSet<i64> = seed_orders(&lab, size, 0, size.orders, true)
        .into_iter()
        .collect();
    lab.ms.clear_requests();
    lab.crm.clear_requests();
    let cpu0 = cpu_ms();
    let started = Instant::now();
    let rig = start_daemon(lab).await;
    let lab = &rig.lab;
    // Rendering every CRM order holds the emulator's lock for long on a big backlog: the
    // daemon's own links are counted every second (cheap), and the CRM orders are read only
    // once they are all linked, until every one carries its МойСклад id.
    let state = rig.daemon.state().clone();
    let linked_in_state = || {
        ids.iter()
            .filter(|id| {
                state
                    .linked("order", "crm", &json!(id))
                    .ok()
                    .flatten()
                    .is_some()
            })
            .count()
    };
    let linked_now = || {
        lab.crm
            .orders()
            .iter()
            .filter(|o| o["id"].as_i64().is_some_and(|id| ids.contains(&id)) && linked(o))
            .count()
    };
    let mut last_report = Instant::now();
    let mut done = false;
    let mut progress: Vec<Sample> = Vec::new();
    while started.elapsed() < size.timeout {
        let n = linked_in_state();
        progress.push(Sample {
            at: started.elapsed().as_secs_f64(),
            linked: n,
            ms: lab.ms.requests().len(),
            cpu_ms: cpu_ms() - cpu0,
        });
        if last_report.elapsed() > Duration::from_secs(30) {
            println!(
                "  … {n} linked after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        if n == ids.len() && linked_now() == ids.len() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_ms() - cpu0;
    let n = linked_now();
    let c = counts(lab);
    println!(
        "  {} of {} orders uploaded and linked in {wall:.1} s ({:.2} orders/s){}",
        n,
        ids.len(),
        n as f64 / wall.max(1e-9),
        if done { "" } else { " — TIMED OUT" }
    );
    println!(
        "  process CPU {:.1} s ({:.1} ms per order, emulators included)",
        cpu as f64 / 1000.0,
        cpu as f64 / n.max(1) as f64
    );
    print_counts(&c, n);
    print_timeline(lab, started, &progress);
    // The floor: retailCRM must be asked for the history (pages of 100), the orders in full
    // (pages by ids), and written to once per order (ORD-UPLOAD-05) and once per customer of
    // the orders (the default rules write the counterparty's id to the CRM customer,
    // CPTY-SEARCH-04; retailCRM has no bulk edit of customers); МойСклад, if everything
    // batchable were batched: the catalogue read once (pages of 1 000), the counterparty
    // searches in filters of 100 values, the new counterparties and the orders in bulk POSTs.
    let n_orders = size.orders;
    let customers_written = size.customers.min(n_orders);
    let crm_floor_req = div_ceil(n_orders, CRM_HISTORY_PAGE)
        + div_ceil(n_orders, CRM_ORDERS_PAGE)
        + n_orders
        + customers_written;
    let new_customers = size.customers.min(n_orders) / 2;
    let ms_floor_req = div_ceil(size.offers, MS_PAGE)
        + div_ceil(size.customers.min(n_orders), MS_FILTER_VALUES)
        + div_ceil(new_customers, MS_BULK)
        + div_ceil(n_orders, MS_BULK);
    let (fc, fm) = floor(crm_floor_req, ms_floor_req, MS_WEIGHT);
    let fl = fc.max(fm);
    println!(
        "  floor: retailCRM {crm_floor_req} requests ({n_orders} order and {customers_written} customer write-backs, history and order pages) = {fc:.1} s; МойСклад {ms_floor_req} requests = {fm:.1} s → {fl:.1} s"
    );
    println!("  ratio: {:.1} × floor", wall / fl.max(1e-9));
    println!("  duplicates: {}", duplicates(lab));
    println!(
        "  429s: МойСклад {}, retailCRM refused {}",
        c.ms_429, c.crm_refused
    );
    rig
}

async fn run_status(size: &Size, rig: &Rig) {
    let lab = &rig.lab;
    let uploaded: Vec<(i64, String)> = lab
        .crm
        .orders()
        .iter()
        .filter(|o| o["number"].as_str().is_some_and(|n| n.starts_with("B-")) && linked(o))
        .filter_map(|o| Some((o["id"].as_i64()?, o["number"].as_str()?.to_string())))
        .collect();
    println!(
        "== status: {} status changes of uploaded orders",
        uploaded.len()
    );
    let target = lab
        .shop
        .states
        .get("client-confirmed")
        .cloned()
        .unwrap_or_default();
    lab.ms.clear_requests();
    lab.crm.clear_requests();
    let started = Instant::now();
    let manager = lab.crm.as_api(CRM_MANAGER_KEY);
    for (id, _) in &uploaded {
        manager
            .set_order_status(*id, "client-confirmed")
            .expect("status");
    }
    let names: HashSet<&str> = uploaded.iter().map(|(_, n)| n.as_str()).collect();
    let moved = || {
        lab.ms
            .list("customerorder")
            .iter()
            .filter(|o| o["name"].as_str().is_some_and(|n| names.contains(n)))
            .filter(|o| {
                o["state"]["meta"]["href"]
                    .as_str()
                    .is_some_and(|h| h.ends_with(&target))
            })
            .count()
    };
    let done = wait_until(size.timeout, || moved() == names.len()).await;
    let wall = started.elapsed().as_secs_f64();
    let n = moved();
    let c = counts(lab);
    println!(
        "  {n} of {} МойСклад orders in the new state after {wall:.1} s{}",
        names.len(),
        if done { "" } else { " — TIMED OUT" }
    );
    print_counts(&c, n);
    // Floor: the history and the orders read in pages; МойСклад: the orders updated in bulk.
    let crm_req = div_ceil(n, CRM_HISTORY_PAGE) + div_ceil(n, CRM_ORDERS_PAGE);
    let ms_req = div_ceil(n, MS_BULK);
    let (fc, fm) = floor(crm_req, ms_req, MS_WEIGHT);
    // A change is only seen at the next poll: half a poll interval on average.
    let fl = fc.max(fm) + POLL_SECS as f64 / 2.0;
    println!(
        "  floor: retailCRM {crm_req} requests = {fc:.1} s, МойСклад {ms_req} = {fm:.1} s, + half a poll → {fl:.1} s; ratio {:.1} ×",
        wall / fl.max(1e-9)
    );
    println!(
        "  429s: МойСклад {}, retailCRM refused {}",
        c.ms_429, c.crm_refused
    );
}

async fn run_steady(size: &Size, rig: &Rig) {
    let lab = &rig.lab;
    println!(
        "== steady: {} orders, one every {} s (CRM poll every {POLL_SECS} s)",
        size.steady, size.steady_every
    );
    lab.ms.clear_requests();
    lab.crm.clear_requests();
    let mut latencies = Vec::new();
    let first = size.orders + 1_000_000;
    let manager = lab.crm.as_api(CRM_MANAGER_KEY);
    for k in 0..size.steady {
        let n = first + k;
        let c = n % size.customers;
        let created = Instant::now();
        manager
            .create_order(
                json!({"externalId": format!("S-{n}"), "number": format!("S-{n}"),
                "site": "shop-main", "orderMethod": "shopping-cart", "status": "new",
                "customer": {"externalId": format!("bc{c}")},
                "firstName": format!("Клиент{c}"), "lastName": "Тестов", "phone": phone(c),
                "shipmentStore": "main",
                "items": [{"offer": {"xmlId": offer_code(n % size.offers)}, "quantity": 1}]}),
            )
            .expect("create order");
        let name = format!("S-{n}");
        let mut seen = None;
        while created.elapsed() < Duration::from_secs(60) {
            if lab
                .ms
                .list("customerorder")
                .iter()
                .any(|o| o["name"].as_str() == Some(name.as_str()))
            {
                seen = Some(created.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match seen {
            Some(l) => {
                // Each sample, with the wall clock (to find it in the daemon's log).
                println!(
                    "  {name}: {:.2} s (created {})",
                    l.as_secs_f64(),
                    chrono::Utc::now()
                        .checked_sub_signed(chrono::Duration::from_std(l).unwrap_or_default())
                        .map(|t| t.format("%H:%M:%S%.3f").to_string())
                        .unwrap_or_default()
                );
                latencies.push(l.as_secs_f64())
            }
            None => println!("  {name}: not in МойСклад after 60 s"),
        }
        let next = Duration::from_secs(size.steady_every);
        if let Some(rest) = next.checked_sub(created.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        println!("  no order arrived");
        return;
    }
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "  latency CRM change → МойСклад document: mean {mean:.2} s, median {:.2} s, max {:.2} s (bound: poll + 1 s = {} s)",
        p(0.5),
        p(1.0),
        POLL_SECS + 1
    );
    let c = counts(lab);
    print_counts(&c, latencies.len());
}

/// The footprint daemon's command: the `skladsync` binary (`BACKLOG_DAEMON_BIN` names another
/// build, e.g. an unstripped one with the `system-allocator` feature), run under
/// `BACKLOG_DAEMON_WRAP` when set (a command and its arguments, split at spaces, e.g.
/// `heaptrack -o /tmp/pass`): the RSS sampled is then the wrapper's process.
fn daemon_command() -> std::process::Command {
    let bin = std::env::var("BACKLOG_DAEMON_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_skladsync").to_string());
    let wrap = std::env::var("BACKLOG_DAEMON_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        Some(first) => {
            let mut cmd = std::process::Command::new(first);
            cmd.args(words).arg(bin);
            cmd
        }
        None => std::process::Command::new(bin),
    }
}

async fn run_footprint(size: &Size) {
    let offers = size.stock_offers;
    println!("== footprint: the skladsync binary, {offers}-offer catalogue with stock");
    let bin = env!("CARGO_BIN_EXE_skladsync");
    println!(
        "  ({bin}, {:.1} MB)",
        std::fs::metadata(bin).map_or(0, |m| m.len()) as f64 / 1e6
    );
    let lab = lab().await;
    let t = Instant::now();
    seed_big_catalogue(&lab, offers);
    println!("  (seeded in {:.0} s)", t.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&lab, dir.path());
    // The runner's default limits: a pass is evaluated in parts of `limits.stock_part_rows`
    // (10 000) rows, each well within the default 128 MiB of `limits.max_eval_bytes` (a pass
    // over 100 000 rows in one part needed `1024MiB`). `BACKLOG_EVAL_BYTES` and
    // `BACKLOG_STOCK_PART_ROWS` set them.
    let mut limits = String::new();
    if let Ok(eval_bytes) = std::env::var("BACKLOG_EVAL_BYTES") {
        limits.push_str(&format!("  max_eval_bytes: {eval_bytes}\n"));
    }
    if let Ok(rows) = std::env::var("BACKLOG_STOCK_PART_ROWS") {
        limits.push_str(&format!("  stock_part_rows: {rows}\n"));
    }
    if !limits.is_empty() {
        let mut text = std::fs::read_to_string(&config).expect("config");
        text.push_str(&format!("limits:\n{limits}"));
        std::fs::write(&config, text).expect("config");
    }
    println!(
        "  (limits: {})",
        if limits.is_empty() {
            "the defaults"
        } else {
            limits.trim_end()
        }
    );
    // The first stock pass runs at start: let the daemon settle first, then queue a full pass
    // by restarting is not possible from outside, so the pass at start is the one measured
    // and idle is measured after it (and after the catalogue export) has finished.
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log");
    let mut child = daemon_command()
        .args(["run", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("BACKLOG_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn skladsync");
    let pid = child.id();
    let started = Instant::now();
    let uploads = |lab: &Lab| {
        lab.crm
            .requests()
            .iter()
            .filter(|r| r.path.contains("store/inventories/upload"))
            .count()
    };
    let mut peak_rss = 0;
    let mut peak_at = 0.0;
    let mut last_change = Instant::now();
    let mut last = 0;
    let mut shown = Instant::now();
    while started.elapsed() < size.timeout {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss = vm(Some(pid), "VmRSS:");
        if rss > peak_rss {
            peak_rss = rss;
            peak_at = started.elapsed().as_secs_f64();
        }
        let u = uploads(&lab);
        if shown.elapsed() >= Duration::from_secs(15) {
            shown = Instant::now();
            println!(
                "  {:>4.0} s: RSS {:.1} MB, {u} inventory uploads",
                started.elapsed().as_secs_f64(),
                rss as f64 / 1024.0
            );
        }
        if u != last {
            last = u;
            last_change = Instant::now();
        }
        if last > 0 && last_change.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let pass = started.elapsed().as_secs_f64() - 10.0;
    let hwm = vm(Some(pid), "VmHWM:");
    println!(
        "  stock pass: {last} inventory uploads to retailCRM in about {pass:.0} s; peak RSS {:.1} MB at {peak_at:.1} s (VmHWM {:.1} MB)",
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "  idle after the pass: RSS {:.1} MB ({})",
        vm(Some(pid), "VmRSS:") as f64 / 1024.0,
        rss_parts(pid)
    );
    let _ = child.kill();
    let _ = child.wait();
    if let Ok(keep) = std::env::var("BACKLOG_DAEMON_LOG_COPY") {
        let _ = std::fs::copy(dir.path().join("daemon.log"), keep);
    }

    // The catalogue mirror of this catalogue (what an order backlog on it would hold).
    let client = MoyskladClient::new(
        ClientConfig::new(Auth::basic(MS_LOGIN, MS_PASSWORD)).base_url(lab.ms.base_url()),
    )
    .expect("client");
    let mirror = CatalogueMirror::new(Duration::from_secs(600));
    let rss0 = vm(None, "VmRSS:");
    let t = Instant::now();
    mirror.ensure_loaded(&client).await.expect("mirror");
    println!(
        "  catalogue mirror: {} items, {:.1} MB of row text, loaded in {:.0} s; bench RSS grew {:.1} MB",
        mirror.len(),
        mirror.bytes() as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        vm(None, "VmRSS:").saturating_sub(rss0) as f64 / 1024.0
    );

    // Idle from a fresh start on the demo shop only (no big catalogue).
    let small = lab_small().await;
    let dir2 = tempfile::tempdir().expect("tempdir");
    let config2 = write_config(&small, dir2.path());
    let log2 = std::fs::File::create(dir2.path().join("daemon.log")).expect("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(&config2)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log2.try_clone().expect("log"))
        .stderr(log2)
        .spawn()
        .expect("spawn skladsync");
    tokio::time::sleep(Duration::from_secs(20)).await;
    println!(
        "  idle on the demo shop (20 s after start): RSS {:.1} MB ({}), VmHWM {:.1} MB",
        vm(Some(child.id()), "VmRSS:") as f64 / 1024.0,
        rss_parts(child.id()),
        vm(Some(child.id()), "VmHWM:") as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Seeds `offers` products with stock on the main store: one through the emulator, the rest
/// copied into its state dump (seeding one by one is quadratic in the emulator).
fn seed_big_catalogue(lab: &Lab, offers: usize) {
    let store = lab.shop.stores.get("main").cloned().unwrap_or_default();
    let tpl = lab
        .ms
        .seed(
            "product",
            json!({"name": "Шаблон", "externalCode": "tpl-code", "code": "tpl-code", "article": "ART-tpl",
                   "salePrices": [{"value": 100_000, "priceType": {"name": "Цена продажи"}}]}),
        )
        .expect("seed product");
    let tpl_id = tpl["id"].as_str().expect("id").to_string();
    lab.ms
        .seed_stock(&store, &tpl_id, 3.0, 50_000.0)
        .expect("seed stock");
    let mut dump = lab.ms.state_json().expect("dump");
    let stored = dump["entities"]["product"][&tpl_id].clone();
    let stored_text = stored.to_string();
    let stock_tpl = dump["stock"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["assortment"] == tpl_id.as_str()))
        .cloned()
        .expect("stock row");
    let changed_key = format!("{store}|{tpl_id}");
    let changed_at = dump["stock_changes"][&changed_key].clone();
    let mut products = serde_json::Map::new();
    let mut stock = Vec::with_capacity(offers);
    let mut crm_offers = Vec::with_capacity(offers);
    for i in 0..offers {
        let id = format!("b0000000-0000-4000-8000-{i:012}");
        let code = offer_code(i);
        let text = stored_text
            .replace(&tpl_id, &id)
            .replace("tpl-code", &code)
            .replace("ART-tpl", &format!("ART-{i}"))
            .replace("Шаблон", &format!("Товар {i}"));
        products.insert(id.clone(), serde_json::from_str(&text).expect("product"));
        let mut st = stock_tpl.clone();
        st["assortment"] = json!(id);
        st["quantity"] = json!((i % 17) as f64 + 1.0);
        stock.push(st);
        dump["stock_changes"][format!("{store}|{id}")] = changed_at.clone();
        crm_offers.push(
            json!({"externalId": code, "xmlId": code, "name": format!("Товар {i}"),
            "article": format!("ART-{i}"), "site": "shop-main", "price": 1000 + i,
            "product": {"externalId": code, "name": format!("Товар {i}"), "type": "product"},
            "stores": {"main": 0}}),
        );
    }
    if let Some(m) = dump["entities"]["product"].as_object_mut() {
        m.extend(products);
    }
    if let Some(a) = dump["stock"].as_array_mut() {
        a.extend(stock);
    }
    lab.ms.load_state(dump).expect("load state");
    lab.crm
        .seed(&Seed {
            offers: crm_offers,
            ..Seed::default()
        })
        .expect("seed CRM offers");
}

async fn lab_small() -> Lab {
    lab().await
}

fn cpu_ms() -> u64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: u64 = f.get(11)?.parse().ok()?;
            let k: u64 = f.get(12)?.parse().ok()?;
            Some((u + k) * 10)
        })
        .unwrap_or(0)
}

fn main() {
    // `BACKLOG_LOG=<filter>` (e.g. `skladsync_daemon::daemon=debug`): the daemon's log on stderr.
    if let Ok(filter) = std::env::var("BACKLOG_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let size = Size::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("backlog benchmark: {size:?}");
        if size.wants("upload") || size.wants("status") || size.wants("steady") {
            let rig = run_upload(&size).await;
            if size.wants("status") {
                run_status(&size, &rig).await;
            }
            if size.wants("steady") {
                run_steady(&size, &rig).await;
            }
            println!(
                "  (bench process, emulators and daemon together: VmHWM {:.0} MB)",
                vm(None, "VmHWM:") as f64 / 1024.0
            );
            rig.stop().await;
        }
        if size.wants("footprint") {
            run_footprint(&size).await;
        }
    });
}
