//! Order work first (issue 13): a backlog of CRM orders waiting at start goes before the first
//! stock pass (heavy on both budgets), and the stock pass still runs once the orders are done.
//! The daemon runs as `skladsync run` would, against both emulators at the real limits.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use skladsync_runner::config::Config;
use skladsync_runner::daemon::{Daemon, ReloadOutcome};
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::INTERVALS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_waiting_at_start_go_before_the_first_stock_pass_which_still_runs() {
    let lab = Lab::start(LabOptions {
        crm_rate: Some(10),
        ms_limits: true,
        seed: true,
    })
    .await
    .expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, None, &lab, &settings).expect("settings");
    let config = dir.path().join("skladsync.yaml");
    std::fs::write(
        &config,
        lab.config_yaml(&rules, &settings, &dir.path().join("state"), INTERVALS, 10),
    )
    .expect("config");
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let d = daemon.clone();
    let task = tokio::spawn(async move {
        d.run(async {
            let _ = rx.await;
        })
        .await
    });

    // Until the stock pass has sent the stock to retailCRM and an order was written back
    // (bounded).
    let stock = |path: &str| path.contains("/store/");
    let write_back = |r: &skladsync_emulators::retailcrm::RecordedRequest| {
        r.method == "POST" && r.path.starts_with("/api/v5/orders/") && r.path.ends_with("/edit")
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let requests = lab.crm.requests();
        if requests
            .iter()
            .any(|r| r.path.ends_with("store/inventories/upload"))
            && requests.iter().any(write_back)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = tx.send(());
    task.await.expect("daemon task").expect("daemon run");

    let requests = lab.crm.requests();
    let first_stock = requests.iter().position(|r| stock(&r.path));
    let write_backs: Vec<usize> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| write_back(r))
        .map(|(i, _)| i)
        .collect();
    assert!(
        first_stock.is_some(),
        "the stock pass ran: {:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(
        !write_backs.is_empty(),
        "the orders waiting at start were written back"
    );
    assert!(
        lab.ms
            .list("customerorder")
            .iter()
            .any(|o| o["name"] == "A-1001"),
        "the sample orders reached МойСклад"
    );
    // The orders found by the first CRM poll were uploaded before the stock pass began.
    assert!(
        write_backs.iter().all(|i| Some(*i) < first_stock),
        "order write-backs at {write_backs:?}, the stock pass from {first_stock:?}"
    );
    assert_eq!(lab.crm.rate_limited(), 0, "retailCRM refused requests");
}

/// A stock pass runs in its own lane (issue 13, steady state): a CRM order that arrives while
/// a pass is in flight — here held up by a slow МойСклад stock report — reaches МойСклад
/// before the pass is done, and a reload waits for the pass in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_arriving_during_a_stock_pass_is_uploaded_before_the_pass_ends() {
    use skladsync_emulators::faults::{Fault, FaultPlan};

    let lab = Lab::start(LabOptions {
        crm_rate: Some(10),
        ms_limits: true,
        seed: true,
    })
    .await
    .expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, None, &lab, &settings).expect("settings");
    let config = dir.path().join("skladsync.yaml");
    std::fs::write(
        &config,
        lab.config_yaml(&rules, &settings, &dir.path().join("state"), INTERVALS, 10),
    )
    .expect("config");
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let d = daemon.clone();
    let task = tokio::spawn(async move {
        d.run(async {
            let _ = rx.await;
        })
        .await
    });
    let in_ms = |name: &str| {
        lab.ms
            .list("customerorder")
            .iter()
            .any(|o| o["name"] == name)
    };
    let reports = || {
        lab.ms
            .requests()
            .iter()
            .filter(|r| r.path.contains("report/stock"))
            .count()
    };

    // The start: the sample orders uploaded and a first stock pass done (bounded).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120)
        && !(in_ms("A-1001")
            && lab
                .crm
                .requests()
                .iter()
                .any(|r| r.path.ends_with("store/inventories/upload")))
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(in_ms("A-1001"), "the sample orders reached МойСклад");

    // The next stock report answers late: the pass that asks for it is held up in flight.
    let slow = lab.ms.faults().add(
        FaultPlan::new(Fault::Latency {
            delay: Duration::from_secs(15),
        })
        .path_prefix("/api/remap/1.2/report/stock")
        .times(1),
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60)
        && lab.ms.faults().fired(slow).unwrap_or(0) == 0
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        lab.ms.faults().fired(slow),
        Some(1),
        "a stock pass asked for a report"
    );
    // Every report asked for before has been answered (a pass reads them one at a time).
    let answered = reports();

    // A new order while the pass waits for its report.
    lab.crm
        .as_manager(12)
        .create_order(serde_json::json!({
            "number": "L-1", "externalId": "L-1", "site": "shop-main", "status": "new",
            "firstName": "Покупатель", "lastName": "Полосный",
            "phone": "+79040000999", "shipmentStore": "main",
            "items": [{"offer": {"xmlId": "table-oak"}, "quantity": 1}],
        }))
        .expect("create order");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) && !in_ms("L-1") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(in_ms("L-1"), "the new order reached МойСклад");
    assert_eq!(
        reports(),
        answered,
        "the new order reached МойСклад only after the stock pass's slow report was answered: \
         it waited behind the pass"
    );

    // A reload of changed settings waits for the pass in flight: once it is live, the slow
    // report has been answered (the pass in flight finished).
    std::fs::OpenOptions::new()
        .append(true)
        .open(&settings)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"\n# reloaded\n"))
        .expect("settings changed");
    let outcome = daemon.reload("test").await.expect("reload");
    assert!(
        matches!(outcome, ReloadOutcome::Loaded { .. }),
        "the changed settings were loaded: {outcome:?}"
    );
    assert!(
        reports() > answered,
        "the reload went live while the stock pass was still waiting for its report"
    );
    let _ = tx.send(());
    task.await.expect("daemon task").expect("daemon run");
    assert_eq!(lab.crm.rate_limited(), 0, "retailCRM refused requests");
}
