//! An order flows CRM → МойСклад → status back → stock back, through the daemon library,
//! against both emulators on loopback, with the test rule set in `fixtures/e2e/rules`.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use skladsync_runner::demo::lab::LabOptions;
use support::{order_by_number, start, start_on, Backend, Rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_flows_to_moysklad_and_status_shipment_and_stock_come_back() {
    order_flow(Backend::Sled).await;
}

/// The same with the state in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_flows_to_moysklad_and_back_with_the_state_in_postgresql() {
    order_flow(Backend::Postgres).await;
}

async fn order_flow(backend: Backend) {
    let rig: Rig = start_on(
        support::fixture_rules(),
        true,
        LabOptions::default(),
        backend,
    )
    .await;
    let lab = &rig.lab;
    let d = &rig.daemon;

    // 1. CRM → МойСклад: orders in mapped stores with matched items are uploaded.
    d.cycle().await.expect("first cycle");
    let orders = lab.ms.list("customerorder");
    let mut names: Vec<&str> = orders.iter().filter_map(|o| o["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["A-1001", "A-1002"],
        "only the orders that can be uploaded"
    );
    let a1001 = order_by_number(lab, "A-1001");
    let ms_a1001 = orders
        .iter()
        .find(|o| o["name"] == "A-1001")
        .cloned()
        .expect("A-1001 in МойСклад");
    // The counterparty already existed (same phone): it is reused, not duplicated.
    assert!(ms_a1001["agent"]["meta"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with(&lab.shop.known_counterparty)));
    assert_eq!(lab.ms.list("counterparty").len(), 1);
    let pos = &ms_a1001["positions"]["rows"][0];
    assert_eq!(pos["quantity"], json!(2.0));
    assert_eq!(pos["price"], json!(499000.0));
    assert!(pos["assortment"]["meta"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with(&lab.shop.assortment["chair01#red"])));
    // What could not be uploaded is journalled, with its code.
    let codes: Vec<String> = d
        .state()
        .journal_entries(d.journal_limits(), support::now())
        .expect("journal")
        .into_iter()
        .map(|e| e.code)
        .collect();
    for code in [
        "OFFER_NOT_MATCHED",
        "STORE_NOT_MAPPED",
        "CUSTOMER_NAME_EMPTY",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
    }

    // 2. A manager moves the order on in МойСклад: the webhook brings the status back.
    let ms_id = ms_a1001["id"].as_str().expect("id").to_string();
    let confirmed = lab.shop.states["client-confirmed"].clone();
    lab.ms
        .update(
            "customerorder",
            &ms_id,
            json!({"state": {"meta": {
                "href": format!("{}/entity/customerorder/metadata/states/{confirmed}", lab.ms.base_url()),
                "type": "state", "mediaType": "application/json"}}}),
        )
        .expect("state change in МойСклад");
    rig.settle().await;
    let crm_order = lab.crm.order(a1001).expect("A-1001 in CRM");
    assert_eq!(crm_order["status"], "client-confirmed");

    // 3. A demand is made for A-1002 in МойСклад: the CRM order is marked shipped.
    let ms_a1002 = lab
        .ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == "A-1002")
        .expect("A-1002 in МойСклад");
    let a1002 = order_by_number(lab, "A-1002");
    let positions: Vec<Value> = ms_a1002["positions"]["rows"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| json!({"quantity": p["quantity"], "price": p["price"], "assortment": p["assortment"]}))
        .collect();
    lab.ms
        .create(
            "demand",
            json!({
                "organization": ms_a1002["organization"], "agent": ms_a1002["agent"],
                "store": ms_a1002["store"], "customerOrder": {"meta": ms_a1002["meta"]},
                "applicable": true, "positions": positions,
            }),
        )
        .expect("demand in МойСклад");
    rig.settle().await;
    assert_eq!(
        lab.crm.order(a1002).expect("A-1002")["shipped"],
        json!(true)
    );

    // 4. The stock pass sends what МойСклад has (the demand took one table) to CRM.
    d.queue_stock_pass(true).expect("queue");
    d.drain().await.expect("stock pass");
    let table = lab.crm.offer_by_xml_id("table-oak").expect("offer");
    assert_eq!(table.stores["main"].quantity, 3.0);
    assert_eq!(table.stores["main"].purchase_price, Some(14000.0));
    let red = lab.crm.offer_by_xml_id("chair01#red").expect("offer");
    assert_eq!(red.stores["main"].quantity, 15.0);
    assert_eq!(red.stores["shop-retail"].quantity, 3.0);

    // 5. A payment in CRM becomes an incoming payment in МойСклад.
    lab.crm
        .as_manager(12)
        .add_payment(
            a1001,
            json!({"type": "cash", "status": "paid", "amount": 99.8}),
        )
        .expect("payment in CRM");
    d.cycle().await.expect("cycle");
    // A-1002 was paid before its upload: its payment went with it.
    let mut sums: Vec<f64> = lab
        .ms
        .list("paymentin")
        .iter()
        .filter_map(|p| p["sum"].as_f64())
        .collect();
    sums.sort_by(f64::total_cmp);
    // 32 899.50 ₽: fractional amounts go over in kopecks.
    assert_eq!(sums, [9980.0, 3289950.0]);

    // 6. Nothing is repeated: more cycles, another full stock pass, no new documents.
    let before = support::document_counts(lab);
    for _ in 0..2 {
        d.cycle().await.expect("cycle");
    }
    d.queue_stock_pass(true).expect("queue");
    d.drain().await.expect("drain");
    rig.settle().await;
    assert_eq!(support::document_counts(lab), before);
    assert_eq!(
        lab.crm.order(a1001).expect("A-1001")["status"],
        "client-confirmed"
    );
    assert!(d.state().inbox().expect("inbox").is_empty());

    // Operators read the journal and the waiting work on the secret status path.
    let secret = d
        .state()
        .misc("webhook_secret")
        .expect("state")
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("a webhook secret was made");
    let addr = d.receiver_addr().expect("receiver");
    let status: Value = reqwest::get(format!("http://{addr}/status/{secret}"))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert!(status["journal"]
        .as_array()
        .is_some_and(|j| j.iter().any(|e| e["code"] == "STORE_NOT_MAPPED")));
    assert_eq!(status["waiting"], json!([]));
    let wrong = reqwest::get(format!("http://{addr}/status/not-the-secret"))
        .await
        .expect("status");
    assert_eq!(wrong.status(), 404);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_webhook_is_caught_by_the_reconciliation_poll() {
    let rig = start(support::fixture_rules(), false).await;
    let lab = &rig.lab;
    let d = &rig.daemon;
    d.cycle().await.expect("first cycle");
    let ms_a1001 = lab
        .ms
        .list("customerorder")
        .into_iter()
        .find(|o| o["name"] == "A-1001")
        .expect("A-1001");
    // The receiver is not running: the notification is dropped after its retries.
    let state = lab.shop.states["assembling"].clone();
    lab.ms
        .update(
            "customerorder",
            ms_a1001["id"].as_str().expect("id"),
            json!({"state": {"meta": {
                "href": format!("{}/entity/customerorder/metadata/states/{state}", lab.ms.base_url()),
                "type": "state", "mediaType": "application/json"}}}),
        )
        .expect("update");
    lab.ms.wait_for_webhooks(Duration::from_secs(10)).await;
    assert!(lab.ms.webhook_deliveries().iter().all(|w| !w.delivered));
    // The next reconciliation poll sees the change.
    d.cycle().await.expect("cycle");
    let a1001 = order_by_number(lab, "A-1001");
    assert_eq!(lab.crm.order(a1001).expect("order")["status"], "assembling");
    rig.stop().await;
}

/// A daemon whose lease on the pair is taken over stops working on it: `run` ends with
/// `LeaseLost`, nothing more is written, and the queued work stays in the database for the
/// runner that holds the pair now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_loses_its_lease_stops_and_leaves_its_queue() {
    let rig: Rig = start_on(
        support::fixture_rules(),
        false,
        LabOptions::default(),
        Backend::Postgres,
    )
    .await;
    let d = rig.daemon.clone();
    let config = skladsync_runner::config::Config::load(&rig.dir.path().join("skladsync.yaml"))
        .expect("config");
    let url = config.state.url.expose().to_string();
    // Work waiting, a plan not started: far in the future, so nobody takes it.
    let queued = d
        .state()
        .enqueue_all(
            // A problem: never merged with other work (a stock pass would be).
            vec![skladsync_runner::state::Work::Problem {
                problem: json!({"code": "TEST", "text": "waits an hour"}),
            }],
            support::now() + 3_600_000,
        )
        .expect("enqueue");
    let running = tokio::spawn(d.clone().run(std::future::pending()));
    // Running: its status file is written once its tasks are up.
    let status = skladsync_runner::daemon::status_file(&config.state.path);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !status.exists() {
        assert!(std::time::Instant::now() < deadline, "the daemon never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another runner takes the pair over (this one stalled past its lease).
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(
            "update skladsync_leases set holder = 'another-runner', epoch = epoch + 1, \
             expires_at = now() + interval '1 hour'",
        )
        .await
        .expect("take over");
    let ended = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the daemon stopped within the lease time")
        .expect("task");
    assert!(
        matches!(ended, Err(skladsync_runner::daemon::DaemonError::LeaseLost)),
        "{ended:?}"
    );
    // Fenced: this runner's state refuses writes.
    assert!(matches!(
        d.state().set_cursor("x", &json!(1)),
        Err(skladsync_runner::state::StateError::LeaseLost { .. })
    ));
    // The queue is still there for the new holder.
    let other = skladsync_runner::state::SyncState::open_pg(
        &skladsync_runner::state::PgDatabase::connect(&url, 1).expect("db"),
        "default",
    )
    .expect("state");
    let seqs: Vec<u64> = other
        .inbox()
        .expect("inbox")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    for s in queued {
        assert!(seqs.contains(&s), "{s} in {seqs:?}");
    }
    rig.stop().await;
}
