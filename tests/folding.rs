//! The default rules folded for their own settings (docs/language.md, "What an evaluation
//! costs"): an upload of a new order gives the same plan with the settings the rule set was
//! loaded with (the folded code) and with settings that differ at a key the folding decided
//! on (the code as written), and the folded code takes fewer steps. The runner's
//! `connection` merged over the settings (as the daemon does) keeps the folded code.

mod common;

use skladsync_engine::{EvalErrorKind, EvalOptions, Event, Plan, RecordedWorld, RuleSet, Value};

const BASE: &str = "https://api.moysklad.ru/api/remap/1.2";

fn json(v: serde_json::Value) -> Value {
    Value::from_json(&v)
}

/// The default rules, loaded with the example settings and the mappings an upload needs.
fn rules(dir: &tempfile::TempDir) -> RuleSet {
    let root = common::root();
    let (example, _) = RuleSet::load(
        &root.join("rules"),
        Some(&root.join("rules/settings.example.yaml")),
    )
    .unwrap_or_else(|d| panic!("the default rules load:\n{}", d.render(false)));
    let settings = example.settings_with(&json(serde_json::json!({
        "mappings": {
            "shops": {"shop-main": "org-1"},
            "stores": {"main": "store-1"},
            "upload_statuses": ["new"]
        },
        "crm_tab": {"auto_reserve": true}
    })));
    let path = dir.path().join("settings.yaml");
    std::fs::write(&path, settings.to_json()).expect("settings file");
    RuleSet::load(&root.join("rules"), Some(&path))
        .unwrap_or_else(|d| panic!("the default rules load:\n{}", d.render(false)))
        .0
}

fn world() -> RecordedWorld {
    let products: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            let id = format!("00000000-0000-4000-8000-{i:012}");
            serde_json::json!({
                "meta": {"href": format!("{BASE}/entity/product/{id}"), "type": "product", "mediaType": "application/json"},
                "id": id, "name": format!("Товар {i}"), "externalCode": format!("prod-{i}")
            })
        })
        .collect();
    let doc = serde_json::json!({
        "entities": {"moysklad.assortment": products, "moysklad.product": products},
        "links": [],
        "reference": {}
    });
    RecordedWorld::from_yaml(&doc.to_string()).expect("world")
}

fn event() -> Event {
    let items: Vec<serde_json::Value> = (0..3)
        .map(|i| {
            serde_json::json!({
                "id": 100 + i, "initialPrice": 100.5 + f64::from(i), "discountTotal": i,
                "vatRate": if i == 1 { "none" } else { "20" }, "quantity": 2,
                "status": "new", "offer": {"id": 200 + i, "xmlId": format!("prod-{i}"), "name": format!("Товар {i}")}
            })
        })
        .collect();
    let doc = json(serde_json::json!({
        "event": "crm.order.changed",
        "now": "2024-05-01 10:00:00",
        "order": {
            "id": 7001, "number": "7001A", "site": "shop-main", "status": "new",
            "shipmentStore": "main", "createdAt": "2024-05-01 09:00:00",
            "firstName": "Анна", "lastName": "Иванова", "phone": "+79031234567",
            "customer": {"type": "customer", "id": 501, "firstName": "Анна", "lastName": "Иванова"},
            "items": items,
            "customFields": {}
        },
        "changes": [],
        "created": true
    }));
    Event::from_document(&doc).expect("event")
}

fn plan(set: &RuleSet, settings: Option<&Value>) -> Plan {
    let opts = EvalOptions {
        settings,
        ..EvalOptions::default()
    };
    set.evaluate_with(&event(), &world(), opts)
        .unwrap_or_else(|e| panic!("evaluates: {e}"))
}

/// The steps an evaluation takes: the smallest budget it succeeds with.
fn steps(set: &RuleSet, settings: Option<&Value>) -> u64 {
    let (ev, w) = (event(), world());
    let (mut lo, mut hi) = (0u64, 1_000_000u64);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let opts = EvalOptions {
            settings,
            budget: mid,
            ..EvalOptions::default()
        };
        match set.evaluate_with(&ev, &w, opts) {
            Err(e) if e.kind == EvalErrorKind::Budget => lo = mid + 1,
            _ => hi = mid,
        }
    }
    lo
}

#[test]
fn the_folded_default_rules_plan_what_the_rules_as_written_plan() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let set = rules(&dir);
    let own = plan(&set, None);
    assert!(
        own.effects
            .iter()
            .any(|e| serde_json::to_string(&e.action).is_ok_and(|a| a.contains("customerorder"))),
        "the order is uploaded: {own:?}"
    );
    // A discount mode other than `net_price` prices positions as `percent` does: the same
    // plan, but from the code as written (the folding decided on `discount_mode`).
    let other = set.settings_with(&json(
        serde_json::json!({"crm_tab": {"discount_mode": "gross"}}),
    ));
    assert_eq!(plan(&set, Some(&other)), own);
    assert!(
        steps(&set, None) < steps(&set, Some(&other)),
        "folded {} < as written {}",
        steps(&set, None),
        steps(&set, Some(&other))
    );
    // The runner's `connection` merged over the own settings keeps the folded code.
    let connection = set.settings_with(&json(serde_json::json!({"connection": {
        "moysklad_url": BASE,
        "crm_url": "https://other.retailcrm.test",
        "crm_timezone": "Europe/Moscow",
        "moysklad_timezone": "Europe/Moscow"
    }})));
    assert_eq!(plan(&set, Some(&connection)), own);
    assert_eq!(steps(&set, Some(&connection)), steps(&set, None));
}
