//! A stock pass evaluated in parts (`limits.stock_part_rows`): each part is its own event,
//! evaluation and plan, applied before the next part's rows are built. Whatever fails on the
//! way (reading the reports, a lookup while a part is evaluated, an upload of the first, a
//! middle or the last part, its answer lost after the commit) the pass ends with every
//! matched offer's stock in retailCRM exactly as a pass in one part without faults leaves it:
//! nothing is skipped, a part may only be sent again.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use skladsync_emulators::faults::{Fault, FaultPlan, Trigger};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::INTERVALS;

const UPLOAD: &str = "/api/v5/store/inventories/upload";

/// Where a fault is injected.
#[derive(Clone, Copy, Debug)]
enum System {
    Crm,
    Ms,
}

/// What one pass left.
struct Outcome {
    /// Every offer's stock in retailCRM: `{xmlId: [[store, quantity, purchase price], …]}`.
    stock: Value,
    /// Inventory uploads retailCRM accepted.
    uploads: usize,
    /// The offers of each upload retailCRM accepted, in order.
    sent: Vec<Vec<String>>,
    /// How often the fault fired.
    fired: u64,
    /// The STOCK_UNMATCHED journal entries' subjects.
    unmatched: Vec<Value>,
    /// Items left in the inbox.
    waiting: usize,
}

fn stock_of(lab: &Lab) -> Value {
    let mut out = serde_json::Map::new();
    for o in lab.crm.offers() {
        let stores: Vec<Value> = o
            .stores
            .iter()
            .map(|(k, s)| json!([k, s.quantity, s.purchase_price]))
            .collect();
        out.insert(o.xml_id.clone().unwrap_or_default(), Value::from(stores));
    }
    Value::Object(out)
}

/// The lab (retailCRM knowing no stock yet) and a runner config for it with the default
/// rules, in parts of `part_rows` rows.
async fn lab(part_rows: usize, intervals: &str) -> (Lab, tempfile::TempDir, std::path::PathBuf) {
    let lab = Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    })
    .await
    .expect("lab");
    // retailCRM knows no stock before the pass: whatever the pass sends shows, and an offer
    // it skipped shows as empty.
    let mut crm = lab.crm.state();
    for o in &mut crm.offers {
        o.stores.clear();
    }
    lab.crm.load_state(crm);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, None, &lab, &settings).expect("settings");
    let config = dir.path().join("skladsync.yaml");
    let mut text = lab.config_yaml(&rules, &settings, &dir.path().join("state"), intervals, 100);
    // No CRM order is replayed: the stock in МойСклад stays as seeded.
    text = text.replace(
        "history_start: beginning",
        "history_start: \"2099-01-01 00:00:00\"",
    );
    text.push_str(&format!("limits:\n  stock_part_rows: {part_rows}\n"));
    std::fs::write(&config, text).expect("config");
    (lab, dir, config)
}

/// A full stock pass of the demo shop with the default rules, in parts of `part_rows` rows
/// (0: one part), with `fault` injected; run until nothing waits.
async fn pass(part_rows: usize, fault: Option<(System, FaultPlan)>) -> Outcome {
    let (lab, _dir, config) = lab(part_rows, INTERVALS).await;
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    daemon.start_up().await.expect("start up");
    daemon.drain().await.expect("start-up work");
    lab.crm.clear_requests();
    let plan = fault.map(|(system, plan)| match system {
        System::Crm => (lab.crm.faults(), lab.crm.faults().add(plan)),
        System::Ms => (lab.ms.faults(), lab.ms.faults().add(plan)),
    });
    daemon.queue_stock_pass(true).expect("stock pass");
    let mut waiting = usize::MAX;
    for _ in 0..200 {
        let _ = daemon.drain().await;
        waiting = daemon.state().inbox().expect("inbox").len();
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let uploads = lab
        .crm
        .requests()
        .iter()
        .filter(|r| r.path == UPLOAD && r.status == 200)
        .count();
    let unmatched = daemon
        .state()
        .journal_entries(daemon.journal_limits(), support::now())
        .expect("journal")
        .into_iter()
        .filter(|e| e.code == "STOCK_UNMATCHED")
        .map(|e| e.subject)
        .collect();
    Outcome {
        stock: stock_of(&lab),
        uploads,
        sent: accepted_uploads(&lab),
        fired: plan.map_or(0, |(f, id)| f.fired(id).unwrap_or(0)),
        unmatched,
        waiting,
    }
}

/// The `n`th matching request and the `times - 1` after it fail: more than the client's own
/// retries of one call, so the effect fails and its plan is put back (and resumed later).
fn from_nth(fault: Fault, prefix: &str, n: u64, times: u64) -> FaultPlan {
    FaultPlan::new(fault)
        .path_prefix(prefix)
        .trigger(Trigger::FromNth(n))
        .times(times)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_in_parts_sends_what_a_pass_in_one_part_sends_whatever_fails() {
    let whole = pass(0, None).await;
    assert_eq!(whole.waiting, 0);
    let offers = whole.stock.as_object().expect("offers");
    let sent = offers
        .values()
        .filter(|s| s.as_array().is_some_and(|s| !s.is_empty()))
        .count();
    assert!(
        sent >= 4,
        "the pass sends stock of several offers: {whole:?}",
        whole = whole.stock
    );
    assert_eq!(whole.uploads, 1, "a small pass in one part: one batch");
    assert_eq!(whole.unmatched, vec![json!({"stock": "unmatched"})]);

    // In parts of one row: the same stock, one batch per part with matched rows, and the
    // unmatched rows journalled per part.
    let parts = pass(1, None).await;
    assert_eq!(parts.waiting, 0);
    assert_eq!(
        parts.stock, whole.stock,
        "a pass in parts sends the same stock"
    );
    let count = parts.uploads;
    assert!(count >= 3, "several parts, each its own upload: {count}");
    assert!(!parts.unmatched.is_empty());
    for s in &parts.unmatched {
        assert_eq!(s["stock"], "unmatched", "{s}");
        assert!(s["part"].as_i64().is_some(), "the part in the subject: {s}");
    }

    // Faults on the way: each ends as the pass without faults did.
    let bystore = "/api/remap/1.2/report/stock/bystore";
    let offers_read = "/api/v5/store/offers";
    // `again`: a part before the last failed for good (its plan put back and resumed), so the
    // parts after it are sent by the pass read again.
    let cases: Vec<(&str, System, FaultPlan, bool)> = vec![
        (
            "reading the by-store report",
            System::Ms,
            from_nth(Fault::ServerError { status: 500 }, bystore, 1, 6),
            false,
        ),
        (
            "reading the offers while the first part is evaluated",
            System::Crm,
            FaultPlan::new(Fault::ServerError { status: 500 })
                .path_prefix(offers_read)
                .trigger(Trigger::Always)
                .times(8),
            false,
        ),
        (
            "uploading the first part",
            System::Crm,
            from_nth(Fault::ServerError { status: 500 }, UPLOAD, 1, 6),
            true,
        ),
        (
            "uploading a middle part",
            System::Crm,
            from_nth(Fault::ServerError { status: 500 }, UPLOAD, 2, 6),
            true,
        ),
        (
            "uploading the last part",
            System::Crm,
            from_nth(Fault::DropConnection, UPLOAD, count as u64, 6),
            false,
        ),
        (
            "the answer to a middle part's upload lost after the commit",
            System::Crm,
            from_nth(Fault::CommitThenDrop, UPLOAD, 2, 3),
            true,
        ),
    ];
    for (what, system, plan, again) in cases {
        let faulty = pass(1, Some((system, plan))).await;
        eprintln!(
            "{what}: fired {}, {} uploads (a pass without faults: {count})",
            faulty.fired, faulty.uploads
        );
        assert!(faulty.fired > 0, "{what}: the fault never fired");
        assert_eq!(faulty.waiting, 0, "{what}: the pass did not end");
        assert_eq!(
            faulty.stock, whole.stock,
            "{what}: the stock in retailCRM is not what the pass without faults sent"
        );
        assert!(
            faulty.uploads >= count,
            "{what}: {} uploads, fewer than the {count} parts",
            faulty.uploads
        );
        if again {
            assert!(
                faulty.uploads > count,
                "{what}: the pass was not sent again after the part's plan was resumed"
            );
        }
    }
}

/// The runner stops while a part is being uploaded (`during`: the upload takes longer than
/// the grace a stop gives the effect in flight, so the part's plan stays recorded, as a crash
/// leaves it) or right after a part (the upload ends within the grace: the pass stops between
/// two parts, its item due again, as a crash there leaves it). A new runner on the same state,
/// which queues no pass of its own, finishes the pass: every matched offer's stock is sent.
async fn stopped_mid_pass(during: bool) {
    let expected = pass(0, None).await.stock;
    // One pass at start (the stock schedule's first, a full one) and none after it.
    let intervals = "{crm_poll: 300ms, reconcile: 300ms, stock: 1h, purchase_prices: 1h, \
                     retry_min: 50ms, retry_max: 500ms}";
    let (lab, _dir, config) = lab(1, intervals).await;
    let delay = if during { 3000 } else { 200 };
    let slow = lab.crm.faults().add(
        FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(delay),
        })
        .path_prefix(UPLOAD)
        .trigger(Trigger::FromNth(2))
        .times(1),
    );
    let first = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(first.run(async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while lab.crm.faults().fired(slow) != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second upload never came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the runner stops")
        .expect("run task")
        .expect("run");
    tokio::time::sleep(Duration::from_millis(delay + 200)).await;
    assert_ne!(
        stock_of(&lab),
        expected,
        "the pass was stopped before its last parts"
    );

    // A runner on the same state, with no stock schedule: only what the state holds runs.
    let second = loop {
        match Daemon::new(Config::load(&config).expect("config")).await {
            Ok(d) => break d,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the state does not open again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let held = second.state().inbox().expect("inbox");
    let stock_items: Vec<_> = held
        .iter()
        .filter(|(_, i)| matches!(i.work, skladsync_runner::state::Work::StockPass { .. }))
        .collect();
    assert_eq!(stock_items.len(), 1, "the pass is still queued: {held:?}");
    assert_eq!(
        stock_items[0].1.plan, during,
        "stopped during a part its plan is recorded; between parts none is"
    );
    second.start_up().await.expect("start up");
    for _ in 0..200 {
        let _ = second.drain().await;
        if second.state().inbox().expect("inbox").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(second.state().inbox().expect("inbox").is_empty());
    assert_eq!(
        stock_of(&lab),
        expected,
        "after the restart every matched offer's stock is sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_stopped_while_a_part_is_uploaded_is_finished_after_a_restart() {
    stopped_mid_pass(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_stopped_between_two_parts_is_finished_after_a_restart() {
    stopped_mid_pass(false).await;
}

/// The xmlIds of the offers an upload carried.
fn uploaded_offers(form: &[(String, String)]) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| k == "offers")
        .filter_map(|(_, v)| serde_json::from_str::<Value>(v).ok())
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .filter_map(|o| o["xmlId"].as_str().map(str::to_string))
        .collect()
}

/// The offers of each upload retailCRM accepted since its requests were last cleared, in
/// order (a refused upload never reaches its handler).
fn accepted_uploads(lab: &Lab) -> Vec<Vec<String>> {
    lab.crm
        .requests()
        .into_iter()
        .filter(|r| r.path == UPLOAD && r.status == 200)
        .map(|r| uploaded_offers(&r.form))
        .collect()
}

/// `text` as an `application/x-www-form-urlencoded` value encodes it.
fn form_encoded(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Drains `daemon` until nothing waits, or until `gave_up` `GAVE_UP`s are journalled (one
/// entry counts the repeats of its subject)
/// with the pass still waiting (a pass that would not end while a refusal lasts); at most
/// `secs` seconds. Returns the `GAVE_UP` entries' count and whether the inbox is empty.
async fn drain_until_done(daemon: &Daemon, gave_up: usize, secs: u64) -> (usize, bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let _ = daemon.drain().await;
        let empty = daemon.state().inbox().expect("inbox").is_empty();
        let given_up = daemon
            .state()
            .journal_entries(daemon.journal_limits(), support::now())
            .expect("journal")
            .iter()
            .filter(|e| e.code == "GAVE_UP")
            .map(|e| e.count as usize)
            .sum::<usize>();
        if empty || given_up >= gave_up || tokio::time::Instant::now() >= deadline {
            return (given_up, empty);
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// One middle part's upload is refused (a 400 the client does not retry) for as long as the
/// test says, whatever is sent around it. The part is given up after `MAX_ATTEMPTS`,
/// journalled (`GAVE_UP`, with the upload that never ran, and the problem); the pass read
/// again then goes on **after** the given-up part: the parts after it are sent while the
/// refusal still lasts, and the parts before it are not sent again. The refused part's rows
/// are not recorded as sent: the next changes pass tries them again (refused again, given up
/// again, nothing else sent), and once the refusal stops the next one sends them. Every
/// offer ends with the stock of the fault-free pass, and no offer is accepted twice. The
/// first pass is a changes pass (with nothing recorded as sent yet, every row) or a full pass.
async fn refused_for_good(full: bool) {
    let expected = pass(0, None).await.stock;
    // Which offer a middle part uploads: the second accepted upload of a fault-free pass in
    // parts of one row (the report's order does not change between two labs).
    let order = pass(1, None).await.sent;
    assert!(order.len() >= 4, "a pass in parts of one row: {order:?}");
    assert!(
        order.iter().all(|u| u.len() == 1),
        "one offer an upload: {order:?}"
    );
    let refused = order[1][0].clone();
    let after: Vec<String> = order[2..].iter().map(|u| u[0].clone()).collect();

    let (lab, _dir, config) = lab(1, INTERVALS).await;
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    daemon.start_up().await.expect("start up");
    daemon.drain().await.expect("start-up work");
    assert_ne!(stock_of(&lab), expected, "nothing is sent before the pass");
    lab.crm.clear_requests();
    let attempts = u64::from(skladsync_runner::daemon::MAX_ATTEMPTS);
    // Every upload of the refused offer, as long as the plan is in place.
    let needle = form_encoded(&format!("\"xmlId\":\"{refused}\""));
    let refusal = lab.crm.faults().add(
        FaultPlan::new(Fault::Refused { status: 400 })
            .path_prefix(UPLOAD)
            .body_contains(needle),
    );

    // The pass ends while the refusal lasts (before, the pass read again met the refused
    // part first again, was refused, given up and read again, and never ended: stop at a
    // second `GAVE_UP`). A full pass read again skips the parts before the given-up one too
    // (sent by this pass already).
    daemon.queue_stock_pass(full).expect("stock pass");
    let (given_up, ended) = drain_until_done(&daemon, 2, 120).await;
    let ok = accepted_uploads(&lab);
    eprintln!("accepted uploads: {ok:?}");
    assert_eq!(
        (given_up, ended),
        (1, true),
        "the pass ends after the refused part is given up once, the refusal lasting"
    );
    assert_eq!(
        lab.crm.faults().fired(refusal),
        Some(attempts),
        "every attempt at the part was refused, each once (the client does not retry a 400)"
    );
    // The parts after the refused one are sent while the refusal lasts; the part before it
    // once; the refused part not.
    let sent: Vec<String> = ok.iter().flatten().cloned().collect();
    assert_eq!(
        sent[0], order[0][0],
        "the part before the refused one first"
    );
    for offer in &after {
        assert!(
            sent.contains(offer),
            "{offer}, after the refused part, is sent while the refusal lasts: {ok:?}"
        );
    }
    assert!(!sent.contains(&refused), "the refused part: {ok:?}");
    let mut once = sent.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), sent.len(), "no offer is sent twice: {ok:?}");
    let now = stock_of(&lab);
    let (now_offers, want) = (
        now.as_object().expect("offers"),
        expected.as_object().expect("offers"),
    );
    for (offer, stock) in want {
        if *offer == refused {
            assert_eq!(
                now_offers[offer],
                json!([]),
                "the refused offer: nothing sent"
            );
        } else {
            assert_eq!(&now_offers[offer], stock, "{offer}: as the fault-free pass");
        }
    }

    // What the operator sees: the part given up, with the upload that never ran, and the
    // refusal as a problem.
    let journal = daemon
        .state()
        .journal_entries(daemon.journal_limits(), support::now())
        .expect("journal");
    let codes: Vec<&str> = journal.iter().map(|e| e.code.as_str()).collect();
    eprintln!("journal: {codes:?}");
    let gave_up: Vec<_> = journal.iter().filter(|e| e.code == "GAVE_UP").collect();
    assert_eq!(gave_up.len(), 1, "one part given up: {codes:?}");
    assert_eq!(gave_up[0].count, 1, "given up once");
    let problem: Vec<_> = journal
        .iter()
        .filter(|e| e.code == "CRM_API_ERROR")
        .collect();
    assert_eq!(problem.len(), 1, "the refusal as a problem: {codes:?}");
    let entry = gave_up[0];
    assert_eq!(entry.level, "error");
    assert!(
        entry.text.contains(&format!("after {attempts} attempts")),
        "{}",
        entry.text
    );
    let not_applied = entry.raw["not_applied"].as_array().expect("not_applied");
    assert!(
        !not_applied.is_empty()
            && not_applied
                .iter()
                .all(|e| e.as_str().is_some_and(|e| e.contains("inventories"))),
        "the part's upload never ran: {}",
        entry.raw
    );

    // The next changes pass, the refusal lasting: the refused part is tried again (its rows
    // were not recorded as sent), given up again, and nothing else is sent.
    lab.crm.clear_requests();
    daemon.queue_stock_pass(false).expect("stock pass");
    let (given_up, ended) = drain_until_done(&daemon, 3, 120).await;
    assert_eq!(
        (given_up, ended),
        (2, true),
        "the refused part given up again"
    );
    assert_eq!(lab.crm.faults().fired(refusal), Some(2 * attempts));
    assert_eq!(
        accepted_uploads(&lab),
        Vec::<Vec<String>>::new(),
        "nothing else is sent"
    );

    // The refusal stops: the next changes pass sends the refused part, and only it.
    assert!(lab.crm.faults().remove(refusal));
    lab.crm.clear_requests();
    daemon.queue_stock_pass(false).expect("stock pass");
    let (given_up, ended) = drain_until_done(&daemon, 3, 120).await;
    assert_eq!((given_up, ended), (2, true), "nothing more given up");
    assert_eq!(
        accepted_uploads(&lab),
        vec![vec![refused.clone()]],
        "the refused part, once"
    );
    assert_eq!(
        stock_of(&lab),
        expected,
        "every matched offer's stock is sent: nothing of any part is lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_refused_for_good_is_journalled_and_the_parts_after_it_are_sent_while_it_lasts() {
    refused_for_good(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_of_a_full_pass_refused_for_good_does_not_hold_the_parts_after_it() {
    refused_for_good(true).await;
}

/// Starts `skladsync run` on `config`, its log (stderr) appended to `log`.
fn spawn_runner(config: &Path, log: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    std::process::Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start skladsync run")
}

/// The `skladsync` binary is killed (SIGKILL, no stop) during a pass in parts: while a
/// part's upload is in flight (`during`), or right after a part's upload was accepted, the
/// next part's upload not sent yet. A new process on the same state (which queues a full pass
/// of its own at start) ends with every matched offer's stock in retailCRM as a pass without
/// faults sends it, and no part of a pass left behind in its state.
async fn killed_mid_pass(during: bool) {
    let expected = pass(0, None).await.stock;
    // One pass at start (the stock schedule's first, a full one) and none after it.
    let intervals = "{crm_poll: 300ms, reconcile: 300ms, stock: 1h, purchase_prices: 1h, \
                     retry_min: 50ms, retry_max: 500ms}";
    let (lab, dir, config) = lab(1, intervals).await;
    let log = dir.path().join("runner.log");
    // The upload the kill lands in (during), or the one after the kill (right after a part):
    // slow, so that the pass cannot have ended when the process is killed.
    let slow = lab.crm.faults().add(
        FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(3000),
        })
        .path_prefix(UPLOAD)
        .trigger(Trigger::FromNth(if during { 2 } else { 3 }))
        .times(1),
    );
    let accepted = |lab: &Lab| {
        lab.crm
            .requests()
            .iter()
            .filter(|r| r.path == UPLOAD && r.status == 200)
            .count()
    };
    let mut child = spawn_runner(&config, &log);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let ready = if during {
            lab.crm.faults().fired(slow) == Some(1)
        } else {
            accepted(&lab) >= 2
        };
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pass never got there; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let before = accepted(&lab);
    assert!(
        before <= 2,
        "killed within the first parts: {before} uploads accepted"
    );
    assert_ne!(
        stock_of(&lab),
        expected,
        "the pass was killed before its last parts"
    );

    // A new process on the same state.
    let mut child = spawn_runner(&config, &log);
    while stock_of(&lab) != expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer: whatever is still queued runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "the runner stops cleanly: {status}\n{log_text}"
    );
    assert_eq!(
        stock_of(&lab),
        expected,
        "after the restart every matched offer's stock is sent; log:\n{log_text}"
    );
    assert!(
        accepted(&lab) > before,
        "the restarted runner sent the parts"
    );
    // The state is whole: a runner on it (stopped above maybe in the middle of the pass read
    // again) ends whatever it holds, and the stock stays as sent.
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("the state opens");
    daemon.start_up().await.expect("start up");
    let mut waiting = usize::MAX;
    for _ in 0..300 {
        let _ = daemon.drain().await;
        waiting = daemon.state().inbox().expect("inbox").len();
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(waiting, 0, "{:?}", daemon.state().inbox());
    assert_eq!(stock_of(&lab), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_killed_while_a_part_is_uploaded_ends_with_every_part_sent() {
    killed_mid_pass(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_killed_between_two_parts_ends_with_every_part_sent() {
    killed_mid_pass(false).await;
}
