//! Webhooks of the МойСклад emulator: subscription rules, the callback body, the delivery
//! policy (1.5 s deadline, 3 immediate retries, then dropped) and
//! `X-Lognex-WebHook-DisableByPrefix` on the client's writes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use skladsync_emulators::moysklad::{
    Attempt, MoyskladEmulator, MoyskladEmulatorConfig, SampleShop,
};
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient, RetryPolicy};

const LOGIN: &str = "admin@emulator";
const PASSWORD: &str = "emulator-password";

/// One callback the receiver got.
#[derive(Clone, Debug)]
struct Hit {
    request_id: Option<String>,
    user_agent: Option<String>,
    body: Value,
}

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Statuses to answer, in order; the last one repeats. Empty: 200.
    script: Arc<Mutex<Vec<u16>>>,
    delay: Duration,
}

async fn receive(
    State(r): State<Receiver>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    r.hits.lock().expect("lock").push(Hit {
        request_id: q.get("requestId").cloned(),
        user_agent: headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    });
    if !r.delay.is_zero() {
        tokio::time::sleep(r.delay).await;
    }
    let status = {
        let mut s = r.script.lock().expect("lock");
        match s.len() {
            0 => 200,
            1 => s[0],
            _ => s.remove(0),
        }
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// Starts a receiver; returns its origin (`http://127.0.0.1:port`) and handle.
async fn receiver(script: Vec<u16>, delay: Duration) -> (String, Receiver) {
    let r = Receiver {
        hits: Arc::default(),
        script: Arc::new(Mutex::new(script)),
        delay,
    };
    let app = Router::new()
        .route("/ms/hook", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), r)
}

impl Receiver {
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }
}

async fn emulator(webhook_timeout: Duration) -> MoyskladEmulator {
    MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        webhook_timeout,
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator")
}

fn client(ms: &MoyskladEmulator, disable_prefix: Option<&str>) -> MoyskladClient {
    let mut cfg = ClientConfig::new(Auth::basic(LOGIN, PASSWORD))
        .base_url(ms.base_url())
        .retry(RetryPolicy {
            base_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        });
    if let Some(p) = disable_prefix {
        cfg = cfg.webhook_disable_prefix(p);
    }
    MoyskladClient::new(cfg).expect("client")
}

fn order_body(c: &MoyskladClient, shop: &SampleShop) -> Value {
    json!({
        "organization": c.meta("organization", &shop.organization),
        "agent": c.meta("counterparty", &shop.counterparties["rcrm-customer-1"]),
    })
}

#[tokio::test]
async fn callbacks_carry_the_documented_body() {
    let ms = emulator(Duration::from_millis(1500)).await;
    let shop = ms.seed_sample_shop().expect("shop");
    let (origin, rx) = receiver(vec![], Duration::ZERO).await;
    let c = client(&ms, None);
    let url = format!("{origin}/ms/hook");
    c.create_webhook(&url, "customerorder", "CREATE", false)
        .await
        .expect("create hook");
    c.create_webhook(&url, "customerorder", "UPDATE", true)
        .await
        .expect("update hook");
    assert_eq!(c.webhooks().await.expect("list").len(), 2);

    let order = c
        .create("customerorder", &order_body(&c, &shop))
        .await
        .expect("order");
    let id = order["id"].as_str().expect("id");
    c.update("customerorder", id, &json!({"description": "позвонить"}))
        .await
        .expect("update");
    assert!(ms.wait_for_webhooks(Duration::from_secs(5)).await);

    let hits = rx.hits();
    assert_eq!(hits.len(), 2);
    let create = &hits[0].body;
    assert_eq!(create["auditContext"]["meta"]["type"], "audit");
    assert!(create["auditContext"]["meta"]["href"]
        .as_str()
        .is_some_and(|h| h.starts_with(&format!("{}/audit/", ms.base_url()))));
    assert_eq!(create["auditContext"]["uid"], LOGIN);
    let moment = create["auditContext"]["moment"].as_str().expect("moment");
    assert!(chrono::NaiveDateTime::parse_from_str(moment, "%Y-%m-%d %H:%M:%S").is_ok());
    assert_eq!(
        create["events"],
        json!([{
            "meta": {"type": "customerorder", "href": order["meta"]["href"]},
            "action": "CREATE",
            "accountId": order["accountId"]
        }])
    );
    // The notification's audit context is the one the audit holds for the change.
    let audit_id = create["auditContext"]["meta"]["href"]
        .as_str()
        .and_then(|h| h.rsplit('/').next())
        .expect("audit id");
    let events = c.audit_events(audit_id).await.expect("audit events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["eventType"], "create");
    assert_eq!(events[0]["entity"]["meta"]["href"], order["meta"]["href"]);
    assert_eq!(events[0]["moment"], create["auditContext"]["moment"]);
    let update = &hits[1].body;
    assert_eq!(update["events"][0]["action"], "UPDATE");
    assert_eq!(update["events"][0]["updatedFields"], json!(["description"]));
    for h in &hits {
        assert!(h.request_id.as_deref().is_some_and(|r| !r.is_empty()));
        assert_eq!(
            h.user_agent.as_deref(),
            Some("MoySklad webhook touch agent 2.0 (/https://www.moysklad.ru)")
        );
    }
    let log = ms.webhook_deliveries();
    assert!(log.iter().all(|d| d.delivered && d.attempts.len() == 1));
}

#[tokio::test]
async fn failing_receiver_gets_three_retries_then_the_event_is_dropped() {
    let ms = emulator(Duration::from_millis(1500)).await;
    let shop = ms.seed_sample_shop().expect("shop");
    let (origin, rx) = receiver(vec![500], Duration::ZERO).await;
    let c = client(&ms, None);
    c.create_webhook(
        &format!("{origin}/ms/hook"),
        "customerorder",
        "CREATE",
        false,
    )
    .await
    .expect("hook");
    c.create("customerorder", &order_body(&c, &shop))
        .await
        .expect("order");
    assert!(ms.wait_for_webhooks(Duration::from_secs(5)).await);

    let hits = rx.hits();
    assert_eq!(hits.len(), 4, "one attempt and three retries");
    let first = hits[0].request_id.clone();
    assert!(
        hits.iter().all(|h| h.request_id == first),
        "same requestId on every attempt"
    );
    let log = ms.webhook_deliveries();
    assert_eq!(log.len(), 1);
    assert!(!log[0].delivered);
    assert_eq!(log[0].attempts, vec![Attempt::Status { status: 500 }; 4]);
    // Dropped for good: nothing more arrives later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.hits().len(), 4);
}

#[tokio::test]
async fn a_retry_that_succeeds_stops_the_attempts() {
    let ms = emulator(Duration::from_millis(1500)).await;
    let shop = ms.seed_sample_shop().expect("shop");
    let (origin, rx) = receiver(vec![503, 500, 204], Duration::ZERO).await;
    let c = client(&ms, None);
    c.create_webhook(
        &format!("{origin}/ms/hook"),
        "customerorder",
        "CREATE",
        false,
    )
    .await
    .expect("hook");
    c.create("customerorder", &order_body(&c, &shop))
        .await
        .expect("order");
    assert!(ms.wait_for_webhooks(Duration::from_secs(5)).await);
    assert_eq!(rx.hits().len(), 3);
    let log = ms.webhook_deliveries();
    assert!(log[0].delivered);
    assert_eq!(
        log[0].attempts,
        vec![
            Attempt::Status { status: 503 },
            Attempt::Status { status: 500 },
            Attempt::Status { status: 204 }
        ]
    );
}

#[tokio::test]
async fn a_slow_receiver_misses_the_deadline() {
    // The deadline is configurable so the test stays fast; the default is 1.5 s.
    let ms = emulator(Duration::from_millis(100)).await;
    let shop = ms.seed_sample_shop().expect("shop");
    let (origin, rx) = receiver(vec![], Duration::from_millis(400)).await;
    let c = client(&ms, None);
    c.create_webhook(
        &format!("{origin}/ms/hook"),
        "customerorder",
        "CREATE",
        false,
    )
    .await
    .expect("hook");
    c.create("customerorder", &order_body(&c, &shop))
        .await
        .expect("order");
    assert!(ms.wait_for_webhooks(Duration::from_secs(10)).await);
    let log = ms.webhook_deliveries();
    assert!(!log[0].delivered);
    assert_eq!(log[0].attempts, vec![Attempt::Timeout; 4]);
    assert_eq!(rx.hits().len(), 4, "each attempt reached the receiver");
}

#[tokio::test]
async fn our_writes_do_not_echo_back_with_disable_by_prefix() {
    let ms = emulator(Duration::from_millis(1500)).await;
    let shop = ms.seed_sample_shop().expect("shop");
    let (ours, our_rx) = receiver(vec![], Duration::ZERO).await;
    let (theirs, their_rx) = receiver(vec![], Duration::ZERO).await;
    let c = client(&ms, Some(&ours));
    for origin in [&ours, &theirs] {
        c.create_webhook(&format!("{origin}/ms/hook"), "counterparty", "UPDATE", true)
            .await
            .expect("hook");
    }
    let id = &shop.counterparties["rcrm-customer-1"];
    c.update("counterparty", id, &json!({"phone": "+79990000099"}))
        .await
        .expect("our update");
    assert!(ms.wait_for_webhooks(Duration::from_secs(5)).await);
    assert!(
        our_rx.hits().is_empty(),
        "our own write is not echoed to us"
    );
    assert_eq!(their_rx.hits().len(), 1, "other subscribers still hear it");

    // A change made by someone else (the UI) reaches us.
    ms.update(
        "counterparty",
        id,
        json!({"description": "изменено в МойСклад"}),
    )
    .expect("ui update");
    assert!(ms.wait_for_webhooks(Duration::from_secs(5)).await);
    let hits = our_rx.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].body["events"][0]["updatedFields"],
        json!(["description"])
    );
}

#[tokio::test]
async fn delete_events_and_subscription_rules() {
    let ms = emulator(Duration::from_millis(1500)).await;
    let (origin, rx) = receiver(vec![], Duration::ZERO).await;
    let c = client(&ms, None);
    let url = format!("{origin}/ms/hook");
    let hook = c
        .create_webhook(&url, "counterparty", "DELETE", false)
        .await
        .expect("hook");
    assert_eq!(hook["method"], "POST");
    assert_eq!(hook["enabled"], true);
    assert_eq!(hook["meta"]["type"], "webhook");

    let dup = c
        .create_webhook(&url, "counterparty", "DELETE", false)
        .await
        .expect_err("same (entityType, action, url)");
    assert!(dup.has_code(30003));
    let diff = c
        .create_webhook(&url, "counterparty", "CREATE", true)
        .await
        .expect_err("diffType only with UPDATE");
    assert!(diff.has_code(30009));
    let bad = c
        .create_webhook("not a url", "counterparty", "CREATE", false)
        .await
        .expect_err("bad url");
    assert!(bad.has_code(30005));

    let cp = c
        .create("counterparty", &json!({"name": "Временный"}))
        .await
        .expect("cp");
    c.delete("counterparty", cp["id"].as_str().expect("id"))
        .await
        .expect("delete");
    assert!(ms.wait_for_webhooks(Duration::from_secs(5)).await);
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].body["events"][0]["action"], "DELETE");
    assert_eq!(
        hits[0].body["events"][0]["meta"]["href"],
        cp["meta"]["href"]
    );

    // A disabled subscription stays silent; a deleted one is gone.
    let hook_id = hook["id"].as_str().expect("id");
    c.update("webhook", hook_id, &json!({"enabled": false}))
        .await
        .expect("disable");
    let cp = c
        .create("counterparty", &json!({"name": "Ещё один"}))
        .await
        .expect("cp");
    c.delete("counterparty", cp["id"].as_str().expect("id"))
        .await
        .expect("delete");
    assert!(ms.wait_for_webhooks(Duration::from_secs(5)).await);
    assert_eq!(rx.hits().len(), 1);
    c.delete_webhook(hook_id).await.expect("delete hook");
    assert!(c.webhooks().await.expect("list").is_empty());
}

#[test]
fn rust_side_changes_from_outside_the_runtime_still_deliver() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (ms, origin, rx) = rt.block_on(async {
        let ms = emulator(Duration::from_millis(1500)).await;
        let (origin, rx) = receiver(vec![], Duration::ZERO).await;
        (ms, origin, rx)
    });
    ms.seed(
        "webhook",
        json!({"url": format!("{origin}/ms/hook"), "entityType": "counterparty", "action": "CREATE"}),
    )
    .expect("subscription");
    // Called from a plain thread, as a demo command's seeding code might.
    ms.create("counterparty", json!({"name": "Из интерфейса"}))
        .expect("created");
    assert!(rt.block_on(ms.wait_for_webhooks(Duration::from_secs(5))));
    assert_eq!(rx.hits().len(), 1);
    assert_eq!(rx.hits()[0].body["events"][0]["action"], "CREATE");
}
