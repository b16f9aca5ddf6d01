//! The retailCRM client against the retailCRM emulator, on loopback.

#[path = "fixtures/retailcrm/support.rs"]
mod support;

use serde_json::{json, Value};
use skladsync_runner::clients::retailcrm::{
    EntityKind, EntityRef, Error, HistoryFilter, HistoryKind, InventoryOffer, InventoryStore,
    PageRequest, RetailcrmClient, WriteOptions,
};
use support::{client, fixture, shop, KEY, OTHER_KEY};

#[tokio::test]
async fn order_create_sends_a_form_with_json_fields_and_reads_back_by_both_ids() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    let body = fixture("order_create_body.json");
    emu.clear_requests();
    let created = c
        .order_create(&body, Some("shop-main"))
        .await
        .expect("create succeeds");
    let id = created.id.expect("create answers with an id");
    assert_eq!(created.raw["order"]["externalId"], "ms-5f1c0d2e");

    // What went over the wire: a form, `order` as one JSON string field, `site` plain, key in
    // the header and nowhere else.
    let reqs = emu.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v5/orders/create");
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(r.form_field("site"), Some("shop-main"));
    assert_eq!(r.form_json("order"), Some(body.clone()));
    assert_eq!(r.api_key_header.as_deref(), Some(KEY));
    assert!(r.query.is_empty(), "{:?}", r.query);
    assert!(r
        .form
        .iter()
        .all(|(k, v)| k != "apiKey" && !v.contains(KEY)));

    let by_id = c
        .order_get(&EntityRef::Id(id), None)
        .await
        .expect("get by id");
    let by_ext = c
        .order_get(&EntityRef::from("ms-5f1c0d2e"), Some("shop-main"))
        .await
        .expect("get by externalId");
    assert_eq!(by_id, by_ext);
    assert_eq!(by_id["number"], "MS-1042");
    assert_eq!(by_id["customer"]["externalId"], "cp-8812");
    assert_eq!(by_id["items"][0]["offer"]["xmlId"], "chair01#red");
    // 2 x (4990 - 100) + delivery 300
    assert_eq!(by_id["totalSumm"], json!(10080));
    assert_eq!(by_id["prepaySum"], json!(10080));
    // Reads show payments keyed by id.
    let payments = by_id["payments"].as_object().expect("payments map");
    assert_eq!(payments.len(), 1);
    let get = emu.requests().pop().expect("recorded");
    assert_eq!(get.query_param("by"), Some("externalId"));
    assert_eq!(get.query_param("site"), Some("shop-main"));
}

#[tokio::test]
async fn order_edit_by_id_and_by_external_id() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    let order = emu
        .order_by_external_id(Some("shop-main"), "A-1001")
        .expect("seeded order");
    let id = order["id"].as_i64().expect("id");

    c.order_edit(
        &EntityRef::Id(id),
        &json!({"status": "client-confirmed", "managerComment": "ok"}),
        None,
    )
    .await
    .expect("edit by id");
    let edited = c
        .order_edit(
            &EntityRef::from("A-1001"),
            &json!({"status": "assembling", "shipped": true}),
            Some("shop-main"),
        )
        .await
        .expect("edit by externalId");
    assert_eq!(edited.id, Some(id));
    let r = emu.requests().pop().expect("recorded");
    assert_eq!(r.path, "/api/v5/orders/A-1001/edit");
    assert_eq!(r.form_field("by"), Some("externalId"));
    assert_eq!(r.form_field("site"), Some("shop-main"));

    let now = emu.order(id).expect("order");
    assert_eq!(now["status"], "assembling");
    assert_eq!(now["managerComment"], "ok");
    assert_eq!(now["shipped"], true);
    // The same externalId on the other site is a different order and was not touched.
    let outlet = emu
        .order_by_external_id(Some("shop-outlet"), "A-1001")
        .expect("outlet order");
    assert_eq!(outlet["status"], "new");
}

#[tokio::test]
async fn duplicate_external_id_is_a_typed_error_with_the_raw_message() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    let err = c
        .order_create(
            &json!({"externalId": "A-1001", "items": []}),
            Some("shop-main"),
        )
        .await
        .expect_err("externalId is taken on this site");
    assert!(err.is_duplicate_external_id(), "{err}");
    assert_eq!(err.status(), Some(400));
    let api = err.api_error().expect("envelope");
    assert_eq!(api.message, "Order with externalId already exists.");
    assert_eq!(api.raw["success"], false);
    // A 4xx is not retried.
    assert_eq!(emu.requests().len(), 1);
    // On another site the same externalId is free.
    let other = c
        .order_create(
            &json!({"externalId": "A-1002", "firstName": "Ольга"}),
            Some("shop-outlet"),
        )
        .await
        .expect("free on shop-outlet");
    assert!(other.id.is_some());
}

#[tokio::test]
async fn envelope_errors_as_an_object_are_read_field_by_field() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    let err = c
        .order_create(&json!({"status": "no-such-status"}), Some("shop-main"))
        .await
        .expect_err("unknown status");
    let api = err.api_error().expect("envelope");
    assert_eq!(api.message, "Errors in the entity format");
    assert_eq!(api.errors.len(), 1);
    assert_eq!(api.errors[0].field.as_deref(), Some("status"));
    assert!(api.errors[0].message.contains("no-such-status"));
    assert!(api.raw["errors"].is_object());

    let missing = c
        .order_get(&EntityRef::Id(999_999), None)
        .await
        .expect_err("absent");
    assert!(missing.is_not_found());
    assert_eq!(
        missing.api_error().map(|a| a.message.as_str()),
        Some("Not found")
    );
}

#[tokio::test]
async fn envelope_errors_as_an_array_are_read_too() {
    // retailCRM sends `errors` as an array on some endpoints; the emulator never does, so a
    // one-route stub plays that server.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"success": false, "errorMsg": "Validation error", "errors": ["first problem", "second problem"]})),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let c = RetailcrmClient::new(
        skladsync_runner::clients::retailcrm::ClientConfig::new(&format!("http://{addr}"), KEY)
            .expect("url")
            .with_rate_limit(None),
    )
    .expect("client");
    let err = c
        .order_create(&json!({}), None)
        .await
        .expect_err("stub refuses");
    let api = err.api_error().expect("envelope");
    assert_eq!(api.message, "Validation error");
    let messages: Vec<&str> = api.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["first problem", "second problem"]);
    assert!(api.errors.iter().all(|e| e.field.is_none()));
    assert!(err.to_string().contains("first problem"));
}

#[tokio::test]
async fn lists_page_with_limit_and_page_and_collect_all_pages() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    for n in 0..44 {
        emu.as_manager(12)
            .create_order(
                json!({"site": "shop-outlet", "externalId": format!("P-{n}"), "firstName": "P"}),
            )
            .expect("order");
    }
    let filter = json!({"sites": ["shop-outlet"]});
    let first = c
        .orders_list(&filter, PageRequest::new(1, 20))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 20);
    assert_eq!(first.pagination.total_count, 45);
    assert_eq!(first.pagination.total_page_count, 3);
    let third = c
        .orders_list(&filter, PageRequest::new(3, 20))
        .await
        .expect("page 3");
    assert_eq!(third.items.len(), 5);
    assert!(!third.pagination.has_more());
    let r = emu.requests().pop().expect("recorded");
    assert_eq!(r.query_param("filter[sites][]"), Some("shop-outlet"));
    assert_eq!(r.query_param("limit"), Some("20"));
    assert_eq!(r.query_param("page"), Some("3"));

    emu.clear_requests();
    let all = c.orders_list_all(&filter).await.expect("all pages");
    assert_eq!(all.len(), 45);
    let ids: std::collections::HashSet<i64> = all.iter().filter_map(|o| o["id"].as_i64()).collect();
    assert_eq!(ids.len(), 45, "no order twice");
    assert_eq!(emu.requests().len(), 1, "45 orders fit one page of 100");

    let bad = c.orders_list(&filter, PageRequest::new(1, 25)).await;
    assert!(matches!(bad, Err(Error::InvalidInput(_))), "{bad:?}");
}

#[tokio::test]
async fn history_since_id_flags_our_own_writes_and_walks_until_exhausted() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    let start = c
        .orders_history(&HistoryFilter::default(), PageRequest::new(1, 100))
        .await
        .expect("history");
    let last_seeded = start
        .history
        .last()
        .map(|e| e.id)
        .expect("seed left history");
    assert!(
        start.history.windows(2).all(|w| w[0].id < w[1].id),
        "ascending ids"
    );

    let created = c
        .order_create(
            &json!({"externalId": "H-1", "firstName": "Х"}),
            Some("shop-main"),
        )
        .await
        .expect("our create");
    let id = created.id.expect("id");
    emu.as_manager(12)
        .set_order_status(id, "client-confirmed")
        .expect("manager works");
    emu.as_api(OTHER_KEY)
        .edit_order(id, json!({"managerComment": "from another integration"}))
        .expect("another key writes");
    c.order_edit(&EntityRef::Id(id), &json!({"status": "assembling"}), None)
        .await
        .expect("our edit");

    let mut cursor = c
        .history_cursor(HistoryKind::Orders, Some(last_seeded))
        .with_limit(20);
    let mut entries = Vec::new();
    let mut batches = 0;
    while let Some(batch) = cursor.next_batch(&c).await.expect("batch") {
        assert_eq!(batch.entries.last().map(|e| e.id), Some(batch.last_id));
        entries.extend(batch.entries);
        batches += 1;
    }
    assert!(batches >= 1 && cursor.is_exhausted());
    let ours: Vec<_> = entries
        .iter()
        .filter(|e| e.entity_id() == Some(id))
        .collect();
    let created_rec = ours.iter().find(|e| e.created).expect("created record");
    assert_eq!(created_rec.source.as_deref(), Some("api"));
    assert!(created_rec.is_own_change());
    assert_eq!(created_rec.rest["order"]["externalId"], "H-1");
    let manager = ours
        .iter()
        .find(|e| e.source.as_deref() == Some("user"))
        .expect("manager record");
    assert!(!manager.is_own_change());
    assert_eq!(manager.user, Some(json!({"id": 12})));
    assert_eq!(manager.new_value, json!({"code": "client-confirmed"}));
    let other = ours
        .iter()
        .find(|e| e.field.as_deref() == Some("manager_comment"))
        .expect("other key's record");
    assert_eq!(other.source.as_deref(), Some("api"));
    assert_eq!(other.api_key.as_ref().map(|k| k.current), Some(false));
    let our_edit = ours
        .iter()
        .find(|e| e.new_value == json!({"code": "assembling"}))
        .expect("our edit record");
    assert!(our_edit.is_own_change());
    assert_eq!(our_edit.old_value, json!({"code": "client-confirmed"}));

    // Nothing new: the next cursor from the last id reads nothing.
    let last = entries.last().map(|e| e.id).expect("entries");
    let mut again = c.history_cursor(HistoryKind::Orders, Some(last));
    assert!(again.next_batch(&c).await.expect("read").is_none());
    let r = emu.requests().pop().expect("recorded");
    assert_eq!(
        r.query_param("filter[sinceId]"),
        Some(last.to_string().as_str())
    );
}

#[tokio::test]
async fn history_cursor_pages_with_since_id_when_there_is_more_than_a_page() {
    let (emu, report) = shop().await;
    let c = client(&emu);
    for n in 0..30 {
        emu.as_manager(13)
            .edit_order(
                report.orders[0],
                json!({"managerComment": format!("note {n}")}),
            )
            .expect("manager note");
    }
    let all = c
        .history_all(HistoryKind::Orders, &HistoryFilter::default())
        .await
        .expect("everything");
    let mut cursor = c.history_cursor(HistoryKind::Orders, None).with_limit(20);
    let mut seen = Vec::new();
    emu.clear_requests();
    while let Some(batch) = cursor.next_batch(&c).await.expect("batch") {
        seen.extend(batch.entries.into_iter().map(|e| e.id));
    }
    assert_eq!(seen, all.iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(all.len() > 20, "the sample shop has {} records", all.len());
    let reqs = emu.requests();
    assert_eq!(reqs.len(), all.len().div_ceil(20));
    // Every request after the first moves sinceId and stays on page 1.
    assert!(reqs[1..]
        .iter()
        .all(|r| r.query_param("filter[sinceId]").is_some() && r.query_param("page") == Some("1")));
}

#[tokio::test]
async fn status_history_lists_every_status_an_order_held() {
    let (emu, report) = shop().await;
    let c = client(&emu);
    // A-1003 was walked new -> client-confirmed -> send-to-delivery -> complete.
    let id = report.orders[2];
    emu.as_manager(12)
        .set_order_status(id, "delivered")
        .expect("a later manager move");
    let statuses = c
        .order_status_history(&EntityRef::Id(id))
        .await
        .expect("status history");
    let codes: Vec<&str> = statuses.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(
        codes,
        [
            "new",
            "client-confirmed",
            "send-to-delivery",
            "complete",
            "delivered"
        ]
    );
    assert_eq!(statuses[0].previous, None);
    assert_eq!(statuses[4].previous.as_deref(), Some("complete"));
    assert_eq!(codes, emu.status_history(id));
    let by_ext = c
        .order_status_history(&EntityRef::from("A-1003"))
        .await
        .expect("by externalId");
    assert_eq!(by_ext, statuses);
}

#[tokio::test]
async fn payments_lifecycle_create_edit_delete() {
    let (emu, report) = shop().await;
    let c = client(&emu);
    let order_id = report.orders[0]; // A-1001: 2 chairs + courier, unpaid
    let total = emu.order(order_id).expect("order")["totalSumm"]
        .as_f64()
        .expect("total");
    let pid = c
        .payment_create(
            &json!({"order": {"externalId": "A-1001"}, "type": "bank-card", "status": "not-paid", "amount": total, "externalId": "ms-pay-1"}),
            Some("shop-main"),
        )
        .await
        .expect("payment created")
        .id
        .expect("payment id");
    let r = emu.requests().pop().expect("recorded");
    assert_eq!(r.path, "/api/v5/orders/payments/create");
    assert!(r.form_json("payment").is_some());

    let dup = c
        .payment_create(
            &json!({"order": {"id": order_id}, "type": "cash", "externalId": "ms-pay-1"}),
            None,
        )
        .await
        .expect_err("payment externalId is unique");
    assert!(dup.is_duplicate_external_id(), "{dup}");

    c.payment_edit(
        &EntityRef::from("ms-pay-1"),
        &json!({"status": "paid"}),
        None,
    )
    .await
    .expect("paid by externalId");
    let order = emu.order(order_id).expect("order");
    assert_eq!(order["prepaySum"].as_f64(), Some(total));
    assert!(order["fullPaidAt"].is_string());
    assert_eq!(order["payments"][pid.to_string()]["status"], "paid");

    c.payment_delete(pid).await.expect("deleted");
    assert!(emu.payments(order_id).is_empty());
    assert!(emu.order(order_id).expect("order")["fullPaidAt"].is_null());

    let fields: Vec<String> = emu
        .order_history(Some(KEY))
        .iter()
        .filter(|h| h["order"]["id"] == order_id)
        .map(|h| h["field"].as_str().unwrap_or_default().to_string())
        .collect();
    for f in [
        "payments",
        "payments.status",
        "payments.paid_at",
        "full_paid_at",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
    let gone = c.payment_delete(pid).await.expect_err("already deleted");
    assert!(gone.is_not_found());
}

#[tokio::test]
async fn inventories_upload_is_split_into_batches_of_250() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    let mut offers: Vec<InventoryOffer> = (0..598)
        .map(|n| InventoryOffer {
            xml_id: Some(format!("missing-{n}")),
            stores: vec![InventoryStore {
                code: "main".into(),
                available: Some(1.0),
                purchase_price: None,
            }],
            ..InventoryOffer::default()
        })
        .collect();
    offers.push(InventoryOffer {
        xml_id: Some("chair01#red".into()),
        stores: vec![
            InventoryStore {
                code: "main".into(),
                available: Some(7.0),
                purchase_price: Some(2600.0),
            },
            InventoryStore {
                code: "shop-retail".into(),
                available: Some(0.0),
                purchase_price: None,
            },
        ],
        ..InventoryOffer::default()
    });
    offers.push(InventoryOffer {
        external_id: Some("table-oak".into()),
        stores: vec![InventoryStore {
            code: "main".into(),
            available: Some(5.0),
            purchase_price: Some(15000.0),
        }],
        ..InventoryOffer::default()
    });
    emu.clear_requests();
    let report = c
        .inventories_upload(&offers, Some("shop-main"))
        .await
        .expect("upload");
    assert_eq!(report.requests, 3);
    assert_eq!(report.processed_offers, 2);
    assert_eq!(report.not_found.len(), 598);
    let sizes: Vec<usize> = emu
        .requests()
        .iter()
        .map(|r| {
            r.form_json("offers")
                .and_then(|o| o.as_array().map(Vec::len))
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(sizes, [250, 250, 100]);

    let chair = emu.offer_by_xml_id("chair01#red").expect("offer");
    assert_eq!(chair.stores["main"].quantity, 7.0);
    assert_eq!(chair.stores["main"].purchase_price, Some(2600.0));
    assert_eq!(chair.stores["shop-retail"].quantity, 0.0);
    assert_eq!(chair.purchase_price, Some(2600.0));

    // Read back through the API, with per-store rows.
    let page = c
        .inventories(
            &json!({"offerXmlId": ["chair01#red"], "details": true}),
            PageRequest::new(1, 20),
        )
        .await
        .expect("inventories");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0]["quantity"], json!(7));
    let rows = page.items[0]["stores"].as_array().expect("store rows");
    assert!(rows.iter().any(|r| r["store"] == "main"
        && r["quantity"] == json!(7)
        && r["purchasePrice"] == json!(2600)));
}

#[tokio::test]
async fn generic_entity_interface_maps_kinds_to_endpoints() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    let kind: EntityKind = "customer".parse().expect("kind");
    let created = c
        .create(
            kind,
            &json!({"externalId": "g-1", "firstName": "Генрих"}),
            &WriteOptions::site("shop-main"),
        )
        .await
        .expect("customer created");
    let r = emu.requests().pop().expect("recorded");
    assert_eq!(r.path, "/api/v5/customers/create");
    assert!(r.form_json("customer").is_some());
    c.edit(
        kind,
        &EntityRef::from("g-1"),
        &json!({"lastName": "Гейне"}),
        &WriteOptions::site("shop-main"),
    )
    .await
    .expect("edited");
    let got = c
        .fetch(
            kind,
            &EntityRef::Id(created.id.expect("id")),
            &WriteOptions::default(),
        )
        .await
        .expect("fetched");
    assert_eq!(got["lastName"], "Гейне");

    // Corporate: contacts need their parent.
    let corp = "customer_corporate".parse::<EntityKind>().expect("kind");
    let corp_id = c
        .create(
            corp,
            &json!({"externalId": "corp-g", "nickName": "ИП Гейне"}),
            &WriteOptions::site("shop-main"),
        )
        .await
        .expect("corporate")
        .id
        .expect("id");
    let no_parent = c
        .create(
            EntityKind::CorporateContact,
            &json!({"customer": {"externalId": "g-1"}}),
            &WriteOptions::default(),
        )
        .await;
    assert!(matches!(no_parent, Err(Error::InvalidInput(_))));
    let opts = WriteOptions::site("shop-main").with_parent(EntityRef::Id(corp_id));
    c.create(
        EntityKind::CorporateContact,
        &json!({"isMain": true, "customer": {"externalId": "g-1"}}),
        &opts,
    )
    .await
    .expect("contact");
    c.create(EntityKind::CorporateCompany, &json!({"name": "ИП Гейне Г.", "contragent": {"contragentType": "enterpreneur", "INN": "770100000001"}}), &opts)
        .await
        .expect("company");
    let contacts = c
        .list_all(EntityKind::CorporateContact, &Value::Null, &opts)
        .await
        .expect("contacts");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["customer"]["externalId"], "g-1");
    let corp_read = c
        .corporate_get(&EntityRef::Id(corp_id), None)
        .await
        .expect("corporate");
    assert_eq!(corp_read["mainCompany"]["name"], "ИП Гейне Г.");

    // Tasks.
    let task = c
        .task_create(&json!({"text": "Синхронизация заказа A-1001 не удалась", "performerId": 12, "order": {"externalId": "A-1001"}}), Some("shop-main"))
        .await
        .expect("task");
    let task_id = task.id.expect("task id");
    assert_eq!(emu.tasks()[0]["order"]["number"], "A-1001");
    c.edit(
        EntityKind::Task,
        &EntityRef::Id(task_id),
        &json!({"complete": true}),
        &WriteOptions::default(),
    )
    .await
    .expect("task edited");
    let t = c
        .fetch(
            EntityKind::Task,
            &EntityRef::Id(task_id),
            &WriteOptions::default(),
        )
        .await
        .expect("task read");
    assert_eq!(t["complete"], true);
    assert_eq!(t["performer"], 12);

    // Deleting anything but a payment is refused client-side.
    assert!(matches!(
        c.delete(EntityKind::Order, &EntityRef::Id(1)).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn references_credentials_and_users() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    use skladsync_runner::clients::retailcrm::ReferenceBook;
    let statuses = c
        .reference(ReferenceBook::Statuses)
        .await
        .expect("statuses");
    assert_eq!(statuses["cancel-other"]["group"], "cancel");
    let groups = c
        .reference(ReferenceBook::StatusGroups)
        .await
        .expect("groups");
    assert!(groups["cancel"]["statuses"]
        .as_array()
        .is_some_and(|s| s.contains(&json!("no-product"))));
    // Stores come as an array; the client keys them by code.
    assert!(c
        .reference_raw(ReferenceBook::Stores)
        .await
        .expect("raw")
        .is_array());
    let stores = c.reference(ReferenceBook::Stores).await.expect("stores");
    assert_eq!(stores["main"]["inventoryType"], "integer");
    let ps = c
        .reference(ReferenceBook::ProductStatuses)
        .await
        .expect("item statuses");
    assert_eq!(ps["out-of-stock"]["cancelStatus"], true);
    let pay = c
        .reference(ReferenceBook::PaymentStatuses)
        .await
        .expect("payment statuses");
    assert_eq!(pay["paid"]["paymentComplete"], true);

    let creds = c.credentials().await.expect("credentials");
    assert!(creds.has_scope("order_read"));
    assert_eq!(creds.site_access.as_deref(), Some("access_full"));
    assert_eq!(
        emu.requests().pop().map(|r| r.path),
        Some("/api/credentials".into())
    );

    let managers = c
        .users_all(&json!({"isManager": true}))
        .await
        .expect("users");
    assert_eq!(managers.len(), 2);
    assert_eq!(
        c.user(19).await.expect("user")["email"],
        "anna@mebel.example.ru"
    );
    let fields = c.custom_fields(Some("order")).await.expect("custom fields");
    assert!(fields.iter().any(|f| f["code"] == "moysklad_external_id"));
    let dict = c
        .custom_dictionary("delivery_slots")
        .await
        .expect("dictionary");
    assert_eq!(dict["elements"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn a_wrong_key_gets_the_real_error_and_the_key_never_shows() {
    let (emu, _) = shop().await;
    let cfg = support::fast_config(&emu);
    let mut wrong = cfg.clone();
    wrong.api_key = skladsync_runner::clients::retailcrm::ApiKey::new("test-key-wrong");
    let c = RetailcrmClient::new(wrong).expect("client");
    let err = c
        .order_get(&EntityRef::Id(1), None)
        .await
        .expect_err("refused");
    assert_eq!(err.status(), Some(403));
    assert_eq!(
        err.api_error().map(|a| a.message.as_str()),
        Some("Wrong \"apiKey\" value.")
    );
    assert!(!format!("{err} {err:?}").contains("test-key-wrong"));
    let ok = RetailcrmClient::new(cfg).expect("client");
    assert!(!format!("{ok:?}").contains(KEY));
}

#[tokio::test]
async fn customer_and_corporate_histories_are_read_with_the_same_cursor() {
    let (emu, _) = shop().await;
    let c = client(&emu);
    let before = c
        .history_all(HistoryKind::Customers, &HistoryFilter::default())
        .await
        .expect("customers history");
    assert!(
        before.iter().all(|e| !e.is_own_change()),
        "seeded by a manager"
    );
    let last = before.last().map(|e| e.id);
    let id = c
        .customer_create(
            &json!({"externalId": "hc-1", "firstName": "Ева"}),
            Some("shop-main"),
        )
        .await
        .expect("created")
        .id
        .expect("id");
    emu.as_manager(12)
        .edit_customer(id, json!({"lastName": "Иванова"}))
        .expect("manager edit");
    let mut cursor = c.history_cursor(HistoryKind::Customers, last);
    let batch = cursor
        .next_batch(&c)
        .await
        .expect("read")
        .expect("new records");
    assert_eq!(batch.entries.len(), 2);
    assert!(batch.entries[0].created && batch.entries[0].is_own_change());
    assert_eq!(batch.entries[0].entity_id(), Some(id));
    assert_eq!(batch.entries[1].field.as_deref(), Some("last_name"));
    assert!(!batch.entries[1].is_own_change());
    assert!(cursor.next_batch(&c).await.expect("read").is_none());

    let corp = c
        .history_all(HistoryKind::CustomersCorporate, &HistoryFilter::default())
        .await
        .expect("corporate history");
    assert!(corp[0].created);
    assert_eq!(corp[0].rest["customer"]["nickName"], "ООО Ромашка");
    assert_eq!(
        emu.requests().pop().map(|r| r.path),
        Some("/api/v5/customers-corporate/history".into())
    );
}
