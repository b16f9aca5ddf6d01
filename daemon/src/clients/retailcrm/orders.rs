//! Orders and their payments.

use serde_json::Value;

use super::entity::{EntityKind, WriteOptions};
use super::error::Error;
use super::model::{EntityRef, Page, PageRequest, WriteResult};
use super::transport::Call;
use super::RetailcrmClient;

fn site_opts(site: Option<&str>) -> WriteOptions {
    WriteOptions {
        site: site.map(str::to_string),
        parent: None,
    }
}

impl RetailcrmClient {
    /// `GET /orders/{id}?by=&site=`: the full order.
    pub async fn order_get(&self, id: &EntityRef, site: Option<&str>) -> Result<Value, Error> {
        self.fetch(EntityKind::Order, id, &site_opts(site)).await
    }

    /// `POST /orders/create` (`order=<json>`, `site`). The answer carries `id` and `order`.
    pub async fn order_create(
        &self,
        order: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.create(EntityKind::Order, order, &site_opts(site))
            .await
    }

    /// `POST /orders/{id}/edit` (`by`, `order=<json>`, `site`). Send only the fields to change;
    /// `items`, when sent, replaces the whole list (keep rows by sending their `id`).
    pub async fn order_edit(
        &self,
        id: &EntityRef,
        order: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.edit(EntityKind::Order, id, order, &site_opts(site))
            .await
    }

    /// One page of `GET /orders` with a JSON filter (`{"ids":[1],"sites":["shop"]}`).
    pub async fn orders_list(&self, filter: &Value, page: PageRequest) -> Result<Page, Error> {
        self.list(EntityKind::Order, filter, page, &WriteOptions::default())
            .await
    }

    /// Every page of `GET /orders`.
    pub async fn orders_list_all(&self, filter: &Value) -> Result<Vec<Value>, Error> {
        self.list_all(EntityKind::Order, filter, &WriteOptions::default())
            .await
    }

    /// `GET /orders/statuses?ids[]=&externalIds[]=`: `[{id, externalId, status, group}]`.
    pub async fn orders_statuses(
        &self,
        ids: &[i64],
        external_ids: &[&str],
    ) -> Result<Vec<Value>, Error> {
        let mut call = Call::get(&["orders", "statuses"]);
        for id in ids {
            call = call.param("ids[]", id.to_string());
        }
        for x in external_ids {
            call = call.param("externalIds[]", *x);
        }
        let path = call.path();
        let body = self.send(call).await?;
        Ok(super::read_page(body, "orders", &path)?.items)
    }

    /// `POST /orders/payments/create` (`payment=<json>`, `site`). The payment names its order
    /// (`"order": {"id"|"externalId"|"number"}`). Returns the payment id.
    pub async fn payment_create(
        &self,
        payment: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.create(EntityKind::Payment, payment, &site_opts(site))
            .await
    }

    /// `POST /orders/payments/{id}/edit` (`by`, `payment=<json>`, `site`).
    pub async fn payment_edit(
        &self,
        id: &EntityRef,
        payment: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.edit(EntityKind::Payment, id, payment, &site_opts(site))
            .await
    }

    /// `POST /orders/payments/{id}/delete` (CRM id only).
    pub async fn payment_delete(&self, id: i64) -> Result<(), Error> {
        self.delete(EntityKind::Payment, &EntityRef::Id(id)).await
    }
}
