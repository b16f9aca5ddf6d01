//! Rate limits, retries and lost answers: the retailCRM client against the emulator's rate
//! limit and the shared fault layer.

#[path = "fixtures/retailcrm/support.rs"]
mod support;

use serde_json::json;
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_emulators::retailcrm::{
    sample_shop, Clock, EmulatorConfig, RateLimitConfig, RetailcrmEmulator,
};
use skladsync_runner::clients::retailcrm::{EntityRef, Error, ReferenceBook, RetailcrmClient};
use support::{client, fast_config, shop, KEY};

async fn limited(status: u16, per_second: u32) -> RetailcrmEmulator {
    let config = EmulatorConfig::with_keys([KEY])
        .rate_limit(Some(RateLimitConfig { per_second, status }))
        .clock(Clock::fixed("2025-03-01 10:00:00"));
    let emu = RetailcrmEmulator::start(config).await.expect("emulator");
    emu.seed(&sample_shop().expect("sample")).expect("seed");
    emu
}

async fn burst(c: &RetailcrmClient, n: usize) -> Vec<Result<(), Error>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.reference(ReferenceBook::Statuses).await.map(|_| ()) })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn a_burst_is_refused_with_503_and_the_client_backs_off_until_all_succeed() {
    let emu = limited(503, 5).await;
    // Generous attempts: this asserts the backoff loop, not how fast it drains.
    let mut cfg = fast_config(&emu);
    cfg.retry.rate_limit_attempts = 400;
    let c = RetailcrmClient::new(cfg).expect("client");
    let results = burst(&c, 12).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let refused = emu.rate_limited();
    assert!(
        refused > 0,
        "a burst of 12 over a limit of 5 per second must be refused sometimes"
    );
    let reqs = emu.requests();
    assert_eq!(
        reqs.iter().filter(|r| r.status == 503).count() as u64,
        refused
    );
    assert_eq!(reqs.iter().filter(|r| r.status == 200).count(), 12);
}

#[tokio::test]
async fn a_429_rate_limit_is_handled_the_same_way() {
    let emu = limited(429, 5).await;
    let mut cfg = fast_config(&emu);
    cfg.retry.rate_limit_attempts = 400;
    let c = RetailcrmClient::new(cfg).expect("client");
    let results = burst(&c, 12).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(emu.rate_limited() > 0);
}

#[tokio::test]
async fn the_emulated_limit_answers_like_retailcrm() {
    let emu = limited(503, 1).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v5/reference/statuses", emu.base_url());
    let mut last = None;
    for _ in 0..50 {
        let r = http
            .get(&url)
            .header("X-API-KEY", KEY)
            .send()
            .await
            .expect("loopback");
        if r.status().as_u16() == 503 {
            last = Some(r.json::<serde_json::Value>().await.expect("json"));
            break;
        }
    }
    assert_eq!(
        last,
        Some(json!({"success": false, "errorMsg": "Rate limit exceeded"}))
    );
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_up_to_the_limit() {
    let (emu, report) = shop().await;
    let c = client(&emu);
    emu.faults()
        .add(FaultPlan::new(Fault::ServerError { status: 500 }).times(2));
    let order = c
        .order_get(&EntityRef::Id(report.orders[0]), None)
        .await
        .expect("third try succeeds");
    assert_eq!(order["externalId"], "A-1001");
    assert_eq!(emu.faults().injected(), 2);

    emu.faults().clear();
    emu.faults()
        .add(FaultPlan::new(Fault::ServerError { status: 502 }));
    let err = c
        .order_get(&EntityRef::Id(report.orders[0]), None)
        .await
        .expect_err("always 502");
    assert_eq!(err.status(), Some(502));
    let tries = u64::from(fast_config(&emu).retry.max_attempts);
    assert_eq!(emu.faults().injected(), 2 + tries);
}

#[tokio::test]
async fn a_create_is_not_repeated_after_a_500_but_is_after_a_503() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    emu.faults().add(
        FaultPlan::new(Fault::ServerError { status: 500 })
            .path_prefix("/api/v5/orders/create")
            .times(1),
    );
    let err = c
        .order_create(
            &json!({"externalId": "R-1", "firstName": "Р"}),
            Some("shop-main"),
        )
        .await
        .expect_err("500 on a create is final");
    assert_eq!(err.status(), Some(500));
    assert_eq!(emu.faults().injected(), 1);
    assert!(emu.order_by_external_id(Some("shop-main"), "R-1").is_none());

    // 503 means "not processed": safe to repeat even a create.
    emu.faults().add(
        FaultPlan::new(Fault::ServerError { status: 503 })
            .path_prefix("/api/v5/orders/create")
            .times(1),
    );
    c.order_create(
        &json!({"externalId": "R-2", "firstName": "Р"}),
        Some("shop-main"),
    )
    .await
    .expect("retried after 503");
    assert_eq!(emu.faults().injected(), 2);
    let count = emu
        .orders()
        .iter()
        .filter(|o| o["externalId"] == "R-2")
        .count();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_dropped_connection_is_retried_for_reads() {
    let (emu, report) = shop().await;
    let c = client(&emu);
    emu.faults()
        .add(FaultPlan::new(Fault::DropConnection).times(1));
    let order = c
        .order_get(&EntityRef::Id(report.orders[1]), None)
        .await
        .expect("second try succeeds");
    assert_eq!(order["externalId"], "A-1002");
    assert_eq!(emu.faults().injected(), 1);
}

#[tokio::test]
async fn commit_then_drop_on_a_create_is_reported_as_no_response_not_as_an_error_answer() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    emu.faults().add(
        FaultPlan::new(Fault::CommitThenDrop)
            .path_prefix("/api/v5/orders/create")
            .times(1),
    );
    let body = json!({"externalId": "CD-1", "firstName": "Потерянный ответ"});
    let err = c
        .order_create(&body, Some("shop-main"))
        .await
        .expect_err("no answer");
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert!(matches!(err, Error::NoResponse { .. }));
    assert_eq!(err.status(), None, "no response, so no status");
    // The write happened, exactly once: the client did not repeat it.
    let copies = emu
        .orders()
        .iter()
        .filter(|o| o["externalId"] == "CD-1")
        .count();
    assert_eq!(copies, 1);
    // Repeating the create now is refused by externalId: the caller can reconcile.
    let again = c
        .order_create(&body, Some("shop-main"))
        .await
        .expect_err("already there");
    assert!(again.is_duplicate_external_id());
}

#[tokio::test]
async fn a_dropped_create_is_also_no_response_and_nothing_was_written() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    emu.faults().add(
        FaultPlan::new(Fault::DropConnection)
            .path_prefix("/api/v5/orders/create")
            .times(1),
    );
    let err = c
        .order_create(
            &json!({"externalId": "DC-1", "firstName": "Д"}),
            Some("shop-main"),
        )
        .await
        .expect_err("no answer");
    assert!(err.is_outcome_unknown());
    assert!(emu
        .order_by_external_id(Some("shop-main"), "DC-1")
        .is_none());
}

#[tokio::test]
async fn commit_then_drop_on_an_edit_is_retried_and_applies_once() {
    let (emu, report) = shop().await;
    let c = client(&emu);
    let id = report.orders[0];
    emu.faults()
        .add(FaultPlan::new(Fault::CommitThenDrop).writes_only().times(1));
    c.order_edit(&EntityRef::Id(id), &json!({"status": "prepayed"}), None)
        .await
        .expect("an edit is idempotent, so the client repeats it");
    assert_eq!(emu.faults().injected(), 1);
    let edits = emu
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/edit"))
        .count();
    assert_eq!(edits, 2, "the handler ran twice");
    let moves = emu
        .order_history(None)
        .iter()
        .filter(|h| h["order"]["id"] == id && h["newValue"] == json!({"code": "prepayed"}))
        .count();
    assert_eq!(
        moves, 1,
        "the repeated edit changed nothing the second time"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    emu.clear_requests();
    let err = c
        .order_edit(
            &EntityRef::from("no-such-order"),
            &json!({"status": "new"}),
            Some("shop-main"),
        )
        .await
        .expect_err("404");
    assert!(err.is_not_found());
    let err = c
        .order_edit(
            &EntityRef::from("A-1001"),
            &json!({"status": "bogus"}),
            Some("shop-main"),
        )
        .await
        .expect_err("400");
    assert_eq!(err.status(), Some(400));
    assert_eq!(emu.requests().len(), 2);
}

#[tokio::test]
async fn an_unreachable_account_is_a_network_error_after_bounded_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let cfg =
        skladsync_runner::clients::retailcrm::ClientConfig::new(&format!("http://{addr}"), KEY)
            .expect("url")
            .with_rate_limit(None)
            .with_retry(skladsync_runner::clients::retailcrm::RetryPolicy {
                max_attempts: 3,
                rate_limit_attempts: 3,
                base_delay: std::time::Duration::from_millis(2),
                max_delay: std::time::Duration::from_millis(10),
            });
    let c = RetailcrmClient::new(cfg).expect("client");
    let err = c
        .order_create(&json!({}), None)
        .await
        .expect_err("nobody listens");
    match err {
        Error::Network { attempts, .. } => assert_eq!(attempts, 3),
        other => panic!("expected a network error, got {other:?}"),
    }
}
