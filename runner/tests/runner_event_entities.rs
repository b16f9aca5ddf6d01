//! МойСклад entities as events carry them: expanded, and a demand's positions with their
//! `stock` (`fields=stock`: cost, quantity, reserve, intransit, available).

use serde_json::json;
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient};
use skladsync_runner::demo::lab::{Lab, LabOptions, MS_LOGIN, MS_PASSWORD};
use skladsync_runner::world::lookups::ms_event_entity;

#[tokio::test]
async fn a_demand_event_carries_the_stock_and_cost_of_its_positions() {
    let lab = Lab::start(LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    })
    .await
    .expect("lab");
    let ms = &lab.ms;
    let shop = &lab.shop;
    let r = |ty: &str, id: &str| json!({"meta": {"href": format!("{}/entity/{ty}/{id}", ms.base_url()), "type": ty, "mediaType": "application/json"}});
    let demand = ms
        .create(
            "demand",
            json!({
                "organization": r("organization", &shop.organization),
                "agent": r("counterparty", &shop.known_counterparty),
                "store": r("store", &shop.stores["main"]),
                "applicable": true,
                "positions": [{"quantity": 1, "price": 2590000,
                               "assortment": r("product", &shop.assortment["table-oak"])}],
            }),
        )
        .expect("demand");
    let client = MoyskladClient::new(
        ClientConfig::new(Auth::basic(MS_LOGIN, MS_PASSWORD)).base_url(ms.base_url()),
    )
    .expect("client");
    let id = demand["id"].as_str().expect("id");
    let got = ms_event_entity(&client, "demand", id)
        .await
        .expect("fetch")
        .expect("exists")
        // Read straight into engine values; looked at here as JSON.
        .to_serde_json();
    let pos = &got["positions"]["rows"][0];
    assert_eq!(pos["assortment"]["externalCode"], "table-oak", "expanded");
    assert_eq!(pos["stock"]["cost"].as_f64(), Some(1_400_000.0));
    // 4 on hand, 1 shipped.
    assert_eq!(pos["stock"]["quantity"].as_f64(), Some(3.0));
    assert!(got["agent"]["name"].is_string(), "agent expanded");
    // A path a webhook body could smuggle in is refused, not requested.
    assert!(ms_event_entity(&client, "demand", "../../context/employee")
        .await
        .is_err());
    assert!(
        ms_event_entity(&client, "demand", "00000000-0000-0000-0000-000000000000")
            .await
            .expect("fetch")
            .is_none()
    );
}
