//! The change feeds: `orders/history`, `customers/history`, `customers-corporate/history`.
//!
//! retailCRM's documented way to consume them: ask with `filter[sinceId]` = the last record
//! processed, take page 1, move `sinceId` to the last id of the page, repeat until a page comes
//! back empty or says it was the last one. [`HistoryCursor`] does exactly that; the caller
//! persists [`HistoryBatch::last_id`] only after the batch is applied.

use serde_json::Value;

use super::config::check_limit;
use super::error::Error;
use super::model::{EntityRef, HistoryEntry, HistoryPage, PageRequest, Pagination, StatusChange};
use super::transport::Call;
use super::RetailcrmClient;

/// Which change feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistoryKind {
    /// `GET /orders/history` (entries carry `order`, `item`, `payment`).
    Orders,
    /// `GET /customers/history` (entries carry `customer`, `address`).
    Customers,
    /// `GET /customers-corporate/history` (also `customerContact`, `company`).
    CustomersCorporate,
}

impl HistoryKind {
    fn segments(self) -> [&'static str; 2] {
        match self {
            HistoryKind::Orders => ["orders", "history"],
            HistoryKind::Customers => ["customers", "history"],
            HistoryKind::CustomersCorporate => ["customers-corporate", "history"],
        }
    }

    fn id_filters(self) -> (&'static str, &'static str) {
        match self {
            HistoryKind::Orders => ("orderId", "orderExternalId"),
            _ => ("customerId", "customerExternalId"),
        }
    }
}

/// History filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only records with a greater id.
    pub since_id: Option<i64>,
    /// `Y-m-d H:i:s`, inclusive.
    pub start_date: Option<String>,
    /// `Y-m-d H:i:s`, inclusive.
    pub end_date: Option<String>,
    /// Only records of this entity (`orderId`/`orderExternalId` or the customer ones).
    pub entity: Option<EntityRef>,
}

impl HistoryFilter {
    /// Records after `since_id`.
    pub fn since(since_id: i64) -> Self {
        Self {
            since_id: Some(since_id),
            ..Self::default()
        }
    }
}

impl RetailcrmClient {
    /// One page of a history feed.
    pub async fn history(
        &self,
        kind: HistoryKind,
        filter: &HistoryFilter,
        page: PageRequest,
    ) -> Result<HistoryPage, Error> {
        check_limit(page.limit)?;
        let mut call = Call::get(&kind.segments())
            .param("limit", page.limit.to_string())
            .param("page", page.page.max(1).to_string());
        if let Some(id) = filter.since_id {
            call = call.param("filter[sinceId]", id.to_string());
        }
        if let Some(d) = &filter.start_date {
            call = call.param("filter[startDate]", d.clone());
        }
        if let Some(d) = &filter.end_date {
            call = call.param("filter[endDate]", d.clone());
        }
        let (by_id, by_ext) = kind.id_filters();
        match &filter.entity {
            Some(EntityRef::Id(id)) => {
                call = call.param(&format!("filter[{by_id}]"), id.to_string())
            }
            Some(EntityRef::ExternalId(x)) => {
                call = call.param(&format!("filter[{by_ext}]"), x.clone())
            }
            None => {}
        }
        let path = call.path();
        let body = self.send(call).await?;
        parse_history(body, &path)
    }

    /// `orders/history` page (shorthand for [`RetailcrmClient::history`]).
    pub async fn orders_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest,
    ) -> Result<HistoryPage, Error> {
        self.history(HistoryKind::Orders, filter, page).await
    }

    /// `customers/history` page.
    pub async fn customers_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest,
    ) -> Result<HistoryPage, Error> {
        self.history(HistoryKind::Customers, filter, page).await
    }

    /// `customers-corporate/history` page.
    pub async fn corporate_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest,
    ) -> Result<HistoryPage, Error> {
        self.history(HistoryKind::CustomersCorporate, filter, page)
            .await
    }

    /// A cursor over a feed starting after `since_id` (`None`: from the beginning).
    pub fn history_cursor(&self, kind: HistoryKind, since_id: Option<i64>) -> HistoryCursor {
        HistoryCursor::new(kind, since_id).with_limit(self.config().page_limit)
    }

    /// Every record after `since_id` (all batches). For bounded feeds such as one order's
    /// history; the daemon should walk a [`HistoryCursor`] and persist as it goes.
    pub async fn history_all(
        &self,
        kind: HistoryKind,
        filter: &HistoryFilter,
    ) -> Result<Vec<HistoryEntry>, Error> {
        let mut cursor = self
            .history_cursor(kind, filter.since_id)
            .with_filter(filter.clone());
        let mut out = Vec::new();
        while let Some(batch) = cursor.next_batch(self).await? {
            out.extend(batch.entries);
        }
        Ok(out)
    }

    /// Every status the order has held, in order, from its history (`field == "status"`,
    /// including the status it was created with).
    pub async fn order_status_history(
        &self,
        order: &EntityRef,
    ) -> Result<Vec<StatusChange>, Error> {
        let filter = HistoryFilter {
            entity: Some(order.clone()),
            ..HistoryFilter::default()
        };
        let entries = self.history_all(HistoryKind::Orders, &filter).await?;
        Ok(entries
            .into_iter()
            .filter(|e| e.field.as_deref() == Some("status"))
            .filter_map(|e| {
                let status = e.new_code()?.to_string();
                Some(StatusChange {
                    history_id: e.id,
                    at: e.created_at.clone(),
                    previous: e
                        .old_value
                        .get("code")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    status,
                    source: e.source.clone(),
                })
            })
            .collect())
    }
}

fn parse_history(mut body: Value, path: &str) -> Result<HistoryPage, Error> {
    let decode = |detail: String| Error::Decode {
        method: "GET".into(),
        path: path.to_string(),
        detail,
    };
    let history = match body.get_mut("history").map(Value::take) {
        Some(v @ Value::Array(_)) => serde_json::from_value::<Vec<HistoryEntry>>(v)
            .map_err(|e| decode(format!("bad history entry: {e}")))?,
        _ => return Err(decode("the answer has no `history` list".into())),
    };
    let pagination = match body.get("pagination") {
        Some(p) => serde_json::from_value::<Pagination>(p.clone())
            .map_err(|e| decode(format!("bad pagination: {e}")))?,
        None => Pagination::default(),
    };
    Ok(HistoryPage {
        history,
        pagination,
        generated_at: body
            .get("generatedAt")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// One batch read by a [`HistoryCursor`].
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryBatch {
    /// Records, ascending by id.
    pub entries: Vec<HistoryEntry>,
    /// The id to persist as the new cursor once the batch is applied.
    pub last_id: i64,
    /// Whether the server reported more records after this batch.
    pub more: bool,
}

/// Walks a history feed batch by batch with `filter[sinceId]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryCursor {
    kind: HistoryKind,
    filter: HistoryFilter,
    limit: u32,
    exhausted: bool,
}

impl HistoryCursor {
    /// A cursor after `since_id`, pages of 100.
    pub fn new(kind: HistoryKind, since_id: Option<i64>) -> Self {
        Self {
            kind,
            filter: HistoryFilter {
                since_id,
                ..HistoryFilter::default()
            },
            limit: 100,
            exhausted: false,
        }
    }

    /// Sets the page size (20, 50 or 100; other values fall back to 100).
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = if check_limit(limit).is_ok() {
            limit
        } else {
            100
        };
        self
    }

    /// Adds filters (`startDate` for a first run without a cursor, one entity, ...). The
    /// cursor's own `since_id` wins over the filter's when both are set.
    pub fn with_filter(mut self, filter: HistoryFilter) -> Self {
        let since = self.filter.since_id.or(filter.since_id);
        self.filter = HistoryFilter {
            since_id: since,
            ..filter
        };
        self
    }

    /// The id after which the next batch starts.
    pub fn since_id(&self) -> Option<i64> {
        self.filter.since_id
    }

    /// True once a batch reported no more records.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// Reads the next batch; `None` when the feed is exhausted.
    pub async fn next_batch(
        &mut self,
        client: &RetailcrmClient,
    ) -> Result<Option<HistoryBatch>, Error> {
        if self.exhausted {
            return Ok(None);
        }
        let page = client
            .history(self.kind, &self.filter, PageRequest::new(1, self.limit))
            .await?;
        let Some(last) = page.history.last().map(|e| e.id) else {
            self.exhausted = true;
            return Ok(None);
        };
        if self.filter.since_id.is_some_and(|s| last <= s) {
            // The server ignored sinceId; stop rather than loop forever.
            return Err(Error::Decode {
                method: "GET".into(),
                path: format!("/api/v5/{}", self.kind.segments().join("/")),
                detail: format!("history did not advance past sinceId (last id {last})"),
            });
        }
        let more = page.pagination.has_more();
        self.filter.since_id = Some(last);
        // After the first batch only sinceId moves the window.
        self.filter.start_date = None;
        self.exhausted = !more;
        Ok(Some(HistoryBatch {
            entries: page.history,
            last_id: last,
            more,
        }))
    }
}
