//! МойСклад's refusals as the API gives them: a filter on a field the type cannot be
//! filtered by (1034) and a body naming a field the type does not have (1007), instead of an
//! empty answer or a silently stored field.

use serde_json::{json, Value};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};

const LOGIN: &str = "admin@emulator";
const PASSWORD: &str = "emulator-password";

async fn call(
    ms: &MoyskladEmulator,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/{path}", ms.base_url()))
        .basic_auth(LOGIN, Some(PASSWORD));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("response");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn unknown_filter_fields_are_refused_with_1034() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig::default())
        .await
        .expect("emulator");
    ms.seed(
        "counterparty",
        json!({"name": "Петров", "phone": "+79001234567"}),
    )
    .expect("seed");
    let (status, body) = call(
        &ms,
        reqwest::Method::GET,
        "entity/counterparty?filter=nosuchfield=1",
        None,
    )
    .await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["errors"][0]["code"], 1034, "{body}");
    assert!(body["errors"][0]["error"]
        .as_str()
        .is_some_and(|t| t.contains("nosuchfield")));
    // A documented filter field still answers.
    let (status, body) = call(
        &ms,
        reqwest::Method::GET,
        "entity/counterparty?filter=phone=%2B79001234567",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(1));
    // Custom fields are filtered by their metadata href; the assortment has its own fields.
    let (status, _) = call(
        &ms,
        reqwest::Method::GET,
        "entity/assortment?filter=stockMode=all;type=product",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &ms,
        reqwest::Method::GET,
        "entity/assortment?filter=phone=1",
        None,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["code"].clone()),
        (412, json!(1034))
    );
    // Document fields belong to documents only.
    let (status, _) = call(
        &ms,
        reqwest::Method::GET,
        "entity/customerorder?filter=applicable=true;state.name=Новый",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &ms,
        reqwest::Method::GET,
        "entity/store?filter=applicable=true",
        None,
    )
    .await;
    assert_eq!(status, 412);
}

#[tokio::test]
async fn unknown_body_fields_are_refused_with_1007() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig::default())
        .await
        .expect("emulator");
    let (status, body) = call(
        &ms,
        reqwest::Method::POST,
        "entity/counterparty",
        Some(json!({"name": "Петров", "phnoe": "+79001234567"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["code"], 1007, "{body}");
    assert!(ms.list("counterparty").is_empty(), "nothing was stored");
    let (status, made) = call(
        &ms,
        reqwest::Method::POST,
        "entity/counterparty",
        Some(json!({"name": "Петров", "phone": "+79001234567"})),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let id = made["id"].as_str().expect("id");
    let (status, body) = call(
        &ms,
        reqwest::Method::PUT,
        &format!("entity/counterparty/{id}"),
        Some(json!({"emial": "a@b.ru"})),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["code"].clone()),
        (400, json!(1007))
    );
    // Read-only fields sent back as read are ignored, as the API does.
    let (status, body) = call(
        &ms,
        reqwest::Method::PUT,
        &format!("entity/counterparty/{id}"),
        Some(
            json!({"meta": made["meta"], "id": id, "updated": made["updated"], "email": "a@b.ru"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "a@b.ru");
}
