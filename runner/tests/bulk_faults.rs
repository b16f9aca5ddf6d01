//! Bulk creates under faults: the plans of several waiting orders are applied side by side and
//! their МойСклад creates go in bulk POSTs. A bulk POST that fails as a whole (5xx, or
//! committed and its answer lost), and one element refused inside a bulk answer, end in the
//! same state as the fault-free run: nothing missing, nothing twice.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_emulators::retailcrm::Seed;
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::{duplicates, Rig, INTERVALS};
use tokio::sync::watch;

/// New orders seeded on top of the sample shop's: two per customer, one customer already a
/// МойСклад counterparty, two not (their counterparty is created once, by whichever of their
/// orders comes first); and a seventh order from a fourth CRM customer with the phone and
/// e-mail of the second, whom the rules' search finds in МойСклад once the second's
/// counterparty exists (as when orders are processed one at a time).
const ORDERS: usize = 7;

async fn start() -> Rig {
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
    seed(&lab);
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

fn phone(c: usize) -> String {
    format!("+7900555{c:04}")
}

fn seed(lab: &Lab) {
    let offers: Vec<String> = lab
        .crm
        .offers()
        .iter()
        .filter_map(|o| o.xml_id.clone())
        .filter(|x| lab.shop.assortment.contains_key(x))
        .take(3)
        .collect();
    assert_eq!(offers.len(), 3, "the sample shop has offers");
    let mut customers = Vec::new();
    for k in 0..4 {
        // The fourth customer has the second's contacts.
        let c = if k == 3 { 1 } else { k };
        customers.push(
            json!({"externalId": format!("bulk{k}"), "site": "shop-main",
            "firstName": format!("Клиент{c}"), "lastName": "Пакетов",
            "email": format!("bulk{c}@example.ru"), "phones": [{"number": phone(c)}]}),
        );
        if c == 0 {
            lab.ms
                .seed(
                    "counterparty",
                    json!({"name": "Пакетов Клиент0", "companyType": "individual",
                           "phone": phone(0), "email": "bulk0@example.ru"}),
                )
                .expect("seed counterparty");
        }
    }
    let orders: Vec<Value> = (0..ORDERS)
        .map(|n| {
            let (k, c) = if n == 6 { (3, 1) } else { (n % 3, n % 3) };
            let items: Vec<Value> = offers
                .iter()
                .enumerate()
                .map(|(k, x)| json!({"offer": {"xmlId": x}, "quantity": 1 + k}))
                .collect();
            json!({"externalId": format!("P-{n}"), "number": format!("P-{n}"), "site": "shop-main",
                   "orderMethod": "shopping-cart", "statusPath": ["new"],
                   "customer": {"externalId": format!("bulk{k}")},
                   "firstName": format!("Клиент{c}"), "lastName": "Пакетов", "phone": phone(c),
                   "email": format!("bulk{c}@example.ru"), "shipmentStore": "main", "items": items})
        })
        .collect();
    lab.crm
        .seed(&Seed {
            customers,
            orders,
            ..Seed::default()
        })
        .expect("seed CRM orders");
}

/// What the two systems hold, МойСклад ids replaced by names.
fn normalized(lab: &Lab) -> Value {
    let cps: std::collections::BTreeMap<String, String> = lab
        .ms
        .list("counterparty")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_string(),
                c["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let agent = |o: &Value| {
        let href = o["agent"]["meta"]["href"].as_str().unwrap_or_default();
        let id = href.rsplit('/').next().unwrap_or_default();
        cps.get(id).cloned().unwrap_or_default()
    };
    let mut orders: Vec<Value> = lab
        .ms
        .list("customerorder")
        .iter()
        .map(|o| {
            json!({"name": o["name"], "agent": agent(o), "sum": o["sum"],
                   "positions": o["positions"]["rows"].as_array().map_or(0, Vec::len)})
        })
        .collect();
    orders.sort_by_key(|o| o["name"].to_string());
    let mut names: Vec<String> = cps.into_values().collect();
    names.sort();
    let mut linked: Vec<Value> = lab
        .crm
        .orders()
        .iter()
        .map(|o| {
            let ms = o["customFields"].as_object().is_some_and(|m| {
                m.iter().any(|(k, v)| {
                    k.starts_with("moysklad") && v.as_str().is_some_and(|s| !s.is_empty())
                })
            });
            json!([o["number"], ms])
        })
        .collect();
    linked.sort_by_key(Value::to_string);
    json!({"ms_orders": orders, "counterparties": names, "crm_linked": linked})
}

/// How many `POST entity/<entity>` МойСклад answered.
fn posts(lab: &Lab, entity: &str) -> usize {
    let path = format!("/api/remap/1.2/entity/{entity}");
    lab.ms
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .count()
}

/// The seeded orders (`P-…`) in МойСклад.
fn ms_orders(lab: &Lab) -> Vec<String> {
    lab.ms
        .list("customerorder")
        .iter()
        .filter_map(|o| o["name"].as_str().map(str::to_string))
        .filter(|n| n.starts_with("P-"))
        .collect()
}

enum Faulty {
    None,
    /// The first bulk POST of orders fails as a whole (503, past the client's retries); the
    /// first bulk POST of counterparties commits and loses its answer.
    Request,
    /// One order is refused inside the bulk answer once.
    Element,
}

async fn scenario(faulty: Faulty) -> (Value, Vec<String>, usize, usize) {
    let rig = start().await;
    let lab = &rig.lab;
    let expected = ORDERS;
    match faulty {
        Faulty::None => {}
        Faulty::Request => {
            lab.ms.faults().add(
                FaultPlan::new(Fault::ServerError { status: 503 })
                    .path_prefix("/api/remap/1.2/entity/customerorder")
                    .writes_only()
                    .times(12),
            );
            lab.ms.faults().add(
                FaultPlan::new(Fault::CommitThenDrop)
                    .path_prefix("/api/remap/1.2/entity/counterparty")
                    .writes_only()
                    .times(1),
            );
        }
        Faulty::Element => lab
            .ms
            .refuse_creates("customerorder", "name", json!("P-3"), 1),
    }
    rig.daemon.cycle().await.expect("cycle");
    rig.settle().await;
    if matches!(faulty, Faulty::Element) {
        assert_eq!(lab.ms.refusals_left(), 0, "the refusal did not fire");
    }
    let mut last = Value::Null;
    let mut quiet = 0;
    for _ in 0..200 {
        let _ = rig.daemon.cycle().await;
        rig.settle().await;
        let now = normalized(lab);
        let waiting = rig.daemon.state().inbox().expect("inbox").len();
        if now == last && waiting == 0 && ms_orders(lab).len() >= expected {
            quiet += 1;
            if quiet >= 2 {
                break;
            }
        } else {
            quiet = 0;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let injected = lab.ms.faults().injected();
    let order_posts = posts(lab, "customerorder");
    let dups = duplicates(lab);
    let state = normalized(lab);
    rig.stop().await;
    (
        state,
        dups,
        order_posts,
        usize::try_from(injected).unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_posts_under_faults_end_like_the_fault_free_run() {
    let (clean, dups, order_posts, _) = scenario(Faulty::None).await;
    assert!(dups.is_empty(), "{dups:?}");
    let orders = clean["ms_orders"].as_array().map_or(0, Vec::len);
    let seeded = clean["ms_orders"].as_array().map_or(0, |a| {
        a.iter()
            .filter(|o| o["name"].as_str().is_some_and(|n| n.starts_with("P-")))
            .count()
    });
    assert_eq!(seeded, ORDERS, "{clean}");
    // How many orders share a POST depends on timing (how many plans are being applied when
    // one reaches its create); `creates_side_by_side_go_in_one_bulk_post` shows the batching.
    assert!(
        order_posts <= orders,
        "{order_posts} POSTs for {orders} orders"
    );
    // One counterparty per customer, although two orders of each wanted it, and both of a
    // customer's orders name it.
    for c in 0..3 {
        let name = format!("Клиент{c}");
        let cps = clean["counterparties"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|n| n.as_str().is_some_and(|n| n.contains(&name)))
                .count()
        });
        assert_eq!(cps, 1, "{clean}");
        let agents = clean["ms_orders"].as_array().map_or(0, |a| {
            a.iter()
                .filter(|o| o["agent"].as_str().is_some_and(|n| n.contains(&name)))
                .count()
        });
        assert_eq!(agents, if c == 1 { 3 } else { 2 }, "{clean}");
    }
    let (faulty, dups, _, injected) = scenario(Faulty::Request).await;
    assert!(injected > 0, "no fault happened");
    assert!(
        dups.is_empty(),
        "duplicates after failed bulk POSTs: {dups:?}"
    );
    assert_eq!(faulty, clean, "failed bulk POSTs ended elsewhere");
    let (faulty, dups, _, _) = scenario(Faulty::Element).await;
    assert!(
        dups.is_empty(),
        "duplicates after a refused element: {dups:?}"
    );
    assert_eq!(faulty, clean, "a refused element ended elsewhere");
}

/// Updates of plans applied side by side go as elements of one bulk POST (with the entity's
/// `meta`), change what a PUT changes, and each gets its entity back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_side_by_side_go_in_one_bulk_post() {
    let rig = start().await;
    let lab = &rig.lab;
    rig.daemon.cycle().await.expect("cycle");
    rig.settle().await;
    let ids: Vec<String> = ms_orders_ids(lab);
    assert!(ids.len() >= 2);
    let ms = skladsync_runner::clients::moysklad::MoyskladClient::new(
        skladsync_runner::clients::moysklad::ClientConfig::new(
            skladsync_runner::clients::moysklad::Auth::basic(
                skladsync_runner::demo::lab::MS_LOGIN,
                skladsync_runner::demo::lab::MS_PASSWORD,
            ),
        )
        .base_url(lab.ms.base_url()),
    )
    .expect("client");
    lab.ms.clear_requests();
    let batcher = skladsync_runner::apply::batch::Batcher::default();
    // Two plans being applied.
    let (_a, _b) = (batcher.active(), batcher.active());
    let (x, y) = tokio::join!(
        batcher.update(
            &ms,
            "entity/customerorder",
            &ids[0],
            json!({"description": "bulk 0"})
        ),
        batcher.update(
            &ms,
            "entity/customerorder",
            &ids[1],
            json!({"description": "bulk 1"})
        ),
    );
    let x = x.expect("first update");
    let y = y.expect("second update");
    assert_eq!(
        (x["id"].as_str(), x["description"].as_str()),
        (Some(ids[0].as_str()), Some("bulk 0"))
    );
    assert_eq!(
        (y["id"].as_str(), y["description"].as_str()),
        (Some(ids[1].as_str()), Some("bulk 1"))
    );
    let writes: Vec<(String, String)> = lab
        .ms
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        writes,
        vec![(
            "POST".to_string(),
            "/api/remap/1.2/entity/customerorder".to_string()
        )]
    );
    for (id, d) in [(&ids[0], "bulk 0"), (&ids[1], "bulk 1")] {
        let o = lab
            .ms
            .list("customerorder")
            .into_iter()
            .find(|o| o["id"] == id.as_str())
            .expect("order");
        assert_eq!(o["description"], d);
    }
    assert_eq!(posts(lab, "counterparty"), 0);
    rig.stop().await;
}

fn ms_orders_ids(lab: &Lab) -> Vec<String> {
    lab.ms
        .list("customerorder")
        .iter()
        .filter(|o| o["name"].as_str().is_some_and(|n| n.starts_with("P-")))
        .filter_map(|o| o["id"].as_str().map(str::to_string))
        .collect()
}

/// Creates of plans applied side by side go in one bulk POST; an element МойСклад refuses
/// fails its own create only, the other is created; the same syncId twice is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_side_by_side_go_in_one_bulk_post() {
    use skladsync_runner::apply::batch::{BatchError, Batcher};
    let rig = start().await;
    let lab = &rig.lab;
    let ms = skladsync_runner::clients::moysklad::MoyskladClient::new(
        skladsync_runner::clients::moysklad::ClientConfig::new(
            skladsync_runner::clients::moysklad::Auth::basic(
                skladsync_runner::demo::lab::MS_LOGIN,
                skladsync_runner::demo::lab::MS_PASSWORD,
            ),
        )
        .base_url(lab.ms.base_url()),
    )
    .expect("client");
    lab.ms
        .refuse_creates("counterparty", "name", json!("Отказ"), 1);
    lab.ms.clear_requests();
    let batcher = Batcher::default();
    let (_a, _b, _c) = (batcher.active(), batcher.active(), batcher.active());
    let body = |name: &str, sync: &str| json!({"name": name, "syncId": sync});
    let (x, y, z) = tokio::join!(
        batcher.create(
            &ms,
            "entity/counterparty",
            body("Принят", "6b1d2a51-9c3e-4f0a-8d55-1e730c9f0001")
        ),
        batcher.create(
            &ms,
            "entity/counterparty",
            body("Отказ", "6b1d2a51-9c3e-4f0a-8d55-1e730c9f0002")
        ),
        batcher.create(
            &ms,
            "entity/counterparty",
            body("Принят", "6b1d2a51-9c3e-4f0a-8d55-1e730c9f0001")
        ),
    );
    let x = x.expect("the first element is created");
    let z = z.expect("the same syncId shares the answer");
    assert_eq!(x["id"], z["id"]);
    match y {
        Err(BatchError::Element(e)) => assert!(e.has_code(1999), "{e}"),
        other => panic!("the refused element: {other:?}"),
    }
    let writes: Vec<(String, u16)> = lab
        .ms
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(
        writes,
        vec![("/api/remap/1.2/entity/counterparty".to_string(), 200)],
        "one bulk POST, answered 200"
    );
    let named: Vec<Value> = lab
        .ms
        .list("counterparty")
        .into_iter()
        .filter(|c| c["name"] == "Принят" || c["name"] == "Отказ")
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
    rig.stop().await;
}
