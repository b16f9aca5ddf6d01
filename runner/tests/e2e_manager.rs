//! A manager's own retailCRM key: changes made with it are someone else's for the daemon
//! (`apiKey.current` is false for its key), so they reach МойСклад; the same kind of change
//! made with the daemon's own key is its echo and is left alone. The requests are the ones
//! `skladsync emulate` prints as `curl` lines.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;

use serde_json::Value;
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::examples::{examples, Body, Example, ORDER_HREF_VAR};
use skladsync_runner::demo::lab::{
    Lab, LabOptions, CRM_KEY, MS_MANAGER_LOGIN, MS_MANAGER_PASSWORD,
};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::{order_by_number, Rig, INTERVALS};
use tokio::sync::watch;

async fn start() -> Rig {
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
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    daemon.start_up().await.expect("start up");
    let (stop, rx) = watch::channel(false);
    let receiver = daemon.spawn_receiver(rx);
    Rig {
        lab,
        daemon,
        stop,
        receiver,
        dir,
    }
}

/// Sends an example as its `curl` line would; `order_href` fills [`ORDER_HREF_VAR`].
async fn send(ex: &Example, order_href: &str) -> (u16, Value) {
    let http = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(ex.method.as_bytes()).expect("method");
    let req = match (&ex.body, ex.crm_key) {
        (Body::Form(fields), key) => {
            let mut r = http.request(method, &ex.url).form(fields);
            if let Some(k) = key {
                r = r.header("X-API-KEY", k);
            }
            r
        }
        (Body::Json(v), _) => {
            let text = v.to_string().replace(ORDER_HREF_VAR, order_href);
            http.request(method, &ex.url)
                .basic_auth(MS_MANAGER_LOGIN, Some(MS_MANAGER_PASSWORD))
                .header("Content-Type", "application/json")
                .body(text)
        }
    };
    let resp = req.send().await.expect("response");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn ms_order(lab: &Lab, number: &str) -> Option<Value> {
    lab.ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == number)
}

fn ms_state_name(lab: &Lab, number: &str) -> String {
    let order = ms_order(lab, number).unwrap_or_else(|| panic!("{number} not in МойСклад"));
    let href = order["state"]["meta"]["href"].as_str().unwrap_or("");
    let id = href.rsplit('/').next().unwrap_or("");
    lab.shop.state_names.get(id).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_with_the_managers_key_reach_moysklad() {
    let rig = start().await;
    let lab = &rig.lab;
    let d = &rig.daemon;
    d.cycle().await.expect("first cycle");
    rig.settle().await;
    assert_eq!(ms_state_name(lab, "A-1001"), "Новый");
    let all = examples(lab);
    let by_title = |needle: &str| {
        all.iter()
            .find(|e| e.title.contains(needle))
            .unwrap_or_else(|| panic!("no example {needle}"))
    };

    // The daemon's own key: a status change it made itself is its echo, not synced.
    let mut own = by_title("«Комплектуется»").clone();
    own.crm_key = Some(CRM_KEY);
    if let Body::Form(fields) = &mut own.body {
        for (k, v) in fields.iter_mut() {
            if k == "order" {
                *v = r#"{"status":"client-confirmed"}"#.into();
            }
        }
    }
    let (status, body) = send(&own, "").await;
    assert_eq!(status, 200, "{body}");
    d.cycle().await.expect("cycle");
    rig.settle().await;
    assert_eq!(
        ms_state_name(lab, "A-1001"),
        "Новый",
        "the daemon's own change is its echo"
    );

    // The manager's key: a new order and a status change reach МойСклад.
    for needle in ["take an order", "«Комплектуется»", "payment"] {
        let (status, body) = send(by_title(needle), "").await;
        assert!(status == 200 || status == 201, "{needle}: {status} {body}");
    }
    d.cycle().await.expect("cycle");
    rig.settle().await;
    let m1 = ms_order(lab, "M-1").expect("the manager's order M-1 reached МойСклад");
    assert!(m1["positions"]["rows"][0]["assortment"]["meta"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with(&lab.shop.assortment["table-oak"])));
    assert_eq!(ms_state_name(lab, "A-1001"), "Комплектуется");

    // МойСклад: shipping A-1001 with the printed demand marks it shipped in CRM.
    let href = ms_order(lab, "A-1001").expect("A-1001")["meta"]["href"]
        .as_str()
        .expect("href")
        .to_string();
    let (status, body) = send(by_title("ship order A-1001"), &href).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(by_title("retail sale"), "").await;
    assert_eq!(status, 200, "{body}");
    rig.settle().await;
    d.cycle().await.expect("cycle");
    rig.settle().await;
    assert_eq!(
        lab.crm
            .order(order_by_number(lab, "A-1001"))
            .expect("order")["shipped"],
        Value::Bool(true)
    );
}

#[test]
fn the_printed_lines_are_curl_commands_with_the_managers_key() {
    // Built from a lab-independent shape: the titles and keys are fixed.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let lab = rt.block_on(Lab::start(LabOptions::default())).expect("lab");
    let all = examples(&lab);
    assert_eq!(all.len(), 5);
    for ex in &all[..3] {
        let line = ex.curl();
        assert!(line.starts_with("curl -s -X POST '"), "{line}");
        assert!(line.contains("-H 'X-API-KEY: manager-key'"), "{line}");
    }
    let ship = all[3].curl();
    assert!(ship.starts_with("ORDER=$(curl"), "{ship}");
    assert!(ship.contains(r#""href":"'"$ORDER"'""#), "{ship}");
    assert!(all[4]
        .curl()
        .contains("--compressed -u 'manager@emulator:manager-password'"));
}
