//! `crm.offers` through the live world: `reference("crm.offers", xmlId)` answers each offer
//! from the offers the runner read (one read of the catalogue for every evaluation within the
//! reference TTL), exactly as the whole book (`reference("crm.offers")`) has it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use skladsync_emulators::retailcrm::{EmulatorConfig, RetailcrmEmulator, Seed};
use skladsync_engine::{Value, World};
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient};
use skladsync_runner::clients::retailcrm::{ClientConfig as CrmConfig, RetailcrmClient};
use skladsync_runner::state::SyncState;
use skladsync_runner::world::catalogue::CatalogueMirror;
use skladsync_runner::world::{LiveWorld, ReferenceCache, Systems};

fn offer_requests(crm: &RetailcrmEmulator) -> usize {
    crm.requests()
        .iter()
        .filter(|r| r.path.contains("store/offers"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_answered_one_by_one_as_the_whole_book_has_them() {
    let emu = RetailcrmEmulator::start(EmulatorConfig::with_keys(["k"]))
        .await
        .expect("emulator");
    let offer = |xml: &str, ext: &str, active: bool| {
        json!({"externalId": ext, "xmlId": xml, "name": xml, "article": "A", "site": "s",
               "price": 10, "active": active,
               "product": {"externalId": ext, "name": xml, "type": "product"}})
    };
    // More than a page of offers (the client reads 100 a page).
    let mut offers: Vec<_> = (0..150)
        .map(|i| offer(&format!("x{i}"), &format!("x{i}"), i % 3 != 0))
        .collect();
    offers.push(offer("v1#v2", "other", false));
    emu.seed(&Seed {
        offers,
        ..Seed::default()
    })
    .expect("seed");
    let crm = RetailcrmClient::new(
        CrmConfig::new(&emu.base_url(), "k")
            .expect("url")
            .with_rate_limit(None),
    )
    .expect("client");
    let ms = MoyskladClient::new(
        ClientConfig::new(Auth::basic("unused", "unused")).base_url("http://127.0.0.1:9"),
    )
    .expect("ms client");
    let systems = Systems { crm, ms };
    let dir = tempfile::tempdir().expect("tempdir");
    let state = SyncState::open(dir.path()).expect("state");
    let refs = Arc::new(ReferenceCache::new(Duration::from_secs(600)));
    let catalogue = Arc::new(CatalogueMirror::new(Duration::from_secs(600)));
    let world = || {
        LiveWorld::new(
            systems.clone(),
            state.clone(),
            refs.clone(),
            catalogue.clone(),
            tokio::runtime::Handle::current(),
        )
    };
    emu.clear_requests();

    // Entries asked in two evaluations: the catalogue is read once (two pages).
    let (w1, w2) = (world(), world());
    let entries = tokio::task::spawn_blocking(move || {
        let a = w1.reference_entry("crm.offers", "x4");
        let b = w1.reference_entry("crm.offers", "v1#v2");
        let c = w2.reference_entry("crm.offers", "x9");
        let none = w2.reference_entry("crm.offers", "absent");
        (a, b, c, none)
    })
    .await
    .expect("join");
    let (a, b, c, none) = entries;
    let (a, b, c) = (a.expect("x4"), b.expect("v1#v2"), c.expect("x9"));
    assert!(none.expect("absent").is_null());
    assert_eq!(offer_requests(&emu), 2, "one read of the catalogue");
    assert_eq!(a.get("xmlId"), Value::str("x4"));
    assert_eq!(a.get("externalId"), Value::str("x4"));
    assert_eq!(a.get("active"), Value::bool(true));
    assert!(matches!(a.get("id"), Value::Int(_)));
    assert_eq!(b.get("externalId"), Value::str("other"));
    assert_eq!(c.get("active"), Value::bool(false));

    // The whole book, built from what was read (no other request), has the same entries,
    // in the order of the catalogue.
    let w3 = world();
    let book = tokio::task::spawn_blocking(move || w3.reference("crm.offers"))
        .await
        .expect("join")
        .expect("book");
    assert_eq!(offer_requests(&emu), 2);
    let Value::Object(map) = &book else {
        panic!("not an object: {book:?}");
    };
    assert_eq!(map.len(), 151);
    assert_eq!(
        map.get_index(0).map(|(k, _)| k.to_string()),
        Some("x0".into())
    );
    assert_eq!(book.get("x4"), a);
    assert_eq!(book.get("v1#v2"), b);
    assert_eq!(book.get("x9"), c);
    // Every entry of the book is what the entry alone answers.
    let w4 = world();
    let keys: Vec<String> = map.keys().map(|k| k.to_string()).collect();
    let book2 = book.clone();
    let all_same = tokio::task::spawn_blocking(move || {
        keys.iter().all(|k| {
            w4.reference_entry("crm.offers", k)
                .is_ok_and(|e| e == book2.get(k))
        })
    })
    .await
    .expect("join");
    assert!(all_same);

    // Other books keep answering entries from the whole book.
    let w5 = world();
    let statuses = tokio::task::spawn_blocking(move || {
        (
            w5.reference("crm.statuses"),
            w5.reference_entry("crm.statuses", "new"),
        )
    })
    .await
    .expect("join");
    let (whole, entry) = (statuses.0.expect("statuses"), statuses.1.expect("new"));
    assert_eq!(entry, whole.get("new"));
}

/// One evaluation answers every entry from the same read of the catalogue, as it did with the
/// whole book, even when the cached read expires meanwhile; the next evaluation reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_keeps_the_offers_it_first_read() {
    let emu = RetailcrmEmulator::start(EmulatorConfig::with_keys(["k"]))
        .await
        .expect("emulator");
    let offer = |xml: &str| {
        json!({"externalId": xml, "xmlId": xml, "name": xml, "article": "A", "site": "s",
               "price": 10, "active": true,
               "product": {"externalId": xml, "name": xml, "type": "product"}})
    };
    emu.seed(&Seed {
        offers: vec![offer("a"), offer("b")],
        ..Seed::default()
    })
    .expect("seed");
    let crm = RetailcrmClient::new(
        CrmConfig::new(&emu.base_url(), "k")
            .expect("url")
            .with_rate_limit(None),
    )
    .expect("client");
    let ms = MoyskladClient::new(
        ClientConfig::new(Auth::basic("unused", "unused")).base_url("http://127.0.0.1:9"),
    )
    .expect("ms client");
    let systems = Systems { crm, ms };
    let dir = tempfile::tempdir().expect("tempdir");
    let state = SyncState::open(dir.path()).expect("state");
    // Reference data lives 50 ms.
    let refs = Arc::new(ReferenceCache::new(Duration::from_millis(50)));
    let catalogue = Arc::new(CatalogueMirror::new(Duration::from_secs(600)));
    let world = || {
        LiveWorld::new(
            systems.clone(),
            state.clone(),
            refs.clone(),
            catalogue.clone(),
            tokio::runtime::Handle::current(),
        )
    };
    emu.clear_requests();
    let w = world();
    let answers = tokio::task::spawn_blocking(move || {
        let a = w.reference_entry("crm.offers", "a");
        std::thread::sleep(Duration::from_millis(120));
        let b = w.reference_entry("crm.offers", "b");
        (a, b)
    })
    .await
    .expect("join");
    assert!(!answers.0.expect("a").is_null());
    assert!(!answers.1.expect("b").is_null());
    assert_eq!(offer_requests(&emu), 1, "one read for the whole evaluation");
    // A new evaluation after the TTL reads the catalogue again.
    let w = world();
    let again = tokio::task::spawn_blocking(move || w.reference_entry("crm.offers", "a"))
        .await
        .expect("join");
    assert!(!again.expect("a").is_null());
    assert_eq!(offer_requests(&emu), 2);
}
