//! The МойСклад client against the emulator on loopback: CRUD, paging, filters, bulk,
//! typed errors, syncId idempotency, retries and faults.

use std::time::Duration;

use serde_json::{json, Value};
use skladsync_emulators::faults::{Fault, FaultPlan};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};
use skladsync_runner::clients::moysklad::{
    Auth, ClientConfig, ListQuery, MoyskladClient, MoyskladError, RetryPolicy,
};

const LOGIN: &str = "admin@emulator";
const PASSWORD: &str = "emulator-password";

async fn emulator() -> MoyskladEmulator {
    MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_rate_limit_waits: 50,
    }
}

fn client(ms: &MoyskladEmulator) -> MoyskladClient {
    MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, PASSWORD))
            .base_url(ms.base_url())
            .retry(fast_retry()),
    )
    .expect("client")
}

fn requests_to(ms: &MoyskladEmulator, method: &str, path_suffix: &str) -> usize {
    ms.requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(path_suffix))
        .count()
}

#[tokio::test]
async fn crud_round_trip() {
    let ms = emulator().await;
    let c = client(&ms);
    let created = c
        .create(
            "counterparty",
            &json!({"name": "ИП Петров", "companyType": "entrepreneur", "phone": "+79161234567",
                    "externalCode": "rcrm-customer-1001",
                    "contactpersons": [{"name": "Петров Пётр", "email": "p@example.org"}]}),
        )
        .await
        .expect("created");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["meta"]["type"], "counterparty");
    assert_eq!(created["contactpersons"]["meta"]["size"], 1);

    let got = c
        .get("counterparty", &id, &["contactpersons"])
        .await
        .expect("got");
    assert_eq!(got["name"], "ИП Петров");
    assert_eq!(got["contactpersons"]["rows"][0]["name"], "Петров Пётр");

    // PUT is partial: other fields stay, nested collections sent are replaced.
    let updated = c
        .update("counterparty", &id, &json!({"email": "petrov@example.org"}))
        .await
        .expect("updated");
    assert_eq!(updated["email"], "petrov@example.org");
    assert_eq!(updated["phone"], "+79161234567");
    assert_eq!(updated["contactpersons"]["meta"]["size"], 1);
    assert!(updated["updated"].as_str() >= created["updated"].as_str());

    c.delete("counterparty", &id).await.expect("deleted");
    assert!(c
        .get_opt("counterparty", &id, &[])
        .await
        .expect("no error")
        .is_none());
    let err = c.get("counterparty", &id, &[]).await.expect_err("gone");
    assert_eq!(err.status(), Some(404));
    assert!(err.has_code(1021));
}

#[tokio::test]
async fn paging_follows_pages_past_1000_rows() {
    let ms = emulator().await;
    for i in 0..2345 {
        ms.seed(
            "counterparty",
            json!({"name": format!("Покупатель {i:04}"), "externalCode": format!("c-{i}")}),
        )
        .expect("seed");
    }
    let c = client(&ms);
    ms.clear_requests();
    let all = c
        .list_all("counterparty", &ListQuery::new())
        .await
        .expect("all pages");
    assert_eq!(all.len(), 2345);
    let mut ids: Vec<&str> = all.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2345, "no row twice");
    assert_eq!(requests_to(&ms, "GET", "/entity/counterparty"), 3);

    // The first page reports the total and a next page.
    let page = c
        .list("counterparty", &ListQuery::new())
        .await
        .expect("page");
    assert_eq!((page.size, page.limit, page.offset), (2345, 1000, 0));
    assert!(page
        .next_href
        .as_deref()
        .is_some_and(|h| h.contains("offset=1000")));

    // With expand, pages drop to 100 rows (the API ignores expand above 100).
    ms.clear_requests();
    let mut pages = c
        .pages(
            "counterparty",
            &ListQuery::new()
                .filter("name", "~", "Покупатель 00")
                .expand("owner"),
        )
        .expect("pager");
    let mut n = 0;
    while let Some(p) = pages.next().await.expect("page") {
        assert!(p.rows.len() <= 100);
        for r in &p.rows {
            assert_eq!(r["owner"]["uid"], LOGIN, "owner expanded");
        }
        n += p.rows.len();
    }
    assert_eq!(n, 100);
    assert_eq!(requests_to(&ms, "GET", "/entity/counterparty"), 1);
}

#[tokio::test]
async fn filters_select_what_the_api_selects() {
    let ms = emulator().await;
    let c = client(&ms);
    for (name, inn, phone, email, code) in [
        (
            "ООО «Альфа»",
            "7701000001",
            "+74950000001",
            "a@alpha.example",
            "rc-1",
        ),
        (
            "ООО «Бета»",
            "7701000002",
            "+74950000002",
            "b@beta.example",
            "rc-2",
        ),
        (
            "ИП Гамма",
            "7701000003",
            "+74950000001",
            "g@gamma.example",
            "rc-3",
        ),
    ] {
        c.create(
            "counterparty",
            &json!({"name": name, "inn": inn, "phone": phone, "email": email, "externalCode": code,
                    "syncId": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, code.as_bytes()).to_string()}),
        )
        .await
        .expect("create");
    }
    let names = |rows: Vec<Value>| -> Vec<String> {
        let mut v: Vec<String> = rows
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    let q = |f: &str, v: &str| ListQuery::new().filter_eq(f, v);
    assert_eq!(
        names(
            c.list_all("counterparty", &q("inn", "7701000002"))
                .await
                .expect("inn")
        ),
        ["ООО «Бета»"]
    );
    assert_eq!(
        names(
            c.list_all("counterparty", &q("phone", "+74950000001"))
                .await
                .expect("phone")
        ),
        ["ИП Гамма", "ООО «Альфа»"]
    );
    assert_eq!(
        names(
            c.list_all("counterparty", &q("email", "g@gamma.example"))
                .await
                .expect("email")
        ),
        ["ИП Гамма"]
    );
    assert_eq!(
        names(
            c.list_all("counterparty", &q("externalCode", "rc-1"))
                .await
                .expect("code")
        ),
        ["ООО «Альфа»"]
    );
    assert_eq!(
        names(
            c.list_all("counterparty", &q("name", "ООО «Бета»"))
                .await
                .expect("name")
        ),
        ["ООО «Бета»"]
    );
    let sync = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, b"rc-3").to_string();
    assert_eq!(
        names(
            c.list_all("counterparty", &q("syncId", &sync))
                .await
                .expect("syncId")
        ),
        ["ИП Гамма"]
    );
    // Same field twice with `=` is OR; different fields are AND.
    let or = ListQuery::new()
        .filter_eq("inn", "7701000001")
        .filter_eq("inn", "7701000003");
    assert_eq!(
        names(c.list_all("counterparty", &or).await.expect("or")),
        ["ИП Гамма", "ООО «Альфа»"]
    );
    let and = ListQuery::new()
        .filter_eq("phone", "+74950000001")
        .filter_eq("email", "a@alpha.example");
    assert_eq!(
        names(c.list_all("counterparty", &and).await.expect("and")),
        ["ООО «Альфа»"]
    );
    let ne = ListQuery::new().filter("inn", "!=", "7701000001");
    assert_eq!(
        names(c.list_all("counterparty", &ne).await.expect("ne")),
        ["ИП Гамма", "ООО «Бета»"]
    );
    // A filter value with ';' is escaped by the client and matched literally.
    c.create("counterparty", &json!({"name": "A;B"}))
        .await
        .expect("create");
    assert_eq!(
        names(
            c.list_all("counterparty", &q("name", "A;B"))
                .await
                .expect("escaped")
        ),
        ["A;B"]
    );
}

#[tokio::test]
async fn updated_since_returns_only_later_changes() {
    let ms = emulator().await;
    let c = client(&ms);
    let t0 = chrono::NaiveDate::from_ymd_opt(2026, 3, 2)
        .and_then(|d| d.and_hms_milli_opt(10, 0, 0, 0))
        .expect("date");
    ms.clock().set(Some(t0));
    let a = c
        .create("counterparty", &json!({"name": "A"}))
        .await
        .expect("a");
    ms.clock().advance(Duration::from_secs(60));
    let b = c
        .create("counterparty", &json!({"name": "B"}))
        .await
        .expect("b");
    assert_eq!(b["updated"], "2026-03-02 10:01:00.000");
    ms.clock().advance(Duration::from_secs(60));
    c.update(
        "counterparty",
        a["id"].as_str().expect("id"),
        &json!({"description": "changed"}),
    )
    .await
    .expect("update a");
    let since = c
        .list_all(
            "counterparty",
            &ListQuery::new().updated_since("2026-03-02 10:00:30"),
        )
        .await
        .expect("since");
    let mut names: Vec<&str> = since.iter().filter_map(|r| r["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["A", "B"]);
    let later = c
        .list_all(
            "counterparty",
            &ListQuery::new().filter("updated", ">", "2026-03-02 10:01:30"),
        )
        .await
        .expect("later");
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["name"], "A");
    let bad = c
        .list_all("counterparty", &ListQuery::new().updated_since("yesterday"))
        .await
        .expect_err("bad date");
    assert!(bad.has_code(1035));
}

#[tokio::test]
async fn bulk_reports_each_item_and_chunks() {
    let ms = emulator().await;
    let c = MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, PASSWORD))
            .base_url(ms.base_url())
            .retry(fast_retry())
            .bulk_chunk_size(2),
    )
    .expect("client");
    let existing = c
        .create("counterparty", &json!({"name": "Old"}))
        .await
        .expect("old");
    ms.clear_requests();
    let items = vec![
        json!({"name": "One"}),
        json!({"companyType": "legal"}), // no name: 3000 for this item only
        json!({"name": "Three", "email": "not-an-email"}), // 3015
        json!({"meta": existing["meta"], "description": "updated in bulk"}),
        json!({"name": "Five"}),
    ];
    let results = c.bulk_upsert("counterparty", &items).await.expect("bulk");
    assert_eq!(results.len(), 5);
    assert!(results[0].as_ref().is_ok_and(|v| v["name"] == "One"));
    let e1 = results[1].as_ref().expect_err("missing name");
    assert_eq!(e1[0].code, Some(3000));
    assert_eq!(e1[0].parameter.as_deref(), Some("name"));
    assert_eq!(
        results[2].as_ref().expect_err("bad email")[0].code,
        Some(3015)
    );
    assert!(results[3]
        .as_ref()
        .is_ok_and(|v| v["description"] == "updated in bulk"));
    assert!(results[4].is_ok());
    assert_eq!(
        requests_to(&ms, "POST", "/entity/counterparty"),
        3,
        "chunks of 2"
    );
    let names: Vec<String> = ms
        .list("counterparty")
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, ["Old", "One", "Five"]);

    // Bulk delete: per-item results too.
    let one = results[0].as_ref().expect("one")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let missing = "0e3a0000-5a1e-11f0-0a80-00000000ffff";
    let del = c
        .bulk_delete("counterparty", &[&one, missing])
        .await
        .expect("bulk delete");
    assert!(del[0]
        .as_ref()
        .is_ok_and(|v| v["info"].as_str().is_some_and(|s| s.contains(&one))));
    assert_eq!(del[1].as_ref().expect_err("missing")[0].code, Some(1021));
}

#[tokio::test]
async fn more_than_1000_objects_are_refused_by_the_emulator() {
    let ms = emulator().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/entity/counterparty", ms.base_url()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .json(&vec![json!({"name": "x"}); 1001])
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["errors"][0]["code"], 2007);
    // The client splits the same batch into chunks the API accepts.
    let c = client(&ms);
    let res = c
        .bulk_upsert("counterparty", &vec![json!({"name": "x"}); 1001])
        .await
        .expect("chunked");
    assert_eq!(res.iter().filter(|r| r.is_ok()).count(), 1001);
}

#[tokio::test]
async fn uniqueness_violation_is_a_typed_error_with_its_code() {
    let ms = emulator().await;
    let shop = ms.seed_sample_shop().expect("shop");
    let c = client(&ms);
    let order = json!({
        "name": "RC-2001",
        "organization": c.meta("organization", &shop.organization),
        "agent": c.meta("counterparty", &shop.counterparties["rcrm-customer-1"]),
    });
    c.create("customerorder", &order).await.expect("first");
    let err = c
        .create("customerorder", &order)
        .await
        .expect_err("duplicate name");
    match &err {
        MoyskladError::Api { status, errors, .. } => {
            assert_eq!(*status, 412);
            assert_eq!(errors[0].code, Some(3006));
            assert_eq!(errors[0].parameter.as_deref(), Some("name"));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(
        requests_to(&ms, "POST", "/entity/customerorder"),
        2,
        "412 is not retried"
    );
    // Product codes are unique across the assortment.
    let dup = c
        .create("service", &json!({"name": "Дубль", "code": "tshirt-basic"}))
        .await
        .expect_err("duplicate code");
    assert!(dup.has_code(3006));
    assert_eq!(ms.list("customerorder").len(), 1);
}

#[tokio::test]
async fn sync_id_makes_creates_idempotent() {
    let ms = emulator().await;
    let c = client(&ms);
    let sync = "6f9619ff-8b86-4011-b42d-00c04fc964ff";
    let body = json!({"name": "ООО «Ромашка»", "syncId": sync, "externalCode": "rcrm-corp-77"});
    let first = c.create("counterparty", &body).await.expect("first");
    let again = c
        .create(
            "counterparty",
            &json!({"name": "Другое имя", "syncId": sync}),
        )
        .await
        .expect("again");
    assert_eq!(first["id"], again["id"]);
    assert_eq!(
        again["name"], "ООО «Ромашка»",
        "the object created first comes back"
    );
    assert_eq!(ms.list("counterparty").len(), 1);
    // syncId cannot change on update.
    let id = first["id"].as_str().expect("id");
    let err = c
        .update(
            "counterparty",
            id,
            &json!({"syncId": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}),
        )
        .await
        .expect_err("syncId is fixed");
    assert!(err.has_code(1047));
    // Delete by syncId.
    c.delete_by_sync_id("counterparty", sync)
        .await
        .expect("deleted");
    assert!(ms.list("counterparty").is_empty());
}

#[tokio::test]
async fn wrong_credentials_are_401_and_not_retried() {
    let ms = emulator().await;
    let c = MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, "wrong-password"))
            .base_url(ms.base_url())
            .retry(fast_retry()),
    )
    .expect("client");
    let err = c.list("store", &ListQuery::new()).await.expect_err("401");
    assert_eq!(err.status(), Some(401));
    assert!(err.has_code(1056));
    assert_eq!(ms.requests().len(), 1);
    let bearer = MoyskladClient::new(
        ClientConfig::new(Auth::bearer("emulator-token")).base_url(ms.base_url()),
    )
    .expect("client");
    assert!(bearer.list("store", &ListQuery::new()).await.is_ok());
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let ms = emulator().await;
    let c = client(&ms);
    let err = c
        .get("customerorder", "0e3a0000-5a1e-11f0-0a80-00000000abcd", &[])
        .await
        .expect_err("404");
    assert_eq!(err.status(), Some(404));
    let err = c
        .create("customerorder", &json!({"name": "no organization"}))
        .await
        .expect_err("412");
    assert!(err.has_code(3000));
    assert_eq!(ms.requests().len(), 2, "one request each");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let ms = emulator().await;
    let c = client(&ms);
    let plan = ms
        .faults()
        .add(FaultPlan::new(Fault::ServerError { status: 503 }).times(2));
    let page = c
        .list("store", &ListQuery::new())
        .await
        .expect("third attempt succeeds");
    assert_eq!(page.size, 0);
    assert_eq!(ms.faults().fired(plan), Some(2));

    // Attempts are bounded.
    ms.faults()
        .set(FaultPlan::new(Fault::ServerError { status: 500 }));
    let limited = MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, PASSWORD))
            .base_url(ms.base_url())
            .retry(RetryPolicy {
                max_attempts: 3,
                ..fast_retry()
            }),
    )
    .expect("client");
    let err = limited
        .list("store", &ListQuery::new())
        .await
        .expect_err("gives up");
    assert_eq!(err.status(), Some(500));
    assert!(err.has_code(1999));
    assert_eq!(ms.faults().injected(), 2 + 3);
}

#[tokio::test]
async fn lost_response_after_commit_is_reported_not_hidden() {
    let ms = emulator().await;
    let c = client(&ms);
    // A create without syncId is not repeatable: the caller learns the outcome is unknown.
    ms.faults().set(
        FaultPlan::new(Fault::CommitThenDrop)
            .path_prefix("/api/remap/1.2/entity/counterparty")
            .writes_only()
            .times(1),
    );
    let err = c
        .create("counterparty", &json!({"name": "Committed"}))
        .await
        .expect_err("no response");
    assert!(err.is_no_response(), "{err:?}");
    assert_eq!(err.status(), None);
    assert_eq!(ms.list("counterparty").len(), 1, "the write happened");

    // With a syncId the client resends and gets the committed object back: no duplicate.
    ms.faults().set(
        FaultPlan::new(Fault::CommitThenDrop)
            .path_prefix("/api/remap/1.2/entity/counterparty")
            .writes_only()
            .times(1),
    );
    let sync = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    let v = c
        .create(
            "counterparty",
            &json!({"name": "Idempotent", "syncId": sync}),
        )
        .await
        .expect("retried");
    assert_eq!(v["syncId"], sync);
    let same: Vec<Value> = ms
        .list("counterparty")
        .into_iter()
        .filter(|r| r["syncId"] == sync)
        .collect();
    assert_eq!(same.len(), 1);

    // A dropped connection on a read is retried.
    ms.faults()
        .set(FaultPlan::new(Fault::DropConnection).times(1));
    assert!(c.list("counterparty", &ListQuery::new()).await.is_ok());

    // Nothing listening: a connect error, distinct from "no response".
    let dead = MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, PASSWORD))
            .base_url("http://127.0.0.1:9/api/remap/1.2")
            .retry(RetryPolicy {
                max_attempts: 2,
                ..fast_retry()
            }),
    )
    .expect("client");
    let err = dead
        .list("store", &ListQuery::new())
        .await
        .expect_err("refused");
    assert!(matches!(err, MoyskladError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn deleting_an_order_with_linked_documents_is_refused() {
    let ms = emulator().await;
    let shop = ms.seed_sample_shop().expect("shop");
    let c = client(&ms);
    let store = &shop.stores["Основной склад"];
    let product = &shop.products["tshirt-basic"];
    let order = c
        .create(
            "customerorder",
            &json!({
                "organization": c.meta("organization", &shop.organization),
                "agent": c.meta("counterparty", &shop.counterparties["rcrm-customer-1"]),
                "store": c.meta("store", store),
                "positions": [{"assortment": c.meta("product", product), "quantity": 1, "price": 149900}]
            }),
        )
        .await
        .expect("order");
    let order_id = order["id"].as_str().expect("id").to_string();
    let demand = c
        .create(
            "demand",
            &json!({
                "organization": c.meta("organization", &shop.organization),
                "agent": c.meta("counterparty", &shop.counterparties["rcrm-customer-1"]),
                "store": c.meta("store", store),
                "customerOrder": c.meta("customerorder", &order_id),
                "positions": [{"assortment": c.meta("product", product), "quantity": 1, "price": 149900}]
            }),
        )
        .await
        .expect("demand");
    let err = c
        .delete("customerorder", &order_id)
        .await
        .expect_err("refused");
    assert_eq!(err.status(), Some(409));
    assert!(err.has_code(1028));
    let deps = &err.errors()[0].dependencies;
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0]["href"], demand["meta"]["href"]);
    // Children first, then the order.
    c.delete("demand", demand["id"].as_str().expect("id"))
        .await
        .expect("demand deleted");
    c.delete("customerorder", &order_id)
        .await
        .expect("order deleted");
    assert!(ms.documents().is_empty());
}

#[tokio::test]
async fn positions_and_nested_collections_via_the_generic_request() {
    let ms = emulator().await;
    let shop = ms.seed_sample_shop().expect("shop");
    let c = client(&ms);
    let order = c
        .create(
            "customerorder",
            &json!({
                "organization": c.meta("organization", &shop.organization),
                "agent": c.meta("counterparty", &shop.counterparties["rcrm-customer-1"]),
                "positions": [{"assortment": c.meta("product", &shop.products["mug-white"]), "quantity": 2, "price": 49900}]
            }),
        )
        .await
        .expect("order");
    let id = order["id"].as_str().expect("id");
    let added = c
        .request(
            reqwest::Method::POST,
            &format!("entity/customerorder/{id}/positions"),
            &[],
            Some(&json!({"assortment": c.meta("service", &shop.services["delivery-courier"]), "quantity": 1, "price": 30000})),
        )
        .await
        .expect("added")
        .expect("body");
    assert_eq!(added["meta"]["type"], "customerorderposition");
    let got = c
        .get("customerorder", id, &["positions.assortment"])
        .await
        .expect("get");
    assert_eq!(got["positions"]["meta"]["size"], 2);
    assert_eq!(got["sum"], 2.0 * 49900.0 + 30000.0);
    assert_eq!(
        got["positions"]["rows"][1]["assortment"]["externalCode"],
        "delivery-courier"
    );
    // Reserve above quantity is refused with 17003.
    let err = c
        .update(
            "customerorder",
            id,
            &json!({"positions": [{"assortment": c.meta("product", &shop.products["mug-white"]), "quantity": 1, "reserve": 2}]}),
        )
        .await
        .expect_err("17003");
    assert!(err.has_code(17003));
    // Sending positions replaces them as a whole.
    let replaced = c
        .update(
            "customerorder",
            id,
            &json!({"positions": [{"assortment": c.meta("product", &shop.products["mug-white"]), "quantity": 3, "price": 49900, "reserve": 3}]}),
        )
        .await
        .expect("replaced");
    assert_eq!(replaced["positions"]["meta"]["size"], 1);
    assert_eq!(replaced["sum"], 3.0 * 49900.0);
}

#[tokio::test]
async fn meta_references_built_by_the_client_are_accepted() {
    let ms = emulator().await;
    let shop = ms.seed_sample_shop().expect("shop");
    let c = client(&ms);
    let (acc_number, acc_id) = shop.organization_accounts[1].clone();
    let order = c
        .create_expanded(
            "customerorder",
            &json!({
                "organization": c.meta("organization", &shop.organization),
                "organizationAccount": c.account_meta("organization", &shop.organization, &acc_id),
                "agent": c.meta("counterparty", &shop.counterparties["rcrm-corp-1"]),
                "state": c.state_meta("customerorder", &shop.order_states["Подтвержден"]),
                "attributes": [
                    {"meta": c.attribute_meta("customerorder", &shop.order_attributes["Способ доставки"])["meta"],
                     "value": c.dictionary_element_meta(&shop.delivery_dictionary, &shop.delivery_methods["courier"])},
                    {"meta": c.attribute_meta("customerorder", &shop.order_attributes["Номер заказа в retailCRM"])["meta"],
                     "value": "10045A"}
                ]
            }),
            &["organizationAccount", "state"],
        )
        .await
        .expect("order");
    assert_eq!(
        order["organizationAccount"]["accountNumber"],
        acc_number.as_str()
    );
    assert_eq!(order["state"]["name"], "Подтвержден");
    let attrs = order["attributes"].as_array().expect("attributes");
    assert_eq!(attrs[0]["value"]["name"], "Курьер");
    assert_eq!(attrs[1]["value"], "10045A");
    // Filter by custom field href and by state name.
    let attr_href = c.attribute_meta(
        "customerorder",
        &shop.order_attributes["Номер заказа в retailCRM"],
    )["meta"]["href"]
        .as_str()
        .expect("href")
        .to_string();
    let found = c
        .list_all(
            "customerorder",
            &ListQuery::new().filter_eq(&attr_href, "10045A"),
        )
        .await
        .expect("by attribute");
    assert_eq!(found.len(), 1);
    let by_agent = c
        .list_all(
            "customerorder",
            &ListQuery::new().filter_eq(
                "agent",
                &c.href("counterparty", &shop.counterparties["rcrm-corp-1"]),
            ),
        )
        .await
        .expect("by agent href");
    assert_eq!(by_agent.len(), 1);
    let by_other_agent = c
        .list_all(
            "customerorder",
            &ListQuery::new().filter_eq(
                "agent",
                &c.href("counterparty", &shop.counterparties["rcrm-customer-1"]),
            ),
        )
        .await
        .expect("by other agent");
    assert!(by_other_agent.is_empty());
    let by_state = c
        .list_all(
            "customerorder",
            &ListQuery::new().filter_eq("state.name", "Подтвержден"),
        )
        .await
        .expect("by state");
    assert_eq!(by_state.len(), 1);
    // A state of another document type is refused (11002); an account of another owner too.
    let foreign = ms.seed_state("demand", "Чужой", "Regular").expect("state");
    let err = c
        .update(
            "customerorder",
            order["id"].as_str().expect("id"),
            &json!({"state": c.state_meta("demand", foreign["id"].as_str().expect("id"))}),
        )
        .await
        .expect_err("11002");
    assert!(err.has_code(11002));
    // A reference to nothing is a format error (2013).
    let err = c
        .create(
            "customerorder",
            &json!({"organization": c.meta("organization", "0e3a0000-5a1e-11f0-0a80-00000000dead"),
                    "agent": c.meta("counterparty", &shop.counterparties["rcrm-corp-1"])}),
        )
        .await
        .expect_err("2013");
    assert!(err.has_code(2013));
}

#[tokio::test]
async fn an_injected_429_is_waited_out_for_the_advertised_time() {
    let ms = emulator().await;
    let c = client(&ms);
    ms.faults().set(
        FaultPlan::new(Fault::TooManyRequests {
            retry_after: Duration::from_millis(120),
        })
        .times(1),
    );
    let started = std::time::Instant::now();
    c.list("store", &ListQuery::new())
        .await
        .expect("after the wait");
    assert!(
        started.elapsed() >= Duration::from_millis(120),
        "waited at least X-Lognex-Retry-After"
    );
    assert_eq!(c.limiter().snapshot().pauses, 1);
    assert_eq!(ms.faults().injected(), 1);
}
