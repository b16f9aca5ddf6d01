//! The emulated accounts keep their own time zones, as the services do: retailCRM writes
//! date-times without a zone in the account's zone (`/api/v5/settings` → `timezone.value`,
//! Asia/Yekaterinburg by default here), МойСклад in Moscow time. The retailCRM client reads
//! the account's zone.

use chrono::{NaiveDateTime, Utc};
use serde_json::json;
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};
use skladsync_emulators::retailcrm::{sample_shop, EmulatorConfig, RetailcrmEmulator};
use skladsync_runner::clients::retailcrm::{ClientConfig, RetailcrmClient};

const KEY: &str = "tz-key";

/// Hours between a naive wall-clock time and UTC now.
fn offset_hours(text: &str) -> f64 {
    let t = NaiveDateTime::parse_from_str(&text[..19], "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    (t - Utc::now().naive_utc()).num_minutes() as f64 / 60.0
}

async fn crm(config: EmulatorConfig) -> (RetailcrmEmulator, RetailcrmClient) {
    let emu = RetailcrmEmulator::start(config).await.expect("emulator");
    emu.seed(&sample_shop().expect("sample")).expect("seed");
    let client = RetailcrmClient::new(
        ClientConfig::new(&emu.base_url(), KEY)
            .expect("url")
            .with_rate_limit(None),
    )
    .expect("client");
    (emu, client)
}

async fn new_order_time(emu: &RetailcrmEmulator) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v5/orders/create", emu.base_url()))
        .header("X-API-KEY", KEY)
        .form(&[
            ("site", "shop-main"),
            ("order", r#"{"number":"TZ-1","firstName":"Анна"}"#),
        ])
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.expect("json");
    body["order"]["createdAt"]
        .as_str()
        .expect("createdAt")
        .to_string()
}

#[tokio::test]
async fn retailcrm_writes_times_in_the_accounts_zone_and_the_client_reads_it() {
    let (emu, client) = crm(EmulatorConfig::with_keys([KEY])).await;
    assert_eq!(
        client.timezone().await.expect("timezone"),
        chrono_tz::Asia::Yekaterinburg
    );
    let created = new_order_time(&emu).await;
    assert!(
        (offset_hours(&created) - 5.0).abs() < 0.1,
        "createdAt {created} is Yekaterinburg time (UTC+5)"
    );
    let history = emu.order_history(Some(KEY));
    let last = history.last().expect("history");
    assert!((offset_hours(last["createdAt"].as_str().expect("time")) - 5.0).abs() < 0.1);

    // Another account, another zone.
    let (emu, client) = crm(EmulatorConfig::with_keys([KEY]).timezone("Europe/Moscow")).await;
    assert_eq!(
        client.timezone().await.expect("timezone"),
        chrono_tz::Europe::Moscow
    );
    let created = new_order_time(&emu).await;
    assert!((offset_hours(&created) - 3.0).abs() < 0.1, "{created}");
    // A zone that does not exist is refused at start.
    assert!(
        RetailcrmEmulator::start(EmulatorConfig::with_keys([KEY]).timezone("Mars/Olympus"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn moysklad_writes_moscow_time_unless_configured_otherwise() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig::default())
        .await
        .expect("emulator");
    let store = ms.create("store", json!({"name": "Склад"})).expect("store");
    let updated = store["updated"].as_str().expect("updated");
    assert!(
        (offset_hours(updated) - 3.0).abs() < 0.1,
        "{updated} is Moscow time"
    );
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        timezone: "Asia/Yekaterinburg".into(),
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let store = ms.create("store", json!({"name": "Склад"})).expect("store");
    assert!((offset_hours(store["updated"].as_str().expect("updated")) - 5.0).abs() < 0.1);
}
