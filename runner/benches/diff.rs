//! How long `skladsync diff` takes over 10 000 recorded events (the target: under 10 s on
//! 2 cores). The events are made deterministically from the repository's rule test cases
//! (`tests/cases`, else the shop example), each copy with its ids shifted so no two are the
//! same; both sides are evaluated, in parallel, as `skladsync diff` does.
//!
//! Run: `cargo bench -p skladsync-runner --bench diff`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use skladsync_engine::{Event, Value};
use skladsync_runner::tooling::corpus::{self, Item};
use skladsync_runner::tooling::dryrun;
use skladsync_runner::tooling::ruleload::{self, RuleTexts};

const EVENTS: usize = 10_000;

/// Shifts every id of an event document: numbers by `n * 1_000_000`, texts get `-n`.
fn shift_ids(v: &mut serde_json::Value, n: usize) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let is_id = k == "id" || k.ends_with("Id") || k.ends_with("_id");
                match child {
                    serde_json::Value::Number(num) if is_id => {
                        if let Some(i) = num.as_i64() {
                            *child = serde_json::json!(i + (n as i64) * 1_000_000);
                        }
                    }
                    serde_json::Value::String(s) if is_id => s.push_str(&format!("-{n}")),
                    _ => shift_ids(child, n),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| shift_ids(i, n)),
        _ => {}
    }
}

fn corpus(root: &Path) -> (PathBuf, Vec<Item>) {
    let default = root.join("tests/cases");
    let items = corpus::load(&default).unwrap_or_default();
    if !items.is_empty() {
        return (root.join("rules"), items);
    }
    let shop = root.join("tests/examples/shop");
    let items = corpus::load(&shop.join("cases")).expect("the shop cases load");
    (shop.join("rules"), items)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let (rules_dir, seeds) = corpus(&root);
    assert!(!seeds.is_empty(), "no cases to make events from");
    let settings = ["settings.yaml", "settings.example.yaml"]
        .iter()
        .map(|n| rules_dir.join(n))
        .find(|p| p.is_file())
        .map(|p| ruleload::read_settings(&p).expect("settings"));
    let texts = RuleTexts {
        files: ruleload::from_dir(&rules_dir, &rules_dir).expect("rules"),
        settings,
        layers: Vec::new(),
    };
    let base = texts.compile("base").expect("base rules");
    let current = texts.compile("current").expect("current rules");

    let mut items = Vec::with_capacity(EVENTS);
    for n in 0..EVENTS {
        let seed = &seeds[n % seeds.len()];
        let mut doc = seed.case.event_doc.to_serde_json();
        shift_ids(&mut doc, n);
        let mut case = seed.case.clone();
        case.event = Event::from_document(&Value::from_json(&doc)).expect("event");
        items.push(Item {
            name: format!("{}#{n}", seed.name),
            case,
        });
    }
    let threads = dryrun::default_threads();
    let start = Instant::now();
    let report = dryrun::run(&base, &current, &items, threads);
    let took = start.elapsed();
    println!(
        "diff: {} events from {} cases ({}), {} changed, {threads} thread(s): {:.2} s ({:.0} events/s)",
        report.events,
        seeds.len(),
        rules_dir.display(),
        report.changed,
        took.as_secs_f64(),
        report.events as f64 / took.as_secs_f64()
    );
}
