//! `skladsync run` with layers (`rules.layers` in the config): the daemon loads the layer
//! over the rules, and a changed layer is a change of the rules, so work parked under the
//! old rules is evaluated again.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;

use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};

const RULES: &str = r#"events:
  settings.saved:
    fields: {previous: previous settings}
rules:
  - id: boom
    on: settings.saved
    let:
      n: len(settings.items) - len(settings.items)
    do:
      - journal: {code: DONE, text: '"ten by n is " + string(10 / n)'}
"#;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_in_the_config_replaces_a_rule_and_unparks_its_work() {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    let layer = dir.path().join("mine");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::create_dir_all(&layer).expect("layer dir");
    std::fs::write(rules.join("rules.yaml"), RULES).expect("rules");
    // At first the layer changes nothing.
    std::fs::write(layer.join("mine.yaml"), "rules: []\n").expect("layer");
    let settings = dir.path().join("settings.yaml");
    std::fs::write(
        &settings,
        "items: [1]\nconnection: {moysklad_url: x, crm_url: y}\n",
    )
    .expect("settings");
    let mut text = lab.config_yaml(
        &rules,
        &settings,
        &dir.path().join("state"),
        support::INTERVALS,
        100,
    );
    text = text.replacen(
        "\nstate:\n",
        &format!(
            "\n  layers: [{}]\nstate:\n",
            serde_json::to_string(&layer.display().to_string()).expect("json")
        ),
        1,
    );
    text.push_str("  enabled: false\n");
    let config = dir.path().join("skladsync.yaml");
    std::fs::write(&config, text).expect("config");

    let d = daemon(&config).await;
    d.drain().await.expect("drain");
    assert_eq!(
        d.stats().parked,
        1,
        "the base rule fails and parks its item"
    );
    drop(d);

    // The layer replaces the failing rule: the rules changed, the item is evaluated again.
    std::fs::write(
        layer.join("mine.yaml"),
        "rules:\n  - id: boom\n    on: settings.saved\n    do:\n      - journal: {code: DONE, text: '\"fixed by the layer\"'}\n",
    )
    .expect("layer");
    let d = daemon(&config).await;
    assert_eq!(d.drain().await.expect("drain"), 1);
    assert!(d.state().inbox().expect("inbox").is_empty());
    assert!(codes(&d).contains(&"DONE".to_string()), "{:?}", codes(&d));
}
