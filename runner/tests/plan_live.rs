//! `skladsync plan --live --order N`: what the rules would do with a CRM order as it is now,
//! lookups answered by the (emulated) live APIs, nothing written to either system — with no
//! daemon running (this process opens the state), and through a running daemon (which holds
//! the state).

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::{order_by_number, INTERVALS};

fn plan_live(config: &Path, order: i64) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args([
            "plan",
            "--live",
            "--order",
            &order.to_string(),
            "--format",
            "json",
        ])
        .arg("--config")
        .arg(config)
        .output()
        .expect("run skladsync");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn uploads(plan: &Value) -> usize {
    plan["effects"].as_array().map_or(0, |e| {
        e.iter()
            .filter(|e| {
                e["op"] == "create" && e["system"] == "moysklad" && e["entity"] == "customerorder"
            })
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_dry_run_plans_an_order_and_writes_nothing() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, None, &lab, &settings).expect("settings");
    let config = dir.path().join("skladsync.yaml");
    std::fs::write(
        &config,
        lab.config_yaml(&rules, &settings, &dir.path().join("state"), INTERVALS, 100),
    )
    .expect("config");
    let order = order_by_number(&lab, "A-1001");
    let before = support::document_counts(&lab);
    let crm_before = lab.crm.order(order).expect("order");

    // No daemon: this process evaluates, with the config's credentials and state.
    let (ok, out, err) = plan_live(&config, order);
    assert!(ok, "plan --live failed:\n{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(plan["event"], "crm.order.changed");
    assert_eq!(uploads(&plan), 1, "the order's upload is planned: {out}");
    assert_eq!(
        support::document_counts(&lab),
        before,
        "something was written"
    );
    assert_eq!(lab.crm.order(order).expect("order"), crm_before);

    // An order that does not exist: a clear error.
    let (ok, _, err) = plan_live(&config, 999_999);
    assert!(!ok && err.contains("999999"), "{err}");

    // A running daemon holds the state: the dry run goes through it.
    let log = std::fs::File::create(dir.path().join("run.log")).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    let status_file = skladsync_runner::daemon::status_file(&dir.path().join("state"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !status_file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status_file.exists(), "the daemon did not start");
    let (ok, out, err) = plan_live(&config, order);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(ok, "plan --live through the daemon failed:\n{out}{err}");
    let plan: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(plan["event"], "crm.order.changed");
}
