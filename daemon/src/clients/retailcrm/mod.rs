//! The retailCRM API v5 client.
//!
//! It knows the API's mechanics and nothing about sync behaviour:
//!
//! * the key goes in the `X-API-KEY` header (never in URLs, never in logs: [`ApiKey`] redacts
//!   itself);
//! * GET filters are bracketed query parameters (`filter[ids][]=1`), POST bodies are
//!   form-encoded with each entity as **one JSON-string field** (`order=<json>&site=…&by=…`);
//! * every answer is the `success`/`errorMsg`/`errors` envelope, mapped to [`Error`] (the raw
//!   body is kept in [`ApiError::raw`] for the journal; `errors` may be an object or an array);
//! * requests are paced (default 10/s, shared by all clones), `429`/`503` are retried with
//!   exponential backoff, `5xx` and network errors are retried when repeating is harmless, and a
//!   write whose answer never arrived is reported as [`Error::NoResponse`] instead of being
//!   repeated blindly (see [`RetryPolicy`]);
//! * one call, retries and backoff included, takes at most [`ClientConfig::timeout`]
//!   (default 30 s) from its first paced slot, plus at most 100 ms for a last try started just
//!   in time; a write that ran out of time after it was sent is [`Error::NoResponse`];
//! * lists are paged (`limit` 20/50/100, `page`, `pagination.totalPageCount`), history is read
//!   with `filter[sinceId]` through a [`HistoryCursor`], and stock uploads are split into
//!   batches of at most 250 offers.
//!
//! Besides the typed helpers, [`RetailcrmClient::create`], [`RetailcrmClient::edit`],
//! [`RetailcrmClient::fetch`], [`RetailcrmClient::list`] and [`RetailcrmClient::delete`] take an
//! [`EntityKind`] and `serde_json::Value` bodies, for the apply layer that maps plan effects
//! onto API calls.

mod config;
mod customers;
mod entity;
mod error;
mod history;
mod model;
mod orders;
mod references;
mod store;
mod transport;

use std::sync::Arc;

use serde_json::Value;

pub use config::{
    ApiKey, ClientConfig, RetryPolicy, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT,
    INVENTORY_BATCH_LIMIT,
};
pub use entity::{EntityKind, WriteOptions};
pub use error::{ApiError, Error, FieldError};
pub use history::{HistoryBatch, HistoryCursor, HistoryFilter, HistoryKind};
pub use model::{
    Credentials, EntityRef, HistoryApiKey, HistoryEntry, HistoryPage, InventoryOffer,
    InventoryStore, InventoryUploadReport, Page, PageRequest, Pagination, StatusChange,
    WriteResult,
};
pub use references::{account_timezone, ReferenceBook};
pub use transport::flatten_query;

use skladsync_engine::Value as EngineValue;
use transport::{Call, Reader, Transport};

/// What an answer is read into: JSON (`serde_json::Value`), or engine values for answers
/// that end up in an evaluation (read straight from the text, no JSON in between).
pub(crate) trait Body: Sized {
    /// Reads a successful envelope (see `Transport::envelope`).
    const READ: Reader<Self>;

    /// Splits a list answer into items and pagination (see [`read_page`]).
    fn page(body: Self, key: &str, path: &str) -> Result<Page<Self>, Error>;

    /// Takes `key` out of a successful answer (see [`take_field`]).
    fn field(body: Self, key: &str, path: &str) -> Result<Self, Error>;
}

impl Body for Value {
    const READ: Reader<Value> = Transport::envelope;

    fn page(body: Value, key: &str, path: &str) -> Result<Page, Error> {
        read_page(body, key, path)
    }

    fn field(body: Value, key: &str, path: &str) -> Result<Value, Error> {
        take_field(body, key, path)
    }
}

impl Body for EngineValue {
    const READ: Reader<EngineValue> = Transport::envelope_values;

    fn page(body: EngineValue, key: &str, path: &str) -> Result<Page<EngineValue>, Error> {
        let items = match body.get_ref(key) {
            Some(EngineValue::Array(items)) => items.to_vec(),
            Some(EngineValue::Object(map)) => map.values().cloned().collect(),
            Some(EngineValue::Null) | None => {
                return Err(Error::Decode {
                    method: "GET".into(),
                    path: path.to_string(),
                    detail: format!("the answer has no `{key}` list"),
                })
            }
            Some(other) => {
                return Err(Error::Decode {
                    method: "GET".into(),
                    path: path.to_string(),
                    detail: format!("`{key}` is not a list: {other}"),
                })
            }
        };
        let pagination = match body.get_ref("pagination") {
            Some(p) => serde_json::from_value(p.to_serde_json()).map_err(|e| Error::Decode {
                method: "GET".into(),
                path: path.to_string(),
                detail: format!("bad pagination: {e}"),
            })?,
            None => single_page(items.len()),
        };
        Ok(Page { items, pagination })
    }

    fn field(body: EngineValue, key: &str, path: &str) -> Result<EngineValue, Error> {
        match body.get_ref(key) {
            Some(v) if !v.is_null() => Ok(v.clone()),
            _ => Err(Error::Decode {
                method: "GET".into(),
                path: path.to_string(),
                detail: format!("the answer has no `{key}`"),
            }),
        }
    }
}

/// The pagination of a list answer without one: a single page.
fn single_page(items: usize) -> Pagination {
    Pagination {
        limit: u32::try_from(items).unwrap_or(u32::MAX),
        total_count: items as u64,
        current_page: 1,
        total_page_count: 1,
    }
}

/// A retailCRM API v5 client. Cheap to clone; clones share the connection pool and the pacing
/// gate.
#[derive(Clone, Debug)]
pub struct RetailcrmClient {
    transport: Arc<Transport>,
}

impl RetailcrmClient {
    /// Builds a client.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        Ok(Self {
            transport: Arc::new(Transport::new(config)?),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.transport.config
    }

    pub(crate) async fn send(&self, call: Call) -> Result<Value, Error> {
        self.transport.execute(&call).await
    }

    /// [`RetailcrmClient::send`], the answer read as `T`.
    pub(crate) async fn send_as<T: Body>(&self, call: Call) -> Result<T, Error> {
        self.transport.execute_with(&call, T::READ).await
    }

    /// A raw GET under `/api/v5/` (`path` like `"orders/statuses"`), with bracketed `query`
    /// pairs. Returns the whole successful envelope.
    pub async fn get_raw(&self, path: &str, query: &[(String, String)]) -> Result<Value, Error> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut call = Call::get(&segments);
        call.query.extend(query.iter().cloned());
        self.send(call).await
    }

    /// Reads one page of a list endpoint: `key` is the list's field in the answer.
    pub(crate) async fn page_of<T: Body>(
        &self,
        segments: &[&str],
        key: &str,
        filter: &Value,
        page: PageRequest,
        extra: &[(&str, &str)],
    ) -> Result<Page<T>, Error> {
        config::check_limit(page.limit)?;
        let mut call = Call::get(segments)
            .filter(filter)?
            .param("limit", page.limit.to_string())
            .param("page", page.page.max(1).to_string());
        for (k, v) in extra {
            call = call.param(k, *v);
        }
        let path = call.path();
        let body = self.send_as::<T>(call).await?;
        T::page(body, key, &path)
    }

    /// Reads every page of a list endpoint.
    pub(crate) async fn all_pages<T: Body>(
        &self,
        segments: &[&str],
        key: &str,
        filter: &Value,
        extra: &[(&str, &str)],
    ) -> Result<Vec<T>, Error> {
        let limit = self.config().page_limit;
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let p = self
                .page_of::<T>(segments, key, filter, PageRequest::new(page, limit), extra)
                .await?;
            let empty = p.items.is_empty();
            out.extend(p.items);
            if empty || !p.pagination.has_more() {
                return Ok(out);
            }
            page += 1;
        }
    }
}

/// Splits a list answer into items and pagination. A missing list is an error; a list sent as
/// an object keyed by id/code (as some endpoints do) is read as its values.
pub(crate) fn read_page(mut body: Value, key: &str, path: &str) -> Result<Page, Error> {
    let items = match body.get_mut(key).map(Value::take) {
        Some(Value::Array(items)) => items,
        Some(Value::Object(map)) => map.into_iter().map(|(_, v)| v).collect(),
        Some(Value::Null) | None => {
            return Err(Error::Decode {
                method: "GET".into(),
                path: path.to_string(),
                detail: format!("the answer has no `{key}` list"),
            })
        }
        Some(other) => {
            return Err(Error::Decode {
                method: "GET".into(),
                path: path.to_string(),
                detail: format!("`{key}` is not a list: {other}"),
            })
        }
    };
    let pagination = match body.get("pagination") {
        Some(p) => serde_json::from_value(p.clone()).map_err(|e| Error::Decode {
            method: "GET".into(),
            path: path.to_string(),
            detail: format!("bad pagination: {e}"),
        })?,
        None => single_page(items.len()),
    };
    Ok(Page { items, pagination })
}

/// Takes `key` out of a successful answer.
pub(crate) fn take_field(mut body: Value, key: &str, path: &str) -> Result<Value, Error> {
    match body.get_mut(key).map(Value::take) {
        Some(v) if !v.is_null() => Ok(v),
        _ => Err(Error::Decode {
            method: "GET".into(),
            path: path.to_string(),
            detail: format!("the answer has no `{key}`"),
        }),
    }
}
