//! A plan that started applying is finished: a МойСклад retail sale becomes a CRM order with
//! its payment even when `orders/payments/create` fails once (500) or drops the connection
//! before anything is committed — the runner resumes the plan instead of evaluating the
//! event again (which would skip: the sale's link was written before the payment).

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::{duplicates, Rig, INTERVALS};
use tokio::sync::watch;

/// The demo shop's settings with retail on: sales of the shop's organization become orders
/// of `shop-main`, cash as `cash`, non-cash as `bank-card`, both `paid`.
fn retail_overlay() -> String {
    let demo = std::fs::read_to_string(Path::new("rules/settings.demo.yaml"))
        .or_else(|_| std::fs::read_to_string(Path::new("../rules/settings.demo.yaml")))
        .expect("demo settings");
    format!(
        "{demo}\nretail:\n  enabled: true\n  new_order_status: new\n  payment_type_cash: cash\n  \
         payment_type_noncash: bank-card\n  payment_status: paid\n  shops:\n    \"{{{{org}}}}\": shop-main\n"
    )
}

async fn start() -> Rig {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let overlay = dir.path().join("overlay.yaml");
    std::fs::write(&overlay, retail_overlay()).expect("overlay");
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, Some(&overlay), &lab, &settings).expect("settings");
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

fn meta(lab: &Lab, entity: &str, id: &str) -> Value {
    json!({"meta": {"href": format!("{}/entity/{entity}/{id}", lab.ms.base_url()),
                     "type": entity, "mediaType": "application/json"}})
}

/// A retail sale of one chair for 1 500 ₽ cash and 500 ₽ by card, at the retail store.
fn sell(lab: &Lab) -> String {
    let agent = lab.ms.list("counterparty")[0]["id"]
        .as_str()
        .expect("a counterparty")
        .to_string();
    let sale = lab
        .ms
        .create(
            "retaildemand",
            json!({
                "name": "R-7001",
                "organization": meta(lab, "organization", &lab.shop.organization),
                "store": meta(lab, "store", &lab.shop.stores["shop-retail"]),
                "agent": meta(lab, "counterparty", &agent),
                "applicable": true,
                "cashSum": 150000,
                "noCashSum": 50000,
                "positions": [{
                    "quantity": 1,
                    "price": 200000,
                    "assortment": meta(lab, "variant", &lab.shop.assortment["chair01#red"]),
                }],
            }),
        )
        .expect("retail sale");
    sale["id"].as_str().expect("id").to_string()
}

/// The CRM orders made from the sale, with their payments `(type, amount)`.
fn orders_of_sale(lab: &Lab, sale: &str) -> Vec<(i64, Vec<(String, f64)>)> {
    let ext = format!("ms-retaildemand-{sale}");
    lab.crm
        .orders()
        .iter()
        .filter(|o| o["externalId"] == ext.as_str())
        .map(|o| {
            let id = o["id"].as_i64().expect("id");
            let mut pays: Vec<(String, f64)> = lab
                .crm
                .all_payments()
                .into_iter()
                .filter(|(order, _)| *order == id)
                .map(|(_, p)| {
                    (
                        p["type"].as_str().unwrap_or_default().to_string(),
                        p["amount"].as_f64().unwrap_or_default(),
                    )
                })
                .collect();
            pays.sort_by(|a, b| a.0.cmp(&b.0));
            (id, pays)
        })
        .collect()
}

/// Runs the daemon until the sale's order holds both payments (or 15 s pass).
async fn until_paid(rig: &Rig, sale: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        rig.settle().await;
        let orders = orders_of_sale(&rig.lab, sale);
        if orders.len() == 1 && orders[0].1.len() == 2 {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

async fn sale_survives(fault: Fault, fails: bool) {
    let rig = start().await;
    let lab = &rig.lab;
    rig.daemon.cycle().await.expect("cycle");
    rig.settle().await;

    let plan = lab.crm.faults().add(
        FaultPlan::new(fault)
            .path_prefix("/api/v5/orders/payments/create")
            .times(1),
    );
    let sale = sell(lab);
    until_paid(&rig, &sale).await;

    assert_eq!(
        lab.crm.faults().fired(plan),
        Some(1),
        "the fault never fired"
    );
    let orders = orders_of_sale(lab, &sale);
    assert_eq!(orders.len(), 1, "one CRM order per sale: {orders:?}");
    assert_eq!(
        orders[0].1,
        vec![
            ("bank-card".to_string(), 500.0),
            ("cash".to_string(), 1500.0)
        ],
        "both payments of the sale, once each"
    );
    // The failure is visible, and nothing is waiting or given up any more.
    let journal = rig
        .daemon
        .state()
        .journal_entries(rig.daemon.journal_limits(), support::now())
        .expect("journal");
    // A lost answer is recovered at once by looking the payment up by its key; the others
    // fail the effect, which is journalled and resumed.
    assert_eq!(
        journal.iter().any(|e| e.code == "CRM_UNAVAILABLE"),
        fails,
        "the failed payment is journalled: {journal:?}"
    );
    assert!(!journal.iter().any(|e| e.code == "GAVE_UP"), "{journal:?}");
    // The sale's Moscow moment is two hours earlier than its CRM dates (Asia/Yekaterinburg).
    let moment = lab
        .ms
        .list("retaildemand")
        .into_iter()
        .find(|d| d["id"] == sale.as_str())
        .and_then(|d| d["moment"].as_str().map(|m| m[..19].to_string()))
        .expect("the sale's moment");
    let order = lab.crm.order(orders[0].0).expect("order");
    assert_eq!(
        order["createdAt"].as_str(),
        Some(support::shift(&moment, 2).as_str())
    );
    for (_, p) in lab
        .crm
        .all_payments()
        .into_iter()
        .filter(|(o, _)| *o == orders[0].0)
    {
        assert_eq!(
            p["paidAt"].as_str(),
            Some(support::shift(&moment, 2).as_str()),
            "{p}"
        );
    }
    assert!(duplicates(lab).is_empty(), "{:?}", duplicates(lab));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retail_sale_keeps_its_payment_when_the_payment_create_fails_once() {
    sale_survives(Fault::ServerError { status: 500 }, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retail_sale_keeps_its_payment_when_the_connection_drops_before_the_commit() {
    sale_survives(Fault::DropConnection, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retail_sale_keeps_its_payment_when_the_answer_is_lost_after_the_commit() {
    sale_survives(Fault::CommitThenDrop, false).await;
}
