//! The catalogue mirror (issue 13) against the МойСклад emulator: item matching by
//! `externalCode` through the live world costs no request once the assortment is loaded, gives
//! the answer a request would, never answers "not found" for an item it does not hold, and the
//! reconciliation refresh brings in changes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};
use skladsync_engine::value::Map;
use skladsync_engine::World;
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient};
use skladsync_runner::clients::retailcrm::{ClientConfig as CrmConfig, RetailcrmClient};
use skladsync_runner::state::SyncState;
use skladsync_runner::world::catalogue::CatalogueMirror;
use skladsync_runner::world::{lookups, LiveWorld, ReferenceCache, Systems};

const LOGIN: &str = "admin@emulator";
const PASSWORD: &str = "emulator-password";

fn assortment_requests(ms: &MoyskladEmulator) -> usize {
    ms.requests()
        .iter()
        .filter(|r| r.path.ends_with("/entity/assortment"))
        .count()
}

fn strip_stock(mut rows: Vec<Value>) -> Vec<Value> {
    for r in &mut rows {
        if let Some(o) = r.as_object_mut() {
            for f in ["stock", "reserve", "inTransit", "quantity"] {
                o.remove(f);
            }
        }
    }
    rows
}

fn code_filter(code: &str) -> Map {
    let mut m = Map::default();
    m.insert("externalCode".into(), code.into());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_matching_is_answered_from_the_mirror_and_falls_back_for_what_it_lacks() {
    let ms = MoyskladEmulator::start(MoyskladEmulatorConfig {
        rate_limit: None,
        ..MoyskladEmulatorConfig::default()
    })
    .await
    .expect("emulator");
    for i in 0..30 {
        ms.seed(
            "product",
            json!({"name": format!("Товар {i}"), "externalCode": format!("p{i}")}),
        )
        .expect("product");
    }
    let client = MoyskladClient::new(
        ClientConfig::new(Auth::basic(LOGIN, PASSWORD)).base_url(ms.base_url()),
    )
    .expect("client");
    let crm =
        RetailcrmClient::new(CrmConfig::new("http://127.0.0.1:9", "unused").expect("crm config"))
            .expect("crm client");
    let systems = Systems {
        crm,
        ms: client.clone(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let state = SyncState::open(dir.path()).expect("state");
    let catalogue = Arc::new(CatalogueMirror::new(Duration::from_secs(600)));
    let world = |c: &Arc<CatalogueMirror>| {
        LiveWorld::new(
            systems.clone(),
            state.clone(),
            Arc::new(ReferenceCache::new(Duration::from_secs(600))),
            c.clone(),
            tokio::runtime::Handle::current(),
        )
    };

    // What a request answers, for comparison.
    let mut expected = serde_json::Map::new();
    expected.insert("externalCode".into(), json!("p7"));
    let by_request = strip_stock(
        lookups::ms_find(&client, "assortment", &expected)
            .await
            .expect("lookup"),
    );
    assert_eq!(by_request.len(), 1);
    ms.clear_requests();

    // The first lookup loads the mirror (one page); the next ones, in other evaluations,
    // cost nothing and answer the same.
    let w = world(&catalogue);
    let c = catalogue.clone();
    let found = tokio::task::spawn_blocking(move || {
        let a = w.find("moysklad", "assortment", &code_filter("p7"));
        let b = w.find("moysklad", "assortment", &code_filter("p12"));
        (a, b, c.len())
    })
    .await
    .expect("join");
    let (a, b, held) = found;
    let a: Vec<Value> = a.expect("p7").iter().map(|v| v.to_serde_json()).collect();
    assert_eq!(a, by_request, "the mirror answers what a request would");
    assert_eq!(b.expect("p12").len(), 1);
    assert_eq!(held, 30);
    assert_eq!(
        assortment_requests(&ms),
        1,
        "one request loaded the mirror; the lookups cost none"
    );

    // An item created after the load is not in the mirror: the lookup asks МойСклад and finds
    // it (never a wrong "not found"); then it is held.
    ms.create(
        "product",
        json!({"name": "Новинка", "externalCode": "fresh"}),
    )
    .expect("create");
    ms.clear_requests();
    let w = world(&catalogue);
    let fresh = tokio::task::spawn_blocking(move || {
        w.find("moysklad", "assortment", &code_filter("fresh"))
    })
    .await
    .expect("join")
    .expect("fresh");
    assert_eq!(fresh.len(), 1, "the new item is found by a request");
    assert_eq!(assortment_requests(&ms), 1);
    let w = world(&catalogue);
    let again = tokio::task::spawn_blocking(move || {
        w.find("moysklad", "assortment", &code_filter("fresh"))
    })
    .await
    .expect("join")
    .expect("fresh again");
    assert_eq!(again.len(), 1);
    assert_eq!(assortment_requests(&ms), 1, "and is then held");
    // A code nobody has is asked for each time (and is not found).
    let w = world(&catalogue);
    let none = tokio::task::spawn_blocking(move || {
        w.find("moysklad", "assortment", &code_filter("nobody"))
    })
    .await
    .expect("join")
    .expect("nobody");
    assert!(none.is_empty());
    assert_eq!(assortment_requests(&ms), 2);

    // A change made in МойСклад reaches the mirror through the refresh of the poll.
    let p3 = ms
        .list("product")
        .into_iter()
        .find(|p| p["externalCode"] == "p3")
        .expect("p3");
    // (The refresh starts at the newest `updated` seen, to the second.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ms.update(
        "product",
        p3["id"].as_str().expect("id"),
        json!({"externalCode": "p3-renamed"}),
    )
    .expect("rename");
    let changed = catalogue.refresh(&client).await.expect("refresh");
    assert!(
        changed >= 1,
        "the renamed product came back from the refresh"
    );
    ms.clear_requests();
    let w = world(&catalogue);
    let (old, new) = tokio::task::spawn_blocking(move || {
        (
            w.find("moysklad", "assortment", &code_filter("p3")),
            w.find("moysklad", "assortment", &code_filter("p3-renamed")),
        )
    })
    .await
    .expect("join");
    assert!(old.expect("p3").is_empty(), "the old code is gone");
    assert_eq!(new.expect("renamed").len(), 1);
    assert_eq!(
        assortment_requests(&ms),
        1,
        "only the old code (no longer held) was asked for"
    );
}
