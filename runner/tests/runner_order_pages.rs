//! Full CRM orders read in pages, and lookups gathered across them (issue 13): a backlog of
//! new orders is read from retailCRM with `GET /orders?filter[ids][]=…` for the orders waiting
//! in the inbox, not one `GET /orders/{id}` each; the МойСклад lookups the rules make with a
//! value of the order (here the relink lookup of the order by `externalCode`) are asked for
//! the waiting orders in one filtered request; every order is still uploaded once.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;

use serde_json::json;
use skladsync_emulators::retailcrm::Seed;
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::{duplicates, INTERVALS};

const ORDERS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_orders_are_read_in_pages_and_all_uploaded_once() {
    let lab = Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    })
    .await
    .expect("lab");
    let orders: Vec<_> = (0..ORDERS)
        .map(|n| {
            json!({"externalId": format!("P-{n}"), "number": format!("P-{n}"), "site": "shop-main",
                   "orderMethod": "shopping-cart", "statusPath": ["new"],
                   "customer": {"externalId": "cp-8812"},
                   "firstName": "Иван", "lastName": "Петров", "phone": "+79001234567",
                   "shipmentStore": "main",
                   "items": [{"offer": {"xmlId": "table-oak"}, "quantity": 1}]})
        })
        .collect();
    lab.crm
        .seed(&Seed {
            orders,
            ..Seed::default()
        })
        .expect("seed");
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
    lab.crm.clear_requests();
    lab.ms.clear_requests();
    daemon.cycle().await.expect("cycle");
    lab.ms
        .wait_for_webhooks(std::time::Duration::from_secs(10))
        .await;
    daemon.drain().await.expect("drain");

    let in_ms = lab.ms.list("customerorder");
    for n in 0..ORDERS {
        let name = format!("P-{n}");
        assert_eq!(
            in_ms.iter().filter(|o| o["name"] == name.as_str()).count(),
            1,
            "{name} is in МойСклад once"
        );
    }
    assert!(duplicates(&lab).is_empty(), "{:?}", duplicates(&lab));
    let requests = lab.crm.requests();
    let one_by_one = requests
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .strip_prefix("/api/v5/orders/")
                    .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    let pages = requests
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path == "/api/v5/orders"
                && r.query.iter().any(|(k, _)| k.starts_with("filter[ids]"))
        })
        .count();
    let total = ORDERS + lab.crm_seed.orders.len();
    assert!(pages >= 1, "the waiting orders were read in a page");
    assert!(
        one_by_one + pages < total / 2,
        "{one_by_one} orders read one by one and {pages} pages for {total} orders"
    );

    // The relink lookups (`customerorder?filter=externalCode=<CRM id>`): gathered.
    let by_code: Vec<usize> = lab
        .ms
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/entity/customerorder"))
        .filter_map(|r| {
            let q = r.query.as_deref()?;
            let n = q.matches("externalCode").count();
            (n > 0).then_some(n)
        })
        .collect();
    let single = by_code.iter().filter(|n| **n == 1).count();
    assert!(
        by_code.iter().any(|n| *n > 1),
        "some request asked several orders at once: {by_code:?}"
    );
    assert!(
        single < ORDERS / 2,
        "{single} relink lookups of one order each for {total} orders: {by_code:?}"
    );
}
