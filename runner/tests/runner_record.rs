//! Record → replay: the daemon, with `record:` on, keeps every evaluation (event, what the
//! systems answered, the plan) as replayable cases; `skladsync test` replays them against
//! the rules as they are, `diff` shows what a rule change does to that traffic, and
//! `case new --from` makes a case file of one line. Personal data never reaches the disk.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::INTERVALS;

fn skladsync(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(args)
        .output()
        .expect("run skladsync");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// An effect creating a МойСклад order.
fn upload(e: &Value) -> bool {
    e["system"] == "moysklad" && e["entity"] == "customerorder" && e["op"] == "create"
}

fn recorded_lines(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("recordings folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|f| {
            std::fs::read_to_string(&f)
                .expect("read recording")
                .lines()
                .map(|l| (f.clone(), l.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_replays_the_daemons_plans_and_shows_what_a_rule_change_does() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, None, &lab, &settings).expect("settings");
    let rec = dir.path().join("recordings");
    let config = dir.path().join("skladsync.yaml");
    std::fs::write(
        &config,
        lab.config_yaml(&rules, &settings, &dir.path().join("state"), INTERVALS, 100)
            + &format!(
                "record:\n  enabled: true\n  dir: {}\n",
                serde_json::to_string(&rec.display().to_string()).expect("path")
            ),
    )
    .expect("config");
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    daemon.start_up().await.expect("start up");
    for _ in 0..3 {
        daemon.cycle().await.expect("cycle");
    }
    assert!(
        !lab.ms.list("customerorder").is_empty(),
        "the daemon uploaded nothing"
    );

    // What was recorded: one case a line, with the plan the daemon applied.
    let lines = recorded_lines(&rec);
    let events = daemon.stats().events;
    assert!(
        lines.len() >= 3,
        "{} lines recorded for events {events:?}",
        lines.len()
    );
    let mut uploads = 0;
    for (file, line) in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()));
        for key in ["doc", "event", "world", "settings", "expect"] {
            assert!(v.get(key).is_some(), "no `{key}` in {line}");
        }
        if v["expect"]["effects"]
            .as_array()
            .is_some_and(|e| e.iter().any(upload))
        {
            uploads += 1;
        }
    }
    assert!(uploads >= 1, "no recorded plan uploads an order");

    // No buyer's phone, e-mail or name reaches the disk.
    let all: String = lines.iter().map(|(_, l)| l.as_str()).collect();
    for o in lab.crm.orders() {
        for key in ["phone", "email", "lastName"] {
            if let Some(p) = o[key].as_str().filter(|p| p.len() > 3) {
                assert!(!all.contains(p), "{key} {p} is in the recording");
            }
        }
    }
    assert!(all.contains("redacted:"), "nothing was redacted");

    // Replayed against the rules as they are, every recording gives the plan the daemon made.
    let rules_s = rules.display().to_string();
    let settings_s = settings.display().to_string();
    let rec_s = rec.display().to_string();
    let (ok, out) = skladsync(&[
        "test",
        &rec_s,
        "--rules",
        &rules_s,
        "--settings",
        &settings_s,
        "--color",
        "never",
    ]);
    assert!(ok, "the replay failed:\n{out}");
    assert!(
        out.contains(&format!("{} passed", lines.len())),
        "not every line was replayed:\n{out}"
    );

    // A layer that turns the upload off: the replay says which live plans it would change,
    // `diff` shows the effects it removes.
    let layer = dir.path().join("layer");
    std::fs::create_dir_all(&layer).expect("layer");
    std::fs::write(layer.join("off.yaml"), "disable: [order.upload]\n").expect("layer file");
    let layer_s = layer.display().to_string();
    let (ok, out) = skladsync(&[
        "test",
        &rec_s,
        "--rules",
        &rules_s,
        "--settings",
        &settings_s,
        "--layer",
        &layer_s,
        "--color",
        "never",
    ]);
    assert!(!ok, "the replay did not notice the upload is off:\n{out}");
    assert!(out.contains("customerorder"), "{out}");
    // A settings change (only one status allows the first upload, and no order is in it):
    // `diff` against the recorded traffic shows the uploads it would remove.
    let mut changed: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&settings).expect("settings"))
            .expect("settings YAML");
    changed["mappings"]["upload_statuses"] =
        serde_yaml::from_str("[no-such-status]").expect("list");
    let settings2 = dir.path().join("settings-new.yaml");
    std::fs::write(&settings2, serde_yaml::to_string(&changed).expect("yaml")).expect("write");
    let (_, out) = skladsync(&[
        "diff",
        "--base",
        &rules_s,
        "--base-settings",
        &settings_s,
        "--corpus",
        &rec_s,
        "--rules",
        &rules_s,
        "--settings",
        &settings2.display().to_string(),
        "--color",
        "never",
    ]);
    assert!(
        out.contains("customerorder") && !out.contains("no plan changed"),
        "diff does not show the removed upload:\n{out}"
    );

    // One line as a case file, which passes as it is.
    let (path, upload_line) = lines
        .iter()
        .map(|(f, _)| f.clone())
        .find_map(|f| {
            let text = std::fs::read_to_string(&f).expect("read");
            text.lines()
                .position(|l| {
                    serde_json::from_str::<Value>(l).is_ok_and(|v| {
                        v["expect"]["effects"]
                            .as_array()
                            .is_some_and(|e| e.iter().any(upload))
                    })
                })
                .map(|i| (f.clone(), i + 1))
        })
        .expect("an upload line");
    let case = dir.path().join("cases").join("recorded_upload.yaml");
    let from = format!("{}:{upload_line}", path.display());
    let case_s = case.display().to_string();
    let (ok, out) = skladsync(&[
        "case",
        "new",
        &case_s,
        "--from",
        &from,
        "--rules",
        &rules_s,
        "--settings",
        &settings_s,
    ]);
    assert!(ok, "case new --from failed:\n{out}");
    let text = std::fs::read_to_string(&case).expect("case file");
    assert!(
        text.contains("expect:") && text.contains("world:"),
        "{text}"
    );
    let (ok, out) = skladsync(&[
        "test",
        &case_s,
        "--rules",
        &rules_s,
        "--settings",
        &settings_s,
        "--color",
        "never",
    ]);
    assert!(ok, "the case made from the recording fails:\n{out}");
    let (ok, out) = skladsync(&[
        "case",
        "new",
        &dir.path().join("x.yaml").display().to_string(),
        "--from",
        &format!("{}:999999", path.display()),
        "--rules",
        &rules_s,
    ]);
    assert!(!ok && out.contains("no recording on line 999999"), "{out}");
}
