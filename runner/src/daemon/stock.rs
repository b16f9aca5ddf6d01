//! The rows of a `stock.pass`: `report/stock/bystore` (zeros included), each enriched with
//! its `assortment` (`externalCode`, `archived`, and for a variant `product.externalCode`)
//! and `cost` (the unit cost price in kopecks from `report/stock/all`).
//!
//! A full pass carries every row. Between full passes only rows that changed since the last
//! pass that was applied are carried: the runner keeps a digest per assortment item.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value as Json};

use crate::apply::ApplyError;
use crate::clients::moysklad::{id_from_href, ListQuery};

use super::Daemon;

fn href_id(v: &Json) -> Option<String> {
    v.pointer("/meta/href")
        .and_then(Json::as_str)
        .and_then(id_from_href)
        .map(str::to_string)
}

fn digest(v: &Json) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, v.to_string().as_bytes())
        .simple()
        .to_string()
}

impl Daemon {
    /// The rows of a stock pass and the digests of every row.
    pub(super) async fn stock_rows(
        &self,
        full: bool,
    ) -> Result<(Vec<Json>, BTreeMap<String, String>), ApplyError> {
        let ms = &self.inner.systems.ms;
        let by_store = ms
            .stock_by_store(&ListQuery::new().filter_eq("stockMode", "all"))
            .await?;
        let all = ms
            .stock_all(
                &ListQuery::new()
                    .filter_eq("stockMode", "all")
                    .filter_eq("quantityMode", "all"),
            )
            .await?;
        let cost: HashMap<String, Json> = all
            .iter()
            .filter_map(|r| Some((href_id(r)?, r.get("price").cloned().unwrap_or(json!(0)))))
            .collect();
        let assortment: HashMap<String, Json> = ms
            .list_all("assortment", &ListQuery::new())
            .await?
            .into_iter()
            .filter_map(|r| Some((r.get("id")?.as_str()?.to_string(), r)))
            .collect();
        let previous = self.inner.state.stock_digests()?;
        let mut rows = Vec::new();
        let mut digests = BTreeMap::new();
        for mut row in by_store {
            let Some(id) = href_id(&row) else { continue };
            let kind = row
                .pointer("/meta/type")
                .and_then(Json::as_str)
                .unwrap_or("product")
                .to_string();
            let a = assortment.get(&id);
            let field = |k: &str| a.and_then(|a| a.get(k)).cloned().unwrap_or(Json::Null);
            let mut asrt = json!({
                "id": id,
                "type": kind,
                "externalCode": field("externalCode"),
                "archived": a.and_then(|a| a.get("archived")).cloned().unwrap_or(json!(false)),
                "name": field("name"),
            });
            if kind == "variant" {
                let product_id = a.and_then(|a| a.get("product")).and_then(href_id);
                let product_code = product_id
                    .as_ref()
                    .and_then(|p| assortment.get(p))
                    .and_then(|p| p.get("externalCode"))
                    .cloned()
                    .unwrap_or(Json::Null);
                asrt["product"] = json!({"id": product_id, "externalCode": product_code});
            }
            if let Some(m) = row.as_object_mut() {
                m.insert("assortment".into(), asrt);
                m.insert("cost".into(), cost.get(&id).cloned().unwrap_or(json!(0)));
            }
            let d = digest(&row);
            let changed = previous.get(&id) != Some(&d);
            digests.insert(id, d);
            if full || changed {
                rows.push(row);
            }
        }
        Ok((rows, digests))
    }
}
