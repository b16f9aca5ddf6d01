//! Deletions in МойСклад reach the CRM when their webhook is lost: the reconciliation poll
//! reads them from the audit. With the default rules, an incoming payment imported into a
//! CRM order (PAY-DOC-02/04, «Создавать/Удалять платёж в CRM» on) is deleted in МойСклад;
//! the CRM payment is deleted once — through the poll alone, or through the webhook with the
//! poll seeing the same deletion afterwards.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions};
use skladsync_runner::demo::{rules_dir, write_settings};
use support::{order_by_number, Rig, INTERVALS};
use tokio::sync::watch;

/// A lab, and the config of the default rules with incoming payments imported from
/// МойСклад and their deletion synced.
async fn setup() -> (Lab, tempfile::TempDir, std::path::PathBuf) {
    let lab = Lab::start(LabOptions::default()).await.expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, None, &lab, &settings).expect("settings");
    let mut s: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&settings).expect("read settings"))
            .expect("settings yaml");
    s["payment_document_sync"]["paymentin"] = serde_yaml::from_str(
        "{import_create: true, import_delete: true, crm_payment_type: bank-transfer, \
          crm_status_posted: paid, crm_status_unposted: not-paid}",
    )
    .expect("overlay");
    std::fs::write(&settings, serde_yaml::to_string(&s).expect("yaml")).expect("write settings");
    let config = dir.path().join("skladsync.yaml");
    std::fs::write(
        &config,
        lab.config_yaml(&rules, &settings, &dir.path().join("state"), INTERVALS, 100),
    )
    .expect("config");
    (lab, dir, config)
}

async fn daemon(config: &Path) -> Daemon {
    let daemon = Daemon::new(Config::load(config).expect("config"))
        .await
        .expect("daemon");
    daemon.start_up().await.expect("start up");
    daemon
}

/// [`setup`] and a daemon, the webhook receiver running or not.
async fn start(receiver: bool) -> Rig {
    let (lab, dir, config) = setup().await;
    let daemon = daemon(&config).await;
    let (stop, rx) = watch::channel(!receiver);
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

/// The CRM payment imported from a МойСклад document, if the order has it.
fn imported_payment(lab: &Lab, order: i64, doc: &str) -> Option<Value> {
    let o = lab.crm.order(order).expect("order");
    let external = format!("ms-paymentin-{doc}");
    o["payments"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .find(|p| p["externalId"] == json!(external))
        .cloned()
}

/// Cycles until `done` holds (at most 40 cycles).
async fn cycle_until(d: &Daemon, what: &str, done: impl Fn() -> bool) {
    for _ in 0..40 {
        d.cycle().await.expect("cycle");
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not within 40 cycles");
}

/// A-1001 uploaded to МойСклад, and an incoming payment made there against it and imported
/// into the CRM order; returns (CRM order id, document id).
async fn imported_paymentin(lab: &Lab, d: &Daemon) -> (i64, String) {
    cycle_until(d, "A-1001 uploaded", || {
        lab.ms
            .list("customerorder")
            .iter()
            .any(|o| o["name"] == "A-1001")
    })
    .await;
    let order = ms_order(lab, "A-1001");
    let doc = lab
        .ms
        .create(
            "paymentin",
            json!({"organization": order["organization"], "agent": order["agent"],
                   "applicable": true, "sum": 123400,
                   "operations": [{"meta": order["meta"], "linkedSum": 123400}]}),
        )
        .expect("paymentin");
    let doc = doc["id"].as_str().expect("id").to_string();
    let crm = order_by_number(lab, "A-1001");
    cycle_until(d, "the payment imported into the CRM", || {
        imported_payment(lab, crm, &doc).is_some()
    })
    .await;
    let p = imported_payment(lab, crm, &doc).expect("imported");
    assert_eq!(p["amount"].as_f64(), Some(1234.0), "{p}");
    (crm, doc)
}

fn deletions_evaluated(d: &Daemon) -> u64 {
    d.stats()
        .events
        .get("moysklad.paymentin.deleted")
        .copied()
        .unwrap_or(0)
}

fn crm_payment_deletes(d: &Daemon) -> u64 {
    d.stats()
        .effects
        .get("delete crm.payment")
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_whose_webhook_is_lost_reaches_the_crm_through_the_poll_once() {
    let rig = start(false).await;
    let lab = &rig.lab;
    let d = &rig.daemon;
    let (crm, doc) = imported_paymentin(lab, d).await;

    // The receiver is not running: the DELETE notification is dropped after its retries.
    lab.ms.delete("paymentin", &doc).expect("delete");
    lab.ms.wait_for_webhooks(Duration::from_secs(10)).await;
    assert!(lab.ms.webhook_deliveries().iter().all(|w| !w.delivered));
    cycle_until(d, "the CRM payment deleted", || {
        imported_payment(lab, crm, &doc).is_none()
    })
    .await;
    assert_eq!(deletions_evaluated(d), 1);
    assert_eq!(crm_payment_deletes(d), 1);

    // One audit request per round for every type whose deletions the rules handle
    // (paymentin, cashin, prepayment), not one per type; nothing is repeated.
    lab.ms.clear_requests();
    for _ in 0..3 {
        d.cycle().await.expect("cycle");
    }
    let audit: Vec<_> = lab
        .ms
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/api/remap/1.2/audit"))
        .collect();
    assert_eq!(audit.len(), 3, "{audit:?}");
    let q = audit[0].query.clone().unwrap_or_default();
    let q: String = url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| format!("{k}={v}&"))
        .collect();
    for t in ["paymentin", "cashin", "prepayment"] {
        assert!(q.contains(&format!("entityType={t}")), "{q}");
    }
    assert!(q.contains("eventType=delete"), "{q}");
    assert_eq!(deletions_evaluated(d), 1);
    assert_eq!(crm_payment_deletes(d), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_seen_by_the_webhook_and_the_poll_is_processed_once() {
    let rig = start(true).await;
    let lab = &rig.lab;
    let d = &rig.daemon;
    let (crm, doc) = imported_paymentin(lab, d).await;

    lab.ms.delete("paymentin", &doc).expect("delete");
    rig.settle().await;
    assert!(
        lab.ms
            .webhook_deliveries()
            .iter()
            .any(|w| w.delivered && w.body["events"][0]["action"] == "DELETE"),
        "the DELETE webhook was delivered"
    );
    assert!(imported_payment(lab, crm, &doc).is_none());
    assert_eq!(deletions_evaluated(d), 1);

    // The poll reads the same deletion from the audit, and does not process it again.
    lab.ms.clear_requests();
    for _ in 0..3 {
        d.cycle().await.expect("cycle");
    }
    assert!(
        lab.ms
            .requests()
            .iter()
            .any(|r| r.path.contains("/audit/") && r.path.ends_with("/events")),
        "the poll read the deletion's audit events"
    );
    assert_eq!(deletions_evaluated(d), 1);
    assert_eq!(crm_payment_deletes(d), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_poll_starts_now_and_its_watermark_survives_a_restart() {
    let (lab, _dir, config) = setup().await;
    // Deleted before the runner's first poll: the account's past, not replayed.
    let order_agent = lab.ms.list("counterparty")[0]["meta"].clone();
    let org = lab.ms.list("organization")[0]["meta"].clone();
    let past = lab
        .ms
        .create(
            "paymentin",
            json!({"organization": {"meta": org}, "agent": {"meta": order_agent}, "sum": 100}),
        )
        .expect("paymentin");
    lab.ms
        .delete("paymentin", past["id"].as_str().expect("id"))
        .expect("delete");

    let d = daemon(&config).await;
    let (crm, doc) = imported_paymentin(&lab, &d).await;
    assert_eq!(
        deletions_evaluated(&d),
        0,
        "the past deletion is not replayed"
    );
    drop(d);

    // Deleted while the runner is stopped: found after the restart, from the watermark.
    lab.ms.delete("paymentin", &doc).expect("delete");
    let d = daemon(&config).await;
    cycle_until(&d, "the CRM payment deleted after the restart", || {
        imported_payment(&lab, crm, &doc).is_none()
    })
    .await;
    assert_eq!(deletions_evaluated(&d), 1);
    assert_eq!(crm_payment_deletes(&d), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_found_gone_by_other_work_is_a_deletion() {
    let rig = start(true).await;
    let lab = &rig.lab;
    let d = &rig.daemon;
    let (crm, doc) = imported_paymentin(lab, d).await;

    // A change is notified and queued; then the receiver stops, the document is deleted and
    // its DELETE notification is lost.
    lab.ms
        .update("paymentin", &doc, json!({"description": "уточнение"}))
        .expect("update");
    lab.ms.wait_for_webhooks(Duration::from_secs(10)).await;
    assert!(d.state().inbox().expect("inbox").iter().any(|(_, i)| {
        i.work.subject().as_deref() == Some(&format!("moysklad/paymentin/{doc}"))
    }));
    let _ = rig.stop.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    lab.ms.delete("paymentin", &doc).expect("delete");
    lab.ms.wait_for_webhooks(Duration::from_secs(10)).await;

    // Processing the change (no poll yet) finds the document gone: that is its deletion.
    d.drain().await.expect("drain");
    assert!(imported_payment(lab, crm, &doc).is_none());
    assert_eq!(deletions_evaluated(d), 1);
    // The poll then reads the same deletion from the audit: not processed again.
    for _ in 0..3 {
        d.cycle().await.expect("cycle");
    }
    assert_eq!(deletions_evaluated(d), 1);
    assert_eq!(crm_payment_deletes(d), 1);
}
