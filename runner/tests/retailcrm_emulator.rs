//! The retailCRM emulator on its own: shapes, keys, validation, filters, history written by
//! manager actions, persistence. Plain HTTP, so nothing here depends on the client.

#[path = "fixtures/retailcrm/support.rs"]
mod support;

use serde_json::{json, Value};
use skladsync_emulators::retailcrm::{EmulatorConfig, RetailcrmEmulator, State};
use support::{assert_shape, fixture, shop, KEY, OTHER_KEY};

async fn get(emu: &RetailcrmEmulator, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", emu.base_url()))
        .header("X-API-KEY", KEY)
        .send()
        .await
        .expect("loopback");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json body"))
}

async fn post(emu: &RetailcrmEmulator, path: &str, form: &[(&str, String)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", emu.base_url()))
        .header("X-API-KEY", KEY)
        .form(form)
        .send()
        .await
        .expect("loopback");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json body"))
}

#[tokio::test]
async fn an_order_read_has_the_shape_of_retailcrm_answers() {
    let (emu, report) = shop().await;
    let (status, body) = get(&emu, &format!("/api/v5/orders/{}?by=id", report.orders[0])).await;
    assert_eq!(status, 200);
    assert_shape(&fixture("order_get_shape.json"), &body, "");
    // Empty payments of a read are an object; empty customFields an empty array.
    assert_eq!(body["order"]["payments"], json!({}));
    let (_, paid) = get(&emu, &format!("/api/v5/orders/{}?by=id", report.orders[1])).await;
    let payments = paid["order"]["payments"].as_object().expect("map");
    let (key, p) = payments.iter().next().expect("one payment");
    assert_eq!(p["id"].to_string(), *key);
    assert_eq!(p["status"], "paid");
}

#[tokio::test]
async fn history_of_an_api_create_has_the_shape_of_retailcrm_history() {
    let (emu, _) = shop().await;
    let (status, created) = post(
        &emu,
        "/api/v5/orders/create",
        &[
            ("site", "shop-main".into()),
            ("order", json!({"externalId": "S-1", "firstName": "Ш", "items": [{"offer": {"xmlId": "table-oak"}}]}).to_string()),
        ],
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_i64().expect("id");
    // Creation answers show payments as an array, like retailCRM's create fixture.
    assert!(created["order"]["payments"].is_array());
    let (_, h) = get(
        &emu,
        &format!("/api/v5/orders/history?filter[orderId]={id}"),
    )
    .await;
    assert_shape(&fixture("orders_history_shape.json"), &h, "");
    assert_eq!(h["history"].as_array().map(Vec::len), Some(1));
    assert_eq!(h["history"][0]["apiKey"]["current"], true);
    assert!(h["history"][0]["order"]["payments"].is_array());
    // The same record read with another key is not "current".
    let other = reqwest::Client::new()
        .get(format!(
            "{}/api/v5/orders/history?filter[orderId]={id}",
            emu.base_url()
        ))
        .header("X-API-KEY", OTHER_KEY)
        .send()
        .await
        .expect("loopback")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(other["history"][0]["apiKey"]["current"], false);
}

#[tokio::test]
async fn the_key_is_read_from_the_header_or_the_query_and_checked() {
    let (emu, _) = shop().await;
    let http = reqwest::Client::new();
    let base = emu.base_url();
    let by_query = http
        .get(format!("{base}/api/v5/reference/sites?apiKey={KEY}"))
        .send()
        .await
        .expect("loopback");
    assert_eq!(by_query.status().as_u16(), 200);
    let missing = http
        .get(format!("{base}/api/v5/reference/sites"))
        .send()
        .await
        .expect("loopback");
    assert_eq!(missing.status().as_u16(), 403);
    assert_eq!(
        missing.json::<Value>().await.expect("json"),
        json!({"success": false, "errorMsg": "\"apiKey\" is missing."})
    );
    let wrong = http
        .get(format!("{base}/api/v5/reference/sites"))
        .header("X-API-KEY", "test-key-nope")
        .send()
        .await
        .expect("loopback");
    assert_eq!(wrong.status().as_u16(), 403);
    assert_eq!(
        wrong.json::<Value>().await.expect("json")["errorMsg"],
        "Wrong \"apiKey\" value."
    );
}

#[tokio::test]
async fn bad_parameters_are_refused_like_retailcrm_does() {
    let (emu, _) = shop().await;
    let (s, b) = get(&emu, "/api/v5/orders?limit=25").await;
    assert_eq!(
        (s, b["errorMsg"].as_str()),
        (400, Some("Errors in the input parameters"))
    );
    assert!(b["errors"]["limit"].is_string());
    let (s, b) = get(&emu, "/api/v5/orders?filter[nonsense]=1").await;
    assert_eq!(s, 400);
    assert!(b["errors"]["filter[nonsense]"].is_string());
    let (s, b) = post(
        &emu,
        "/api/v5/orders/create",
        &[("site", "shop-main".into())],
    )
    .await;
    assert_eq!(
        (s, b["errorMsg"].as_str()),
        (400, Some("Parameter 'order' is missing"))
    );
    let (s, b) = post(&emu, "/api/v5/orders/create", &[("order", "{}".into())]).await;
    assert_eq!(
        (s, b["errorMsg"].as_str()),
        (400, Some("Parameter 'site' is missing")),
        "two sites: the site must be named"
    );
    let (s, b) = post(
        &emu,
        "/api/v5/orders/create",
        &[
            ("site", "shop-main".into()),
            (
                "order",
                json!({"items": [{"offer": {"xmlId": "nope"}}]}).to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b["errors"]["items[0].offer.xmlId"],
        "Offer with xmlId nope not found."
    );
    let (s, b) = post(
        &emu,
        "/api/v5/orders/payments/create",
        &[("payment", json!({"type": "cash"}).to_string())],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b["errors"]["order"],
        "Set one of the following fields: id, externalId, number"
    );
    let (s, _) = get(&emu, "/api/v5/no-such-method").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn inventory_uploads_above_the_limit_or_without_stores_are_refused() {
    let (emu, _) = shop().await;
    let offers: Vec<Value> = (0..251)
        .map(|n| json!({"xmlId": format!("x{n}"), "stores": [{"code": "main", "available": 1}]}))
        .collect();
    let (s, b) = post(
        &emu,
        "/api/v5/store/inventories/upload",
        &[("offers", Value::Array(offers).to_string())],
    )
    .await;
    assert_eq!(s, 400);
    assert!(b["errors"]["offers"]
        .as_str()
        .is_some_and(|m| m.contains("250")));
    let (s, _) = post(
        &emu,
        "/api/v5/store/inventories/upload",
        &[(
            "offers",
            json!([{"xmlId": "table-oak", "available": 3}]).to_string(),
        )],
    )
    .await;
    assert_eq!(s, 400);
    let (s, b) = post(
        &emu,
        "/api/v5/store/inventories/upload",
        &[(
            "offers",
            json!([{"xmlId": "table-oak", "stores": [{"code": "main", "available": 9}]}])
                .to_string(),
        )],
    )
    .await;
    assert_eq!(
        (s, b.clone()),
        (200, json!({"success": true, "processedOffersCount": 1}))
    );
    assert_eq!(
        emu.offer_by_xml_id("table-oak")
            .map(|o| o.stores["main"].quantity),
        Some(9.0)
    );
}

fn records_of(emu: &RetailcrmEmulator, order_id: i64, since: usize) -> Vec<Value> {
    emu.order_history(Some(KEY))
        .into_iter()
        .skip(since)
        .filter(|h| h["order"]["id"] == order_id)
        .collect()
}

#[tokio::test]
async fn manager_work_leaves_history_with_retailcrm_field_codes() {
    let (emu, report) = shop().await;
    let id = report.orders[1]; // A-1002: table + lamp, paid by card, status assembling
    let order = emu.order(id).expect("order");
    let lamp = order["items"][1]["id"].as_i64().expect("item id");
    let before_summ = order["summ"].as_f64().expect("summ");
    let mark = emu.order_history(None).len();

    let m = emu.as_manager(12);
    m.cancel_item(id, lamp).expect("item cancelled");
    let recs = records_of(&emu, id, mark);
    let cancel = recs
        .iter()
        .find(|h| h["field"] == "order_product.status")
        .expect("item status record");
    assert_eq!(cancel["source"], "user");
    assert_eq!(cancel["user"], json!({"id": 12}));
    assert_eq!(cancel["oldValue"], json!({"code": "new"}));
    assert_eq!(cancel["newValue"], json!({"code": "out-of-stock"}));
    assert_eq!(cancel["item"]["offer"]["xmlId"], "lamp-arc");
    assert!(cancel.get("apiKey").is_none(), "no apiKey on user records");
    let after = emu.order(id).expect("order");
    assert_eq!(after["items"][1]["isCanceled"], true);
    assert!(after["summ"].as_f64().expect("summ") < before_summ);

    let mark = emu.order_history(None).len();
    let pay = m
        .add_payment(
            id,
            json!({"type": "cash", "status": "not-paid", "amount": 100}),
        )
        .expect("payment");
    m.set_payment_status(pay, "paid").expect("paid");
    let recs = records_of(&emu, id, mark);
    let fields: Vec<&str> = recs.iter().filter_map(|h| h["field"].as_str()).collect();
    assert!(fields.contains(&"payments"), "{fields:?}");
    let paid = recs
        .iter()
        .find(|h| h["field"] == "payments.status")
        .expect("status record");
    assert_eq!(paid["oldValue"], json!({"code": "not-paid"}));
    assert_eq!(paid["payment"]["id"], pay);
    assert!(fields.contains(&"payments.paid_at"));

    // Entering `complete` moves items to `saled` by automation (source: code), except the
    // cancelled one.
    let mark = emu.order_history(None).len();
    m.set_order_status(id, "complete").expect("complete");
    let recs = records_of(&emu, id, mark);
    let auto: Vec<&Value> = recs.iter().filter(|h| h["source"] == "code").collect();
    assert_eq!(auto.len(), 1, "{recs:#?}");
    assert_eq!(auto[0]["newValue"], json!({"code": "saled"}));
    assert!(auto[0]["id"].as_i64() > recs[0]["id"].as_i64());

    // Item removal and addition through an items edit.
    let mark = emu.order_history(None).len();
    let new_item = m
        .add_item(
            id,
            json!({"offer": {"xmlId": "chair01#blue"}, "quantity": 2}),
        )
        .expect("added");
    m.remove_item(id, lamp).expect("removed");
    let recs = records_of(&emu, id, mark);
    let adds: Vec<&Value> = recs
        .iter()
        .filter(|h| h["field"] == "order_product")
        .collect();
    assert_eq!(adds.len(), 2);
    assert_eq!(adds[0]["oldValue"], Value::Null);
    assert_eq!(adds[0]["newValue"]["id"], new_item);
    assert_eq!(adds[1]["newValue"], Value::Null);
    assert_eq!(adds[1]["oldValue"]["id"], lamp);
}

#[tokio::test]
async fn history_ids_are_monotonic_and_since_id_filters() {
    let (emu, report) = shop().await;
    for s in ["client-confirmed", "prepayed", "send-to-assembling"] {
        emu.as_manager(13)
            .set_order_status(report.orders[0], s)
            .expect("move");
    }
    let all = emu.order_history(None);
    let ids: Vec<i64> = all.iter().filter_map(|h| h["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let cut = ids[ids.len() - 3];
    let (_, page) = get(
        &emu,
        &format!("/api/v5/orders/history?filter[sinceId]={cut}&limit=20"),
    )
    .await;
    let got: Vec<i64> = page["history"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|h| h["id"].as_i64())
        .collect();
    assert_eq!(got, ids[ids.len() - 2..]);
    assert_eq!(page["pagination"]["totalCount"], 2);
    assert!(page["generatedAt"].is_string());
}

#[tokio::test]
async fn customer_histories_record_creation_and_field_changes() {
    let (emu, _) = shop().await;
    let (s, c) = post(
        &emu,
        "/api/v5/customers/create",
        &[
            ("site", "shop-main".into()),
            (
                "customer",
                json!({"externalId": "c-new", "firstName": "Нина", "email": "nina@example.ru"})
                    .to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(s, 201);
    let id = c["id"].as_i64().expect("id");
    let (s, _) = post(
        &emu,
        "/api/v5/customers/c-new/edit",
        &[("site", "shop-main".into()), ("customer", json!({"email": "nina@new.example.ru", "phones": [{"number": "+79990001122"}], "customFields": {"moysklad_external_id": "ms-1"}}).to_string())],
    )
    .await;
    assert_eq!(s, 200);
    let (_, h) = get(
        &emu,
        &format!("/api/v5/customers/history?filter[customerId]={id}"),
    )
    .await;
    let recs = h["history"].as_array().expect("history");
    assert_eq!(recs[0]["created"], true);
    assert_eq!(recs[0]["field"], "id");
    assert_eq!(recs[0]["newValue"], id);
    assert_eq!(recs[0]["customer"]["email"], "nina@example.ru");
    let find = |f: &str| {
        recs.iter()
            .find(|r| r["field"] == f)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(find("email")["oldValue"], "nina@example.ru");
    assert_eq!(find("phones")["newValue"], "+79990001122");
    assert_eq!(find("custom_moysklad_external_id")["newValue"], "ms-1");
    assert!(recs.iter().all(|r| r["apiKey"]["current"] == true));

    let dup = post(
        &emu,
        "/api/v5/customers/create",
        &[
            ("site", "shop-main".into()),
            ("customer", json!({"externalId": "c-new"}).to_string()),
        ],
    )
    .await;
    assert_eq!(
        dup,
        (
            400,
            json!({"success": false, "errorMsg": "Customer with externalId already exists."})
        )
    );
}

#[tokio::test]
async fn corporate_customers_have_contacts_companies_and_their_own_history() {
    let (emu, report) = shop().await;
    let corp = report.corporate_customers[0];
    let (_, body) = get(&emu, &format!("/api/v5/customers-corporate/{corp}?by=id")).await;
    let c = &body["customerCorporate"];
    assert_eq!(c["type"], "customer_corporate");
    assert_eq!(c["nickName"], "ООО Ромашка");
    assert_eq!(c["mainCompany"]["name"], "ООО \"Ромашка\"");
    assert!(c["mainCustomerContact"]["companies"][0]["company"]["id"].is_number());
    let (_, contacts) = get(
        &emu,
        "/api/v5/customers-corporate/corp-romashka/contacts?site=shop-main",
    )
    .await;
    assert_eq!(
        contacts["contacts"][0]["customer"]["externalId"],
        "cp-contact-oleg"
    );
    let (_, companies) = get(&emu, "/api/v5/customers-corporate/corp-romashka/companies").await;
    assert_eq!(companies["companies"][0]["contragent"]["INN"], "7701234567");
    assert_eq!(
        companies["companies"][0]["customer"]["type"],
        "customer_corporate"
    );

    let (s, _) = post(
        &emu,
        "/api/v5/customers-corporate/corp-romashka/companies/co-7701234567/edit",
        &[
            ("entityBy", "externalId".into()),
            (
                "company",
                json!({"contragent": {"KPP": "770101002"}}).to_string(),
            ),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let hist = emu.corporate_history(Some(KEY));
    assert_eq!(hist[0]["created"], true);
    assert!(hist[0]["customer"]["customerContacts"].is_array());
    let kpp = hist
        .iter()
        .find(|h| h["field"] == "company.contragent.k_p_p")
        .expect("KPP record");
    assert_eq!(kpp["newValue"], "770101002");
    assert_eq!(kpp["company"]["name"], "ООО \"Ромашка\"");

    // The corporate order embeds customer, contact and company.
    let b2001 = emu
        .order_by_external_id(Some("shop-main"), "B-2001")
        .expect("order");
    assert_eq!(b2001["customer"]["type"], "customer_corporate");
    assert_eq!(b2001["contact"]["externalId"], "cp-contact-oleg");
    assert_eq!(b2001["company"]["contragent"]["INN"], "7701234567");
}

#[tokio::test]
async fn order_filters_follow_retailcrm() {
    let (emu, _) = shop().await;
    let ext = |b: &Value| -> Vec<String> {
        b["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .map(|o| o["externalId"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (_, b) = get(&emu, "/api/v5/orders?filter[extendedStatus][]=cancel").await;
    assert_eq!(ext(&b), ["A-1004"]);
    let (_, b) = get(
        &emu,
        "/api/v5/orders?filter[customFields][delivery_slot]=morning",
    )
    .await;
    assert_eq!(ext(&b), ["A-1003"]);
    let (_, b) = get(&emu, "/api/v5/orders?filter[externalIds][]=A-1001").await;
    assert_eq!(
        b["orders"].as_array().map(Vec::len),
        Some(2),
        "one per site"
    );
    let (_, b) = get(
        &emu,
        "/api/v5/orders?filter[externalIds][0]=A-1001&filter[sites][]=shop-outlet",
    )
    .await;
    assert_eq!(b["orders"][0]["number"], "O-1001");
    let (_, b) = get(
        &emu,
        "/api/v5/orders?filter[customerExternalId]=cp-8812&filter[paymentStatuses][]=paid",
    )
    .await;
    assert_eq!(ext(&b), ["A-1002"]);
    let (_, b) = get(&emu, "/api/v5/orders/statuses?externalIds[]=A-1004").await;
    assert_eq!(b["orders"][0]["group"], "cancel");
}

#[tokio::test]
async fn state_survives_a_json_round_trip_and_ids_keep_growing() {
    let (emu, _) = shop().await;
    let json = emu.state_json().expect("serializes");
    let state: State = serde_json::from_str(&json).expect("parses back");
    let last_history = state.order_history.last().map(|r| r.id).expect("history");
    let again = RetailcrmEmulator::start_with_state(
        EmulatorConfig::with_keys([KEY]).rate_limit(None),
        state,
    )
    .await
    .expect("restarts");
    assert_eq!(again.orders(), emu.orders());
    let id = again
        .as_manager(12)
        .create_order(json!({"site": "shop-main", "firstName": "После"}))
        .expect("created");
    assert!(emu.order(id).is_none(), "a fresh id");
    let newest = again
        .order_history(None)
        .last()
        .and_then(|h| h["id"].as_i64());
    assert!(newest > Some(last_history));
}
