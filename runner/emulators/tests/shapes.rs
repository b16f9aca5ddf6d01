//! The shapes of the emulators' answers for what the rules read, as the services send them
//! (after the retailCRM and МойСклад API references): retailCRM `items[].discounts[]`,
//! `links`, fractional amounts; МойСклад price types with `meta`/`id`/`externalCode`, the
//! `group` of owned entities, `context/companysettings/pricetype`, `entity/group`.

use serde_json::{json, Value};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};
use skladsync_emulators::retailcrm::{sample_shop, EmulatorConfig, RetailcrmEmulator};

const KEY: &str = "shape-key";

async fn crm_get(emu: &RetailcrmEmulator, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v5/{path}", emu.base_url()))
        .header("X-API-KEY", KEY)
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json")
}

#[tokio::test]
async fn retailcrm_orders_carry_discounts_links_and_fractional_amounts() {
    let emu = RetailcrmEmulator::start(EmulatorConfig::with_keys([KEY]))
        .await
        .expect("emulator");
    emu.seed(&sample_shop().expect("sample")).expect("seed");
    let body = crm_get(&emu, "orders/A-1002?by=externalId&site=shop-main").await;
    let order = &body["order"];
    assert_eq!(order["links"], json!([]), "{order}");
    // 25 900 + 7 490 − 490.50: amounts keep their kopecks.
    assert_eq!(order["summ"], json!(32899.5));
    assert_eq!(order["totalSumm"], json!(32899.5));
    let payments: Vec<&Value> = order["payments"]
        .as_object()
        .expect("payments by id")
        .values()
        .collect();
    assert_eq!(payments[0]["amount"], json!(32899.5));
    let items = order["items"].as_array().expect("items");
    let lamp = items
        .iter()
        .find(|i| i["offer"]["xmlId"] == "lamp-arc")
        .expect("lamp");
    assert_eq!(
        lamp["discounts"],
        json!([{"type": "manual_product", "amount": 490.5}])
    );
    assert_eq!(lamp["discountTotal"], json!(490.5));
    let table = items
        .iter()
        .find(|i| i["offer"]["xmlId"] == "table-oak")
        .expect("table");
    assert_eq!(table["discounts"], json!([]));
    // Every item has the breakdown, every order its links.
    let list = crm_get(&emu, "orders?limit=100").await;
    for o in list["orders"].as_array().expect("orders") {
        assert!(o["links"].is_array(), "{o}");
        for i in o["items"].as_array().into_iter().flatten() {
            assert!(i["discounts"].is_array(), "{i}");
        }
    }
}

async fn ms_get(ms: &MoyskladEmulator, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{}/{path}", ms.base_url()))
        .basic_auth("admin@emulator", Some("emulator-password"))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json")
}

fn is_meta_of(v: &Value, ty: &str) -> bool {
    v["meta"]["type"] == ty
        && v["meta"]["mediaType"] == "application/json"
        && v["meta"]["href"]
            .as_str()
            .is_some_and(|h| h.starts_with("http"))
}

#[tokio::test]
async fn moysklad_price_types_and_groups_have_the_api_shape() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig::default())
        .await
        .expect("emulator");
    let shop = ms.seed_sample_shop().expect("sample");
    let _ = shop;
    let types = ms_get(&ms, "context/companysettings/pricetype").await;
    let types = types.as_array().expect("an array of price types");
    assert!(!types.is_empty());
    for t in types {
        assert!(is_meta_of(t, "pricetype"), "{t}");
        assert!(t["id"].is_string() && t["name"].is_string() && t["externalCode"].is_string());
    }
    let default = ms_get(&ms, "context/companysettings/pricetype/default").await;
    assert_eq!(&default, &types[0]);

    let products = ms_get(&ms, "entity/product").await;
    let rows = products["rows"].as_array().expect("rows");
    assert!(!rows.is_empty());
    for p in rows {
        for price in p["salePrices"].as_array().expect("salePrices") {
            assert!(is_meta_of(&price["priceType"], "pricetype"), "{price}");
            assert_eq!(price["priceType"]["id"], types[0]["id"]);
            assert!(price["priceType"]["externalCode"].is_string(), "{price}");
        }
        assert!(is_meta_of(&p["group"], "group"), "{p}");
        assert!(is_meta_of(&p["owner"], "employee"), "{p}");
    }
    // The group an entity names can be read.
    let href = rows[0]["group"]["meta"]["href"].as_str().expect("href");
    let id = href.rsplit('/').next().expect("id");
    let group = ms_get(&ms, &format!("entity/group/{id}")).await;
    assert_eq!(group["name"], "Основной");
    // A price type named by its meta is stored with the full shape; an unknown one is refused.
    let pt = types[0].clone();
    let made = ms
        .create(
            "product",
            json!({"name": "Пуф", "salePrices": [{"value": 100000.0, "priceType": {"meta": pt["meta"]}}]}),
        )
        .expect("product");
    assert_eq!(made["salePrices"][0]["priceType"], pt);
    let refused = ms.create(
        "product",
        json!({"name": "Пуф 2", "salePrices": [{"value": 1.0, "priceType": {"meta": {
            "href": format!("{}/context/companysettings/pricetype/0e3a0000-5a1e-11f0-0a80-999999999999", ms.base_url()),
            "type": "pricetype", "mediaType": "application/json"}}}]}),
    );
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_customer_deleted_in_the_interface_leaves_a_deletion_record() {
    let emu = RetailcrmEmulator::start(EmulatorConfig::with_keys([KEY]))
        .await
        .expect("emulator");
    emu.seed(&sample_shop().expect("sample")).expect("seed");
    let id = emu
        .as_manager(12)
        .create_customer(
            json!({"site": "shop-main", "firstName": "Ольга", "email": "olga@example.ru"}),
        )
        .expect("customer");
    emu.as_manager(12).delete_customer(id).expect("delete");
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v5/customers/{id}?by=id", emu.base_url()))
        .header("X-API-KEY", KEY)
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 404);
    let history = crm_get(&emu, "customers/history").await;
    let last = history["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .expect("a record");
    assert_eq!(last["deleted"], json!(true), "{last}");
    assert_eq!(last["source"], "user");
    assert_eq!(last["field"], "id");
    assert_eq!(last["customer"]["id"], json!(id));
    assert_eq!(last["customer"]["firstName"], "Ольга");
}
