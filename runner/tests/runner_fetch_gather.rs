//! Fetches by id gathered across the waiting orders (issue 13): the later orders of known
//! customers read their counterparty by id (`fetch("moysklad", "counterparty", <the link's
//! id>)` in the default rules); the runner learns where that id comes from and asks the
//! counterparties of all the waiting orders in one `GET entity/counterparty?filter=id=…;id=…`,
//! instead of one `GET entity/counterparty/{id}` per order. Every order is still uploaded once,
//! and a gathered row is what a read by id returns.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;

use serde_json::{json, Value};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};
use skladsync_emulators::retailcrm::Seed;
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use skladsync_runner::world::lookups::ms_expand;
use skladsync_runner::world::prefetch::LookupPrefetch;
use support::{duplicates, INTERVALS};

const CUSTOMERS: usize = 6;
const LATER: usize = 12;

fn phone(c: usize) -> String {
    format!("+7900777{c:04}")
}

fn order(n: usize, c: usize) -> Value {
    json!({"externalId": format!("G-{n}"), "number": format!("G-{n}"), "site": "shop-main",
           "orderMethod": "shopping-cart", "statusPath": ["new"],
           "customer": {"externalId": format!("gc{c}")},
           "firstName": format!("Клиент{c}"), "lastName": "Тестов", "phone": phone(c),
           "email": format!("client{c}@gather.example.ru"), "shipmentStore": "main",
           "items": [{"offer": {"xmlId": "table-oak"}, "quantity": 1}]})
}

/// `GET entity/counterparty/{id}`: counterparties read one by one.
fn reads_by_id(lab: &Lab) -> usize {
    lab.ms
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .split_once("/entity/counterparty/")
                    .is_some_and(|(_, id)| !id.contains('/'))
        })
        .count()
}

/// The number of ids of each `GET entity/counterparty?filter=id=…` request.
fn gathered(lab: &Lab) -> Vec<usize> {
    lab.ms
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/entity/counterparty"))
        .filter_map(|r| {
            let q = r.query.as_deref()?;
            let n = q.matches("id%3D").count() + q.matches("id=").count();
            let n = n - q.matches("filter=").count().min(n);
            (n > 0).then_some(n)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counterparties_of_waiting_orders_are_read_in_one_request() {
    let lab = Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    })
    .await
    .expect("lab");
    let customers: Vec<Value> = (0..CUSTOMERS)
        .map(|c| {
            json!({"externalId": format!("gc{c}"), "site": "shop-main",
                   "firstName": format!("Клиент{c}"), "lastName": "Тестов",
                   "email": format!("client{c}@gather.example.ru"),
                   "phones": [{"number": phone(c)}]})
        })
        .collect();
    // First, one order per customer: their counterparties are made and linked.
    lab.crm
        .seed(&Seed {
            customers,
            orders: (0..CUSTOMERS).map(|c| order(c, c)).collect(),
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
    daemon.cycle().await.expect("cycle");
    lab.ms
        .wait_for_webhooks(std::time::Duration::from_secs(10))
        .await;
    daemon.drain().await.expect("drain");
    assert!(
        lab.ms.list("counterparty").len() >= CUSTOMERS,
        "the customers have counterparties"
    );

    // Then the later orders of those customers, waiting together.
    lab.crm
        .seed(&Seed {
            orders: (0..LATER)
                .map(|k| order(CUSTOMERS + k, k % CUSTOMERS))
                .collect(),
            ..Seed::default()
        })
        .expect("seed later orders");
    lab.crm.clear_requests();
    lab.ms.clear_requests();
    daemon.cycle().await.expect("cycle");
    lab.ms
        .wait_for_webhooks(std::time::Duration::from_secs(10))
        .await;
    daemon.drain().await.expect("drain");

    let in_ms = lab.ms.list("customerorder");
    for n in 0..CUSTOMERS + LATER {
        let name = format!("G-{n}");
        assert_eq!(
            in_ms.iter().filter(|o| o["name"] == name.as_str()).count(),
            1,
            "{name} is in МойСклад once"
        );
    }
    assert!(duplicates(&lab).is_empty(), "{:?}", duplicates(&lab));
    let one_by_one = reads_by_id(&lab);
    let batches = gathered(&lab);
    // One at a time, each of the later orders reads its customer's counterparty by id.
    assert!(
        batches.iter().any(|n| *n > 1),
        "the counterparties were asked together: {batches:?}"
    );
    assert!(
        one_by_one + batches.len() < LATER / 2,
        "{one_by_one} counterparties read one by one and {} gathered requests for {LATER} orders",
        batches.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gathered_row_is_what_a_read_by_id_returns() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let mut ids = Vec::new();
    for c in 0..3 {
        let cp = ms
            .seed(
                "counterparty",
                json!({"name": format!("Контрагент {c}"), "phone": phone(c)}),
            )
            .expect("counterparty");
        ids.push(cp["id"].as_str().expect("id").to_string());
    }
    let archived = ms
        .seed(
            "counterparty",
            json!({"name": "В архиве", "archived": true}),
        )
        .expect("archived counterparty");
    let archived = archived["id"].as_str().expect("id").to_string();
    let client = MoyskladClient::new(
        ClientConfig::new(Auth::basic("admin@emulator", "emulator-password"))
            .base_url(ms.base_url()),
    )
    .expect("client");
    let p = LookupPrefetch::default();
    let mut asked = ids.clone();
    asked.push(archived.clone());
    asked.push("00000000-0000-0000-0000-000000000000".into());
    asked.push("not-a-uuid".into());
    ms.clear_requests();
    let n = p
        .gather_fetches(&client, "counterparty", &asked)
        .await
        .expect("gathered");
    assert_eq!(ms.requests().len(), 1, "one request");
    // The archived one may be left out by a list; an unknown id is not "not found".
    assert!(n >= ids.len(), "{n}");
    assert!(p
        .fetched("counterparty", "00000000-0000-0000-0000-000000000000")
        .is_none());
    // Asking again for what was not found sends nothing.
    let n = p
        .gather_fetches(
            &client,
            "counterparty",
            &[
                archived.clone(),
                "00000000-0000-0000-0000-000000000000".into(),
            ],
        )
        .await
        .expect("gathered");
    assert_eq!((n, ms.requests().len()), (0, 1), "not asked again");
    for id in &ids {
        let by_id = client
            .get_opt("counterparty", id, &ms_expand("counterparty"))
            .await
            .expect("read")
            .expect("found");
        assert_eq!(p.fetched("counterparty", id), Some(by_id), "{id}");
    }
    // Our write drops what it may change.
    p.ms_wrote("counterparty", Some(&json!({"id": ids[0]})));
    assert!(p.fetched("counterparty", &ids[0]).is_none());
    assert!(p.fetched("counterparty", &ids[1]).is_some());
    p.ms_wrote("counterparty.accounts", Some(&json!({"id": "x"})));
    assert!(p.fetched("counterparty", &ids[1]).is_none());
}

#[tokio::test]
async fn an_id_filter_takes_only_equality() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let resp = reqwest::Client::new()
        .get(format!("{}/entity/counterparty", ms.base_url()))
        .query(&[("filter", "id~0000")])
        .basic_auth("admin@emulator", Some("emulator-password"))
        .header("Accept", "application/json;charset=utf-8")
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 412);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["errors"][0]["code"], 1034, "{body}");
}
