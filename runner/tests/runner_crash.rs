//! Crash safety: the `skladsync run` binary is SIGKILLed at random moments of a sync (more
//! than 20 times) while managers keep working in both systems, then run to the end. The
//! emulators must hold every change and no duplicate document.
//!
//! The emulators live in this test process; the runner is a child process talking to them
//! over loopback. Every request is slowed a little so that kills land in the middle of plans,
//! between a create and its link, during webhook delivery, between a history batch and its
//! cursor. Set `SKLADSYNC_CRASH_SEED` to replay a run.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_runner::demo::lab::{Lab, LabOptions};
use support::{duplicates, fixture_rules, order_by_number, use_backend, write_config, Backend};

/// xorshift64*: reproducible random delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start skladsync run")
}

fn state_ref(lab: &Lab, status: &str) -> Value {
    json!({"meta": {
        "href": format!("{}/entity/customerorder/metadata/states/{}", lab.ms.base_url(), lab.shop.states[status]),
        "type": "state", "mediaType": "application/json"}})
}

fn ms_order(lab: &Lab, number: &str) -> Option<Value> {
    lab.ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == number)
}

/// What the managers did, to be found in the other system at the end.
#[derive(Default)]
struct Expect {
    /// CRM order number → МойСклад state (by CRM status) set through CRM.
    ms_states: BTreeMap<String, String>,
    /// CRM order number → CRM status set through МойСклад.
    crm_statuses: BTreeMap<String, String>,
    /// Orders that must be in МойСклад.
    uploaded: Vec<String>,
    /// Incoming payment sums (kopecks) that must exist.
    payments: Vec<i64>,
}

/// Every expectation that does not hold yet.
fn unmet(lab: &Lab, e: &Expect) -> Vec<String> {
    let mut out = Vec::new();
    let orders = lab.ms.list("customerorder");
    let mut names: Vec<String> = orders
        .iter()
        .filter_map(|o| o["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    let mut want = e.uploaded.clone();
    want.sort();
    if names != want {
        out.push(format!("МойСклад orders {names:?}, want {want:?}"));
    }
    for (number, status) in &e.ms_states {
        let state = ms_order(lab, number)
            .and_then(|o| o["state"]["meta"]["href"].as_str().map(str::to_string))
            .unwrap_or_default();
        if !state.ends_with(&lab.shop.states[status]) {
            out.push(format!("{number}: МойСклад state is not {status}"));
        }
    }
    for (number, status) in &e.crm_statuses {
        let have = lab
            .crm
            .order(order_by_number(lab, number))
            .map(|o| o["status"].clone())
            .unwrap_or_default();
        if have != json!(status) {
            out.push(format!("{number}: CRM status {have}, want {status}"));
        }
    }
    let mut sums: Vec<i64> = lab
        .ms
        .list("paymentin")
        .iter()
        .filter_map(|p| p["sum"].as_f64())
        .map(|s| s.round() as i64)
        .collect();
    sums.sort_unstable();
    let mut want = e.payments.clone();
    want.sort_unstable();
    if sums != want {
        out.push(format!("payments {sums:?}, want {want:?}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_runner_at_random_points_loses_no_change_and_duplicates_nothing() {
    random_kills(Backend::Sled).await;
}

/// The same with the state in PostgreSQL: each new runner takes the pair's lease from the
/// one killed before it (gone: not waited out) and resumes its plans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_runner_with_the_state_in_postgresql_loses_nothing_and_duplicates_nothing() {
    random_kills(Backend::Postgres).await;
}

async fn random_kills(backend: Backend) {
    let seed = std::env::var("SKLADSYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
                | 1
        });
    eprintln!("SKLADSYNC_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let lab = Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    })
    .await
    .expect("lab");
    for faults in [lab.crm.faults(), lab.ms.faults()] {
        faults.add(FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(20),
        }));
    }
    let mut expect = Expect {
        uploaded: vec!["A-1001".into(), "A-1002".into()],
        // A-1002's sample payment, 32 899.50 ₽, in kopecks.
        payments: vec![3_289_950],
        ..Expect::default()
    };
    let manager = lab.crm.as_manager(12);
    let items = [
        ("chair01#red", 1),
        ("table-oak", 1),
        ("chair01#blue", 2),
        ("lamp-arc", 1),
    ];
    for i in 1..=8 {
        let (xml, qty) = items[i % items.len()];
        let mut order = json!({
            "number": format!("K-{i}"), "site": "shop-main", "status": "new",
            "firstName": format!("Клиент{i}"), "lastName": "Тестов",
            "phone": format!("+7901000000{i}"), "shipmentStore": "main",
            "items": [{"offer": {"xmlId": xml}, "quantity": qty}],
        });
        if i % 2 == 1 {
            order["payments"] = json!([{"type": "cash", "status": "paid", "amount": 100 + i}]);
            expect.payments.push((100 + i as i64) * 100);
        }
        manager.create_order(order).expect("order");
        expect.uploaded.push(format!("K-{i}"));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(&lab, &fixture_rules(), dir.path(), 200);
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{}", free_port()));
    std::fs::write(&config, text).expect("config");
    use_backend(&config, backend, "crash");
    let log = dir.path().join("runner.log");

    // Managers keep working while the runner is killed: a new CRM order, a CRM status change
    // (goes to МойСклад), a МойСклад state change (comes back to CRM), in turn. The two
    // directions act on different orders, so the last change of each order is well defined.
    let statuses = [
        "client-confirmed",
        "assembling",
        "send-to-delivery",
        "complete",
    ];
    let mut next_k = 9;
    let mut ms_edits = 0;
    let kills = 24;
    for i in 0..kills {
        let mut child = spawn(&config, &log);
        tokio::time::sleep(Duration::from_millis(rng.range(60, 1500))).await;
        let status = statuses[(i / 3) % statuses.len()];
        match i % 3 {
            0 => {
                // Two new orders at once: more plans for the kills to land in.
                for _ in 0..2 {
                    let number = format!("K-{next_k}");
                    let mut order = json!({
                        "number": number, "site": "shop-main", "status": "new",
                        "firstName": format!("Клиент{next_k}"), "lastName": "Поздний",
                        "phone": format!("+790200000{next_k:02}"), "shipmentStore": "main",
                        "items": [{"offer": {"xmlId": "lamp-arc"}, "quantity": 1}],
                    });
                    if next_k % 2 == 1 {
                        order["payments"] =
                            json!([{"type": "cash", "status": "paid", "amount": 200 + next_k}]);
                        expect.payments.push((200 + next_k as i64) * 100);
                    }
                    manager.create_order(order).expect("order");
                    expect.uploaded.push(number);
                    next_k += 1;
                }
            }
            1 => {
                // CRM → МойСклад on odd K orders.
                let number = format!("K-{}", 1 + 2 * ((i / 3) % 4));
                manager
                    .set_order_status(order_by_number(&lab, &number), status)
                    .expect("status");
                expect.ms_states.insert(number, status.to_string());
            }
            _ => {
                // МойСклад → CRM on A-1001, A-1002 and even K orders, once uploaded.
                // The next one in turn that is in МойСклад already (under load the runner,
                // killed every second or so, may not have uploaded the one in turn yet).
                let candidates = ["A-1001", "A-1002", "K-2", "K-4", "K-6", "K-8"];
                let found = (0..candidates.len())
                    .map(|k| candidates[(i / 3 + k) % candidates.len()])
                    .find_map(|number| {
                        ms_order(&lab, number)
                            .and_then(|o| o["id"].as_str().map(str::to_string))
                            .map(|id| (number, id))
                    });
                if let Some((number, id)) = found {
                    lab.ms
                        .update(
                            "customerorder",
                            &id,
                            json!({"state": state_ref(&lab, status)}),
                        )
                        .expect("state");
                    expect
                        .crm_statuses
                        .insert(number.to_string(), status.to_string());
                    ms_edits += 1;
                }
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    assert!(
        ms_edits >= 3 && expect.ms_states.len() >= 3,
        "too little manager work happened: {ms_edits} МойСклад edits, {} orders moved in CRM",
        expect.ms_states.len()
    );

    // Now let it finish, then stop it gracefully.
    let mut child = spawn(&config, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut left = unmet(&lab, &expect);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = unmet(&lab, &expect);
    }
    // A little longer: anything still queued would show as a duplicate now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    if !left.is_empty() {
        // Kept for a look: the whole log (and the sled state).
        eprintln!("the run's directory is kept: {}", dir.path().display());
        std::mem::forget(dir);
    }
    assert!(
        left.is_empty(),
        "lost changes after {kills} kills (seed {seed}): {left:?}\n--- log tail ---\n{}",
        log_text
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(status.success(), "graceful stop failed: {status:?}");
    let dups = duplicates(&lab);
    assert!(dups.is_empty(), "duplicates (seed {seed}): {dups:?}");
    assert!(unmet(&lab, &expect).is_empty());
    assert!(!log_text.contains("panicked"), "the runner panicked");
    let starts = log_text.matches("skladsync is running").count();
    let leases = log_text.matches("lease taken").count();
    if backend == Backend::Postgres {
        // Every runner that got to work held the pair's lease, and a killed one's lease
        // was taken over at once (the kills leave no time to wait a lease out).
        assert!(
            leases >= starts && starts > kills / 2,
            "{leases} leases, {starts} starts"
        );
        assert!(
            log_text.contains("the runner holding the lease is gone"),
            "no lease taken over from a killed runner"
        );
    } else {
        assert_eq!(leases, 0);
    }
    eprintln!(
        "{kills} kills; {} runner starts; {} interrupted plans resumed; {} creates with an unknown outcome found by key; documents {:?}",
        log_text.matches("skladsync is running").count(),
        log_text.matches("resuming an interrupted plan").count(),
        log_text.matches("found by its key").count(),
        support::document_counts(&lab)
    );
}

/// The same, under the default rules (`rules/`, demo shop settings): managers take orders,
/// move them on and take payments in CRM while the runner is killed; at the end every order
/// is in МойСклад once, in the state of its CRM status, with one payment document per CRM
/// payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_runner_under_the_default_rules_duplicates_nothing() {
    let seed = std::env::var("SKLADSYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
                | 1
        });
    eprintln!("SKLADSYNC_CRASH_SEED={seed}");
    let mut rng = Rng(seed ^ 0x5eed);
    let lab = Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    })
    .await
    .expect("lab");
    for faults in [lab.crm.faults(), lab.ms.faults()] {
        faults.add(FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(20),
        }));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = skladsync_runner::demo::rules_dir(Path::new("rules"));
    let settings = dir.path().join("settings.yaml");
    skladsync_runner::demo::write_settings(&rules, None, &lab, &settings).expect("settings");
    let config = dir.path().join("skladsync.yaml");
    let port = free_port();
    std::fs::write(
        &config,
        lab.config_yaml(
            &rules,
            &settings,
            &dir.path().join("state"),
            support::INTERVALS,
            200,
        )
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
            + "  secret: crash-test-secret\n",
    )
    .expect("config");
    let log = dir.path().join("runner.log");
    let manager = lab.crm.as_manager(12);
    let statuses = ["client-confirmed", "assembling", "send-to-delivery"];
    let mut numbers: Vec<String> = Vec::new();
    let kills = 21;
    for i in 0..kills {
        let mut child = spawn(&config, &log);
        tokio::time::sleep(Duration::from_millis(rng.range(60, 1500))).await;
        match i % 3 {
            0 => {
                let n = numbers.len() + 1;
                let number = format!("D-{n}");
                let mut order = json!({
                    "number": number, "externalId": number, "site": "shop-main", "status": "new",
                    "firstName": format!("Покупатель{n}"), "lastName": "Сбойный",
                    "phone": format!("+790300000{n:02}"), "shipmentStore": "main",
                    "items": [{"offer": {"xmlId": if n.is_multiple_of(2) { "chair01#blue" } else { "table-oak" }}, "quantity": 1}],
                });
                if n % 2 == 1 {
                    order["payments"] =
                        json!([{"type": "bank-card", "status": "paid", "amount": 1000 + n}]);
                }
                manager.create_order(order).expect("order");
                numbers.push(number);
            }
            1 => {
                let number = &numbers[(i / 3) % numbers.len()];
                manager
                    .set_order_status(order_by_number(&lab, number), statuses[(i / 3) % 3])
                    .expect("status");
            }
            _ => {
                let number = &numbers[(i / 3) % numbers.len()];
                manager
                    .add_payment(
                        order_by_number(&lab, number),
                        json!({"type": "cash", "status": "paid", "amount": 10 + i}),
                    )
                    .expect("payment");
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    // Run to the end: nothing waiting, and the systems unchanged for a while.
    let mut child = spawn(&config, &log);
    let status_url = format!("http://127.0.0.1:{port}/status/crash-test-secret");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet = 0;
    let mut last = Value::Null;
    let mut last_status = Value::Null;
    let mut status_errors = 0u32;
    let mut last_status_at = Instant::now();
    while Instant::now() < deadline && quiet < 6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answer = match reqwest::get(&status_url).await {
            Ok(r) => r.json::<Value>().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let waiting = match answer {
            // Stock passes come every second: only other work counts as waiting.
            Err(_) => {
                status_errors += 1;
                None
            }
            Ok(v) => Some(v).map(|v| {
                last_status = v.clone();
                last_status_at = Instant::now();
                let other: Vec<Value> = v["waiting"]
                    .as_array()
                    .map(|w| {
                        w.iter()
                            .filter(|i| i["subject"] != "stock")
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                json!(other)
            }),
        };
        let now = json!([
            support::document_counts(&lab),
            lab.crm
                .orders()
                .iter()
                .map(|o| o["status"].clone())
                .collect::<Vec<_>>()
        ]);
        if waiting == Some(json!([])) && now == last {
            quiet += 1;
        } else {
            quiet = 0;
        }
        last = now;
    }
    let exited_early = child.try_wait().ok().flatten();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().expect("wait");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    // What to read first when it does not settle: whether the runner still ran and answered,
    // its warnings and the end of its log; the waiting work last (it can be long).
    assert!(
        quiet >= 6,
        "did not settle (seed {seed}): runner exited before the end: {exited_early:?}; \
         {status_errors} status requests failed, the last answer came {:.1} s before the end\n\
         --- log tail ---\n{}\n--- waiting ---\n{:#}",
        last_status_at.elapsed().as_secs_f64(),
        log_text
            .lines()
            .rev()
            .filter(|l| !l.contains("CONFIG_READABLE") && !l.contains("readable by its group"))
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
        last_status["waiting"]
    );
    assert!(exit.success(), "graceful stop failed: {exit:?}");
    assert!(!log_text.contains("panicked"), "the runner panicked");
    let dups = duplicates(&lab);
    assert!(dups.is_empty(), "duplicates (seed {seed}): {dups:?}");

    let ms_orders = lab.ms.list("customerorder");
    let docs: Vec<Value> = lab
        .ms
        .list("paymentin")
        .into_iter()
        .chain(lab.ms.list("cashin"))
        .collect();
    for number in &numbers {
        let crm = lab.crm.order(order_by_number(&lab, number)).expect("order");
        let uploaded: Vec<&Value> = ms_orders.iter().filter(|o| o["name"] == *number).collect();
        assert_eq!(uploaded.len(), 1, "{number} in МойСклад (seed {seed})");
        let status = crm["status"].as_str().unwrap_or_default();
        assert!(
            uploaded[0]["state"]["meta"]["href"]
                .as_str()
                .is_some_and(|h| h.ends_with(&lab.shop.states[status])),
            "{number}: МойСклад state is not {status} (seed {seed})"
        );
        for p in lab.crm.payments(order_by_number(&lab, number)) {
            let id = p["id"].to_string();
            let found: Vec<&Value> = docs.iter().filter(|d| d["name"] == json!(id)).collect();
            assert_eq!(
                found.len(),
                1,
                "{number}: payment {id} has one document (seed {seed})"
            );
            assert_eq!(
                found[0]["sum"].as_f64().map(|s| s.round() as i64),
                p["amount"].as_f64().map(|a| (a * 100.0).round() as i64),
                "{number}: payment {id} amount"
            );
        }
    }
    eprintln!(
        "{kills} kills under the default rules; {} interrupted plans resumed; {} creates found by key; documents {:?}",
        log_text.matches("resuming an interrupted plan").count(),
        log_text.matches("found by its key").count(),
        support::document_counts(&lab)
    );
}
