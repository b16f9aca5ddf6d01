//! The 2026 request budgets, end to end: a cold start and three daemon cycles with the default
//! rules and the sample shop, against a МойСклад emulator charging 4 units per request (45
//! units per 3 s, stock reports 5) and a retailCRM emulator allowing 10 requests per second.
//! The daemon must stay within both: no 429 from МойСклад, never more than 10 requests in one
//! second to retailCRM (counted by the emulator, refused requests included).

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;

use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::INTERVALS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_and_three_cycles_stay_within_the_2026_budgets() {
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
    daemon.start_up().await.expect("start up");
    for _ in 0..3 {
        daemon.cycle().await.expect("cycle");
        lab.ms
            .wait_for_webhooks(std::time::Duration::from_secs(10))
            .await;
        daemon.drain().await.expect("drain");
    }

    // The work was done (so the budgets were really exercised)…
    assert!(
        lab.ms
            .list("customerorder")
            .iter()
            .any(|o| o["name"] == "A-1001"),
        "the sample orders reached МойСклад"
    );
    let ms = lab.ms.requests();
    assert!(
        ms.len() > 11,
        "more requests than one window holds at weight 4: {}",
        ms.len()
    );
    // …within the budgets.
    let refused: Vec<_> = ms.iter().filter(|r| r.status == 429).collect();
    assert!(
        refused.is_empty(),
        "{} of {} МойСклад requests got 429: {refused:?}",
        refused.len(),
        ms.len()
    );
    assert_eq!(lab.crm.rate_limited(), 0, "retailCRM refused requests");
    assert!(
        lab.crm.peak_requests_per_second() <= 10,
        "retailCRM got {} requests in one second",
        lab.crm.peak_requests_per_second()
    );
}
