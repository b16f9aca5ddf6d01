//! The ICML catalogue (CAT-02) from the МойСклад emulator's sample shop: it parses back, has
//! the structure the format gives, holds exactly the offers the order rules match (CAT-01),
//! and the daemon regenerates it on its schedule and serves it at its secret path, where the
//! retailCRM emulator loads it as a site's catalogue and orders placed with its offers reach
//! МойСклад with the right assortment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{json, Value};
use skladsync_runner::clients::moysklad::{Auth, ClientConfig, MoyskladClient};
use skladsync_runner::config::Config;
use skladsync_runner::daemon::Daemon;
use skladsync_runner::demo::lab::{Lab, LabOptions, MS_LOGIN, MS_PASSWORD};
use skladsync_runner::demo::{rules_dir, write_settings};
use skladsync_runner::icml::{generate, IcmlOptions};

/// A category or an offer as read back.
#[derive(Debug, Default, Clone)]
struct Element {
    attrs: BTreeMap<String, String>,
    text: String,
    children: Vec<(String, BTreeMap<String, String>, String)>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, t)| t.as_str())
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.children
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, t)| t.as_str())
            .collect()
    }
}

#[derive(Debug, Default)]
struct Catalogue {
    root_attrs: BTreeMap<String, String>,
    paths: BTreeSet<String>,
    shop_name: String,
    categories: Vec<Element>,
    offers: Vec<Element>,
}

fn attrs(e: &quick_xml::events::BytesStart<'_>) -> BTreeMap<String, String> {
    e.attributes()
        .map(|a| {
            let a = a.expect("attribute");
            (
                String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                a.unescape_value().expect("value").into_owned(),
            )
        })
        .collect()
}

/// Parses an ICML document strictly (any XML error fails the test).
fn parse(xml: &str) -> Catalogue {
    let mut r = Reader::from_str(xml);
    let mut cat = Catalogue::default();
    let mut path: Vec<String> = Vec::new();
    let mut cur: Option<Element> = None;
    let mut child: Option<(String, BTreeMap<String, String>)> = None;
    let mut text = String::new();
    loop {
        let ev = r.read_event().expect("well-formed XML");
        match ev {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if path.is_empty() {
                    assert_eq!(name, "yml_catalog", "root element");
                    cat.root_attrs = attrs(&e);
                }
                path.push(name.clone());
                cat.paths.insert(path.join("/"));
                match path.join("/").as_str() {
                    "yml_catalog/shop/categories/category" | "yml_catalog/shop/offers/offer" => {
                        cur = Some(Element {
                            attrs: attrs(&e),
                            ..Element::default()
                        });
                    }
                    _ if path.len() == 5 && path[3] == "offer" => {
                        child = Some((name, attrs(&e)));
                    }
                    _ => {}
                }
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().expect("text")),
            Event::GeneralRef(g) => {
                let n = g.decode().expect("ref");
                text.push_str(match n.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => panic!("unknown entity {other}"),
                });
            }
            Event::End(_) => {
                let p = path.join("/");
                match p.as_str() {
                    "yml_catalog/shop/name" => cat.shop_name = text.clone(),
                    "yml_catalog/shop/categories/category" => {
                        let mut c = cur.take().expect("category");
                        c.text = text.trim().to_string();
                        cat.categories.push(c);
                    }
                    "yml_catalog/shop/offers/offer" => cat.offers.push(cur.take().expect("offer")),
                    _ if path.len() == 5 && path[3] == "offer" => {
                        let (n, a) = child.take().expect("child");
                        cur.as_mut()
                            .expect("offer")
                            .children
                            .push((n, a, text.trim().to_string()));
                    }
                    _ => {}
                }
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(path.is_empty(), "unclosed elements");
    cat
}

/// Checks the structure the format gives (shared/api/retailcrm.md, ICML).
fn validate(cat: &Catalogue) {
    let date = cat.root_attrs.get("date").expect("yml_catalog@date");
    assert!(
        chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S").is_ok(),
        "date {date}"
    );
    for p in [
        "yml_catalog/shop",
        "yml_catalog/shop/name",
        "yml_catalog/shop/categories",
        "yml_catalog/shop/offers",
    ] {
        assert!(cat.paths.contains(p), "{p} missing");
    }
    let ids: BTreeSet<&str> = cat
        .categories
        .iter()
        .map(|c| c.attrs.get("id").expect("category@id").as_str())
        .collect();
    assert_eq!(ids.len(), cat.categories.len(), "category ids are unique");
    let mut before = BTreeSet::new();
    for c in &cat.categories {
        assert!(!c.text.is_empty(), "category name");
        if let Some(p) = c.attrs.get("parentId") {
            assert!(ids.contains(p.as_str()), "parentId {p} is a category");
            assert!(
                before.contains(p.as_str()),
                "parent {p} comes before its children"
            );
        }
        before.insert(c.attrs["id"].as_str());
    }
    let mut offer_ids = BTreeSet::new();
    for o in &cat.offers {
        let id = o.attrs.get("id").expect("offer@id");
        assert!(offer_ids.insert(id.clone()), "offer id {id} is unique");
        assert!(o.attrs.contains_key("productId"), "{id}: productId");
        assert!(
            matches!(
                o.attrs.get("type").map(String::as_str),
                Some("product" | "service")
            ),
            "{id}: type"
        );
        if let Some(q) = o.attrs.get("quantity") {
            let q: f64 = q.parse().expect("quantity is a number");
            assert!((0.0..=999_999.0).contains(&q));
        }
        assert_eq!(o.child("xmlId"), Some(id.as_str()), "{id}: xmlId = id");
        assert!(o.child("name").is_some_and(|n| !n.is_empty()), "{id}: name");
        let price = o.child("price").expect("price");
        let (whole, cents) = price.split_once('.').expect("price has cents");
        assert!(
            whole.chars().all(|c| c.is_ascii_digit()) && cents.len() == 2,
            "{id}: price {price}"
        );
        let category = o.child("categoryId").expect("categoryId");
        assert!(ids.contains(category), "{id}: category {category} exists");
        assert!(matches!(o.child("productActivity"), Some("Y" | "N")));
    }
}

fn meta(lab: &Lab, ty: &str, id: &str) -> Value {
    json!({"meta": {"href": format!("{}/entity/{ty}/{id}", lab.ms.base_url()), "type": ty, "mediaType": "application/json"}})
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// Adds folders, barcodes, weights, dimensions and goods that must stay out of the
/// catalogue to the sample shop.
fn enrich(lab: &Lab) {
    let ms = &lab.ms;
    let furniture = ms
        .seed(
            "productfolder",
            json!({"name": "Мебель", "externalCode": "furniture"}),
        )
        .expect("folder");
    let chairs = ms
        .seed(
            "productfolder",
            json!({"name": "Стулья & табуреты", "externalCode": "chairs",
                   "productFolder": meta(lab, "productfolder", &id(&furniture))}),
        )
        .expect("folder");
    let hidden = ms
        .seed(
            "productfolder",
            json!({"name": "Служебное", "externalCode": "hidden"}),
        )
        .expect("folder");
    let hidden_sub = ms
        .seed(
            "productfolder",
            json!({"name": "Образцы", "externalCode": "samples",
                   "productFolder": meta(lab, "productfolder", &id(&hidden))}),
        )
        .expect("folder");
    let dims = ms
        .seed_attribute("product", json!({"name": "Габариты", "type": "string"}))
        .expect("attribute");
    let dims_meta = json!({"href": format!("{}/entity/product/metadata/attributes/{}", ms.base_url(), id(&dims)),
                           "type": "attributemetadata", "mediaType": "application/json"});
    let a = &lab.shop.assortment;
    ms.update(
        "product",
        &a["chair01"],
        json!({"productFolder": meta(lab, "productfolder", &id(&chairs))}),
    )
    .expect("chair");
    ms.update(
        "product",
        &a["table-oak"],
        json!({"productFolder": meta(lab, "productfolder", &id(&furniture)),
               "barcodes": [{"ean13": "4600000000017"}], "weight": 12.5,
               "attributes": [{"meta": dims_meta, "value": "120x80x75"}]}),
    )
    .expect("table");
    // Left out: a product in a sub-folder of an ignored folder, an archived product, and a
    // product whose code the order rules would split at `#`.
    ms.seed(
        "product",
        json!({"name": "Образец ткани", "externalCode": "sample-1",
               "productFolder": meta(lab, "productfolder", &id(&hidden_sub))}),
    )
    .expect("sample");
    ms.seed(
        "product",
        json!({"name": "Диван старый", "externalCode": "sofa-old", "archived": true}),
    )
    .expect("sofa");
    ms.seed(
        "product",
        json!({"name": "Полка", "externalCode": "shelf#2"}),
    )
    .expect("shelf");
}

fn client(lab: &Lab) -> MoyskladClient {
    MoyskladClient::new(
        ClientConfig::new(Auth::basic(MS_LOGIN, MS_PASSWORD)).base_url(lab.ms.base_url()),
    )
    .expect("client")
}

fn quiet_lab() -> LabOptions {
    LabOptions {
        crm_rate: None,
        ms_limits: false,
        seed: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_02_the_catalogue_of_the_sample_shop_parses_back_and_holds_what_orders_match() {
    let lab = Lab::start(quiet_lab()).await.expect("lab");
    enrich(&lab);
    // A second item with a code already used: the rules would match only one of them.
    lab.ms
        .seed(
            "product",
            json!({"name": "Торшер (копия)", "externalCode": "lamp-arc"}),
        )
        .expect("duplicate");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.xml");
    std::fs::write(&path, "previous").expect("previous");
    let opts = IcmlOptions {
        shop_name: "Мебель у дома".into(),
        ignore_categories: vec!["hidden".into()],
        dimension_attributes: vec!["Габариты".into()],
        purchase_price: true,
        ..IcmlOptions::default()
    };
    let stats = generate(&client(&lab), &opts, &path)
        .await
        .expect("generate");
    let xml = std::fs::read_to_string(&path).expect("read");
    let cat = parse(&xml);
    validate(&cat);
    assert_eq!(cat.shop_name, "Мебель у дома");
    // Nothing but the catalogue is left in the directory (the temporary file was renamed).
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);

    // Exactly the assortment the order rules match: products without variants by their
    // code, variants as product#variant, the service; not the product that has variants,
    // nor what is archived, ignored, or has a code the rules split.
    let got: BTreeSet<&str> = cat.offers.iter().map(|o| o.attrs["id"].as_str()).collect();
    // (`chair01` has variants: its variants are the offers.)
    let want: BTreeSet<&str> = lab
        .shop
        .assortment
        .keys()
        .map(String::as_str)
        .filter(|x| *x != "chair01")
        .collect();
    assert_eq!(got, want);
    assert_eq!(stats.offers, 5);
    assert_eq!(stats.skipped.get("ignored category"), Some(&1));
    assert_eq!(stats.skipped.get("code the rules cannot match"), Some(&1));
    assert_eq!(stats.skipped.get("duplicate code"), Some(&1));
    assert_eq!(stats.unmatchable, ["shelf#2", "lamp-arc"]);

    // Categories: the folders (not the ignored ones, nor what is under them) and the root.
    let cats: BTreeMap<&str, (&str, Option<&str>)> = cat
        .categories
        .iter()
        .map(|c| {
            (
                c.attrs["id"].as_str(),
                (c.text.as_str(), c.attrs.get("parentId").map(String::as_str)),
            )
        })
        .collect();
    assert_eq!(
        cats,
        BTreeMap::from([
            ("chairs", ("Стулья & табуреты", Some("furniture"))),
            ("furniture", ("Мебель", None)),
            ("warehouseRoot", ("Без группы", None)),
        ])
    );

    let offer = |x: &str| {
        cat.offers
            .iter()
            .find(|o| o.attrs["id"] == x)
            .unwrap_or_else(|| panic!("{x}"))
    };
    let red = offer("chair01#red");
    assert_eq!(red.attrs["productId"], "chair01");
    assert_eq!(red.attrs["quantity"], "18"); // 15 + 3 on the two stores
    assert_eq!(red.child("categoryId"), Some("chairs")); // the product's folder
    assert_eq!(red.child("price"), Some("4990.00"));
    assert_eq!(red.child("productName"), Some("Стул Венский"));
    assert_eq!(red.child("vatRate"), Some("20")); // the product's VAT
    assert!(red.children.iter().any(|(n, a, t)| n == "param"
        && a.get("name").map(String::as_str) == Some("Цвет")
        && t == "красный"));
    let table = offer("table-oak");
    assert_eq!(table.attrs["quantity"], "5");
    assert_eq!(table.child("categoryId"), Some("furniture"));
    assert_eq!(table.child("price"), Some("25900.00"));
    assert_eq!(table.child("purchasePrice"), Some("14000.00"));
    assert_eq!(table.all("barcode"), ["4600000000017"]);
    assert_eq!(table.child("weight"), Some("12.500"));
    assert_eq!(table.child("dimensions"), Some("120/80/75"));
    assert!(table
        .child("url")
        .is_some_and(|u| u.contains(&lab.shop.assortment["table-oak"])));
    assert_eq!(offer("lamp-arc").child("categoryId"), Some("warehouseRoot"));
    assert_eq!(offer("lamp-arc").child("name"), Some("Торшер дуговой"));
    let assembly = offer("assembly");
    assert_eq!(assembly.attrs["type"], "service");
    assert!(!assembly.attrs.contains_key("quantity"));

    // Options: skip goods outside any folder, include the archived, price by type.
    let opts = IcmlOptions {
        skip_without_category: true,
        include_archived: true,
        ..IcmlOptions::default()
    };
    let stats = generate(&client(&lab), &opts, &path)
        .await
        .expect("generate");
    let cat = parse(&std::fs::read_to_string(&path).expect("read"));
    validate(&cat);
    let got: BTreeSet<&str> = cat.offers.iter().map(|o| o.attrs["id"].as_str()).collect();
    assert_eq!(
        got,
        BTreeSet::from(["chair01#red", "chair01#blue", "table-oak", "sample-1"])
    );
    assert!(!cat
        .categories
        .iter()
        .any(|c| c.attrs["id"] == "warehouseRoot"));
    assert_eq!(stats.skipped.get("no category"), Some(&4)); // lamp, its copy, assembly, sofa
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_02_a_failed_generation_keeps_the_previous_catalogue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("catalog.xml");
    std::fs::write(&path, "previous").expect("previous");
    // Nothing listens there: the generation fails before anything is renamed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/api/remap/1.2",
        listener.local_addr().expect("addr")
    );
    drop(listener);
    let ms = MoyskladClient::new(
        ClientConfig::new(Auth::bearer("t"))
            .base_url(url)
            .timeout(Duration::from_secs(2))
            .retry(skladsync_runner::clients::moysklad::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            }),
    )
    .expect("client");
    assert!(generate(&ms, &IcmlOptions::default(), &path).await.is_err());
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "previous");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

const SECRET: &str = "icml-test-secret-0123456789";

async fn fetch(addr: std::net::SocketAddr, secret: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}/icml/{secret}"))
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// Polls until `f` holds (at most 60 s: the client keeps to the 2026 budget of 4 units a request).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_02_the_daemon_serves_the_catalogue_the_crm_loads_and_orders_match() {
    let lab = Lab::start(quiet_lab()).await.expect("lab");
    enrich(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir(Path::new("rules"));
    let settings = dir.path().join("settings.yaml");
    write_settings(&rules, None, &lab, &settings).expect("settings");
    let catalogue = dir.path().join("catalog.xml");
    let config = dir.path().join("skladsync.yaml");
    let yaml = format!(
        "{}icml:\n  enabled: true\n  path: {}\n  every: 10s\n  secret: {SECRET}\n  shop_name: Мебель у дома\n  ignore_categories: [hidden]\n",
        lab.config_yaml(
            &rules,
            &settings,
            &dir.path().join("state"),
            "{crm_poll: 1s, reconcile: 10s, stock: 1h, purchase_prices: 1h, retry_min: 50ms, retry_max: 500ms}",
            100,
        ),
        serde_json::to_string(&catalogue.display().to_string()).expect("path"),
    );
    std::fs::write(&config, yaml).expect("config");
    let daemon = Daemon::new(Config::load(&config).expect("config"))
        .await
        .expect("daemon");
    let addr = daemon.receiver_addr().expect("listener");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.clone().run(async {
        let _ = stop_rx.await;
    }));

    // Generated on the schedule and served at the secret path; nothing elsewhere.
    eventually("the catalogue is served", || async {
        fetch(addr, SECRET).await.0 == 200
    })
    .await;
    assert_eq!(fetch(addr, "icml-wrong-secret-0123456789").await.0, 404);
    let (_, body) = fetch(addr, SECRET).await;
    let cat = parse(&body);
    validate(&cat);
    assert!(!body.contains("lamp-new"));

    // Regenerated on the schedule: a product added in МойСклад appears.
    lab.ms
        .seed(
            "product",
            json!({"name": "Торшер новый", "externalCode": "lamp-new"}),
        )
        .expect("new product");
    eventually("the new product is in the served catalogue", || async {
        fetch(addr, SECRET).await.1.contains("lamp-new")
    })
    .await;
    let (_, body) = fetch(addr, SECRET).await;
    let cat = parse(&body);
    validate(&cat);

    // The CRM loads it as the site's catalogue.
    let load = lab.crm.load_icml("shop-main", &body).expect("load");
    assert_eq!(load.created + load.updated, cat.offers.len());
    let crm_offers: Vec<_> = lab
        .crm
        .offers()
        .into_iter()
        .filter(|o| o.site == "shop-main" && o.active)
        .collect();
    let crm_ids: BTreeSet<String> = crm_offers
        .iter()
        .filter_map(|o| o.external_id.clone())
        .collect();
    let icml_ids: BTreeSet<String> = cat.offers.iter().map(|o| o.attrs["id"].clone()).collect();
    assert_eq!(crm_ids, icml_ids);
    assert_eq!(
        lab.crm
            .offer_by_xml_id("assembly")
            .expect("service")
            .product["type"],
        "service"
    );

    // An order with every goods offer of the catalogue (services block an upload,
    // ORD-SVC-01) reaches МойСклад with exactly the matching assortment.
    let goods: Vec<&str> = cat
        .offers
        .iter()
        .filter(|o| o.attrs["type"] == "product")
        .map(|o| o.attrs["id"].as_str())
        .collect();
    let items: Vec<Value> = goods
        .iter()
        .map(|x| json!({"offer": {"externalId": x}, "quantity": 1}))
        .collect();
    lab.crm
        .as_manager(12)
        .create_order(json!({
            "externalId": "ICML-1", "number": "ICML-1", "site": "shop-main", "status": "new",
            "customer": {"externalId": "cp-8812"}, "firstName": "Иван", "lastName": "Петров",
            "shipmentStore": "main", "items": items
        }))
        .expect("order");
    let mut positions = BTreeSet::new();
    eventually("the order is in МойСклад", || {
        let found = lab
            .ms
            .list("customerorder")
            .into_iter()
            .find(|o| o["name"] == "ICML-1");
        if let Some(o) = found {
            positions = o["positions"]
                .as_array()
                .or_else(|| o["positions"]["rows"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|p| p["assortment"]["meta"]["href"].as_str())
                .filter_map(|h| h.rsplit('/').next())
                .map(str::to_string)
                .collect();
        }
        let done = !positions.is_empty();
        async move { done }
    })
    .await;
    let lamp_new = lab
        .ms
        .list("product")
        .into_iter()
        .find(|p| p["externalCode"] == "lamp-new")
        .map(|p| id(&p))
        .expect("lamp-new");
    let want: BTreeSet<String> = goods
        .iter()
        .map(|x| {
            lab.shop
                .assortment
                .get(*x)
                .cloned()
                .unwrap_or_else(|| lamp_new.clone())
        })
        .collect();
    assert_eq!(positions, want);

    let _ = stop_tx.send(());
    running.await.expect("join").expect("daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_02_the_command_writes_the_catalogue_and_documents_its_options() {
    let bin = env!("CARGO_BIN_EXE_skladsync");
    let help = tokio::process::Command::new(bin)
        .args(["icml", "--help"])
        .output()
        .await
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config",
        "--out",
        "--price-type",
        "--include-archived",
        "--ignore-category",
        "--skip-without-category",
        "--stock",
        "--url-template",
        "--picture-attribute",
        "--dimension-attribute",
    ] {
        assert!(help.contains(flag), "{flag} in:\n{help}");
    }

    let lab = Lab::start(quiet_lab()).await.expect("lab");
    enrich(&lab);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("skladsync.yaml");
    std::fs::write(
        &config,
        format!(
            "{}icml:\n  shop_name: Мебель у дома\n  ignore_categories: [hidden]\n",
            lab.config_yaml(
                &rules_dir(Path::new("rules")),
                &dir.path().join("settings.yaml"),
                &dir.path().join("state"),
                "{}",
                100,
            )
        ),
    )
    .expect("config");
    let out = dir.path().join("out.xml");
    let run = tokio::process::Command::new(bin)
        .arg("icml")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args(["--skip-without-category", "--stock", "free_stock"])
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("3 offers (0 services)"), "{stdout}");
    assert!(stdout.contains("shelf#2"), "{stdout}");
    let cat = parse(&std::fs::read_to_string(&out).expect("catalogue"));
    validate(&cat);
    assert_eq!(cat.shop_name, "Мебель у дома");
    let got: BTreeSet<&str> = cat.offers.iter().map(|o| o.attrs["id"].as_str()).collect();
    assert_eq!(
        got,
        BTreeSet::from(["chair01#red", "chair01#blue", "table-oak"])
    );

    // A bad option is refused and nothing is written.
    let bad = tokio::process::Command::new(bin)
        .arg("icml")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("bad.xml"))
        .args(["--stock", "plenty"])
        .output()
        .await
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--stock"));
    assert!(!dir.path().join("bad.xml").exists());
}
