//! The sample shop on both sides, coherent: the retailCRM emulator's sample shop (two sites,
//! two warehouses, statuses, a catalogue with variants, individual and corporate customers,
//! orders in several statuses with payments) and the same shop in МойСклад (the
//! organization, the two warehouses, order states, the catalogue with the same external codes
//! — `chair01#red` is product `chair01`, variant `red` — opening stock with unit costs, the
//! managers as employees, one customer already known as a counterparty).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use skladsync_emulators::moysklad::{EmulatorError as MsEmulatorError, MoyskladEmulator};
use skladsync_emulators::retailcrm::{
    sample_shop, EmulatorError as CrmEmulatorError, RetailcrmEmulator, SeedReport,
};

/// Seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The retailCRM emulator refused.
    #[error("retailCRM emulator: {0}")]
    Crm(#[from] CrmEmulatorError),
    /// The МойСклад emulator refused.
    #[error("МойСклад emulator: {0}")]
    Moysklad(#[from] MsEmulatorError),
    /// The sample data did not parse.
    #[error("sample shop: {0}")]
    Data(#[from] serde_json::Error),
    /// Something expected was not created.
    #[error("sample shop: {0}")]
    Missing(String),
}

/// Ids of the МойСклад side of the sample shop.
#[derive(Clone, Debug, Default)]
pub struct MsShop {
    /// The organization.
    pub organization: String,
    /// Its bank account.
    pub account: String,
    /// МойСклад store id by CRM store code.
    pub stores: BTreeMap<String, String>,
    /// customerorder state id by CRM status code.
    pub states: BTreeMap<String, String>,
    /// customerorder state name by id.
    pub state_names: BTreeMap<String, String>,
    /// Product / variant / service id by CRM offer xmlId.
    pub assortment: BTreeMap<String, String>,
    /// Employee id by e-mail.
    pub employees: BTreeMap<String, String>,
    /// The counterparty that exists before the first sync.
    pub known_counterparty: String,
}

impl MsShop {
    /// Placeholders for settings templates: `org`, `account`, `store.<code>`,
    /// `state.<status>`, `employee.<email>`.
    pub fn placeholders(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        p.insert("org".to_string(), self.organization.clone());
        p.insert("account".to_string(), self.account.clone());
        for (k, v) in &self.stores {
            p.insert(format!("store.{k}"), v.clone());
        }
        for (k, v) in &self.states {
            p.insert(format!("state.{k}"), v.clone());
        }
        for (k, v) in &self.employees {
            p.insert(format!("employee.{k}"), v.clone());
        }
        p
    }
}

/// Fills `{{name}}` placeholders.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

/// Seeds the retailCRM side (the emulator's sample shop).
pub fn seed_crm(crm: &RetailcrmEmulator) -> Result<SeedReport, SeedError> {
    Ok(crm.seed(&sample_shop()?)?)
}

fn id(v: &Value) -> Result<String, SeedError> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| SeedError::Missing(format!("no id in {v}")))
}

/// Seeds the МойСклад side.
pub fn seed_ms(ms: &MoyskladEmulator) -> Result<MsShop, SeedError> {
    let mut shop = MsShop::default();
    let meta = |ty: &str, id: &str| json!({"meta": {"href": format!("{}/entity/{ty}/{id}", ms.base_url()), "type": ty, "mediaType": "application/json"}});
    let org = ms.seed(
        "organization",
        json!({
            "name": "ООО «Мебель у дома»", "companyType": "legal", "inn": "7701000001",
            "kpp": "770101001", "externalCode": "org-mebel",
            "legalTitle": "Общество с ограниченной ответственностью «Мебель у дома»",
            "accounts": [{"accountNumber": "40702810900000000101", "bankName": "АО «Банк»",
                          "bic": "044525000", "correspondentAccount": "30101810400000000225",
                          "isDefault": true}]
        }),
    )?;
    shop.organization = id(&org)?;
    shop.account = org
        .pointer("/accounts/rows/0")
        .map(id)
        .transpose()?
        .unwrap_or_default();
    for (code, name) in [
        ("main", "Основной склад"),
        ("shop-retail", "Магазин на Тверской"),
    ] {
        let s = ms.seed("store", json!({"name": name, "externalCode": code}))?;
        shop.stores.insert(code.to_string(), id(&s)?);
    }
    for (status, name, kind) in [
        ("new", "Новый", "Regular"),
        ("client-confirmed", "Согласован", "Regular"),
        ("prepayed", "Предоплата", "Regular"),
        ("assembling", "Комплектуется", "Regular"),
        ("send-to-delivery", "Передан в доставку", "Regular"),
        ("complete", "Выполнен", "Successful"),
        ("cancel-other", "Отменён", "Unsuccessful"),
    ] {
        let s = ms.seed_state("customerorder", name, kind)?;
        shop.states.insert(status.to_string(), id(&s)?);
        shop.state_names.insert(id(&s)?, name.to_string());
    }
    let currency = ms
        .list("currency")
        .first()
        .map(id)
        .transpose()?
        .unwrap_or_default();
    let price = |kopecks: i64| json!([{"value": kopecks, "currency": meta("currency", &currency), "priceType": {"name": "Цена продажи"}}]);
    // A custom field, as real catalogues have: the products carry `attributes`.
    let material = ms.seed_attribute(
        "product",
        json!({"name": "Материал", "type": "string", "required": false}),
    )?;
    let mut products = BTreeMap::new();
    for (code, name, sale, buy, made_of) in [
        ("chair01", "Стул Венский", 499_000, 250_000, "бук"),
        (
            "table-oak",
            "Стол дубовый 120x80",
            2_590_000,
            1_400_000,
            "дуб",
        ),
        ("lamp-arc", "Торшер дуговой", 749_000, 390_000, "металл"),
    ] {
        let p = ms.seed(
            "product",
            json!({"name": name, "externalCode": code, "code": code, "article": code.to_uppercase(),
                   "salePrices": price(sale), "buyPrice": {"value": buy, "currency": meta("currency", &currency)},
                   "vat": 20, "vatEnabled": true,
                   "attributes": [{"meta": material["meta"], "value": made_of}]}),
        )?;
        let pid = id(&p)?;
        products.insert(code, pid.clone());
        shop.assortment.insert(code.to_string(), pid);
    }
    let chair = products.get("chair01").cloned().unwrap_or_default();
    for (code, colour) in [("red", "красный"), ("blue", "синий")] {
        let v = ms.seed(
            "variant",
            json!({"product": meta("product", &chair), "externalCode": code, "code": format!("chair01-{code}"),
                   "characteristics": [{"name": "Цвет", "value": colour}], "salePrices": price(499_000)}),
        )?;
        shop.assortment.insert(format!("chair01#{code}"), id(&v)?);
    }
    let service = ms.seed(
        "service",
        json!({"name": "Сборка мебели", "externalCode": "assembly", "code": "assembly", "salePrices": price(150_000)}),
    )?;
    shop.assortment
        .insert("assembly".to_string(), id(&service)?);
    let main = shop.stores.get("main").cloned().unwrap_or_default();
    let retail = shop.stores.get("shop-retail").cloned().unwrap_or_default();
    for (xml, store, qty, cost) in [
        ("chair01#red", &main, 15.0, 250_000.0),
        ("chair01#red", &retail, 3.0, 250_000.0),
        ("chair01#blue", &main, 6.0, 250_000.0),
        ("table-oak", &main, 4.0, 1_400_000.0),
        ("table-oak", &retail, 1.0, 1_400_000.0),
        ("lamp-arc", &main, 5.0, 390_000.0),
    ] {
        let item = shop
            .assortment
            .get(xml)
            .cloned()
            .ok_or_else(|| SeedError::Missing(xml.to_string()))?;
        ms.seed_stock(store, &item, qty, cost)?;
    }
    for (last, first, email) in [
        ("Смирнова", "Ирина", "irina@mebel.example.ru"),
        ("Волков", "Пётр", "petr@mebel.example.ru"),
    ] {
        let e = ms.seed(
            "employee",
            json!({"lastName": last, "firstName": first, "email": email, "externalCode": email}),
        )?;
        shop.employees.insert(email.to_string(), id(&e)?);
    }
    let known = ms.seed(
        "counterparty",
        json!({"name": "Петров Иван", "companyType": "individual", "phone": "+79001234567",
               "email": "ivan.petrov@example.ru", "externalCode": "shop-client-1"}),
    )?;
    shop.known_counterparty = id(&known)?;
    Ok(shop)
}
