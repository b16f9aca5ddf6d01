//! The emulator answers in МойСклад's JSON shapes. Each response is compared with a fixture in
//! `tests/fixtures/moysklad/` written in the shape of the official API responses: every field
//! the emulator sends must exist there with the same JSON type (objects and arrays recursively),
//! and the fields every response of that kind carries must be present.

use std::time::Duration;

use axum::routing::post;
use serde_json::{json, Value};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};
use skladsync_runner::clients::moysklad::{
    Auth, ClientConfig, CurrentReport, ListQuery, MoyskladClient, RetryPolicy,
};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/moysklad/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Differences between `actual` and the fixture's shape. A fixture `null` accepts anything.
fn shape_diff(actual: &Value, fixture: &Value, path: &str, out: &mut Vec<String>) {
    match (actual, fixture) {
        (_, Value::Null) => {}
        (Value::Object(a), Value::Object(f)) => {
            for (k, v) in a {
                match f.get(k) {
                    Some(fv) => shape_diff(v, fv, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: not in the API shape")),
                }
            }
        }
        (Value::Array(a), Value::Array(f)) => {
            if let Some(f0) = f.first() {
                for (i, v) in a.iter().enumerate() {
                    shape_diff(v, f0, &format!("{path}[{i}]"), out);
                }
            }
        }
        (a, f) if kind(a) != kind(f) => {
            out.push(format!("{path}: {} where the API has {}", kind(a), kind(f)))
        }
        _ => {}
    }
}

fn assert_shape(name: &str, actual: &Value, must_have: &[&str]) {
    let mut diffs = Vec::new();
    shape_diff(actual, &fixture(name), "", &mut diffs);
    for k in must_have {
        let mut cur = actual;
        for part in k.split('.') {
            cur = &cur[part];
        }
        if cur.is_null() {
            diffs.push(format!(".{k}: missing"));
        }
    }
    assert!(diffs.is_empty(), "{name}: {diffs:#?}\nactual: {actual:#}");
}

#[test]
fn the_comparison_catches_wrong_names_and_types() {
    let mut d = Vec::new();
    shape_diff(
        &json!({"meta": {"href": 1}, "positionz": []}),
        &fixture("customerorder"),
        "",
        &mut d,
    );
    assert_eq!(
        d,
        [
            ".meta.href: number where the API has string",
            ".positionz: not in the API shape"
        ]
    );
}

const ENTITY: &[&str] = &[
    "meta.href",
    "meta.type",
    "meta.mediaType",
    "meta.metadataHref",
    "id",
    "accountId",
    "updated",
    "externalCode",
];

#[tokio::test]
async fn responses_have_the_api_shapes() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        webhook_timeout: Duration::from_millis(500),
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator");
    let shop = ms.seed_sample_shop().expect("shop");
    let c = MoyskladClient::new(
        ClientConfig::new(Auth::basic("admin@emulator", "emulator-password"))
            .base_url(ms.base_url())
            .retry(RetryPolicy {
                base_delay: Duration::from_millis(5),
                ..RetryPolicy::default()
            }),
    )
    .expect("client");

    // A webhook receiver, to capture a callback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let app = axum::Router::new().route("/hook", post(|| async { "" }));
        let _ = axum::serve(listener, app).await;
    });
    let hook = c
        .create_webhook(&hook_url, "customerorder", "UPDATE", true)
        .await
        .expect("webhook");
    assert_shape(
        "webhook",
        &hook,
        &[
            "meta.href",
            "id",
            "entityType",
            "url",
            "method",
            "enabled",
            "action",
        ],
    );

    let org = c.meta("organization", &shop.organization);
    let agent = c.meta("counterparty", &shop.counterparties["rcrm-corp-1"]);
    let store = c.meta("store", &shop.stores["Основной склад"]);
    let tshirt = c.meta("product", &shop.products["tshirt-basic"]);
    let (_, account) = shop.organization_accounts[0].clone();
    let order = c
        .create(
            "customerorder",
            &json!({
                "name": "RC-7001", "description": "тест", "syncId": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
                "organization": org, "agent": agent, "store": store,
                "organizationAccount": c.account_meta("organization", &shop.organization, &account),
                "state": c.state_meta("customerorder", &shop.order_states["Новый"]),
                "shipmentAddress": "Москва, ул. Пробная, 1",
                "attributes": [{"meta": c.attribute_meta("customerorder", &shop.order_attributes["Номер заказа в retailCRM"])["meta"], "value": "7001"}],
                "positions": [{"assortment": tshirt, "quantity": 2, "price": 149900, "discount": 5, "vat": 20, "reserve": 2}]
            }),
        )
        .await
        .expect("order");
    let oid = order["id"].as_str().expect("id").to_string();
    let demand = c
        .create(
            "demand",
            &json!({"organization": org, "agent": agent, "store": store,
                    "customerOrder": c.meta("customerorder", &oid),
                    "positions": [{"assortment": tshirt, "quantity": 2, "price": 149900, "discount": 5, "vat": 20}]}),
        )
        .await
        .expect("demand");
    let payment = c
        .create(
            "paymentin",
            &json!({"organization": org, "agent": agent, "sum": 284810, "paymentPurpose": "Оплата RC-7001",
                    "operations": [{"meta": c.meta("customerorder", &oid)["meta"], "linkedSum": 284810}]}),
        )
        .await
        .expect("payment");
    c.update("customerorder", &oid, &json!({"description": "изменено"}))
        .await
        .expect("update");

    let full = c
        .get("customerorder", &oid, &["positions"])
        .await
        .expect("order");
    assert_shape(
        "customerorder",
        &full,
        &[
            ENTITY,
            &[
                "name",
                "moment",
                "applicable",
                "created",
                "owner.meta.href",
                "rate.currency.meta.href",
                "sum",
                "vatSum",
                "payedSum",
                "shippedSum",
                "reservedSum",
                "positions.meta.size",
                "positions.rows",
                "demands",
                "payments",
                "vatEnabled",
                "vatIncluded",
                "printed",
                "published",
            ],
        ]
        .concat(),
    );
    assert_shape(
        "demand",
        &c.get("demand", demand["id"].as_str().expect("id"), &["positions"])
            .await
            .expect("demand"),
        &[
            ENTITY,
            &[
                "name",
                "moment",
                "applicable",
                "customerOrder.meta.href",
                "store.meta.href",
                "sum",
            ],
        ]
        .concat(),
    );
    assert_shape(
        "paymentin",
        &payment,
        &[
            ENTITY,
            &[
                "name",
                "sum",
                "operations",
                "agent.meta.href",
                "organization.meta.href",
            ],
        ]
        .concat(),
    );
    assert_shape(
        "counterparty",
        &c.get(
            "counterparty",
            &shop.counterparties["rcrm-corp-1"],
            &["accounts", "contactpersons"],
        )
        .await
        .expect("cp"),
        &[
            ENTITY,
            &[
                "name",
                "companyType",
                "created",
                "accounts.rows",
                "contactpersons.rows",
                "salesAmount",
                "archived",
            ],
        ]
        .concat(),
    );
    assert_shape(
        "organization",
        &c.get("organization", &shop.organization, &["accounts"])
            .await
            .expect("org"),
        &[ENTITY, &["name", "companyType", "accounts.rows"]].concat(),
    );
    assert_shape(
        "product",
        &c.get("product", &shop.products["tshirt-basic"], &[])
            .await
            .expect("product"),
        &[
            ENTITY,
            &["name", "salePrices", "archived", "paymentItemType"],
        ]
        .concat(),
    );
    assert_shape(
        "variant",
        &c.get("variant", &shop.variants["hoodie#hoodie-m"], &[])
            .await
            .expect("variant"),
        &[ENTITY, &["name", "characteristics", "product.meta.href"]].concat(),
    );
    assert_shape(
        "service",
        &c.get("service", &shop.services["delivery-courier"], &[])
            .await
            .expect("service"),
        &[ENTITY, &["name", "paymentItemType"]].concat(),
    );
    assert_shape(
        "store",
        &c.get("store", &shop.stores["Склад у метро"], &[])
            .await
            .expect("store"),
        &[ENTITY, &["name", "archived"]].concat(),
    );
    assert_shape(
        "employee",
        &c.current_employee().await.expect("employee"),
        &[ENTITY, &["name", "uid", "lastName", "fullName", "shortFio"]].concat(),
    );
    let currency = c
        .list_all("currency", &ListQuery::new())
        .await
        .expect("currency");
    assert_shape(
        "currency",
        &currency[0],
        &["meta.href", "id", "name", "isoCode", "code", "default"],
    );
    let dict = c
        .request(
            reqwest::Method::POST,
            "entity/customentity",
            &[],
            Some(&json!({"name": "Каналы"})),
        )
        .await
        .expect("dictionary")
        .expect("body");
    assert_shape("customentity", &dict, &["meta.href", "id", "name"]);
    let element = c
        .create(
            &format!("customentity/{}", shop.delivery_dictionary),
            &json!({"name": "Постамат", "code": "postamat"}),
        )
        .await
        .expect("element");
    assert_shape(
        "customentity_element",
        &element,
        &[
            "meta.href",
            "meta.metadataHref",
            "id",
            "name",
            "code",
            "externalCode",
            "updated",
        ],
    );

    let mut metadata = c
        .request(
            reqwest::Method::GET,
            "entity/customerorder/metadata",
            &[("expand".into(), "attributes".into())],
            None,
        )
        .await
        .expect("metadata")
        .expect("body");
    assert_shape(
        "metadata_customerorder",
        &metadata,
        &["meta.href", "attributes.meta.href", "states"],
    );
    let delivery_attr = metadata["attributes"]["rows"]
        .as_array_mut()
        .and_then(|rows| rows.iter().find(|a| a["type"] == "customentity").cloned())
        .expect("dictionary attribute");
    assert!(delivery_attr["customEntityMeta"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with(&format!(
            "/context/companysettings/metadata/customEntities/{}",
            shop.delivery_dictionary
        ))));

    let list = c
        .request(
            reqwest::Method::GET,
            "entity/counterparty",
            &[("limit".into(), "1".into()), ("offset".into(), "1".into())],
            None,
        )
        .await
        .expect("list")
        .expect("body");
    assert_shape(
        "list_counterparty",
        &list,
        &[
            "context.employee.meta.href",
            "meta.size",
            "meta.limit",
            "meta.offset",
            "meta.previousHref",
            "rows",
        ],
    );

    let refused = c
        .delete("customerorder", &oid)
        .await
        .expect_err("linked documents");
    let body = json!({"errors": refused.errors()});
    assert_shape("error", &body, &["errors"]);
    assert!(refused.errors()[0].more_info.is_some());

    let all = c
        .request(reqwest::Method::GET, "report/stock/all", &[], None)
        .await
        .expect("stock")
        .expect("body");
    assert_shape("report_stock_all", &all, &["meta.size", "rows"]);
    let by_store = c
        .request(reqwest::Method::GET, "report/stock/bystore", &[], None)
        .await
        .expect("bystore")
        .expect("body");
    assert_shape("report_stock_bystore", &by_store, &["meta.size", "rows"]);
    let current = c
        .stock_current(CurrentReport::ByStore, &ListQuery::new())
        .await
        .expect("current");
    assert_shape("report_stock_bystore_current", &Value::Array(current), &[]);

    assert!(ms.wait_for_webhooks(Duration::from_secs(5)).await);
    let deliveries = ms.webhook_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_shape(
        "webhook_callback",
        &deliveries[0].body,
        &[
            "auditContext.meta.href",
            "auditContext.uid",
            "auditContext.moment",
            "events",
        ],
    );
    let _ = hook;
}
