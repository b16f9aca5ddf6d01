//! `cargo bench --bench engine`: compiling the default rule set, parsing an order with
//! serde_json, and evaluating the rule set against it, side by side.
//!
//! Targets: compiling the default rule set ≤ 20 ms; evaluating an event costs no more than
//! parsing the same document, for a ~4 KB order and a ~60 KB order with 200 items, with the
//! conversion into engine values counted: `ratio` is evaluation / parse, `ratio+conv` is
//! (conversion + evaluation) / parse; the target is ≤ 1.0 for both.
//!
//! The conversion is what the daemon spends, beyond a `serde_json` parse, to get the order it
//! read as engine values. The daemon reads API answers straight into engine values (`Value`'s
//! own `Deserialize`, `deser`), so its conversion is `deser − parse` (negative when reading
//! into engine values costs less than a parse into a `serde_json::Value`). The old way, a
//! parse then `Value::from_json` (`from_json`), is printed beside it: `ratio+from_json` is
//! (from_json + evaluation) / parse.
//!
//! `SKLADSYNC_BENCH_MS` sets the time spent on each figure (default 1500). The machine's load
//! moves these times a lot; for exact, repeatable counts run one part alone under callgrind:
//! `SKLADSYNC_BENCH_PROFILE=200:eval:6` (or `:conv:`, `:deser:`, `:parse:`; `4` for the
//! small order) runs only that part that many times, so the difference between 6 and 1 runs,
//! divided by 5, is the instructions of one. `SKLADSYNC_BENCH_PROFILE=compile:6` loads the
//! rule set (read, check, compile) that many times, and nothing else.
//!
//! The rules directory is `rules/` at the repository root (override with
//! `SKLADSYNC_BENCH_RULES`); the event is a `crm.order.changed` of a new order in an upload
//! status, with a world that holds the matching МойСклад catalogue, so the upload rules do
//! their full work. The settings are the example's with the bench's mappings, loaded as the
//! rule set's own (as the daemon's settings file is), with the runner's `connection` merged
//! in per evaluation; `SKLADSYNC_BENCH_SETTINGS=overrides` gives the mappings as overrides of
//! the example's settings instead (what `skladsync test` does with a case's settings).

#![recursion_limit = "256"]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use skladsync_engine::{Event, RecordedWorld, RuleSet, RuleTimes, Value};

/// The allocator of the `skladsync` binary, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Median time of one run of `f`, measured over batches for at least `budget`.
fn measure<T>(budget: Duration, mut f: impl FnMut() -> T) -> Duration {
    // Warm up and size a batch so one batch takes about 10 ms.
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_millis(10) || n == 0 {
        black_box(f());
        n += 1;
    }
    let batch = n.max(1);
    let mut samples = Vec::new();
    let total = Instant::now();
    while total.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        samples.push(t.elapsed() / batch);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn item(i: usize) -> serde_json::Value {
    let variant = i.is_multiple_of(3);
    let xml_id = if variant {
        format!("prod-{i:04}#var-{i:04}")
    } else {
        format!("prod-{i:04}")
    };
    serde_json::json!({
        "id": 10_000 + i,
        "initialPrice": 199.99 + i as f64,
        "discountTotal": 0,
        "vatRate": "20",
        "createdAt": "2024-05-01 09:00:00",
        "quantity": 2,
        "status": if i % 10 == 7 { "cancel" } else { "new" },
        "offer": {
            "id": 20_000 + i,
            "externalId": xml_id,
            "xmlId": xml_id,
            "name": format!("Товар {i}"),
            "article": format!("ART-{i}")
        },
        "purchasePrice": 120.5,
        "discounts": [],
        "comment": ""
    })
}

fn order(items: usize) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = (0..items).map(item).collect();
    serde_json::json!({
        "slug": 7001, "id": 7001, "number": "7001A", "externalId": "7001A",
        "orderType": "eshop-individual", "orderMethod": "shopping-cart", "privilegeType": "none",
        "countryIso": "RU", "createdAt": "2024-05-01 09:00:00", "statusUpdatedAt": "2024-05-01 09:05:00",
        "summ": 4000, "totalSumm": 4350, "prepaySum": 0, "purchaseSumm": 2410, "currency": "RUB",
        "markDatetime": "2024-05-01 09:05:00", "lastName": "Иванова", "firstName": "Анна",
        "patronymic": "Сергеевна", "phone": "+79031234567", "email": "anna@example.ru",
        "call": false, "expired": false,
        "customer": {
            "type": "customer", "id": 501, "externalId": "c-501", "isContact": false,
            "createdAt": "2023-01-01 10:00:00", "managerId": 12, "vip": false, "bad": false,
            "site": "shop-main", "contragent": {"contragentType": "individual"}, "tags": [],
            "customFields": {}, "personalDiscount": 0, "cumulativeDiscount": 0,
            "address": {"id": 3, "index": "119021", "countryIso": "RU", "region": "Москва", "city": "Москва", "text": "ул. Льва Толстого, 16"},
            "firstName": "Анна", "lastName": "Иванова", "patronymic": "Сергеевна",
            "email": "anna@example.ru", "phones": [{"number": "+79031234567"}]
        },
        "contragent": {"contragentType": "individual"},
        "delivery": {
            "code": "courier", "cost": 350, "netCost": 300,
            "address": {"index": "119021", "countryIso": "RU", "city": "Москва", "text": "ул. Льва Толстого, 16"},
            "date": "2024-05-03", "time": {"from": "10:00", "to": "18:00"}
        },
        "site": "shop-main", "status": "new", "statusComment": "", "managerComment": "Позвонить до 12:00",
        "customerComment": "Домофон 12", "managerId": 12, "shipmentStore": "main",
        "fromApi": false, "shipped": false,
        "items": lines,
        "payments": {
            "301": {"id": 301, "status": "paid", "type": "bank-card", "amount": 2000, "paidAt": "2024-05-01 09:03:00"},
            "302": {"id": 302, "status": "not-paid", "type": "cash", "amount": 2350}
        },
        "customFields": {"moyskladexternalid": null},
        "weight": 0, "length": 0, "width": 0, "height": 0
    })
}

fn world(items: usize) -> RecordedWorld {
    let base = "https://api.moysklad.ru/api/remap/1.2";
    let mut products = Vec::new();
    let mut variants = Vec::new();
    let mut assortment = Vec::new();
    for i in 0..items {
        let pid = format!("00000000-0000-4000-8000-{i:012}");
        let product = serde_json::json!({
            "meta": {"href": format!("{base}/entity/product/{pid}"), "type": "product", "mediaType": "application/json"},
            "id": pid, "name": format!("Товар {i}"), "externalCode": format!("prod-{i:04}"),
            "code": format!("{i:05}"), "article": format!("ART-{i}"), "archived": false,
            "salePrices": [{"value": 19999.0, "currency": {}, "priceType": {}}], "buyPrice": {"value": 12050.0}
        });
        products.push(product.clone());
        assortment.push(product);
        if i.is_multiple_of(3) {
            let vid = format!("00000000-0000-4000-9000-{i:012}");
            let variant = serde_json::json!({
                "meta": {"href": format!("{base}/entity/variant/{vid}"), "type": "variant", "mediaType": "application/json"},
                "id": vid, "name": format!("Товар {i} (M)"), "externalCode": format!("var-{i:04}"),
                "archived": false,
                "product": {"meta": {"href": format!("{base}/entity/product/{pid}"), "type": "product", "mediaType": "application/json"}, "externalCode": format!("prod-{i:04}")},
                "characteristics": [{"name": "Размер", "value": "M"}]
            });
            variants.push(variant.clone());
            assortment.push(variant);
        }
    }
    let doc = serde_json::json!({
        "entities": {
            "moysklad.product": products,
            "moysklad.variant": variants,
            "moysklad.assortment": assortment,
            "moysklad.counterparty": [{"id": "cp-501", "name": "Иванова Анна", "phone": "+79031234567", "email": "anna@example.ru",
                "meta": {"href": format!("{base}/entity/counterparty/cp-501"), "type": "counterparty", "mediaType": "application/json"}}],
            "moysklad.service": [{"id": "svc-delivery", "code": "delivery", "name": "Доставка",
                "meta": {"href": format!("{base}/entity/service/svc-delivery"), "type": "service", "mediaType": "application/json"}}]
        },
        "links": [],
        "reference": {}
    });
    RecordedWorld::from_yaml(&doc.to_string()).expect("bench world")
}

fn settings_overrides() -> Value {
    let v = serde_json::json!({
        "mappings": {
            "shops": {"shop-main": "org-1"},
            "stores": {"main": "store-1", "reserve": "store-2"},
            "statuses": {"new": "state-new", "complete": "state-done"},
            "upload_statuses": ["new"],
            "payment_types": {"map": {"bank-card": "paymentin", "cash": "cashin"}}
        },
        "crm_tab": {"delivery_as_position": true, "auto_reserve": true}
    });
    Value::from_json(&v)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // (runner/ lives beside rules/ at the repository root)
    let rules_dir = std::env::var_os("SKLADSYNC_BENCH_RULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("rules"));
    let settings = ["settings.yaml", "settings.example.yaml"]
        .iter()
        .map(|n| rules_dir.join(n))
        .find(|p| p.is_file());
    let budget = Duration::from_millis(
        std::env::var("SKLADSYNC_BENCH_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1500),
    );

    let (rules, _) = match RuleSet::load(&rules_dir, settings.as_deref()) {
        Ok(r) => r,
        Err(d) => {
            eprintln!("the rule set does not load:\n{}", d.render(false));
            std::process::exit(1);
        }
    };
    let profiling = std::env::var_os("SKLADSYNC_BENCH_PROFILE").is_some();
    // `SKLADSYNC_BENCH_PROFILE=compile:runs`: only load the rule set (read, check, compile),
    // `runs` times (for a profiler, as the parts below).
    if let Some(runs) = std::env::var("SKLADSYNC_BENCH_PROFILE")
        .ok()
        .and_then(|spec| spec.strip_prefix("compile:").map(str::to_owned))
    {
        let runs: u64 = runs.parse().unwrap_or(1);
        for _ in 0..runs {
            black_box(RuleSet::load(&rules_dir, settings.as_deref()).is_ok());
        }
        println!("compile: {runs} runs");
        return;
    }
    let compile = if profiling {
        Duration::ZERO
    } else {
        measure(budget, || {
            RuleSet::load(&rules_dir, settings.as_deref()).map(|_| ())
        })
    };
    println!(
        "rule set: {} rules in {} files from {}",
        rules.rules().len(),
        rules.files().len(),
        rules_dir.display()
    );
    println!(
        "compile (read + check + compile) {:>10.3} ms   (target ≤ 20 ms)",
        compile.as_secs_f64() * 1e3
    );
    // The settings of the evaluation are the example's with the bench's overrides. As in
    // the daemon, they are the rule set's own (its settings file), with the `connection` the
    // runner fills in merged over them: the rule set is loaded again with them as its
    // settings file, so the folding for the own settings applies (docs/language.md, "What an
    // evaluation costs"). `SKLADSYNC_BENCH_SETTINGS=overrides` evaluates the example's rule
    // set with the overrides given per evaluation instead (settings other than the rule
    // set's own: the code as written).
    let merged = rules.settings_with(&settings_overrides());
    let overridden = std::env::var("SKLADSYNC_BENCH_SETTINGS").is_ok_and(|v| v == "overrides");
    let _settings_dir = tempfile::tempdir().expect("temporary directory");
    let (rules, merged) = if overridden {
        (rules, merged)
    } else {
        let path = _settings_dir.path().join("settings.yaml");
        std::fs::write(&path, merged.to_json()).expect("settings file");
        let rules = match RuleSet::load(&rules_dir, Some(&path)) {
            Ok((r, _)) => r,
            Err(d) => {
                eprintln!("the rule set does not load:\n{}", d.render(false));
                std::process::exit(1);
            }
        };
        let connection = serde_json::json!({"connection": {
            "moysklad_url": "https://api.moysklad.ru/api/remap/1.2",
            "crm_url": "https://bench.retailcrm.test",
            "crm_timezone": "Europe/Moscow",
            "moysklad_timezone": "Europe/Moscow"
        }});
        let with_connection = rules.settings_with(&Value::from_json(&connection));
        (rules, with_connection)
    };
    println!();
    println!(
        "{:<28}{:>8}{:>10}{:>10}{:>10}{:>10}{:>8}{:>12}{:>14}{:>17}{:>9}",
        "document",
        "bytes",
        "parse µs",
        "deser µs",
        "conv µs",
        "eval µs",
        "ratio",
        "ratio+conv",
        "from_json µs",
        "ratio+from_json",
        "effects"
    );
    let mut profiles = Vec::new();
    for (label, items) in [
        ("order, 4 items (~4 KB)", 4usize),
        ("order, 200 items (~60 KB)", 200),
    ] {
        let doc = serde_json::json!({
            "event": "crm.order.changed",
            "now": "2024-05-01 10:00:00",
            "order": order(items),
            "changes": [{"id": 1, "createdAt": "2024-05-01 09:00:00", "created": true, "source": "user", "field": "status", "newValue": {"code": "new"}}],
            "statuses": ["new"],
            "created": true
        });
        let text = serde_json::to_string(&doc).expect("json");
        let world = world(items);
        let json: serde_json::Value = serde_json::from_str(&text).expect("parse");
        // As the daemon reads it: the text straight into engine values.
        let read: Value = serde_json::from_str(&text).expect("deser");
        let event = Event::from_document(&read).expect("event");
        let opts = || skladsync_engine::EvalOptions {
            settings: Some(&merged),
            ..Default::default()
        };
        let plan = match rules.evaluate_with(&event, &world, opts()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("evaluation failed: {e}");
                std::process::exit(1);
            }
        };
        // `SKLADSYNC_BENCH_PROFILE=N[:what[:runs]]`: only evaluate (`eval`), read into
        // engine values (`deser`; `deser-fresh` and `thread` for a first read, see below), parse (`parse`) or convert the parsed order (`conv`, the
        // old way) of N items, `runs` times or for the time budget (for a profiler;
        // `valgrind --tool=callgrind` counts each part exactly).
        if let Ok(spec) = std::env::var("SKLADSYNC_BENCH_PROFILE") {
            let mut parts = spec.split(':');
            if parts.next().and_then(|n| n.parse::<usize>().ok()) != Some(items) {
                continue;
            }
            let what = parts.next().unwrap_or("eval").to_owned();
            let runs: Option<u64> = parts.next().and_then(|r| r.parse().ok());
            let start = Instant::now();
            let mut done = 0u64;
            while runs.map_or(start.elapsed() < budget, |r| done < r) {
                match what.as_str() {
                    "conv" => drop(black_box(Value::from_json(&json))),
                    "parse" => drop(black_box(serde_json::from_str::<serde_json::Value>(&text))),
                    "deser" => drop(black_box(serde_json::from_str::<Value>(&text))),
                    // A first read on a thread (the shapes it learns are per thread): the
                    // text read on a new thread; `thread` is the new thread alone, so a
                    // first read costs `deser-fresh` − `thread`.
                    "deser-fresh" => std::thread::scope(|s| {
                        let read = s.spawn(|| serde_json::from_str::<Value>(&text).is_ok());
                        drop(black_box(read.join()))
                    }),
                    "thread" => std::thread::scope(|s| {
                        let none = s.spawn(|| black_box(text.len()) > 0);
                        drop(black_box(none.join()))
                    }),
                    _ => drop(black_box(
                        rules
                            .evaluate_with(&event, &world, opts())
                            .map(|p| p.effects.len()),
                    )),
                }
                done += 1;
            }
            println!("{what}: {done} runs");
            return;
        }
        let parse = measure(budget, || {
            serde_json::from_str::<serde_json::Value>(&text).map(|_| ())
        });
        // The old way to engine values: the parsed document converted (`Value::from_json`).
        let from_json = measure(budget, || Value::from_json(&json));
        // What the daemon does with the order it read: its text straight into engine values
        // (`Value`'s own `Deserialize`), no `serde_json::Value` in between. Its conversion,
        // beyond a parse, is deser − parse.
        let deser = measure(budget, || serde_json::from_str::<Value>(&text).map(|_| ()));
        let eval = measure(budget, || {
            rules
                .evaluate_with(&event, &world, opts())
                .map(|p| p.effects.len())
        });
        let (parse, deser, from_json, eval) = (
            parse.as_secs_f64(),
            deser.as_secs_f64(),
            from_json.as_secs_f64(),
            eval.as_secs_f64(),
        );
        let conv = deser - parse;
        println!(
            "{:<28}{:>8}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>8.2}{:>12.2}{:>14.1}{:>17.2}{:>9}",
            label,
            text.len(),
            parse * 1e6,
            deser * 1e6,
            conv * 1e6,
            eval * 1e6,
            eval / parse,
            (eval + conv) / parse,
            from_json * 1e6,
            (eval + from_json) / parse,
            plan.effects.len()
        );
        // Where the evaluation goes, rule by rule (a separate run: the clock read around
        // each rule is not in the figures above).
        let mut times = RuleTimes::default();
        let start = Instant::now();
        while start.elapsed() < budget / 3 || times.evaluations < 10 {
            let plan = rules.evaluate_with(
                &event,
                &world,
                skladsync_engine::EvalOptions {
                    settings: Some(&merged),
                    rule_times: Some(&mut times),
                    ..Default::default()
                },
            );
            black_box(plan.map(|p| p.effects.len()).ok());
        }
        profiles.push((label, times));
    }
    println!(
        "\nratio = evaluation / serde_json parse of the same document. The daemon reads API \
         answers straight into engine values (deser), so the conversion that counts is \
         conv = deser − parse (negative: cheaper than the parse alone), and \
         ratio+conv = (conv + evaluation) / parse (target ≤ 1.0). from_json is the old way \
         (parse, then Value::from_json): ratio+from_json = (from_json + evaluation) / parse."
    );
    println!("\nper rule: µs (steps) per evaluation, dearest first; the rest together");
    for (label, times) in &profiles {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / times.evaluations.max(1) as f64;
        let rules = times.by_time();
        let mut line: Vec<String> = rules
            .iter()
            .take(3)
            .map(|r| {
                format!(
                    "{} {:.1} ({})",
                    r.rule,
                    per(r.time),
                    r.steps / times.evaluations.max(1)
                )
            })
            .collect();
        let rest = rules.iter().skip(3);
        let (n, time) = rest.fold((0, Duration::ZERO), |(n, t), r| (n + 1, t + r.time));
        if n > 0 {
            line.push(format!("{n} other rules {:.1}", per(time)));
        }
        println!("  {label}: {}", line.join(", "));
    }
    stock_pass(&rules, &root, budget);
}

/// The recorded stock pass of `tests/fixtures/stock/` (10 000 report rows): how many upload
/// effects its plan has (target ≤ 40) and how long evaluating it takes (well under a second).
fn stock_pass(rules: &RuleSet, root: &std::path::Path, budget: Duration) {
    let dir = root.join("tests/fixtures/stock");
    let (Ok(event_text), Ok(world_text), Ok(settings_text)) = (
        std::fs::read_to_string(dir.join("event.json")),
        std::fs::read_to_string(dir.join("world.json")),
        std::fs::read_to_string(dir.join("settings.yaml")),
    ) else {
        println!("\nstock pass: tests/fixtures/stock/ not found (run its generate.py)");
        return;
    };
    let Ok(doc) = serde_json::from_str::<Value>(&event_text) else {
        println!("\nstock pass: event.json is not JSON");
        return;
    };
    let (Ok(event), Ok(world), Ok(fixture_settings)) = (
        Event::from_document(&doc),
        RecordedWorld::from_yaml(&world_text),
        serde_yaml::from_str::<Value>(&settings_text),
    ) else {
        println!("\nstock pass: the fixture does not read");
        return;
    };
    // The fixture's store mapping over the rules' own settings, so the fixture cannot go stale.
    let overlay = Value::from_pairs([(
        "mappings",
        Value::from_pairs([("stores", fixture_settings.get("mappings").get("stores"))]),
    )]);
    let settings = rules.settings_with(&overlay);
    let rows = doc.get("rows").as_array().map_or(0, <[Value]>::len);
    let run = || {
        rules.evaluate_with(
            &event,
            &world,
            skladsync_engine::EvalOptions {
                settings: Some(&settings),
                ..Default::default()
            },
        )
    };
    let plan = match run() {
        Ok(p) => p,
        Err(e) => {
            println!("\nstock pass: evaluation failed: {e}");
            return;
        }
    };
    let uploads = plan
        .effects
        .iter()
        .filter(|e| matches!(&e.action, skladsync_engine::Action::Update { entity, .. } if &**entity == "inventories"))
        .count();
    let eval = measure(budget, || run().map(|p| p.effects.len()));
    println!(
        "\nstock pass: {rows} report rows → {uploads} upload effects (target ≤ 40), {} effects in all; evaluated in {:.1} ms (target: well under 1 s)",
        plan.effects.len(),
        eval.as_secs_f64() * 1e3
    );
}
