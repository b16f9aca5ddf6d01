//! The default rules (`rules/`) through the daemon, against both emulators on loopback: an
//! order flows CRM → МойСклад, its state comes back, its shipment comes back, stock comes
//! back. Settings: the rules' example settings with the demo shop's mappings.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;

use serde_json::{json, Value};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::{document_counts, duplicates, order_by_number, use_backend, Backend, Rig, INTERVALS};
use tokio::sync::watch;

async fn start(backend: Backend) -> Rig {
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
    use_backend(&config, backend, "default_rules");
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    assert_eq!(daemon.state().pg().is_some(), backend == Backend::Postgres);
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

fn ms_order(lab: &Lab, number: &str) -> Value {
    lab.ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == number)
        .unwrap_or_else(|| panic!("{number} is not in МойСклад"))
}

fn state_ref(lab: &Lab, status: &str) -> Value {
    json!({"meta": {
        "href": format!("{}/entity/customerorder/metadata/states/{}", lab.ms.base_url(), lab.shop.states[status]),
        "type": "state", "mediaType": "application/json"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rules_sync_an_order_both_ways_and_stock_back() {
    both_ways(Backend::Sled).await;
}

/// The same with the state in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rules_sync_both_ways_with_the_state_in_postgresql() {
    both_ways(Backend::Postgres).await;
}

async fn both_ways(backend: Backend) {
    let rig = start(backend).await;
    let lab = &rig.lab;
    let d = &rig.daemon;

    // CRM → МойСклад.
    d.cycle().await.expect("cycle");
    rig.settle().await;
    let a1001 = ms_order(lab, "A-1001");
    // Dates agree: CRM writes the account's zone (Asia/Yekaterinburg, UTC+5), МойСклад Moscow
    // time (UTC+3), so the МойСклад moment is two hours before the CRM createdAt.
    assert_eq!(
        d.settings().get("connection").get("crm_timezone"),
        skladsync_engine::Value::from("Asia/Yekaterinburg")
    );
    let created = lab
        .crm
        .order(order_by_number(lab, "A-1001"))
        .expect("order")["createdAt"]
        .as_str()
        .expect("createdAt")
        .to_string();
    // (МойСклад keeps a document's moment to the minute.)
    assert_eq!(
        a1001["moment"].as_str().map(|m| m[..16].to_string()),
        Some(support::shift(&created, -2)[..16].to_string()),
        "CRM createdAt {created}"
    );
    let item = &a1001["positions"]["rows"][0];
    assert_eq!(item["quantity"].as_f64(), Some(2.0));
    assert!(item["assortment"]["meta"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with(&lab.shop.assortment["chair01#red"])));
    assert!(a1001["state"]["meta"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with(&lab.shop.states["new"])));

    // МойСклад → CRM: a state change (accept_ms_order_changes is on in the demo settings).
    lab.ms
        .update(
            "customerorder",
            a1001["id"].as_str().expect("id"),
            json!({"state": state_ref(lab, "assembling")}),
        )
        .expect("state");
    rig.settle().await;
    assert_eq!(
        lab.crm
            .order(order_by_number(lab, "A-1001"))
            .expect("order")["status"],
        "assembling"
    );

    // МойСклад → CRM: a shipment.
    let a1002 = ms_order(lab, "A-1002");
    let positions: Vec<Value> = a1002["positions"]["rows"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| json!({"quantity": p["quantity"], "price": p["price"], "assortment": p["assortment"]}))
        .collect();
    lab.ms
        .create(
            "demand",
            json!({"organization": a1002["organization"], "agent": a1002["agent"], "store": a1002["store"],
                   "customerOrder": {"meta": a1002["meta"]}, "applicable": true, "positions": positions}),
        )
        .expect("demand");
    rig.settle().await;
    assert_eq!(
        lab.crm
            .order(order_by_number(lab, "A-1002"))
            .expect("order")["shipped"],
        json!(true)
    );

    // МойСклад → CRM: stock of mapped stores is what МойСклад has available.
    d.queue_stock_pass(true).expect("queue");
    rig.settle().await;
    for (xml, store) in [
        ("table-oak", "main"),
        ("chair01#red", "main"),
        ("chair01#red", "shop-retail"),
    ] {
        let cell = lab
            .ms
            .stock(&lab.shop.stores[store], &lab.shop.assortment[xml]);
        let want = (cell.stock - cell.reserve).max(0.0);
        let offer = lab.crm.offer_by_xml_id(xml).expect("offer");
        assert_eq!(
            offer.stores.get(store).map(|s| s.quantity),
            Some(want),
            "{xml} at {store}: МойСклад {cell:?}"
        );
    }

    // Repeating changes nothing.
    let before = document_counts(lab);
    for _ in 0..2 {
        d.cycle().await.expect("cycle");
        rig.settle().await;
    }
    assert_eq!(document_counts(lab), before);
    assert!(duplicates(lab).is_empty(), "{:?}", duplicates(lab));
    rig.stop().await;
}
