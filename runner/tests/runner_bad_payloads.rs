//! What an API or a webhook sender gets wrong becomes a journal entry or a refusal, never a
//! panic: a CRM history page of the wrong shape, webhook bodies that are not JSON or name
//! nothing usable, orders whose answer does not read (read straight into engine values).

#[path = "fixtures/e2e/support.rs"]
mod support;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::shop::render;
use skladsync_runner::state::Work;

/// A "retailCRM" whose history is garbage.
async fn broken_crm() -> String {
    let app = Router::new()
        .route(
            "/api/v5/orders/history",
            get(|| async {
                Json(json!({"success": true, "history": [{"id": "not a number", "field": 5}],
                        "pagination": {"limit": 100, "totalCount": 1, "currentPage": 1, "totalPageCount": 1}}))
            }),
        )
        // Orders whose answer does not read: cut short, a number out of range, too deep.
        .route(
            "/api/v5/orders/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                let body = match id.as_str() {
                    "7" => r#"{"success": true, "order": {"id": 7, "items": [{"id": 1"#.to_string(),
                    "8" => r#"{"success": true, "order": {"id": 8, "summ": 1e400}}"#.to_string(),
                    _ => format!(
                        r#"{{"success": true, "order": {{"id": 9, "x": {}1{}}}}}"#,
                        "[".repeat(300),
                        "]".repeat(300)
                    ),
                };
                ([("content-type", "application/json")], body)
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_journalled_or_refused() {
    let lab = Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    })
    .await
    .expect("lab");
    let crm = broken_crm().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = dir.path().join("settings.yaml");
    std::fs::write(
        &settings,
        render(support::SETTINGS, &lab.shop.placeholders()),
    )
    .expect("settings");
    let text = lab
        .config_yaml(
            &support::fixture_rules(),
            &settings,
            &dir.path().join("state"),
            support::INTERVALS,
            100,
        )
        .replace(&lab.crm.base_url(), &crm)
        + "  secret: s3cret-path\n";
    let cfg = Config::from_yaml(&text, dir.path(), &|_| None).expect("config");
    let daemon = Daemon::new(cfg).await.expect("daemon");
    daemon.start_up().await.expect("start up");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let receiver = daemon.spawn_receiver(rx);

    // The history cannot be read: journalled, and the cycle goes on.
    daemon.cycle().await.expect("the cycle survives");
    let journal = daemon
        .state()
        .journal_entries(daemon.journal_limits(), support::now())
        .expect("journal");
    let poll = journal
        .iter()
        .find(|e| e.subject.get("poll").is_some())
        .expect("the failed poll is journalled");
    assert!(poll.code.starts_with("CRM_"), "{poll:?}");
    assert!(poll.text.contains("history"), "{poll:?}");

    // Webhook bodies of the wrong shape.
    let addr = daemon.receiver_addr().expect("receiver");
    let url = |rid: usize| format!("http://{addr}/moysklad/webhook/s3cret-path?requestId=r{rid}");
    let client = reqwest::Client::new();
    let not_json = client
        .post(url(0))
        .body("{{{")
        .send()
        .await
        .expect("answer");
    assert_eq!(not_json.status(), 400);
    for (i, body) in [
        json!({"events": "nope"}),
        json!({"events": [{"meta": {"type": "customerorder", "href": "http://x/entity/customerorder/../../context/employee"}, "action": "UPDATE"}]}),
        json!({"events": [{"meta": {"type": "../x", "href": "http://x/a"}, "action": "UPDATE"}, {"action": "CREATE"}, 5]}),
        json!([1, 2, 3]),
        json!({"events": [{"meta": {"type": "customerorder", "href": "http://x/entity/demand/a-1"}, "action": "UPDATE"}]}),
    ]
    .into_iter()
    .enumerate()
    {
        let r = client.post(url(i + 1)).json(&body).send().await.expect("answer");
        assert_eq!(r.status(), 200, "{body}");
    }
    let queued: Vec<Value> = daemon
        .state()
        .inbox()
        .expect("inbox")
        .into_iter()
        .filter_map(|(_, i)| serde_json::to_value(i.work).ok())
        .filter(|w| w["work"] == "moysklad")
        .collect();
    assert!(queued.is_empty(), "nothing usable was queued: {queued:?}");
    daemon.drain().await.expect("drain");

    // Orders whose answer does not read: each journalled against its order, the daemon goes
    // on.
    let order = |id: i64| Work::CrmOrder {
        id,
        changes: vec![json!({"id": id, "field": "status", "newValue": {"code": "new"}})],
        created: false,
        deleted: false,
        stub: Value::Null,
    };
    daemon
        .enqueue(vec![order(7), order(8), order(9)])
        .expect("enqueue");
    daemon.drain().await.expect("the drain survives");
    let journal = daemon
        .state()
        .journal_entries(daemon.journal_limits(), support::now())
        .expect("journal");
    for id in [7, 8, 9] {
        let subject = json!(format!("crm.order/{id}"));
        let entry = journal
            .iter()
            .find(|e| e.subject.get("work") == Some(&subject))
            .unwrap_or_else(|| panic!("order {id} is journalled: {journal:?}"));
        assert!(entry.code.starts_with("CRM_"), "{entry:?}");
    }
    let _ = stop.send(true);
    if let Some(r) = receiver {
        let _ = r.await;
    }
}
