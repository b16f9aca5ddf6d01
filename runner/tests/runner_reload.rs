//! Hot reload of the rules: a rule edited under a running daemon takes effect on the next
//! event (after `POST /admin/reload`, SIGHUP to the `skladsync run` binary, or a watched file
//! change); a broken edit is refused, journalled with its `file:line:col`, and the old rules
//! keep running.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::state::{Parked, Work};

/// A copy of the test rule set, to edit.
fn rules_copy(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::copy(
        support::fixture_rules().join("sync.yaml"),
        rules.join("sync.yaml"),
    )
    .expect("copy rules");
    rules
}

/// Intervals for a daemon that runs on its own (`Daemon::run`, the binary): the МойСклад
/// poll at a realistic pace, so that it does not take the request budget (4 units a request
/// under the 2026 weights) from the worker.
const RUN_INTERVALS: &str =
    "{crm_poll: 300ms, reconcile: 10s, stock: 10s, purchase_prices: 60s, retry_min: 50ms, retry_max: 500ms}";

/// The config of a rig, with [`RUN_INTERVALS`].
fn run_config(lab: &Lab, rules: &Path, dir: &Path) -> PathBuf {
    let config = support::write_config(lab, rules, dir, 100);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(support::INTERVALS, RUN_INTERVALS);
    std::fs::write(&config, text).expect("config");
    config
}

/// Edits the upload rule: МойСклад orders are named `<prefix><number>` from now on.
fn name_orders(rules: &Path, name_expr: &str) {
    let p = rules.join("sync.yaml");
    let text = std::fs::read_to_string(&p).expect("read rules");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("name:") && l.contains("order.number"))
        .expect("the name line of order.upload");
    lines[at] = format!("          name: {name_expr}");
    std::fs::write(&p, lines.join("\n") + "\n").expect("write rules");
}

/// A new CRM order that the test rules upload.
fn new_order(lab: &Lab, number: &str) {
    lab.crm
        .as_manager(12)
        .create_order(json!({
            "externalId": number, "number": number, "site": "shop-main", "status": "new",
            "customer": {"externalId": "cp-8812"}, "firstName": "Иван", "lastName": "Петров",
            "phone": "+79001234567", "shipmentStore": "main",
            "items": [{"offer": {"xmlId": "chair01#red"}, "quantity": 1}]
        }))
        .expect("create the CRM order");
}

fn ms_order_names(lab: &Lab) -> Vec<String> {
    let mut v: Vec<String> = lab
        .ms
        .list("customerorder")
        .iter()
        .filter_map(|o| o["name"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn journal(d: &Daemon) -> Vec<skladsync_runner::state::JournalEntry> {
    d.state()
        .journal_entries(d.journal_limits(), support::now())
        .expect("journal")
}

async fn post_reload(addr: std::net::SocketAddr, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("http://{addr}/admin/reload"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("POST /admin/reload");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_edited_and_reloaded_over_http_drives_the_next_event_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_copy(dir.path());
    let rig = support::start(rules.clone(), true).await;
    let (lab, d) = (&rig.lab, &rig.daemon);
    let addr = d.receiver_addr().expect("receiver");
    let secret = d
        .state()
        .misc("webhook_secret")
        .expect("misc")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("the generated webhook secret");

    d.cycle().await.expect("first cycle");
    assert!(ms_order_names(lab).contains(&"A-1001".to_string()));
    let v1 = d.rules_version();
    // The first start journals the version it loaded.
    assert!(
        journal(d)
            .iter()
            .any(|e| e.code == "RULES_LOADED" && e.subject["rules_version"] == v1.as_str()),
        "{:?}",
        journal(d)
    );

    // Edit the rule under the running daemon; nothing changes until a reload.
    name_orders(&rules, r#"'"R2-" + order.number'"#);
    assert_eq!(d.rules_version(), v1);
    // Without the token (or with a wrong one) the reload is refused.
    assert_eq!(post_reload(addr, None).await.0, 401);
    assert_eq!(post_reload(addr, Some("not-the-secret")).await.0, 401);
    // Work parked under the old rules (as an evaluation that failed would leave it).
    let parked_seq = d
        .state()
        .enqueue(
            Work::Problem {
                problem: json!({"code": "TEST", "subject": {"test": "parked"}}),
            },
            support::now(),
        )
        .expect("enqueue");
    let mut item = d
        .state()
        .inbox_item(parked_seq)
        .expect("item")
        .expect("queued");
    item.parked = Some(Parked {
        reason: "a rule failed".into(),
        rules: v1.clone(),
        at: support::now(),
    });
    d.state().update_item(parked_seq, &item).expect("park");
    let (status, body) = post_reload(addr, Some(&secret)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "loaded", "{body}");
    // The new version unparks it.
    let item = d
        .state()
        .inbox_item(parked_seq)
        .expect("item")
        .expect("still queued");
    assert!(item.parked.is_none(), "unparked by the new rules: {item:?}");
    let v2 = d.rules_version();
    assert_ne!(v1, v2);
    assert_eq!(body["version"], v2.as_str());
    assert!(journal(d)
        .iter()
        .any(|e| e.code == "RULES_LOADED" && e.subject["rules_version"] == v2.as_str()));
    // The next event follows the new rule.
    new_order(lab, "RL-7001");
    d.cycle().await.expect("cycle");
    let names = ms_order_names(lab);
    assert!(names.contains(&"R2-RL-7001".to_string()), "{names:?}");
    // Reloading the same files changes nothing.
    let (status, body) = post_reload(addr, Some(&secret)).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("unchanged")));

    // A broken edit is refused: journalled with where it is, the old rules keep running.
    name_orders(&rules, r#"'"R3-" + order.number +'"#);
    let (status, body) = post_reload(addr, Some(&secret)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["outcome"], "refused");
    assert_eq!(body["version"], v2.as_str());
    let diags = body["diagnostics"].to_string();
    assert!(diags.contains("sync.yaml:146:"), "{diags}");
    assert_eq!(d.rules_version(), v2);
    let refused = journal(d)
        .into_iter()
        .find(|e| e.code == "RULES_REFUSED")
        .expect("a RULES_REFUSED entry");
    assert_eq!(refused.level, "error");
    assert!(refused.text.contains("sync.yaml:146:"), "{}", refused.text);
    new_order(lab, "RL-7002");
    d.cycle().await.expect("cycle");
    let names = ms_order_names(lab);
    assert!(names.contains(&"R2-RL-7002".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("R3-")), "{names:?}");

    // /status shows the live version, since when, and the refusal.
    let status: Value = reqwest::get(format!("http://{addr}/status/{secret}"))
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(status["rules_version"], v2.as_str());
    assert_eq!(status["rules_since"], d.rules_since());
    assert!(status["rules_refused"]["diagnostics"]
        .to_string()
        .contains("sync.yaml:146:"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_rule_file_is_reloaded_when_it_changes() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_copy(dir.path());
    let config = run_config(&lab, &rules, dir.path());
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replacen(
        "state:\n",
        "  watch: true\n  watch_debounce: 200ms\nstate:\n",
        1,
    );
    std::fs::write(&config, text).expect("config");
    let cfg = Config::load(&config).expect("config loads");
    let daemon = Daemon::new(cfg).await.expect("daemon");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.clone().run(async {
        let _ = rx.await;
    }));
    let v1 = daemon.rules_version();
    // The first pass is done (at the 2026 request weights it takes a while), then edit.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ms_order_names(&lab).contains(&"A-1002".to_string()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(daemon.rules_version(), v1, "nothing changed yet");
    name_orders(&rules, r#"'"W-" + order.number'"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.rules_version() == v1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(daemon.rules_version(), v1, "the edit was not reloaded");
    new_order(&lab, "RW-7003");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ms_order_names(&lab).contains(&"W-RW-7003".to_string()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        ms_order_names(&lab).contains(&"W-RW-7003".to_string()),
        "{:?} {:?}",
        ms_order_names(&lab),
        journal(&daemon)
    );
    let _ = tx.send(());
    running.await.expect("join").expect("daemon stops cleanly");
}

/// Runs the binary on a lab; SIGHUP after an edit reloads the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules_of_the_running_binary() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_copy(dir.path());
    let config = run_config(&lab, &rules, dir.path());
    // A known port, to read /status.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    std::fs::write(&config, text).expect("config");
    let secret = "reloadSECRET-0123456789abcdef";
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("SKLADSYNC_WEBHOOK_SECRET", secret)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start skladsync run");
    let status = |port: u16| async move {
        reqwest::get(format!("http://127.0.0.1:{port}/status/{secret}"))
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = None;
    while Instant::now() < deadline {
        if ms_order_names(&lab).contains(&"A-1001".to_string()) {
            first = status(port).await;
            if first.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v1 = first
        .as_ref()
        .and_then(|s| s["rules_version"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "the daemon did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });

    name_orders(&rules, r#"'"H-" + order.number'"#);
    let _ = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let mut v2 = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(s) = status(port).await {
            if s["rules_version"].as_str().is_some_and(|v| v != v1) {
                v2 = Some(s);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    new_order(&lab, "RH-7004");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ms_order_names(&lab).contains(&"H-RH-7004".to_string()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names = ms_order_names(&lab);
    let alive = child.try_wait().ok().flatten().is_none();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(alive, "SIGHUP must not stop the daemon:\n{logged}");
    let v2 = v2.unwrap_or_else(|| panic!("no new version after SIGHUP:\n{logged}"));
    let journal = v2["journal"].to_string();
    assert!(journal.contains("RULES_LOADED"), "{journal}");
    assert!(
        names.contains(&"H-RH-7004".to_string()),
        "{names:?}\n{logged}"
    );
    assert!(!logged.contains(secret), "the secret must not be logged");
    // --log-format json: every line is one JSON object.
    let lines: Vec<&str> = logged.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{logged}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("new rules loaded")),
        "the reload is logged: {logged}"
    );
}
