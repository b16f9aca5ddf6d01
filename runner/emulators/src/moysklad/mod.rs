//! A stateful emulator of the МойСклад JSON API 1.2, served by axum on loopback.
//!
//! It answers the parts of the API the runner uses, in МойСклад's JSON shapes (checked
//! against the official OpenAPI fixtures): entities with UUID ids and `meta`, `updated`/`created`
//! as `YYYY-MM-DD HH:MM:SS.mmm` (Moscow time), `filter`/`search`/`order`/`expand`/paging with
//! `meta.size/limit/offset/nextHref`, single and bulk create/update (per-item results and
//! errors), delete (refused with 1028 while other documents refer to the object), bulk delete,
//! positions and other nested collections, custom fields and dictionaries, document states,
//! `syncId` idempotency, uniqueness errors (3006), stock reports computed from documents,
//! webhooks with the real delivery policy, the request budget with its headers, Basic and
//! Bearer auth and mandatory gzip.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use skladsync_emulators::moysklad::{MoyskladEmulator, MoyskladEmulatorConfig};
//! use serde_json::json;
//!
//! let ms = MoyskladEmulator::start(MoyskladEmulatorConfig::default()).await?;
//! let store = ms.seed("store", json!({"name": "Основной склад"}))?;
//! println!("{} has {} stores", ms.base_url(), ms.list("store").len());
//! # let _ = store; Ok(()) }
//! ```
//!
//! Routes (under `base_url()`, which ends in `/api/remap/1.2`):
//!
//! | route | methods |
//! |---|---|
//! | `entity/<type>` | GET list, POST create (object) or bulk create/update (array ≤ 1000) |
//! | `entity/<type>/<id>` | GET, PUT, DELETE |
//! | `entity/<type>/delete` | POST bulk delete |
//! | `entity/<type>/syncid/<syncId>` | GET, DELETE |
//! | `entity/<type>/<id>/positions`, `…/accounts`, `…/contactpersons` | GET, POST; `/<rowId>` GET, PUT, DELETE; `/delete` POST |
//! | `entity/<type>/metadata` | GET (attributes, states) |
//! | `entity/<type>/metadata/attributes`, `…/states` | GET, POST; `/<id>` GET (states also PUT, DELETE) |
//! | `entity/customentity` | POST (a dictionary); `/<dict>` GET, POST, DELETE; `/<dict>/<id>` GET, PUT, DELETE |
//! | `entity/assortment` | GET (products, services, bundles, variants with stock fields) |
//! | `context/employee`, `context/companysettings/metadata` | GET |
//! | `report/stock/all`, `report/stock/bystore`, `…/current` | GET |
//! | `audit`, `audit/<id>/events`, `entity/<type>/<id>/audit`, `audit/metadata/filters` | GET (see [`audit`]: every change, API or helper, leaves its context) |
//!
//! Types: `customerorder`, `demand`, `move`, `salesreturn`, `retaildemand`, `enter`, `paymentin`,
//! `cashin`, `prepayment` (read-only through the API; seed it), `counterparty`, `organization`,
//! `store`, `productfolder`, `product`, `variant`, `service`, `bundle`, `employee`, `currency`, `saleschannel`,
//! `project`, `webhook`, `customentity`; `group` (the main one) and the price types of
//! `context/companysettings/pricetype` can be read.
//!
//! Requests are charged by the 2026 weights (see [`RateLimitConfig`]); filters on fields a type
//! cannot be filtered by are refused with 1034, bodies naming fields a type does not have
//! with 1007; times are the account's zone (Moscow unless configured otherwise).
//!
//! `fields=stock` on one document adds the current stock and unit cost to its expanded
//! positions. Not emulated: document templates (`PUT entity/<doc>/new`), the trash,
//! `async=true`, historical stock (`moment`), purchase orders (so `inTransit` is 0), retail
//! shifts (a `retaildemand` needs `organization`, `store` and `agent` instead of a shift).

pub mod audit;
mod clock;
pub mod errors;
mod fields;
mod http;
pub mod kinds;
mod limits;
pub mod query;
mod render;
mod sample;
mod state;
mod stock;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::faults::Faults;

pub use clock::Clock;
pub use errors::MsError;
pub use http::RequestRecord;
pub use limits::RateLimitConfig;
pub use sample::SampleShop;
pub use state::{Event, Options, State, StockSeed};
pub use stock::Cell as StockCell;
pub use webhooks::{Attempt, WebhookDelivery};

use http::Shared;
use query::Expand;
use render::Links;

/// A user of the emulated account: Basic auth with `login`/`password`, Bearer with `token`.
#[derive(Clone, PartialEq, Eq)]
pub struct EmulatorUser {
    /// Login (`name@account`); also the `uid` of the user's employee and of webhook
    /// `auditContext`.
    pub login: String,
    /// Password for Basic auth.
    pub password: String,
    /// Access token for Bearer auth, if any.
    pub token: Option<String>,
    /// The token is a published solution's (vendor app's): its requests weigh
    /// [`RateLimitConfig::solution_weight`] instead of [`RateLimitConfig::request_weight`].
    pub solution: bool,
}

impl EmulatorUser {
    /// A user with Basic credentials only.
    pub fn new(login: impl Into<String>, password: impl Into<String>) -> Self {
        EmulatorUser {
            login: login.into(),
            password: password.into(),
            token: None,
            solution: false,
        }
    }

    /// Marks the user as a published solution (its requests weigh 1 by default).
    #[must_use]
    pub fn as_solution(mut self) -> Self {
        self.solution = true;
        self
    }

    /// Adds a Bearer token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

impl std::fmt::Debug for EmulatorUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorUser")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("solution", &self.solution)
            .finish()
    }
}

/// How to start an emulator. `Default` gives the real limits and one user
/// (`admin@emulator` / `emulator-password`, token `emulator-token`).
#[derive(Clone, Debug)]
pub struct MoyskladEmulatorConfig {
    /// Users allowed in (at least one; the first is the one acting in Rust-side changes).
    pub users: Vec<EmulatorUser>,
    /// `accountId` of every entity.
    pub account_id: String,
    /// The request budget; `None` disables rate and parallel limits.
    pub rate_limit: Option<RateLimitConfig>,
    /// How long a webhook receiver has to answer (1.5 s).
    pub webhook_timeout: Duration,
    /// Extra delivery attempts after a failed one (3).
    pub webhook_retries: u32,
    /// Account switches (uniqueness checks).
    pub options: Options,
    /// The fault switch wired in front of the API.
    pub faults: Faults,
    /// A state to start from (e.g. a dump of another emulator); its hrefs are rebased.
    pub initial_state: Option<State>,
    /// The account's time zone (IANA name): `updated`, `created`, `moment` and webhook
    /// moments are its wall-clock time. МойСклад writes Moscow time (`Europe/Moscow`).
    pub timezone: String,
}

impl Default for MoyskladEmulatorConfig {
    fn default() -> Self {
        MoyskladEmulatorConfig {
            users: vec![EmulatorUser::new("admin@emulator", "emulator-password")
                .with_token("emulator-token")],
            account_id: "0e3a0000-5a1e-11f0-0a80-000000000000".into(),
            rate_limit: Some(RateLimitConfig::default()),
            webhook_timeout: Duration::from_millis(1500),
            webhook_retries: 3,
            options: Options::default(),
            faults: Faults::new(),
            initial_state: None,
            timezone: "Europe/Moscow".into(),
        }
    }
}

/// Errors of the Rust-side emulator API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The configured time zone is not an IANA zone name.
    #[error("unknown time zone `{0}` (expected an IANA name such as Europe/Moscow)")]
    Timezone(String),
    /// The loopback listener could not be bound.
    #[error("cannot bind the МойСклад emulator on loopback: {0}")]
    Bind(#[from] std::io::Error),
    /// The emulated API refused the operation, with the body it would have answered.
    #[error("the МойСклад emulator refused the operation ({status}): {body}")]
    Rejected {
        /// HTTP status the API would answer.
        status: u16,
        /// The `{"errors": [...]}` body.
        body: Value,
    },
    /// A state could not be (de)serialized.
    #[error("invalid emulator state: {0}")]
    State(#[from] serde_json::Error),
    /// The configuration has no user.
    #[error("the МойСклад emulator needs at least one user")]
    NoUser,
}

impl From<MsError> for EmulatorError {
    fn from(e: MsError) -> Self {
        EmulatorError::Rejected {
            status: e.status.as_u16(),
            body: e.body(),
        }
    }
}

/// A running emulator. Dropping it stops the server.
pub struct MoyskladEmulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
    faults: Faults,
    users: Vec<EmulatorUser>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MoyskladEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoyskladEmulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl MoyskladEmulator {
    /// Binds `127.0.0.1:0` and serves the API in the background.
    pub async fn start(config: MoyskladEmulatorConfig) -> Result<MoyskladEmulator, EmulatorError> {
        if config.users.is_empty() {
            return Err(EmulatorError::NoUser);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}/api/remap/1.2");
        let zone: chrono_tz::Tz = config
            .timezone
            .parse()
            .map_err(|_| EmulatorError::Timezone(config.timezone.clone()))?;
        let clock = Clock::new(zone);
        let state = match config.initial_state {
            Some(s) => s.rebase(&base_url)?,
            None => {
                let mut s = State::new(
                    base_url.clone(),
                    config.account_id.clone(),
                    config.options.clone(),
                );
                bootstrap(&mut s, &config.users, &clock)?;
                s
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            users: config.users.clone(),
            limiter: limits::Limiter::new(config.rate_limit.clone()),
            clock,
            deliverer: Arc::new(webhooks::Deliverer::new(
                config.webhook_timeout,
                config.webhook_retries,
                tokio::runtime::Handle::current(),
            )),
            requests: Mutex::new(Vec::new()),
        });
        let app = http::router(shared.clone(), &config.faults);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(MoyskladEmulator {
            shared,
            addr,
            base_url,
            faults: config.faults,
            users: config.users,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The API base URL, ending in `/api/remap/1.2`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault switch in front of the API.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The configured users.
    pub fn users(&self) -> &[EmulatorUser] {
        &self.users
    }

    /// The emulated clock (freeze or advance it for `updated>=` tests).
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    fn acting_login(&self) -> &str {
        self.users.first().map_or("", |u| u.login.as_str())
    }

    fn render_full(&self, state: &State, stored: &Value) -> Value {
        let ty = stored["meta"]["type"].as_str().unwrap_or("");
        let mut expand = Expand::default();
        for (f, _) in kinds::find(ty).map(|k| k.nested).unwrap_or_default() {
            expand.0.insert(f.to_string(), Expand::default());
        }
        state.render(stored, &expand, &Links::compute(state))
    }

    /// Creates an entity as seed data: no webhooks fire; `id` may be given; read-only types
    /// (prepayment) may be created. Validation is the API's. Returns the entity as `GET`
    /// with nested collections expanded would.
    pub fn seed(&self, entity: &str, body: Value) -> Result<Value, EmulatorError> {
        let mut state = self.shared.state();
        let ctx = self.shared.ctx(&state, self.acting_login(), true);
        let (stored, _) = state.create(entity, &body, &ctx)?;
        Ok(self.render_full(&state, &stored))
    }

    /// Creates a custom dictionary (`customentity`); returns it (`id`, `meta`, `name`).
    pub fn seed_dictionary(&self, name: &str) -> Result<Value, EmulatorError> {
        Ok(self
            .shared
            .state()
            .create_dictionary(&json!({ "name": name }))?)
    }

    /// Adds an element to a custom dictionary (no webhooks).
    pub fn seed_dictionary_element(
        &self,
        dictionary_id: &str,
        body: Value,
    ) -> Result<Value, EmulatorError> {
        let mut state = self.shared.state();
        let ctx = self.shared.ctx(&state, self.acting_login(), true);
        Ok(state.create_element(dictionary_id, &body, &ctx)?.0)
    }

    /// Creates a document state (`stateType`: `Regular`, `Successful` or `Unsuccessful`).
    pub fn seed_state(
        &self,
        document_type: &str,
        name: &str,
        state_type: &str,
    ) -> Result<Value, EmulatorError> {
        Ok(self.shared.state().create_state(
            document_type,
            &json!({"name": name, "stateType": state_type}),
        )?)
    }

    /// Creates a custom field definition on `entity` (body as `POST …/metadata/attributes`).
    pub fn seed_attribute(&self, entity: &str, body: Value) -> Result<Value, EmulatorError> {
        Ok(self.shared.state().create_attribute(entity, &body)?)
    }

    /// Sets the opening stock of a product or variant on a store, with its unit cost in
    /// kopecks.
    pub fn seed_stock(
        &self,
        store_id: &str,
        assortment_id: &str,
        quantity: f64,
        cost: f64,
    ) -> Result<(), EmulatorError> {
        let mut state = self.shared.state();
        if state.get("store", store_id).is_none() {
            return Err(errors::not_found("store", store_id).into());
        }
        if state.get("product", assortment_id).is_none()
            && state.get("variant", assortment_id).is_none()
        {
            return Err(errors::not_found("product", assortment_id).into());
        }
        let now = self.shared.clock.now();
        state.seed_stock(
            StockSeed {
                store: store_id.to_string(),
                assortment: assortment_id.to_string(),
                quantity,
                cost,
            },
            now,
        );
        Ok(())
    }

    /// Seeds a small sample shop (see [`SampleShop`]).
    pub fn seed_sample_shop(&self) -> Result<SampleShop, EmulatorError> {
        sample::seed(self)
    }

    /// Fault injection: the next `times` API creates of `entity` whose `field` equals `value`
    /// are refused with error 1999 (alone: HTTP 500; in a bulk POST: that element's place in
    /// the answer, the others created), nothing stored.
    pub fn refuse_creates(&self, entity: &str, field: &str, value: Value, times: u32) {
        self.shared.state().refusals.push(state::Refusal {
            entity: entity.to_string(),
            field: field.to_string(),
            value,
            times,
        });
    }

    /// How many injected refusals ([`MoyskladEmulator::refuse_creates`]) have not fired yet.
    pub fn refusals_left(&self) -> u32 {
        self.shared.state().refusals.iter().map(|r| r.times).sum()
    }

    /// Creates an entity as the first user would in the МойСклад UI: webhooks fire.
    pub fn create(&self, entity: &str, body: Value) -> Result<Value, EmulatorError> {
        let mut state = self.shared.state();
        let ctx = self.shared.ctx(&state, self.acting_login(), false);
        let now = ctx.now;
        let (stored, ev) = state.create(entity, &body, &ctx)?;
        let events: Vec<Event> = ev.into_iter().collect();
        self.shared.record_change(
            &mut state,
            &events,
            self.acting_login(),
            audit::SOURCE_APP,
            now,
            &[],
        );
        Ok(self.render_full(&state, &stored))
    }

    /// Updates an entity as the first user would in the UI (PUT semantics): webhooks fire.
    pub fn update(&self, entity: &str, id: &str, patch: Value) -> Result<Value, EmulatorError> {
        let mut state = self.shared.state();
        let ctx = self.shared.ctx(&state, self.acting_login(), false);
        let now = ctx.now;
        let (stored, ev) = state.update(entity, id, &patch, &ctx)?;
        let events: Vec<Event> = ev.into_iter().collect();
        self.shared.record_change(
            &mut state,
            &events,
            self.acting_login(),
            audit::SOURCE_APP,
            now,
            &[],
        );
        Ok(self.render_full(&state, &stored))
    }

    /// Deletes an entity as the first user would in the UI: webhooks fire.
    pub fn delete(&self, entity: &str, id: &str) -> Result<(), EmulatorError> {
        let mut state = self.shared.state();
        let ctx = self.shared.ctx(&state, self.acting_login(), false);
        let now = ctx.now;
        let ev = state.delete(entity, id, &ctx)?;
        self.shared.record_change(
            &mut state,
            &[ev],
            self.acting_login(),
            audit::SOURCE_APP,
            now,
            &[],
        );
        Ok(())
    }

    /// One entity as the API renders it, nested collections expanded.
    pub fn get(&self, entity: &str, id: &str) -> Option<Value> {
        let state = self.shared.state();
        let stored = state.get(entity, id)?.clone();
        Some(self.render_full(&state, &stored))
    }

    /// Every entity of a type, rendered, in creation order. For dictionary elements use
    /// `customentity:<dictionaryId>`.
    pub fn list(&self, entity: &str) -> Vec<Value> {
        let state = self.shared.state();
        let stored: Vec<Value> = state.all(entity).cloned().collect();
        stored.iter().map(|s| self.render_full(&state, s)).collect()
    }

    /// Every document of every document type, rendered (for "no duplicate documents" checks).
    pub fn documents(&self) -> Vec<Value> {
        kinds::KINDS
            .iter()
            .filter(|k| k.document)
            .flat_map(|k| self.list(k.name))
            .collect()
    }

    /// Stock of one item on one store, computed as the reports compute it.
    pub fn stock(&self, store_id: &str, assortment_id: &str) -> StockCell {
        let state = self.shared.state();
        let table = stock::compute(&state, &Links::compute(&state));
        table
            .cells
            .get(&(store_id.to_string(), assortment_id.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// A snapshot of the whole state.
    pub fn state(&self) -> State {
        self.shared.state().clone()
    }

    /// The state as JSON (what `skladsync emulate` dumps).
    pub fn state_json(&self) -> Result<Value, EmulatorError> {
        Ok(serde_json::to_value(&*self.shared.state())?)
    }

    /// Replaces the state with a dump (hrefs are rebased to this emulator).
    pub fn load_state(&self, dump: Value) -> Result<(), EmulatorError> {
        let s: State = serde_json::from_value(dump)?;
        let s = s.rebase(&self.base_url)?;
        *self.shared.state() = s;
        Ok(())
    }

    /// Every finished webhook notification, in completion order.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared.deliverer.log()
    }

    /// Waits until no webhook notification is in progress (at most `timeout`).
    pub async fn wait_for_webhooks(&self, timeout: Duration) -> bool {
        self.shared.deliverer.wait_idle(timeout).await
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MoyskladEmulator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What every account has: the default currency and one employee per user.
fn bootstrap(
    state: &mut State,
    users: &[EmulatorUser],
    clock: &Clock,
) -> Result<(), EmulatorError> {
    let ctx = state::Ctx {
        now: clock.now(),
        employee: None,
        seed: true,
    };
    state.create(
        "currency",
        &json!({
            "name": "руб", "fullName": "Российский рубль", "code": "643", "isoCode": "RUB",
            "archived": false, "default": true, "system": true, "rate": 1.0, "multiplicity": 1,
            "indirect": false, "rateUpdateType": "manual", "margin": 0
        }),
        &ctx,
    )?;
    for u in users {
        let short = u.login.split('@').next().unwrap_or(&u.login);
        let (stored, _) = state.create(
            "employee",
            &json!({"lastName": short, "uid": u.login}),
            &ctx,
        )?;
        // An employee owns itself, as in the real account.
        if let Some(id) = stored["id"].as_str() {
            let id = id.to_string();
            let owner = json!({"meta": state.entity_meta("employee", &id)});
            if let Some(e) = state
                .entities
                .get_mut("employee")
                .and_then(|m| m.get_mut(&id))
            {
                e["owner"] = owner;
            }
        }
    }
    Ok(())
}
