//! Stock reports of the МойСклад emulator follow the documents: posted demands, moves and
//! returns move stock; posted orders reserve; a posted demand linked to an order releases
//! what it shipped.

use std::time::Duration;

use serde_json::{json, Value};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig, SampleShop};
use skladsync_runner::clients::moysklad::{
    Auth, ClientConfig, CurrentReport, ListQuery, MoyskladClient, RetryPolicy,
};

async fn setup() -> (MoyskladEmulator, MoyskladClient, SampleShop) {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
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
    (ms, c, shop)
}

fn row_for<'a>(rows: &'a [Value], id: &str) -> Option<&'a Value> {
    rows.iter().find(|r| {
        r["meta"]["href"]
            .as_str()
            .is_some_and(|h| h.split('?').next().is_some_and(|p| p.ends_with(id)))
    })
}

/// (stock, reserve) of an item on a store in `report/stock/bystore`.
fn by_store(rows: &[Value], item: &str, store: &str) -> (f64, f64) {
    let row = row_for(rows, item).expect("item row");
    let cell = row["stockByStore"]
        .as_array()
        .expect("stockByStore")
        .iter()
        .find(|s| {
            s["meta"]["href"]
                .as_str()
                .is_some_and(|h| h.ends_with(store))
        })
        .expect("store cell");
    (
        cell["stock"].as_f64().expect("stock"),
        cell["reserve"].as_f64().expect("reserve"),
    )
}

#[tokio::test]
async fn reports_follow_posted_documents() {
    let (ms, c, shop) = setup().await;
    let main = shop.stores["Основной склад"].clone();
    let metro = shop.stores["Склад у метро"].clone();
    let tshirt = shop.products["tshirt-basic"].clone();
    let org = c.meta("organization", &shop.organization);
    let agent = c.meta("counterparty", &shop.counterparties["rcrm-customer-1"]);
    let all_q = ListQuery::new().filter_raw("stockMode=all;quantityMode=all");

    // Opening stock: 40 on main, 10 on metro, unit cost 600.00 ₽.
    let all = c.stock_all(&all_q).await.expect("stock/all");
    let row = row_for(&all, &tshirt).expect("tshirt row");
    assert_eq!(row["stock"], 50.0);
    assert_eq!(row["reserve"], 0.0);
    assert_eq!(row["quantity"], 50.0);
    assert_eq!(row["price"], 60000.0, "cost per unit in kopecks");
    assert_eq!(row["externalCode"], "tshirt-basic");
    assert!(row["meta"]["href"]
        .as_str()
        .is_some_and(|h| h.ends_with("?expand=supplier")));

    // A posted order with a reserve of 3 on main.
    let order = c
        .create(
            "customerorder",
            &json!({"organization": org, "agent": agent, "store": c.meta("store", &main),
                    "positions": [{"assortment": c.meta("product", &tshirt), "quantity": 3, "price": 149900, "reserve": 3}]}),
        )
        .await
        .expect("order");
    let order_id = order["id"].as_str().expect("id").to_string();
    let bs = c.stock_by_store(&ListQuery::new()).await.expect("bystore");
    assert_eq!(by_store(&bs, &tshirt, &main), (40.0, 3.0));
    assert_eq!(by_store(&bs, &tshirt, &metro), (10.0, 0.0));
    let all = c.stock_all(&all_q).await.expect("stock/all");
    assert_eq!(row_for(&all, &tshirt).expect("row")["quantity"], 47.0);

    // Un-posting the order releases its reserve; posting it again takes it back.
    c.update("customerorder", &order_id, &json!({"applicable": false}))
        .await
        .expect("unpost");
    assert_eq!(ms.stock(&main, &tshirt).reserve, 0.0);
    c.update("customerorder", &order_id, &json!({"applicable": true}))
        .await
        .expect("post");
    assert_eq!(ms.stock(&main, &tshirt).reserve, 3.0);

    // A posted demand linked to the order ships 3: stock 37 and the reserve is gone.
    let demand = c
        .create(
            "demand",
            &json!({"organization": org, "agent": agent, "store": c.meta("store", &main),
                    "customerOrder": c.meta("customerorder", &order_id),
                    "positions": [{"assortment": c.meta("product", &tshirt), "quantity": 3, "price": 149900}]}),
        )
        .await
        .expect("demand");
    let bs = c.stock_by_store(&ListQuery::new()).await.expect("bystore");
    assert_eq!(by_store(&bs, &tshirt, &main), (37.0, 0.0));
    let o = c
        .get("customerorder", &order_id, &["positions"])
        .await
        .expect("order");
    assert_eq!(o["positions"]["rows"][0]["shipped"], 3.0);
    assert_eq!(o["shippedSum"], 3.0 * 149900.0);
    assert_eq!(o["reservedSum"], 0.0);
    assert_eq!(o["demands"][0]["meta"]["href"], demand["meta"]["href"]);

    // A draft (not posted) move changes nothing; posting it moves 5 to metro.
    let mv = c
        .create(
            "move",
            &json!({"organization": org, "applicable": false,
                    "sourceStore": c.meta("store", &main), "targetStore": c.meta("store", &metro),
                    "positions": [{"assortment": c.meta("product", &tshirt), "quantity": 5}]}),
        )
        .await
        .expect("move");
    assert_eq!(ms.stock(&main, &tshirt).stock, 37.0);
    c.update(
        "move",
        mv["id"].as_str().expect("id"),
        &json!({"applicable": true}),
    )
    .await
    .expect("post move");
    let bs = c.stock_by_store(&ListQuery::new()).await.expect("bystore");
    assert_eq!(by_store(&bs, &tshirt, &main), (32.0, 0.0));
    assert_eq!(by_store(&bs, &tshirt, &metro), (15.0, 0.0));

    // A posted return of 1 against the demand puts it back on main.
    c.create(
        "salesreturn",
        &json!({"organization": org, "agent": agent, "store": c.meta("store", &main),
                "demand": c.meta("demand", demand["id"].as_str().expect("id")),
                "positions": [{"assortment": c.meta("product", &tshirt), "quantity": 1, "price": 149900}]}),
    )
    .await
    .expect("return");
    assert_eq!(ms.stock(&main, &tshirt).stock, 33.0);
    let d = c
        .get("demand", demand["id"].as_str().expect("id"), &[])
        .await
        .expect("demand");
    assert_eq!(d["returns"].as_array().map(Vec::len), Some(1));

    // Same numbers in the short reports.
    let current = c
        .stock_current(
            CurrentReport::ByStore,
            &ListQuery::new()
                .param("stockType", "stock")
                .filter_raw(&format!("assortmentId={tshirt}")),
        )
        .await
        .expect("current");
    let mut cells: Vec<(String, f64)> = current
        .iter()
        .map(|r| {
            (
                r["storeId"].as_str().unwrap_or("").to_string(),
                r["stock"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    cells.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![(main.clone(), 33.0), (metro.clone(), 15.0)];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(cells, want);
    let total = c
        .stock_current(
            CurrentReport::All,
            &ListQuery::new().param("stockType", "quantity"),
        )
        .await
        .expect("all/current");
    let t = total
        .iter()
        .find(|r| r["assortmentId"] == tshirt.as_str())
        .expect("tshirt");
    assert_eq!(t["quantity"], 48.0);
}

#[tokio::test]
async fn orders_without_a_store_reserve_unassigned_and_services_have_no_stock() {
    let (_ms, c, shop) = setup().await;
    let mug = shop.products["mug-white"].clone();
    c.create(
        "customerorder",
        &json!({"organization": c.meta("organization", &shop.organization),
                "agent": c.meta("counterparty", &shop.counterparties["rcrm-customer-1"]),
                "positions": [
                    {"assortment": c.meta("product", &mug), "quantity": 4, "price": 49900, "reserve": 4},
                    {"assortment": c.meta("service", &shop.services["delivery-courier"]), "quantity": 1, "price": 30000}
                ]}),
    )
    .await
    .expect("order");
    let rows = c
        .stock_current(
            CurrentReport::ByStore,
            &ListQuery::new().param("stockType", "reserve"),
        )
        .await
        .expect("current");
    assert_eq!(
        rows,
        vec![json!({"assortmentId": mug, "storeId": null, "reserve": 4.0})]
    );
    let all = c.stock_all(&ListQuery::new()).await.expect("all");
    let row = row_for(&all, &mug).expect("mug");
    assert_eq!(
        (
            row["stock"].as_f64(),
            row["reserve"].as_f64(),
            row["quantity"].as_f64()
        ),
        (Some(100.0), Some(4.0), Some(96.0))
    );
    assert!(row_for(&all, &shop.services["delivery-courier"]).is_none());
}

#[tokio::test]
async fn default_modes_hide_empty_rows_and_variants_are_rows_of_their_own() {
    let (_ms, c, shop) = setup().await;
    // gift-wrap is a service, hoodie itself has no stock (its variants do).
    let all = c.stock_all(&ListQuery::new()).await.expect("all");
    assert!(
        row_for(&all, &shop.products["hoodie"]).is_none(),
        "quantityMode=nonEmpty hides zeros"
    );
    let s = row_for(&all, &shop.variants["hoodie#hoodie-s"]).expect("variant row");
    assert_eq!(s["meta"]["type"], "variant");
    assert_eq!(s["quantity"], 5.0);
    assert_eq!(s["name"], "Толстовка (S)");
    let with_zeros = c
        .stock_all(&ListQuery::new().filter_raw("stockMode=all;quantityMode=all"))
        .await
        .expect("all");
    assert!(row_for(&with_zeros, &shop.products["hoodie"]).is_some());
    // groupBy=product folds the variants into the product.
    let grouped = c
        .stock_all(&ListQuery::new().param("groupBy", "product"))
        .await
        .expect("grouped");
    assert_eq!(
        row_for(&grouped, &shop.products["hoodie"]).expect("hoodie")["stock"],
        15.0
    );
    // bystore hides rows without stock anywhere by default; a store filter narrows the cells.
    let metro = shop.stores["Склад у метро"].clone();
    let bs = c
        .stock_by_store(&ListQuery::new().filter_eq("store", &c.href("store", &metro)))
        .await
        .expect("bystore");
    let tshirt = row_for(&bs, &shop.products["tshirt-basic"]).expect("tshirt is on metro");
    assert_eq!(tshirt["stockByStore"].as_array().map(Vec::len), Some(1));
    assert_eq!(tshirt["stockByStore"][0]["name"], "Склад у метро");
    assert_eq!(tshirt["stockByStore"][0]["stock"], 10.0);
    assert!(
        row_for(&bs, &shop.products["mug-white"]).is_none(),
        "no mugs on metro: hidden by stockMode=nonEmpty"
    );
}

/// Both reports read in pages of 2 (the client follows `offset` until `meta.size`) give the
/// rows of one big page, in the same order, with groupBy=product too. (The emulator renders
/// only the page asked for.)
#[tokio::test]
async fn report_pages_add_up_to_the_whole_report() {
    let (_ms, c, _shop) = setup().await;
    for (name, q) in [
        (
            "all",
            ListQuery::new().filter_raw("stockMode=all;quantityMode=all"),
        ),
        (
            "all by product",
            ListQuery::new().param("groupBy", "product"),
        ),
        ("bystore", ListQuery::new().filter_eq("stockMode", "all")),
        ("bystore, nonEmpty", ListQuery::new()),
    ] {
        let read = |q: ListQuery| {
            let c = c.clone();
            async move {
                if name.starts_with("bystore") {
                    c.stock_by_store(&q).await.expect("bystore")
                } else {
                    c.stock_all(&q).await.expect("all")
                }
            }
        };
        let whole = read(q.clone()).await;
        let paged = read(q.limit(2)).await;
        assert!(whole.len() > 2, "{name}: more than one page of 2");
        assert_eq!(paged, whole, "{name}");
    }
}
