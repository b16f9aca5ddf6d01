//! Plan semantics through the daemon: an evaluation that fails in a way that repeats parks
//! its item until the rules change; a plan that cannot succeed ends in `GAVE_UP` naming the
//! effects that never ran; a stop ends a plan between two effects and the next start finishes
//! it, with nothing twice.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};

const EVENTS: &str = "events:\n  settings.saved:\n    fields: {previous: previous settings}\n";

/// A rules directory with `rules` (after the event declarations) and its settings; a config
/// for a daemon on `lab` without webhooks. Returns the config path.
fn setup(dir: &Path, lab: &Lab, rules: &str) -> PathBuf {
    let rdir = dir.join("rules");
    std::fs::create_dir_all(&rdir).expect("rules dir");
    std::fs::write(rdir.join("rules.yaml"), format!("{EVENTS}{rules}")).expect("rules");
    let settings = dir.join("settings.yaml");
    std::fs::write(
        &settings,
        "items: [1]\nconnection: {moysklad_url: x, crm_url: y}\n",
    )
    .expect("settings");
    let config = dir.join("skladsync.yaml");
    let mut text = lab.config_yaml(
        &rdir,
        &settings,
        &dir.join("state"),
        support::INTERVALS,
        100,
    );
    text.push_str("  enabled: false\n");
    std::fs::write(&config, text).expect("config");
    config
}

async fn daemon(config: &Path) -> Daemon {
    let d = Daemon::new(Config::load(config).expect("config"))
        .await
        .expect("daemon");
    d.start_up().await.expect("start up");
    d
}

fn codes(d: &Daemon) -> Vec<String> {
    d.state()
        .journal_entries(d.journal_limits(), support::now())
        .expect("journal")
        .into_iter()
        .map(|e| e.code)
        .collect()
}

const BOOM: &str = r#"rules:
  - id: boom
    on: settings.saved
    let:
      n: len(settings.items) - len(settings.items)
    do:
      - journal: {code: DONE, text: '"ten by n is " + string(10 / n)'}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_evaluation_parks_its_item_until_the_rules_change() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path(), &lab, BOOM);

    let d = daemon(&config).await;
    d.drain().await.expect("drain");
    let inbox = d.state().inbox().expect("inbox");
    assert_eq!(inbox.len(), 1, "the item stays: {inbox:?}");
    let parked = inbox[0].1.parked.clone().expect("parked");
    assert!(parked.reason.contains("by zero"), "{parked:?}");
    assert!(codes(&d).contains(&"PARKED".to_string()));
    assert_eq!(d.stats().parked, 1);
    // Parked work is not tried again by the next rounds …
    assert_eq!(d.drain().await.expect("drain"), 0);
    drop(d);

    // … nor by a restart with the same rules (the same settings.saved is merged into it) …
    let d = daemon(&config).await;
    assert_eq!(d.drain().await.expect("drain"), 0);
    assert_eq!(d.stats().parked, 0);
    assert_eq!(d.stats().events.values().sum::<u64>(), 0);
    drop(d);

    // … but once the rules change, it is evaluated again.
    std::fs::write(
        dir.path().join("rules/rules.yaml"),
        format!("{EVENTS}{}", BOOM.replace("10 / n", "10 / (n + 1)")),
    )
    .expect("fixed rules");
    let d = daemon(&config).await;
    assert_eq!(d.drain().await.expect("drain"), 1);
    assert!(d.state().inbox().expect("inbox").is_empty());
    assert!(codes(&d).contains(&"DONE".to_string()), "{:?}", codes(&d));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_plan_gives_up_and_names_the_effects_that_never_ran() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = r#"rules:
  - id: impossible
    on: settings.saved
    do:
      - journal: {code: BEFORE, text: '"first"'}
      - update: moysklad.customerorder
        id: first(slice(settings.items, 1))
        body: {description: '"x"'}
      - journal: {code: AFTER, text: '"never"'}
"#;
    let config = setup(dir.path(), &lab, rules);
    let d = daemon(&config).await;
    d.drain().await.expect("drain");
    assert!(d.state().inbox().expect("inbox").is_empty(), "given up");
    let journal = d
        .state()
        .journal_entries(d.journal_limits(), support::now())
        .expect("journal");
    let gave_up = journal
        .iter()
        .find(|e| e.code == "GAVE_UP")
        .unwrap_or_else(|| panic!("no GAVE_UP: {journal:?}"));
    let left = gave_up.raw["not_applied"].as_array().expect("not_applied");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left[0]
        .as_str()
        .is_some_and(|s| s.starts_with("update moysklad.customerorder")));
    assert!(left[1]
        .as_str()
        .is_some_and(|s| s.starts_with("journal AFTER")));
    assert!(
        gave_up.text.contains("2 effect(s) never ran"),
        "{}",
        gave_up.text
    );
    let codes: Vec<&str> = journal.iter().map(|e| e.code.as_str()).collect();
    assert!(
        codes.contains(&"BEFORE") && !codes.contains(&"AFTER"),
        "{codes:?}"
    );
    assert_eq!(d.stats().gave_up, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_a_plan_between_effects_and_the_next_start_finishes_it() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    // Every МойСклад request takes 40 ms: 60 creates take over two seconds.
    lab.ms.faults().add(
        FaultPlan::new(Fault::Latency {
            delay: Duration::from_millis(40),
        })
        .path_prefix("/api/remap/1.2/entity/product"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = r#"rules:
  - id: many
    on: settings.saved
    do:
      - for: i
        in: range(60)
        do:
          - create: moysklad.product
            key: '"stop-test-" + string(i)'
            body: {name: '"Stop test " + string(i)', externalCode: '"stop-test-" + string(i)'}
"#;
    let config = setup(dir.path(), &lab, rules);
    let count = || {
        lab.ms
            .list("product")
            .iter()
            .filter(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Stop test"))
            })
            .count()
    };
    {
        let d = Daemon::new(Config::load(&config).expect("config"))
            .await
            .expect("daemon");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(d.run(async {
            let _ = rx.await;
        }));
        // Stop once the plan is under way.
        let started = Instant::now();
        while count() < 5 && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let asked = Instant::now();
        let _ = tx.send(());
        run.await.expect("join").expect("run");
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(2), "the stop took {took:?}");
    }
    let made = count();
    assert!((5..60).contains(&made), "stopped mid-plan: {made} of 60");

    let d = daemon(&config).await;
    d.drain().await.expect("drain");
    assert_eq!(count(), 60, "the plan was finished");
    assert!(d
        .state()
        .inbox()
        .expect("inbox")
        .iter()
        .all(|(_, i)| !i.plan));
    assert!(support::duplicates(&lab).is_empty());
    let names: std::collections::BTreeSet<String> = lab
        .ms
        .list("product")
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("Stop test")).count(),
        60,
        "no product twice: {}",
        json!(names)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_rules_are_refused_at_evaluation_and_parked_not_crash_looped() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    // 100 000 journal effects, and a text doubled until it would be 10 GB.
    let rules = r#"rules:
  - id: fan_out
    on: settings.saved
    do:
      - for: i
        in: range(100000)
        do:
          - journal: {code: FAN, text: '"entry " + string(i)'}
  - id: string_bomb
    on: settings.saved
    let:
      s0: '"0123456789"'
      s1: s0 + s0 + s0 + s0 + s0 + s0 + s0 + s0 + s0 + s0
      s2: s1 + s1 + s1 + s1 + s1 + s1 + s1 + s1 + s1 + s1
      s3: s2 + s2 + s2 + s2 + s2 + s2 + s2 + s2 + s2 + s2
      s4: s3 + s3 + s3 + s3 + s3 + s3 + s3 + s3 + s3 + s3
      s5: s4 + s4 + s4 + s4 + s4 + s4 + s4 + s4 + s4 + s4
      s6: s5 + s5 + s5 + s5 + s5 + s5 + s5 + s5 + s5 + s5
      s7: s6 + s6 + s6 + s6 + s6 + s6 + s6 + s6 + s6 + s6
      s8: s7 + s7 + s7 + s7 + s7 + s7 + s7 + s7 + s7 + s7
      s9: s8 + s8 + s8 + s8 + s8 + s8 + s8 + s8 + s8 + s8
    do:
      - journal: {code: BOMB, text: 'string(len(s9))'}
"#;
    let config = setup(dir.path(), &lab, rules);
    let check = |d: &Daemon, rule: &str| {
        let item = d.state().inbox().expect("inbox");
        let parked = item[0].1.parked.clone().expect("parked");
        assert!(
            parked.reason.contains(rule) && parked.reason.contains("limits."),
            "the error names the rule and the limit to raise: {}",
            parked.reason
        );
    };
    let d = daemon(&config).await;
    d.drain().await.expect("the daemon stays up");
    check(&d, "fan_out");
    assert!(!codes(&d).iter().any(|c| c == "FAN"));
    drop(d);

    // With room for the fan-out, the bomb is what is refused: by its memory budget.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        format!("{text}limits:\n  max_effects: 200000\n  max_eval_bytes: 64MiB\n"),
    )
    .expect("config");
    let d = daemon(&config).await;
    d.drain().await.expect("the daemon stays up");
    check(&d, "string_bomb");
    assert!(codes(&d).contains(&"PARKED".to_string()));
}

#[test]
fn evaluation_limits_in_the_config_are_checked() {
    let base = "crm: {url: 'http://127.0.0.1:1', api_key: k}\nmoysklad: {url: 'http://127.0.0.1:2', token: t}\nstate: {path: s}\n";
    let load =
        |extra: &str| Config::from_yaml(&format!("{base}{extra}"), Path::new("/tmp"), &|_| None);
    let ok = load("limits: {max_effects: 500, max_eval_bytes: 256MiB}\n").expect("valid");
    assert_eq!(ok.limits.max_effects, 500);
    assert_eq!(ok.limits.max_eval_bytes.0, 256 << 20);
    let defaults = load("").expect("valid");
    assert_eq!(defaults.limits.max_effects, 10_000);
    // A stock pass in parts of 10 000 rows unless told; 0: the whole pass in one event.
    assert_eq!(defaults.limits.stock_part_rows, 10_000);
    let whole = load("limits: {stock_part_rows: 0}\n").expect("valid");
    assert_eq!(whole.limits.stock_part_rows, 0);
    let small = load("limits: {stock_part_rows: 250}\n").expect("valid");
    assert_eq!(small.limits.stock_part_rows, 250);
    for (bad, says) in [
        (
            "limits: {stock_part_rows: 20000000}\n",
            "limits.stock_part_rows (20000000) must be between 1 and 10000000 rows, or 0",
        ),
        ("limits: {stock_part_rows: -1}\n", "stock_part_rows"),
        ("limits: {stock_part_rows: lots}\n", "stock_part_rows"),
        ("limits: {max_effects: 0}\n", "limits.max_effects"),
        ("limits: {max_eval_bytes: 12}\n", "limits.max_eval_bytes"),
        ("limits: {max_eval_bytes: lots}\n", "not a size"),
        ("limits: {max_effect: 5}\n", "max_effect"),
    ] {
        let e = load(bad).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
}
