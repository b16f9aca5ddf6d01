//! CRM customers read in pages (issue 13): customers whose history the poll brings are read
//! with `GET /customers?filter[ids][]=…` for the customers waiting in the inbox, not one
//! `GET /customers/{id}` each (a status change of an order leaves customer history behind, so
//! a backlog of status changes used to cost a customer read each).

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;

use serde_json::json;
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions, CRM_MANAGER_KEY};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::INTERVALS;

const CUSTOMERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_customers_are_read_in_pages() {
    let lab = Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
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
        lab.config_yaml(&rules, &settings, &dir.path().join("state"), INTERVALS, 100),
    )
    .expect("config");
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    daemon.start_up().await.expect("start up");
    assert!(
        daemon.listens("crm.customer.changed"),
        "the default rules read the customers' history"
    );
    daemon.cycle().await.expect("cycle");
    lab.ms
        .wait_for_webhooks(std::time::Duration::from_secs(10))
        .await;
    daemon.drain().await.expect("drain");

    // A manager adds customers: their history waits for the next poll.
    let manager = lab.crm.as_api(CRM_MANAGER_KEY);
    let mut ids = Vec::new();
    for n in 0..CUSTOMERS {
        ids.push(
            manager
                .create_customer(json!({"externalId": format!("pg-{n}"), "site": "shop-main",
                    "firstName": format!("Клиент{n}"), "lastName": "Страничный",
                    "email": format!("pg{n}@pages.example.ru"),
                    "phones": [{"number": format!("+7951000000{n}")}]}))
                .expect("customer"),
        );
    }
    lab.crm.clear_requests();
    daemon.cycle().await.expect("cycle");

    let requests = lab.crm.requests();
    let one_by_one = requests
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .strip_prefix("/api/v5/customers/")
                    .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    let pages: Vec<Vec<String>> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v5/customers")
        .map(|r| {
            r.query
                .iter()
                .filter(|(k, _)| k.starts_with("filter[ids]"))
                .map(|(_, v)| v.clone())
                .collect()
        })
        .collect();
    let asked: Vec<&String> = pages.iter().flatten().collect();
    for id in &ids {
        assert!(
            asked.iter().any(|a| **a == id.to_string()),
            "customer {id} was read in a page: {pages:?}"
        );
    }
    assert!(
        one_by_one < CUSTOMERS / 2,
        "{one_by_one} customers read one by one, pages {pages:?}"
    );
}
