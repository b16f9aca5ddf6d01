//! Faults: the same sync with both emulators misbehaving (429s, 5xx, dropped connections,
//! writes committed and then their answer dropped) ends in the same state as without faults,
//! with no duplicate document.

#[path = "fixtures/e2e/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use skladsync_emulators::faults::{Fault, FaultPlan, Faults, PlanId, Trigger};
use skladsync_runner::demo::lab::{Lab, LabOptions};
use support::{duplicates, fixture_rules, order_by_number, start_on, Backend, Rig};

/// The fault kinds, in the order [`faulty`] adds them.
const KINDS: [&str; 5] = ["429", "503", "500", "dropped", "commit-then-drop"];

/// Switches every kind of fault on, at random; returns the plans in [`KINDS`] order.
fn faulty(faults: &Faults, seed: u64) -> Vec<PlanId> {
    let random = |p: f64, s: u64| Trigger::Random {
        probability: p,
        seed: seed.wrapping_add(s),
    };
    vec![
        faults.add(
            FaultPlan::new(Fault::TooManyRequests {
                retry_after: Duration::from_millis(30),
            })
            .trigger(random(0.12, 1)),
        ),
        faults.add(FaultPlan::new(Fault::ServerError { status: 503 }).trigger(random(0.08, 2))),
        faults.add(FaultPlan::new(Fault::ServerError { status: 500 }).trigger(random(0.06, 3))),
        faults.add(FaultPlan::new(Fault::DropConnection).trigger(random(0.08, 4))),
        faults.add(
            FaultPlan::new(Fault::CommitThenDrop)
                .trigger(random(0.3, 5))
                .writes_only(),
        ),
    ]
}

fn id_of(v: &Value) -> String {
    v["meta"]["href"]
        .as_str()
        .and_then(|h| h.split('?').next())
        .and_then(|h| h.rsplit('/').next())
        .unwrap_or_default()
        .to_string()
}

fn invert(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (v.clone(), k.clone())).collect()
}

/// The state of both systems, with МойСклад ids replaced by what they stand for.
fn normalized(lab: &Lab) -> Value {
    let assortment = invert(&lab.shop.assortment);
    let stores = invert(&lab.shop.stores);
    let states = invert(&lab.shop.states);
    let counterparties: BTreeMap<String, String> = lab
        .ms
        .list("counterparty")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_string(),
                c["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let name = |m: &BTreeMap<String, String>, v: &Value| {
        m.get(&id_of(v)).cloned().unwrap_or_else(|| id_of(v))
    };
    let mut orders: Vec<Value> = lab
        .ms
        .list("customerorder")
        .iter()
        .map(|o| {
            json!({
                "name": o["name"],
                "agent": name(&counterparties, &o["agent"]),
                "store": name(&stores, &o["store"]),
                "state": name(&states, &o["state"]),
                "positions": o["positions"]["rows"].as_array().map(|rows| rows.iter().map(|p| json!({
                    "item": name(&assortment, &p["assortment"]),
                    "quantity": p["quantity"], "price": p["price"],
                })).collect::<Vec<_>>()),
            })
        })
        .collect();
    orders.sort_by_key(|o| o["name"].to_string());
    let mut payments: Vec<Value> = lab
        .ms
        .list("paymentin")
        .iter()
        .map(|p| json!({"name": p["name"], "sum": p["sum"], "agent": name(&counterparties, &p["agent"])}))
        .collect();
    payments.sort_by_key(|p| p["name"].to_string());
    let mut cps: Vec<String> = counterparties.into_values().collect();
    cps.sort();
    let crm_orders: Vec<Value> = lab
        .crm
        .orders()
        .iter()
        .map(|o| json!({"number": o["number"], "status": o["status"], "shipped": o["shipped"]}))
        .collect();
    let stock: Vec<Value> = lab
        .crm
        .offers()
        .iter()
        .map(|o| json!({"xmlId": o.xml_id, "stores": o.stores.iter().map(|(k, s)| json!([k, s.quantity, s.purchase_price])).collect::<Vec<_>>()}))
        .collect();
    json!({"ms_orders": orders, "payments": payments, "counterparties": cps, "crm_orders": crm_orders, "stock": stock})
}

fn state_ref(lab: &Lab, status: &str) -> Value {
    json!({"meta": {
        "href": format!("{}/entity/customerorder/metadata/states/{}", lab.ms.base_url(), lab.shop.states[status]),
        "type": "state", "mediaType": "application/json"}})
}

async fn round(rig: &Rig) {
    let _ = rig.daemon.cycle().await;
    rig.settle().await;
}

/// The scenario: upload, a state change in МойСклад, a payment in CRM, a shipment in
/// МойСклад, a full stock pass; then rounds until the state stops changing.
async fn scenario(
    fault_seed: Option<u64>,
    backend: Backend,
) -> (Value, Vec<String>, BTreeMap<&'static str, u64>, u64) {
    let rig = start_on(
        fixture_rules(),
        true,
        LabOptions {
            crm_rate: None,
            ms_limits: false,
            seed: true,
        },
        backend,
    )
    .await;
    let lab = &rig.lab;
    let plans = match fault_seed {
        Some(seed) => vec![
            (lab.crm.faults(), faulty(lab.crm.faults(), seed)),
            (
                lab.ms.faults(),
                faulty(lab.ms.faults(), seed.wrapping_mul(31)),
            ),
        ],
        None => Vec::new(),
    };
    // Upload (retried until both orders are in).
    for _ in 0..60 {
        round(&rig).await;
        if lab.ms.list("customerorder").len() >= 2 {
            break;
        }
    }
    let find = |n: &str| {
        lab.ms
            .list("customerorder")
            .into_iter()
            .find(|o| o["name"] == n)
            .unwrap_or_else(|| panic!("{n} was not uploaded"))
    };
    let a1001 = find("A-1001");
    lab.ms
        .update(
            "customerorder",
            a1001["id"].as_str().expect("id"),
            json!({"state": state_ref(lab, "assembling")}),
        )
        .expect("state");
    lab.crm
        .as_manager(12)
        .add_payment(
            order_by_number(lab, "A-1001"),
            json!({"type": "cash", "status": "paid", "amount": 55.5}),
        )
        .expect("payment");
    let a1002 = find("A-1002");
    let positions: Vec<Value> = a1002["positions"]["rows"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| json!({"quantity": p["quantity"], "price": p["price"], "assortment": p["assortment"]}))
        .collect();
    lab.ms
        .create(
            "demand",
            json!({"organization": a1002["organization"], "agent": a1002["agent"], "store": a1002["store"],
                   "customerOrder": {"meta": a1002["meta"]}, "applicable": true, "positions": positions}),
        )
        .expect("demand");
    rig.daemon.queue_stock_pass(true).expect("stock");
    // Until nothing changes for several rounds and nothing waits.
    let mut last = Value::Null;
    let mut quiet = 0;
    for _ in 0..200 {
        round(&rig).await;
        let now = normalized(lab);
        let waiting = rig.daemon.state().inbox().expect("inbox").len();
        if now == last && waiting == 0 {
            quiet += 1;
            if quiet >= 3 {
                break;
            }
        } else {
            quiet = 0;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut injected: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (faults, ids) in &plans {
        for (kind, id) in KINDS.iter().zip(ids) {
            *injected.entry(kind).or_default() += faults.fired(*id).unwrap_or(0);
        }
    }
    let failures = rig.daemon.stats().failures;
    let dups = duplicates(lab);
    let state = normalized(lab);
    rig.stop().await;
    (state, dups, injected, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_converge_to_the_same_state_without_duplicates() {
    converge(Backend::Sled, &[11, 2024]).await;
}

/// The same with the state in PostgreSQL (one fault seed: the runtime budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_converge_without_duplicates_with_the_state_in_postgresql() {
    converge(Backend::Postgres, &[11]).await;
}

async fn converge(backend: Backend, seeds: &[u64]) {
    let (clean, clean_dups, _, clean_failures) = scenario(None, backend).await;
    assert!(clean_dups.is_empty(), "{clean_dups:?}");
    assert_eq!(clean_failures, 0);
    // The clean run did what the scenario asks.
    let text = clean.to_string();
    assert!(text.contains("\"shipped\":true"), "{text}");
    assert!(text.contains("assembling"), "{text}");
    for &seed in seeds {
        let (faulty, dups, injected, failures) = scenario(Some(seed), backend).await;
        eprintln!(
            "fault seed {seed}: faults injected {injected:?}, {failures} effects failed and were retried"
        );
        for kind in KINDS {
            assert!(
                injected.get(kind).copied().unwrap_or(0) > 0,
                "no {kind} fault happened (seed {seed}): {injected:?}"
            );
        }
        assert!(
            dups.is_empty(),
            "duplicates with faults (seed {seed}): {dups:?}"
        );
        assert_eq!(
            faulty, clean,
            "with faults (seed {seed}) the systems ended elsewhere"
        );
    }
}
