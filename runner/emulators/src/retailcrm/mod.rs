//! A stateful emulator of the parts of retailCRM API v5 that skladsync uses, served by axum
//! on loopback.
//!
//! It answers in the shapes of retailCRM's own recorded responses: the `success` envelope,
//! `errorMsg`/`errors`, `pagination`, reference books keyed by code (stores and price types as
//! arrays), orders with embedded customers and `payments` keyed by id, history records with
//! `created`, `source`, `user`, `apiKey.current`, snake_case `field` codes and
//! `{code}`/`{id}` values. Entities get ids, `externalId` is unique per site (`Order with
//! externalId already exists.`), lists take retailCRM's filters and `limit` 20/50/100, and
//! **every** change, whether made through the API or through the Rust [`Manager`] API, is
//! recorded in `orders/history`, `customers/history` or `customers-corporate/history` with
//! monotonic ids. The key is read from `X-API-KEY` or `apiKey`; bursts above the configured
//! per-key rate (at most that many requests in any one second) are refused with
//! `503 Rate limit exceeded`; the shared
//! [`Faults`] layer injects latency, 429/5xx, dropped
//! connections and "commit then drop".
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use skladsync_emulators::retailcrm::{sample_shop, EmulatorConfig, RetailcrmEmulator};
//! let emu = RetailcrmEmulator::start(EmulatorConfig::default()).await?;
//! let report = emu.seed(&sample_shop()?)?;
//! emu.as_manager(12).set_order_status(report.orders[0], "client-confirmed")?;
//! println!("retailCRM at {} with key {}", emu.base_url(), emu.api_key());
//! # Ok(()) }
//! ```

mod catalog;
mod changes;
mod config;
mod customers;
mod http;
mod icml;
mod manager;
mod model;
mod orders;
mod params;
mod seed;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::faults::{Faults, Rejection, Renderer};

pub use config::{ApiKeyConfig, EmulatorConfig, RateLimitConfig};
pub use http::RecordedRequest;
pub use icml::IcmlLoad;
pub use manager::Manager;
pub use model::{
    Actor, Clock, Failure, HistoryRecord, Offer, References, Sequences, State, StoreStock,
};
pub use seed::{sample_shop, Seed, SeedReport};

use http::{Inner, Shared};
use orders::PaymentsShape;

/// What the emulator's Rust API can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The configured time zone is not an IANA zone name.
    #[error("unknown time zone `{0}` (expected an IANA name such as Asia/Yekaterinburg)")]
    Timezone(String),
    /// The listener could not be bound.
    #[error("cannot bind the retailCRM emulator to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The emulated API refused the change, as it would refuse the same API call.
    #[error("the emulated retailCRM refused: {0}")]
    Rejected(Failure),
    /// No such entity.
    #[error("not found in the emulated retailCRM: {0}")]
    NotFound(String),
    /// State could not be (de)serialized.
    #[error("emulator state JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<Failure> for EmulatorError {
    fn from(f: Failure) -> Self {
        EmulatorError::Rejected(f)
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct RetailcrmEmulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    faults: Faults,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
}

/// How injected faults look on the wire: retailCRM's envelope.
fn renderer() -> Renderer {
    Arc::new(|rejection: &Rejection| -> Response {
        match rejection {
            Rejection::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"success": false, "errorMsg": "Rate limit exceeded"})),
            )
                .into_response(),
            Rejection::ServerError { status } => (
                *status,
                axum::Json(json!({"success": false, "errorMsg": "Internal Server Error"})),
            )
                .into_response(),
            // retailCRM's refusal of a request it will not accept as sent.
            Rejection::Refused { status } => (
                *status,
                axum::Json(json!({
                    "success": false,
                    "errorMsg": "Errors in the entity format",
                    "errors": {"fault": "injected refusal"},
                })),
            )
                .into_response(),
        }
    })
}

impl RetailcrmEmulator {
    /// Starts an empty emulator.
    pub async fn start(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        Self::start_with_state(config, State::default()).await
    }

    /// Starts an emulator over saved state (see [`RetailcrmEmulator::state`]).
    pub async fn start_with_state(
        config: EmulatorConfig,
        mut state: State,
    ) -> Result<Self, EmulatorError> {
        if state.clock == Clock::System {
            state.clock = config.clock.clone();
        }
        state.timezone = Some(
            config
                .timezone
                .parse()
                .map_err(|_| EmulatorError::Timezone(config.timezone.clone()))?,
        );
        let addr = config.bind;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::new(state)),
            config,
        });
        let faults = Faults::new();
        let app = Router::new()
            .fallback(http::handle)
            .with_state(shared.clone())
            .layer(faults.layer_with(renderer()));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "retailCRM emulator stopped with an error");
            }
        });
        Ok(Self {
            shared,
            addr: local,
            faults,
            shutdown: Mutex::new(Some(tx)),
        })
    }

    /// `http://127.0.0.1:<port>`: the account root to give a client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The first configured key (the integration's own key in tests).
    pub fn api_key(&self) -> &str {
        self.shared
            .config
            .api_keys
            .first()
            .map(|k| k.key.as_str())
            .unwrap_or("")
    }

    /// The fault switch (latency, 429, 5xx, dropped connections, commit-then-drop).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Stops the server.
    pub fn shutdown(&self) {
        if let Some(tx) = self
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = tx.send(());
        }
    }

    // ----- seeding and acting -----

    /// Applies a seed (references, catalog, customers, orders with their histories).
    pub fn seed(&self, seed: &Seed) -> Result<SeedReport, EmulatorError> {
        let mut inner = self.shared.lock();
        Ok(seed::apply(&mut inner.state, seed)?)
    }

    /// Acts as CRM user `user_id` (`source: user`).
    pub fn as_manager(&self, user_id: i64) -> Manager<'_> {
        Manager::new(self, Actor::User(user_id))
    }

    /// Acts as an API client with `key` (`source: api`; `apiKey.current` is true only for
    /// readers using the same key).
    pub fn as_api(&self, key: &str) -> Manager<'_> {
        Manager::new(self, Actor::Api(key.to_string()))
    }

    /// Acts as the CRM's own automation (`source: code`).
    pub fn as_system(&self) -> Manager<'_> {
        Manager::new(self, Actor::Code)
    }

    /// Replaces the whole state.
    pub fn load_state(&self, mut state: State) {
        let mut inner = self.shared.lock();
        state.timezone = inner.state.timezone;
        inner.state = state;
    }

    // ----- inspection -----

    /// A copy of the whole state (serializable; see [`RetailcrmEmulator::state_json`]).
    pub fn state(&self) -> State {
        self.shared.lock().state.clone()
    }

    /// The whole state as pretty JSON.
    pub fn state_json(&self) -> Result<String, EmulatorError> {
        Ok(serde_json::to_string_pretty(&self.state())?)
    }

    /// An order as `GET /orders/{id}?by=id` shows it.
    pub fn order(&self, id: i64) -> Option<Value> {
        let inner = self.shared.lock();
        let st = &inner.state;
        let idx = orders::find_order(st, &id.to_string(), true, None)?;
        Some(orders::render_order(
            st,
            &st.orders[idx],
            PaymentsShape::Map,
        ))
    }

    /// An order by externalId (within `site` when given).
    pub fn order_by_external_id(&self, site: Option<&str>, external_id: &str) -> Option<Value> {
        let inner = self.shared.lock();
        let st = &inner.state;
        let idx = orders::find_order(st, external_id, false, site)?;
        Some(orders::render_order(
            st,
            &st.orders[idx],
            PaymentsShape::Map,
        ))
    }

    /// Every order, oldest first, as the API shows them.
    pub fn orders(&self) -> Vec<Value> {
        let inner = self.shared.lock();
        let st = &inner.state;
        st.orders
            .iter()
            .map(|o| orders::render_order(st, o, PaymentsShape::Map))
            .collect()
    }

    /// The payments of an order (array form).
    pub fn payments(&self, order_id: i64) -> Vec<Value> {
        let inner = self.shared.lock();
        let st = &inner.state;
        orders::find_order(st, &order_id.to_string(), true, None)
            .and_then(|i| {
                st.orders[i]
                    .get("payments")
                    .and_then(Value::as_array)
                    .cloned()
            })
            .unwrap_or_default()
    }

    /// Every payment of every order, as `(order id, payment)`: for "no duplicate payments"
    /// checks.
    pub fn all_payments(&self) -> Vec<(i64, Value)> {
        let inner = self.shared.lock();
        let mut out = Vec::new();
        for o in &inner.state.orders {
            let id = o.get("id").and_then(Value::as_i64).unwrap_or(0);
            if let Some(ps) = o.get("payments").and_then(Value::as_array) {
                out.extend(ps.iter().map(|p| (id, p.clone())));
            }
        }
        out
    }

    /// An individual customer as the API shows it.
    pub fn customer(&self, id: i64) -> Option<Value> {
        let inner = self.shared.lock();
        let st = &inner.state;
        let idx = customers::find_customer(st, &id.to_string(), true, None)?;
        Some(customers::render_customer(st, &st.customers[idx]))
    }

    /// Every individual customer.
    pub fn customers(&self) -> Vec<Value> {
        let inner = self.shared.lock();
        let st = &inner.state;
        st.customers
            .iter()
            .map(|c| customers::render_customer(st, c))
            .collect()
    }

    /// A corporate customer in its internal form (with `customerContacts`, `companies`,
    /// `addresses`).
    pub fn corporate_customer(&self, id: i64) -> Option<Value> {
        let inner = self.shared.lock();
        let st = &inner.state;
        let idx = customers::find_corporate(st, &id.to_string(), true, None)?;
        Some(st.corporate[idx].clone())
    }

    /// Every corporate customer (internal form).
    pub fn corporate_customers(&self) -> Vec<Value> {
        self.shared.lock().state.corporate.clone()
    }

    /// The catalog.
    pub fn offers(&self) -> Vec<Offer> {
        self.shared.lock().state.offers.clone()
    }

    /// An offer by `xmlId`.
    pub fn offer_by_xml_id(&self, xml_id: &str) -> Option<Offer> {
        self.shared
            .lock()
            .state
            .offers
            .iter()
            .find(|o| o.xml_id.as_deref() == Some(xml_id))
            .cloned()
    }

    /// Tasks created so far.
    pub fn tasks(&self) -> Vec<Value> {
        self.shared.lock().state.tasks.clone()
    }

    /// `orders/history` as the holder of `reader_key` would read it.
    pub fn order_history(&self, reader_key: Option<&str>) -> Vec<Value> {
        http::render_feed(&self.shared.lock().state.order_history, "order", reader_key)
    }

    /// `customers/history` as the holder of `reader_key` would read it.
    pub fn customer_history(&self, reader_key: Option<&str>) -> Vec<Value> {
        http::render_feed(
            &self.shared.lock().state.customer_history,
            "customer",
            reader_key,
        )
    }

    /// `customers-corporate/history` as the holder of `reader_key` would read it.
    pub fn corporate_history(&self, reader_key: Option<&str>) -> Vec<Value> {
        http::render_feed(
            &self.shared.lock().state.corporate_history,
            "customer",
            reader_key,
        )
    }

    /// Every status order `order_id` has held, in order.
    pub fn status_history(&self, order_id: i64) -> Vec<String> {
        self.shared
            .lock()
            .state
            .order_history
            .iter()
            .filter(|r| r.entity_id == order_id && r.field == "status")
            .filter_map(|r| r.new_value.get("code").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    /// Every request received so far (requests cut off by an injected fault before the
    /// emulator saw them are not listed).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// The recorded requests with the moment each was received.
    pub fn requests_timed(&self) -> Vec<(std::time::Instant, RecordedRequest)> {
        let inner = self.shared.lock();
        inner
            .request_times
            .iter()
            .copied()
            .zip(inner.requests.iter().cloned())
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        let mut inner = self.shared.lock();
        inner.requests.clear();
        inner.request_times.clear();
    }

    /// How many requests the emulated rate limit refused.
    pub fn rate_limited(&self) -> u64 {
        self.shared.lock().rate_limited
    }

    /// The most requests received with one key in any one second so far (refused ones
    /// included): what the client's pacing achieved.
    pub fn peak_requests_per_second(&self) -> usize {
        self.shared.lock().peak_per_second
    }
}

impl Drop for RetailcrmEmulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
