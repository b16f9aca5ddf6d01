//! Ready requests a newcomer can send to the emulators by hand (what `skladsync emulate`
//! prints as `curl` lines): in retailCRM with the manager's key — whose changes the daemon
//! takes for someone else's, not its own echo — and in МойСклад as a manager (a user of
//! its own, with its own request budget).

use serde_json::{json, Value};

use super::lab::{Lab, CRM_MANAGER_KEY, MS_MANAGER_LOGIN, MS_MANAGER_PASSWORD};

/// The shell variable the shipping example fills with the МойСклад href of order A-1001.
pub const ORDER_HREF_VAR: &str = "$ORDER";

/// A request body.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// retailCRM: `application/x-www-form-urlencoded` fields (JSON values as text).
    Form(Vec<(String, String)>),
    /// МойСклад: a JSON object.
    Json(Value),
}

/// One ready request.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// What it does.
    pub title: String,
    /// `POST`, `PUT`…
    pub method: &'static str,
    /// The full URL.
    pub url: String,
    /// For retailCRM: the `X-API-KEY`; for МойСклад the manager's Basic credentials are used.
    pub crm_key: Option<&'static str>,
    /// The body.
    pub body: Body,
    /// Shell lines to run first (they set variables the body uses).
    pub before: Vec<String>,
}

impl Example {
    /// The request as a `curl` command line (after its `before` lines).
    pub fn curl(&self) -> String {
        let mut out = String::new();
        for line in &self.before {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("curl -s -X {} '{}'", self.method, self.url));
        match (&self.body, self.crm_key) {
            (Body::Form(fields), Some(key)) => {
                out.push_str(&format!(" -H 'X-API-KEY: {key}'"));
                for (k, v) in fields {
                    out.push_str(&format!(
                        " --data-urlencode {}",
                        shell_quote(&format!("{k}={v}"))
                    ));
                }
            }
            (Body::Json(v), _) => {
                out.push_str(&format!(
                    " --compressed -u '{MS_MANAGER_LOGIN}:{MS_MANAGER_PASSWORD}' -H 'Content-Type: application/json' -d {}",
                    shell_quote_json(&v.to_string())
                ));
            }
            (Body::Form(fields), None) => {
                for (k, v) in fields {
                    out.push_str(&format!(
                        " --data-urlencode {}",
                        shell_quote(&format!("{k}={v}"))
                    ));
                }
            }
        }
        out
    }
}

/// Single-quotes a shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Single-quotes JSON but lets [`ORDER_HREF_VAR`] expand (double-quoted in place).
fn shell_quote_json(s: &str) -> String {
    shell_quote(s).replace(ORDER_HREF_VAR, &format!("'\"{ORDER_HREF_VAR}\"'"))
}

fn meta(lab: &Lab, ty: &str, id: &str) -> Value {
    json!({"meta": {"href": format!("{}/entity/{ty}/{id}", lab.ms.base_url()), "type": ty, "mediaType": "application/json"}})
}

/// The examples for this lab (its URLs and the sample shop's ids).
pub fn examples(lab: &Lab) -> Vec<Example> {
    let crm = lab.crm.base_url();
    let crm = crm.trim_end_matches('/');
    let ms = lab.ms.base_url();
    let shop = &lab.shop;
    let id = |map: &std::collections::BTreeMap<String, String>, k: &str| {
        map.get(k).cloned().unwrap_or_default()
    };
    let form = |pairs: &[(&str, Value)]| {
        Body::Form(
            pairs
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.to_string(), text)
                })
                .collect(),
        )
    };
    vec![
        Example {
            title: "retailCRM, as a manager: take an order (M-1, an oak table, pickup)".into(),
            method: "POST",
            url: format!("{crm}/api/v5/orders/create"),
            crm_key: Some(CRM_MANAGER_KEY),
            body: form(&[
                ("site", json!("shop-main")),
                (
                    "order",
                    json!({
                        "number": "M-1", "externalId": "M-1",
                        "firstName": "Анна", "lastName": "Иванова", "phone": "+79005550101",
                        "shipmentStore": "main",
                        "items": [{"offer": {"xmlId": "table-oak"}, "quantity": 1}],
                        "delivery": {"code": "pickup"}
                    }),
                ),
            ]),
            before: vec![],
        },
        Example {
            title: "retailCRM, as a manager: move order A-1001 to «Комплектуется»".into(),
            method: "POST",
            url: format!("{crm}/api/v5/orders/A-1001/edit"),
            crm_key: Some(CRM_MANAGER_KEY),
            body: form(&[
                ("by", json!("externalId")),
                ("site", json!("shop-main")),
                ("order", json!({"status": "assembling"})),
            ]),
            before: vec![],
        },
        Example {
            title: "retailCRM, as a manager: a card payment of 9 980 ₽ arrives for A-1001".into(),
            method: "POST",
            url: format!("{crm}/api/v5/orders/payments/create"),
            crm_key: Some(CRM_MANAGER_KEY),
            body: form(&[
                ("site", json!("shop-main")),
                (
                    "payment",
                    json!({"order": {"externalId": "A-1001"}, "type": "bank-card", "status": "paid", "amount": 9980}),
                ),
            ]),
            before: vec![],
        },
        Example {
            title: "МойСклад: ship order A-1001 (a demand for its two red chairs)".into(),
            method: "POST",
            url: format!("{ms}/entity/demand"),
            crm_key: None,
            body: Body::Json(json!({
                "organization": meta(lab, "organization", &shop.organization),
                "agent": meta(lab, "counterparty", &shop.known_counterparty),
                "store": meta(lab, "store", &id(&shop.stores, "main")),
                "customerOrder": {"meta": {"href": ORDER_HREF_VAR, "type": "customerorder", "mediaType": "application/json"}},
                "applicable": true,
                "positions": [{
                    "quantity": 2, "price": 499000,
                    "assortment": meta(lab, "variant", &id(&shop.assortment, "chair01#red")),
                }]
            })),
            before: vec![format!(
                "ORDER=$(curl -s --compressed -u '{MS_MANAGER_LOGIN}:{MS_MANAGER_PASSWORD}' '{ms}/entity/customerorder?filter=name=A-1001' | grep -o '\"href\":\"[^\"]*/customerorder/[0-9a-f-]\\{{36\\}}\"' | head -1 | cut -d'\"' -f4)"
            )],
        },
        Example {
            title: "МойСклад: a retail sale of an oak table at the Тверская shop".into(),
            method: "POST",
            url: format!("{ms}/entity/retaildemand"),
            crm_key: None,
            body: Body::Json(json!({
                "organization": meta(lab, "organization", &shop.organization),
                "agent": meta(lab, "counterparty", &shop.known_counterparty),
                "store": meta(lab, "store", &id(&shop.stores, "shop-retail")),
                "applicable": true,
                "positions": [{
                    "quantity": 1, "price": 2590000,
                    "assortment": meta(lab, "product", &id(&shop.assortment, "table-oak")),
                }]
            })),
            before: vec![],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_apostrophes_and_lets_the_order_variable_expand() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            shell_quote_json(r#"{"href":"$ORDER"}"#),
            r#"'{"href":"'"$ORDER"'"}'"#
        );
    }
}
