//! The scale benchmark (issue 15, item 6): many account pairs on one runner.
//!
//! `PAIRS_N` pairs (1 000), each its own pair of emulator accounts (a retailCRM and a МойСклад
//! emulator per pair, at the real limits: МойСклад 45 units / 3 s, retailCRM 10 requests/s,
//! each account its own budget) seeded with the demo shop, each pair with its own settings
//! file (its own МойСклад ids, so its own compiled rules) over the default rules (`rules/`).
//! The runner is the `skladsync` binary (the bench profile: optimised) in its own process, so
//! its memory and CPU are its own: `VmRSS`/`VmHWM` from `/proc/<pid>/status`, CPU time
//! (utime + stime) from `/proc/<pid>/stat`.
//!
//! Idle pairs run with the intervals an operator would set (`crm_poll: 30s`, `reconcile: 5m`,
//! `stock: 10m`, `purchase_prices: 1h`); `PAIRS_ACTIVE` of them (3) are active, with
//! `crm_poll: 2s`, and get `PAIRS_ORDERS` new CRM orders (10) each, one every `PAIRS_EVERY`
//! seconds (3): the latency from the CRM change to the МойСклад document.
//!
//! `PAIRS_SHARED_SETTINGS=1` gives every pair the same settings (so one compiled rule set for
//! all); by default each pair's settings name its own CRM address (`connection.crm_url`), as every
//! real shop's settings differ (its МойСклад ids), so each pair compiles its own rules.
//!
//! Runs (`PAIRS_RUNS`, comma-separated, default all):
//! - `alone`: the runner serving only the active pairs (sled): the baseline;
//! - `sled`: the runner serving all `PAIRS_N` pairs on sled;
//! - `pg`: the same with the state on PostgreSQL (a throwaway cluster, Debian's server
//!   binaries; lease `PAIRS_LEASE`, 30 s);
//! - `pg2` (not by default): two runners sharing the pairs on one PostgreSQL database (each
//!   pair served by the runner that took its lease).
//!
//! Each run: start, wait for every pair to run, let the start-up work end (at least 20 s, then
//! until 5 s pass without a МойСклад request, at most `PAIRS_SETTLE`, 300 s), then an idle
//! window of `PAIRS_IDLE` seconds (60): memory, CPU, every request of the idle pairs by kind
//! against what their schedules imply (and on PostgreSQL the transactions and lease renewals);
//! then the active orders: latency and CPU per order.
//!
//! Run: `cargo bench -p skladsync-runner --bench pairs`; small:
//! `PAIRS_N=100 PAIRS_IDLE=30 cargo bench -p skladsync-runner --bench pairs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use skladsync_runner::demo::lab::{
    Lab, LabOptions, CRM_KEY, CRM_MANAGER_KEY, MS_LOGIN, MS_PASSWORD,
};
use skladsync_runner::demo::pg_cluster::PgCluster;
use skladsync_runner::demo::{rules_dir, write_settings};

const ADMIN: &str = "bench-admin-token-0123456789";
const IDLE_INTERVALS: &str =
    "{crm_poll: 30s, reconcile: 5m, stock: 10m, purchase_prices: 1h, retry_min: 1s, retry_max: 30s}";
const CRM_POLL_IDLE: f64 = 30.0;
const ACTIVE_POLL: &str = "2s";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Debug)]
struct Size {
    pairs: usize,
    active: usize,
    orders: usize,
    every: u64,
    idle: u64,
    settle: u64,
    lease: u64,
    runs: Vec<String>,
}

impl Size {
    fn from_env() -> Size {
        let runs = std::env::var("PAIRS_RUNS")
            .unwrap_or_else(|_| "alone,sled,pg".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let pairs = env_usize("PAIRS_N", 1000).max(1);
        Size {
            pairs,
            active: env_usize("PAIRS_ACTIVE", 3).clamp(1, pairs),
            orders: env_usize("PAIRS_ORDERS", 10),
            every: env_usize("PAIRS_EVERY", 3) as u64,
            idle: env_usize("PAIRS_IDLE", 60) as u64,
            settle: env_usize("PAIRS_SETTLE", 300) as u64,
            lease: env_usize("PAIRS_LEASE", 30) as u64,
            runs,
        }
    }
    fn wants(&self, run: &str) -> bool {
        self.runs.iter().any(|r| r == run)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Sled,
    Postgres,
}

/// `PAIRS_SHARED_SETTINGS=1`: every pair the same settings file content (one compiled rule
/// set for all); by default each pair's settings differ (one compiled rule set each).
fn shared_settings() -> bool {
    std::env::var("PAIRS_SHARED_SETTINGS").is_ok_and(|v| v == "1")
}

fn quote(p: &str) -> String {
    serde_json::to_string(p).unwrap_or_default()
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in ms, and its parent's pid.
fn proc_cpu(pid: u32) -> Option<(u64, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid: u32 = f.get(1)?.parse().ok()?;
    let u: u64 = f.get(11)?.parse().ok()?;
    let k: u64 = f.get(12)?.parse().ok()?;
    Some(((u + k) * 10, ppid))
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// CPU (ms) of the PostgreSQL server: the postmaster and its children.
fn pg_cpu(postmaster: u32) -> u64 {
    let mut total = proc_cpu(postmaster).map(|c| c.0).unwrap_or(0);
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((cpu, ppid)) = proc_cpu(pid) {
                if ppid == postmaster {
                    total += cpu;
                }
            }
        }
    }
    total
}

fn postmaster_pid(dir: &Path) -> Option<u32> {
    for p in [dir.join("postmaster.pid"), dir.join("data/postmaster.pid")] {
        if let Ok(t) = std::fs::read_to_string(&p) {
            return t.lines().next()?.trim().parse().ok();
        }
    }
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        std::fs::read_to_string(e.path().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
    })
}

/// "GET entity/customerorder", "POST orders/create": ids cut off.
fn kind(method: &str, path: &str) -> String {
    let p = path
        .trim_start_matches("/api/remap/1.2/")
        .trim_start_matches("/api/v5/");
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty())
        .take_while(|s| {
            !(s.chars().all(|c| c.is_ascii_digit()) || (s.len() >= 32 && s.contains('-')))
        })
        .collect();
    format!("{method} {}", parts.join("/"))
}

/// Requests of the given labs since their logs were last cleared, by kind.
fn requests(labs: &[Lab]) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let (mut crm, mut ms) = (BTreeMap::new(), BTreeMap::new());
    for lab in labs {
        for r in lab.crm.requests() {
            *crm.entry(kind(&r.method, &r.path)).or_insert(0) += 1;
        }
        for r in lab.ms.requests() {
            *ms.entry(kind(&r.method, &r.path)).or_insert(0) += 1;
        }
    }
    (crm, ms)
}

fn clear(labs: &[Lab]) {
    for lab in labs {
        lab.crm.clear_requests();
        lab.ms.clear_requests();
    }
}

fn ms_count(labs: &[Lab]) -> usize {
    labs.iter().map(|l| l.ms.requests().len()).sum()
}

async fn start_labs(n: usize) -> Vec<Lab> {
    let t = Instant::now();
    let mut labs = Vec::with_capacity(n);
    for _ in 0..n {
        labs.push(
            Lab::start(LabOptions {
                crm_rate: Some(10),
                ms_limits: true,
                seed: true,
            })
            .await
            .expect("lab"),
        );
    }
    println!(
        "  ({n} labs: {n} retailCRM + {n} МойСклад emulator accounts, seeded in {:.1} s; bench process RSS {:.0} MB)",
        t.elapsed().as_secs_f64(),
        proc_status(std::process::id(), "VmRSS:") as f64 / 1024.0
    );
    labs
}

/// One runner process over `labs` (the first `active` ones active).
struct Runner {
    child: Child,
    addr: String,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The runners' base configs (`runners` of them, each its own port and status file, the same
/// pairs directory and state) and the pair files.
fn write_runners(
    labs: &[Lab],
    active: usize,
    state: &str,
    runners: usize,
) -> (tempfile::TempDir, Vec<(PathBuf, String)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let mut configs = Vec::new();
    for r in 0..runners {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let state = state.replace("path: state", &format!("path: state{r}"));
        let base = format!(
            "crm: {{url: 'http://127.0.0.1:9', api_key: none, rate_limit: 10}}\n\
         moysklad: {{url: 'http://127.0.0.1:9', login: none, password: none}}\n\
         rules: {{dir: {rules}}}\n\
         state: {state}\n\
         intervals: {IDLE_INTERVALS}\n\
         webhooks: {{listen: '{addr}'}}\n\
         receiver: {{take_over: true}}\n\
         admin: {{token: {ADMIN}}}\n\
         pairs: {{dir: pairs}}\n",
            rules = quote(&rules.display().to_string()),
        );
        let config = dir.path().join(format!("skladsync{r}.yaml"));
        std::fs::write(&config, base).expect("base config");
        configs.push((config, addr));
    }
    let pairs = dir.path().join("pairs");
    let settings_dir = dir.path().join("settings");
    std::fs::create_dir_all(&pairs).expect("pairs dir");
    std::fs::create_dir_all(&settings_dir).expect("settings dir");
    for (i, lab) in labs.iter().enumerate() {
        let settings = settings_dir.join(format!("p{i:04}.yaml"));
        write_settings(&rules, None, lab, &settings).expect("settings");
        if !shared_settings() {
            // Each shop has its own settings (its МойСклад ids; the emulators' ids are
            // deterministic, so the labs' are alike): its own CRM address in
            // `connection.crm_url` makes each pair's rules version its own, as in a real fleet.
            let text = std::fs::read_to_string(&settings).expect("settings");
            let own = text.replacen(
                "crm_url: https://demo.retailcrm.ru",
                &format!("crm_url: {}", lab.crm.base_url()),
                1,
            );
            assert_ne!(own, text, "the settings name the CRM address");
            std::fs::write(&settings, own).expect("settings");
        }
        let more = if i < active {
            format!("intervals: {{crm_poll: {ACTIVE_POLL}}}\n")
        } else {
            String::new()
        };
        std::fs::write(
            pairs.join(format!("p{i:04}.yaml")),
            format!(
                "crm: {{url: {crm}, api_key: {CRM_KEY}}}\n\
                 moysklad: {{url: {ms}, login: {MS_LOGIN}, password: {MS_PASSWORD}}}\n\
                 rules: {{settings: {settings}}}\n{more}",
                crm = quote(&lab.crm.base_url()),
                ms = quote(lab.ms.base_url()),
                settings = quote(&settings.display().to_string()),
            ),
        )
        .expect("pair file");
    }
    (dir, configs)
}

fn spawn_runner(config: &Path, addr: String) -> Runner {
    let log_path = config.with_extension("log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn skladsync");
    Runner {
        child,
        addr,
        log: log_path,
    }
}

impl Runner {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn cpu(&self) -> u64 {
        proc_cpu(self.pid()).map(|c| c.0).unwrap_or(0)
    }
    fn rss(&self) -> u64 {
        proc_status(self.pid(), "VmRSS:")
    }
    async fn running(&self, http: &reqwest::Client) -> (usize, usize) {
        let Ok(r) = http
            .get(format!("http://{}/pairs", self.addr))
            .bearer_auth(ADMIN)
            .send()
            .await
        else {
            return (0, 0);
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return (0, 0);
        };
        let pairs = v["pairs"].as_array().cloned().unwrap_or_default();
        let running = pairs.iter().filter(|p| p["running"] == true).count();
        let failed = pairs
            .iter()
            .filter(|p| p["error"].is_string() && p["running"] != true)
            .count();
        (running, failed)
    }
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PostgreSQL figures over a window.
#[derive(Clone, Copy, Debug, Default)]
struct PgStat {
    commits: i64,
    lease_updates: i64,
    cpu_ms: u64,
}

struct Pg {
    _cluster: PgCluster,
    url: String,
    postmaster: Option<u32>,
    client: tokio_postgres::Client,
}

impl Pg {
    async fn start() -> Pg {
        let cluster = PgCluster::start().expect("PostgreSQL cluster");
        let url = cluster.database("pairs").expect("database");
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let postmaster = postmaster_pid(cluster.dir());
        Pg {
            url,
            postmaster,
            client,
            _cluster: cluster,
        }
    }
    async fn stat(&self) -> PgStat {
        let commits = self
            .client
            .query_one(
                "select xact_commit from pg_stat_database where datname = current_database()",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
        let lease_updates = self
            .client
            .query_opt(
                "select n_tup_upd from pg_stat_user_tables where relname = 'skladsync_leases'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
        PgStat {
            commits,
            lease_updates,
            cpu_ms: self.postmaster.map(pg_cpu).unwrap_or(0),
        }
    }
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
struct Figures {
    pairs: usize,
    start_s: f64,
    rss_idle_kib: u64,
    idle_cpu_ms_per_s: f64,
    latencies: Vec<f64>,
    cpu_per_order_ms: f64,
}

/// The runners of one run, read together.
struct Runners(Vec<Runner>);

impl Runners {
    fn sum(&self, f: impl Fn(u32) -> u64) -> u64 {
        self.0.iter().map(|r| f(r.pid())).sum()
    }
    fn cpu(&self) -> u64 {
        self.0.iter().map(Runner::cpu).sum()
    }
    fn rss(&self) -> u64 {
        self.0.iter().map(Runner::rss).sum()
    }
    async fn running(&self, http: &reqwest::Client) -> (usize, usize) {
        let mut out = (0, 0);
        for r in &self.0 {
            let (a, b) = r.running(http).await;
            out.0 += a;
            out.1 += b;
        }
        out
    }
    fn log_tail(&self) -> String {
        self.0
            .iter()
            .map(Runner::log_tail)
            .collect::<Vec<_>>()
            .join("\n--\n")
    }
    fn stop(self) {
        for r in self.0 {
            r.stop();
        }
    }
}

async fn run(
    name: &str,
    labs: &[Lab],
    size: &Size,
    backend: Backend,
    pg: Option<&Pg>,
    runners: usize,
) -> Figures {
    let n = labs.len();
    let active = size.active.min(n);
    println!(
        "== {name}: {n} pairs ({active} active, {} idle), state on {backend:?}, {runners} runner(s)",
        n - active
    );
    let state = match (backend, pg) {
        (Backend::Postgres, Some(pg)) => format!(
            "{{path: state, backend: postgres, url: {}, lease: {}s}}",
            quote(&pg.url),
            size.lease
        ),
        _ => "{path: state}".to_string(),
    };
    let (_dir, configs) = write_runners(labs, active, &state, runners);
    clear(labs);
    let http = reqwest::Client::new();
    let started = Instant::now();
    let runner = Runners(
        configs
            .into_iter()
            .map(|(config, addr)| spawn_runner(&config, addr))
            .collect(),
    );
    // Every pair running.
    let deadline = Instant::now() + Duration::from_secs(size.settle.max(60) * 2);
    let mut last;
    loop {
        last = runner.running(&http).await;
        let all_failed = last.1 > 0 && last.0 + last.1 == n;
        if last.0 == n || all_failed || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let start_s = started.elapsed().as_secs_f64();
    println!(
        "  {} of {n} pairs running after {start_s:.1} s ({} failed); RSS {:.1} MB, CPU {:.1} s so far",
        last.0,
        last.1,
        runner.rss() as f64 / 1024.0,
        runner.cpu() as f64 / 1000.0
    );
    if last.0 < n {
        println!("  runner log (tail):\n{}", runner.log_tail());
        runner.stop();
        return Figures {
            pairs: n,
            ..Figures::default()
        };
    }
    // The start-up work ends: at least 20 s, then until 5 s without a МойСклад request.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let settle_end = Instant::now() + Duration::from_secs(size.settle);
    let mut before = ms_count(labs);
    while Instant::now() < settle_end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = ms_count(labs);
        if now == before {
            break;
        }
        before = now;
    }
    let startup = requests(labs);
    println!(
        "  start-up settled after {:.1} s: {} retailCRM and {} МойСклад requests in all ({:.1} and {:.1} a pair); runner CPU {:.1} s",
        started.elapsed().as_secs_f64(),
        startup.0.values().sum::<usize>(),
        startup.1.values().sum::<usize>(),
        startup.0.values().sum::<usize>() as f64 / n as f64,
        startup.1.values().sum::<usize>() as f64 / n as f64,
        runner.cpu() as f64 / 1000.0
    );

    // Idle window.
    clear(labs);
    let pg0 = match pg {
        Some(p) if backend == Backend::Postgres => Some(p.stat().await),
        _ => None,
    };
    let cpu0 = runner.cpu();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(size.idle)).await;
    let window = t0.elapsed().as_secs_f64();
    let cpu1 = runner.cpu();
    let pg1 = match pg {
        Some(p) if backend == Backend::Postgres => Some(p.stat().await),
        _ => None,
    };
    let rss = runner.rss();
    let hwm = runner.sum(|p| proc_status(p, "VmHWM:"));
    let threads = runner.sum(|p| count_dir(&format!("/proc/{p}/task")) as u64);
    let fds = runner.sum(|p| count_dir(&format!("/proc/{p}/fd")) as u64);
    if runners > 1 {
        let each: Vec<String> = runner
            .0
            .iter()
            .map(|r| format!("{:.1} MB", r.rss() as f64 / 1024.0))
            .collect();
        println!("  RSS of each runner: {}", each.join(", "));
    }
    let idle_cpu = cpu1.saturating_sub(cpu0) as f64 / window;
    println!(
        "  idle ({window:.0} s): RSS {:.1} MB (VmHWM {:.1} MB), {threads} threads, {fds} open files; CPU {:.1} ms/s ({:.3} ms/s a pair)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        idle_cpu,
        idle_cpu / n as f64
    );
    let idle_labs = &labs[active..];
    if !idle_labs.is_empty() {
        let (crm, ms) = requests(idle_labs);
        let per = idle_labs.len() as f64 * window / 60.0;
        let crm_total: usize = crm.values().sum();
        let ms_total: usize = ms.values().sum();
        println!(
            "  idle pairs' requests in the window: retailCRM {crm_total} ({:.2} a pair a minute), МойСклад {ms_total} ({:.2} a pair a minute)",
            crm_total as f64 / per,
            ms_total as f64 / per
        );
        for (k, c) in &crm {
            println!(
                "    {c:>7}  retailCRM {k}  ({:.2} a pair a minute)",
                *c as f64 / per
            );
        }
        for (k, c) in &ms {
            println!(
                "    {c:>7}  МойСклад {k}  ({:.2} a pair a minute)",
                *c as f64 / per
            );
        }
        println!(
            "    schedules: crm_poll {CRM_POLL_IDLE} s = {:.1} polls a pair a minute; reconcile 5 m, stock 10 m, purchase_prices 1 h",
            60.0 / CRM_POLL_IDLE
        );
    }
    if let (Some(a), Some(b)) = (pg0, pg1) {
        println!(
            "  PostgreSQL over the idle window: {:.1} transactions/s, {:.1} lease renewals/s ({:.2} a pair a minute), server CPU {:.1} ms/s",
            (b.commits - a.commits) as f64 / window,
            (b.lease_updates - a.lease_updates) as f64 / window,
            (b.lease_updates - a.lease_updates) as f64 / window * 60.0 / n as f64,
            (b.cpu_ms - a.cpu_ms) as f64 / window
        );
    }

    // The active pairs: new CRM orders, one every `every` s each.
    let cpu_a0 = runner.cpu();
    let pg_a0 = match pg {
        Some(p) if backend == Backend::Postgres => Some(p.stat().await),
        _ => None,
    };
    let ta = Instant::now();
    let mut latencies = Vec::new();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 100_000)
        .unwrap_or(0);
    // Orders are created on every active pair at once, then each is waited for.
    for k in 0..size.orders {
        let round = Instant::now();
        let mut pending: Vec<(usize, String, Instant)> = Vec::new();
        for (i, lab) in labs[..active].iter().enumerate() {
            let number = format!("P{stamp}-{k}");
            lab.crm
                .as_api(CRM_MANAGER_KEY)
                .create_order(json!({
                    "number": number, "externalId": number, "site": "shop-main", "status": "new",
                    "orderMethod": "shopping-cart",
                    "customer": {"externalId": "cp-8812"}, "firstName": "Иван", "lastName": "Петров",
                    "phone": "+79001234567", "shipmentStore": "main",
                    "items": [{"offer": {"xmlId": "chair01#blue"}, "quantity": 2},
                              {"offer": {"xmlId": "lamp-arc"}, "quantity": 1}]
                }))
                .expect("create order");
            pending.push((i, number, Instant::now()));
        }
        while !pending.is_empty() && round.elapsed() < Duration::from_secs(60) {
            pending.retain(|(i, number, created)| {
                let there = labs[*i]
                    .ms
                    .list("customerorder")
                    .iter()
                    .any(|o| o["name"].as_str() == Some(number.as_str()));
                if there {
                    latencies.push(created.elapsed().as_secs_f64());
                }
                !there
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (i, number, _) in &pending {
            println!("  pair p{i:04}: {number} not in МойСклад after 60 s");
        }
        if let Some(rest) = Duration::from_secs(size.every).checked_sub(round.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    // Let the orders' follow-up work (links written back) end before the CPU is read.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let active_s = ta.elapsed().as_secs_f64();
    let cpu_active = runner.cpu().saturating_sub(cpu_a0);
    let orders = latencies.len();
    let cpu_per_order = (cpu_active as f64 - idle_cpu * active_s).max(0.0) / orders.max(1) as f64;
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        println!("  no order arrived");
    } else {
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        println!(
            "  active: {orders} orders on {active} pairs in {active_s:.0} s; latency CRM change → МойСклад document: mean {mean:.2} s, median {:.2} s, p90 {:.2} s, max {:.2} s (crm_poll {ACTIVE_POLL})",
            p(0.5),
            p(0.9),
            p(1.0)
        );
        println!(
            "  runner CPU in the active window {:.2} s, {cpu_per_order:.1} ms per order over the idle rate",
            cpu_active as f64 / 1000.0
        );
    }
    if let (Some(a), Some(p)) = (pg_a0, pg) {
        let b = p.stat().await;
        println!(
            "  PostgreSQL in the active window: {} transactions, server CPU {:.2} s",
            b.commits - a.commits,
            (b.cpu_ms - a.cpu_ms) as f64 / 1000.0
        );
    }
    let (crm, ms) = requests(&labs[..active]);
    println!(
        "  active pairs' requests: retailCRM {}, МойСклад {}",
        crm.values().sum::<usize>(),
        ms.values().sum::<usize>()
    );
    let t = Instant::now();
    runner.stop();
    println!("  stopped in {:.1} s", t.elapsed().as_secs_f64());
    Figures {
        pairs: n,
        start_s,
        rss_idle_kib: rss,
        idle_cpu_ms_per_s: idle_cpu,
        latencies,
        cpu_per_order_ms: cpu_per_order,
    }
}

/// The median of sorted latencies (as printed per run).
fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * 0.5).round() as usize]
}

fn main() {
    let size = Size::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "pairs benchmark: {size:?}, {} settings",
            if shared_settings() { "shared" } else { "per-pair" }
        );
        println!(
            "  (the runner: {}; ulimit -n of this process {})",
            env!("CARGO_BIN_EXE_skladsync"),
            std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|l| l
                    .lines()
                    .find(|l| l.starts_with("Max open files"))
                    .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string()))
                .unwrap_or_default()
        );
        let labs = start_labs(size.pairs).await;
        let mut alone = None;
        if size.wants("alone") {
            alone = Some(run("alone", &labs[..size.active], &size, Backend::Sled, None, 1).await);
        }
        let mut results = Vec::new();
        if size.wants("sled") {
            results.push(("sled", run("sled", &labs, &size, Backend::Sled, None, 1).await));
        }
        if size.wants("pg") {
            let pg = Pg::start().await;
            results.push((
                "pg",
                run("pg", &labs, &size, Backend::Postgres, Some(&pg), 1).await,
            ));
        }
        if size.wants("pg2") {
            let pg = Pg::start().await;
            results.push((
                "pg2",
                run("pg2", &labs, &size, Backend::Postgres, Some(&pg), 2).await,
            ));
        }
        println!("== summary");
        if let Some(a) = &alone {
            println!(
                "  alone ({} pairs): RSS {:.1} MB idle, latency median {:.2} s, max {:.2} s, {:.1} ms CPU per order",
                a.pairs,
                a.rss_idle_kib as f64 / 1024.0,
                median(&a.latencies),
                a.latencies.last().copied().unwrap_or(f64::NAN),
                a.cpu_per_order_ms
            );
        }
        for (name, f) in &results {
            let per_pair = match &alone {
                Some(a) if f.pairs > a.pairs => Some(
                    (f.rss_idle_kib.saturating_sub(a.rss_idle_kib)) as f64
                        / 1024.0
                        / (f.pairs - a.pairs) as f64,
                ),
                _ => None,
            };
            println!(
                "  {name} ({} pairs, all running after {:.0} s): RSS {:.1} MB idle{}, idle CPU {:.1} ms/s, latency median {:.2} s, max {:.2} s, {:.1} ms CPU per order",
                f.pairs,
                f.start_s,
                f.rss_idle_kib as f64 / 1024.0,
                per_pair
                    .map(|p| format!(" = {p:.3} MB per idle pair over alone"))
                    .unwrap_or_default(),
                f.idle_cpu_ms_per_s,
                median(&f.latencies),
                f.latencies.last().copied().unwrap_or(f64::NAN),
                f.cpu_per_order_ms
            );
        }
    });
}
