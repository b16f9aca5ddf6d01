//! Many account pairs in one runner (issue 15, item 1): one fleet syncs three pairs of the
//! emulators' accounts, each with its own settings and rules layer, behind one HTTP server;
//! a fourth pair added at runtime (a pair file written) starts syncing without a restart; a
//! pair removed through the admin endpoint stops. And one pair's slow or failing APIs do not
//! hold another pair's orders.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_runner::demo::lab::{Lab, LabOptions, CRM_KEY, MS_LOGIN, MS_PASSWORD};
use skladsync_runner::demo::shop::render;
use skladsync_runner::fleet::{Fleet, FleetConfig};
use tokio::sync::oneshot;

const ADMIN: &str = "fleet-admin-token-0123";

/// A layer over the test rules: every order journalled with the pair's `settings.tag`.
const TAG_LAYER: &str = r#"rules:
  - id: tenant.tag
    doc: Marks each order with this pair's tag (a setting only this layer reads).
    on: crm.order.changed
    subject: '{crm_order: order.id, number: order.number}'
    do:
      - journal:
          code: TAGGED
          text: "{{ settings.tag }} {{ order.number }}"
"#;

fn quote(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).expect("json")
}

/// The base config: shared server, state, rules, intervals; no account of its own.
fn write_base(dir: &Path) -> PathBuf {
    let base = format!(
        "crm: {{url: 'http://127.0.0.1:9', api_key: none, rate_limit: 100, history_start: beginning}}\n\
         moysklad: {{url: 'http://127.0.0.1:9', login: none, password: none}}\n\
         rules: {{dir: {rules}}}\n\
         state: {{path: state}}\n\
         intervals: {intervals}\n\
         webhooks: {{listen: '127.0.0.1:0'}}\n\
         admin: {{token: {ADMIN}}}\n\
         pairs: {{dir: pairs}}\n",
        rules = quote(&support::fixture_rules()),
        intervals = support::INTERVALS,
    );
    let path = dir.join("skladsync.yaml");
    std::fs::write(&path, base).expect("base config");
    std::fs::create_dir_all(dir.join("pairs")).expect("pairs dir");
    path
}

/// A pair file for `lab`: its accounts, its settings (with `extra` appended), its layers, and
/// `more` config keys.
fn pair_file(lab: &Lab, dir: &Path, id: &str, extra: &str, layers: &[&Path], more: &str) -> String {
    let settings = dir.join(format!("{id}.settings.yaml"));
    let mut text = render(support::SETTINGS, &lab.shop.placeholders());
    text.push_str(extra);
    std::fs::write(&settings, text).expect("settings");
    let layers: Vec<String> = layers.iter().map(|l| quote(l)).collect();
    format!(
        "crm: {{url: {crm}, api_key: {CRM_KEY}}}\n\
         moysklad: {{url: {ms}, login: {MS_LOGIN}, password: {MS_PASSWORD}}}\n\
         rules: {{settings: {settings}, layers: [{layers}]}}\n{more}",
        crm = quote(Path::new(&lab.crm.base_url())),
        ms = quote(Path::new(&lab.ms.base_url())),
        settings = quote(&settings),
        layers = layers.join(", "),
    )
}

fn order_names(lab: &Lab) -> Vec<String> {
    let mut names: Vec<String> = lab
        .ms
        .list("customerorder")
        .iter()
        .filter_map(|o| o["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Waits (bounded) until `lab`'s МойСклад holds both uploadable orders.
async fn uploaded(lab: &Lab, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if order_names(lab) == ["A-1001", "A-1002"] {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the orders did not arrive; МойСклад holds {:?}",
            order_names(lab)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn journal(fleet: &Fleet, pair: &str) -> Vec<(String, String)> {
    let d = fleet
        .pair(pair)
        .unwrap_or_else(|| panic!("pair {pair} runs"));
    d.state()
        .journal_entries(d.journal_limits(), support::now())
        .expect("journal")
        .into_iter()
        .map(|e| (e.code, e.text))
        .collect()
}

async fn start_fleet(config: &Path) -> (Fleet, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let fleet = Fleet::new(FleetConfig::load(config).expect("base config"))
        .await
        .expect("fleet");
    let (tx, rx) = oneshot::channel::<()>();
    let f = fleet.clone();
    let task = tokio::spawn(async move {
        f.run(async {
            let _ = rx.await;
        })
        .await
        .expect("fleet run");
    });
    (fleet, tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_runner_syncs_three_pairs_and_a_fourth_added_at_runtime() {
    let labs = [
        Lab::start(LabOptions::default()).await.expect("lab"),
        Lab::start(LabOptions::default()).await.expect("lab"),
        Lab::start(LabOptions::default()).await.expect("lab"),
        Lab::start(LabOptions::default()).await.expect("lab"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_base(dir.path());
    let pairs = dir.path().join("pairs");
    let layer = dir.path().join("tag-layer");
    std::fs::create_dir_all(&layer).expect("layer dir");
    std::fs::write(layer.join("tag.yaml"), TAG_LAYER).expect("layer");

    // alpha: the rules as they are; beta and gamma: the tagging layer, each its own tag (and
    // gamma its own intervals).
    let files = [
        (
            "alpha",
            pair_file(&labs[0], dir.path(), "alpha", "", &[], ""),
        ),
        (
            "beta",
            pair_file(&labs[1], dir.path(), "beta", "tag: beta\n", &[&layer], ""),
        ),
        (
            "gamma",
            pair_file(
                &labs[2],
                dir.path(),
                "gamma",
                "tag: gamma\n",
                &[&layer],
                "intervals: {crm_poll: 500ms}\n",
            ),
        ),
    ];
    for (id, text) in &files {
        std::fs::write(pairs.join(format!("{id}.yaml")), text).expect("pair file");
    }
    let (fleet, stop, task) = start_fleet(&config).await;

    for (i, id) in ["alpha", "beta", "gamma"].iter().enumerate() {
        uploaded(&labs[i], Duration::from_secs(60), id).await;
    }
    // Each pair evaluated its orders with its own layer and settings.
    let tagged = |pair: &str| -> Vec<String> {
        let mut t: Vec<String> = journal(&fleet, pair)
            .into_iter()
            .filter(|(code, _)| code == "TAGGED")
            .map(|(_, text)| text)
            .collect();
        t.sort();
        t
    };
    assert!(tagged("alpha").is_empty(), "{:?}", tagged("alpha"));
    for pair in ["beta", "gamma"] {
        let t = tagged(pair);
        assert!(
            t.contains(&format!("{pair} A-1001")) && t.iter().all(|x| x.starts_with(pair)),
            "{pair}: {t:?}"
        );
    }
    let (alpha_d, beta_d) = (
        fleet.pair("alpha").expect("alpha"),
        fleet.pair("beta").expect("beta"),
    );
    assert_ne!(
        beta_d.rules_version(),
        alpha_d.rules_version(),
        "a layer is part of the rules version"
    );
    assert!(!beta_d.shares_rules_with(&alpha_d));

    // Webhooks are routed by pair and secret on the one server.
    let alpha = fleet.pair("alpha").expect("alpha");
    let url = alpha
        .webhook_url()
        .expect("alpha's webhook URL")
        .to_string();
    let prefix = format!("http://{}/pairs/alpha/moysklad/webhook/", fleet.addr());
    assert!(url.starts_with(&prefix), "registered under the pair's path");
    let http = reqwest::Client::new();
    let post = |u: String| {
        let http = http.clone();
        async move {
            http.post(u)
                .body(r#"{"events": []}"#)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(url.clone()).await, 200);
    assert_eq!(
        post(url.replacen("/pairs/alpha/", "/pairs/beta/", 1)).await,
        404,
        "alpha's secret does not open beta"
    );
    assert_eq!(
        post(url.replacen("/pairs/alpha/", "/pairs/nobody/", 1)).await,
        404
    );
    // A change in alpha's МойСклад comes back to alpha's CRM only.
    let ms_a1001 = labs[0]
        .ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == "A-1001")
        .expect("A-1001");
    let confirmed = labs[0].shop.states["client-confirmed"].clone();
    labs[0]
        .ms
        .update(
            "customerorder",
            ms_a1001["id"].as_str().expect("id"),
            serde_json::json!({"state": {"meta": {
                "href": format!("{}/entity/customerorder/metadata/states/{confirmed}", labs[0].ms.base_url()),
                "type": "state", "mediaType": "application/json"}}}),
        )
        .expect("state change");
    let a1001 = support::order_by_number(&labs[0], "A-1001");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while labs[0].crm.order(a1001).expect("A-1001")["status"] != "client-confirmed" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the status came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b1001 = support::order_by_number(&labs[1], "A-1001");
    assert_ne!(
        labs[1].crm.order(b1001).expect("beta's A-1001")["status"],
        "client-confirmed"
    );

    // A pair file changed: the pair restarts with it (here: beta drops its layer).
    let beta_before = fleet.pair("beta").expect("beta").rules_version();
    let beta_plain = files[1]
        .1
        .replacen(&format!("layers: [{}]", quote(&layer)), "layers: []", 1);
    assert_ne!(beta_plain, files[1].1);
    std::fs::write(pairs.join(".beta.yaml.new"), beta_plain).expect("beta");
    std::fs::rename(pairs.join(".beta.yaml.new"), pairs.join("beta.yaml")).expect("rename");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fleet
        .pair("beta")
        .is_none_or(|d| d.rules_version() == beta_before)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "beta restarts with its changed file: {:?}",
            fleet.pairs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A fourth pair, added while the fleet runs: its file is picked up.
    assert!(order_names(&labs[3]).is_empty());
    let delta = pair_file(&labs[3], dir.path(), "delta", "tag: delta\n", &[&layer], "");
    std::fs::write(pairs.join("delta.yaml"), delta).expect("delta");
    uploaded(
        &labs[3],
        Duration::from_secs(60),
        "delta (added at runtime)",
    )
    .await;
    assert!(
        journal(&fleet, "delta")
            .iter()
            .any(|(c, t)| c == "TAGGED" && t == "delta A-1001"),
        "{:?}",
        journal(&fleet, "delta")
    );

    // /metrics: one family per metric, every pair labelled.
    let base = format!("http://{}", fleet.addr());
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.expect("text");
    for pair in ["alpha", "beta", "gamma", "delta"] {
        assert!(
            text.contains(&format!("pair=\"{pair}\"")),
            "{pair} in /metrics"
        );
    }
    assert_eq!(
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .status()
            .as_u16(),
        401
    );

    // The admin endpoint removes gamma (it stops) and adds it back (it runs again).
    let gamma_file = files[2].1.clone();
    let r = http
        .delete(format!("{base}/admin/pairs/gamma"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 200);
    assert!(fleet.pair("gamma").is_none(), "gamma stopped");
    assert!(!pairs.join("gamma.yaml").exists());
    let wrong = http
        .put(format!("{base}/admin/pairs/gamma"))
        .bearer_auth("not-the-admin-token-xx")
        .body(gamma_file.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(wrong.status().as_u16(), 401);
    let bad = http
        .put(format!("{base}/admin/pairs/gamma"))
        .bearer_auth(ADMIN)
        .body("state: {path: elsewhere}\n")
        .send()
        .await
        .expect("put");
    assert_eq!(
        bad.status().as_u16(),
        422,
        "a pair file may not move the state"
    );
    let r = http
        .put(format!("{base}/admin/pairs/gamma"))
        .bearer_auth(ADMIN)
        .body(gamma_file)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fleet.pair("gamma").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "gamma runs again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its state was kept: its links are there, nothing is uploaded twice.
    assert!(!fleet
        .pair("gamma")
        .expect("gamma")
        .state()
        .links()
        .expect("links")
        .is_empty());
    let listed: Value = http
        .get(format!("{base}/pairs"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("pairs")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = listed["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["alpha", "beta", "delta", "gamma"]);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the fleet stops")
        .expect("fleet task");
    for lab in &labs {
        assert!(
            support::duplicates(lab).is_empty(),
            "{:?}",
            support::duplicates(lab)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_with_slow_or_failing_apis_does_not_hold_another_pair() {
    let slow = Lab::start(LabOptions::default()).await.expect("lab");
    let failing = Lab::start(LabOptions::default()).await.expect("lab");
    let quick = Lab::start(LabOptions::default()).await.expect("lab");
    // Every МойСклад request of `slow` takes ten minutes; every CRM request of `failing`
    // is a server error.
    slow.ms.faults().set(FaultPlan::new(Fault::Latency {
        delay: Duration::from_secs(600),
    }));
    failing
        .crm
        .faults()
        .set(FaultPlan::new(Fault::ServerError { status: 503 }));

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_base(dir.path());
    let pairs = dir.path().join("pairs");
    // The slow pair waits for its МойСклад as long as the config allows.
    let patient = pair_file(
        &slow,
        dir.path(),
        "slow",
        "",
        &[],
        "webhooks: {register: false}\n",
    )
    .replacen("moysklad: {", "moysklad: {timeout: 5m, ", 1);
    std::fs::write(pairs.join("slow.yaml"), patient).expect("slow");
    std::fs::write(
        pairs.join("failing.yaml"),
        pair_file(&failing, dir.path(), "failing", "", &[], ""),
    )
    .expect("failing");
    let (fleet, _stop, _task) = start_fleet(&config).await;
    // The slow pair is busy: its worker waits on МойСклад.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while slow.ms.faults().injected() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow pair works: {:?}",
            fleet.pairs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A pair added now syncs its orders while the other two are stuck.
    std::fs::write(
        pairs.join("quick.yaml"),
        pair_file(&quick, dir.path(), "quick", "", &[], ""),
    )
    .expect("quick");
    uploaded(&quick, Duration::from_secs(60), "quick").await;
    assert!(
        order_names(&slow).is_empty(),
        "the slow pair is still waiting"
    );
    // The same rules content (the labs are seeded alike): one compiled rule set for both.
    let (s, q) = (
        fleet.pair("slow").expect("slow"),
        fleet.pair("quick").expect("quick"),
    );
    assert_eq!(s.rules_version(), q.rules_version());
    assert!(s.shares_rules_with(&q));
    assert!(
        failing.crm.faults().injected() > 0,
        "the failing pair failed"
    );
    assert!(order_names(&failing).is_empty());
    // Neither is gone: the slow one runs, the failing one is still starting (its CRM does
    // not answer its time zone) or runs.
    let pairs = fleet.pairs();
    let status = |id: &str| pairs.iter().find(|p| p.id == id).cloned();
    assert!(status("slow").is_some_and(|p| p.running), "{pairs:?}");
    assert!(
        status("failing").is_some_and(|p| p.running || p.starting),
        "{pairs:?}"
    );
    // The runtime drops the fleet (the slow pair's request would take ten minutes).
}

/// `skladsync status --json` of one pair, through the binary.
fn status_of(config: &Path, pair: &str) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["status", "--json", "--pair", pair, "--config"])
        .arg(config)
        .output()
        .expect("status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skladsync_run_with_pairs_runs_them_and_status_reads_one_pair() {
    use std::io::{BufRead, BufReader};
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_base(dir.path());
    let pairs = dir.path().join("pairs");
    std::fs::write(
        pairs.join("shop-1.yaml"),
        pair_file(&lab, dir.path(), "shop-1", "", &[], ""),
    )
    .expect("pair");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Drained while the runner runs (a full pipe would block it).
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let addr = tokio::task::spawn_blocking(move || {
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
            if line.contains("fleet is running") {
                if let Some(rest) = line.split("addr=").nth(1) {
                    return rest.split_whitespace().next().map(str::to_string);
                }
            }
        }
        None
    })
    .await
    .expect("reader");
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("the runner did not report its address");
    };
    let http = reqwest::Client::new();
    let mut ready = 0;
    for _ in 0..300 {
        ready = http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if ready == 200 && order_names(&lab) == ["A-1001", "A-1002"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The runner holds the state: `status --pair` reads the pair from the runner.
    let c = config.clone();
    let live = tokio::task::spawn_blocking(move || status_of(&c, "shop-1"))
        .await
        .expect("status");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().expect("wait");
    assert_eq!(ready, 200);
    assert_eq!(order_names(&lab), ["A-1001", "A-1002"]);
    assert_eq!(live["source"], "daemon", "{live}");
    assert!(exit.success(), "{exit:?}");
    // Stopped: the pair's state is read from the state directory.
    let stopped = tokio::task::spawn_blocking(move || status_of(&config, "shop-1"))
        .await
        .expect("status");
    assert_eq!(stopped["source"], "state", "{stopped}");
    assert!(
        stopped["links_by_kind"]["order"].as_u64() >= Some(2),
        "{stopped}"
    );
}
