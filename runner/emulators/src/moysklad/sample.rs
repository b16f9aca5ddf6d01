//! A small sample shop for the demo and integration tests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{EmulatorError, MoyskladEmulator};

/// Ids of what [`MoyskladEmulator::seed_sample_shop`] created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleShop {
    /// The organization (юрлицо).
    pub organization: String,
    /// Its bank accounts: (accountNumber, id).
    pub organization_accounts: Vec<(String, String)>,
    /// Stores by name.
    pub stores: BTreeMap<String, String>,
    /// Customer-order states by name.
    pub order_states: BTreeMap<String, String>,
    /// Products by externalCode.
    pub products: BTreeMap<String, String>,
    /// Variants by `productExternalCode#variantExternalCode`.
    pub variants: BTreeMap<String, String>,
    /// Services by externalCode.
    pub services: BTreeMap<String, String>,
    /// Employees by e-mail.
    pub employees: BTreeMap<String, String>,
    /// Counterparties by externalCode.
    pub counterparties: BTreeMap<String, String>,
    /// Custom fields of customerorder by name.
    pub order_attributes: BTreeMap<String, String>,
    /// The delivery-methods dictionary id.
    pub delivery_dictionary: String,
    /// Its elements by code.
    pub delivery_methods: BTreeMap<String, String>,
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

fn r(ms: &MoyskladEmulator, ty: &str, id: &str) -> Value {
    json!({"meta": {"href": format!("{}/entity/{ty}/{id}", ms.base_url()), "type": ty, "mediaType": "application/json"}})
}

pub(super) fn seed(ms: &MoyskladEmulator) -> Result<SampleShop, EmulatorError> {
    let mut shop = SampleShop::default();
    let org = ms.seed(
        "organization",
        json!({
            "name": "ООО «Пример»", "companyType": "legal", "inn": "7700000001", "kpp": "770001001",
            "legalTitle": "Общество с ограниченной ответственностью «Пример»",
            "externalCode": "org-main",
            "accounts": [
                {"accountNumber": "40702810900000000001", "bankName": "АО «Банк»", "bic": "044525000",
                 "correspondentAccount": "30101810400000000225", "isDefault": true},
                {"accountNumber": "40702810900000000002", "bankName": "ПАО «Другой банк»", "bic": "044525001",
                 "correspondentAccount": "30101810400000000226", "isDefault": false}
            ]
        }),
    )?;
    shop.organization = id(&org);
    for a in org["accounts"]["rows"].as_array().into_iter().flatten() {
        shop.organization_accounts.push((
            a["accountNumber"].as_str().unwrap_or_default().to_string(),
            id(a),
        ));
    }
    for (name, code) in [
        ("Основной склад", "store-main"),
        ("Склад у метро", "store-metro"),
    ] {
        let s = ms.seed("store", json!({"name": name, "externalCode": code}))?;
        shop.stores.insert(name.to_string(), id(&s));
    }
    for (name, ty) in [
        ("Новый", "Regular"),
        ("Подтвержден", "Regular"),
        ("Собран", "Regular"),
        ("Отгружен", "Successful"),
        ("Отменен", "Unsuccessful"),
    ] {
        let s = ms.seed_state("customerorder", name, ty)?;
        shop.order_states.insert(name.to_string(), id(&s));
    }
    let dict = ms.seed_dictionary("Способы доставки")?;
    shop.delivery_dictionary = id(&dict);
    for (name, code) in [("Курьер", "courier"), ("Самовывоз", "self-delivery")] {
        let e = ms.seed_dictionary_element(
            &shop.delivery_dictionary,
            json!({"name": name, "code": code, "externalCode": format!("rcrm-delivery-{code}")}),
        )?;
        shop.delivery_methods.insert(code.to_string(), id(&e));
    }
    let delivery_attr = ms.seed_attribute(
        "customerorder",
        json!({"name": "Способ доставки", "type": "customentity",
               "customEntityMeta": dict["meta"]}),
    )?;
    shop.order_attributes
        .insert("Способ доставки".into(), id(&delivery_attr));
    let crm_attr = ms.seed_attribute(
        "customerorder",
        json!({"name": "Номер заказа в retailCRM", "type": "string"}),
    )?;
    shop.order_attributes
        .insert("Номер заказа в retailCRM".into(), id(&crm_attr));
    let currency = ms.list("currency").first().map(id).unwrap_or_default();
    let price = |kopecks: f64| {
        json!([{"value": kopecks, "currency": r(ms, "currency", &currency),
                "priceType": {"name": "Цена продажи"}}])
    };
    for (code, name, sale, buy) in [
        ("tshirt-basic", "Футболка базовая", 149_900.0, 60_000.0),
        ("mug-white", "Кружка белая", 49_900.0, 15_000.0),
        ("hoodie", "Толстовка", 399_000.0, 180_000.0),
    ] {
        let p = ms.seed(
            "product",
            json!({"name": name, "externalCode": code, "code": code, "article": code.to_uppercase(),
                   "salePrices": price(sale), "buyPrice": {"value": buy, "currency": r(ms, "currency", &currency)},
                   "vat": 20, "vatEnabled": true}),
        )?;
        shop.products.insert(code.to_string(), id(&p));
    }
    let hoodie = shop.products.get("hoodie").cloned().unwrap_or_default();
    for size in ["S", "M", "L"] {
        let code = format!("hoodie-{}", size.to_lowercase());
        let v = ms.seed(
            "variant",
            json!({"product": r(ms, "product", &hoodie), "externalCode": code, "code": code,
                   "characteristics": [{"name": "Размер", "value": size}],
                   "salePrices": price(399_000.0)}),
        )?;
        shop.variants.insert(format!("hoodie#{code}"), id(&v));
    }
    for (code, name, sale) in [
        ("delivery-courier", "Доставка курьером", 30_000.0),
        ("gift-wrap", "Подарочная упаковка", 10_000.0),
    ] {
        let s = ms.seed(
            "service",
            json!({"name": name, "externalCode": code, "code": code, "salePrices": price(sale)}),
        )?;
        shop.services.insert(code.to_string(), id(&s));
    }
    for (last, first, email) in [
        ("Иванов", "Иван", "ivanov@shop.example"),
        ("Петрова", "Анна", "petrova@shop.example"),
    ] {
        let e = ms.seed(
            "employee",
            json!({"lastName": last, "firstName": first, "email": email, "externalCode": email}),
        )?;
        shop.employees.insert(email.to_string(), id(&e));
    }
    for body in [
        json!({"name": "Смирнов Алексей", "companyType": "individual", "phone": "+79990000001",
               "email": "smirnov@mail.example", "externalCode": "rcrm-customer-1"}),
        json!({"name": "ООО «Ромашка»", "companyType": "legal", "inn": "7701234567", "kpp": "770101001",
               "phone": "+74950000002", "email": "info@romashka.example", "externalCode": "rcrm-corp-1",
               "accounts": [{"accountNumber": "40702810000000000077", "bankName": "АО «Банк»", "bic": "044525000", "isDefault": true}],
               "contactpersons": [{"name": "Иванова Мария", "phone": "+79990000003", "email": "maria@romashka.example"}]}),
    ] {
        let code = body["externalCode"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let c = ms.seed("counterparty", body)?;
        shop.counterparties.insert(code, id(&c));
    }
    // Opening stock on both stores, with unit costs.
    let main = shop
        .stores
        .get("Основной склад")
        .cloned()
        .unwrap_or_default();
    let metro = shop
        .stores
        .get("Склад у метро")
        .cloned()
        .unwrap_or_default();
    for (code, qty_main, qty_metro, cost) in [
        ("tshirt-basic", 40.0, 10.0, 60_000.0),
        ("mug-white", 100.0, 0.0, 15_000.0),
    ] {
        let pid = shop.products.get(code).cloned().unwrap_or_default();
        ms.seed_stock(&main, &pid, qty_main, cost)?;
        if qty_metro > 0.0 {
            ms.seed_stock(&metro, &pid, qty_metro, cost)?;
        }
    }
    for (key, qty) in [
        ("hoodie#hoodie-s", 5.0),
        ("hoodie#hoodie-m", 8.0),
        ("hoodie#hoodie-l", 2.0),
    ] {
        let vid = shop.variants.get(key).cloned().unwrap_or_default();
        ms.seed_stock(&main, &vid, qty, 180_000.0)?;
    }
    Ok(shop)
}
