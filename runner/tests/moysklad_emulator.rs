//! The МойСклад emulator on the wire, with raw HTTP requests (no client): gzip, auth, shapes,
//! errors, paging, webhooks' subscription rules, stock reports.

use serde_json::{json, Value};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};

const LOGIN: &str = "admin@emulator";
const PASSWORD: &str = "emulator-password";

async fn start() -> MoyskladEmulator {
    MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

async fn call(
    ms: &MoyskladEmulator,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http()
        .request(method, format!("{}/{path}", ms.base_url()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .header("Accept", "application/json;charset=utf-8");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("response");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, v)
}

#[tokio::test]
async fn requests_without_gzip_get_415_with_no_body() {
    let ms = start().await;
    let resp = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
        .get(format!("{}/entity/store", ms.base_url()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 415);
    assert!(resp.bytes().await.expect("body").is_empty());
    // With another encoding only: still 415.
    let resp = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
        .get(format!("{}/entity/store", ms.base_url()))
        .header("Accept-Encoding", "deflate")
        .basic_auth(LOGIN, Some(PASSWORD))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 415);
}

#[tokio::test]
async fn responses_are_gzipped() {
    let ms = start().await;
    for i in 0..3 {
        ms.seed("store", json!({"name": format!("Склад {i}")}))
            .expect("seed");
    }
    let resp = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client")
        .get(format!("{}/entity/store", ms.base_url()))
        .header("Accept-Encoding", "gzip")
        .basic_auth(LOGIN, Some(PASSWORD))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let bytes = resp.bytes().await.expect("body");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .expect("valid gzip");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["meta"]["size"], 3);
}

#[tokio::test]
async fn wrong_credentials_get_401_with_code_1056() {
    let ms = start().await;
    let resp = http()
        .get(format!("{}/entity/store", ms.base_url()))
        .basic_auth(LOGIN, Some("wrong"))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["errors"][0]["code"], 1056);
    let resp = http()
        .get(format!("{}/entity/store", ms.base_url()))
        .bearer_auth("emulator-token")
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200, "the configured token is accepted");
    let resp = http()
        .get(format!("{}/entity/store", ms.base_url()))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn created_order_has_the_api_shape() {
    let ms = start().await;
    let shop = ms.seed_sample_shop().expect("sample shop");
    let org = &shop.organization;
    let agent = &shop.counterparties["rcrm-customer-1"];
    let store = &shop.stores["Основной склад"];
    let product = &shop.products["tshirt-basic"];
    let state = &shop.order_states["Новый"];
    let b = ms.base_url();
    let meta = |ty: &str, id: &str| json!({"meta": {"href": format!("{b}/entity/{ty}/{id}"), "type": ty, "mediaType": "application/json"}});
    let (status, order) = call(
        &ms,
        reqwest::Method::POST,
        "entity/customerorder",
        Some(json!({
            "name": "RC-1001",
            "organization": meta("organization", org),
            "agent": meta("counterparty", agent),
            "store": meta("store", store),
            "state": {"meta": {"href": format!("{b}/entity/customerorder/metadata/states/{state}"), "type": "state", "mediaType": "application/json"}},
            "positions": [{"assortment": meta("product", product), "quantity": 2, "price": 149900, "discount": 5, "vat": 20, "reserve": 2}]
        })),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    let id = order["id"].as_str().expect("id");
    assert_eq!(
        order["meta"],
        json!({
            "href": format!("{b}/entity/customerorder/{id}"),
            "metadataHref": format!("{b}/entity/customerorder/metadata"),
            "type": "customerorder",
            "mediaType": "application/json",
            "uuidHref": format!("{}/app/#customerorder/edit?id={id}", b.trim_end_matches("/api/remap/1.2"))
        })
    );
    assert_eq!(order["accountId"], "0e3a0000-5a1e-11f0-0a80-000000000000");
    let updated = order["updated"].as_str().expect("updated");
    assert!(
        chrono::NaiveDateTime::parse_from_str(updated, "%Y-%m-%d %H:%M:%S%.3f").is_ok()
            && updated.len() == 23,
        "updated is YYYY-MM-DD HH:MM:SS.mmm: {updated}"
    );
    assert_eq!(order["applicable"], true);
    assert_eq!(order["sum"], 284810.0);
    assert_eq!(order["reservedSum"], 284810.0);
    assert_eq!(order["positions"]["meta"]["type"], "customerorderposition");
    assert_eq!(order["positions"]["meta"]["size"], 1);
    assert!(order["positions"].get("rows").is_none(), "not expanded");
    assert_eq!(
        order["agent"]["meta"]["uuidHref"],
        json!(format!(
            "{}/app/#company/edit?id={agent}",
            b.trim_end_matches("/api/remap/1.2")
        ))
    );
    assert!(order["externalCode"]
        .as_str()
        .is_some_and(|s| s.len() == 22));

    let (_, expanded) = call(
        &ms,
        reqwest::Method::GET,
        &format!("entity/customerorder/{id}?expand=positions.assortment,agent,state"),
        None,
    )
    .await;
    let row = &expanded["positions"]["rows"][0];
    assert_eq!(row["meta"]["type"], "customerorderposition");
    assert_eq!(row["assortment"]["externalCode"], "tshirt-basic");
    assert_eq!(row["reserve"], 2.0);
    assert_eq!(row["shipped"], 0.0);
    assert_eq!(expanded["agent"]["name"], "Смирнов Алексей");
    assert_eq!(expanded["state"]["name"], "Новый");
}

#[tokio::test]
async fn state_dumps_and_loads_into_another_emulator() {
    let a = start().await;
    let shop = a.seed_sample_shop().expect("shop");
    let order = a
        .create(
            "customerorder",
            json!({
                "organization": {"meta": {"href": format!("{}/entity/organization/{}", a.base_url(), shop.organization), "type": "organization", "mediaType": "application/json"}},
                "agent": {"meta": {"href": format!("{}/entity/counterparty/{}", a.base_url(), shop.counterparties["rcrm-customer-1"]), "type": "counterparty", "mediaType": "application/json"}}
            }),
        )
        .expect("order");
    let id = order["id"].as_str().expect("id").to_string();
    let dump = a.state_json().expect("dump");
    let text = serde_json::to_string(&dump).expect("serializable");
    assert!(text.contains(a.base_url()));

    let b = start().await;
    b.load_state(serde_json::from_str(&text).expect("json"))
        .expect("load");
    let copy = b.get("customerorder", &id).expect("same id in the copy");
    assert_eq!(copy["name"], order["name"]);
    assert!(copy["meta"]["href"]
        .as_str()
        .is_some_and(|h| h.starts_with(b.base_url())));
    assert!(!serde_json::to_string(&b.state_json().expect("dump"))
        .expect("json")
        .contains(a.base_url()));
    assert_eq!(b.documents().len(), 1);
    // And it serves them.
    let (status, v) = call(
        &b,
        reqwest::Method::GET,
        &format!("entity/customerorder/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        v["agent"]["meta"]["href"],
        json!(format!(
            "{}/entity/counterparty/{}",
            b.base_url(),
            shop.counterparties["rcrm-customer-1"]
        ))
    );

    // Starting from a state works the same.
    let c = MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        initial_state: Some(a.state()),
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator from state");
    assert!(c.get("customerorder", &id).is_some());
}

#[tokio::test]
async fn unknown_paths_types_and_bad_ids_are_api_errors() {
    let ms = start().await;
    let (s, v) = call(&ms, reqwest::Method::GET, "entity/nosuchthing", None).await;
    assert_eq!((s, v["errors"][0]["code"].as_u64()), (404, Some(1005)));
    let (s, v) = call(&ms, reqwest::Method::GET, "entity/store/not-a-uuid", None).await;
    assert_eq!((s, v["errors"][0]["code"].as_u64()), (400, Some(1052)));
    let (s, v) = call(&ms, reqwest::Method::GET, "something/else", None).await;
    assert_eq!((s, v["errors"][0]["code"].as_u64()), (404, Some(1002)));
    let (s, v) = call(
        &ms,
        reqwest::Method::POST,
        "entity/prepayment",
        Some(json!({})),
    )
    .await;
    assert_eq!((s, v["errors"][0]["code"].as_u64()), (405, Some(1011)));
    let (s, v) = call(&ms, reqwest::Method::GET, "entity/store?limit=5000", None).await;
    assert_eq!((s, v["errors"][0]["code"].as_u64()), (412, Some(1084)));
    let resp = http()
        .post(format!("{}/entity/store", ms.base_url()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["errors"][0]["code"], 2001);
}

#[tokio::test]
async fn document_dates_are_stored_to_the_minute() {
    let ms = start().await;
    let shop = ms.seed_sample_shop().expect("shop");
    let b = ms.base_url();
    let meta = |ty: &str, id: &str| json!({"meta": {"href": format!("{b}/entity/{ty}/{id}"), "type": ty, "mediaType": "application/json"}});
    let (status, order) = call(
        &ms,
        reqwest::Method::POST,
        "entity/customerorder",
        Some(json!({
            "organization": meta("organization", &shop.organization),
            "agent": meta("counterparty", &shop.counterparties["rcrm-customer-1"]),
            "moment": "2026-03-02 14:35:10",
            "deliveryPlannedMoment": "2026-03-05 10:15"
        })),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["moment"], "2026-03-02 14:35:00.000");
    assert_eq!(order["deliveryPlannedMoment"], "2026-03-05 10:15:00.000");
    let (status, err) = call(
        &ms,
        reqwest::Method::PUT,
        &format!("entity/customerorder/{}", order["id"].as_str().expect("id")),
        Some(json!({"moment": "вчера"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["errors"][0]["code"], 2016);
}

#[tokio::test]
async fn large_bulk_bodies_are_accepted() {
    let ms = start().await;
    let long = "х".repeat(2000);
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("Покупатель {i}"), "description": long}))
        .collect();
    let (status, v) = call(
        &ms,
        reqwest::Method::POST,
        "entity/counterparty",
        Some(Value::Array(items)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1000));
    assert_eq!(ms.list("counterparty").len(), 1000);
}
