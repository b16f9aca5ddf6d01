//! МойСклад's `enter` (оприходование): a posted one adds its positions to the store's stock.

use serde_json::json;
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};

#[tokio::test]
async fn a_posted_enter_adds_stock() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig::default())
        .await
        .expect("emulator");
    let meta = |ty: &str, id: &str| json!({"meta": {"href": format!("{}/entity/{ty}/{id}", ms.base_url()), "type": ty, "mediaType": "application/json"}});
    let id = |v: &serde_json::Value| v["id"].as_str().expect("id").to_string();
    let org = id(&ms
        .seed("organization", json!({"name": "ООО «Мебель»"}))
        .expect("org"));
    let store = id(&ms.seed("store", json!({"name": "Склад"})).expect("store"));
    let product = id(&ms
        .seed("product", json!({"name": "Стул"}))
        .expect("product"));
    let enter = ms
        .create(
            "enter",
            json!({"organization": meta("organization", &org), "store": meta("store", &store),
                   "positions": [{"quantity": 7, "price": 100000, "assortment": meta("product", &product)}]}),
        )
        .expect("enter");
    assert_eq!(enter["meta"]["type"], "enter");
    assert_eq!(enter["applicable"], json!(true));
    assert!(enter["name"].is_string() && enter["moment"].is_string());
    assert_eq!(ms.stock(&store, &product).stock, 7.0);
    // A store is required.
    assert!(ms
        .create(
            "enter",
            json!({"organization": meta("organization", &org), "positions": []})
        )
        .is_err());
}
