//! Failover between runners (issue 15, items 3 and 4): two `skladsync run` processes with the
//! same config serve 50 pairs from one pairs directory, the state in one PostgreSQL database.
//! Each pair is served by the runner holding its lease; the other waits. One runner is killed
//! (SIGKILL) while it has pairs with work in progress; the other takes them over and every
//! pair finishes there: every order in МойСклад exactly once, every link written, the sample
//! payment once, and an order created after the kill synced too. The runners' logs show that
//! no lease epoch of a pair was ever taken twice (the fencing token: two runners never held
//! one pair at once) and that the survivor took over every pair of the killed runner.
//!
//! Each pair has its own МойСклад and retailCRM emulators in this test process (the sample
//! shop: two uploadable orders each); every request is slowed a little so that the kill lands
//! in the middle of plans.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_runner::demo::lab::{Lab, LabOptions, CRM_KEY, MS_LOGIN, MS_PASSWORD};
use skladsync_runner::demo::pg_cluster::PgCluster;
use skladsync_runner::demo::shop::render;
use skladsync_runner::state::{PgDatabase, SyncState};

const PAIRS: usize = 50;

fn quote(p: &str) -> String {
    serde_json::to_string(p).expect("json")
}

/// The base config both runners share: PostgreSQL state with a short lease, the test rules.
fn write_base(dir: &Path, url: &str) -> PathBuf {
    write_base_with(dir, url, support::INTERVALS)
}

fn write_base_with(dir: &Path, url: &str, intervals: &str) -> PathBuf {
    let base = format!(
        "crm: {{url: 'http://127.0.0.1:9', api_key: none, rate_limit: 100, history_start: beginning}}\n\
         moysklad: {{url: 'http://127.0.0.1:9', login: none, password: none}}\n\
         rules: {{dir: {rules}}}\n\
         state: {{path: state, backend: postgres, url: {url}, lease: 3s}}\n\
         intervals: {intervals}\n\
         webhooks: {{listen: '127.0.0.1:0'}}\n\
         pairs: {{dir: pairs}}\n",
        rules = quote(&support::fixture_rules().display().to_string()),
        url = quote(url),
    );
    let path = dir.join("skladsync.yaml");
    std::fs::write(&path, base).expect("base config");
    std::fs::create_dir_all(dir.join("pairs")).expect("pairs dir");
    path
}

fn write_pair(lab: &Lab, dir: &Path, id: &str) {
    let settings = dir.join(format!("{id}.settings.yaml"));
    std::fs::write(
        &settings,
        render(support::SETTINGS, &lab.shop.placeholders()),
    )
    .expect("settings");
    let text = format!(
        "crm: {{url: {crm}, api_key: {CRM_KEY}}}\n\
         moysklad: {{url: {ms}, login: {MS_LOGIN}, password: {MS_PASSWORD}}}\n\
         rules: {{settings: {settings}}}\n",
        crm = quote(&lab.crm.base_url()),
        ms = quote(lab.ms.base_url()),
        settings = quote(&settings.display().to_string()),
    );
    std::fs::write(dir.join("pairs").join(format!("{id}.yaml")), text).expect("pair file");
}

/// A runner process: killed (SIGKILL) and reaped when dropped, so that a failing test
/// leaves none behind.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Runner {
    /// SIGTERM: a clean stop.
    fn term(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
    }
}

fn spawn(config: &Path, log: &Path) -> Runner {
    spawn_on(config, log, None)
}

/// A runner as if on machine `host` (its lease holder name): a runner of another machine is
/// not known to be gone when killed, its leases are waited out.
fn spawn_on(config: &Path, log: &Path, host: Option<&str>) -> Runner {
    let log = std::fs::File::create(log).expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_skladsync"));
    if let Some(h) = host {
        command.env("SKLADSYNC_RUNNER_HOST", h);
    }
    let child = command
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start skladsync run");
    Runner(child)
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// The last lines of a log, for failure messages.
fn tail(log: &Path, n: usize) -> String {
    let text = read(log);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `name=value` of a log line (quotes taken off).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.split(&format!(" {name}=")).nth(1)?;
    Some(rest.split_whitespace().next()?.trim_matches('"'))
}

/// Every "lease taken" of a log: (pair, epoch), in order.
fn takes(log: &str) -> Vec<(String, i64)> {
    log.lines()
        .filter(|l| l.contains("lease taken"))
        .filter_map(|l| {
            Some((
                field(l, "pair")?.to_string(),
                field(l, "epoch")?.parse().ok()?,
            ))
        })
        .collect()
}

fn ms_names(lab: &Lab) -> Vec<String> {
    let mut names: Vec<String> = lab
        .ms
        .list("customerorder")
        .iter()
        .filter_map(|o| o["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// What does not hold yet for one pair: its МойСклад orders are exactly `want`, each once,
/// and the sample payment (A-1002's 32 899.50 ₽) exists once.
fn unmet(lab: &Lab, want: &[&str]) -> Option<String> {
    let names = ms_names(lab);
    let sums: Vec<i64> = lab
        .ms
        .list("paymentin")
        .iter()
        .filter_map(|p| p["sum"].as_f64())
        .map(|s| s.round() as i64)
        .collect();
    (names != want || sums != [3_289_950])
        .then(|| format!("МойСклад orders {names:?} (want {want:?}), payments {sums:?}"))
}

/// Waits (bounded) for a runner told to stop; `None` if it did not.
async fn stopped_within(runner: &mut Runner, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(status)) = runner.0.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn kill9(runner: &mut Runner) {
    let _ = runner.0.kill();
    let _ = runner.0.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_fifty_pairs_one_killed_every_pair_finishes_on_the_other() {
    let cluster = PgCluster::shared().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.database("failover").expect("a test database");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_base(dir.path(), &url);
    let mut labs = Vec::new();
    for i in 0..PAIRS {
        let lab = Lab::start(LabOptions::default()).await.expect("lab");
        for faults in [lab.crm.faults(), lab.ms.faults()] {
            faults.add(FaultPlan::new(Fault::Latency {
                delay: Duration::from_millis(30),
            }));
        }
        write_pair(&lab, dir.path(), &format!("shop-{i}"));
        labs.push(lab);
    }
    // Started together: whoever asks first serves a pair.
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    // As on two machines: the killed runner's leases run out (3 s) before the other takes
    // its pairs.
    let mut runners = [
        spawn_on(&config, &logs[0], Some("machine-a")),
        spawn_on(&config, &logs[1], Some("machine-b")),
    ];
    let held = |log: &Path| -> Vec<usize> {
        takes(&read(log))
            .iter()
            .filter_map(|(p, _)| p.strip_prefix("shop-")?.parse().ok())
            .collect()
    };

    // The victim: the runner serving more pairs, once every pair is served, it is at work on
    // them and has not finished them all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (victim, done_at_kill): (usize, Vec<bool>) = loop {
        let pairs = [held(&logs[0]), held(&logs[1])];
        let bigger = usize::from(pairs[1].len() > pairs[0].len());
        let orders: Vec<usize> = pairs[bigger]
            .iter()
            .map(|&n| ms_names(&labs[n]).len())
            .collect();
        let working = pairs[0].len() + pairs[1].len() >= PAIRS
            // A quarter of its orders uploaded: plans in flight on many of its pairs.
            && orders.iter().sum::<usize>() * 2 >= orders.len()
            && orders.iter().any(|&n| n < 2);
        if let Some(r) = working.then_some(bigger) {
            // Which pairs were finished at the kill (read before it: a pair counted as
            // unfinished may finish in between, never the other way round).
            let done = labs
                .iter()
                .map(|l| unmet(l, &["A-1001", "A-1002"]).is_none())
                .collect();
            kill9(&mut runners[r]);
            break (r, done);
        }
        if tokio::time::Instant::now() > deadline {
            let uploaded: usize = labs.iter().map(|l| ms_names(l).len()).sum();
            panic!(
                "the runners did not get going ({uploaded} orders uploaded)\n--- A ---\n{}\n--- B ---\n{}",
                tail(&logs[0], 40),
                tail(&logs[1], 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let survivor = 1 - victim;
    let (log_a, log_b) = (&logs[victim], &logs[survivor]);
    let b_at_kill = read(log_b);
    let a_log = read(log_a);
    let a_pairs: BTreeSet<String> = takes(&a_log).into_iter().map(|(p, _)| p).collect();
    let in_progress: Vec<&String> = a_pairs
        .iter()
        .filter(|p| {
            p.strip_prefix("shop-")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| !done_at_kill[n])
        })
        .collect();

    // New work after the kill, for every pair: synced by the survivor.
    for lab in &labs {
        lab.crm
            .as_manager(12)
            .create_order(json!({
                "number": "K-1", "site": "shop-main", "status": "new",
                "firstName": "Клиент", "lastName": "Поздний",
                "phone": "+79020000001", "shipmentStore": "main",
                "items": [{"offer": {"xmlId": "lamp-arc"}, "quantity": 1}],
            }))
            .expect("order");
    }
    // Every pair finished: its orders in МойСклад once, the payment once, and every order
    // linked in the shared state to the МойСклад order of its number.
    let want = ["A-1001", "A-1002", "K-1"];
    let db = PgDatabase::open(&url, 1).expect("database");
    let links_unmet = |i: usize, lab: &Lab| -> Option<String> {
        let state = SyncState::new(std::sync::Arc::new(db.store(&format!("shop-{i}"))));
        let links = state.links().expect("links");
        let wrong: Vec<String> = want
            .iter()
            .filter_map(|number| {
                let crm_id = lab
                    .crm
                    .orders()
                    .iter()
                    .find(|o| o["number"] == *number)
                    .and_then(|o| o["id"].as_i64())?;
                let ms_id = lab
                    .ms
                    .list("customerorder")
                    .into_iter()
                    .find(|o| o["name"] == *number)
                    .and_then(|o| o["id"].as_str().map(str::to_string));
                let linked = links
                    .iter()
                    .find(|l| l.kind == "order" && l.ids.get("crm") == Some(&json!(crm_id)))
                    .and_then(|l| l.ids.get("moysklad").and_then(|v| v.as_str()))
                    .map(str::to_string);
                (ms_id.is_none() || linked != ms_id)
                    .then(|| format!("{number} linked to {linked:?}, in МойСклад {ms_id:?}"))
            })
            .collect();
        (!wrong.is_empty()).then(|| wrong.join(", "))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let open: Vec<String> = labs
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                unmet(l, &want)
                    .or_else(|| links_unmet(i, l))
                    .map(|u| format!("shop-{i}: {u}"))
            })
            .collect();
        if open.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} pair(s) unfinished on the surviving runner:\n{}\n--- killed runner ---\n{}\n--- survivor ---\n{}",
                open.len(),
                open.join("\n"),
                tail(log_a, 30),
                tail(log_b, 60)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, lab) in labs.iter().enumerate() {
        assert!(
            support::duplicates(lab).is_empty(),
            "shop-{i}: duplicates {:?}",
            support::duplicates(lab)
        );
    }
    let b = &mut runners[survivor];
    b.term();
    let exit = stopped_within(b, Duration::from_secs(30)).await;
    let b_log = read(log_b);

    // The leases: no epoch of a pair taken twice (by either runner), epochs growing; before
    // the kill each pair was taken by one runner only; every pair of the killed runner taken
    // over by the survivor, under a newer epoch.
    let (a_takes, b_before, b_all) = (takes(&a_log), takes(&b_at_kill), takes(&b_log));
    let mut epochs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (p, e) in a_takes.iter().chain(b_all.iter()) {
        epochs.entry(p.clone()).or_default().push(*e);
    }
    for (p, es) in &mut epochs {
        let n = es.len();
        es.sort_unstable();
        es.dedup();
        assert_eq!(es.len(), n, "{p}: a lease epoch was taken twice: {es:?}");
    }
    let b_before: BTreeSet<String> = b_before.into_iter().map(|(p, _)| p).collect();
    assert!(
        a_pairs.is_disjoint(&b_before),
        "pairs taken by both runners before the kill: {:?}",
        a_pairs.intersection(&b_before).collect::<Vec<_>>()
    );
    assert_eq!(
        a_pairs.len() + b_before.len(),
        PAIRS,
        "every pair served by one runner before the kill"
    );
    for p in &a_pairs {
        let a_max = a_takes
            .iter()
            .filter(|(q, _)| q == p)
            .map(|(_, e)| *e)
            .max();
        let b_max = b_all.iter().filter(|(q, _)| q == p).map(|(_, e)| *e).max();
        assert!(
            b_max > a_max,
            "{p}: not taken over by the survivor (A epoch {a_max:?}, B {b_max:?})"
        );
    }
    assert!(
        !b_log.contains("holding the lease is gone"),
        "the survivor took pairs without waiting out their leases"
    );
    assert!(
        !in_progress.is_empty(),
        "the killed runner had no pair with work in progress (A served {} pairs)",
        a_pairs.len()
    );
    assert!(
        exit.is_some_and(|s| s.success()),
        "the survivor stops cleanly: {exit:?}"
    );
    eprintln!(
        "the killed runner served {} pairs ({} unfinished at the kill), the survivor {} before the kill",
        a_pairs.len(),
        in_progress.len(),
        b_before.len()
    );
}

/// A pair whose lease goes to another runner while this one lives (it stalled, or lost the
/// database for a lease time): the fleet stops the pair and at once waits for the lease
/// again, not as a failed pair retried a minute later; the lease let go, it takes the pair
/// back and syncs what came meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_pair_whose_lease_is_lost_waits_for_it_again_and_resumes() {
    use skladsync_runner::fleet::{Fleet, FleetConfig};
    use skladsync_runner::state::lease::runner_id;
    use skladsync_runner::state::LeaseAttempt;

    let cluster = PgCluster::shared().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.database("lease_lost").expect("a test database");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_base(dir.path(), &url);
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    write_pair(&lab, dir.path(), "p");
    let fleet = Fleet::new(FleetConfig::load(&config).expect("base config"))
        .await
        .expect("fleet");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let f = fleet.clone();
    let task = tokio::spawn(async move {
        f.run(async {
            let _ = stopped.await;
        })
        .await
        .expect("fleet run");
    });
    let status = |fleet: &Fleet| fleet.pairs().into_iter().find(|p| p.id == "p");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ms_names(&lab) != ["A-1001", "A-1002"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pair did not sync: {:?}",
            status(&fleet)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Another runner takes the lease over.
    let db = PgDatabase::open(&url, 1).expect("database");
    let thief = db.store("p");
    // (Asked again while the lease row is locked by one of the fleet's writes: skipped.)
    let taken = tokio::task::spawn_blocking(move || {
        let mut last = None;
        for _ in 0..100 {
            let a = thief.acquire_from("runner-b", Duration::from_secs(3), Some(runner_id()));
            if matches!(a, Ok(LeaseAttempt::Taken(_))) {
                return (None, thief);
            }
            last = Some(format!("{a:?}"));
            std::thread::sleep(Duration::from_millis(50));
        }
        (last, thief)
    })
    .await
    .expect("acquire");
    let (refused, thief) = taken;
    assert!(refused.is_none(), "the lease was not taken: {refused:?}");
    // The fleet stops the pair and waits for the lease: starting, no error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(&fleet).expect("the pair is known");
        if s.starting && !s.running && s.error.is_none() && fleet.pair("p").is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pair did not go back to waiting for its lease: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Work comes while the other runner holds the pair; then it lets go.
    lab.crm
        .as_manager(12)
        .create_order(json!({
            "number": "K-1", "site": "shop-main", "status": "new",
            "firstName": "Клиент", "lastName": "Поздний",
            "phone": "+79020000001", "shipmentStore": "main",
            "items": [{"offer": {"xmlId": "lamp-arc"}, "quantity": 1}],
        }))
        .expect("order");
    tokio::task::spawn_blocking(move || thief.release())
        .await
        .expect("release")
        .expect("released");
    // Taken back within a lease query (a third of the lease time), well before the minute
    // after which a failed pair is tried again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ms_names(&lab) != ["A-1001", "A-1002", "K-1"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pair was not taken back: {:?}, МойСклад {:?}",
            status(&fleet),
            ms_names(&lab)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the fleet stops")
        .expect("fleet task");
}

/// The address a runner's log says it listens on.
fn addr_of(log: &Path) -> Option<String> {
    read(log)
        .lines()
        .find(|l| l.contains("fleet is running"))
        .and_then(|l| field(l, "addr"))
        .map(str::to_string)
}

/// A МойСклад webhook may reach the runner that does not serve its pair (behind a load
/// balancer): that runner checks it (the pair's secret and instance id) and relays it
/// through the shared state; the serving runner queues it and syncs the change. The
/// reconciliation poll is an hour here and the account's webhook registrations are removed,
/// so the relayed webhook is the only way the serving runner learns of the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_at_the_runner_not_serving_the_pair_is_relayed_to_the_one_that_does() {
    let cluster = PgCluster::shared().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.database("relay").expect("a test database");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_base_with(
        dir.path(),
        &url,
        "{crm_poll: 300ms, reconcile: 1h, stock: 1h, purchase_prices: 1h, retry_min: 50ms, retry_max: 500ms}",
    );
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    write_pair(&lab, dir.path(), "p");
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = spawn(&config, &log_a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while ms_names(&lab) != ["A-1001", "A-1002"] {
        if tokio::time::Instant::now() > deadline {
            kill9(&mut a);
            panic!("runner A did not sync the pair\n{}", tail(&log_a, 40));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut b = spawn(&config, &log_b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let b_addr = loop {
        let log = read(&log_b);
        if let Some(addr) = addr_of(&log_b).filter(|_| log.contains("waiting for it")) {
            break addr;
        }
        if tokio::time::Instant::now() > deadline {
            kill9(&mut a);
            kill9(&mut b);
            panic!("runner B did not stand by\n{}", tail(&log_b, 40));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // No delivery to runner A: МойСклад's registrations removed.
    for hook in lab.ms.list("webhook") {
        if let Some(id) = hook["id"].as_str() {
            lab.ms.delete("webhook", id).expect("webhook removed");
        }
    }
    // A manager completes A-1001 in МойСклад.
    let order = lab
        .ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == "A-1001")
        .expect("A-1001 in МойСклад");
    let id = order["id"].as_str().expect("id").to_string();
    let state = json!({"meta": {
        "href": format!("{}/entity/customerorder/metadata/states/{}", lab.ms.base_url(), lab.shop.states["complete"]),
        "type": "state", "mediaType": "application/json"}});
    lab.ms
        .update("customerorder", &id, json!({"state": state}))
        .expect("state changed");
    let db = PgDatabase::open(&url, 1).expect("database");
    let shared = SyncState::new(std::sync::Arc::new(db.store("p")));
    let secret = shared
        .misc("webhook_secret")
        .expect("misc")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("the pair's webhook secret");
    let instance = shared
        .misc("instance_id")
        .expect("misc")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("the pair's instance id");
    let body = json!({"events": [{
        "meta": {"type": "customerorder", "href": format!("{}/entity/customerorder/{id}", lab.ms.base_url())},
        "action": "UPDATE", "updatedFields": ["state"],
    }]});
    let http = reqwest::Client::new();
    let post = |path: String| {
        let (http, body) = (http.clone(), body.clone());
        async move {
            http.post(path)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    // A standby is ready (its pair waits for the lease held by A).
    let ready = http
        .get(format!("http://{b_addr}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    let wrong = post(format!(
        "http://{b_addr}/pairs/p/moysklad/webhook/not-the-secret/{instance}?requestId=r-0"
    ))
    .await;
    let relayed = post(format!(
        "http://{b_addr}/pairs/p/moysklad/webhook/{secret}/{instance}?requestId=r-1"
    ))
    .await;
    let crm_id = support::order_by_number(&lab, "A-1001");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut status = json!(null);
    while relayed == 200 && tokio::time::Instant::now() < deadline {
        status = lab
            .crm
            .order(crm_id)
            .map(|o| o["status"].clone())
            .unwrap_or_default();
        if status == json!("complete") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.term();
    b.term();
    stopped_within(&mut a, Duration::from_secs(30)).await;
    stopped_within(&mut b, Duration::from_secs(30)).await;
    assert_eq!(ready, 200, "the standby's /readyz");
    assert_eq!(wrong, 404, "a webhook with a wrong secret is refused");
    assert_eq!(
        relayed,
        200,
        "the standby runner accepts the webhook\n{}",
        tail(&log_b, 20)
    );
    assert_eq!(
        status,
        json!("complete"),
        "the serving runner did not sync the relayed change\n--- A ---\n{}\n--- B ---\n{}",
        tail(&log_a, 30),
        tail(&log_b, 20)
    );
    // Queued and removed: nothing is left relayed.
    let left = db
        .scan_pairs(&["p".to_string()], skladsync_runner::state::RELAY_PREFIX)
        .expect("scan");
    assert!(left.is_empty(), "relayed webhooks left: {}", left.len());
}
