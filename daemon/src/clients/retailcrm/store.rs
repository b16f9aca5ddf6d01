//! Stock, purchase prices and catalog reads; tasks.

use serde::Serialize;
use serde_json::Value;

use super::entity::{EntityKind, WriteOptions};
use super::error::Error;
use super::model::{InventoryUploadReport, Page, PageRequest, WriteResult};
use super::transport::{Call, Safety};
use super::RetailcrmClient;

impl RetailcrmClient {
    /// Uploads stock and purchase prices, `POST /store/inventories/upload` with `offers=<json>`
    /// (and `site`), split into batches of at most
    /// [`ClientConfig::inventory_batch`](super::ClientConfig) (250) offers.
    ///
    /// Each offer is `{id|externalId|xmlId, stores: [{code, available, purchasePrice}]}`
    /// ([`InventoryOffer`](super::InventoryOffer) or a JSON value of that shape). Values are
    /// absolute, so the upload is idempotent and retried like a read. Batches are sent in
    /// order; the first failing batch stops the upload and is returned as the error (the earlier
    /// ones were applied; sending everything again is safe).
    pub async fn inventories_upload<T: Serialize>(
        &self,
        offers: &[T],
        site: Option<&str>,
    ) -> Result<InventoryUploadReport, Error> {
        let mut report = InventoryUploadReport::default();
        let size = self.config().inventory_batch.max(1);
        for chunk in offers.chunks(size) {
            let call = Call::post(&["store", "inventories", "upload"], Safety::Idempotent)
                .json_field("offers", chunk)?
                .opt_field("site", site);
            let body = self.send(call).await?;
            report.requests += 1;
            report.processed_offers += body
                .get("processedOffersCount")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if let Some(Value::Array(nf)) = body.get("notFoundOffers") {
                report.not_found.extend(nf.iter().cloned());
            }
        }
        Ok(report)
    }

    /// One page of `GET /store/inventories` (`{"details": true}` adds per-store rows).
    pub async fn inventories(&self, filter: &Value, page: PageRequest) -> Result<Page, Error> {
        self.page_of(&["store", "inventories"], "offers", filter, page, &[])
            .await
    }

    /// Every page of `GET /store/inventories`.
    pub async fn inventories_all(&self, filter: &Value) -> Result<Vec<Value>, Error> {
        self.all_pages(&["store", "inventories"], "offers", filter, &[])
            .await
    }

    /// One page of `GET /store/offers`.
    pub async fn store_offers(&self, filter: &Value, page: PageRequest) -> Result<Page, Error> {
        self.page_of(&["store", "offers"], "offers", filter, page, &[])
            .await
    }

    /// One page of `GET /store/products` (offers nested).
    pub async fn store_products(&self, filter: &Value, page: PageRequest) -> Result<Page, Error> {
        self.page_of(&["store", "products"], "products", filter, page, &[])
            .await
    }

    /// `POST /tasks/create` (`task=<json>`, `site`): a task for a user, e.g. about an order
    /// that could not be synced.
    pub async fn task_create(
        &self,
        task: &Value,
        site: Option<&str>,
    ) -> Result<WriteResult, Error> {
        self.create(
            EntityKind::Task,
            task,
            &WriteOptions {
                site: site.map(str::to_string),
                parent: None,
            },
        )
        .await
    }
}
