//! The МойСклад audit (`GET audit`, `audit/<id>/events`, `entity/<type>/<id>/audit`): every
//! change leaves a context with its events; deletions are found there by `eventType=delete`
//! and `entityType`, several types in one request.

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

async fn call(ms: &MoyskladEmulator, method: reqwest::Method, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}/{path}", ms.base_url()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, v)
}

async fn get(ms: &MoyskladEmulator, path: &str) -> (u16, Value) {
    call(ms, reqwest::Method::GET, path).await
}

fn enc(filter: &str) -> String {
    url::form_urlencoded::byte_serialize(filter.as_bytes()).collect()
}

/// An organization, a counterparty and two payment documents of theirs; returns the ids of
/// the paymentin and the cashin.
fn seed(ms: &MoyskladEmulator) -> (String, String) {
    let meta = |ty: &str, id: &str| json!({"meta": {"href": format!("{}/entity/{ty}/{id}", ms.base_url()), "type": ty, "mediaType": "application/json"}});
    let id = |v: &Value| v["id"].as_str().expect("id").to_string();
    let org = id(&ms
        .seed("organization", json!({"name": "ООО «Мебель»"}))
        .expect("org"));
    let agent = id(&ms
        .seed("counterparty", json!({"name": "Петров"}))
        .expect("agent"));
    let body = json!({"organization": meta("organization", &org), "agent": meta("counterparty", &agent), "sum": 347000});
    let pay = id(&ms.create("paymentin", body.clone()).expect("paymentin"));
    let cash = id(&ms.create("cashin", body).expect("cashin"));
    (pay, cash)
}

#[tokio::test]
async fn a_deletion_through_the_api_leaves_a_context_and_an_event() {
    let ms = start().await;
    let (pay, _cash) = seed(&ms);
    let (status, _) = call(
        &ms,
        reqwest::Method::DELETE,
        &format!("entity/paymentin/{pay}"),
    )
    .await;
    assert_eq!(status, 200);

    let (status, list) = get(
        &ms,
        &format!(
            "audit?filter={}",
            enc("eventType=delete;entityType=paymentin")
        ),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["meta"]["type"], "audit");
    assert_eq!(list["meta"]["size"], 1);
    assert_eq!(list["context"]["employee"]["meta"]["type"], "employee");
    let ctx = &list["rows"][0];
    let id = ctx["id"].as_str().expect("context id");
    assert_eq!(
        ctx["meta"]["href"],
        format!("{}/audit/{id}", ms.base_url()).as_str()
    );
    assert_eq!(ctx["meta"]["type"], "audit");
    assert_eq!(ctx["uid"], LOGIN);
    assert_eq!(ctx["source"], "jsonapi");
    assert_eq!(ctx["eventType"], "delete");
    assert_eq!(ctx["entityType"], "paymentin");
    assert_eq!(ctx["objectCount"], 1);
    assert!(
        ctx["moment"].as_str().is_some_and(|m| m.len() == 19),
        "{ctx}"
    );
    assert_eq!(ctx["events"]["meta"]["type"], "auditevent");
    assert_eq!(ctx["events"]["meta"]["size"], 1);
    assert_eq!(
        ctx["events"]["meta"]["href"],
        format!("{}/audit/{id}/events", ms.base_url()).as_str()
    );

    let (status, events) = get(&ms, &format!("audit/{id}/events")).await;
    assert_eq!(status, 200, "{events}");
    assert_eq!(events["meta"]["type"], "auditevent");
    let ev = &events["rows"][0];
    assert_eq!(ev["eventType"], "delete");
    assert_eq!(ev["entityType"], "paymentin");
    assert_eq!(ev["source"], "jsonapi");
    assert_eq!(ev["uid"], LOGIN);
    assert_eq!(ev["moment"], ctx["moment"]);
    assert_eq!(ev["audit"]["meta"]["href"], ctx["meta"]["href"]);
    // The entity is gone, its meta is still given (that is how a client learns its id).
    assert_eq!(
        ev["entity"]["meta"]["href"],
        format!("{}/entity/paymentin/{pay}", ms.base_url()).as_str()
    );
    assert_eq!(ev["entity"]["meta"]["type"], "paymentin");
    assert!(ev["name"].is_string(), "{ev}");
    assert_eq!(ev["diff"]["name"]["oldValue"], ev["name"]);

    // The entity's own events: created, then deleted (newest first).
    let (status, own) = get(&ms, &format!("entity/paymentin/{pay}/audit")).await;
    assert_eq!(status, 200, "{own}");
    let kinds: Vec<&str> = own["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["eventType"].as_str())
        .collect();
    assert_eq!(kinds, ["delete", "create"]);
}

#[tokio::test]
async fn deletions_of_several_types_come_in_one_request_newest_first() {
    let ms = start().await;
    let (pay, cash) = seed(&ms);
    // A UI deletion (the emulator's helper) and an API bulk deletion.
    ms.delete("paymentin", &pay).expect("delete paymentin");
    let (status, _) = reqwest::Client::new()
        .post(format!("{}/entity/cashin/delete", ms.base_url()))
        .basic_auth(LOGIN, Some(PASSWORD))
        .header("Accept-Encoding", "gzip")
        .json(&json!([{"meta": {"href": format!("{}/entity/cashin/{cash}", ms.base_url()), "type": "cashin"}}]))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("bulk delete");
    assert_eq!(status, 200);

    let (status, list) = get(
        &ms,
        &format!(
            "audit?filter={}",
            enc("eventType=delete;entityType=paymentin;entityType=cashin;moment>=2000-01-01 00:00:00")
        ),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["meta"]["size"], 2);
    let types: Vec<&str> = list["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["entityType"].as_str())
        .collect();
    assert_eq!(types, ["cashin", "paymentin"], "newest first");
    assert_eq!(list["rows"][1]["source"], "app");

    // Creations are audited too, and are not deletions.
    let (_, all) = get(&ms, "audit").await;
    assert_eq!(all["meta"]["size"], 4, "two creations, two deletions");
    let (_, created) = get(&ms, &format!("audit?filter={}", enc("eventType=create"))).await;
    assert_eq!(created["meta"]["size"], 2);

    // A moment after every change: nothing.
    let (_, later) = get(
        &ms,
        &format!("audit?filter={}", enc("moment>=2999-01-01 00:00:00")),
    )
    .await;
    assert_eq!(later["meta"]["size"], 0);
    // Paging.
    let (_, page) = get(&ms, "audit?limit=1&offset=1").await;
    assert_eq!(page["meta"]["size"], 4);
    assert_eq!(page["rows"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn the_audit_refuses_what_it_cannot_filter_by() {
    let ms = start().await;
    for (filter, why) in [
        ("name=x", "unknown field"),
        ("updated>=2026-01-01 00:00:00", "not an audit field"),
        ("moment>2026-01-01 00:00:00", "only >= and <= on moment"),
        ("moment>=yesterday", "not a date"),
        ("eventType=deleted", "not an event type"),
        ("entityType!=product", "only ="),
    ] {
        let (status, body) = get(&ms, &format!("audit?filter={}", enc(filter))).await;
        assert_eq!(status, 412, "{why}: {body}");
        assert!(body["errors"][0]["code"].is_u64(), "{body}");
    }
    let (status, _) = get(&ms, "audit/2f0a0000-0000-4000-8000-000000000001/events").await;
    assert_eq!(status, 404);
    let (status, filters) = get(&ms, "audit/metadata/filters").await;
    assert_eq!(status, 200);
    assert!(filters["eventtype"]
        .as_array()
        .is_some_and(|a| a.contains(&json!("delete"))));
}
